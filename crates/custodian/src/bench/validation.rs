//! Fully validates each resource, the work every write does.

use super::{CorpusArgs, load_synthea, measure};

pub fn run(args: &CorpusArgs) -> Result<(), String> {
    let resources = load_synthea(args)?;
    println!(
        "custodian bench validation: {} resources from {} bundles",
        resources.len(),
        args.bundles
    );
    let mut invalid = 0usize;
    measure("validation", args.runs, &resources, |resource| {
        let issues = validation::validate(resource);
        if issues.iter().any(|issue| {
            matches!(
                issue.severity,
                fhir::Severity::Error | fhir::Severity::Fatal
            )
        }) {
            invalid += 1;
        }
        issues.len()
    })?;
    println!("resources with errors over all runs: {invalid}");
    Ok(())
}
