//! Indexing real data: every resource of the synthea-100 bundles (from
//! `$CUSTODIAN_TESTDATA`, default `../shared/testdata`). Skipped with a notice when the
//! data is absent, except under `CI=true`, where that is a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;

use search::{IndexValue, index};
use serde_json::Value;

fn folder() -> Option<PathBuf> {
    let testdata = std::env::var("CUSTODIAN_TESTDATA")
        .unwrap_or_else(|_| format!("{}/../../../shared/testdata", env!("CARGO_MANIFEST_DIR")));
    let folder = PathBuf::from(testdata).join("synthea").join("synthea-100");
    if folder.is_dir() {
        return Some(folder);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "synthea-100 test data missing at {}",
        folder.display()
    );
    eprintln!("skipping: no synthea-100 test data at {}", folder.display());
    None
}

/// A bundle's resources, with `urn:uuid:` references rewritten to `Type/id` as a
/// transaction would store them.
fn resources(bundle: &mut Value) -> Vec<Value> {
    let mut local = HashMap::new();
    let mut resources = Vec::new();
    for entry in bundle["entry"].as_array_mut().into_iter().flatten() {
        let full_url = entry["fullUrl"].as_str().unwrap_or_default().to_owned();
        let mut resource = entry["resource"].take();
        let resource_type = resource["resourceType"].as_str().unwrap().to_owned();
        let id = full_url.trim_start_matches("urn:uuid:").to_owned();
        local.insert(full_url, format!("{resource_type}/{id}"));
        resource["id"] = Value::String(id);
        resources.push(resource);
    }
    fn rewrite(value: &mut Value, local: &HashMap<String, String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    match child.as_str().and_then(|r| local.get(r)) {
                        Some(target) if key == "reference" => {
                            *child = Value::String(target.clone())
                        }
                        _ => rewrite(child, local),
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| rewrite(item, local)),
            _ => {}
        }
    }
    for resource in &mut resources {
        rewrite(resource, &local);
    }
    resources
}

#[test]
fn every_synthea_resource_indexes() {
    let Some(folder) = folder() else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total_rows = 0;
    for path in &files {
        let mut bundle: Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for resource in resources(&mut bundle) {
            let resource_type = resource["resourceType"].as_str().unwrap().to_owned();
            let rows = index(&resource);
            total_rows += rows.len();
            let keys = |key: &str| rows.iter().filter(|r| r.key == key).count();
            let what = format!("{resource_type}/{}", resource["id"]);
            assert!(
                rows.iter()
                    .all(|r| r.key != "_id" && r.key != "_lastUpdated"),
                "{what}"
            );
            for row in &rows {
                match &row.value {
                    IndexValue::Date(range) => assert!(range.low < range.high, "{what} {row:?}"),
                    IndexValue::String { normalized, .. } => {
                        assert_eq!(normalized, &search::normalize_string(normalized), "{what}")
                    }
                    IndexValue::Reference {
                        resource_type,
                        id,
                        url,
                    } => {
                        assert!(resource_type.is_some() == id.is_some(), "{what} {row:?}");
                        assert!(id.is_some() || url.is_some(), "{what} {row:?}");
                    }
                    _ => {}
                }
                if row.key.contains('$') {
                    assert!(row.group > 0, "{what} {row:?}");
                } else {
                    assert_eq!(row.group, 0, "{what} {row:?}");
                }
            }
            match resource_type.as_str() {
                "Patient" => {
                    for key in [
                        "name",
                        "family",
                        "given",
                        "birthdate",
                        "identifier",
                        "gender",
                        "address",
                    ] {
                        assert!(keys(key) > 0, "{what} has no {key} rows");
                    }
                    assert!(keys("identifier:of-type") > 0, "{what}");
                }
                "Observation" => {
                    for key in ["code", "subject", "patient", "status"] {
                        assert!(keys(key) > 0, "{what} has no {key} rows");
                    }
                    if resource.get("effectiveDateTime").is_some() {
                        assert_eq!(keys("date"), 1, "{what}");
                    }
                    if resource.get("valueQuantity").is_some() {
                        assert!(
                            keys("value-quantity") == 1 && keys("code-value-quantity$1") > 0,
                            "{what}"
                        );
                    }
                }
                "Encounter" => {
                    for key in ["patient", "date", "class", "type"] {
                        assert!(keys(key) > 0, "{what} has no {key} rows");
                    }
                }
                _ => {}
            }
            *counts.entry(resource_type).or_default() += 1;
        }
    }
    assert!(
        counts.get("Patient").copied().unwrap_or(0) >= 100,
        "{counts:?}"
    );
    assert!(total_rows > 0);
    eprintln!(
        "indexed {} resources: {total_rows} rows",
        counts.values().sum::<usize>()
    );
}
