//! Validation over HTTP: invalid writes get 422 with every issue located, nothing is
//! stored, and `$validate` reports without storing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{TestServer, agent};
use serde_json::Value;

struct Answer {
    status: u16,
    body: Value,
}

fn post(base: &str, path: &str, body: &str) -> Answer {
    let mut response = agent()
        .post(&format!("{base}/{path}"))
        .header("Content-Type", "application/fhir+json")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

fn get(base: &str, path: &str) -> Answer {
    let mut response = agent().get(&format!("{base}/{path}")).call().unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// An issue's `(severity, code, expression)`.
type Located = (String, String, String);

/// `(severity, code, expression)` of every issue.
fn issues(outcome: &Value) -> Vec<Located> {
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    outcome["issue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|issue| {
            (
                issue["severity"].as_str().unwrap_or("").to_string(),
                issue["code"].as_str().unwrap_or("").to_string(),
                issue["expression"][0].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn issue(severity: &str, code: &str, expression: &str) -> Located {
    (severity.into(), code.into(), expression.into())
}

#[test]
fn invalid_writes_get_422_with_located_issues() {
    let (server, _dir) = TestServer::start();
    let base = &server.base;
    let cases: [(&str, &str, Vec<Located>); 6] = [
        (
            "Patient",
            r#"{"resourceType":"Patient","gender":"boy"}"#,
            vec![issue("error", "code-invalid", "Patient.gender")],
        ),
        (
            "Patient",
            r#"{"resourceType":"Patient","nickname":"Bob"}"#,
            vec![issue("error", "structure", "Patient.nickname")],
        ),
        (
            "Patient",
            r#"{"resourceType":"Patient","birthDate":"1970-13-01"}"#,
            vec![issue("error", "value", "Patient.birthDate")],
        ),
        (
            "Patient",
            r#"{"resourceType":"Patient","active":"true","name":{"family":"Chalmers"}}"#,
            vec![
                issue("error", "structure", "Patient.active"),
                issue("error", "structure", "Patient.name"),
            ],
        ),
        (
            "Observation",
            r#"{"resourceType":"Observation","valueString":"x"}"#,
            vec![
                issue("error", "required", "Observation.status"),
                issue("error", "required", "Observation.code"),
            ],
        ),
        (
            "Patient",
            r#"{"resourceType":"Patient","managingOrganization":{"reference":"Patient/p1"}}"#,
            vec![issue(
                "error",
                "structure",
                "Patient.managingOrganization.reference",
            )],
        ),
    ];
    for (resource_type, body, expected) in cases {
        let answer = post(base, resource_type, body);
        assert_eq!(answer.status, 422, "{body}: {}", answer.body);
        assert_eq!(issues(&answer.body), expected, "{body}");
    }
    // Nothing was stored.
    let history = get(base, "_history");
    assert_eq!(history.status, 200);
    assert_eq!(history.body["total"], 0, "{}", history.body);
}

#[test]
fn invalid_updates_and_patches_store_nothing() {
    let (server, _dir) = TestServer::start();
    let base = &server.base;
    let created = post(
        base,
        "Patient",
        r#"{"resourceType":"Patient","gender":"female"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_string();

    let mut response = agent()
        .put(&format!("{base}/Patient/{id}"))
        .header("Content-Type", "application/fhir+json")
        .send(format!(
            r#"{{"resourceType":"Patient","id":"{id}","gender":"f"}}"#
        ))
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let outcome: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        issues(&outcome),
        vec![issue("error", "code-invalid", "Patient.gender")]
    );

    let mut response = agent()
        .patch(&format!("{base}/Patient/{id}"))
        .header("Content-Type", "application/json-patch+json")
        .send(r#"[{"op":"add","path":"/birthDate","value":"yesterday"}]"#)
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let outcome: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        issues(&outcome),
        vec![issue("error", "value", "Patient.birthDate")]
    );

    let current = get(base, &format!("Patient/{id}"));
    assert_eq!(current.body["meta"]["versionId"], "1");
    assert_eq!(current.body["gender"], "female");
}

#[test]
fn validate_operation_reports_without_storing() {
    let (server, _dir) = TestServer::start();
    let base = &server.base;

    let invalid = post(
        base,
        "Patient/$validate",
        r#"{"resourceType":"Patient","gender":"boy"}"#,
    );
    assert_eq!(invalid.status, 200);
    assert_eq!(
        issues(&invalid.body),
        vec![issue("error", "code-invalid", "Patient.gender")]
    );

    let wrapped = post(
        base,
        "Patient/$validate",
        r#"{"resourceType":"Parameters","parameter":[{"name":"mode","valueCode":"create"},{"name":"resource","resource":{"resourceType":"Patient","active":true}}]}"#,
    );
    assert_eq!(wrapped.status, 200);
    assert_eq!(
        issues(&wrapped.body),
        vec![issue("information", "informational", "")]
    );

    let update_without_id = post(
        base,
        "Patient/$validate?mode=update",
        r#"{"resourceType":"Patient"}"#,
    );
    assert_eq!(update_without_id.status, 400);

    let bad_mode = post(
        base,
        "Patient/$validate?mode=merge",
        r#"{"resourceType":"Patient"}"#,
    );
    assert_eq!(bad_mode.status, 400);

    let unknown = post(base, "Patient/nobody/$validate?mode=delete", "");
    assert_eq!(unknown.status, 404);

    let created = post(base, "Patient", r#"{"resourceType":"Patient"}"#);
    let id = created.body["id"].as_str().unwrap().to_string();
    let deletable = post(base, &format!("Patient/{id}/$validate?mode=delete"), "");
    assert_eq!(deletable.status, 200);
    let update = post(
        base,
        &format!("Patient/{id}/$validate?mode=update"),
        &format!(r#"{{"resourceType":"Patient","id":"{id}","birthDate":"1970-02-30"}}"#),
    );
    assert_eq!(update.status, 200);
    assert_eq!(
        issues(&update.body),
        vec![issue("error", "value", "Patient.birthDate")]
    );

    // $validate stored nothing: only the one create is in the history.
    assert_eq!(get(base, "_history").body["total"], 1);
}

#[test]
fn warnings_mode_stores_invalid_resources() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &["--validation", "warnings"]);
    let answer = post(
        &server.base,
        "Patient",
        r#"{"resourceType":"Patient","gender":"boy"}"#,
    );
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.body["gender"], "boy");
}

#[test]
fn repeated_properties_are_refused() {
    let (server, _dir) = TestServer::start();
    let answer = post(
        &server.base,
        "Patient",
        r#"{"resourceType":"Patient","name":[{"given":["Ann"],"given":["Bo"]}]}"#,
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.body["issue"][0]["code"], "structure");
    let diagnostics = answer.body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.contains("name[0].given"), "{diagnostics}");
}

const PROFILE: &str = r#"{"resourceType":"StructureDefinition","id":"patient-dob","url":"http://example.org/fhir/StructureDefinition/patient-dob","name":"PatientWithBirthDate","status":"active","kind":"resource","abstract":false,"type":"Patient","baseDefinition":"http://hl7.org/fhir/StructureDefinition/Patient","derivation":"constraint","differential":{"element":[{"id":"Patient","path":"Patient"},{"id":"Patient.birthDate","path":"Patient.birthDate","min":1}]}}"#;

const CLAIMING: &str = r#"{"resourceType":"Patient","meta":{"profile":["http://example.org/fhir/StructureDefinition/patient-dob"]},"gender":"male"}"#;

fn put(base: &str, path: &str, body: &str) -> Answer {
    let mut response = agent()
        .put(&format!("{base}/{path}"))
        .header("Content-Type", "application/fhir+json")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

#[test]
fn stored_profiles_apply_to_resources_that_claim_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]);
    let base = server.base.clone();

    // Before the profile is stored, a claim is only a warning.
    assert_eq!(post(&base, "Patient", CLAIMING).status, 201);

    let stored = put(&base, "StructureDefinition/patient-dob", PROFILE);
    assert_eq!(stored.status, 201, "{}", stored.body);
    let refused = post(&base, "Patient", CLAIMING);
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.body["issue"][0]["expression"][0],
        "Patient.birthDate"
    );
    assert!(
        refused.body["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("patient-dob")
    );
    let with_birth_date = CLAIMING.replace(r#""gender":"male""#, r#""birthDate":"1970-01-01""#);
    assert_eq!(post(&base, "Patient", &with_birth_date).status, 201);

    // $validate against a named profile, and an unknown one.
    let checked = post(
        &base,
        "Patient/$validate?profile=http://example.org/fhir/StructureDefinition/patient-dob",
        r#"{"resourceType":"Patient"}"#,
    );
    assert_eq!(checked.status, 200);
    assert!(
        issues(&checked.body)
            .iter()
            .any(|(severity, _, at)| severity == "error" && at == "Patient.birthDate"),
        "{}",
        checked.body
    );
    let unknown = post(
        &base,
        "Patient/$validate?profile=http://example.org/nothing",
        r#"{"resourceType":"Patient"}"#,
    );
    assert_eq!(unknown.status, 404);

    // The registry is rebuilt from the store at start-up.
    server.kill();
    let server = TestServer::start_in(dir.path(), &[]);
    assert_eq!(post(&server.base, "Patient", CLAIMING).status, 422);

    // Deleting the profile lifts it.
    let mut deleted = agent()
        .delete(&format!("{}/StructureDefinition/patient-dob", server.base))
        .call()
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 204);
    let _ = deleted.body_mut().read_to_string();
    assert_eq!(post(&server.base, "Patient", CLAIMING).status, 201);
}

#[test]
fn a_profile_the_server_cannot_apply_is_refused() {
    let (server, _dir) = TestServer::start();
    // Re-slicing is not supported: storing it would let claiming resources pass unchecked.
    let unusable = PROFILE.replace(
        r#"{"id":"Patient.birthDate","path":"Patient.birthDate","min":1}"#,
        r#"{"id":"Patient.identifier:a/b","path":"Patient.identifier","sliceName":"a/b"}"#,
    );
    let answer = put(&server.base, "StructureDefinition/patient-dob", &unusable);
    assert_eq!(answer.status, 422, "{}", answer.body);
}

#[test]
fn invariants_resolve_references_in_the_store() {
    let (server, _dir) = TestServer::start();
    let base = &server.base;
    assert_eq!(
        put(
            base,
            "Organization/o1",
            r#"{"resourceType":"Organization","id":"o1","name":"Acme"}"#
        )
        .status,
        201
    );
    assert_eq!(
        put(
            base,
            "Practitioner/p1",
            r#"{"resourceType":"Practitioner","id":"p1"}"#
        )
        .status,
        201
    );
    // ctm-1: a participant acting on behalf of an organization must be a Practitioner;
    // only the stored Organization/o1 shows that this member is not one.
    let team = |member: &str| {
        format!(
            r#"{{"resourceType":"CareTeam","participant":[{{"member":{{"reference":"{member}"}},"onBehalfOf":{{"reference":"Organization/o1"}}}}]}}"#
        )
    };
    let refused = post(base, "CareTeam", &team("Organization/o1"));
    assert_eq!(refused.status, 422, "{}", refused.body);
    let diagnostics = refused.body["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.starts_with("ctm-1"), "{diagnostics}");
    assert_eq!(
        refused.body["issue"][0]["expression"][0],
        "CareTeam.participant[0]"
    );
    assert_eq!(post(base, "CareTeam", &team("Practitioner/p1")).status, 201);
    // A member the store does not hold cannot be checked, so the invariant holds.
    assert_eq!(
        post(base, "CareTeam", &team("Practitioner/unknown")).status,
        201
    );
}
