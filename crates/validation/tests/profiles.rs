//! Validation against constraint profiles: one hand-written profile per feature, each with an
//! instance that conforms and one that does not (exact expression and issue code); profiles
//! that must not compile; and the R4 examples that claim the vital signs profile.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use fhir::{IssueType, Severity};
use serde_json::{Value, json};
use validation::{
    InvariantEvaluator, Issue, Profile, validate, validate_against, validate_against_with,
};

const URL: &str = "http://example.org/fhir/StructureDefinition/test";

/// A differential-only constraint profile on `type_name` with `elements`.
fn differential(type_name: &str, elements: Value) -> Value {
    json!({
        "resourceType": "StructureDefinition",
        "url": URL,
        "name": "Test",
        "status": "draft",
        "kind": "resource",
        "abstract": false,
        "type": type_name,
        "baseDefinition": format!("http://hl7.org/fhir/StructureDefinition/{type_name}"),
        "derivation": "constraint",
        "differential": {"element": elements},
    })
}

fn compile(type_name: &str, elements: Value) -> Profile {
    Profile::compile(&differential(type_name, elements)).unwrap()
}

fn summarize(issues: &[Issue]) -> Vec<(Severity, IssueType, String)> {
    issues
        .iter()
        .map(|i| (i.severity, i.code, i.expression.clone()))
        .collect()
}

/// Every issue (base and profile) as `(severity, code, expression)`.
/// The profile's structural rules alone; invariants are tested with explicit evaluators.
fn check(profile: &Profile, resource: &Value) -> Vec<(Severity, IssueType, String)> {
    summarize(&validate_against_with(resource, &[profile], None))
}

fn error(code: IssueType, expression: &str) -> (Severity, IssueType, String) {
    (Severity::Error, code, expression.to_string())
}

/// The diagnostics of the profile's issues.
fn diagnostics(profile: &Profile, resource: &Value) -> Vec<String> {
    validate_against(resource, &[profile])
        .into_iter()
        .filter(|i| i.diagnostics.contains(profile.url()))
        .map(|i| i.diagnostics)
        .collect()
}

#[test]
fn compile_reports_url_and_base_type_and_is_shareable() {
    fn shareable<T: Send + Sync + 'static>(_: &T) {}
    let profile = compile(
        "Patient",
        json!([{"id": "Patient.name", "path": "Patient.name", "min": 1}]),
    );
    assert_eq!(profile.url(), URL);
    assert_eq!(profile.base_type(), "Patient");
    shareable(&profile);
}

#[test]
fn cardinality_tightened() {
    let profile = compile(
        "Patient",
        json!([
            {"id": "Patient", "path": "Patient"},
            {"id": "Patient.name", "path": "Patient.name", "min": 1},
            {"id": "Patient.name.given", "path": "Patient.name.given", "max": "1"},
            {"id": "Patient.telecom", "path": "Patient.telecom", "max": "1"},
            {"id": "Patient.photo", "path": "Patient.photo", "max": "0"},
        ]),
    );
    let good =
        json!({"resourceType": "Patient", "name": [{"given": ["A"]}], "telecom": [{"value": "1"}]});
    assert_eq!(check(&profile, &good), []);
    let bad = json!({
        "resourceType": "Patient",
        "telecom": [{"value": "1"}, {"value": "2"}],
        "photo": [{"url": "http://x"}],
    });
    assert_eq!(
        check(&profile, &bad),
        [
            error(IssueType::Structure, "Patient.name"),
            error(IssueType::Structure, "Patient.telecom"),
            error(IssueType::Structure, "Patient.photo"),
        ]
    );
    let nested = json!({"resourceType": "Patient", "name": [{"given": ["A", "B"]}]});
    assert_eq!(
        check(&profile, &nested),
        [error(IssueType::Structure, "Patient.name[0].given")]
    );
    let message = diagnostics(&profile, &bad).join("\n");
    assert!(
        message.contains(URL) && message.contains("Patient.name"),
        "{message}"
    );
}

#[test]
fn fixed_values_must_be_exactly_equal() {
    let profile = compile(
        "Patient",
        json!([
            {"id": "Patient.active", "path": "Patient.active", "fixedBoolean": true},
            {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus",
             "fixedCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]}},
        ]),
    );
    let coding = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]});
    let good = json!({"resourceType": "Patient", "active": true, "maritalStatus": coding});
    assert_eq!(check(&profile, &good), []);
    // Absent is fine (no min); a fixed complex value admits nothing extra.
    assert_eq!(check(&profile, &json!({"resourceType": "Patient"})), []);
    let bad = json!({
        "resourceType": "Patient",
        "active": false,
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}], "text": "married"},
    });
    assert_eq!(
        check(&profile, &bad),
        [
            error(IssueType::Value, "Patient.active"),
            error(IssueType::Value, "Patient.maritalStatus"),
        ]
    );
}

#[test]
fn patterns_must_be_contained() {
    let profile = compile(
        "Observation",
        json!([
            {"id": "Observation.code", "path": "Observation.code",
             "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}},
        ]),
    );
    let good = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "364075005"},
                            {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
                 "text": "HR"},
    });
    assert_eq!(check(&profile, &good), []);
    let bad = json!({
        "resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
    });
    assert_eq!(
        check(&profile, &bad),
        [error(IssueType::Value, "Observation.code")]
    );
}

#[test]
fn types_and_reference_targets_restricted() {
    let profile = compile(
        "Observation",
        json!([
            {"id": "Observation.subject", "path": "Observation.subject",
             "type": [{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"]}]},
            {"id": "Observation.value[x]", "path": "Observation.value[x]",
             "type": [{"code": "Quantity"}, {"code": "CodeableConcept"}]},
        ]),
    );
    let good = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Patient/1"}, "valueQuantity": {"value": 1},
    });
    assert_eq!(check(&profile, &good), []);
    let bad = json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "Group/1"}, "valueString": "high",
    });
    assert_eq!(
        check(&profile, &bad),
        [
            error(IssueType::Structure, "Observation.subject.reference"),
            error(IssueType::Structure, "Observation.value.ofType(string)"),
        ]
    );
}

#[test]
fn bindings_tightened_to_required() {
    let profile = compile(
        "Patient",
        json!([
            {"id": "Patient.maritalStatus", "path": "Patient.maritalStatus",
             "binding": {"strength": "required", "valueSet": "http://hl7.org/fhir/ValueSet/marital-status"}},
            // A value set we cannot expand: skipped.
            {"id": "Patient.language", "path": "Patient.language",
             "binding": {"strength": "required", "valueSet": "http://example.org/ValueSet/unknown"}},
        ]),
    );
    let good = json!({"resourceType": "Patient", "language": "en",
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]}});
    assert_eq!(check(&profile, &good), []);
    let bad = json!({"resourceType": "Patient",
        "maritalStatus": {"coding": [{"system": "http://example.org/cs", "code": "married"}]}});
    assert_eq!(
        check(&profile, &bad),
        [
            // The base binding is extensible: a warning; the profile's is required: an error.
            (
                Severity::Warning,
                IssueType::CodeInvalid,
                "Patient.maritalStatus".to_string()
            ),
            error(IssueType::CodeInvalid, "Patient.maritalStatus"),
        ]
    );
}

#[test]
fn max_length() {
    let profile = compile(
        "Patient",
        json!([{"id": "Patient.name.family", "path": "Patient.name.family", "maxLength": 5}]),
    );
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "name": [{"family": "Smith"}]})
        ),
        []
    );
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "name": [{"family": "Smithers"}]})
        ),
        [error(IssueType::Value, "Patient.name[0].family")]
    );
}

/// Holds when the context object has the property named after `has:`.
struct HasProperty;

impl InvariantEvaluator for HasProperty {
    fn check(&self, expression: &str, context: &Value, _resource: &Value) -> Result<bool, String> {
        match expression.strip_prefix("has:") {
            Some(name) => Ok(context.get(name).is_some()),
            None => Ok(true),
        }
    }
}

#[test]
fn constraints_are_kept_and_evaluated_with_an_evaluator() {
    let profile = compile(
        "Patient",
        json!([
            {"id": "Patient", "path": "Patient", "constraint": [
                {"key": "test-1", "severity": "error", "human": "A birth date", "expression": "has:birthDate"},
                // Base invariants repeated in a profile are not kept twice.
                {"key": "dom-2", "severity": "error", "human": "x", "expression": "contained.contained.empty()"},
            ]},
            {"id": "Patient.name", "path": "Patient.name", "constraint": [
                {"key": "test-2", "severity": "warning", "human": "A family name", "expression": "has:family"},
                {"key": "ele-1", "severity": "error", "human": "x", "expression": "hasValue()"},
            ]},
        ]),
    );
    let keys: Vec<(&str, &str)> = profile
        .invariants()
        .iter()
        .map(|i| (i.element.as_str(), i.key.as_str()))
        .collect();
    assert_eq!(keys, [("Patient", "test-1"), ("Patient.name", "test-2")]);
    let patient = json!({"resourceType": "Patient", "name": [{"given": ["A"]}]});
    // Without an evaluator, invariants are not checked.
    assert_eq!(check(&profile, &patient), []);
    let issues = validate_against_with(&patient, &[&profile], Some(&HasProperty));
    assert_eq!(
        summarize(&issues),
        [
            error(IssueType::Invariant, "Patient"),
            (
                Severity::Warning,
                IssueType::Invariant,
                "Patient.name[0]".to_string()
            ),
        ]
    );
    assert!(issues[0].diagnostics.contains("test-1") && issues[0].diagnostics.contains(URL));
    let good = json!({"resourceType": "Patient", "birthDate": "2000", "name": [{"family": "X"}]});
    assert_eq!(
        summarize(&validate_against_with(
            &good,
            &[&profile],
            Some(&HasProperty)
        )),
        []
    );
}

fn race_profile(rules: &str) -> Profile {
    compile(
        "Patient",
        json!([
            {"id": "Patient.extension", "path": "Patient.extension",
             "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": rules}},
            {"id": "Patient.extension:race", "path": "Patient.extension", "sliceName": "race",
             "min": 1, "max": "1",
             "type": [{"code": "Extension", "profile": ["http://example.org/StructureDefinition/race"]}]},
            {"id": "Patient.extension:race.value[x]", "path": "Patient.extension.value[x]",
             "type": [{"code": "Coding"}]},
            {"id": "Patient.extension:nickname", "path": "Patient.extension", "sliceName": "nickname",
             "max": "1"},
            {"id": "Patient.extension:nickname.url", "path": "Patient.extension.url",
             "fixedUri": "http://example.org/StructureDefinition/nickname"},
            {"id": "Patient.extension:nickname.value[x]", "path": "Patient.extension.value[x]",
             "type": [{"code": "string"}], "maxLength": 10},
        ]),
    )
}

#[test]
fn extensions_sliced_by_url() {
    let profile = race_profile("open");
    let race = json!({"url": "http://example.org/StructureDefinition/race",
                      "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}});
    let nickname =
        json!({"url": "http://example.org/StructureDefinition/nickname", "valueString": "Bob"});
    let other = json!({"url": "http://example.org/other", "valueBoolean": true});
    let good = json!({"resourceType": "Patient", "extension": [other, race, nickname]});
    assert_eq!(check(&profile, &good), []);

    let missing = json!({"resourceType": "Patient", "extension": [nickname]});
    assert_eq!(
        check(&profile, &missing),
        [error(IssueType::Structure, "Patient.extension")]
    );
    let message = diagnostics(&profile, &missing).join("\n");
    assert!(
        message.contains("'race'") && message.contains(URL),
        "{message}"
    );

    let twice = json!({"resourceType": "Patient", "extension": [race, race]});
    assert_eq!(
        check(&profile, &twice),
        [error(IssueType::Structure, "Patient.extension")]
    );

    // Per-slice child constraints: the value's type and length.
    let wrong = json!({"resourceType": "Patient", "extension": [
        {"url": "http://example.org/StructureDefinition/race", "valueString": "white"},
        {"url": "http://example.org/StructureDefinition/nickname", "valueString": "Bobby Tables"},
    ]});
    assert_eq!(
        check(&profile, &wrong),
        [
            error(
                IssueType::Structure,
                "Patient.extension[0].value.ofType(string)"
            ),
            error(
                IssueType::Value,
                "Patient.extension[1].value.ofType(string)"
            ),
        ]
    );

    // Closed: an extension in no slice is an error.
    let closed = race_profile("closed");
    let extra = json!({"resourceType": "Patient", "extension": [race, other]});
    assert_eq!(
        check(&closed, &extra),
        [error(IssueType::Structure, "Patient.extension[1]")]
    );
}

/// Extensions on primitives (`_birthDate`) are sliced the same way.
#[test]
fn extensions_on_primitives_sliced_by_url() {
    let profile = compile(
        "Patient",
        json!([
            {"id": "Patient.birthDate.extension", "path": "Patient.birthDate.extension",
             "slicing": {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}},
            {"id": "Patient.birthDate.extension:time", "path": "Patient.birthDate.extension", "sliceName": "time",
             "min": 1,
             "type": [{"code": "Extension", "profile": ["http://hl7.org/fhir/StructureDefinition/patient-birthTime"]}]},
        ]),
    );
    let good = json!({"resourceType": "Patient", "birthDate": "2000-01-01", "_birthDate": {"extension": [
        {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "2000-01-01T10:00:00Z"}]}});
    assert_eq!(check(&profile, &good), []);
    let bad = json!({"resourceType": "Patient", "birthDate": "2000-01-01", "_birthDate": {"extension": [
        {"url": "http://example.org/x", "valueString": "y"}]}});
    assert_eq!(
        check(&profile, &bad),
        [error(IssueType::Structure, "Patient.birthDate.extension")]
    );
}

fn identifier_profile(rules: &str, ordered: bool) -> Profile {
    compile(
        "Patient",
        json!([
            {"id": "Patient.identifier", "path": "Patient.identifier",
             "slicing": {"discriminator": [{"type": "value", "path": "system"}], "rules": rules, "ordered": ordered}},
            {"id": "Patient.identifier:mrn", "path": "Patient.identifier", "sliceName": "mrn", "min": 1, "max": "1"},
            {"id": "Patient.identifier:mrn.system", "path": "Patient.identifier.system", "fixedUri": "http://hospital.example/mrn"},
            {"id": "Patient.identifier:mrn.value", "path": "Patient.identifier.value", "min": 1},
            {"id": "Patient.identifier:ssn", "path": "Patient.identifier", "sliceName": "ssn", "max": "1"},
            {"id": "Patient.identifier:ssn.system", "path": "Patient.identifier.system", "fixedUri": "http://hl7.org/fhir/sid/us-ssn"},
        ]),
    )
}

#[test]
fn value_discriminator_on_a_child_with_closed_rules() {
    let profile = identifier_profile("closed", false);
    let mrn = json!({"system": "http://hospital.example/mrn", "value": "12"});
    let ssn = json!({"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"});
    let good = json!({"resourceType": "Patient", "identifier": [ssn, mrn]});
    assert_eq!(check(&profile, &good), []);
    let bad = json!({"resourceType": "Patient", "identifier": [
        {"system": "http://hospital.example/mrn"},
        {"system": "http://other.example", "value": "1"},
    ]});
    assert_eq!(
        check(&profile, &bad),
        [
            error(IssueType::Structure, "Patient.identifier[1]"),
            error(IssueType::Structure, "Patient.identifier[0].value"),
        ]
    );
    let message = diagnostics(&profile, &bad).join("\n");
    assert!(
        message.contains("Patient.identifier:mrn.value"),
        "{message}"
    );
}

#[test]
fn ordered_and_open_at_end() {
    let mrn = json!({"system": "http://hospital.example/mrn", "value": "12"});
    let ssn = json!({"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"});
    let other = json!({"system": "http://other.example", "value": "1"});
    let ordered = identifier_profile("open", true);
    assert_eq!(
        check(
            &ordered,
            &json!({"resourceType": "Patient", "identifier": [mrn, other, ssn]})
        ),
        []
    );
    assert_eq!(
        check(
            &ordered,
            &json!({"resourceType": "Patient", "identifier": [ssn, mrn]})
        ),
        [error(IssueType::Structure, "Patient.identifier[1]")]
    );
    let at_end = identifier_profile("openAtEnd", false);
    assert_eq!(
        check(
            &at_end,
            &json!({"resourceType": "Patient", "identifier": [mrn, ssn, other]})
        ),
        []
    );
    assert_eq!(
        check(
            &at_end,
            &json!({"resourceType": "Patient", "identifier": [other, mrn]})
        ),
        [error(IssueType::Structure, "Patient.identifier[1]")]
    );
}

#[test]
fn pattern_discriminator_on_this() {
    let profile = compile(
        "Observation",
        json!([
            {"id": "Observation.category", "path": "Observation.category",
             "slicing": {"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "open"}},
            {"id": "Observation.category:VSCat", "path": "Observation.category", "sliceName": "VSCat",
             "min": 1, "max": "1",
             "patternCodeableConcept": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}},
        ]),
    );
    let vs = json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]});
    let good = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "category": [{"text": "other"}, vs]});
    assert_eq!(check(&profile, &good), []);
    let bad = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                     "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]});
    assert_eq!(
        check(&profile, &bad),
        [error(IssueType::Structure, "Observation.category")]
    );
}

#[test]
fn type_discriminator_on_a_choice() {
    let profile = compile(
        "Observation",
        json!([
            {"id": "Observation.value[x]", "path": "Observation.value[x]",
             "slicing": {"discriminator": [{"type": "type", "path": "$this"}], "rules": "closed"}},
            {"id": "Observation.value[x]:valueQuantity", "path": "Observation.value[x]", "sliceName": "valueQuantity",
             "type": [{"code": "Quantity"}]},
            {"id": "Observation.value[x]:valueQuantity.unit", "path": "Observation.value[x].unit", "min": 1},
            {"id": "Observation.value[x]:valueCodeableConcept", "path": "Observation.value[x]", "sliceName": "valueCodeableConcept",
             "type": [{"code": "CodeableConcept"}]},
        ]),
    );
    let base = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    let with = |key: &str, value: Value| {
        let mut o = base.clone();
        o[key] = value;
        o
    };
    assert_eq!(
        check(
            &profile,
            &with("valueQuantity", json!({"value": 1, "unit": "kg"}))
        ),
        []
    );
    assert_eq!(
        check(
            &profile,
            &with("valueCodeableConcept", json!({"text": "x"}))
        ),
        []
    );
    assert_eq!(
        check(&profile, &with("valueQuantity", json!({"value": 1}))),
        [error(
            IssueType::Structure,
            "Observation.value.ofType(Quantity).unit"
        )]
    );
    assert_eq!(
        check(&profile, &with("valueString", json!("x"))),
        [error(
            IssueType::Structure,
            "Observation.value.ofType(string)"
        )]
    );
}

/// R4's shorthand `Observation.valueQuantity` for the Quantity type of `value[x]`.
#[test]
fn choice_type_shorthand_paths() {
    let profile = compile(
        "Observation",
        json!([
            {"id": "Observation.valueQuantity", "path": "Observation.valueQuantity"},
            {"id": "Observation.valueQuantity.system", "path": "Observation.valueQuantity.system",
             "fixedUri": "http://unitsofmeasure.org"},
        ]),
    );
    let base = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    let mut good = base.clone();
    good["valueQuantity"] =
        json!({"value": 1, "system": "http://unitsofmeasure.org", "code": "kg"});
    assert_eq!(check(&profile, &good), []);
    let mut other_type = base.clone();
    other_type["valueString"] = json!("x");
    assert_eq!(check(&profile, &other_type), []);
    let mut bad = base;
    bad["valueQuantity"] = json!({"value": 1, "system": "http://example.org/units", "code": "kg"});
    assert_eq!(
        check(&profile, &bad),
        [error(
            IssueType::Value,
            "Observation.value.ofType(Quantity).system"
        )]
    );
}

#[test]
fn exists_discriminator() {
    let profile = compile(
        "Patient",
        json!([
            {"id": "Patient.telecom", "path": "Patient.telecom",
             "slicing": {"discriminator": [{"type": "exists", "path": "period"}], "rules": "closed"}},
            {"id": "Patient.telecom:current", "path": "Patient.telecom", "sliceName": "current", "max": "1"},
            {"id": "Patient.telecom:current.period", "path": "Patient.telecom.period", "max": "0"},
            {"id": "Patient.telecom:dated", "path": "Patient.telecom", "sliceName": "dated"},
            {"id": "Patient.telecom:dated.period", "path": "Patient.telecom.period", "min": 1},
        ]),
    );
    let current = json!({"system": "phone", "value": "1"});
    let dated = json!({"system": "phone", "value": "2", "period": {"end": "2020"}});
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "telecom": [current, dated, dated]})
        ),
        []
    );
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "telecom": [current, current]})
        ),
        [error(IssueType::Structure, "Patient.telecom")]
    );
}

/// A discriminator through an extension: `extension('url').value.ofType(code)`.
#[test]
fn discriminator_path_through_an_extension() {
    let profile = compile(
        "Patient",
        json!([
            {"id": "Patient.address", "path": "Patient.address",
             "slicing": {"discriminator": [{"type": "value", "path": "extension('http://example.org/kind').value.ofType(code)"}],
                         "rules": "closed"}},
            {"id": "Patient.address:home", "path": "Patient.address", "sliceName": "home", "max": "1"},
            {"id": "Patient.address:home.extension:kind", "path": "Patient.address.extension", "sliceName": "kind",
             "type": [{"code": "Extension", "profile": ["http://example.org/kind"]}]},
            {"id": "Patient.address:home.extension:kind.value[x]", "path": "Patient.address.extension.value[x]",
             "fixedCode": "home"},
            {"id": "Patient.address:home.postalCode", "path": "Patient.address.postalCode", "min": 1},
        ]),
    );
    let home = |postal: bool| {
        let mut a = json!({"extension": [{"url": "http://example.org/kind", "valueCode": "home"}], "city": "X"});
        if postal {
            a["postalCode"] = json!("1234");
        }
        a
    };
    let other = json!({"extension": [{"url": "http://example.org/kind", "valueCode": "work"}], "city": "Y"});
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "address": [home(true)]})
        ),
        []
    );
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "address": [home(false), other]})
        ),
        [
            error(IssueType::Structure, "Patient.address[1]"),
            error(IssueType::Structure, "Patient.address[0].postalCode"),
        ]
    );
}

/// A discriminator path into a pattern set on the slice itself (`system` of `patternIdentifier`).
#[test]
fn discriminator_value_inside_a_slice_pattern() {
    let profile = compile(
        "Patient",
        json!([
            {"id": "Patient.identifier", "path": "Patient.identifier",
             "slicing": {"discriminator": [{"type": "pattern", "path": "system"}], "rules": "closed"}},
            {"id": "Patient.identifier:mrn", "path": "Patient.identifier", "sliceName": "mrn", "min": 1,
             "patternIdentifier": {"system": "http://hospital.example/mrn", "type": {"text": "MRN"}}},
        ]),
    );
    let mrn =
        json!({"system": "http://hospital.example/mrn", "type": {"text": "MRN"}, "value": "1"});
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "identifier": [mrn]})
        ),
        []
    );
    // In the slice by its system, but not matching the rest of the slice's pattern.
    let untyped = json!({"system": "http://hospital.example/mrn", "value": "1"});
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "identifier": [untyped]})
        ),
        [error(IssueType::Value, "Patient.identifier[0]")]
    );
}

/// Slices inside a repeating backbone element, discriminated by a pattern on a nested child.
#[test]
fn component_slices_by_code() {
    let profile = compile(
        "Observation",
        json!([
            {"id": "Observation.component", "path": "Observation.component",
             "slicing": {"discriminator": [{"type": "pattern", "path": "code"}], "rules": "open"}},
            {"id": "Observation.component:systolic", "path": "Observation.component", "sliceName": "systolic",
             "min": 1, "max": "1"},
            {"id": "Observation.component:systolic.code", "path": "Observation.component.code",
             "patternCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}},
            {"id": "Observation.component:systolic.valueQuantity", "path": "Observation.component.valueQuantity",
             "min": 1},
            {"id": "Observation.component:systolic.valueQuantity.code", "path": "Observation.component.valueQuantity.code",
             "fixedCode": "mm[Hg]"},
        ]),
    );
    let systolic = |code: &str| {
        json!({"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                                      "valueQuantity": {"value": 120, "system": "http://unitsofmeasure.org", "code": code}})
    };
    let base = json!({"resourceType": "Observation", "status": "final", "code": {"text": "BP"}});
    let mut good = base.clone();
    good["component"] =
        json!([{"code": {"text": "other"}, "valueString": "x"}, systolic("mm[Hg]")]);
    assert_eq!(check(&profile, &good), []);
    let mut bad = base.clone();
    bad["component"] = json!([systolic("kPa")]);
    assert_eq!(
        check(&profile, &bad),
        [error(
            IssueType::Value,
            "Observation.component[0].value.ofType(Quantity).code"
        )]
    );
    let mut missing = base;
    missing["component"] =
        json!([{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}}]);
    assert_eq!(
        check(&profile, &missing),
        [error(
            IssueType::Structure,
            "Observation.component[0].value"
        )]
    );
}

/// A snapshot is used as it is; constraints the core definitions already have are not re-checked.
#[test]
fn snapshot_profiles() {
    let sd = json!({
        "resourceType": "StructureDefinition",
        "url": URL,
        "type": "Patient",
        "kind": "resource",
        "baseDefinition": "http://example.org/fhir/StructureDefinition/some-other-profile",
        "derivation": "constraint",
        "snapshot": {"element": [
            {"id": "Patient", "path": "Patient", "min": 0, "max": "*",
             "constraint": [{"key": "dom-2", "severity": "error", "human": "x", "expression": "contained.contained.empty()"}]},
            {"id": "Patient.id", "path": "Patient.id", "min": 0, "max": "1", "type": [{"code": "http://hl7.org/fhirpath/System.String"}]},
            {"id": "Patient.name", "path": "Patient.name", "min": 1, "max": "*", "type": [{"code": "HumanName"}]},
            {"id": "Patient.gender", "path": "Patient.gender", "min": 0, "max": "1", "type": [{"code": "code"}],
             "binding": {"strength": "required", "valueSet": "http://hl7.org/fhir/ValueSet/administrative-gender|4.0.1"}},
            {"id": "Patient.link", "path": "Patient.link", "min": 0, "max": "*"},
            {"id": "Patient.link.other", "path": "Patient.link.other", "min": 1, "max": "1",
             "type": [{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient",
                                                               "http://hl7.org/fhir/StructureDefinition/RelatedPerson"]}]},
        ]},
    });
    let profile = Profile::compile(&sd).unwrap();
    assert!(profile.invariants().is_empty());
    assert_eq!(
        check(
            &profile,
            &json!({"resourceType": "Patient", "name": [{"text": "A"}], "gender": "male",
                                "link": [{"other": {"reference": "RelatedPerson/1"}, "type": "seealso"}]})
        ),
        []
    );
    assert_eq!(
        check(&profile, &json!({"resourceType": "Patient"})),
        [error(IssueType::Structure, "Patient.name")]
    );
    // The same profile as a differential over a non-core base cannot be applied faithfully.
    let mut differential_only = sd.clone();
    differential_only["differential"] = differential_only["snapshot"].take();
    differential_only
        .as_object_mut()
        .unwrap()
        .remove("snapshot");
    let error = Profile::compile(&differential_only).unwrap_err();
    assert!(error.contains("snapshot"), "{error}");
}

#[test]
fn profile_on_another_type() {
    let profile = compile(
        "Patient",
        json!([{"id": "Patient.name", "path": "Patient.name", "min": 1}]),
    );
    let observation =
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    assert_eq!(
        check(&profile, &observation),
        [error(IssueType::Structure, "Observation")]
    );
    let quantity = Profile::compile(&json!({
        "resourceType": "StructureDefinition", "url": URL, "type": "Quantity", "kind": "complex-type",
        "derivation": "constraint",
        "differential": {"element": [{"id": "Quantity.value", "path": "Quantity.value", "min": 1}]},
    }))
    .unwrap();
    assert_eq!(quantity.base_type(), "Quantity");
    assert_eq!(
        check(&quantity, &observation),
        [error(IssueType::NotSupported, "Observation")]
    );
    // Base issues come first, then each profile's.
    let bad = json!({"resourceType": "Patient", "foo": 1});
    assert_eq!(
        summarize(&validate_against(&bad, &[&profile, &profile])),
        [
            error(IssueType::Structure, "Patient.foo"),
            error(IssueType::Structure, "Patient.name"),
            error(IssueType::Structure, "Patient.name"),
        ]
    );
    assert_eq!(validate_against(&bad, &[]), validate(&bad));
}

#[test]
fn unsupported_or_malformed_definitions_are_errors() {
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "JSON object"),
        (json!({"resourceType": "Patient"}), "resourceType"),
        (
            json!({"resourceType": "StructureDefinition", "type": "Patient", "derivation": "constraint"}),
            "url",
        ),
        (
            json!({"resourceType": "StructureDefinition", "url": URL, "type": "Patient", "derivation": "specialization",
                "differential": {"element": []}}),
            "specialization",
        ),
        (
            json!({"resourceType": "StructureDefinition", "url": URL, "type": "Nope", "derivation": "constraint",
                "differential": {"element": []}}),
            "Nope",
        ),
        (
            json!({"resourceType": "StructureDefinition", "url": URL, "type": "Patient", "derivation": "constraint"}),
            "differential",
        ),
        (
            differential(
                "Patient",
                json!([{"id": "Patient.nope", "path": "Patient.nope"}]),
            ),
            "Patient.nope",
        ),
        (
            differential(
                "Patient",
                json!([{"id": "Observation.status", "path": "Observation.status"}]),
            ),
            "Observation.status",
        ),
        (
            differential("Patient", json!([{"id": "Patient.name", "min": -1}])),
            "min",
        ),
        (
            differential("Patient", json!([{"id": "Patient.name", "max": "many"}])),
            "max",
        ),
        (
            differential("Patient", json!([{"id": "Patient.name", "maxLength": "x"}])),
            "maxLength",
        ),
        (
            differential(
                "Patient",
                json!([{"id": "Patient.name", "type": "HumanName"}]),
            ),
            "type",
        ),
        (
            differential("Patient", json!([{"id": "Patient.name", "type": [{}]}])),
            "code",
        ),
        (
            differential(
                "Patient",
                json!([{"id": "Patient.identifier",
            "slicing": {"discriminator": [{"type": "profile", "path": "$this"}]}}]),
            ),
            "profile",
        ),
        (
            differential(
                "Patient",
                json!([{"id": "Patient.generalPractitioner",
            "slicing": {"discriminator": [{"type": "type", "path": "resolve()"}]}}]),
            ),
            "resolve()",
        ),
        (
            differential(
                "Patient",
                json!([{"id": "Patient.identifier", "slicing": {"rules": "open"}}]),
            ),
            "discriminator",
        ),
        (
            differential(
                "Patient",
                json!([
            {"id": "Patient.identifier", "slicing": {"discriminator": [{"type": "value", "path": "system"}]}},
            {"id": "Patient.identifier:a", "min": 1}]),
            ),
            "'a'",
        ),
        (
            differential("Patient", json!([{"id": "Patient.identifier:a", "min": 1}])),
            "no slicing",
        ),
        (
            differential(
                "Patient",
                json!([{"id": "Patient.identifier:a/b", "min": 1}]),
            ),
            "re-slicing",
        ),
        (differential("Patient", json!([7])), "element 0"),
        (
            differential("Patient", json!([{"min": 1}])),
            "neither id nor path",
        ),
    ];
    for (sd, expected) in cases {
        match Profile::compile(&sd) {
            Ok(_) => panic!("compiled: {sd}"),
            Err(e) => assert!(e.contains(expected), "{e} should mention {expected}"),
        }
    }
}

/// Every value of a valid profile replaced by junk of each JSON kind: compiling and validating
/// never panics.
#[test]
fn mangled_definitions_never_panic() {
    let sd = differential(
        "Observation",
        json!([
            {"id": "Observation.category", "path": "Observation.category",
             "slicing": {"discriminator": [{"type": "pattern", "path": "$this"}], "rules": "closed", "ordered": true}},
            {"id": "Observation.category:a", "path": "Observation.category", "sliceName": "a", "min": 1, "max": "1",
             "patternCodeableConcept": {"coding": [{"code": "a"}]}},
            {"id": "Observation.value[x]", "path": "Observation.value[x]",
             "type": [{"code": "Quantity"}, {"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"]}],
             "binding": {"strength": "required", "valueSet": "http://hl7.org/fhir/ValueSet/administrative-gender"},
             "maxLength": 3, "constraint": [{"key": "x-1", "severity": "error", "human": "h", "expression": "true"}]},
            {"id": "Observation.extension:e", "path": "Observation.extension", "sliceName": "e",
             "type": [{"code": "Extension", "profile": ["http://x"]}]},
        ]),
    );
    let instance = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "category": [{"coding": [{"code": "a"}]}, {"text": "b"}],
        "valueQuantity": {"value": 1}, "extension": [{"url": "http://x", "valueString": "s"}]});
    let junk = [
        json!(null),
        json!(1),
        json!(-1),
        json!("*"),
        json!("$this"),
        json!([]),
        json!({}),
        json!([{}]),
        json!(true),
    ];
    let mut n = 0;
    let mut paths = Vec::new();
    collect_paths(&sd, &mut Vec::new(), &mut paths);
    for path in &paths {
        for j in &junk {
            let mut mangled = sd.clone();
            *pointer_mut(&mut mangled, path) = j.clone();
            if let Ok(profile) = Profile::compile(&mangled) {
                let _ = validate_against_with(&instance, &[&profile], Some(&HasProperty));
                n += 1;
            }
        }
    }
    assert!(n > 0);
}

fn collect_paths(v: &Value, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    match v {
        Value::Object(o) => {
            for (k, c) in o {
                at.push(k.clone());
                out.push(at.clone());
                collect_paths(c, at, out);
                at.pop();
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                at.push(i.to_string());
                out.push(at.clone());
                collect_paths(c, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn pointer_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
    let pointer: String = path
        .iter()
        .map(|p| format!("/{}", p.replace('~', "~0").replace('/', "~1")))
        .collect();
    v.pointer_mut(&pointer).unwrap()
}

fn testdata() -> Option<PathBuf> {
    let dir = std::env::var_os("CUSTODIAN_TESTDATA").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/testdata"
            ))
        },
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test data not found at {}", dir.display());
    }
    println!("SKIPPED: test data not found at {}", dir.display());
    None
}

/// The R4 vital signs profile, written out from the specification (hl7.org/fhir/R4/vitalsigns)
/// as a differential; its value set bindings (extensible, not expandable here) are left out.
fn vital_signs() -> Value {
    json!({
        "resourceType": "StructureDefinition",
        "url": "http://hl7.org/fhir/StructureDefinition/vitalsigns",
        "name": "observation-vitalsigns",
        "status": "draft",
        "kind": "resource",
        "abstract": false,
        "type": "Observation",
        "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Observation",
        "derivation": "constraint",
        "differential": {"element": [
            {"id": "Observation", "path": "Observation", "constraint": [
                {"key": "vs-2", "severity": "error",
                 "human": "If there is no component or hasMember element then either a value[x] or a data absent reason must be present.",
                 "expression": "(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())"}]},
            {"id": "Observation.status", "path": "Observation.status", "mustSupport": true},
            {"id": "Observation.category", "path": "Observation.category", "min": 1,
             "slicing": {"discriminator": [{"type": "value", "path": "coding.code"}, {"type": "value", "path": "coding.system"}],
                         "ordered": false, "rules": "open"}},
            {"id": "Observation.category:VSCat", "path": "Observation.category", "sliceName": "VSCat", "min": 1, "max": "1"},
            {"id": "Observation.category:VSCat.coding", "path": "Observation.category.coding", "min": 1},
            {"id": "Observation.category:VSCat.coding.system", "path": "Observation.category.coding.system", "min": 1,
             "fixedUri": "http://terminology.hl7.org/CodeSystem/observation-category"},
            {"id": "Observation.category:VSCat.coding.code", "path": "Observation.category.coding.code", "min": 1,
             "fixedCode": "vital-signs"},
            {"id": "Observation.subject", "path": "Observation.subject", "min": 1,
             "type": [{"code": "Reference", "targetProfile": ["http://hl7.org/fhir/StructureDefinition/Patient"]}]},
            {"id": "Observation.effective[x]", "path": "Observation.effective[x]", "min": 1,
             "type": [{"code": "dateTime"}, {"code": "Period"}],
             "constraint": [{"key": "vs-1", "severity": "error",
                             "human": "if Observation.effective[x] is dateTime and has a value then that value shall be precise to the day",
                             "expression": "($this as dateTime).toString().length() >= 8"}]},
            {"id": "Observation.value[x]", "path": "Observation.value[x]",
             "slicing": {"discriminator": [{"type": "type", "path": "$this"}], "ordered": false, "rules": "closed"}},
            {"id": "Observation.value[x]:valueQuantity", "path": "Observation.value[x]", "sliceName": "valueQuantity",
             "type": [{"code": "Quantity"}]},
            {"id": "Observation.value[x]:valueQuantity.value", "path": "Observation.value[x].value", "min": 1},
            {"id": "Observation.value[x]:valueQuantity.unit", "path": "Observation.value[x].unit", "min": 1},
            {"id": "Observation.value[x]:valueQuantity.system", "path": "Observation.value[x].system", "min": 1,
             "fixedUri": "http://unitsofmeasure.org"},
            {"id": "Observation.value[x]:valueQuantity.code", "path": "Observation.value[x].code", "min": 1},
            {"id": "Observation.dataAbsentReason", "path": "Observation.dataAbsentReason", "mustSupport": true},
            {"id": "Observation.hasMember", "path": "Observation.hasMember",
             "type": [{"code": "Reference", "targetProfile": [
                 "http://hl7.org/fhir/StructureDefinition/QuestionnaireResponse",
                 "http://hl7.org/fhir/StructureDefinition/MolecularSequence",
                 "http://hl7.org/fhir/StructureDefinition/vitalsigns"]}]},
            {"id": "Observation.component", "path": "Observation.component", "constraint": [
                {"key": "vs-3", "severity": "error",
                 "human": "If there is no a value a data absent reason must be present",
                 "expression": "value.exists() or dataAbsentReason.exists()"}]},
            {"id": "Observation.component.value[x]", "path": "Observation.component.value[x]",
             "type": [{"code": "Quantity"}, {"code": "CodeableConcept"}, {"code": "string"}, {"code": "boolean"},
                      {"code": "integer"}, {"code": "Range"}, {"code": "Ratio"}, {"code": "SampledData"},
                      {"code": "time"}, {"code": "dateTime"}, {"code": "Period"}]},
        ]},
    })
}

/// The R4 examples package holds no constraint StructureDefinitions (the core profiles are in
/// hl7.fhir.r4.core, not the examples): every one found would be compiled here. The examples
/// that claim the vital signs profile are validated against its hand-written differential.
#[test]
fn r4_examples_against_profiles() {
    let Some(data) = testdata() else { return };
    let dir = data.join("fhir-r4-examples/package");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut resources = Vec::new();
    let (mut n_definitions, mut n_compiled) = (0, 0);
    let mut not_compiled = Vec::new();
    for path in &files {
        let resource: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        if resource["resourceType"] == "StructureDefinition"
            && resource["derivation"] == "constraint"
        {
            n_definitions += 1;
            match Profile::compile(&resource) {
                Ok(_) => n_compiled += 1,
                Err(e) => not_compiled.push(e),
            }
        }
        resources.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            resource,
        ));
    }
    println!(
        "r4 examples: {n_definitions} constraint StructureDefinitions, {n_compiled} compile; not compiled: {not_compiled:?}"
    );
    let vital_signs = Profile::compile(&vital_signs()).unwrap();
    let mut n_claiming = 0;
    for (name, resource) in &resources {
        let claims = resource["meta"]["profile"]
            .as_array()
            .is_some_and(|p| p.iter().any(|u| u == vital_signs.url()));
        if !claims {
            continue;
        }
        n_claiming += 1;
        let errors: Vec<String> = validate_against(resource, &[&vital_signs])
            .into_iter()
            .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
            .map(|i| format!("{} [{}] {}", i.expression, i.code.code(), i.diagnostics))
            .collect();
        assert!(errors.is_empty(), "{name}:\n{}", errors.join("\n"));
    }
    println!("r4 examples: {n_claiming} claim the vital signs profile and conform to it");
    assert_eq!(n_claiming, 12);
    // And an Observation that is no vital sign does not conform.
    let (_, lab) = resources
        .iter()
        .find(|(name, _)| name == "Observation-f001.json")
        .unwrap();
    let errors = summarize(&validate_against(lab, &[&vital_signs]));
    assert!(
        errors.contains(&error(IssueType::Structure, "Observation.category")),
        "{errors:?}"
    );
}

/// A snapshot of `type_name` that restates its core definition, as a profile generator writes it.
fn identity_snapshot(type_name: &str) -> Value {
    let def = fhir::definitions().type_def(type_name).unwrap();
    let mut elements = vec![json!({
        "id": type_name, "path": type_name, "min": 0, "max": "*",
        "constraint": def.constraints.iter().map(|c| json!({
            "key": c.key, "severity": c.severity, "human": c.human, "expression": c.expression,
        })).collect::<Vec<_>>(),
    })];
    for el in &def.elements {
        let path = format!("{type_name}.{}", el.path);
        let mut e = json!({"id": path, "path": path, "min": el.min, "max": el.max});
        let types: Vec<Value> = el
            .types
            .iter()
            .map(|code| {
                let mut t = json!({"code": code});
                if code == "Reference" && !el.targets.is_empty() {
                    t["targetProfile"] = el
                        .targets
                        .iter()
                        .map(|t| format!("http://hl7.org/fhir/StructureDefinition/{t}"))
                        .collect();
                }
                t
            })
            .collect();
        if !types.is_empty() {
            e["type"] = Value::Array(types);
        }
        if let Some(r) = &el.content_reference {
            e["contentReference"] = json!(r);
        }
        if let Some(b) = &el.binding {
            e["binding"] = json!({"strength": b.strength, "valueSet": b.value_set});
        }
        if let Some(n) = el.max_length {
            e["maxLength"] = json!(n);
        }
        if !el.constraints.is_empty() {
            e["constraint"] = el.constraints.iter().map(|c| json!({
                "key": c.key, "severity": c.severity, "human": c.human, "expression": c.expression,
            })).collect();
        }
        if el.path == "extension" || el.path.ends_with(".extension") {
            e["slicing"] =
                json!({"discriminator": [{"type": "value", "path": "url"}], "rules": "open"});
        }
        elements.push(e);
    }
    json!({
        "resourceType": "StructureDefinition",
        "url": format!("http://example.org/fhir/StructureDefinition/identity-{type_name}"),
        "type": type_name,
        "kind": "resource",
        "baseDefinition": format!("http://hl7.org/fhir/StructureDefinition/{type_name}"),
        "derivation": "constraint",
        "snapshot": {"element": elements},
    })
}

/// A snapshot of every resource type that only restates the core compiles, keeps no invariant
/// of its own, and adds no issue to any R4 example.
#[test]
fn snapshots_restating_the_core_add_nothing() {
    let mut profiles = std::collections::BTreeMap::new();
    for type_name in fhir::definitions().resource_types() {
        let profile = Profile::compile(&identity_snapshot(type_name))
            .unwrap_or_else(|e| panic!("{type_name}: {e}"));
        assert_eq!(profile.invariants(), [], "{type_name}");
        profiles.insert(type_name.clone(), profile);
    }
    let Some(data) = testdata() else { return };
    let dir = data.join("fhir-r4-examples/package");
    let mut n = 0;
    let (mut base_time, mut profile_time) = (std::time::Duration::ZERO, std::time::Duration::ZERO);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let resource: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(profile) = resource["resourceType"]
            .as_str()
            .and_then(|t| profiles.get(t))
        else {
            continue;
        };
        let start = std::time::Instant::now();
        let base = validate(&resource);
        base_time += start.elapsed();
        let start = std::time::Instant::now();
        let with_profile = validate_against(&resource, &[profile]);
        profile_time += start.elapsed();
        assert_eq!(with_profile, base, "{}", path.display());
        n += 1;
    }
    println!(
        "identity snapshots: {n} examples, base {base_time:?}, base + profile {profile_time:?}"
    );
    assert!(n > 600);
}

/// The constraint StructureDefinitions among the validator test cases (there as resources to
/// validate, `ai7`, `ai8`, `sd-device`) compile, and apply to the R4 examples of their type.
#[test]
fn validator_suite_profiles_compile_and_apply() {
    let Some(data) = testdata() else { return };
    let dir = data.join("fhir-validator-r4-subset/fhir-test-cases/validator");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut compiled = Vec::new();
    let mut not_compiled = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let Ok(resource) = serde_json::from_str::<Value>(text.trim_start_matches('\u{feff}'))
        else {
            continue;
        };
        if resource["resourceType"] != "StructureDefinition"
            || resource["derivation"] != "constraint"
        {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match Profile::compile(&resource) {
            Ok(profile) => compiled.push((name, profile)),
            Err(e) => not_compiled.push(format!("{name}: {e}")),
        }
    }
    println!(
        "validator suite: {} constraint StructureDefinitions compile, {} do not: {not_compiled:?}",
        compiled.len(),
        not_compiled.len()
    );
    let names: Vec<&str> = compiled.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["ai7.json", "ai8.json", "sd-device.json"]);
    let profile = |name: &str| &compiled.iter().find(|(n, _)| n == name).unwrap().1;

    let examples = data.join("fhir-r4-examples/package");
    let example = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(examples.join(name)).unwrap()).unwrap()
    };
    let profile_errors =
        |resource: &Value, profile: &Profile| -> Vec<(Severity, IssueType, String)> {
            summarize(
                &validate_against(resource, &[profile])
                    .into_iter()
                    .filter(|i| i.diagnostics.contains(profile.url()))
                    .collect::<Vec<_>>(),
            )
        };
    // ai7: no identifier, exactly one name, a birth date.
    let patient = example("Patient-example.json");
    assert_eq!(
        profile_errors(&patient, profile("ai7.json")),
        [
            error(IssueType::Structure, "Patient.identifier"),
            error(IssueType::Structure, "Patient.name"),
        ]
    );
    // ai8: a birth date and an identifier (its value set is not one we can expand: skipped).
    assert_eq!(profile_errors(&patient, profile("ai8.json")), []);
    assert_eq!(
        profile_errors(&example("Patient-newborn.json"), profile("ai8.json")),
        [error(IssueType::Structure, "Patient.identifier")]
    );
    assert_eq!(
        profile_errors(&example("Patient-pat1.json"), profile("ai8.json")),
        [error(IssueType::Structure, "Patient.birthDate")]
    );
    // sd-device: an identifier with the IMEI system, by value slicing on `system`.
    let device = example("Device-example.json");
    assert_eq!(
        profile_errors(&device, profile("sd-device.json")),
        [error(IssueType::Structure, "Device.identifier")]
    );
    let mut imei = device.clone();
    imei["identifier"]
        .as_array_mut()
        .unwrap()
        .push(json!({"system": "http://hl7.org/fhir/sid/imei", "value": "35-209900-176148-1"}));
    assert_eq!(profile_errors(&imei, profile("sd-device.json")), []);
}
