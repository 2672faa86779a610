//! Typed navigation on real JSON: choice elements, primitives with `_x` siblings,
//! contained and Bundle resources, and System conversions of FHIR primitives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use fhirpath::{Environment, Error, Expression, Item, Resolver, Variable};
use serde_json::{Value, json};

/// Each result item as `Type:value`.
fn eval_with(expression: &str, resource: &Value, env: &Environment<'_>) -> Vec<String> {
    let compiled = Expression::compile(expression).unwrap_or_else(|e| panic!("{expression}: {e}"));
    let items = compiled
        .evaluate(resource, env)
        .unwrap_or_else(|e| panic!("{expression}: {e}"));
    items
        .iter()
        .map(|item| format!("{}:{item}", item.type_name().1))
        .collect()
}

fn eval(expression: &str, resource: &Value) -> Vec<String> {
    eval_with(expression, resource, &Environment::new())
}

fn eval_err(expression: &str, resource: &Value) -> Error {
    let env = Environment::new();
    match Expression::compile(expression).and_then(|c| c.evaluate(resource, &env).map(|r| r.len()))
    {
        Ok(n) => panic!("{expression} should fail, got {n} items"),
        Err(e) => e,
    }
}

fn observation() -> Value {
    // From text, so `185.50` keeps its written precision.
    serde_json::from_str(
        r#"{
            "resourceType": "Observation",
            "id": "weight",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
            "effectiveDateTime": "2016-03-28T09:30:00+01:00",
            "valueQuantity": {"value": 185.50, "unit": "lbs", "system": "http://unitsofmeasure.org", "code": "[lb_av]"},
            "component": [
                {"code": {"text": "a"}, "valueString": "text value"},
                {"code": {"text": "b"}, "valueInteger": 3},
                {"code": {"text": "c"}, "valueBoolean": false}
            ]
        }"#,
    )
    .unwrap()
}

fn condition() -> Value {
    json!({
        "resourceType": "Condition",
        "id": "c1",
        "onsetDateTime": "2012-05-24",
        "subject": {"reference": "Patient/p1"}
    })
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "active": true,
        "deceasedBoolean": false,
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "maiden", "given": [null, "Jim"], "_given": [{"id": "g1", "extension": [{"url": "http://example.org/x", "valueString": "only an extension"}]}, null]}
        ],
        "multipleBirthInteger": 2,
        "contained": [{"resourceType": "Organization", "id": "org1", "name": "Acme"}],
        "managingOrganization": {"reference": "#org1"}
    })
}

#[test]
fn choice_elements_are_reached_by_their_base_name() {
    let obs = observation();
    assert_eq!(
        eval("Observation.value.as(Quantity).value", &obs),
        ["decimal:185.50"]
    );
    assert_eq!(
        eval("(Observation.value as Quantity).unit", &obs),
        ["string:lbs"]
    );
    assert_eq!(
        eval("Observation.value.ofType(Quantity).code", &obs),
        ["code:[lb_av]"]
    );
    assert_eq!(
        eval("Observation.value is Quantity", &obs),
        ["Boolean:true"]
    );
    assert_eq!(eval("Observation.value is Period", &obs), ["Boolean:false"]);
    assert_eq!(
        eval("Observation.value.type().name", &obs),
        ["String:Quantity"]
    );
    assert_eq!(
        eval("Observation.value > 180 '[lb_av]'", &obs),
        ["Boolean:true"]
    );
    assert_eq!(eval("Observation.value < 100 'kg'", &obs), ["Boolean:true"]);
    assert_eq!(
        eval("Observation.effective.as(dateTime)", &obs),
        ["dateTime:2016-03-28T09:30:00+01:00"]
    );
    assert_eq!(
        eval("Observation.component.value.type().name", &obs),
        ["String:string", "String:integer", "String:boolean"]
    );
    assert_eq!(
        eval("Observation.component.value.ofType(integer) + 1", &obs),
        ["Integer:4"]
    );
    // The JSON key is not a FHIRPath name.
    assert!(matches!(
        eval_err("Observation.valueQuantity", &obs),
        Error::Semantic(_)
    ));
}

#[test]
fn condition_onset_as_datetime_returns_the_value() {
    let cond = condition();
    assert_eq!(
        eval("Condition.onset.as(dateTime)", &cond),
        ["dateTime:2012-05-24"]
    );
    assert_eq!(
        eval("Condition.onset as dateTime", &cond),
        ["dateTime:2012-05-24"]
    );
    assert_eq!(
        eval("Condition.onset.ofType(dateTime)", &cond),
        ["dateTime:2012-05-24"]
    );
    assert_eq!(
        eval("Condition.onset.as(Period)", &cond),
        Vec::<String>::new()
    );
    assert_eq!(
        eval("Condition.onset.as(dateTime) < @2013", &cond),
        ["Boolean:true"]
    );
    assert_eq!(
        eval("Condition.onset.as(dateTime).toString()", &cond),
        ["String:2012-05-24"]
    );
}

#[test]
fn primitive_types_and_system_conversions() {
    let pat = patient();
    assert_eq!(eval("Patient.deceased is boolean", &pat), ["Boolean:true"]);
    assert_eq!(eval("Patient.deceased is Boolean", &pat), ["Boolean:false"]);
    assert_eq!(
        eval("Patient.deceased.as(boolean).not()", &pat),
        ["Boolean:true"]
    );
    assert_eq!(
        eval("Patient.deceased is dateTime", &pat),
        ["Boolean:false"]
    );
    assert_eq!(
        eval("Patient.multipleBirth is integer", &pat),
        ["Boolean:true"]
    );
    assert_eq!(eval("Patient.birthDate", &pat), ["date:1974-12-25"]);
    assert_eq!(
        eval("Patient.birthDate = @1974-12-25", &pat),
        ["Boolean:true"]
    );
    assert_eq!(
        eval("Patient.birthDate < @1974-12-25T10:00", &pat),
        Vec::<String>::new()
    );
    assert_eq!(
        eval("Patient.birthDate + 1 year", &pat),
        ["Date:1975-12-25"]
    );
    assert_eq!(eval("Patient.active and true", &pat), ["Boolean:true"]);
    assert_eq!(eval("Patient.id.type().name", &pat), ["String:id"]);
    assert_eq!(
        eval("Patient.name.given.type().name", &pat),
        [
            "String:string",
            "String:string",
            "String:string",
            "String:string"
        ]
    );
    assert_eq!(
        eval("Patient.name.use.first() is code", &pat),
        ["Boolean:true"]
    );
    assert_eq!(
        eval("Patient.name.use.first() is string", &pat),
        ["Boolean:true"]
    );
    assert_eq!(
        eval("Patient.name.first() is HumanName", &pat),
        ["Boolean:true"]
    );
    assert_eq!(eval("Patient.type().namespace", &pat), ["String:FHIR"]);
    assert_eq!(eval("Patient is DomainResource", &pat), ["Boolean:true"]);
}

#[test]
fn decimals_keep_their_written_precision() {
    let obs = observation();
    assert_eq!(
        eval("Observation.value.value.toString()", &obs),
        ["String:185.50"]
    );
    assert_eq!(
        eval("Observation.value.value = 185.5", &obs),
        ["Boolean:true"]
    );
    assert_eq!(
        eval("Observation.value.value.precision()", &obs),
        ["Integer:2"]
    );
    assert_eq!(eval("0.1 + 0.2 = 0.3", &obs), ["Boolean:true"]);
    assert_eq!(
        eval("(1.0 / 3).toString().length() > 20", &obs),
        ["Boolean:true"]
    );
}

#[test]
fn primitive_extensions_from_underscore_siblings() {
    let pat = patient();
    assert_eq!(
        eval(
            "Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value",
            &pat
        ),
        ["dateTime:1974-12-25T14:35:45-05:00"]
    );
    assert_eq!(eval("Patient.birthDate.hasValue()", &pat), ["Boolean:true"]);
    // `given: [null, "Jim"]` with `_given[0]` carrying an id and an extension.
    assert_eq!(eval("Patient.name[1].given.count()", &pat), ["Integer:2"]);
    assert_eq!(
        eval("Patient.name[1].given.select($this.hasValue())", &pat),
        ["Boolean:false", "Boolean:true"]
    );
    assert_eq!(
        eval("Patient.name[1].given.first().id", &pat),
        ["string:g1"]
    );
    assert_eq!(
        eval("Patient.name[1].given.first().extension.value", &pat),
        ["string:only an extension"]
    );
    assert_eq!(
        eval("Patient.name[1].given.first().getValue()", &pat),
        Vec::<String>::new()
    );
    assert_eq!(
        eval("Patient.name[1].given.last().getValue()", &pat),
        ["String:Jim"]
    );
}

#[test]
fn contained_and_bundle_resources_take_their_inner_type() {
    let pat = patient();
    assert_eq!(
        eval("Patient.contained.type().name", &pat),
        ["String:Organization"]
    );
    assert_eq!(
        eval("Patient.contained.ofType(Organization).name", &pat),
        ["string:Acme"]
    );
    assert_eq!(eval("Patient.contained.name", &pat), ["string:Acme"]);
    assert_eq!(
        eval("Patient.managingOrganization.resolve().name", &pat),
        ["string:Acme"]
    );
    assert_eq!(
        eval(
            "Patient.managingOrganization.resolve() is Organization",
            &pat
        ),
        ["Boolean:true"]
    );

    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": patient()},
            {"fullUrl": "urn:uuid:0001", "resource": condition()},
        ]
    });
    assert_eq!(
        eval("Bundle.entry.resource.type().name", &bundle),
        ["String:Patient", "String:Condition"]
    );
    assert_eq!(
        eval(
            "Bundle.entry.resource.ofType(Condition).onset.as(dateTime)",
            &bundle
        ),
        ["dateTime:2012-05-24"]
    );
    assert_eq!(
        eval(
            "Bundle.entry.resource.ofType(Condition).subject.resolve().name.family",
            &bundle
        ),
        ["string:Chalmers"]
    );
    assert_eq!(
        eval(
            "Bundle.entry.resource.where($this is Patient).birthDate",
            &bundle
        ),
        ["date:1974-12-25"]
    );
    assert_eq!(
        eval("Bundle.descendants().ofType(HumanName).count()", &bundle),
        ["Integer:2"]
    );
}

struct Store(Value);

impl Resolver for Store {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        (reference == "Patient/p1").then_some(&self.0)
    }
}

#[test]
fn resolver_and_variables_come_from_the_environment() {
    let cond = condition();
    let store = Store(patient());
    let mut env = Environment::new();
    env.with_resolver(&store)
        .set_variable("threshold", Variable::Integer(3))
        .set_variable("name", Variable::String("Peter".into()))
        .set_variable("other", Variable::Json(observation()));
    assert_eq!(
        eval_with("Condition.subject.resolve().active", &cond, &env),
        ["boolean:true"]
    );
    assert_eq!(eval_with("%threshold + 1", &cond, &env), ["Integer:4"]);
    assert_eq!(eval_with("%name.length()", &cond, &env), ["Integer:5"]);
    assert_eq!(eval_with("%other.status", &cond, &env), ["code:final"]);
    assert_eq!(eval_with("%resource.id", &cond, &env), ["id:c1"]);
    assert!(matches!(eval_err("%undefined", &cond), Error::Semantic(_)));
}

#[test]
fn hooks_that_are_absent_report_not_available() {
    let pat = patient();
    assert!(matches!(
        eval_err(
            "Patient.maritalStatus.memberOf('http://hl7.org/fhir/ValueSet/marital-status')",
            &json!({"resourceType": "Patient", "maritalStatus": {"text": "x"}})
        ),
        Error::NotAvailable(_)
    ));
    assert!(matches!(
        eval_err("conformsTo('http://example.org/profile')", &pat),
        Error::NotAvailable(_)
    ));
    assert_eq!(
        eval(
            "conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')",
            &pat
        ),
        ["Boolean:true"]
    );
    assert_eq!(eval("htmlChecks()", &pat), ["Boolean:true"]);
}

#[test]
fn strict_mode_rejects_unknown_names() {
    let pat = patient();
    assert_eq!(eval("Patient.nmae", &pat), Vec::<String>::new());
    assert_eq!(eval("Encounter.status", &pat), Vec::<String>::new());
    let mut strict = Environment::new();
    strict.strict(true);
    for expression in [
        "Patient.nmae",
        "Encounter.status",
        "name.given1",
        "(Patient.name.first() as Period).family",
        "Patient.children().first()",
        "Patient.descendants().where(true).skip(1)",
        "Patient.children()[0]",
    ] {
        let result = Expression::compile(expression)
            .unwrap()
            .evaluate(&pat, &strict)
            .map(|r| r.len());
        assert!(
            matches!(result, Err(Error::Semantic(_))),
            "{expression}: {result:?}"
        );
    }
    // Outside strict mode these are merely empty or order-dependent.
    assert_eq!(
        eval("(Patient.name.first() as Period).family", &pat),
        Vec::<String>::new()
    );
    assert_eq!(
        eval("Patient.children().first().type().name", &pat),
        ["String:id"]
    );
    // Mixed collections are fine as long as some item's type has the element.
    let result = Expression::compile("Patient.descendants().family")
        .unwrap()
        .evaluate(&pat, &strict);
    assert_eq!(result.map(|r| r.len()), Ok(1));
}

#[test]
fn results_borrow_from_the_input() {
    let pat = patient();
    let env = Environment::new();
    let compiled = Expression::compile("Patient.name.family").unwrap();
    let items = compiled.evaluate(&pat, &env).unwrap();
    let Some(Item::Node(node)) = items.first() else {
        panic!("a node");
    };
    assert!(std::ptr::eq(node.value, &pat["name"][0]["family"]));
    assert_eq!(node.fhir_type.name, "string");
    assert_eq!(items[0].as_str(), Some("Chalmers"));
}

#[test]
fn compiled_expressions_are_shared_across_threads() {
    let compiled = Expression::compile("Patient.name.given.count()").unwrap();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let compiled = compiled.clone();
            std::thread::spawn(move || {
                let pat = patient();
                let env = Environment::new();
                let result = compiled.evaluate(&pat, &env).unwrap();
                result.first().map(ToString::to_string)
            })
        })
        .collect();
    for handle in handles {
        assert_eq!(handle.join().unwrap().as_deref(), Some("4"));
    }
}

#[test]
fn resolve_stubs_give_the_type_of_unresolvable_references() {
    let cond = condition();
    assert_eq!(
        eval(
            "Condition.subject.where(resolve() is Patient).reference",
            &cond
        ),
        Vec::<String>::new()
    );
    let mut env = Environment::new();
    env.resolve_stubs(true);
    assert_eq!(
        eval_with(
            "Condition.subject.where(resolve() is Patient).reference",
            &cond,
            &env
        ),
        ["string:Patient/p1"]
    );
    assert_eq!(
        eval_with(
            "Condition.subject.where(resolve() is Group).reference",
            &cond,
            &env
        ),
        Vec::<String>::new()
    );
}
