//! The R4 cases of the official validator test suite (FHIR/fhir-test-cases, the subset in
//! `fhir-validator-r4-subset/`): does `validate` find errors exactly where the Java validator
//! does? Cases where it does not are listed with a reason in
//! `tests/data/validator-known-disagreements.json` and in docs/conformance.md ("Validation");
//! a listed case that starts to agree fails the test, so the list stays true.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use fhir::Severity;
use serde_json::Value;

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

#[derive(serde::Deserialize)]
struct Known {
    /// `invariant`: the case fails only on FHIRPath invariants, out of scope without an engine.
    category: String,
    reason: String,
}

#[test]
fn validator_suite_agrees_on_errors() {
    let Some(data) = testdata() else { return };
    let dir = data.join("fhir-validator-r4-subset/fhir-test-cases/validator");
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("manifest-r4-subset.json")).unwrap(),
    )
    .unwrap();
    let known: BTreeMap<String, Known> =
        serde_json::from_str(include_str!("data/validator-known-disagreements.json")).unwrap();
    let cases = manifest["test-cases"].as_array().unwrap();
    let (mut n_agree, mut n_expected_errors) = (0, 0);
    let mut n_known: BTreeMap<String, usize> = BTreeMap::new();
    let mut unexpected = Vec::new();
    let mut stale = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let file = case["file"].as_str().unwrap();
        let outcome: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("outcomes").join(case["java"].as_str().unwrap()))
                .unwrap(),
        )
        .unwrap();
        let expected_errors = outcome["issue"].as_array().map_or(0, |issues| {
            issues
                .iter()
                .filter(|i| matches!(i["severity"].as_str(), Some("error" | "fatal")))
                .count()
        });
        if expected_errors > 0 {
            n_expected_errors += 1;
        }
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        // A byte order mark is not JSON, but readers skip it.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        // Not parsing is an error of its own (the JSON parser's, before validation).
        let our_errors: Vec<String> = match serde_json::from_str::<Value>(text) {
            Err(e) => vec![format!("JSON: {e}")],
            Ok(resource) => validation::validate(&resource)
                .into_iter()
                .filter(|i| matches!(i.severity, Severity::Error | Severity::Fatal))
                .map(|i| format!("{} [{}] {}", i.expression, i.code.code(), i.diagnostics))
                .collect(),
        };
        let agree = (expected_errors > 0) != our_errors.is_empty();
        match (agree, known.get(name)) {
            (true, None) => n_agree += 1,
            (false, Some(k)) => *n_known.entry(k.category.clone()).or_default() += 1,
            (true, Some(_)) => stale.push(name.to_string()),
            (false, None) => unexpected.push(format!(
                "{name} ({file}): expected {expected_errors} errors, found {}:\n    {}",
                our_errors.len(),
                our_errors.join("\n    ")
            )),
        }
        let _ = known.get(name).map(|k| &k.reason);
    }
    println!(
        "validator suite: {} cases ({n_expected_errors} with errors expected), {n_agree} agree, known disagreements by category: {n_known:?}, {} unexpected",
        cases.len(),
        unexpected.len()
    );
    assert_eq!(cases.len(), 73);
    assert!(
        unexpected.is_empty(),
        "{} unexpected disagreements:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        stale.is_empty(),
        "listed disagreements that now agree: {stale:?}"
    );
}
