//! Which invariants cost the most on Synthea resources:
//! `cargo run --release -p validation --example invariant_cost [TESTDATA]`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use validation::{FhirPathInvariants, InvariantEvaluator, validate_with};

struct Timed {
    inner: FhirPathInvariants,
    spent: RefCell<HashMap<String, (Duration, u64)>>,
}

impl InvariantEvaluator for Timed {
    fn check(&self, expression: &str, context: &Value, resource: &Value) -> Result<bool, String> {
        self.check_typed(expression, context, None, resource)
    }

    fn check_typed(
        &self,
        expression: &str,
        context: &Value,
        context_type: Option<&str>,
        resource: &Value,
    ) -> Result<bool, String> {
        let started = Instant::now();
        let result = self
            .inner
            .check_typed(expression, context, context_type, resource);
        let mut spent = self.spent.borrow_mut();
        let entry = spent.entry(expression.to_string()).or_default();
        entry.0 += started.elapsed();
        entry.1 += 1;
        result
    }
}

fn main() {
    let root = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "../shared/testdata".into());
    let folder = std::path::Path::new(&root).join("synthea/synthea-100");
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut resources = Vec::new();
    for path in files.iter().take(20) {
        let bundle: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            resources.push(entry["resource"].clone());
        }
    }
    let timed = Timed {
        inner: FhirPathInvariants::default(),
        spent: RefCell::new(HashMap::new()),
    };
    let started = Instant::now();
    for resource in &resources {
        validate_with(resource, Some(&timed));
    }
    let total = started.elapsed();
    let spent = timed.spent.borrow();
    let mut rows: Vec<_> = spent.iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1.0));
    let in_invariants: Duration = rows.iter().map(|(_, (d, _))| *d).sum();
    println!(
        "{} resources in {total:?}; {in_invariants:?} in {} distinct invariants",
        resources.len(),
        rows.len()
    );
    for (expression, (duration, count)) in rows.iter().take(15) {
        println!(
            "{duration:>12?} {count:>8} {}",
            &expression[..expression.len().min(110)]
        );
    }
}
