//! The official FHIRPath Patch cases (`fhir-test-cases/r4/patch/fhir-patch-tests.xml`), in
//! FHIR XML, converted to JSON by a test-only converter (`fhir_xml`).
//!
//! Each case patches its `input` with its `diff` and compares the result with its `output`
//! as JSON values: the order of properties within an object is ignored (JSON objects are
//! unordered, and the XML order follows the definitions while `add` appends), the order of
//! list items is not. A case that expects an error passes when the patch fails as
//! unprocessable (422); the suite's message text is not compared.
//!
//! Cases this crate does not pass are listed in `known-failures.txt` (`case name: reason`);
//! a listed case that passes fails the test as much as an unlisted one that fails.
//! Test data: `CUSTODIAN_TESTDATA` or `../shared/testdata`; skipped with a notice when
//! absent, a failure when `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod fhir_xml;

use std::collections::BTreeMap;
use std::path::PathBuf;

use patch::ErrorKind;

const SUITE: &str = "fhir-patch/fhir-test-cases/r4/patch/fhir-patch-tests.xml";
const CASE_COUNT: usize = 33;

fn suite_path() -> Option<PathBuf> {
    let root = std::env::var_os("CUSTODIAN_TESTDATA").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/testdata"
            ))
        },
        PathBuf::from,
    );
    let path = root.join(SUITE);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("test data {} is missing and CI=true", path.display());
    }
    println!(
        "SKIPPED: test data {} is absent (set CUSTODIAN_TESTDATA)",
        path.display()
    );
    None
}

fn known_failures() -> BTreeMap<String, String> {
    let text = include_str!("known-failures.txt");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (name, reason) = line.split_once(": ").unwrap_or_else(|| {
                panic!("known-failures.txt: `{line}` is not `case name: reason`")
            });
            (name.trim().to_string(), reason.trim().to_string())
        })
        .collect()
}

fn only_element<'a, 'input>(
    node: roxmltree::Node<'a, 'input>,
) -> Option<roxmltree::Node<'a, 'input>> {
    node.children().find(roxmltree::Node::is_element)
}

/// Runs one case; `Err` says how it failed.
fn run_case(case: roxmltree::Node<'_, '_>) -> Result<(), String> {
    let child = |name: &str| case.children().find(|n| n.has_tag_name(name));
    let input = child("input")
        .and_then(only_element)
        .ok_or("the case has no input")?;
    let diff = child("diff")
        .and_then(only_element)
        .ok_or("the case has no diff")?;
    let mut resource = fhir_xml::resource(input).map_err(|e| format!("input: {e}"))?;
    let patch = fhir_xml::resource(diff).map_err(|e| format!("diff: {e}"))?;
    let result = patch::apply(&mut resource, &patch);
    match (child("output").and_then(only_element), child("error")) {
        (Some(output), None) => {
            let expected = fhir_xml::resource(output).map_err(|e| format!("output: {e}"))?;
            result.map_err(|e| format!("the patch failed: {e}"))?;
            if resource != expected {
                return Err(format!(
                    "result differs\n  got:      {resource}\n  expected: {expected}"
                ));
            }
            Ok(())
        }
        (None, Some(error)) => match result {
            Err(e) if e.kind == ErrorKind::Unprocessable => Ok(()),
            Err(e) => Err(format!("expected an unprocessable error, got {e:?}")),
            Ok(()) => Err(format!(
                "expected the error {:?}, but the patch applied: {resource}",
                error.attribute("msg").unwrap_or("")
            )),
        },
        _ => Err("the case has neither one output nor one error".into()),
    }
}

#[test]
fn official_fhirpath_patch_cases() {
    let Some(path) = suite_path() else {
        return;
    };
    let text = std::fs::read_to_string(&path).unwrap();
    let document = roxmltree::Document::parse(&text).unwrap();
    let known = known_failures();
    let mut seen = Vec::new();
    let mut passed = 0;
    let mut problems = Vec::new();
    for case in document
        .root_element()
        .children()
        .filter(|n| n.has_tag_name("case"))
    {
        let name = case.attribute("name").unwrap_or("").to_string();
        let outcome = run_case(case);
        match (&outcome, known.get(&name)) {
            (Ok(()), None) => passed += 1,
            (Ok(()), Some(reason)) => problems.push(format!(
                "{name}: passes but is listed in known-failures.txt ({reason}); remove it"
            )),
            (Err(why), None) => problems.push(format!("{name}: {why}")),
            (Err(_), Some(_)) => {}
        }
        seen.push(name);
    }
    for name in known.keys() {
        if !seen.contains(name) {
            problems.push(format!(
                "{name}: listed in known-failures.txt but not in the suite"
            ));
        }
    }
    println!("fhirpath patch cases: {passed} passed of {}", seen.len());
    assert_eq!(
        seen.len(),
        CASE_COUNT,
        "the suite should have {CASE_COUNT} cases"
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
