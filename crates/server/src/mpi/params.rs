//! Reading the Parameters of the MPI operations: the body must be a Parameters
//! resource, and each input is looked up by name with the type it must have.

use axum::http::StatusCode;
use fhir::IssueType;
use serde_json::{Map, Value, json};

use axum::body::Body;

use crate::AppState;
use crate::body::{parse_object, read_limited};
use crate::error::ApiError;
use crate::extract::FhirRequest;
use crate::format::require_json_body;

/// A Parameters body.
pub struct Params {
    pub body: Map<String, Value>,
}

impl Params {
    /// The request's JSON body, within the size limit, as a Parameters resource.
    pub async fn read(
        state: &AppState,
        request: &FhirRequest,
        body: Body,
        operation: &str,
    ) -> Result<Params, ApiError> {
        require_json_body(&request.headers)?;
        let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
        Params::parse(&bytes, operation)
    }

    /// `bytes` as a Parameters resource; 400 for anything else.
    pub fn parse(bytes: &[u8], operation: &str) -> Result<Params, ApiError> {
        let body = parse_object(bytes)?;
        if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(ApiError::bad_request(format!(
                "{operation} takes a Parameters resource"
            )));
        }
        Ok(Params { body })
    }

    fn all(&self, name: &str) -> Vec<&Value> {
        self.body
            .get("parameter")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|parameter| parameter.get("name").and_then(Value::as_str) == Some(name))
            .collect()
    }

    fn one(&self, name: &str) -> Result<Option<&Value>, ApiError> {
        let found = self.all(name);
        let first = found.first().copied();
        if found.len() > 1 {
            return Err(ApiError::bad_request(format!(
                "the parameter {name} is given more than once"
            )));
        }
        Ok(first)
    }

    /// The `value[x]` of the parameter `name`, which must be of `element` (e.g.
    /// `valueBoolean`); `None` when absent.
    pub fn value(&self, name: &str, element: &str) -> Result<Option<&Value>, ApiError> {
        match self.one(name)? {
            None => Ok(None),
            Some(parameter) => match parameter.get(element) {
                Some(value) => Ok(Some(value)),
                None => Err(ApiError::bad_request(format!(
                    "the parameter {name} needs a {element}"
                ))),
            },
        }
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.value(name, "valueBoolean")? {
            None => Ok(None),
            Some(Value::Bool(value)) => Ok(Some(*value)),
            Some(_) => Err(ApiError::bad_request(format!(
                "the parameter {name} must be true or false"
            ))),
        }
    }

    /// The resource of the parameter `name`.
    pub fn resource(&self, name: &str) -> Result<Option<&Map<String, Value>>, ApiError> {
        match self.one(name)? {
            None => Ok(None),
            Some(parameter) => match parameter.get("resource") {
                Some(Value::Object(resource)) => Ok(Some(resource)),
                _ => Err(ApiError::bad_request(format!(
                    "the parameter {name} needs a resource"
                ))),
            },
        }
    }

    /// The id of a Patient named by the parameter `name` (a `valueReference` to
    /// `Patient/id`, relative or under `base`).
    pub fn patient_reference(&self, name: &str, base: &str) -> Result<Option<String>, ApiError> {
        let Some(value) = self.value(name, "valueReference")? else {
            return Ok(None);
        };
        let reference = value.get("reference").and_then(Value::as_str).unwrap_or("");
        patient_id(reference, base).map(Some).ok_or_else(|| {
            unprocessable(
                IssueType::Invalid,
                format!(
                    "the parameter {name} must refer to a Patient (Patient/id), not {reference:?}"
                ),
            )
        })
    }

    /// The identifiers of the parameter `name` (each a `valueIdentifier`), as (system,
    /// value).
    pub fn identifiers(&self, name: &str) -> Result<Vec<(String, String)>, ApiError> {
        let mut found = Vec::new();
        for parameter in self.all(name) {
            let identifier = parameter.get("valueIdentifier").ok_or_else(|| {
                ApiError::bad_request(format!("the parameter {name} needs a valueIdentifier"))
            })?;
            let text = |key: &str| {
                identifier
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            if text("value").is_empty() {
                return Err(ApiError::bad_request(format!(
                    "the parameter {name} needs an identifier with a value"
                )));
            }
            found.push((text("system"), text("value")));
        }
        Ok(found)
    }

    pub fn to_value(&self) -> Value {
        Value::Object(self.body.clone())
    }
}

/// The id in `Patient/id` (or `Patient/id/_history/n`, or either under `base`).
pub fn patient_id(reference: &str, base: &str) -> Option<String> {
    let local = reference
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(reference);
    let rest = local.strip_prefix("Patient/")?;
    let id = rest.split('/').next().unwrap_or("");
    fhir::is_valid_id(id).then(|| id.to_string())
}

/// 422 with `code`.
pub fn unprocessable(code: IssueType, diagnostics: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, diagnostics)
}

/// `{"name": name, <element>: value}`.
pub fn parameter(name: &str, element: &str, value: Value) -> Value {
    let mut parameter = Map::new();
    parameter.insert("name".into(), json!(name));
    parameter.insert(element.into(), value);
    Value::Object(parameter)
}
