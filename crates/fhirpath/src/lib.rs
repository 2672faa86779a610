//! A FHIRPath engine (normative FHIRPath N1, as FHIR R4 uses it) over `serde_json` values.
//!
//! Compile once with [`Expression::compile`], evaluate many times with [`Expression::evaluate`].
//! Results borrow from the input JSON where they can; JSON nodes carry their FHIR type,
//! resolved from the compiled-in R4 definitions.
//!
//! This crate knows nothing about storage or HTTP; references beyond the resource,
//! terminology and profiles come in through the hooks in [`Environment`].

mod ast;
mod env;
mod eval;
mod functions;
mod model;
mod ops;
mod parser;
mod print;
pub mod temporal;
mod ucum;
mod value;

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub use env::{Conformance, Environment, Resolver, Terminology, TraceSink, Variable};
pub use model::FhirType;
pub use parser::{MAX_EXPRESSION_BYTES, MAX_NESTING_DEPTH};
pub use value::{Collection, Item, Node, Quantity};

/// Why an expression failed to compile or evaluate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The text is not a FHIRPath expression.
    Syntax { message: String, position: usize },
    /// Well-formed but meaningless: an unknown function, type or element.
    Semantic(String),
    /// Failed while evaluating: a collection where a single item was needed, a type mismatch.
    Execution(String),
    /// A hook (terminology, profiles) is not available.
    NotAvailable(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Syntax { message, position } => {
                write!(f, "FHIRPath syntax error at {position}: {message}")
            }
            Error::Semantic(message) => write!(f, "FHIRPath semantic error: {message}"),
            Error::Execution(message) => write!(f, "FHIRPath evaluation error: {message}"),
            Error::NotAvailable(message) => write!(f, "not available: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// A compiled FHIRPath expression; cheap to clone and share between threads.
#[derive(Clone, Debug)]
pub struct Expression {
    source: Arc<str>,
    root: Arc<ast::Expr>,
}

impl Expression {
    /// Parses and compiles `source`.
    pub fn compile(source: &str) -> Result<Expression, Error> {
        let root = parser::parse(source)?;
        Ok(Expression {
            source: source.into(),
            root: Arc::new(root),
        })
    }

    /// The text this expression was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `resource` (also `%resource`, `%rootResource` and `%context`).
    pub fn evaluate<'a>(
        &self,
        resource: &'a Value,
        env: &'a Environment<'_>,
    ) -> Result<Collection<'a>, Error> {
        let focus = eval::Focus::One(Item::Node(Node::resource(resource)));
        eval::evaluate(&self.root, resource, focus, env)
    }

    /// Evaluates with `focus` as the context (`%context`, and what a leading name navigates
    /// from), e.g. an element for an element-level invariant; `%resource` is `resource`.
    pub fn evaluate_focus<'a>(
        &self,
        resource: &'a Value,
        focus: Collection<'a>,
        env: &'a Environment<'_>,
    ) -> Result<Collection<'a>, Error> {
        eval::evaluate(&self.root, resource, eval::Focus::Many(focus), env)
    }
}

impl fmt::Display for Expression {
    /// The expression as canonical, fully parenthesised FHIRPath; compiling it gives the same tree.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.root.fmt(f)
    }
}

/// Compiles and evaluates in one go.
pub fn evaluate<'a>(
    source: &str,
    resource: &'a Value,
    env: &'a Environment<'_>,
) -> Result<Collection<'a>, Error> {
    Expression::compile(source)?.evaluate(resource, env)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_name_elements_after_a_dot() {
        let patient = serde_json::json!({
            "resourceType": "Patient",
            "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Hi</div>"}
        });
        let env = Environment::new();
        let result = evaluate("Patient.text.div", &patient, &env).unwrap();
        assert_eq!(result.len(), 1);
        assert_eq!(result[0].type_name(), ("FHIR", "xhtml"));
        assert!(result[0].as_str().unwrap().contains("Hi"));
        let result = evaluate("Patient.text.div.exists() and 7 div 2 = 3", &patient, &env).unwrap();
        assert_eq!(result[0].as_bool(), Some(true));
        // Unknown keyword-named members are empty, like other unknown members.
        let result = evaluate("Patient.text.and | Patient.mod", &patient, &env).unwrap();
        assert!(result.is_empty());
    }

    #[test]
    fn unions_of_paths_for_other_types() {
        let patient = serde_json::json!({
            "resourceType": "Patient",
            "id": "p",
            "name": [{"family": "A", "given": ["B", "C"]}, {"family": "A"}]
        });
        let practitioner =
            serde_json::json!({"resourceType": "Practitioner", "name": [{"family": "D"}]});
        let env = Environment::new();
        let count = |source: &str, resource| evaluate(source, resource, &env).map(|c| c.len());
        let names = "Patient.name | Practitioner.name | RelatedPerson.name";
        assert_eq!(count(names, &patient), Ok(2));
        assert_eq!(count(names, &practitioner), Ok(1));
        assert_eq!(
            count(
                "Patient.name.family | Practitioner.name.family | 'A'",
                &patient
            ),
            Ok(1)
        );
        assert_eq!(
            count("Resource.id | DomainResource.id | Patient.id", &patient),
            Ok(1)
        );
        assert_eq!(
            count(
                "Patient.name.given | Patient.name[1].given | Practitioner.name[0]",
                &patient
            ),
            Ok(2)
        );
        // A step that fails even on an empty input still fails.
        assert!(count("Practitioner.name.skip('a') | Patient.id", &patient).is_err());
        assert!(count("Practitioner.name['a'] | Patient.id", &patient).is_err());
        // Strict mode: a type name that does not match the resource is an error.
        let mut strict = Environment::new();
        strict.strict(true);
        assert!(evaluate(names, &patient, &strict).is_err());
        // The compiled form prints as written.
        let expression = Expression::compile(names).unwrap();
        assert_eq!(
            expression.to_string(),
            "((Patient.name | Practitioner.name) | RelatedPerson.name)"
        );
    }

    #[test]
    fn expression_is_send_and_sync() {
        fn check<T: Send + Sync + Clone>() {}
        check::<Expression>();
    }
}
