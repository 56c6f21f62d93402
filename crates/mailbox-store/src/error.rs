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

/// What a database error says about the server behind the store's stable
/// address, for the pool's handling. Every kind is answered as a temporary
/// failure (gRPC UNAVAILABLE): a failover, a restart or a conflict passes,
/// and the client retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbFault {
    /// SQLSTATE 25006 (read_only_sql_transaction): the server is a
    /// standby now (a primary demoted behind the address, or one reached
    /// before the address followed the new leader). The connection must
    /// not be used again: the pool drops its connections of before.
    ReadOnly,
    /// The server went away or is not there yet: 57P01/57P02/57P03 (admin
    /// or crash shutdown, cannot connect now), class 08 (connection
    /// exception), an I/O or TLS error, no connection to be had in time.
    Gone,
    /// 40001/40P01 (serialization failure, deadlock): another transaction
    /// won; the same call succeeds when tried again.
    Conflict,
    /// Anything else (a constraint, a bad value): still answered as
    /// temporary, as every database error always was here.
    Other,
}

impl DbFault {
    /// Classifies an sqlx error by its SQLSTATE or kind.
    pub fn of(e: &sqlx::Error) -> DbFault {
        match e {
            sqlx::Error::Database(d) => {
                let code = d.code();
                match code.as_deref() {
                    Some("25006") => DbFault::ReadOnly,
                    Some("57P01" | "57P02" | "57P03") => DbFault::Gone,
                    Some(c) if c.starts_with("08") => DbFault::Gone,
                    Some("40001" | "40P01") => DbFault::Conflict,
                    _ => DbFault::Other,
                }
            }
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::BeginFailed => DbFault::Gone,
            _ => DbFault::Other,
        }
    }
}

impl StoreError {
    /// Whether a retry may succeed (the caller should answer with a
    /// temporary error: SMTP 451, IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]).
    pub fn is_temporary(&self) -> bool {
        matches!(self, StoreError::Database(_) | StoreError::Throttled)
    }

    /// The database error's kind, when this is one.
    pub fn db_fault(&self) -> Option<DbFault> {
        match self {
            StoreError::Database(e) => Some(DbFault::of(e)),
            _ => None,
        }
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
    /// A request past one of the store's bounds (INVALID_ARGUMENT; IMAP
    /// `NO [LIMIT]`).
    pub const LIMIT: &str = "limit";
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
            // Whatever the kind (a failover's read-only server or lost
            // connection, a conflict): temporary, never INTERNAL, so the
            // gateways answer SMTP 451, IMAP NO [UNAVAILABLE], POP3 -ERR
            // [SYS/TEMP] and keep their sessions.
            StoreError::Database(inner) => {
                let fault = DbFault::of(inner);
                tracing::warn!(error = %inner, ?fault, "database error");
                Status::unavailable(match fault {
                    DbFault::ReadOnly => "database unavailable: server is read-only (failover)",
                    _ => "database unavailable",
                })
            }
            StoreError::Migrate(_) | StoreError::Internal(_) => {
                tracing::error!(error = %e, "internal store error");
                Status::internal("internal store error")
            }
        }
    }
}
