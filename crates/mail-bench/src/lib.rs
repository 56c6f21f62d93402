//! mail-bench as a library: the load generators that tests also run.

pub mod burst;
pub mod imap_stress;
