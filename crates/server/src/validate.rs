//! Validation: on every write, and the `$validate` operation.
//!
//! Writes are validated before they reach the store; with [`ValidationMode::Strict`] (the
//! default) a resource with any error-level issue gets 422 with every issue, and nothing is
//! stored.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir::{IssueType, Severity};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::body::{check_resource, parse_object, read_limited};
use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath, TypePath};
use crate::format::require_json_body;
use crate::response::json_response;

/// What validation does to a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValidationMode {
    /// Any error-level issue refuses the write with 422.
    #[default]
    Strict,
    /// Issues are reported in the log (as counts, never content) and the write goes ahead.
    Warnings,
}

/// An OperationOutcome listing `issues`; an information issue when there are none.
pub fn outcome(issues: &[validation::Issue]) -> Value {
    if issues.is_empty() {
        return fhir::operation_outcome(
            Severity::Information,
            IssueType::Informational,
            "validation found no issues",
        );
    }
    let issue: Vec<Value> = issues
        .iter()
        .map(|issue| {
            json!({
                "severity": issue.severity.code(),
                "code": issue.code.code(),
                "diagnostics": issue.diagnostics,
                "expression": [issue.expression],
            })
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issue})
}

fn has_errors(issues: &[validation::Issue]) -> bool {
    issues
        .iter()
        .any(|issue| matches!(issue.severity, Severity::Error | Severity::Fatal))
}

/// Validates a resource about to be written, and hands it back.
pub fn check_on_write(
    mode: ValidationMode,
    resource: Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    // The validator takes a `Value`; wrapping the map is a move, not a copy.
    let value = Value::Object(resource);
    let issues = validation::validate(&value);
    let Value::Object(resource) = value else {
        return Err(ApiError::bad_request("a resource must be a JSON object"));
    };
    if !has_errors(&issues) {
        return Ok(resource);
    }
    match mode {
        ValidationMode::Strict => Err(ApiError::with_outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueType::Invalid,
            outcome(&issues),
        )),
        ValidationMode::Warnings => {
            tracing::warn!(
                issues = issues.len(),
                "stored a resource that has validation errors"
            );
            Ok(resource)
        }
    }
}

/// The `$validate` inputs: the resource (directly, or in a Parameters `resource`), `mode`
/// and `profile` (from Parameters or the query).
struct ValidateRequest {
    resource: Option<Map<String, Value>>,
    mode: Option<String>,
    profile: Option<String>,
}

fn parse_validate_body(bytes: &[u8], request: &FhirRequest) -> Result<ValidateRequest, ApiError> {
    let mut parsed = ValidateRequest {
        resource: None,
        mode: None,
        profile: None,
    };
    for (name, value) in &request.params {
        match name.as_str() {
            "mode" => parsed.mode = Some(value.clone()),
            "profile" => parsed.profile = Some(value.clone()),
            _ => {}
        }
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(parsed);
    }
    let body = parse_object(bytes)?;
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        parsed.resource = Some(body);
        return Ok(parsed);
    }
    for parameter in body
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match parameter.get("name").and_then(Value::as_str) {
            Some("resource") => match parameter.get("resource") {
                Some(Value::Object(resource)) => parsed.resource = Some(resource.clone()),
                _ => {
                    return Err(ApiError::bad_request(
                        "the resource parameter has no resource",
                    ));
                }
            },
            Some("mode") => {
                parsed.mode = parameter
                    .get("valueCode")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            Some("profile") => {
                parsed.profile = parameter
                    .get("valueUri")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }
            _ => {}
        }
    }
    Ok(parsed)
}

async fn run_validate(
    state: &AppState,
    request: &FhirRequest,
    resource_type: &str,
    instance_id: Option<&str>,
    body: Body,
) -> Result<Response, ApiError> {
    require_json_body(&request.headers)?;
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    let input = parse_validate_body(&bytes, request)?;
    if let Some(profile) = &input.profile {
        return Err(ApiError::not_supported(
            StatusCode::BAD_REQUEST,
            format!("validation against the profile {profile:?} is not supported yet"),
        ));
    }
    let mode = input.mode.as_deref().unwrap_or("create");
    match mode {
        "create" | "update" => {}
        "delete" => {
            // Deletion has no content rules yet: it is valid when there is something to delete.
            let Some(id) = instance_id else {
                return Err(ApiError::bad_request(
                    "mode=delete needs an instance: POST [type]/[id]/$validate",
                ));
            };
            return match state.store.read(resource_type, id).await? {
                Some(version) if !version.is_deleted() => Ok(json_response(
                    StatusCode::OK,
                    outcome(&[]).to_string(),
                    request.output,
                )),
                _ => Err(ApiError::not_found(format!(
                    "{resource_type}/{id} is not known"
                ))),
            };
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "mode must be create, update or delete, not {other:?}"
            )));
        }
    }
    let Some(mut resource) = input.resource else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "$validate needs a resource to validate",
        ));
    };
    if mode == "create" {
        resource.shift_remove("id");
    }
    let resource = check_resource(resource, resource_type)?;
    if mode == "update" {
        let body_id = resource.get("id").and_then(Value::as_str);
        if body_id.is_none() || (instance_id.is_some() && body_id != instance_id) {
            return Err(ApiError::bad_request(
                "mode=update needs the resource id in the body, equal to the URL's id",
            ));
        }
    }
    let issues = validation::validate(&Value::Object(resource));
    Ok(json_response(
        StatusCode::OK,
        outcome(&issues).to_string(),
        request.output,
    ))
}

pub(crate) async fn validate_type(
    State(state): State<AppState>,
    request: FhirRequest,
    TypePath(resource_type): TypePath,
    body: Body,
) -> Result<Response, ApiError> {
    run_validate(&state, &request, &resource_type, None, body).await
}

pub(crate) async fn validate_instance(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
    body: Body,
) -> Result<Response, ApiError> {
    run_validate(&state, &request, &path.resource_type, Some(&path.id), body).await
}
