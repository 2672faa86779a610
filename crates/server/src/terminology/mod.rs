//! The terminology service: ICD-10-CM and ICD-10-PCS (from the `coding` crate) as
//! built-in CodeSystems, and the R4 terminology operations on them: `CodeSystem/$lookup`,
//! `$validate-code` (on CodeSystem and ValueSet), `CodeSystem/$subsumes` and
//! `ValueSet/$expand` over the implicit value sets (`?fhir_vs`, `?fhir_vs=isa/CODE`).
//!
//! The code systems are served, not stored: `GET CodeSystem/icd-10-cm` and
//! `GET CodeSystem?url=...` answer from here (`codesystem.rs`).
//!
//! Errors, the same for every operation:
//! - 400: a parameter missing, repeated, of the wrong kind or unknown, or malformed;
//! - 404: an unknown code system, version or value set, or an unknown code where the
//!   operation needs the concept (`$lookup`, `$subsumes`, `isa/CODE`);
//! - `$validate-code` answers an unknown, header or out-of-date code with 200 and
//!   `result` false: that is its answer, not an error.

mod codesystem;
mod concept;
mod expand;
mod lookup;
mod params;
mod subsumes;
mod validate;
mod valueset;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{FhirRequest, TypePath};
use crate::response::json_response;

pub(crate) use codesystem::{builtin_read, builtin_search};
pub(crate) use concept::System;
use params::Params;

/// The operations of this module.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Operation {
    Lookup,
    ValidateCode,
    Subsumes,
    Expand,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Lookup => "$lookup",
            Operation::ValidateCode => "$validate-code",
            Operation::Subsumes => "$subsumes",
            Operation::Expand => "$expand",
        }
    }

    /// The resource types the operation is defined on.
    fn types(self) -> &'static [&'static str] {
        match self {
            Operation::Lookup | Operation::Subsumes => &["CodeSystem"],
            Operation::ValidateCode => &["CodeSystem", "ValueSet"],
            Operation::Expand => &["ValueSet"],
        }
    }

    /// The parameters it accepts (besides `_format` and `_pretty`).
    fn parameters(self, resource_type: &str) -> &'static [&'static str] {
        match (self, resource_type) {
            (Operation::Lookup, _) => &[
                "code",
                "system",
                "version",
                "coding",
                "date",
                "displayLanguage",
                "property",
            ],
            (Operation::ValidateCode, "CodeSystem") => &[
                "url",
                "code",
                "version",
                "display",
                "coding",
                "codeableConcept",
                "date",
                "abstract",
                "displayLanguage",
            ],
            (Operation::ValidateCode, _) => &[
                "url",
                "valueSetVersion",
                "code",
                "system",
                "systemVersion",
                "display",
                "coding",
                "codeableConcept",
                "date",
                "abstract",
                "displayLanguage",
            ],
            (Operation::Subsumes, _) => {
                &["codeA", "codeB", "system", "version", "codingA", "codingB"]
            }
            (Operation::Expand, _) => &[
                "url",
                "valueSetVersion",
                "filter",
                "count",
                "offset",
                "includeDesignations",
                "activeOnly",
                "displayLanguage",
            ],
        }
    }

    fn run(
        self,
        resource_type: &str,
        params: &Params,
        config: &crate::Config,
    ) -> Result<Value, ApiError> {
        match (self, resource_type) {
            (Operation::Lookup, _) => lookup::run(params),
            (Operation::ValidateCode, "CodeSystem") => validate::code_system(params),
            (Operation::ValidateCode, _) => validate::value_set(params),
            (Operation::Subsumes, _) => subsumes::run(params),
            (Operation::Expand, _) => expand::run(params, &config.limits),
        }
    }
}

async fn answer(
    state: &AppState,
    request: &FhirRequest,
    resource_type: &str,
    body: Option<Body>,
    operation: Operation,
) -> Result<Response, ApiError> {
    if !operation.types().contains(&resource_type) {
        return Err(ApiError::not_found(format!(
            "the operation {} is not defined on {resource_type} (it is on {})",
            operation.name(),
            operation.types().join(" and ")
        )));
    }
    let allowed = operation.parameters(resource_type);
    let mut params = Params::new(operation.name(), allowed);
    params.add_query(&request.params)?;
    if let Some(body) = body {
        params.add_body(state, request, body).await?;
    }
    let result = operation.run(resource_type, &params, &state.config)?;
    Ok(json_response(
        StatusCode::OK,
        result.to_string(),
        request.output,
    ))
}

macro_rules! handlers {
    ($get:ident, $post:ident, $operation:expr) => {
        pub(crate) async fn $get(
            State(state): State<AppState>,
            request: FhirRequest,
            TypePath(resource_type): TypePath,
        ) -> Result<Response, ApiError> {
            answer(&state, &request, &resource_type, None, $operation).await
        }

        pub(crate) async fn $post(
            State(state): State<AppState>,
            request: FhirRequest,
            TypePath(resource_type): TypePath,
            body: Body,
        ) -> Result<Response, ApiError> {
            answer(&state, &request, &resource_type, Some(body), $operation).await
        }
    };
}

handlers!(lookup_get, lookup_post, Operation::Lookup);
handlers!(
    validate_code_get,
    validate_code_post,
    Operation::ValidateCode
);
handlers!(subsumes_get, subsumes_post, Operation::Subsumes);
handlers!(expand_get, expand_post, Operation::Expand);

/// One `Parameters.parameter` with a value: `("display", "valueString", "...")`.
pub(crate) fn parameter(name: &str, value_type: &str, value: Value) -> Value {
    let mut object = serde_json::Map::new();
    object.insert("name".into(), Value::String(name.into()));
    object.insert(value_type.into(), value);
    Value::Object(object)
}

/// One `Parameters.parameter` made of parts.
pub(crate) fn parameter_parts(name: &str, parts: Vec<Value>) -> Value {
    json!({"name": name, "part": parts})
}

/// A `Parameters` resource.
pub(crate) fn parameters(list: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": list})
}
