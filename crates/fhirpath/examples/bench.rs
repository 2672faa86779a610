//! Rough timings: `cargo run --release -p fhirpath --example bench -- [FILE.json]`.
//!
//! Evaluates a few typical search-parameter and invariant expressions many times and
//! prints the time per evaluation.

use std::time::Instant;

use fhirpath::{Environment, Expression};

const EXPRESSIONS: &[&str] = &[
    "Patient.name.where(use = 'official').given.first()",
    "Patient.birthDate",
    "Patient.telecom.where(system = 'phone').value",
    "Patient.name.family | Patient.name.given",
    "Patient.identifier.where(system.exists()).value",
    "Patient.descendants().count()",
    "Patient.contact.all(name.exists() or telecom.exists() or address.exists() or organization.exists())",
    "(Patient.birthDate + 18 years) < today()",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let resource: serde_json::Value = match std::env::args().nth(1) {
        Some(file) => serde_json::from_str(&std::fs::read_to_string(file)?)?,
        None => serde_json::json!({
            "resourceType": "Patient",
            "id": "example",
            "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
            "name": [
                {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
                {"use": "usual", "given": ["Jim"]}
            ],
            "telecom": [{"system": "phone", "value": "(03) 5555 6473", "use": "work"}],
            "birthDate": "1974-12-25",
            "contact": [{"name": {"family": "du Marché", "given": ["Bénédicte"]}, "telecom": [{"system": "phone", "value": "+33 (237) 998327"}]}]
        }),
    };
    let env = Environment::new();
    let rounds = 100_000u32;
    for source in EXPRESSIONS {
        let started = Instant::now();
        let expression = Expression::compile(source)?;
        let compile_ns = started.elapsed().as_nanos();
        let started = Instant::now();
        let mut items = 0;
        for _ in 0..rounds {
            items += expression.evaluate(&resource, &env)?.len();
        }
        let per_eval_ns = started.elapsed().as_nanos() / u128::from(rounds);
        println!(
            "{per_eval_ns:>8} ns/eval {compile_ns:>8} ns/compile {:>3} items  {source}",
            items / rounds as usize
        );
    }
    Ok(())
}
