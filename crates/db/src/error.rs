//! The crate's single error type.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// Why a database operation failed, grouped by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A setting is missing or malformed: fix the configuration (startup fails).
    #[error("database configuration: {0}")]
    Config(String),
    /// The server could not be reached, a connection broke or the pool timed out:
    /// transient, retry later (HTTP 503, message retry queue).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// The row does not exist (HTTP 404).
    #[error("record not found")]
    NotFound,
    /// A unique constraint rejected the write: the thing already exists (HTTP 409).
    #[error("conflicts with an existing record (constraint `{constraint}`)")]
    Conflict {
        /// The violated constraint or index, e.g. `hosts_name_key`.
        constraint: String,
    },
    /// A check, foreign-key or not-null constraint rejected the write: the input is
    /// invalid or refers to something missing (HTTP 422 / permanent message failure).
    #[error("violates constraint `{constraint}`: {message}")]
    Constraint {
        /// The violated constraint, when the server named it.
        constraint: String,
        /// The server's message.
        message: String,
    },
    /// The transaction lost a serialization or deadlock race: retry it as a whole.
    #[error("transaction conflict, retry: {0}")]
    Retry(String),
    /// Any other query failure: a bug or an unexpected server state.
    #[error("database query failed")]
    Query(#[source] DieselError),
    /// Applying or reverting migrations failed.
    #[error("migration failed: {0}")]
    Migration(String),
    /// A stored value does not parse into its domain type (e.g. an unknown enum spelling):
    /// the database and the code disagree; a bug or a bad manual edit.
    #[error("invalid stored data: {0}")]
    InvalidData(String),
    /// A message could not be encoded to JSON for the outbox.
    #[error("could not encode message payload")]
    Encode(#[source] serde_json::Error),
    /// The outbox publisher failed; the rows stay and are published again later.
    #[error("publishing outbox messages failed")]
    Publish(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl DbError {
    /// Whether trying again later may succeed (the cause is not the request itself).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Retry(_) | Self::Publish(_))
    }
}

impl From<DieselError> for DbError {
    fn from(err: DieselError) -> Self {
        match err {
            DieselError::NotFound => Self::NotFound,
            DieselError::DatabaseError(kind, info) => {
                let constraint = info.constraint_name().unwrap_or_default().to_owned();
                match kind {
                    DatabaseErrorKind::UniqueViolation => Self::Conflict { constraint },
                    DatabaseErrorKind::ForeignKeyViolation
                    | DatabaseErrorKind::CheckViolation
                    | DatabaseErrorKind::NotNullViolation => {
                        Self::Constraint { constraint, message: info.message().to_owned() }
                    }
                    DatabaseErrorKind::SerializationFailure => Self::Retry(info.message().to_owned()),
                    DatabaseErrorKind::ClosedConnection => Self::Unavailable(info.message().to_owned()),
                    other => Self::Query(DieselError::DatabaseError(other, info)),
                }
            }
            DieselError::BrokenTransactionManager => {
                Self::Unavailable("connection left in a broken transaction state".to_owned())
            }
            other => Self::Query(other),
        }
    }
}

impl From<diesel::ConnectionError> for DbError {
    fn from(err: diesel::ConnectionError) -> Self {
        match err {
            diesel::ConnectionError::InvalidConnectionUrl(msg) => {
                Self::Config(format!("invalid database URL: {msg}"))
            }
            other => Self::Unavailable(other.to_string()),
        }
    }
}

impl From<deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>> for DbError {
    fn from(err: deadpool::managed::PoolError<diesel_async::pooled_connection::PoolError>) -> Self {
        Self::Unavailable(err.to_string())
    }
}
