//! `_summary` and `_elements`: the parts of a resource a search asked for.
//!
//! Subsetting works on top-level elements only: an element kept is kept whole. A
//! subsetted resource carries the `SUBSETTED` tag, so no client takes it for the
//! complete resource.

use fhir::definitions;
use search::Summary;
use serde_json::{Map, Value, json};

const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// What a search asked to keep of each match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subset {
    /// `_summary=true`: the elements marked summary.
    Summary,
    /// `_summary=text`: `text`, `id`, `meta` and the mandatory elements.
    Text,
    /// `_summary=data`: everything but `text`.
    Data,
    /// `_elements`: the elements listed, and the mandatory ones.
    Elements(Vec<String>),
}

impl Subset {
    /// The subset `_summary` and `_elements` ask for, if any; `_summary` wins over `_elements`.
    pub fn of(summary: Option<Summary>, elements: &[String]) -> Option<Subset> {
        match summary {
            Some(Summary::True) => Some(Subset::Summary),
            Some(Summary::Text) => Some(Subset::Text),
            Some(Summary::Data) => Some(Subset::Data),
            Some(Summary::False) => None,
            Some(Summary::Count) | None if elements.is_empty() => None,
            Some(Summary::Count) | None => Some(Subset::Elements(
                elements
                    .iter()
                    .flat_map(|element| element.split(','))
                    .map(|element| {
                        // `Patient.name` names the same element as `name`.
                        let element = element.trim();
                        element.split_once('.').map_or(element, |(_, rest)| rest)
                    })
                    .filter(|element| !element.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
        }
    }
}

/// The definition path (`name`, `value[x]`) of a top-level JSON property (`name`,
/// `valueQuantity`, `_birthDate`), when the type defines it.
fn element_of(resource_type: &str, key: &str) -> Option<&'static fhir::definitions::ElementDef> {
    let key = key.strip_prefix('_').unwrap_or(key);
    let type_def = definitions().type_def(resource_type)?;
    type_def.elements.iter().find(|element| {
        let path = element.path.as_str();
        if path.contains('.') {
            return false;
        }
        match path.strip_suffix("[x]") {
            None => path == key,
            Some(stem) => key
                .strip_prefix(stem)
                .and_then(|rest| rest.chars().next())
                .is_some_and(char::is_uppercase),
        }
    })
}

fn keep(resource_type: &str, key: &str, subset: &Subset) -> bool {
    if matches!(key, "resourceType" | "id" | "meta") {
        return true;
    }
    let element = element_of(resource_type, key);
    let mandatory = element.is_some_and(|element| element.min > 0);
    match subset {
        Subset::Summary => element.is_some_and(|element| element.summary) || mandatory,
        Subset::Text => mandatory || key == "text",
        Subset::Data => key != "text",
        Subset::Elements(names) => {
            mandatory
                || names.iter().any(|name| {
                    let bare = key.strip_prefix('_').unwrap_or(key);
                    bare == name
                        || element.is_some_and(|element| {
                            element.path.strip_suffix("[x]") == Some(name.as_str())
                                || element.path == *name
                        })
                })
        }
    }
}

/// The resource cut down to `subset`, tagged `SUBSETTED`.
pub fn apply(resource: Map<String, Value>, subset: &Subset) -> Map<String, Value> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut kept: Map<String, Value> = resource
        .into_iter()
        .filter(|(key, _)| keep(&resource_type, key, subset))
        .collect();
    let tag = json!({"system": SUBSETTED_SYSTEM, "code": "SUBSETTED"});
    let meta = kept
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        match meta.get_mut("tag") {
            Some(Value::Array(tags)) => tags.push(tag),
            _ => {
                meta.insert("tag".into(), Value::Array(vec![tag]));
            }
        }
    }
    if !kept.contains_key("id") {
        return kept;
    }
    // Keep resourceType, id and meta first, as stored.
    let mut ordered = Map::with_capacity(kept.len());
    for key in ["resourceType", "id", "meta"] {
        if let Some(value) = kept.shift_remove(key) {
            ordered.insert(key.into(), value);
        }
    }
    ordered.extend(kept);
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient() -> Map<String, Value> {
        match json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"versionId": "1"},
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "active": true,
            "name": [{"family": "Doe"}],
            "birthDate": "1970-01-01",
            "_birthDate": {"extension": []},
            "photo": [{"contentType": "image/png"}],
            "contact": [{"gender": "male"}],
            "deceasedBoolean": false,
        }) {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    fn keys(map: &Map<String, Value>) -> Vec<&str> {
        map.keys().map(String::as_str).collect()
    }

    #[test]
    fn summary_keeps_summary_elements() {
        let kept = apply(patient(), &Subset::Summary);
        assert_eq!(
            keys(&kept),
            [
                "resourceType",
                "id",
                "meta",
                "active",
                "name",
                "birthDate",
                "_birthDate",
                "deceasedBoolean"
            ]
        );
        assert_eq!(kept["meta"]["tag"][0]["code"], "SUBSETTED");
    }

    #[test]
    fn text_data_and_elements() {
        assert_eq!(
            keys(&apply(patient(), &Subset::Text)),
            ["resourceType", "id", "meta", "text"]
        );
        let data = apply(patient(), &Subset::Data);
        assert!(!data.contains_key("text") && data.contains_key("photo"));
        let subset = Subset::of(None, &["Patient.name,deceased".into()]);
        let Some(subset) = subset else {
            panic!("no subset")
        };
        assert_eq!(
            keys(&apply(patient(), &subset)),
            ["resourceType", "id", "meta", "name", "deceasedBoolean"]
        );
        assert_eq!(Subset::of(Some(Summary::False), &["name".into()]), None);
    }
}
