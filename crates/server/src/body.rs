//! Reading request bodies: size limit, JSON, and the checks every resource body gets.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use fhir::{IssueType, definitions, is_valid_id};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{Map, Value};

use crate::duplicates::{ParseError, parse_json};
use crate::error::ApiError;

/// Reads the whole body, refusing more than `limit` bytes with 413.
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, ApiError> {
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            IssueType::TooLong,
            format!("the request body is larger than the limit of {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes().to_vec()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(ApiError::bad_request(format!(
            "cannot read the request body: {error}"
        ))),
    }
}

/// Parses a body as a JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            "the request body is empty; send a FHIR resource",
        ));
    }
    match parse_json(bytes) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            "the request body is JSON but not an object; a FHIR resource is a JSON object",
        )),
        Err(ParseError::Duplicate(path)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            format!("the property {path} appears more than once in its object"),
        )),
        Err(ParseError::Syntax(error)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Structure,
            format!("the request body is not valid JSON: {error}"),
        )),
    }
}

/// Parses a resource body and checks what every stored resource must satisfy:
/// a known `resourceType` equal to the URL's type, a valid `id` if any, an object `meta`.
pub fn parse_resource(bytes: &[u8], url_type: &str) -> Result<Map<String, Value>, ApiError> {
    check_resource(parse_object(bytes)?, url_type)
}

/// The checks of [`parse_resource`] on an already parsed object.
pub fn check_resource(
    resource: Map<String, Value>,
    url_type: &str,
) -> Result<Map<String, Value>, ApiError> {
    let resource_type = match resource.get("resourceType") {
        Some(Value::String(resource_type)) => resource_type.as_str(),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Structure,
                "resourceType must be a string",
            ));
        }
        None => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Required,
                "the resource has no resourceType",
            ));
        }
    };
    if !definitions().is_resource_type(resource_type) {
        return Err(ApiError::bad_request(format!(
            "resourceType {resource_type:?} is not a FHIR R4 resource type"
        )));
    }
    if resource_type != url_type {
        return Err(ApiError::bad_request(format!(
            "the body is a {resource_type} but the URL names {url_type}"
        )));
    }
    match resource.get("id") {
        None => {}
        Some(Value::String(id)) if is_valid_id(id) => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "the resource id {other} is not a valid FHIR id ([A-Za-z0-9-.]{{1,64}})"
            )));
        }
    }
    match resource.get("meta") {
        None | Some(Value::Object(_)) => {}
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Structure,
                "meta must be an object",
            ));
        }
    }
    Ok(resource)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_checks() {
        assert!(parse_resource(br#"{"resourceType":"Patient"}"#, "Patient").is_ok());
        for (body, why) in [
            (&b""[..], "empty"),
            (b"{", "malformed"),
            (b"[1]", "not an object"),
            (br#"{"resourceType":"Patientx"}"#, "unknown type"),
            (br#"{"resourceType":"Observation"}"#, "wrong type"),
            (br#"{"resourceType":"Patient","id":"a b"}"#, "bad id"),
            (br#"{"resourceType":"Patient","id":7}"#, "numeric id"),
            (br#"{"resourceType":"Patient","meta":[]}"#, "bad meta"),
            (br#"{"id":"x"}"#, "no type"),
        ] {
            let error = parse_resource(body, "Patient").err();
            assert_eq!(
                error.map(|e| e.status),
                Some(StatusCode::BAD_REQUEST),
                "{why}"
            );
        }
    }
}
