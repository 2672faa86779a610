//! The brute-force search oracle and the query generator for `search_oracle.rs`.
//!
//! The oracle answers a parsed query by evaluating each parameter's FHIRPath expression
//! on every resource of the corpus and testing the resulting elements directly.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

mod generate;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;

use fhirpath::{Environment, Item};
use search::{
    Clause, Criterion, DateRange, Include, NumberRange, ParamType, ReferenceTest, Step,
    StringMatch, SystemMatch, Test, TokenTest, UriMatch,
};
use serde_json::Value;

pub use generate::{extra_queries, extras, generate};

pub type Key = (String, String);

/// What one parameter's expression selected in one resource.
type Selection<'c> = Rc<Vec<Item<'c>>>;

/// Every current resource, by type and id.
#[derive(Default)]
pub struct Corpus {
    pub resources: HashMap<Key, Value>,
    pub by_type: HashMap<String, Vec<String>>,
}

impl Corpus {
    pub fn add(&mut self, resource: Value) {
        let resource_type = resource["resourceType"].as_str().unwrap().to_string();
        let id = resource["id"].as_str().unwrap().to_string();
        self.by_type
            .entry(resource_type.clone())
            .or_default()
            .push(id.clone());
        self.resources.insert((resource_type, id), resource);
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn of_type<'s>(
        &'s self,
        resource_type: &str,
    ) -> impl Iterator<Item = (&'s str, &'s Value)> + use<'s> {
        let resource_type = resource_type.to_string();
        let ids = self.by_type.get(&resource_type);
        ids.into_iter().flatten().filter_map(move |id| {
            self.resources
                .get(&(resource_type.clone(), id.clone()))
                .map(|r| (id.as_str(), r))
        })
    }
}

/// What a query should return.
pub struct Expected {
    pub matches: BTreeSet<Key>,
    pub included: BTreeSet<Key>,
}

pub struct Oracle<'c> {
    corpus: &'c Corpus,
    env: &'c Environment<'c>,
    /// (type, id, param) → what the parameter's expression selects: many queries test
    /// the same parameters, and evaluating is the slow part.
    selected: RefCell<HashMap<(String, String, String), Selection<'c>>>,
    /// (source type, reference param) → target → sources pointing at it.
    reverse: RefCell<HashMap<Key, HashMap<Key, Vec<String>>>>,
}

impl<'c> Oracle<'c> {
    pub fn new(corpus: &'c Corpus, env: &'c Environment<'c>) -> Oracle<'c> {
        Oracle {
            corpus,
            env,
            selected: RefCell::new(HashMap::new()),
            reverse: RefCell::new(HashMap::new()),
        }
    }

    pub fn answer(
        &self,
        resource_type: &str,
        params: &[(String, String)],
    ) -> Result<Expected, String> {
        let parsed = search::parse(
            &[resource_type.to_string()],
            params,
            search::ParseOptions { strict: true },
        )
        .map_err(|error| error.to_string())?;
        let query = parsed.query;
        let mut matches = BTreeSet::new();
        for (id, resource) in self.corpus.of_type(resource_type) {
            if query
                .clauses
                .iter()
                .all(|clause| self.clause_holds(resource_type, id, resource, clause))
            {
                matches.insert((resource_type.to_string(), id.to_string()));
            }
        }
        let mut included = BTreeSet::new();
        self.include(&query.includes, &query.revincludes, &matches, &mut included);
        Ok(Expected { matches, included })
    }

    fn clause_holds(
        &self,
        resource_type: &str,
        id: &str,
        resource: &'c Value,
        clause: &Clause,
    ) -> bool {
        clause
            .any_of
            .iter()
            .any(|criterion| self.criterion_holds(resource_type, id, resource, criterion, 0))
    }

    fn criterion_holds(
        &self,
        resource_type: &str,
        id: &str,
        resource: &'c Value,
        criterion: &Criterion,
        step: usize,
    ) -> bool {
        match criterion.path.get(step) {
            None => self.test_param(
                resource_type,
                id,
                resource,
                &criterion.param,
                &criterion.test,
            ),
            Some(Step::Forward { param, target_type }) => self
                .references(resource_type, resource, param)
                .into_iter()
                .filter_map(|reference| reference.local)
                .filter(|(ty, _)| ty == target_type)
                .any(|key| match self.corpus.resources.get(&key) {
                    Some(target) => {
                        self.criterion_holds(&key.0, &key.1, target, criterion, step + 1)
                    }
                    None => false,
                }),
            Some(Step::Reverse { source_type, param }) => {
                let sources = self.sources(
                    source_type,
                    param,
                    &(resource_type.to_string(), id.to_string()),
                );
                sources.iter().any(|source_id| {
                    let key = (source_type.clone(), source_id.clone());
                    let source = &self.corpus.resources[&key];
                    self.criterion_holds(source_type, source_id, source, criterion, step + 1)
                })
            }
        }
    }

    /// The ids of `source_type` resources whose `param` refers to `target`.
    fn sources(&self, source_type: &str, param: &str, target: &Key) -> Vec<String> {
        let map_key = (source_type.to_string(), param.to_string());
        if !self.reverse.borrow().contains_key(&map_key) {
            let mut map: HashMap<Key, Vec<String>> = HashMap::new();
            for (id, resource) in self.corpus.of_type(source_type) {
                for reference in self.references(source_type, resource, param) {
                    if let Some(local) = reference.local {
                        map.entry(local).or_default().push(id.to_string());
                    }
                }
            }
            self.reverse.borrow_mut().insert(map_key.clone(), map);
        }
        self.reverse.borrow()[&map_key]
            .get(target)
            .cloned()
            .unwrap_or_default()
    }

    fn references(&self, resource_type: &str, resource: &'c Value, param: &str) -> Vec<Reference> {
        self.select(resource_type, resource, param)
            .iter()
            .filter_map(reference_of)
            .collect()
    }

    /// What `param`'s expression selects in `resource` (empty if it fails).
    fn select(&self, resource_type: &str, resource: &'c Value, param: &str) -> Rc<Vec<Item<'c>>> {
        let id = resource["id"].as_str().unwrap_or_default();
        let key = (resource_type.to_string(), id.to_string(), param.to_string());
        if let Some(items) = self.selected.borrow().get(&key) {
            return Rc::clone(items);
        }
        let items = search::param(resource_type, param)
            .and_then(|def| def.expression.as_ref())
            .and_then(|expression| expression.evaluate(resource, self.env).ok())
            .unwrap_or_default();
        let items = Rc::new(items);
        self.selected.borrow_mut().insert(key, Rc::clone(&items));
        items
    }

    fn test_param(
        &self,
        resource_type: &str,
        id: &str,
        resource: &'c Value,
        param: &str,
        test: &Test,
    ) -> bool {
        if param == "_id" {
            let value = Value::String(id.to_string());
            return test_values(&[Element::Id(&value)], ParamType::Token, test);
        }
        if param == "_lastUpdated" {
            let value = &resource["meta"]["lastUpdated"];
            return test_values(&[Element::Instant(value)], ParamType::Date, test);
        }
        let Some(def) = search::param(resource_type, param) else {
            return false;
        };
        let items = self.select(resource_type, resource, param);
        if let Test::Composite(tests) = test {
            let env = self.env;
            return items.iter().any(|item| {
                def.components.iter().zip(tests).all(|(component, test)| {
                    let Ok(values) =
                        component
                            .expression
                            .evaluate_focus(resource, vec![item.clone()], env)
                    else {
                        return false;
                    };
                    let elements: Vec<Element> = values.iter().map(Element::Item).collect();
                    test_values(&elements, component.param_type, test)
                })
            });
        }
        let elements: Vec<Element> = items.iter().map(Element::Item).collect();
        test_values(&elements, def.param_type, test)
    }

    fn include(
        &self,
        includes: &[Include],
        revincludes: &[Include],
        matches: &BTreeSet<Key>,
        included: &mut BTreeSet<Key>,
    ) {
        let mut frontier: Vec<Key> = matches.iter().cloned().collect();
        let mut first = true;
        for _round in 0..10 {
            let mut found = Vec::new();
            for include in includes.iter().filter(|i| first || i.iterate) {
                for key in frontier.iter().filter(|k| k.0 == include.source_type) {
                    let resource = &self.corpus.resources[key];
                    let params: Vec<String> = match &include.param {
                        Some(param) => vec![param.clone()],
                        None => search::params_for(&key.0)
                            .iter()
                            .filter(|p| p.param_type == ParamType::Reference)
                            .map(|p| p.code.clone())
                            .collect(),
                    };
                    for param in params {
                        for reference in self.references(&key.0, resource, &param) {
                            let Some(target) = reference.local else {
                                continue;
                            };
                            if include.target_type.as_ref().is_some_and(|t| *t != target.0) {
                                continue;
                            }
                            if self.corpus.resources.contains_key(&target) {
                                found.push(target);
                            }
                        }
                    }
                }
            }
            for include in revincludes.iter().filter(|i| first || i.iterate) {
                let params: Vec<String> = match &include.param {
                    Some(param) => vec![param.clone()],
                    None => search::params_for(&include.source_type)
                        .iter()
                        .filter(|p| p.param_type == ParamType::Reference)
                        .map(|p| p.code.clone())
                        .collect(),
                };
                for key in &frontier {
                    for param in &params {
                        for source in self.sources(&include.source_type, param, key) {
                            found.push((include.source_type.clone(), source));
                        }
                    }
                }
            }
            first = false;
            frontier = found
                .into_iter()
                .filter(|key| !matches.contains(key) && included.insert(key.clone()))
                .collect();
            if frontier.is_empty() {
                break;
            }
        }
    }
}

/// A reference as the oracle understands it: its local `Type/id`, its URL, its identifier.
struct Reference {
    local: Option<Key>,
    url: Option<String>,
    identifier: Option<(Option<String>, Option<String>)>,
}

fn reference_of(item: &Item<'_>) -> Option<Reference> {
    let node = item.as_node()?;
    let value = node.value;
    let text = match node.fhir_type.name {
        "Reference" => value.get("reference").and_then(Value::as_str),
        "canonical" | "uri" | "url" => value.as_str(),
        _ => None,
    };
    let identifier = value.get("identifier").map(|identifier| {
        (
            identifier["system"].as_str().map(str::to_string),
            identifier["value"].as_str().map(str::to_string),
        )
    });
    let mut reference = Reference {
        local: None,
        url: None,
        identifier,
    };
    if let Some(text) = text {
        if text.starts_with('#') {
            return Some(reference);
        }
        let text = text.split("/_history/").next().unwrap_or(text);
        let absolute = text.contains("://") || text.starts_with("urn:");
        if absolute {
            reference.url = Some(text.to_string());
        }
        let parts: Vec<&str> = text.rsplitn(3, '/').collect();
        if parts.len() >= 2
            && fhir::definitions().is_resource_type(parts[1])
            && fhir::is_valid_id(parts[0])
        {
            reference.local = Some((parts[1].to_string(), parts[0].to_string()));
        }
    }
    Some(reference)
}

/// A value to test: an element the expression selected, or a value the store keeps.
enum Element<'a, 'i> {
    Item(&'i Item<'a>),
    Id(&'i Value),
    Instant(&'i Value),
}

impl<'a, 'i> Element<'a, 'i> {
    fn type_name(&self) -> &str {
        match self {
            Element::Item(Item::Node(node)) => node.fhir_type.name,
            Element::Item(Item::String(_)) => "string",
            Element::Item(Item::Boolean(_)) => "boolean",
            Element::Item(_) => "",
            Element::Id(_) => "id",
            Element::Instant(_) => "instant",
        }
    }

    fn json(&self) -> Option<&Value> {
        match self {
            Element::Item(Item::Node(node)) => Some(node.value),
            Element::Item(_) => None,
            Element::Id(value) | Element::Instant(value) => Some(value),
        }
    }

    fn text(&self) -> Option<String> {
        match self {
            Element::Item(item) => item.as_str().map(str::to_string),
            Element::Id(value) | Element::Instant(value) => value.as_str().map(str::to_string),
        }
    }
}

fn test_values(elements: &[Element], param_type: ParamType, test: &Test) -> bool {
    match test {
        Test::Missing(missing) => elements.is_empty() == *missing,
        Test::Not(inner) => !test_values(elements, param_type, inner),
        Test::Composite(_) => false,
        _ => elements
            .iter()
            .any(|element| test_one(element, param_type, test)),
    }
}

fn test_one(element: &Element, param_type: ParamType, test: &Test) -> bool {
    match test {
        Test::String { value, mode } => {
            let texts = if param_type == ParamType::Token {
                token_texts(element)
            } else {
                strings(element)
            };
            texts.iter().any(|text| match mode {
                StringMatch::Exact => text == value,
                StringMatch::StartsWith => {
                    search::normalize_string(text).starts_with(value.as_str())
                }
                StringMatch::Contains => search::normalize_string(text).contains(value.as_str()),
            })
        }
        Test::Token(token) => tokens(element)
            .iter()
            .any(|(system, code)| token_matches(token, system, code)),
        Test::OfType {
            system,
            code,
            value,
        } => {
            let Some(json) = element.json() else {
                return false;
            };
            if element.type_name() != "Identifier" || json["value"].as_str() != Some(value) {
                return false;
            }
            json["type"]["coding"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|coding| {
                    coding["system"].as_str() == Some(system)
                        && coding["code"].as_str() == Some(code)
                })
        }
        Test::Reference(reference_test) => {
            let Element::Item(item) = element else {
                return false;
            };
            let Some(reference) = reference_of(item) else {
                return false;
            };
            match reference_test {
                ReferenceTest::Local { resource_type, id } => {
                    reference.local.is_some_and(|(ty, rid)| {
                        rid == *id && resource_type.as_ref().is_none_or(|t| *t == ty)
                    })
                }
                ReferenceTest::AnyOf { resource_type, ids } => {
                    reference.local.is_some_and(|(ty, rid)| {
                        ids.contains(&rid) && resource_type.as_ref().is_none_or(|t| *t == ty)
                    })
                }
                ReferenceTest::Url(url) => reference.url.as_deref() == Some(url.as_str()),
                ReferenceTest::Identifier(token) => reference
                    .identifier
                    .is_some_and(|(system, value)| token_matches(token, &system, &value)),
            }
        }
        Test::Date { prefix, range } => dates(element)
            .iter()
            .any(|target| prefix.matches_date(*range, *target)),
        Test::Number { prefix, range } => numbers(element)
            .iter()
            .any(|target| prefix.matches_number(*range, *target)),
        Test::Quantity {
            prefix,
            range,
            system,
            code,
        } => quantities(element).iter().any(|(target, s, c)| {
            prefix.matches_number(*range, *target)
                && system.as_ref().is_none_or(|want| s.as_ref() == Some(want))
                && code.as_ref().is_none_or(|want| c.as_ref() == Some(want))
        }),
        Test::Uri { value, mode } => element.text().is_some_and(|uri| match mode {
            UriMatch::Exact => uri == *value,
            UriMatch::Below => uri.starts_with(value.as_str()),
            UriMatch::Above => value.starts_with(uri.as_str()),
        }),
        Test::Missing(_) | Test::Not(_) | Test::Composite(_) => false,
    }
}

fn token_matches(token: &TokenTest, system: &Option<String>, code: &Option<String>) -> bool {
    let system_ok = match &token.system {
        SystemMatch::Any => true,
        SystemMatch::None => system.is_none(),
        SystemMatch::Is(want) => system.as_deref() == Some(want.as_str()),
    };
    system_ok
        && token
            .code
            .as_ref()
            .is_none_or(|want| code.as_deref() == Some(want.as_str()))
}

fn strings(element: &Element) -> Vec<String> {
    let Some(json) = element.json() else {
        return element.text().into_iter().collect();
    };
    let mut out = Vec::new();
    let mut push = |value: &Value| match value {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => {
            out.extend(items.iter().filter_map(Value::as_str).map(str::to_string))
        }
        _ => {}
    };
    match element.type_name() {
        "HumanName" => {
            for field in ["text", "family", "given", "prefix", "suffix"] {
                push(&json[field]);
            }
        }
        "Address" => {
            for field in [
                "text",
                "line",
                "city",
                "district",
                "state",
                "postalCode",
                "country",
            ] {
                push(&json[field]);
            }
        }
        _ => push(json),
    }
    out
}

fn token_texts(element: &Element) -> Vec<String> {
    let Some(json) = element.json() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    match element.type_name() {
        "Coding" => out.extend(json["display"].as_str().map(str::to_string)),
        "CodeableConcept" => {
            out.extend(json["text"].as_str().map(str::to_string));
            for coding in json["coding"].as_array().into_iter().flatten() {
                out.extend(coding["display"].as_str().map(str::to_string));
            }
        }
        "Identifier" => out.extend(json["type"]["text"].as_str().map(str::to_string)),
        _ => {}
    }
    out
}

type Token = (Option<String>, Option<String>);

fn tokens(element: &Element) -> Vec<Token> {
    let text = |value: &Value| value.as_str().map(str::to_string);
    let Some(json) = element.json() else {
        return match element {
            Element::Item(Item::Boolean(b)) => vec![(None, Some(b.to_string()))],
            _ => element
                .text()
                .map(|t| vec![(None, Some(t))])
                .unwrap_or_default(),
        };
    };
    match element.type_name() {
        "Coding" => vec![(text(&json["system"]), text(&json["code"]))],
        "CodeableConcept" => json["coding"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|coding| (text(&coding["system"]), text(&coding["code"])))
            .collect(),
        "Identifier" => vec![(text(&json["system"]), text(&json["value"]))],
        "ContactPoint" => vec![(text(&json["system"]), text(&json["value"]))],
        "boolean" => json
            .as_bool()
            .map(|b| vec![(None, Some(b.to_string()))])
            .unwrap_or_default(),
        _ => text(json)
            .map(|t| vec![(None, Some(t))])
            .unwrap_or_default(),
    }
}

fn date_of(value: &Value) -> Option<DateRange> {
    value.as_str().and_then(DateRange::parse)
}

fn dates(element: &Element) -> Vec<DateRange> {
    let Some(json) = element.json() else {
        return element
            .text()
            .and_then(|t| DateRange::parse(&t))
            .into_iter()
            .collect();
    };
    match element.type_name() {
        "Period" => {
            let low = date_of(&json["start"]).map_or(i64::MIN, |r| r.low);
            let high = date_of(&json["end"]).map_or(i64::MAX, |r| r.high);
            vec![DateRange { low, high }]
        }
        "Timing" => {
            let events: Vec<DateRange> = json["event"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(date_of)
                .collect();
            let mut out = Vec::new();
            if let (Some(low), Some(high)) = (
                events.iter().map(|r| r.low).min(),
                events.iter().map(|r| r.high).max(),
            ) {
                out.push(DateRange { low, high });
            }
            let bounds = &json["repeat"]["boundsPeriod"];
            if bounds.is_object() {
                out.push(DateRange {
                    low: date_of(&bounds["start"]).map_or(i64::MIN, |r| r.low),
                    high: date_of(&bounds["end"]).map_or(i64::MAX, |r| r.high),
                });
            }
            out
        }
        _ => date_of(json).into_iter().collect(),
    }
}

fn number_of(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64().or_else(|| n.to_string().parse().ok()),
        _ => None,
    }
}

fn numbers(element: &Element) -> Vec<NumberRange> {
    let Some(json) = element.json() else {
        return Vec::new();
    };
    match element.type_name() {
        "Range" => {
            let low = number_of(&json["low"]["value"]).unwrap_or(f64::NEG_INFINITY);
            let high = number_of(&json["high"]["value"]).unwrap_or(f64::INFINITY);
            vec![NumberRange {
                value: low,
                low,
                high,
            }]
        }
        _ => number_of(json)
            .map(|v| vec![NumberRange::exact(v)])
            .unwrap_or_default(),
    }
}

fn quantities(element: &Element) -> Vec<(NumberRange, Option<String>, Option<String>)> {
    let Some(json) = element.json() else {
        return Vec::new();
    };
    let text = |value: &Value| value.as_str().map(str::to_string);
    match element.type_name() {
        "Range" => {
            let low = number_of(&json["low"]["value"]);
            let high = number_of(&json["high"]["value"]);
            if low.is_none() && high.is_none() {
                return Vec::new();
            }
            let unit = if json["low"].is_object() {
                &json["low"]
            } else {
                &json["high"]
            };
            let range = NumberRange {
                value: low.unwrap_or(f64::NEG_INFINITY),
                low: low.unwrap_or(f64::NEG_INFINITY),
                high: high.unwrap_or(f64::INFINITY),
            };
            vec![(
                range,
                text(&unit["system"]),
                text(&unit["code"]).or_else(|| text(&unit["unit"])),
            )]
        }
        "Money" => number_of(&json["value"])
            .map(|v| {
                vec![(
                    NumberRange::exact(v),
                    Some("urn:iso:std:iso:4217".to_string()),
                    text(&json["currency"]),
                )]
            })
            .unwrap_or_default(),
        _ => number_of(&json["value"])
            .map(|v| {
                vec![(
                    NumberRange::exact(v),
                    text(&json["system"]),
                    text(&json["code"]).or_else(|| text(&json["unit"])),
                )]
            })
            .unwrap_or_default(),
    }
}
