//! The errors of the privacy layer.

use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Bad input from an operator or client: the message says what.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    Exists(String),
    /// Key material that cannot be used (a stored or configured key, not a client's).
    #[error("key: {0}")]
    Key(String),
}
