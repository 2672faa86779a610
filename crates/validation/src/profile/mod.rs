//! Validation against constraint profiles: StructureDefinitions with `derivation: constraint`
//! on a resource or data type, compiled once ([`Profile::compile`]) into a tree of the
//! elements they constrain, then checked against resources after the base validation.
//!
//! A profile keeps only what tightens the core R4 definition of each element: `min`/`max`,
//! `fixed[x]`, `pattern[x]`, `type` (and reference target types), required and extensible
//! bindings to value sets we can expand, `maxLength`, and element `constraint`s (evaluated
//! through an [`InvariantEvaluator`](crate::InvariantEvaluator) when one is given); plus
//! slicing, with discriminators of type `value`, `pattern`, `type` and `exists`.

mod base;
mod check;
mod compile;

use serde_json::Value;

use crate::model::Strength;

/// A compiled constraint profile; cheap to share between threads.
#[derive(Debug)]
pub struct Profile {
    url: String,
    base_type: String,
    /// The base type is a resource (not a data type).
    on_resource: bool,
    root: Node,
    invariants: Vec<ProfileInvariant>,
}

/// An element `constraint` a profile adds, kept for a FHIRPath evaluator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProfileInvariant {
    /// The element's id, e.g. `Patient.name`.
    pub element: String,
    pub key: String,
    /// `error` or `warning`.
    pub severity: String,
    pub human: String,
    pub expression: String,
}

impl Profile {
    /// Compiles a StructureDefinition resource (JSON); errors say what is unsupported or malformed.
    pub fn compile(structure_definition: &Value) -> Result<Profile, String> {
        compile::compile(structure_definition)
    }

    /// The canonical url of the profile.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The type the profile constrains, e.g. `Patient`.
    pub fn base_type(&self) -> &str {
        &self.base_type
    }

    /// The element constraints (invariants) the profile adds to the core definitions.
    pub fn invariants(&self) -> &[ProfileInvariant] {
        &self.invariants
    }
}

/// How one element appears in JSON under one of its types: `valueQuantity`, `_birthDate`.
#[derive(Debug)]
struct Variant {
    key: String,
    underscore: String,
    /// The type code (`Quantity`, `string`, `Resource`, a `System.*` url).
    type_name: String,
    primitive: bool,
}

/// One element of the profile, with the constraints that tighten its core definition.
#[derive(Debug, Default)]
struct Node {
    /// The element id, e.g. `Observation.component:systolic.code` (for messages).
    id: String,
    /// The path segment, e.g. `value[x]`.
    segment: String,
    /// The JSON name without `[x]`.
    name: String,
    choice: bool,
    repeats: bool,
    variants: Vec<Variant>,
    /// Whether anything in this subtree is checked.
    active: bool,
    /// Tightened cardinality; on a slice, the slice's own cardinality.
    min: Option<u32>,
    max: Option<u32>,
    fixed: Option<Value>,
    pattern: Option<Value>,
    types: Option<Vec<String>>,
    targets: Option<Vec<String>>,
    /// The extension definition (`type.profile`) of an extension element or slice.
    extension_url: Option<String>,
    binding: Option<(Strength, usize)>,
    max_length: Option<u64>,
    /// Indices into `Profile::invariants`.
    invariants: Vec<usize>,
    children: Vec<Node>,
    slicing: Option<Slicing>,
    slices: Vec<Slice>,
}

#[derive(Debug)]
struct Slicing {
    discriminators: Vec<Discriminator>,
    rules: Rules,
    ordered: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rules {
    Closed,
    Open,
    OpenAtEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DiscriminatorKind {
    Value,
    Pattern,
    Type,
    Exists,
}

#[derive(Debug)]
struct Discriminator {
    kind: DiscriminatorKind,
    /// The path as written, for messages.
    text: String,
    /// Empty for `$this`.
    steps: Vec<Step>,
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Child(String),
    OfType(String),
    /// `extension('url')`.
    Extension(String),
}

#[derive(Debug)]
struct Slice {
    name: String,
    node: Node,
    /// What each discriminator must find, parallel to `Slicing::discriminators`.
    expected: Vec<Expected>,
}

#[derive(Debug)]
enum Expected {
    Fixed(Value),
    Pattern(Value),
    ValueSet(usize),
    Types(Vec<String>),
    Exists(bool),
}
