//! Finding the resources that refer to a Patient, and rewriting those references.
//!
//! The store indexes every reference a search parameter extracts, so the resources
//! that refer to a Patient are found by searching each reference parameter (of every
//! type) that may point to a Patient; in each one found, every `reference` to the
//! Patient is rewritten, wherever it is (contained resources and elements no parameter
//! covers included).
//!
//! A resource that refers to the Patient only from elements no search parameter covers
//! (an extension, a questionnaire answer) is found by reading the whole store once: its
//! stored text is searched for the reference before it is parsed. That read costs about
//! a second per few hundred thousand resources, a price a merge pays for completeness.

use search::{ParamType, ParseOptions, Total};
use serde_json::Value;
use store::{SearchRequest, Version};

use crate::AppState;
use crate::error::ApiError;

/// Matches per page when collecting every match of a search.
const PAGE: usize = 500;

/// Every current resource of `resource_type` that `params` match, at most `max`.
pub async fn search_all(
    state: &AppState,
    resource_type: &str,
    params: &[(String, String)],
    max: usize,
) -> Result<Vec<Version>, ApiError> {
    let parsed = search::parse(
        &[resource_type.to_string()],
        params,
        ParseOptions { strict: true },
    )?;
    let mut query = parsed.query;
    query.total = Total::None;
    let mut found = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .store
            .search(SearchRequest {
                query: query.clone(),
                count: PAGE.min(max.saturating_sub(found.len())).max(1),
                cursor,
            })
            .await?;
        found.extend(page.matches.into_iter().filter(|v| !v.is_deleted()));
        match page.next {
            Some(next) if found.len() < max => cursor = Some(next),
            _ => break,
        }
    }
    found.truncate(max);
    Ok(found)
}

/// The (type, reference parameter) pairs that may point to a Patient.
fn patient_reference_params() -> Vec<(&'static str, &'static str)> {
    let mut pairs = Vec::new();
    for resource_type in fhir::definitions().resource_types() {
        for param in search::params_for(resource_type) {
            if param.param_type == ParamType::Reference
                && param.union_of.is_empty()
                && param.expression.is_some()
                && (param.targets.is_empty() || param.targets.iter().any(|t| t == "Patient"))
            {
                pairs.push((resource_type.as_str(), param.code.as_str()));
            }
        }
    }
    pairs
}

/// Whether a resource is a record of a merge or unmerge (its AuditEvent or
/// Provenance): those keep naming the patients as they were.
pub fn is_merge_record(resource: &Value) -> bool {
    match resource.get("resourceType").and_then(Value::as_str) {
        Some("AuditEvent") => true,
        Some("Provenance") => resource
            .get("activity")
            .and_then(|activity| activity.get("coding"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|coding| {
                coding.get("system").and_then(Value::as_str) == Some(super::merge::LIFECYCLE)
            }),
        _ => false,
    }
}

/// The current resources, other than Patients `skip`, that refer to `Patient/{id}`,
/// each once, in a stable order, with their content parsed; merge records are left out.
pub async fn referring(
    state: &AppState,
    id: &str,
    skip: &[&str],
) -> Result<Vec<(Version, Value)>, ApiError> {
    let target = format!("Patient/{id}");
    let mut seen = std::collections::BTreeMap::new();
    for (resource_type, code) in patient_reference_params() {
        let params = [(code.to_string(), target.clone())];
        for version in search_all(state, resource_type, &params, usize::MAX).await? {
            if resource_type == "Patient" && skip.contains(&version.id.as_str()) {
                continue;
            }
            let key = (version.resource_type.clone(), version.id.clone());
            if seen.contains_key(&key) {
                continue;
            }
            let Some(body) = version.body.as_deref() else {
                continue;
            };
            let Ok(resource) = serde_json::from_str::<Value>(body) else {
                continue;
            };
            if is_merge_record(&resource) {
                continue;
            }
            seen.insert(key, (version, resource));
        }
    }
    for (resource_type, id) in unindexed(state, id, &seen).await? {
        if resource_type == "Patient" && skip.contains(&id.as_str()) {
            continue;
        }
        let Some(version) = state.store.read(&resource_type, &id).await? else {
            continue;
        };
        let Some(Ok(resource)) = version.body.as_deref().map(serde_json::from_str::<Value>) else {
            continue;
        };
        if is_merge_record(&resource) {
            continue;
        }
        seen.insert((resource_type, id), (version, resource));
    }
    Ok(seen.into_values().collect())
}

/// The current resources, other than those in `found`, that refer to `Patient/{id}` from
/// elements no search parameter covers: the whole store read once, each stored text
/// searched for the reference before it is parsed.
async fn unindexed(
    state: &AppState,
    id: &str,
    found: &std::collections::BTreeMap<(String, String), (Version, Value)>,
) -> Result<Vec<(String, String)>, ApiError> {
    let store = state.store.clone();
    let base = state.config.base_url.clone();
    let id = id.to_string();
    let known: std::collections::BTreeSet<(String, String)> = found.keys().cloned().collect();
    let scanned = tokio::task::spawn_blocking(move || {
        let needle = format!("Patient/{id}");
        let mut hits = Vec::new();
        let mut scan = store.scan(&store::ScanRequest {
            types: Vec::new(),
            since: None,
            patients: None,
            filters: Vec::new(),
        })?;
        while let Some(page) = scan.next_page()? {
            for one in page {
                if !one.body.contains(&needle) {
                    continue;
                }
                let key = (one.resource_type, one.id);
                if known.contains(&key) {
                    continue;
                }
                let Ok(mut resource) = serde_json::from_str::<Value>(&one.body) else {
                    continue;
                };
                // Only a real reference counts, not the text elsewhere.
                if repoint(&mut resource, &id, &id, &base) {
                    hits.push(key);
                }
            }
        }
        Ok::<_, store::StoreError>(hits)
    })
    .await
    .map_err(|error| {
        ApiError::from(store::StoreError::Backend(format!(
            "the reference scan stopped: {error}"
        )))
    })?;
    Ok(scanned?)
}

/// Rewrites every `reference` in `value` that points to `Patient/{from}` (any version,
/// relative or under `base`) to `Patient/{to}`; true when one changed.
pub fn repoint(value: &mut Value, from: &str, to: &str, base: &str) -> bool {
    match value {
        Value::Object(map) => {
            let mut changed = false;
            if let Some(Value::String(reference)) = map.get_mut("reference")
                && points_to(reference, from, base)
            {
                *reference = format!("Patient/{to}");
                changed = true;
            }
            for (key, child) in map.iter_mut() {
                if key != "reference" {
                    changed |= repoint(child, from, to, base);
                }
            }
            changed
        }
        Value::Array(items) => {
            let mut changed = false;
            for item in items {
                changed |= repoint(item, from, to, base);
            }
            changed
        }
        _ => false,
    }
}

/// Whether `reference` is `Patient/{id}`, with or without a version, relative or
/// under `base`.
pub fn points_to(reference: &str, id: &str, base: &str) -> bool {
    let local = reference
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('/'))
        .unwrap_or(reference);
    let Some(rest) = local
        .strip_prefix("Patient/")
        .and_then(|rest| rest.strip_prefix(id))
    else {
        return false;
    };
    rest.is_empty() || rest.starts_with("/_history/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_to_the_patient_are_rewritten_everywhere() {
        let base = "http://h/fhir";
        let mut value = serde_json::json!({
            "subject": {"reference": "Patient/a"},
            "contained": [{"patient": {"reference": "http://h/fhir/Patient/a/_history/2"}}],
            "other": [{"reference": "Patient/ab"}, {"reference": "Practitioner/a"}]
        });
        assert!(repoint(&mut value, "a", "b", base));
        assert_eq!(value["subject"]["reference"], "Patient/b");
        assert_eq!(value["contained"][0]["patient"]["reference"], "Patient/b");
        assert_eq!(value["other"][0]["reference"], "Patient/ab");
        assert_eq!(value["other"][1]["reference"], "Practitioner/a");
        assert!(!repoint(&mut value, "a", "b", base));
        assert!(points_to("Patient/a/_history/3", "a", base));
        assert!(!points_to("Patient/a2", "a", base));
    }
}
