//! The resources a resource refers to, fetched from the store for the few invariants that
//! call `resolve()` (R4's `ctm-1` on CareTeam), so validation sees what they point at.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::AppState;
use crate::error::ApiError;

/// Most references fetched for one resource.
const MAX_REFERENCES: usize = 256;

/// Referenced resources by the reference text that names them.
pub struct Referenced(HashMap<String, Value>);

impl fhirpath::Resolver for Referenced {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        self.0.get(reference)
    }
}

fn collect<'v>(value: &'v Value, found: &mut Vec<&'v str>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference)) => found.push(reference),
                    _ => collect(child, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect(item, found)),
        _ => {}
    }
}

/// Fetches what `resource` refers to, when its type has an invariant that needs it.
pub async fn referenced(
    state: &AppState,
    resource: &Map<String, Value>,
) -> Result<Option<Referenced>, ApiError> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !validation::uses_resolve(resource_type) {
        return Ok(None);
    }
    let mut references = Vec::new();
    for child in resource.values() {
        collect(child, &mut references);
    }
    references.sort_unstable();
    references.dedup();
    let base = format!("{}/", state.config.base_url);
    let mut fetched = HashMap::new();
    for reference in references.into_iter().take(MAX_REFERENCES) {
        let relative = reference.strip_prefix(&base).unwrap_or(reference);
        let mut parts = relative.split('/');
        let (Some(target_type), Some(id)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !fhir::definitions().is_resource_type(target_type) || !fhir::is_valid_id(id) {
            continue;
        }
        let Some(version) = state.store.read(target_type, id).await? else {
            continue;
        };
        if let Some(Ok(target)) = version.body.as_deref().map(serde_json::from_str::<Value>) {
            fetched.insert(reference.to_string(), target);
        }
    }
    Ok(Some(Referenced(fetched)))
}
