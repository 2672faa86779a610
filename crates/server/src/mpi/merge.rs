//! `POST [base]/Patient/$merge` (the R5 Patient-merge semantics on R4) and
//! `POST [base]/Patient/$unmerge` (ours).
//!
//! `$merge` inputs: `source-patient` or `source-patient-identifier`, `target-patient` or
//! `target-patient-identifier`, `result-patient` (the target's new content, optional)
//! and `preview`. In one store transaction it repoints every reference to the source
//! (`repoint.rs`) to the target, deactivates the source with a `replaced-by` link,
//! gives the target a `replaces` link, and writes a Provenance (activity
//! `iso-21089-lifecycle|merge`) and an AuditEvent. The Provenance's `entity` lists the
//! version of each changed resource before the merge and its `target` the version the
//! merge wrote, in the same order: that is what `$unmerge` restores from. The output
//! is Parameters with `input`, `outcome` and `result` (the target), and `provenance`.
//!
//! `$unmerge` inputs: `source-patient` (and optionally `target-patient`, checked). It
//! finds the Provenance of the merge that wrote the source's current version and, in
//! one transaction, writes each changed resource's pre-merge content again as a new
//! version, with a Provenance (`unmerge`) and an AuditEvent. A resource changed since
//! the merge stops it (409): restoring would lose that change.
//!
//! Bad input changes nothing: unknown patients, a source equal to the target, a source
//! or target already merged into another are 422; `delete-source` is not supported.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir::{IssueType, Severity};
use serde_json::{Map, Value, json};
use store::{Method, StoreError, Version, Write};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::FhirRequest;
use crate::mpi::audit::audit_event;
use crate::mpi::enterprise::current_patient;
use crate::mpi::params::{Params, parameter, unprocessable};
use crate::mpi::repoint::{referring, repoint, search_all};
use crate::mpi::{is_replaced, links};
use crate::response::json_response;

/// The code system of record lifecycle events (ISO 21089), for Provenance.activity and
/// AuditEvent.subtype.
pub const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";

/// A checked merge: every resource it changes, the version before and the new content.
pub struct Plan {
    source: String,
    target: String,
    /// The source first, the target second, then every resource repointed.
    changes: Vec<(Version, Map<String, Value>)>,
}

/// Checks a merge of `source` into `target` and works out what it changes.
pub async fn prepare(
    state: &AppState,
    source: &str,
    target: &str,
    result: Option<&Map<String, Value>>,
) -> Result<Plan, ApiError> {
    if source == target {
        return Err(unprocessable(
            IssueType::Invalid,
            "the source and the target are the same Patient",
        ));
    }
    let (source_version, source_patient) = current_patient(state, source).await?;
    let (target_version, target_patient) = current_patient(state, target).await?;
    for (id, patient) in [(source, &source_patient), (target, &target_patient)] {
        if let Some((_, other)) = links(patient).find(|(kind, _)| *kind == "replaced-by") {
            return Err(unprocessable(
                IssueType::Processing,
                format!("Patient/{id} has already been merged into {other}"),
            ));
        }
    }
    let base = &state.config.base_url;
    let mut target_content = match result {
        None => object(target_patient)?,
        Some(result) => {
            if result.get("resourceType").and_then(Value::as_str) != Some("Patient") {
                return Err(unprocessable(
                    IssueType::Invalid,
                    "result-patient must be a Patient",
                ));
            }
            match result.get("id").and_then(Value::as_str) {
                Some(id) if id == target => {}
                _ => {
                    return Err(unprocessable(
                        IssueType::Invalid,
                        format!("result-patient must have the target's id ({target})"),
                    ));
                }
            }
            crate::validate::check_on_write(state, result.clone(), None)?
        }
    };
    push_link(&mut target_content, source, "replaces");
    let mut source_content = object(source_patient)?;
    source_content.insert("active".into(), Value::Bool(false));
    push_link(&mut source_content, target, "replaced-by");
    let mut changes = vec![
        (source_version, source_content),
        (target_version, target_content),
    ];
    for (version, mut resource) in referring(state, source, &[source, target]).await? {
        if repoint(&mut resource, source, target, base) {
            changes.push((version, object(resource)?));
        }
    }
    Ok(Plan {
        source: source.to_string(),
        target: target.to_string(),
        changes,
    })
}

/// Merges `source` into `target`; the output Parameters.
pub async fn run(
    state: &AppState,
    requester: &str,
    source: &str,
    target: &str,
    result: Option<&Map<String, Value>>,
    input: Option<Value>,
) -> Result<Value, ApiError> {
    let plan = prepare(state, source, target, result).await?;
    let repointed = plan.changes.len() - 2;
    let provenance_id = store::new_id();
    let entities: Vec<String> = plan.changes.iter().map(|(v, _)| at(v, v.version)).collect();
    let targets: Vec<String> = plan
        .changes
        .iter()
        .map(|(v, _)| at(v, v.version + 1))
        .collect();
    let provenance = provenance("merge", &targets, &entities, "source", requester);
    let audit = audit_event(
        "merge",
        &[
            format!("Patient/{}", plan.source),
            format!("Patient/{}", plan.target),
            format!("Provenance/{provenance_id}"),
        ],
        requester,
    );
    let mut writes: Vec<Write> = plan
        .changes
        .into_iter()
        .map(|(version, resource)| Write::Update {
            resource_type: version.resource_type,
            id: version.id,
            resource,
            if_match: Some(version.version),
            method: Method::Update,
        })
        .collect();
    writes.push(Write::Create {
        resource: provenance,
        id: Some(provenance_id.clone()),
    });
    let audit = crate::audit::event_record(
        audit,
        "$merge",
        vec![format!("Patient/{}", plan.source)],
        Some(format!("Patient/{}", plan.target)),
    );
    let written = write(state, writes, audit).await?;
    let target_body = written
        .get(1)
        .and_then(|version| version.body.as_deref())
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
        .unwrap_or(Value::Null);
    let message = format!(
        "Patient/{source} was merged into Patient/{target}; {repointed} resources that referred to the source now refer to the target"
    );
    let mut output = Vec::new();
    if let Some(input) = input {
        output.push(parameter("input", "resource", input));
    }
    output.push(parameter(
        "outcome",
        "resource",
        fhir::operation_outcome(Severity::Information, IssueType::Informational, &message),
    ));
    output.push(parameter("result", "resource", target_body));
    output.push(parameter(
        "provenance",
        "valueReference",
        json!({"reference": format!("Provenance/{provenance_id}")}),
    ));
    Ok(json!({"resourceType": "Parameters", "parameter": output}))
}

/// Writes `writes` in one transaction, then brings the index up to date; the versions
/// written, in order.
async fn write(
    state: &AppState,
    writes: Vec<Write>,
    audit: store::AuditRecord,
) -> Result<Vec<Version>, ApiError> {
    let written = crate::audit::write_all_with(&state.store, writes, vec![audit])
        .await
        .map_err(|failure| match failure.error {
            StoreError::VersionMismatch { .. } => ApiError::new(
                StatusCode::CONFLICT,
                IssueType::Conflict,
                "a record changed while this was being done; nothing was changed, try again",
            ),
            error => ApiError::from(error),
        })?;
    let versions: Vec<Version> = written.into_iter().filter_map(|w| w.version).collect();
    for version in &versions {
        state.mpi.reindex(version);
    }
    Ok(versions)
}

/// `Type/id/_history/n`.
fn at(version: &Version, number: u64) -> String {
    format!("{}/{}/_history/{number}", version.resource_type, version.id)
}

/// The Provenance of `activity`: what it wrote (`targets`) and from what (`entities`,
/// the first with role `first_role`, the others `revision`).
fn provenance(
    activity: &str,
    targets: &[String],
    entities: &[String],
    first_role: &str,
    requester: &str,
) -> Map<String, Value> {
    let entity: Vec<Value> = entities
        .iter()
        .enumerate()
        .map(|(index, what)| {
            let role = if index == 0 { first_role } else { "revision" };
            json!({"role": role, "what": {"reference": what}})
        })
        .collect();
    let target: Vec<Value> = targets
        .iter()
        .map(|reference| json!({"reference": reference}))
        .collect();
    let value = json!({
        "resourceType": "Provenance",
        "target": target,
        "recorded": store::Instant::now().to_fhir(),
        "activity": {"coding": [{"system": LIFECYCLE, "code": activity}]},
        "agent": [{
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "author"
            }]},
            "who": {"display": requester}
        }, {
            "type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "performer"
            }]},
            "who": {"display": "Custodian master patient index"}
        }],
        "entity": entity
    });
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn object(value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(unprocessable(
            IssueType::Exception,
            "a stored resource is not an object",
        )),
    }
}

fn push_link(patient: &mut Map<String, Value>, other: &str, kind: &str) {
    let link = json!({"other": {"reference": format!("Patient/{other}")}, "type": kind});
    match patient.get_mut("link") {
        Some(Value::Array(links)) => links.push(link),
        _ => {
            patient.insert("link".into(), Value::Array(vec![link]));
        }
    }
}

/// The Patient a merge input names: `<role>-patient` or `<role>-patient-identifier`.
async fn named_patient(state: &AppState, params: &Params, role: &str) -> Result<String, ApiError> {
    let by_reference =
        params.patient_reference(&format!("{role}-patient"), &state.config.base_url)?;
    let identifiers = params.identifiers(&format!("{role}-patient-identifier"))?;
    match (by_reference, identifiers.is_empty()) {
        (Some(id), true) => Ok(id),
        (Some(_), false) => Err(ApiError::bad_request(format!(
            "give {role}-patient or {role}-patient-identifier, not both"
        ))),
        (None, true) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            format!("the {role} Patient is missing ({role}-patient or {role}-patient-identifier)"),
        )),
        (None, false) => {
            let mut found: Option<Vec<String>> = None;
            for (system, value) in identifiers {
                let token = if system.is_empty() {
                    value
                } else {
                    format!("{system}|{value}")
                };
                let params = [("identifier".to_string(), token)];
                let ids: Vec<String> = search_all(state, "Patient", &params, 2)
                    .await?
                    .into_iter()
                    .map(|version| version.id)
                    .collect();
                found = Some(match found {
                    None => ids,
                    Some(before) => before.into_iter().filter(|id| ids.contains(id)).collect(),
                });
            }
            let found = found.unwrap_or_default();
            match found.as_slice() {
                [id] => Ok(id.clone()),
                [] => Err(unprocessable(
                    IssueType::NotFound,
                    format!("no Patient has the {role}-patient-identifier"),
                )),
                _ => Err(unprocessable(
                    IssueType::Processing,
                    format!("more than one Patient has the {role}-patient-identifier"),
                )),
            }
        }
    }
}

/// `POST [base]/Patient/$merge`
pub(crate) async fn merge(
    State(state): State<AppState>,
    request: FhirRequest,
    body: Body,
) -> Result<Response, ApiError> {
    let params = Params::read(&state, &request, body, "$merge").await?;
    if params.boolean("delete-source")? == Some(true) {
        return Err(ApiError::not_supported(
            StatusCode::UNPROCESSABLE_ENTITY,
            "delete-source is not supported: the source is kept, inactive, with a replaced-by link",
        ));
    }
    let source = named_patient(&state, &params, "source").await?;
    let target = named_patient(&state, &params, "target").await?;
    let result = params.resource("result-patient")?;
    let preview = params.boolean("preview")?.unwrap_or(false);
    let output = if preview {
        let plan = prepare(&state, &source, &target, result).await?;
        let message = format!(
            "preview: merging Patient/{source} into Patient/{target} would repoint {} resources; nothing was changed",
            plan.changes.len() - 2
        );
        let target_content = plan
            .changes
            .get(1)
            .map(|(_, content)| Value::Object(content.clone()))
            .unwrap_or(Value::Null);
        json!({"resourceType": "Parameters", "parameter": [
            parameter("input", "resource", params.to_value()),
            parameter("outcome", "resource", fhir::operation_outcome(Severity::Information, IssueType::Informational, &message)),
            parameter("result", "resource", target_content),
        ]})
    } else {
        let requester = super::audit::requester(&request.principal);
        run(
            &state,
            &requester,
            &source,
            &target,
            result,
            Some(params.to_value()),
        )
        .await?
    };
    Ok(json_response(
        StatusCode::OK,
        output.to_string(),
        request.output,
    ))
}

/// `POST [base]/Patient/$unmerge`
pub(crate) async fn unmerge(
    State(state): State<AppState>,
    request: FhirRequest,
    body: Body,
) -> Result<Response, ApiError> {
    let params = Params::read(&state, &request, body, "$unmerge").await?;
    let base = state.config.base_url.clone();
    let source = params
        .patient_reference("source-patient", &base)?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Required,
                "$unmerge needs source-patient, the Patient that was merged into another",
            )
        })?;
    let expected_target = params.patient_reference("target-patient", &base)?;
    let (source_version, source_patient) = current_patient(&state, &source).await?;
    if !is_replaced(&source_patient) {
        return Err(unprocessable(
            IssueType::Processing,
            format!("Patient/{source} is not merged into another Patient"),
        ));
    }
    // The merge that wrote the source's current version.
    let current = at(&source_version, source_version.version);
    let search = [("target".to_string(), format!("Patient/{source}"))];
    let mut record = None;
    for version in search_all(&state, "Provenance", &search, 1000).await? {
        let Some(content) = version
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<Value>(body).ok())
        else {
            continue;
        };
        let is_merge = content["activity"]["coding"][0]["code"] == "merge"
            && content["activity"]["coding"][0]["system"] == LIFECYCLE;
        if is_merge && content["target"][0]["reference"] == current.as_str() {
            record = Some((version, content));
        }
    }
    let Some((provenance_version, merge_content)) = record else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            IssueType::Conflict,
            format!("Patient/{source} changed after its merge; it cannot be unmerged"),
        ));
    };
    let references = |element: &str| -> Vec<String> {
        merge_content[element]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| {
                let reference = if element == "entity" {
                    &item["what"]
                } else {
                    item
                };
                reference["reference"].as_str().map(str::to_owned)
            })
            .collect()
    };
    let before = references("entity");
    let after = references("target");
    let target = after
        .get(1)
        .and_then(|reference| super::params::patient_id(reference, &base))
        .unwrap_or_default();
    if let Some(expected) = expected_target
        && expected != target
    {
        return Err(unprocessable(
            IssueType::Invalid,
            format!("Patient/{source} was merged into Patient/{target}, not Patient/{expected}"),
        ));
    }
    let mut writes = Vec::with_capacity(before.len() + 2);
    let mut restored = Vec::with_capacity(before.len());
    for (old, new) in before.iter().zip(&after) {
        let (resource_type, id, old_number) = split_versioned(old)?;
        let (_, _, new_number) = split_versioned(new)?;
        let current = state.store.read(&resource_type, &id).await?;
        if current.as_ref().map(|version| version.version) != Some(new_number) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                IssueType::Conflict,
                format!(
                    "{resource_type}/{id} changed after the merge; unmerging would lose that change, so nothing was changed"
                ),
            ));
        }
        let content = state
            .store
            .vread(&resource_type, &id, old_number)
            .await?
            .and_then(|version| version.body)
            .and_then(|body| serde_json::from_str::<Value>(&body).ok())
            .ok_or_else(|| {
                unprocessable(
                    IssueType::NotFound,
                    format!("the pre-merge version {old} is gone"),
                )
            })?;
        restored.push(format!("{resource_type}/{id}/_history/{}", new_number + 1));
        writes.push(Write::Update {
            resource_type,
            id,
            resource: object(content)?,
            if_match: Some(new_number),
            method: Method::Update,
        });
    }
    let merge_record = format!("Provenance/{}", provenance_version.id);
    let provenance_id = store::new_id();
    let requester = super::audit::requester(&request.principal);
    writes.push(Write::Create {
        resource: provenance(
            "unmerge",
            &restored,
            std::slice::from_ref(&merge_record),
            "source",
            &requester,
        ),
        id: Some(provenance_id.clone()),
    });
    let audit = crate::audit::event_record(
        audit_event(
            "unmerge",
            &[
                format!("Patient/{source}"),
                format!("Patient/{target}"),
                merge_record,
                format!("Provenance/{provenance_id}"),
            ],
            &requester,
        ),
        "$unmerge",
        vec![format!("Patient/{target}")],
        Some(format!("Patient/{source}")),
    );
    let written = write(&state, writes, audit).await?;
    let body_of = |index: usize| {
        written
            .get(index)
            .and_then(|version| version.body.as_deref())
            .and_then(|body| serde_json::from_str::<Value>(body).ok())
            .unwrap_or(Value::Null)
    };
    let message = format!(
        "Patient/{source} is no longer merged into Patient/{target}; {} resources were restored to their content before the merge",
        before.len()
    );
    let output = json!({"resourceType": "Parameters", "parameter": [
        parameter("input", "resource", params.to_value()),
        parameter("outcome", "resource", fhir::operation_outcome(Severity::Information, IssueType::Informational, &message)),
        parameter("source", "resource", body_of(0)),
        parameter("result", "resource", body_of(1)),
        parameter("provenance", "valueReference", json!({"reference": format!("Provenance/{provenance_id}")})),
    ]});
    Ok(json_response(
        StatusCode::OK,
        output.to_string(),
        request.output,
    ))
}

/// `Type/id/_history/n` as its parts.
fn split_versioned(reference: &str) -> Result<(String, String, u64), ApiError> {
    let mut parts = reference.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(resource_type), Some(id), Some("_history"), Some(number)) => {
            let number = number.parse::<u64>().map_err(|_| bad_record(reference))?;
            Ok((resource_type.to_string(), id.to_string(), number))
        }
        _ => Err(bad_record(reference)),
    }
}

fn bad_record(reference: &str) -> ApiError {
    unprocessable(
        IssueType::Exception,
        format!("the merge record has a reference that is not Type/id/_history/n: {reference}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_merge_records_are_valid_resources() {
        let targets = [
            "Patient/a/_history/3".to_string(),
            "Encounter/e/_history/2".to_string(),
        ];
        let entities = [
            "Patient/a/_history/2".to_string(),
            "Encounter/e/_history/1".to_string(),
        ];
        let errors = |resource: &Value| -> Vec<validation::Issue> {
            validation::validate(resource)
                .into_iter()
                .filter(|issue| issue.severity != Severity::Warning)
                .collect()
        };
        // The ISO 21089 lifecycle codes are outside R4's extensible activity value set
        // (a warning); R5 uses them.
        let record = Value::Object(provenance(
            "merge", &targets, &entities, "source", "a coder",
        ));
        let issues = errors(&record);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(record["entity"][0]["role"], "source");
        assert_eq!(record["entity"][1]["role"], "revision");
        let event = Value::Object(audit_event("merge", &targets, "a coder"));
        let issues = errors(&event);
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(
            split_versioned("Encounter/e/_history/12").ok(),
            Some(("Encounter".into(), "e".into(), 12))
        );
        assert!(split_versioned("Encounter/e").is_err());
    }
}
