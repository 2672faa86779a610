//! `GET /.well-known/smart-configuration` (also under `/fhir`) and the server's public
//! keys (`GET /auth/jwks`), both open.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Auth;
use crate::{AppState, Config};

/// Where the token endpoint and the public keys are, under the server's origin.
pub const TOKEN_PATH: &str = "/auth/token";
pub const JWKS_PATH: &str = "/auth/jwks";

/// The server's origin: the base URL without its `/fhir`.
pub(crate) fn origin(config: &Config) -> &str {
    config
        .base_url
        .strip_suffix("/fhir")
        .unwrap_or(&config.base_url)
}

pub(crate) fn token_url(config: &Config) -> String {
    format!("{}{TOKEN_PATH}", origin(config))
}

/// The scopes a client may ask for, as advertised.
const SCOPES_SUPPORTED: [&str; 13] = [
    "system/*.cruds",
    "system/*.rs",
    "user/*.cruds",
    "user/*.rs",
    "patient/*.rs",
    "system/*.read",
    "user/*.read",
    "patient/*.read",
    "openid",
    "fhirUser",
    "launch/patient",
    "offline_access",
    "online_access",
];

fn configuration(config: &Config, issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{}{JWKS_PATH}", origin(config)),
        "token_endpoint": token_url(config),
        "token_endpoint_auth_methods_supported": [
            "private_key_jwt", "client_secret_basic", "client_secret_post"
        ],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": SCOPES_SUPPORTED,
        "response_types_supported": [],
        "capabilities": [
            "client-confidential-asymmetric",
            "client-confidential-symmetric",
            "permission-v2",
            "permission-v1"
        ],
        "code_challenge_methods_supported": ["S256"],
    })
}

fn json(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, value.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(crate) async fn smart_configuration(State(state): State<AppState>) -> Response {
    match &state.config.auth {
        Auth::Tokens(verifier) => json(
            StatusCode::OK,
            &configuration(&state.config, &verifier.own.issuer),
        ),
        Auth::Open => crate::error::ApiError::not_found(
            "this server runs without authentication (--insecure-no-auth)",
        )
        .into_response(),
    }
}

pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    match &state.config.auth {
        Auth::Tokens(verifier) => match serde_json::to_value(verifier.own.jwks()) {
            Ok(value) => json(StatusCode::OK, &value),
            Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, &json!({})),
        },
        Auth::Open => json(StatusCode::OK, &json!({"keys": []})),
    }
}

/// The CapabilityStatement's `rest.security` when tokens are required.
pub(crate) fn capability_security(config: &Config) -> Option<Value> {
    if matches!(config.auth, Auth::Open) {
        return None;
    }
    Some(json!({
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [{"url": "token", "valueUri": token_url(config)}],
        }],
        "service": [{
            "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                "code": "SMART-on-FHIR",
            }],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
        }],
        "description": "Bearer tokens from the token endpoint (client credentials) or a configured identity provider; SMART v1 and v2 scopes.",
    }))
}
