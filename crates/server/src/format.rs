//! Content negotiation: `Accept`, `_format`, `_pretty` and request `Content-Type`.

use axum::http::{HeaderMap, StatusCode, header};

use crate::error::ApiError;

/// The content type of every response body.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// How to write a response body.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    pub pretty: bool,
}

fn is_json_media_type(media_type: &str, allow_wildcards: bool) -> bool {
    let essence = media_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "application/fhir+json" | "application/json"
    ) || (allow_wildcards && matches!(essence.as_str(), "*/*" | "application/*"))
}

fn format_is_json(format: &str) -> bool {
    matches!(format.trim(), "json") || is_json_media_type(format, false)
}

fn accept_allows_json(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let refused = range.split(';').skip(1).any(|param| {
            param
                .trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && is_json_media_type(range, true)
    })
}

/// Decides the response format from `_format`, `_pretty` and `Accept`; 406 when the
/// client accepts nothing we write (we write JSON only).
pub fn negotiate(headers: &HeaderMap, query: &[(String, String)]) -> Result<Output, ApiError> {
    let mut pretty = false;
    let mut format = None;
    for (name, value) in query {
        match name.as_str() {
            "_format" => format = Some(value.as_str()),
            "_pretty" => match value.as_str() {
                "true" => pretty = true,
                "false" => pretty = false,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "_pretty must be true or false, not {other:?}"
                    )));
                }
            },
            _ => {}
        }
    }
    if let Some(format) = format {
        if !format_is_json(format) {
            return Err(ApiError::not_supported(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "_format {format:?} is not supported; this server speaks application/fhir+json"
                ),
            ));
        }
    } else if let Some(accept) = headers.get(header::ACCEPT) {
        let accept = accept.to_str().unwrap_or("");
        if !accept.trim().is_empty() && !accept_allows_json(accept) {
            return Err(ApiError::not_supported(
                StatusCode::NOT_ACCEPTABLE,
                format!("cannot answer in {accept:?}; this server speaks application/fhir+json"),
            ));
        }
    }
    Ok(Output { pretty })
}

/// Checks that a request body is FHIR JSON (415 otherwise). A missing `Content-Type` is
/// taken as JSON.
pub fn require_json_body(headers: &HeaderMap) -> Result<(), ApiError> {
    require_content_type(
        headers,
        |media_type| is_json_media_type(media_type, false),
        "application/fhir+json",
    )
}

/// Which patch format a PATCH body is in, from its `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchFormat {
    /// RFC 6902, `application/json-patch+json`.
    JsonPatch,
    /// FHIRPath Patch, a `Parameters` resource in FHIR JSON.
    FhirPathPatch,
}

/// The patch format of a PATCH body (415 for anything else).
pub fn patch_format(headers: &HeaderMap) -> Result<PatchFormat, ApiError> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json-patch+json" => Ok(PatchFormat::JsonPatch),
        "application/fhir+json" | "application/json" => Ok(PatchFormat::FhirPathPatch),
        _ => Err(ApiError::not_supported(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type {value:?} is not a patch format; send application/json-patch+json (JSON Patch) or application/fhir+json (FHIRPath Patch Parameters)"
            ),
        )),
    }
}

fn require_content_type(
    headers: &HeaderMap,
    accepts: impl Fn(&str) -> bool,
    expected: &str,
) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(()),
        Some(value) => {
            let value = value.to_str().unwrap_or("");
            if accepts(value) {
                Ok(())
            } else {
                Err(ApiError::not_supported(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    format!("Content-Type {value:?} is not supported here; send {expected}"),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_ranges() {
        assert!(accept_allows_json("application/fhir+json"));
        assert!(accept_allows_json("application/json; charset=utf-8"));
        assert!(accept_allows_json("text/html, */*;q=0.8"));
        assert!(accept_allows_json("application/fhir+json;fhirVersion=4.0"));
        assert!(!accept_allows_json("application/fhir+xml"));
        assert!(!accept_allows_json("text/html"));
        assert!(!accept_allows_json("application/json;q=0"));
    }

    #[test]
    fn format_parameter() {
        assert!(format_is_json("json"));
        assert!(format_is_json("application/fhir+json"));
        assert!(!format_is_json("xml"));
        assert!(!format_is_json("ttl"));
    }
}
