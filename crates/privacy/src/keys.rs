//! The key pair the server signs its access tokens with: ES256 (P-256), generated at
//! first start and kept in the store, or read from a PKCS#8 PEM file that the operator
//! supplies. Never in code.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Serialize};
use store::{AuthKind, Store};

use crate::PrivacyError;
use crate::password::random_bytes;

/// The algorithm of the server's own tokens.
pub const ALGORITHM: Algorithm = Algorithm::ES256;

/// The id the current key is stored under.
const CURRENT: &str = "current";

/// A signing key with what verifies it.
#[derive(Clone)]
pub struct SigningKey {
    /// The key id (`kid`): the public key's JWK thumbprint.
    pub kid: String,
    pub encoding: EncodingKey,
    pub decoding: DecodingKey,
    /// The public key as a JWK, with `kid`, `alg` and `use`.
    pub jwk: Jwk,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    alg: String,
    /// The PKCS#8 DER of the private key, base64.
    pkcs8: String,
}

impl SigningKey {
    fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, PrivacyError> {
        // Checks the key before jsonwebtoken sees it, with a clear error.
        p256::ecdsa::SigningKey::from_pkcs8_der(der)
            .map_err(|error| PrivacyError::Key(format!("not a P-256 PKCS#8 key: {error}")))?;
        let encoding = EncodingKey::from_ec_der(der);
        let mut jwk = Jwk::from_encoding_key(&encoding, ALGORITHM)
            .map_err(|error| PrivacyError::Key(error.to_string()))?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|error| PrivacyError::Key(error.to_string()))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let decoding =
            DecodingKey::from_jwk(&jwk).map_err(|error| PrivacyError::Key(error.to_string()))?;
        Ok(SigningKey {
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    /// A fresh P-256 key from the operating system's randomness.
    pub fn generate() -> Result<SigningKey, PrivacyError> {
        let der = generate_der()?;
        SigningKey::from_pkcs8_der(&der)
    }

    /// A key from a PKCS#8 PEM file (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pem(pem: &str) -> Result<SigningKey, PrivacyError> {
        let key = p256::ecdsa::SigningKey::from_pkcs8_pem(pem).map_err(|error| {
            PrivacyError::Key(format!("not a P-256 PKCS#8 PEM private key: {error}"))
        })?;
        let der = key
            .to_pkcs8_der()
            .map_err(|error| PrivacyError::Key(error.to_string()))?;
        SigningKey::from_pkcs8_der(der.as_bytes())
    }

    /// The key kept in the store, made and stored first if there is none (when two
    /// servers start at once, both end up with the one stored first).
    pub async fn load_or_create(store: &Store) -> Result<SigningKey, PrivacyError> {
        if let Some(key) = load(store).await? {
            return Ok(key);
        }
        let der = generate_der()?;
        let stored = Stored {
            alg: "ES256".into(),
            pkcs8: STANDARD.encode(&der),
        };
        let text =
            serde_json::to_string(&stored).map_err(|error| PrivacyError::Key(error.to_string()))?;
        store
            .auth_put(AuthKind::SigningKey, CURRENT, &text, true)
            .await?;
        load(store)
            .await?
            .ok_or_else(|| PrivacyError::Key("the stored signing key vanished".into()))
    }
}

async fn load(store: &Store) -> Result<Option<SigningKey>, PrivacyError> {
    let Some(text) = store.auth_get(AuthKind::SigningKey, CURRENT).await? else {
        return Ok(None);
    };
    let stored: Stored = serde_json::from_str(&text)
        .map_err(|error| PrivacyError::Key(format!("the stored signing key: {error}")))?;
    if stored.alg != "ES256" {
        return Err(PrivacyError::Key(format!(
            "the stored signing key is {}, not ES256",
            stored.alg
        )));
    }
    let der = STANDARD
        .decode(&stored.pkcs8)
        .map_err(|error| PrivacyError::Key(format!("the stored signing key: {error}")))?;
    SigningKey::from_pkcs8_der(&der).map(Some)
}

fn generate_der() -> Result<Vec<u8>, PrivacyError> {
    // A random 32-byte string is a valid scalar but for a negligible few; try again then.
    for _ in 0..8 {
        let bytes = random_bytes::<32>()?;
        if let Ok(key) = p256::ecdsa::SigningKey::from_slice(&bytes) {
            let der = key
                .to_pkcs8_der()
                .map_err(|error| PrivacyError::Key(error.to_string()))?;
            return Ok(der.as_bytes().to_vec());
        }
    }
    Err(PrivacyError::Key("could not generate a P-256 key".into()))
}
