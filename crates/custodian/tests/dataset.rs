//! `custodian dataset`: scaled Synthea data sets, as Bundles and as NDJSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{TestServer, agent, testdata};
use serde_json::Value;

const PATIENTS: usize = 3;

fn dataset(testdata: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("dataset")
        .arg("--testdata")
        .arg(testdata)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run custodian dataset")
}

fn generate(testdata: &Path, out: &Path, format: &str) {
    let patients = PATIENTS.to_string();
    let output = dataset(
        testdata,
        out,
        &[
            "--scale",
            "2",
            "--patients",
            &patients,
            "--seed",
            "7",
            "--format",
            format,
        ],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(summary.contains("resources"), "{summary}");
}

/// Every file in `dir`, by name, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The source resources expected: patient-bundle resources x 2 + the shared bundles'.
fn expected_resources(synthea: &Path) -> usize {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(synthea)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    paths.sort();
    let is_shared = |path: &PathBuf| {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        name.starts_with("hospitalInformation") || name.starts_with("practitionerInformation")
    };
    let count = |path: &PathBuf| read_json(path)["entry"].as_array().unwrap().len();
    let shared: usize = paths.iter().filter(|path| is_shared(path)).map(count).sum();
    let patients: usize = paths
        .iter()
        .filter(|path| !is_shared(path))
        .take(PATIENTS)
        .map(count)
        .sum();
    patients * 2 + shared
}

/// Every `reference` string anywhere in `value`.
fn references<'a>(value: &'a Value, found: &mut Vec<&'a str>) {
    match value {
        Value::Object(object) => {
            for (key, item) in object {
                match item {
                    Value::String(text) if key == "reference" => found.push(text),
                    _ => references(item, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| references(item, found)),
        _ => {}
    }
}

fn is_valid_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    let [year, month, day] = parts.as_slice() else {
        return false;
    };
    let (Ok(year), Ok(month), Ok(day)) = (
        year.parse::<u32>(),
        month.parse::<u32>(),
        day.parse::<u32>(),
    ) else {
        return false;
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return false,
    };
    text.len() == 10 && (1000..=9999).contains(&year) && (1..=days).contains(&day)
}

fn identifier_values(resource: &Value) -> Vec<String> {
    resource["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .map(|identifier| identifier["value"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn bundles_scale_with_intact_references_and_distinct_copies() {
    let Some(synthea) = testdata("synthea/synthea-100") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    generate(&synthea, &first, "bundles");
    generate(&synthea, &second, "bundles");
    let written = files(&first);
    assert!(
        written == files(&second),
        "the same seed must give byte-identical output"
    );
    let names: Vec<&String> = written.keys().collect();
    assert!(names[0].starts_with("0-hospitalInformation"), "{names:?}");
    assert!(
        names[1].starts_with("0-practitionerInformation"),
        "{names:?}"
    );
    assert_eq!(names.len(), 2 + PATIENTS * 2);

    let mut resources = 0;
    let mut typed_ids = HashSet::new();
    let mut copy_ids: [HashSet<String>; 2] = [HashSet::new(), HashSet::new()];
    let mut bundles = Vec::new();
    for (name, bytes) in &written {
        let bundle: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(bundle["type"], "transaction", "{name}");
        for entry in bundle["entry"].as_array().unwrap() {
            let resource = &entry["resource"];
            let id = resource["id"].as_str().unwrap();
            typed_ids.insert(format!(
                "{}/{id}",
                resource["resourceType"].as_str().unwrap()
            ));
            assert_eq!(entry["fullUrl"], format!("urn:uuid:{id}"), "{name}");
            if name.starts_with("1-000000-") {
                copy_ids[0].insert(id.to_string());
            } else if name.starts_with("1-000001-") {
                copy_ids[1].insert(id.to_string());
            }
            resources += 1;
        }
        bundles.push((name.clone(), bundle));
    }
    assert_eq!(resources, expected_resources(&synthea));
    assert!(
        copy_ids[0].is_disjoint(&copy_ids[1]),
        "an id is shared by copies 0 and 1"
    );

    // A urn:uuid reference resolves within its own transaction; Type/id anywhere in the output.
    for (name, bundle) in &bundles {
        let full_urls: HashSet<&str> = bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["fullUrl"].as_str().unwrap())
            .collect();
        let mut found = Vec::new();
        references(bundle, &mut found);
        for reference in found {
            if reference.starts_with('#') {
                continue;
            }
            if reference.starts_with("urn:uuid:") {
                assert!(full_urls.contains(reference), "{name}: {reference} dangles");
            } else {
                assert!(typed_ids.contains(reference), "{name}: {reference} dangles");
            }
        }
    }

    // Copy 1's patient differs from copy 0's in name, birthDate and identifiers.
    let patient = |prefix: &str| {
        let (_, bundle) = bundles
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .unwrap();
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| &entry["resource"])
            .find(|resource| resource["resourceType"] == "Patient")
            .unwrap()
            .clone()
    };
    let original = patient("1-000000-");
    let copy = patient("1-000001-");
    assert_ne!(original["name"][0]["family"], copy["name"][0]["family"]);
    assert_ne!(original["name"][0]["given"], copy["name"][0]["given"]);
    assert_ne!(original["birthDate"], copy["birthDate"]);
    let birth_date = copy["birthDate"].as_str().unwrap();
    assert!(is_valid_date(birth_date), "{birth_date}");
    let before = identifier_values(&original);
    let after = identifier_values(&copy);
    assert_eq!(before.len(), after.len());
    for value in &after {
        assert!(
            !before.contains(value),
            "identifier {value} is in both copies"
        );
    }
}

#[test]
fn ndjson_has_explicit_ids_and_type_id_references() {
    let Some(synthea) = testdata("synthea/synthea-100") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    generate(&synthea, &first, "ndjson");
    generate(&synthea, &second, "ndjson");
    let written = files(&first);
    assert!(
        written == files(&second),
        "the same seed must give byte-identical output"
    );
    let mut resources = Vec::new();
    for (name, bytes) in &written {
        let resource_type = name.strip_suffix(".ndjson").unwrap();
        for line in std::str::from_utf8(bytes).unwrap().lines() {
            let resource: Value = serde_json::from_str(line).unwrap();
            assert_eq!(resource["resourceType"], resource_type);
            assert!(resource["id"].is_string(), "{name}: a line without id");
            resources.push(resource);
        }
    }
    assert_eq!(resources.len(), expected_resources(&synthea));
    let typed_ids: HashSet<String> = resources
        .iter()
        .map(|resource| {
            format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap(),
                resource["id"].as_str().unwrap()
            )
        })
        .collect();
    let patients: Vec<&Value> = resources
        .iter()
        .filter(|resource| resource["resourceType"] == "Patient")
        .collect();
    assert_eq!(patients.len(), PATIENTS * 2);
    let patient_ids: HashSet<&str> = patients
        .iter()
        .map(|patient| patient["id"].as_str().unwrap())
        .collect();
    assert_eq!(patient_ids.len(), PATIENTS * 2, "patient ids collide");
    for resource in &resources {
        let mut found = Vec::new();
        references(resource, &mut found);
        for reference in found {
            if reference.starts_with('#') {
                continue;
            }
            assert!(
                !reference.starts_with("urn:"),
                "{reference} left as a urn in NDJSON"
            );
            assert!(typed_ids.contains(reference), "{reference} dangles");
        }
    }
}

#[test]
fn scaled_bundles_commit_on_a_fresh_server() {
    let Some(synthea) = testdata("synthea/synthea-100") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    generate(&synthea, &out, "bundles");
    let (server, _data) = TestServer::start();
    for (name, bytes) in files(&out) {
        let mut response = agent()
            .post(&server.base)
            .header("Content-Type", "application/fhir+json")
            .send(&bytes[..])
            .unwrap();
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "{name}: {text}");
    }
}

#[test]
fn scaled_ndjson_imports_strictly() {
    let Some(synthea) = testdata("synthea/synthea-100") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    generate(&synthea, &out, "ndjson");
    let output = Command::new(env!("CARGO_BIN_EXE_custodian"))
        .arg("import")
        .arg(&out)
        .arg("--strict")
        .arg("--database")
        .arg(format!("sqlite:{}", dir.path().join("data").display()))
        .arg("--checkpoint")
        .arg(dir.path().join("import.checkpoint"))
        .output()
        .expect("run custodian import");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    let expected = format!("imported {} resources", expected_resources(&synthea));
    assert!(
        stdout.contains(&expected) || stderr.contains(&expected),
        "{stdout}{stderr}"
    );
}

#[test]
fn arguments_are_checked() {
    let Some(synthea) = testdata("synthea/synthea-100") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");

    let zero = dataset(&synthea, &out, &["--scale", "0"]);
    assert!(!zero.status.success());
    assert!(String::from_utf8_lossy(&zero.stderr).contains("--scale"));

    let missing = dataset(&dir.path().join("nowhere"), &out, &["--scale", "1"]);
    assert!(!missing.status.success());
    let message = String::from_utf8_lossy(&missing.stderr);
    assert!(
        message.contains("cannot read the Synthea bundles"),
        "{message}"
    );

    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "x").unwrap();
    let uncreatable = dataset(&synthea, &blocker.join("out"), &["--scale", "1"]);
    assert!(!uncreatable.status.success());
    let message = String::from_utf8_lossy(&uncreatable.stderr);
    assert!(
        message.contains("cannot create the output folder"),
        "{message}"
    );

    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("old.json"), "{}").unwrap();
    let not_empty = dataset(&synthea, &out, &["--scale", "1"]);
    assert!(!not_empty.status.success());
    let message = String::from_utf8_lossy(&not_empty.stderr);
    assert!(message.contains("not empty"), "{message}");
}
