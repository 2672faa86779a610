//! Batch and transaction Bundles over HTTP, including every Synthea bundle.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};

use common::{TestServer, agent, testdata};
use serde_json::{Value, json};

fn post(base: &str, body: &str) -> (u16, Value) {
    let mut response = agent()
        .post(base)
        .header("Content-Type", "application/fhir+json")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(url: &str) -> (u16, Value) {
    let mut response = agent().get(url).call().unwrap();
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn history_total(base: &str) -> u64 {
    get(&format!("{base}/_history?_count=1")).1["total"]
        .as_u64()
        .unwrap()
}

#[test]
fn transaction_resolves_uuid_references_and_answers_in_order() {
    let (server, _dir) = TestServer::start();
    let base = &server.base;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                "resource": {"resourceType": "Observation", "status": "final",
                    "code": {"text": "weight"},
                    "subject": {"reference": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059"}},
                "request": {"method": "POST", "url": "Observation"}
            },
            {
                "fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
                "resource": {"resourceType": "Patient", "name": [{"family": "Chalmers"}]},
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "resource": {"resourceType": "Organization", "id": "org1", "name": "Acme"},
                "request": {"method": "PUT", "url": "Organization/org1"}
            },
            {"request": {"method": "GET", "url": "Organization/org1"}}
        ]
    });
    let (status, answer) = post(base, &bundle.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "transaction-response");
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["response"]["status"], "201 Created");
    assert_eq!(entries[1]["response"]["status"], "201 Created");
    assert_eq!(entries[2]["response"]["status"], "201 Created");
    assert_eq!(entries[3]["response"]["status"], "200 OK");
    assert_eq!(entries[3]["resource"]["name"], "Acme");
    for entry in &entries[..3] {
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
        assert!(entry["response"]["lastModified"].is_string());
    }
    let observation_location = entries[0]["response"]["location"].as_str().unwrap();
    let patient_location = entries[1]["response"]["location"].as_str().unwrap();
    assert!(
        patient_location.starts_with("Patient/"),
        "{patient_location}"
    );
    assert!(patient_location.ends_with("/_history/1"));
    let patient_ref = patient_location.trim_end_matches("/_history/1");

    let (status, observation) = get(&format!("{base}/{observation_location}"));
    assert_eq!(status, 200);
    assert_eq!(observation["subject"]["reference"], patient_ref);
    let (status, _) = get(&format!("{base}/{patient_ref}"));
    assert_eq!(status, 200);
}

#[test]
fn a_failing_transaction_leaves_the_store_as_it_was() {
    let (server, _dir) = TestServer::start();
    let base = &server.base;
    let (status, _) = post(
        base,
        &json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "keep", "active": true},
             "request": {"method": "PUT", "url": "Patient/keep"}}
        ]})
        .to_string(),
    );
    assert_eq!(status, 200);
    let before = history_total(base);

    // The last entry is invalid: nothing of the Bundle may be stored.
    let bad = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "A"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/keep"}},
        {"resource": {"resourceType": "Patient", "id": "keep", "active": false},
         "request": {"method": "PUT", "url": "Patient/keep"}},
        {"resource": {"resourceType": "Patient", "gender": "unknown-gender"},
         "request": {"method": "POST", "url": "Patient"}}
    ]});
    let (status, outcome) = post(base, &bad.to_string());
    assert_eq!(status, 422, "{outcome}");
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(
        outcome["issue"][0]["expression"][0], "Bundle.entry[3].resource.gender",
        "{outcome}"
    );
    assert_eq!(history_total(base), before);
    let (status, kept) = get(&format!("{base}/Patient/keep"));
    assert_eq!(status, 200);
    assert_eq!(kept["active"], true);
    assert_eq!(kept["meta"]["versionId"], "1");

    // A store-level failure (stale If-Match) rolls back too, and names its entry.
    let stale = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "keep", "active": false},
         "request": {"method": "PUT", "url": "Patient/keep", "ifMatch": "W/\"7\""}}
    ]});
    let (status, outcome) = post(base, &stale.to_string());
    assert_eq!(status, 412, "{outcome}");
    let diagnostics = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(diagnostics.starts_with("Bundle.entry[1]"), "{diagnostics}");
    assert_eq!(history_total(base), before);
}

#[test]
fn batch_entries_succeed_or_fail_alone() {
    let (server, _dir) = TestServer::start();
    let base = &server.base;
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "active": true},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "gender": "x"},
         "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "BREW", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "b1"},
         "request": {"method": "PUT", "url": "Patient/b1"}}
    ]});
    let (status, answer) = post(base, &batch.to_string());
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["type"], "batch-response");
    let statuses: Vec<&str> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "201 Created",
            "422 Unprocessable Entity",
            "404 Not Found",
            "400 Bad Request",
            "201 Created"
        ]
    );
    assert_eq!(
        answer["entry"][1]["response"]["outcome"]["resourceType"],
        "OperationOutcome"
    );
    assert_eq!(history_total(base), 2);
}

#[test]
fn bad_bundles_are_refused() {
    let (server, _dir) = TestServer::start();
    let base = &server.base;
    for (body, status) in [
        (json!({"resourceType": "Patient"}), 400),
        (json!({"resourceType": "Bundle", "type": "collection"}), 400),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "POST", "url": "Nothing"}, "resource": {"resourceType": "Patient"}}
            ]}),
            404,
        ),
        (
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"request": {"method": "POST", "url": "Patient"}}
            ]}),
            400,
        ),
    ] {
        let (answered, outcome) = post(base, &body.to_string());
        assert_eq!(answered, status, "{body} -> {outcome}");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
    }
    assert_eq!(history_total(base), 0);
}

/// Every reference string in a resource.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                match (key.as_str(), child) {
                    ("reference", Value::String(reference)) => found.push(reference.clone()),
                    _ => references(child, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

#[test]
fn every_synthea_bundle_loads_and_every_reference_resolves() {
    let Some(folder) = testdata("synthea/synthea-100") else {
        return;
    };
    let (server, _dir) = TestServer::start();
    let base = &server.base;
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    // Hospital and practitioner bundles first, as Synthea intends.
    files.sort_by_key(|path| {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        !(name.starts_with("hospital") || name.starts_with("practitioner"))
    });
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    let mut locations = Vec::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let bundle: Value = serde_json::from_str(&text).unwrap();
        for entry in bundle["entry"].as_array().unwrap() {
            *expected
                .entry(
                    entry["resource"]["resourceType"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
                .or_default() += 1;
        }
        let (status, answer) = post(base, &text);
        assert_eq!(status, 200, "{}: {answer}", path.display());
        for entry in answer["entry"].as_array().unwrap() {
            assert_eq!(entry["response"]["status"], "201 Created");
            let location = entry["response"]["location"].as_str().unwrap();
            locations.push(location.trim_end_matches("/_history/1").to_string());
        }
    }
    assert_eq!(files.len(), 102);
    // Per-type counts match the bundles.
    for (resource_type, count) in &expected {
        let (status, history) = get(&format!("{base}/{resource_type}/_history?_count=1"));
        assert_eq!(status, 200);
        assert_eq!(history["total"].as_u64(), Some(*count), "{resource_type}");
    }
    // The server adds the duplicate worklist's Tasks (Synthea has people who share a
    // birth date and a town); `$duplicates` waits until every check has run.
    let (status, _) = get(&format!("{base}/Patient/$duplicates"));
    assert_eq!(status, 200);
    let (_, worklist) = get(&format!(
        "{base}/Task?code=urn:custodian:mpi%7Cpossible-duplicate&_summary=count"
    ));
    let total: u64 = expected.values().sum::<u64>() + worklist["total"].as_u64().unwrap();
    assert_eq!(history_total(base), total);
    // Every reference resolves: local ones to a contained resource, the rest to a stored
    // one. The system history walks every stored resource, a page at a time.
    let stored: HashSet<String> = locations.iter().cloned().collect();
    let mut checked = 0;
    let mut walked = 0;
    let mut next = Some(format!("{base}/_history?_count=1000"));
    while let Some(url) = next.take() {
        let (status, page) = get(&url);
        assert_eq!(status, 200);
        for entry in page["entry"].as_array().unwrap() {
            let resource = &entry["resource"];
            walked += 1;
            let mut found = Vec::new();
            references(resource, &mut found);
            for reference in found {
                if let Some(local) = reference.strip_prefix('#') {
                    let contained = resource["contained"].as_array().unwrap();
                    assert!(contained.iter().any(|c| c["id"] == local), "{reference}");
                } else {
                    assert!(stored.contains(&reference), "dangling {reference}");
                }
                checked += 1;
            }
        }
        next = page["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|link| link["relation"] == "next")
            .map(|link| link["url"].as_str().unwrap().to_string());
    }
    assert_eq!(walked, total);
    eprintln!(
        "synthea-100: {total} resources in {} bundles; {checked} references resolved",
        files.len()
    );
    assert!(checked > 100_000);
}
