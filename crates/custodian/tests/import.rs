//! `custodian import`: NDJSON, gzip, Bundles, rejected lines, --strict, resuming, and
//! loading through a running server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use common::{TestServer, agent, testdata};
use serde_json::Value;

fn import(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("import")
        .args(args)
        .env("CUSTODIAN_LOG", "warn")
        .env("USER", "import-tester")
        .output()
        .expect("run custodian import")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn type_total(base: &str, resource_type: &str) -> u64 {
    let mut response = agent()
        .get(&format!("{base}/{resource_type}/_history?_count=1"))
        .call()
        .unwrap();
    let body: Value = serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    body["total"].as_u64().unwrap()
}

fn count_lines(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.trim().is_empty())
        .count() as u64
}

#[test]
fn bulk_ndjson_imports_with_matching_counts() {
    let Some(folder) = testdata("synthea/sample-bulk-fhir-datasets-10-patients") else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let checkpoint = data.path().join("checkpoint");
    let output = import(&[
        "--database",
        &common::database_url(data.path()),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        folder.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("imported 5945 resources"), "{text}");
    // Only NDJSON into an empty store: a bulk load, its search indexes built at the end.
    assert!(text.contains("search indexes built"), "{text}");
    // log.ndjson is an export log, not resources: its 4 lines are rejected by name.
    assert!(text.contains("rejected 4 lines"), "{text}");
    assert!(text.contains("log.ndjson:1: not a FHIR resource"), "{text}");
    assert!(
        !checkpoint.exists(),
        "a finished import removes its checkpoint"
    );

    let server = TestServer::start_in(data.path(), &[]);
    for entry in std::fs::read_dir(&folder).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let Some(resource_type) = name.strip_suffix(".000.ndjson") else {
            continue;
        };
        assert_eq!(
            type_total(&server.base, resource_type),
            count_lines(&path),
            "{name}"
        );
    }
}

fn write_gzip(path: &Path, text: &str) {
    let file = std::fs::File::create(path).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    encoder.write_all(text.as_bytes()).unwrap();
    encoder.finish().unwrap();
}

#[test]
fn gzip_bundles_rejections_and_strict() {
    let inputs = tempfile::tempdir().unwrap();
    write_gzip(
        &inputs.path().join("patients.ndjson.gz"),
        concat!(
            r#"{"resourceType":"Patient","id":"p1","gender":"female"}"#,
            "\n",
            r#"{"resourceType":"Patient","id":"p2","gender":"woman"}"#,
            "\n\n",
            r#"{"resourceType":"Patient","id":"p3""#,
            "\n",
            r#"{"resourceType":"Patient","birthDate":"1970-01-01"}"#,
            "\n",
        ),
    );
    std::fs::write(
        inputs.path().join("bundle.json"),
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"fullUrl":"urn:uuid:0d4c1f0c-3b6a-4d8e-9a59-9e8a1a0f2c11","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},
            {"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:0d4c1f0c-3b6a-4d8e-9a59-9e8a1a0f2c11"}},"request":{"method":"POST","url":"Observation"}}
        ]}"#,
    )
    .unwrap();
    let data = tempfile::tempdir().unwrap();
    let database = common::database_url(data.path());
    let checkpoint = data.path().join("checkpoint");
    let output = import(&[
        "--database",
        &database,
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        inputs.path().to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("imported 4 resources"), "{text}");
    assert!(text.contains("rejected 2 lines"), "{text}");
    assert!(text.contains("patients.ndjson.gz:2: 422"), "{text}");
    assert!(text.contains("Patient.gender"), "{text}");
    assert!(text.contains("patients.ndjson.gz:4: not JSON"), "{text}");

    // The load is in the audit trail as the operator's: the NDJSON batch as one record,
    // the Bundle's entries as over HTTP.
    let store = store::Store::open(&database).unwrap();
    let page = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(store.audit_search(store::AuditQuery {
            filters: Vec::new(),
            count: 100,
            oldest_first: true,
            after: None,
        }))
        .unwrap();
    let events: Vec<Value> = page
        .records
        .iter()
        .map(|(_, text)| serde_json::from_str(text).unwrap())
        .collect();
    let subtypes: Vec<&str> = events
        .iter()
        .map(|event| event["subtype"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        subtypes.iter().filter(|s| **s == "batch").count(),
        1,
        "{subtypes:?}"
    );
    assert_eq!(
        subtypes.iter().filter(|s| **s == "create").count(),
        2,
        "{subtypes:?}"
    );
    for event in &events {
        assert_eq!(
            event["agent"][0]["who"]["identifier"]["value"], "operator:import-tester",
            "{event}"
        );
    }
    drop(store);

    // --strict stops at the first rejected line and fails.
    let strict_data = tempfile::tempdir().unwrap();
    let output = import(&[
        "--strict",
        "--database",
        &common::database_url(strict_data.path()),
        "--checkpoint",
        strict_data.path().join("checkpoint").to_str().unwrap(),
        inputs.path().join("patients.ndjson.gz").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--strict"));
}

#[test]
fn an_interrupted_import_resumes_after_its_checkpoint() {
    let inputs = tempfile::tempdir().unwrap();
    let file = inputs.path().join("patients.ndjson");
    let lines: Vec<String> = (1..=10)
        .map(|n| format!(r#"{{"resourceType":"Patient","id":"r{n}"}}"#))
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let checkpoint = data.path().join("checkpoint");
    // As an interrupted run leaves it: the first 6 lines are known to be stored.
    std::fs::write(
        &checkpoint,
        format!(r#"{{"done":{{"{}":6}}}}"#, file.display()),
    )
    .unwrap();
    let output = import(&[
        "--batch",
        "2",
        "--database",
        &common::database_url(data.path()),
        "--checkpoint",
        checkpoint.to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("imported 4 resources"), "{text}");
    let server = TestServer::start_in(data.path(), &[]);
    assert_eq!(type_total(&server.base, "Patient"), 4);
    let mut missing = agent()
        .get(&format!("{}/Patient/r6", server.base))
        .call()
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let _ = missing.body_mut().read_to_string();
}

#[test]
fn imports_through_a_running_server() {
    let (server, _dir) = TestServer::start();
    let inputs = tempfile::tempdir().unwrap();
    let file = inputs.path().join("orgs.ndjson");
    std::fs::write(
        &file,
        "{\"resourceType\":\"Organization\",\"id\":\"o1\",\"name\":\"A\"}\n{\"resourceType\":\"Organization\",\"name\":\"B\"}\n",
    )
    .unwrap();
    let output = import(&[
        "--server",
        &server.base,
        "--checkpoint",
        inputs.path().join("checkpoint").to_str().unwrap(),
        file.to_str().unwrap(),
    ]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("imported 2 resources"), "{text}");
    assert_eq!(type_total(&server.base, "Organization"), 2);
}
