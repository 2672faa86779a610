//! Validates FHIR R4 JSON resources against the base StructureDefinitions and the expanded
//! required value sets, and returns every issue found, not just the first.
//!
//! Checks, with the issue code each raises:
//! - `structure`: unknown resource type or element (choice variants such as `valueQuantity`
//!   must name an allowed type; `_name` siblings only exist for primitives), JSON shape
//!   (arrays exactly for repeating elements, objects for complex types, the JSON kind of each
//!   primitive, no empty objects or arrays, no `null` except aligned nulls in primitive arrays),
//!   more occurrences than `max`, more than one variant of a choice, and the type named by a
//!   reference not among the element's target types;
//! - `required`: an element with `min >= 1` is absent;
//! - `value`: a primitive that breaks its lexical rules (regex, range, calendar, length),
//!   and a malformed reference;
//! - `code-invalid`: a code not in the value set of a required binding (an error) or of an
//!   extensible one (a warning); value sets that cannot be expanded are skipped;
//! - `invalid`: rules stated in the specification's text: `Bundle.entry.fullUrl` is absolute,
//!   a Bundle link relation occurs once, searchset matches have ids and outcomes are
//!   OperationOutcomes, `Coding.system` is an absolute code system url (not a ValueSet's);
//!   a stated `Attachment.size` that does not match its `data` is a `value` error;
//! - `invariant`: `ext-1`, `dom-2` and `dom-4`, checked natively; every other constraint only
//!   through an [`InvariantEvaluator`] given to [`validate_with`].
//!
//! A malformed `urn:uuid:`/`urn:oid:` reference is only a warning, as the reference validator
//! treats such references as opaque strings.
//!
//! Expressions are FHIRPath with indices, e.g. `Patient.name[0].given[1]`; a choice element is
//! `Observation.value.ofType(Quantity)`; a nested resource continues the path of the element
//! that holds it: `Bundle.entry[0].resource.id`.
//!
//! Constraint profiles (StructureDefinitions with `derivation: constraint`) are compiled once
//! with [`Profile::compile`] and checked by [`validate_against`] after the base validation;
//! their issues name the profile's url (and the slice) in the diagnostics: `structure` for
//! cardinality, type and slicing, `value` for `fixed[x]`/`pattern[x]`/`maxLength`,
//! `code-invalid` for bindings, `invariant` for the profile's constraints.
//!
//! This crate knows nothing about storage or HTTP.

mod invariants;
mod model;
mod primitive;
mod profile;
mod reference;
mod rules;

use std::fmt::Write as _;

use fhir::definitions::Constraint;
use fhir::{IssueType, Severity};
use serde_json::{Map, Value, json};

use model::{Elem, ElemType, MODEL, Model, Strength, TypeModel, ValueSetIndex};
use primitive::Primitive;
use reference::Target;

pub use invariants::{DefinitionsTerminology, FhirPathInvariants, Resolving, uses_resolve};
pub use profile::{Profile, ProfileInvariant};

/// One problem found in a resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    /// Where: a FHIRPath expression with indices, e.g. `Patient.name[0].given[1]`.
    pub expression: String,
    pub diagnostics: String,
}

/// Evaluates FHIRPath invariants (the `constraints` of the definitions).
pub trait InvariantEvaluator {
    /// Evaluates `expression` with `context` as its focus and `resource` as `%resource`;
    /// `Ok(true)` when the invariant holds, `Err` when it cannot be evaluated.
    fn check(&self, expression: &str, context: &Value, resource: &Value) -> Result<bool, String>;

    /// [`check`](InvariantEvaluator::check), told the context's FHIR type (`HumanName`,
    /// or a path such as `Patient.contact` for a backbone element) when it is known.
    fn check_typed(
        &self,
        expression: &str,
        context: &Value,
        context_type: Option<&str>,
        resource: &Value,
    ) -> Result<bool, String> {
        let _ = context_type;
        self.check(expression, context, resource)
    }
}

impl Issue {
    /// This issue as an `OperationOutcome.issue`.
    pub fn to_json(&self) -> Value {
        json!({
            "severity": self.severity.code(),
            "code": self.code.code(),
            "diagnostics": self.diagnostics,
            "expression": [self.expression],
        })
    }
}

/// An OperationOutcome listing `issues`; one `information` issue "All OK" when there are none.
pub fn operation_outcome(issues: &[Issue]) -> Value {
    let list: Vec<Value> = if issues.is_empty() {
        vec![json!({"severity": "information", "code": "informational", "diagnostics": "All OK"})]
    } else {
        issues.iter().map(Issue::to_json).collect()
    };
    json!({"resourceType": "OperationOutcome", "issue": list})
}

/// Validates one resource; returns every issue (empty when valid).
pub fn validate(resource: &Value) -> Vec<Issue> {
    validate_with(resource, Some(&*invariants::FHIRPATH))
}

/// Validates one resource, evaluating the definitions' invariants with `evaluator` if given.
///
/// An invariant that fails gives an issue with the constraint's severity; one that cannot be
/// evaluated gives an `information`/`processing` issue.
pub fn validate_with(resource: &Value, evaluator: Option<&dyn InvariantEvaluator>) -> Vec<Issue> {
    let mut validator = Validator {
        model: &MODEL,
        issues: Vec::new(),
        path: String::with_capacity(128),
        evaluator,
        depth: 0,
    };
    validator.resource(resource, None);
    validator.issues
}

/// Validates one resource against the base definitions and additionally against each profile.
///
/// A profile's issues name it (its url) in their diagnostics; a profile on another resource type
/// gives one `structure` error, a profile on a data type one `not-supported` error.
pub fn validate_against(resource: &Value, profiles: &[&Profile]) -> Vec<Issue> {
    validate_against_with(resource, profiles, Some(&*invariants::FHIRPATH))
}

/// [`validate_against`], evaluating the invariants of the definitions and of the profiles with
/// `evaluator` if given.
pub fn validate_against_with(
    resource: &Value,
    profiles: &[&Profile],
    evaluator: Option<&dyn InvariantEvaluator>,
) -> Vec<Issue> {
    let mut issues = validate_with(resource, evaluator);
    for profile in profiles {
        profile.check(resource, evaluator, &mut issues);
    }
    issues
}

/// Invariants R4 marks as best practice, not conformance (`dom-6`: a resource should have
/// a narrative); as in the HL7 validator's default, they are not reported.
///
/// Also skipped: `que-7` (`operator = 'exists' implies (answer is Boolean)`), which under
/// FHIRPath's rules compares a FHIR `boolean` with `System.Boolean` and so fails on every
/// correct use (the published `Questionnaire-bb` example among them); the R4 definition is
/// at fault, not the data.
const SKIPPED_INVARIANTS: [&str; 2] = ["dom-6", "que-7"];

/// Invariants checked natively (or, for `ele-1`, by the JSON shape rules); an evaluator skips them.
pub(crate) const NATIVE_INVARIANTS: [&str; 5] = ["ele-1", "ext-1", "dom-2", "dom-3", "dom-4"];

const DOM_2: &str = "dom-2: If the resource is contained in another resource, it SHALL NOT contain nested Resources";
const DOM_3: &str = "dom-3: If the resource is contained in another resource, it SHALL be referred to from elsewhere in the resource or SHALL refer to the containing resource";
const DOM_4: &str = "dom-4: If a resource is contained in another resource, it SHALL NOT have a meta.versionId or a meta.lastUpdated";

/// How deep objects may nest; serde_json's parser stops at 128 levels anyway.
const MAX_DEPTH: usize = 100;

struct Validator<'e> {
    model: &'static Model,
    issues: Vec<Issue>,
    /// The FHIRPath of the node being checked; pushed and truncated as the walk goes.
    path: String,
    evaluator: Option<&'e dyn InvariantEvaluator>,
    depth: usize,
}

impl Validator<'_> {
    fn issue(&mut self, severity: Severity, code: IssueType, diagnostics: String) {
        self.issues.push(Issue {
            severity,
            code,
            expression: self.path.clone(),
            diagnostics,
        });
    }

    fn error(&mut self, code: IssueType, diagnostics: String) {
        self.issue(Severity::Error, code, diagnostics);
    }

    /// A resource at the current path (or at the root, when the path is empty).
    /// A resource; `container` is the resource holding it when it is contained, which is
    /// what its invariants see as `%rootResource` (local references resolve there).
    fn resource(&mut self, value: &Value, container: Option<&Value>) {
        let contained = container.is_some();
        let root = container.unwrap_or(value);
        let Value::Object(obj) = value else {
            self.error(
                IssueType::Structure,
                "A resource must be a JSON object".to_string(),
            );
            return;
        };
        let type_name = match obj.get("resourceType") {
            Some(Value::String(name)) => name.as_str(),
            Some(_) => {
                self.error(
                    IssueType::Structure,
                    "resourceType must be a string".to_string(),
                );
                return;
            }
            None => {
                self.error(
                    IssueType::Required,
                    "The resource has no resourceType".to_string(),
                );
                return;
            }
        };
        let Some(type_idx) = self.model.resource_type(type_name) else {
            self.error(
                IssueType::Structure,
                format!("Unknown resource type '{type_name}'"),
            );
            return;
        };
        let at_root = self.path.is_empty();
        if at_root {
            self.path.push_str(type_name);
        }
        let tm = &self.model.types[type_idx];
        self.object(tm, 0, obj, true, root);
        if type_name == "Bundle" {
            self.bundle_rules(obj);
        }
        if contained {
            self.contained_rules(obj);
        }
        if self.evaluator.is_some() {
            self.contained_referenced(value, obj);
        }
        if self.evaluator.is_some() {
            self.invariants(tm.constraints.iter().copied(), value, Some(tm.name), root);
        }
        if at_root {
            self.path.clear();
        }
    }

    /// dom-2 and dom-4, on a contained resource.
    /// dom-3, natively: each contained resource is referred to (`#id`) from somewhere in
    /// the resource, or something refers to the container (`#`). The FHIRPath form walks
    /// every descendant four times per contained resource, which dominated validation.
    fn contained_referenced(&mut self, value: &Value, obj: &Map<String, Value>) {
        let Some(Value::Array(contained)) = obj.get("contained") else {
            return;
        };
        let mut local = std::collections::HashSet::new();
        collect_local_references(value, &mut local, 0);
        if local.contains("") {
            return;
        }
        for (index, resource) in contained.iter().enumerate() {
            let Some(id) = resource.get("id").and_then(Value::as_str) else {
                continue;
            };
            if !local.contains(id) {
                let mark = self.path.len();
                let _ = write!(self.path, ".contained[{index}]");
                self.error(
                    IssueType::Invariant,
                    format!("{DOM_3} (no reference to #{id})"),
                );
                self.path.truncate(mark);
            }
        }
    }

    fn contained_rules(&mut self, obj: &Map<String, Value>) {
        if obj.contains_key("contained") {
            self.error(IssueType::Invariant, DOM_2.to_string());
        }
        if let Some(Value::Object(meta)) = obj.get("meta")
            && (meta.contains_key("versionId") || meta.contains_key("lastUpdated"))
        {
            self.error(IssueType::Invariant, DOM_4.to_string());
        }
    }

    /// The properties of one JSON object against one node of a type.
    fn object(
        &mut self,
        tm: &'static TypeModel,
        node_idx: usize,
        obj: &Map<String, Value>,
        is_resource: bool,
        resource: &Value,
    ) {
        if self.depth >= MAX_DEPTH {
            self.error(
                IssueType::Structure,
                format!("The content is nested more than {MAX_DEPTH} levels deep"),
            );
            return;
        }
        self.depth += 1;
        let node = &tm.nodes[node_idx];
        if obj.is_empty() {
            self.error(
                IssueType::Structure,
                "An object must not be empty (leave the property out instead)".to_string(),
            );
        }
        // The choice elements seen so far, with the variant: (element, type).
        let mut choices: [(usize, usize); 8] = [(usize::MAX, 0); 8];
        let mut n_choices = 0;
        for (key, value) in obj {
            if is_resource && key == "resourceType" {
                continue;
            }
            let Some(prop) = node.props.get(key.as_str()) else {
                let mark = self.path.len();
                self.path.push('.');
                self.path.push_str(key);
                self.error(
                    IssueType::Structure,
                    format!("Unrecognized property '{key}'"),
                );
                self.path.truncate(mark);
                continue;
            };
            let elem = &node.elems[prop.elem];
            if elem.is_choice {
                let seen = choices[..n_choices].iter().find(|(e, _)| *e == prop.elem);
                match seen {
                    Some(&(_, type_idx)) if type_idx != prop.type_idx => {
                        let mark = self.path.len();
                        self.path.push('.');
                        self.path.push_str(elem.name);
                        self.error(
                            IssueType::Structure,
                            format!(
                                "Only one type of the choice element {}[x] may be present ('{key}' and '{}')",
                                elem.name, elem.keys[type_idx]
                            ),
                        );
                        self.path.truncate(mark);
                        continue;
                    }
                    Some(_) => {}
                    None if n_choices < choices.len() => {
                        choices[n_choices] = (prop.elem, prop.type_idx);
                        n_choices += 1;
                    }
                    None => {}
                }
            }
            if prop.underscore {
                // Checked with its value, when there is one.
                if obj.contains_key(&key[1..]) {
                    continue;
                }
                self.element(tm, elem, prop.type_idx, None, Some(value), resource);
            } else {
                let extension = match elem.types[prop.type_idx] {
                    ElemType::Primitive(_) => obj.get(elem.underscore_keys[prop.type_idx].as_ref()),
                    _ => None,
                };
                self.element(tm, elem, prop.type_idx, Some(value), extension, resource);
            }
        }
        for &elem_idx in &node.required {
            let elem = &node.elems[elem_idx];
            let present = elem.keys.iter().any(|key| obj.contains_key(key.as_ref()))
                || elem
                    .types
                    .iter()
                    .zip(&elem.underscore_keys)
                    .any(|(ty, key)| {
                        matches!(ty, ElemType::Primitive(_)) && obj.contains_key(key.as_ref())
                    });
            if !present {
                let mark = self.path.len();
                self.path.push('.');
                self.path.push_str(elem.name);
                self.error(
                    IssueType::Required,
                    format!(
                        "Missing required element '{}' (minimum {})",
                        elem.def.path, elem.def.min
                    ),
                );
                self.path.truncate(mark);
            }
        }
        self.depth -= 1;
    }

    /// One property (with its `_` sibling for primitives), repeating or not.
    fn element(
        &mut self,
        tm: &'static TypeModel,
        elem: &'static Elem,
        type_idx: usize,
        value: Option<&Value>,
        extension: Option<&Value>,
        resource: &Value,
    ) {
        let mark = self.path.len();
        self.path.push('.');
        self.path.push_str(elem.name);
        if elem.is_choice {
            self.path.push_str(".ofType(");
            self.path.push_str(elem.type_names[type_idx]);
            self.path.push(')');
        }
        let ty = elem.types[type_idx];
        if elem.max == Some(0) {
            self.error(
                IssueType::Structure,
                format!("The element '{}' is not allowed (max 0)", elem.def.path),
            );
        } else if elem.repeats {
            self.repeating(tm, elem, ty, value, extension, resource);
        } else {
            let mut shape_ok = true;
            for (v, what) in [(value, ""), (extension, "_")] {
                match v {
                    Some(Value::Array(_)) => {
                        self.error(
                            IssueType::Structure,
                            format!(
                                "The property {what}{} must be a single value, not a JSON array",
                                elem.name
                            ),
                        );
                        shape_ok = false;
                    }
                    Some(Value::Null) => {
                        self.error(
                            IssueType::Structure,
                            format!("The property {what}{} must not be null", elem.name),
                        );
                        shape_ok = false;
                    }
                    _ => {}
                }
            }
            if shape_ok {
                self.item(tm, elem, ty, value, extension, resource);
            }
        }
        self.path.truncate(mark);
    }

    fn repeating(
        &mut self,
        tm: &'static TypeModel,
        elem: &'static Elem,
        ty: ElemType,
        value: Option<&Value>,
        extension: Option<&Value>,
        resource: &Value,
    ) {
        let mut arrays: [Option<&[Value]>; 2] = [None, None];
        for (slot, (v, what)) in [(value, ""), (extension, "_")].into_iter().enumerate() {
            match v {
                Some(Value::Array(items)) if items.is_empty() => {
                    self.error(
                        IssueType::Structure,
                        format!(
                            "The array {what}{} must not be empty (leave the property out instead)",
                            elem.name
                        ),
                    );
                    return;
                }
                Some(Value::Array(items)) => arrays[slot] = Some(items.as_slice()),
                Some(_) => {
                    self.error(
                        IssueType::Structure,
                        format!(
                            "The property {what}{} must be a JSON array, not a single value",
                            elem.name
                        ),
                    );
                    return;
                }
                None => {}
            }
        }
        let [values, extensions] = arrays;
        if let (Some(v), Some(e)) = (values, extensions)
            && v.len() != e.len()
        {
            self.error(
                IssueType::Structure,
                format!(
                    "The arrays {} ({}) and _{} ({}) must have the same length",
                    elem.name,
                    v.len(),
                    elem.name,
                    e.len()
                ),
            );
            return;
        }
        let n = values
            .map_or(0, <[Value]>::len)
            .max(extensions.map_or(0, <[Value]>::len));
        if let Some(max) = elem.max
            && n > max as usize
        {
            self.error(
                IssueType::Structure,
                format!(
                    "The element '{}' has {n} items, more than the maximum {max}",
                    elem.def.path
                ),
            );
        }
        let is_primitive = matches!(ty, ElemType::Primitive(_));
        for i in 0..n {
            let mark = self.path.len();
            let _ = write!(self.path, "[{i}]");
            let v = values.and_then(|a| a.get(i)).filter(|v| !v.is_null());
            let e = extensions.and_then(|a| a.get(i)).filter(|v| !v.is_null());
            if v.is_none() && e.is_none() {
                let message = if is_primitive {
                    "An item must have a value or an extension; null is only allowed where the other array has content"
                } else {
                    "An array item must not be null"
                };
                self.error(IssueType::Structure, message.to_string());
            } else {
                self.item(tm, elem, ty, v, e, resource);
            }
            self.path.truncate(mark);
        }
    }

    /// One value (and its `_` sibling) of one type.
    fn item(
        &mut self,
        tm: &'static TypeModel,
        elem: &'static Elem,
        ty: ElemType,
        value: Option<&Value>,
        extension: Option<&Value>,
        resource: &Value,
    ) {
        match ty {
            ElemType::Primitive(prim) => {
                if let Some(value) = value {
                    match primitive::check(prim, value) {
                        Err((code, message)) => self.error(code, message),
                        Ok(()) => {
                            if let (Primitive::Code, Some((strength, vs)), Value::String(code)) =
                                (prim, elem.binding, value)
                            {
                                let vs = &self.model.value_sets[vs];
                                if !vs.contains(None, code) {
                                    self.not_in_value_set(strength, vs, code);
                                }
                            }
                        }
                    }
                    if self.evaluator.is_some() && !elem.def.constraints.is_empty() {
                        let context_type = match elem.type_names.as_slice() {
                            [only] => Some(*only),
                            _ => None,
                        };
                        self.invariants(elem.def.constraints.iter(), value, context_type, resource);
                    }
                }
                if let Some(extension) = extension {
                    match extension {
                        Value::Object(obj) => {
                            let element = &self.model.types[self.model.element_type];
                            self.object(element, 0, obj, false, resource);
                        }
                        _ => self.error(
                            IssueType::Structure,
                            format!(
                                "The property _{} must be a JSON object (id and extension)",
                                elem.name
                            ),
                        ),
                    }
                }
            }
            ElemType::Complex(type_idx) => {
                let Some(Value::Object(obj)) = value else {
                    self.must_be_object(elem, value);
                    return;
                };
                let ctm = &self.model.types[type_idx];
                self.object(ctm, 0, obj, false, resource);
                match ctm.name {
                    "Reference" => self.reference(elem, obj),
                    "CodeableConcept" => self.codeable_concept(elem, obj),
                    "Coding" => {
                        self.coding_rules(obj);
                        self.coding(elem, obj);
                    }
                    "Extension" => self.extension(obj),
                    "Attachment" => self.attachment_rules(obj),
                    _ => {}
                }
                if self.evaluator.is_some() {
                    self.complex_invariants(elem, ctm, value.unwrap_or(&Value::Null), resource);
                }
            }
            ElemType::Node(node_idx) => {
                let Some(Value::Object(obj)) = value else {
                    self.must_be_object(elem, value);
                    return;
                };
                self.object(tm, node_idx, obj, false, resource);
                if self.evaluator.is_some() && !elem.def.constraints.is_empty() {
                    let context_type = format!("{}.{}", tm.name, elem.def.path);
                    self.invariants(
                        elem.def.constraints.iter(),
                        value.unwrap_or(&Value::Null),
                        Some(&context_type),
                        resource,
                    );
                }
            }
            ElemType::Resource => match value {
                Some(value) => {
                    if self.depth >= MAX_DEPTH {
                        return;
                    }
                    self.depth += 1;
                    let container = (elem.name == "contained").then_some(resource);
                    self.resource(value, container);
                    self.depth -= 1;
                }
                None => self.must_be_object(elem, value),
            },
        }
    }

    fn must_be_object(&mut self, elem: &Elem, value: Option<&Value>) {
        let message = match value {
            Some(_) => format!("The property {} must be a JSON object", elem.name),
            None => format!(
                "The property _{} is only allowed on primitive elements",
                elem.name
            ),
        };
        self.error(IssueType::Structure, message);
    }

    fn not_in_value_set(&mut self, strength: Strength, vs: &ValueSetIndex, code: &str) {
        let (severity, must) = match strength {
            Strength::Required => (Severity::Error, "required"),
            Strength::Extensible => (Severity::Warning, "extensible"),
            Strength::Preferred => (Severity::Warning, "preferred"),
        };
        self.issue(
            severity,
            IssueType::CodeInvalid,
            format!(
                "The code '{code}' is not in the value set {} ({must} binding)",
                vs.url
            ),
        );
    }

    fn coding(&mut self, elem: &Elem, obj: &Map<String, Value>) {
        let Some((strength, vs)) = elem.binding else {
            return;
        };
        let vs = &self.model.value_sets[vs];
        if let Some(Value::String(code)) = obj.get("code") {
            let system = obj.get("system").and_then(Value::as_str);
            if !vs.contains(system, code) {
                let display = match system {
                    Some(system) => format!("{system}#{code}"),
                    None => code.clone(),
                };
                self.not_in_value_set(strength, vs, &display);
            }
        }
    }

    /// At least one coding (when there are codings with codes) must come from the value set.
    fn codeable_concept(&mut self, elem: &Elem, obj: &Map<String, Value>) {
        let Some((strength, vs)) = elem.binding else {
            return;
        };
        let vs = &self.model.value_sets[vs];
        let Some(Value::Array(codings)) = obj.get("coding") else {
            return;
        };
        let mut first = None;
        for coding in codings {
            let Some(Value::String(code)) = coding.get("code") else {
                continue;
            };
            let system = coding.get("system").and_then(Value::as_str);
            if vs.contains(system, code) {
                return;
            }
            if first.is_none() {
                first = Some(match system {
                    Some(system) => format!("{system}#{code}"),
                    None => code.clone(),
                });
            }
        }
        if let Some(first) = first {
            self.not_in_value_set(strength, vs, &first);
        }
    }

    fn reference(&mut self, elem: &Elem, obj: &Map<String, Value>) {
        let Some(Value::String(text)) = obj.get("reference") else {
            return;
        };
        let mark = self.path.len();
        self.path.push_str(".reference");
        match reference::parse(text) {
            Err(message) => self.error(IssueType::Value, message),
            Ok(Target::Typed(type_name)) => {
                let targets = &elem.def.targets;
                let allowed =
                    targets.is_empty() || targets.iter().any(|t| t == "Resource" || t == type_name);
                if !allowed {
                    self.error(
                        IssueType::Structure,
                        format!(
                            "The reference '{text}' is to a {type_name}, which is not an allowed target ({})",
                            targets.join(", ")
                        ),
                    );
                }
            }
            Ok(Target::Malformed(problem)) => self.issue(
                Severity::Warning,
                IssueType::Value,
                format!("The reference '{text}' is {problem}"),
            ),
            Ok(Target::Local(_) | Target::Opaque) => {}
        }
        self.path.truncate(mark);
    }

    /// ext-1: an extension has either a value or nested extensions, not both.
    fn extension(&mut self, obj: &Map<String, Value>) {
        let has_value = obj
            .keys()
            .any(|k| k.starts_with("value") || k.starts_with("_value"));
        let has_extensions = obj.contains_key("extension");
        if has_value == has_extensions {
            self.error(
                IssueType::Invariant,
                "ext-1: Must have either extensions or value[x], not both".to_string(),
            );
        }
    }

    fn complex_invariants(
        &mut self,
        elem: &'static Elem,
        ctm: &'static TypeModel,
        value: &Value,
        resource: &Value,
    ) {
        let defs = fhir::definitions();
        let own = elem.def.constraints.iter();
        let from_type = ctm
            .constraints
            .iter()
            .copied()
            .filter(|c| !elem.def.constraints.iter().any(|e| e.key == c.key));
        let from_profiles = elem
            .def
            .type_profiles
            .iter()
            .filter_map(|p| defs.profile(p))
            .flat_map(|p| p.constraints.iter())
            .filter(|c| {
                !elem.def.constraints.iter().any(|e| e.key == c.key)
                    && !ctm.constraints.iter().any(|e| e.key == c.key)
            });
        let all: Vec<&'static Constraint> = own.chain(from_type).chain(from_profiles).collect();
        self.invariants(all.into_iter(), value, Some(ctm.name), resource);
    }

    fn invariants<'c>(
        &mut self,
        constraints: impl Iterator<Item = &'c Constraint>,
        context: &Value,
        context_type: Option<&str>,
        resource: &Value,
    ) {
        let Some(evaluator) = self.evaluator else {
            return;
        };
        for c in constraints {
            if NATIVE_INVARIANTS.contains(&c.key.as_str())
                || SKIPPED_INVARIANTS.contains(&c.key.as_str())
            {
                continue;
            }
            match evaluator.check_typed(&c.expression, context, context_type, resource) {
                Ok(true) => {}
                Ok(false) => {
                    let severity = if c.severity == "error" {
                        Severity::Error
                    } else {
                        Severity::Warning
                    };
                    self.issue(
                        severity,
                        IssueType::Invariant,
                        format!("{}: {}", c.key, c.human),
                    );
                }
                Err(message) => self.issue(
                    Severity::Information,
                    IssueType::Processing,
                    format!("The invariant {} could not be evaluated: {message}", c.key),
                ),
            }
        }
    }
}

/// Every local reference (`#id`, and `#` alone as the empty string) among the string
/// values of `value`: references, canonicals and uris all count, as dom-3 says.
fn collect_local_references<'v>(
    value: &'v Value,
    found: &mut std::collections::HashSet<&'v str>,
    depth: usize,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::String(text) => {
            if let Some(id) = text.strip_prefix('#') {
                found.insert(id);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_local_references(item, found, depth + 1);
            }
        }
        Value::Object(object) => {
            for (key, child) in object {
                // Narrative is XHTML, not a reference.
                if key != "div" {
                    collect_local_references(child, found, depth + 1);
                }
            }
        }
        _ => {}
    }
}
