//! Access tokens: signed JWTs the server issues (`Issuer`), and their verification,
//! with those of a configured external identity provider (`Verifier`); and the client
//! assertions of SMART Backend Services (`private_key_jwt`).
//!
//! Verification refuses expired and not-yet-valid tokens, a wrong signature, issuer or
//! audience, `alg=none` and every algorithm not configured, and malformed tokens. An
//! HMAC key is never accepted from a JWK set (that would let a public key sign).

use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
pub use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::PrivacyError;
use crate::access::Principal;
use crate::keys::{ALGORITHM, SigningKey};
use crate::password::random_bytes;
use crate::role::Role;
use crate::scope::Scopes;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
const LEEWAY_S: u64 = 30;
/// Longest token accepted, in bytes.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Longest a client assertion may live (SMART Backend Services: at most five minutes).
pub const ASSERTION_LIFETIME_MAX_S: u64 = 300;

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

/// Why a token was refused. The messages are safe to send: they name no data.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's issuer is not trusted")]
    WrongIssuer,
    #[error("the token is not for this server (audience)")]
    WrongAudience,
    #[error("the token's algorithm is not accepted")]
    Algorithm,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token is malformed")]
    Malformed,
    #[error("the token lacks a required claim: {0}")]
    MissingClaim(String),
}

fn token_error(error: &jsonwebtoken::errors::Error) -> TokenError {
    match error.kind() {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => TokenError::Algorithm,
        ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
        _ => TokenError::Malformed,
    }
}

/// The claims of the server's own access tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    pub scope: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    pub roles: Vec<Role>,
    /// The launch context's patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
}

/// What a token is issued for.
#[derive(Clone, Debug)]
pub struct Grant {
    pub subject: String,
    pub client_id: Option<String>,
    pub user: Option<String>,
    pub roles: Vec<Role>,
    pub scopes: Scopes,
    pub patient: Option<String>,
}

/// An issued token.
#[derive(Clone, Debug)]
pub struct Issued {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub patient: Option<String>,
}

/// The server as a token issuer.
#[derive(Clone)]
pub struct Issuer {
    /// `iss`: the server's URL.
    pub issuer: String,
    /// `aud`: the FHIR base URL.
    pub audience: String,
    /// Token lifetime, in seconds.
    pub lifetime_s: u64,
    pub key: SigningKey,
    validation: Validation,
}

impl Issuer {
    pub fn new(issuer: String, audience: String, lifetime_s: u64, key: SigningKey) -> Issuer {
        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "nbf"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_S;
        Issuer {
            issuer,
            audience,
            lifetime_s,
            key,
            validation,
        }
    }

    /// Signs a token for `grant`.
    pub fn issue(&self, grant: &Grant) -> Result<Issued, PrivacyError> {
        let now = now();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: grant.subject.clone(),
            aud: self.audience.clone(),
            exp: now + self.lifetime_s,
            iat: now,
            nbf: now,
            jti: URL_SAFE_NO_PAD.encode(random_bytes::<16>()?),
            scope: grant.scopes.to_string(),
            client_id: grant.client_id.clone(),
            user: grant.user.clone(),
            roles: grant.roles.clone(),
            patient: grant.patient.clone(),
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.key.kid.clone());
        header.typ = Some("JWT".into());
        let access_token = jsonwebtoken::encode(&header, &claims, &self.key.encoding)
            .map_err(|error| PrivacyError::Key(format!("cannot sign a token: {error}")))?;
        Ok(Issued {
            access_token,
            expires_in: self.lifetime_s,
            scope: claims.scope,
            patient: claims.patient,
        })
    }

    fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key.decoding, &self.validation)
            .map_err(|error| token_error(&error))?;
        let claims = data.claims;
        Ok(Principal {
            subject: claims.sub,
            client_id: claims.client_id,
            user: claims.user,
            roles: claims.roles,
            scopes: Scopes::parse(&claims.scope),
            patient: claims.patient,
            purpose_of_use: None,
            issuer: claims.iss,
            token_id: Some(claims.jti),
            expires_at: claims.exp,
            unchecked: false,
        })
    }

    /// The public keys that verify this issuer's tokens.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.key.jwk.clone()],
        }
    }
}

/// A trusted external identity provider.
#[derive(Clone)]
pub struct ExternalIssuer {
    pub issuer: String,
    /// The audience its tokens must name (the FHIR base URL).
    pub audience: String,
    /// The claim that holds the role name(s).
    pub role_claim: String,
    /// Its current keys; replaced whole when its JWK set is read again
    /// ([`ExternalIssuer::replace_keys`]), shared by every clone.
    keys: Arc<RwLock<Arc<Vec<VerifyingKey>>>>,
}

#[derive(Clone)]
struct VerifyingKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

/// The algorithms a JWK may verify: its own `alg` if it names one, else those of its
/// curve or RSA; never HMAC or anything else.
fn jwk_algorithms(jwk: &Jwk) -> Vec<Algorithm> {
    let family: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => Vec::new(),
        },
        AlgorithmParameters::RSA(_) => vec![
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        _ => Vec::new(),
    };
    match jwk
        .common
        .key_algorithm
        .and_then(|alg| Algorithm::try_from(alg).ok())
    {
        Some(alg) if family.contains(&alg) => vec![alg],
        Some(_) => Vec::new(),
        None => family,
    }
}

fn verifying_keys(jwks: &JwkSet) -> Vec<VerifyingKey> {
    jwks.keys
        .iter()
        .filter_map(|jwk| {
            let algorithms = jwk_algorithms(jwk);
            if algorithms.is_empty() {
                return None;
            }
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(VerifyingKey {
                kid: jwk.common.key_id.clone(),
                algorithms,
                key,
            })
        })
        .collect()
}

/// The keys of `keys` that may verify a token with this header.
fn candidates<'a>(
    keys: &'a [VerifyingKey],
    header: &'a Header,
    accepted: &'a [Algorithm],
) -> impl Iterator<Item = &'a VerifyingKey> {
    keys.iter().filter(move |key| {
        accepted.contains(&header.alg)
            && key.algorithms.contains(&header.alg)
            && match (&header.kid, &key.kid) {
                (Some(wanted), Some(kid)) => wanted == kid,
                (Some(_), None) | (None, _) => true,
            }
    })
}

/// Parses a JWK set (a file's or a URL's contents).
pub fn parse_jwks(text: &str) -> Result<JwkSet, PrivacyError> {
    let jwks: JwkSet = serde_json::from_str(text)
        .map_err(|error| PrivacyError::Invalid(format!("not a JWK set: {error}")))?;
    if verifying_keys(&jwks).is_empty() {
        return Err(PrivacyError::Invalid(
            "the JWK set has no usable public key (EC P-256/P-384 or RSA)".into(),
        ));
    }
    Ok(jwks)
}

/// The claims we read from an external token.
#[derive(Deserialize)]
struct ExternalClaims {
    iss: String,
    sub: String,
    exp: u64,
    #[serde(default)]
    jti: Option<String>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

/// A claim that is a string or an array of strings (`scp`, roles).
fn strings(value: Option<&serde_json::Value>) -> Vec<String> {
    match value {
        Some(serde_json::Value::String(text)) => {
            text.split_ascii_whitespace().map(str::to_string).collect()
        }
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

impl ExternalIssuer {
    pub fn new(
        issuer: String,
        audience: String,
        role_claim: String,
        jwks: &JwkSet,
    ) -> ExternalIssuer {
        ExternalIssuer {
            issuer,
            audience,
            role_claim,
            keys: Arc::new(RwLock::new(Arc::new(verifying_keys(jwks)))),
        }
    }

    /// Trusts the keys of `jwks` from now on instead of the earlier ones (a key
    /// rotation at the identity provider); returns how many keys it now has. A set
    /// without a usable key changes nothing.
    pub fn replace_keys(&self, jwks: &JwkSet) -> usize {
        let keys = verifying_keys(jwks);
        if keys.is_empty() {
            return self.current_keys().len();
        }
        let count = keys.len();
        match self.keys.write() {
            Ok(mut current) => *current = Arc::new(keys),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(keys),
        }
        count
    }

    fn current_keys(&self) -> Arc<Vec<VerifyingKey>> {
        match self.keys.read() {
            Ok(keys) => keys.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn verify(&self, token: &str, header: &Header) -> Result<Principal, TokenError> {
        let keys = self.current_keys();
        let accepted: Vec<Algorithm> = keys
            .iter()
            .flat_map(|key| key.algorithms.iter().copied())
            .collect();
        if !accepted.contains(&header.alg) {
            return Err(TokenError::Algorithm);
        }
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_S;
        let mut last = TokenError::UnknownKey;
        for key in candidates(&keys, header, &accepted) {
            match jsonwebtoken::decode::<ExternalClaims>(token, &key.key, &validation) {
                Ok(data) => {
                    let claims = data.claims;
                    let mut scope = strings(claims.rest.get("scope"));
                    scope.extend(strings(claims.rest.get("scp")));
                    let roles = strings(claims.rest.get(&self.role_claim))
                        .iter()
                        .filter_map(|name| name.parse().ok())
                        .collect();
                    let text = |name: &str| {
                        claims
                            .rest
                            .get(name)
                            .and_then(|value| value.as_str())
                            .map(str::to_string)
                    };
                    return Ok(Principal {
                        user: Some(claims.sub.clone()),
                        subject: claims.sub,
                        client_id: text("client_id").or_else(|| text("azp")),
                        roles,
                        scopes: Scopes::parse(&scope.join(" ")),
                        patient: text("patient"),
                        purpose_of_use: None,
                        issuer: claims.iss,
                        token_id: claims.jti,
                        expires_at: claims.exp,
                        unchecked: false,
                    });
                }
                Err(error) => last = token_error(&error),
            }
        }
        Err(last)
    }
}

/// Verifies bearer tokens: the server's own, and those of the external issuers.
#[derive(Clone)]
pub struct Verifier {
    pub own: Issuer,
    pub external: Vec<ExternalIssuer>,
}

#[derive(Deserialize)]
struct Peek {
    #[serde(default)]
    iss: Option<String>,
}

impl Verifier {
    /// The principal a bearer token stands for.
    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        if token.len() > MAX_TOKEN_BYTES || token.split('.').count() != 3 {
            return Err(TokenError::Malformed);
        }
        // `alg=none` and unknown algorithms fail here: the header does not parse.
        let header = jsonwebtoken::decode_header(token).map_err(|error| match error.kind() {
            ErrorKind::Json(_) | ErrorKind::InvalidAlgorithmName => TokenError::Algorithm,
            _ => TokenError::Malformed,
        })?;
        // Which issuer to check it against; the signature is checked next.
        let peek: Peek = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| TokenError::Malformed)?;
        let issuer = peek.iss.unwrap_or_default();
        if issuer == self.own.issuer {
            if header.alg != ALGORITHM {
                return Err(TokenError::Algorithm);
            }
            return self.own.verify(token);
        }
        match self
            .external
            .iter()
            .find(|external| external.issuer == issuer)
        {
            Some(external) => external.verify(token, &header),
            None => Err(TokenError::WrongIssuer),
        }
    }
}

/// What a verified client assertion tells.
#[derive(Debug)]
pub struct Assertion {
    pub jti: String,
    pub exp: u64,
}

#[derive(Deserialize)]
struct AssertionClaims {
    exp: u64,
    jti: String,
}

/// The algorithms SMART Backend Services clients sign assertions with.
pub const ASSERTION_ALGORITHMS: [Algorithm; 2] = [Algorithm::RS384, Algorithm::ES384];

/// Verifies a `private_key_jwt` client assertion: signed (RS384 or ES384) by a key of
/// `jwks`, `iss` and `sub` the client id, `aud` the token endpoint, `exp` at most five
/// minutes ahead, and a `jti`. The caller must check the `jti` was not used before.
pub fn verify_assertion(
    assertion: &str,
    client_id: &str,
    jwks: &JwkSet,
    token_url: &str,
) -> Result<Assertion, TokenError> {
    if assertion.len() > MAX_TOKEN_BYTES || assertion.split('.').count() != 3 {
        return Err(TokenError::Malformed);
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| TokenError::Algorithm)?;
    if !ASSERTION_ALGORITHMS.contains(&header.alg) {
        return Err(TokenError::Algorithm);
    }
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[client_id]);
    validation.set_audience(&[token_url]);
    validation.sub = Some(client_id.to_string());
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub", "jti"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_S;
    let keys = verifying_keys(jwks);
    let mut last = TokenError::UnknownKey;
    for key in candidates(&keys, &header, &ASSERTION_ALGORITHMS) {
        match jsonwebtoken::decode::<AssertionClaims>(assertion, &key.key, &validation) {
            Ok(data) => {
                let claims = data.claims;
                if claims.exp > now() + ASSERTION_LIFETIME_MAX_S + LEEWAY_S {
                    return Err(TokenError::MissingClaim(
                        "exp at most five minutes ahead".into(),
                    ));
                }
                if claims.jti.is_empty() {
                    return Err(TokenError::MissingClaim("jti".into()));
                }
                return Ok(Assertion {
                    jti: claims.jti,
                    exp: claims.exp,
                });
            }
            Err(error) => last = token_error(&error),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(audience: &str) -> Issuer {
        Issuer::new(
            "http://server".into(),
            audience.into(),
            300,
            SigningKey::generate().unwrap(),
        )
    }

    fn grant() -> Grant {
        Grant {
            subject: "app".into(),
            client_id: Some("app".into()),
            user: None,
            roles: vec![Role::Clinician],
            scopes: Scopes::parse("system/Observation.rs"),
            patient: Some("p1".into()),
        }
    }

    fn verifier(own: Issuer) -> Verifier {
        Verifier {
            own,
            external: Vec::new(),
        }
    }

    #[test]
    fn an_issued_token_verifies_into_its_principal() {
        let issuer = issuer("http://server/fhir");
        let token = issuer.issue(&grant()).unwrap().access_token;
        let principal = verifier(issuer).verify(&token).unwrap();
        assert_eq!(principal.subject, "app");
        assert_eq!(principal.roles, vec![Role::Clinician]);
        assert_eq!(principal.patient(), Some("p1"));
        assert_eq!(principal.scopes.to_string(), "system/Observation.rs");
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let issuer = issuer("http://server/fhir");
        let token = issuer.issue(&grant()).unwrap().access_token;
        // Another key, same issuer name: the signature fails.
        let other = self::issuer("http://server/fhir");
        assert_eq!(
            verifier(other).verify(&token).unwrap_err(),
            TokenError::BadSignature
        );
        // Another audience.
        let elsewhere = Issuer::new(
            "http://server".into(),
            "http://other/fhir".into(),
            300,
            issuer.key.clone(),
        );
        assert_eq!(
            verifier(elsewhere).verify(&token).unwrap_err(),
            TokenError::WrongAudience
        );
        let verifier = verifier(issuer);
        // alg=none, with the same claims and no signature.
        let parts: Vec<&str> = token.split('.').collect();
        let none = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
            parts[1]
        );
        assert_eq!(verifier.verify(&none).unwrap_err(), TokenError::Algorithm);
        assert_eq!(verifier.verify("abc").unwrap_err(), TokenError::Malformed);
        assert_eq!(verifier.verify("a.b.c").unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let issuer = issuer("http://server/fhir");
        let claims = Claims {
            iss: "http://server".into(),
            sub: "app".into(),
            aud: "http://server/fhir".into(),
            exp: now() - 600,
            iat: now() - 900,
            nbf: now() - 900,
            jti: "j".into(),
            scope: String::new(),
            client_id: None,
            user: None,
            roles: Vec::new(),
            patient: None,
        };
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(issuer.key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &issuer.key.encoding).unwrap();
        assert_eq!(
            verifier(issuer).verify(&token).unwrap_err(),
            TokenError::Expired
        );
    }

    #[test]
    fn jwk_sets_never_yield_hmac_keys() {
        let jwks = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","alg":"HS256"}]}"#;
        assert!(parse_jwks(jwks).is_err());
    }

    #[test]
    fn an_external_issuers_keys_can_be_replaced_while_in_use() {
        let idp = |key| Issuer::new("http://idp".into(), "http://server/fhir".into(), 300, key);
        let (first, second) = (
            idp(SigningKey::generate().unwrap()),
            idp(SigningKey::generate().unwrap()),
        );
        let external = ExternalIssuer::new(
            "http://idp".into(),
            "http://server/fhir".into(),
            "roles".into(),
            &first.jwks(),
        );
        let verifier = Verifier {
            own: issuer("http://server/fhir"),
            external: vec![external.clone()],
        };
        let (old, new) = (
            first.issue(&grant()).unwrap().access_token,
            second.issue(&grant()).unwrap().access_token,
        );
        assert_eq!(verifier.verify(&old).unwrap().issuer, "http://idp");
        assert!(verifier.verify(&new).is_err());
        // The provider rotated its key: a clone of the issuer (the one a refresh
        // holds) replaces the keys the verifier uses.
        assert_eq!(external.replace_keys(&second.jwks()), 1);
        assert_eq!(verifier.verify(&new).unwrap().issuer, "http://idp");
        assert!(verifier.verify(&old).is_err());
        // A set with no usable key leaves the keys as they are.
        assert_eq!(external.replace_keys(&JwkSet { keys: Vec::new() }), 1);
        assert!(verifier.verify(&new).is_ok());
    }
}
