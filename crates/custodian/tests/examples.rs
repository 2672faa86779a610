//! Round trip of every official FHIR R4 example through the server: PUT (or POST when
//! there is no id), GET, and the same JSON back, element order and decimal text included.
//!
//! Test data: `fhir-r4-examples/package/` (hl7.fhir.r4.examples 4.0.1) under the shared
//! test data; skipped with a notice when absent (a failure when `CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Instant;

use common::{TestServer, agent, testdata};
use serde_json::{Map, Value};

const THREADS: usize = 8;

/// What happened to one example.
enum Outcome {
    Passed,
    /// The example's id is not a valid FHIR id and the server refused it with 400.
    RefusedInvalidId(String),
    /// An AuditEvent: only the server writes the audit trail, so the write is 405.
    RefusedAuditEvent,
    Failed(String),
}

/// The FHIR id grammar, `[A-Za-z0-9\-\.]{1,64}`, checked independently of the server.
fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Percent-encodes a path segment (for ids that are not valid and may hold anything).
fn path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The example files: every `*.json` except the package manifest.
fn example_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read the examples directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| {
            path.extension().is_some_and(|ext| ext == "json")
                && path.file_name().is_some_and(|name| name != "package.json")
        })
        .collect();
    files.sort();
    files
}

/// Removes what the server owns: `meta.versionId`, `meta.lastUpdated` (and `meta` when
/// nothing else is left), and `id` when the server chose it.
fn normalize(resource: &mut Map<String, Value>, drop_id: bool) {
    if let Some(Value::Object(meta)) = resource.get_mut("meta") {
        meta.shift_remove("versionId");
        meta.shift_remove("lastUpdated");
        if meta.is_empty() {
            resource.shift_remove("meta");
        }
    }
    if drop_id {
        resource.shift_remove("id");
    }
}

/// Where two JSON values first differ, as a JSON-pointer-like path.
fn first_difference(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            for (key, value) in expected {
                match actual.get(key) {
                    None => return Some(format!("{path}/{key}: missing")),
                    Some(other) => {
                        if let Some(found) =
                            first_difference(&format!("{path}/{key}"), value, other)
                        {
                            return Some(found);
                        }
                    }
                }
            }
            actual
                .keys()
                .find(|key| !expected.contains_key(*key))
                .map(|key| format!("{path}/{key}: unexpected"))
        }
        (Value::Array(expected), Value::Array(actual)) => {
            if expected.len() != actual.len() {
                return Some(format!(
                    "{path}: {} items instead of {}",
                    actual.len(),
                    expected.len()
                ));
            }
            expected
                .iter()
                .zip(actual)
                .enumerate()
                .find_map(|(index, (e, a))| first_difference(&format!("{path}/{index}"), e, a))
        }
        _ if expected == actual => None,
        _ => Some(format!("{path}: {actual} instead of {expected}")),
    }
}

/// Where the key order of two (equal) values first differs.
fn first_order_difference(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::Object(expected), Value::Object(actual)) => {
            let expected_keys: Vec<&String> = expected.keys().collect();
            let actual_keys: Vec<&String> = actual.keys().collect();
            if expected_keys != actual_keys {
                return Some(format!(
                    "{path}: keys {actual_keys:?} instead of {expected_keys:?}"
                ));
            }
            expected.iter().find_map(|(key, value)| {
                first_order_difference(&format!("{path}/{key}"), value, &actual[key])
            })
        }
        (Value::Array(expected), Value::Array(actual)) => expected
            .iter()
            .zip(actual)
            .enumerate()
            .find_map(|(index, (e, a))| first_order_difference(&format!("{path}/{index}"), e, a)),
        _ => None,
    }
}

/// The top-level elements whose order is the client's: all but `resourceType`, `id` and
/// `meta`, which the server puts first.
fn content_elements(resource: &Map<String, Value>) -> Map<String, Value> {
    resource
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "resourceType" | "id" | "meta"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

fn read_body(response: &mut ureq::http::Response<ureq::Body>) -> Result<String, String> {
    response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|error| format!("cannot read the response body: {error}"))
}

fn round_trip(http: &ureq::Agent, base: &str, file: &Path) -> Outcome {
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => return Outcome::Failed(format!("cannot read: {error}")),
    };
    let original: Map<String, Value> = match serde_json::from_str(&text) {
        Ok(Value::Object(original)) => original,
        Ok(_) => return Outcome::Failed("not a JSON object".into()),
        Err(error) => return Outcome::Failed(format!("not JSON: {error}")),
    };
    let Some(resource_type) = original
        .get("resourceType")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Outcome::Failed("no resourceType".into());
    };
    let id = original
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let id = id.as_deref();

    // Write.
    let write = match id {
        Some(id) => http
            .put(&format!("{base}/{resource_type}/{}", path_segment(id)))
            .header("content-type", "application/fhir+json")
            .header("prefer", "return=minimal")
            .send(text.as_str()),
        None => http
            .post(&format!("{base}/{resource_type}"))
            .header("content-type", "application/fhir+json")
            .header("prefer", "return=minimal")
            .send(text.as_str()),
    };
    let mut written = match write {
        Ok(response) => response,
        Err(error) => return Outcome::Failed(format!("write failed: {error}")),
    };
    let status = written.status().as_u16();
    if resource_type == "AuditEvent" {
        let body = read_body(&mut written).unwrap_or_default();
        return if status == 405 {
            Outcome::RefusedAuditEvent
        } else {
            Outcome::Failed(format!("AuditEvent: expected 405, got {status}: {body}"))
        };
    }
    if let Some(id) = id.filter(|id| !is_valid_id(id)) {
        let body = read_body(&mut written).unwrap_or_default();
        return if status == 400 {
            Outcome::RefusedInvalidId(id.to_string())
        } else {
            Outcome::Failed(format!(
                "invalid id {id:?}: expected 400, got {status}: {body}"
            ))
        };
    }
    if !matches!(status, 200 | 201) {
        let body = read_body(&mut written).unwrap_or_default();
        return Outcome::Failed(format!("write answered {status}: {body}"));
    }
    let location = written
        .headers()
        .get("location")
        .and_then(|value| value.to_str().ok())
        .map(str::to_string);
    let _ = read_body(&mut written);
    let read_id = match id {
        Some(id) => id.to_string(),
        None => {
            // `.../{type}/{id}/_history/{n}`
            let assigned = location.as_deref().and_then(|location| {
                let (prefix, _) = location.rsplit_once("/_history/")?;
                Some(prefix.rsplit_once('/')?.1.to_string())
            });
            match assigned {
                Some(assigned) => assigned,
                None => return Outcome::Failed(format!("create gave no Location: {location:?}")),
            }
        }
    };

    // Read back.
    let mut read = match http
        .get(&format!(
            "{base}/{resource_type}/{}",
            path_segment(&read_id)
        ))
        .call()
    {
        Ok(response) => response,
        Err(error) => return Outcome::Failed(format!("read failed: {error}")),
    };
    let read_status = read.status().as_u16();
    let read_text = match read_body(&mut read) {
        Ok(text) => text,
        Err(error) => return Outcome::Failed(error),
    };
    if read_status != 200 {
        return Outcome::Failed(format!("read answered {read_status}: {read_text}"));
    }
    let mut stored: Map<String, Value> = match serde_json::from_str(&read_text) {
        Ok(Value::Object(stored)) => stored,
        _ => return Outcome::Failed("read answered something other than a JSON object".into()),
    };
    if stored.get("id").and_then(Value::as_str) != Some(read_id.as_str()) {
        return Outcome::Failed(format!("read back id {:?}", stored.get("id")));
    }
    if !stored
        .get("meta")
        .and_then(|meta| meta.get("versionId"))
        .is_some_and(Value::is_string)
    {
        return Outcome::Failed("read back has no meta.versionId".into());
    }

    // Compare.
    let mut expected = original;
    normalize(&mut expected, id.is_none());
    normalize(&mut stored, id.is_none());
    let expected = Value::Object(expected);
    let actual = Value::Object(stored);
    if expected != actual {
        let at = first_difference("", &expected, &actual)
            .unwrap_or_else(|| "(no difference found)".into());
        return Outcome::Failed(format!("content differs at {at}"));
    }
    let (Value::Object(expected), Value::Object(actual)) = (&expected, &actual) else {
        unreachable!("both are objects")
    };
    let expected_content = Value::Object(content_elements(expected));
    let actual_content = Value::Object(content_elements(actual));
    if let Some(at) = first_order_difference("", &expected_content, &actual_content) {
        return Outcome::Failed(format!("element order differs at {at}"));
    }
    if let (Some(expected_meta), Some(actual_meta)) = (expected.get("meta"), actual.get("meta"))
        && let Some(at) = first_order_difference("/meta", expected_meta, actual_meta)
    {
        return Outcome::Failed(format!("element order differs at {at}"));
    }
    Outcome::Passed
}

#[test]
fn every_r4_example_round_trips() {
    let Some(root) = testdata("fhir-r4-examples") else {
        return;
    };
    let dir = root.join("package");
    let files = example_files(&dir);
    assert!(
        files.len() >= 600,
        "expected the 681 R4 examples in {}, found {}",
        dir.display(),
        files.len()
    );

    let started = Instant::now();
    // This test is about faithful storage, so it stores even the few published examples
    // that validation refuses (see docs/conformance.md); validation has its own tests.
    let data = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(data.path(), &["--validation", "warnings"]);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(String, Outcome)>> = Mutex::new(Vec::with_capacity(files.len()));
    thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                let http = agent();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(file) = files.get(index) else { break };
                    let outcome = round_trip(&http, &server.base, file);
                    let name = file
                        .file_name()
                        .map(|name| name.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    results.lock().expect("results").push((name, outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by(|a, b| a.0.cmp(&b.0));

    let total = results.len();
    let passed = results
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::Passed))
        .count();
    let refused: Vec<_> = results
        .iter()
        .filter_map(|(name, outcome)| match outcome {
            Outcome::RefusedInvalidId(id) => Some(format!("{name} (id {id:?})")),
            _ => None,
        })
        .collect();
    let failed: Vec<_> = results
        .iter()
        .filter_map(|(name, outcome)| match outcome {
            Outcome::Failed(why) => Some(format!("{name}: {why}")),
            _ => None,
        })
        .collect();

    eprintln!(
        "FHIR R4 examples: {passed}/{total} round-tripped, {} refused for an invalid id, {} failed ({:.1} s)",
        refused.len(),
        failed.len(),
        started.elapsed().as_secs_f64()
    );
    for name in &refused {
        eprintln!("  invalid id, refused with 400 as expected: {name}");
    }
    for failure in &failed {
        eprintln!("  FAILED {failure}");
    }
    assert_eq!(total, files.len());
    assert!(
        failed.is_empty(),
        "{} examples did not round-trip",
        failed.len()
    );
    let audit_events = results
        .iter()
        .filter(|(_, outcome)| matches!(outcome, Outcome::RefusedAuditEvent))
        .count();
    assert!(audit_events > 0, "the R4 examples hold AuditEvents");
    assert_eq!(passed + refused.len() + audit_events, total);
}
