//! The accounting of disclosures over HTTP: releases are recorded as they happen
//! (`record`, a route layer; bulk exports by their jobs), and
//! `GET [base]/Patient/[id]/$accounting-of-disclosures?start=&end=` answers a patient's
//! accounting (HIPAA 45 CFR 164.528) as a `Parameters` resource.
//!
//! Statuses: 200 with the accounting; 400 for a bad `start` or `end`, a period starting
//! more than six years back, or too many disclosures in it; 403 for a principal that may
//! not see accountings; 404 for an unknown patient, or another patient than a
//! patient-limited principal's own.

mod export;
mod recipients;
pub(crate) mod record;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use privacy::Decision;
use privacy::disclosure::{PURPOSE_SYSTEM, accounting as accounting_of, may_account, period};
use serde_json::{Value, json};
use store::Disclosure;

pub(crate) use export::record_export;
pub(crate) use recipients::Recipients;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{FhirRequest, check_id};
use crate::response::json_response;

/// The one value of parameter `name`, if given; 400 when repeated.
fn single<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = params.iter().filter(|(key, _)| key == name);
    let first = values.next().map(|(_, value)| value.as_str());
    if values.next().is_some() {
        return Err(ApiError::bad_request(format!("{name} is repeated")));
    }
    Ok(first)
}

fn invalid(error: privacy::PrivacyError) -> ApiError {
    match error {
        privacy::PrivacyError::Store(error) => ApiError::from(error),
        other => ApiError::bad_request(other.to_string()),
    }
}

/// One disclosure as a `disclosure` parameter.
fn entry(disclosure: &Disclosure) -> Value {
    let mut part = vec![
        json!({"name": "date", "valueInstant": disclosure.at.to_fhir()}),
        json!({"name": "recipient", "valueString": disclosure.recipient}),
    ];
    if !disclosure.address.is_empty() {
        part.push(json!({"name": "address", "valueString": disclosure.address}));
    }
    part.push(json!({"name": "description", "valueString": disclosure.description}));
    part.push(
        match privacy::disclosure::purpose_code(&disclosure.purpose) {
            Some(code) => {
                json!({"name": "purpose", "valueCoding": {"system": PURPOSE_SYSTEM, "code": code}})
            }
            None => json!({"name": "purpose", "valueString": disclosure.purpose}),
        },
    );
    json!({"name": "disclosure", "part": part})
}

/// `GET [base]/Patient/[id]/$accounting-of-disclosures`
pub(crate) async fn accounting(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: FhirRequest,
) -> Result<Response, ApiError> {
    check_id(&id)?;
    let unknown = || ApiError::not_found(format!("Patient/{id} is not known"));
    match may_account(&request.principal, &id) {
        None => return Err(unknown()),
        Some(Decision::Deny(reason)) => return Err(crate::auth::forbidden(reason)),
        Some(Decision::Allow(_)) => {}
    }
    if state.store.read("Patient", &id).await?.is_none() {
        return Err(unknown());
    }
    let now = store::Instant::now();
    let (from, to) = period(
        single(&request.params, "start")?,
        single(&request.params, "end")?,
        now,
    )
    .map_err(invalid)?;
    let disclosures = accounting_of(&state.store, &id, from, to, now)
        .await
        .map_err(invalid)?;
    let mut parameter = vec![
        json!({"name": "patient", "valueReference": {"reference": format!("Patient/{id}")}}),
        json!({"name": "start", "valueInstant": from.to_fhir()}),
        json!({"name": "end", "valueInstant": to.to_fhir()}),
        json!({"name": "total", "valueInteger": disclosures.len()}),
    ];
    parameter.extend(disclosures.iter().map(entry));
    let body = json!({"resourceType": "Parameters", "parameter": parameter});
    Ok(json_response(
        StatusCode::OK,
        body.to_string(),
        request.output,
    ))
}
