//! Reading a FHIRPath Patch `Parameters` resource into operations, checking its structure.

use fhirpath::Expression;
use serde_json::{Map, Value};

use crate::types::Position;

/// How deeply `part`s of a value may nest.
pub const MAX_PART_DEPTH: usize = 32;

/// How many operations one patch may have (each evaluates a path over the whole resource).
pub const MAX_OPERATIONS: usize = 1_000;

/// One `operation` parameter.
pub(crate) struct Operation {
    pub kind: OperationKind,
    pub path: Expression,
}

pub(crate) enum OperationKind {
    Add { name: String, value: NewValue },
    Insert { index: usize, value: NewValue },
    Delete,
    Replace { value: NewValue },
    Move { source: usize, destination: usize },
}

impl OperationKind {
    pub(crate) fn code(&self) -> &'static str {
        match self {
            OperationKind::Add { .. } => "add",
            OperationKind::Insert { .. } => "insert",
            OperationKind::Delete => "delete",
            OperationKind::Replace { .. } => "replace",
            OperationKind::Move { .. } => "move",
        }
    }
}

/// The `value` of an operation, as given.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum NewValue {
    /// A `value[x]`: the type suffix (`Date`, `HumanName`), the JSON (`None` when only
    /// `_value[x]` is given) and the `_value[x]` with a primitive's id and extensions.
    Typed {
        suffix: String,
        value: Option<Value>,
        extension: Option<Value>,
    },
    /// A `resource`, e.g. for `contained`.
    Resource(Value),
    /// Nested `part`s: the element's children by name, in order.
    Parts(Vec<(String, NewValue)>),
}

/// The operations of `patch`, or the index of the first bad one and why.
pub(crate) fn parse_patch(patch: &Value) -> Result<Vec<Operation>, (Option<usize>, String)> {
    let Some(object) = patch.as_object() else {
        return Err((None, "the patch is not a JSON object".into()));
    };
    match object.get("resourceType") {
        Some(Value::String(name)) if name == "Parameters" => {}
        Some(Value::String(name)) => {
            return Err((
                None,
                format!("the patch is a {name}, not a Parameters resource"),
            ));
        }
        _ => {
            return Err((
                None,
                "the patch has no resourceType; it must be a Parameters resource".into(),
            ));
        }
    }
    let parameters = match object.get("parameter") {
        None => return Ok(Vec::new()),
        Some(Value::Array(parameters)) => parameters,
        Some(_) => return Err((None, "Parameters.parameter is not an array".into())),
    };
    if parameters.len() > MAX_OPERATIONS {
        return Err((
            None,
            format!(
                "the patch has {} operations; at most {MAX_OPERATIONS} are allowed",
                parameters.len()
            ),
        ));
    }
    parameters
        .iter()
        .enumerate()
        .map(|(index, parameter)| parse_operation(parameter).map_err(|e| (Some(index), e)))
        .collect()
}

#[derive(Default)]
struct Parts<'p> {
    operation_type: Option<&'p str>,
    path: Option<&'p str>,
    name: Option<&'p str>,
    value: Option<NewValue>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

fn parse_operation(parameter: &Value) -> Result<Operation, String> {
    let Some(object) = parameter.as_object() else {
        return Err("the parameter is not a JSON object".into());
    };
    check_keys(object, false)?;
    match object.get("name") {
        Some(Value::String(name)) if name == "operation" => {}
        Some(Value::String(name)) => {
            return Err(format!(
                "the parameter is named `{name}`; a FHIRPath Patch has only `operation` parameters"
            ));
        }
        _ => return Err("the parameter has no name".into()),
    }
    let parts = match object.get("part") {
        Some(Value::Array(parts)) => parts,
        Some(_) => return Err("the operation's `part` is not an array".into()),
        None => return Err("the operation has no parts".into()),
    };
    let mut found = Parts::default();
    for part in parts {
        let Some(part) = part.as_object() else {
            return Err("a part of the operation is not a JSON object".into());
        };
        check_keys(part, true)?;
        let Some(name) = part.get("name").and_then(Value::as_str) else {
            return Err("a part of the operation has no name".into());
        };
        let duplicate = match name {
            "type" => found
                .operation_type
                .replace(string_part(part, name)?)
                .is_some(),
            "path" => found.path.replace(string_part(part, name)?).is_some(),
            "name" => found.name.replace(string_part(part, name)?).is_some(),
            "value" => found.value.replace(value_part(part, 0)?).is_some(),
            "index" => found.index.replace(integer_part(part, name)?).is_some(),
            "source" => found.source.replace(integer_part(part, name)?).is_some(),
            "destination" => found
                .destination
                .replace(integer_part(part, name)?)
                .is_some(),
            other => return Err(format!("unknown part `{other}`")),
        };
        if duplicate {
            return Err(format!("part `{name}` is given more than once"));
        }
    }
    let Some(operation_type) = found.operation_type else {
        return Err("the operation has no `type` part".into());
    };
    let Some(path) = found.path else {
        return Err(format!("the {operation_type} operation has no `path` part"));
    };
    let path = Expression::compile(path)
        .map_err(|error| format!("the path `{path}` is not valid FHIRPath: {error}"))?;
    let mut take = Takes {
        operation_type,
        parts: found,
    };
    let kind = match operation_type {
        "add" => {
            let name = take.name()?;
            let value = take.value()?;
            OperationKind::Add { name, value }
        }
        "insert" => {
            let index = take.integer("index", |p| p.index.take())?;
            let value = take.value()?;
            OperationKind::Insert { index, value }
        }
        "delete" => OperationKind::Delete,
        "replace" => OperationKind::Replace {
            value: take.value()?,
        },
        "move" => {
            let source = take.integer("source", |p| p.source.take())?;
            let destination = take.integer("destination", |p| p.destination.take())?;
            OperationKind::Move {
                source,
                destination,
            }
        }
        other => {
            return Err(format!(
                "unknown operation type `{other}` (expected add, insert, delete, replace or move)"
            ));
        }
    };
    take.check_no_more()?;
    Ok(Operation { kind, path })
}

/// Takes the parts an operation type needs, then checks nothing else was given.
struct Takes<'p> {
    operation_type: &'p str,
    parts: Parts<'p>,
}

impl Takes<'_> {
    fn name(&mut self) -> Result<String, String> {
        let Some(name) = self.parts.name.take() else {
            return Err(format!(
                "the {} operation has no `name` part",
                self.operation_type
            ));
        };
        if !crate::value::is_element_name(name) {
            return Err(format!("`{name}` is not an element name"));
        }
        Ok(name.to_string())
    }

    fn value(&mut self) -> Result<NewValue, String> {
        self.parts
            .value
            .take()
            .ok_or_else(|| format!("the {} operation has no `value` part", self.operation_type))
    }

    fn integer(
        &mut self,
        name: &str,
        take: impl FnOnce(&mut Parts<'_>) -> Option<usize>,
    ) -> Result<usize, String> {
        take(&mut self.parts)
            .ok_or_else(|| format!("the {} operation has no `{name}` part", self.operation_type))
    }

    fn check_no_more(&self) -> Result<(), String> {
        let parts = &self.parts;
        let unused = [
            ("name", parts.name.is_some()),
            ("value", parts.value.is_some()),
            ("index", parts.index.is_some()),
            ("source", parts.source.is_some()),
            ("destination", parts.destination.is_some()),
        ];
        match unused.iter().find(|(_, given)| *given) {
            Some((name, _)) => Err(format!(
                "the {} operation does not take a `{name}` part",
                self.operation_type
            )),
            None => Ok(()),
        }
    }
}

/// `valueString` → `("String", false)`, `_valueString` → `("String", true)`.
fn value_key(key: &str) -> Option<(&str, bool)> {
    let (rest, is_extension) = match key.strip_prefix('_') {
        Some(rest) => (rest, true),
        None => (key, false),
    };
    let suffix = rest.strip_prefix("value")?;
    suffix
        .starts_with(|c: char| c.is_ascii_uppercase())
        .then_some((suffix, is_extension))
}

/// Checks that a parameter or part has only keys that Parameters allows.
fn check_keys(object: &Map<String, Value>, is_part: bool) -> Result<(), String> {
    for key in object.keys() {
        match key.as_str() {
            "name" | "part" | "id" | "extension" => {}
            "modifierExtension" => {
                return Err("a modifierExtension on a patch parameter is not understood".into());
            }
            "resource" if is_part => {}
            key if is_part && value_key(key).is_some() => {}
            "resource" => return Err("an operation parameter cannot have a resource".into()),
            key if value_key(key).is_some() => {
                return Err(format!(
                    "an operation parameter cannot have a value (`{key}`); its content goes in parts"
                ));
            }
            other => return Err(format!("unknown property `{other}`")),
        }
    }
    Ok(())
}

/// The one `value[x]` of a part that must be a simple value.
fn simple_value<'p>(
    part: &'p Map<String, Value>,
    name: &str,
) -> Result<(&'p str, &'p Value), String> {
    if part.contains_key("part") || part.contains_key("resource") {
        return Err(format!(
            "part `{name}` must have a simple value, not parts or a resource"
        ));
    }
    let mut values = part.iter().filter_map(|(key, value)| match value_key(key) {
        Some((suffix, false)) => Some((suffix, value)),
        _ => None,
    });
    match (values.next(), values.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(format!("part `{name}` has no value")),
        (Some(_), Some(_)) => Err(format!("part `{name}` has more than one value[x]")),
    }
}

fn string_part<'p>(part: &'p Map<String, Value>, name: &str) -> Result<&'p str, String> {
    match simple_value(part, name)? {
        ("String" | "Code", Value::String(text)) => Ok(text),
        (suffix, _) => Err(format!(
            "part `{name}` must be a valueString or valueCode, not value{suffix}"
        )),
    }
}

fn integer_part(part: &Map<String, Value>, name: &str) -> Result<usize, String> {
    match simple_value(part, name)? {
        ("Integer" | "UnsignedInt" | "PositiveInt", Value::Number(number)) => number
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| format!("part `{name}` must be a non-negative integer, not {number}")),
        (suffix, _) => Err(format!(
            "part `{name}` must be a valueInteger, not value{suffix}"
        )),
    }
}

/// The value of a `value` part, or of a nested part giving a child element.
fn value_part(part: &Map<String, Value>, depth: usize) -> Result<NewValue, String> {
    let name = part.get("name").and_then(Value::as_str).unwrap_or("value");
    if depth > MAX_PART_DEPTH {
        return Err(format!("parts nest more than {MAX_PART_DEPTH} deep"));
    }
    let mut typed: Option<(&str, Option<&Value>, Option<&Value>)> = None;
    for (key, json) in part {
        let Some((suffix, is_extension)) = value_key(key) else {
            continue;
        };
        let entry = typed.get_or_insert((suffix, None, None));
        if entry.0 != suffix {
            return Err(format!("part `{name}` has more than one value[x]"));
        }
        if is_extension {
            entry.2 = Some(json);
        } else {
            entry.1 = Some(json);
        }
    }
    let sources = usize::from(typed.is_some())
        + usize::from(part.contains_key("part"))
        + usize::from(part.contains_key("resource"));
    if sources > 1 {
        return Err(format!(
            "part `{name}` has more than one of a value[x], nested parts and a resource"
        ));
    }
    if let Some((suffix, value, extension)) = typed {
        let allowed = Position::of_type("Parameters")
            .and_then(|p| p.child("parameter"))
            .and_then(|p| p.position(None))
            .and_then(|p| p.child("value"))
            .is_some_and(|value| value.choice_type(suffix).is_some());
        if !allowed {
            return Err(format!(
                "`value{suffix}` is not a value[x] type of Parameters"
            ));
        }
        if let Some(value) = value
            && matches!(value, Value::Null | Value::Array(_))
        {
            return Err(format!(
                "part `{name}`: value{suffix} must be a single value"
            ));
        }
        if let Some(extension) = extension
            && !extension.is_object()
        {
            return Err(format!("part `{name}`: _value{suffix} must be an object"));
        }
        return Ok(NewValue::Typed {
            suffix: suffix.to_string(),
            value: value.cloned(),
            extension: extension.cloned(),
        });
    }
    if let Some(resource) = part.get("resource") {
        if resource
            .get("resourceType")
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(format!("part `{name}`: the resource has no resourceType"));
        }
        return Ok(NewValue::Resource(resource.clone()));
    }
    let Some(children) = part.get("part") else {
        return Err(format!("part `{name}` has no value"));
    };
    let Some(children) = children.as_array() else {
        return Err(format!("part `{name}`: `part` is not an array"));
    };
    let mut out = Vec::with_capacity(children.len());
    for child in children {
        let Some(child) = child.as_object() else {
            return Err(format!("a part of `{name}` is not a JSON object"));
        };
        check_keys(child, true)?;
        let Some(child_name) = child.get("name").and_then(Value::as_str) else {
            return Err(format!("a part of `{name}` has no name"));
        };
        out.push((child_name.to_string(), value_part(child, depth + 1)?));
    }
    Ok(NewValue::Parts(out))
}
