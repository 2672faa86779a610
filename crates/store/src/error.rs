use std::fmt;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The resource to change does not exist.
    NotFound,
    /// `If-Match` named a version that is not the current one.
    VersionMismatch { expected: u64, current: Option<u64> },
    /// The body is not a resource the store can keep.
    Invalid(String),
    /// The store cannot be opened as configured.
    Config(String),
    /// The database failed.
    Backend(String),
    /// The database cannot be reached (connection lost or refused, server shutting
    /// down): the operation was not done, or its outcome is unknown, and it may succeed
    /// when the database is back.
    Unavailable(String),
    /// The database takes no writes (a read replica, or a server in read-only mode):
    /// nothing was written; the write belongs on the primary.
    ReadOnly(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound => write!(f, "resource not found"),
            StoreError::VersionMismatch {
                expected,
                current: Some(current),
            } => write!(
                f,
                "version conflict: If-Match names version {expected}, the current version is {current}"
            ),
            StoreError::VersionMismatch {
                expected,
                current: None,
            } => write!(
                f,
                "version conflict: If-Match names version {expected}, but the resource does not exist"
            ),
            StoreError::Invalid(message) => write!(f, "{message}"),
            StoreError::Config(message) => write!(f, "{message}"),
            StoreError::Backend(message) => write!(f, "database error: {message}"),
            StoreError::Unavailable(message) => write!(f, "database unavailable: {message}"),
            StoreError::ReadOnly(message) => write!(f, "database is read-only: {message}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        StoreError::Backend(error.to_string())
    }
}

/// Why a set of writes that must all apply did not: the first write that failed, by its
/// position, and its error. None of the writes was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionError {
    pub index: usize,
    pub error: StoreError,
}

impl From<StoreError> for TransactionError {
    fn from(error: StoreError) -> TransactionError {
        TransactionError { index: 0, error }
    }
}

impl fmt::Display for TransactionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "write {}: {}", self.index, self.error)
    }
}

impl std::error::Error for TransactionError {}
