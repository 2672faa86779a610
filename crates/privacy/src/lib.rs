//! Who may see what: identities, credentials, tokens, SMART scopes and HIM roles, and
//! the one decision of whether a principal may do an interaction on a resource type.
//! The accounting of disclosures (`disclosure`). Sensitive-data labels (`labels`) and
//! patient consents (`consent`) narrow what a permitted principal sees; later, the audit
//! trail.
//!
//! It knows nothing about HTTP: the server turns requests into `Principal`s and
//! `Interaction`s and asks `access::decide`.

pub mod access;
pub mod account;
pub mod consent;
pub mod disclosure;
mod error;
pub mod glass;
pub mod keys;
pub mod labels;
pub mod password;
pub mod role;
pub mod scope;
pub mod token;

pub use access::{Decision, Interaction, Principal, decide};
pub use error::PrivacyError;
pub use role::Role;
pub use scope::{Context, Scopes};

/// The JWK set types, for callers that keep client keys.
pub use jsonwebtoken::jwk::JwkSet;
