//! The `custodian bench fhirpath` workload without the server:
//! `cargo run --release -p fhirpath --example search_params -- [RUNS] [--by-expression]`.
//!
//! Loads the first 20 synthea-100 bundles (from `$CUSTODIAN_TESTDATA`, default
//! `../shared/testdata`), compiles every search-parameter expression whose base is the
//! resource's type, `Resource` or `DomainResource`, evaluates them all per resource and prints
//! resources per second (median over runs) and the number of results per run.
//! `--by-expression` also prints the slowest expressions by total time; `--digest` prints a
//! hash of every result (type and string form), to check that changes keep the results;
//! `--stubs` evaluates with `Environment::resolve_stubs` (as indexing does).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fhirpath::{Environment, Expression};
use serde_json::Value;

const BUNDLES: usize = 20;

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
    for path in files.iter().take(BUNDLES) {
        let mut bundle: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
        if let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) {
            resources.extend(
                entries
                    .iter_mut()
                    .filter_map(|entry| entry.get_mut("resource").map(Value::take))
                    .filter(Value::is_object),
            );
        }
    }
    Ok(resources)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = 5usize;
    let mut by_expression = false;
    let mut digest = false;
    let mut stubs = false;
    for arg in std::env::args().skip(1) {
        if arg == "--stubs" {
            stubs = true;
        } else if arg == "--digest" {
            digest = true;
        } else if arg == "--by-expression" {
            by_expression = true;
        } else {
            runs = arg.parse()?;
        }
    }
    let resources = load()?;
    let definitions = fhir::definitions();
    let mut compiled: HashMap<String, Vec<Expression>> = HashMap::new();
    for resource in &resources {
        let Some(resource_type) = resource["resourceType"].as_str() else {
            continue;
        };
        if compiled.contains_key(resource_type) {
            continue;
        }
        let mut expressions = Vec::new();
        for base in [resource_type, "Resource", "DomainResource"] {
            for parameter in definitions.search_parameters_for(base) {
                if let Some(source) = &parameter.expression {
                    expressions.push(Expression::compile(source)?);
                }
            }
        }
        compiled.insert(resource_type.to_string(), expressions);
    }
    let mut env = Environment::new();
    env.resolve_stubs(stubs);
    let mut rates = Vec::new();
    let mut produced = 0;
    let mut errors = 0;
    for run in 0..runs {
        produced = 0;
        let started = Instant::now();
        for resource in &resources {
            let resource_type = resource["resourceType"].as_str().unwrap_or("");
            for expression in compiled.get(resource_type).into_iter().flatten() {
                match expression.evaluate(resource, &env) {
                    Ok(collection) => produced += collection.len(),
                    Err(_) => errors += 1,
                }
            }
        }
        let rate = resources.len() as f64 / started.elapsed().as_secs_f64();
        println!("  run {}: {rate:>10.0} resources/s", run + 1);
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{} resources, median {:.0} resources/s ({produced} results per run, {errors} errors)",
        resources.len(),
        rates[rates.len() / 2]
    );
    if digest {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut hasher = DefaultHasher::new();
        for resource in &resources {
            let resource_type = resource["resourceType"].as_str().unwrap_or("");
            for expression in compiled.get(resource_type).into_iter().flatten() {
                match expression.evaluate(resource, &env) {
                    Ok(collection) => {
                        collection.len().hash(&mut hasher);
                        for item in &collection {
                            item.type_name().hash(&mut hasher);
                            item.to_string().hash(&mut hasher);
                        }
                    }
                    Err(error) => error.to_string().hash(&mut hasher),
                }
            }
        }
        println!("digest {:016x}", hasher.finish());
    }
    if by_expression {
        let mut times: HashMap<&str, Vec<(Duration, usize)>> = compiled
            .iter()
            .map(|(t, e)| (t.as_str(), vec![(Duration::ZERO, 0); e.len()]))
            .collect();
        for resource in &resources {
            let resource_type = resource["resourceType"].as_str().unwrap_or("");
            let (Some(expressions), Some(slots)) =
                (compiled.get(resource_type), times.get_mut(resource_type))
            else {
                continue;
            };
            for (expression, slot) in expressions.iter().zip(slots) {
                let started = Instant::now();
                let n = expression.evaluate(resource, &env).map_or(0, |c| c.len());
                slot.0 += started.elapsed();
                slot.1 += n;
            }
        }
        let mut rows: Vec<(Duration, usize, &str, &str)> = Vec::new();
        for (resource_type, slots) in &times {
            for (expression, (time, n)) in compiled[*resource_type].iter().zip(slots) {
                rows.push((*time, *n, resource_type, expression.source()));
            }
        }
        rows.sort_by_key(|row| std::cmp::Reverse(row.0));
        let total: Duration = rows.iter().map(|r| r.0).sum();
        println!("total {total:?}");
        for (time, n, resource_type, source) in rows.iter().take(40) {
            let source: String = source.chars().take(110).collect();
            println!("{time:>12.2?} {n:>6} {resource_type:<22} {source}");
        }
    }
    Ok(())
}
