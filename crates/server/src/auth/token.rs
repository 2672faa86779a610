//! `POST /auth/token`: the client-credentials grant (RFC 6749 4.4), the client
//! authenticated by its secret (`client_secret_basic`, `client_secret_post`) or by a
//! signed assertion (`private_key_jwt`, SMART Backend Services); and the password grant
//! of local users through such a client (`password.rs`).
//!
//! The granted scope is what was asked for (all the client may have when nothing was)
//! as far as the client's allowed scopes cover it. An assertion's `jti` is recorded in
//! the store until the assertion expires (`Store::use_once`), so a replay is refused
//! even after a restart or on another server of the same database. Errors are RFC 6749
//! JSON: `invalid_client` 401, `invalid_request`, `invalid_grant`, `invalid_scope` and
//! `unsupported_grant_type` 400.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use privacy::account::Client;
use privacy::token::{Grant, now, verify_assertion};
use privacy::{PrivacyError, Scopes};
use serde_json::json;

use super::Auth;
use super::smart::token_url;
use crate::AppState;

/// Largest token request body.
const MAX_BODY_BYTES: usize = 64 * 1024;
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An RFC 6749 error answer.
pub(super) struct OAuthError {
    status: StatusCode,
    code: &'static str,
    description: String,
}

pub(super) fn error(
    status: StatusCode,
    code: &'static str,
    description: impl Into<String>,
) -> OAuthError {
    OAuthError {
        status,
        code,
        description: description.into(),
    }
}

fn invalid_client(description: impl Into<String>) -> OAuthError {
    error(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

pub(super) fn invalid_request(description: impl Into<String>) -> OAuthError {
    error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

pub(super) fn server_error(error: PrivacyError) -> OAuthError {
    tracing::error!(%error, "token endpoint failure");
    OAuthError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        code: "server_error",
        description: "the token could not be issued".into(),
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.code, "error_description": self.description});
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"custodian\""),
            );
        }
        response
    }
}

/// How the client proves who it is.
pub(super) enum Credentials {
    Secret {
        client_id: String,
        secret: String,
    },
    Assertion {
        client_id: String,
        assertion: String,
    },
}

pub(super) fn form_value<'a>(
    form: &'a [(String, String)],
    name: &str,
) -> Result<Option<&'a str>, OAuthError> {
    let mut values = form.iter().filter(|(key, _)| key == name);
    let first = values.next().map(|(_, value)| value.as_str());
    if values.next().is_some() {
        return Err(invalid_request(format!("{name} is repeated")));
    }
    Ok(first)
}

fn basic(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let text = value.to_str().unwrap_or("");
    let Some((scheme, encoded)) = text.split_once(' ') else {
        return Err(invalid_client("the Authorization header is malformed"));
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(invalid_client(
            "the token endpoint takes Basic authentication",
        ));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| invalid_client("the Basic credentials are malformed"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| invalid_client("the Basic credentials are malformed"))?;
    // RFC 6749 2.3.1: both parts are form-urlencoded.
    let decode = |text: &str| -> String {
        form_urlencoded::parse(format!("x={text}").as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

pub(super) fn credentials(
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<Credentials, OAuthError> {
    let basic = basic(headers)?;
    let form_id = form_value(form, "client_id")?;
    let form_secret = form_value(form, "client_secret")?;
    let assertion_type = form_value(form, "client_assertion_type")?;
    let assertion = form_value(form, "client_assertion")?;
    let methods = usize::from(basic.is_some())
        + usize::from(form_secret.is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(invalid_request(
            "use one client authentication method, not several",
        ));
    }
    if let Some((client_id, secret)) = basic {
        if form_id.is_some_and(|id| id != client_id) {
            return Err(invalid_request(
                "client_id differs from the Basic credentials",
            ));
        }
        return Ok(Credentials::Secret { client_id, secret });
    }
    if let Some(secret) = form_secret {
        let client_id = form_id.ok_or_else(|| invalid_request("client_id is missing"))?;
        return Ok(Credentials::Secret {
            client_id: client_id.to_string(),
            secret: secret.to_string(),
        });
    }
    if let Some(assertion) = assertion {
        if assertion_type != Some(JWT_BEARER) {
            return Err(invalid_request(format!(
                "client_assertion_type must be {JWT_BEARER}"
            )));
        }
        // Whose key to check it with: the assertion's issuer, verified with it next.
        let claimed = jsonwebtoken_issuer(assertion)
            .ok_or_else(|| invalid_client("the client assertion is malformed"))?;
        if form_id.is_some_and(|id| id != claimed) {
            return Err(invalid_client(
                "client_id differs from the assertion's issuer",
            ));
        }
        return Ok(Credentials::Assertion {
            client_id: claimed,
            assertion: assertion.to_string(),
        });
    }
    Err(invalid_client("no client authentication"))
}

/// The `iss` of a JWT, unverified.
fn jsonwebtoken_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

pub(super) async fn authenticate_client(
    state: &AppState,
    credentials: Credentials,
) -> Result<Client, OAuthError> {
    let client_id = match &credentials {
        Credentials::Secret { client_id, .. } | Credentials::Assertion { client_id, .. } => {
            client_id.clone()
        }
    };
    let unknown = || invalid_client("unknown client or bad credentials");
    crate::audit::note_client(&client_id);
    if privacy::account::check_name("client id", &client_id).is_err() {
        return Err(unknown());
    }
    let client = privacy::account::client(&state.store, &client_id)
        .await
        .map_err(server_error)?
        .ok_or_else(unknown)?;
    match credentials {
        Credentials::Secret { secret, .. } => {
            let Some(hash) = client.secret_hash.clone() else {
                return Err(invalid_client(
                    "this client authenticates with private_key_jwt",
                ));
            };
            // argon2 takes tens of milliseconds: off the async threads.
            let matches =
                tokio::task::spawn_blocking(move || privacy::password::verify(&secret, &hash))
                    .await
                    .unwrap_or(false);
            if !matches {
                return Err(unknown());
            }
        }
        Credentials::Assertion { assertion, .. } => {
            let Some(jwks) = &client.jwks else {
                return Err(invalid_client("this client authenticates with a secret"));
            };
            let checked = verify_assertion(&assertion, &client.id, jwks, &token_url(&state.config))
                .map_err(|error| invalid_client(format!("client assertion: {error}")))?;
            let key = format!("{}:{}", client.id, checked.jti);
            let first = state
                .store
                .use_once(
                    &key,
                    i64::try_from(checked.exp).unwrap_or(i64::MAX),
                    i64::try_from(now()).unwrap_or(i64::MAX),
                )
                .await
                .map_err(|error| server_error(error.into()))?;
            if !first {
                return Err(invalid_client(
                    "client assertion: this jti was used already",
                ));
            }
        }
    }
    Ok(client)
}

/// `POST /auth/token`
pub(crate) async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match issue(&state, &headers, body).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(error = error.code, "refused a token request");
            error.into_response()
        }
    }
}

async fn issue(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, OAuthError> {
    let Auth::Tokens(verifier) = &state.config.auth else {
        return Err(invalid_request(
            "this server runs without authentication (--insecure-no-auth)",
        ));
    };
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        return Err(invalid_request(
            "send the token request as application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| invalid_request("the token request is too large"))?;
    let form: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    match form_value(&form, "grant_type")? {
        Some("client_credentials") => {}
        Some("password") => return super::password::issue(state, verifier, headers, &form).await,
        Some(_) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials and password are supported",
            ));
        }
        None => return Err(invalid_request("grant_type is missing")),
    }
    let credentials = credentials(headers, &form)?;
    let client = authenticate_client(state, credentials).await?;
    let allowed = Scopes::parse(&client.scopes);
    let granted = match form_value(&form, "scope")? {
        Some(requested) => allowed.grant(&Scopes::parse(requested)),
        None => allowed,
    };
    if granted.is_empty() {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "none of the requested scopes is allowed for this client",
        ));
    }
    let issued = verifier
        .own
        .issue(&Grant {
            subject: client.id.clone(),
            client_id: Some(client.id.clone()),
            user: None,
            roles: client.roles.clone(),
            scopes: granted,
            patient: client.patient.clone(),
        })
        .map_err(server_error)?;
    tracing::info!(client = %client.id, "issued an access token");
    Ok(token_response(issued))
}

/// The answer that hands out a token.
pub(super) fn token_response(issued: privacy::token::Issued) -> Response {
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
    });
    if let Some(patient) = issued.patient {
        body["patient"] = json!(patient);
    }
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
