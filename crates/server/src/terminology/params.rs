//! The inputs of a terminology operation: the URL's parameters and, for POST, those of
//! a `Parameters` body, as named text values or Codings, checked against the names the
//! operation accepts.

use axum::body::Body;
use axum::http::StatusCode;
use fhir::IssueType;
use serde_json::{Map, Value};

use crate::AppState;
use crate::body::{parse_object, read_limited};
use crate::error::ApiError;
use crate::extract::FhirRequest;
use crate::format::require_json_body;

/// A Coding as an operation receives it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Coding {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Input {
    Text(String),
    Coding(Coding),
    /// A CodeableConcept: its codings.
    Concept(Vec<Coding>),
}

/// The parameters of one call.
pub struct Params {
    operation: &'static str,
    allowed: &'static [&'static str],
    list: Vec<(String, Input)>,
}

impl Params {
    pub fn new(operation: &'static str, allowed: &'static [&'static str]) -> Params {
        Params {
            operation,
            allowed,
            list: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, input: Input) -> Result<(), ApiError> {
        if matches!(name, "_format" | "_pretty") {
            return Ok(());
        }
        if !self.allowed.contains(&name) {
            return Err(ApiError::not_supported(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} does not take the parameter {name:?} (it takes {})",
                    self.operation,
                    self.allowed.join(", ")
                ),
            ));
        }
        self.list.push((name.to_string(), input));
        Ok(())
    }

    /// The URL's parameters (a Coding there is written `system|code`).
    pub fn add_query(&mut self, pairs: &[(String, String)]) -> Result<(), ApiError> {
        for (name, value) in pairs {
            self.push(name, Input::Text(value.clone()))?;
        }
        Ok(())
    }

    /// The parameters of a `Parameters` body (an empty body adds none).
    pub async fn add_body(
        &mut self,
        state: &AppState,
        request: &FhirRequest,
        body: Body,
    ) -> Result<(), ApiError> {
        let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        require_json_body(&request.headers)?;
        self.add_parameters(&parse_object(&bytes)?)
    }

    pub fn add_parameters(&mut self, resource: &Map<String, Value>) -> Result<(), ApiError> {
        if resource.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
            return Err(ApiError::bad_request(format!(
                "POST {} takes a Parameters resource",
                self.operation
            )));
        }
        let list = match resource.get("parameter") {
            None => return Ok(()),
            Some(Value::Array(list)) => list,
            Some(_) => return Err(ApiError::bad_request("Parameters.parameter must be a list")),
        };
        for parameter in list {
            let name = parameter.get("name").and_then(Value::as_str).unwrap_or("");
            let value = parameter
                .as_object()
                .and_then(|object| object.iter().find(|(key, _)| key.starts_with("value")));
            let input = match value {
                Some((_, Value::String(text))) => Input::Text(text.clone()),
                Some((_, Value::Number(number))) => Input::Text(number.to_string()),
                Some((_, Value::Bool(flag))) => Input::Text(flag.to_string()),
                Some((key, value)) if key == "valueCoding" => Input::Coding(coding_of(value)),
                Some((key, value)) if key == "valueCodeableConcept" => Input::Concept(
                    value
                        .get("coding")
                        .and_then(Value::as_array)
                        .map(|list| list.iter().map(coding_of).collect())
                        .unwrap_or_default(),
                ),
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "the {} parameter {name:?} has no value this server understands",
                        self.operation
                    )));
                }
            };
            self.push(name, input)?;
        }
        Ok(())
    }

    fn all<'s, 'n>(&'s self, name: &'n str) -> impl Iterator<Item = &'s Input> + use<'s, 'n> {
        self.list
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, input)| input)
    }

    fn one(&self, name: &str) -> Result<Option<&Input>, ApiError> {
        let mut found = self.all(name);
        let first = found.next();
        if found.next().is_some() {
            return Err(ApiError::bad_request(format!(
                "the {} parameter {name:?} appears more than once",
                self.operation
            )));
        }
        Ok(first)
    }

    /// A text parameter (an empty value counts as absent).
    pub fn text(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.one(name)? {
            None => Ok(None),
            Some(Input::Text(text)) if text.trim().is_empty() => Ok(None),
            Some(Input::Text(text)) => Ok(Some(text.trim())),
            Some(_) => Err(self.bad(name, "is not a primitive value")),
        }
    }

    /// A text parameter that must be there.
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.text(name)?.ok_or_else(|| self.missing(name))
    }

    /// Every value of a repeating text parameter.
    pub fn texts(&self, name: &str) -> Vec<&str> {
        self.all(name)
            .filter_map(|input| match input {
                Input::Text(text) => Some(text.as_str()),
                _ => None,
            })
            .flat_map(|text| text.split(','))
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .collect()
    }

    /// A Coding parameter; in a URL, `system|code`.
    pub fn coding(&self, name: &str) -> Result<Option<Coding>, ApiError> {
        match self.one(name)? {
            None => Ok(None),
            Some(Input::Coding(coding)) => Ok(Some(coding.clone())),
            Some(Input::Text(text)) => match text.rsplit_once('|') {
                Some((system, code)) if !code.trim().is_empty() => Ok(Some(Coding {
                    system: Some(system.trim().to_string()).filter(|s| !s.is_empty()),
                    code: Some(code.trim().to_string()),
                    ..Coding::default()
                })),
                _ => Err(self.bad(name, "is not a Coding (in a URL: system|code)")),
            },
            Some(Input::Concept(_)) => Err(self.bad(name, "is a CodeableConcept, not a Coding")),
        }
    }

    /// A CodeableConcept parameter's codings.
    pub fn codeable_concept(&self, name: &str) -> Result<Option<Vec<Coding>>, ApiError> {
        match self.one(name)? {
            None => Ok(None),
            Some(Input::Concept(codings)) => Ok(Some(codings.clone())),
            Some(Input::Coding(coding)) => Ok(Some(vec![coding.clone()])),
            Some(Input::Text(_)) => Err(self.bad(name, "is not a CodeableConcept")),
        }
    }

    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.text(name)? {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(self.bad(name, "is not true or false")),
        }
    }

    pub fn integer(&self, name: &str) -> Result<Option<usize>, ApiError> {
        match self.text(name)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| self.bad(name, "is not a whole number of 0 or more")),
        }
    }

    /// A date or dateTime parameter, as its day.
    pub fn date(&self, name: &str) -> Result<Option<coding::Date>, ApiError> {
        match self.text(name)? {
            None => Ok(None),
            Some(text) => text
                .get(..10)
                .and_then(coding::Date::parse)
                .map(Some)
                .ok_or_else(|| self.bad(name, "is not a date such as 2026-04-15")),
        }
    }

    pub fn bad(&self, name: &str, reason: &str) -> ApiError {
        ApiError::bad_request(format!(
            "the {} parameter {name:?} {reason}",
            self.operation
        ))
    }

    pub fn missing(&self, name: &str) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            IssueType::Required,
            format!("{} needs the parameter {name:?}", self.operation),
        )
    }

    pub fn operation(&self) -> &'static str {
        self.operation
    }
}

fn coding_of(value: &Value) -> Coding {
    let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_string);
    Coding {
        system: text("system"),
        version: text("version"),
        code: text("code"),
        display: text("display"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const ALLOWED: &[&str] = &["code", "coding", "count", "property"];

    #[test]
    fn url_and_body_parameters_are_checked_and_read() {
        let mut params = Params::new("$lookup", ALLOWED);
        params
            .add_query(&[
                ("code".into(), " I50.21 ".into()),
                ("property".into(), "parent,child".into()),
                ("_format".into(), "json".into()),
            ])
            .unwrap();
        let body = serde_json::json!({"resourceType": "Parameters", "parameter": [
            {"name": "coding", "valueCoding": {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I50.2"}},
            {"name": "count", "valueInteger": 5},
        ]});
        params.add_parameters(body.as_object().unwrap()).unwrap();
        assert_eq!(params.text("code").unwrap(), Some("I50.21"));
        assert_eq!(params.texts("property"), vec!["parent", "child"]);
        assert_eq!(params.integer("count").unwrap(), Some(5));
        assert_eq!(
            params.coding("coding").unwrap().unwrap().code.as_deref(),
            Some("I50.2")
        );
        let unknown = params.add_query(&[("colour".into(), "red".into())]);
        assert_eq!(unknown.unwrap_err().status, StatusCode::BAD_REQUEST);
        params.add_query(&[("code".into(), "I10".into())]).unwrap();
        assert!(params.text("code").is_err(), "a repeated single parameter");
    }

    #[test]
    fn a_coding_in_a_url_is_system_bar_code() {
        let mut params = Params::new("$lookup", ALLOWED);
        params
            .add_query(&[(
                "coding".into(),
                "http://hl7.org/fhir/sid/icd-10-cm|I10".into(),
            )])
            .unwrap();
        let coding = params.coding("coding").unwrap().unwrap();
        assert_eq!(
            coding.system.as_deref(),
            Some("http://hl7.org/fhir/sid/icd-10-cm")
        );
        assert_eq!(coding.code.as_deref(), Some("I10"));
        let mut params = Params::new("$lookup", ALLOWED);
        params
            .add_query(&[("coding".into(), "I10".into())])
            .unwrap();
        assert!(params.coding("coding").is_err());
    }
}
