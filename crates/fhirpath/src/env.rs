//! What an evaluation sees besides the resource: variables and hooks into the rest of the server.

use std::collections::HashMap;

use serde_json::Value;

use crate::Error;
use crate::temporal::DateTime;

/// Resolves references for `resolve()` beyond the resource itself (e.g. from the store).
///
/// The resolver owns what it returns (a pre-loaded map, an arena), so results can borrow from it.
pub trait Resolver: Send + Sync {
    /// The resource a reference such as `Patient/123` or an absolute URL points to.
    fn resolve(&self, reference: &str) -> Option<&Value>;
}

/// Terminology operations for `memberOf()`.
pub trait Terminology: Send + Sync {
    /// Whether a code, Coding or CodeableConcept (as JSON) is in the value set `value_set`.
    fn member_of(&self, coded: &Value, value_set: &str) -> Result<bool, Error>;
}

/// Profile validation for `conformsTo()`.
pub trait Conformance: Send + Sync {
    /// Whether `resource` conforms to the StructureDefinition `url`.
    fn conforms_to(&self, resource: &Value, url: &str) -> Result<bool, Error>;
}

/// Receives `trace()` output: the name and the rendered collection.
pub type TraceSink = dyn Fn(&str, &str) + Send + Sync;

/// A user variable's value.
#[derive(Debug, Clone)]
pub enum Variable {
    /// JSON: a resource (typed by its `resourceType`) or any other value.
    Json(Value),
    String(String),
    Integer(i64),
    Boolean(bool),
    /// Several values.
    List(Vec<Variable>),
}

/// The environment of an evaluation.
#[derive(Default)]
pub struct Environment<'e> {
    pub(crate) variables: HashMap<String, Variable>,
    pub(crate) resolver: Option<&'e dyn Resolver>,
    pub(crate) terminology: Option<&'e dyn Terminology>,
    pub(crate) conformance: Option<&'e dyn Conformance>,
    pub(crate) strict: bool,
    pub(crate) resolve_stubs: bool,
    pub(crate) now: Option<DateTime>,
    pub(crate) trace: Option<&'e TraceSink>,
}

impl<'e> Environment<'e> {
    pub fn new() -> Environment<'e> {
        Environment::default()
    }

    /// Sets `%name`.
    pub fn set_variable(&mut self, name: impl Into<String>, value: Variable) -> &mut Self {
        self.variables.insert(name.into(), value);
        self
    }

    pub fn with_resolver(&mut self, resolver: &'e dyn Resolver) -> &mut Self {
        self.resolver = Some(resolver);
        self
    }

    pub fn with_terminology(&mut self, terminology: &'e dyn Terminology) -> &mut Self {
        self.terminology = Some(terminology);
        self
    }

    pub fn with_conformance(&mut self, conformance: &'e dyn Conformance) -> &mut Self {
        self.conformance = Some(conformance);
        self
    }

    /// Strict mode: a leading type name that does not match the resource is an error, not empty.
    pub fn strict(&mut self, strict: bool) -> &mut Self {
        self.strict = strict;
        self
    }

    /// Makes `resolve()` return a stub `{"resourceType": T}` for a reference `T/id` (or `…/T/id`)
    /// that nothing resolves, so `reference.resolve() is Patient` works when indexing search
    /// parameters without loading the target.
    pub fn resolve_stubs(&mut self, on: bool) -> &mut Self {
        self.resolve_stubs = on;
        self
    }

    /// Fixes `now()`, `today()` and `timeOfDay()` (for reproducible results).
    pub fn with_now(&mut self, now: DateTime) -> &mut Self {
        self.now = Some(now);
        self
    }

    /// Receives `trace(name)` output as (name, rendered collection); by default it is dropped.
    pub fn with_trace(&mut self, trace: &'e TraceSink) -> &mut Self {
        self.trace = Some(trace);
        self
    }
}
