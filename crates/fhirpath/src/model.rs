//! FHIR types of JSON nodes, resolved from the compiled-in R4 definitions.
//!
//! The definitions are indexed once: every type gets a number, and every place whose
//! children are defined (a type, or a backbone element within a type) gets a table of its
//! child elements by name with their types already resolved, so navigating a node costs one
//! small hash lookup and no string building.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use fhir::definitions::{ElementDef, Kind, TypeDef};
use serde_json::Value;

/// `scope` of a type that is not in the definitions.
const NONE: u32 = u32::MAX;
/// `ty` of a type that is not in the definitions.
const NO_TYPE: TypeId = TypeId::MAX;

/// The FHIR type of a node, and where its children are defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FhirType<'a> {
    /// The type name as `type()` and `is` see it: `Patient`, `HumanName`, `BackboneElement`, `string`.
    pub name: &'a str,
    /// The type's number in the index; `NO_TYPE` when unknown.
    ty: TypeId,
    /// What kind of type it is, kept here so type tests need not look it up.
    kind: TypeKind,
    /// The number of the table of this node's children; `NONE` when unknown.
    scope: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TypeKind {
    Unknown,
    Resource,
    Primitive,
    Other,
}

impl TypeKind {
    fn of(def: &TypeDef) -> TypeKind {
        match def.kind {
            Kind::Resource => TypeKind::Resource,
            Kind::PrimitiveType => TypeKind::Primitive,
            Kind::ComplexType | Kind::Logical => TypeKind::Other,
        }
    }
}

impl<'a> FhirType<'a> {
    /// A node whose type is not known (JSON not described by the definitions).
    pub const UNKNOWN: FhirType<'static> = FhirType {
        name: "",
        ty: NO_TYPE,
        kind: TypeKind::Unknown,
        scope: NONE,
    };

    /// Whether the type is known from the definitions.
    pub fn is_known(&self) -> bool {
        self.scope != NONE
    }

    /// The type of the element at `path`, such as `Patient.contact` (a backbone element) or
    /// `Observation.code`; `None` for unknown paths and for choice elements (`Observation.value`),
    /// whose type depends on the JSON key.
    pub fn of_path(path: &str) -> Option<FhirType<'static>> {
        let mut segments = path.split('.');
        let mut current = FhirType::named(segments.next()?)?;
        for segment in segments {
            current = match child(&current, segment) {
                Lookup::Found(Child::Element { ty, .. }) => ty.of(&crate::value::NULL),
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
        type_id(name).map(|id| INDEX.types[id as usize].fhir_type)
    }

    /// The type's number in the index, if it is known.
    pub(crate) fn id(&self) -> Option<TypeId> {
        (self.ty != NO_TYPE).then_some(self.ty)
    }

    /// Whether a value of this type is a `target` (the same or derived from it); `target_id`
    /// is the number of the type named `target`.
    pub(crate) fn derives_from(&self, target: &str, target_id: Option<TypeId>) -> bool {
        match (self.id(), target_id) {
            (Some(ty), Some(target)) => derives_from_id(ty, target),
            // Unknown types have no known base; a known type only derives from known types.
            (None, _) => self.name == target,
            (Some(_), None) => false,
        }
    }

    /// Whether this is a known type that is the type `target` or derives from it.
    pub(crate) fn derives_from_id(&self, target: TypeId) -> bool {
        self.id().is_some_and(|ty| derives_from_id(ty, target))
    }

    /// Whether this is a primitive type (`string`, `boolean`, …).
    pub(crate) fn is_primitive(&self) -> bool {
        self.kind == TypeKind::Primitive
    }

    /// Whether this is a resource type.
    pub(crate) fn is_resource(&self) -> bool {
        self.kind == TypeKind::Resource
    }
}

/// A type's number in the index.
pub(crate) type TypeId = u16;

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

/// Hashes a [`Symbol`] by one multiplication.
#[derive(Default)]
struct SymbolHasher(u64);

impl Hasher for SymbolHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 << 8 | u64::from(*byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The number of an element name (`name`, `value` for `value[x]`), the same in every type.
pub(crate) type Symbol = u32;

type SymbolMap<V> = HashMap<Symbol, V, BuildHasherDefault<SymbolHasher>>;

/// How the type of a child follows from its element definition.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ElementType {
    /// Always this type.
    Fixed(FhirType<'static>),
    /// A resource (`Resource`/`DomainResource`): the type is its `resourceType`.
    Resource,
}

impl ElementType {
    /// The type of the child `value`.
    pub(crate) fn of<'a>(self, value: &'a Value) -> FhirType<'a> {
        match self {
            ElementType::Fixed(fhir_type) => fhir_type,
            ElementType::Resource => resource_type(value),
        }
    }
}

/// One type a choice element may take: `Quantity` for `valueQuantity`.
#[derive(Debug)]
pub(crate) struct ChoiceOption {
    /// The type code, capitalised, as it ends the JSON key.
    pub suffix: Box<str>,
    pub ty: ElementType,
}

/// A child element of a type or backbone element.
#[derive(Debug)]
pub(crate) enum Child {
    /// A single-typed element.
    Element { ty: ElementType },
    /// A choice element `name[x]`.
    Choice { options: Box<[ChoiceOption]> },
}

impl Child {
    /// For a choice element, the type of the option whose capitalised code is `suffix`.
    pub(crate) fn choice(&self, suffix: &str) -> Option<ElementType> {
        match self {
            Child::Choice { options, .. } => options
                .iter()
                .find(|option| &*option.suffix == suffix)
                .map(|option| option.ty),
            Child::Element { .. } => None,
        }
    }
}

/// What the definitions say about the children named `name` of a node.
pub(crate) enum Lookup {
    /// No definitions for the parent: navigate the JSON blindly.
    Unknown,
    /// The parent's type has no such element.
    Missing,
    Found(&'static Child),
}

struct TypeEntry {
    base: Option<TypeId>,
    fhir_type: FhirType<'static>,
}

struct Index {
    ids: FastMap<&'static str, TypeId>,
    types: Vec<TypeEntry>,
    /// Every element name.
    symbols: FastMap<&'static str, Symbol>,
    /// Children by name, per type and backbone element.
    scopes: Vec<SymbolMap<Child>>,
}

static INDEX: LazyLock<Index> = LazyLock::new(build_index);

fn build_index() -> Index {
    let defs = fhir::definitions();
    // The types reachable from the resources.
    let mut names: Vec<&'static str> = Vec::new();
    let mut ids: FastMap<&'static str, TypeId> = FastMap::default();
    let mut work: Vec<&'static str> = defs.resource_types().iter().map(String::as_str).collect();
    work.extend(["Resource", "DomainResource", "Element", "BackboneElement"]);
    while let Some(name) = work.pop() {
        if ids.contains_key(name) {
            continue;
        }
        let Some(def) = defs.type_def(name) else {
            continue;
        };
        for element in &def.elements {
            for code in &element.types {
                if !code.starts_with("http://") && !ids.contains_key(code.as_str()) {
                    work.push(code.as_str());
                }
            }
        }
        if let Some(base) = &def.base {
            work.push(base.as_str());
        }
        let Ok(id) = TypeId::try_from(names.len()) else {
            break;
        };
        ids.insert(name, id);
        names.push(name);
    }
    let mut builder = Builder {
        ids: &ids,
        scope_ids: HashMap::new(),
        scopes: Vec::new(),
    };
    let mut symbols: FastMap<&'static str, Symbol> = FastMap::default();
    // Each type's own scope has the same number as the type.
    for name in &names {
        builder.scope(name, "");
    }
    let mut types = Vec::with_capacity(names.len());
    for (id, name) in names.iter().enumerate() {
        let def = defs
            .type_def(name)
            .unwrap_or_else(|| unreachable!("indexed above"));
        types.push(TypeEntry {
            base: def.base.as_deref().and_then(|base| ids.get(base).copied()),
            fhir_type: FhirType {
                name,
                ty: ids[name],
                kind: TypeKind::of(def),
                scope: id_of(id),
            },
        });
    }
    for name in &names {
        let def = defs
            .type_def(name)
            .unwrap_or_else(|| unreachable!("indexed above"));
        for element in &def.elements {
            let (parent, last) = element.path.rsplit_once('.').unwrap_or(("", &element.path));
            let scope = builder.scope(name, parent);
            let child = match last.strip_suffix("[x]") {
                Some(base) => {
                    let options = element
                        .types
                        .iter()
                        .map(|code| ChoiceOption {
                            suffix: capitalised(code).into(),
                            ty: builder.element_type(name, element, code),
                        })
                        .collect();
                    (base, Child::Choice { options })
                }
                None => {
                    let code = element.types.first().map_or("", String::as_str);
                    let ty = builder.element_type(name, element, code);
                    (last, Child::Element { ty })
                }
            };
            let next = id_of(symbols.len());
            let symbol = *symbols.entry(child.0).or_insert(next);
            builder.scopes[scope as usize].insert(symbol, child.1);
        }
    }
    Index {
        scopes: builder.scopes,
        symbols,
        ids,
        types,
    }
}

fn id_of(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(NONE)
}

fn capitalised(code: &str) -> String {
    let mut chars = code.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

struct Builder<'i> {
    ids: &'i FastMap<&'static str, TypeId>,
    scope_ids: HashMap<(&'static str, &'static str), u32>,
    scopes: Vec<SymbolMap<Child>>,
}

impl Builder<'_> {
    /// The number of the children table of `path` within type `owner` (`""` for the type).
    fn scope(&mut self, owner: &'static str, path: &'static str) -> u32 {
        *self.scope_ids.entry((owner, path)).or_insert_with(|| {
            self.scopes.push(SymbolMap::default());
            id_of(self.scopes.len() - 1)
        })
    }

    fn named(&self, name: &str) -> FhirType<'static> {
        match self.ids.get_key_value(name) {
            Some((key, id)) => FhirType {
                name: key,
                ty: *id,
                kind: fhir::definitions()
                    .type_def(key)
                    .map_or(TypeKind::Unknown, TypeKind::of),
                scope: u32::from(*id),
            },
            None => FhirType::UNKNOWN,
        }
    }

    /// The type of a child of `element` (in type `owner`) whose type code is `code`.
    fn element_type(
        &mut self,
        owner: &'static str,
        element: &'static ElementDef,
        code: &'static str,
    ) -> ElementType {
        let backbone = |builder: &mut Self, owner, path| {
            let mut fhir_type = builder.named("BackboneElement");
            fhir_type.scope = builder.scope(owner, path);
            ElementType::Fixed(fhir_type)
        };
        if let Some(reference) = &element.content_reference {
            // `#Type.path` (as in the StructureDefinitions) or `path` within the same type.
            let reference = reference.trim_start_matches('#');
            let (type_name, path) = match reference.split_once('.') {
                Some((first, rest)) if self.ids.contains_key(first) => (first, rest),
                _ => (owner, reference),
            };
            let defs = fhir::definitions();
            if let Some((type_key, _)) = self.ids.get_key_value(type_name)
                && let Some(def) = defs.type_def(type_key)
                && let Some(target) = def.elements.iter().find(|e| e.path == path)
            {
                return backbone(self, type_key, target.path.as_str());
            }
            return ElementType::Fixed(FhirType::UNKNOWN);
        }
        match code {
            "BackboneElement" | "Element" => ElementType::Fixed(FhirType {
                name: code,
                scope: self.scope(owner, element.path.as_str()),
                ..self.named(code)
            }),
            "Resource" | "DomainResource" => ElementType::Resource,
            _ if code.starts_with("http://hl7.org/fhirpath/System.") => {
                let name = if element.path.ends_with("url") {
                    "uri"
                } else if element.path == "id"
                    && fhir::definitions()
                        .type_def(owner)
                        .is_some_and(|def| def.kind == Kind::Resource)
                {
                    "id"
                } else {
                    "string"
                };
                ElementType::Fixed(self.named(name))
            }
            _ => ElementType::Fixed(self.named(code)),
        }
    }
}

/// The number of the type named `name`.
pub(crate) fn type_id(name: &str) -> Option<TypeId> {
    INDEX.ids.get(name).copied()
}

/// Whether type `ty` is `target` or derives from it.
fn derives_from_id(ty: TypeId, target: TypeId) -> bool {
    let mut current = Some(ty);
    let mut guard = 0;
    while let Some(id) = current {
        if id == target {
            return true;
        }
        guard += 1;
        if guard > 16 {
            break;
        }
        current = INDEX.types[id as usize].base;
    }
    false
}

/// Whether `name` is a FHIR type in the definitions.
pub fn is_fhir_type(name: &str) -> bool {
    INDEX.ids.contains_key(name)
}

/// Whether a value of type `name` is a `target` (the same or derived from it).
pub fn derives_from(name: &str, target: &str) -> bool {
    if name == target {
        return true;
    }
    match (type_id(name), type_id(target)) {
        (Some(ty), Some(target)) => derives_from_id(ty, target),
        _ => false,
    }
}

/// The type of a resource, from its `resourceType`.
pub fn resource_type(value: &Value) -> FhirType<'_> {
    let Value::Object(object) = value else {
        return FhirType::UNKNOWN;
    };
    // `resourceType` usually comes first.
    let resource_type = match object.iter().next() {
        Some((key, value)) if key == "resourceType" => Some(value),
        _ => object.get("resourceType"),
    };
    match resource_type.and_then(Value::as_str) {
        Some(name) => FhirType::named(name).unwrap_or(FhirType {
            name,
            ..FhirType::UNKNOWN
        }),
        None => FhirType::UNKNOWN,
    }
}

/// The number of the element name `name`; `None` if no type has such an element.
pub(crate) fn symbol(name: &str) -> Option<Symbol> {
    INDEX.symbols.get(name).copied()
}

/// Looks up the element `name` under `parent`.
pub(crate) fn child(parent: &FhirType<'_>, name: &str) -> Lookup {
    child_by_symbol(parent, || symbol(name))
}

/// Looks up the element with the name numbered `symbol` under `parent`.
pub(crate) fn child_by_symbol(
    parent: &FhirType<'_>,
    symbol: impl FnOnce() -> Option<Symbol>,
) -> Lookup {
    match INDEX.scopes.get(parent.scope as usize) {
        None => Lookup::Unknown,
        Some(children) => match symbol().and_then(|symbol| children.get(&symbol)) {
            Some(child) => Lookup::Found(child),
            None => Lookup::Missing,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn element_type(parent: &FhirType<'_>, name: &str) -> FhirType<'static> {
        match child(parent, name) {
            Lookup::Found(Child::Element { ty, .. }) => ty.of(&crate::value::NULL),
            _ => panic!("{} has no element {name}", parent.name),
        }
    }

    #[test]
    fn derivation() {
        assert!(derives_from("Age", "Quantity"));
        assert!(derives_from("code", "string"));
        assert!(derives_from("Patient", "DomainResource"));
        assert!(derives_from("Patient", "Resource"));
        assert!(!derives_from("string", "code"));
        assert!(derives_from("NoSuchType", "NoSuchType"));
        assert!(!derives_from("NoSuchType", "Resource"));
        let derives = |t: &FhirType<'_>, target: &str| t.derives_from(target, type_id(target));
        let patient = FhirType::named("Patient").unwrap();
        assert!(derives(&patient, "DomainResource"));
        assert!(!derives(&patient, "Observation"));
        assert!(!derives(&patient, "NoSuchType"));
        assert!(patient.is_resource() && !patient.is_primitive());
        let foo = serde_json::json!({"resourceType": "Foo"});
        let unknown = resource_type(&foo);
        assert!(derives(&unknown, "Foo"));
        assert!(!derives(&unknown, "Resource"));
    }

    #[test]
    fn content_references_resolve_within_the_type() {
        let questionnaire = FhirType::named("Questionnaire").unwrap();
        let item_type = element_type(&questionnaire, "item");
        let nested_type = element_type(&item_type, "item");
        assert_eq!(nested_type.name, "BackboneElement");
        assert_eq!(nested_type, item_type);
        assert!(matches!(child(&nested_type, "linkId"), Lookup::Found(..)));
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
        assert_eq!(FhirType::of_path("Patient.id").map(|t| t.name), Some("id"));
        assert_eq!(
            FhirType::of_path("Extension.url").map(|t| t.name),
            Some("uri")
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
        let parent = FhirType::named("Observation").unwrap();
        let Lookup::Found(value) = child(&parent, "value") else {
            panic!("value[x] is a choice");
        };
        let name = |t: Option<ElementType>| t.map(|t| t.of(&crate::value::NULL).name);
        assert_eq!(name(value.choice("Quantity")), Some("Quantity"));
        assert_eq!(name(value.choice("DateTime")), Some("dateTime"));
        assert_eq!(name(value.choice("Foo")), None);
        assert!(matches!(child(&parent, "valueQuantity"), Lookup::Missing));
        assert!(matches!(
            child(&FhirType::UNKNOWN, "value"),
            Lookup::Unknown
        ));
    }
}
