//! The enterprise identifier: records of one person (from whatever source systems) share
//! an identifier of the configured enterprise system, so
//! `Patient?identifier=<system>|<value>` finds them all.
//!
//! Linking two records gives both the identifier one of them already has (a new one
//! when neither has any); when both have different ones, every record of the second
//! takes the first's, so the two groups become one.

use serde_json::{Map, Value, json};
use store::{Method, Version, Write};

use crate::AppState;
use crate::error::ApiError;
use crate::mpi::params::unprocessable;
use crate::mpi::repoint::search_all;

/// Most records one enterprise identifier is rewritten on in a link.
const GROUP_MAX: usize = 10_000;

/// The value of the enterprise identifier of `patient`, if it has one.
pub fn enterprise_id<'a>(patient: &'a Value, system: &str) -> Option<&'a str> {
    patient
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|identifier| identifier.get("system").and_then(Value::as_str) == Some(system))
        .and_then(|identifier| identifier.get("value"))
        .and_then(Value::as_str)
}

/// Links the Patients `a` and `b` as one person; the enterprise identifier they share.
pub async fn link(state: &AppState, a: &str, b: &str) -> Result<String, ApiError> {
    let system = state.config.mpi.enterprise_system.clone();
    let (version_a, patient_a) = current_patient(state, a).await?;
    let (version_b, patient_b) = current_patient(state, b).await?;
    let id_a = enterprise_id(&patient_a, &system).map(str::to_owned);
    let id_b = enterprise_id(&patient_b, &system).map(str::to_owned);
    if id_a.is_some() && id_a == id_b {
        return Ok(id_a.unwrap_or_default());
    }
    let value = id_a
        .clone()
        .or_else(|| id_b.clone())
        .unwrap_or_else(store::new_id);
    let mut members: Vec<(Version, Value)> = Vec::new();
    if id_a.as_deref() != Some(value.as_str()) {
        members.push((version_a, patient_a));
    }
    if id_b.as_deref() != Some(value.as_str()) {
        members.push((version_b, patient_b));
    }
    // Both had one: the second's whole group moves to the first's.
    if let (Some(_), Some(old)) = (&id_a, &id_b) {
        let params = [("identifier".to_string(), format!("{system}|{old}"))];
        for version in search_all(state, "Patient", &params, GROUP_MAX).await? {
            if members.iter().any(|(member, _)| member.id == version.id) {
                continue;
            }
            if let Some(patient) = version
                .body
                .as_deref()
                .and_then(|body| serde_json::from_str::<Value>(body).ok())
            {
                members.push((version, patient));
            }
        }
    }
    let writes = members
        .into_iter()
        .map(|(version, patient)| {
            let Value::Object(mut resource) = patient else {
                return Err(unprocessable(
                    fhir::IssueType::Invalid,
                    "a Patient is not an object",
                ));
            };
            set_enterprise_id(&mut resource, &system, &value);
            Ok(Write::Update {
                resource_type: "Patient".into(),
                id: version.id.clone(),
                resource,
                if_match: Some(version.version),
                method: Method::Update,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let written = crate::audit::write_all(&state.store, writes)
        .await
        .map_err(|failure| ApiError::from(failure.error))?;
    for version in written.iter().filter_map(|w| w.version.as_ref()) {
        state.mpi.reindex(version);
    }
    Ok(value)
}

/// Replaces the enterprise identifier of `patient` with `value`.
pub fn set_enterprise_id(patient: &mut Map<String, Value>, system: &str, value: &str) {
    let mut identifiers: Vec<Value> = match patient.shift_remove("identifier") {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    };
    identifiers
        .retain(|identifier| identifier.get("system").and_then(Value::as_str) != Some(system));
    identifiers.push(json!({"use": "secondary", "system": system, "value": value}));
    // `identifier` goes back where FHIR puts it: first after the resource's header.
    let mut rest: Vec<(String, Value)> = Vec::new();
    for key in [
        "resourceType",
        "id",
        "meta",
        "implicitRules",
        "language",
        "text",
        "contained",
        "extension",
        "modifierExtension",
    ] {
        if let Some(value) = patient.shift_remove(key) {
            rest.push((key.to_string(), value));
        }
    }
    let tail = std::mem::take(patient);
    patient.extend(rest);
    patient.insert("identifier".into(), Value::Array(identifiers));
    patient.extend(tail);
}

/// The current version of Patient `id` and its content; 422 when there is none.
pub async fn current_patient(state: &AppState, id: &str) -> Result<(Version, Value), ApiError> {
    let version = state
        .store
        .read("Patient", id)
        .await?
        .filter(|version| !version.is_deleted())
        .ok_or_else(|| {
            unprocessable(
                fhir::IssueType::NotFound,
                format!("there is no Patient/{id}"),
            )
        })?;
    let patient = version
        .body
        .as_deref()
        .and_then(|body| serde_json::from_str::<Value>(body).ok())
        .ok_or_else(|| unprocessable(fhir::IssueType::Exception, "a stored Patient is not JSON"))?;
    Ok((version, patient))
}
