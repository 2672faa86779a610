//! Accuracy on the FEBRL data with known true matches (from `$CUSTODIAN_TESTDATA`,
//! default `../shared/testdata`): FEBRL4 linkage and FEBRL3 deduplication, trained
//! without labels, judged at the default thresholds. The `cluster` column is the truth
//! and is never read for matching. Skipped with a notice when the data is absent, except
//! under `CI=true`, where that is a failure.

use std::collections::HashMap;
use std::fs::File;
use std::path::PathBuf;

use mpi::{
    Accuracy, ColumnMap, Dataset, Model, Outcome, Quiet, Training, cluster, cluster_pairs,
    pairwise, read_records, train_and_score,
};

/// Every FEBRL column but `cluster` (the truth) and `source_dataset`.
const MAP: &str = "id=rec_id,given=given_name,family=surname,birthdate=date_of_birth,\
    address=street_number,address=address_1,address=address_2,city=suburb,postcode=postcode,\
    state=state,ssn=soc_sec_id";

fn folder() -> Option<PathBuf> {
    let testdata = std::env::var("CUSTODIAN_TESTDATA")
        .unwrap_or_else(|_| format!("{}/../../../shared/testdata", env!("CARGO_MANIFEST_DIR")));
    let folder = PathBuf::from(testdata).join("febrl");
    if folder.join("febrl4").is_dir() && folder.join("febrl3").is_dir() {
        return Some(folder);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "FEBRL test data missing at {}",
        folder.display()
    );
    eprintln!("skipping: no FEBRL test data at {}", folder.display());
    None
}

fn load(dataset: &mut Dataset, path: PathBuf, right: bool) -> Result<(), String> {
    let map = ColumnMap::parse(MAP).map_err(|error| error.to_string())?;
    let file = File::open(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    read_records(file, &map, |record| {
        if right {
            dataset.push_right(record)
        } else {
            dataset.push(record)
        }
    })
    .map_err(|error| format!("{}: {error}", path.display()))?;
    Ok(())
}

/// The true pairs of `true_pairs.csv`, as record positions.
fn truth(dataset: &Dataset, path: PathBuf) -> Result<Vec<(u32, u32)>, String> {
    let positions: HashMap<&str, u32> = (0..dataset.len() as u32)
        .map(|index| (dataset.id(index), index))
        .collect();
    let mut reader =
        csv::Reader::from_path(&path).map_err(|error| format!("{}: {error}", path.display()))?;
    let mut pairs = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|error| format!("{}: {error}", path.display()))?;
        let position = |column: usize| {
            row.get(column)
                .and_then(|id| positions.get(id).copied())
                .ok_or_else(|| format!("{}: unknown record in {row:?}", path.display()))
        };
        pairs.push((position(0)?, position(1)?));
    }
    Ok(pairs)
}

fn linked(outcome: &Outcome) -> Vec<(u32, u32)> {
    let probable = outcome.model.thresholds.probable;
    outcome
        .pairs
        .iter()
        .filter(|pair| f64::from(pair.probability) >= probable)
        .map(|pair| (pair.a, pair.b))
        .collect()
}

fn report(name: &str, accuracy: &Accuracy) {
    println!(
        "{name}: precision {:.4} recall {:.4} F1 {:.4} (TP {} FP {} FN {})",
        accuracy.precision,
        accuracy.recall,
        accuracy.f1,
        accuracy.true_positives,
        accuracy.false_positives,
        accuracy.false_negatives
    );
}

/// Prints the pairs the model got wrong, with their explanations, to show why.
fn show_errors(
    dataset: &Dataset,
    outcome: &Outcome,
    predicted: &[(u32, u32)],
    truth: &[(u32, u32)],
    limit: usize,
) {
    let truth_set: std::collections::HashSet<(u32, u32)> =
        truth.iter().map(|&(a, b)| (a.min(b), a.max(b))).collect();
    let predicted_set: std::collections::HashSet<(u32, u32)> = predicted.iter().copied().collect();
    let mut shown = 0;
    for (kind, pairs, other) in [
        ("false positive", &predicted_set, &truth_set),
        ("false negative", &truth_set, &predicted_set),
    ] {
        for &(a, b) in pairs.iter() {
            if other.contains(&(a, b)) || shown >= limit {
                continue;
            }
            shown += 1;
            let candidate = outcome.pairs.iter().any(|pair| (pair.a, pair.b) == (a, b));
            println!(
                "{kind}: {} {} (scored above possible: {candidate})",
                dataset.id(a),
                dataset.id(b)
            );
            if let Some(explanation) = outcome.explain(dataset, a, b) {
                for term in &explanation.terms {
                    println!(
                        "    {:<10} {:<45} {:+.2}",
                        term.comparison,
                        term.level.as_deref().unwrap_or("-"),
                        term.weight
                    );
                }
                println!(
                    "    weight {:+.2} probability {:.4}",
                    explanation.weight, explanation.probability
                );
            }
        }
    }
}

#[test]
fn febrl4_linkage() -> Result<(), String> {
    let Some(folder) = folder() else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let mut dataset = Dataset::link();
    load(&mut dataset, folder.join("febrl4/records_a.csv"), false)?;
    load(&mut dataset, folder.join("febrl4/records_b.csv"), true)?;
    let outcome = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)
        .map_err(|error| error.to_string())?;
    let elapsed = started.elapsed();
    let truth = truth(&dataset, folder.join("febrl4/true_pairs.csv"))?;
    let predicted = linked(&outcome);
    let accuracy = pairwise(predicted.iter().copied(), &truth);
    println!(
        "FEBRL4: {} candidate pairs, {:.2} s",
        outcome.candidate_pairs,
        elapsed.as_secs_f64()
    );
    println!("{:?}", outcome.model.training);
    report("FEBRL4 pairwise", &accuracy);
    show_errors(&dataset, &outcome, &predicted, &truth, 12);
    assert!(
        accuracy.f1 >= 0.9995,
        "FEBRL4 pairwise F1 {:.4} is below 0.9995",
        accuracy.f1
    );
    Ok(())
}

#[test]
fn febrl3_deduplication() -> Result<(), String> {
    let Some(folder) = folder() else {
        return Ok(());
    };
    let started = std::time::Instant::now();
    let mut dataset = Dataset::dedupe();
    load(&mut dataset, folder.join("febrl3/records.csv"), false)?;
    let outcome = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)
        .map_err(|error| error.to_string())?;
    let elapsed = started.elapsed();
    let truth = truth(&dataset, folder.join("febrl3/true_pairs.csv"))?;
    let predicted = linked(&outcome);
    let pairwise_accuracy = pairwise(predicted.iter().copied(), &truth);
    let labels = cluster(
        dataset.len(),
        &outcome.pairs,
        outcome.model.thresholds.probable,
    );
    let cluster_accuracy = pairwise(cluster_pairs(&labels, |_, _| true), &truth);
    println!(
        "FEBRL3: {} candidate pairs, {:.2} s",
        outcome.candidate_pairs,
        elapsed.as_secs_f64()
    );
    println!("{:?}", outcome.model.training);
    report("FEBRL3 pairwise", &pairwise_accuracy);
    report("FEBRL3 cluster", &cluster_accuracy);
    show_errors(&dataset, &outcome, &predicted, &truth, 12);
    assert!(
        pairwise_accuracy.f1 >= 0.995,
        "FEBRL3 pairwise F1 {:.4} is below 0.995",
        pairwise_accuracy.f1
    );
    assert!(
        cluster_accuracy.f1 >= 0.998,
        "FEBRL3 cluster F1 {:.4} is below 0.998",
        cluster_accuracy.f1
    );
    Ok(())
}
