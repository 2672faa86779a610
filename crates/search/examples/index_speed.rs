//! Indexing speed over Synthea:
//! `cargo run --release -p search --example index_speed -- [RUNS] [--show TYPE]`.
//!
//! Loads every synthea-100 bundle (from `$CUSTODIAN_TESTDATA`, default
//! `../shared/testdata`), rewrites the bundles' `urn:uuid:` references to `Type/id` as a
//! transaction would, indexes every resource and prints resources per second (median of
//! the runs, 3 by default) and rows per run. `--show TYPE` prints the rows of the first
//! resource of that type; `--stats` prints the row count per type and key, largest first.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;

fn load() -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let testdata = std::env::var("CUSTODIAN_TESTDATA").unwrap_or_else(|_| {
        let manifest = env!("CARGO_MANIFEST_DIR");
        format!("{manifest}/../../../shared/testdata")
    });
    let folder = PathBuf::from(testdata).join("synthea").join("synthea-100");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let mut resources = Vec::new();
    for path in &files {
        let bundle: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        resources.extend(resolve_bundle(bundle));
    }
    Ok(resources)
}

/// The resources of a transaction bundle, with `urn:uuid:` references replaced by the
/// `Type/id` of the entry they name (the id taken from the uuid).
fn resolve_bundle(mut bundle: Value) -> Vec<Value> {
    let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
        return Vec::new();
    };
    let mut local: HashMap<String, String> = HashMap::new();
    let mut resources = Vec::new();
    for entry in entries.iter_mut() {
        let full_url = entry
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(mut resource) = entry.get_mut("resource").map(Value::take) else {
            continue;
        };
        if let (Some(full_url), Some(resource_type)) = (
            full_url,
            resource.get("resourceType").and_then(Value::as_str),
        ) {
            let id = full_url.trim_start_matches("urn:uuid:").to_owned();
            local.insert(full_url, format!("{resource_type}/{id}"));
            resource["id"] = Value::String(id);
        }
        resources.push(resource);
    }
    for resource in &mut resources {
        rewrite(resource, &local);
    }
    resources
}

fn rewrite(value: &mut Value, local: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                if key == "reference"
                    && let Some(target) = child.as_str().and_then(|r| local.get(r))
                {
                    *child = Value::String(target.clone());
                } else {
                    rewrite(child, local);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite(item, local)),
        _ => {}
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = 3usize;
    let mut show = None;
    let mut stats = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--stats" {
            stats = true;
        } else if arg == "--show" {
            show = args.next();
        } else {
            runs = arg.parse()?;
        }
    }
    let resources = load()?;
    if let Some(resource_type) = show {
        if let Some(resource) = resources
            .iter()
            .find(|r| r["resourceType"] == resource_type.as_str())
        {
            for row in search::index(resource) {
                println!("{:<40} {:>2} {:?}", row.key, row.group, row.value);
            }
        }
        return Ok(());
    }
    if stats {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for resource in &resources {
            let resource_type = resource["resourceType"].as_str().unwrap_or("?");
            for row in search::index(resource) {
                *counts
                    .entry(format!("{resource_type}.{}", row.key))
                    .or_default() += 1;
            }
        }
        let mut counts: Vec<(String, usize)> = counts.into_iter().collect();
        counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
        for (key, count) in counts.iter().take(60) {
            println!("{count:>8} {key}");
        }
        return Ok(());
    }
    let mut rates = Vec::new();
    let mut rows = 0;
    for run in 0..runs.max(1) {
        rows = 0;
        let started = Instant::now();
        for resource in &resources {
            rows += search::index(resource).len();
        }
        let rate = resources.len() as f64 / started.elapsed().as_secs_f64();
        println!("  run {}: {rate:>10.0} resources/s", run + 1);
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{} resources, median {:.0} resources/s ({rows} rows per run)",
        resources.len(),
        rates[rates.len() / 2]
    );
    Ok(())
}
