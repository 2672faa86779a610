//! `GET /fhir/metadata`: a CapabilityStatement that claims only what this server does.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir::{FHIR_VERSION, definitions};
use serde_json::{Value, json};
use store::Instant;

use crate::error::ApiError;
use crate::extract::FhirRequest;
use crate::response::json_response;
use crate::{AppState, Config};

/// The interactions every resource type supports.
const TYPE_INTERACTIONS: &[&str] = &[
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
];

pub(crate) fn statement(config: &Config) -> Value {
    let resources: Vec<Value> = definitions()
        .resource_types()
        .iter()
        .map(|resource_type| {
            json!({
                "type": resource_type,
                "interaction": TYPE_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "operation": [{
                    "name": "validate",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
                }],
            })
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": Instant::now().to_fhir(),
        "publisher": "Custodian",
        "kind": "instance",
        "software": {
            "name": "Custodian",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "implementation": {
            "description": "Custodian health information management server",
            "url": config.base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [{
            "mode": "server",
            "resource": resources,
            "interaction": [{"code": "history-system"}],
        }],
    })
}

pub(crate) async fn metadata(
    State(state): State<AppState>,
    request: FhirRequest,
) -> Result<Response, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        state.capability.to_string(),
        request.output,
    ))
}
