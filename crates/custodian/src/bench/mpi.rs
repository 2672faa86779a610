//! Patient matching: accuracy and time on FEBRL4 (linkage) and FEBRL3 (deduplication),
//! end to end (reading, training, scoring) in-process; a one-million-record
//! deduplication of a generated FEBRL-like file by a `custodian mpi dedupe` process,
//! with its wall time, peak resident memory and accuracy; and single-record look-ups
//! in an index of 100,000 generated records.
//!
//! Accuracy counts a pair as linked at or above the model's `probable` threshold;
//! cluster accuracy counts every pair within the clusters those links make.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ::mpi::{
    Accuracy, ColumnMap, Dataset, Index, Model, Outcome, Quiet, Record, Training, cluster,
    cluster_pairs, pairwise, read_records, train_and_score,
};

use crate::mpi::generate::{FEBRL_MAP, Vocabulary, write};

#[derive(clap::Args)]
pub struct MpiArgs {
    /// The shared test data folder (holds febrl/).
    #[arg(long, env = "CUSTODIAN_TESTDATA", default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// Measured runs of each kind; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Records in the large deduplication (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Records in the look-up index (0 skips the look-ups).
    #[arg(long, default_value_t = 100_000)]
    indexed: usize,
    /// Where the generated file and the results go.
    #[arg(long, default_value = "target/bench-mpi")]
    work_dir: PathBuf,
}

pub fn run(args: &MpiArgs) -> Result<(), String> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let febrl = args.testdata.join("febrl");
    febrl4(&febrl, args.runs)?;
    febrl3(&febrl, args.runs)?;
    let vocabulary = Vocabulary::read(&febrl.join("febrl4/records_a.csv"))?;
    if args.indexed > 0 {
        lookups(&vocabulary, args.indexed)?;
    }
    if args.records > 0 {
        large(&vocabulary, args)?;
    }
    Ok(())
}

fn map() -> Result<ColumnMap, String> {
    ColumnMap::parse(FEBRL_MAP).map_err(|error| error.to_string())
}

fn load(dataset: &mut Dataset, path: &Path, right: bool) -> Result<(), String> {
    let file =
        File::open(path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    read_records(file, &map()?, |record| {
        if right {
            dataset.push_right(record)
        } else {
            dataset.push(record)
        }
    })
    .map_err(|error| format!("{}: {error}", path.display()))?;
    Ok(())
}

/// The record-position pairs of a FEBRL `true_pairs.csv`.
fn true_pairs(dataset: &Dataset, path: &Path) -> Result<Vec<(u32, u32)>, String> {
    let positions: HashMap<&str, u32> = (0..dataset.len() as u32)
        .map(|index| (dataset.id(index), index))
        .collect();
    let failed = |error: csv::Error| format!("{}: {error}", path.display());
    let mut reader = csv::Reader::from_path(path).map_err(failed)?;
    let mut pairs = Vec::new();
    for row in reader.records() {
        let row = row.map_err(failed)?;
        let position = |column: usize| row.get(column).and_then(|id| positions.get(id).copied());
        if let (Some(a), Some(b)) = (position(0), position(1)) {
            pairs.push((a, b));
        }
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

fn print(name: &str, accuracy: &Accuracy) {
    println!(
        "  {name}: precision {:.4}, recall {:.4}, F1 {:.4} ({} true, {} false positives, {} false negatives)",
        accuracy.precision,
        accuracy.recall,
        accuracy.f1,
        accuracy.true_positives,
        accuracy.false_positives,
        accuracy.false_negatives
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Reads, trains and scores `runs` times; returns the last outcome and dataset with
/// the median seconds.
fn timed(
    runs: usize,
    mut once: impl FnMut() -> Result<(Dataset, Outcome), String>,
) -> Result<(Dataset, Outcome, f64), String> {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let result = once()?;
        times.push(started.elapsed().as_secs_f64());
        last = Some(result);
    }
    let (dataset, outcome) = last.ok_or("no runs")?;
    Ok((dataset, outcome, median(times)))
}

fn febrl4(febrl: &Path, runs: usize) -> Result<(), String> {
    let (dataset, outcome, seconds) = timed(runs, || {
        let mut dataset = Dataset::link();
        load(&mut dataset, &febrl.join("febrl4/records_a.csv"), false)?;
        load(&mut dataset, &febrl.join("febrl4/records_b.csv"), true)?;
        let outcome = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)
            .map_err(|error| error.to_string())?;
        Ok((dataset, outcome))
    })?;
    let truth = true_pairs(&dataset, &febrl.join("febrl4/true_pairs.csv"))?;
    println!(
        "FEBRL4 linkage, 5,000 + 5,000 records: {seconds:.3} s end to end, training included (median of {runs}); {} candidate pairs",
        outcome.candidate_pairs
    );
    print("pairwise", &pairwise(linked(&outcome), &truth));
    Ok(())
}

fn febrl3(febrl: &Path, runs: usize) -> Result<(), String> {
    let (dataset, outcome, seconds) = timed(runs, || {
        let mut dataset = Dataset::dedupe();
        load(&mut dataset, &febrl.join("febrl3/records.csv"), false)?;
        let outcome = train_and_score(&dataset, Model::untrained(), &Training::default(), &Quiet)
            .map_err(|error| error.to_string())?;
        Ok((dataset, outcome))
    })?;
    let truth = true_pairs(&dataset, &febrl.join("febrl3/true_pairs.csv"))?;
    println!(
        "FEBRL3 deduplication, 5,000 records: {seconds:.3} s end to end, training included (median of {runs}); {} candidate pairs",
        outcome.candidate_pairs
    );
    print("pairwise", &pairwise(linked(&outcome), &truth));
    let labels = cluster(
        dataset.len(),
        &outcome.pairs,
        outcome.model.thresholds.probable,
    );
    print(
        "cluster",
        &pairwise(cluster_pairs(&labels, |_, _| true), &truth),
    );
    Ok(())
}

/// Generated records, parsed.
fn generated(vocabulary: &Vocabulary, records: usize, seed: u64) -> Result<Vec<Record>, String> {
    let mut text = Vec::new();
    write(vocabulary, records, 0.4, seed, &mut text).map_err(|error| error.to_string())?;
    let mut out = Vec::with_capacity(records);
    read_records(text.as_slice(), &map()?, |record| {
        out.push(record.clone());
        Ok(())
    })
    .map_err(|error| error.to_string())?;
    Ok(out)
}

/// Single-record look-ups: a model trained on a sample, an index of `indexed` records,
/// then one search per query record, timed one by one.
fn lookups(vocabulary: &Vocabulary, indexed: usize) -> Result<(), String> {
    let records = generated(vocabulary, indexed + 1_000, 11)?;
    let (stored, queries) = records.split_at(indexed.min(records.len()));
    let mut sample = Dataset::dedupe();
    for record in stored.iter().take(20_000) {
        sample.push(record).map_err(|error| error.to_string())?;
    }
    let model = train_and_score(&sample, Model::untrained(), &Training::default(), &Quiet)
        .map_err(|error| error.to_string())?
        .model;
    let mut index = Index::new(model).map_err(|error| error.to_string())?;
    let started = Instant::now();
    for record in stored {
        index.insert(record).map_err(|error| error.to_string())?;
    }
    let load = started.elapsed();
    let mut latencies: Vec<f64> = Vec::with_capacity(queries.len());
    let mut found = 0;
    for query in queries {
        let started = Instant::now();
        found += index.search(query).len();
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |quantile: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * quantile) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "Look-ups in an index of {} records (loaded in {:.2} s): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms per search ({} queries, {found} candidates)",
        index.len(),
        load.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0),
        latencies.len()
    );
    Ok(())
}

/// The large deduplication: a generated file, deduplicated by `custodian mpi dedupe`
/// child processes, timed with their peak memory.
fn large(vocabulary: &Vocabulary, args: &MpiArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.work_dir)
        .map_err(|error| format!("cannot create {}: {error}", args.work_dir.display()))?;
    let input = args.work_dir.join(format!("people-{}.csv", args.records));
    if !input.exists() {
        let file = File::create(&input)
            .map_err(|error| format!("cannot create {}: {error}", input.display()))?;
        let mut out = std::io::BufWriter::new(file);
        write(vocabulary, args.records, 0.4, 1, &mut out)
            .and_then(|_| std::io::Write::flush(&mut out))
            .map_err(|error| format!("cannot write {}: {error}", input.display()))?;
    }
    let exe = std::env::current_exe().map_err(|error| format!("cannot find myself: {error}"))?;
    let out = args.work_dir.join("out");
    let mut times = Vec::new();
    let mut peaks = Vec::new();
    let mut summary = String::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let mut child = Command::new(&exe)
            .args(["mpi", "dedupe", "--map", FEBRL_MAP, "--input"])
            .arg(&input)
            .arg("--out")
            .arg(&out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot run custodian mpi dedupe: {error}"))?;
        let pid = child.id();
        let mut peak: f64 = 0.0;
        while child
            .try_wait()
            .map_err(|error| error.to_string())?
            .is_none()
        {
            if let Some(rss) = peak_rss_mib(pid) {
                peak = peak.max(rss);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child
            .wait_with_output()
            .map_err(|error| error.to_string())?;
        if !output.status.success() {
            return Err("custodian mpi dedupe failed".into());
        }
        times.push(started.elapsed().as_secs_f64());
        peaks.push(peak);
        summary = String::from_utf8_lossy(&output.stdout).trim().to_string();
    }
    println!(
        "Deduplication of {} generated records (custodian mpi dedupe, end to end): {:.2} s wall, peak RSS {:.0} MiB (medians of {}; runs {})",
        args.records,
        median(times.clone()),
        median(peaks.clone()),
        args.runs,
        times
            .iter()
            .zip(&peaks)
            .map(|(time, peak)| format!("{time:.2} s/{peak:.0} MiB"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  {summary}");
    let (pairwise_accuracy, cluster_accuracy) = large_accuracy(&input, &out)?;
    print("pairwise", &pairwise_accuracy);
    print("cluster", &cluster_accuracy);
    Ok(())
}

/// The peak resident memory of a running process (`VmHWM`), in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Accuracy of a dedupe run's pairs.csv and clusters.csv against the generated file's
/// `cluster` column.
fn large_accuracy(input: &Path, out: &Path) -> Result<(Accuracy, Accuracy), String> {
    let failed = |path: &Path, error: csv::Error| format!("{}: {error}", path.display());
    let mut positions: HashMap<String, u32> = HashMap::new();
    let mut truth_labels: Vec<u32> = Vec::new();
    let mut people: HashMap<String, u32> = HashMap::new();
    let mut reader = csv::Reader::from_path(input).map_err(|error| failed(input, error))?;
    for row in reader.records() {
        let row = row.map_err(|error| failed(input, error))?;
        let (Some(id), Some(person)) = (row.get(0), row.get(1)) else {
            continue;
        };
        let next = people.len() as u32;
        truth_labels.push(*people.entry(person.to_string()).or_insert(next));
        positions.insert(id.to_string(), positions.len() as u32);
    }
    let truth = cluster_pairs(&truth_labels, |_, _| true);
    let position = |id: Option<&str>| id.and_then(|id| positions.get(id).copied());

    let pairs_path = out.join("pairs.csv");
    let mut predicted = Vec::new();
    let mut reader =
        csv::Reader::from_path(&pairs_path).map_err(|error| failed(&pairs_path, error))?;
    for row in reader.records() {
        let row = row.map_err(|error| failed(&pairs_path, error))?;
        let linked = matches!(row.get(4), Some("certain" | "probable"));
        if let (true, Some(a), Some(b)) = (linked, position(row.get(0)), position(row.get(1))) {
            predicted.push((a, b));
        }
    }
    let clusters_path = out.join("clusters.csv");
    let mut labels = vec![0u32; positions.len()];
    let mut reader =
        csv::Reader::from_path(&clusters_path).map_err(|error| failed(&clusters_path, error))?;
    for row in reader.records() {
        let row = row.map_err(|error| failed(&clusters_path, error))?;
        if let (Some(cluster), Some(record)) = (position(row.get(0)), position(row.get(2)))
            && let Some(slot) = labels.get_mut(record as usize)
        {
            *slot = cluster;
        }
    }
    Ok((
        pairwise(predicted, &truth),
        pairwise(cluster_pairs(&labels, |_, _| true), &truth),
    ))
}
