//! Every example resource of the R4 specification (hl7.fhir.r4.examples 4.0.1) validates with
//! no error-severity issues, except those listed with a reason in
//! `tests/data/r4-examples-known-invalid.json` (a stale entry fails the test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use fhir::Severity;

fn testdata() -> Option<PathBuf> {
    let dir = std::env::var_os("CUSTODIAN_TESTDATA").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/testdata"
            ))
        },
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("test data not found at {}", dir.display());
    }
    println!("SKIPPED: test data not found at {}", dir.display());
    None
}

#[test]
fn r4_examples_have_no_errors() {
    let Some(data) = testdata() else { return };
    let dir = data.join("fhir-r4-examples/package");
    let known: BTreeMap<String, String> =
        serde_json::from_str(include_str!("data/r4-examples-known-invalid.json")).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|x| x == "json")
                && p.file_name().is_some_and(|n| n != "package.json")
        })
        .collect();
    files.sort();
    let (mut n_clean, mut n_known) = (0, 0);
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(path).unwrap();
        let resource: serde_json::Value = serde_json::from_str(&text).unwrap();
        let errors: Vec<_> = validation::validate(&resource)
            .into_iter()
            .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
            .collect();
        match (errors.is_empty(), known.contains_key(&name)) {
            (true, false) => n_clean += 1,
            (false, true) => n_known += 1,
            (true, true) => stale.push(name),
            (false, false) => unexpected.push(format!(
                "{name}:\n{}",
                errors
                    .iter()
                    .map(|i| format!("    {} [{}] {}", i.expression, i.code.code(), i.diagnostics))
                    .collect::<Vec<_>>()
                    .join("\n")
            )),
        }
    }
    println!(
        "R4 examples: {} files, {n_clean} without errors, {n_known} known invalid, {} unexpected errors",
        files.len(),
        unexpected.len()
    );
    assert!(files.len() >= 681, "only {} examples found", files.len());
    assert!(
        unexpected.is_empty(),
        "{} examples have errors:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "known-invalid entries that now validate: {stale:?}"
    );
}

/// Every value of a few examples replaced by values of other JSON kinds: no panic, and the
/// validator still reports something.
#[test]
fn mutated_examples_do_not_panic() {
    let Some(data) = testdata() else { return };
    let dir = data.join("fhir-r4-examples/package");
    let replacements = [
        serde_json::Value::Null,
        serde_json::json!(""),
        serde_json::json!(1.5),
        serde_json::json!(true),
        serde_json::json!([]),
        serde_json::json!({}),
        serde_json::json!([null, {"x": 1}]),
    ];
    let mut n_mutations = 0;
    for name in [
        "Patient-example.json",
        "Observation-example-genetics-1.json",
        "Bundle-bundle-example.json",
        "Parameters-example.json",
        "Condition-example.json",
    ] {
        let Ok(text) = std::fs::read_to_string(dir.join(name)) else {
            continue;
        };
        let original: serde_json::Value = serde_json::from_str(&text).unwrap();
        let mut pointers = Vec::new();
        collect_pointers(&original, String::new(), &mut pointers);
        for pointer in pointers.iter().skip(1) {
            for replacement in &replacements {
                let mut mutated = original.clone();
                *mutated.pointer_mut(pointer).unwrap() = replacement.clone();
                let _ = validation::validate(&mutated);
                n_mutations += 1;
            }
        }
    }
    println!("mutations validated without panic: {n_mutations}");
    assert!(n_mutations > 1000, "{n_mutations}");
}

fn collect_pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                collect_pointers(
                    v,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}
