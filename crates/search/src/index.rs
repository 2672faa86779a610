//! What each search parameter extracts from a resource: the index rows.

use fhirpath::{Environment, Item, Node};
use serde_json::Value;

use crate::{DateRange, NumberRange, ParamDef, ParamType, params_for};

/// One indexed value of one parameter of a resource.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexRow {
    /// The parameter's code; or a derived key: `{code}:text` (a token's display text,
    /// as a string), `{code}:identifier` (a reference's identifier, as a token),
    /// `{code}:of-type` (an identifier's type and value, as a token), `{code}${n}`
    /// (component n of a composite).
    pub key: String,
    /// 0, except for composite components: the composite item (from 1) the value came
    /// from, so components of the same item can be matched together.
    pub group: u32,
    pub value: IndexValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum IndexValue {
    /// `normalized` per [`crate::normalize_string`]; `exact` as written.
    String {
        normalized: String,
        exact: String,
    },
    Token {
        system: Option<String>,
        code: Option<String>,
    },
    /// A reference: its local `Type/id` when it has one (relative, or an absolute URL
    /// ending in `Type/id`), and its `url` when it is absolute or canonical.
    Reference {
        resource_type: Option<String>,
        id: Option<String>,
        url: Option<String>,
    },
    Date(DateRange),
    Number(NumberRange),
    Quantity {
        range: NumberRange,
        system: Option<String>,
        code: Option<String>,
    },
    Uri(String),
}

/// Every index row of `resource` (a JSON object with a `resourceType`), for every
/// search parameter of its type except `_id` and `_lastUpdated`, which the store keeps
/// itself, and unions of other parameters ([`crate::ParamDef::union_of`]). An unknown type, or a parameter whose expression fails, gives no rows.
pub fn index(resource: &Value) -> Vec<IndexRow> {
    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) else {
        return Vec::new();
    };
    let mut env = Environment::new();
    env.resolve_stubs(true);
    let mut rows = Vec::new();
    for param in params_for(resource_type) {
        // The store keeps `_id` and `_lastUpdated`; a union is searched through its parts.
        if param.code == "_id" || param.code == "_lastUpdated" || !param.union_of.is_empty() {
            continue;
        }
        let Some(expression) = &param.expression else {
            continue;
        };
        let Ok(items) = expression.evaluate(resource, &env) else {
            continue;
        };
        if items.is_empty() {
            continue;
        }
        if param.param_type == ParamType::Composite {
            composite(param, resource, items, &env, &mut rows);
        } else {
            let mut sink = Sink::new(&mut rows, &param.code, 0, true);
            for item in &items {
                convert(param.param_type, item, &mut sink);
            }
        }
    }
    rows
}

/// Rows of a composite parameter: for each item its expression selects (numbered from
/// 1), every component's values under `{code}${i}`, if every component has one.
fn composite<'a>(
    param: &ParamDef,
    resource: &'a Value,
    items: Vec<Item<'a>>,
    env: &'a Environment<'_>,
    rows: &mut Vec<IndexRow>,
) {
    if param.components.is_empty() {
        return;
    }
    let keys: Vec<String> = (0..param.components.len())
        .map(|i| format!("{}${i}", param.code))
        .collect();
    let mut group = 0u32;
    for item in items {
        let start = rows.len();
        let next = group + 1;
        let mut complete = true;
        for (component, key) in param.components.iter().zip(&keys) {
            let before = rows.len();
            if let Ok(values) =
                component
                    .expression
                    .evaluate_focus(resource, vec![item.clone()], env)
            {
                let mut sink = Sink::new(rows, key, next, false);
                for value in &values {
                    convert(component.param_type, value, &mut sink);
                }
            }
            if rows.len() == before {
                complete = false;
                break;
            }
        }
        if complete {
            group = next;
        } else {
            rows.truncate(start);
        }
    }
}

/// Where the rows of one parameter (or composite component) go.
struct Sink<'r> {
    rows: &'r mut Vec<IndexRow>,
    key: &'r str,
    group: u32,
    /// Whether to add the derived rows (`:text`, `:of-type`, `:identifier`).
    derived: bool,
    /// The first row of this parameter, for removing duplicates.
    start: usize,
}

/// Above this many rows for one parameter, duplicates are kept rather than searched for.
const DEDUPLICATE_UP_TO: usize = 64;

impl<'r> Sink<'r> {
    fn new(rows: &'r mut Vec<IndexRow>, key: &'r str, group: u32, derived: bool) -> Sink<'r> {
        let start = rows.len();
        Sink {
            rows,
            key,
            group,
            derived,
            start,
        }
    }

    fn push(&mut self, value: IndexValue) {
        self.push_keyed(None, value);
    }

    /// A derived row `{key}{suffix}`, when derived rows are wanted.
    fn push_derived(&mut self, suffix: &str, value: IndexValue) {
        if self.derived {
            self.push_keyed(Some(suffix), value);
        }
    }

    fn push_keyed(&mut self, suffix: Option<&str>, value: IndexValue) {
        let same_key = |row: &IndexRow| match suffix {
            None => row.key == self.key,
            Some(suffix) => {
                row.key.len() == self.key.len() + suffix.len()
                    && row.key.starts_with(self.key)
                    && row.key.ends_with(suffix)
            }
        };
        let existing = &self.rows[self.start..];
        if existing.len() <= DEDUPLICATE_UP_TO
            && existing
                .iter()
                .any(|row| row.group == self.group && row.value == value && same_key(row))
        {
            return;
        }
        let key = match suffix {
            None => self.key.to_owned(),
            Some(suffix) => {
                let mut key = String::with_capacity(self.key.len() + suffix.len());
                key.push_str(self.key);
                key.push_str(suffix);
                key
            }
        };
        self.rows.push(IndexRow {
            key,
            group: self.group,
            value,
        });
    }

    fn string(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        self.push(string_value(text));
    }

    fn text(&mut self, text: Option<&str>) {
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            self.push_derived(":text", string_value(text));
        }
    }
}

fn string_value(text: &str) -> IndexValue {
    IndexValue::String {
        normalized: fold(text),
        exact: text.to_owned(),
    }
}

/// The FHIR type of an item as far as indexing cares, and its JSON.
enum Shape<'a> {
    /// A JSON node of the named FHIR type (`""` when the type is not known).
    Node(&'a str, &'a Value),
    /// A System value turned into text (strings, dates, codes from functions).
    Text(String),
    Boolean(bool),
    Number(f64),
    Quantity(f64, String),
}

fn shape<'i, 'a>(item: &'i Item<'a>) -> Option<Shape<'i>> {
    Some(match item {
        Item::Node(Node {
            value, fhir_type, ..
        }) => {
            if value.is_null() {
                return None;
            }
            Shape::Node(fhir_type.name, value)
        }
        Item::String(s) => Shape::Text(s.to_string()),
        Item::Boolean(b) => Shape::Boolean(*b),
        Item::Integer(i) => Shape::Number(*i as f64),
        Item::Decimal(d) => Shape::Number(d.to_string().parse().ok()?),
        Item::Date(_) | Item::DateTime(_) | Item::Time(_) => Shape::Text(item.to_string()),
        Item::Quantity(q) => Shape::Quantity(q.value.to_string().parse().ok()?, q.unit.clone()),
        Item::TypeInfo { .. } => return None,
    })
}

fn convert(param_type: ParamType, item: &Item<'_>, sink: &mut Sink<'_>) {
    let Some(shape) = shape(item) else {
        return;
    };
    match param_type {
        ParamType::String => string_rows(&shape, sink),
        ParamType::Token => token_rows(&shape, sink),
        ParamType::Reference => reference_rows(&shape, sink),
        ParamType::Date => {
            if let Some(range) = date_of(&shape) {
                sink.push(IndexValue::Date(range));
            }
        }
        ParamType::Number => number_rows(&shape, sink),
        ParamType::Quantity => quantity_rows(&shape, sink),
        ParamType::Uri => match &shape {
            Shape::Node(_, Value::String(s)) if !s.is_empty() => {
                sink.push(IndexValue::Uri(s.clone()));
            }
            Shape::Text(s) if !s.is_empty() => sink.push(IndexValue::Uri(s.clone())),
            _ => {}
        },
        ParamType::Composite | ParamType::Special => {}
    }
}

fn str_at<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn strs_at<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn owned(text: Option<&str>) -> Option<String> {
    text.filter(|t| !t.is_empty()).map(str::to_owned)
}

fn string_rows(shape: &Shape<'_>, sink: &mut Sink<'_>) {
    match shape {
        Shape::Text(s) => sink.string(s),
        Shape::Node(_, Value::String(s)) => sink.string(s),
        Shape::Node(name, value @ Value::Object(_)) => {
            let kind = if name.is_empty() { guess(value) } else { name };
            match kind {
                "HumanName" => {
                    for key in ["text", "family"] {
                        if let Some(s) = str_at(value, key) {
                            sink.string(s);
                        }
                    }
                    for key in ["given", "prefix", "suffix"] {
                        for s in strs_at(value, key) {
                            sink.string(s);
                        }
                    }
                }
                "Address" => {
                    for s in strs_at(value, "line") {
                        sink.string(s);
                    }
                    for key in ["city", "district", "state", "postalCode", "country", "text"] {
                        if let Some(s) = str_at(value, key) {
                            sink.string(s);
                        }
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

/// The type of a JSON object whose FHIR type the definitions did not give.
fn guess(value: &Value) -> &'static str {
    let has = |key: &str| value.get(key).is_some();
    if has("coding") {
        "CodeableConcept"
    } else if has("reference") || (has("identifier") && has("display")) {
        "Reference"
    } else if has("family") || has("given") {
        "HumanName"
    } else if has("line") || has("city") || has("postalCode") {
        "Address"
    } else if has("currency") {
        "Money"
    } else if has("value") && (has("unit") || has("code")) {
        "Quantity"
    } else if has("low") || has("high") {
        "Range"
    } else if has("start") || has("end") {
        "Period"
    } else if has("code") && has("system") {
        "Coding"
    } else if has("value") && has("system") {
        "Identifier"
    } else {
        ""
    }
}

fn coding_rows(coding: &Value, sink: &mut Sink<'_>) {
    let system = owned(str_at(coding, "system"));
    let code = owned(str_at(coding, "code"));
    if system.is_some() || code.is_some() {
        sink.push(IndexValue::Token { system, code });
    }
    sink.text(str_at(coding, "display"));
}

fn token_rows(shape: &Shape<'_>, sink: &mut Sink<'_>) {
    match shape {
        Shape::Text(s) if !s.is_empty() => sink.push(IndexValue::Token {
            system: None,
            code: Some(s.clone()),
        }),
        Shape::Boolean(b) => sink.push(boolean_token(*b)),
        Shape::Node(_, Value::Bool(b)) => sink.push(boolean_token(*b)),
        Shape::Node(_, Value::String(s)) if !s.is_empty() => sink.push(IndexValue::Token {
            system: None,
            code: Some(s.clone()),
        }),
        Shape::Node(_, Value::Number(n)) => sink.push(IndexValue::Token {
            system: None,
            code: Some(n.to_string()),
        }),
        Shape::Node(name, value @ Value::Object(_)) => {
            let kind = if name.is_empty() { guess(value) } else { name };
            match kind {
                "Coding" => coding_rows(value, sink),
                "CodeableConcept" => {
                    if let Some(codings) = value.get("coding").and_then(Value::as_array) {
                        for coding in codings {
                            coding_rows(coding, sink);
                        }
                    }
                    sink.text(str_at(value, "text"));
                }
                "Identifier" => identifier_rows(value, sink),
                "ContactPoint" => {
                    let system = owned(str_at(value, "system"));
                    let code = owned(str_at(value, "value"));
                    if code.is_some() {
                        sink.push(IndexValue::Token { system, code });
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
}

fn boolean_token(b: bool) -> IndexValue {
    IndexValue::Token {
        system: None,
        code: Some(if b { "true" } else { "false" }.to_owned()),
    }
}

fn identifier_rows(identifier: &Value, sink: &mut Sink<'_>) {
    let system = owned(str_at(identifier, "system"));
    let value = str_at(identifier, "value").filter(|v| !v.is_empty());
    if system.is_some() || value.is_some() {
        sink.push(IndexValue::Token {
            system,
            code: value.map(str::to_owned),
        });
    }
    let Some(kind) = identifier.get("type") else {
        return;
    };
    if sink.derived
        && let Some(value) = value
    {
        for coding in kind
            .get("coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(code) = str_at(coding, "code") {
                sink.push_derived(
                    ":of-type",
                    IndexValue::Token {
                        system: owned(str_at(coding, "system")),
                        code: Some(format!("{code}|{value}")),
                    },
                );
            }
        }
    }
    sink.text(str_at(kind, "text"));
}

fn reference_rows(shape: &Shape<'_>, sink: &mut Sink<'_>) {
    match shape {
        Shape::Text(s) => reference_text(s, true, sink),
        Shape::Node(name, Value::String(s)) => {
            // canonical, uri, url: a URL; anything else stringy as a reference text.
            let canonical = matches!(*name, "canonical" | "uri" | "url" | "oid" | "uuid");
            reference_text(s, !canonical, sink);
        }
        Shape::Node(name, value @ Value::Object(map)) => {
            if let Some(resource_type) = map.get("resourceType").and_then(Value::as_str) {
                // A resource itself (e.g. a Bundle entry): its own type and id.
                if let Some(id) = str_at(value, "id") {
                    sink.push(IndexValue::Reference {
                        resource_type: Some(resource_type.to_owned()),
                        id: Some(id.to_owned()),
                        url: None,
                    });
                }
                return;
            }
            let kind = if name.is_empty() { guess(value) } else { name };
            if kind != "Reference" {
                return;
            }
            if let Some(reference) = str_at(value, "reference") {
                reference_text(reference, true, sink);
            }
            if let Some(identifier) = value.get("identifier") {
                let system = owned(str_at(identifier, "system"));
                let code = owned(str_at(identifier, "value"));
                if system.is_some() || code.is_some() {
                    sink.push_derived(":identifier", IndexValue::Token { system, code });
                }
            }
        }
        _ => {}
    }
}

/// A reference's text: `Type/id` (local), an absolute URL (ending in `Type/id` or not),
/// or with `local` false a canonical (URL only). Contained (`#id`) references give nothing.
fn reference_text(text: &str, local: bool, sink: &mut Sink<'_>) {
    if text.is_empty() || text.starts_with('#') {
        return;
    }
    if is_absolute(text) {
        let (resource_type, id) = match local_part(text) {
            Some((prefix, resource_type, id)) if local && !prefix.is_empty() => {
                (Some(resource_type.to_owned()), Some(id.to_owned()))
            }
            _ => (None, None),
        };
        sink.push(IndexValue::Reference {
            resource_type,
            id,
            url: Some(text.to_owned()),
        });
    } else if local {
        if let Some(("", resource_type, id)) = local_part(text) {
            sink.push(IndexValue::Reference {
                resource_type: Some(resource_type.to_owned()),
                id: Some(id.to_owned()),
                url: None,
            });
        }
    } else {
        sink.push(IndexValue::Reference {
            resource_type: None,
            id: None,
            url: Some(text.to_owned()),
        });
    }
}

/// Whether a reference is an absolute URL or a URN.
pub(crate) fn is_absolute(text: &str) -> bool {
    text.starts_with("urn:") || text.contains("://")
}

/// The `Type/id` at the end of a reference (after an optional base URL, before an
/// optional `/_history/n`): (what comes before, with its trailing `/` removed; type; id).
/// `None` unless the type is a resource type and the id a valid id.
pub(crate) fn local_part(text: &str) -> Option<(&str, &str, &str)> {
    fn last(text: &str) -> (&str, &str) {
        match text.rsplit_once('/') {
            Some((before, segment)) => (before, segment),
            None => ("", text),
        }
    }
    let (rest, a) = last(text);
    let (rest, b) = last(rest);
    let (rest, resource_type, id) = if b == "_history" {
        let (rest, id) = last(rest);
        let (rest, resource_type) = last(rest);
        (rest, resource_type, id)
    } else {
        (rest, b, a)
    };
    (fhir::definitions().is_resource_type(resource_type) && fhir::is_valid_id(id)).then_some((
        rest,
        resource_type,
        id,
    ))
}

fn date_of(shape: &Shape<'_>) -> Option<DateRange> {
    match shape {
        Shape::Text(s) => DateRange::parse(s),
        // Free text (`onsetString`) is not a date, even when it looks like one.
        Shape::Node("string" | "markdown", _) => None,
        Shape::Node(_, Value::String(s)) => DateRange::parse(s),
        Shape::Node(name, value @ Value::Object(_)) => {
            let kind = if name.is_empty() { guess(value) } else { name };
            match kind {
                "Period" => period(value),
                "Timing" => {
                    let mut span: Option<DateRange> = None;
                    let mut widen = |range: DateRange| {
                        span = Some(match span {
                            None => range,
                            Some(s) => DateRange {
                                low: s.low.min(range.low),
                                high: s.high.max(range.high),
                            },
                        });
                    };
                    for event in strs_at(value, "event") {
                        if let Some(range) = DateRange::parse(event) {
                            widen(range);
                        }
                    }
                    if let Some(range) = value
                        .get("repeat")
                        .and_then(|r| r.get("boundsPeriod"))
                        .and_then(period)
                    {
                        widen(range);
                    }
                    span
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn period(value: &Value) -> Option<DateRange> {
    let start = str_at(value, "start").and_then(DateRange::parse);
    let end = str_at(value, "end").and_then(DateRange::parse);
    if start.is_none() && end.is_none() {
        return None;
    }
    Some(DateRange {
        low: start.map_or(i64::MIN, |s| s.low),
        high: end.map_or(i64::MAX, |e| e.high),
    })
}

fn json_number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        _ => None,
    }
}

fn number_rows(shape: &Shape<'_>, sink: &mut Sink<'_>) {
    match shape {
        Shape::Number(n) => sink.push(IndexValue::Number(NumberRange::exact(*n))),
        Shape::Node(_, value @ Value::Number(_)) => {
            if let Some(n) = json_number(Some(value)) {
                sink.push(IndexValue::Number(NumberRange::exact(n)));
            }
        }
        Shape::Node(name, value @ Value::Object(_)) => {
            let kind = if name.is_empty() { guess(value) } else { name };
            if kind == "Range" {
                if let Some(range) = range_of(value) {
                    sink.push(IndexValue::Number(range));
                }
            } else if let Some(n) = json_number(value.get("value")) {
                sink.push(IndexValue::Number(NumberRange::exact(n)));
            }
        }
        _ => {}
    }
}

/// A Range's bounds, open where missing; `None` when it has neither.
fn range_of(value: &Value) -> Option<NumberRange> {
    let low = json_number(value.get("low").and_then(|l| l.get("value")));
    let high = json_number(value.get("high").and_then(|h| h.get("value")));
    let middle = match (low, high) {
        (None, None) => return None,
        (Some(l), Some(h)) => l + (h - l) / 2.0,
        (Some(v), None) | (None, Some(v)) => v,
    };
    Some(NumberRange {
        value: middle,
        low: low.unwrap_or(f64::NEG_INFINITY),
        high: high.unwrap_or(f64::INFINITY),
    })
}

const UCUM: &str = "http://unitsofmeasure.org";
const CURRENCIES: &str = "urn:iso:std:iso:4217";

fn quantity_rows(shape: &Shape<'_>, sink: &mut Sink<'_>) {
    match shape {
        Shape::Quantity(value, unit) => sink.push(IndexValue::Quantity {
            range: NumberRange::exact(*value),
            system: Some(UCUM.to_owned()),
            code: Some(unit.clone()),
        }),
        Shape::Number(n) => sink.push(IndexValue::Quantity {
            range: NumberRange::exact(*n),
            system: None,
            code: None,
        }),
        Shape::Node(name, value @ Value::Object(_)) => {
            let kind = if name.is_empty() { guess(value) } else { name };
            match kind {
                "SampledData" => {}
                "Money" => {
                    if let Some(n) = json_number(value.get("value")) {
                        let currency = owned(str_at(value, "currency"));
                        sink.push(IndexValue::Quantity {
                            range: NumberRange::exact(n),
                            system: currency.as_ref().map(|_| CURRENCIES.to_owned()),
                            code: currency,
                        });
                    }
                }
                "Range" => {
                    if let Some(range) = range_of(value) {
                        let unit = value
                            .get("low")
                            .filter(|l| l.get("value").is_some())
                            .or_else(|| value.get("high"));
                        let (system, code) = unit.map_or((None, None), quantity_unit);
                        sink.push(IndexValue::Quantity {
                            range,
                            system,
                            code,
                        });
                    }
                }
                _ => {
                    if let Some(n) = json_number(value.get("value")) {
                        let (system, code) = quantity_unit(value);
                        sink.push(IndexValue::Quantity {
                            range: NumberRange::exact(n),
                            system,
                            code,
                        });
                    }
                }
            }
        }
        Shape::Node(_, value @ Value::Number(_)) => {
            if let Some(n) = json_number(Some(value)) {
                sink.push(IndexValue::Quantity {
                    range: NumberRange::exact(n),
                    system: None,
                    code: None,
                });
            }
        }
        _ => {}
    }
}

/// A Quantity's system and code, the unit standing in for a missing code.
fn quantity_unit(quantity: &Value) -> (Option<String>, Option<String>) {
    let system = owned(str_at(quantity, "system"));
    let code = owned(str_at(quantity, "code").or_else(|| str_at(quantity, "unit")));
    (system, code)
}

/// Lower case, accents removed, whitespace collapsed and trimmed (see
/// [`crate::normalize_string`]).
pub(crate) fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Whether a space is owed before the next character (runs collapse to one).
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            space = !out.is_empty();
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else if let Some(base) = strip_accent(c) {
            out.push_str(base);
        } else if is_combining_mark(c) {
            // A decomposed accent: dropped.
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

/// Combining diacritical marks (U+0300–U+036F) and their supplement and extensions.
fn is_combining_mark(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}' | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Lower-case base letters of U+00C0–U+017F (Latin-1 Supplement letters and Latin
/// Extended-A), two characters each (a space pads single letters); `??` leaves a character as is.
const LATIN: &str = concat!(
    // U+00C0 ÀÁÂÃÄÅÆÇ ÈÉÊËÌÍÎÏ
    "a a a a a a aec e e e e i i i i ",
    // U+00D0 ÐÑÒÓÔÕÖ× ØÙÚÛÜÝÞß
    "d n o o o o o ??o u u u u y thss",
    // U+00E0 àáâãäåæç èéêëìíîï
    "a a a a a a aec e e e e i i i i ",
    // U+00F0 ðñòóôõö÷ øùúûüýþÿ
    "d n o o o o o ??o u u u u y thy ",
    // U+0100 ĀāĂăĄąĆć ĈĉĊċČčĎď
    "a a a a a a c c c c c c c c d d ",
    // U+0110 ĐđĒēĔĕĖė ĘęĚěĜĝĞğ
    "d d e e e e e e e e e e g g g g ",
    // U+0120 ĠġĢģĤĥĦħ ĨĩĪīĬĭĮį
    "g g g g h h h h i i i i i i i i ",
    // U+0130 İıĲĳĴĵĶķ ĸĹĺĻļĽľĿ
    "i i ijijj j k k k l l l l l l l ",
    // U+0140 ŀŁłŃńŅņŇ ňŉŊŋŌōŎŏ
    "l l l n n n n n n n n n o o o o ",
    // U+0150 ŐőŒœŔŕŖŗ ŘřŚśŜŝŞş
    "o o oeoer r r r r r s s s s s s ",
    // U+0160 ŠšŢţŤťŦŧ ŨũŪūŬŭŮů
    "s s t t t t t t u u u u u u u u ",
    // U+0170 ŰűŲųŴŵŶŷ ŸŹźŻżŽžſ
    "u u u u w w y y y z z z z z z s ",
);

fn strip_accent(c: char) -> Option<&'static str> {
    let offset = (c as usize).checked_sub(0xC0)?;
    let entry = LATIN.get(offset * 2..offset * 2 + 2)?;
    if entry == "??" {
        return None;
    }
    Some(entry.trim_end())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn fold_table_has_one_entry_per_character() {
        assert_eq!(LATIN.len(), (0x180 - 0xC0) * 2);
    }

    #[test]
    fn fold_lowers_strips_accents_and_collapses_whitespace() {
        assert_eq!(fold("Zoë"), "zoe");
        assert_eq!(fold("MÜLLER"), "muller");
        assert_eq!(fold("Müller"), fold("muller"));
        assert_eq!(fold("José"), "jose");
        assert_eq!(fold("  Anne \t\n Marie  "), "anne marie");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Łódź"), "lodz");
        assert_eq!(fold("Œuvre Ærø"), "oeuvre aero");
        assert_eq!(fold("Jose\u{301}"), "jose");
        assert_eq!(fold("ΣΟΦΊΑ"), "σοφία");
        assert_eq!(fold("×÷"), "×÷");
        assert_eq!(fold(""), "");
    }

    fn rows_of<'r>(rows: &'r [IndexRow], key: &str) -> Vec<&'r IndexValue> {
        rows.iter()
            .filter(|r| r.key == key)
            .map(|r| &r.value)
            .collect()
    }

    fn token(system: Option<&str>, code: &str) -> IndexValue {
        IndexValue::Token {
            system: system.map(str::to_owned),
            code: Some(code.to_owned()),
        }
    }

    fn exact_strings(rows: &[IndexRow], key: &str) -> Vec<String> {
        rows_of(rows, key)
            .into_iter()
            .filter_map(|v| match v {
                IndexValue::String { exact, .. } => Some(exact.clone()),
                _ => None,
            })
            .collect()
    }

    fn patient() -> Value {
        serde_json::json!({
            "resourceType": "Patient",
            "id": "p1",
            "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"],
                     "tag": [{"system": "https://smarthealthit.org/tags", "code": "synthea-5-2019"}]},
            "identifier": [
                {"system": "https://github.com/synthetichealth/synthea", "value": "abc-123"},
                {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR", "display": "Medical Record Number"}],
                          "text": "Medical Record Number"},
                 "system": "http://hospital.smarthealthit.org", "value": "abc-123"}
            ],
            "name": [{"use": "official", "family": "Müller", "given": ["Zoë", "Anne"], "prefix": ["Ms."]}],
            "telecom": [{"system": "phone", "value": "555-978-4581", "use": "home"},
                        {"system": "email", "value": "zoe@example.org"}],
            "gender": "female",
            "birthDate": "1956-07-29",
            "address": [{"line": ["313 Lockman Row", "Suite 4"], "city": "Peabody", "state": "MA",
                         "postalCode": "01940", "country": "US"}],
            "generalPractitioner": [
                {"reference": "Practitioner/dr-1"},
                {"reference": "https://other.example/fhir/Organization/org-9/_history/2"},
                {"reference": "urn:uuid:0a6ccaa1-4f1a-4bde-9b6b-c4e2e3b6a1b1"},
                {"reference": "#contained-1"},
                {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "9999"}}
            ]
        })
    }

    #[test]
    fn patient_rows() {
        let rows = index(&patient());
        assert!(rows.iter().all(|r| r.group == 0));
        assert!(rows_of(&rows, "_id").is_empty() && rows_of(&rows, "_lastUpdated").is_empty());
        let mut names = exact_strings(&rows, "name");
        names.sort();
        assert_eq!(names, ["Anne", "Ms.", "Müller", "Zoë"]);
        assert!(rows_of(&rows, "family").contains(&&IndexValue::String {
            normalized: "muller".to_owned(),
            exact: "Müller".to_owned()
        }));
        assert_eq!(exact_strings(&rows, "given"), ["Zoë", "Anne"]);
        assert_eq!(
            exact_strings(&rows, "address"),
            ["313 Lockman Row", "Suite 4", "Peabody", "MA", "01940", "US"]
        );
        assert_eq!(exact_strings(&rows, "address-city"), ["Peabody"]);
        // Identifiers: the value, its type with the value, and the type's text.
        assert_eq!(
            rows_of(&rows, "identifier"),
            [
                &token(
                    Some("https://github.com/synthetichealth/synthea"),
                    "abc-123"
                ),
                &token(Some("http://hospital.smarthealthit.org"), "abc-123"),
            ]
        );
        assert_eq!(
            rows_of(&rows, "identifier:of-type"),
            [&token(
                Some("http://terminology.hl7.org/CodeSystem/v2-0203"),
                "MR|abc-123"
            )]
        );
        assert_eq!(
            exact_strings(&rows, "identifier:text"),
            ["Medical Record Number"]
        );
        assert_eq!(
            rows_of(&rows, "telecom"),
            [
                &token(Some("phone"), "555-978-4581"),
                &token(Some("email"), "zoe@example.org")
            ]
        );
        assert_eq!(
            rows_of(&rows, "phone"),
            [&token(Some("phone"), "555-978-4581")]
        );
        assert_eq!(
            rows_of(&rows, "email"),
            [&token(Some("email"), "zoe@example.org")]
        );
        assert_eq!(rows_of(&rows, "gender"), [&token(None, "female")]);
        assert_eq!(
            rows_of(&rows, "birthdate"),
            [&IndexValue::Date(DateRange::parse("1956-07-29").unwrap())]
        );
        assert_eq!(
            rows_of(&rows, "general-practitioner"),
            [
                &IndexValue::Reference {
                    resource_type: Some("Practitioner".to_owned()),
                    id: Some("dr-1".to_owned()),
                    url: None
                },
                &IndexValue::Reference {
                    resource_type: Some("Organization".to_owned()),
                    id: Some("org-9".to_owned()),
                    url: Some(
                        "https://other.example/fhir/Organization/org-9/_history/2".to_owned()
                    )
                },
                &IndexValue::Reference {
                    resource_type: None,
                    id: None,
                    url: Some("urn:uuid:0a6ccaa1-4f1a-4bde-9b6b-c4e2e3b6a1b1".to_owned())
                },
            ]
        );
        assert_eq!(
            rows_of(&rows, "general-practitioner:identifier"),
            [&token(Some("http://hl7.org/fhir/sid/us-npi"), "9999")]
        );
        assert_eq!(
            rows_of(&rows, "_tag"),
            [&token(
                Some("https://smarthealthit.org/tags"),
                "synthea-5-2019"
            )]
        );
        assert_eq!(
            rows_of(&rows, "_profile"),
            [&IndexValue::Uri(
                "http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient".to_owned()
            )]
        );
    }

    #[test]
    fn observation_rows_and_composites() {
        let observation = serde_json::json!({
            "resourceType": "Observation",
            "id": "o1",
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"}],
                     "text": "Blood pressure"},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2011-10-14T19:37:54-04:00",
            "valueQuantity": {"value": 1.50, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
            "component": [
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]},
                 "valueQuantity": {"value": 82, "unit": "mm[Hg]", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                 "valueQuantity": {"value": 120, "unit": "mm[Hg]"}},
                {"code": {"coding": [{"system": "http://loinc.org", "code": "9999-9"}]},
                 "valueString": "no quantity"}
            ]
        });
        let rows = index(&observation);
        assert_eq!(
            rows_of(&rows, "code"),
            [&token(Some("http://loinc.org"), "85354-9")]
        );
        assert_eq!(
            exact_strings(&rows, "code:text"),
            ["Blood pressure panel", "Blood pressure"]
        );
        assert_eq!(
            rows_of(&rows, "value-quantity"),
            [&IndexValue::Quantity {
                range: NumberRange::exact(1.5),
                system: Some("http://unitsofmeasure.org".to_owned()),
                code: Some("mmol/L".to_owned()),
            }]
        );
        assert_eq!(
            rows_of(&rows, "date"),
            [&IndexValue::Date(
                DateRange::parse("2011-10-14T23:37:54Z").unwrap()
            )]
        );
        let subject = IndexValue::Reference {
            resource_type: Some("Patient".to_owned()),
            id: Some("p1".to_owned()),
            url: None,
        };
        assert_eq!(rows_of(&rows, "subject"), [&subject]);
        assert_eq!(rows_of(&rows, "patient"), [&subject]);
        // component-code-value-quantity: the first two components, groups 1 and 2;
        // the third has no quantity and is left out.
        let composite: Vec<(&str, u32, &IndexValue)> = rows
            .iter()
            .filter(|r| r.key.starts_with("component-code-value-quantity$"))
            .map(|r| (r.key.as_str(), r.group, &r.value))
            .collect();
        let quantity = |v: f64, code: &str, system: Option<&str>| IndexValue::Quantity {
            range: NumberRange::exact(v),
            system: system.map(str::to_owned),
            code: Some(code.to_owned()),
        };
        assert_eq!(
            composite,
            [
                (
                    "component-code-value-quantity$0",
                    1,
                    &token(Some("http://loinc.org"), "8462-4")
                ),
                (
                    "component-code-value-quantity$1",
                    1,
                    &quantity(82.0, "mm[Hg]", Some("http://unitsofmeasure.org"))
                ),
                (
                    "component-code-value-quantity$0",
                    2,
                    &token(Some("http://loinc.org"), "8480-6")
                ),
                (
                    "component-code-value-quantity$1",
                    2,
                    &quantity(120.0, "mm[Hg]", None)
                ),
            ]
        );
        // The observation's own code and value as one item.
        let own: Vec<u32> = rows
            .iter()
            .filter(|r| r.key.starts_with("code-value-quantity$"))
            .map(|r| r.group)
            .collect();
        assert_eq!(own, [1, 1]);
        // Component values are not indexed with derived keys.
        assert!(
            rows.iter()
                .all(|r| !r.key.contains("$") || !r.key.contains(':'))
        );
    }

    #[test]
    fn periods_timings_ranges_and_money() {
        let encounter = serde_json::json!({
            "resourceType": "Encounter", "status": "finished",
            "class": {"code": "AMB"},
            "period": {"start": "2020-05-01T10:00:00+05:00"}
        });
        let rows = index(&encounter);
        let start = DateRange::parse("2020-05-01T05:00:00Z").unwrap();
        assert_eq!(
            rows_of(&rows, "date"),
            [&IndexValue::Date(DateRange {
                low: start.low,
                high: i64::MAX
            })]
        );
        let closed = serde_json::json!({
            "resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "period": {"end": "2020-05"}
        });
        assert_eq!(
            rows_of(&index(&closed), "date"),
            [&IndexValue::Date(DateRange {
                low: i64::MIN,
                high: DateRange::parse("2020-06").unwrap().low
            })]
        );
        let request = serde_json::json!({
            "resourceType": "MedicationRequest", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "dosageInstruction": [{"timing": {"event": ["2021-01-05", "2021-01-02"],
                                              "repeat": {"boundsPeriod": {"start": "2021-01-01", "end": "2021-01-10"}}}}]
        });
        // MedicationRequest's `date` is authoredOn; the timing goes nowhere, so test the conversion directly.
        let timing = request["dosageInstruction"][0]["timing"].clone();
        let shape = Shape::Node("Timing", &timing);
        assert_eq!(
            date_of(&shape),
            Some(DateRange {
                low: DateRange::parse("2021-01-01").unwrap().low,
                high: DateRange::parse("2021-01-10").unwrap().high
            })
        );
        let money = serde_json::json!({"value": 12.5, "currency": "USD"});
        let mut rows = Vec::new();
        quantity_rows(
            &Shape::Node("Money", &money),
            &mut Sink::new(&mut rows, "total", 0, true),
        );
        assert_eq!(
            rows[0].value,
            IndexValue::Quantity {
                range: NumberRange::exact(12.5),
                system: Some(CURRENCIES.to_owned()),
                code: Some("USD".to_owned())
            }
        );
        let range = serde_json::json!({"low": {"value": 2, "unit": "mg"}});
        let mut rows = Vec::new();
        quantity_rows(
            &Shape::Node("Range", &range),
            &mut Sink::new(&mut rows, "dose", 0, true),
        );
        let IndexValue::Quantity { range, code, .. } = &rows[0].value else {
            panic!("not a quantity");
        };
        assert_eq!(
            (range.low, range.high, code.as_deref()),
            (2.0, f64::INFINITY, Some("mg"))
        );
    }

    #[test]
    fn odd_input_gives_no_rows_and_no_panic() {
        assert!(index(&serde_json::json!({})).is_empty());
        assert!(index(&serde_json::json!({"resourceType": "NoSuchType"})).is_empty());
        assert!(index(&serde_json::json!([1, 2])).is_empty());
        let odd = serde_json::json!({
            "resourceType": "Patient", "birthDate": "not a date", "name": "not a list",
            "identifier": [{"type": {"coding": [{"code": 5}]}}], "gender": 7,
            "generalPractitioner": [{"reference": "Practitioner?identifier=x|1"}, {"reference": ""}]
        });
        let rows = index(&odd);
        assert!(rows_of(&rows, "birthdate").is_empty());
        assert!(rows_of(&rows, "general-practitioner").is_empty());
    }

    #[test]
    fn local_parts_of_references() {
        assert_eq!(local_part("Patient/1"), Some(("", "Patient", "1")));
        assert_eq!(
            local_part("Patient/1/_history/3"),
            Some(("", "Patient", "1"))
        );
        assert_eq!(
            local_part("http://x.org/fhir/Patient/1"),
            Some(("http://x.org/fhir", "Patient", "1"))
        );
        assert_eq!(local_part("Patient"), None);
        assert_eq!(local_part("Foo/1"), None);
        assert_eq!(local_part("Patient/a_b"), None);
    }
}
