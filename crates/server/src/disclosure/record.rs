//! Recording releases as they happen: a route layer over `/fhir` that, for a request
//! releasing data outside the organisation, reads the response before it goes out and
//! records one disclosure per patient whose data it holds, with the resource types and
//! counts released (never the data). A release that cannot be recorded is not made: the
//! caller gets 500 instead of the data.
//!
//! A request releases data when it names a recipient (`X-Disclosure-Recipient`, with
//! `X-Disclosure-Address` and a purpose of use in `X-Purpose-Of-Use`: release of
//! information), or when its client or user is registered as a recipient outside the
//! organisation (its reads, break-the-glass ones included, are disclosures to it). Bulk
//! exports are recorded by their jobs (`export.rs`), when the files are written.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use fhir::IssueType;
use privacy::disclosure::{Recipient, purpose_code, releaser};
use privacy::{Principal, Role};
use serde_json::Value;
use store::{Disclosure, Instant};

use crate::AppState;
use crate::error::ApiError;

/// The header that names the recipient of a release of information.
pub(crate) const RECIPIENT_HEADER: &str = "x-disclosure-recipient";
/// The header that gives the recipient's address.
pub(crate) const ADDRESS_HEADER: &str = "x-disclosure-address";
/// The purpose recorded when an external recipient's request states none.
pub(crate) const UNSPECIFIED: &str = "unspecified";
/// Largest response read to record a release (the handlers built it in memory already).
const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// Who receives a release, and why.
#[derive(Clone, Debug)]
pub(crate) struct Release {
    pub recipient: Recipient,
    /// A v3 PurposeOfUse code, or [`UNSPECIFIED`].
    pub purpose: String,
    /// Who released it (`privacy::disclosure::releaser`).
    pub principal: String,
}

impl Release {
    /// The disclosures of a release, one per patient of `tally`.
    pub(crate) fn disclosures(&self, tally: Tally, request: &str) -> Vec<Disclosure> {
        let at = Instant::now();
        tally
            .into_iter()
            .map(|(patient, types)| Disclosure {
                patient,
                at,
                recipient: self.recipient.name.clone(),
                address: self.recipient.address.clone(),
                purpose: self.purpose.clone(),
                description: describe(&types),
                principal: self.principal.clone(),
                request: request.to_string(),
            })
            .collect()
    }
}

/// Per patient, the number of resources of each type released.
pub(crate) type Tally = BTreeMap<String, BTreeMap<String, u64>>;

/// `Condition (2), Observation (3), Patient (1)`.
fn describe(types: &BTreeMap<String, u64>) -> String {
    types
        .iter()
        .map(|(resource_type, count)| format!("{resource_type} ({count})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A header's text: `None` when absent or blank; 400 when it is not visible ASCII and
/// spaces (UTF-8 is allowed too).
fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::bad_request(format!("{name} is not UTF-8 text")))?
        .trim();
    Ok((!text.is_empty()).then(|| text.to_string()))
}

/// The release `principal`'s request makes, if any: a named recipient (release of
/// information) or the recipient its client or user is registered as. 400 for a named
/// recipient without a purpose of use, 403 when the principal may not release.
pub(crate) async fn release_of(
    state: &AppState,
    headers: &HeaderMap,
    principal: &Principal,
) -> Result<Option<Release>, ApiError> {
    let named = header_text(headers, RECIPIENT_HEADER)?;
    let address = header_text(headers, ADDRESS_HEADER)?;
    let stated = principal.purpose_of_use.as_deref();
    if let Some(name) = named {
        let may_release = principal.unchecked
            || principal
                .roles
                .iter()
                .any(|role| matches!(role, Role::RoiSpecialist | Role::HimManager | Role::Admin));
        if !may_release {
            return Err(crate::auth::forbidden(
                "only roi_specialist, him_manager or admin release information to a named recipient"
                    .into(),
            ));
        }
        let recipient = Recipient::new(&name, address.as_deref().unwrap_or(""))
            .map_err(|error| ApiError::bad_request(error.to_string()))?;
        let purpose = stated.and_then(purpose_code).ok_or_else(|| {
            ApiError::bad_request(
                "a release of information states its purpose in X-Purpose-Of-Use, an HL7 v3 PurposeOfUse code such as HLEGAL",
            )
        })?;
        return Ok(Some(Release {
            recipient,
            purpose: purpose.to_string(),
            principal: releaser(principal),
        }));
    }
    if address.is_some() {
        return Err(ApiError::bad_request(
            "X-Disclosure-Address needs X-Disclosure-Recipient",
        ));
    }
    // Only the server's own tokens speak for its accounts (an external provider's
    // subject may share a local user's name).
    let own = match &state.config.auth {
        crate::auth::Auth::Tokens(verifier) => principal.issuer == verifier.own.issuer,
        crate::auth::Auth::Open => false,
    };
    if principal.unchecked || !own {
        return Ok(None);
    }
    let Some(recipient) = state.recipients.of(&state.store, principal).await? else {
        return Ok(None);
    };
    Ok(Some(Release {
        recipient,
        purpose: stated
            .and_then(purpose_code)
            .unwrap_or(UNSPECIFIED)
            .to_string(),
        principal: releaser(principal),
    }))
}

/// Whether a request to `template` reads data out: reads, searches, history,
/// `$everything`, and batches and transactions (whose reads come back in the response
/// Bundle; so do the resources their writes return). Export files are recorded by their
/// job.
fn reads_out(method: &Method, template: &str) -> bool {
    let searching_post =
        template.ends_with("/_search") || template.ends_with("/$everything") || template == "/";
    let out = *method == Method::GET || (*method == Method::POST && searching_post);
    out && template != "/metadata" && !template.contains("$export")
}

/// The patients whose compartment `resource` is in (the Patient itself, or those its
/// compartment parameters refer to); none for types outside every patient compartment.
pub(crate) fn patients_of(resource: &Value) -> Vec<String> {
    let Some(resource_type) = resource["resourceType"].as_str() else {
        return Vec::new();
    };
    if resource_type == "Patient" {
        return resource["id"]
            .as_str()
            .map(|id| vec![id.to_string()])
            .unwrap_or_default();
    }
    let params = fhir::definitions().patient_compartment_params(resource_type);
    if params.is_empty() {
        return Vec::new();
    }
    let mut patients: Vec<String> = search::index(resource)
        .into_iter()
        .filter(|row| params.contains(&row.key))
        .filter_map(|row| match row.value {
            search::IndexValue::Reference {
                resource_type: Some(target),
                id: Some(id),
                ..
            } if target == "Patient" => Some(id),
            _ => None,
        })
        .collect();
    patients.sort();
    patients.dedup();
    patients
}

/// Counts `resource` under each of its patients.
pub(crate) fn count(tally: &mut Tally, resource: &Value) {
    let Some(resource_type) = resource["resourceType"].as_str() else {
        return;
    };
    for patient in patients_of(resource) {
        *tally
            .entry(patient)
            .or_default()
            .entry(resource_type.to_string())
            .or_default() += 1;
    }
}

/// What a JSON response releases: a resource, or a Bundle's entries.
fn tally_response(bytes: &[u8]) -> Tally {
    let mut tally = Tally::new();
    let Ok(body) = serde_json::from_slice::<Value>(bytes) else {
        return tally;
    };
    if body["resourceType"] == "Bundle" {
        // A searchset, a history, or a stored Bundle (a document): what it holds.
        for entry in body["entry"].as_array().into_iter().flatten() {
            count(&mut tally, &entry["resource"]);
        }
    } else {
        count(&mut tally, &body);
    }
    tally
}

fn not_recorded() -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        IssueType::Exception,
        "the release could not be recorded in the accounting of disclosures, so it was not made",
    )
    .into_response()
}

/// The route layer: records what a releasing request released before the response
/// goes out.
pub(crate) async fn record(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let template = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| {
            path.as_str()
                .strip_prefix("/fhir")
                .unwrap_or(path.as_str())
                .to_string()
        })
        .map(|template| {
            // The base itself, with or without its trailing slash.
            if template.is_empty() {
                "/".to_string()
            } else {
                template
            }
        })
        .unwrap_or_default();
    let Some(principal) = request.extensions().get::<Arc<Principal>>().cloned() else {
        return next.run(request).await;
    };
    if !reads_out(request.method(), &template) {
        return next.run(request).await;
    }
    let release = match release_of(&state, request.headers(), &principal).await {
        Ok(Some(release)) => release,
        Ok(None) => return next.run(request).await,
        Err(error) => return error.into_response(),
    };
    // The URL without its query (which may hold names or identifiers); a nested
    // router's URI has lost the `/fhir`, so it goes after the base URL.
    let described = format!(
        "{} {}{}",
        request.method(),
        state.config.base_url,
        request.uri().path()
    );
    let response = next.run(request).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("json") && !value.contains("ndjson"));
    if response.status() != StatusCode::OK || !json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_RESPONSE_BYTES).await else {
        tracing::error!("a release's response could not be read to record it");
        return not_recorded();
    };
    let disclosures = release.disclosures(tally_response(&bytes), &described);
    if let Err(error) = state.store.disclosure_add(disclosures).await {
        tracing::error!(%error, "a release could not be recorded");
        return not_recorded();
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn responses_are_tallied_by_patient_and_type() {
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [
                {"resource": {"resourceType": "Patient", "id": "p1"}},
                {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                    "code": {"text": "x"}, "subject": {"reference": "Patient/p1"}}},
                {"resource": {"resourceType": "Observation", "id": "o2", "status": "final",
                    "code": {"text": "x"}, "subject": {"reference": "Patient/p2"}}},
                {"resource": {"resourceType": "Practitioner", "id": "dr"}},
                {"resource": {"resourceType": "OperationOutcome"}},
            ],
        });
        let tally = tally_response(bundle.to_string().as_bytes());
        assert_eq!(tally.len(), 2);
        assert_eq!(describe(&tally["p1"]), "Observation (1), Patient (1)");
        assert_eq!(describe(&tally["p2"]), "Observation (1)");
        let single = json!({"resourceType": "Practitioner", "id": "dr"});
        assert!(tally_response(single.to_string().as_bytes()).is_empty());
    }

    #[test]
    fn reads_searches_and_everything_read_out_but_writes_and_exports_do_not() {
        assert!(reads_out(&Method::GET, "/{type}/{id}"));
        assert!(reads_out(&Method::POST, "/{type}/_search"));
        assert!(reads_out(&Method::POST, "/{type}/{id}/$everything"));
        assert!(reads_out(&Method::POST, "/"));
        assert!(!reads_out(&Method::POST, "/{type}"));
        assert!(!reads_out(&Method::GET, "/$export-file/{job}/{file}"));
        assert!(!reads_out(&Method::GET, "/{type}/$export"));
    }
}
