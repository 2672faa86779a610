//! Authentication and authorisation at the HTTP boundary.
//!
//! `authenticate` (a layer over every route) turns the request's bearer token into a
//! `privacy::Principal` and puts it in the request's extensions, or answers 401 with
//! `WWW-Authenticate: Bearer` and an OperationOutcome saying why. Only the open paths
//! (`/health`, `/fhir/metadata`, the SMART configuration, the token endpoint and the
//! public keys) pass without one. `guard` (a route layer over `/fhir`) asks
//! `privacy::decide` for every interaction the route stands for, and answers 403 when
//! it refuses; searches over several types, bundles, `$everything` and `$export` check
//! each type or entry where they know them (`authorize`).
//!
//! With `Auth::Open` (`--insecure-no-auth`) every request gets the unchecked principal.

pub(crate) mod cache;
pub(crate) mod guard;
mod password;
pub(crate) mod smart;
pub(crate) mod token;

use std::sync::{Arc, LazyLock};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir::IssueType;
use privacy::Principal;
use privacy::token::Verifier;

use crate::AppState;
use crate::error::ApiError;

pub(crate) use guard::{authorize, authorize_types, forbidden};

/// How the server authenticates requests.
#[derive(Clone)]
pub enum Auth {
    /// No authentication: every request may do anything. For local experiments only.
    Open,
    /// Bearer tokens, verified by this (the server's own issuer, and any external ones).
    Tokens(Arc<Verifier>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Open => f.write_str("Open"),
            Auth::Tokens(verifier) => write!(f, "Tokens(issuer {})", verifier.own.issuer),
        }
    }
}

/// The header a client states its purpose of use in (e.g. `TREAT`, `BTG`), kept on the
/// principal for the audit trail and break-the-glass.
pub const PURPOSE_OF_USE: &str = "x-purpose-of-use";

/// Paths anyone may reach.
fn is_open(path: &str) -> bool {
    matches!(
        path,
        "/health"
            | "/fhir/metadata"
            | "/.well-known/smart-configuration"
            | "/fhir/.well-known/smart-configuration"
            | smart::TOKEN_PATH
            | smart::JWKS_PATH
    )
}

/// 401 with a Bearer challenge; `reason` names no data.
fn unauthorized(reason: &str, error_code: Option<&str>) -> Response {
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        IssueType::Security,
        format!("authentication required: {reason}"),
    )
    .into_response();
    let challenge = match error_code {
        Some(code) => format!(
            "Bearer realm=\"custodian\", error=\"{code}\", error_description=\"{}\"",
            reason.replace('"', "'")
        ),
        None => "Bearer realm=\"custodian\"".to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// The principals that do not depend on the request, made once.
static UNCHECKED: LazyLock<Arc<Principal>> = LazyLock::new(|| Arc::new(Principal::unchecked()));
static ANONYMOUS: LazyLock<Arc<Principal>> = LazyLock::new(|| Arc::new(Principal::anonymous()));

/// The layer over every route: puts the request's `Principal` in its extensions.
pub(crate) async fn authenticate(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let verifier = match &state.config.auth {
        Auth::Open => {
            request.extensions_mut().insert(UNCHECKED.clone());
            return next.run(request).await;
        }
        Auth::Tokens(verifier) => verifier,
    };
    if is_open(request.uri().path()) {
        request.extensions_mut().insert(ANONYMOUS.clone());
        return next.run(request).await;
    }
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return unauthorized("no bearer token", None);
    };
    let text = value.to_str().unwrap_or("");
    let token = match text.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return unauthorized(
                "the Authorization header is not a bearer token",
                Some("invalid_request"),
            );
        }
    };
    let principal = match state.tokens.get(token) {
        Some(principal) => principal,
        None => match verifier.verify(token) {
            Ok(principal) => state.tokens.put(token, principal),
            Err(error) => {
                tracing::info!(reason = %error, "refused a bearer token");
                return unauthorized(&error.to_string(), Some("invalid_token"));
            }
        },
    };
    let purpose = request
        .headers()
        .get(PURPOSE_OF_USE)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty() && value.len() <= 64);
    let principal = match purpose {
        Some(purpose) => {
            let mut principal = Principal::clone(&principal);
            principal.purpose_of_use = Some(purpose.to_string());
            Arc::new(principal)
        }
        None => principal,
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}
