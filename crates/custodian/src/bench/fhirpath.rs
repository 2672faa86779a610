//! Evaluates every search-parameter expression that applies to each resource, the work an
//! index does on write.

use std::collections::HashMap;

use fhirpath::{Environment, Expression};

use super::{CorpusArgs, load_synthea, measure};

pub fn run(args: &CorpusArgs) -> Result<(), String> {
    let resources = load_synthea(args)?;
    let definitions = fhir::definitions();
    let mut compiled: HashMap<String, Vec<Expression>> = HashMap::new();
    let mut failed = 0;
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
                let Some(source) = &parameter.expression else {
                    continue;
                };
                match Expression::compile(source) {
                    Ok(expression) => expressions.push(expression),
                    Err(_) => failed += 1,
                }
            }
        }
        compiled.insert(resource_type.to_string(), expressions);
    }
    let expression_count: usize = compiled.values().map(Vec::len).sum();
    println!(
        "custodian bench fhirpath: {} resources from {} bundles, {expression_count} compiled expressions over {} types ({failed} failed to compile)",
        resources.len(),
        args.bundles,
        compiled.len()
    );
    let env = Environment::new();
    let mut errors = 0usize;
    measure("fhirpath", args.runs, &resources, |resource| {
        let resource_type = resource["resourceType"].as_str().unwrap_or("");
        let mut values = 0;
        for expression in compiled.get(resource_type).into_iter().flatten() {
            match expression.evaluate(resource, &env) {
                Ok(collection) => values += collection.len(),
                Err(_) => errors += 1,
            }
        }
        values
    })?;
    println!("evaluation errors over all runs: {errors}");
    Ok(())
}
