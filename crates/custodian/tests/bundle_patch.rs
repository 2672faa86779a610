//! PATCH entries in batch and transaction Bundles over HTTP: FHIRPath Patch
//! (`Parameters`) and JSON Patch (a base64 `Binary`), conditional URLs, `ifMatch`,
//! processing order, and a failed patch rolling back its transaction.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::fhir::{FHIR_JSON, Fhir, Reply};
use serde_json::{Value, json};

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let group = chunk.iter().enumerate().fold(0u32, |group, (i, byte)| {
            group | (u32::from(*byte) << (16 - 8 * i))
        });
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((group >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A FHIRPath Patch with one operation of `kind` on `path`, and more `parts`.
fn fhirpath_patch(kind: &str, path: &str, parts: Value) -> Value {
    let mut all = vec![
        json!({"name": "type", "valueCode": kind}),
        json!({"name": "path", "valueString": path}),
    ];
    all.extend(parts.as_array().cloned().unwrap_or_default());
    json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": all}]})
}

/// A JSON Patch document as the Binary a Bundle entry carries.
fn json_patch_binary(operations: Value) -> Value {
    json!({
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64(operations.to_string().as_bytes()),
    })
}

fn patch_entry(url: &str, resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "PATCH", "url": url}})
}

fn bundle(kind: &str, entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": kind, "entry": entries})
}

fn post_bundle(fhir: &Fhir, bundle: &Value) -> Reply {
    fhir.request(
        "POST",
        "",
        &[("content-type", FHIR_JSON)],
        Some(&bundle.to_string()),
    )
}

fn status(entry: &Value) -> &str {
    entry["response"]["status"].as_str().unwrap()
}

fn seed(fhir: &Fhir) {
    fhir.store(json!({"resourceType": "Patient", "id": "a", "active": true,
        "birthDate": "1974-12-25",
        "identifier": [{"system": "http://x", "value": "1"}]}));
    fhir.store(json!({"resourceType": "Patient", "id": "b", "active": true,
        "identifier": [{"system": "http://x", "value": "2"}, {"system": "http://y", "value": "same"}]}));
    fhir.store(json!({"resourceType": "Patient", "id": "c",
        "identifier": [{"system": "http://y", "value": "same"}]}));
}

fn version(fhir: &Fhir, path: &str) -> String {
    fhir.get(path).json()["meta"]["versionId"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn transaction_applies_both_patch_formats_in_order() {
    let fhir = Fhir::start();
    seed(&fhir);
    let transaction = bundle(
        "transaction",
        vec![
            // GET comes last: it sees the patched resource.
            json!({"request": {"method": "GET", "url": "Patient/a"}}),
            patch_entry(
                "Patient/a",
                fhirpath_patch(
                    "replace",
                    "Patient.birthDate",
                    json!([{"name": "value", "valueDate": "1974-12-26"}]),
                ),
            ),
            patch_entry(
                "Patient/b",
                json_patch_binary(json!([
                    {"op": "replace", "path": "/active", "value": false},
                    {"op": "add", "path": "/gender", "value": "female"},
                    {"op": "add", "path": "/generalPractitioner",
                        "value": [{"reference": "urn:uuid:5c1b6f4e-7d3a-4f9b-9d0e-2a8f1b3c4d5e"}]}
                ])),
            ),
            json!({"fullUrl": "urn:uuid:5c1b6f4e-7d3a-4f9b-9d0e-2a8f1b3c4d5e",
                "resource": {"resourceType": "Practitioner", "name": [{"family": "Who"}]},
                "request": {"method": "POST", "url": "Practitioner"}}),
        ],
    );
    let reply = post_bundle(&fhir, &transaction);
    let answer = reply.ok(200);
    assert_eq!(answer["type"], "transaction-response");
    let entries = answer["entry"].as_array().unwrap();
    assert_eq!(status(&entries[1]), "200 OK");
    assert_eq!(entries[1]["response"]["etag"], "W/\"2\"");
    assert_eq!(entries[1]["response"]["location"], "Patient/a/_history/2");
    assert_eq!(status(&entries[2]), "200 OK");
    assert_eq!(status(&entries[3]), "201 Created");
    assert_eq!(entries[0]["resource"]["birthDate"], "1974-12-26");

    let a = fhir.get("Patient/a").json();
    assert_eq!(a["birthDate"], "1974-12-26");
    assert_eq!(a["active"], true);
    let b = fhir.get("Patient/b").json();
    assert_eq!(b["active"], false);
    assert_eq!(b["gender"], "female");
    // The reference to the entry created in the same transaction was rewritten.
    let practitioner = entries[3]["response"]["location"].as_str().unwrap();
    let practitioner = practitioner.split("/_history/").next().unwrap();
    assert_eq!(b["generalPractitioner"][0]["reference"], practitioner);
    // History records the patch as a PATCH.
    let history = fhir.get("Patient/b/_history").json();
    assert_eq!(history["entry"][0]["request"]["method"], "PATCH");
}

#[test]
fn batch_patch_entries_stand_alone() {
    let fhir = Fhir::start();
    seed(&fhir);
    fhir.store(json!({"resourceType": "Patient", "id": "gone"}));
    fhir.request("DELETE", "Patient/gone", &[], None);
    fhir.store(json!({"resourceType": "Patient", "id": "d"}));
    let replace_gender = || {
        fhirpath_patch(
            "replace",
            "Patient.gender",
            json!([{"name": "value", "valueCode": "male"}]),
        )
    };
    let add_gender = fhirpath_patch(
        "add",
        "Patient",
        json!([{"name": "name", "valueString": "gender"}, {"name": "value", "valueCode": "other"}]),
    );
    let mut stale = patch_entry(
        "Patient/b",
        json_patch_binary(json!([{"op": "remove", "path": "/active"}])),
    );
    stale["request"]["ifMatch"] = json!("W/\"7\"");
    let mut current = patch_entry(
        "Patient/c",
        json_patch_binary(json!([{"op": "add", "path": "/active", "value": true}])),
    );
    current["request"]["ifMatch"] = json!("W/\"1\"");
    let batch = bundle(
        "batch",
        vec![
            patch_entry("Patient/a", add_gender),
            patch_entry("Patient/nobody", replace_gender()),
            // Nothing to replace: the patch does not fit the resource. On a resource no
            // other entry changes: batch entries must not depend on each other (R4
            // http.html, batch rules), and the server runs them concurrently, so one
            // that gave b a gender first would make this replace succeed.
            patch_entry("Patient/d", replace_gender()),
            // No operation type: a malformed patch.
            patch_entry(
                "Patient/b",
                json!({"resourceType": "Parameters", "parameter": [{"name": "operation",
                    "part": [{"name": "path", "valueString": "Patient.active"}]}]}),
            ),
            stale,
            current,
            patch_entry("Patient/gone", replace_gender()),
            patch_entry(
                "Patient?identifier=http://x|2",
                json_patch_binary(json!([{"op": "add", "path": "/gender", "value": "unknown"}])),
            ),
            patch_entry("Patient?identifier=http://x|404", replace_gender()),
            patch_entry("Patient?identifier=http://y|same", replace_gender()),
            // A patch whose result is invalid.
            patch_entry(
                "Patient/a",
                json_patch_binary(json!([{"op": "add", "path": "/birthDate", "value": "soon"}])),
            ),
            patch_entry(
                "Patient/a",
                json!({"resourceType": "Binary", "contentType": "text/plain", "data": "e30="}),
            ),
        ],
    );
    let answer = post_bundle(&fhir, &batch).ok(200);
    assert_eq!(answer["type"], "batch-response");
    let entries = answer["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries.iter().map(status).collect();
    assert_eq!(
        statuses,
        [
            "200 OK",
            "404 Not Found",
            "422 Unprocessable Entity",
            "400 Bad Request",
            "412 Precondition Failed",
            "200 OK",
            "410 Gone",
            "200 OK",
            "404 Not Found",
            "412 Precondition Failed",
            "422 Unprocessable Entity",
            "400 Bad Request",
        ]
    );
    for entry in entries {
        if !status(entry).starts_with("200") {
            assert_eq!(
                entry["response"]["outcome"]["resourceType"],
                "OperationOutcome"
            );
        }
    }
    assert_eq!(fhir.get("Patient/a").json()["gender"], "other");
    assert_eq!(version(&fhir, "Patient/a"), "2");
    let b = fhir.get("Patient/b").json();
    assert_eq!(b["gender"], "unknown");
    assert_eq!(b["active"], true, "the stale ifMatch patch was not applied");
    assert_eq!(fhir.get("Patient/c").json()["active"], true);
    assert_eq!(version(&fhir, "Patient/c"), "2");
    assert_eq!(version(&fhir, "Patient/d"), "1");
}

#[test]
fn failed_patch_rolls_back_the_transaction() {
    let fhir = Fhir::start();
    seed(&fhir);
    let count_new = |fhir: &Fhir| {
        fhir.search("Patient?identifier=http://x|new")["entry"]
            .as_array()
            .map_or(0, Vec::len)
    };
    let cases = [
        (
            patch_entry(
                "Patient/b",
                fhirpath_patch(
                    "replace",
                    "Patient.gender",
                    json!([{"name": "value", "valueCode": "male"}]),
                ),
            ),
            422,
        ),
        (
            patch_entry(
                "Patient/nobody",
                json_patch_binary(json!([{"op": "remove", "path": "/active"}])),
            ),
            404,
        ),
        (
            patch_entry(
                "Patient?identifier=http://y|same",
                json_patch_binary(json!([{"op": "remove", "path": "/active"}])),
            ),
            412,
        ),
        (
            patch_entry(
                "Patient?identifier=http://x|404",
                json_patch_binary(json!([{"op": "remove", "path": "/active"}])),
            ),
            404,
        ),
        (
            {
                let mut entry = patch_entry(
                    "Patient/b",
                    json_patch_binary(json!([{"op": "remove", "path": "/active"}])),
                );
                entry["request"]["ifMatch"] = json!("W/\"3\"");
                entry
            },
            412,
        ),
        (
            patch_entry(
                "Patient/b",
                json_patch_binary(json!([{"op": "test", "path": "/active", "value": false}])),
            ),
            422,
        ),
    ];
    for (failing, expected_status) in cases {
        let transaction = bundle(
            "transaction",
            vec![
                json!({"resource": {"resourceType": "Patient",
                        "identifier": [{"system": "http://x", "value": "new"}]},
                    "request": {"method": "POST", "url": "Patient"}}),
                patch_entry(
                    "Patient/a",
                    json_patch_binary(json!([{"op": "remove", "path": "/active"}])),
                ),
                failing.clone(),
            ],
        );
        let diagnostics = post_bundle(&fhir, &transaction).outcome(expected_status);
        assert!(
            diagnostics.contains("Bundle.entry[2]"),
            "{failing}: {diagnostics}"
        );
        assert_eq!(count_new(&fhir), 0, "{failing}: the POST was rolled back");
        assert_eq!(version(&fhir, "Patient/a"), "1", "{failing}");
        assert_eq!(fhir.get("Patient/a").json()["active"], true);
        assert_eq!(version(&fhir, "Patient/b"), "1", "{failing}");
    }

    // With the right ifMatch and a conditional URL, the same transaction goes through.
    let mut conditional = patch_entry(
        "Patient?identifier=http://x|2",
        json_patch_binary(json!([{"op": "remove", "path": "/active"}])),
    );
    conditional["request"]["ifMatch"] = json!("W/\"1\"");
    let transaction = bundle(
        "transaction",
        vec![
            json!({"resource": {"resourceType": "Patient",
                    "identifier": [{"system": "http://x", "value": "new"}]},
                "request": {"method": "POST", "url": "Patient"}}),
            patch_entry(
                "Patient/a",
                json_patch_binary(json!([{"op": "remove", "path": "/active"}])),
            ),
            conditional,
        ],
    );
    let answer = post_bundle(&fhir, &transaction).ok(200);
    let statuses: Vec<&str> = answer["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(status)
        .collect();
    assert_eq!(statuses, ["201 Created", "200 OK", "200 OK"]);
    assert_eq!(count_new(&fhir), 1);
    assert!(fhir.get("Patient/a").json().get("active").is_none());
    let b = fhir.get("Patient/b").json();
    assert!(b.get("active").is_none());
    assert_eq!(b["meta"]["versionId"], "2");
}

#[test]
fn patch_entries_are_checked_when_read() {
    let fhir = Fhir::start();
    seed(&fhir);
    for (resource, what) in [
        (json!({"resourceType": "Patient", "id": "a"}), "Parameters"),
        (
            json!({"resourceType": "Binary", "contentType": "application/json-patch+json",
                "data": "not base64!"}),
            "base64",
        ),
        (
            json!({"resourceType": "Binary", "contentType": "application/json-patch+json",
                "data": base64(b"{\"op\": \"remove\"}")}),
            "JSON Patch",
        ),
    ] {
        let transaction = bundle("transaction", vec![patch_entry("Patient/a", resource)]);
        let diagnostics = post_bundle(&fhir, &transaction).outcome(400);
        assert!(diagnostics.contains(what), "{diagnostics}");
        assert!(diagnostics.contains("Bundle.entry[0]"), "{diagnostics}");
    }
    let no_resource = bundle(
        "transaction",
        vec![json!({"request": {"method": "PATCH", "url": "Patient/a"}})],
    );
    post_bundle(&fhir, &no_resource).outcome(400);
    assert_eq!(version(&fhir, "Patient/a"), "1");
}
