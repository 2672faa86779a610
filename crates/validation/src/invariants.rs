//! The invariants of the definitions (`constraint` FHIRPath expressions), evaluated with
//! our FHIRPath engine. Each expression is compiled once, on first use, and kept.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use fhirpath::{Environment, Expression, FhirType, Item, Node};
use serde_json::Value;

use crate::InvariantEvaluator;

/// Evaluates invariants with `fhirpath`; shared by every validation.
#[derive(Default)]
pub struct FhirPathInvariants {
    compiled: RwLock<HashMap<String, Arc<Result<Expression, String>>>>,
}

/// The evaluator [`crate::validate`] uses.
pub static FHIRPATH: LazyLock<FhirPathInvariants> = LazyLock::new(FhirPathInvariants::default);

impl FhirPathInvariants {
    fn expression(&self, source: &str) -> Arc<Result<Expression, String>> {
        if let Ok(compiled) = self.compiled.read()
            && let Some(found) = compiled.get(source)
        {
            return Arc::clone(found);
        }
        let fresh = Arc::new(Expression::compile(source).map_err(|error| error.to_string()));
        if let Ok(mut compiled) = self.compiled.write() {
            compiled.insert(source.to_string(), Arc::clone(&fresh));
        }
        fresh
    }
}

/// FHIRPath's reading of an invariant's result: true, or empty, holds.
fn holds(result: &[Item<'_>]) -> bool {
    match result {
        [] => true,
        [single] => single.as_bool().unwrap_or(true),
        _ => true,
    }
}

impl InvariantEvaluator for FhirPathInvariants {
    fn check(&self, expression: &str, context: &Value, resource: &Value) -> Result<bool, String> {
        self.check_typed(expression, context, None, resource)
    }

    fn check_typed(
        &self,
        expression: &str,
        context: &Value,
        context_type: Option<&str>,
        resource: &Value,
    ) -> Result<bool, String> {
        let compiled = self.expression(expression);
        let expression = compiled.as_ref().as_ref().map_err(Clone::clone)?;
        let env = Environment::new();
        let focus_type = context_type.and_then(|name| {
            if name.contains('.') {
                FhirType::of_path(name)
            } else {
                FhirType::named(name)
            }
        });
        let node = match focus_type {
            Some(fhir_type) => Node::new(context, fhir_type),
            None => Node::resource(context),
        };
        let result = expression
            .evaluate_focus(resource, vec![Item::Node(node)], &env)
            .map_err(|error| error.to_string())?;
        Ok(holds(&result))
    }
}
