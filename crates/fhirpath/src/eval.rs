//! The evaluator: walks the compiled tree over collections of items.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use crate::Error;
use crate::ast::{BinOp, Expr, Func, Literal, Name, TypeSpec};
use crate::env::{Environment, Variable};
use crate::model::{self, Child, FhirType, Lookup};
use crate::ops;
use crate::temporal::DateTime;
use crate::value::{Collection, Item, NULL, Node, Quantity};

/// Most items any intermediate collection may hold.
pub(crate) const MAX_ITEMS: usize = 1_000_000;

pub(crate) struct Ctx<'a, 'e> {
    pub env: &'a Environment<'e>,
    pub root: &'a Value,
    pub context: Focus<'a>,
    now: std::cell::OnceCell<DateTime>,
}

/// The focus an evaluation starts with: usually one resource, held without allocating.
pub(crate) enum Focus<'a> {
    One(Item<'a>),
    Many(Collection<'a>),
}

impl<'a> Focus<'a> {
    pub(crate) fn as_slice(&self) -> &[Item<'a>] {
        match self {
            Focus::One(item) => std::slice::from_ref(item),
            Focus::Many(items) => items,
        }
    }
}

/// `$this`, `$index` and `$total` of the innermost iterating function.
#[derive(Clone, Copy, Default)]
pub(crate) struct Scope<'s, 'a> {
    pub this: Option<&'s Item<'a>>,
    pub index: Option<usize>,
    pub total: Option<&'s Collection<'a>>,
}

pub(crate) fn evaluate<'a>(
    expr: &Expr,
    resource: &'a Value,
    focus: Focus<'a>,
    env: &'a Environment<'_>,
) -> Result<Collection<'a>, Error> {
    let ctx = Ctx {
        env,
        root: resource,
        context: focus,
        now: std::cell::OnceCell::new(),
    };
    ctx.eval(expr, ctx.context.as_slice(), Scope::default())
}

fn now_utc() -> DateTime {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let (year, month, day) = crate::temporal::civil_from_days(days);
    DateTime {
        year: i32::try_from(year).unwrap_or(1970),
        month,
        day,
        hour: (rem / 3_600_000) as u8,
        minute: (rem / 60_000 % 60) as u8,
        second: (rem / 1000 % 60) as u8,
        millisecond: (rem % 1000) as u16,
        precision: crate::temporal::Precision::Millisecond,
        offset_minutes: Some(0),
    }
}

pub(crate) fn literal<'a>(lit: &Literal) -> Option<Item<'a>> {
    Some(match lit {
        Literal::Empty => return None,
        Literal::Boolean(b) => Item::Boolean(*b),
        Literal::String(s) => Item::String(Cow::Owned(s.clone())),
        Literal::Integer(i) => Item::Integer(*i),
        Literal::Decimal(d) => Item::Decimal(*d),
        Literal::Date(d) => Item::Date(*d),
        Literal::DateTime(d) => Item::DateTime(*d),
        Literal::Time(t) => Item::Time(*t),
        Literal::Quantity(quantity) => Item::Quantity(Quantity {
            value: quantity.0,
            unit: quantity.1.clone(),
        }),
    })
}

pub(crate) fn check_size(len: usize) -> Result<(), Error> {
    if len > MAX_ITEMS {
        Err(Error::Execution(format!(
            "collection larger than {MAX_ITEMS} items"
        )))
    } else {
        Ok(())
    }
}

/// The single boolean of a collection, for `and`/`or`/`where`: `None` is empty.
pub(crate) fn singleton_bool(items: &Collection<'_>) -> Result<Option<bool>, Error> {
    match items.as_slice() {
        [] => Ok(None),
        [item] => match item.prim() {
            Some(crate::value::Prim::Boolean(b)) => Ok(Some(b)),
            // A single non-boolean item counts as true.
            _ => Ok(Some(true)),
        },
        _ => Err(Error::Execution(
            "expected a single boolean, got a collection".into(),
        )),
    }
}

impl<'a> Ctx<'a, '_> {
    /// The clock for `now()`, `today()` and `timeOfDay()`: read once per evaluation.
    pub(crate) fn now(&self) -> DateTime {
        *self
            .now
            .get_or_init(|| self.env.now.unwrap_or_else(now_utc))
    }

    pub(crate) fn eval(
        &self,
        expr: &Expr,
        focus: &[Item<'a>],
        scope: Scope<'_, 'a>,
    ) -> Result<Collection<'a>, Error> {
        // The frequent kinds of node; the others are in `eval_other`, which keeps this
        // recursive function's frame small.
        match expr {
            Expr::Identifier(name) => self.members(focus, name, true),
            Expr::Member { target, name } => {
                if self.env.strict {
                    check_member_of_cast(target, name)?;
                }
                let input = self.eval_target(target, focus, scope)?;
                self.members(&input, name, false)
            }
            Expr::Call {
                target,
                func,
                args,
                type_arg,
                regex,
            } => self.eval_call(
                target.as_deref(),
                *func,
                args,
                type_arg.as_deref(),
                regex.as_deref(),
                focus,
                scope,
            ),
            Expr::Binary { op, left, right } => self.binary(*op, left, right, focus, scope),
            Expr::Guarded { ty, expr } => {
                // The path's first step is empty for a resource of another type (unless strict
                // mode makes that an error), and so is the rest of it.
                if !self.env.strict
                    && let [Item::Node(node)] = focus
                    && node.fhir_type.is_resource()
                    && !node.fhir_type.derives_from_id(*ty)
                {
                    return Ok(Vec::new());
                }
                self.eval(expr, focus, scope)
            }
            _ => self.eval_other(expr, focus, scope),
        }
    }

    #[inline(never)]
    fn eval_other(
        &self,
        expr: &Expr,
        focus: &[Item<'a>],
        scope: Scope<'_, 'a>,
    ) -> Result<Collection<'a>, Error> {
        match expr {
            Expr::Literal(lit) => Ok(literal(lit).into_iter().collect()),
            Expr::This => Ok(match scope.this {
                Some(this) => vec![this.clone()],
                None => focus.to_vec(),
            }),
            Expr::Index => Ok(scope
                .index
                .map(|i| Item::Integer(i64::try_from(i).unwrap_or(i64::MAX)))
                .into_iter()
                .collect()),
            Expr::Total => Ok(scope.total.cloned().unwrap_or_default()),
            Expr::Variable(name) => self.variable(name),
            Expr::Indexer { target, index } => {
                if self.env.strict && unordered(target) {
                    return Err(Error::Semantic(
                        "indexing an unordered collection (children()/descendants())".into(),
                    ));
                }
                let input = self.eval(target, focus, scope)?;
                let index = self.eval(index, focus, scope)?;
                let index = match index.as_slice() {
                    [] => return Ok(Vec::new()),
                    [item] => match item.prim() {
                        Some(crate::value::Prim::Integer(i)) => i,
                        _ => return Err(Error::Execution("index must be an integer".into())),
                    },
                    _ => return Err(Error::Execution("index must be a single integer".into())),
                };
                Ok(usize::try_from(index)
                    .ok()
                    .and_then(|i| input.into_iter().nth(i))
                    .into_iter()
                    .collect())
            }
            Expr::Negate(operand) => {
                let value = self.eval(operand, focus, scope)?;
                match value.as_slice() {
                    [] => Ok(Vec::new()),
                    [item] => Ok(vec![negate(item)?]),
                    _ => Err(Error::Execution("cannot negate a collection".into())),
                }
            }
            Expr::Is(operand, spec) => {
                let value = self.eval(operand, focus, scope)?;
                match value.as_slice() {
                    [] => Ok(Vec::new()),
                    [item] => Ok(vec![Item::Boolean(is_type(item, spec)?)]),
                    _ => Err(Error::Execution("'is' needs a single item".into())),
                }
            }
            Expr::As(operand, spec) => {
                let value = self.eval(operand, focus, scope)?;
                match value.as_slice() {
                    [] => Ok(Vec::new()),
                    [item] => Ok(if as_type(item, spec)? {
                        value
                    } else {
                        Vec::new()
                    }),
                    _ => Err(Error::Execution("'as' needs a single item".into())),
                }
            }
            Expr::Identifier(_)
            | Expr::Member { .. }
            | Expr::Call { .. }
            | Expr::Binary { .. }
            | Expr::Guarded { .. } => self.eval(expr, focus, scope),
        }
    }

    /// Evaluates the target of `.name`: a type name that every focus item is (the `Patient`
    /// of `Patient.name` on a Patient) is the focus itself, borrowed rather than copied.
    fn eval_target<'f>(
        &self,
        target: &Expr,
        focus: &'f [Item<'a>],
        scope: Scope<'_, 'a>,
    ) -> Result<Cow<'f, [Item<'a>]>, Error> {
        if let Expr::Identifier(name) = target
            && let Some(ty) = name.type_id
            && !focus.is_empty()
            && focus.iter().all(|item| {
                matches!(item, Item::Node(node)
                    if node.fhir_type.is_resource() && node.fhir_type.derives_from_id(ty))
            })
        {
            // What `members` gives: each item is a resource of that type.
            return Ok(Cow::Borrowed(focus));
        }
        self.eval(target, focus, scope).map(Cow::Owned)
    }

    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    fn eval_call(
        &self,
        target: Option<&Expr>,
        func: Func,
        args: &[Expr],
        type_arg: Option<&TypeSpec>,
        regex: Option<&regex::Regex>,
        focus: &[Item<'a>],
        scope: Scope<'_, 'a>,
    ) -> Result<Collection<'a>, Error> {
        if self.env.strict
            && matches!(
                func,
                Func::First | Func::Last | Func::Tail | Func::Skip | Func::Take
            )
            && target.is_some_and(unordered)
        {
            return Err(Error::Semantic(format!(
                "{}() on an unordered collection (children()/descendants())",
                func.name()
            )));
        }
        let (input, explicit_target) = match target {
            Some(target) => (self.eval(target, focus, scope)?, true),
            None => (
                match scope.this {
                    Some(this) => vec![this.clone()],
                    None => focus.to_vec(),
                },
                false,
            ),
        };
        let call = crate::functions::Call {
            func,
            args,
            type_arg,
            regex,
            focus,
            scope,
            explicit_target,
            values: Vec::new(),
        };
        self.call(&call, input)
    }

    fn variable(&self, name: &str) -> Result<Collection<'a>, Error> {
        let resource = || vec![Item::Node(Node::resource(self.root))];
        let string = |s: &'static str| Ok(vec![Item::String(Cow::Borrowed(s))]);
        match name {
            "resource" | "rootResource" => Ok(resource()),
            "context" => Ok(self.context.as_slice().to_vec()),
            "ucum" => string("http://unitsofmeasure.org"),
            "sct" => string("http://snomed.info/sct"),
            "loinc" => string("http://loinc.org"),
            _ => {
                if let Some(variable) = self.env.variables.get(name) {
                    let mut out = Vec::new();
                    push_variable(variable, &mut out);
                    return Ok(out);
                }
                if let Some(rest) = name.strip_prefix("vs-") {
                    return Ok(vec![Item::String(Cow::Owned(format!(
                        "http://hl7.org/fhir/ValueSet/{rest}"
                    )))]);
                }
                if let Some(rest) = name.strip_prefix("ext-") {
                    return Ok(vec![Item::String(Cow::Owned(format!(
                        "http://hl7.org/fhir/StructureDefinition/{rest}"
                    )))]);
                }
                Err(Error::Semantic(format!("unknown variable %{name}")))
            }
        }
    }

    #[inline(never)]
    fn binary(
        &self,
        op: BinOp,
        left: &Expr,
        right: &Expr,
        focus: &[Item<'a>],
        scope: Scope<'_, 'a>,
    ) -> Result<Collection<'a>, Error> {
        let boolean = |b: Option<bool>| Ok(b.map(Item::Boolean).into_iter().collect());
        match op {
            BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Implies => {
                let l = singleton_bool(&self.eval(left, focus, scope)?)?;
                // Short-circuit where the left side decides.
                match (op, l) {
                    (BinOp::And, Some(false)) => return boolean(Some(false)),
                    (BinOp::Or, Some(true)) => return boolean(Some(true)),
                    (BinOp::Implies, Some(false)) => return boolean(Some(true)),
                    _ => {}
                }
                let r = singleton_bool(&self.eval(right, focus, scope)?)?;
                boolean(match op {
                    BinOp::And => match (l, r) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                    BinOp::Or => match (l, r) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    BinOp::Xor => match (l, r) {
                        (Some(a), Some(b)) => Some(a != b),
                        _ => None,
                    },
                    _ => match (l, r) {
                        (Some(true), r) => r,
                        (None, Some(true)) => Some(true),
                        _ => None,
                    },
                })
            }
            BinOp::Union => {
                let mut out = Vec::new();
                self.union_into(left, right, focus, scope, &mut out)?;
                Ok(out)
            }
            _ => {
                let l = self.eval(left, focus, scope)?;
                let r = self.eval(right, focus, scope)?;
                binary_values(op, l, r)
            }
        }
    }

    /// Evaluates `left | right` into `out`; a chain `a | b | c | …` (parsed as
    /// `((a | b) | c) | …`) goes into one collection rather than one per `|`.
    fn union_into(
        &self,
        left: &Expr,
        right: &Expr,
        focus: &[Item<'a>],
        scope: Scope<'_, 'a>,
        out: &mut Collection<'a>,
    ) -> Result<(), Error> {
        if let Expr::Binary {
            op: BinOp::Union,
            left: inner_left,
            right: inner_right,
        } = left
        {
            self.union_into(inner_left, inner_right, focus, scope, out)?;
        } else {
            // The first `|` of the chain (`out` is still empty).
            let l = self.eval(left, focus, scope)?;
            let r = self.eval(right, focus, scope)?;
            let total = l.len() + r.len();
            check_pairs(total, total)?;
            push_distinct(out, l);
            push_distinct(out, r);
            return Ok(());
        }
        let r = self.eval(right, focus, scope)?;
        let total = out.len() + r.len();
        check_pairs(total, total)?;
        push_distinct(out, r);
        Ok(())
    }

    /// Children named `name` of every item.
    ///
    /// In strict mode, naming an element that no item's type has is a semantic error
    /// (a typo), unless some item has it or is of unknown type.
    fn members(
        &self,
        input: &[Item<'a>],
        name: &Name,
        at_root: bool,
    ) -> Result<Collection<'a>, Error> {
        let mut out = Vec::new();
        let mut missing_on = None;
        let mut defined = false;
        for item in input {
            if self.member(item, name, at_root, &mut out)? {
                defined = true;
            } else if missing_on.is_none() {
                missing_on = Some(item.type_name().1);
            }
            check_size(out.len())?;
        }
        match missing_on {
            Some(type_name) if !defined => Err(Error::Semantic(format!(
                "{type_name} has no element '{}'",
                name.text
            ))),
            _ => Ok(out),
        }
    }

    /// Appends the children of `item` named `name`; false when its type has no such element.
    pub(crate) fn member(
        &self,
        item: &Item<'a>,
        name: &Name,
        at_root: bool,
        out: &mut Collection<'a>,
    ) -> Result<bool, Error> {
        match item {
            Item::Node(node) => {
                // Nodes typed as resources come from a `resourceType`.
                let is_resource =
                    || node.fhir_type.is_resource() || node.value.get("resourceType").is_some();
                if name.capital && is_resource() {
                    if node.fhir_type.derives_from(name, name.type_id) {
                        out.push(item.clone());
                        return Ok(true);
                    }
                    if name.type_id.is_some() || at_root {
                        if self.env.strict {
                            return Err(Error::Semantic(format!(
                                "'{name}' does not match the context type {}",
                                node.fhir_type.name
                            )));
                        }
                        return Ok(true);
                    }
                }
                if node_children(node, name, out) {
                    return Ok(true);
                }
                // `valueQuantity` for `value`: never right in FHIRPath, so always an error.
                if let Some(base) = choice_base(node, name) {
                    return Err(Error::Semantic(format!(
                        "'{name}' names a choice type; use '{base}' (with ofType/as)"
                    )));
                }
                // Other unknown names are errors only in strict mode (see `members`);
                // resources inside resources (contained, Bundle entries) are polymorphic.
                Ok(!self.env.strict || (is_resource() && !std::ptr::eq(node.value, self.root)))
            }
            Item::TypeInfo {
                namespace,
                name: type_name,
            } => {
                match &**name {
                    "namespace" => out.push(Item::String(Cow::Borrowed(namespace))),
                    "name" => out.push(Item::String(Cow::Owned(type_name.clone()))),
                    _ => {}
                }
                Ok(true)
            }
            _ => Ok(true),
        }
    }
}

fn push_variable<'a>(variable: &'a Variable, out: &mut Collection<'a>) {
    match variable {
        Variable::Json(value) => {
            if value.get("resourceType").is_some() {
                out.push(Item::Node(Node::resource(value)));
            } else {
                out.push(Item::Node(Node {
                    value,
                    extension: None,
                    fhir_type: FhirType::UNKNOWN,
                }));
            }
        }
        Variable::String(s) => out.push(Item::String(Cow::Borrowed(s))),
        Variable::Integer(i) => out.push(Item::Integer(*i)),
        Variable::Boolean(b) => out.push(Item::Boolean(*b)),
        Variable::List(list) => {
            for v in list {
                push_variable(v, out);
            }
        }
    }
}

fn negate<'a>(item: &Item<'_>) -> Result<Item<'a>, Error> {
    match item.prim() {
        Some(crate::value::Prim::Integer(i)) => i
            .checked_neg()
            .map(Item::Integer)
            .ok_or_else(|| Error::Execution("arithmetic overflow".into())),
        Some(crate::value::Prim::Decimal(d)) if d.is_zero() => Ok(Item::Decimal(d.abs())),
        Some(crate::value::Prim::Decimal(d)) => Ok(Item::Decimal(-d)),
        Some(crate::value::Prim::Quantity(value, unit)) => Ok(Item::Quantity(Quantity {
            value: -value,
            unit: unit.into_owned(),
        })),
        _ => Err(Error::Execution(
            "can only negate numbers and quantities".into(),
        )),
    }
}

/// Pushes nodes for a JSON value (array or single) with its `_name` sibling.
pub(crate) fn push_nodes<'a>(
    value: Option<&'a Value>,
    extension: Option<&'a Value>,
    fhir_type: impl Fn(&'a Value) -> FhirType<'a>,
    out: &mut Collection<'a>,
) {
    match (value, extension) {
        (Some(Value::Array(values)), ext) => {
            let exts = ext.and_then(Value::as_array);
            let len = values.len().max(exts.map_or(0, Vec::len));
            for i in 0..len {
                let value = values.get(i).unwrap_or(&NULL);
                let extension = exts.and_then(|e| e.get(i)).filter(|e| !e.is_null());
                if value.is_null() && extension.is_none() {
                    continue;
                }
                out.push(Item::Node(Node {
                    value,
                    extension,
                    fhir_type: fhir_type(value),
                }));
            }
        }
        (Some(value), ext) if !value.is_null() => out.push(Item::Node(Node {
            value,
            extension: ext.filter(|e| !e.is_null()),
            fhir_type: fhir_type(value),
        })),
        (_, Some(Value::Array(exts))) => {
            for extension in exts.iter().filter(|e| !e.is_null()) {
                out.push(Item::Node(Node {
                    value: &NULL,
                    extension: Some(extension),
                    fhir_type: fhir_type(&NULL),
                }));
            }
        }
        (_, Some(extension)) if !extension.is_null() => out.push(Item::Node(Node {
            value: &NULL,
            extension: Some(extension),
            fhir_type: fhir_type(&NULL),
        })),
        _ => {}
    }
}

/// The `_name` sibling of `name` in `object`.
fn sibling<'a>(object: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    if object.len() <= SCAN_KEYS {
        let name = name.as_bytes();
        return object
            .iter()
            .find(|(key, _)| {
                let key = key.as_bytes();
                key.len() == name.len() + 1 && key[0] == b'_' && &key[1..] == name
            })
            .map(|(_, value)| value);
    }
    let mut buffer = [0u8; 96];
    let len = name.len() + 1;
    if len > buffer.len() {
        return object.get(&format!("_{name}"));
    }
    buffer[0] = b'_';
    buffer[1..len].copy_from_slice(name.as_bytes());
    match std::str::from_utf8(&buffer[..len]) {
        Ok(key) => object.get(key),
        Err(_) => None,
    }
}

/// Objects up to this many keys are scanned rather than hashed into.
const SCAN_KEYS: usize = 16;

/// `object[name]` and its `_name` sibling: one scan of a small object rather than two
/// hash lookups.
fn get_with_sibling<'a>(
    object: &'a serde_json::Map<String, Value>,
    name: &str,
) -> (Option<&'a Value>, Option<&'a Value>) {
    if object.len() > SCAN_KEYS {
        return (object.get(name), sibling(object, name));
    }
    let name = name.as_bytes();
    let Some(&first) = name.first() else {
        return (object.get(""), object.get("_"));
    };
    let (mut value, mut extension) = (None, None);
    // Lengths and first bytes rule out most keys before comparing whole keys.
    for (key, v) in object {
        let key = key.as_bytes();
        if key.len() == name.len() {
            if key[0] == first && key == name {
                value = Some(v);
            }
        } else if key.len() == name.len() + 1
            && key[0] == b'_'
            && key[1] == first
            && &key[1..] == name
        {
            extension = Some(v);
        }
    }
    (value, extension)
}

/// Children of a node named `name`, typed from the definitions; false when the type has no such element.
pub(crate) fn node_children<'a>(node: &Node<'a>, name: &Name, out: &mut Collection<'a>) -> bool {
    // A primitive's id and extensions live in its `_name` sibling.
    let object = match node.value {
        Value::Object(map) => Some(map),
        _ => node.extension.and_then(Value::as_object),
    };
    let Some(object) = object else {
        return true;
    };
    match model::child_by_symbol(&node.fhir_type, || name.symbol) {
        Lookup::Unknown => {
            let (value, extension) = get_with_sibling(object, name);
            push_nodes(value, extension, model::resource_type, out);
        }
        Lookup::Missing => return node.fhir_type.is_primitive() && &**name == "value",
        Lookup::Found(Child::Element { ty, .. }) => {
            let (value, extension) = get_with_sibling(object, name);
            push_nodes(value, extension, |v| ty.of(v), out);
        }
        Lookup::Found(choice @ Child::Choice { .. }) => {
            let name: &str = name;
            for (key, value) in object {
                let Some(suffix) = key.strip_prefix(name) else {
                    continue;
                };
                let Some(ty) = choice.choice(suffix) else {
                    continue;
                };
                push_nodes(Some(value), sibling(object, key), |v| ty.of(v), out);
            }
            // A choice primitive with only extensions: `_valueString`.
            for (key, value) in object {
                let Some(rest) = key.strip_prefix('_') else {
                    continue;
                };
                let Some(suffix) = rest.strip_prefix(name) else {
                    continue;
                };
                if object.contains_key(rest) {
                    continue;
                }
                let Some(ty) = choice.choice(suffix) else {
                    continue;
                };
                push_nodes(None, Some(value), |v| ty.of(v), out);
            }
        }
    }
    true
}

/// All children of a node, in JSON order.
pub(crate) fn all_children<'a>(node: &Node<'a>, out: &mut Collection<'a>) {
    let object = match node.value {
        Value::Object(map) => map,
        _ => match node.extension.and_then(Value::as_object) {
            Some(map) => map,
            None => return,
        },
    };
    for (key, value) in object {
        if key == "resourceType" {
            continue;
        }
        if let Some(rest) = key.strip_prefix('_') {
            if !object.contains_key(rest) {
                let name = choice_base(node, rest).unwrap_or(rest);
                node_children_key(node, name, rest, None, Some(value), out);
            }
            continue;
        }
        let name = choice_base(node, key).unwrap_or(key);
        node_children_key(node, name, key, Some(value), sibling(object, key), out);
    }
}

/// For a key such as `valueQuantity`, the choice element name `value`.
fn choice_base<'k>(node: &Node<'_>, key: &'k str) -> Option<&'k str> {
    if matches!(
        model::child(&node.fhir_type, key),
        Lookup::Found(Child::Element { .. }) | Lookup::Unknown
    ) {
        return None;
    }
    for (i, c) in key.char_indices().skip(1) {
        if c.is_ascii_uppercase()
            && let Lookup::Found(child) = model::child(&node.fhir_type, &key[..i])
            && child.choice(&key[i..]).is_some()
        {
            return Some(&key[..i]);
        }
    }
    None
}

fn node_children_key<'a>(
    node: &Node<'a>,
    name: &str,
    key: &str,
    value: Option<&'a Value>,
    extension: Option<&'a Value>,
    out: &mut Collection<'a>,
) {
    match model::child(&node.fhir_type, name) {
        Lookup::Found(Child::Element { ty, .. }) => push_nodes(value, extension, |v| ty.of(v), out),
        Lookup::Found(choice @ Child::Choice { .. }) => {
            let suffix = &key[name.len().min(key.len())..];
            match choice.choice(suffix) {
                Some(ty) => push_nodes(value, extension, |v| ty.of(v), out),
                None => push_nodes(value, extension, |_| FhirType::UNKNOWN, out),
            }
        }
        Lookup::Unknown | Lookup::Missing => {
            push_nodes(value, extension, model::resource_type, out);
        }
    }
}

/// Whether an expression yields a collection without a defined order (strict mode rejects
/// order-dependent functions on it).
fn unordered(expr: &Expr) -> bool {
    match expr {
        Expr::Call {
            func: Func::Children | Func::Descendants,
            ..
        } => true,
        Expr::Call {
            target: Some(target),
            func: Func::Where | Func::OfType | Func::Distinct | Func::Exclude | Func::Select,
            ..
        }
        | Expr::Member { target, .. } => unordered(target),
        _ => false,
    }
}

/// Strict mode: `(x as T).name` where `T` has no element `name` can never yield anything.
fn check_member_of_cast(target: &Expr, name: &str) -> Result<(), Error> {
    let spec = match target {
        Expr::As(_, spec) => spec.as_ref(),
        Expr::Call {
            func: Func::As | Func::OfType,
            type_arg: Some(spec),
            ..
        } => spec.as_ref(),
        _ => return Ok(()),
    };
    if spec.namespace.as_deref() == Some("System") {
        return Ok(());
    }
    let Some(fhir_type) = FhirType::named(&spec.name) else {
        return Ok(());
    };
    match model::child(&fhir_type, name) {
        Lookup::Missing if !fhir_type.is_primitive() => Err(Error::Semantic(format!(
            "{} has no element '{name}'",
            spec.name
        ))),
        _ => Ok(()),
    }
}

/// Checks that a type name exists.
pub(crate) fn check_type(spec: &TypeSpec) -> Result<(), Error> {
    if spec.known {
        Ok(())
    } else {
        Err(Error::Execution(format!("unknown type '{}'", spec.name)))
    }
}

/// `is`: the item's type is the named type or derives from it.
pub(crate) fn is_type(item: &Item<'_>, spec: &TypeSpec) -> Result<bool, Error> {
    check_type(spec)?;
    Ok(type_matches(item, spec, true))
}

/// `as`/`ofType`: exact FHIR primitive types; complex types and resources may derive.
pub(crate) fn as_type(item: &Item<'_>, spec: &TypeSpec) -> Result<bool, Error> {
    check_type(spec)?;
    Ok(type_matches(item, spec, false))
}

fn type_matches(item: &Item<'_>, spec: &TypeSpec, derive_primitives: bool) -> bool {
    let wanted_ns = spec.namespace.as_deref();
    let Item::Node(node) = item else {
        let (_, name) = item.type_name();
        return wanted_ns != Some("FHIR") && name == spec.name;
    };
    let fhir_type = &node.fhir_type;
    if wanted_ns == Some("System") || fhir_type.name.is_empty() {
        return false;
    }
    if fhir_type.name == spec.name {
        return true;
    }
    if fhir_type.is_primitive() && !derive_primitives {
        return false;
    }
    fhir_type.derives_from(&spec.name, spec.id)
}

fn compare_op(op: BinOp, ordering: Ordering) -> bool {
    match op {
        BinOp::Lt => ordering == Ordering::Less,
        BinOp::Gt => ordering == Ordering::Greater,
        BinOp::Le => ordering != Ordering::Greater,
        _ => ordering != Ordering::Less,
    }
}

/// Collection equality `=`: `None` when empty.
pub(crate) fn collections_equal(l: &Collection<'_>, r: &Collection<'_>) -> Option<bool> {
    if l.is_empty() || r.is_empty() {
        return None;
    }
    if l.len() != r.len() {
        return Some(false);
    }
    let mut result = Some(true);
    for (a, b) in l.iter().zip(r) {
        match ops::equals(a, b) {
            Some(true) => {}
            Some(false) => return Some(false),
            None => result = None,
        }
    }
    result
}

/// Collection equivalence `~`: order-independent.
pub(crate) fn collections_equivalent(l: &Collection<'_>, r: &Collection<'_>) -> bool {
    if l.len() != r.len() {
        return false;
    }
    let mut used = vec![false; r.len()];
    for a in l {
        let found = r
            .iter()
            .enumerate()
            .position(|(i, b)| !used[i] && ops::equivalent(a, b));
        match found {
            Some(i) => used[i] = true,
            None => return false,
        }
    }
    true
}

/// Most item comparisons one set operation (union, distinct, intersect…) may make.
pub(crate) const MAX_COMPARISONS: usize = 20_000_000;

/// Fails set operations whose pairwise comparisons would take too long.
pub(crate) fn check_pairs(left: usize, right: usize) -> Result<(), Error> {
    if left.saturating_mul(right) > MAX_COMPARISONS {
        Err(Error::Execution(format!(
            "set operation on {left} x {right} items is too large"
        )))
    } else {
        Ok(())
    }
}

/// Membership by equality, as `in`/`contains`/`distinct` use it.
pub(crate) fn contains_item(collection: &[Item<'_>], item: &Item<'_>) -> bool {
    collection
        .iter()
        .any(|c| ops::equals(c, item) == Some(true))
}

/// Appends the items not yet in `out` (by equality), as union does.
pub(crate) fn push_distinct<'a>(out: &mut Collection<'a>, items: Collection<'a>) {
    if out.is_empty() && items.len() == 1 {
        out.extend(items);
        return;
    }
    for item in items {
        if !contains_item(out, &item) {
            out.push(item);
        }
    }
}

pub(crate) fn binary_values<'a>(
    op: BinOp,
    l: Collection<'a>,
    r: Collection<'a>,
) -> Result<Collection<'a>, Error> {
    let boolean = |b: Option<bool>| Ok(b.map(Item::Boolean).into_iter().collect());
    match op {
        BinOp::Union => {
            let total = l.len() + r.len();
            check_pairs(total, total)?;
            let mut out: Collection<'a> = Vec::with_capacity(total);
            push_distinct(&mut out, l);
            push_distinct(&mut out, r);
            Ok(out)
        }
        BinOp::Eq => boolean(collections_equal(&l, &r)),
        BinOp::Ne => boolean(collections_equal(&l, &r).map(|b| !b)),
        BinOp::Equiv | BinOp::NotEquiv => {
            check_pairs(l.len(), r.len())?;
            let equivalent = collections_equivalent(&l, &r);
            boolean(Some(equivalent == (op == BinOp::Equiv)))
        }
        BinOp::In | BinOp::Contains => {
            let (needle, haystack) = if op == BinOp::In { (l, r) } else { (r, l) };
            match needle.as_slice() {
                [] => Ok(Vec::new()),
                [item] => boolean(Some(contains_item(&haystack, item))),
                _ => Err(Error::Execution("membership needs a single item".into())),
            }
        }
        BinOp::Concat => {
            let text = |c: &Collection<'_>| -> Result<String, Error> {
                match c.as_slice() {
                    [] => Ok(String::new()),
                    [item] => Ok(item.to_string()),
                    _ => Err(Error::Execution("'&' needs single items".into())),
                }
            };
            Ok(vec![Item::String(Cow::Owned(text(&l)? + &text(&r)?))])
        }
        _ => {
            let (a, b) = match (l.as_slice(), r.as_slice()) {
                ([], _) | (_, []) => return Ok(Vec::new()),
                ([a], [b]) => (a, b),
                _ => {
                    return Err(Error::Execution(format!(
                        "operator {op:?} needs single items"
                    )));
                }
            };
            match op {
                BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                    boolean(ops::compare(a, b)?.map(|o| compare_op(op, o)))
                }
                _ => Ok(ops::arithmetic(op, a, b)?.into_iter().collect()),
            }
        }
    }
}
