//! Building FHIR responses: bodies, `ETag`, `Last-Modified`, `Location`, `Prefer`.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fhir::{IssueType, Severity, operation_outcome};
use store::Version;

use crate::extract::FhirRequest;
use crate::format::{FHIR_JSON, Output};

/// `Prefer: return=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub fn prefer_return(headers: &HeaderMap) -> Return {
    for value in headers.get_all("prefer") {
        for preference in value.to_str().unwrap_or("").split([',', ';']) {
            match preference.trim() {
                "return=minimal" => return Return::Minimal,
                "return=representation" => return Return::Representation,
                "return=OperationOutcome" => return Return::OperationOutcome,
                _ => {}
            }
        }
    }
    Return::Representation
}

/// `Prefer: handling=strict`: a search must refuse what it does not understand
/// (the default, `handling=lenient`, ignores it and says so).
pub fn handling_strict(headers: &HeaderMap) -> bool {
    for value in headers.get_all("prefer") {
        for preference in value.to_str().unwrap_or("").split([',', ';']) {
            match preference.trim() {
                "handling=strict" => return true,
                "handling=lenient" => return false,
                _ => {}
            }
        }
    }
    false
}

/// A JSON body as text, pretty-printed on request.
pub fn json_body(text: String, output: Output) -> Body {
    if output.pretty
        && let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
        && let Ok(pretty) = serde_json::to_string_pretty(&value)
    {
        return Body::from(pretty);
    }
    Body::from(text)
}

/// A response with a JSON body.
pub fn json_response(status: StatusCode, text: String, output: Output) -> Response {
    let mut response = (status, json_body(text, output)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

fn version_headers(headers: &mut HeaderMap, version: &Version) {
    if let Ok(etag) = HeaderValue::from_str(&version.etag()) {
        headers.insert(header::ETAG, etag);
    }
    if let Ok(modified) = HeaderValue::from_str(&version.last_updated.to_http_date()) {
        headers.insert(header::LAST_MODIFIED, modified);
    }
}

/// The location of a version: `{base}/{type}/{id}/_history/{n}`.
pub fn version_url(base: &str, version: &Version) -> String {
    format!(
        "{base}/{}/{}/_history/{}",
        version.resource_type, version.id, version.version
    )
}

/// The answer to a read or vread of a live version.
pub fn read_response(version: Version, output: Output) -> Response {
    let mut headers = HeaderMap::new();
    version_headers(&mut headers, &version);
    let mut response = json_response(StatusCode::OK, version.body.unwrap_or_default(), output);
    response.headers_mut().extend(headers);
    response
}

/// The answer to a write: status, headers, and the body `Prefer` asks for.
pub fn write_response(
    request: &FhirRequest,
    base: &str,
    status: StatusCode,
    version: &Version,
    with_location: bool,
) -> Response {
    let mut response = match (request.prefer, &version.body) {
        (Return::Representation, Some(body)) => json_response(status, body.clone(), request.output),
        (Return::OperationOutcome, _) => {
            let what = match (version.body.is_none(), status) {
                (true, _) => "Deleted",
                (false, StatusCode::CREATED) => "Created",
                (false, _) => "Updated",
            };
            let outcome = operation_outcome(
                Severity::Information,
                IssueType::Informational,
                &format!(
                    "{what} {}/{} (version {})",
                    version.resource_type, version.id, version.version
                ),
            );
            json_response(status, outcome.to_string(), request.output)
        }
        _ => status.into_response(),
    };
    version_headers(response.headers_mut(), version);
    if with_location && let Ok(location) = HeaderValue::from_str(&version_url(base, version)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// A version number from an ETag: `W/"3"`, `"3"` or `3`.
pub fn parse_etag(text: &str) -> Option<u64> {
    let text = text.strip_prefix("W/").unwrap_or(text);
    let text = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_parse() {
        assert_eq!(parse_etag("W/\"3\""), Some(3));
        assert_eq!(parse_etag("\"12\""), Some(12));
        assert_eq!(parse_etag("7"), Some(7));
        assert_eq!(parse_etag("W/\"x\""), None);
        assert_eq!(parse_etag(""), None);
    }

    #[test]
    fn prefer_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(prefer_return(&headers), Return::Representation);
        headers.insert("prefer", HeaderValue::from_static("return=minimal"));
        assert_eq!(prefer_return(&headers), Return::Minimal);
        headers.insert(
            "prefer",
            HeaderValue::from_static("handling=strict, return=OperationOutcome"),
        );
        assert_eq!(prefer_return(&headers), Return::OperationOutcome);
        assert!(handling_strict(&headers));
        headers.insert("prefer", HeaderValue::from_static("handling=lenient"));
        assert!(!handling_strict(&headers));
    }
}
