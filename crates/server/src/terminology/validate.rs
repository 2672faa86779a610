//! `$validate-code` on CodeSystem and on ValueSet (R4 OperationDefinitions
//! CodeSystem-validate-code and ValueSet-validate-code): `result`, `message` and
//! `display`. A code is valid when it is known, in the value set (ValueSet level), valid
//! on a claim (an ICD-10-CM header is not, unless `abstract` is true; the message says
//! how many billable codes are below it), and, when `date` is given, in force on that
//! date of service. A display that matches neither the title nor an inclusion term
//! leaves `result` true and says so in `message`, as a warning.

use serde_json::{Value, json};

use super::concept::{Concept, System, VERSION};
use super::params::{Coding, Params};
use super::valueset::ValueSet;
use super::{parameter, parameters};
use crate::error::ApiError;

struct Check {
    result: bool,
    messages: Vec<String>,
    display: Option<String>,
}

struct Context<'p> {
    value_set: Option<&'p ValueSet>,
    date: Option<coding::Date>,
    allow_abstract: bool,
}

pub fn code_system(params: &Params) -> Result<Value, ApiError> {
    let url = params.text("url")?;
    let codings = codings(params, url)?;
    let system_url = url
        .map(str::to_string)
        .or_else(|| codings.iter().find_map(|c| c.system.clone()))
        .ok_or_else(|| params.missing("url"))?;
    let system = System::find(&system_url)?;
    system.check_version(params.text("version")?)?;
    let context = Context {
        value_set: None,
        date: params.date("date")?,
        allow_abstract: params.boolean("abstract")?.unwrap_or(false),
    };
    Ok(answer(&codings, Some(system), &context))
}

pub fn value_set(params: &Params) -> Result<Value, ApiError> {
    let value_set = ValueSet::parse(params.required("url")?)?;
    if let Some(version) = params.text("valueSetVersion")?
        && version != VERSION
    {
        return Err(ApiError::not_found(format!(
            "version {version:?} of the value set is not known here; this server has {VERSION}"
        )));
    }
    let codings = codings(params, params.text("system")?)?;
    if params.text("system")?.is_some() {
        value_set
            .system
            .check_version(params.text("systemVersion")?)?;
    }
    let context = Context {
        value_set: Some(&value_set),
        date: params.date("date")?,
        allow_abstract: params.boolean("abstract")?.unwrap_or(false),
    };
    Ok(answer(&codings, None, &context))
}

/// The codings to check: `code` (with `system`, `display`), or `coding`, or
/// `codeableConcept`; exactly one of them.
fn codings(params: &Params, system: Option<&str>) -> Result<Vec<Coding>, ApiError> {
    let code = params.text("code")?;
    let coding = params.coding("coding")?;
    let concept = params.codeable_concept("codeableConcept")?;
    let given = usize::from(code.is_some())
        + usize::from(coding.is_some())
        + usize::from(concept.is_some());
    if given > 1 {
        return Err(ApiError::bad_request(format!(
            "{} takes one of code, coding and codeableConcept",
            params.operation()
        )));
    }
    if let Some(code) = code {
        return Ok(vec![Coding {
            system: system.map(str::to_string),
            code: Some(code.to_string()),
            display: params.text("display")?.map(str::to_string),
            ..Coding::default()
        }]);
    }
    if let Some(mut coding) = coding {
        if coding.display.is_none() {
            coding.display = params.text("display")?.map(str::to_string);
        }
        return Ok(vec![coding]);
    }
    match concept {
        Some(codings) if !codings.is_empty() => Ok(codings),
        Some(_) => Err(params.bad("codeableConcept", "has no coding")),
        None => Err(params.missing("code")),
    }
}

/// The answer for the codings: the first valid one's, else the first's.
fn answer(codings: &[Coding], system: Option<System>, context: &Context<'_>) -> Value {
    let checks: Vec<Check> = codings
        .iter()
        .map(|coding| check(coding, system, context))
        .collect();
    let chosen = checks.iter().find(|c| c.result).or_else(|| checks.first());
    let mut out = vec![parameter(
        "result",
        "valueBoolean",
        json!(chosen.is_some_and(|c| c.result)),
    )];
    if let Some(check) = chosen {
        if !check.messages.is_empty() {
            out.push(parameter(
                "message",
                "valueString",
                json!(check.messages.join(" ")),
            ));
        }
        if let Some(display) = &check.display {
            out.push(parameter("display", "valueString", json!(display)));
        }
    }
    parameters(out)
}

fn invalid(message: String) -> Check {
    Check {
        result: false,
        messages: vec![message],
        display: None,
    }
}

fn check(coding: &Coding, system: Option<System>, context: &Context<'_>) -> Check {
    let Some(code) = coding
        .code
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
    else {
        return invalid("the coding has no code".into());
    };
    let expected = system.or(context.value_set.map(|vs| vs.system));
    let named = match coding.system.as_deref() {
        Some(url) => match System::from_url(url) {
            Some(named) => Some(named),
            None => return invalid(format!("the code system {url:?} is not known here")),
        },
        None => None,
    };
    let Some(system) = named.or(expected) else {
        return invalid("the coding has no system".into());
    };
    if let Some(expected) = expected
        && expected != system
    {
        return invalid(format!(
            "{code} is a code of {}, not of {}",
            system.url(),
            expected.url()
        ));
    }
    let Some(concept) = system.concept(code) else {
        return invalid(format!(
            "{code:?} is not a code of {} version {VERSION}",
            system.title()
        ));
    };
    let display = Some(concept.display());
    let mut messages = Vec::new();
    if let Some(value_set) = context.value_set
        && !value_set.contains(&concept)
    {
        return Check {
            result: false,
            messages: vec![format!(
                "{} is not in the value set {}",
                concept.code(),
                value_set.url
            )],
            display,
        };
    }
    if !concept.is_billable() {
        let message = not_billable(&concept);
        if !context.allow_abstract {
            return Check {
                result: false,
                messages: vec![message],
                display,
            };
        }
        messages.push(message);
    }
    if let Some(date) = context.date {
        match concept.valid_dates() {
            Some((first, last)) if date < first || date > last => {
                return Check {
                    result: false,
                    messages: vec![format!(
                        "{} is not valid for a date of service on {date}: it may be reported from {first} to {last}",
                        concept.code()
                    )],
                    display,
                };
            }
            _ => {}
        }
    }
    if let Some(given) = coding.display.as_deref()
        && !display_matches(&concept, given)
    {
        messages.push(format!(
            "Warning: the display {given:?} does not match the display of {} {}, {:?}",
            system.title(),
            concept.code(),
            concept.display()
        ));
    }
    Check {
        result: true,
        messages,
        display,
    }
}

/// The message for a code that is not valid on a claim.
fn not_billable(concept: &Concept<'_>) -> String {
    let Concept::Cm(code) = concept else {
        return format!("{} is not valid on a claim", concept.code());
    };
    let mut billable = Vec::new();
    let mut stack: Vec<coding::CmCode<'_>> = code.children().collect();
    while let Some(next) = stack.pop() {
        if next.is_billable() {
            billable.push(next.display());
        }
        stack.extend(next.children());
    }
    billable.sort();
    let examples = billable
        .iter()
        .take(5)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    let more = if billable.len() > 5 { ", ..." } else { "" };
    format!(
        "{} is a {} of ICD-10-CM, not valid on a claim; it has {} billable codes below it ({examples}{more})",
        concept.code(),
        match concept.kind() {
            "header" if code.code().len() == 3 => "header (category)",
            "header" => "header (subcategory)",
            "chapter" => "chapter",
            _ => "block",
        },
        billable.len()
    )
}

fn display_matches(concept: &Concept<'_>, given: &str) -> bool {
    let normal = |text: &str| {
        text.split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_lowercase()
    };
    let given = normal(given);
    normal(&concept.display()) == given
        || concept
            .inclusion_terms()
            .into_iter()
            .any(|term| normal(term) == given)
}
