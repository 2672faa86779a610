//! The kick-off's parameters, checked: `_outputFormat`, `_type`, `_since`,
//! `_typeFilter` and `patient`, from the query string or a `Parameters` body.

use fhir::{definitions, is_valid_id};
use search::ParseOptions;
use serde_json::{Map, Value};
use store::{Instant, TypeFilter};

use crate::error::ApiError;

/// The output formats accepted (all mean NDJSON of FHIR resources).
const OUTPUT_FORMATS: [&str; 3] = ["application/fhir+ndjson", "application/ndjson", "ndjson"];

/// Where the export was asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `[base]/$export`: every resource.
    System,
    /// `[base]/Patient/$export`: the Patient compartments of every patient.
    Patient,
    /// `[base]/Group/[id]/$export`: the Patient compartments of the group's members.
    Group,
}

/// What a kick-off selects, checked.
#[derive(Clone, Debug, Default)]
pub struct ExportParams {
    /// `_type`: empty for every type.
    pub types: Vec<String>,
    /// `_since`: resources changed after it.
    pub since: Option<Instant>,
    /// `_typeFilter`, parsed.
    pub filters: Vec<TypeFilter>,
    /// `patient`: only these patients (ids); patient and group level only.
    pub patients: Option<Vec<String>>,
}

/// Checks the kick-off parameters (names and values, in order). An unsupported
/// parameter is an error with `strict` (`Prefer: handling=strict`), ignored otherwise;
/// a malformed value is always an error.
pub fn parse_params(
    params: &[(String, String)],
    level: Level,
    strict: bool,
) -> Result<ExportParams, ApiError> {
    let mut parsed = ExportParams::default();
    let mut since_seen = false;
    for (name, value) in params {
        match name.as_str() {
            "_outputFormat" if !OUTPUT_FORMATS.contains(&value.trim()) => {
                return Err(ApiError::bad_request(format!(
                    "_outputFormat {value:?} is not supported; use application/fhir+ndjson"
                )));
            }
            "_outputFormat" => {}
            "_type" => {
                for resource_type in value.split(',').map(str::trim) {
                    check_type(resource_type, level, strict)?;
                    parsed.types.push(resource_type.to_string());
                }
            }
            "_since" => {
                if since_seen {
                    return Err(ApiError::bad_request("_since is given more than once"));
                }
                since_seen = true;
                let period = Instant::parse_fhir_period(value.trim())
                    .map_err(|reason| ApiError::bad_request(format!("_since: {reason}")))?;
                parsed.since = Some(period.start);
            }
            "_typeFilter" => {
                for query in value.split(',') {
                    parsed.filters.push(type_filter(query)?);
                }
            }
            "patient" => {
                if level == Level::System {
                    return Err(ApiError::bad_request(
                        "patient is for Patient and Group level exports only",
                    ));
                }
                let id = value.trim();
                let id = id.strip_prefix("Patient/").unwrap_or(id);
                if !is_valid_id(id) {
                    return Err(ApiError::bad_request(format!(
                        "patient {value:?} is not a Patient reference such as Patient/123"
                    )));
                }
                parsed
                    .patients
                    .get_or_insert_with(Vec::new)
                    .push(id.to_string());
            }
            // Presentation of the kick-off's own answer: nothing to export differently.
            "_format" | "_pretty" => {}
            other if strict => {
                return Err(ApiError::not_supported(
                    axum::http::StatusCode::BAD_REQUEST,
                    format!("the export parameter {other:?} is not supported"),
                ));
            }
            _ => {}
        }
    }
    Ok(parsed)
}

fn check_type(resource_type: &str, level: Level, strict: bool) -> Result<(), ApiError> {
    if !definitions().is_resource_type(resource_type) {
        return Err(ApiError::bad_request(format!(
            "_type: {resource_type:?} is not a FHIR R4 resource type"
        )));
    }
    if level != Level::System
        && strict
        && search::compartment("Patient", "", resource_type).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "_type: {resource_type} is not in the Patient compartment"
        )));
    }
    Ok(())
}

/// One `_typeFilter` query, `Type?name=value&...` (its own commas percent-encoded).
fn type_filter(text: &str) -> Result<TypeFilter, ApiError> {
    let text = text.trim();
    let Some((resource_type, query)) = text.split_once('?') else {
        return Err(ApiError::bad_request(format!(
            "_typeFilter {text:?} is not a search such as Observation?code=1234-5"
        )));
    };
    if !definitions().is_resource_type(resource_type) {
        return Err(ApiError::bad_request(format!(
            "_typeFilter: {resource_type:?} is not a FHIR R4 resource type"
        )));
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let types = [resource_type.to_string()];
    // A filter the server does not understand must not widen the export: always strict.
    let parsed = search::parse(&types, &pairs, ParseOptions { strict: true })?;
    let query = &parsed.query;
    if !query.sort.is_empty()
        || !query.includes.is_empty()
        || !query.revincludes.is_empty()
        || parsed.count.is_some()
        || parsed.summary.is_some()
        || !parsed.elements.is_empty()
        || parsed.cursor.is_some()
    {
        return Err(ApiError::bad_request(format!(
            "_typeFilter {text:?}: only search criteria are allowed, not result parameters"
        )));
    }
    Ok(TypeFilter {
        resource_type: resource_type.to_string(),
        query: parsed.query,
    })
}

/// The parameters of a `Parameters` body as name and value pairs: `value[x]` strings
/// as they are, `valueReference` as its reference.
pub fn parameters_body(body: &Map<String, Value>) -> Result<Vec<(String, String)>, ApiError> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(ApiError::bad_request(
            "the kick-off body must be a Parameters resource",
        ));
    }
    let mut pairs = Vec::new();
    for parameter in body
        .get("parameter")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("a parameter has no name"))?;
        let value = parameter.as_object().and_then(|object| {
            object.iter().find_map(|(key, value)| match key.as_str() {
                "valueReference" => value.get("reference")?.as_str(),
                key if key.starts_with("value") => value.as_str(),
                _ => None,
            })
        });
        let Some(value) = value else {
            return Err(ApiError::bad_request(format!(
                "parameter {name:?} has no string or reference value"
            )));
        };
        pairs.push((name.to_string(), value.to_string()));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    fn status(result: Result<ExportParams, ApiError>) -> u16 {
        result.map_or_else(|error| error.status.as_u16(), |_| 200)
    }

    #[test]
    fn parameters() {
        let parsed = parse_params(
            &pairs(&[
                ("_outputFormat", "application/fhir+ndjson"),
                ("_type", "Patient,Observation"),
                ("_since", "2024-01-01T00:00:00Z"),
                (
                    "_typeFilter",
                    "Observation?code=http://loinc.org|1-1%2C2-2,Observation?status=final",
                ),
            ]),
            Level::System,
            true,
        )
        .unwrap_or_default();
        assert_eq!(parsed.types, ["Patient", "Observation"]);
        assert!(parsed.since.is_some());
        assert_eq!(parsed.filters.len(), 2);
        assert_eq!(parsed.filters[0].query.clauses[0].any_of.len(), 2);

        let check = |list: &[(&str, &str)], level, strict| {
            status(parse_params(&pairs(list), level, strict))
        };
        assert_eq!(
            check(&[("_outputFormat", "text/csv")], Level::System, false),
            400
        );
        assert_eq!(
            check(&[("_outputFormat", "ndjson")], Level::System, false),
            200
        );
        assert_eq!(check(&[("_type", "Nope")], Level::System, false), 400);
        assert_eq!(check(&[("_since", "yesterday")], Level::System, false), 400);
        assert_eq!(
            check(&[("_typeFilter", "code=1")], Level::System, false),
            400
        );
        assert_eq!(
            check(
                &[("_typeFilter", "Observation?nope=1")],
                Level::System,
                false
            ),
            400
        );
        assert_eq!(
            check(
                &[("_typeFilter", "Observation?_sort=date")],
                Level::System,
                false
            ),
            400
        );
        assert_eq!(check(&[("_elements", "id")], Level::System, false), 200);
        assert_eq!(check(&[("_elements", "id")], Level::System, true), 400);
        assert_eq!(
            check(&[("_type", "Organization")], Level::Patient, false),
            200
        );
        assert_eq!(
            check(&[("_type", "Organization")], Level::Patient, true),
            400
        );
        assert_eq!(
            check(&[("patient", "Patient/1")], Level::System, false),
            400
        );
        assert_eq!(check(&[("patient", "Patient/1")], Level::Group, true), 200);
    }

    #[test]
    fn parameters_resource() {
        let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "_type", "valueString": "Patient"},
            {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"},
            {"name": "patient", "valueReference": {"reference": "Patient/7"}}
        ]});
        let Value::Object(body) = body else {
            unreachable!()
        };
        let found = parameters_body(&body).unwrap_or_default();
        assert_eq!(
            found,
            pairs(&[
                ("_type", "Patient"),
                ("_since", "2024-01-01T00:00:00Z"),
                ("patient", "Patient/7")
            ])
        );
    }
}
