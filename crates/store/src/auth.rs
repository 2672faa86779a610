//! The privacy layer's records: accounts, grants and keys as JSON documents by kind and
//! id, and keys that may be used only once (client assertion ids) until they expire.
//!
//! The store does not know what the documents mean; `privacy` does. These tables are
//! not FHIR resources and no FHIR interaction reaches them.

/// What kind of record a document is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// An OAuth client.
    Client,
    /// A local user account.
    User,
    /// A key pair the server signs its tokens with.
    SigningKey,
    /// A break-the-glass grant: a principal's access to one patient's restricted data,
    /// until it expires.
    BreakGlass,
}

impl AuthKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthKind::Client => "client",
            AuthKind::User => "user",
            AuthKind::SigningKey => "signing_key",
            AuthKind::BreakGlass => "break_glass",
        }
    }
}
