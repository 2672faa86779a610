//! FHIR Bulk Data Access (v2) `$export`: the asynchronous kick-off at system, Patient
//! and Group level, status polling, cancelling, and the NDJSON output files.
//!
//! - `GET|POST [base]/$export`, `[base]/Patient/$export`, `[base]/Group/[id]/$export`
//!   (with `Prefer: respond-async`): 202 and `Content-Location` of the job's status; 400
//!   for a missing `Prefer`, a bad parameter, or (with `Prefer: handling=strict`) an
//!   unsupported one; 404 for an unknown Group; 429 when too many jobs are running.
//! - `GET [base]/$export-status/[job]`: 202 with `X-Progress` and `Retry-After` while
//!   running, 200 with the manifest when done, 500 if the job failed, 404 if unknown.
//! - `DELETE [base]/$export-status/[job]`: 202; the job stops and its files go.
//! - `GET [base]/$export-file/[job]/[file]`: the file, streamed from disk.
//!
//! Status, cancel and files answer only the principal that started the job (the same
//! subject from the same issuer); to anyone else the job is not there (404). An export
//! to a recipient outside the organisation (a named one, or a client registered as one)
//! is recorded in the accounting of disclosures before it completes.
//!
//! The job itself (`jobs.rs`) scans the store and writes files with `ndjson.rs`, which
//! `custodian export` calls too.

mod file_body;
mod jobs;
mod ndjson;
mod request;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use fhir::IssueType;
use privacy::Principal;
use serde_json::{Value, json};
use store::{Patients, ScanRequest, Store};

pub(crate) use jobs::Jobs;
pub use ndjson::{ExportError, Exported, OutputFile, Progress, write_ndjson};
pub use request::{ExportParams, Level, parameters_body, parse_params};

use crate::AppState;
use crate::body::{parse_object, read_limited};
use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath, TypePath};
use crate::response::handling_strict;

/// The content type of the output files.
pub const NDJSON: &str = "application/fhir+ndjson";

/// The scan a checked kick-off asks for. `members` are the Group's patients (Group
/// level); a `patient` parameter narrows the patients further.
pub fn scan_request(
    params: ExportParams,
    level: Level,
    members: Option<Vec<String>>,
) -> ScanRequest {
    let patients = match (level, members, params.patients) {
        (Level::System, _, _) => None,
        (_, None, None) => Some(Patients::All),
        (_, None, Some(asked)) => Some(Patients::Only(asked)),
        (_, Some(members), None) => Some(Patients::Only(members)),
        (_, Some(members), Some(asked)) => Some(Patients::Only(
            members
                .into_iter()
                .filter(|id| asked.contains(id))
                .collect(),
        )),
    };
    ScanRequest {
        types: params.types,
        since: params.since,
        patients,
        filters: params.filters,
    }
}

/// The ids of the Patients a Group's active members name (`Patient/[id]`, or the same
/// under `base`). 404 when there is no such Group.
pub async fn group_patients(
    store: &Store,
    id: &str,
    base: Option<&str>,
) -> Result<Vec<String>, ApiError> {
    let version = store.read("Group", id).await?;
    let Some(body) = version.and_then(|version| version.body) else {
        return Err(ApiError::not_found(format!("Group/{id} is not known")));
    };
    let group: Value = serde_json::from_str(&body)
        .map_err(|error| ApiError::from(store::StoreError::Backend(error.to_string())))?;
    let mut patients = Vec::new();
    for member in group["member"].as_array().into_iter().flatten() {
        if member["inactive"] == Value::Bool(true) {
            continue;
        }
        let Some(reference) = member["entity"]["reference"].as_str() else {
            continue;
        };
        let local = base
            .and_then(|base| reference.strip_prefix(base))
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(reference);
        let mut parts = local.split('/');
        if let (Some("Patient"), Some(id)) = (parts.next(), parts.next())
            && fhir::is_valid_id(id)
        {
            patients.push(id.to_string());
        }
    }
    patients.sort();
    patients.dedup();
    Ok(patients)
}

/// `Prefer: respond-async`.
fn respond_async(headers: &HeaderMap) -> bool {
    headers.get_all("prefer").iter().any(|value| {
        value
            .to_str()
            .unwrap_or("")
            .split([',', ';'])
            .any(|preference| preference.trim() == "respond-async")
    })
}

/// Checks a kick-off and starts its job.
async fn kick_off(
    state: &AppState,
    request: &FhirRequest,
    uri: &Uri,
    method: &Method,
    body: Body,
    level: Level,
    group: Option<&str>,
) -> Result<Response, ApiError> {
    if !respond_async(&request.headers) {
        return Err(ApiError::bad_request(
            "$export is asynchronous: send Prefer: respond-async",
        ));
    }
    // A bulk release covers many patients: never for a principal limited to one.
    let principal = &request.principal;
    if principal.patient().is_some() && !principal.unchecked {
        return Err(crate::auth::forbidden(
            "a token limited to one patient cannot run a bulk export; use Patient/[id]/$everything"
                .into(),
        ));
    }
    let mut params = request.params.clone();
    if method == Method::POST {
        let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
        if !bytes.iter().all(u8::is_ascii_whitespace) {
            params.extend(parameters_body(&parse_object(&bytes)?)?);
        }
    }
    let params = parse_params(&params, level, handling_strict(&request.headers))?;
    crate::auth::authorize_types(
        &request.principal,
        privacy::Interaction::Export,
        &params.types,
    )?;
    let base = state.config.base_url.as_str();
    let members = match group {
        Some(id) => Some(group_patients(&state.store, id, Some(base)).await?),
        None => None,
    };
    let release = crate::disclosure::record::release_of(state, &request.headers, principal).await?;
    let mut scan = scan_request(params, level, members);
    // Labelled data the principal may not see, and what consents deny it, stay out.
    crate::restrict::View::of(state, principal)
        .await?
        .narrow_scan(&mut scan);
    let url = format!(
        "{base}{}",
        uri.path_and_query().map_or("", |path| path.as_str())
    );
    let limits = &state.config.limits;
    let job = state
        .exports
        .start(
            state.store.clone(),
            scan,
            url,
            limits.export_file_bytes,
            limits.export_jobs,
            jobs::Requester {
                owner: owner(principal),
                release,
            },
        )
        .map_err(|error| match error {
            jobs::StartError::NoDirectory => ApiError::not_supported(
                StatusCode::NOT_IMPLEMENTED,
                "this store has no directory to write exports to",
            ),
            jobs::StartError::NoRuntime => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "the export could not start",
            ),
            jobs::StartError::Thread(error) => {
                tracing::error!(%error, "cannot start an export thread");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    IssueType::Exception,
                    "the export could not start",
                )
            }
            jobs::StartError::Busy => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                IssueType::Processing,
                format!(
                    "{} exports are running already; try again later",
                    limits.export_jobs
                ),
            ),
        })?;
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("{base}/$export-status/{}", job.id)) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, location);
    }
    Ok(response)
}

/// `GET|POST [base]/$export`
pub(crate) async fn system(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    request: FhirRequest,
    body: Body,
) -> Result<Response, ApiError> {
    kick_off(&state, &request, &uri, &method, body, Level::System, None).await
}

/// `GET|POST [base]/Patient/$export`
pub(crate) async fn type_level(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
    body: Body,
) -> Result<Response, ApiError> {
    if resource_type != "Patient" {
        return Err(ApiError::not_found(format!(
            "$export is defined on Patient and Group, not {resource_type}"
        )));
    }
    kick_off(&state, &request, &uri, &method, body, Level::Patient, None).await
}

/// `GET|POST [base]/Group/[id]/$export`
pub(crate) async fn instance_level(
    State(state): State<AppState>,
    method: Method,
    uri: Uri,
    request: FhirRequest,
    path: InstancePath,
    body: Body,
) -> Result<Response, ApiError> {
    if path.resource_type != "Group" {
        return Err(ApiError::not_found(format!(
            "$export is defined on Group instances, not {}",
            path.resource_type
        )));
    }
    let group = Some(path.id.as_str());
    kick_off(&state, &request, &uri, &method, body, Level::Group, group).await
}

fn unknown_job() -> ApiError {
    ApiError::not_found("no such export job (it may have been deleted)")
}

/// Who owns a job `principal` starts: its subject, with the issuer that vouches for it.
fn owner(principal: &Principal) -> String {
    format!("{} {}", principal.issuer, principal.subject)
}

/// The job `id`, if `principal` started it (a server without authentication sees all).
fn own_job(state: &AppState, id: &str, principal: &Principal) -> Result<Arc<jobs::Job>, ApiError> {
    state
        .exports
        .get(id)
        .filter(|job| {
            principal.unchecked || job.owner.as_deref() == Some(owner(principal).as_str())
        })
        .ok_or_else(unknown_job)
}

/// `GET [base]/$export-status/[job]`
pub(crate) async fn status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(principal): Extension<Arc<Principal>>,
) -> Result<Response, ApiError> {
    let job = own_job(&state, &id, &principal)?;
    let manifest = match &*job.state() {
        jobs::State::Running => None,
        jobs::State::Complete(manifest) => Some(manifest.clone()),
        jobs::State::Failed => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "the export failed; the server log says why",
            ));
        }
    };
    let Some(manifest) = manifest else {
        let done = job.done.load(std::sync::atomic::Ordering::Relaxed);
        let estimate = job.estimate.load(std::sync::atomic::Ordering::Relaxed);
        let mut response = StatusCode::ACCEPTED.into_response();
        let headers = response.headers_mut();
        if let Ok(progress) =
            HeaderValue::from_str(&format!("Exported {done} of ~{estimate} resources"))
        {
            headers.insert("x-progress", progress);
        }
        headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Ok(response);
    };
    let base = state.config.base_url.as_str();
    let output: Vec<Value> = manifest
        .files
        .iter()
        .map(|file| {
            json!({
                "type": file.resource_type,
                "url": format!("{base}/$export-file/{}/{}", job.id, file.name),
                "count": file.count,
            })
        })
        .collect();
    let body = json!({
        "transactionTime": manifest.transaction_time,
        "request": manifest.request,
        "requiresAccessToken": true,
        "output": output,
        "error": [],
    });
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// `DELETE [base]/$export-status/[job]`
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Extension(principal): Extension<Arc<Principal>>,
) -> Result<Response, ApiError> {
    own_job(&state, &id, &principal)?;
    let exports = state.exports.clone();
    let found = tokio::task::spawn_blocking(move || exports.cancel(&id))
        .await
        .map_err(|error| {
            ApiError::from(store::StoreError::Backend(format!(
                "cancelling failed: {error}"
            )))
        })?;
    if found {
        Ok(StatusCode::ACCEPTED.into_response())
    } else {
        Err(unknown_job())
    }
}

/// `GET [base]/$export-file/[job]/[file]`
pub(crate) async fn file(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Extension(principal): Extension<Arc<Principal>>,
) -> Result<Response, ApiError> {
    let job = own_job(&state, &id, &principal)?;
    let path = job
        .file(&name)
        .ok_or_else(|| ApiError::not_found(format!("export job {id} has no file {name:?}")))?;
    let file = std::fs::File::open(&path).map_err(|error| {
        tracing::error!(path = %path.display(), %error, "an export file is missing");
        ApiError::not_found(format!("export job {id} has no file {name:?}"))
    })?;
    let length = file.metadata().map(|meta| meta.len()).ok();
    let mut response = (StatusCode::OK, file_body::stream(file)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    Ok(response)
}
