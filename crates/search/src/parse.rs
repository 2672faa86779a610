//! HTTP search parameters to a [`Query`].

use crate::index::{is_absolute, local_part};
use crate::{
    Clause, Criterion, DateRange, Include, NumberRange, ParamDef, ParamType, Prefix, Query,
    ReferenceTest, SortKey, Step, StringMatch, SystemMatch, Test, TokenTest, Total, UriMatch,
    normalize_string, param,
};

/// How to treat what is not understood.
#[derive(Clone, Copy, Debug, Default)]
pub struct ParseOptions {
    /// `Prefer: handling=strict`: an unknown parameter is an error, not ignored.
    pub strict: bool,
}

/// A parsed search request: the query, and the parameters that shape the response.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed {
    pub query: Query,
    /// `_count`, as given (the server caps it).
    pub count: Option<usize>,
    /// `_summary`.
    pub summary: Option<Summary>,
    /// `_elements`, as given (the server adds the mandatory elements).
    pub elements: Vec<String>,
    /// Parameters that were not understood and were ignored (lenient handling), as
    /// `name=value` with the name as given.
    pub ignored: Vec<String>,
    /// `_cursor`: the store's opaque position of a page after the first.
    pub cursor: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Summary {
    True,
    Text,
    Data,
    Count,
    False,
}

/// Why a search request cannot be run; each names the parameter (and value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchError {
    /// Not a parameter of the type (only with strict handling).
    UnknownParameter { name: String },
    /// A malformed value, a prefix or modifier the parameter's type does not take, ...
    BadValue {
        name: String,
        value: String,
        reason: String,
    },
}

impl std::fmt::Display for SearchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SearchError::UnknownParameter { name } => {
                write!(f, "unknown search parameter {name:?}")
            }
            SearchError::BadValue {
                name,
                value,
                reason,
            } => {
                write!(
                    f,
                    "invalid value {value:?} for search parameter {name:?}: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for SearchError {}

/// Parses `params` (name, value pairs, already percent-decoded, in request order) for
/// a search over `types` (one type for a type-level search; for a system-level search
/// the types `_type` names are taken from `params`, and `types` is empty).
pub fn parse(
    types: &[String],
    params: &[(String, String)],
    options: ParseOptions,
) -> Result<Parsed, SearchError> {
    let system_level = types.is_empty();
    let mut searched: Vec<String> = types.to_vec();
    if system_level {
        for (name, value) in params.iter().filter(|(name, _)| name == "_type") {
            for part in split_unescaped(value, b',') {
                let resource_type = unescape(part);
                let resource_type = resource_type.trim();
                if resource_type.is_empty() {
                    continue;
                }
                if !fhir::definitions().is_resource_type(resource_type) {
                    return Err(bad(
                        name,
                        value,
                        format!("unknown resource type '{resource_type}'"),
                    ));
                }
                if !searched.iter().any(|t| t == resource_type) {
                    searched.push(resource_type.to_owned());
                }
            }
        }
    }
    let mut parsed = Parsed {
        query: Query {
            types: searched,
            clauses: Vec::new(),
            sort: Vec::new(),
            includes: Vec::new(),
            revincludes: Vec::new(),
            total: Total::Unspecified,
            reached: Vec::new(),
        },
        count: None,
        summary: None,
        elements: Vec::new(),
        ignored: Vec::new(),
        cursor: None,
    };
    for (name, value) in params {
        if value.is_empty() {
            continue;
        }
        let types = parsed.query.types.as_slice();
        match name.as_str() {
            "_type" if system_level => {}
            "_format" | "_pretty" => {}
            "_count" => {
                let count = value.trim().parse::<usize>().map_err(|_| {
                    bad(
                        name,
                        value,
                        "expected a whole number of 0 or more".to_owned(),
                    )
                })?;
                parsed.count = Some(count);
            }
            "_sort" => {
                let mut sort = Vec::new();
                for key in value.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    sort.push(sort_key(types, key).map_err(|reason| bad(name, value, reason))?);
                }
                parsed.query.sort = sort;
            }
            "_total" => {
                parsed.query.total = match value.as_str() {
                    "none" => Total::None,
                    "estimate" => Total::Estimate,
                    "accurate" => Total::Accurate,
                    _ => {
                        return Err(bad(
                            name,
                            value,
                            "expected none, estimate or accurate".to_owned(),
                        ));
                    }
                };
            }
            "_summary" => {
                parsed.summary = Some(match value.as_str() {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "count" => Summary::Count,
                    "false" => Summary::False,
                    _ => {
                        return Err(bad(
                            name,
                            value,
                            "expected true, text, data, count or false".to_owned(),
                        ));
                    }
                });
            }
            "_elements" => parsed.elements.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(str::to_owned),
            ),
            "_cursor" => parsed.cursor = Some(value.clone()),
            _ if is_include(name, "_include") || is_include(name, "_revinclude") => {
                let reverse = name.starts_with("_revinclude");
                let iterate = match name.split_once(':') {
                    None => false,
                    Some((_, "iterate" | "recurse")) => true,
                    Some((_, modifier)) => {
                        return Err(bad(
                            name,
                            value,
                            format!("unknown modifier ':{modifier}': expected :iterate"),
                        ));
                    }
                };
                for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let include =
                        include(part, iterate).map_err(|reason| bad(name, part, reason))?;
                    if reverse {
                        parsed.query.revincludes.push(include);
                    } else {
                        parsed.query.includes.push(include);
                    }
                }
            }
            _ => match criteria(types, name, value)? {
                Criteria::Clause(clause) => parsed.query.clauses.extend(
                    crate::unions::expand(clause).map_err(|reason| bad(name, value, reason))?,
                ),
                Criteria::Empty => {}
                Criteria::Unknown => {
                    if options.strict {
                        return Err(SearchError::UnknownParameter { name: name.clone() });
                    }
                    parsed.ignored.push(format!("{name}={value}"));
                }
            },
        }
    }
    Ok(parsed)
}

fn bad(name: &str, value: &str, reason: String) -> SearchError {
    SearchError::BadValue {
        name: name.to_owned(),
        value: value.to_owned(),
        reason,
    }
}

/// `_include`, `_include:iterate`, ... for `base` `_include`.
fn is_include(name: &str, base: &str) -> bool {
    name.strip_prefix(base)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(':'))
}

fn sort_key(types: &[String], key: &str) -> Result<SortKey, String> {
    let (descending, code) = match key.strip_prefix('-') {
        Some(code) => (true, code),
        None => (false, key),
    };
    let param_type = match code {
        "_id" => ParamType::Token,
        "_lastUpdated" => ParamType::Date,
        _ => {
            let Some((_, def)) = lookup(types, code) else {
                return Err(match types {
                    [one] => format!("cannot sort by '{code}': {one} has no such search parameter"),
                    _ => format!(
                        "cannot sort by '{code}': only _id, _lastUpdated and parameters every searched type has can sort"
                    ),
                });
            };
            if matches!(def.param_type, ParamType::Composite | ParamType::Special) {
                return Err(format!(
                    "cannot sort by '{code}': it is a {} parameter",
                    def.param_type.name()
                ));
            }
            if !def.union_of.is_empty() {
                return Err(format!(
                    "cannot sort by '{code}': it searches {} together; sort by one of them",
                    def.union_of.join(" and ")
                ));
            }
            def.param_type
        }
    };
    Ok(SortKey {
        param: code.to_owned(),
        param_type,
        descending,
    })
}

/// `Type:param[:Target]` or `Type:*[:Target]`.
fn include(value: &str, iterate: bool) -> Result<Include, String> {
    let mut parts = value.split(':');
    let source_type = parts.next().unwrap_or_default();
    let Some(code) = parts.next() else {
        return Err("expected Type:parameter, Type:parameter:TargetType or Type:*".to_owned());
    };
    let target_type = parts.next();
    if parts.next().is_some() {
        return Err("expected Type:parameter, Type:parameter:TargetType or Type:*".to_owned());
    }
    if !fhir::definitions().is_resource_type(source_type) {
        return Err(format!("unknown resource type '{source_type}'"));
    }
    let def = if code == "*" {
        None
    } else {
        match param(source_type, code) {
            Some(def) if def.param_type == ParamType::Reference => Some(def),
            Some(_) => {
                return Err(format!(
                    "'{code}' of {source_type} is not a reference parameter"
                ));
            }
            None => return Err(format!("{source_type} has no search parameter '{code}'")),
        }
    };
    if let Some(target) = target_type {
        if !fhir::definitions().is_resource_type(target) {
            return Err(format!("unknown resource type '{target}'"));
        }
        if let Some(def) = def
            && !def.targets.is_empty()
            && !def.targets.iter().any(|t| t == target)
        {
            return Err(format!(
                "'{code}' of {source_type} cannot refer to a {target} (only {})",
                def.targets.join(", ")
            ));
        }
    }
    Ok(Include {
        source_type: source_type.to_owned(),
        param: def.map(|d| d.code.clone()),
        target_type: target_type.map(str::to_owned),
        iterate,
    })
}

/// The parameters every resource has (base `Resource` or `DomainResource`).
fn is_common(code: &str) -> bool {
    fhir::definitions().search_parameters().iter().any(|p| {
        p.code == code
            && p.base
                .iter()
                .any(|b| b == "Resource" || b == "DomainResource")
    })
}

/// The parameter `code` of the searched types, and the type a criterion on it names:
/// the type itself for one type; `None` for several (each must have the parameter, of
/// the same type) or for none (then only the parameters every resource has).
fn lookup(types: &[String], code: &str) -> Option<(Option<String>, &'static ParamDef)> {
    match types {
        [one] => param(one, code).map(|def| (Some(one.clone()), def)),
        [] => {
            if is_common(code) {
                // Any DomainResource type has them all.
                param("Patient", code).map(|def| (None, def))
            } else {
                None
            }
        }
        [first, rest @ ..] => {
            let def = param(first, code)?;
            rest.iter()
                .all(|t| param(t, code).is_some_and(|d| d.param_type == def.param_type))
                .then_some((None, def))
        }
    }
}

enum Criteria {
    Clause(Clause),
    /// Only empty values: nothing to test.
    Empty,
    /// Not a parameter of the searched types.
    Unknown,
}

/// One parameter name resolved: how to reach the resource tested, and what to test there.
struct Target {
    path: Vec<Step>,
    resource_type: Option<String>,
    def: &'static ParamDef,
    modifier: Option<String>,
}

fn criteria(types: &[String], name: &str, value: &str) -> Result<Criteria, SearchError> {
    let parts: Vec<&str> = split_unescaped(value, b',')
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if name == "_list" {
        let mut any_of = Vec::new();
        for part in &parts {
            let id = unescape(part);
            if !fhir::is_valid_id(&id) {
                return Err(bad(name, part, "expected the id of a List".to_owned()));
            }
            any_of.push(Criterion {
                path: vec![Step::Reverse {
                    source_type: "List".to_owned(),
                    param: "item".to_owned(),
                }],
                resource_type: Some("List".to_owned()),
                param: "_id".to_owned(),
                param_type: ParamType::Token,
                test: Test::Token(TokenTest {
                    system: SystemMatch::Any,
                    code: Some(id),
                }),
            });
        }
        return Ok(if any_of.is_empty() {
            Criteria::Empty
        } else {
            Criteria::Clause(Clause { any_of })
        });
    }
    let Some(targets) = resolve(types, name).map_err(|reason| bad(name, value, reason))? else {
        return Ok(Criteria::Unknown);
    };
    let mut any_of = Vec::new();
    for part in &parts {
        for target in &targets {
            let test = test_for(target.def, target.modifier.as_deref(), part)
                .map_err(|reason| bad(name, part, reason))?;
            any_of.push(Criterion {
                path: target.path.clone(),
                resource_type: target.resource_type.clone(),
                param: target.def.code.clone(),
                param_type: target.def.param_type,
                test,
            });
        }
    }
    Ok(if any_of.is_empty() {
        Criteria::Empty
    } else {
        Criteria::Clause(Clause { any_of })
    })
}

/// Resolves a parameter name (`code`, `code:modifier`, chains, `_has`) against the
/// searched types. `Ok(None)`: not a parameter there.
fn resolve(types: &[String], name: &str) -> Result<Option<Vec<Target>>, String> {
    if let Some(rest) = name.strip_prefix("_has:") {
        return resolve_has(types, rest);
    }
    if name == "_has" {
        return Err("expected _has:Type:parameter:search-parameter".to_owned());
    }
    let Some((first, rest)) = name.split_once('.') else {
        let (code, modifier) = match name.split_once(':') {
            Some((code, modifier)) => (code, Some(modifier.to_owned())),
            None => (name, None),
        };
        return Ok(lookup(types, code).map(|(resource_type, def)| {
            vec![Target {
                path: Vec::new(),
                resource_type,
                def,
                modifier,
            }]
        }));
    };
    // A chain: `first` is a reference parameter, possibly with `:Type`.
    let [current] = types else {
        return Err("a chained parameter needs exactly one resource type to search".to_owned());
    };
    let (code, explicit) = match first.split_once(':') {
        Some((code, target)) => (code, Some(target)),
        None => (first, None),
    };
    let Some(def) = param(current, code) else {
        return Ok(None);
    };
    if def.param_type != ParamType::Reference {
        return Err(format!(
            "'{code}' is a {} parameter, not a reference, so it cannot be chained",
            def.param_type.name()
        ));
    }
    let candidates: Vec<&str> = match explicit {
        Some(target) => {
            if !fhir::definitions().is_resource_type(target) {
                return Err(format!("unknown resource type '{target}' in the chain"));
            }
            if !def.targets.is_empty() && !def.targets.iter().any(|t| t == target) {
                return Err(format!(
                    "'{code}' cannot refer to a {target} (only {})",
                    def.targets.join(", ")
                ));
            }
            vec![target]
        }
        None if def.targets.is_empty() => {
            return Err(format!(
                "'{code}' may refer to any type: name one, as in {code}:Patient.{rest}"
            ));
        }
        None => def.targets.iter().map(String::as_str).collect(),
    };
    let single = candidates.len() == 1;
    let mut found = Vec::new();
    for target_type in candidates {
        let next = resolve(&[target_type.to_owned()], rest);
        let targets = match next {
            Ok(Some(targets)) => targets,
            Ok(None) if single => return Ok(None),
            Err(reason) if single => return Err(reason),
            Ok(None) | Err(_) => continue,
        };
        for mut target in targets {
            target.path.insert(
                0,
                Step::Forward {
                    param: def.code.clone(),
                    target_type: target_type.to_owned(),
                },
            );
            found.push(target);
        }
    }
    if found.is_empty() {
        let next = rest.split(['.', ':']).next().unwrap_or(rest);
        return Err(format!(
            "none of the types '{code}' refers to ({}) has a search parameter '{next}'",
            def.targets.join(", ")
        ));
    }
    Ok(Some(found))
}

/// `_has:Type:param:rest` (after `_has:`).
fn resolve_has(types: &[String], text: &str) -> Result<Option<Vec<Target>>, String> {
    let mut parts = text.splitn(3, ':');
    let (Some(source_type), Some(code), Some(rest)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("expected _has:Type:parameter:search-parameter".to_owned());
    };
    if !fhir::definitions().is_resource_type(source_type) {
        return Err(format!("unknown resource type '{source_type}' in _has"));
    }
    let def = match param(source_type, code) {
        Some(def) if def.param_type == ParamType::Reference => def,
        Some(_) => {
            return Err(format!(
                "'{code}' of {source_type} is not a reference parameter, so _has cannot use it"
            ));
        }
        None => return Err(format!("{source_type} has no search parameter '{code}'")),
    };
    if let [current] = types
        && !def.targets.is_empty()
        && !def.targets.iter().any(|t| t == current)
    {
        return Err(format!(
            "'{code}' of {source_type} cannot refer to a {current} (only {})",
            def.targets.join(", ")
        ));
    }
    if rest.is_empty() {
        return Err("expected _has:Type:parameter:search-parameter".to_owned());
    }
    let Some(targets) = resolve(&[source_type.to_owned()], rest)? else {
        let code = rest.split([':', '.']).next().unwrap_or(rest);
        return Err(format!("{source_type} has no search parameter '{code}'"));
    };
    Ok(Some(
        targets
            .into_iter()
            .map(|mut target| {
                target.path.insert(
                    0,
                    Step::Reverse {
                        source_type: source_type.to_owned(),
                        param: def.code.clone(),
                    },
                );
                target
            })
            .collect(),
    ))
}

/// Modifiers FHIR R4 defines (besides `:Type` on references).
const KNOWN_MODIFIERS: [&str; 11] = [
    "missing",
    "exact",
    "contains",
    "text",
    "not",
    "above",
    "below",
    "in",
    "not-in",
    "of-type",
    "identifier",
];

/// The test one comma-separated value (still escaped) stands for.
fn test_for(def: &ParamDef, modifier: Option<&str>, raw: &str) -> Result<Test, String> {
    let code = def.code.as_str();
    let kind = def.param_type;
    let Some(modifier) = modifier else {
        return match code {
            "_id" => Ok(Test::Token(TokenTest {
                system: SystemMatch::Any,
                code: Some(unescape(raw)),
            })),
            "_text" | "_content" => Ok(Test::String {
                value: normalize_string(&unescape(raw)),
                mode: StringMatch::Contains,
            }),
            "_query" => Err("named queries (_query) are not supported".to_owned()),
            _ if kind == ParamType::Composite => composite_test(def, raw),
            _ => plain_test(kind, &def.targets, raw),
        };
    };
    let not_supported = || {
        Err(format!(
            "the ':{modifier}' modifier on {} parameters such as '{code}' is not supported",
            kind.name()
        ))
    };
    match (kind, modifier) {
        (_, "missing") => match raw {
            "true" => Ok(Test::Missing(true)),
            "false" => Ok(Test::Missing(false)),
            _ => Err("':missing' takes true or false".to_owned()),
        },
        (ParamType::String, "exact") => Ok(Test::String {
            value: unescape(raw),
            mode: StringMatch::Exact,
        }),
        (ParamType::String, "contains") => Ok(Test::String {
            value: normalize_string(&unescape(raw)),
            mode: StringMatch::Contains,
        }),
        (ParamType::Token, "not") => Ok(Test::Not(Box::new(plain_test(kind, &[], raw)?))),
        (ParamType::Token, "text") if code != "_id" => Ok(Test::String {
            value: normalize_string(&unescape(raw)),
            mode: StringMatch::StartsWith,
        }),
        (ParamType::Token, "of-type") if code != "_id" => {
            let pieces = split_unescaped(raw, b'|');
            let [system, type_code, value] = pieces.as_slice() else {
                return Err(
                    "':of-type' takes system|code|value (the identifier's type, then its value)"
                        .to_owned(),
                );
            };
            let (type_code, value) = (unescape(type_code), unescape(value));
            if type_code.is_empty() || value.is_empty() {
                return Err(
                    "':of-type' takes system|code|value (the identifier's type, then its value)"
                        .to_owned(),
                );
            }
            Ok(Test::OfType {
                system: unescape(system),
                code: type_code,
                value,
            })
        }
        (ParamType::Token, "in" | "not-in" | "above" | "below") => not_supported(),
        (ParamType::Reference, "identifier") => {
            Ok(Test::Reference(ReferenceTest::Identifier(token_test(raw)?)))
        }
        (ParamType::Reference, "above" | "below") => not_supported(),
        (ParamType::Reference, target) if fhir::definitions().is_resource_type(target) => {
            if !def.targets.is_empty() && !def.targets.iter().any(|t| t == target) {
                return Err(format!(
                    "'{code}' cannot refer to a {target} (only {})",
                    def.targets.join(", ")
                ));
            }
            typed_reference(target, &unescape(raw)).map(Test::Reference)
        }
        (ParamType::Uri, "below") => Ok(Test::Uri {
            value: unescape(raw),
            mode: UriMatch::Below,
        }),
        (ParamType::Uri, "above") => Ok(Test::Uri {
            value: unescape(raw),
            mode: UriMatch::Above,
        }),
        (_, other) if KNOWN_MODIFIERS.contains(&other) => Err(format!(
            "the ':{other}' modifier does not apply to {} parameters such as '{code}'",
            kind.name()
        )),
        (_, other) => Err(format!("unknown modifier ':{other}' on '{code}'")),
    }
}

/// The test of a value with no modifier, by the parameter's type.
fn plain_test(kind: ParamType, targets: &[String], raw: &str) -> Result<Test, String> {
    match kind {
        ParamType::String => Ok(Test::String {
            value: normalize_string(&unescape(raw)),
            mode: StringMatch::StartsWith,
        }),
        ParamType::Token => token_test(raw).map(Test::Token),
        ParamType::Reference => reference_test(targets, &unescape(raw)).map(Test::Reference),
        ParamType::Date => {
            let (prefix, rest) = split_prefix(raw)?;
            let text = unescape(rest);
            // A `+` of a time zone that arrived unencoded became a space.
            let range = DateRange::parse(&text)
                .or_else(|| DateRange::parse(&text.replace(' ', "+")))
                .ok_or_else(|| {
                    format!(
                        "'{text}' is not a valid date: expected YYYY, YYYY-MM, YYYY-MM-DD or a dateTime such as 2024-01-31T10:00:00Z"
                    )
                })?;
            Ok(Test::Date { prefix, range })
        }
        ParamType::Number => {
            let (prefix, rest) = split_prefix(raw)?;
            let range = number(rest)?;
            Ok(Test::Number { prefix, range })
        }
        ParamType::Quantity => {
            let (prefix, rest) = split_prefix(raw)?;
            let pieces = split_unescaped(rest, b'|');
            let (number_text, system, code) = match pieces.as_slice() {
                [number_text] => (*number_text, None, None),
                [number_text, system, code] => (
                    *number_text,
                    Some(unescape(system)).filter(|s| !s.is_empty()),
                    Some(unescape(code)).filter(|c| !c.is_empty()),
                ),
                _ => {
                    return Err(
                        "expected [prefix]number, [prefix]number|system|code or [prefix]number||code"
                            .to_owned(),
                    );
                }
            };
            let range = number(number_text)?;
            Ok(Test::Quantity {
                prefix,
                range,
                system,
                code,
            })
        }
        ParamType::Uri => Ok(Test::Uri {
            value: unescape(raw),
            mode: UriMatch::Exact,
        }),
        ParamType::Composite => Err("composite parameters are tested with composite()".to_owned()),
        ParamType::Special => Err("this special parameter is not supported".to_owned()),
    }
}

fn number(text: &str) -> Result<NumberRange, String> {
    NumberRange::parse(text).ok_or_else(|| format!("'{text}' is not a number"))
}

/// A comparison prefix (`eq` … `ap`) at the start of a value; `eq` when there is none.
fn split_prefix(raw: &str) -> Result<(Prefix, &str), String> {
    let b = raw.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_lowercase() && b[1].is_ascii_lowercase() {
        let (head, rest) = raw.split_at(2);
        return match Prefix::parse(head) {
            Some(prefix) => Ok((prefix, rest)),
            None => Err(format!(
                "unknown prefix '{head}': expected eq, ne, gt, lt, ge, le, sa, eb or ap"
            )),
        };
    }
    Ok((Prefix::Eq, raw))
}

/// `code`, `|code`, `system|` or `system|code` (still escaped).
fn token_test(raw: &str) -> Result<TokenTest, String> {
    let Some(bar) = find_unescaped(raw, b'|') else {
        return Ok(TokenTest {
            system: SystemMatch::Any,
            code: Some(unescape(raw)),
        });
    };
    let system = unescape(&raw[..bar]);
    let code = Some(unescape(&raw[bar + 1..])).filter(|c| !c.is_empty());
    if system.is_empty() {
        if code.is_none() {
            return Err("expected code, system|code, |code or system|".to_owned());
        }
        return Ok(TokenTest {
            system: SystemMatch::None,
            code,
        });
    }
    Ok(TokenTest {
        system: SystemMatch::Is(system),
        code,
    })
}

const REFERENCE_FORMS: &str = "expected Type/id, an id, or an absolute URL";

/// `Type/id`, `id` or an absolute URL.
fn reference_test(targets: &[String], value: &str) -> Result<ReferenceTest, String> {
    if is_absolute(value) {
        return Ok(ReferenceTest::Url(value.to_owned()));
    }
    if let Some(("", resource_type, id)) = local_part(value) {
        if !targets.is_empty() && !targets.iter().any(|t| t == resource_type) {
            return Err(format!(
                "this parameter cannot refer to a {resource_type} (only {})",
                targets.join(", ")
            ));
        }
        return Ok(ReferenceTest::Local {
            resource_type: Some(resource_type.to_owned()),
            id: id.to_owned(),
        });
    }
    if fhir::is_valid_id(value) {
        return Ok(ReferenceTest::Local {
            resource_type: None,
            id: value.to_owned(),
        });
    }
    Err(format!("'{value}' is not a reference: {REFERENCE_FORMS}"))
}

/// The value of `param:Type=value`: an id (or `Type/id` of the same type, or a URL).
fn typed_reference(target: &str, value: &str) -> Result<ReferenceTest, String> {
    if is_absolute(value) {
        return Ok(ReferenceTest::Url(value.to_owned()));
    }
    let id = match local_part(value) {
        Some(("", resource_type, id)) if resource_type == target => id,
        Some(("", resource_type, _)) => {
            return Err(format!(
                "the modifier ':{target}' asks for a {target}, but the value names a {resource_type}"
            ));
        }
        _ => value,
    };
    if !fhir::is_valid_id(id) {
        return Err(format!("'{value}' is not a {target} id"));
    }
    Ok(ReferenceTest::Local {
        resource_type: Some(target.to_owned()),
        id: id.to_owned(),
    })
}

/// Composite values: one test per component from `value1$value2…`.
fn composite_test(def: &ParamDef, raw: &str) -> Result<Test, String> {
    let pieces = split_unescaped(raw, b'$');
    if pieces.len() != def.components.len() {
        return Err(format!(
            "'{}' takes {} values separated by '$', one per component",
            def.code,
            def.components.len()
        ));
    }
    let mut tests = Vec::with_capacity(pieces.len());
    for (component, piece) in def.components.iter().zip(pieces) {
        if piece.is_empty() {
            return Err(format!("every component of '{}' needs a value", def.code));
        }
        tests.push(plain_test(component.param_type, &[], piece)?);
    }
    Ok(Test::Composite(tests))
}

/// Splits at every `sep` not preceded by a backslash escape; the pieces keep their escapes.
fn split_unescaped(text: &str, sep: u8) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == sep {
            pieces.push(&text[start..i]);
            start = i + 1;
        }
        i += 1;
    }
    pieces.push(&text[start..]);
    pieces
}

fn find_unescaped(text: &str, sep: u8) -> Option<usize> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == sep {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Removes the search escapes `\,` `\|` `\$` and `\\`; other backslashes stay.
fn unescape(text: &str) -> String {
    if !text.contains('\\') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && matches!(next, ',' | '|' | '$' | '\\')
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// The clause that limits a search of `resource_type` to the compartment of
/// `compartment_type`/`id` (e.g. `Patient/123`): any of the compartment's parameters
/// refers to it. `None` when `resource_type` is not in that compartment, or the
/// compartment is not one the definitions describe.
pub fn compartment(compartment_type: &str, id: &str, resource_type: &str) -> Option<Clause> {
    if compartment_type != "Patient" {
        return None;
    }
    let mut any_of: Vec<Criterion> = fhir::definitions()
        .patient_compartment_params(resource_type)
        .iter()
        .filter_map(|code| param(resource_type, code))
        .filter(|def| def.param_type == ParamType::Reference)
        .map(|def| Criterion {
            path: Vec::new(),
            resource_type: Some(resource_type.to_owned()),
            param: def.code.clone(),
            param_type: ParamType::Reference,
            test: Test::Reference(ReferenceTest::Local {
                resource_type: Some("Patient".to_owned()),
                id: id.to_owned(),
            }),
        })
        .collect();
    if resource_type == "Patient" {
        any_of.push(Criterion {
            path: Vec::new(),
            resource_type: Some("Patient".to_owned()),
            param: "_id".to_owned(),
            param_type: ParamType::Token,
            test: Test::Token(TokenTest {
                system: SystemMatch::Any,
                code: Some(id.to_owned()),
            }),
        });
    }
    (!any_of.is_empty()).then_some(Clause { any_of })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn on(resource_type: &str, query: &[(&str, &str)]) -> Result<Parsed, SearchError> {
        parse(
            &[resource_type.to_owned()],
            &pairs(query),
            ParseOptions::default(),
        )
    }

    fn ok(resource_type: &str, query: &[(&str, &str)]) -> Parsed {
        on(resource_type, query).unwrap_or_else(|e| panic!("{query:?}: {e}"))
    }

    /// The one criterion of a one-clause, one-value query.
    fn one(resource_type: &str, name: &str, value: &str) -> Criterion {
        let parsed = ok(resource_type, &[(name, value)]);
        assert_eq!(parsed.query.clauses.len(), 1, "{name}={value}");
        let clause = &parsed.query.clauses[0];
        assert_eq!(clause.any_of.len(), 1, "{name}={value}");
        clause.any_of[0].clone()
    }

    fn test(resource_type: &str, name: &str, value: &str) -> Test {
        one(resource_type, name, value).test
    }

    /// The reason of a BadValue, checking it names the parameter.
    fn refused(resource_type: &str, name: &str, value: &str) -> String {
        match on(resource_type, &[(name, value)]) {
            Err(SearchError::BadValue {
                name: named,
                reason,
                ..
            }) => {
                assert_eq!(named, name);
                reason
            }
            other => panic!("{name}={value} was not refused: {other:?}"),
        }
    }

    fn token(system: SystemMatch, code: Option<&str>) -> Test {
        Test::Token(TokenTest {
            system,
            code: code.map(str::to_owned),
        })
    }

    fn is(system: &str) -> SystemMatch {
        SystemMatch::Is(system.to_owned())
    }

    #[test]
    fn strings() {
        let criterion = one("Patient", "name", "Zoë  Müller");
        assert_eq!(criterion.resource_type.as_deref(), Some("Patient"));
        assert_eq!(
            (criterion.param.as_str(), criterion.param_type),
            ("name", ParamType::String)
        );
        assert!(criterion.path.is_empty());
        assert_eq!(
            criterion.test,
            Test::String {
                value: "zoe muller".to_owned(),
                mode: StringMatch::StartsWith
            }
        );
        assert_eq!(
            test("Patient", "name:exact", "Zoë"),
            Test::String {
                value: "Zoë".to_owned(),
                mode: StringMatch::Exact
            }
        );
        assert_eq!(
            test("Patient", "family:contains", "ÜLL"),
            Test::String {
                value: "ull".to_owned(),
                mode: StringMatch::Contains
            }
        );
        assert_eq!(test("Patient", "name:missing", "true"), Test::Missing(true));
        assert!(refused("Patient", "name:missing", "yes").contains("true or false"));
        let reason = refused("Patient", "name:below", "x");
        assert!(
            reason.contains(":below") && reason.contains("name"),
            "{reason}"
        );
        let reason = refused("Patient", "name:fuzzy", "x");
        assert!(reason.contains("unknown modifier ':fuzzy'"), "{reason}");
    }

    #[test]
    fn commas_or_repeats_and_escapes() {
        let parsed = ok("Patient", &[("given", "ann,bob"), ("given", "carl")]);
        assert_eq!(parsed.query.clauses.len(), 2);
        assert_eq!(parsed.query.clauses[0].any_of.len(), 2);
        assert_eq!(
            parsed.query.clauses[0].any_of[1].test,
            Test::String {
                value: "bob".to_owned(),
                mode: StringMatch::StartsWith
            }
        );
        assert_eq!(
            test("Patient", "family", r"a\,b"),
            Test::String {
                value: "a,b".to_owned(),
                mode: StringMatch::StartsWith
            }
        );
        assert_eq!(
            test("Observation", "code", r"http://x|a\|b"),
            token(is("http://x"), Some("a|b"))
        );
        assert_eq!(
            test("Observation", "code", r"a\$b"),
            token(SystemMatch::Any, Some("a$b"))
        );
        // Empty values are ignored; so are empty alternatives.
        let parsed = ok("Patient", &[("name", ""), ("family", "a,,b")]);
        assert_eq!(parsed.query.clauses.len(), 1);
        assert_eq!(parsed.query.clauses[0].any_of.len(), 2);
    }

    #[test]
    fn tokens() {
        assert_eq!(
            test("Observation", "code", "8480-6"),
            token(SystemMatch::Any, Some("8480-6"))
        );
        assert_eq!(
            test("Observation", "code", "http://loinc.org|8480-6"),
            token(is("http://loinc.org"), Some("8480-6"))
        );
        assert_eq!(
            test("Observation", "code", "|8480-6"),
            token(SystemMatch::None, Some("8480-6"))
        );
        assert_eq!(
            test("Observation", "code", "http://loinc.org|"),
            token(is("http://loinc.org"), None)
        );
        assert!(refused("Observation", "code", "|").contains("system|code"));
        let criterion = one("Observation", "code:text", "Blood Préssure");
        assert_eq!(
            (criterion.param.as_str(), criterion.param_type),
            ("code", ParamType::Token)
        );
        assert_eq!(
            criterion.test,
            Test::String {
                value: "blood pressure".to_owned(),
                mode: StringMatch::StartsWith
            }
        );
        assert_eq!(
            test("Patient", "gender:not", "male"),
            Test::Not(Box::new(token(SystemMatch::Any, Some("male"))))
        );
        assert_eq!(
            test(
                "Patient",
                "identifier:of-type",
                "http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053"
            ),
            Test::OfType {
                system: "http://terminology.hl7.org/CodeSystem/v2-0203".to_owned(),
                code: "MR".to_owned(),
                value: "446053".to_owned()
            }
        );
        assert!(
            refused("Patient", "identifier:of-type", "MR|446053").contains("system|code|value")
        );
        for modifier in ["in", "not-in", "above", "below"] {
            let reason = refused("Observation", &format!("code:{modifier}"), "http://vs");
            assert!(reason.contains("not supported"), "{reason}");
        }
        assert_eq!(
            test("Patient", "_id", "abc"),
            token(SystemMatch::Any, Some("abc"))
        );
        assert_eq!(
            test("Patient", "active", "true"),
            token(SystemMatch::Any, Some("true"))
        );
    }

    #[test]
    fn references() {
        let local = |t: Option<&str>, id: &str| {
            Test::Reference(ReferenceTest::Local {
                resource_type: t.map(str::to_owned),
                id: id.to_owned(),
            })
        };
        assert_eq!(
            test("Observation", "subject", "Patient/123"),
            local(Some("Patient"), "123")
        );
        assert_eq!(test("Observation", "subject", "123"), local(None, "123"));
        assert_eq!(
            test("Observation", "subject:Patient", "123"),
            local(Some("Patient"), "123")
        );
        assert_eq!(
            test("Observation", "subject:Patient", "Patient/123"),
            local(Some("Patient"), "123")
        );
        assert_eq!(
            test(
                "Observation",
                "subject",
                "http://other.org/fhir/Patient/123"
            ),
            Test::Reference(ReferenceTest::Url(
                "http://other.org/fhir/Patient/123".to_owned()
            ))
        );
        assert_eq!(
            test(
                "Observation",
                "subject:identifier",
                "http://hl7.org/fhir/sid/us-ssn|999"
            ),
            Test::Reference(ReferenceTest::Identifier(TokenTest {
                system: is("http://hl7.org/fhir/sid/us-ssn"),
                code: Some("999".to_owned())
            }))
        );
        assert_eq!(
            test("Observation", "subject:missing", "false"),
            Test::Missing(false)
        );
        assert!(refused("Observation", "subject", "Patient/").contains("not a reference"));
        assert!(refused("Observation", "subject", "Foo/1").contains("not a reference"));
        assert!(refused("Observation", "subject:Patient", "Group/1").contains("names a Group"));
        assert!(
            refused("Observation", "subject:Medication", "1")
                .contains("cannot refer to a Medication")
        );
        assert!(refused("Observation", "subject:above", "Patient/1").contains("not supported"));
    }

    #[test]
    fn dates_numbers_and_quantities() {
        let day = DateRange::parse("2024-02-29").unwrap();
        assert_eq!(
            test("Patient", "birthdate", "2024-02-29"),
            Test::Date {
                prefix: Prefix::Eq,
                range: day
            }
        );
        assert_eq!(
            test("Patient", "birthdate", "ge2024-02-29"),
            Test::Date {
                prefix: Prefix::Ge,
                range: day
            }
        );
        assert_eq!(
            test("Observation", "date", "lt2024-01-01T10:00:00+05:00"),
            Test::Date {
                prefix: Prefix::Lt,
                range: DateRange::parse("2024-01-01T05:00:00Z").unwrap()
            }
        );
        // An unencoded `+` arrives as a space.
        assert_eq!(
            test("Observation", "date", "2024-01-01T10:00:00 05:00"),
            test("Observation", "date", "2024-01-01T10:00:00+05:00")
        );
        assert_eq!(
            test("Patient", "_lastUpdated", "gt2024-01"),
            Test::Date {
                prefix: Prefix::Gt,
                range: DateRange::parse("2024-01").unwrap()
            }
        );
        let reason = refused("Patient", "birthdate", "zz2024");
        assert!(reason.contains("unknown prefix 'zz'"), "{reason}");
        let reason = refused("Patient", "birthdate", "2024-13-01");
        assert!(
            reason.contains("not a valid date") && reason.contains("YYYY-MM-DD"),
            "{reason}"
        );
        assert!(refused("Patient", "birthdate:exact", "2024").contains(":exact"));
        assert_eq!(
            test("RiskAssessment", "probability", "gt0.8"),
            Test::Number {
                prefix: Prefix::Gt,
                range: NumberRange::parse("0.8").unwrap()
            }
        );
        assert!(refused("RiskAssessment", "probability", "1.2.3").contains("not a number"));
        assert_eq!(
            test(
                "Observation",
                "value-quantity",
                "le5.4|http://unitsofmeasure.org|mg"
            ),
            Test::Quantity {
                prefix: Prefix::Le,
                range: NumberRange::parse("5.4").unwrap(),
                system: Some("http://unitsofmeasure.org".to_owned()),
                code: Some("mg".to_owned())
            }
        );
        assert_eq!(
            test("Observation", "value-quantity", "5.4||mg"),
            Test::Quantity {
                prefix: Prefix::Eq,
                range: NumberRange::parse("5.4").unwrap(),
                system: None,
                code: Some("mg".to_owned())
            }
        );
        assert_eq!(
            test("Observation", "value-quantity", "ap100"),
            Test::Quantity {
                prefix: Prefix::Ap,
                range: NumberRange::parse("100").unwrap(),
                system: None,
                code: None
            }
        );
        assert!(refused("Observation", "value-quantity", "5.4|mg").contains("number|system|code"));
    }

    #[test]
    fn uris_composites_and_specials() {
        assert_eq!(
            test("ValueSet", "url", "http://x.org/vs"),
            Test::Uri {
                value: "http://x.org/vs".to_owned(),
                mode: UriMatch::Exact
            }
        );
        assert_eq!(
            test("ValueSet", "url:below", "http://x.org/"),
            Test::Uri {
                value: "http://x.org/".to_owned(),
                mode: UriMatch::Below
            }
        );
        assert_eq!(
            test("ValueSet", "url:above", "http://x.org/vs/1"),
            Test::Uri {
                value: "http://x.org/vs/1".to_owned(),
                mode: UriMatch::Above
            }
        );
        let criterion = one(
            "Observation",
            "code-value-quantity",
            "http://loinc.org|8480-6$gt100",
        );
        assert_eq!(criterion.param_type, ParamType::Composite);
        assert_eq!(
            criterion.test,
            Test::Composite(vec![
                token(is("http://loinc.org"), Some("8480-6")),
                Test::Quantity {
                    prefix: Prefix::Gt,
                    range: NumberRange::parse("100").unwrap(),
                    system: None,
                    code: None
                },
            ])
        );
        assert!(refused("Observation", "code-value-quantity", "8480-6").contains("2 values"));
        assert!(
            refused("Observation", "code-value-quantity", "8480-6$zz1").contains("unknown prefix")
        );
        assert_eq!(
            test("Observation", "_text", "Blood"),
            Test::String {
                value: "blood".to_owned(),
                mode: StringMatch::Contains
            }
        );
        assert_eq!(one("Observation", "_content", "x").param, "_content");
        let criterion = one("Observation", "_list", "list-1");
        assert_eq!(
            criterion.path,
            [Step::Reverse {
                source_type: "List".to_owned(),
                param: "item".to_owned()
            }]
        );
        assert_eq!(criterion.resource_type.as_deref(), Some("List"));
        assert_eq!(criterion.param, "_id");
        assert_eq!(criterion.test, token(SystemMatch::Any, Some("list-1")));
        assert!(refused("Location", "near", "1|2|3|km").contains("not supported"));
    }

    #[test]
    fn chains() {
        let criterion = one("Observation", "subject:Patient.name", "peter");
        assert_eq!(
            criterion.path,
            [Step::Forward {
                param: "subject".to_owned(),
                target_type: "Patient".to_owned()
            }]
        );
        assert_eq!(criterion.resource_type.as_deref(), Some("Patient"));
        assert_eq!(criterion.param, "name");
        let criterion = one("Observation", "subject:Patient.organization.name", "acme");
        assert_eq!(
            criterion.path,
            [
                Step::Forward {
                    param: "subject".to_owned(),
                    target_type: "Patient".to_owned()
                },
                Step::Forward {
                    param: "organization".to_owned(),
                    target_type: "Organization".to_owned()
                },
            ]
        );
        assert_eq!(criterion.resource_type.as_deref(), Some("Organization"));
        // `subject` may point at Patient, Group, Device or Location: one criterion per
        // type that has `name`, as alternatives.
        let parsed = ok("Observation", &[("subject.name", "peter")]);
        let types: Vec<&str> = parsed.query.clauses[0]
            .any_of
            .iter()
            .map(|c| c.resource_type.as_deref().unwrap())
            .collect();
        assert!(types == ["Patient", "Location"], "{types:?}");
        let criterion = one("Observation", "patient.birthdate", "ge1970");
        assert_eq!(criterion.resource_type.as_deref(), Some("Patient"));
        assert!(matches!(
            criterion.test,
            Test::Date {
                prefix: Prefix::Ge,
                ..
            }
        ));
        let reason = refused("Observation", "subject.nosuchparam", "x");
        assert!(reason.contains("nosuchparam"), "{reason}");
        assert!(refused("Observation", "code.name", "x").contains("not a reference"));
        assert!(refused("Observation", "subject:Medication.code", "x").contains("cannot refer"));
        // An unknown parameter at the end of a one-target chain is unknown.
        let parsed = ok("Observation", &[("subject:Patient.nosuch", "x")]);
        assert_eq!(parsed.ignored, ["subject:Patient.nosuch=x"]);
    }

    #[test]
    fn reverse_chains() {
        let criterion = one("Patient", "_has:Observation:patient:code", "1234-5");
        assert_eq!(
            criterion.path,
            [Step::Reverse {
                source_type: "Observation".to_owned(),
                param: "patient".to_owned()
            }]
        );
        assert_eq!(criterion.resource_type.as_deref(), Some("Observation"));
        assert_eq!(criterion.param, "code");
        let criterion = one(
            "Patient",
            "_has:Observation:patient:_has:AuditEvent:entity:agent",
            "Practitioner/1",
        );
        assert_eq!(
            criterion.path,
            [
                Step::Reverse {
                    source_type: "Observation".to_owned(),
                    param: "patient".to_owned()
                },
                Step::Reverse {
                    source_type: "AuditEvent".to_owned(),
                    param: "entity".to_owned()
                },
            ]
        );
        assert_eq!(criterion.resource_type.as_deref(), Some("AuditEvent"));
        assert_eq!(criterion.param, "agent");
        assert!(
            refused("Patient", "_has:Nope:patient:code", "x").contains("unknown resource type")
        );
        assert!(refused("Patient", "_has:Observation:code:code", "x").contains("not a reference"));
        assert!(refused("Patient", "_has:Observation:patient", "x").contains("_has:Type"));
        assert!(
            refused("Patient", "_has:Observation:patient:nope", "x")
                .contains("no search parameter 'nope'")
        );
        assert!(
            refused("Organization", "_has:Observation:patient:code", "x").contains("cannot refer")
        );
    }

    #[test]
    fn result_parameters() {
        let parsed = ok(
            "Observation",
            &[
                ("_count", "20"),
                ("_sort", "-date,code,_id"),
                ("_total", "accurate"),
                ("_summary", "count"),
                ("_elements", "id, code"),
                ("_include", "Observation:subject"),
                (
                    "_include:iterate",
                    "Patient:general-practitioner:Practitioner",
                ),
                ("_revinclude", "Provenance:*"),
                ("_cursor", "opaque"),
                ("_format", "json"),
                ("_pretty", "true"),
            ],
        );
        assert_eq!(parsed.count, Some(20));
        assert_eq!(
            parsed.query.sort,
            [
                SortKey {
                    param: "date".to_owned(),
                    param_type: ParamType::Date,
                    descending: true
                },
                SortKey {
                    param: "code".to_owned(),
                    param_type: ParamType::Token,
                    descending: false
                },
                SortKey {
                    param: "_id".to_owned(),
                    param_type: ParamType::Token,
                    descending: false
                },
            ]
        );
        assert_eq!(parsed.query.total, Total::Accurate);
        assert_eq!(parsed.summary, Some(Summary::Count));
        assert_eq!(parsed.elements, ["id", "code"]);
        assert_eq!(
            parsed.query.includes,
            [
                Include {
                    source_type: "Observation".to_owned(),
                    param: Some("subject".to_owned()),
                    target_type: None,
                    iterate: false
                },
                Include {
                    source_type: "Patient".to_owned(),
                    param: Some("general-practitioner".to_owned()),
                    target_type: Some("Practitioner".to_owned()),
                    iterate: true
                },
            ]
        );
        assert_eq!(
            parsed.query.revincludes,
            [Include {
                source_type: "Provenance".to_owned(),
                param: None,
                target_type: None,
                iterate: false
            }]
        );
        assert_eq!(parsed.cursor.as_deref(), Some("opaque"));
        assert!(parsed.ignored.is_empty() && parsed.query.clauses.is_empty());
        assert_eq!(parsed.query.types, ["Observation"]);

        assert!(refused("Observation", "_count", "-1").contains("whole number"));
        assert!(refused("Observation", "_count", "ten").contains("whole number"));
        assert!(refused("Observation", "_sort", "nosuch").contains("nosuch"));
        assert!(refused("Observation", "_sort", "code-value-quantity").contains("composite"));
        assert!(refused("Observation", "_total", "some").contains("accurate"));
        assert!(refused("Observation", "_summary", "yes").contains("count"));
        assert!(refused("Observation", "_include", "Observation").contains("Type:parameter"));
        assert!(refused("Observation", "_include", "Observation:code").contains("not a reference"));
        assert!(
            refused("Observation", "_include", "Nope:subject").contains("unknown resource type")
        );
        assert!(
            refused("Observation", "_include", "Observation:subject:Medication")
                .contains("cannot refer")
        );
        assert!(refused("Observation", "_include:deep", "Observation:subject").contains(":deep"));
    }

    #[test]
    fn unknown_parameters() {
        let parsed = ok(
            "Patient",
            &[("nosuch", "1"), ("name", "x"), ("_type", "Patient")],
        );
        assert_eq!(parsed.ignored, ["nosuch=1", "_type=Patient"]);
        assert_eq!(parsed.query.clauses.len(), 1);
        let strict = parse(
            &["Patient".to_owned()],
            &pairs(&[("nosuch", "1")]),
            ParseOptions { strict: true },
        );
        assert_eq!(
            strict,
            Err(SearchError::UnknownParameter {
                name: "nosuch".to_owned()
            })
        );
    }

    #[test]
    fn system_level() {
        let system = |query: &[(&str, &str)]| parse(&[], &pairs(query), ParseOptions::default());
        let parsed = system(&[("_lastUpdated", "ge2024"), ("_tag", "x|y"), ("name", "z")]).unwrap();
        assert!(parsed.query.types.is_empty());
        assert_eq!(parsed.query.clauses.len(), 2);
        assert!(
            parsed
                .query
                .clauses
                .iter()
                .all(|c| c.any_of[0].resource_type.is_none())
        );
        assert_eq!(parsed.ignored, ["name=z"]);
        let parsed = system(&[("_type", "Patient,Practitioner"), ("name", "z")]).unwrap();
        assert_eq!(parsed.query.types, ["Patient", "Practitioner"]);
        assert_eq!(parsed.query.clauses.len(), 1);
        assert_eq!(parsed.query.clauses[0].any_of[0].resource_type, None);
        let parsed = system(&[("_type", "Observation"), ("code", "x")]).unwrap();
        assert_eq!(
            parsed.query.clauses[0].any_of[0].resource_type.as_deref(),
            Some("Observation")
        );
        let parsed = system(&[("_type", "Patient,Observation"), ("code", "x")]).unwrap();
        assert_eq!(parsed.ignored, ["code=x"]);
        match system(&[("_type", "Patient,Nope")]) {
            Err(SearchError::BadValue { name, reason, .. }) => {
                assert_eq!(name, "_type");
                assert!(reason.contains("'Nope'"));
            }
            other => panic!("{other:?}"),
        }
        assert!(system(&[("_sort", "_lastUpdated")]).is_ok());
    }

    #[test]
    fn compartments() {
        let clause = compartment("Patient", "p1", "Observation").unwrap();
        let params: Vec<&str> = clause.any_of.iter().map(|c| c.param.as_str()).collect();
        assert_eq!(params, ["subject", "performer"]);
        assert!(clause.any_of.iter().all(|c| c.test
            == Test::Reference(ReferenceTest::Local {
                resource_type: Some("Patient".to_owned()),
                id: "p1".to_owned()
            })));
        let clause = compartment("Patient", "p1", "Patient").unwrap();
        assert!(
            clause
                .any_of
                .iter()
                .any(|c| c.param == "_id" && c.test == token(SystemMatch::Any, Some("p1")))
        );
        assert_eq!(compartment("Patient", "p1", "Medication"), None);
        assert_eq!(compartment("Encounter", "e1", "Observation"), None);
    }

    #[test]
    fn escapes() {
        assert_eq!(split_unescaped(r"a,b\,c,", b','), ["a", r"b\,c", ""]);
        assert_eq!(unescape(r"a\,b\|c\$d\\e\x"), r"a,b|c$d\e\x");
        assert_eq!(find_unescaped(r"a\|b|c", b'|'), Some(4));
    }
}
