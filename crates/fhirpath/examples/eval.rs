//! Evaluates an expression against a JSON resource: `cargo run -p fhirpath --example eval -- EXPR FILE`.

use fhirpath::{Environment, Expression};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(expression), Some(file)) = (args.next(), args.next()) else {
        return Err("usage: eval EXPRESSION FILE.json".into());
    };
    let resource: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file)?)?;
    let trace = |name: &str, value: &str| eprintln!("trace {name}: {value}");
    let mut env = Environment::new();
    env.with_trace(&trace);
    let compiled = Expression::compile(&expression)?;
    for item in compiled.evaluate(&resource, &env)? {
        println!("{}: {item}", item.type_name().1);
    }
    Ok(())
}
