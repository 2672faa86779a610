//! PATCH with JSON Patch (RFC 6902, `application/json-patch+json`) or FHIRPath Patch
//! (a `Parameters` resource, `application/fhir+json`).
//!
//! The patch applies to the current version and is written with `If-Match` on that
//! version, so a concurrent change is never lost: without a client `If-Match` the patch
//! is re-applied to the newer version; with one, the client gets 412.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir::IssueType;
use serde_json::{Map, Value};
use store::{Method, StoreError, Version, Write};

use crate::AppState;
use crate::body::{parse_object, parse_resource, read_limited};
use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath};
use crate::format::{PatchFormat, patch_format};
use crate::instance::gone;
use crate::references::referenced;
use crate::response::write_response;
use crate::validate::{after_write, check_on_write};
use crate::write::new_version;

/// A parsed patch document.
pub(crate) enum Patch {
    Json(json_patch::Patch),
    FhirPath(Value),
}

/// How often a PATCH without `If-Match` retries when another write got there first.
pub(crate) const PATCH_ATTEMPTS: usize = 8;

fn unprocessable(diagnostics: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        IssueType::Processing,
        diagnostics,
    )
}

pub(crate) async fn patch(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
    body: Body,
) -> Result<Response, ApiError> {
    let InstancePath { resource_type, id } = path;
    let patch = read_patch(&state, &request, body).await?;
    patch_instance(&state, &request, &resource_type, &id, &patch).await
}

/// Reads and parses a PATCH body in the format its `Content-Type` names.
pub(crate) async fn read_patch(
    state: &AppState,
    request: &FhirRequest,
    body: Body,
) -> Result<Patch, ApiError> {
    let format = patch_format(&request.headers)?;
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    Ok(match format {
        PatchFormat::JsonPatch => Patch::Json(serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Structure,
                format!("the body is not a JSON Patch document (RFC 6902): {error}"),
            )
        })?),
        PatchFormat::FhirPathPatch => {
            let parameters = parse_object(&bytes)?;
            if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    IssueType::Structure,
                    "a FHIRPath Patch is a Parameters resource",
                ));
            }
            Patch::FhirPath(Value::Object(parameters))
        }
    })
}

/// `patch` applied to the stored `current` version (not a deletion): the patched
/// resource, checked as a request body would be, with its id unchanged.
pub(crate) fn apply_patch(
    current: &Version,
    patch: &Patch,
) -> Result<Map<String, Value>, ApiError> {
    let mut document: Value = match current.body.as_deref().map(serde_json::from_str) {
        Some(Ok(document)) => document,
        _ => return Err(StoreError::Backend("stored resource is unreadable".into()).into()),
    };
    match patch {
        Patch::Json(operations) => json_patch::patch(&mut document, operations)
            .map_err(|error| unprocessable(format!("the patch cannot be applied: {error}")))?,
        Patch::FhirPath(parameters) => {
            patch::apply(&mut document, parameters).map_err(|error| {
                if error.is_bad_patch() {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        IssueType::Invalid,
                        error.to_string(),
                    )
                } else {
                    unprocessable(error.to_string())
                }
            })?
        }
    }
    let patched = serde_json::to_vec(&document).unwrap_or_default();
    let resource = parse_resource(&patched, &current.resource_type).map_err(|error| {
        unprocessable(format!(
            "the patched resource is not valid: {}",
            error.diagnostics
        ))
    })?;
    if resource.get("id").and_then(Value::as_str) != Some(current.id.as_str()) {
        return Err(unprocessable(
            "a patch may not change or remove the resource id".into(),
        ));
    }
    Ok(resource)
}

/// Applies `patch` to the current version of `resource_type/id` and stores the result.
pub(crate) async fn patch_instance(
    state: &AppState,
    request: &FhirRequest,
    resource_type: &str,
    id: &str,
    patch: &Patch,
) -> Result<Response, ApiError> {
    for _ in 0..PATCH_ATTEMPTS {
        let current = match state.store.read(resource_type, id).await? {
            None => {
                return Err(ApiError::not_found(format!(
                    "{resource_type}/{id} is not known"
                )));
            }
            Some(current) if current.is_deleted() => return Ok(gone(&current)),
            Some(current) => current,
        };
        crate::write_limit::check_target(state, &request.principal, resource_type, id).await?;
        if let Some(expected) = request.if_match
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: Some(current.version),
            }
            .into());
        }
        let resource = apply_patch(&current, patch)?;
        crate::write_limit::check_resource(&request.principal, resource_type, &resource)?;
        let fetched = referenced(state, &resource).await?;
        let resource = check_on_write(state, resource, fetched.as_ref())?;
        let result = crate::audit::write(
            &state.store,
            Write::Update {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
                resource,
                if_match: Some(current.version),
                method: Method::Patch,
            },
        )
        .await;
        match result {
            Ok(written) => {
                let version = new_version(written)?;
                after_write(state, &version);
                return Ok(write_response(
                    request,
                    &state.config.base_url,
                    StatusCode::OK,
                    &version,
                    false,
                ));
            }
            Err(StoreError::VersionMismatch { .. }) if request.if_match.is_none() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        IssueType::Conflict,
        format!("{resource_type}/{id} kept changing while the patch was applied; try again"),
    ))
}
