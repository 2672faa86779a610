//! The definitions rearranged for validation, built once on first use: for every type, a tree
//! of nodes (the type itself, each BackboneElement) whose JSON property names, choice
//! variants (`valueQuantity`) and primitive-extension siblings (`_birthDate`) are all keys of
//! one hash map.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use fhir::definitions::{Constraint, ElementDef, Kind, TypeDef};

use crate::primitive::Primitive;

/// FNV-1a: the keys are short property names, where SipHash's setup cost dominates.
#[derive(Default)]
pub(crate) struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

pub(crate) type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FnvHasher>>;
pub(crate) type FastSet<K> = HashSet<K, BuildHasherDefault<FnvHasher>>;

/// What one element's value is validated as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ElemType {
    Primitive(Primitive),
    /// A complex data type, by index into `Model::types`.
    Complex(usize),
    /// A BackboneElement (or inline Element) with its own children: a node of the same type.
    Node(usize),
    /// `Resource`: a contained resource, `Bundle.entry.resource`, `Parameters.parameter.resource`.
    Resource,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strength {
    Required,
    Extensible,
    Preferred,
}

pub(crate) struct Elem {
    pub def: &'static ElementDef,
    /// The JSON name, without `[x]`.
    pub name: &'static str,
    pub is_choice: bool,
    /// `max` is `*` or above 1: the JSON value must be an array.
    pub repeats: bool,
    /// `None` for `*`.
    pub max: Option<u32>,
    pub types: Vec<ElemType>,
    /// The type names, parallel to `types` (for choice names and messages).
    pub type_names: Vec<&'static str>,
    /// The JSON property names, parallel to `types` (`valueQuantity`, ...; just `name` if not a choice).
    pub keys: Vec<Box<str>>,
    /// `_` + each key: the primitive-extension siblings.
    pub underscore_keys: Vec<Box<str>>,
    pub binding: Option<(Strength, usize)>,
}

#[derive(Clone, Copy)]
pub(crate) struct Prop {
    pub elem: usize,
    pub type_idx: usize,
    /// The `_name` sibling of a primitive.
    pub underscore: bool,
}

#[derive(Default)]
pub(crate) struct Node {
    pub props: FastMap<Box<str>, Prop>,
    pub elems: Vec<Elem>,
    /// Indices into `elems` of the elements with `min >= 1`.
    pub required: Vec<usize>,
}

pub(crate) struct TypeModel {
    pub name: &'static str,
    pub def: &'static TypeDef,
    pub nodes: Vec<Node>,
    /// Type-level constraints (for invariants).
    pub constraints: Vec<&'static Constraint>,
}

/// An expanded value set, for membership tests.
pub(crate) struct ValueSetIndex {
    pub url: &'static str,
    pub by_system: FastMap<&'static str, FastSet<&'static str>>,
    pub all_codes: FastSet<&'static str>,
}

impl ValueSetIndex {
    pub fn contains(&self, system: Option<&str>, code: &str) -> bool {
        match system {
            Some(system) => self
                .by_system
                .get(system)
                .is_some_and(|codes| codes.contains(code)),
            None => self.all_codes.contains(code),
        }
    }
}

pub(crate) struct Model {
    pub types: Vec<TypeModel>,
    /// `Element`: what the `_name` sibling of a primitive is validated as.
    pub element_type: usize,
    pub by_name: FastMap<&'static str, usize>,
    pub value_sets: Vec<ValueSetIndex>,
    /// Value set url (no version) to its index in `value_sets`.
    pub value_set_by_url: FastMap<&'static str, usize>,
}

impl Model {
    pub fn type_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// An expanded value set by url; a `|version` suffix is ignored.
    pub fn value_set(&self, url: &str) -> Option<usize> {
        let url = url.split_once('|').map_or(url, |(url, _)| url);
        self.value_set_by_url.get(url).copied()
    }

    /// A concrete resource type by name.
    pub fn resource_type(&self, name: &str) -> Option<usize> {
        let idx = self.type_index(name)?;
        let def = self.types[idx].def;
        (def.kind == Kind::Resource && !def.is_abstract).then_some(idx)
    }
}

pub(crate) static MODEL: LazyLock<Model> = LazyLock::new(build);

fn build() -> Model {
    let defs = fhir::definitions();
    let mut by_name = FastMap::default();
    let mut names = Vec::new();
    for (idx, (name, _)) in defs.types().enumerate() {
        by_name.insert(name, idx);
        names.push(name);
    }
    let mut value_sets = Vec::new();
    let mut vs_index: FastMap<&'static str, usize> = FastMap::default();
    for (url, vs) in defs.value_sets() {
        let Some(codes) = &vs.codes else { continue };
        let mut index = ValueSetIndex {
            url,
            by_system: FastMap::default(),
            all_codes: FastSet::default(),
        };
        for (system, list) in codes {
            let set = index.by_system.entry(system.as_str()).or_default();
            for code in list {
                set.insert(code.as_str());
                index.all_codes.insert(code.as_str());
            }
        }
        vs_index.insert(url, value_sets.len());
        value_sets.push(index);
    }
    let types = defs
        .types()
        .map(|(name, def)| build_type(name, def, &by_name, &vs_index))
        .collect();
    let element_type = by_name.get("Element").copied().unwrap_or(0);
    Model {
        types,
        element_type,
        by_name,
        value_sets,
        value_set_by_url: vs_index,
    }
}

fn build_type(
    name: &'static str,
    def: &'static TypeDef,
    by_name: &FastMap<&'static str, usize>,
    vs_index: &FastMap<&'static str, usize>,
) -> TypeModel {
    // Node ids: the type itself is 0, then every element path that has children.
    let mut node_of_path: FastMap<&str, usize> = FastMap::default();
    node_of_path.insert("", 0);
    for el in &def.elements {
        if let Some((parent, _)) = el.path.rsplit_once('.') {
            let next = node_of_path.len();
            node_of_path.entry(parent).or_insert(next);
        }
    }
    let mut nodes: Vec<Node> = (0..node_of_path.len()).map(|_| Node::default()).collect();
    let is_resource = def.kind == Kind::Resource;
    for el in &def.elements {
        let (parent, last) = el.path.rsplit_once('.').unwrap_or(("", el.path.as_str()));
        let Some(&node_idx) = node_of_path.get(parent) else {
            continue;
        };
        let children = node_of_path.get(el.path.as_str()).copied().or_else(|| {
            el.content_reference
                .as_deref()
                .and_then(|r| node_of_path.get(r).copied())
        });
        let (json_name, is_choice) = match last.strip_suffix("[x]") {
            Some(base) => (base, true),
            None => (last, false),
        };
        let mut types = Vec::new();
        let mut type_names = Vec::new();
        for code in &el.types {
            let ty = if let Some(node) = children {
                ElemType::Node(node)
            } else if let Some(prim) = system_primitive(code, el) {
                // The resource id is an `id`, though R4 declares it as System.String.
                if is_resource && el.path == "id" {
                    ElemType::Primitive(Primitive::Id)
                } else {
                    prim
                }
            } else if let Some(prim) = Primitive::from_name(code) {
                ElemType::Primitive(prim)
            } else if code == "Resource" {
                ElemType::Resource
            } else if let Some(&idx) = by_name.get(code.as_str()) {
                ElemType::Complex(idx)
            } else {
                continue;
            };
            types.push(ty);
            type_names.push(code.as_str());
        }
        if el.content_reference.is_some()
            && types.is_empty()
            && let Some(node) = children
        {
            types.push(ElemType::Node(node));
            type_names.push("BackboneElement");
        }
        let binding = el.binding.as_ref().and_then(|b| {
            let strength = match b.strength.as_str() {
                "required" => Strength::Required,
                "extensible" => Strength::Extensible,
                "preferred" => Strength::Preferred,
                _ => return None,
            };
            let url = b
                .value_set
                .split_once('|')
                .map_or(b.value_set.as_str(), |(u, _)| u);
            vs_index.get(url).map(|&idx| (strength, idx))
        });
        let max = el.max.parse::<u32>().ok();
        let keys: Vec<Box<str>> = type_names
            .iter()
            .map(|type_name| {
                if !is_choice {
                    return json_name.into();
                }
                let mut key = String::with_capacity(json_name.len() + type_name.len());
                key.push_str(json_name);
                let mut chars = type_name.chars();
                if let Some(first) = chars.next() {
                    key.extend(first.to_uppercase());
                    key.push_str(chars.as_str());
                }
                key.into_boxed_str()
            })
            .collect();
        let elem = Elem {
            def: el,
            name: json_name,
            keys: keys.clone(),
            underscore_keys: keys
                .iter()
                .map(|k| format!("_{k}").into_boxed_str())
                .collect(),
            is_choice,
            repeats: max.is_none_or(|m| m > 1),
            max,
            types,
            type_names,
            binding,
        };
        let node = &mut nodes[node_idx];
        let elem_idx = node.elems.len();
        for (type_idx, (ty, key)) in elem.types.iter().zip(&elem.keys).enumerate() {
            if matches!(ty, ElemType::Primitive(_)) {
                node.props.insert(
                    elem.underscore_keys[type_idx].clone(),
                    Prop {
                        elem: elem_idx,
                        type_idx,
                        underscore: true,
                    },
                );
            }
            node.props.insert(
                key.clone(),
                Prop {
                    elem: elem_idx,
                    type_idx,
                    underscore: false,
                },
            );
        }
        if el.min >= 1 {
            node.required.push(elem_idx);
        }
        node.elems.push(elem);
    }
    // Resources carry DomainResource's constraints in their own snapshot root already.
    let constraints: Vec<&'static Constraint> = def.constraints.iter().collect();
    TypeModel {
        name,
        def,
        nodes,
        constraints,
    }
}

/// `http://hl7.org/fhirpath/System.String` and friends: the FHIR type from `fhirType`.
fn system_primitive(code: &str, el: &ElementDef) -> Option<ElemType> {
    let system = code.strip_prefix("http://hl7.org/fhirpath/System.")?;
    let prim = match el.fhir_type.as_deref().and_then(Primitive::from_name) {
        Some(prim) => prim,
        None => match system {
            "Boolean" => Primitive::Boolean,
            "Integer" => Primitive::Integer,
            "Decimal" => Primitive::Decimal,
            "Date" => Primitive::Date,
            "DateTime" => Primitive::DateTime,
            "Time" => Primitive::Time,
            _ => Primitive::String,
        },
    };
    Some(ElemType::Primitive(prim))
}
