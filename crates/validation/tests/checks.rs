//! One test per check: the exact expression, severity and issue code each raises.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use fhir::{IssueType, Severity};
use serde_json::{Value, json};
use validation::{InvariantEvaluator, Issue, validate, validate_with};

/// The issues as `(severity, code, expression)`, in order.
/// The structural checks alone: these tests isolate one rule each, while the FHIRPath
/// invariants (which `validate` also runs) are tested on their own below.
fn check(resource: Value) -> Vec<(Severity, IssueType, String)> {
    summarize(validate_with(&resource, None))
}

fn summarize(issues: Vec<Issue>) -> Vec<(Severity, IssueType, String)> {
    issues
        .into_iter()
        .map(|i| (i.severity, i.code, i.expression))
        .collect()
}

fn error(code: IssueType, expression: &str) -> (Severity, IssueType, String) {
    (Severity::Error, code, expression.to_string())
}

fn patient(extra: Value) -> Value {
    let mut p = json!({"resourceType": "Patient", "id": "p1"});
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

#[test]
fn a_minimal_resource_is_valid() {
    assert_eq!(check(json!({"resourceType": "Patient"})), []);
    assert_eq!(
        check(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}})),
        []
    );
}

#[test]
fn resource_type_must_be_known_and_concrete() {
    assert_eq!(
        check(json!({"resourceType": "Patientx"})),
        [error(IssueType::Structure, "")]
    );
    assert_eq!(
        check(json!({"resourceType": "DomainResource"})),
        [error(IssueType::Structure, "")]
    );
    assert_eq!(check(json!({"id": "x"})), [error(IssueType::Required, "")]);
    assert_eq!(check(json!([1])), [error(IssueType::Structure, "")]);
    assert_eq!(check(json!("Patient")), [error(IssueType::Structure, "")]);
}

#[test]
fn unknown_elements() {
    assert_eq!(
        check(patient(json!({"foo": 1}))),
        [error(IssueType::Structure, "Patient.foo")]
    );
    assert_eq!(
        check(patient(
            json!({"name": [{"family": "x", "fhir_comments": ["c"]}]})
        )),
        [error(IssueType::Structure, "Patient.name[0].fhir_comments")]
    );
    // `_x` only exists for primitives.
    assert_eq!(
        check(patient(json!({"_name": {"id": "x"}}))),
        [error(IssueType::Structure, "Patient._name")]
    );
    assert_eq!(
        check(patient(
            json!({"_birthDate": {"extension": [{"url": "http://x", "valueString": "y"}]}})
        )),
        []
    );
}

#[test]
fn choice_types() {
    let obs = |extra: Value| {
        let mut o =
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        for (k, v) in extra.as_object().unwrap() {
            o[k] = v.clone();
        }
        o
    };
    assert_eq!(check(obs(json!({"valueQuantity": {"value": 1}}))), []);
    assert_eq!(
        check(obs(json!({"valueAddress": {"city": "x"}}))),
        [error(IssueType::Structure, "Observation.valueAddress")]
    );
    assert_eq!(
        check(obs(json!({"valueString": "a", "valueBoolean": true}))),
        [error(IssueType::Structure, "Observation.value")]
    );
    assert_eq!(
        check(obs(json!({"valueBoolean": "true"}))),
        [error(
            IssueType::Structure,
            "Observation.value.ofType(boolean)"
        )]
    );
    assert_eq!(
        check(
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order", "subject": {"reference": "Patient/1"}})
        ),
        [error(IssueType::Required, "MedicationRequest.medication")]
    );
}

#[test]
fn cardinality_and_array_shape() {
    assert_eq!(
        check(json!({"resourceType": "Observation", "code": {"text": "x"}})),
        [error(IssueType::Required, "Observation.status")]
    );
    assert_eq!(
        check(patient(json!({"name": {"family": "x"}}))),
        [error(IssueType::Structure, "Patient.name")]
    );
    assert_eq!(
        check(patient(json!({"gender": ["male"]}))),
        [error(IssueType::Structure, "Patient.gender")]
    );
    // A primitive present only through its extension counts as present.
    assert_eq!(
        check(
            json!({"resourceType": "Observation", "_status": {"extension": [{"url": "http://x", "valueString": "y"}]}, "code": {"text": "x"}})
        ),
        []
    );
}

#[test]
fn json_kinds_of_primitives() {
    assert_eq!(
        check(patient(json!({"active": "true"}))),
        [error(IssueType::Structure, "Patient.active")]
    );
    let fractional: Value =
        serde_json::from_str(r#"{"resourceType": "Patient", "multipleBirthInteger": 1.5}"#)
            .unwrap();
    assert_eq!(
        check(fractional),
        [error(
            IssueType::Value,
            "Patient.multipleBirth.ofType(integer)"
        )]
    );
    assert_eq!(
        check(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "1.5"}})
        ),
        [error(
            IssueType::Structure,
            "Observation.value.ofType(Quantity).value"
        )]
    );
    assert_eq!(
        check(json!({"resourceType": "Patient", "birthDate": 1990})),
        [error(IssueType::Structure, "Patient.birthDate")]
    );
    assert_eq!(
        check(
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueSampledData": {"origin": {"value": 0}, "period": 1, "dimensions": 0}})
        ),
        [error(
            IssueType::Value,
            "Observation.value.ofType(SampledData).dimensions"
        )]
    );
}

#[test]
fn primitive_formats() {
    assert_eq!(
        check(patient(json!({"birthDate": "1990-13-01"}))),
        [error(IssueType::Value, "Patient.birthDate")]
    );
    assert_eq!(
        check(json!({"resourceType": "Patient", "id": "a_b"})),
        [error(IssueType::Value, "Patient.id")]
    );
    assert_eq!(
        check(json!({"resourceType": "Patient", "meta": {"lastUpdated": "2020-01-01"}})),
        [error(IssueType::Value, "Patient.meta.lastUpdated")]
    );
    assert_eq!(
        check(patient(json!({"deceasedDateTime": "2020-01-01T10:00:00"}))),
        [error(IssueType::Value, "Patient.deceased.ofType(dateTime)")]
    );
    assert_eq!(
        check(patient(json!({"photo": [{"data": "%%%"}]}))),
        [error(IssueType::Value, "Patient.photo[0].data")]
    );
    assert_eq!(
        check(patient(
            json!({"text": {"status": "generated", "div": "<div>&reg;</div>"}})
        )),
        [error(IssueType::Value, "Patient.text.div")]
    );
    assert_eq!(
        check(patient(json!({"implicitRules": "a b"}))),
        [error(IssueType::Value, "Patient.implicitRules")]
    );
}

#[test]
fn no_empty_values() {
    assert_eq!(
        check(patient(json!({"name": [{"given": ["a", ""]}]}))),
        [error(IssueType::Value, "Patient.name[0].given[1]")]
    );
    assert_eq!(
        check(patient(json!({"name": [{}]}))),
        [error(IssueType::Structure, "Patient.name[0]")]
    );
    assert_eq!(
        check(patient(json!({"name": []}))),
        [error(IssueType::Structure, "Patient.name")]
    );
    assert_eq!(
        check(patient(json!({"maritalStatus": {}}))),
        [error(IssueType::Structure, "Patient.maritalStatus")]
    );
}

#[test]
fn nulls_only_aligned_in_primitive_arrays() {
    assert_eq!(
        check(patient(
            json!({"name": [{"given": ["a", null], "_given": [null, {"extension": [{"url": "http://x", "valueString": "b"}]}]}]})
        )),
        []
    );
    assert_eq!(
        check(patient(json!({"name": [{"given": ["a", null]}]}))),
        [error(IssueType::Structure, "Patient.name[0].given[1]")]
    );
    assert_eq!(
        check(patient(
            json!({"name": [{"given": ["a", "b"], "_given": [null]}]})
        )),
        [error(IssueType::Structure, "Patient.name[0].given")]
    );
    assert_eq!(
        check(patient(json!({"gender": null}))),
        [error(IssueType::Structure, "Patient.gender")]
    );
    assert_eq!(
        check(patient(json!({"name": [null]}))),
        [error(IssueType::Structure, "Patient.name[0]")]
    );
}

#[test]
fn extensions() {
    assert_eq!(
        check(patient(json!({"extension": [{"valueString": "x"}]}))),
        [error(IssueType::Required, "Patient.extension[0].url")]
    );
    assert_eq!(
        check(patient(
            json!({"extension": [{"url": "http://x", "valueString": "x", "extension": [{"url": "a", "valueCode": "b"}]}]})
        )),
        [error(IssueType::Invariant, "Patient.extension[0]")]
    );
    assert_eq!(
        check(patient(json!({"extension": [{"url": "http://x"}]}))),
        [error(IssueType::Invariant, "Patient.extension[0]")]
    );
    assert_eq!(
        check(patient(
            json!({"modifierExtension": [{"url": "http://x", "valueFoo": 1}]})
        )),
        [error(
            IssueType::Structure,
            "Patient.modifierExtension[0].valueFoo"
        )]
    );
}

#[test]
fn backbone_elements_and_content_references() {
    assert_eq!(
        check(patient(
            json!({"contact": [{"name": {"family": "x"}, "foo": 1}]})
        )),
        [error(IssueType::Structure, "Patient.contact[0].foo")]
    );
    assert_eq!(
        check(
            json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "group", "item": [{"type": "display"}]}]})
        ),
        [error(
            IssueType::Required,
            "Questionnaire.item[0].item[0].linkId"
        )]
    );
}

#[test]
fn contained_resources() {
    assert_eq!(
        check(patient(
            json!({"contained": [{"resourceType": "Organization", "id": "o", "foo": 1}]})
        )),
        [error(IssueType::Structure, "Patient.contained[0].foo")]
    );
    assert_eq!(
        check(patient(
            json!({"contained": [{"resourceType": "Organization", "id": "o", "contained": [{"resourceType": "Organization", "id": "p"}]}]})
        )),
        [error(IssueType::Invariant, "Patient.contained[0]")]
    );
    assert_eq!(
        check(patient(
            json!({"contained": [{"resourceType": "Organization", "id": "o", "meta": {"versionId": "1"}}]})
        )),
        [error(IssueType::Invariant, "Patient.contained[0]")]
    );
    assert_eq!(
        check(patient(json!({"contained": [{"resourceType": "Nope"}]}))),
        [error(IssueType::Structure, "Patient.contained[0]")]
    );
}

#[test]
fn resources_inside_bundles_and_parameters() {
    assert_eq!(
        check(
            json!({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "urn:uuid:8ce7db7b-9b9b-41ae-b1d7-3f2d1c728a13", "resource": {"resourceType": "Patient", "gender": "x"}}]})
        ),
        [error(
            IssueType::CodeInvalid,
            "Bundle.entry[0].resource.gender"
        )]
    );
    assert_eq!(
        check(
            json!({"resourceType": "Parameters", "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "foo": 1}}]})
        ),
        [error(
            IssueType::Structure,
            "Parameters.parameter[0].resource.foo"
        )]
    );
}

#[test]
fn bindings() {
    assert_eq!(
        check(patient(json!({"gender": "m"}))),
        [error(IssueType::CodeInvalid, "Patient.gender")]
    );
    let condition = |status: Value| json!({"resourceType": "Condition", "subject": {"reference": "Patient/1"}, "clinicalStatus": status});
    let system = "http://terminology.hl7.org/CodeSystem/condition-clinical";
    assert_eq!(
        check(condition(
            json!({"coding": [{"system": system, "code": "active"}]})
        )),
        []
    );
    assert_eq!(
        check(condition(
            json!({"coding": [{"system": "http://snomed.info/sct", "code": "1"}, {"system": system, "code": "active"}]})
        )),
        []
    );
    assert_eq!(
        check(condition(
            json!({"coding": [{"system": system, "code": "nope"}]})
        )),
        [error(IssueType::CodeInvalid, "Condition.clinicalStatus")]
    );
    assert_eq!(check(condition(json!({"text": "active"}))), []);
    // Extensible: a warning.
    assert_eq!(
        check(patient(
            json!({"maritalStatus": {"coding": [{"system": "http://x.org", "code": "z"}]}})
        )),
        [(
            Severity::Warning,
            IssueType::CodeInvalid,
            "Patient.maritalStatus".to_string()
        )]
    );
    // Not expandable (UCUM, MIME types): skipped.
    assert_eq!(
        check(patient(
            json!({"photo": [{"contentType": "image/x-whatever"}]})
        )),
        []
    );
}

#[test]
fn references() {
    let gp = |reference: &str| patient(json!({"generalPractitioner": [{"reference": reference}]}));
    for ok in [
        "Practitioner/1",
        "Organization/1/_history/2",
        "http://example.org/fhir/Practitioner/1",
        "https://example.org/anything",
        "#c1",
        "urn:uuid:8ce7db7b-9b9b-41ae-b1d7-3f2d1c728a13",
        "urn:oid:1.2.3",
        "Practitioner?identifier=http://x|1",
    ] {
        assert_eq!(check(gp(ok)), [], "{ok}");
    }
    assert_eq!(
        check(gp("Device/1")),
        [error(
            IssueType::Structure,
            "Patient.generalPractitioner[0].reference"
        )]
    );
    assert_eq!(
        check(gp("http://example.org/fhir/Device/1")),
        [error(
            IssueType::Structure,
            "Patient.generalPractitioner[0].reference"
        )]
    );
    for bad in [
        "Practitioner",
        "Practitioner/1 2",
        "Foo/1",
        "Practitioner/a_b/x",
    ] {
        assert_eq!(
            check(gp(bad)),
            [error(
                IssueType::Value,
                "Patient.generalPractitioner[0].reference"
            )],
            "{bad}"
        );
    }
    assert_eq!(
        summarize(validate(&gp("urn:uuid:nope"))),
        [(
            Severity::Warning,
            IssueType::Value,
            "Patient.generalPractitioner[0].reference".to_string()
        )]
    );
}

#[test]
fn specification_rules() {
    assert_eq!(
        check(
            json!({"resourceType": "Bundle", "type": "collection", "entry": [{"fullUrl": "Patient/1", "resource": {"resourceType": "Patient", "id": "1"}}]})
        ),
        [error(IssueType::Invalid, "Bundle.entry[0].fullUrl")]
    );
    assert_eq!(
        check(
            json!({"resourceType": "Bundle", "type": "searchset", "link": [{"relation": "self", "url": "http://a"}, {"relation": "self", "url": "http://b"}], "entry": [{"resource": {"resourceType": "Patient"}, "search": {"mode": "match"}}]})
        ),
        [
            error(IssueType::Invalid, "Bundle.link[1]"),
            error(IssueType::Invalid, "Bundle.entry[0].resource")
        ]
    );
    assert_eq!(
        check(patient(
            json!({"maritalStatus": {"coding": [{"system": "local", "code": "x"}]}})
        ))[0],
        error(IssueType::Invalid, "Patient.maritalStatus.coding[0].system")
    );
    assert_eq!(
        check(patient(
            json!({"photo": [{"data": "aGVscCBpJ20gYSBidWc=", "size": 100}]})
        )),
        [error(IssueType::Value, "Patient.photo[0].size")]
    );
    assert_eq!(
        check(patient(
            json!({"photo": [{"data": "aGVscCBpJ20gYSBidWc=", "size": 14}]})
        )),
        []
    );
}

#[test]
fn every_issue_is_reported() {
    let issues = check(
        json!({"resourceType": "Patient", "id": "a_b", "gender": "m", "foo": 1, "name": [{}]}),
    );
    assert_eq!(
        issues,
        [
            error(IssueType::Value, "Patient.id"),
            error(IssueType::CodeInvalid, "Patient.gender"),
            error(IssueType::Structure, "Patient.foo"),
            error(IssueType::Structure, "Patient.name[0]"),
        ]
    );
}

#[test]
fn deep_or_odd_input_does_not_panic() {
    let mut deep = json!({"url": "http://x", "valueString": "x"});
    for _ in 0..200 {
        deep = json!({"url": "http://x", "extension": [deep]});
    }
    let issues = validate(&patient(json!({"extension": [deep]})));
    assert!(issues.iter().any(|i| i.code == IssueType::Structure));
    for odd in [
        json!(null),
        json!(1),
        json!({"resourceType": 1}),
        json!({"resourceType": "Patient", "name": [[]]}),
    ] {
        let _ = validate(&odd);
    }
}

struct Mock;

impl InvariantEvaluator for Mock {
    fn check(&self, expression: &str, context: &Value, _resource: &Value) -> Result<bool, String> {
        if expression.starts_with("start.hasValue().not()") {
            let start = context.get("start").and_then(Value::as_str);
            let end = context.get("end").and_then(Value::as_str);
            return Ok(match (start, end) {
                (Some(s), Some(e)) => s <= e,
                _ => true,
            });
        }
        if expression == "comparator.empty()" {
            return Ok(context.get("comparator").is_none());
        }
        if expression.contains("unsupported") {
            return Err("unsupported".to_string());
        }
        Ok(true)
    }
}

#[test]
fn invariants_through_an_evaluator() {
    let encounter = json!({"resourceType": "Encounter", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "period": {"start": "2020-02-01", "end": "2020-01-01"}});
    assert_eq!(check(encounter.clone()), []);
    let issues = validate_with(&encounter, Some(&Mock));
    assert_eq!(
        summarize(issues.clone()),
        [error(IssueType::Invariant, "Encounter.period")]
    );
    assert!(
        issues[0].diagnostics.starts_with("per-1:"),
        "{}",
        issues[0].diagnostics
    );
}

struct Failing;

impl InvariantEvaluator for Failing {
    fn check(
        &self,
        _expression: &str,
        _context: &Value,
        _resource: &Value,
    ) -> Result<bool, String> {
        Err("not implemented".to_string())
    }
}

#[test]
fn an_invariant_that_cannot_be_evaluated_is_information() {
    let issues = validate_with(
        &json!({"resourceType": "Basic", "code": {"text": "x"}}),
        Some(&Failing),
    );
    assert!(!issues.is_empty());
    assert!(
        issues
            .iter()
            .all(|i| i.severity == Severity::Information && i.code == IssueType::Processing),
        "{issues:?}"
    );
    assert!(
        issues
            .iter()
            .any(|i| i.expression == "Basic" && i.diagnostics.contains("dom-5"))
    );
}

#[test]
fn issues_become_an_operation_outcome() {
    let issues = validate(&json!({"resourceType": "Patient", "gender": "m"}));
    let outcome = validation::operation_outcome(&issues);
    assert_eq!(
        outcome,
        json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error",
            "code": "code-invalid",
            "diagnostics": issues[0].diagnostics,
            "expression": ["Patient.gender"],
        }]})
    );
    assert_eq!(
        validation::operation_outcome(&[])["issue"][0]["severity"],
        "information"
    );
    // The outcome itself is a valid resource.
    assert_eq!(validate(&outcome), []);
}

#[test]
fn validate_runs_the_fhirpath_invariants() {
    let invariant_issues = |resource: Value| -> Vec<(Severity, String)> {
        validate(&resource)
            .into_iter()
            .filter(|issue| issue.code == IssueType::Invariant)
            .map(|issue| {
                (
                    issue.severity,
                    issue
                        .diagnostics
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect()
    };
    // per-1: a Period may not end before it starts.
    let encounter = json!({"resourceType": "Encounter", "status": "finished", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "period": {"start": "2020-02-01", "end": "2020-01-01"}});
    assert_eq!(
        invariant_issues(encounter),
        [(Severity::Error, "per-1".to_string())]
    );
    // att-1: data needs a contentType.
    assert_eq!(
        invariant_issues(json!({"resourceType": "Patient", "photo": [{"data": "AAAA"}]})),
        [(Severity::Error, "att-1".to_string())]
    );
    // ref-1 and dom-3: a local reference needs a contained resource, and a contained
    // resource needs a reference to it.
    assert_eq!(
        invariant_issues(
            json!({"resourceType": "Patient", "generalPractitioner": [{"reference": "#gp"}]})
        ),
        [(Severity::Error, "ref-1".to_string())]
    );
    assert_eq!(
        invariant_issues(
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "name": "x"}]})
        ),
        [(Severity::Error, "dom-3".to_string())]
    );
    // dom-3 (checked natively) names the unreferenced contained resource.
    let unreferenced = validate(
        &json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "name": "x"}, {"resourceType": "Organization", "id": "p", "name": "y"}], "managingOrganization": {"reference": "#p"}}),
    );
    let dom_3: Vec<&str> = unreferenced
        .iter()
        .filter(|issue| issue.diagnostics.starts_with("dom-3"))
        .map(|issue| issue.expression.as_str())
        .collect();
    assert_eq!(dom_3, ["Patient.contained[0]"]);
    // All of them hold on a well-formed resource.
    assert_eq!(
        invariant_issues(
            json!({"resourceType": "Patient", "contained": [{"resourceType": "Practitioner", "id": "gp"}], "generalPractitioner": [{"reference": "#gp"}], "photo": [{"contentType": "image/png", "data": "AAAA"}]})
        ),
        []
    );
}

#[test]
fn preferred_bindings_warn() {
    assert_eq!(
        check(json!({"resourceType": "Patient", "language": "xx"})),
        [(
            Severity::Warning,
            IssueType::CodeInvalid,
            "Patient.language".to_string()
        )]
    );
    assert_eq!(
        check(json!({"resourceType": "Patient", "language": "de"})),
        []
    );
}
