//! StructureDefinition JSON to a [`Profile`]: the snapshot's elements (or the differential's,
//! over the core definitions) become a tree of nodes that keep only what the profile tightens.

use fhir::definitions::{ElementDef, Kind};
use serde_json::{Map, Value};

use super::base::resolve;
use super::{
    Discriminator, DiscriminatorKind, Expected, Node, Profile, ProfileInvariant, Rules, Slice,
    Slicing, Step, Variant,
};
use crate::NATIVE_INVARIANTS;
use crate::model::{FastMap, MODEL, Strength};
use crate::primitive::Primitive;

/// Limits on what a StructureDefinition may hold.
const MAX_ELEMENTS: usize = 10_000;
const MAX_SEGMENTS: usize = 64;

const CORE: &str = "http://hl7.org/fhir/StructureDefinition/";

pub(super) fn compile(sd: &Value) -> Result<Profile, String> {
    let Value::Object(sd) = sd else {
        return Err("A StructureDefinition must be a JSON object".to_string());
    };
    if sd.get("resourceType").and_then(Value::as_str) != Some("StructureDefinition") {
        return Err("resourceType must be StructureDefinition".to_string());
    }
    let url = string(sd, "url")?;
    let type_name = string(sd, "type")?;
    match sd.get("derivation").and_then(Value::as_str) {
        Some("constraint") => {}
        Some(other) => {
            return Err(format!(
                "{url}: derivation '{other}' is not supported (only constraint profiles)"
            ));
        }
        None => return Err(format!("{url}: no derivation (must be 'constraint')")),
    }
    let defs = fhir::definitions();
    let Some(type_def) = defs.type_def(type_name) else {
        return Err(format!(
            "{url}: '{type_name}' is not an R4 resource or data type"
        ));
    };
    if type_def.kind == Kind::Logical || (type_def.kind == Kind::Resource && type_def.is_abstract) {
        return Err(format!(
            "{url}: profiles on '{type_name}' (logical or abstract) are not supported"
        ));
    }
    let elements = match element_list(sd, "snapshot") {
        Some(elements) => elements,
        None => {
            let base = sd.get("baseDefinition").and_then(Value::as_str);
            let core = format!("{CORE}{type_name}");
            if base.is_some_and(|b| b.split('|').next() != Some(core.as_str())) {
                return Err(format!(
                    "{url}: without a snapshot, only a differential over the core {type_name} is supported (baseDefinition is {})",
                    base.unwrap_or("")
                ));
            }
            element_list(sd, "differential").ok_or_else(|| {
                format!("{url}: neither snapshot.element nor differential.element")
            })?
        }
    };
    if elements.len() > MAX_ELEMENTS {
        return Err(format!(
            "{url}: more than {MAX_ELEMENTS} elements ({})",
            elements.len()
        ));
    }
    let mut compiler = Compiler {
        url,
        type_name,
        invariants: Vec::new(),
        resolved: FastMap::default(),
    };
    let mut root = Node {
        id: type_name.to_string(),
        segment: type_name.to_string(),
        name: type_name.to_string(),
        variants: vec![Variant {
            key: String::new(),
            underscore: String::new(),
            type_name: type_name.to_string(),
            primitive: type_def.kind == Kind::PrimitiveType,
        }],
        ..Node::default()
    };
    for (i, el) in elements.iter().enumerate() {
        let Value::Object(el) = el else {
            return Err(format!("{url}: element {i} is not a JSON object"));
        };
        compiler.element(&mut root, el, i)?;
    }
    compiler.finish(&mut root)?;
    Ok(Profile {
        url: url.to_string(),
        base_type: type_name.to_string(),
        on_resource: type_def.kind == Kind::Resource,
        root,
        invariants: compiler.invariants,
    })
}

fn string<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    match obj.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("'{key}' must be a non-empty string")),
        None => Err(format!("'{key}' is missing")),
    }
}

fn element_list<'a>(sd: &'a Map<String, Value>, which: &str) -> Option<&'a Vec<Value>> {
    match sd.get(which)?.get("element")? {
        Value::Array(elements) => Some(elements),
        _ => None,
    }
}

struct Compiler<'a> {
    url: &'a str,
    type_name: &'a str,
    invariants: Vec<ProfileInvariant>,
    /// Base definitions already looked up, by path (`code.coding.system`).
    resolved: FastMap<String, Option<&'static ElementDef>>,
}

/// One segment of an element id: `component:systolic` is `("component", Some("systolic"))`.
fn parse_id(id: &str) -> Vec<(&str, Option<&str>)> {
    id.split('.')
        .map(|segment| match segment.split_once(':') {
            Some((name, slice)) => (name, Some(slice)),
            None => (segment, None),
        })
        .collect()
}

impl Compiler<'_> {
    fn resolve(&mut self, path: &[String]) -> Option<&'static ElementDef> {
        let key = path.join(".");
        if let Some(&found) = self.resolved.get(&key) {
            return found;
        }
        let found = resolve(self.type_name, path);
        self.resolved.insert(key, found);
        found
    }

    fn element(
        &mut self,
        root: &mut Node,
        el: &Map<String, Value>,
        i: usize,
    ) -> Result<(), String> {
        let url = self.url;
        let id_owned;
        let id = match (el.get("id"), el.get("path")) {
            (Some(Value::String(id)), _) => id.as_str(),
            (_, Some(Value::String(path))) => {
                id_owned = match el.get("sliceName").and_then(Value::as_str) {
                    Some(slice) => format!("{path}:{slice}"),
                    None => path.clone(),
                };
                id_owned.as_str()
            }
            _ => return Err(format!("{url}: element {i} has neither id nor path")),
        };
        let segments = parse_id(id);
        if segments.len() > MAX_SEGMENTS {
            return Err(format!("{url}: the element id '{id}' is too deep"));
        }
        let Some(((first, first_slice), rest)) = segments.split_first() else {
            return Err(format!("{url}: element {i} has an empty id"));
        };
        if *first != self.type_name || first_slice.is_some() {
            return Err(format!(
                "{url}: the element '{id}' is not in the profiled type {}",
                self.type_name
            ));
        }
        let mut node = root;
        let mut base_path: Vec<String> = Vec::with_capacity(rest.len());
        let mut is_slice = false;
        let mut id_so_far = self.type_name.to_string();
        for (name, slice) in rest {
            if slice.is_some_and(|s| s.contains('/')) {
                return Err(format!("{url}: '{id}': re-slicing is not supported"));
            }
            let (segment, implied_type) = self.normalize(&base_path, name, id)?;
            base_path.push(segment.clone());
            id_so_far.push('.');
            id_so_far.push_str(&segment);
            node = self.child(node, &segment, &base_path, &id_so_far, id)?;
            let slice_name = match (slice, &implied_type) {
                (Some(slice), _) => Some(slice.to_string()),
                (None, Some(_)) => Some(name.to_string()),
                (None, None) => None,
            };
            is_slice = slice_name.is_some();
            if let Some(slice_name) = slice_name {
                id_so_far.push(':');
                id_so_far.push_str(&slice_name);
                node = slice_node(node, &slice_name, &id_so_far, implied_type);
            }
        }
        self.apply(node, el, is_slice, rest.is_empty())
    }

    /// `valueQuantity` (a shorthand for the `Quantity` type of `value[x]`) to `value[x]` and its type.
    fn normalize(
        &mut self,
        base_path: &[String],
        name: &str,
        id: &str,
    ) -> Result<(String, Option<String>), String> {
        let mut path = base_path.to_vec();
        path.push(name.to_string());
        if self.resolve(&path).is_some() {
            return Ok((name.to_string(), None));
        }
        for (j, c) in name.char_indices().skip(1) {
            if !c.is_ascii_uppercase() {
                continue;
            }
            let candidate = format!("{}[x]", &name[..j]);
            if let Some(last) = path.last_mut() {
                last.clone_from(&candidate);
            }
            if let Some(el) = self.resolve(&path)
                && let Some(t) = el.types.iter().find(|t| capitalized(t) == name[j..])
            {
                return Ok((candidate, Some(t.clone())));
            }
        }
        Err(format!(
            "{}: '{id}': no element '{}' in the core {}",
            self.url,
            path.join("."),
            self.type_name
        ))
    }

    fn child<'n>(
        &mut self,
        node: &'n mut Node,
        segment: &str,
        base_path: &[String],
        id: &str,
        element_id: &str,
    ) -> Result<&'n mut Node, String> {
        let pos = match node.children.iter().position(|c| c.segment == segment) {
            Some(pos) => pos,
            None => {
                let Some(def) = self.resolve(base_path) else {
                    return Err(format!(
                        "{}: '{element_id}': no element '{}' in the core {}",
                        self.url,
                        base_path.join("."),
                        self.type_name
                    ));
                };
                node.children.push(new_node(def, segment, id));
                node.children.len() - 1
            }
        };
        Ok(&mut node.children[pos])
    }

    fn apply(
        &mut self,
        node: &mut Node,
        el: &Map<String, Value>,
        is_slice: bool,
        is_root: bool,
    ) -> Result<(), String> {
        let url = self.url;
        let id = node.id.clone();
        let base = if is_root {
            None
        } else {
            self.resolve(&base_path_of(&id))
        };
        let min = match el.get("min") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| format!("{url}: '{id}': min must be a non-negative integer"))?,
            ),
        };
        let max = match el.get("max") {
            None => None,
            Some(Value::String(s)) if s == "*" => Some(None),
            Some(Value::String(s)) => Some(Some(s.parse::<u32>().map_err(|_| {
                format!("{url}: '{id}': max must be '*' or a non-negative integer")
            })?)),
            Some(_) => return Err(format!("{url}: '{id}': max must be a string")),
        };
        if is_slice {
            if let Some(min) = min {
                node.min = Some(min);
            }
            if let Some(max) = max {
                node.max = max;
            }
        } else if !is_root {
            let base_min = base.map_or(0, |b| b.min);
            let base_max = base.and_then(|b| b.max.parse::<u32>().ok());
            if let Some(min) = min
                && min > base_min
            {
                node.min = Some(min);
            }
            if let Some(Some(max)) = max
                && base_max.is_none_or(|b| max < b)
            {
                node.max = Some(max);
            }
        }
        for (key, value) in el {
            if let Some(rest) = key.strip_prefix("fixed")
                && rest.starts_with(|c: char| c.is_ascii_uppercase())
            {
                node.fixed = Some(value.clone());
            } else if let Some(rest) = key.strip_prefix("pattern")
                && rest.starts_with(|c: char| c.is_ascii_uppercase())
            {
                node.pattern = Some(value.clone());
            }
        }
        if let Some(types) = el.get("type") {
            self.types(node, base, types)?;
        }
        if let Some(binding) = el.get("binding") {
            node_binding(node, base, binding);
        }
        if let Some(n) = el.get("maxLength") {
            let n = n.as_u64().ok_or_else(|| {
                format!("{url}: '{id}': maxLength must be a non-negative integer")
            })?;
            if base.and_then(|b| b.max_length).is_none_or(|b| n < b) {
                node.max_length = Some(n);
            }
        }
        if let Some(constraints) = el.get("constraint") {
            self.constraints(node, base, constraints, is_root)?;
        }
        if let Some(slicing) = el.get("slicing") {
            if is_slice {
                return Err(format!("{url}: '{id}': re-slicing is not supported"));
            }
            node.slicing = Some(parse_slicing(slicing).map_err(|e| format!("{url}: '{id}': {e}"))?);
        }
        Ok(())
    }

    fn types(
        &self,
        node: &mut Node,
        base: Option<&'static ElementDef>,
        types: &Value,
    ) -> Result<(), String> {
        let Value::Array(types) = types else {
            return Err(format!(
                "{}: '{}': type must be an array",
                self.url, node.id
            ));
        };
        let mut codes = Vec::new();
        let mut targets = Vec::new();
        let mut targets_known = true;
        for t in types {
            let Some(code) = t.get("code").and_then(Value::as_str) else {
                return Err(format!(
                    "{}: '{}': a type without a code",
                    self.url, node.id
                ));
            };
            if !codes.iter().any(|c| c == code) {
                codes.push(code.to_string());
            }
            if code == "Extension"
                && let Some(Value::String(profile)) = t.get("profile").and_then(|p| p.get(0))
            {
                node.extension_url = Some(profile.clone());
            }
            if let Some(Value::Array(profiles)) = t.get("targetProfile") {
                for p in profiles {
                    let name = p
                        .as_str()
                        .and_then(|p| p.split('|').next())
                        .and_then(|p| p.strip_prefix(CORE))
                        .filter(|n| *n == "Resource" || fhir::definitions().is_resource_type(n));
                    match name {
                        Some(name) => targets.push(name.to_string()),
                        None => targets_known = false,
                    }
                }
            }
        }
        let base_types: &[String] = base.map_or(&[], |b| b.types.as_slice());
        let narrower =
            codes.len() < base_types.len() || codes.iter().any(|c| !base_types.contains(c));
        // `System.String` and friends (ids, `Extension.url`) are written as FHIR types in
        // some profiles (`uri`); they cannot be narrowed anyway.
        let system = base_types
            .iter()
            .any(|t| t.starts_with("http://hl7.org/fhirpath/System."));
        if !codes.is_empty() && narrower && base.is_some() && !system {
            node.types = Some(codes);
        }
        let base_targets: &[String] = base.map_or(&[], |b| b.targets.as_slice());
        if targets_known
            && !targets.is_empty()
            && !targets.iter().any(|t| t == "Resource")
            && (base_targets.is_empty()
                || base_targets.iter().any(|b| b == "Resource")
                || targets.len() < base_targets.len()
                || targets.iter().any(|t| !base_targets.contains(t)))
        {
            node.targets = Some(targets);
        }
        Ok(())
    }

    fn constraints(
        &mut self,
        node: &mut Node,
        base: Option<&'static ElementDef>,
        constraints: &Value,
        is_root: bool,
    ) -> Result<(), String> {
        let Value::Array(constraints) = constraints else {
            return Err(format!(
                "{}: '{}': constraint must be an array",
                self.url, node.id
            ));
        };
        let defs = fhir::definitions();
        for c in constraints {
            let (Some(key), Some(expression)) = (
                c.get("key").and_then(Value::as_str),
                c.get("expression").and_then(Value::as_str),
            ) else {
                continue;
            };
            let in_base = NATIVE_INVARIANTS.contains(&key)
                || base.is_some_and(|b| b.constraints.iter().any(|k| k.key == key))
                || node
                    .variants
                    .iter()
                    .filter_map(|v| defs.type_def(&v.type_name))
                    .any(|t| t.constraints.iter().any(|k| k.key == key))
                || (is_root
                    && defs
                        .type_def(self.type_name)
                        .is_some_and(|t| t.constraints.iter().any(|k| k.key == key)));
            if in_base {
                continue;
            }
            node.invariants.push(self.invariants.len());
            self.invariants.push(ProfileInvariant {
                element: node.id.clone(),
                key: key.to_string(),
                severity: c
                    .get("severity")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_string(),
                human: c
                    .get("human")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                expression: expression.to_string(),
            });
        }
        Ok(())
    }

    /// Implied slicings, what each slice's discriminators must find, and which nodes are active.
    fn finish(&self, node: &mut Node) -> Result<(), String> {
        for child in &mut node.children {
            self.finish(child)?;
        }
        for slice in &mut node.slices {
            self.finish(&mut slice.node)?;
        }
        if !node.slices.is_empty() && node.slicing.is_none() {
            let (kind, text, steps) = if node.choice {
                (DiscriminatorKind::Type, "$this", Vec::new())
            } else if node.name == "extension" || node.name == "modifierExtension" {
                (
                    DiscriminatorKind::Value,
                    "url",
                    vec![Step::Child("url".to_string())],
                )
            } else {
                return Err(format!(
                    "{}: '{}' has slices but no slicing",
                    self.url, node.id
                ));
            };
            node.slicing = Some(Slicing {
                discriminators: vec![Discriminator {
                    kind,
                    text: text.to_string(),
                    steps,
                }],
                rules: Rules::Open,
                ordered: false,
            });
        }
        if let Some(slicing) = &node.slicing {
            for slice in &mut node.slices {
                slice.expected = slicing
                    .discriminators
                    .iter()
                    .map(|d| self.expected(d, slice))
                    .collect::<Result<_, _>>()?;
            }
        }
        node.active = node.min.is_some()
            || node.max.is_some()
            || node.fixed.is_some()
            || node.pattern.is_some()
            || node.types.is_some()
            || node.targets.is_some()
            || node.binding.is_some()
            || node.max_length.is_some()
            || !node.invariants.is_empty()
            || node.slicing.is_some()
            || node.children.iter().any(|c| c.active);
        Ok(())
    }

    fn expected(&self, d: &Discriminator, slice: &Slice) -> Result<Expected, String> {
        let target = target(&slice.node, &d.steps);
        let fail = |what: &str| {
            Err(format!(
                "{}: slice '{}' of '{}' has no {what} at the discriminator path '{}'",
                self.url, slice.name, slice.node.id, d.text
            ))
        };
        match d.kind {
            DiscriminatorKind::Value | DiscriminatorKind::Pattern => {
                if let Some(t) = target {
                    if let Some(v) = &t.fixed {
                        return Ok(Expected::Fixed(v.clone()));
                    }
                    if let Some(v) = &t.pattern {
                        return Ok(Expected::Pattern(v.clone()));
                    }
                    if let Some((Strength::Required, vs)) = t.binding {
                        return Ok(Expected::ValueSet(vs));
                    }
                }
                if d.steps == [Step::Child("url".to_string())]
                    && let Some(url) = &slice.node.extension_url
                {
                    return Ok(Expected::Fixed(Value::String(url.clone())));
                }
                if let Some(expected) = from_ancestor(&slice.node, &d.steps) {
                    return Ok(expected);
                }
                fail("fixed value, pattern or required binding")
            }
            DiscriminatorKind::Type => match target {
                Some(t) => Ok(Expected::Types(t.types.clone().unwrap_or_else(|| {
                    t.variants.iter().map(|v| v.type_name.clone()).collect()
                }))),
                None => fail("type"),
            },
            DiscriminatorKind::Exists => match target {
                Some(t) if t.min.is_some_and(|m| m >= 1) => Ok(Expected::Exists(true)),
                Some(t) if t.max == Some(0) => Ok(Expected::Exists(false)),
                _ => fail("min 1 or max 0"),
            },
        }
    }
}

/// The node a discriminator path leads to, from a slice.
fn target<'n>(node: &'n Node, steps: &[Step]) -> Option<&'n Node> {
    let mut node = node;
    for step in steps {
        node = match step {
            Step::Child(name) => node.children.iter().find(|c| c.name == *name)?,
            Step::OfType(_) => node,
            Step::Extension(url) => {
                let extension = node.children.iter().find(|c| c.name == "extension")?;
                &extension
                    .slices
                    .iter()
                    .find(|s| extension_url(&s.node) == Some(url.as_str()))?
                    .node
            }
        };
    }
    Some(node)
}

/// The value at a discriminator path inside a fixed or pattern value higher up: `system`
/// under a slice with `patternIdentifier`, `coding.code` under a `patternCodeableConcept`.
fn from_ancestor(node: &Node, steps: &[Step]) -> Option<Expected> {
    let mut found: Option<(&Value, bool, usize)> = None;
    let mut node = node;
    for (i, step) in steps.iter().enumerate() {
        if let Some(v) = &node.fixed {
            found = Some((v, true, i));
        } else if let Some(v) = &node.pattern {
            found = Some((v, false, i));
        }
        match step {
            Step::Child(name) => match node.children.iter().find(|c| c.name == *name) {
                Some(child) => node = child,
                None => break,
            },
            Step::OfType(_) => {}
            Step::Extension(_) => return None,
        }
    }
    let (value, fixed, from) = found?;
    let mut values = vec![value];
    for step in &steps[from..] {
        let Step::Child(name) = step else { continue };
        values = values
            .into_iter()
            .filter_map(|v| v.get(name.as_str()))
            .flat_map(|v| match v {
                Value::Array(items) => items.iter().collect::<Vec<_>>(),
                v => vec![v],
            })
            .collect();
    }
    match values.as_slice() {
        [one] if fixed => Some(Expected::Fixed((*one).clone())),
        [one] => Some(Expected::Pattern((*one).clone())),
        _ => None,
    }
}

/// The url an extension slice fixes: its `url` child's fixed value, or its definition.
pub(super) fn extension_url(node: &Node) -> Option<&str> {
    node.children
        .iter()
        .find(|c| c.name == "url")
        .and_then(|c| c.fixed.as_ref())
        .and_then(Value::as_str)
        .or(node.extension_url.as_deref())
}

fn base_path_of(id: &str) -> Vec<String> {
    id.split('.')
        .skip(1)
        .map(|s| s.split_once(':').map_or(s, |(name, _)| name).to_string())
        .collect()
}

fn capitalized(type_name: &str) -> String {
    let mut chars = type_name.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn new_node(def: &'static ElementDef, segment: &str, id: &str) -> Node {
    let (name, choice) = match segment.strip_suffix("[x]") {
        Some(name) => (name, true),
        None => (segment, false),
    };
    let variants = def
        .types
        .iter()
        .map(|t| {
            let key = if choice {
                format!("{name}{}", capitalized(t))
            } else {
                name.to_string()
            };
            Variant {
                underscore: format!("_{key}"),
                key,
                type_name: t.clone(),
                primitive: Primitive::from_name(t).is_some()
                    || t.starts_with("http://hl7.org/fhirpath/System."),
            }
        })
        .collect::<Vec<_>>();
    let variants = if variants.is_empty() {
        // A content reference (`Questionnaire.item.item`): a backbone element.
        vec![Variant {
            key: name.to_string(),
            underscore: format!("_{name}"),
            type_name: "BackboneElement".to_string(),
            primitive: false,
        }]
    } else {
        variants
    };
    Node {
        id: id.to_string(),
        segment: segment.to_string(),
        name: name.to_string(),
        choice,
        repeats: def.max.parse::<u32>().is_ok_and(|m| m > 1) || def.max == "*",
        variants,
        ..Node::default()
    }
}

fn slice_node<'n>(
    node: &'n mut Node,
    name: &str,
    id: &str,
    implied_type: Option<String>,
) -> &'n mut Node {
    let pos = match node.slices.iter().position(|s| s.name == name) {
        Some(pos) => pos,
        None => {
            let slice = Node {
                id: id.to_string(),
                segment: node.segment.clone(),
                name: node.name.clone(),
                choice: node.choice,
                repeats: node.repeats,
                variants: node
                    .variants
                    .iter()
                    .map(|v| Variant {
                        key: v.key.clone(),
                        underscore: v.underscore.clone(),
                        type_name: v.type_name.clone(),
                        primitive: v.primitive,
                    })
                    .collect(),
                types: implied_type.map(|t| vec![t]),
                ..Node::default()
            };
            node.slices.push(Slice {
                name: name.to_string(),
                node: slice,
                expected: Vec::new(),
            });
            node.slices.len() - 1
        }
    };
    &mut node.slices[pos].node
}

fn node_binding(node: &mut Node, base: Option<&'static ElementDef>, binding: &Value) {
    let (Some(strength), Some(value_set)) = (
        binding.get("strength").and_then(Value::as_str),
        binding.get("valueSet").and_then(Value::as_str),
    ) else {
        return;
    };
    let strength = match strength {
        "required" => Strength::Required,
        "extensible" => Strength::Extensible,
        _ => return,
    };
    let Some(vs) = MODEL.value_set(value_set) else {
        return;
    };
    let same_as_base = base.and_then(|b| b.binding.as_ref()).is_some_and(|b| {
        MODEL.value_set(&b.value_set) == Some(vs)
            && (b.strength == "required" || strength == Strength::Extensible)
    });
    if !same_as_base {
        node.binding = Some((strength, vs));
    }
}

fn parse_slicing(slicing: &Value) -> Result<Slicing, String> {
    let Value::Object(slicing) = slicing else {
        return Err("slicing must be an object".to_string());
    };
    let rules = match slicing.get("rules").and_then(Value::as_str) {
        Some("closed") => Rules::Closed,
        Some("openAtEnd") => Rules::OpenAtEnd,
        Some("open") | None => Rules::Open,
        Some(other) => return Err(format!("unknown slicing rules '{other}'")),
    };
    let ordered = slicing
        .get("ordered")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut discriminators = Vec::new();
    if let Some(list) = slicing.get("discriminator") {
        let Value::Array(list) = list else {
            return Err("slicing.discriminator must be an array".to_string());
        };
        for d in list {
            let (Some(kind), Some(path)) = (
                d.get("type").and_then(Value::as_str),
                d.get("path").and_then(Value::as_str),
            ) else {
                return Err("a discriminator needs a type and a path".to_string());
            };
            let kind = match kind {
                "value" => DiscriminatorKind::Value,
                "pattern" => DiscriminatorKind::Pattern,
                "type" => DiscriminatorKind::Type,
                "exists" => DiscriminatorKind::Exists,
                other => {
                    return Err(format!(
                        "discriminator type '{other}' is not supported (value, pattern, type, exists are)"
                    ));
                }
            };
            discriminators.push(Discriminator {
                kind,
                text: path.to_string(),
                steps: parse_path(path)?,
            });
        }
    }
    if discriminators.is_empty() {
        return Err("slicing without discriminators is not supported".to_string());
    }
    Ok(Slicing {
        discriminators,
        rules,
        ordered,
    })
}

/// A discriminator path: `$this`, `url`, `code.coding`, `value.ofType(Quantity)`,
/// `extension('http://x').value`.
fn parse_path(path: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut rest = path.trim();
    if rest.len() > 512 {
        return Err("discriminator path too long".to_string());
    }
    while !rest.is_empty() {
        let (token, after) = split_token(rest)?;
        rest = after;
        if token == "$this" {
            continue;
        }
        if let Some(inner) = token
            .strip_prefix("ofType(")
            .and_then(|t| t.strip_suffix(')'))
        {
            steps.push(Step::OfType(inner.trim().to_string()));
        } else if let Some(inner) = token
            .strip_prefix("extension(")
            .and_then(|t| t.strip_suffix(')'))
        {
            let url = inner.trim().trim_matches('\'');
            steps.push(Step::Extension(url.to_string()));
        } else if !token.is_empty() && token.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            steps.push(Step::Child(token.to_string()));
        } else {
            return Err(format!(
                "the discriminator path '{path}' is not supported ('{token}')"
            ));
        }
    }
    Ok(steps)
}

/// The next `.`-separated token, not splitting inside parentheses or quotes.
fn split_token(text: &str) -> Result<(&str, &str), String> {
    let mut depth = 0usize;
    let mut quoted = false;
    for (i, c) in text.char_indices() {
        match c {
            '\'' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            '.' if !quoted && depth == 0 => return Ok((&text[..i], &text[i + 1..])),
            _ => {}
        }
    }
    if quoted || depth != 0 {
        return Err(format!("unbalanced discriminator path '{text}'"));
    }
    Ok((text, ""))
}
