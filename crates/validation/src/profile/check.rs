//! Checking a resource against a compiled [`Profile`]: a walk over the profile's nodes (not
//! over the resource), so elements the profile does not constrain cost nothing.

use std::fmt::Write as _;

use fhir::{IssueType, Severity};
use serde_json::{Map, Value};

use super::{Expected, Node, Profile, Rules, Slice, Slicing, Step};
use crate::model::{MODEL, Strength};
use crate::primitive::Primitive;
use crate::reference::{self, Target};
use crate::{InvariantEvaluator, Issue};

/// How deep the walk may go (the profile's tree is bounded too; this is a backstop).
const MAX_DEPTH: usize = 100;

/// One occurrence of an element: its value and, for primitives, its `_` sibling.
#[derive(Clone, Copy)]
struct Item<'v> {
    value: Option<&'v Value>,
    extension: Option<&'v Value>,
    variant: usize,
    index: Option<usize>,
}

impl Profile {
    /// Adds to `issues` what `resource` breaks of this profile.
    pub(crate) fn check(
        &self,
        resource: &Value,
        evaluator: Option<&dyn InvariantEvaluator>,
        issues: &mut Vec<Issue>,
    ) {
        let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
            return; // the base validation reports it
        };
        let mut checker = Checker {
            profile: self,
            issues,
            path: String::with_capacity(128),
            evaluator,
            resource,
            depth: 0,
        };
        checker.path.push_str(resource_type);
        if !self.on_resource {
            checker.error(
                IssueType::NotSupported,
                format!(
                    "Profile {}: it constrains the data type {}, so it cannot apply to a resource",
                    self.url, self.base_type
                ),
            );
            return;
        }
        if resource_type != self.base_type {
            checker.error(
                IssueType::Structure,
                format!(
                    "Profile {}: it constrains {}, not {resource_type}",
                    self.url, self.base_type
                ),
            );
            return;
        }
        let item = Item {
            value: Some(resource),
            extension: None,
            variant: 0,
            index: None,
        };
        checker.item(&self.root, item);
    }
}

struct Checker<'a> {
    profile: &'a Profile,
    issues: &'a mut Vec<Issue>,
    path: String,
    evaluator: Option<&'a dyn InvariantEvaluator>,
    resource: &'a Value,
    depth: usize,
}

impl<'a> Checker<'a> {
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

    /// The constraints of `node` on one occurrence, then its children's.
    fn item(&mut self, node: &Node, item: Item<'a>) {
        let url = &self.profile.url;
        let Some(variant) = node.variants.get(item.variant) else {
            return;
        };
        let type_name = match (variant.type_name.as_str(), item.value) {
            ("Resource", Some(v)) => v
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("Resource"),
            (name, _) => name,
        };
        if let Some(types) = &node.types
            && !types.iter().any(|t| t == type_name)
        {
            self.error(
                IssueType::Structure,
                format!(
                    "Profile {url}, element {}: the type {type_name} is not allowed here (allowed: {})",
                    node.id,
                    types.join(", ")
                ),
            );
        }
        if let Some(value) = item.value {
            self.value(node, type_name, value);
        }
        if node.children.iter().any(|c| c.active) {
            let holder = if variant.primitive {
                item.extension
            } else {
                item.value
            };
            if let Some(Value::Object(obj)) = holder {
                if self.depth >= MAX_DEPTH {
                    return;
                }
                self.depth += 1;
                self.children(node, obj);
                self.depth -= 1;
            }
        }
    }

    fn value(&mut self, node: &Node, type_name: &str, value: &'a Value) {
        let url = &self.profile.url;
        if let Some(targets) = &node.targets
            && let Some(Value::String(text)) = value.get("reference")
            && let Ok(Target::Typed(target)) = reference::parse(text)
            && !targets.iter().any(|t| t == target)
        {
            let mark = self.path.len();
            self.path.push_str(".reference");
            self.error(
                IssueType::Structure,
                format!(
                    "Profile {url}, element {}: the reference '{text}' is to a {target}, which is not an allowed target ({})",
                    node.id,
                    targets.join(", ")
                ),
            );
            self.path.truncate(mark);
        }
        if let Some(fixed) = &node.fixed
            && value != fixed
        {
            self.error(
                IssueType::Value,
                format!(
                    "Profile {url}, element {}: the value must be exactly {fixed}",
                    node.id
                ),
            );
        }
        if let Some(pattern) = &node.pattern
            && !contains(value, pattern)
        {
            self.error(
                IssueType::Value,
                format!(
                    "Profile {url}, element {}: the value must match the pattern {pattern}",
                    node.id
                ),
            );
        }
        if let (Some(max), Value::String(text)) = (node.max_length, value) {
            let n = text.chars().count() as u64;
            if n > max {
                self.error(
                    IssueType::Value,
                    format!(
                        "Profile {url}, element {}: {n} characters, more than maxLength {max}",
                        node.id
                    ),
                );
            }
        }
        if let Some((strength, vs)) = node.binding {
            self.binding(node, strength, vs, type_name, value);
        }
        if let Some(evaluator) = self.evaluator {
            for &i in &node.invariants {
                let Some(inv) = self.profile.invariants.get(i) else {
                    continue;
                };
                // The element id without slice names is the path that types the context.
                let context_type: String = inv
                    .element
                    .split('.')
                    .map(|segment| segment.split(':').next().unwrap_or(segment))
                    .collect::<Vec<_>>()
                    .join(".");
                match evaluator.check_typed(
                    &inv.expression,
                    value,
                    Some(&context_type),
                    self.resource,
                ) {
                    Ok(true) => {}
                    Ok(false) => {
                        let severity = if inv.severity == "error" {
                            Severity::Error
                        } else {
                            Severity::Warning
                        };
                        self.issue(
                            severity,
                            IssueType::Invariant,
                            format!(
                                "Profile {url}, element {}: {}: {}",
                                node.id, inv.key, inv.human
                            ),
                        );
                    }
                    Err(message) => self.issue(
                        Severity::Information,
                        IssueType::Processing,
                        format!(
                            "Profile {url}: the invariant {} could not be evaluated: {message}",
                            inv.key
                        ),
                    ),
                }
            }
        }
    }

    fn binding(
        &mut self,
        node: &Node,
        strength: Strength,
        vs_idx: usize,
        type_name: &str,
        value: &Value,
    ) {
        let Some(vs) = MODEL.value_sets.get(vs_idx) else {
            return;
        };
        let bad: Option<String> = match (type_name, value) {
            ("CodeableConcept", _) => {
                let codings: Vec<(Option<&str>, &str)> = match value.get("coding") {
                    Some(Value::Array(codings)) => codings.iter().filter_map(system_code).collect(),
                    _ => Vec::new(),
                };
                match codings.first() {
                    Some(first) if !codings.iter().any(|(s, c)| vs.contains(*s, c)) => {
                        Some(display(*first))
                    }
                    _ => None,
                }
            }
            ("Coding" | "Quantity", _) => system_code(value)
                .filter(|(s, c)| !vs.contains(*s, c))
                .map(display),
            (_, Value::String(code)) => (!vs.contains(None, code)).then(|| code.clone()),
            _ => None,
        };
        if let Some(code) = bad {
            let (severity, what) = match strength {
                Strength::Required => (Severity::Error, "required"),
                Strength::Extensible => (Severity::Warning, "extensible"),
                Strength::Preferred => (Severity::Warning, "preferred"),
            };
            self.issue(
                severity,
                IssueType::CodeInvalid,
                format!(
                    "Profile {}, element {}: the code '{code}' is not in the value set {} ({what} binding)",
                    self.profile.url, node.id, vs.url
                ),
            );
        }
    }

    /// The children `node` constrains, in one JSON object.
    fn children(&mut self, node: &Node, obj: &'a Map<String, Value>) {
        let url = &self.profile.url;
        for child in node.children.iter().filter(|c| c.active) {
            let items = collect(child, obj);
            let mark = self.path.len();
            self.path.push('.');
            self.path.push_str(&child.name);
            let n = items.len();
            if let Some(min) = child.min
                && n < min as usize
            {
                self.error(
                    IssueType::Structure,
                    format!(
                        "Profile {url}, element {}: {n} occurrences, fewer than the minimum {min}",
                        child.id
                    ),
                );
            }
            if let Some(max) = child.max
                && n > max as usize
            {
                self.error(
                    IssueType::Structure,
                    format!(
                        "Profile {url}, element {}: {n} occurrences, more than the maximum {max}",
                        child.id
                    ),
                );
            }
            self.path.truncate(mark);
            for &item in &items {
                self.push_item_path(child, item);
                self.item(child, item);
                self.path.truncate(mark);
            }
            if let Some(slicing) = &child.slicing {
                self.slices(child, slicing, &items);
            }
        }
    }

    fn push_item_path(&mut self, node: &Node, item: Item<'_>) {
        self.path.push('.');
        self.path.push_str(&node.name);
        if node.choice
            && let Some(variant) = node.variants.get(item.variant)
        {
            self.path.push_str(".ofType(");
            self.path.push_str(&variant.type_name);
            self.path.push(')');
        }
        if let Some(i) = item.index {
            let _ = write!(self.path, "[{i}]");
        }
    }

    fn slices(&mut self, node: &Node, slicing: &Slicing, items: &[Item<'a>]) {
        let url = &self.profile.url;
        let mark = self.path.len();
        let mut assigned: Vec<Option<usize>> = Vec::with_capacity(items.len());
        let mut seen_unmatched = false;
        let mut last_slice = 0;
        for &item in items {
            let slice = node
                .slices
                .iter()
                .position(|s| matches(node, slicing, s, item));
            assigned.push(slice);
            let problem = match slice {
                None if slicing.rules == Rules::Closed => Some(format!(
                    "Profile {url}, element {}: the item matches none of the slices ({}), and the slicing is closed",
                    node.id,
                    slice_names(node)
                )),
                None => {
                    seen_unmatched = true;
                    None
                }
                Some(s) if seen_unmatched && slicing.rules == Rules::OpenAtEnd => Some(format!(
                    "Profile {url}, element {}: the item is in slice '{}' but follows an item in no slice (slicing is openAtEnd)",
                    node.id, node.slices[s].name
                )),
                Some(s) if slicing.ordered && s < last_slice => Some(format!(
                    "Profile {url}, element {}: the item is in slice '{}', out of the slices' order (slicing is ordered)",
                    node.id, node.slices[s].name
                )),
                Some(s) => {
                    last_slice = s;
                    None
                }
            };
            if let Some(problem) = problem {
                self.push_item_path(node, item);
                self.error(IssueType::Structure, problem);
                self.path.truncate(mark);
            }
        }
        self.path.push('.');
        self.path.push_str(&node.name);
        for (s, slice) in node.slices.iter().enumerate() {
            let n = assigned.iter().filter(|a| **a == Some(s)).count();
            let min = slice.node.min.unwrap_or(0);
            if n < min as usize {
                self.error(
                    IssueType::Structure,
                    format!(
                        "Profile {url}, element {}: slice '{}' has {n} items, fewer than its minimum {min}",
                        node.id, slice.name
                    ),
                );
            }
            if let Some(max) = slice.node.max
                && n > max as usize
            {
                self.error(
                    IssueType::Structure,
                    format!(
                        "Profile {url}, element {}: slice '{}' has {n} items, more than its maximum {max}",
                        node.id, slice.name
                    ),
                );
            }
        }
        self.path.truncate(mark);
        for (&item, slice) in items.iter().zip(&assigned) {
            let Some(slice) = slice.and_then(|s| node.slices.get(s)) else {
                continue;
            };
            if !slice_checks_anything(&slice.node) {
                continue;
            }
            self.push_item_path(node, item);
            self.item(&slice.node, item);
            self.path.truncate(mark);
        }
    }
}

fn slice_checks_anything(node: &Node) -> bool {
    node.fixed.is_some()
        || node.pattern.is_some()
        || node.types.is_some()
        || node.targets.is_some()
        || node.binding.is_some()
        || node.max_length.is_some()
        || !node.invariants.is_empty()
        || node.children.iter().any(|c| c.active)
}

fn slice_names(node: &Node) -> String {
    node.slices
        .iter()
        .map(|s| s.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The occurrences of `node` in `obj`, with their `_` siblings.
fn collect<'v>(node: &Node, obj: &'v Map<String, Value>) -> Vec<Item<'v>> {
    let mut items = Vec::new();
    for (variant, v) in node.variants.iter().enumerate() {
        let value = obj.get(&v.key);
        let extension = if v.primitive {
            obj.get(&v.underscore)
        } else {
            None
        };
        if value.is_none() && extension.is_none() {
            continue;
        }
        let is_array =
            matches!(value, Some(Value::Array(_))) || matches!(extension, Some(Value::Array(_)));
        if !node.repeats && !is_array {
            items.push(Item {
                value: value.filter(|v| !v.is_null()),
                extension: extension.filter(|v| !v.is_null()),
                variant,
                index: None,
            });
            continue;
        }
        let values = as_slice(value);
        let extensions = as_slice(extension);
        for i in 0..values.len().max(extensions.len()) {
            let value = values.get(i).filter(|v| !v.is_null());
            let extension = extensions.get(i).filter(|v| !v.is_null());
            if value.is_some() || extension.is_some() {
                items.push(Item {
                    value,
                    extension,
                    variant,
                    index: Some(i),
                });
            }
        }
    }
    items
}

fn as_slice(value: Option<&Value>) -> &[Value] {
    match value {
        Some(Value::Array(items)) => items,
        Some(v) => std::slice::from_ref(v),
        None => &[],
    }
}

/// Whether `item` belongs to `slice`: every discriminator finds what the slice expects.
fn matches(node: &Node, slicing: &Slicing, slice: &Slice, item: Item<'_>) -> bool {
    let this_type = node
        .variants
        .get(item.variant)
        .map_or("", |v| v.type_name.as_str());
    for (d, expected) in slicing.discriminators.iter().zip(&slice.expected) {
        let mut found: Vec<(&Value, Option<&str>)> = Vec::new();
        if let Some(value) = item.value {
            let this_type = match (this_type, value.get("resourceType")) {
                ("Resource", Some(Value::String(rt))) => rt.as_str(),
                _ => this_type,
            };
            found.push((value, Some(this_type)));
        }
        for step in &d.steps {
            found = walk(found, step);
        }
        let ok = match expected {
            Expected::Fixed(v) => found.iter().any(|(x, _)| *x == v),
            Expected::Pattern(p) => found.iter().any(|(x, _)| contains(x, p)),
            Expected::ValueSet(vs) => MODEL.value_sets.get(*vs).is_some_and(|vs| {
                found.iter().any(|(x, _)| match x {
                    Value::String(code) => vs.contains(None, code),
                    _ => system_code(x).is_some_and(|(s, c)| vs.contains(s, c)),
                })
            }),
            Expected::Types(types) => {
                if d.steps.is_empty() && item.value.is_none() {
                    types.iter().any(|t| t == this_type)
                } else {
                    found
                        .iter()
                        .any(|(_, t)| t.is_some_and(|t| types.iter().any(|e| e == t)))
                }
            }
            Expected::Exists(exists) => found.is_empty() != *exists,
        };
        if !ok {
            return false;
        }
    }
    true
}

/// One step of a discriminator path over a collection (FHIRPath semantics: arrays flatten).
fn walk<'v>(
    from: Vec<(&'v Value, Option<&'v str>)>,
    step: &Step,
) -> Vec<(&'v Value, Option<&'v str>)> {
    let mut out = Vec::new();
    for (value, type_name) in from {
        match step {
            Step::OfType(t) => {
                if type_name == Some(t.as_str()) {
                    out.push((value, type_name));
                }
            }
            Step::Child(name) => {
                let Value::Object(obj) = value else { continue };
                if let Some(child) = obj.get(name.as_str()) {
                    for v in as_slice(Some(child)) {
                        let t = v.get("resourceType").and_then(Value::as_str);
                        out.push((v, t));
                    }
                    continue;
                }
                // A choice element: `value` finds `valueQuantity`, typed Quantity.
                for (key, v) in obj {
                    if let Some(rest) = key.strip_prefix(name.as_str())
                        && rest.starts_with(|c: char| c.is_ascii_uppercase())
                    {
                        let t = choice_type(rest);
                        for v in as_slice(Some(v)) {
                            out.push((v, Some(t)));
                        }
                    }
                }
            }
            Step::Extension(url) => {
                let Some(Value::Array(extensions)) = value.get("extension") else {
                    continue;
                };
                for e in extensions {
                    if e.get("url").and_then(Value::as_str) == Some(url.as_str()) {
                        out.push((e, Some("Extension")));
                    }
                }
            }
        }
    }
    out
}

/// `Quantity` → `Quantity`, `String` → `string`, `DateTime` → `dateTime`.
fn choice_type(suffix: &str) -> &'static str {
    let mut lower = String::with_capacity(suffix.len());
    let mut chars = suffix.chars();
    if let Some(first) = chars.next() {
        lower.extend(first.to_lowercase());
        lower.push_str(chars.as_str());
    }
    if let Some(p) = Primitive::from_name(&lower) {
        return p.name();
    }
    MODEL
        .by_name
        .get_key_value(suffix)
        .map_or("", |(name, _)| *name)
}

/// Whether `value` holds everything in `pattern` (objects: every property; arrays: every
/// pattern item in some item; primitives: equal).
pub(super) fn contains(value: &Value, pattern: &Value) -> bool {
    match (value, pattern) {
        (Value::Object(v), Value::Object(p)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| contains(vv, pv))),
        (Value::Array(v), Value::Array(p)) => {
            p.iter().all(|pv| v.iter().any(|vv| contains(vv, pv)))
        }
        _ => value == pattern,
    }
}

fn system_code(value: &Value) -> Option<(Option<&str>, &str)> {
    let code = value.get("code")?.as_str()?;
    Some((value.get("system").and_then(Value::as_str), code))
}

fn display((system, code): (Option<&str>, &str)) -> String {
    match system {
        Some(system) => format!("{system}#{code}"),
        None => code.to_string(),
    }
}
