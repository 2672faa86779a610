//! Instance and type interactions: create, read, vread, update, patch, delete.

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::{IssueType, definitions, is_valid_id};
use serde_json::Value;
use store::{Method, StoreError, Version, Write};

use crate::AppState;
use crate::body::{check_resource, parse_object, parse_resource, read_limited};
use crate::error::ApiError;
use crate::format::{negotiate, require_json_body, require_json_patch_body};
use crate::response::{if_match, parse_etag, prefer_return, read_response, write_response};

/// Query parameters in order, decoded.
pub fn params(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|raw| {
        form_urlencoded::parse(raw.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

/// 404 unless `name` is an R4 resource type.
pub fn check_type(name: &str) -> Result<(), ApiError> {
    if definitions().is_resource_type(name) {
        Ok(())
    } else {
        Err(ApiError::not_found(format!(
            "{name:?} is not a FHIR R4 resource type"
        )))
    }
}

/// 400 unless `id` is a valid FHIR id.
pub fn check_id(id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{id:?} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})"
        )))
    }
}

fn gone(version: &Version) -> Response {
    let mut response = ApiError::new(
        StatusCode::GONE,
        IssueType::Deleted,
        format!(
            "{}/{} was deleted (version {})",
            version.resource_type, version.id, version.version
        ),
    )
    .into_response();
    if let Ok(etag) = version.etag().parse() {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

fn not_modified(headers: &HeaderMap, version: &Version) -> bool {
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        let text = value.to_str().unwrap_or("");
        return text
            .split(',')
            .any(|tag| tag.trim() == "*" || parse_etag(tag.trim()) == Some(version.version));
    }
    if let Some(since) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| httpdate::parse_http_date(text).ok())
    {
        let seconds = since
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let modified = u64::try_from(version.last_updated.0 / 1_000_000).unwrap_or(0);
        return modified <= seconds;
    }
    false
}

pub(crate) async fn read(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let output = negotiate(&headers, &params(query))?;
    check_type(&resource_type)?;
    check_id(&id)?;
    match state.store.read(&resource_type, &id).await? {
        None => Err(ApiError::not_found(format!(
            "{resource_type}/{id} is not known"
        ))),
        Some(version) if version.is_deleted() => Ok(gone(&version)),
        Some(version) if not_modified(&headers, &version) => {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(etag) = version.etag().parse() {
                response.headers_mut().insert(header::ETAG, etag);
            }
            Ok(response)
        }
        Some(version) => Ok(read_response(&version, output)),
    }
}

pub(crate) async fn vread(
    State(state): State<AppState>,
    Path((resource_type, id, version)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let output = negotiate(&headers, &params(query))?;
    check_type(&resource_type)?;
    check_id(&id)?;
    let Ok(number) = version.parse::<u64>() else {
        return Err(ApiError::bad_request(format!(
            "{version:?} is not a version number"
        )));
    };
    match state.store.vread(&resource_type, &id, number).await? {
        None => Err(ApiError::not_found(format!(
            "{resource_type}/{id} has no version {version}"
        ))),
        Some(found) if found.is_deleted() => Ok(gone(&found)),
        Some(found) => Ok(read_response(&found, output)),
    }
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let output = negotiate(&headers, &params(query))?;
    check_type(&resource_type)?;
    require_json_body(&headers)?;
    if headers.contains_key("if-none-exist") {
        return Err(ApiError::not_supported(
            StatusCode::BAD_REQUEST,
            "conditional create (If-None-Exist) is not supported yet; nothing was created",
        ));
    }
    let bytes = read_limited(&headers, body, state.config.max_body_bytes).await?;
    let mut resource = parse_object(&bytes)?;
    // FHIR R4: on create, the server ignores any id in the body (even one that is not
    // a valid id), so it goes before the checks.
    resource.shift_remove("id");
    let resource = check_resource(resource, &resource_type)?;
    let written = state.store.write(Write::Create { resource }).await?;
    let version = written
        .version
        .ok_or_else(|| ApiError::from(StoreError::Backend("create wrote no version".into())))?;
    Ok(write_response(
        StatusCode::CREATED,
        &version,
        &state.config.base_url,
        prefer_return(&headers),
        output,
        true,
    ))
}

pub(crate) async fn update(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let output = negotiate(&headers, &params(query))?;
    check_type(&resource_type)?;
    check_id(&id)?;
    require_json_body(&headers)?;
    let if_match = if_match(&headers)?;
    let bytes = read_limited(&headers, body, state.config.max_body_bytes).await?;
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
    let written = state
        .store
        .write(Write::Update {
            resource_type,
            id,
            resource,
            if_match,
            method: Method::Update,
        })
        .await?;
    let version = written
        .version
        .ok_or_else(|| ApiError::from(StoreError::Backend("update wrote no version".into())))?;
    let status = if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(write_response(
        status,
        &version,
        &state.config.base_url,
        prefer_return(&headers),
        output,
        written.created,
    ))
}

/// How often a PATCH without `If-Match` retries when another write got there first.
const PATCH_ATTEMPTS: usize = 8;

pub(crate) async fn patch(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let output = negotiate(&headers, &params(query))?;
    check_type(&resource_type)?;
    check_id(&id)?;
    require_json_patch_body(&headers)?;
    let client_if_match = if_match(&headers)?;
    let bytes = read_limited(&headers, body, state.config.max_body_bytes).await?;
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).map_err(|error| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            format!("the body is not a JSON Patch document (RFC 6902): {error}"),
        )
    })?;
    for _ in 0..PATCH_ATTEMPTS {
        let current = match state.store.read(&resource_type, &id).await? {
            None => {
                return Err(ApiError::not_found(format!(
                    "{resource_type}/{id} is not known"
                )));
            }
            Some(current) if current.is_deleted() => return Ok(gone(&current)),
            Some(current) => current,
        };
        if let Some(expected) = client_if_match
            && expected != current.version
        {
            return Err(StoreError::VersionMismatch {
                expected,
                current: Some(current.version),
            }
            .into());
        }
        let mut document: Value = match current.body.as_deref().map(serde_json::from_str) {
            Some(Ok(document)) => document,
            _ => return Err(StoreError::Backend("stored resource is unreadable".into()).into()),
        };
        json_patch::patch(&mut document, &patch).map_err(|error| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                IssueType::Processing,
                format!("the patch cannot be applied: {error}"),
            )
        })?;
        let patched = serde_json::to_vec(&document).unwrap_or_default();
        let resource = parse_resource(&patched, &resource_type).map_err(|error| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                IssueType::Processing,
                format!("the patched resource is not valid: {}", error.diagnostics),
            )
        })?;
        if resource.get("id").and_then(Value::as_str) != Some(id.as_str()) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                IssueType::Processing,
                "a patch may not change or remove the resource id",
            ));
        }
        let result = state
            .store
            .write(Write::Update {
                resource_type: resource_type.clone(),
                id: id.clone(),
                resource,
                if_match: Some(current.version),
                method: Method::Patch,
            })
            .await;
        match result {
            Ok(written) => {
                let version = written.version.ok_or_else(|| {
                    ApiError::from(StoreError::Backend("patch wrote no version".into()))
                })?;
                return Ok(write_response(
                    StatusCode::OK,
                    &version,
                    &state.config.base_url,
                    prefer_return(&headers),
                    output,
                    false,
                ));
            }
            Err(StoreError::VersionMismatch { .. }) if client_if_match.is_none() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        IssueType::Conflict,
        format!("{resource_type}/{id} kept changing while the patch was applied; try again"),
    ))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Path((resource_type, id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let output = negotiate(&headers, &params(query))?;
    check_type(&resource_type)?;
    check_id(&id)?;
    let if_match = if_match(&headers)?;
    let written = state
        .store
        .write(Write::Delete {
            resource_type,
            id,
            if_match,
        })
        .await?;
    let prefer = prefer_return(&headers);
    match written.version {
        Some(version) => {
            let status = if prefer == crate::response::Return::OperationOutcome {
                StatusCode::OK
            } else {
                StatusCode::NO_CONTENT
            };
            Ok(write_response(
                status,
                &version,
                &state.config.base_url,
                prefer,
                output,
                false,
            ))
        }
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

pub(crate) async fn search(
    Path(resource_type): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    negotiate(&headers, &params(query))?;
    check_type(&resource_type)?;
    Err(ApiError::not_supported(
        StatusCode::NOT_IMPLEMENTED,
        "search is not supported yet; read resources by id or use _history",
    ))
}

pub(crate) async fn base_post(headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let _ = body;
    let _ = parse_object(b"{}")?;
    negotiate(&headers, &[])?;
    Err(ApiError::not_supported(
        StatusCode::NOT_IMPLEMENTED,
        "batch and transaction Bundles are not supported yet",
    ))
}
