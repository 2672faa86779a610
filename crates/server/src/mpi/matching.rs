//! `POST [base]/Patient/$match` (R4 OperationDefinition Patient-match): the stored
//! Patients that may be the person of the given Patient, scored by the index, best
//! first, as a searchset Bundle with `search.score` and the match-grade extension.
//!
//! Inputs: `resource` (a Patient, required), `onlyCertainMatches` (boolean) and `count`
//! (a positive integer). A body that is not Parameters, or lacks `resource`, is 400; a
//! resource that is not a Patient is 422; a bad `count` is 400.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use fhir::IssueType;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::ApiError;
use crate::extract::FhirRequest;
use crate::mpi::params::{Params, unprocessable};
use crate::response::json_response;

/// The extension that grades a match.
pub const MATCH_GRADE: &str = "http://hl7.org/fhir/StructureDefinition/match-grade";

pub(crate) async fn post(
    State(state): State<AppState>,
    request: FhirRequest,
    body: Body,
) -> Result<Response, ApiError> {
    let params = Params::read(&state, &request, body, "$match").await?;
    let Some(patient) = params.resource("resource")? else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "$match needs the parameter resource (a Patient)",
        ));
    };
    if patient.get("resourceType").and_then(Value::as_str) != Some("Patient") {
        return Err(unprocessable(
            IssueType::Invalid,
            "the resource of $match must be a Patient",
        ));
    }
    let only_certain = params.boolean("onlyCertainMatches")?.unwrap_or(false);
    let count = match params.value("count", "valueInteger")? {
        None => None,
        Some(value) => match value.as_u64() {
            Some(count) if count > 0 => Some(count as usize),
            _ => {
                return Err(ApiError::bad_request(
                    "the parameter count must be a positive integer",
                ));
            }
        },
    };
    if !state.mpi.enabled {
        return Err(ApiError::not_supported(
            StatusCode::SERVICE_UNAVAILABLE,
            "patient matching is off on this server",
        ));
    }
    let record = mpi::record_from_patient(&Value::Object(patient.clone()));
    let mut candidates = state.mpi.search(&record);
    if only_certain {
        candidates.retain(|candidate| candidate.class == mpi::MatchClass::Certain);
    }
    if let Some(count) = count {
        candidates.truncate(count);
    }
    // Patients hidden from the caller (labels, consents) are no candidates.
    let view = crate::restrict::View::of(&state, &request.principal).await?;
    let mut entries = Vec::with_capacity(candidates.len());
    for candidate in &candidates {
        let Some(version) = state.store.read("Patient", &candidate.id).await? else {
            continue;
        };
        let Some(body) = version.body.as_deref() else {
            continue;
        };
        let resource: Value = serde_json::from_str(body)
            .map_err(|_| store::StoreError::Backend("a stored Patient is not JSON".into()))?;
        if !view.sees_resource("Patient", &candidate.id, &resource) {
            continue;
        }
        entries.push(json!({
            "fullUrl": format!("{}/Patient/{}", state.config.base_url, candidate.id),
            "resource": resource,
            "search": {
                "extension": [{"url": MATCH_GRADE, "valueCode": grade(candidate.class)}],
                "mode": "match",
                "score": score(candidate.probability),
            }
        }));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "id": store::new_id(),
        "meta": {"lastUpdated": store::Instant::now().to_fhir()},
        "type": "searchset",
        "total": entries.len(),
        "link": [{"relation": "self", "url": format!("{}/Patient/$match", state.config.base_url)}],
        "entry": entries,
    });
    Ok(json_response(
        StatusCode::OK,
        bundle.to_string(),
        request.output,
    ))
}

/// The match-grade code of a class.
pub fn grade(class: mpi::MatchClass) -> &'static str {
    match class {
        mpi::MatchClass::Certain => "certain",
        mpi::MatchClass::Probable => "probable",
        mpi::MatchClass::Possible => "possible",
        mpi::MatchClass::Unlikely => "certainly-not",
    }
}

/// A probability as a FHIR decimal of four places (0..1).
pub fn score(probability: f64) -> Value {
    let rounded = (probability.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0;
    serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
}
