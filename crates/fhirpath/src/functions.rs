//! The function library.

use std::borrow::Cow;
use std::cmp::Ordering;

use regex::Regex;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, MathematicalOps, RoundingStrategy};
use serde_json::Value;

use crate::Error;
use crate::ast::{BinOp, Expr, Func, Name, TypeSpec};
use crate::eval::{self, Ctx, Scope, check_pairs, check_size, contains_item, singleton_bool};
use crate::model;
use crate::temporal::{self, DateTime, Precision};
use crate::ucum;
use crate::value::{Collection, Item, Node, Prim, Quantity, parse_decimal};

pub(crate) struct Call<'c, 's, 'a> {
    pub func: Func,
    pub args: &'c [Expr],
    pub type_arg: Option<&'c TypeSpec>,
    pub regex: Option<&'c Regex>,
    pub focus: &'s [Item<'a>],
    pub scope: Scope<'s, 'a>,
    pub explicit_target: bool,
    /// Arguments already evaluated (for functions that do not iterate).
    pub values: Vec<Collection<'a>>,
}

fn boolean<'a>(b: bool) -> Result<Collection<'a>, Error> {
    Ok(vec![Item::Boolean(b)])
}

fn maybe<'a>(item: Option<Item<'a>>) -> Result<Collection<'a>, Error> {
    Ok(item.into_iter().collect())
}

fn single<'x, 'a>(input: &'x Collection<'a>, func: Func) -> Result<Option<&'x Item<'a>>, Error> {
    match input.as_slice() {
        [] => Ok(None),
        [item] => Ok(Some(item)),
        _ => Err(Error::Execution(format!(
            "{}() needs a single item, got {}",
            func.name(),
            input.len()
        ))),
    }
}

/// The string value of a single string input: an error for non-strings.
fn string_of<'x>(item: &'x Item<'_>, func: Func) -> Result<Cow<'x, str>, Error> {
    match item.prim() {
        Some(Prim::String(s)) => Ok(s),
        _ => Err(Error::Execution(format!(
            "{}() needs a string, got {}",
            func.name(),
            item.type_name().1
        ))),
    }
}

fn round_result(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(16, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

impl<'a> Ctx<'a, '_> {
    fn arg(&self, call: &Call<'_, '_, 'a>, i: usize) -> Result<Collection<'a>, Error> {
        if let Some(value) = call.values.get(i) {
            return Ok(value.clone());
        }
        match call.args.get(i) {
            Some(expr) => self.eval(expr, call.focus, call.scope),
            None => Ok(Vec::new()),
        }
    }

    fn string_arg(&self, call: &Call<'_, '_, 'a>, i: usize) -> Result<Option<String>, Error> {
        let value = self.arg(call, i)?;
        match single(&value, call.func)? {
            None => Ok(None),
            Some(item) => Ok(Some(string_of(item, call.func)?.into_owned())),
        }
    }

    fn integer_arg(&self, call: &Call<'_, '_, 'a>, i: usize) -> Result<Option<i64>, Error> {
        let value = self.arg(call, i)?;
        match single(&value, call.func)? {
            None => Ok(None),
            Some(item) => match item.prim() {
                Some(Prim::Integer(n)) => Ok(Some(n)),
                _ => Err(Error::Execution(format!(
                    "{}() needs an integer argument",
                    call.func.name()
                ))),
            },
        }
    }

    /// Evaluates `expr` once per item, with `$this` and `$index` set.
    fn per_item(
        &self,
        expr: &Expr,
        input: &Collection<'a>,
        call: &Call<'_, '_, 'a>,
        mut each: impl FnMut(usize, &Item<'a>, Collection<'a>) -> Result<bool, Error>,
    ) -> Result<(), Error> {
        for (i, item) in input.iter().enumerate() {
            let scope = Scope {
                this: Some(item),
                index: Some(i),
                total: call.scope.total,
            };
            let result = self.eval(expr, std::slice::from_ref(item), scope)?;
            if !each(i, item, result)? {
                break;
            }
        }
        Ok(())
    }

    /// Calls a function. Functions that evaluate their arguments per item (or lazily) have
    /// their own small frames; the others get their arguments evaluated here first, so the
    /// big `call_eager` frame never sits under a recursive evaluation (deep expressions stay
    /// within a small stack even in debug builds).
    pub(crate) fn call(
        &self,
        call: &Call<'_, '_, 'a>,
        input: Collection<'a>,
    ) -> Result<Collection<'a>, Error> {
        match call.func {
            Func::Exists | Func::All | Func::Where | Func::Select | Func::Repeat => {
                self.call_iterating(call, input)
            }
            Func::Iif => self.iif(call, input),
            Func::Sort => self.sort(call, input),
            Func::Trace => self.trace(call, input),
            Func::Aggregate => self.aggregate(call, input),
            _ => self.call_with_values(call, input),
        }
    }

    /// Evaluates the arguments, then calls a function that does not iterate.
    #[inline(never)]
    fn call_with_values(
        &self,
        call: &Call<'_, '_, 'a>,
        input: Collection<'a>,
    ) -> Result<Collection<'a>, Error> {
        let mut values = Vec::with_capacity(call.args.len());
        if call.type_arg.is_none() {
            for arg in call.args {
                values.push(self.eval(arg, call.focus, call.scope)?);
            }
        }
        let call = Call {
            func: call.func,
            args: call.args,
            type_arg: call.type_arg,
            regex: call.regex,
            focus: call.focus,
            scope: call.scope,
            explicit_target: call.explicit_target,
            values,
        };
        self.call_eager(&call, input)
    }

    #[inline(never)]
    fn call_iterating(
        &self,
        call: &Call<'_, '_, 'a>,
        input: Collection<'a>,
    ) -> Result<Collection<'a>, Error> {
        match call.func {
            Func::Exists => match call.args.first() {
                None => boolean(!input.is_empty()),
                Some(criteria) => {
                    let mut found = false;
                    self.per_item(criteria, &input, call, |_, _, r| {
                        found = singleton_bool(&r)? == Some(true);
                        Ok(!found)
                    })?;
                    boolean(found)
                }
            },
            Func::All => {
                let Some(criteria) = call.args.first() else {
                    return boolean(true);
                };
                let mut all = true;
                self.per_item(criteria, &input, call, |_, _, r| {
                    all = singleton_bool(&r)? == Some(true);
                    Ok(all)
                })?;
                boolean(all)
            }
            Func::Where => {
                let Some(criteria) = call.args.first() else {
                    return Ok(input);
                };
                let mut out = Vec::new();
                self.per_item(criteria, &input, call, |_, item, r| {
                    if singleton_bool(&r)? == Some(true) {
                        out.push(item.clone());
                    }
                    Ok(true)
                })?;
                Ok(out)
            }
            Func::Select => {
                let Some(projection) = call.args.first() else {
                    return Ok(input);
                };
                let mut out = Vec::new();
                self.per_item(projection, &input, call, |_, _, r| {
                    out.extend(r);
                    check_size(out.len())?;
                    Ok(true)
                })?;
                Ok(out)
            }
            Func::Repeat => {
                let Some(projection) = call.args.first() else {
                    return Ok(input);
                };
                // Nodes are the same when they are the same JSON value; System values by equality.
                let mut seen_nodes = std::collections::HashSet::new();
                let mut comparisons = 0usize;
                let mut out: Collection<'a> = Vec::new();
                let mut queue = input;
                while !queue.is_empty() {
                    let mut next = Vec::new();
                    self.per_item(projection, &queue, call, |_, _, r| {
                        for item in r {
                            let new = match &item {
                                Item::Node(node) => seen_nodes.insert((
                                    std::ptr::from_ref(node.value),
                                    node.extension.map(std::ptr::from_ref),
                                )),
                                other => {
                                    comparisons = comparisons.saturating_add(out.len());
                                    check_pairs(comparisons, 1)?;
                                    !contains_item(&out, other)
                                }
                            };
                            if new {
                                out.push(item.clone());
                                next.push(item);
                            }
                        }
                        check_size(out.len())?;
                        Ok(true)
                    })?;
                    queue = next;
                }
                Ok(out)
            }
            _ => Ok(Vec::new()),
        }
    }

    #[inline(never)]
    fn trace(
        &self,
        call: &Call<'_, '_, 'a>,
        input: Collection<'a>,
    ) -> Result<Collection<'a>, Error> {
        match call.func {
            Func::Trace => {
                if let Some(trace) = self.env.trace {
                    let name = self.string_arg(call, 0)?.unwrap_or_default();
                    let shown = match call.args.get(1) {
                        Some(projection) => {
                            let mut out = Vec::new();
                            self.per_item(projection, &input, call, |_, _, r| {
                                out.extend(r);
                                Ok(true)
                            })?;
                            out
                        }
                        None => input.clone(),
                    };
                    let text: Vec<String> = shown.iter().map(ToString::to_string).collect();
                    trace(&name, &text.join(", "));
                }
                Ok(input)
            }
            _ => Ok(Vec::new()),
        }
    }

    #[inline(never)]
    fn aggregate(
        &self,
        call: &Call<'_, '_, 'a>,
        input: Collection<'a>,
    ) -> Result<Collection<'a>, Error> {
        match call.func {
            Func::Aggregate => {
                let Some(aggregator) = call.args.first() else {
                    return Ok(Vec::new());
                };
                let mut total = self.arg(call, 1)?;
                for (i, item) in input.iter().enumerate() {
                    let scope = Scope {
                        this: Some(item),
                        index: Some(i),
                        total: Some(&total),
                    };
                    let next = self.eval(aggregator, std::slice::from_ref(item), scope)?;
                    total = next;
                }
                Ok(total)
            }
            _ => Ok(Vec::new()),
        }
    }

    #[inline(never)]
    fn call_eager(
        &self,
        call: &Call<'_, '_, 'a>,
        input: Collection<'a>,
    ) -> Result<Collection<'a>, Error> {
        let func = call.func;
        match func {
            Func::Empty => boolean(input.is_empty()),
            Func::AllTrue | Func::AnyTrue | Func::AllFalse | Func::AnyFalse => {
                let mut values = Vec::with_capacity(input.len());
                for item in &input {
                    match item.prim() {
                        Some(Prim::Boolean(b)) => values.push(b),
                        _ => {
                            return Err(Error::Execution(format!(
                                "{}() needs booleans",
                                func.name()
                            )));
                        }
                    }
                }
                boolean(match func {
                    Func::AllTrue => values.iter().all(|b| *b),
                    Func::AnyTrue => values.iter().any(|b| *b),
                    Func::AllFalse => values.iter().all(|b| !*b),
                    _ => values.iter().any(|b| !*b),
                })
            }
            Func::SubsetOf | Func::SupersetOf => {
                let other = self.arg(call, 0)?;
                check_pairs(input.len(), other.len())?;
                let (small, big) = if func == Func::SubsetOf {
                    (&input, &other)
                } else {
                    (&other, &input)
                };
                boolean(small.iter().all(|item| contains_item(big, item)))
            }
            Func::Count => Ok(vec![Item::Integer(
                i64::try_from(input.len()).unwrap_or(i64::MAX),
            )]),
            Func::Distinct => {
                check_pairs(input.len(), input.len())?;
                Ok(distinct(input))
            }
            Func::IsDistinct => {
                check_pairs(input.len(), input.len())?;
                let len = input.len();
                boolean(distinct(input).len() == len)
            }
            Func::OfType => {
                let spec = type_spec(call)?;
                let mut out = Vec::new();
                for item in input {
                    if eval::as_type(&item, spec)? {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            Func::Is | Func::As => {
                let spec = type_spec(call)?;
                match single(&input, func)? {
                    None => Ok(Vec::new()),
                    Some(item) if func == Func::Is => boolean(eval::is_type(item, spec)?),
                    Some(item) => Ok(if eval::as_type(item, spec)? {
                        input
                    } else {
                        Vec::new()
                    }),
                }
            }
            Func::Single => Ok(single(&input, func)?.cloned().into_iter().collect()),
            Func::First => Ok(input.into_iter().take(1).collect()),
            Func::Last => Ok(input.into_iter().last().into_iter().collect()),
            Func::Tail => Ok(input.into_iter().skip(1).collect()),
            Func::Skip | Func::Take => {
                let n = self.integer_arg(call, 0)?.unwrap_or(0);
                let n = usize::try_from(n.max(0)).unwrap_or(usize::MAX);
                Ok(if func == Func::Skip {
                    input.into_iter().skip(n).collect()
                } else {
                    input.into_iter().take(n).collect()
                })
            }
            Func::Intersect => {
                let other = self.arg(call, 0)?;
                check_pairs(input.len(), other.len() + input.len())?;
                let mut out = Vec::new();
                for item in input {
                    if contains_item(&other, &item) && !contains_item(&out, &item) {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            Func::Exclude => {
                let other = self.arg(call, 0)?;
                check_pairs(input.len(), other.len())?;
                Ok(input
                    .into_iter()
                    .filter(|item| !contains_item(&other, item))
                    .collect())
            }
            Func::Union => eval::binary_values(BinOp::Union, input, self.arg(call, 0)?),
            Func::Combine => {
                let mut out = input;
                out.extend(self.arg(call, 0)?);
                check_size(out.len())?;
                Ok(out)
            }
            Func::ToBoolean
            | Func::ToInteger
            | Func::ToDecimal
            | Func::ToString
            | Func::ToDate
            | Func::ToDateTime
            | Func::ToTime
            | Func::ToQuantity => {
                let Some(item) = single(&input, func)? else {
                    return Ok(Vec::new());
                };
                let unit = if func == Func::ToQuantity {
                    self.string_arg(call, 0)?
                } else {
                    None
                };
                maybe(convert(item, func, unit.as_deref()))
            }
            Func::ConvertsToBoolean
            | Func::ConvertsToInteger
            | Func::ConvertsToDecimal
            | Func::ConvertsToString
            | Func::ConvertsToDate
            | Func::ConvertsToDateTime
            | Func::ConvertsToTime
            | Func::ConvertsToQuantity => {
                let Some(item) = single(&input, func)? else {
                    return Ok(Vec::new());
                };
                let target = match func {
                    Func::ConvertsToBoolean => Func::ToBoolean,
                    Func::ConvertsToInteger => Func::ToInteger,
                    Func::ConvertsToDecimal => Func::ToDecimal,
                    Func::ConvertsToString => Func::ToString,
                    Func::ConvertsToDate => Func::ToDate,
                    Func::ConvertsToDateTime => Func::ToDateTime,
                    Func::ConvertsToTime => Func::ToTime,
                    _ => Func::ToQuantity,
                };
                let unit = if func == Func::ConvertsToQuantity {
                    self.string_arg(call, 0)?
                } else {
                    None
                };
                boolean(convert(item, target, unit.as_deref()).is_some())
            }
            Func::IndexOf
            | Func::Substring
            | Func::StartsWith
            | Func::EndsWith
            | Func::Contains
            | Func::Upper
            | Func::Lower
            | Func::Replace
            | Func::Matches
            | Func::MatchesFull
            | Func::ReplaceMatches
            | Func::Length
            | Func::ToChars
            | Func::Trim
            | Func::Split
            | Func::Encode
            | Func::Decode
            | Func::Escape
            | Func::Unescape => {
                let Some(item) = single(&input, func)? else {
                    return Ok(Vec::new());
                };
                let s = string_of(item, func)?;
                self.string_function(call, &s)
            }
            Func::Join => {
                let separator = self.string_arg(call, 0)?.unwrap_or_default();
                let mut parts = Vec::with_capacity(input.len());
                for item in &input {
                    parts.push(string_of(item, func)?.into_owned());
                }
                Ok(vec![Item::String(Cow::Owned(parts.join(&separator)))])
            }
            Func::Abs
            | Func::Ceiling
            | Func::Exp
            | Func::Floor
            | Func::Ln
            | Func::Log
            | Func::Power
            | Func::Round
            | Func::Sqrt
            | Func::Truncate => {
                let Some(item) = single(&input, func)? else {
                    return Ok(Vec::new());
                };
                self.math(call, item)
            }
            Func::Children | Func::Descendants => {
                let mut out = Vec::new();
                for item in &input {
                    if let Item::Node(node) = item {
                        eval::all_children(node, &mut out);
                    }
                }
                if func == Func::Descendants {
                    let mut i = 0;
                    while i < out.len() {
                        if let Item::Node(node) = &out[i] {
                            let node = *node;
                            eval::all_children(&node, &mut out);
                        }
                        check_size(out.len())?;
                        i += 1;
                    }
                }
                Ok(out)
            }
            Func::Now => Ok(vec![Item::DateTime(self.now())]),
            Func::Today => Ok(vec![Item::Date(self.now().date())]),
            Func::TimeOfDay => Ok(vec![Item::Time(self.now().time())]),
            Func::Type => Ok(input
                .iter()
                .map(|item| {
                    let (namespace, name) = item.type_name();
                    Item::TypeInfo {
                        namespace,
                        name: name.to_string(),
                    }
                })
                .collect()),
            Func::Not => match singleton_bool(&input)? {
                None => Ok(Vec::new()),
                Some(b) => boolean(!b),
            },
            Func::Extension => {
                let Some(url) = self.string_arg(call, 0)? else {
                    return Ok(Vec::new());
                };
                let mut out = Vec::new();
                for item in &input {
                    let mut extensions = Vec::new();
                    let _ = self.member(item, &EXTENSION, false, &mut extensions)?;
                    for extension in extensions {
                        if let Item::Node(node) = &extension
                            && node.value.get("url").and_then(Value::as_str) == Some(url.as_str())
                        {
                            out.push(extension);
                        }
                    }
                }
                Ok(out)
            }
            Func::HasValue => boolean(match input.as_slice() {
                [Item::Node(node)] => {
                    !node.value.is_null() && !node.value.is_object() && !node.value.is_array()
                }
                [item] => item.prim().is_some(),
                _ => false,
            }),
            Func::GetValue => match input.as_slice() {
                [Item::Node(node)] if !node.value.is_object() => {
                    maybe(node.prim().map(Item::from_prim))
                }
                [Item::Node(_)] | [] => Ok(Vec::new()),
                [item] => Ok(vec![item.clone()]),
                _ => Ok(Vec::new()),
            },
            Func::Resolve => {
                let mut out = Vec::new();
                for item in &input {
                    let reference = match item {
                        Item::Node(node) if node.value.is_object() => {
                            node.value.get("reference").and_then(Value::as_str)
                        }
                        other => other.as_str(),
                    };
                    if let Some(value) = reference.and_then(|r| self.resolve(r)) {
                        out.push(Item::Node(Node::resource(value)));
                    }
                }
                Ok(out)
            }
            Func::MemberOf => {
                let Some(value_set) = self.string_arg(call, 0)? else {
                    return Ok(Vec::new());
                };
                let Some(item) = single(&input, func)? else {
                    return Ok(Vec::new());
                };
                let Some(terminology) = self.env.terminology else {
                    return Err(Error::NotAvailable(
                        "memberOf() needs a terminology service".into(),
                    ));
                };
                let coded = match item {
                    Item::Node(node) => node.value.clone(),
                    other => Value::String(other.to_string()),
                };
                boolean(terminology.member_of(&coded, &value_set)?)
            }
            Func::ConformsTo => {
                let Some(url) = self.string_arg(call, 0)? else {
                    return Ok(Vec::new());
                };
                let Some(item) = single(&input, func)? else {
                    return Ok(Vec::new());
                };
                self.conforms_to(item, &url)
            }
            Func::HtmlChecks => boolean(true),
            Func::LowBoundary | Func::HighBoundary => {
                let Some(item) = single(&input, func)? else {
                    return Ok(Vec::new());
                };
                let precision = self.integer_arg(call, 0)?;
                maybe(boundary(item, precision, func == Func::HighBoundary))
            }
            Func::Precision => {
                let Some(item) = single(&input, func)? else {
                    return Ok(Vec::new());
                };
                maybe(precision_of(item).map(Item::Integer))
            }
            Func::Comparable => {
                let other = self.arg(call, 0)?;
                let (Some(a), Some(b)) = (single(&input, func)?, single(&other, func)?) else {
                    return Ok(Vec::new());
                };
                match (a.prim(), b.prim()) {
                    (Some(Prim::Quantity(_, au)), Some(Prim::Quantity(_, bu))) => {
                        let units = |u: &str| ucum::parse(u).map(|p| p.dims);
                        boolean(au == bu || (units(&au).is_some() && units(&au) == units(&bu)))
                    }
                    _ => Err(Error::Execution("comparable() needs quantities".into())),
                }
            }
            // Handled by `call` before the arguments are evaluated.
            Func::Exists
            | Func::All
            | Func::Where
            | Func::Select
            | Func::Repeat
            | Func::Iif
            | Func::Sort
            | Func::Trace
            | Func::Aggregate => Ok(Vec::new()),
        }
    }

    #[inline(never)]
    fn iif(&self, call: &Call<'_, '_, 'a>, input: Collection<'a>) -> Result<Collection<'a>, Error> {
        let (focus_owned, this);
        let (focus, scope) = if call.explicit_target {
            if input.len() > 1 {
                return Err(Error::Execution("iif() on a collection".into()));
            }
            focus_owned = input;
            this = focus_owned.first();
            (
                focus_owned.as_slice(),
                Scope {
                    this,
                    index: call.scope.index,
                    total: call.scope.total,
                },
            )
        } else {
            (call.focus, call.scope)
        };
        let criterion = self.eval(&call.args[0], focus, scope)?;
        let chosen = match criterion.as_slice() {
            [] => false,
            [item] => match item.prim() {
                Some(Prim::Boolean(b)) => b,
                _ => return Err(Error::Execution("iif() criterion must be a boolean".into())),
            },
            _ => {
                return Err(Error::Execution(
                    "iif() criterion must be a single boolean".into(),
                ));
            }
        };
        match (chosen, call.args.get(if chosen { 1 } else { 2 })) {
            (_, Some(branch)) => self.eval(branch, focus, scope),
            (_, None) => Ok(Vec::new()),
        }
    }

    fn string_function(&self, call: &Call<'_, '_, 'a>, s: &str) -> Result<Collection<'a>, Error> {
        let string = |v: String| Ok(vec![Item::String(Cow::Owned(v))]);
        let int = |v: usize| Ok(vec![Item::Integer(i64::try_from(v).unwrap_or(i64::MAX))]);
        match call.func {
            Func::IndexOf => {
                let Some(needle) = self.string_arg(call, 0)? else {
                    return Ok(Vec::new());
                };
                match s.find(&needle) {
                    Some(byte) => int(s[..byte].chars().count()),
                    None => Ok(vec![Item::Integer(-1)]),
                }
            }
            Func::Substring => {
                let Some(start) = self.integer_arg(call, 0)? else {
                    return Ok(Vec::new());
                };
                let length = self.integer_arg(call, 1)?;
                let count = s.chars().count();
                let Ok(start) = usize::try_from(start) else {
                    return Ok(Vec::new());
                };
                if start >= count {
                    return Ok(Vec::new());
                }
                let take = match length {
                    Some(l) => usize::try_from(l.max(0)).unwrap_or(0),
                    None => usize::MAX,
                };
                string(s.chars().skip(start).take(take).collect())
            }
            Func::StartsWith | Func::EndsWith | Func::Contains => {
                let Some(other) = self.string_arg(call, 0)? else {
                    return Ok(Vec::new());
                };
                boolean(match call.func {
                    Func::StartsWith => s.starts_with(&other),
                    Func::EndsWith => s.ends_with(&other),
                    _ => s.contains(&other),
                })
            }
            Func::Upper => string(s.to_uppercase()),
            Func::Lower => string(s.to_lowercase()),
            Func::Replace => {
                let (Some(pattern), Some(substitution)) =
                    (self.string_arg(call, 0)?, self.string_arg(call, 1)?)
                else {
                    return Ok(Vec::new());
                };
                if s.len().saturating_mul(substitution.len().max(1)) > 16 << 20 {
                    return Err(Error::Execution("replace() result too large".into()));
                }
                string(s.replace(&pattern, &substitution))
            }
            Func::Matches | Func::MatchesFull => {
                let Some(regex) = self.regex(call)? else {
                    return Ok(Vec::new());
                };
                boolean(regex.is_match(s))
            }
            Func::ReplaceMatches => {
                let Some(regex) = self.regex(call)? else {
                    return Ok(Vec::new());
                };
                let Some(substitution) = self.string_arg(call, 1)? else {
                    return Ok(Vec::new());
                };
                if regex.as_str() == "(?s)" {
                    return string(s.to_string());
                }
                string(regex.replace_all(s, substitution.as_str()).into_owned())
            }
            Func::Length => int(s.chars().count()),
            Func::ToChars => Ok(s
                .chars()
                .map(|c| Item::String(Cow::Owned(c.to_string())))
                .collect()),
            Func::Trim => string(s.trim().to_string()),
            Func::Split => {
                let Some(separator) = self.string_arg(call, 0)? else {
                    return Ok(Vec::new());
                };
                if separator.is_empty() {
                    return Ok(s
                        .chars()
                        .map(|c| Item::String(Cow::Owned(c.to_string())))
                        .collect());
                }
                Ok(s.split(separator.as_str())
                    .map(|part| Item::String(Cow::Owned(part.to_string())))
                    .collect())
            }
            Func::Encode | Func::Decode | Func::Escape | Func::Unescape => {
                let Some(format) = self.string_arg(call, 0)? else {
                    return Ok(Vec::new());
                };
                maybe(
                    crate::functions::codec(call.func, s, &format)
                        .map(|v| Item::String(Cow::Owned(v))),
                )
            }
            _ => Ok(Vec::new()),
        }
    }

    fn regex(&self, call: &Call<'_, '_, 'a>) -> Result<Option<Cow<'_, Regex>>, Error> {
        if let Some(regex) = call.regex {
            return Ok(Some(Cow::Owned(regex.clone())));
        }
        let Some(pattern) = self.string_arg(call, 0)? else {
            return Ok(None);
        };
        Ok(Some(Cow::Owned(crate::parser::compile_regex(
            &pattern,
            call.func == Func::MatchesFull,
        )?)))
    }

    fn math(&self, call: &Call<'_, '_, 'a>, item: &Item<'a>) -> Result<Collection<'a>, Error> {
        let prim = item.prim();
        let (value, is_int) = match &prim {
            Some(Prim::Integer(i)) => (Decimal::from(*i), true),
            Some(Prim::Decimal(d)) => (*d, false),
            Some(Prim::Quantity(v, u)) if call.func == Func::Abs => {
                return Ok(vec![Item::Quantity(Quantity {
                    value: v.abs(),
                    unit: u.to_string(),
                })]);
            }
            _ => {
                return Err(Error::Execution(format!(
                    "{}() needs a number",
                    call.func.name()
                )));
            }
        };
        let integer = |d: Decimal| -> Result<Collection<'a>, Error> {
            d.to_i64()
                .map(|i| vec![Item::Integer(i)])
                .ok_or_else(|| Error::Execution("integer overflow".into()))
        };
        let decimal = |d: Option<Decimal>| maybe(d.map(|d| Item::Decimal(round_result(d))));
        match call.func {
            Func::Abs if is_int => integer(value.abs()),
            Func::Abs => maybe(Some(Item::Decimal(value.abs()))),
            Func::Ceiling => integer(value.ceil()),
            Func::Floor => integer(value.floor()),
            Func::Truncate => integer(value.trunc()),
            Func::Exp => decimal(value.checked_exp()),
            Func::Ln => decimal(
                (value > Decimal::ZERO)
                    .then(|| value.checked_ln())
                    .flatten(),
            ),
            Func::Sqrt => decimal((value >= Decimal::ZERO).then(|| value.sqrt()).flatten()),
            Func::Log => {
                let base = self.arg(call, 0)?;
                let base = match single(&base, call.func)?.and_then(Item::prim) {
                    Some(Prim::Integer(i)) => Decimal::from(i),
                    Some(Prim::Decimal(d)) => d,
                    None => return Ok(Vec::new()),
                    _ => return Err(Error::Execution("log() needs a number base".into())),
                };
                if value <= Decimal::ZERO || base <= Decimal::ZERO || base == Decimal::ONE {
                    return Ok(Vec::new());
                }
                decimal(
                    value
                        .checked_ln()
                        .zip(base.checked_ln())
                        .and_then(|(a, b)| a.checked_div(b)),
                )
            }
            Func::Power => {
                let exponent = self.arg(call, 0)?;
                match single(&exponent, call.func)?.and_then(Item::prim) {
                    None => Ok(Vec::new()),
                    Some(Prim::Integer(e)) if is_int && e >= 0 => {
                        let base = value.to_i64().unwrap_or(0);
                        match u32::try_from(e).ok().and_then(|e| base.checked_pow(e)) {
                            Some(v) => Ok(vec![Item::Integer(v)]),
                            None => Err(Error::Execution("integer overflow".into())),
                        }
                    }
                    Some(Prim::Integer(e)) => decimal(value.checked_powi(e)),
                    Some(Prim::Decimal(e)) => {
                        if value < Decimal::ZERO && e.fract() != Decimal::ZERO {
                            return Ok(Vec::new());
                        }
                        decimal(value.checked_powd(e))
                    }
                    _ => Err(Error::Execution("power() needs a number".into())),
                }
            }
            Func::Round => {
                let precision = self.integer_arg(call, 0)?.unwrap_or(0);
                let Ok(precision) = u32::try_from(precision) else {
                    return Err(Error::Execution("round() precision must be >= 0".into()));
                };
                maybe(Some(Item::Decimal(value.round_dp_with_strategy(
                    precision.min(28),
                    RoundingStrategy::MidpointAwayFromZero,
                ))))
            }
            _ => Ok(Vec::new()),
        }
    }

    #[inline(never)]
    fn sort(
        &self,
        call: &Call<'_, '_, 'a>,
        input: Collection<'a>,
    ) -> Result<Collection<'a>, Error> {
        let mut keyed: Vec<(Vec<Collection<'a>>, Item<'a>)> = Vec::with_capacity(input.len());
        for (i, item) in input.into_iter().enumerate() {
            let mut keys = Vec::with_capacity(call.args.len());
            for arg in call.args {
                let expr = match arg {
                    Expr::Negate(inner) => inner.as_ref(),
                    other => other,
                };
                let scope = Scope {
                    this: Some(&item),
                    index: Some(i),
                    total: None,
                };
                keys.push(self.eval(expr, std::slice::from_ref(&item), scope)?);
            }
            keyed.push((keys, item));
        }
        let descending: Vec<bool> = call
            .args
            .iter()
            .map(|a| matches!(a, Expr::Negate(_)))
            .collect();
        let order = |a: &Item<'_>, b: &Item<'_>| {
            crate::ops::compare(a, b)
                .ok()
                .flatten()
                .unwrap_or(Ordering::Equal)
        };
        keyed.sort_by(|(ka, a), (kb, b)| {
            if call.args.is_empty() {
                return order(a, b);
            }
            for (i, desc) in descending.iter().enumerate() {
                // Empty keys sort first in either direction.
                let ordering = match (ka[i].first(), kb[i].first()) {
                    (Some(x), Some(y)) if *desc => order(x, y).reverse(),
                    (Some(x), Some(y)) => order(x, y),
                    (None, Some(_)) => Ordering::Less,
                    (Some(_), None) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            Ordering::Equal
        });
        Ok(keyed.into_iter().map(|(_, item)| item).collect())
    }

    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        if let Some(id) = reference.strip_prefix('#') {
            return self
                .root
                .get("contained")?
                .as_array()?
                .iter()
                .find(|r| r.get("id").and_then(Value::as_str) == Some(id));
        }
        if let Some(entries) = self.root.get("entry").and_then(Value::as_array) {
            for entry in entries {
                let Some(resource) = entry.get("resource") else {
                    continue;
                };
                if entry.get("fullUrl").and_then(Value::as_str) == Some(reference) {
                    return Some(resource);
                }
                if let (Some(t), Some(id)) = (
                    resource.get("resourceType").and_then(Value::as_str),
                    resource.get("id").and_then(Value::as_str),
                ) {
                    let local = format!("{t}/{id}");
                    if reference == local || reference.ends_with(&format!("/{local}")) {
                        return Some(resource);
                    }
                }
            }
        }
        if let Some(resolved) = self.env.resolver.and_then(|r| r.resolve(reference)) {
            return Some(resolved);
        }
        if self.env.resolve_stubs {
            return stub_for(reference);
        }
        None
    }

    fn conforms_to(&self, item: &Item<'a>, url: &str) -> Result<Collection<'a>, Error> {
        if let (Some(conformance), Item::Node(node)) = (self.env.conformance, item) {
            return boolean(conformance.conforms_to(node.value, url)?);
        }
        match url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") {
            Some(name) if model::is_fhir_type(name) => {
                boolean(model::derives_from(item.type_name().1, name))
            }
            _ => Err(Error::NotAvailable(format!(
                "conformsTo('{url}') needs a profile validator"
            ))),
        }
    }
}

/// The member name `extension`, for `extension(url)`.
static EXTENSION: std::sync::LazyLock<Name> =
    std::sync::LazyLock::new(|| Name::new("extension".into()));

/// `{"resourceType": T}` for every resource type, for [`Environment::resolve_stubs`].
static STUBS: std::sync::LazyLock<std::collections::HashMap<&'static str, Value>> =
    std::sync::LazyLock::new(|| {
        fhir::definitions()
            .resource_types()
            .iter()
            .map(|t| (t.as_str(), serde_json::json!({ "resourceType": t })))
            .collect()
    });

/// The stub for the type named in a reference `T/id`, `T/id/_history/v` or `…/T/id`.
fn stub_for(reference: &str) -> Option<&'static Value> {
    let path = reference.split("/_history/").next().unwrap_or(reference);
    let mut segments = path.rsplit('/');
    let _id = segments.next()?;
    STUBS.get(segments.next()?)
}

fn type_spec<'c>(call: &Call<'c, '_, '_>) -> Result<&'c TypeSpec, Error> {
    call.type_arg
        .ok_or_else(|| Error::Semantic(format!("{}() needs a type", call.func.name())))
}

fn distinct(input: Collection<'_>) -> Collection<'_> {
    let mut out = Vec::with_capacity(input.len());
    for item in input {
        if !contains_item(&out, &item) {
            out.push(item);
        }
    }
    out
}

fn is_integer_text(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_decimal_text(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, "0"));
    !int.is_empty()
        && !frac.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
}

fn quantity_from_string(s: &str) -> Option<(Decimal, String)> {
    let s = s.trim();
    let split = s
        .find(|c: char| c.is_whitespace() || c == '\'')
        .unwrap_or(s.len());
    let (number, rest) = s.split_at(split);
    if !is_decimal_text(number) {
        return None;
    }
    let value = parse_decimal(number)?;
    let rest = rest.trim();
    if rest.is_empty() {
        return Some((value, "1".into()));
    }
    if let Some(quoted) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return (!quoted.contains('\'')).then(|| (value, quoted.to_string()));
    }
    ucum::calendar_keyword(rest).map(|_| (value, rest.to_string()))
}

/// The `toX()` conversions; `None` when not convertible.
pub(crate) fn convert<'a>(item: &Item<'_>, target: Func, unit: Option<&str>) -> Option<Item<'a>> {
    let prim = item.prim()?;
    match target {
        Func::ToBoolean => match prim {
            Prim::Boolean(b) => Some(Item::Boolean(b)),
            Prim::Integer(1) => Some(Item::Boolean(true)),
            Prim::Integer(0) => Some(Item::Boolean(false)),
            Prim::Decimal(d) if d == Decimal::ONE => Some(Item::Boolean(true)),
            Prim::Decimal(d) if d.is_zero() => Some(Item::Boolean(false)),
            Prim::String(s) => match s.to_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(Item::Boolean(true)),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(Item::Boolean(false)),
                _ => None,
            },
            _ => None,
        },
        Func::ToInteger => match prim {
            Prim::Integer(i) => Some(Item::Integer(i)),
            Prim::Boolean(b) => Some(Item::Integer(i64::from(b))),
            Prim::String(s) if is_integer_text(&s) => s.parse().ok().map(Item::Integer),
            _ => None,
        },
        Func::ToDecimal => match prim {
            Prim::Integer(i) => Some(Item::Decimal(Decimal::from(i))),
            Prim::Decimal(d) => Some(Item::Decimal(d)),
            Prim::Boolean(b) => Some(Item::Decimal(if b { Decimal::ONE } else { Decimal::ZERO })),
            Prim::String(s) if is_decimal_text(&s) => parse_decimal(&s).map(Item::Decimal),
            _ => None,
        },
        Func::ToString => Some(Item::String(Cow::Owned(prim.to_string()))),
        Func::ToDate => match prim {
            Prim::Date(d) => Some(Item::Date(d)),
            Prim::DateTime(d) => Some(Item::Date(d.date())),
            Prim::String(s) => temporal::parse_date(&s)
                .or_else(|| temporal::parse_datetime(&s).map(|d| d.date()))
                .map(Item::Date),
            _ => None,
        },
        Func::ToDateTime => match prim {
            Prim::Date(d) | Prim::DateTime(d) => Some(Item::DateTime(d)),
            Prim::String(s) => temporal::parse_datetime(&s).map(Item::DateTime),
            _ => None,
        },
        Func::ToTime => match prim {
            Prim::Time(t) => Some(Item::Time(t)),
            Prim::String(s) => temporal::parse_time(&s).map(Item::Time),
            _ => None,
        },
        Func::ToQuantity => {
            let (value, from_unit) = match prim {
                Prim::Integer(i) => (Decimal::from(i), "1".to_string()),
                Prim::Decimal(d) => (d, "1".to_string()),
                Prim::Boolean(b) => (
                    if b { Decimal::ONE } else { Decimal::ZERO },
                    "1".to_string(),
                ),
                Prim::Quantity(v, u) => (v, u.into_owned()),
                Prim::String(s) => quantity_from_string(&s)?,
                _ => return None,
            };
            match unit {
                None => Some(Item::Quantity(Quantity {
                    value,
                    unit: from_unit,
                })),
                Some(unit) if unit == from_unit => Some(Item::Quantity(Quantity {
                    value,
                    unit: from_unit,
                })),
                Some(unit) => {
                    let (from, to) = (ucum::parse(&from_unit)?, ucum::parse(unit)?);
                    if from.dims != to.dims {
                        return None;
                    }
                    let value = value.checked_mul(from.factor)?.checked_div(to.factor)?;
                    Some(Item::Quantity(Quantity {
                        value,
                        unit: unit.to_string(),
                    }))
                }
            }
        }
        _ => None,
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8], url: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let c = BASE64[((n >> (18 - 6 * i)) & 63) as usize];
                out.push(match (url, c) {
                    (true, b'+') => '-',
                    (true, b'/') => '_',
                    _ => c as char,
                });
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => continue,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `encode`, `decode`, `escape` and `unescape`.
pub(crate) fn codec(func: Func, s: &str, format: &str) -> Option<String> {
    match (func, format) {
        (Func::Encode, "base64") => Some(base64_encode(s.as_bytes(), false)),
        (Func::Encode, "urlbase64") => Some(base64_encode(s.as_bytes(), true)),
        (Func::Encode, "hex") => Some(s.bytes().map(|b| format!("{b:02x}")).collect()),
        (Func::Decode, "base64" | "urlbase64") => String::from_utf8(base64_decode(s)?).ok(),
        (Func::Decode, "hex") => {
            if !s.len().is_multiple_of(2) {
                return None;
            }
            let bytes: Option<Vec<u8>> = (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
                .collect();
            String::from_utf8(bytes?).ok()
        }
        (Func::Escape, "html") => Some(
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
                .replace('\'', "&#39;"),
        ),
        (Func::Unescape, "html") => Some(
            s.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        ),
        (Func::Escape, "json") => Some(s.replace('\\', "\\\\").replace('"', "\\\"")),
        (Func::Unescape, "json") => Some(s.replace("\\\"", "\"").replace("\\\\", "\\")),
        _ => None,
    }
}

/// Digits after the point of a decimal as written.
fn decimal_precision(d: &Decimal) -> u32 {
    d.scale()
}

/// `lowBoundary`/`highBoundary`.
fn boundary<'a>(item: &Item<'_>, precision: Option<i64>, high: bool) -> Option<Item<'a>> {
    match item.prim()? {
        Prim::Integer(i) => decimal_boundary(Decimal::from(i), precision, high).map(Item::Decimal),
        Prim::Decimal(d) => decimal_boundary(d, precision, high).map(Item::Decimal),
        Prim::Quantity(v, u) => decimal_boundary(v, precision, high).map(|value| {
            Item::Quantity(Quantity {
                value,
                unit: u.into_owned(),
            })
        }),
        Prim::Date(d) => datetime_boundary(d, precision.unwrap_or(8), high, true).map(Item::Date),
        Prim::DateTime(d) => {
            datetime_boundary(d, precision.unwrap_or(17), high, false).map(Item::DateTime)
        }
        Prim::Time(t) => {
            let precision = precision.unwrap_or(9);
            let p = match precision {
                2 => Precision::Hour,
                4 => Precision::Minute,
                6 => Precision::Second,
                9 => Precision::Millisecond,
                _ => return None,
            };
            let mut out = t;
            if t.precision < Precision::Minute {
                out.minute = if high { 59 } else { 0 };
            }
            if t.precision < Precision::Second {
                out.second = if high { 59 } else { 0 };
            }
            if t.precision < Precision::Millisecond {
                out.millisecond = if high { 999 } else { 0 };
            }
            out.precision = p;
            Some(Item::Time(out))
        }
        _ => None,
    }
}

fn decimal_boundary(d: Decimal, precision: Option<i64>, high: bool) -> Option<Decimal> {
    let precision = precision.unwrap_or(8);
    if !(0..=28).contains(&precision) {
        return None;
    }
    let precision = u32::try_from(precision).ok()?;
    let scale = decimal_precision(&d);
    // Half a unit in the last written digit.
    let half = Decimal::try_new(5, scale + 1).ok()?;
    let edge = if high {
        d.checked_add(half)?
    } else {
        d.checked_sub(half)?
    };
    // Digits that all fall below the precision give zero (keeping the sign of a low boundary).
    let unit = Decimal::try_new(1, precision).ok()?;
    if d.abs() < unit && scale > precision {
        let mut zero = Decimal::new(0, precision);
        zero.set_sign_negative(!high && d.is_sign_negative());
        return Some(zero);
    }
    let strategy = if high {
        RoundingStrategy::ToPositiveInfinity
    } else {
        RoundingStrategy::ToNegativeInfinity
    };
    let mut out = edge.round_dp_with_strategy(precision, strategy);
    out.rescale(precision);
    Some(out)
}

fn datetime_boundary(d: DateTime, precision: i64, high: bool, is_date: bool) -> Option<DateTime> {
    let p = match precision {
        4 => Precision::Year,
        6 => Precision::Month,
        8 => Precision::Day,
        10 if !is_date => Precision::Hour,
        12 if !is_date => Precision::Minute,
        14 if !is_date => Precision::Second,
        17 if !is_date => Precision::Millisecond,
        _ => return None,
    };
    let mut out = d;
    if d.precision < Precision::Month {
        out.month = if high { 12 } else { 1 };
    }
    if d.precision < Precision::Day {
        out.day = if high {
            temporal::days_in_month(out.year, out.month)
        } else {
            1
        };
    }
    if d.precision < Precision::Hour {
        out.hour = if high { 23 } else { 0 };
    }
    if d.precision < Precision::Minute {
        out.minute = if high { 59 } else { 0 };
    }
    if d.precision < Precision::Second {
        out.second = if high { 59 } else { 0 };
    }
    if d.precision < Precision::Millisecond {
        out.millisecond = if high { 999 } else { 0 };
    }
    if p >= Precision::Hour && out.offset_minutes.is_none() {
        out.offset_minutes = Some(if high { -12 * 60 } else { 14 * 60 });
    }
    if p < Precision::Hour {
        out.offset_minutes = None;
    }
    out.precision = p;
    Some(out)
}

fn precision_of(item: &Item<'_>) -> Option<i64> {
    Some(match item.prim()? {
        Prim::Decimal(d) => i64::from(d.scale()),
        Prim::Integer(_) => 0,
        Prim::Date(d) | Prim::DateTime(d) => match d.precision {
            Precision::Year => 4,
            Precision::Month => 6,
            Precision::Day => 8,
            Precision::Hour => 10,
            Precision::Minute => 12,
            Precision::Second => 14,
            Precision::Millisecond => 17,
        },
        Prim::Time(t) => match t.precision {
            Precision::Hour => 2,
            Precision::Minute => 4,
            Precision::Second => 6,
            _ => 9,
        },
        _ => return None,
    })
}
