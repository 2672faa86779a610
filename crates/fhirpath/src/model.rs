//! FHIR types of JSON nodes, resolved from the compiled-in R4 definitions.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use fhir::definitions::{ElementDef, Kind, TypeDef};
use serde_json::Value;

/// The FHIR type of a node, and where its children are defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FhirType<'a> {
    /// The type name as `type()` and `is` see it: `Patient`, `HumanName`, `BackboneElement`, `string`.
    pub name: &'a str,
    /// The type whose elements describe this node's children; `None` when unknown.
    owner: Option<&'static str>,
    /// Path of this node's element within `owner` (`""` for the type itself, `contact` for a backbone).
    prefix: &'static str,
}

impl<'a> FhirType<'a> {
    /// A node whose type is not known (JSON not described by the definitions).
    pub const UNKNOWN: FhirType<'static> = FhirType {
        name: "",
        owner: None,
        prefix: "",
    };

    /// Whether the type is known from the definitions.
    pub fn is_known(&self) -> bool {
        self.owner.is_some()
    }

    /// The type of the element at `path`, such as `Patient.contact` (a backbone element) or
    /// `Observation.code`; `None` for unknown paths and for choice elements (`Observation.value`),
    /// whose type depends on the JSON key.
    pub fn of_path(path: &str) -> Option<FhirType<'static>> {
        let mut segments = path.split('.');
        let mut current = FhirType::named(segments.next()?)?;
        for segment in segments {
            current = match child_def(&current, segment) {
                ChildDef::Element(owner, element) => {
                    let code = element.types.first().map_or("", String::as_str);
                    element_type(owner, element, code, &crate::value::NULL)
                }
                _ => return None,
            };
            if !current.is_known() {
                return None;
            }
        }
        Some(current)
    }

    /// The type named `name`, if the definitions have it.
    pub fn named(name: &str) -> Option<FhirType<'static>> {
        let (key, _) = INDEX.types.get_key_value(name)?;
        Some(FhirType {
            name: key,
            owner: Some(key),
            prefix: "",
        })
    }
}

/// FNV-1a: the index keys are short, trusted names, so a fast non-keyed hash is fine.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<Fnv>>;

struct TypeEntry {
    def: &'static TypeDef,
    elements: FastMap<&'static str, &'static ElementDef>,
}

struct Index {
    types: FastMap<&'static str, TypeEntry>,
}

/// Calls `f` with `parts` joined, without allocating for short results.
pub(crate) fn with_joined<R>(parts: &[&str], f: impl FnOnce(&str) -> R) -> R {
    let mut buffer = [0u8; 96];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > buffer.len() {
        return f(&parts.concat());
    }
    let mut at = 0;
    for part in parts {
        buffer[at..at + part.len()].copy_from_slice(part.as_bytes());
        at += part.len();
    }
    match std::str::from_utf8(&buffer[..len]) {
        Ok(joined) => f(joined),
        Err(_) => f(&parts.concat()),
    }
}

static INDEX: LazyLock<Index> = LazyLock::new(build_index);

fn build_index() -> Index {
    let defs = fhir::definitions();
    let mut types: FastMap<&'static str, TypeEntry> = FastMap::default();
    let mut work: Vec<&'static str> = defs.resource_types().iter().map(String::as_str).collect();
    work.extend(["Resource", "DomainResource", "Element", "BackboneElement"]);
    while let Some(name) = work.pop() {
        if types.contains_key(name) {
            continue;
        }
        let Some(def) = defs.type_def(name) else {
            continue;
        };
        let mut elements = FastMap::default();
        for element in &def.elements {
            elements.insert(element.path.as_str(), element);
            for code in &element.types {
                if !code.starts_with("http://") && !types.contains_key(code.as_str()) {
                    work.push(code.as_str());
                }
            }
        }
        if let Some(base) = &def.base {
            work.push(base.as_str());
        }
        types.insert(name, TypeEntry { def, elements });
    }
    Index { types }
}

/// Whether `name` is a FHIR type in the definitions.
pub fn is_fhir_type(name: &str) -> bool {
    INDEX.types.contains_key(name)
}

/// Whether `name` is a primitive FHIR type (`string`, `boolean`, …).
pub fn is_primitive(name: &str) -> bool {
    INDEX
        .types
        .get(name)
        .is_some_and(|t| t.def.kind == Kind::PrimitiveType)
}

/// Whether `name` is a resource type (including the abstract `Resource`/`DomainResource`).
pub fn is_resource(name: &str) -> bool {
    INDEX
        .types
        .get(name)
        .is_some_and(|t| t.def.kind == Kind::Resource)
}

/// The base type of `name`.
pub fn base_of(name: &str) -> Option<&'static str> {
    let base = INDEX.types.get(name)?.def.base.as_deref()?;
    INDEX.types.get_key_value(base).map(|(k, _)| *k)
}

/// Whether a value of type `name` is a `target` (the same or derived from it).
pub fn derives_from(name: &str, target: &str) -> bool {
    if name == target {
        return true;
    }
    let mut current = base_of(name);
    let mut guard = 0;
    while let Some(base) = current {
        if base == target {
            return true;
        }
        guard += 1;
        if guard > 16 {
            break;
        }
        current = base_of(base);
    }
    false
}

/// The type of a resource, from its `resourceType`.
pub fn resource_type(value: &Value) -> FhirType<'_> {
    match value.get("resourceType").and_then(Value::as_str) {
        Some(name) => FhirType::named(name).unwrap_or(FhirType {
            name,
            owner: None,
            prefix: "",
        }),
        None => FhirType::UNKNOWN,
    }
}

/// What the definitions say about the children named `name` of a node of type `parent`.
pub enum ChildDef {
    /// No definitions for the parent: navigate the JSON blindly.
    Unknown,
    /// The parent's type has no such element.
    Missing,
    /// A single-typed element.
    Element(&'static str, &'static ElementDef),
    /// A choice element `name[x]`.
    Choice(&'static str, &'static ElementDef),
}

/// Looks up the element `name` under `parent`.
pub fn child_def(parent: &FhirType<'_>, name: &str) -> ChildDef {
    let Some(owner) = parent.owner else {
        return ChildDef::Unknown;
    };
    let Some(entry) = INDEX.types.get(owner) else {
        return ChildDef::Unknown;
    };
    let (prefix, dot) = if parent.prefix.is_empty() {
        ("", "")
    } else {
        (parent.prefix, ".")
    };
    if let Some(element) = with_joined(&[prefix, dot, name], |key| entry.elements.get(key)) {
        return ChildDef::Element(owner, element);
    }
    if let Some(element) = with_joined(&[prefix, dot, name, "[x]"], |key| entry.elements.get(key)) {
        return ChildDef::Choice(owner, element);
    }
    ChildDef::Missing
}

/// The type of a child of element `element` (in type `owner`) whose type code is `code`.
pub fn element_type<'a>(
    owner: &'static str,
    element: &'static ElementDef,
    code: &'static str,
    value: &'a Value,
) -> FhirType<'a> {
    if let Some(reference) = &element.content_reference {
        // `#Type.path` (as in the StructureDefinitions) or `path` within the same type.
        let reference = reference.trim_start_matches('#');
        let (type_name, path) = match reference.split_once('.') {
            Some((first, rest)) if INDEX.types.contains_key(first) => (first, rest),
            _ => (owner, reference),
        };
        if let Some((type_key, entry)) = INDEX.types.get_key_value(type_name)
            && let Some((path_key, _)) = entry.elements.get_key_value(path)
        {
            return FhirType {
                name: "BackboneElement",
                owner: Some(type_key),
                prefix: path_key,
            };
        }
        return FhirType::UNKNOWN;
    }
    match code {
        "BackboneElement" | "Element" => FhirType {
            name: code,
            owner: Some(owner),
            prefix: element.path.as_str(),
        },
        "Resource" | "DomainResource" => resource_type(value),
        _ if code.starts_with("http://hl7.org/fhirpath/System.") => {
            let name = if element.path.ends_with("url") {
                "uri"
            } else if element.path == "id" && is_resource(owner) {
                "id"
            } else {
                "string"
            };
            FhirType::named(name).unwrap_or(FhirType::UNKNOWN)
        }
        _ => FhirType::named(code).unwrap_or(FhirType::UNKNOWN),
    }
}

/// For a choice element, the type whose capitalised code ends the JSON key (`valueQuantity` → `Quantity`).
pub fn choice_type(element: &'static ElementDef, suffix: &str) -> Option<&'static str> {
    element.types.iter().map(String::as_str).find(|code| {
        let mut chars = code.chars();
        match chars.next() {
            Some(first) => {
                suffix.len() == code.len()
                    && suffix.starts_with(first.to_ascii_uppercase())
                    && suffix[first.len_utf8()..] == *chars.as_str()
            }
            None => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation() {
        assert!(derives_from("Age", "Quantity"));
        assert!(derives_from("code", "string"));
        assert!(derives_from("Patient", "DomainResource"));
        assert!(derives_from("Patient", "Resource"));
        assert!(!derives_from("string", "code"));
    }

    #[test]
    fn content_references_resolve_within_the_type() {
        let questionnaire = FhirType::named("Questionnaire").unwrap();
        let ChildDef::Element(owner, item) = child_def(&questionnaire, "item") else {
            panic!("Questionnaire.item");
        };
        let item_type = element_type(owner, item, "BackboneElement", &serde_json::Value::Null);
        let ChildDef::Element(owner, nested) = child_def(&item_type, "item") else {
            panic!("Questionnaire.item.item");
        };
        let nested_type = element_type(owner, nested, "", &serde_json::Value::Null);
        assert_eq!(nested_type.name, "BackboneElement");
        assert!(matches!(
            child_def(&nested_type, "linkId"),
            ChildDef::Element(..)
        ));
    }

    #[test]
    fn types_of_paths() {
        assert_eq!(
            FhirType::of_path("Patient.contact").map(|t| t.name),
            Some("BackboneElement")
        );
        assert_eq!(
            FhirType::of_path("Patient.contact.name").map(|t| t.name),
            Some("HumanName")
        );
        assert_eq!(
            FhirType::of_path("Patient.birthDate").map(|t| t.name),
            Some("date")
        );
        assert_eq!(
            FhirType::of_path("Questionnaire.item.item.linkId").map(|t| t.name),
            Some("string")
        );
        assert!(FhirType::of_path("Observation.value").is_none());
        assert!(FhirType::of_path("Patient.nothing").is_none());
        assert!(FhirType::of_path("Nothing").is_none());
    }

    #[test]
    fn choice_types() {
        let FhirType { .. } = FhirType::named("Observation").unwrap();
        let parent = FhirType::named("Observation").unwrap();
        let ChildDef::Choice(_, element) = child_def(&parent, "value") else {
            panic!("value[x] is a choice");
        };
        assert_eq!(choice_type(element, "Quantity"), Some("Quantity"));
        assert_eq!(choice_type(element, "DateTime"), Some("dateTime"));
        assert_eq!(choice_type(element, "Foo"), None);
    }
}
