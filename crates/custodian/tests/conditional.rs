//! Conditional interactions over HTTP against the real `custodian serve` binary:
//! create (`If-None-Exist`), update, delete and patch on `[type]?criteria` with zero,
//! one and several matches, and their Bundle forms (`ifNoneExist`, conditional URLs,
//! conditional references) in transactions and batches.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

mod common;

use serde_json::{Value, json};

use common::fhir::*;

const SYS: &str = "http://example.org/ids";

fn patient_with(identifier: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": SYS, "value": identifier}],
        "active": true,
    })
}

/// Stores a Patient with `identifier` under `id`.
fn stored(fhir: &Fhir, id: &str, identifier: &str) {
    let mut patient = patient_with(identifier);
    patient["id"] = json!(id);
    fhir.store(patient);
}

/// The ids of the live Patients with `identifier`.
fn with_identifier(fhir: &Fhir, identifier: &str) -> Vec<String> {
    ids(&fhir.search(&format!("Patient?identifier={SYS}|{identifier}")))
}

fn post_if_none_exist(fhir: &Fhir, resource: &Value, criteria: &str) -> Reply {
    fhir.request(
        "POST",
        "Patient",
        &[("content-type", FHIR_JSON), ("if-none-exist", criteria)],
        Some(&resource.to_string()),
    )
}

#[test]
fn conditional_create() {
    let fhir = Fhir::start();
    let criteria = format!("identifier={SYS}|A");
    let created = post_if_none_exist(&fhir, &patient_with("A"), &criteria).ok(201);
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(with_identifier(&fhir, "A"), std::slice::from_ref(&id));

    // One match: nothing is created; the answer is the existing resource.
    let mut changed = patient_with("A");
    changed["active"] = json!(false);
    let reply = post_if_none_exist(&fhir, &changed, &criteria);
    let existing = reply.ok(200);
    assert_eq!(existing["id"], id.as_str());
    assert_eq!(existing["active"], true);
    assert!(
        reply
            .header("location")
            .unwrap()
            .contains(&format!("Patient/{id}"))
    );
    assert_eq!(with_identifier(&fhir, "A"), std::slice::from_ref(&id));

    // Percent-encoded criteria, and the `Patient?` form.
    let encoded = "identifier=http%3A%2F%2Fexample.org%2Fids%7CA";
    assert_eq!(
        post_if_none_exist(&fhir, &changed, encoded).ok(200)["id"],
        id.as_str()
    );
    let typed = format!("Patient?identifier={SYS}|A");
    assert_eq!(
        post_if_none_exist(&fhir, &changed, &typed).ok(200)["id"],
        id.as_str()
    );

    // Several matches: 412, nothing created.
    stored(&fhir, "dup1", "DUP");
    stored(&fhir, "dup2", "DUP");
    let reply = post_if_none_exist(
        &fhir,
        &patient_with("DUP"),
        &format!("identifier={SYS}|DUP"),
    );
    reply.outcome(412);
    assert_eq!(with_identifier(&fhir, "DUP"), ["dup1", "dup2"]);

    // Criteria that are not search parameters are refused, not ignored.
    let reply = post_if_none_exist(&fhir, &patient_with("B"), "frobnicate=1");
    assert!(reply.outcome(400).contains("frobnicate"));
    assert!(with_identifier(&fhir, "B").is_empty());
}

#[test]
fn conditional_update() {
    let fhir = Fhir::start();
    let path = format!("Patient?identifier={SYS}|U");
    // No match, no id: a create with a server id.
    let reply = fhir.put(&path, &patient_with("U"));
    let created = reply.ok(201);
    let id = created["id"].as_str().unwrap().to_string();
    assert!(reply.header("location").is_some());
    // One match: an update of it.
    let mut changed = patient_with("U");
    changed["active"] = json!(false);
    let updated = fhir.put(&path, &changed).ok(200);
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["meta"]["versionId"], "2");
    assert_eq!(updated["active"], false);
    // The body may name the match's id, but no other.
    changed["id"] = json!(id);
    assert_eq!(fhir.put(&path, &changed).ok(200)["meta"]["versionId"], "3");
    changed["id"] = json!("someone-else");
    fhir.put(&path, &changed).outcome(400);
    // No match, with an id: an update that creates that id.
    let mut named = patient_with("V");
    named["id"] = json!("chosen-id");
    let created = fhir
        .put(&format!("Patient?identifier={SYS}|V"), &named)
        .ok(201);
    assert_eq!(created["id"], "chosen-id");
    // Several matches: 412.
    stored(&fhir, "dup1", "DUP");
    stored(&fhir, "dup2", "DUP");
    fhir.put(
        &format!("Patient?identifier={SYS}|DUP"),
        &patient_with("DUP"),
    )
    .outcome(412);
    // No criteria at all.
    fhir.put("Patient", &patient_with("W")).outcome(400);
}

#[test]
fn conditional_delete() {
    let fhir = Fhir::start();
    stored(&fhir, "d1", "D1");
    stored(&fhir, "keep", "KEEP");
    let reply = fhir.request("DELETE", &format!("Patient?identifier={SYS}|D1"), &[], None);
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(fhir.get("Patient/d1").status, 410);
    // No match: nothing to do.
    let reply = fhir.request(
        "DELETE",
        &format!("Patient?identifier={SYS}|NONE"),
        &[],
        None,
    );
    assert_eq!(reply.status, 204, "{}", reply.text);
    // Several matches: every one is deleted.
    stored(&fhir, "m1", "MANY");
    stored(&fhir, "m2", "MANY");
    stored(&fhir, "m3", "MANY");
    let reply = fhir.request(
        "DELETE",
        &format!("Patient?identifier={SYS}|MANY"),
        &[],
        None,
    );
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert!(with_identifier(&fhir, "MANY").is_empty());
    for id in ["m1", "m2", "m3"] {
        assert_eq!(fhir.get(&format!("Patient/{id}")).status, 410);
    }
    assert_eq!(fhir.get("Patient/keep").status, 200);
    // No criteria: refused rather than deleting everything.
    fhir.request("DELETE", "Patient", &[], None).outcome(400);
    assert_eq!(fhir.get("Patient/keep").status, 200);
}

#[test]
fn conditional_patch() {
    let fhir = Fhir::start();
    stored(&fhir, "pa1", "P1");
    let patch = r#"[{"op":"replace","path":"/active","value":false}]"#;
    let run = |criteria: &str| {
        fhir.request(
            "PATCH",
            &format!("Patient?identifier={SYS}|{criteria}"),
            &[("content-type", "application/json-patch+json")],
            Some(patch),
        )
    };
    let patched = run("P1").ok(200);
    assert_eq!(patched["id"], "pa1");
    assert_eq!(patched["active"], false);
    assert_eq!(patched["meta"]["versionId"], "2");
    run("NONE").outcome(404);
    stored(&fhir, "dup1", "DUP");
    stored(&fhir, "dup2", "DUP");
    run("DUP").outcome(412);
    assert_eq!(fhir.get("Patient/dup1").json()["active"], true);
}

fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

#[test]
fn transaction_with_conditional_entries_and_references() {
    let fhir = Fhir::start();
    stored(&fhir, "t1", "T1");
    stored(&fhir, "t3", "T3");
    fhir.store(json!({
        "resourceType": "Practitioner", "id": "dr1",
        "identifier": [{"system": SYS, "value": "DR1"}],
    }));
    let bundle = transaction(vec![
        json!({
            "fullUrl": "urn:uuid:6f1c9d3e-0000-4000-8000-000000000001",
            "resource": {"resourceType": "Organization", "identifier": [{"system": SYS, "value": "ORG1"}], "name": "Org"},
            "request": {"method": "POST", "url": "Organization", "ifNoneExist": format!("identifier={SYS}|ORG1")},
        }),
        json!({
            "fullUrl": "urn:uuid:6f1c9d3e-0000-4000-8000-000000000002",
            "resource": patient_with("T1"),
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={SYS}|T1")},
        }),
        json!({
            "resource": {
                "resourceType": "Observation", "status": "final",
                "code": {"text": "note"},
                "subject": {"reference": "urn:uuid:6f1c9d3e-0000-4000-8000-000000000002"},
                "performer": [
                    {"reference": format!("Practitioner?identifier={SYS}|DR1")},
                    {"reference": "urn:uuid:6f1c9d3e-0000-4000-8000-000000000001"},
                ],
            },
            "request": {"method": "POST", "url": "Observation"},
        }),
        json!({
            "resource": patient_with("T2"),
            "request": {"method": "PUT", "url": format!("Patient?identifier={SYS}|T2")},
        }),
        json!({
            "request": {"method": "DELETE", "url": format!("Patient?identifier={SYS}|T3")},
        }),
    ]);
    let response = fhir.post("", &bundle).ok(200);
    let answers = entries(&response);
    let statuses: Vec<&str> = answers
        .iter()
        .map(|entry| entry["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses[0], "201 Created", "{response}");
    assert_eq!(statuses[1], "200 OK", "{response}");
    assert_eq!(statuses[2], "201 Created", "{response}");
    assert_eq!(statuses[3], "201 Created", "{response}");
    assert!(statuses[4].starts_with("204"), "{response}");
    assert!(
        answers[1]["response"]["location"]
            .as_str()
            .unwrap()
            .starts_with("Patient/t1/_history/"),
        "{response}"
    );
    let org = answers[0]["response"]["location"].as_str().unwrap();
    let org_id = org.split('/').nth(1).unwrap();
    let observation = answers[2]["response"]["location"].as_str().unwrap();
    let observation = observation.split("/_history").next().unwrap();
    let stored_observation = fhir.get(observation).ok(200);
    assert_eq!(stored_observation["subject"]["reference"], "Patient/t1");
    assert_eq!(
        stored_observation["performer"][0]["reference"],
        "Practitioner/dr1"
    );
    assert_eq!(
        stored_observation["performer"][1]["reference"],
        format!("Organization/{org_id}")
    );
    assert_eq!(with_identifier(&fhir, "T2").len(), 1);
    assert_eq!(fhir.get("Patient/t3").status, 410);

    // The same transaction again: the Organization now exists.
    let again = fhir.post("", &bundle).ok(200);
    let answers = entries(&again);
    assert_eq!(answers[0]["response"]["status"], "200 OK", "{again}");
    assert!(
        answers[0]["response"]["location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("Organization/{org_id}/")),
        "{again}"
    );
    assert_eq!(answers[3]["response"]["status"], "200 OK", "{again}");
    let organizations = fhir.search(&format!("Organization?identifier={SYS}|ORG1"));
    assert_eq!(ids(&organizations), [org_id.to_string()]);
}

#[test]
fn transaction_failures_leave_nothing_behind() {
    let fhir = Fhir::start();
    stored(&fhir, "dup1", "DUP");
    stored(&fhir, "dup2", "DUP");
    let created = json!({
        "resource": patient_with("NEVER"),
        "request": {"method": "POST", "url": "Patient"},
    });
    // A conditional reference that matches nothing: 400.
    let bundle = transaction(vec![
        created.clone(),
        json!({
            "resource": {
                "resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "subject": {"reference": format!("Patient?identifier={SYS}|NOBODY")},
            },
            "request": {"method": "POST", "url": "Observation"},
        }),
    ]);
    let diagnostics = fhir.post("", &bundle).outcome(400);
    assert!(diagnostics.contains("Bundle.entry[1]"), "{diagnostics}");
    assert!(diagnostics.contains("NOBODY"), "{diagnostics}");
    // A conditional reference that matches several: 400.
    let bundle = transaction(vec![
        created.clone(),
        json!({
            "resource": {
                "resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "subject": {"reference": format!("Patient?identifier={SYS}|DUP")},
            },
            "request": {"method": "POST", "url": "Observation"},
        }),
    ]);
    fhir.post("", &bundle).outcome(400);
    // ifNoneExist, conditional update and conditional delete... with several matches: 412.
    for request in [
        json!({"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={SYS}|DUP")}),
        json!({"method": "PUT", "url": format!("Patient?identifier={SYS}|DUP")}),
    ] {
        let bundle = transaction(vec![
            created.clone(),
            json!({"resource": patient_with("DUP"), "request": request}),
        ]);
        let diagnostics = fhir.post("", &bundle).outcome(412);
        assert!(diagnostics.contains("Bundle.entry[1]"), "{diagnostics}");
    }
    assert!(with_identifier(&fhir, "NEVER").is_empty());
    assert_eq!(with_identifier(&fhir, "DUP"), ["dup1", "dup2"]);
}

#[test]
fn batch_with_searches_and_conditional_entries() {
    let fhir = Fhir::start();
    stored(&fhir, "b1", "B1");
    stored(&fhir, "dup1", "DUP");
    stored(&fhir, "dup2", "DUP");
    let bundle = json!({
        "resourceType": "Bundle", "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": format!("Patient?identifier={SYS}|B1")}},
            {"resource": patient_with("B1"),
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={SYS}|B1")}},
            {"resource": patient_with("DUP"),
             "request": {"method": "POST", "url": "Patient", "ifNoneExist": format!("identifier={SYS}|DUP")}},
            {"resource": patient_with("B2"),
             "request": {"method": "PUT", "url": format!("Patient?identifier={SYS}|B2")}},
            {"request": {"method": "DELETE", "url": format!("Patient?identifier={SYS}|DUP")}},
            {"request": {"method": "GET", "url": "Patient?frobnicate=1&identifier=http://example.org/ids|B1"}},
        ],
    });
    let response = fhir.post("", &bundle).ok(200);
    let answers = entries(&response);
    let searchset = &answers[0]["resource"];
    assert_eq!(searchset["type"], "searchset", "{response}");
    assert_eq!(ids(searchset), ["b1"]);
    assert_eq!(answers[0]["response"]["status"], "200 OK");
    assert_eq!(answers[1]["response"]["status"], "200 OK", "{response}");
    // The DELETE runs first (DELETE, POST, PUT, GET), so the DUP create finds nothing.
    assert_eq!(
        answers[2]["response"]["status"], "201 Created",
        "{response}"
    );
    assert_eq!(
        answers[3]["response"]["status"], "201 Created",
        "{response}"
    );
    assert!(
        answers[4]["response"]["status"]
            .as_str()
            .unwrap()
            .starts_with("204")
    );
    assert_eq!(with_identifier(&fhir, "B2").len(), 1);
    assert_eq!(fhir.get("Patient/dup1").status, 410);
    assert_eq!(fhir.get("Patient/dup2").status, 410);
    // Conditional references are a transaction feature: a batch stores them as written.
    let batch = json!({
        "resourceType": "Bundle", "type": "batch",
        "entry": [{
            "resource": {
                "resourceType": "Observation", "status": "final", "code": {"text": "x"},
                "subject": {"reference": format!("Patient?identifier={SYS}|B1")},
            },
            "request": {"method": "POST", "url": "Observation"},
        }],
    });
    let answer = &entries(&fhir.post("", &batch).ok(200))[0];
    assert_eq!(answer["response"]["status"], "201 Created", "{answer}");
    let location = answer["response"]["location"].as_str().unwrap();
    let stored = fhir
        .get(location.split("/_history").next().unwrap())
        .ok(200);
    assert_eq!(
        stored["subject"]["reference"],
        format!("Patient?identifier={SYS}|B1")
    );
    // A search entry is lenient: it names what it ignored.
    let lenient = &answers[5]["resource"];
    assert_eq!(ids(lenient), ["b1"]);
    assert!(
        entries(lenient)
            .iter()
            .any(|entry| entry["search"]["mode"] == "outcome")
    );
}
