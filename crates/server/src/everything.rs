//! `GET` and `POST [base]/Patient/[id]/$everything` (R4 OperationDefinition
//! Patient-everything): the patient, every resource in its compartment, and the
//! Practitioners, Organizations, Locations and Medications those resources refer to,
//! as a searchset Bundle.
//!
//! The compartment is one store search over every type the Patient CompartmentDefinition
//! names (the clauses of `search::compartment`), so paging is the search's own: `_count`
//! matches per page, and the links carry the store's keyset cursor, so pages stay right
//! while resources change. `_since` keeps resources whose `meta.lastUpdated` is at or
//! after it; `start` and `end` keep those whose clinical date ([`CLINICAL_DATE`], one
//! date parameter per type) overlaps the range, and every resource without one; `_type`
//! keeps the types it names. The filters apply to the patient too.
//!
//! Referenced resources (search mode `include`) are those the returned compartment
//! resources refer to (any `reference` in them, of the four types, that `_type` and
//! `_since` keep). They come once, on the last page, and do not count towards `_count`,
//! so the pages together hold every resource exactly once.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use search::{Clause, Criterion, DateRange, ParamType, Prefix, Query, Test, Total};
use serde_json::{Map, Value};
use store::{Instant, SearchPage, SearchRequest, StoreError, Version};

use crate::AppState;
use crate::body::{parse_object, read_limited};
use crate::error::ApiError;
use crate::extract::{FhirRequest, InstancePath};
use crate::format::require_json_body;
use crate::instance::gone;
use crate::response::json_response;
use crate::searchset::{Links, Shape, bundle};

/// The types brought in because compartment resources refer to them.
pub(crate) const REFERENCED_TYPES: &[&str] =
    &["Location", "Medication", "Organization", "Practitioner"];

/// The date parameter that holds each compartment type's clinical date (when care
/// happened, not when the record changed), for `start` and `end`. Types not listed
/// (Patient, Coverage, Group, ...) have none and always pass.
pub(crate) const CLINICAL_DATE: &[(&str, &str)] = &[
    ("Account", "period"),
    ("AdverseEvent", "date"),
    ("AllergyIntolerance", "date"),
    ("Appointment", "date"),
    ("AuditEvent", "date"),
    ("Basic", "created"),
    ("CarePlan", "date"),
    ("CareTeam", "date"),
    ("ChargeItem", "occurrence"),
    ("Claim", "created"),
    ("ClaimResponse", "created"),
    ("ClinicalImpression", "date"),
    ("Communication", "sent"),
    ("CommunicationRequest", "authored"),
    ("Composition", "date"),
    ("Condition", "onset-date"),
    ("Consent", "date"),
    ("CoverageEligibilityRequest", "created"),
    ("CoverageEligibilityResponse", "created"),
    ("DetectedIssue", "identified"),
    ("DeviceRequest", "authored-on"),
    ("DiagnosticReport", "date"),
    ("DocumentManifest", "created"),
    ("DocumentReference", "period"),
    ("Encounter", "date"),
    ("EpisodeOfCare", "date"),
    ("ExplanationOfBenefit", "created"),
    ("FamilyMemberHistory", "date"),
    ("Flag", "date"),
    ("Goal", "start-date"),
    ("ImagingStudy", "started"),
    ("Immunization", "date"),
    ("ImmunizationEvaluation", "date"),
    ("ImmunizationRecommendation", "date"),
    ("Invoice", "date"),
    ("List", "date"),
    ("MeasureReport", "period"),
    ("Media", "created"),
    ("MedicationAdministration", "effective-time"),
    ("MedicationDispense", "whenhandedover"),
    ("MedicationRequest", "authoredon"),
    ("MedicationStatement", "effective"),
    ("NutritionOrder", "datetime"),
    ("Observation", "date"),
    ("Procedure", "date"),
    ("Provenance", "when"),
    ("QuestionnaireResponse", "authored"),
    ("RequestGroup", "authored"),
    ("ResearchSubject", "date"),
    ("RiskAssessment", "date"),
    ("Schedule", "date"),
    ("ServiceRequest", "authored"),
    ("Specimen", "collected"),
    ("SupplyRequest", "date"),
    ("VisionPrescription", "datewritten"),
];

/// Compartment resources read per store page while collecting what the whole
/// compartment refers to.
const SCAN_PAGE: usize = 1000;
/// Most store pages read for one last page (a million compartment resources).
const SCAN_PAGES_MAX: usize = 1000;
/// Most referenced resources one request includes.
const MAX_REFERENCED: usize = 10_000;

/// The operation's parameters, checked.
#[derive(Debug, Default, PartialEq)]
struct Options {
    /// Start of the earliest instant `start` covers.
    start: Option<i64>,
    /// End (exclusive) of the latest instant `end` covers.
    end: Option<i64>,
    since: Option<Instant>,
    /// `None`: every type.
    types: Option<Vec<String>>,
    count: Option<usize>,
    cursor: Option<String>,
    /// What paging links repeat, in request order (`_count` as given, fixed later).
    carried: Vec<(String, String)>,
}

impl Options {
    fn wants(&self, resource_type: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|types| types.iter().any(|t| t == resource_type))
    }
}

fn bad(name: &str, value: &str, reason: &str) -> ApiError {
    ApiError::bad_request(format!(
        "invalid value {value:?} for the $everything parameter {name:?}: {reason}"
    ))
}

fn parse_options(params: &[(String, String)]) -> Result<Options, ApiError> {
    let mut options = Options::default();
    for (name, value) in params {
        match name.as_str() {
            "start" | "end" => {
                let range = DateRange::parse(value.trim())
                    .ok_or_else(|| bad(name, value, "expected a date such as 2024-03-01"))?;
                if name == "start" {
                    options.start = Some(range.low);
                } else {
                    options.end = Some(range.high);
                }
            }
            "_since" => {
                let period = Instant::parse_fhir_period(value.trim())
                    .map_err(|reason| bad(name, value, &reason))?;
                options.since = Some(period.start);
            }
            "_type" => {
                let types = options.types.get_or_insert_with(Vec::new);
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    if !fhir::definitions().is_resource_type(part) {
                        return Err(bad(
                            name,
                            value,
                            &format!("{part:?} is not a FHIR R4 resource type"),
                        ));
                    }
                    types.push(part.to_string());
                }
            }
            "_count" => {
                let count = value
                    .trim()
                    .parse()
                    .map_err(|_| bad(name, value, "expected a whole number of 0 or more"))?;
                options.count = Some(count);
            }
            "_cursor" => {
                options.cursor = Some(value.clone());
                continue;
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(ApiError::not_supported(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "$everything does not support the parameter {other:?} (supported: start, end, _since, _type, _count)"
                    ),
                ));
            }
        }
        options.carried.push((name.clone(), value.clone()));
    }
    if let (Some(start), Some(end)) = (options.start, options.end)
        && start >= end
    {
        return Err(ApiError::bad_request(
            "the $everything parameter \"start\" is after \"end\"",
        ));
    }
    Ok(options)
}

/// The date parameter of a type's clinical date.
fn clinical_date(resource_type: &str) -> Option<&'static str> {
    CLINICAL_DATE
        .iter()
        .find(|(name, _)| *name == resource_type)
        .map(|(_, code)| *code)
}

/// A clause that every resource passes except those of `resource_type` with a
/// clinical date that satisfies `prefix` against `at` (resources without one pass).
fn date_clause(resource_type: &str, code: &str, prefix: Prefix, at: i64) -> Clause {
    Clause {
        any_of: vec![Criterion {
            path: Vec::new(),
            resource_type: Some(resource_type.to_string()),
            param: code.to_string(),
            param_type: ParamType::Date,
            test: Test::Not(Box::new(Test::Date {
                prefix,
                range: DateRange { low: at, high: at },
            })),
        }],
    }
}

/// The search for the patient's compartment with the filters of `options`; `None`
/// when `_type` leaves no compartment type.
fn compartment_query(id: &str, options: &Options) -> Option<Query> {
    let mut types = Vec::new();
    let mut any_of = Vec::new();
    for candidate in fhir::definitions().resource_types() {
        if !options.wants(candidate) {
            continue;
        }
        if let Some(clause) = search::compartment("Patient", id, candidate) {
            any_of.extend(clause.any_of);
            types.push(candidate.clone());
        }
    }
    if types.is_empty() {
        return None;
    }
    let mut clauses = vec![Clause { any_of }];
    if let Some(since) = options.since {
        clauses.push(Clause {
            any_of: vec![Criterion {
                path: Vec::new(),
                resource_type: None,
                param: "_lastUpdated".into(),
                param_type: ParamType::Date,
                // Gt on a point: at or after `since` (a stored instant is a point).
                test: Test::Date {
                    prefix: Prefix::Gt,
                    range: DateRange {
                        low: since.0,
                        high: since.0,
                    },
                },
            }],
        });
    }
    for resource_type in &types {
        let Some(code) = clinical_date(resource_type) else {
            continue;
        };
        // Overlap with [start, end): not wholly before start, not wholly after end.
        if let Some(start) = options.start {
            clauses.push(date_clause(resource_type, code, Prefix::Eb, start));
        }
        if let Some(end) = options.end {
            clauses.push(date_clause(resource_type, code, Prefix::Sa, end));
        }
    }
    Some(Query {
        types,
        clauses,
        sort: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        total: Total::Unspecified,
        reached: Vec::new(),
    })
}

/// `Type/id` of a reference to one of [`REFERENCED_TYPES`] on this server (relative, or
/// absolute under `base`), without any `/_history/n`.
fn local_target(reference: &str, base: &str) -> Option<(String, String)> {
    let relative = match reference.strip_prefix(base) {
        Some(rest) => rest.strip_prefix('/')?,
        None if reference.contains(':') => return None,
        None => reference,
    };
    let relative = relative.split("/_history/").next().unwrap_or(relative);
    let (resource_type, id) = relative.split_once('/')?;
    (REFERENCED_TYPES.contains(&resource_type) && fhir::is_valid_id(id))
        .then(|| (resource_type.to_string(), id.to_string()))
}

/// Every `reference` in `value` to one of [`REFERENCED_TYPES`].
fn collect_references(value: &Value, base: &str, found: &mut BTreeSet<(String, String)>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference)) => {
                        found.extend(local_target(reference, base));
                    }
                    _ => collect_references(child, base, found),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_references(item, base, found);
            }
        }
        _ => {}
    }
}

fn references_of(
    versions: &[Version],
    base: &str,
    found: &mut BTreeSet<(String, String)>,
) -> Result<(), ApiError> {
    for version in versions {
        let Some(body) = &version.body else {
            continue;
        };
        let resource: Value = serde_json::from_str(body)
            .map_err(|error| ApiError::from(StoreError::Backend(error.to_string())))?;
        collect_references(&resource, base, found);
    }
    Ok(())
}

/// The resources that the compartment resources refer to: those of `page` when it is
/// the whole result, else those of every page of `query`.
async fn referenced(
    state: &AppState,
    query: &Query,
    page: &SearchPage,
    whole: bool,
    options: &Options,
) -> Result<Vec<Version>, ApiError> {
    if !REFERENCED_TYPES.iter().any(|t| options.wants(t)) {
        return Ok(Vec::new());
    }
    let base = state.config.base_url.as_str();
    let mut targets = BTreeSet::new();
    if whole {
        references_of(&page.matches, base, &mut targets)?;
    } else {
        let mut cursor = None;
        let mut complete = false;
        for _ in 0..SCAN_PAGES_MAX {
            let scanned = state
                .store
                .search(SearchRequest {
                    query: Query {
                        total: Total::None,
                        ..query.clone()
                    },
                    count: SCAN_PAGE,
                    cursor,
                })
                .await?;
            references_of(&scanned.matches, base, &mut targets)?;
            match scanned.next {
                Some(next) => cursor = Some(next),
                None => {
                    complete = true;
                    break;
                }
            }
        }
        if !complete {
            tracing::warn!("$everything: the compartment is larger than the scan limit");
        }
    }
    let mut found = Vec::new();
    for (resource_type, id) in targets {
        if found.len() >= MAX_REFERENCED {
            tracing::warn!("$everything: more referenced resources than the limit; some left out");
            break;
        }
        if !options.wants(&resource_type) {
            continue;
        }
        let Some(version) = state.store.read(&resource_type, &id).await? else {
            continue;
        };
        if version.is_deleted()
            || options
                .since
                .is_some_and(|since| version.last_updated < since)
        {
            continue;
        }
        found.push(version);
    }
    Ok(found)
}

/// Runs `$everything` for `Patient/id` and answers with its searchset Bundle.
async fn run(
    state: &AppState,
    request: &FhirRequest,
    path: InstancePath,
    params: &[(String, String)],
) -> Result<Response, ApiError> {
    let InstancePath { resource_type, id } = path;
    if resource_type != "Patient" {
        return Err(ApiError::not_found(format!(
            "$everything is defined on Patient, not on {resource_type}"
        )));
    }
    // A principal limited to one patient has that patient's record, and no other.
    let principal = &request.principal;
    if let Some(patient) = principal.patient().filter(|_| !principal.unchecked)
        && patient != id
    {
        return Err(ApiError::not_found(format!("Patient/{id} is not known")));
    }
    let mut options = parse_options(params)?;
    // Only the types the principal may search come back (the route checked the Patient).
    if !request.principal.unchecked {
        let allowed: Vec<String> = fhir::definitions()
            .resource_types()
            .iter()
            .filter(|resource_type| {
                options.wants(resource_type)
                    && privacy::decide(
                        &request.principal,
                        privacy::Interaction::Search,
                        resource_type,
                    )
                    .is_allowed()
            })
            .cloned()
            .collect();
        options.types = Some(allowed);
    }
    // Labelled data and what consents deny stay out of the compartment's search, and
    // out of the resources it refers to; a hidden Patient is not known.
    let view = crate::restrict::View::of(state, principal).await?;
    match view.keep(state.store.read("Patient", &id).await?) {
        None => return Err(ApiError::not_found(format!("Patient/{id} is not known"))),
        Some(version) if version.is_deleted() => return Ok(gone(&version)),
        Some(_) => {}
    }

    let limits = &state.config.limits;
    let page_size = options
        .count
        .unwrap_or(limits.page_size_default)
        .min(limits.page_size_max);
    for (name, value) in &mut options.carried {
        if name == "_count" {
            *value = page_size.to_string();
        }
    }
    let count_only = page_size == 0;
    let mut query = compartment_query(&id, &options);
    if let Some(query) = &mut query {
        view.narrow(query);
    }
    let mut page = match &query {
        None => SearchPage {
            total: Some(0),
            ..SearchPage::default()
        },
        Some(query) => {
            let mut query = query.clone();
            if count_only {
                query.total = Total::Accurate;
            }
            let cursor = options.cursor.clone();
            state
                .store
                .search(SearchRequest {
                    query,
                    count: page_size,
                    cursor: cursor.clone(),
                })
                .await
                .map_err(|error| match (error, cursor) {
                    // The query is built here; only the client's cursor can be invalid.
                    (StoreError::Invalid(reason), Some(cursor)) => bad("_cursor", &cursor, &reason),
                    (error, _) => ApiError::from(error),
                })?
        }
    };
    if let Some(query) = &query
        && !count_only
        && page.next.is_none()
    {
        let whole = options.cursor.is_none();
        page.included = referenced(state, query, &page, whole, &options).await?;
        page.included.retain(|version| view.sees(version));
    }

    let base = state.config.base_url.as_str();
    let shape = Shape {
        base,
        links: Links {
            url: format!("{base}/Patient/{id}/$everything"),
            carried: &options.carried,
            cursor: options.cursor.as_deref(),
        },
        count_only,
        subset: None,
        ignored: &[],
    };
    let text = bundle(&shape, &page).map_err(|error| {
        tracing::error!(%error, "a stored resource is not JSON");
        ApiError::from(StoreError::Backend(error.to_string()))
    })?;
    Ok(json_response(StatusCode::OK, text, request.output))
}

/// The parameters of a `Parameters` body, as name and value text.
fn body_params(parameters: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    if parameters.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request(
            "POST $everything takes a Parameters resource (or no body)",
        ));
    }
    let mut params = Vec::new();
    let list = match parameters.get("parameter") {
        None => return Ok(params),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(ApiError::bad_request("Parameters.parameter must be a list")),
    };
    for parameter in list {
        let name = parameter.get("name").and_then(Value::as_str).unwrap_or("");
        let value = parameter.as_object().and_then(|object| {
            object
                .iter()
                .find(|(key, _)| key.starts_with("value"))
                .map(|(_, value)| value)
        });
        let text = match value {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Number(number)) => number.to_string(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "the $everything parameter {name:?} needs a primitive value"
                )));
            }
        };
        params.push((name.to_string(), text));
    }
    Ok(params)
}

/// `GET [base]/Patient/[id]/$everything`
pub(crate) async fn get(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
) -> Result<Response, ApiError> {
    let params = request.params.clone();
    run(&state, &request, path, &params).await
}

/// `POST [base]/Patient/[id]/$everything`, with the parameters in the URL or in a
/// `Parameters` body.
pub(crate) async fn post(
    State(state): State<AppState>,
    request: FhirRequest,
    path: InstancePath,
    body: Body,
) -> Result<Response, ApiError> {
    require_json_body(&request.headers)?;
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    let mut params = request.params.clone();
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        params.extend(body_params(&parse_object(&bytes)?)?);
    }
    run(&state, &request, path, &params).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn clinical_dates_are_date_parameters_of_compartment_types() {
        for (resource_type, code) in CLINICAL_DATE {
            let def = search::param(resource_type, code);
            assert!(
                def.is_some_and(|def| def.param_type == ParamType::Date),
                "{resource_type}.{code}"
            );
            assert!(
                search::compartment("Patient", "1", resource_type).is_some(),
                "{resource_type}"
            );
        }
    }

    #[test]
    fn options_are_checked_and_name_the_parameter() {
        let options = parse_options(&pairs(&[
            ("start", "2020"),
            ("end", "2020-06"),
            ("_type", "Observation, Practitioner"),
            ("_count", "5"),
            ("_cursor", "abc"),
        ]));
        let Ok(options) = options else {
            panic!("valid options refused");
        };
        assert_eq!(
            options.types.as_deref(),
            Some(&["Observation".to_string(), "Practitioner".to_string()][..])
        );
        assert_eq!(options.count, Some(5));
        assert_eq!(options.cursor.as_deref(), Some("abc"));
        assert_eq!(options.carried.len(), 4);
        for (name, value) in [
            ("start", "yesterday"),
            ("end", "2020-13"),
            ("_since", "soon"),
            ("_type", "Nope"),
            ("_count", "-1"),
            ("foo", "1"),
        ] {
            let error = parse_options(&pairs(&[(name, value)])).err();
            assert!(
                error.is_some_and(|error| error.status == StatusCode::BAD_REQUEST
                    && error.diagnostics.contains(name)),
                "{name}={value}"
            );
        }
        assert!(parse_options(&pairs(&[("start", "2021"), ("end", "2020")])).is_err());
    }

    #[test]
    fn references_to_included_types() {
        let base = "http://x/fhir";
        let resource = serde_json::json!({
            "resourceType": "Encounter",
            "subject": {"reference": "Patient/p"},
            "participant": [{"individual": {"reference": "Practitioner/a/_history/2"}}],
            "serviceProvider": {"reference": "http://x/fhir/Organization/o"},
            "location": [{"location": {"reference": "http://elsewhere/Location/l"}}],
            "extension": [{"valueReference": {"reference": "Medication/m"}}],
            "basedOn": [{"reference": "urn:uuid:1"}, {"reference": "#c"}],
        });
        let mut found = BTreeSet::new();
        collect_references(&resource, base, &mut found);
        let found: Vec<String> = found.iter().map(|(t, id)| format!("{t}/{id}")).collect();
        assert_eq!(found, ["Medication/m", "Organization/o", "Practitioner/a"]);
    }

    #[test]
    fn type_filter_narrows_the_compartment() {
        let options = Options {
            types: Some(vec!["Observation".into(), "Practitioner".into()]),
            start: Some(0),
            ..Options::default()
        };
        let query = compartment_query("p", &options);
        assert_eq!(
            query.map(|q| (q.types, q.clauses.len())),
            Some((vec!["Observation".to_string()], 2))
        );
        let only_referenced = Options {
            types: Some(vec!["Practitioner".into()]),
            ..Options::default()
        };
        assert!(compartment_query("p", &only_referenced).is_none());
    }
}
