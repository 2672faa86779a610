//! `ValueSet/$expand` of the implicit value sets: every member in code order or, with
//! `filter`, the members the free-text search finds, best first (the ranking of
//! `coding`'s search: rare words weigh more, `chf` expands to congestive heart failure,
//! the last word matches as a prefix, billable codes rank a little above headers).
//! `count` (default and maximum in [`crate::Limits`]) and `offset` page through it;
//! `expansion.total` counts every member. ICD-10-CM headers are `abstract` (not valid on a
//! claim). `activeOnly` is accepted and changes nothing: every FY2026 code is active.

use serde_json::{Value, json};
use store::Instant;

use super::concept::{Concept, System, VERSION};
use super::params::Params;
use super::valueset::ValueSet;
use crate::Limits;
use crate::error::ApiError;

pub fn run(params: &Params, limits: &Limits) -> Result<Value, ApiError> {
    let url = params.required("url")?;
    if let Some(version) = params.text("valueSetVersion")?
        && version != VERSION
    {
        return Err(ApiError::not_found(format!(
            "version {version:?} of the value set is not known here; this server has {VERSION}"
        )));
    }
    let value_set = ValueSet::parse(url)?;
    let filter = params.text("filter")?;
    let count = params
        .integer("count")?
        .unwrap_or(limits.expansion_count_default)
        .min(limits.expansion_count_max);
    let offset = params.integer("offset")?.unwrap_or(0);
    let designations = params.boolean("includeDesignations")?.unwrap_or(false);
    let active_only = params.boolean("activeOnly")?;

    let (total, page): (usize, Vec<Concept<'static>>) = match filter {
        Some(filter) => {
            let hits = ranked(value_set.system, filter);
            let members: Vec<Concept<'static>> = hits
                .into_iter()
                .filter(|concept| value_set.contains(concept))
                .collect();
            let page = members.iter().skip(offset).take(count).copied().collect();
            (members.len(), page)
        }
        None => {
            let mut total = 0;
            let mut page = Vec::new();
            for concept in value_set.members() {
                if total >= offset && page.len() < count {
                    page.push(concept);
                }
                total += 1;
            }
            (total, page)
        }
    };

    let system = value_set.system;
    let contains: Vec<Value> = page
        .iter()
        .map(|concept| entry(system, concept, designations))
        .collect();
    let mut used = vec![
        json!({"name": "version", "valueUri": format!("{}|{VERSION}", system.url())}),
        json!({"name": "count", "valueInteger": count}),
        json!({"name": "offset", "valueInteger": offset}),
    ];
    if let Some(filter) = filter {
        used.push(json!({"name": "filter", "valueString": filter}));
    }
    if designations {
        used.push(json!({"name": "includeDesignations", "valueBoolean": true}));
    }
    if let Some(active_only) = active_only {
        used.push(json!({"name": "activeOnly", "valueBoolean": active_only}));
    }
    let mut expansion = json!({
        "timestamp": Instant::now().to_fhir(),
        "total": total,
        "offset": offset,
        "parameter": used,
    });
    if !contains.is_empty()
        && let Some(object) = expansion.as_object_mut()
    {
        object.insert("contains".into(), Value::Array(contains));
    }
    Ok(json!({
        "resourceType": "ValueSet",
        "url": value_set.url,
        "version": VERSION,
        "status": "active",
        "expansion": expansion,
    }))
}

/// Every concept the search finds for `filter`, best first.
fn ranked(system: System, filter: &str) -> Vec<Concept<'static>> {
    match system {
        System::Cm => coding::icd10cm()
            .ranked(filter, usize::MAX)
            .into_iter()
            .map(|(code, _)| Concept::Cm(code))
            .collect(),
        System::Pcs => coding::icd10pcs()
            .ranked(filter, usize::MAX)
            .into_iter()
            .map(|(code, _)| Concept::Pcs(code))
            .collect(),
    }
}

fn entry(system: System, concept: &Concept<'_>, designations: bool) -> Value {
    let mut entry = json!({
        "system": system.url(),
        "version": VERSION,
        "code": concept.code(),
        "display": concept.display(),
    });
    let Some(object) = entry.as_object_mut() else {
        return entry;
    };
    if !concept.is_billable() {
        object.insert("abstract".into(), json!(true));
    }
    if designations {
        let list: Vec<Value> = concept
            .inclusion_terms()
            .into_iter()
            .map(|term| {
                json!({
                    "language": "en",
                    "use": {"system": "http://snomed.info/sct", "code": "900000000000013009", "display": "Synonym"},
                    "value": term,
                })
            })
            .collect();
        if !list.is_empty() {
            object.insert("designation".into(), Value::Array(list));
        }
    }
    entry
}
