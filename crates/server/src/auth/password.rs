//! The resource owner password grant (RFC 6749 4.3) at `POST /auth/token`, for local
//! user accounts signing in through a registered client (the workbench).
//!
//! The client authenticates as for `client_credentials`. The user's password is checked
//! against its argon2 hash; a wrong password, an unknown user name and a locked-out name
//! all get the same `invalid_grant` (400), so the answer never tells whether the user
//! exists, and an unknown name costs the same hashing time as a known one. The token
//! speaks for the user (`sub` and `user`), with the user's roles and patient, and the
//! scopes the client may grant, narrowed by `scope`.

use std::sync::LazyLock;

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use privacy::Scopes;
use privacy::token::{Grant, Verifier};

use super::token::{
    OAuthError, authenticate_client, credentials, error, form_value, invalid_request, server_error,
    token_response,
};
use crate::AppState;

/// The hash of a random secret nobody knows, verified for unknown user names so that
/// they take as long as known ones. Made once, on first use.
static DECOY_HASH: LazyLock<String> = LazyLock::new(|| {
    privacy::password::generate_secret()
        .and_then(|secret| privacy::password::hash(&secret))
        .unwrap_or_default()
});

fn invalid_grant() -> OAuthError {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "the user name or password is wrong, or too many attempts failed (wait, then try again)",
    )
}

/// Checks `password` against `hash` off the async threads (argon2 takes a while).
async fn verify(password: &str, hash: String) -> bool {
    let password = password.to_string();
    tokio::task::spawn_blocking(move || privacy::password::verify(&password, &hash))
        .await
        .unwrap_or(false)
}

/// Issues a token for `grant_type=password`.
pub(super) async fn issue(
    state: &AppState,
    verifier: &Verifier,
    headers: &HeaderMap,
    form: &[(String, String)],
) -> Result<Response, OAuthError> {
    let client = authenticate_client(state, credentials(headers, form)?).await?;
    let username =
        form_value(form, "username")?.ok_or_else(|| invalid_request("username is missing"))?;
    let password =
        form_value(form, "password")?.ok_or_else(|| invalid_request("password is missing"))?;
    if privacy::account::check_name("user name", username).is_err() {
        return Err(invalid_grant());
    }
    let limits = &state.config.limits;
    // Brute-force protection: after `login_failures_max` failed logins of one name in a
    // row, the name is locked for `login_lockout_s` whatever password comes. The count
    // is in the database, shared by every server on it. Names that do not exist are
    // counted the same, so the answers say nothing of which names exist.
    let now = store::Instant::now().0 / 1_000_000;
    let lockout = i64::try_from(limits.login_lockout_s).unwrap_or(i64::MAX);
    if state
        .store
        .login_locked(username, now)
        .await
        .map_err(|error| server_error(error.into()))?
    {
        tracing::warn!("refused a password login: the user name is locked out");
        return Err(invalid_grant());
    }
    let user = privacy::account::user(&state.store, username)
        .await
        .map_err(server_error)?;
    let hash = match &user {
        Some(user) => user.password_hash.clone(),
        None => tokio::task::spawn_blocking(|| DECOY_HASH.clone())
            .await
            .unwrap_or_default(),
    };
    let matches = verify(password, hash).await;
    let Some(user) = user.filter(|_| matches) else {
        if let Err(failure) = state
            .store
            .login_failed(username, now, limits.login_failures_max, lockout)
            .await
        {
            tracing::error!(error = %failure, "cannot count a failed password login");
        }
        tracing::info!("refused a password login");
        return Err(invalid_grant());
    };
    if let Err(failure) = state.store.login_succeeded(username).await {
        tracing::error!(error = %failure, "cannot clear the failed logins of a user");
    }
    let allowed = Scopes::parse(&client.scopes);
    let granted = match form_value(form, "scope")? {
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
            subject: user.username.clone(),
            client_id: Some(client.id.clone()),
            user: Some(user.username.clone()),
            roles: user.roles.clone(),
            scopes: granted,
            patient: user.patient.clone(),
        })
        .map_err(server_error)?;
    tracing::info!(client = %client.id, "issued an access token for a user");
    Ok(token_response(issued))
}
