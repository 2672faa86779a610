//! The invariants of the definitions (`constraint` FHIRPath expressions), evaluated with
//! our FHIRPath engine. Each expression is compiled once, on first use, and kept.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use fhirpath::{Environment, Error, Expression, FhirType, Item, Node, Resolver, Terminology};
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

/// `memberOf()` against the value sets compiled into `fhir` (the ones R4 bindings use).
pub struct DefinitionsTerminology;

fn contains(
    codes: &std::collections::BTreeMap<String, Vec<String>>,
    system: Option<&str>,
    code: &str,
) -> bool {
    match system {
        Some(system) => codes
            .get(system)
            .is_some_and(|listed| listed.binary_search_by(|c| c.as_str().cmp(code)).is_ok()),
        None => codes
            .values()
            .any(|listed| listed.binary_search_by(|c| c.as_str().cmp(code)).is_ok()),
    }
}

impl Terminology for DefinitionsTerminology {
    fn member_of(&self, coded: &Value, value_set: &str) -> Result<bool, Error> {
        let Some(definition) = fhir::definitions().value_set(value_set) else {
            return Err(Error::NotAvailable(format!(
                "the value set {value_set} is not known"
            )));
        };
        let Some(codes) = &definition.codes else {
            return Err(Error::NotAvailable(format!(
                "the value set {value_set} cannot be expanded here"
            )));
        };
        let coding_in = |coding: &Value| {
            coding
                .get("code")
                .and_then(Value::as_str)
                .is_some_and(|code| {
                    contains(codes, coding.get("system").and_then(Value::as_str), code)
                })
        };
        Ok(match coded {
            Value::String(code) => contains(codes, None, code),
            Value::Object(object) => match object.get("coding") {
                Some(Value::Array(codings)) => codings.iter().any(coding_in),
                _ => coding_in(coded),
            },
            _ => false,
        })
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

impl FhirPathInvariants {
    /// Evaluates one invariant; `resolver` answers `resolve()` beyond the resource itself.
    pub fn evaluate(
        &self,
        expression: &str,
        context: &Value,
        context_type: Option<&str>,
        resource: &Value,
        resolver: Option<&dyn Resolver>,
    ) -> Result<bool, String> {
        let compiled = self.expression(expression);
        let expression = compiled.as_ref().as_ref().map_err(Clone::clone)?;
        let mut env = Environment::new();
        env.with_terminology(&DefinitionsTerminology);
        if let Some(resolver) = resolver {
            env.with_resolver(resolver);
        }
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
        self.evaluate(expression, context, context_type, resource, None)
    }
}

/// [`FHIRPATH`] with a resolver for references to other resources (the store's).
pub struct Resolving<'r>(pub &'r dyn Resolver);

impl InvariantEvaluator for Resolving<'_> {
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
        FHIRPATH.evaluate(expression, context, context_type, resource, Some(self.0))
    }
}

/// Whether any invariant of `resource_type` (or of the types it holds) calls `resolve()`, so
/// that validating it needs the resources it references.
pub fn uses_resolve(resource_type: &str) -> bool {
    static TYPES: LazyLock<Vec<String>> = LazyLock::new(|| {
        let definitions = fhir::definitions();
        definitions
            .resource_types()
            .iter()
            .filter(|name| {
                definitions.type_def(name).is_some_and(|def| {
                    def.constraints
                        .iter()
                        .chain(def.elements.iter().flat_map(|e| e.constraints.iter()))
                        .any(|c| c.expression.contains("resolve()"))
                })
            })
            .cloned()
            .collect()
    });
    TYPES.iter().any(|name| name == resource_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member_of(resource: &Value, expression: &str) -> Vec<bool> {
        let mut env = Environment::new();
        env.with_terminology(&DefinitionsTerminology);
        let compiled = Expression::compile(expression).unwrap();
        compiled
            .evaluate(resource, &env)
            .unwrap()
            .iter()
            .filter_map(Item::as_bool)
            .collect()
    }

    #[test]
    fn member_of_uses_the_compiled_value_sets() {
        let gender = "http://hl7.org/fhir/ValueSet/administrative-gender";
        let female = json!({"resourceType": "Patient", "gender": "female"});
        let boy = json!({"resourceType": "Patient", "gender": "boy"});
        let expression = format!("Patient.gender.memberOf('{gender}')");
        assert_eq!(member_of(&female, &expression), [true]);
        assert_eq!(member_of(&boy, &expression), [false]);
        let status = "http://hl7.org/fhir/ValueSet/observation-status";
        let coded = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://hl7.org/fhir/observation-status", "code": "final"}]}});
        assert_eq!(
            member_of(&coded, &format!("Observation.code.memberOf('{status}')")),
            [true]
        );
    }

    #[test]
    fn invariants_hold_when_true_or_empty() {
        let evaluator = FhirPathInvariants::default();
        let period = json!({"start": "2020-02-01", "end": "2020-01-01"});
        let resource = json!({"resourceType": "Encounter", "period": period});
        let per_1 = "start.hasValue().not() or end.hasValue().not() or (start <= end)";
        assert_eq!(
            evaluator.check_typed(per_1, &resource["period"], Some("Period"), &resource),
            Ok(false)
        );
        assert_eq!(
            evaluator.check_typed("{}", &resource["period"], Some("Period"), &resource),
            Ok(true)
        );
        assert!(
            evaluator
                .check_typed("(", &resource, None, &resource)
                .is_err()
        );
    }
}

#[cfg(test)]
mod resolve_tests {
    use std::collections::HashMap;

    use super::*;
    use serde_json::json;

    struct Map(HashMap<String, Value>);

    impl Resolver for Map {
        fn resolve(&self, reference: &str) -> Option<&Value> {
            self.0.get(reference)
        }
    }

    #[test]
    fn resolve_reaches_other_resources_through_the_resolver() {
        assert!(uses_resolve("CareTeam"));
        assert!(!uses_resolve("Patient"));
        let care_team = json!({"resourceType": "CareTeam", "participant": [
            {"member": {"reference": "Organization/o1"}, "onBehalfOf": {"reference": "Organization/o1"}}]});
        let ctm_1 = "onBehalfOf.exists() implies (member.resolve().iif(empty(), true, ofType(Practitioner).exists()))";
        let participant = &care_team["participant"][0];
        let store = Map(HashMap::from([(
            "Organization/o1".to_string(),
            json!({"resourceType": "Organization", "id": "o1"}),
        )]));
        let context = Some("CareTeam.participant");
        // Without a resolver the member cannot be checked, and the invariant holds.
        assert_eq!(
            FHIRPATH.evaluate(ctm_1, participant, context, &care_team, None),
            Ok(true)
        );
        assert_eq!(
            FHIRPATH.evaluate(ctm_1, participant, context, &care_team, Some(&store)),
            Ok(false)
        );
    }
}
