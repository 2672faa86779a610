//! `GET /fhir/metadata`: a CapabilityStatement that claims only what this server does.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::BTreeMap;

use fhir::{FHIR_VERSION, definitions};
use search::ParamType;
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
    "search-type",
];

/// R4 has no `conditionalPatch`; R5 does, and this is its R4 cross-version extension.
const CONDITIONAL_PATCH: &str = "http://hl7.org/fhir/5.0/StructureDefinition/extension-CapabilityStatement.rest.resource.conditionalPatch";

/// `_include` values per type (`Observation:subject`), and `_revinclude` values per
/// target type (`Observation:subject` under Patient).
/// Values of `searchInclude` or `searchRevInclude`, by resource type.
type ByType = BTreeMap<String, Vec<String>>;

fn includes() -> (ByType, ByType) {
    let mut include = ByType::new();
    let mut revinclude = ByType::new();
    for resource_type in definitions().resource_types() {
        for param in search::params_for(resource_type) {
            if param.param_type != ParamType::Reference {
                continue;
            }
            let value = format!("{resource_type}:{}", param.code);
            include
                .entry(resource_type.clone())
                .or_default()
                .push(value.clone());
            for target in &param.targets {
                let list = revinclude.entry(target.clone()).or_default();
                if !list.contains(&value) {
                    list.push(value.clone());
                }
            }
        }
    }
    (include, revinclude)
}

/// The operations on one type: `$validate` everywhere; `$everything` and the master
/// patient index's (`$match`, `$merge`, `$unmerge`, `$duplicates`, `$duplicate-decision`)
/// on Patient; Bulk Data `$export` on Patient and Group; the terminology operations on
/// CodeSystem and ValueSet; and `$drg` on Encounter.
fn operations(resource_type: &str) -> Vec<Value> {
    let mut operations = vec![json!({
        "name": "validate",
        "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate",
    })];
    if resource_type == "Patient" {
        operations.push(json!({
            "name": "everything",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
        }));
        operations.push(json!({
            "name": "export",
            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
        }));
        operations.push(json!({
            "name": "match",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-match",
        }));
        operations.push(json!({
            "name": "merge",
            "definition": "http://hl7.org/fhir/OperationDefinition/Patient-merge",
            "documentation": "R5 Patient-merge semantics: source-patient(-identifier), target-patient(-identifier), result-patient, preview",
        }));
        for (name, documentation) in [
            (
                "unmerge",
                "Restores the state before a $merge: source-patient (and optionally target-patient)",
            ),
            (
                "duplicates",
                "The open items of the duplicate worklist, each with both Patients, the score and the explanation",
            ),
            (
                "duplicate-decision",
                "Decides a worklist item: item (Task), decision same-person | not-duplicate, merge",
            ),
            (
                "accounting-of-disclosures",
                "The HIPAA accounting of disclosures (45 CFR 164.528) of Patient/[id]: start, end (at most six years back); a Parameters of disclosure parts (date, recipient, address, description, purpose)",
            ),
        ] {
            operations.push(json!({
                "name": name,
                "definition": format!("urn:custodian:OperationDefinition/Patient-{name}"),
                "documentation": documentation,
            }));
        }
    }
    if resource_type == "CodeSystem" {
        for name in ["lookup", "validate-code", "subsumes"] {
            operations.push(json!({
                "name": name,
                "definition": format!("http://hl7.org/fhir/OperationDefinition/CodeSystem-{name}"),
            }));
        }
    }
    if resource_type == "ValueSet" {
        for name in ["expand", "validate-code"] {
            operations.push(json!({
                "name": name,
                "definition": format!("http://hl7.org/fhir/OperationDefinition/ValueSet-{name}"),
            }));
        }
    }
    if resource_type == "Encounter" {
        operations.push(json!({
            "name": "drg",
            "definition": crate::drg::DEFINITION,
            "documentation": "Groups the inpatient encounter with the MS-DRG v43.1 grouper and the Medicare Code Editor, from its ICD-10-CM diagnoses, ICD-10-PCS procedures, the patient's age and sex, and the discharge disposition.",
        }));
    }
    if resource_type == "Group" {
        operations.push(json!({
            "name": "export",
            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
        }));
    }
    operations
}

pub(crate) fn statement(config: &Config) -> Value {
    let (include, revinclude) = includes();
    let resources: Vec<Value> = definitions()
        .resource_types()
        .iter()
        .map(|resource_type| {
            let search_params: Vec<Value> = search::params_for(resource_type)
                .iter()
                .map(|param| {
                    json!({
                        "name": param.code,
                        "definition": param.url,
                        "type": param.param_type.name(),
                    })
                })
                .collect();
            let mut search_include = vec!["*".to_string()];
            search_include.extend(include.get(resource_type).into_iter().flatten().cloned());
            let mut resource = json!({
                "type": resource_type,
                "interaction": TYPE_INTERACTIONS.iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-supported",
                "conditionalUpdate": true,
                "conditionalDelete": "multiple",
                "extension": [{"url": CONDITIONAL_PATCH, "valueBoolean": true}],
                "searchInclude": search_include,
                "searchParam": search_params,
                "operation": operations(resource_type),
            });
            // FHIR JSON has no empty arrays: only types something refers to get one.
            if let Some(list) = revinclude.get(resource_type)
                && let Some(object) = resource.as_object_mut()
            {
                object.insert("searchRevInclude".into(), json!(list));
            }
            resource
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
            "security": crate::auth::smart::capability_security(config),
            "resource": resources,
            "interaction": [{"code": "history-system"}, {"code": "search-system"}],
            "operation": [{
                "name": "export",
                "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
            }],
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
