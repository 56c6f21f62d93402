//! IMAP on the wire, around `imap-codec` (which parses commands and encodes
//! responses): the pieces a server needs that the codec leaves to it.
//! Pure: no I/O, no async.
//!
//! - [`utf7`]: modified UTF-7 mailbox names (RFC 3501 5.1.3), for clients
//!   that have not enabled UTF-8 (RFC 9051 / RFC 6855).
//! - [`pattern`]: LIST/LSUB wildcard matching (RFC 9051 6.3.9).
//! - [`quote`]: strings in responses, quoted or as literals.
//! - [`seq`]: resolving sequence sets against a mailbox view.
//! - [`ext`]: the command syntax imap-codec does not parse yet: SEARCH
//!   RETURN (ESEARCH, RFC 4731) and LIST-EXTENDED (RFC 5258, 5819, 6154).

pub mod ext;
pub mod fuzz;
pub mod pattern;
pub mod quote;
pub mod seq;
pub mod utf7;

pub use imap_codec;
