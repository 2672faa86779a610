//! Break-the-glass: a clinician overrides the label and consent restrictions on one
//! patient's data in an emergency, with `X-Purpose-Of-Use: BTG` and a reason in
//! `X-Break-Glass-Reason`.
//!
//! The layer (after `auth::guard`) checks the reason and the role, finds the patient the
//! request is about, and grants the principal's subject access to that patient's
//! restricted data until `--break-glass-minutes` from now. Grants are kept in the
//! database (`auth_record`, kind `break_glass`), so they survive a restart, and in
//! memory. The request carries a [`BreakGlass`] extension for the audit trail.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use privacy::Principal;
use serde_json::json;
use store::{AuthKind, Store, StoreError};

use crate::AppState;
use crate::error::ApiError;

/// The header with the reason for breaking the glass.
pub const REASON: &str = "x-break-glass-reason";
/// Longest reason kept, in bytes.
const MAX_REASON_BYTES: usize = 1024;

/// A request that broke the glass, in its extensions: the audit trail records it at
/// high severity. The reason is free text from the user and may hold PHI: it belongs
/// in the audit record, never in logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BreakGlass {
    /// The principal's subject the grant is for.
    pub subject: String,
    /// The patient whose restricted data is opened.
    pub patient: String,
    pub reason: String,
    /// When the grant ends, in seconds since the epoch.
    pub until: i64,
}

/// A request that runs under earlier break-the-glass grants, in its extensions: the
/// patients whose restricted data it may see because of them (the audit trail records
/// such access too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnderGrant {
    pub patients: Vec<String>,
}

/// The grants in force, by (subject, patient), with their end.
#[derive(Default)]
pub(crate) struct Grants {
    until: Mutex<HashMap<(String, String), i64>>,
}

fn key(subject: &str, patient: &str) -> String {
    format!("{subject}\n{patient}")
}

impl Grants {
    /// The grants kept in the store that have not ended.
    pub(crate) async fn load(store: &Store) -> Result<Grants, StoreError> {
        let grants = Grants::default();
        let now = crate::restrict::now();
        let mut map = HashMap::new();
        for (id, body) in store.auth_list(AuthKind::BreakGlass).await? {
            let Some((subject, patient)) = id.split_once('\n') else {
                continue;
            };
            let until = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|value| value["until"].as_i64());
            match until {
                Some(until) if until > now => {
                    map.insert((subject.to_string(), patient.to_string()), until);
                }
                _ => {
                    store.auth_delete(AuthKind::BreakGlass, &id).await?;
                }
            }
        }
        *grants.until.lock().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(grants)
    }

    /// The patients `subject` has a grant for at `now`.
    pub(crate) fn patients(&self, subject: &str, now: i64) -> Vec<String> {
        let map = self.until.lock().unwrap_or_else(PoisonError::into_inner);
        map.iter()
            .filter(|((who, _), until)| who == subject && **until > now)
            .map(|((_, patient), _)| patient.clone())
            .collect()
    }

    async fn grant(
        &self,
        store: &Store,
        subject: &str,
        patient: &str,
        until: i64,
    ) -> Result<(), StoreError> {
        let body = json!({ "until": until }).to_string();
        store
            .auth_put(AuthKind::BreakGlass, &key(subject, patient), &body, false)
            .await?;
        self.until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((subject.to_string(), patient.to_string()), until);
        Ok(())
    }
}

fn refused(reason: &str) -> ApiError {
    crate::auth::forbidden(reason.to_string())
}

/// The route layer: lets a request through unless it asks to break the glass (marking it
/// with [`UnderGrant`] when earlier grants are in force); then refuses it (403, saying
/// why) or grants it and marks it with [`BreakGlass`].
pub(crate) async fn layer(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        return next.run(request).await;
    };
    if principal.unchecked {
        return next.run(request).await;
    }
    if !privacy::glass::asks(&principal) {
        let patients = state
            .grants
            .patients(&principal.subject, crate::restrict::now());
        if !patients.is_empty() {
            request.extensions_mut().insert(UnderGrant { patients });
        }
        return next.run(request).await;
    }
    let asked = Asked {
        reason: request
            .headers()
            .get(REASON)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .unwrap_or("")
            .to_string(),
        template: request
            .extensions()
            .get::<MatchedPath>()
            .map_or("", |path| path.as_str())
            .to_string(),
        path: request.uri().path().to_string(),
        query: request.uri().query().unwrap_or("").to_string(),
    };
    match open(&state, &principal, &asked).await {
        Ok(broken) => {
            tracing::warn!(subject = %broken.subject, "break-the-glass access granted");
            request.extensions_mut().insert(broken);
            next.run(request).await
        }
        Err(error) => error.into_response(),
    }
}

/// What the layer reads of a request that breaks the glass.
struct Asked {
    reason: String,
    /// The matched route.
    template: String,
    path: String,
    query: String,
}

async fn open(
    state: &AppState,
    principal: &Principal,
    asked: &Asked,
) -> Result<BreakGlass, ApiError> {
    let reason = asked.reason.as_str();
    if reason.is_empty() {
        return Err(refused(
            "break-the-glass (X-Purpose-Of-Use: BTG) needs a reason in the X-Break-Glass-Reason header",
        ));
    }
    if reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::bad_request(format!(
            "X-Break-Glass-Reason is longer than {MAX_REASON_BYTES} bytes"
        )));
    }
    privacy::glass::may_break(principal).map_err(|reason| refused(&reason))?;
    if principal.patient().is_some() {
        return Err(refused(
            "a token limited to one patient cannot break the glass",
        ));
    }
    let Some(patient) = patient_of(state, asked).await? else {
        return Err(refused(
            "break-the-glass needs the patient: request Patient/[id], a resource of the patient, or name it with patient= or subject=",
        ));
    };
    let until = crate::restrict::now() + 60 * state.config.break_glass_minutes as i64;
    state
        .grants
        .grant(&state.store, &principal.subject, &patient, until)
        .await?;
    Ok(BreakGlass {
        subject: principal.subject.clone(),
        patient,
        reason: reason.to_string(),
        until,
    })
}

/// The patient a request is about: `Patient/[id]...` in the path, a `patient` or
/// `subject` parameter naming a Patient, or the patient of the resource at
/// `[type]/[id]...`.
async fn patient_of(state: &AppState, asked: &Asked) -> Result<Option<String>, ApiError> {
    let template = asked.template.as_str();
    let path = asked.path.strip_prefix("/fhir").unwrap_or(&asked.path);
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let instance = template.contains("{type}/{id}");
    if instance && let [resource_type, id, ..] = segments.as_slice() {
        if *resource_type == "Patient" {
            return Ok(Some(id.to_string()).filter(|id| fhir::is_valid_id(id)));
        }
        if !fhir::definitions().is_resource_type(resource_type) || !fhir::is_valid_id(id) {
            return Ok(None);
        }
        let Some(version) = state.store.read(resource_type, id).await? else {
            return Ok(None);
        };
        let Some(resource) = version
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<serde_json::Value>(body).ok())
        else {
            return Ok(None);
        };
        return Ok(crate::restrict::patients_of(resource_type, id, &resource)
            .into_iter()
            .next());
    }
    for (name, value) in form_urlencoded::parse(asked.query.as_bytes()) {
        let name = name.split(':').next().unwrap_or("");
        if name != "patient" && name != "subject" && !(name == "_id" && segments == ["Patient"]) {
            continue;
        }
        let id = value.strip_prefix("Patient/").unwrap_or(&value);
        if fhir::is_valid_id(id) {
            return Ok(Some(id.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_end() {
        let grants = Grants::default();
        grants
            .until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(("d1".into(), "p1".into()), 100);
        assert_eq!(grants.patients("d1", 99), vec!["p1".to_string()]);
        assert!(grants.patients("d1", 100).is_empty());
        assert!(grants.patients("d2", 99).is_empty());
    }
}
