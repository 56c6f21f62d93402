//! What every service shares, so each `main.rs` stays a few lines: config
//! loading ([`config`]), tracing ([`telemetry`]), rustls ([`tls`]), the
//! bounded accept loop and graceful shutdown ([`server`]), and the trusted
//! network list that decides where plaintext passwords are allowed
//! ([`net`]).

pub mod config;
pub mod conn;
pub mod health;
pub mod limit;
pub mod metrics;
pub mod net;
pub mod server;
pub mod telemetry;
pub mod tls;

pub use tokio_util::sync::CancellationToken;
