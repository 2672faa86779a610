//! Encryption at rest through the real binary: resources sent over HTTP are sealed in
//! the database (no raw row holds a patient's name), come back whole over every read,
//! the store refuses to open without its master key, and `custodian admin rotate-key`
//! rewraps the data keys and adds a new one. Runs on PostgreSQL too (`on_postgres`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{TestServer, agent, database_url};
use serde_json::{Value, json};

const NAME: &str = "Quartermaine";

/// Runs `custodian ARGS`, with no master key from the test's environment.
fn custodian(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .env_remove("CUSTODIAN_MASTER_KEY")
        .env_remove("CUSTODIAN_MASTER_KEY_FILE")
        .env("CUSTODIAN_LOG", "warn")
        .output()
        .expect("run custodian")
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "custodian failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn failed(output: &Output) -> String {
    assert!(!output.status.success(), "custodian succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn new_key(path: &Path) {
    succeeded(&custodian(&[
        "admin",
        "new-master-key",
        "--out",
        path.to_str().unwrap(),
    ]));
}

fn request(method: &str, url: &str, body: Option<&Value>) -> (u16, Value) {
    let builder = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/fhir+json");
    let response = match body {
        Some(body) => agent().run(builder.body(body.to_string().into_bytes()).unwrap()),
        None => agent().run(builder.body(()).unwrap()),
    }
    .unwrap();
    let status = response.status().as_u16();
    let text = response.into_body().read_to_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Zebediah"]}],
        "gender": "male",
        "birthDate": "1961-02-03",
        "telecom": [{"system": "phone", "value": "555-867-5309"}],
        "address": [{"line": ["12 Lantern Row"], "city": "Wexford", "state": "PA", "postalCode": "15090"}]
    })
}

/// Every resource of the NDJSON files an export wrote to `out`.
fn read_export(out: &str) -> Vec<Value> {
    let mut exported = Vec::new();
    for file in std::fs::read_dir(out).unwrap() {
        let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
        exported.extend(
            text.lines()
                .map(|line| serde_json::from_str::<Value>(line).unwrap()),
        );
    }
    exported
}

/// Bodies stored holding `text` in plain, and the data key id of each sealed one.
fn at_rest(url: &str, text: &str) -> (usize, Vec<u32>) {
    let bodies = store::testing::stored_bodies(url);
    let plain = bodies
        .iter()
        .filter(|body| {
            body.windows(text.len())
                .any(|window| window == text.as_bytes())
        })
        .count();
    let mut key_ids: Vec<u32> = bodies
        .iter()
        .filter(|body| body.first() == Some(&1) && body.len() > 5)
        .map(|body| u32::from_be_bytes([body[1], body[2], body[3], body[4]]))
        .collect();
    key_ids.sort();
    (plain, key_ids)
}

#[test]
fn bodies_sent_over_http_are_sealed_at_rest_and_rotate_key_rewraps_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (first_key, second_key) = (
        keys.path().join("first.key"),
        keys.path().join("second.key"),
    );
    new_key(&first_key);
    new_key(&second_key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a key file is its owner's alone");
    }
    // A key file is never overwritten.
    let message = failed(&custodian(&[
        "admin",
        "new-master-key",
        "--out",
        first_key.to_str().unwrap(),
    ]));
    assert!(message.contains("first.key"), "{message}");
    let url = database_url(dir.path());

    let server = TestServer::start_in(
        dir.path(),
        &["--master-key-file", first_key.to_str().unwrap()],
    );
    let (status, created) = request(
        "POST",
        &format!("{}/Patient", server.base),
        Some(&patient(NAME)),
    );
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, read) = request("GET", &format!("{}/Patient/{id}", server.base), None);
    assert_eq!(status, 200);
    assert_eq!(read, created);
    let (status, found) = request(
        "GET",
        &format!("{}/Patient?family={NAME}", server.base),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(found["entry"][0]["resource"], created);
    let (status, history) = request(
        "GET",
        &format!("{}/Patient/{id}/_history", server.base),
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(history["entry"][0]["resource"], created);
    drop(server);

    // In the database the body is sealed with data key 1; its name is nowhere in it.
    assert_eq!(at_rest(&url, NAME), (0, vec![1]));
    assert_eq!(at_rest(&url, "Zebediah").0, 0);

    // Without the key, or with another, the store does not open.
    let out = keys.path().join("export");
    let out = out.to_str().unwrap();
    let message = failed(&custodian(&["export", "--database", &url, "--out", out]));
    assert!(message.contains("CUSTODIAN_MASTER_KEY"), "{message}");
    let message = failed(&custodian(&[
        "export",
        "--database",
        &url,
        "--out",
        out,
        "--master-key-file",
        second_key.to_str().unwrap(),
    ]));
    assert!(message.contains("right key"), "{message}");

    // Rotation: the data keys rewrapped with the second master key, and a new data key.
    let message = failed(&custodian(&[
        "admin",
        "rotate-key",
        "--database",
        &url,
        "--new-data-key",
    ]));
    assert!(message.contains("current master key"), "{message}");
    let said = succeeded(&custodian(&[
        "admin",
        "rotate-key",
        "--database",
        &url,
        "--master-key-file",
        first_key.to_str().unwrap(),
        "--new-key-file",
        second_key.to_str().unwrap(),
        "--new-data-key",
    ]));
    assert!(said.contains("added data key 2"), "{said}");
    assert!(said.contains("rewrapped 2 data key"), "{said}");
    let message = failed(&custodian(&[
        "export",
        "--database",
        &url,
        "--out",
        out,
        "--master-key-file",
        first_key.to_str().unwrap(),
    ]));
    assert!(message.contains("right key"), "{message}");
    // The key may come from the environment too; the export opens every body.
    let second_text = std::fs::read_to_string(&second_key).unwrap();
    let exported = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(["export", "--database", &url, "--out", out])
        .env("CUSTODIAN_MASTER_KEY", second_text.trim())
        .output()
        .unwrap();
    succeeded(&exported);
    let exported = read_export(out);
    assert_eq!(exported.len(), 1);
    assert_eq!(exported[0], created);

    let server = TestServer::start_in(
        dir.path(),
        &["--master-key-file", second_key.to_str().unwrap()],
    );
    let (status, read) = request("GET", &format!("{}/Patient/{id}", server.base), None);
    assert_eq!(status, 200);
    assert_eq!(read, created);
    let (status, everything) = request(
        "GET",
        &format!("{}/Patient/{id}/$everything", server.base),
        None,
    );
    assert_eq!(status, 200, "{everything}");
    assert_eq!(everything["entry"][0]["resource"], created);
    // The patient index, built from a scan of the store at start, read the sealed body.
    let input = json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient(NAME)}]});
    let (status, matches) = request(
        "POST",
        &format!("{}/Patient/$match", server.base),
        Some(&input),
    );
    assert_eq!(status, 200, "{matches}");
    assert_eq!(matches["entry"][0]["resource"]["id"], id, "{matches}");
    let (status, _) = request(
        "POST",
        &format!("{}/Patient", server.base),
        Some(&patient(&format!("{NAME}-second"))),
    );
    assert_eq!(status, 201);
    drop(server);
    // The new body is sealed with the new data key; the old one keeps its own.
    assert_eq!(at_rest(&url, NAME), (0, vec![1, 2]));
}

#[test]
fn rotate_key_reseal_seals_bodies_stored_before_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("store.key");
    new_key(&key);
    let key = key.to_str().unwrap();
    let url = database_url(dir.path());
    // Loaded before the store had a key: stored plain.
    let input = dir.path().join("patients.ndjson");
    let patients: Vec<Value> = (0..3)
        .map(|n| {
            let mut patient = patient(&format!("{NAME}{n}"));
            patient["id"] = json!(format!("before-{n}"));
            patient
        })
        .collect();
    let lines: Vec<String> = patients.iter().map(Value::to_string).collect();
    std::fs::write(&input, lines.join("\n")).unwrap();
    succeeded(&custodian(&[
        "import",
        "--database",
        &url,
        input.to_str().unwrap(),
    ]));
    assert_eq!(at_rest(&url, NAME), (3, vec![]));

    // `custodian admin rotate-key --database URL` and `extra`.
    let rotate = |extra: &[&str]| {
        let mut args = vec!["admin", "rotate-key", "--database", url.as_str()];
        args.extend_from_slice(extra);
        custodian(&args)
    };
    let message = failed(&rotate(&["--reseal"]));
    assert!(message.contains("current master key"), "{message}");
    let said = succeeded(&rotate(&["--master-key-file", key, "--reseal"]));
    assert!(
        said.contains("checked 3 stored version(s): sealed 3 again with data key 1"),
        "{said}"
    );
    assert_eq!(at_rest(&url, NAME), (0, vec![1, 1, 1]));
    // A new data key, and every body moves to it; run again, nothing is left to do.
    let said = succeeded(&rotate(&[
        "--master-key-file",
        key,
        "--new-data-key",
        "--reseal",
    ]));
    assert!(said.contains("sealed 3 again with data key 2"), "{said}");
    let said = succeeded(&rotate(&["--master-key-file", key, "--reseal"]));
    assert!(said.contains("sealed 0 again"), "{said}");
    assert_eq!(at_rest(&url, NAME), (0, vec![2, 2, 2]));

    // The text is what was loaded.
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    succeeded(&custodian(&[
        "export",
        "--database",
        &url,
        "--out",
        out,
        "--master-key-file",
        key,
    ]));
    let mut exported = read_export(out);
    exported.sort_by_key(|resource| resource["id"].as_str().unwrap().to_string());
    assert_eq!(exported.len(), 3);
    for (exported, loaded) in exported.iter().zip(&patients) {
        assert_eq!(exported["name"], loaded["name"]);
        assert_eq!(exported["address"], loaded["address"]);
    }
}
