//! Accounts: OAuth clients and local users, with their roles, allowed scopes and
//! credentials, kept in the store (`store::AuthKind`) as JSON documents.
//!
//! A client authenticates with a client secret (its argon2 hash is kept) or with a
//! signed assertion checked against its public JWK set (`private_key_jwt`). A user has an
//! argon2 password hash. Either may be registered as a recipient outside the
//! organisation (`Recipient`), whose reads are disclosures. Grants (`grant`, `revoke`) add or remove roles and scopes.

use jsonwebtoken::jwk::JwkSet;
use serde::{Deserialize, Serialize};
use store::{AuthKind, Store};

use crate::PrivacyError;
use crate::disclosure::Recipient;
use crate::role::Role;
use crate::scope::Scopes;

/// An OAuth client.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Client {
    pub id: String,
    pub name: String,
    pub roles: Vec<Role>,
    /// The scopes it may be granted, space-separated.
    pub scopes: String,
    /// The argon2 hash of its secret (`client_secret_basic`, `client_secret_post`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Its public keys (`private_key_jwt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<JwkSet>,
    /// The patient its tokens are limited to (a patient-facing app of one patient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The party outside the organisation it acts for: what it reads is disclosed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
}

/// A local user account.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub password_hash: String,
    pub roles: Vec<Role>,
    /// Scopes granted beyond what the roles imply, space-separated (may be empty).
    #[serde(default)]
    pub scopes: String,
    /// The user's own Patient id, for the patient role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The party outside the organisation the user acts for: what it reads is disclosed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<Recipient>,
}

/// What a grant or revocation changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Client(String),
    User(String),
}

/// Longest client id or user name.
const MAX_NAME_BYTES: usize = 128;

/// Client ids and user names: letters, digits and `-._@`, so they are safe in logs,
/// URLs and the `sub` claim.
pub fn check_name(what: &str, name: &str) -> Result<(), PrivacyError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '@'));
    if ok {
        Ok(())
    } else {
        Err(PrivacyError::Invalid(format!(
            "a {what} is 1 to {MAX_NAME_BYTES} letters, digits, '-', '.', '_' or '@'"
        )))
    }
}

fn check_scopes(scopes: &str) -> Result<(), PrivacyError> {
    Scopes::parse_strict(scopes)
        .map(|_| ())
        .map_err(PrivacyError::Invalid)
}

fn to_json<T: Serialize>(value: &T) -> Result<String, PrivacyError> {
    serde_json::to_string(value).map_err(|error| PrivacyError::Invalid(error.to_string()))
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, text: &str) -> Result<T, PrivacyError> {
    serde_json::from_str(text)
        .map_err(|error| PrivacyError::Key(format!("stored {what} is unreadable: {error}")))
}

/// Stores a new client; refuses an id already taken.
pub async fn create_client(store: &Store, client: &Client) -> Result<(), PrivacyError> {
    check_name("client id", &client.id)?;
    check_scopes(&client.scopes)?;
    if client.secret_hash.is_none() && client.jwks.is_none() {
        return Err(PrivacyError::Invalid(
            "a client needs a secret or a JWK set".into(),
        ));
    }
    let created = store
        .auth_put(AuthKind::Client, &client.id, &to_json(client)?, true)
        .await?;
    if !created {
        return Err(PrivacyError::Exists(format!("client {:?}", client.id)));
    }
    Ok(())
}

pub async fn client(store: &Store, id: &str) -> Result<Option<Client>, PrivacyError> {
    match store.auth_get(AuthKind::Client, id).await? {
        Some(text) => Ok(Some(from_json("client", &text)?)),
        None => Ok(None),
    }
}

/// How many clients and users there are (a server with none tells how to create one).
pub async fn count(store: &Store) -> Result<usize, PrivacyError> {
    Ok(store.auth_list(AuthKind::Client).await?.len()
        + store.auth_list(AuthKind::User).await?.len())
}

/// Stores a new user; refuses a name already taken.
pub async fn create_user(store: &Store, user: &User) -> Result<(), PrivacyError> {
    check_name("user name", &user.username)?;
    check_scopes(&user.scopes)?;
    let created = store
        .auth_put(AuthKind::User, &user.username, &to_json(user)?, true)
        .await?;
    if !created {
        return Err(PrivacyError::Exists(format!("user {:?}", user.username)));
    }
    Ok(())
}

pub async fn user(store: &Store, username: &str) -> Result<Option<User>, PrivacyError> {
    match store.auth_get(AuthKind::User, username).await? {
        Some(text) => Ok(Some(from_json("user", &text)?)),
        None => Ok(None),
    }
}

/// Adds (`add`) or removes roles and scopes of a client or user.
pub async fn change_grants(
    store: &Store,
    target: &Target,
    roles: &[Role],
    scopes: &str,
    add: bool,
) -> Result<(), PrivacyError> {
    check_scopes(scopes)?;
    let edit = |current_roles: &mut Vec<Role>, current_scopes: &mut String| {
        let mut words: Vec<String> = current_scopes
            .split_ascii_whitespace()
            .map(str::to_string)
            .collect();
        for role in roles {
            if add && !current_roles.contains(role) {
                current_roles.push(*role);
            } else if !add {
                current_roles.retain(|current| current != role);
            }
        }
        for word in scopes.split_ascii_whitespace() {
            if add && !words.iter().any(|current| current == word) {
                words.push(word.to_string());
            } else if !add {
                words.retain(|current| current != word);
            }
        }
        *current_scopes = words.join(" ");
    };
    match target {
        Target::Client(id) => {
            let mut client = client(store, id)
                .await?
                .ok_or_else(|| PrivacyError::NotFound(format!("client {id:?}")))?;
            edit(&mut client.roles, &mut client.scopes);
            store
                .auth_put(AuthKind::Client, id, &to_json(&client)?, false)
                .await?;
        }
        Target::User(name) => {
            let mut user = user(store, name)
                .await?
                .ok_or_else(|| PrivacyError::NotFound(format!("user {name:?}")))?;
            edit(&mut user.roles, &mut user.scopes);
            store
                .auth_put(AuthKind::User, name, &to_json(&user)?, false)
                .await?;
        }
    }
    Ok(())
}
