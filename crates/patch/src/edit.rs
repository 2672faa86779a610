//! The five operations, on located elements of a JSON resource.
//!
//! Primitives keep their id and extensions in a `_name` sibling (`_given` for a list,
//! aligned by index with `null`s); every edit keeps the two in step.

use serde_json::{Map, Value};

use crate::locate::{self, Location, Step};
use crate::parse::NewValue;
use crate::types::{Child, Position};
use crate::value::{self, Built};

/// The type position of the node at `steps`, walking the definitions from the resource type.
pub(crate) fn position_at(document: &Value, steps: &[Step]) -> Option<Position> {
    let mut position = Position::of_resource(document)?;
    let mut value = document;
    let mut pending: Option<Child> = None;
    for step in steps {
        match step {
            Step::Key(key) => {
                let name = key.strip_prefix('_').unwrap_or(key);
                value = value
                    .get(key.as_str())
                    .or_else(|| value.get(format!("_{key}").as_str()))?;
                let child = position.child(name)?;
                if value.is_array() {
                    pending = Some(child);
                } else {
                    position = child.position(Some(value))?;
                }
            }
            Step::Index(index) => {
                value = value.get(*index)?;
                position = pending.take()?.position(Some(value))?;
            }
        }
    }
    // Steps ending on a list (rather than an item of it) have no one position.
    pending.is_none().then_some(position)
}

fn object_at<'a>(
    document: &'a mut Value,
    steps: &[Step],
) -> Result<&'a mut Map<String, Value>, String> {
    locate::get_mut(document, steps)
        .and_then(Value::as_object_mut)
        .ok_or_else(|| "the selected element is not where it was found".into())
}

fn underscore(key: &str) -> String {
    format!("_{key}")
}

fn key_index(map: &Map<String, Value>, key: &str) -> Option<usize> {
    map.keys().position(|k| k == key)
}

/// A list property and its `_key` sibling, padded to one length.
pub(crate) struct List {
    pub values: Vec<Value>,
    pub extensions: Vec<Value>,
}

impl List {
    pub(crate) fn len(&self) -> usize {
        self.values.len()
    }

    pub(crate) fn take(map: &mut Map<String, Value>, key: &str) -> List {
        let as_list = |value: Option<&mut Value>| match value.map(Value::take) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(single) => vec![single],
        };
        let mut values = as_list(map.get_mut(key));
        let mut extensions = as_list(map.get_mut(underscore(key).as_str()));
        let len = values.len().max(extensions.len());
        values.resize(len, Value::Null);
        extensions.resize(len, Value::Null);
        List { values, extensions }
    }

    pub(crate) fn insert(&mut self, index: usize, built: Built) {
        self.values
            .insert(index, built.value.unwrap_or(Value::Null));
        self.extensions
            .insert(index, built.extension.unwrap_or(Value::Null));
    }

    pub(crate) fn remove(&mut self, index: usize) -> (Value, Value) {
        (self.values.remove(index), self.extensions.remove(index))
    }

    /// Writes the list back, keeping the property where it was; an empty list, or an
    /// all-`null` `_key`, is removed.
    pub(crate) fn put(self, map: &mut Map<String, Value>, key: &str) {
        let extension_key = underscore(key);
        let no_values = self.values.iter().all(Value::is_null);
        let no_extensions = self.extensions.iter().all(Value::is_null);
        if no_values && no_extensions {
            map.shift_remove(key);
            map.shift_remove(&extension_key);
            return;
        }
        put_property(map, key, Value::Array(self.values), None);
        if no_extensions {
            map.shift_remove(&extension_key);
        } else {
            let after = key_index(map, key).map(|i| i + 1);
            put_property(map, &extension_key, Value::Array(self.extensions), after);
        }
    }
}

/// Sets `key`, in place when it exists, else at `at` (or at the end).
fn put_property(map: &mut Map<String, Value>, key: &str, value: Value, at: Option<usize>) {
    if let Some(slot) = map.get_mut(key) {
        *slot = value;
        return;
    }
    match at {
        Some(at) if at <= map.len() => {
            map.shift_insert(at, key.to_string(), value);
        }
        _ => {
            map.insert(key.to_string(), value);
        }
    }
}

/// Adds a value to `key` of `map`: pushed onto a list, or set when single.
pub(crate) fn put_value(map: &mut Map<String, Value>, key: &str, built: Built, repeats: bool) {
    if repeats {
        let mut list = List::take(map, key);
        let end = list.len();
        list.insert(end, built);
        list.put(map, key);
        return;
    }
    if let Some(value) = built.value {
        put_property(map, key, value, None);
    }
    if let Some(extension) = built.extension {
        let after = key_index(map, key).map(|i| i + 1);
        put_property(map, &underscore(key), extension, after);
    }
}

/// What the definitions say about the property `key` of the object at `parent`.
fn child_of(document: &Value, parent: &[Step], key: &str) -> Option<Child> {
    position_at(document, parent).and_then(|position| position.child(key))
}

/// The JSON key for `name` given a value whose type suffix is `suffix`: a choice named
/// without its type (`deceased`) takes it from the value (`deceasedBoolean`).
fn key_for(child: Option<&Child>, name: &str, suffix: Option<&str>) -> Result<String, String> {
    let Some(child) = child.filter(|c| c.is_choice) else {
        return Ok(name.to_string());
    };
    match (child.type_code, suffix) {
        (Some(_), _) => Ok(name.to_string()),
        (None, Some(suffix)) if child.choice_type(suffix).is_some() => {
            Ok(format!("{}{suffix}", child.base_name))
        }
        (None, Some(suffix)) => Err(format!(
            "value{suffix} is not a type of the choice element {}[x]",
            child.base_name
        )),
        (None, None) => Err(format!(
            "the choice element {}[x] needs a value[x] to name its type",
            child.base_name
        )),
    }
}

pub(crate) fn add(
    document: &mut Value,
    location: &Location,
    name: &str,
    new: &NewValue,
) -> Result<(), String> {
    let target = match location {
        Location::Root => Vec::new(),
        Location::Element { .. } => {
            let steps = location.steps();
            if locate::get(document, &steps).is_some_and(Value::is_object) {
                steps
            } else {
                // A primitive: its id and extensions go in the `_name` object.
                if !matches!(name, "id" | "extension") {
                    return Err(format!(
                        "the path selects a primitive; only `id` and `extension` can be added to it, not `{name}`"
                    ));
                }
                extension_object(document, location)?
            }
        }
    };
    let position = position_at(document, &target);
    let child = match &position {
        Some(position) => Some(
            position
                .child(name)
                .ok_or_else(|| format!("`{name}` is not an element of {}", position.describe()))?,
        ),
        None => None,
    };
    let built = value::build(new, child.as_ref())?;
    let key = key_for(child.as_ref(), name, built.suffix.as_deref())?;
    let map = object_at(document, &target)?;
    let repeats = match &child {
        Some(child) => child.repeats(),
        None => map.get(&key).is_some_and(Value::is_array),
    };
    if !repeats {
        let taken = match child.as_ref().filter(|c| c.is_choice) {
            Some(choice) => map.keys().find(|k| {
                let k = k.strip_prefix('_').unwrap_or(k);
                k.strip_prefix(choice.base_name.as_str())
                    .is_some_and(|suffix| choice.choice_type(suffix).is_some())
            }),
            None => map
                .keys()
                .find(|k| **k == key || k.strip_prefix('_') == Some(key.as_str())),
        };
        if let Some(taken) = taken {
            let taken = taken.trim_start_matches('_');
            return Err(format!(
                "`{taken}` already has a value and does not repeat; use replace"
            ));
        }
    }
    put_value(map, &key, built, repeats);
    Ok(())
}

/// The steps to a primitive's `_name` object (or its item in a `_name` list), created if absent.
fn extension_object(document: &mut Value, location: &Location) -> Result<Vec<Step>, String> {
    let Location::Element { parent, key, index } = location else {
        return Err("the resource is not a primitive".into());
    };
    let extension_key = underscore(key);
    let map = object_at(document, parent)?;
    match index {
        None => {
            if !map.get(&extension_key).is_some_and(Value::is_object) {
                let after = key_index(map, key).map(|i| i + 1);
                put_property(map, &extension_key, Value::Object(Map::new()), after);
            }
        }
        Some(index) => {
            let mut list = List::take(map, key);
            if let Some(slot) = list.extensions.get_mut(*index)
                && !slot.is_object()
            {
                *slot = Value::Object(Map::new());
            }
            list.put(map, key);
        }
    }
    let mut steps = parent.clone();
    steps.push(Step::Key(extension_key));
    if let Some(index) = index {
        steps.push(Step::Index(*index));
    }
    Ok(steps)
}

pub(crate) fn replace(
    document: &mut Value,
    location: &Location,
    new: &NewValue,
) -> Result<(), String> {
    let Location::Element { parent, key, index } = location else {
        return Err("the path selects the resource itself, which cannot be replaced".into());
    };
    let child = child_of(document, parent, key);
    let built = value::build(new, child.as_ref())?;
    let map = object_at(document, parent)?;
    match index {
        Some(index) => {
            let mut list = List::take(map, key);
            if *index < list.len() {
                list.values[*index] = built.value.unwrap_or(Value::Null);
                list.extensions[*index] = built.extension.unwrap_or(Value::Null);
            }
            list.put(map, key);
        }
        None => {
            // A choice element may change type: deceasedBoolean → deceasedDateTime.
            let new_key = match (
                child.as_ref().filter(|c| c.is_choice),
                built.suffix.as_deref(),
            ) {
                (Some(choice), Some(suffix)) => {
                    if choice.choice_type(suffix).is_none() {
                        return Err(format!(
                            "value{suffix} is not a type of the choice element {}[x]",
                            choice.base_name
                        ));
                    }
                    format!("{}{suffix}", choice.base_name)
                }
                _ => key.clone(),
            };
            let extension_key = underscore(key);
            let at = key_index(map, key).or_else(|| key_index(map, &extension_key));
            map.shift_remove(key);
            map.shift_remove(&extension_key);
            let mut at = at.unwrap_or(map.len()).min(map.len());
            if let Some(value) = built.value {
                map.shift_insert(at, new_key.clone(), value);
                at += 1;
            }
            if let Some(extension) = built.extension {
                map.shift_insert(at, underscore(&new_key), extension);
            }
        }
    }
    Ok(())
}

pub(crate) fn delete(document: &mut Value, location: &Location) -> Result<(), String> {
    let Location::Element { parent, key, index } = location else {
        return Err("the path selects the resource itself, which cannot be deleted".into());
    };
    let map = object_at(document, parent)?;
    remove_property(map, key, *index);
    prune(document, parent.clone());
    Ok(())
}

/// Removes `key` (and `_key`), or item `index` of them.
fn remove_property(map: &mut Map<String, Value>, key: &str, index: Option<usize>) {
    match index {
        None => {
            map.shift_remove(key);
            map.shift_remove(&underscore(key));
        }
        Some(index) => {
            let mut list = List::take(map, key);
            if index < list.len() {
                list.remove(index);
            }
            list.put(map, key);
        }
    }
}

/// Removes objects left empty by a deletion, upwards from `steps` (never the resource).
fn prune(document: &mut Value, mut steps: Vec<Step>) {
    while !steps.is_empty()
        && locate::get(document, &steps).is_some_and(|v| v.as_object().is_some_and(Map::is_empty))
    {
        let index = match steps.last() {
            Some(Step::Index(index)) => {
                let index = *index;
                steps.pop();
                Some(index)
            }
            _ => None,
        };
        let Some(Step::Key(raw_key)) = steps.pop() else {
            return;
        };
        let Ok(map) = object_at(document, &steps) else {
            return;
        };
        match (raw_key.strip_prefix('_'), index) {
            // An emptied `_name` goes; the primitive's value stays.
            (Some(_), None) => {
                map.shift_remove(&raw_key);
            }
            (Some(key), Some(index)) => {
                let mut list = List::take(map, key);
                if let Some(slot) = list.extensions.get_mut(index) {
                    *slot = Value::Null;
                }
                list.put(map, key);
            }
            (None, index) => remove_property(map, &raw_key, index),
        }
    }
}

/// The one list that `locations` are all the items of: its parent and key.
fn whole_list<'l>(
    document: &Value,
    locations: &'l [Location],
) -> Result<(&'l [Step], &'l str, usize), String> {
    let Some(Location::Element {
        parent,
        key,
        index: Some(_),
    }) = locations.first()
    else {
        return Err(match locations.first() {
            None => "the path selects no list (an empty list cannot be addressed; use add)".into(),
            Some(_) => "the path does not select the items of a list".into(),
        });
    };
    let mut indexes = Vec::with_capacity(locations.len());
    for location in locations {
        match location {
            Location::Element {
                parent: p,
                key: k,
                index: Some(index),
            } if p == parent && k == key => indexes.push(*index),
            _ => return Err("the path selects items of more than one list".into()),
        }
    }
    indexes.sort_unstable();
    indexes.dedup();
    let len = locate::get(document, parent)
        .map(|object| {
            let len = |k: &str| object.get(k).and_then(Value::as_array).map_or(0, Vec::len);
            len(key).max(len(&underscore(key)))
        })
        .unwrap_or(0);
    if indexes.len() != len || locations.len() != len {
        return Err(format!(
            "the path selects {} of the {len} items of the list `{key}`; it must select the whole list",
            locations.len()
        ));
    }
    Ok((parent, key, len))
}

pub(crate) fn insert(
    document: &mut Value,
    locations: &[Location],
    index: usize,
    new: &NewValue,
) -> Result<(), String> {
    let (parent, key, len) = whole_list(document, locations)?;
    if index > len {
        return Err(format!(
            "index {index} is out of range: the list has {len} items"
        ));
    }
    let child = child_of(document, parent, key);
    let built = value::build(new, child.as_ref())?;
    let map = object_at(document, parent)?;
    let mut list = List::take(map, key);
    list.insert(index, built);
    list.put(map, key);
    Ok(())
}

pub(crate) fn move_item(
    document: &mut Value,
    locations: &[Location],
    source: usize,
    destination: usize,
) -> Result<(), String> {
    let (parent, key, len) = whole_list(document, locations)?;
    for (name, index) in [("source", source), ("destination", destination)] {
        if index >= len {
            return Err(format!(
                "{name} {index} is out of range: the list has {len} items"
            ));
        }
    }
    let map = object_at(document, parent)?;
    let mut list = List::take(map, key);
    let (value, extension) = list.remove(source);
    list.values.insert(destination, value);
    list.extensions.insert(destination, extension);
    list.put(map, key);
    Ok(())
}
