//! Reading one resource: read and vread, with `If-None-Match` / `If-Modified-Since`.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::IssueType;
use store::Version;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath, VersionPath};
use crate::response::{parse_etag, read_response};

/// 410 Gone, with the deletion's ETag.
pub fn gone(version: &Version) -> Response {
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
    request: FhirRequest,
    path: InstancePath,
) -> Result<Response, ApiError> {
    let InstancePath { resource_type, id } = path;
    if resource_type == "CodeSystem"
        && let Some(code_system) = crate::terminology::builtin_read(&id)
    {
        return Ok(crate::response::json_response(
            StatusCode::OK,
            code_system.to_string(),
            request.output,
        ));
    }
    let found = state.store.read(&resource_type, &id).await?;
    if let Some(version) = &found {
        crate::audit::note_read(version);
    }
    let view = crate::restrict::View::of(&state, &request.principal).await?;
    match view.keep(crate::access::keep_visible(&request.principal, found)) {
        None => Err(ApiError::not_found(format!(
            "{resource_type}/{id} is not known"
        ))),
        Some(version) if version.is_deleted() => Ok(gone(&version)),
        Some(version) if not_modified(&request.headers, &version) => {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            if let Ok(etag) = version.etag().parse() {
                response.headers_mut().insert(header::ETAG, etag);
            }
            Ok(response)
        }
        Some(version) => Ok(read_response(version, request.output)),
    }
}

pub(crate) async fn vread(
    State(state): State<AppState>,
    request: FhirRequest,
    path: VersionPath,
) -> Result<Response, ApiError> {
    let VersionPath {
        resource_type,
        id,
        version,
    } = path;
    let found = state.store.vread(&resource_type, &id, version).await?;
    if let Some(found) = &found {
        crate::audit::note_read(found);
    }
    let view = crate::restrict::View::of(&state, &request.principal).await?;
    match view.keep(crate::access::keep_visible(&request.principal, found)) {
        None => Err(ApiError::not_found(format!(
            "{resource_type}/{id} has no version {version}"
        ))),
        Some(found) if found.is_deleted() => Ok(gone(&found)),
        Some(found) => Ok(read_response(found, request.output)),
    }
}
