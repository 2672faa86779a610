//! Conditional interactions: create (`If-None-Exist`), update, delete and patch on
//! `[base]/[type]?criteria`, and the search that finds their target.
//!
//! Criteria are parsed strictly (an unknown parameter is an error, never ignored: an
//! ignored criterion would widen the match) and must hold at least one criterion.
//! A conditional delete removes every match, up to [`MAX_CONDITIONAL_DELETE`]
//! (the CapabilityStatement says `multiple`).
//!
//! Conditional writes of one resource type are serialised by a lock (see [`Locks`]), so
//! two conditional creates with the same criteria cannot both create. Writes that are not
//! conditional do not take it.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhir::{IssueType, Severity, operation_outcome};
use search::{ParseOptions, Total};
use serde_json::{Map, Value};
use store::{Method, SearchRequest, Version, Write};
use tokio::sync::{Mutex, MutexGuard};

use crate::AppState;
use crate::body::{parse_resource, read_limited};
use crate::error::ApiError;
use crate::extract::{FhirRequest, TypePath};
use crate::format::require_json_body;
use crate::patch::{patch_instance, read_patch};
use crate::references::referenced;
use crate::response::{Return, json_response, write_response};
use crate::restrict::View;
use crate::validate::{after_write, check_on_write};
use crate::write::written_response;

/// Most resources one conditional delete removes; more matches answer 412.
pub const MAX_CONDITIONAL_DELETE: usize = 1000;

const LOCK_SLOTS: usize = 32;

/// Locks that serialise conditional writes, by resource type (hashed into a few slots).
pub struct Locks {
    slots: Vec<Mutex<()>>,
}

impl Default for Locks {
    fn default() -> Locks {
        Locks {
            slots: (0..LOCK_SLOTS).map(|_| Mutex::new(())).collect(),
        }
    }
}

impl Locks {
    fn slot(resource_type: &str) -> usize {
        let mut hasher = DefaultHasher::new();
        resource_type.hash(&mut hasher);
        (hasher.finish() % LOCK_SLOTS as u64) as usize
    }

    /// The lock of one type.
    pub async fn lock(&self, resource_type: &str) -> Vec<MutexGuard<'_, ()>> {
        self.lock_all([resource_type]).await
    }

    /// The locks of several types, always taken in the same order (no deadlock).
    pub async fn lock_all<'a>(
        &self,
        resource_types: impl IntoIterator<Item = &'a str>,
    ) -> Vec<MutexGuard<'_, ()>> {
        let mut slots: Vec<usize> = resource_types.into_iter().map(Locks::slot).collect();
        slots.sort_unstable();
        slots.dedup();
        let mut guards = Vec::with_capacity(slots.len());
        for slot in slots {
            if let Some(mutex) = self.slots.get(slot) {
                guards.push(mutex.lock().await);
            }
        }
        guards
    }
}

/// The parameters of a conditional URL's or header's query: `identifier=x`,
/// `?identifier=x` or `Patient?identifier=x`.
pub fn criteria(text: &str) -> Vec<(String, String)> {
    let text = text.trim();
    let query = match text.split_once('?') {
        Some((head, query)) if head.chars().all(|c| c.is_ascii_alphanumeric()) => query,
        _ => text,
    };
    form_urlencoded::parse(query.trim().as_bytes())
        .into_owned()
        .collect()
}

/// The current resources of `resource_type` that `params` match, at most `limit`.
pub async fn find(
    state: &AppState,
    view: &View,
    resource_type: &str,
    params: &[(String, String)],
    limit: usize,
) -> Result<Vec<Version>, ApiError> {
    let params: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "_format" | "_pretty"))
        .cloned()
        .collect();
    let parsed = search::parse(
        &[resource_type.to_string()],
        &params,
        ParseOptions { strict: true },
    )?;
    let mut query = parsed.query;
    if query.clauses.is_empty() {
        return Err(ApiError::bad_request(format!(
            "a conditional interaction needs search criteria for {resource_type} (e.g. identifier=system|value)"
        )));
    }
    // What the principal may not see does not match: for it, it is not there.
    view.narrow(&mut query);
    query.includes.clear();
    query.revincludes.clear();
    query.sort.clear();
    query.total = Total::None;
    let page = state
        .store
        .search(SearchRequest {
            query,
            count: limit,
            cursor: None,
        })
        .await?;
    Ok(page
        .matches
        .into_iter()
        .filter(|version| !version.is_deleted())
        .collect())
}

/// The one resource `params` match, if any; 412 when several do.
pub async fn find_one(
    state: &AppState,
    view: &View,
    resource_type: &str,
    params: &[(String, String)],
    what: &str,
) -> Result<Option<Version>, ApiError> {
    let mut found = find(state, view, resource_type, params, 2).await?;
    if found.len() > 1 {
        return Err(ApiError::multiple_matches(format!(
            "{what}: the criteria match more than one {resource_type}"
        )));
    }
    Ok(found.pop())
}

/// `PUT [base]/[type]?criteria`
pub(crate) async fn update(
    State(state): State<AppState>,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
    body: Body,
) -> Result<Response, ApiError> {
    require_json_body(&request.headers)?;
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    let resource = parse_resource(&bytes, &resource_type)?;
    let fetched = referenced(&state, &resource).await?;
    let mut resource = check_on_write(&state, resource, fetched.as_ref())?;
    crate::write_limit::check_resource(&request.principal, &resource_type, &resource)?;
    let body_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned);

    let view = View::of(&state, &request.principal).await?;
    let _guard = state.locks.lock(&resource_type).await;
    let found = find_one(
        &state,
        &view,
        &resource_type,
        &request.params,
        "conditional update",
    )
    .await?;
    let write = match (found, body_id) {
        (Some(existing), Some(body_id)) if body_id != existing.id => {
            return Err(ApiError::bad_request(format!(
                "the body's id {body_id:?} differs from the id of the matching resource {resource_type}/{}",
                existing.id
            )));
        }
        (Some(existing), _) => {
            crate::write_limit::check_found(&state, &request.principal, &existing).await?;
            resource.insert("id".into(), Value::String(existing.id.clone()));
            update_write(&resource_type, existing.id, resource, request.if_match)
        }
        (None, Some(body_id)) => {
            if state
                .store
                .read(&resource_type, &body_id)
                .await?
                .is_some_and(|current| !current.is_deleted())
            {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    IssueType::Conflict,
                    format!(
                        "no {resource_type} matches the criteria, but {resource_type}/{body_id} (the body's id) exists"
                    ),
                ));
            }
            update_write(&resource_type, body_id, resource, None)
        }
        (None, None) => Write::Create { resource, id: None },
    };
    let written = crate::audit::write(&state.store, write).await?;
    written_response(&state, &request, written)
}

fn update_write(
    resource_type: &str,
    id: String,
    resource: Map<String, Value>,
    if_match: Option<u64>,
) -> Write {
    Write::Update {
        resource_type: resource_type.to_string(),
        id,
        resource,
        if_match,
        method: Method::Update,
    }
}

/// `DELETE [base]/[type]?criteria`: deletes every match (at most
/// [`MAX_CONDITIONAL_DELETE`]), all or none.
pub(crate) async fn delete(
    State(state): State<AppState>,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
) -> Result<Response, ApiError> {
    let view = View::of(&state, &request.principal).await?;
    let _guard = state.locks.lock(&resource_type).await;
    let found = find(
        &state,
        &view,
        &resource_type,
        &request.params,
        MAX_CONDITIONAL_DELETE + 1,
    )
    .await?;
    if found.len() > MAX_CONDITIONAL_DELETE {
        return Err(ApiError::multiple_matches(format!(
            "conditional delete: the criteria match more than {MAX_CONDITIONAL_DELETE} {resource_type} resources; narrow them"
        )));
    }
    for version in &found {
        crate::write_limit::check_found(&state, &request.principal, version).await?;
    }
    if found.len() > 1 && request.if_match.is_some() {
        return Err(ApiError::multiple_matches(format!(
            "conditional delete with If-Match: the criteria match {} {resource_type} resources",
            found.len()
        )));
    }
    let writes: Vec<Write> = found
        .iter()
        .map(|version| Write::Delete {
            resource_type: resource_type.clone(),
            id: version.id.clone(),
            if_match: request.if_match,
        })
        .collect();
    let written = match writes.len() {
        0 => Vec::new(),
        1 => {
            let mut writes = writes;
            match writes.pop() {
                Some(write) => vec![crate::audit::write(&state.store, write).await?],
                None => Vec::new(),
            }
        }
        _ => crate::audit::write_all(&state.store, writes)
            .await
            .map_err(|failure| ApiError::from(failure.error))?,
    };
    let versions: Vec<Version> = written
        .into_iter()
        .filter_map(|written| written.version)
        .collect();
    for version in &versions {
        after_write(&state, version);
    }
    if let [version] = versions.as_slice()
        && request.prefer != Return::OperationOutcome
    {
        return Ok(write_response(
            &request,
            &state.config.base_url,
            StatusCode::NO_CONTENT,
            version,
            false,
        ));
    }
    if request.prefer == Return::OperationOutcome {
        let outcome = operation_outcome(
            Severity::Information,
            IssueType::Informational,
            &format!(
                "Deleted {} {resource_type} resource(s) matching the criteria",
                versions.len()
            ),
        );
        return Ok(json_response(
            StatusCode::OK,
            outcome.to_string(),
            request.output,
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH [base]/[type]?criteria`: patches the one match.
pub(crate) async fn patch(
    State(state): State<AppState>,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
    body: Body,
) -> Result<Response, ApiError> {
    let patch = read_patch(&state, &request, body).await?;
    let _guard = state.locks.lock(&resource_type).await;
    let view = View::of(&state, &request.principal).await?;
    let found = find_one(
        &state,
        &view,
        &resource_type,
        &request.params,
        "conditional patch",
    )
    .await?;
    let Some(target) = found else {
        return Err(ApiError::not_found(format!(
            "conditional patch: no {resource_type} matches the criteria"
        )));
    };
    patch_instance(&state, &request, &resource_type, &target.id, &patch).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criteria_forms() {
        let expected = vec![("identifier".to_string(), "http://x|1 2".to_string())];
        assert_eq!(criteria("identifier=http%3A%2F%2Fx%7C1%202"), expected);
        assert_eq!(criteria("?identifier=http://x|1+2"), expected);
        assert_eq!(criteria("Patient?identifier=http://x|1 2"), expected);
        assert!(criteria("").is_empty());
        assert_eq!(criteria("name=a?b")[0].1, "a?b");
    }

    #[test]
    fn lock_slots_are_stable() {
        assert_eq!(Locks::slot("Patient"), Locks::slot("Patient"));
        assert!(Locks::slot("Observation") < LOCK_SLOTS);
    }
}
