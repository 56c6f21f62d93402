//! mailbox-store: the only service that touches SQL.
//!
//! [`Store`] is the storage interface, with two backends behind it:
//! PostgreSQL (production, `migrations/postgres`) and an embedded SQLite file
//! (`migrations/sqlite`, the default for a one-command local run). Both run
//! the same operations (`ops.rs`, compiled once per backend) so they keep the
//! same semantics. [`server`] serves the store over gRPC
//! (`proto/mailbox/v1`), enforcing the service secret and account-scoped
//! session tokens.

pub mod config;
pub mod error;
pub mod hub;
mod model;
mod search;
pub mod server;
pub mod store;
pub mod summary;
pub mod summary_pb;

pub use config::{StoreConfig, StoreSettings};
pub use error::{Result, StoreError};
pub use server::serve;
pub use store::Store;
