//! Validation: on every write, and the `$validate` operation.
//!
//! Writes are validated before they reach the store; with [`ValidationMode::Strict`] (the
//! default) a resource with any error-level issue gets 422 with every issue, and nothing is
//! stored.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir::{IssueType, Severity};
use serde_json::{Map, Value};
use store::Version;

use crate::AppState;
use crate::body::{check_resource, parse_object, read_limited};
use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath, TypePath};
use crate::format::require_json_body;
use crate::references::{Referenced, referenced};
use crate::response::json_response;

/// What validation does to a write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ValidationMode {
    /// Any error-level issue refuses the write with 422.
    #[default]
    Strict,
    /// Issues are reported in the log (as counts, never content) and the write goes ahead.
    Warnings,
    /// No validation on write (bulk loads of trusted data); `$validate` still works.
    Off,
}

fn has_errors(issues: &[validation::Issue]) -> bool {
    issues
        .iter()
        .any(|issue| matches!(issue.severity, Severity::Error | Severity::Fatal))
}

/// Validates a resource against the base definitions and the profiles it claims in
/// `meta.profile` that this server knows; a profile it does not know is a warning.
pub fn issues_for(
    state: &AppState,
    resource: &Value,
    referenced: Option<&Referenced>,
    requested: Option<Arc<validation::Profile>>,
) -> Vec<validation::Issue> {
    let (mut profiles, unknown) = state.profiles.claimed(resource);
    if let Some(requested) = requested
        && !profiles
            .iter()
            .any(|claimed| claimed.url() == requested.url())
    {
        profiles.push(requested);
    }
    let profiles: Vec<&validation::Profile> = profiles.iter().map(AsRef::as_ref).collect();
    let mut issues = match referenced {
        Some(referenced) => validation::validate_against_with(
            resource,
            &profiles,
            Some(&validation::Resolving(referenced)),
        ),
        None if profiles.is_empty() => validation::validate(resource),
        None => validation::validate_against(resource, &profiles),
    };
    let resource_type = resource["resourceType"].as_str().unwrap_or("Resource");
    for (index, url) in unknown.iter().enumerate() {
        issues.push(validation::Issue {
            severity: Severity::Warning,
            code: IssueType::NotSupported,
            expression: format!("{resource_type}.meta.profile[{index}]"),
            diagnostics: format!(
                "the profile {url} is not known to this server; only the base definitions were checked"
            ),
        });
    }
    // A profile must be usable before it is stored, or resources claiming it would pass
    // unchecked.
    if resource_type == "StructureDefinition"
        && resource["derivation"] == "constraint"
        && let Err(reason) = validation::Profile::compile(resource)
    {
        issues.push(validation::Issue {
            severity: Severity::Error,
            code: IssueType::NotSupported,
            expression: "StructureDefinition".into(),
            diagnostics: format!("this profile cannot be applied by this server: {reason}"),
        });
    }
    issues
}

/// Validates a resource about to be written, and hands it back.
pub fn check_on_write(
    state: &AppState,
    resource: Map<String, Value>,
    referenced: Option<&Referenced>,
) -> Result<Map<String, Value>, ApiError> {
    if state.config.validation == ValidationMode::Off {
        return Ok(resource);
    }
    // The validator takes a `Value`; wrapping the map is a move, not a copy.
    let value = Value::Object(resource);
    let issues = issues_for(state, &value, referenced, None);
    let Value::Object(resource) = value else {
        return Err(ApiError::bad_request("a resource must be a JSON object"));
    };
    if !has_errors(&issues) {
        return Ok(resource);
    }
    match state.config.validation {
        ValidationMode::Strict => Err(ApiError::with_outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            IssueType::Invalid,
            validation::operation_outcome(&issues),
        )),
        ValidationMode::Warnings | ValidationMode::Off => {
            tracing::warn!(
                issues = issues.len(),
                "stored a resource that has validation errors"
            );
            Ok(resource)
        }
    }
}

/// Keeps the profile registry in step with a StructureDefinition that was just written,
/// the patient index with a Patient, and the consents with a Consent.
pub fn after_write(state: &AppState, version: &Version) {
    state.mpi.observe(version);
    if version.resource_type != "StructureDefinition" {
        return;
    }
    match version.body.as_deref().map(serde_json::from_str::<Value>) {
        Some(Ok(resource)) => {
            if let Err(error) = state.profiles.register(&version.id, &resource) {
                tracing::warn!(id = %version.id, %error, "a stored profile cannot be used");
            }
        }
        _ => state.profiles.forget(&version.id),
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
    let requested = match &input.profile {
        None => None,
        Some(url) => match state.profiles.get(url) {
            Some(profile) => Some(profile),
            None => {
                return Err(ApiError::not_found(format!(
                    "the profile {url} is not known to this server; store its StructureDefinition first"
                )));
            }
        },
    };
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
            let view = crate::restrict::View::of(state, &request.principal).await?;
            return match view.keep(state.store.read(resource_type, id).await?) {
                Some(version) if !version.is_deleted() => Ok(json_response(
                    StatusCode::OK,
                    validation::operation_outcome(&[]).to_string(),
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
    let fetched = referenced(state, &resource).await?;
    let resource = Value::Object(resource);
    let issues = issues_for(state, &resource, fetched.as_ref(), requested);
    Ok(json_response(
        StatusCode::OK,
        validation::operation_outcome(&issues).to_string(),
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
