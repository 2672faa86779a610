//! PATCH entries: the patch an entry carries, and the patched resource it stands for.
//!
//! An entry's resource is a FHIRPath Patch (`Parameters`) or, as R4 carries JSON Patch
//! in a Bundle, a `Binary` with `contentType` `application/json-patch+json` and the
//! patch document base64-encoded in `data`. The patch applies to the current version,
//! as a single PATCH does ([`crate::patch::apply_patch`]).

use axum::http::StatusCode;
use fhir::IssueType;
use serde_json::{Map, Value};
use store::StoreError;

use crate::AppState;
use crate::error::ApiError;
use crate::patch::{Patch, apply_patch};

const JSON_PATCH: &str = "application/json-patch+json";

fn structure(diagnostics: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, IssueType::Structure, diagnostics)
}

/// The patch in a PATCH entry's resource.
pub(super) fn parse(resource: Map<String, Value>) -> Result<Patch, ApiError> {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => Ok(Patch::FhirPath(Value::Object(resource))),
        Some("Binary") => {
            let content_type = resource
                .get("contentType")
                .and_then(Value::as_str)
                .unwrap_or("");
            let essence = content_type.split(';').next().unwrap_or("").trim();
            if !essence.eq_ignore_ascii_case(JSON_PATCH) {
                return Err(ApiError::not_supported(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "a Binary in a PATCH entry must have contentType {JSON_PATCH}, not {content_type:?}"
                    ),
                ));
            }
            let data = resource
                .get("data")
                .and_then(Value::as_str)
                .ok_or_else(|| structure("the Binary of a PATCH entry has no data"))?;
            let bytes =
                decode_base64(data).ok_or_else(|| structure("the Binary's data is not base64"))?;
            serde_json::from_slice(&bytes)
                .map(Patch::Json)
                .map_err(|error| {
                    structure(format!(
                        "the Binary's data is not a JSON Patch document (RFC 6902): {error}"
                    ))
                })
        }
        _ => Err(ApiError::bad_request(format!(
            "a PATCH entry carries a Parameters resource (FHIRPath Patch) or a Binary with contentType {JSON_PATCH}"
        ))),
    }
}

/// `patch` applied to the current version of `resource_type/id`: the patched resource
/// and the version it was patched from. 404 for an unknown resource, 410 for a deleted
/// one, 412 when `if_match` names another version.
pub(super) async fn patched(
    state: &AppState,
    resource_type: &str,
    id: &str,
    patch: &Patch,
    if_match: Option<u64>,
) -> Result<(Map<String, Value>, u64), ApiError> {
    let current = match state.store.read(resource_type, id).await? {
        None => {
            return Err(ApiError::not_found(format!(
                "{resource_type}/{id} is not known"
            )));
        }
        Some(current) if current.is_deleted() => {
            return Err(ApiError::new(
                StatusCode::GONE,
                IssueType::Deleted,
                format!(
                    "{resource_type}/{id} was deleted (version {})",
                    current.version
                ),
            ));
        }
        Some(current) => current,
    };
    if let Some(expected) = if_match
        && expected != current.version
    {
        return Err(StoreError::VersionMismatch {
            expected,
            current: Some(current.version),
        }
        .into());
    }
    Ok((apply_patch(&current, patch)?, current.version))
}

/// 409: the resource kept changing while a patch without `ifMatch` was applied.
pub(super) fn kept_changing(resource_type: &str, id: &str) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        IssueType::Conflict,
        format!("{resource_type}/{id} kept changing while the patch was applied; try again"),
    )
}

/// Standard base64 (RFC 4648, with or without padding; whitespace ignored).
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let mut bytes = Vec::with_capacity(text.len() / 4 * 3);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    let mut padding = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return None,
        };
        if padding > 0 {
            // Data after padding.
            return None;
        }
        buffer = (buffer << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((buffer >> bits) as u8);
            buffer &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding of the last group, never a whole character.
    (bits < 6 && buffer == 0 && padding <= 2).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64() {
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64("TWFu").as_deref(), Some(&b"Man"[..]));
        assert_eq!(decode_base64("TWE=").as_deref(), Some(&b"Ma"[..]));
        assert_eq!(decode_base64("TQ==").as_deref(), Some(&b"M"[..]));
        assert_eq!(decode_base64("TQ").as_deref(), Some(&b"M"[..]));
        assert_eq!(decode_base64("TW\nFu").as_deref(), Some(&b"Man"[..]));
        assert_eq!(decode_base64("TR=="), None);
        assert_eq!(decode_base64("T"), None);
        assert_eq!(decode_base64("TQ==TQ=="), None);
        assert_eq!(decode_base64("T*=="), None);
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => Map::new(),
        }
    }

    #[test]
    fn patch_formats() {
        let fhirpath = parse(object(
            json!({"resourceType": "Parameters", "parameter": []}),
        ));
        assert!(matches!(fhirpath, Ok(Patch::FhirPath(_))));
        // [{"op":"remove","path":"/active"}]
        let binary = json!({
            "resourceType": "Binary",
            "contentType": "application/json-patch+json",
            "data": "W3sib3AiOiJyZW1vdmUiLCJwYXRoIjoiL2FjdGl2ZSJ9XQ==",
        });
        assert!(matches!(parse(object(binary)), Ok(Patch::Json(_))));
        for bad in [
            json!({"resourceType": "Binary", "contentType": "text/plain", "data": "e30="}),
            json!({"resourceType": "Binary", "contentType": "application/json-patch+json"}),
            json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "!!"}),
            json!({"resourceType": "Binary", "contentType": "application/json-patch+json", "data": "e30="}),
            json!({"resourceType": "Patient"}),
        ] {
            let error = parse(object(bad.clone())).err();
            assert_eq!(
                error.map(|e| e.status),
                Some(StatusCode::BAD_REQUEST),
                "{bad}"
            );
        }
    }
}
