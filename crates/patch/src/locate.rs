//! Finding where in the JSON the nodes a FHIRPath expression selects are.
//!
//! The engine's items borrow JSON nodes from the document, so a node is found by pointer
//! identity while walking the document once, building its JSON Pointer on the way.

use std::collections::HashMap;

use fhirpath::{Environment, Expression, Item};
use serde_json::Value;

/// One step of a JSON Pointer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

/// Where a selected element is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Location {
    /// The resource itself.
    Root,
    /// The property `key` (never with a leading `_`: a primitive is its value and its `_key`
    /// sibling together) of the object at `parent`, or item `index` of that property's list.
    Element {
        parent: Vec<Step>,
        key: String,
        index: Option<usize>,
    },
}

impl Location {
    /// The JSON Pointer steps to the element's value.
    pub(crate) fn steps(&self) -> Vec<Step> {
        match self {
            Location::Root => Vec::new(),
            Location::Element { parent, key, index } => {
                let mut steps = parent.clone();
                steps.push(Step::Key(key.clone()));
                if let Some(index) = index {
                    steps.push(Step::Index(*index));
                }
                steps
            }
        }
    }
}

/// Evaluates `path` on `document` and finds where each selected node is.
pub(crate) fn select(path: &Expression, document: &Value) -> Result<Vec<Location>, String> {
    let environment = Environment::new();
    let items = path
        .evaluate(document, &environment)
        .map_err(|error| format!("the path cannot be evaluated: {error}"))?;
    // A node can be selected more than once (`combine`); each selection counts.
    let mut targets: HashMap<*const Value, Vec<usize>> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Item::Node(node) = item else {
            return Err("the path selects a computed value, not an element of the resource".into());
        };
        // A primitive with only an id or extensions has a `null` value (not in the
        // document); its `_name` object is.
        let target = match (node.value, node.extension) {
            (Value::Null, Some(extension)) => extension,
            (value, _) => value,
        };
        targets
            .entry(std::ptr::from_ref(target))
            .or_default()
            .push(i);
    }
    let mut found: Vec<Option<Vec<Step>>> = vec![None; items.len()];
    let mut steps = Vec::new();
    walk(document, &mut steps, &targets, &mut found);
    found
        .into_iter()
        .map(|steps| {
            steps.and_then(location).ok_or_else(|| {
                "the path selects something that is not an element of the resource".into()
            })
        })
        .collect()
}

fn walk(
    value: &Value,
    steps: &mut Vec<Step>,
    targets: &HashMap<*const Value, Vec<usize>>,
    found: &mut [Option<Vec<Step>>],
) {
    for &i in targets
        .get(&std::ptr::from_ref(value))
        .into_iter()
        .flatten()
    {
        found[i] = Some(steps.clone());
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                steps.push(Step::Key(key.clone()));
                walk(child, steps, targets, found);
                steps.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                steps.push(Step::Index(index));
                walk(child, steps, targets, found);
                steps.pop();
            }
        }
        _ => {}
    }
}

/// The location of the node at `steps`; `None` for a list itself (not an item of it).
fn location(mut steps: Vec<Step>) -> Option<Location> {
    if steps.is_empty() {
        return Some(Location::Root);
    }
    let index = match steps.last() {
        Some(Step::Index(index)) => {
            let index = *index;
            steps.pop();
            Some(index)
        }
        _ => None,
    };
    match steps.pop() {
        Some(Step::Key(key)) => {
            let key = key.strip_prefix('_').map_or(key.clone(), str::to_string);
            Some(Location::Element {
                parent: steps,
                key,
                index,
            })
        }
        _ => None,
    }
}

/// The value at `steps`.
pub(crate) fn get<'a>(document: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    steps.iter().try_fold(document, |value, step| match step {
        Step::Key(key) => value.get(key.as_str()),
        Step::Index(index) => value.get(*index),
    })
}

/// The value at `steps`, mutably.
pub(crate) fn get_mut<'a>(document: &'a mut Value, steps: &[Step]) -> Option<&'a mut Value> {
    steps.iter().try_fold(document, |value, step| match step {
        Step::Key(key) => value.get_mut(key.as_str()),
        Step::Index(index) => value.get_mut(*index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn locate(document: &Value, path: &str) -> Result<Vec<Location>, String> {
        let Ok(expression) = Expression::compile(path) else {
            panic!("bad path {path}");
        };
        select(&expression, document)
    }

    fn element(parent: &[&str], key: &str, index: Option<usize>) -> Location {
        Location::Element {
            parent: parent.iter().map(|k| Step::Key((*k).to_string())).collect(),
            key: key.into(),
            index,
        }
    }

    #[test]
    fn finds_objects_primitives_list_items_and_extension_only_primitives() {
        let patient = json!({
            "resourceType": "Patient",
            "birthDate": "1920-01-01",
            "name": [{"given": ["a", null], "_given": [null, {"extension": [{"url": "u", "valueString": "x"}]}]}],
            "contact": [{"gender": "male"}]
        });
        assert_eq!(locate(&patient, "Patient"), Ok(vec![Location::Root]));
        assert_eq!(
            locate(&patient, "Patient.birthDate"),
            Ok(vec![element(&[], "birthDate", None)])
        );
        assert_eq!(
            locate(&patient, "Patient.contact[0].gender"),
            Ok(vec![Location::Element {
                parent: vec![Step::Key("contact".into()), Step::Index(0)],
                key: "gender".into(),
                index: None
            }])
        );
        let given = Location::Element {
            parent: vec![Step::Key("name".into()), Step::Index(0)],
            key: "given".into(),
            index: Some(1),
        };
        assert_eq!(locate(&patient, "Patient.name.given[1]"), Ok(vec![given]));
        assert_eq!(locate(&patient, "Patient.gender"), Ok(vec![]));
        assert!(locate(&patient, "Patient.birthDate.toString()").is_err());
        assert!(locate(&patient, "1 + 1").is_err());
    }
}
