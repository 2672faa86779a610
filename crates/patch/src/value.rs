//! Turning an operation's `value` into the JSON of an element.

use serde_json::{Map, Value};

use crate::edit;
use crate::parse::NewValue;
use crate::types::Child;

/// The JSON of a new element: its value, its `_name` sibling (a primitive's id and
/// extensions) and, for a `value[x]`, the type suffix (`Date`, `HumanName`).
#[derive(Debug, Default)]
pub(crate) struct Built {
    pub value: Option<Value>,
    pub extension: Option<Value>,
    pub suffix: Option<String>,
}

/// Builds the JSON for `new` as a value of the element `child` (when the definitions know it).
pub(crate) fn build(new: &NewValue, child: Option<&Child>) -> Result<Built, String> {
    match new {
        NewValue::Typed {
            suffix,
            value,
            extension,
        } => Ok(Built {
            value: value.clone(),
            extension: extension.clone(),
            suffix: Some(suffix.clone()),
        }),
        NewValue::Resource(resource) => Ok(Built {
            value: Some(resource.clone()),
            ..Built::default()
        }),
        NewValue::Parts(parts) => {
            let position = match child {
                Some(child) if child.is_primitive() => {
                    return Err(format!(
                        "`{}` is a primitive element; its value cannot be given as parts",
                        child.base_name
                    ));
                }
                Some(child) => Some(child.position(None).ok_or_else(|| {
                    format!(
                        "`{}` is not a complex element; its value cannot be given as parts",
                        child.base_name
                    )
                })?),
                None => None,
            };
            let mut object = Map::new();
            for (name, part) in parts {
                if !is_element_name(name) {
                    return Err(format!("`{name}` is not an element name"));
                }
                let grandchild = match &position {
                    Some(position) => Some(position.child(name).ok_or_else(|| {
                        format!("`{name}` is not an element of {}", position.describe())
                    })?),
                    None => None,
                };
                let built = build(part, grandchild.as_ref())?;
                let key = match grandchild
                    .as_ref()
                    .filter(|c| c.is_choice && c.type_code.is_none())
                {
                    Some(choice) => match built.suffix.as_deref() {
                        Some(suffix) if choice.choice_type(suffix).is_some() => {
                            format!("{name}{suffix}")
                        }
                        _ => {
                            return Err(format!(
                                "the choice element {name}[x] needs a value[x] of one of its types"
                            ));
                        }
                    },
                    None => name.clone(),
                };
                let repeats = match &grandchild {
                    Some(grandchild) => grandchild.repeats(),
                    None => object.contains_key(&key),
                };
                if !repeats
                    && (object.contains_key(&key) || object.contains_key(&format!("_{key}")))
                {
                    return Err(format!(
                        "`{key}` is given more than once but does not repeat"
                    ));
                }
                edit::put_value(&mut object, &key, built, repeats);
            }
            if object.is_empty() {
                return Err("a value given as parts has no parts".into());
            }
            Ok(Built {
                value: Some(Value::Object(object)),
                ..Built::default()
            })
        }
    }
}

/// Whether `name` can be an element name: a letter, then letters, digits or `_`.
pub(crate) fn is_element_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
