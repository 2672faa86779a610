//! Changing one resource: create, update and delete.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhir::IssueType;
use serde_json::Value;
use store::{Method, StoreError, Version, Write, Written};

use crate::AppState;
use crate::body::{check_resource, parse_object, parse_resource, read_limited};
use crate::conditional::{criteria, find_one};
use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath, TypePath};
use crate::format::require_json_body;
use crate::references::referenced;
use crate::response::{Return, write_response};
use crate::validate::{after_write, check_on_write};

/// The version a write made; every create or update makes one.
pub fn new_version(written: Written) -> Result<Version, ApiError> {
    written
        .version
        .ok_or_else(|| StoreError::Backend("the write made no version".into()).into())
}

pub(crate) async fn create(
    State(state): State<AppState>,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
    body: Body,
) -> Result<Response, ApiError> {
    require_json_body(&request.headers)?;
    let if_none_exist = match request.headers.get("if-none-exist") {
        None => None,
        Some(value) => Some(criteria(value.to_str().map_err(|_| {
            ApiError::bad_request("If-None-Exist is not a valid query string")
        })?)),
    };
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    let mut resource = parse_object(&bytes)?;
    // FHIR R4: on create, the server ignores any id in the body (even one that is not
    // a valid id), so it goes before the checks.
    resource.shift_remove("id");
    let resource = check_resource(resource, &resource_type)?;
    crate::write_limit::check_resource(&request.principal, &resource_type, &resource)?;
    let fetched = referenced(&state, &resource).await?;
    let resource = check_on_write(&state, resource, fetched.as_ref())?;
    // Conditional create: held until the create is durable, so a concurrent conditional
    // create with the same criteria sees it.
    let _guard = match &if_none_exist {
        None => Vec::new(),
        Some(criteria) => {
            let guard = state.locks.lock(&resource_type).await;
            let view = crate::restrict::View::of(&state, &request.principal).await?;
            if let Some(existing) =
                find_one(&state, &view, &resource_type, criteria, "If-None-Exist").await?
            {
                // A match: nothing is created, and the answer is the existing resource.
                return Ok(write_response(
                    &request,
                    &state.config.base_url,
                    StatusCode::OK,
                    &existing,
                    true,
                ));
            }
            guard
        }
    };
    let version = new_version(
        crate::audit::write(&state.store, Write::Create { resource, id: None }).await?,
    )?;
    after_write(&state, &version);
    Ok(write_response(
        &request,
        &state.config.base_url,
        StatusCode::CREATED,
        &version,
        true,
    ))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
    body: Body,
) -> Result<Response, ApiError> {
    let InstancePath { resource_type, id } = path;
    require_json_body(&request.headers)?;
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    let resource = parse_resource(&bytes, &resource_type)?;
    match resource.get("id") {
        Some(Value::String(body_id)) if *body_id == id => {}
        Some(Value::String(body_id)) => {
            return Err(ApiError::bad_request(format!(
                "the body's id {body_id:?} differs from the URL's id {id:?}"
            )));
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Required,
                format!("an update needs the resource id in the body (\"id\": \"{id}\")"),
            ));
        }
    }
    crate::write_limit::check_target(&state, &request.principal, &resource_type, &id).await?;
    crate::write_limit::check_resource(&request.principal, &resource_type, &resource)?;
    let fetched = referenced(&state, &resource).await?;
    let resource = check_on_write(&state, resource, fetched.as_ref())?;
    let written = crate::audit::write(
        &state.store,
        Write::Update {
            resource_type,
            id,
            resource,
            if_match: request.if_match,
            method: Method::Update,
        },
    )
    .await?;
    written_response(&state, &request, written)
}

/// The answer to a create or update: 201 when it created the resource, 200 otherwise.
pub(crate) fn written_response(
    state: &AppState,
    request: &FhirRequest,
    written: Written,
) -> Result<Response, ApiError> {
    let created = written.created;
    let version = new_version(written)?;
    after_write(state, &version);
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(write_response(
        request,
        &state.config.base_url,
        status,
        &version,
        created,
    ))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
) -> Result<Response, ApiError> {
    let InstancePath { resource_type, id } = path;
    crate::write_limit::check_target(&state, &request.principal, &resource_type, &id).await?;
    let written = crate::audit::write(
        &state.store,
        Write::Delete {
            resource_type,
            id,
            if_match: request.if_match,
        },
    )
    .await?;
    match written.version {
        Some(version) => {
            after_write(&state, &version);
            let status = if request.prefer == Return::OperationOutcome {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            };
            Ok(write_response(
                &request,
                &state.config.base_url,
                status,
                &version,
                false,
            ))
        }
        // Nothing to delete: R4 answers success all the same.
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}
