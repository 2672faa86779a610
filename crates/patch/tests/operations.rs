//! Each operation on JSON resources, and every kind of error.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use patch::{ErrorKind, PatchError};
use serde_json::{Value, json};

/// One `operation` parameter: `type`, `path`, then the given parts.
fn op(operation_type: &str, path: &str, parts: Value) -> Value {
    let mut all = vec![
        json!({"name": "type", "valueCode": operation_type}),
        json!({"name": "path", "valueString": path}),
    ];
    all.extend(parts.as_array().unwrap().iter().cloned());
    json!({"name": "operation", "part": all})
}

fn parameters(operations: Vec<Value>) -> Value {
    json!({"resourceType": "Parameters", "parameter": operations})
}

/// Applies `operations` to `resource`; on failure checks that `resource` did not change.
fn patched(resource: &Value, operations: Vec<Value>) -> Result<Value, PatchError> {
    apply_patch(resource, &parameters(operations))
}

fn apply_patch(resource: &Value, patch: &Value) -> Result<Value, PatchError> {
    let mut out = resource.clone();
    match patch::apply(&mut out, patch) {
        Ok(()) => Ok(out),
        Err(error) => {
            assert_eq!(&out, resource, "a failed patch changed the resource");
            Err(error)
        }
    }
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_error(
    result: Result<Value, PatchError>,
    kind: ErrorKind,
    operation: Option<usize>,
    text: &str,
) {
    let error = result.expect_err("the patch should fail");
    assert_eq!((error.kind, error.operation), (kind, operation), "{error}");
    assert!(
        error.message.contains(text),
        "`{}` should mention `{text}`",
        error.message
    );
}

fn unprocessable(result: Result<Value, PatchError>, text: &str) {
    assert_error(result, ErrorKind::Unprocessable, Some(0), text);
}

fn bad_patch(result: Result<Value, PatchError>, operation: Option<usize>, text: &str) {
    assert_error(result, ErrorKind::BadPatch, operation, text);
}

fn patient() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"value": "1"}, {"value": "2"}, {"value": "3"}],
        "name": [{
            "family": "Chalmers",
            "given": ["Peter", "James", "Jim"],
            "_given": [null, {"extension": [{"url": "http://e.org/x", "valueString": "J"}]}, null]
        }],
        "gender": "male",
        "birthDate": "1974-12-25",
        "_birthDate": {"extension": [{"url": "http://e.org/birthTime", "valueDateTime": "1974-12-25T14:35:45-05:00"}]},
        "deceasedBoolean": false,
        "contact": [{"name": {"text": "a name"}, "gender": "female"}]
    })
}

fn name_value(name: &str, value: Value) -> Value {
    json!([{"name": "name", "valueString": name}, value])
}

// ---- add

#[test]
fn add_primitive_and_complex_to_the_resource() {
    let resource = json!({"resourceType": "Patient", "id": "p1"});
    let out = patched(
        &resource,
        vec![
            op(
                "add",
                "Patient",
                name_value(
                    "birthDate",
                    json!({"name": "value", "valueDate": "1930-01-01"}),
                ),
            ),
            op(
                "add",
                "Patient",
                name_value(
                    "maritalStatus",
                    json!({"name": "value", "valueCodeableConcept": {"text": "married"}}),
                ),
            ),
        ],
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"resourceType": "Patient", "id": "p1", "birthDate": "1930-01-01", "maritalStatus": {"text": "married"}})
    );
    assert_eq!(
        keys(&out),
        ["resourceType", "id", "birthDate", "maritalStatus"]
    );
}

#[test]
fn add_to_a_repeating_element_creates_or_extends_the_list() {
    let resource = json!({"resourceType": "Patient"});
    let identifier = |v: &str| json!({"name": "value", "valueIdentifier": {"value": v}});
    let out = patched(
        &resource,
        vec![op(
            "add",
            "Patient",
            name_value("identifier", identifier("a")),
        )],
    )
    .unwrap();
    assert_eq!(out["identifier"], json!([{"value": "a"}]));
    let out = patched(
        &out,
        vec![op(
            "add",
            "Patient",
            name_value("identifier", identifier("b")),
        )],
    )
    .unwrap();
    assert_eq!(out["identifier"], json!([{"value": "a"}, {"value": "b"}]));
}

#[test]
fn add_to_a_backbone_element_with_parts() {
    let out = patched(
        &patient(),
        vec![op(
            "add",
            "Patient",
            name_value(
                "contact",
                json!({"name": "value", "part": [
                    {"name": "name", "valueHumanName": {"text": "b"}},
                    {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "1"}},
                    {"name": "gender", "valueCode": "male"}
                ]}),
            ),
        )],
    )
    .unwrap();
    assert_eq!(
        out["contact"][1],
        json!({"name": {"text": "b"}, "telecom": [{"system": "phone", "value": "1"}], "gender": "male"})
    );
    let out = patched(
        &out,
        vec![op(
            "add",
            "Patient.contact[1]",
            name_value(
                "relationship",
                json!({"name": "value", "valueCodeableConcept": {"text": "friend"}}),
            ),
        )],
    )
    .unwrap();
    assert_eq!(
        out["contact"][1]["relationship"],
        json!([{"text": "friend"}])
    );
}

#[test]
fn add_a_choice_element_by_its_name_or_with_its_type() {
    let resource = json!({"resourceType": "Observation", "status": "final"});
    let out = patched(
        &resource,
        vec![op(
            "add",
            "Observation",
            name_value(
                "value",
                json!({"name": "value", "valueQuantity": {"value": 1.50, "unit": "mg"}}),
            ),
        )],
    )
    .unwrap();
    assert_eq!(out["valueQuantity"], json!({"value": 1.50, "unit": "mg"}));
    let out = patched(
        &resource,
        vec![op(
            "add",
            "Observation",
            name_value("valueString", json!({"name": "value", "valueString": "x"})),
        )],
    )
    .unwrap();
    assert_eq!(out["valueString"], json!("x"));
    let out = patched(
        &resource,
        vec![op(
            "add",
            "Observation",
            name_value(
                "extension",
                json!({"name": "value", "part": [
                    {"name": "url", "valueUri": "http://e.org/x"},
                    {"name": "value", "valueInteger": 3}
                ]}),
            ),
        )],
    )
    .unwrap();
    assert_eq!(
        out["extension"],
        json!([{"url": "http://e.org/x", "valueInteger": 3}])
    );

    unprocessable(
        patched(
            &resource,
            vec![op(
                "add",
                "Observation",
                name_value(
                    "value",
                    json!({"name": "value", "valueHumanName": {"text": "x"}}),
                ),
            )],
        ),
        "not a type of the choice element value[x]",
    );
    let with_value = json!({"resourceType": "Observation", "status": "final", "valueString": "x"});
    unprocessable(
        patched(
            &with_value,
            vec![op(
                "add",
                "Observation",
                name_value("value", json!({"name": "value", "valueBoolean": true})),
            )],
        ),
        "already has a value",
    );
}

#[test]
fn add_keeps_numbers_as_written() {
    let resource = json!({"resourceType": "Observation", "status": "final"});
    let patch: Value = serde_json::from_str(
        r#"{"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
            {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Observation"},
            {"name": "name", "valueString": "valueQuantity"},
            {"name": "value", "valueQuantity": {"value": 1.50, "unit": "mg"}}]}]}"#,
    )
    .unwrap();
    let out = apply_patch(&resource, &patch).unwrap();
    assert_eq!(
        serde_json::to_string(&out["valueQuantity"]).unwrap(),
        r#"{"value":1.50,"unit":"mg"}"#
    );
}

#[test]
fn add_extensions_to_a_primitive_and_a_primitive_with_extensions() {
    let extension = json!({"name": "value", "part": [
        {"name": "url", "valueUri": "http://e.org/y"},
        {"name": "value", "valueString": "Y"}
    ]});
    let out = patched(
        &patient(),
        vec![op(
            "add",
            "Patient.gender",
            name_value("extension", extension.clone()),
        )],
    )
    .unwrap();
    assert_eq!(out["gender"], json!("male"));
    assert_eq!(
        out["_gender"],
        json!({"extension": [{"url": "http://e.org/y", "valueString": "Y"}]})
    );
    assert_eq!(
        keys(&out)[..6],
        [
            "resourceType",
            "id",
            "identifier",
            "name",
            "gender",
            "_gender"
        ]
    );

    let out = patched(
        &patient(),
        vec![op(
            "add",
            "Patient.birthDate",
            name_value("extension", extension.clone()),
        )],
    )
    .unwrap();
    assert_eq!(out["_birthDate"]["extension"].as_array().unwrap().len(), 2);

    let out = patched(
        &patient(),
        vec![op(
            "add",
            "Patient.name[0].given[0]",
            name_value("extension", extension),
        )],
    )
    .unwrap();
    assert_eq!(
        out["name"][0]["_given"][0]["extension"][0]["valueString"],
        json!("Y")
    );
    assert_eq!(out["name"][0]["given"], patient()["name"][0]["given"]);

    unprocessable(
        patched(
            &patient(),
            vec![op(
                "add",
                "Patient.gender",
                name_value("text", json!({"name": "value", "valueString": "x"})),
            )],
        ),
        "only `id` and `extension`",
    );

    let out = patched(
        &json!({"resourceType": "Patient"}),
        vec![op(
            "add",
            "Patient",
            name_value(
                "gender",
                json!({"name": "value", "valueCode": "male", "_valueCode": {"id": "g"}}),
            ),
        )],
    )
    .unwrap();
    assert_eq!(
        out,
        json!({"resourceType": "Patient", "gender": "male", "_gender": {"id": "g"}})
    );
}

#[test]
fn add_a_contained_resource() {
    let out = patched(
        &json!({"resourceType": "Patient"}),
        vec![op(
            "add",
            "Patient",
            name_value(
                "contained",
                json!({"name": "value", "resource": {"resourceType": "Organization", "id": "o"}}),
            ),
        )],
    )
    .unwrap();
    assert_eq!(
        out["contained"],
        json!([{"resourceType": "Organization", "id": "o"}])
    );
    let out = patched(
        &out,
        vec![op(
            "add",
            "Patient.contained[0]",
            name_value("name", json!({"name": "value", "valueString": "Acme"})),
        )],
    )
    .unwrap();
    assert_eq!(out["contained"][0]["name"], json!("Acme"));
    unprocessable(
        patched(
            &out,
            vec![op(
                "add",
                "Patient.contained[0]",
                name_value("gender", json!({"name": "value", "valueCode": "male"})),
            )],
        ),
        "`gender` is not an element of Organization",
    );
}

#[test]
fn add_errors() {
    let value = json!({"name": "value", "valueDate": "2021-12-01"});
    unprocessable(
        patched(
            &patient(),
            vec![op(
                "add",
                "Patient.identifier.period",
                name_value("end", value.clone()),
            )],
        ),
        "no content found",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op(
                "add",
                "Patient.identifier",
                name_value("system", value.clone()),
            )],
        ),
        "selects 3 elements",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op("add", "Patient", name_value("birthDate", value.clone()))],
        ),
        "`birthDate` already has a value",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op("add", "Patient", name_value("colour", value.clone()))],
        ),
        "`colour` is not an element of Patient",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op(
                "add",
                "Patient",
                name_value(
                    "contact",
                    json!({"name": "value", "part": [{"name": "shoeSize", "valueInteger": 3}]}),
                ),
            )],
        ),
        "`shoeSize` is not an element of Patient.contact",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op(
                "add",
                "Patient",
                name_value(
                    "active",
                    json!({"name": "value", "part": [{"name": "id", "valueString": "x"}]}),
                ),
            )],
        ),
        "is a primitive element",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op(
                "add",
                "Patient",
                name_value(
                    "maritalStatus",
                    json!({"name": "value", "part": [{"name": "text", "valueString": "a"}, {"name": "text", "valueString": "b"}]}),
                ),
            )],
        ),
        "given more than once",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op(
                "add",
                "Patient.gender.length()",
                name_value("id", value),
            )],
        ),
        "computed value",
    );
}

// ---- insert

#[test]
fn insert_at_the_start_middle_and_end() {
    let identifier = json!({"name": "value", "valueIdentifier": {"value": "new"}});
    for (index, expected) in [
        (0, ["new", "1", "2", "3"]),
        (1, ["1", "new", "2", "3"]),
        (3, ["1", "2", "3", "new"]),
    ] {
        let out = patched(
            &patient(),
            vec![op(
                "insert",
                "Patient.identifier",
                json!([{"name": "index", "valueInteger": index}, identifier]),
            )],
        )
        .unwrap();
        let values: Vec<&str> = out["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["value"].as_str().unwrap())
            .collect();
        assert_eq!(values, expected);
    }
}

#[test]
fn insert_into_a_primitive_list_keeps_extensions_aligned() {
    let out = patched(
        &patient(),
        vec![op(
            "insert",
            "Patient.name[0].given",
            json!([{"name": "index", "valueInteger": 1}, {"name": "value", "valueString": "P"}]),
        )],
    )
    .unwrap();
    assert_eq!(
        out["name"][0]["given"],
        json!(["Peter", "P", "James", "Jim"])
    );
    assert_eq!(
        out["name"][0]["_given"][2]["extension"][0]["valueString"],
        json!("J")
    );
    assert_eq!(out["name"][0]["_given"].as_array().unwrap().len(), 4);
}

#[test]
fn insert_errors() {
    let value = json!({"name": "value", "valueIdentifier": {"value": "x"}});
    let at = |index: i64| json!([{"name": "index", "valueInteger": index}, value]);
    unprocessable(
        patched(&patient(), vec![op("insert", "Patient.identifier", at(4))]),
        "index 4 is out of range: the list has 3 items",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op("insert", "Patient.identifier.where(value = '2')", at(0))],
        ),
        "must select the whole list",
    );
    unprocessable(
        patched(&patient(), vec![op("insert", "Patient.telecom", at(0))]),
        "selects no list",
    );
    unprocessable(
        patched(&patient(), vec![op("insert", "Patient.gender", at(0))]),
        "not select the items of a list",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op("insert", "Patient.identifier | Patient.name", at(0))],
        ),
        "more than one list",
    );
}

// ---- delete

#[test]
fn delete_a_primitive_with_its_extensions() {
    let out = patched(
        &patient(),
        vec![op("delete", "Patient.birthDate", json!([]))],
    )
    .unwrap();
    assert!(out.get("birthDate").is_none() && out.get("_birthDate").is_none());
    assert_eq!(
        keys(&out),
        [
            "resourceType",
            "id",
            "identifier",
            "name",
            "gender",
            "deceasedBoolean",
            "contact"
        ]
    );
}

#[test]
fn delete_list_items_and_the_last_one_removes_the_property() {
    let out = patched(
        &patient(),
        vec![op("delete", "Patient.identifier[1]", json!([]))],
    )
    .unwrap();
    assert_eq!(out["identifier"], json!([{"value": "1"}, {"value": "3"}]));
    let out = patched(
        &patient(),
        vec![op("delete", "Patient.contact[0]", json!([]))],
    )
    .unwrap();
    assert!(out.get("contact").is_none());
    let out = patched(
        &patient(),
        vec![op("delete", "Patient.name[0].given[0]", json!([]))],
    )
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["James", "Jim"]));
    assert_eq!(
        out["name"][0]["_given"][0]["extension"][0]["valueString"],
        json!("J")
    );
    let out = patched(
        &patient(),
        vec![op("delete", "Patient.name[0].given[1]", json!([]))],
    )
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["Peter", "Jim"]));
    assert!(out["name"][0].get("_given").is_none());
}

#[test]
fn delete_removes_emptied_parents_but_not_a_primitive_value() {
    let out = patched(
        &patient(),
        vec![op("delete", "Patient.contact[0].name.text", json!([]))],
    )
    .unwrap();
    assert_eq!(out["contact"], json!([{"gender": "female"}]));
    let out = patched(
        &patient(),
        vec![
            op("delete", "Patient.contact[0].name", json!([])),
            op("delete", "Patient.contact[0].gender", json!([])),
        ],
    )
    .unwrap();
    assert!(out.get("contact").is_none());
    let out = patched(
        &patient(),
        vec![op("delete", "Patient.birthDate.extension", json!([]))],
    )
    .unwrap();
    assert_eq!(out["birthDate"], json!("1974-12-25"));
    assert!(out.get("_birthDate").is_none());
    let out = patched(
        &patient(),
        vec![op(
            "delete",
            "Patient.name[0].given[1].extension",
            json!([]),
        )],
    )
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["Peter", "James", "Jim"]));
    assert!(out["name"][0].get("_given").is_none());
}

#[test]
fn delete_an_extension_only_primitive() {
    let resource = json!({"resourceType": "Patient", "_gender": {"extension": [{"url": "http://e.org/absent", "valueCode": "unknown"}]}});
    let out = patched(&resource, vec![op("delete", "Patient.gender", json!([]))]).unwrap();
    assert_eq!(out, json!({"resourceType": "Patient"}));
}

#[test]
fn delete_of_nothing_is_no_change_and_errors() {
    assert_eq!(
        patched(&patient(), vec![op("delete", "Patient.telecom", json!([]))]).unwrap(),
        patient()
    );
    unprocessable(
        patched(
            &patient(),
            vec![op("delete", "Patient.identifier", json!([]))],
        ),
        "selects 3 elements",
    );
    unprocessable(
        patched(&patient(), vec![op("delete", "Patient", json!([]))]),
        "resource itself",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op(
                "delete",
                "Patient.gender.combine(Patient.gender)",
                json!([]),
            )],
        ),
        "selects 2 elements",
    );
}

// ---- replace

#[test]
fn replace_a_primitive_in_place() {
    let out = patched(
        &patient(),
        vec![op(
            "replace",
            "Patient.gender",
            json!([{"name": "value", "valueCode": "female"}]),
        )],
    )
    .unwrap();
    assert_eq!(out["gender"], json!("female"));
    assert_eq!(keys(&out), keys(&patient()));
    let out = patched(
        &patient(),
        vec![op(
            "replace",
            "Patient.birthDate",
            json!([{"name": "value", "valueDate": "1930-01-01"}]),
        )],
    )
    .unwrap();
    assert_eq!(out["birthDate"], json!("1930-01-01"));
    assert!(
        out.get("_birthDate").is_none(),
        "the replaced element's extensions go with it"
    );
}

#[test]
fn replace_complex_list_items_and_choice_types() {
    let out = patched(
        &patient(),
        vec![op(
            "replace",
            "Patient.identifier[1]",
            json!([{"name": "value", "valueIdentifier": {"system": "s", "value": "two"}}]),
        )],
    )
    .unwrap();
    assert_eq!(out["identifier"][1], json!({"system": "s", "value": "two"}));
    let out = patched(&patient(), vec![op("replace", "Patient.contact[0].name", json!([{"name": "value", "part": [{"name": "family", "valueString": "F"}, {"name": "given", "valueString": "G"}]}]))]).unwrap();
    assert_eq!(
        out["contact"][0]["name"],
        json!({"family": "F", "given": ["G"]})
    );
    let out = patched(
        &patient(),
        vec![op(
            "replace",
            "Patient.name[0].given[1]",
            json!([{"name": "value", "valueString": "Jimmy"}]),
        )],
    )
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["Peter", "Jimmy", "Jim"]));
    assert!(out["name"][0].get("_given").is_none());
    let out = patched(
        &patient(),
        vec![op(
            "replace",
            "Patient.deceased",
            json!([{"name": "value", "valueDateTime": "2020-01-01"}]),
        )],
    )
    .unwrap();
    assert!(out.get("deceasedBoolean").is_none());
    assert_eq!(out["deceasedDateTime"], json!("2020-01-01"));
    assert_eq!(keys(&out)[7], "deceasedDateTime");
}

#[test]
fn replace_errors() {
    let value = json!([{"name": "value", "valueString": "x"}]);
    unprocessable(
        patched(
            &patient(),
            vec![op("replace", "Patient.telecom", value.clone())],
        ),
        "no content found",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op("replace", "Patient.name.given", value.clone())],
        ),
        "selects 3 elements",
    );
    unprocessable(
        patched(&patient(), vec![op("replace", "Patient", value)]),
        "resource itself",
    );
    unprocessable(
        patched(
            &patient(),
            vec![op(
                "replace",
                "Patient.deceased",
                json!([{"name": "value", "valueString": "x"}]),
            )],
        ),
        "not a type of the choice element deceased[x]",
    );
}

// ---- move

#[test]
fn move_list_items() {
    let mv = |source: i64, destination: i64| {
        op(
            "move",
            "Patient.identifier",
            json!([{"name": "source", "valueInteger": source}, {"name": "destination", "valueInteger": destination}]),
        )
    };
    let values = |out: &Value| -> Vec<String> {
        out["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["value"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        values(&patched(&patient(), vec![mv(2, 0)]).unwrap()),
        ["3", "1", "2"]
    );
    assert_eq!(
        values(&patched(&patient(), vec![mv(0, 2)]).unwrap()),
        ["2", "3", "1"]
    );
    assert_eq!(
        values(&patched(&patient(), vec![mv(1, 1)]).unwrap()),
        ["1", "2", "3"]
    );
    unprocessable(
        patched(&patient(), vec![mv(3, 0)]),
        "source 3 is out of range",
    );
    unprocessable(
        patched(&patient(), vec![mv(0, 3)]),
        "destination 3 is out of range",
    );

    let out = patched(
        &patient(),
        vec![op("move", "Patient.name[0].given", json!([{"name": "source", "valueInteger": 1}, {"name": "destination", "valueInteger": 0}]))],
    )
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["James", "Peter", "Jim"]));
    assert_eq!(
        out["name"][0]["_given"][0]["extension"][0]["valueString"],
        json!("J")
    );
}

// ---- the patch as a whole

#[test]
fn all_or_nothing_and_the_failing_operation_is_named() {
    let result = patched(
        &patient(),
        vec![
            op("delete", "Patient.gender", json!([])),
            op(
                "replace",
                "Patient.telecom",
                json!([{"name": "value", "valueString": "x"}]),
            ),
        ],
    );
    let error = result.unwrap_err();
    assert_eq!(
        (error.kind, error.operation),
        (ErrorKind::Unprocessable, Some(1))
    );
    assert!(!error.is_bad_patch());
    assert_eq!(
        error.to_string(),
        "FHIRPath Patch operation 1: replace at `Patient.telecom`: no content found: the path selects no element"
    );
}

#[test]
fn a_bad_patch_is_reported_before_any_operation_applies() {
    let result = patched(
        &patient(),
        vec![
            op(
                "replace",
                "Patient.telecom",
                json!([{"name": "value", "valueString": "x"}]),
            ),
            op("frobnicate", "Patient", json!([])),
        ],
    );
    bad_patch(result, Some(1), "unknown operation type `frobnicate`");
}

#[test]
fn empty_parameters_change_nothing() {
    assert_eq!(
        apply_patch(&patient(), &json!({"resourceType": "Parameters"})).unwrap(),
        patient()
    );
    assert_eq!(patched(&patient(), vec![]).unwrap(), patient());
}

#[test]
fn malformed_parameters_are_bad_patches() {
    let r = patient();
    let with_parts = |parts: Value| parameters(vec![json!({"name": "operation", "part": parts})]);
    let type_path = |t: &str, p: &str| {
        vec![
            json!({"name": "type", "valueCode": t}),
            json!({"name": "path", "valueString": p}),
        ]
    };
    let parts = |t: &str, p: &str, more: Value| {
        let mut all = type_path(t, p);
        all.extend(more.as_array().unwrap().iter().cloned());
        Value::Array(all)
    };
    bad_patch(apply_patch(&r, &json!([])), None, "not a JSON object");
    bad_patch(
        apply_patch(&r, &json!({"resourceType": "Patient"})),
        None,
        "not a Parameters",
    );
    bad_patch(
        apply_patch(&r, &json!({"parameter": []})),
        None,
        "no resourceType",
    );
    bad_patch(
        apply_patch(&r, &json!({"resourceType": "Parameters", "parameter": {}})),
        None,
        "not an array",
    );
    bad_patch(
        apply_patch(&r, &parameters(vec![json!(1)])),
        Some(0),
        "not a JSON object",
    );
    bad_patch(
        apply_patch(&r, &parameters(vec![json!({"name": "op", "part": []})])),
        Some(0),
        "named `op`",
    );
    bad_patch(
        apply_patch(&r, &parameters(vec![json!({"part": []})])),
        Some(0),
        "no name",
    );
    bad_patch(
        apply_patch(&r, &parameters(vec![json!({"name": "operation"})])),
        Some(0),
        "no parts",
    );
    bad_patch(
        apply_patch(
            &r,
            &parameters(vec![json!({"name": "operation", "part": {}})]),
        ),
        Some(0),
        "not an array",
    );
    bad_patch(
        apply_patch(
            &r,
            &parameters(vec![
                json!({"name": "operation", "valueString": "x", "part": []}),
            ]),
        ),
        Some(0),
        "cannot have a value",
    );
    bad_patch(
        apply_patch(
            &r,
            &parameters(vec![
                json!({"name": "operation", "resource": {}, "part": []}),
            ]),
        ),
        Some(0),
        "cannot have a resource",
    );
    bad_patch(
        apply_patch(
            &r,
            &parameters(vec![json!({"name": "operation", "colour": 1, "part": []})]),
        ),
        Some(0),
        "unknown property `colour`",
    );
    bad_patch(
        apply_patch(
            &r,
            &parameters(vec![
                json!({"name": "operation", "modifierExtension": [], "part": []}),
            ]),
        ),
        Some(0),
        "modifierExtension",
    );
    bad_patch(
        apply_patch(&r, &with_parts(json!([1]))),
        Some(0),
        "not a JSON object",
    );
    bad_patch(
        apply_patch(&r, &with_parts(json!([{"valueCode": "add"}]))),
        Some(0),
        "has no name",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(json!([{"name": "colour", "valueCode": "add"}])),
        ),
        Some(0),
        "unknown part `colour`",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(json!([{"name": "path", "valueString": "Patient"}])),
        ),
        Some(0),
        "no `type` part",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(json!([{"name": "type", "valueCode": "delete"}])),
        ),
        Some(0),
        "no `path` part",
    );
    bad_patch(
        apply_patch(&r, &with_parts(json!([{"name": "type"}]))),
        Some(0),
        "part `type` has no value",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(json!([{"name": "type", "valueInteger": 1}])),
        ),
        Some(0),
        "valueString or valueCode",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(json!([{"name": "type", "valueCode": "add", "valueString": "add"}])),
        ),
        Some(0),
        "more than one value[x]",
    );
    bad_patch(
        apply_patch(&r, &with_parts(json!([{"name": "type", "part": []}]))),
        Some(0),
        "simple value",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "delete",
                "Patient",
                json!([{"name": "type", "valueCode": "delete"}]),
            )),
        ),
        Some(0),
        "more than once",
    );
    bad_patch(
        apply_patch(&r, &with_parts(parts("delete", "Patient.(", json!([])))),
        Some(0),
        "not valid FHIRPath",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "delete",
                "Patient",
                json!([{"name": "value", "valueString": "x"}]),
            )),
        ),
        Some(0),
        "does not take a `value`",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "add",
                "Patient",
                json!([{"name": "value", "valueString": "x"}]),
            )),
        ),
        Some(0),
        "no `name` part",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "gender"}]),
            )),
        ),
        Some(0),
        "no `value` part",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "add",
                "Patient",
                json!([{"name": "name", "valueString": "_gender"}, {"name": "value", "valueCode": "x"}]),
            )),
        ),
        Some(0),
        "not an element name",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts("replace", "Patient.gender", json!([]))),
        ),
        Some(0),
        "no `value` part",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "insert",
                "Patient.identifier",
                json!([{"name": "value", "valueString": "x"}]),
            )),
        ),
        Some(0),
        "no `index` part",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "insert",
                "Patient.identifier",
                json!([{"name": "index", "valueInteger": -1}, {"name": "value", "valueString": "x"}]),
            )),
        ),
        Some(0),
        "non-negative integer",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "insert",
                "Patient.identifier",
                json!([{"name": "index", "valueString": "1"}, {"name": "value", "valueString": "x"}]),
            )),
        ),
        Some(0),
        "valueInteger",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "move",
                "Patient.identifier",
                json!([{"name": "source", "valueInteger": 1}]),
            )),
        ),
        Some(0),
        "no `destination` part",
    );
    bad_patch(
        apply_patch(
            &r,
            &with_parts(parts(
                "move",
                "Patient.identifier",
                json!([{"name": "destination", "valueInteger": 1}]),
            )),
        ),
        Some(0),
        "no `source` part",
    );
    let value = |v: Value| with_parts(parts("replace", "Patient.gender", json!([v])));
    bad_patch(
        apply_patch(&r, &value(json!({"name": "value"}))),
        Some(0),
        "has no value",
    );
    bad_patch(
        apply_patch(&r, &value(json!({"name": "value", "valueFoo": "x"}))),
        Some(0),
        "`valueFoo` is not a value[x]",
    );
    bad_patch(
        apply_patch(
            &r,
            &value(json!({"name": "value", "valueCode": "x", "valueString": "y"})),
        ),
        Some(0),
        "more than one value[x]",
    );
    bad_patch(
        apply_patch(
            &r,
            &value(json!({"name": "value", "valueCode": "x", "part": []})),
        ),
        Some(0),
        "more than one of",
    );
    bad_patch(
        apply_patch(&r, &value(json!({"name": "value", "valueCode": ["x"]}))),
        Some(0),
        "single value",
    );
    bad_patch(
        apply_patch(
            &r,
            &value(json!({"name": "value", "valueCode": "x", "_valueCode": "y"})),
        ),
        Some(0),
        "must be an object",
    );
    bad_patch(
        apply_patch(&r, &value(json!({"name": "value", "resource": {}}))),
        Some(0),
        "no resourceType",
    );
    bad_patch(
        apply_patch(&r, &value(json!({"name": "value", "part": {}}))),
        Some(0),
        "not an array",
    );
    bad_patch(
        apply_patch(&r, &value(json!({"name": "value", "part": [1]}))),
        Some(0),
        "not a JSON object",
    );
    bad_patch(
        apply_patch(
            &r,
            &value(json!({"name": "value", "part": [{"valueString": "x"}]})),
        ),
        Some(0),
        "has no name",
    );
    let mut deep = json!({"name": "leaf", "valueString": "x"});
    for _ in 0..=patch::MAX_PART_DEPTH {
        deep = json!({"name": "text", "part": [deep]});
    }
    let deep = json!({"name": "value", "part": [deep]});
    bad_patch(apply_patch(&r, &value(deep)), Some(0), "nest more than");
    let many = vec![op("delete", "Patient.telecom", json!([])); patch::MAX_OPERATIONS + 1];
    bad_patch(patched(&r, many), None, "at most");
    let many = vec![op("delete", "Patient.telecom", json!([])); patch::MAX_OPERATIONS];
    assert_eq!(patched(&r, many).unwrap(), r);
}

/// Every node of a valid patch, replaced by each kind of junk, fails cleanly or applies; never panics.
#[test]
fn junk_anywhere_in_a_patch_never_panics() {
    let valid = parameters(vec![
        op(
            "add",
            "Patient",
            name_value(
                "contact",
                json!({"name": "value", "part": [{"name": "name", "valueHumanName": {"text": "a"}}]}),
            ),
        ),
        op(
            "insert",
            "Patient.identifier",
            json!([{"name": "index", "valueInteger": 1}, {"name": "value", "valueIdentifier": {"value": "x"}}]),
        ),
        op(
            "replace",
            "Patient.name[0].given[1]",
            json!([{"name": "value", "valueString": "J", "_valueString": {"id": "i"}}]),
        ),
        op(
            "move",
            "Patient.identifier",
            json!([{"name": "source", "valueInteger": 0}, {"name": "destination", "valueInteger": 2}]),
        ),
        op("delete", "Patient.birthDate", json!([])),
    ]);
    assert!(apply_patch(&patient(), &valid).is_ok());
    let junk = [
        json!(null),
        json!(true),
        json!(-1),
        json!(1e300),
        json!(""),
        json!("Patient"),
        json!([]),
        json!([null]),
        json!({}),
        json!({"name": "value"}),
        json!(18446744073709551615_u64),
    ];
    let mut pointers = Vec::new();
    collect_pointers(&valid, String::new(), &mut pointers);
    let mut outcomes = (0, 0);
    for pointer in &pointers {
        for junk in &junk {
            let mut patch = valid.clone();
            *patch.pointer_mut(pointer).unwrap() = junk.clone();
            for resource in [
                patient(),
                json!({}),
                json!([]),
                json!({"resourceType": "Nonsense", "identifier": {}}),
            ] {
                match apply_patch(&resource, &patch) {
                    Ok(_) => outcomes.0 += 1,
                    Err(error) => {
                        assert!(!error.message.is_empty());
                        outcomes.1 += 1;
                    }
                }
            }
        }
    }
    assert!(outcomes.1 > outcomes.0, "{outcomes:?}");
}

fn collect_pointers(value: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                collect_pointers(child, format!("{at}/{key}"), out);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                collect_pointers(child, format!("{at}/{index}"), out);
            }
        }
        _ => {}
    }
}
