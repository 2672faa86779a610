//! Validation throughput on Synthea: `cargo run --release -p validation --example throughput [DIR]`.
//!
//! Validates every entry resource of every Bundle (`*.json`) and every line of `*.ndjson` in DIR (default: the synthea-100 test data)
//! one by one, on one core, and prints resources per second and the issue counts.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

fn main() {
    let dir = std::env::args().nth(1).map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/testdata/synthea/synthea-100"
            ))
        },
        PathBuf::from,
    );
    let Ok(listing) = std::fs::read_dir(&dir) else {
        eprintln!("cannot read {}", dir.display());
        return;
    };
    let mut resources: Vec<Value> = Vec::new();
    for entry in listing.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path()) else {
            continue;
        };
        if entry.path().extension().is_some_and(|x| x == "ndjson") {
            for line in text.lines() {
                if let Ok(resource) = serde_json::from_str::<Value>(line)
                    && resource.get("resourceType").is_some()
                {
                    resources.push(resource);
                }
            }
            continue;
        }
        let Ok(Value::Object(mut bundle)) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if let Some(Value::Array(entries)) = bundle.remove("entry") {
            for mut e in entries {
                if let Some(resource) = e.get_mut("resource") {
                    resources.push(resource.take());
                }
            }
        }
    }
    // Build the model before timing.
    let _ = validation::validate(&serde_json::json!({"resourceType": "Basic"}));
    let mut n_errors = 0;
    let mut n_warnings = 0;
    let mut first_errors = Vec::new();
    let start = Instant::now();
    for resource in &resources {
        for issue in validation::validate(resource) {
            match issue.severity {
                fhir::Severity::Error | fhir::Severity::Fatal => {
                    n_errors += 1;
                    if first_errors.len() < 10 {
                        first_errors.push(format!("{} {}", issue.expression, issue.diagnostics));
                    }
                }
                _ => n_warnings += 1,
            }
        }
    }
    let elapsed = start.elapsed();
    println!(
        "{} resources in {:.3} s: {:.0} resources/s; {n_errors} errors, {n_warnings} warnings",
        resources.len(),
        elapsed.as_secs_f64(),
        resources.len() as f64 / elapsed.as_secs_f64()
    );
    for e in first_errors {
        println!("  {e}");
    }
}
