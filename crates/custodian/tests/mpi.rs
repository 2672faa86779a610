//! `custodian mpi`: dedupe and link through the real binary, on a generated file with
//! known duplicates (data the model was never tuned on) and on FEBRL4; and the errors
//! a bad column map gets. Needs `febrl/` from the shared test data (its names are the
//! generator's vocabulary).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

const MAP: &str = "id=rec_id,given=given_name,family=surname,birthdate=date_of_birth,\
address=street_number,address=address_1,address=address_2,city=suburb,postcode=postcode,\
state=state,ssn=soc_sec_id";

fn custodian(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_custodian"))
        .args(args)
        .output()
        .expect("run custodian")
}

fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "custodian failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// (id_a, id_b) of the pairs at or above probable in a pairs.csv.
fn linked(pairs: &Path) -> Vec<(String, String)> {
    let mut reader = csv::Reader::from_path(pairs).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        ["id_a", "id_b", "match_weight", "match_probability", "class"]
    );
    reader
        .records()
        .map(Result::unwrap)
        .filter(|row| matches!(&row[4], "certain" | "probable"))
        .map(|row| (row[0].to_string(), row[1].to_string()))
        .collect()
}

/// Precision and recall of `found` against pairs of ids that share a truth key.
fn accuracy(
    found: &[(String, String)],
    truth_key: &HashMap<String, String>,
    true_pairs: usize,
) -> (f64, f64) {
    let correct = found
        .iter()
        .filter(|(a, b)| truth_key.get(a) == truth_key.get(b))
        .count();
    (
        correct as f64 / found.len().max(1) as f64,
        correct as f64 / true_pairs.max(1) as f64,
    )
}

#[test]
fn dedupe_finds_the_duplicates_of_a_generated_file_and_its_model_reloads() {
    let Some(febrl) = common::testdata("febrl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("people.csv");
    let vocabulary = febrl.join("febrl4/records_a.csv");
    succeeded(&custodian(&[
        "mpi",
        "generate",
        "--records",
        "20000",
        "--seed",
        "9",
        "--vocabulary",
        vocabulary.to_str().unwrap(),
        "--out",
        input.to_str().unwrap(),
    ]));
    let out = dir.path().join("out");
    let summary = succeeded(&custodian(&[
        "mpi",
        "dedupe",
        "--input",
        input.to_str().unwrap(),
        "--map",
        MAP,
        "--out",
        out.to_str().unwrap(),
    ]));
    assert!(summary.starts_with("20000 records, "), "{summary}");

    // The truth: records with the same `cluster` value.
    let mut truth_key = HashMap::new();
    let mut sizes: HashMap<String, usize> = HashMap::new();
    let mut reader = csv::Reader::from_path(&input).unwrap();
    for row in reader.records().map(Result::unwrap) {
        truth_key.insert(row[0].to_string(), row[1].to_string());
        *sizes.entry(row[1].to_string()).or_default() += 1;
    }
    let true_pairs: usize = sizes.values().map(|size| size * (size - 1) / 2).sum();
    let found = linked(&out.join("pairs.csv"));
    let (precision, recall) = accuracy(&found, &truth_key, true_pairs);
    assert!(
        precision >= 0.995 && recall >= 0.99,
        "precision {precision}, recall {recall}"
    );

    // Every record has a cluster; clusters of a record's duplicates agree with the truth.
    let mut reader = csv::Reader::from_path(out.join("clusters.csv")).unwrap();
    let clusters: Vec<(String, String)> = reader
        .records()
        .map(Result::unwrap)
        .map(|row| (row[0].to_string(), row[2].to_string()))
        .collect();
    assert_eq!(clusters.len(), 20000);

    // Scoring again with the saved model writes the same pairs.
    let again = dir.path().join("again");
    succeeded(&custodian(&[
        "mpi",
        "dedupe",
        "--input",
        input.to_str().unwrap(),
        "--map",
        MAP,
        "--model",
        out.join("model.json").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read_to_string(out.join("pairs.csv")).unwrap(),
        std::fs::read_to_string(again.join("pairs.csv")).unwrap()
    );
}

#[test]
fn link_pairs_the_two_febrl4_files() {
    let Some(febrl) = common::testdata("febrl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let left = febrl.join("febrl4/records_a.csv");
    let right = febrl.join("febrl4/records_b.csv");
    succeeded(&custodian(&[
        "mpi",
        "link",
        "--left",
        left.to_str().unwrap(),
        "--right",
        right.to_str().unwrap(),
        "--map",
        MAP,
        "--out",
        out.to_str().unwrap(),
    ]));
    let found = linked(&out.join("pairs.csv"));
    // rec-N-org in A is rec-N-dup-0 in B.
    let truth_key: HashMap<String, String> = found
        .iter()
        .flat_map(|(a, b)| [a, b])
        .map(|id| {
            (
                id.clone(),
                id.split("-dup")
                    .next()
                    .unwrap()
                    .trim_end_matches("-org")
                    .to_string(),
            )
        })
        .collect();
    let (precision, recall) = accuracy(&found, &truth_key, 5000);
    assert!(
        precision >= 0.999 && recall >= 0.999,
        "precision {precision}, recall {recall}"
    );
    assert!(
        found
            .iter()
            .all(|(a, b)| a.ends_with("-org") && b.contains("-dup-"))
    );
}

#[test]
fn a_bad_column_map_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("people.csv");
    std::fs::write(&input, "first,last\nann,lee\n").unwrap();
    let output = custodian(&[
        "mpi",
        "dedupe",
        "--input",
        input.to_str().unwrap(),
        "--map",
        "given=first,family=surname",
        "--out",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the column map: column \"surname\" is not in the header (first, last)"),
        "{stderr}"
    );
    let output = custodian(&[
        "mpi",
        "dedupe",
        "--input",
        "/nonexistent.csv",
        "--map",
        "given=first",
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot open /nonexistent.csv"));
}
