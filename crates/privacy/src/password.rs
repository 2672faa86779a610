//! Secrets: argon2id hashes of passwords and client secrets, and fresh random secrets.

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::PrivacyError;

/// Shortest password or client secret accepted.
pub const MIN_SECRET_CHARS: usize = 12;
/// Longest accepted: hashing cost grows with length, so a huge one is a cheap attack.
pub const MAX_SECRET_BYTES: usize = 1024;

/// The argon2id hash (PHC string: algorithm, parameters, salt, hash) of `secret`.
pub fn hash(secret: &str) -> Result<String, PrivacyError> {
    if secret.chars().count() < MIN_SECRET_CHARS {
        return Err(PrivacyError::Invalid(format!(
            "a password or secret needs at least {MIN_SECRET_CHARS} characters"
        )));
    }
    if secret.len() > MAX_SECRET_BYTES {
        return Err(PrivacyError::Invalid(format!(
            "a password or secret may have at most {MAX_SECRET_BYTES} bytes"
        )));
    }
    Argon2::default()
        .hash_password(secret.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| PrivacyError::Key(format!("cannot hash the secret: {error}")))
}

/// Whether `secret` matches `hash` (a malformed hash matches nothing).
pub fn verify(secret: &str, hash: &str) -> bool {
    secret.len() <= MAX_SECRET_BYTES
        && Argon2::default()
            .verify_password(secret.as_bytes(), hash)
            .is_ok()
}

/// A fresh random secret: 32 bytes from the operating system, base64url.
pub fn generate_secret() -> Result<String, PrivacyError> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], PrivacyError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)
        .map_err(|error| PrivacyError::Key(format!("no randomness from the system: {error}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_secret_only() {
        let hashed = hash("correct horse battery").unwrap();
        assert!(hashed.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &hashed));
        assert!(!verify("correct horse batterY", &hashed));
        assert!(!verify("correct horse battery", "not a hash"));
    }

    #[test]
    fn short_secrets_are_refused_and_generated_ones_differ() {
        assert!(hash("short").is_err());
        let (a, b) = (generate_secret().unwrap(), generate_secret().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }
}
