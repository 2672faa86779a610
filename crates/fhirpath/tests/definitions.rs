//! Every FHIRPath expression in the R4 definitions (search parameters, invariants) compiles,
//! and evaluates without error on the example resources in the test data.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use fhirpath::{Environment, Expression};
use serde_json::Value;

#[test]
fn every_search_parameter_expression_compiles() {
    let mut failures = Vec::new();
    for param in fhir::definitions().search_parameters() {
        if let Some(expression) = &param.expression
            && let Err(e) = Expression::compile(expression)
        {
            failures.push(format!("{} `{expression}`: {e}", param.url));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn every_invariant_compiles() {
    let defs = fhir::definitions();
    let mut failures = Vec::new();
    let mut count = 0;
    for name in defs.resource_types() {
        let Some(def) = defs.type_def(name) else {
            continue;
        };
        for constraint in def
            .constraints
            .iter()
            .chain(def.elements.iter().flat_map(|e| &e.constraints))
        {
            count += 1;
            if let Err(e) = Expression::compile(&constraint.expression) {
                failures.push(format!(
                    "{name} {} `{}`: {e}",
                    constraint.key, constraint.expression
                ));
            }
        }
    }
    assert!(count > 500, "{count}");
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Every expression in the definitions.
fn all_expressions() -> Vec<String> {
    let defs = fhir::definitions();
    let mut out: Vec<String> = defs
        .search_parameters()
        .iter()
        .filter_map(|p| p.expression.clone())
        .collect();
    for name in defs.resource_types() {
        let Some(def) = defs.type_def(name) else {
            continue;
        };
        for constraint in def
            .constraints
            .iter()
            .chain(def.elements.iter().flat_map(|e| &e.constraints))
        {
            out.push(constraint.expression.clone());
        }
    }
    out
}

#[test]
fn printing_round_trips() {
    let mut failures = Vec::new();
    let extra = [
        "-1.convertsToInteger()",
        "(-1).abs() + -(2)",
        "'a\\'b\\n\\u0001' & `div`.`given name`",
        "@2015T.is(DateTime) and @2015-02-04T14:34:28.123+10:00 > @2015 and @T10:30 < @T11",
        "4 days + 1 'mg' + 1.0 + 1.50 + 12345678901234567890",
        "%`vs-administrative-gender` | %resource | $this | $index | $total",
        "x.ofType(FHIR.`Patient`).as(System.String) is Boolean",
        "name.where(use = 'official' implies given.exists() xor family.empty())[0]",
    ];
    for source in all_expressions().iter().map(String::as_str).chain(extra) {
        let first = Expression::compile(source).unwrap().to_string();
        match Expression::compile(&first) {
            Ok(again) if again.to_string() == first => {}
            Ok(again) => failures.push(format!("{source}\n  {first}\n  {again}")),
            Err(e) => failures.push(format!("{source}\n  {first}\n  {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Example resources, and whether each is known to be valid (the official examples are).
fn examples() -> Vec<(Value, bool)> {
    let dir = std::env::var_os("CUSTODIAN_TESTDATA").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/testdata"
            ))
        },
        PathBuf::from,
    );
    let mut out = Vec::new();
    let dirs = [
        dir.join("fhirpath/fhirpath.js/test/resources/r4"),
        dir.join("fhir-r4-examples/package"),
    ];
    for (valid, dir) in dirs.iter().enumerate() {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json")
                && let Ok(text) = std::fs::read_to_string(&path)
                && let Ok(value) = serde_json::from_str::<Value>(&text)
                && value.get("resourceType").is_some()
            {
                out.push((value, valid == 1));
            }
        }
    }
    out
}

#[test]
fn search_parameters_and_invariants_evaluate_on_examples() {
    let examples = examples();
    if examples.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "test data missing under CI"
        );
        println!("SKIPPED: example resources not found");
        return;
    }
    let defs = fhir::definitions();
    let env = Environment::new();
    let mut failures = Vec::new();
    let mut evaluated = 0;
    for (resource, valid) in &examples {
        let resource_type = resource["resourceType"].as_str().unwrap_or("");
        let params = defs.search_parameters().iter().filter(|p| {
            p.base
                .iter()
                .any(|b| b == resource_type || b == "Resource" || b == "DomainResource")
        });
        for param in params {
            let Some(expression) = &param.expression else {
                continue;
            };
            let compiled = Expression::compile(expression).unwrap();
            evaluated += 1;
            if let Err(e) = compiled.evaluate(resource, &env) {
                failures.push(format!(
                    "{resource_type} {} `{expression}`: {e}",
                    param.code
                ));
            }
        }
        let Some(def) = defs.type_def(resource_type) else {
            continue;
        };
        for constraint in &def.constraints {
            let compiled = Expression::compile(&constraint.expression).unwrap();
            evaluated += 1;
            match compiled.evaluate(resource, &env) {
                Err(e) => failures.push(format!(
                    "{resource_type} {} `{}`: {e}",
                    constraint.key, constraint.expression
                )),
                Ok(result) => {
                    let holds = result.is_empty()
                        || matches!(result.as_slice(), [item] if item.as_bool() == Some(true));
                    if !holds && constraint.severity == "error" && *valid {
                        failures.push(format!(
                            "{resource_type}/{} {} `{}` is {:?}",
                            resource["id"].as_str().unwrap_or(""),
                            constraint.key,
                            constraint.expression,
                            result.iter().map(ToString::to_string).collect::<Vec<_>>()
                        ));
                    }
                }
            }
        }
    }
    println!("evaluated {evaluated} expressions");
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn element_invariants_hold_on_official_examples() {
    let examples = examples();
    if examples.is_empty() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "test data missing under CI"
        );
        println!("SKIPPED: example resources not found");
        return;
    }
    let defs = fhir::definitions();
    let env = Environment::new();
    let mut failures = Vec::new();
    let mut evaluated = 0;
    for (resource, _) in examples.iter().filter(|(_, valid)| *valid) {
        let resource_type = resource["resourceType"].as_str().unwrap_or("");
        let Some(def) = defs.type_def(resource_type) else {
            continue;
        };
        for element in &def.elements {
            if element.constraints.is_empty() {
                continue;
            }
            let path = format!("{resource_type}.{}", element.path.replace("[x]", ""));
            let nodes = Expression::compile(&path)
                .unwrap()
                .evaluate(resource, &env)
                .unwrap();
            for constraint in &element.constraints {
                let compiled = Expression::compile(&constraint.expression).unwrap();
                for node in &nodes {
                    evaluated += 1;
                    let result = compiled.evaluate_focus(resource, vec![node.clone()], &env);
                    // An empty result (a missing element) does not violate an invariant.
                    let holds = matches!(&result, Ok(r) if r.is_empty() || matches!(r.as_slice(), [item] if item.as_bool() == Some(true)));
                    if !holds && constraint.severity == "error" {
                        failures.push(format!(
                            "{resource_type}/{} {} {} `{}` is {:?}",
                            resource["id"].as_str().unwrap_or(""),
                            element.path,
                            constraint.key,
                            constraint.expression,
                            result.map(|r| r.iter().map(ToString::to_string).collect::<Vec<_>>())
                        ));
                    }
                }
            }
        }
    }
    println!("evaluated {evaluated} element invariants");
    assert!(failures.is_empty(), "{failures:#?}");
}
