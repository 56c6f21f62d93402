//! The store's error type, and its one mapping to gRPC status codes.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    AlreadyExists(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("invalid credentials")]
    BadCredentials,
    #[error("missing, expired or forged session token")]
    BadSession,
    #[error("too many failed logins; try again later")]
    Throttled,
    #[error("quota exceeded")]
    OverQuota,
    #[error("{0}")]
    Precondition(&'static str),
    #[error("message too large")]
    TooLarge,
    #[error("database unavailable: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Whether a retry may succeed (the caller should answer with a
    /// temporary error: SMTP 451, IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]).
    pub fn is_temporary(&self) -> bool {
        matches!(self, StoreError::Database(_) | StoreError::Throttled)
    }
}

/// Stable machine-readable reasons, sent in the status message prefix so that
/// gateways can pick the protocol response code (e.g. IMAP `[OVERQUOTA]`).
pub mod reason {
    pub const OVER_QUOTA: &str = "over-quota";
    pub const THROTTLED: &str = "throttled";
    pub const TOO_LARGE: &str = "too-large";
    pub const NONEXISTENT: &str = "nonexistent";
    pub const ALREADY_EXISTS: &str = "already-exists";
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        use reason::*;
        match &e {
            StoreError::NotFound(_) => Status::new(Code::NotFound, format!("{NONEXISTENT}: {e}")),
            StoreError::AlreadyExists(_) => {
                Status::new(Code::AlreadyExists, format!("{ALREADY_EXISTS}: {e}"))
            }
            StoreError::Invalid(_) => Status::invalid_argument(e.to_string()),
            StoreError::BadCredentials | StoreError::BadSession => {
                Status::unauthenticated(e.to_string())
            }
            StoreError::Throttled => {
                Status::new(Code::ResourceExhausted, format!("{THROTTLED}: {e}"))
            }
            StoreError::OverQuota => {
                Status::new(Code::ResourceExhausted, format!("{OVER_QUOTA}: {e}"))
            }
            StoreError::TooLarge => Status::new(Code::OutOfRange, format!("{TOO_LARGE}: {e}")),
            StoreError::Precondition(_) => Status::failed_precondition(e.to_string()),
            StoreError::Database(inner) => {
                tracing::warn!(error = %inner, "database error");
                Status::unavailable("database unavailable")
            }
            StoreError::Migrate(_) | StoreError::Internal(_) => {
                tracing::error!(error = %e, "internal store error");
                Status::internal("internal store error")
            }
        }
    }
}
