//! Where a JSON node sits in the FHIR R4 definitions: its type, and what its children are.

use fhir::definitions::{ElementDef, Kind, TypeDef};
use serde_json::Value;

/// The type whose elements describe a node's children, and the node's path within it
/// (`""` for the type itself, `contact` for the backbone element `Patient.contact`).
#[derive(Clone, Debug)]
pub(crate) struct Position {
    owner: &'static TypeDef,
    owner_name: String,
    prefix: String,
}

/// What the definitions say about one child name of a node.
pub(crate) struct Child {
    pub element: &'static ElementDef,
    owner: &'static TypeDef,
    owner_name: String,
    /// The element's name without `[x]`: `deceased` for `deceasedBoolean`.
    pub base_name: String,
    /// The type code: for a choice named with its type (`deceasedBoolean`) that type,
    /// for a choice named without one (`deceased`) `None`.
    pub type_code: Option<&'static str>,
    /// Whether the element is a choice `name[x]`.
    pub is_choice: bool,
}

impl Position {
    /// The position of a resource or data type named `name`.
    pub(crate) fn of_type(name: &str) -> Option<Position> {
        let owner = fhir::definitions().type_def(name)?;
        Some(Position {
            owner,
            owner_name: name.to_string(),
            prefix: String::new(),
        })
    }

    /// The position of a resource, from its `resourceType`.
    pub(crate) fn of_resource(resource: &Value) -> Option<Position> {
        Position::of_type(resource.get("resourceType")?.as_str()?)
    }

    /// The display name of this position, e.g. `Patient.contact`.
    pub(crate) fn describe(&self) -> String {
        if self.prefix.is_empty() {
            self.owner_name.clone()
        } else {
            format!("{}.{}", self.owner_name, self.prefix)
        }
    }

    fn element(&self, name: &str) -> Option<&'static ElementDef> {
        let owner: &'static TypeDef = self.owner;
        owner.elements.iter().find(|element| {
            if self.prefix.is_empty() {
                element.path == name
            } else {
                element
                    .path
                    .strip_prefix(self.prefix.as_str())
                    .and_then(|rest| rest.strip_prefix('.'))
                    .is_some_and(|rest| rest == name)
            }
        })
    }

    /// The child named `name` (a JSON property name, without a leading `_`).
    pub(crate) fn child(&self, name: &str) -> Option<Child> {
        let child = |element: &'static ElementDef, base_name: &str, type_code, is_choice| Child {
            element,
            owner: self.owner,
            owner_name: self.owner_name.clone(),
            base_name: base_name.to_string(),
            type_code,
            is_choice,
        };
        if let Some(element) = self.element(name) {
            let type_code = match element.types.as_slice() {
                [code] => Some(code.as_str()),
                _ => None,
            };
            return Some(child(element, name, type_code, false));
        }
        if let Some(element) = self.element(&format!("{name}[x]")) {
            return Some(child(element, name, None, true));
        }
        // `valueQuantity`: the choice `value[x]` with the type `Quantity`.
        for (i, c) in name.char_indices().skip(1) {
            if !c.is_ascii_uppercase() {
                continue;
            }
            let (base, suffix) = name.split_at(i);
            if let Some(element) = self.element(&format!("{base}[x]"))
                && let Some(code) = choice_type(element, suffix)
            {
                return Some(child(element, base, Some(code), true));
            }
        }
        None
    }
}

impl Child {
    /// Whether the element may repeat (`max` is not 1).
    pub(crate) fn repeats(&self) -> bool {
        self.element.max != "1" && self.element.max != "0"
    }

    /// The position of a value of this element; `value` is the JSON of it, needed for
    /// elements of type `Resource` (whose type is the value's `resourceType`).
    pub(crate) fn position(&self, value: Option<&Value>) -> Option<Position> {
        if let Some(reference) = &self.element.content_reference {
            let reference = reference.trim_start_matches('#');
            if let Some((type_name, path)) = reference.split_once('.')
                && let Some(position) = Position::of_type(type_name)
            {
                return Some(Position {
                    prefix: path.to_string(),
                    ..position
                });
            }
            return Some(Position {
                owner: self.owner,
                owner_name: self.owner_name.clone(),
                prefix: reference.to_string(),
            });
        }
        match self.type_code? {
            "BackboneElement" | "Element" => Some(Position {
                owner: self.owner,
                owner_name: self.owner_name.clone(),
                prefix: self.element.path.clone(),
            }),
            "Resource" | "DomainResource" => Position::of_resource(value?),
            code if code.starts_with("http://hl7.org/fhirpath/System.") => None,
            code => Position::of_type(code),
        }
    }

    /// Whether values of this element are primitives (`string`, `boolean`, `System.String`).
    pub(crate) fn is_primitive(&self) -> bool {
        self.element.content_reference.is_none()
            && self.type_code.is_some_and(|code| {
                code.starts_with("http://hl7.org/fhirpath/System.")
                    || fhir::definitions()
                        .type_def(code)
                        .is_some_and(|t| t.kind == Kind::PrimitiveType)
            })
    }

    /// The type named by `suffix` (`Quantity`, `DateTime`) if this choice element allows it.
    pub(crate) fn choice_type(&self, suffix: &str) -> Option<&'static str> {
        choice_type(self.element, suffix)
    }
}

/// For a choice element, the type code whose capitalised form is `suffix`.
fn choice_type(element: &'static ElementDef, suffix: &str) -> Option<&'static str> {
    element
        .types
        .iter()
        .map(String::as_str)
        .find(|code| capitalise(code) == suffix)
}

/// `dateTime` → `DateTime`.
pub(crate) fn capitalise(code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_backbone_elements_choices_and_content_references() {
        let Some(patient) = Position::of_type("Patient") else {
            panic!("no Patient");
        };
        let Some(contact) = patient.child("contact") else {
            panic!("no Patient.contact");
        };
        assert!(contact.repeats());
        let Some(contact_position) = contact.position(None) else {
            panic!("no position for Patient.contact");
        };
        assert_eq!(contact_position.describe(), "Patient.contact");
        let name = contact_position.child("name");
        assert!(name.is_some_and(|name| !name.repeats() && name.type_code == Some("HumanName")));

        let deceased = patient.child("deceasedDateTime");
        assert!(deceased.is_some_and(|d| d.is_choice
            && d.base_name == "deceased"
            && d.type_code == Some("dateTime")));
        let deceased = patient.child("deceased");
        assert!(deceased.is_some_and(|d| d.is_choice && d.type_code.is_none()));
        assert!(patient.child("deceasedFoo").is_none());
        assert!(patient.child("nonsense").is_none());

        let Some(parameters) = Position::of_type("Parameters") else {
            panic!("no Parameters");
        };
        let part = parameters
            .child("parameter")
            .and_then(|p| p.position(None))
            .and_then(|p| p.child("part"))
            .and_then(|p| p.position(None));
        assert_eq!(
            part.map(|p| p.describe()),
            Some("Parameters.parameter".into())
        );
    }
}
