//! What a write costs the store: the first K synthea-100 patient bundles (urn:uuid
//! references rewritten to `Type/id`), each written with `write_all` into a fresh
//! database, as a transaction Bundle would be.
//! `cargo run --release -p store --example ingest_cost -- [K] [DIR]`; run it under
//! `valgrind --tool=callgrind` to see where the instructions go.

use std::collections::HashMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

/// One bundle's resources, as JSON objects.
type Bundle = Vec<Map<String, Value>>;

fn bundles(limit: usize) -> Result<Vec<Bundle>, Box<dyn std::error::Error>> {
    let testdata = std::env::var("CUSTODIAN_TESTDATA")
        .unwrap_or_else(|_| format!("{}/../../../shared/testdata", env!("CARGO_MANIFEST_DIR")));
    let folder = PathBuf::from(testdata).join("synthea").join("synthea-100");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .filter(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string());
            !name.is_some_and(|n| n.starts_with("hospital") || n.starts_with("practitioner"))
        })
        .collect();
    files.sort();
    let mut out = Vec::new();
    for path in files.iter().take(limit) {
        let mut bundle: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        let mut local = HashMap::new();
        let mut resources = Vec::new();
        for entry in bundle["entry"].as_array_mut().into_iter().flatten() {
            let full_url = entry["fullUrl"].as_str().unwrap_or_default().to_string();
            let mut resource = entry["resource"].take();
            let resource_type = resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let id = full_url.trim_start_matches("urn:uuid:").to_string();
            local.insert(full_url, format!("{resource_type}/{id}"));
            resource["id"] = Value::String(id);
            resources.push(resource);
        }
        let mut objects = Vec::new();
        for mut resource in resources {
            rewrite(&mut resource, &local);
            if let Value::Object(object) = resource {
                objects.push(object);
            }
        }
        out.push(objects);
    }
    Ok(out)
}

fn rewrite(value: &mut Value, local: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                match child.as_str().and_then(|r| local.get(r)) {
                    Some(target) if key == "reference" => *child = Value::String(target.clone()),
                    _ => rewrite(child, local),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| rewrite(item, local)),
        _ => {}
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let limit: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(10);
    let dir = args
        .next()
        .unwrap_or_else(|| "target/ingest-cost".to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let bundles = bundles(limit)?;
    let total: usize = bundles.iter().map(Vec::len).sum();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = std::time::Instant::now();
    runtime.block_on(async {
        let store = store::Store::open(&format!("sqlite:{dir}"))?;
        for bundle in bundles {
            let writes = bundle
                .into_iter()
                .map(|resource| {
                    // Upserts: Synthea repeats Organizations and Practitioners.
                    let field =
                        |name: &str| resource[name].as_str().unwrap_or_default().to_string();
                    store::Write::Update {
                        resource_type: field("resourceType"),
                        id: field("id"),
                        resource,
                        if_match: None,
                        method: store::Method::Update,
                    }
                })
                .collect();
            store
                .write_all(writes)
                .await
                .map_err(|error| format!("{error:?}"))?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{total} resources in {elapsed:.2} s: {:.0} resources/s",
        total as f64 / elapsed
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
