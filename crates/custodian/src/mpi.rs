//! `custodian mpi`: batch patient matching over CSV files with the `mpi` engine.
//!
//! - `dedupe --input FILE --map MAP`: the records of one file that are the same person;
//! - `link --left A --right B --map MAP`: the records of B that are records of A;
//! - `generate --records N --out FILE`: a synthetic FEBRL-like file with known duplicates.
//!
//! `dedupe` and `link` train the model on the input (no labels) unless `--model` names a
//! saved one, and write to `--out`: `pairs.csv` (every pair at or above the `possible`
//! threshold, with its match weight, probability and class), `clusters.csv` (each record
//! with its cluster: the connected components of the pairs at or above `probable`), and
//! `model.json` (the model used, to reload with `--model` or to read its weights).

pub mod generate;

use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ::mpi::{ColumnMap, Dataset, MatchClass, Model, Outcome, Training};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Subcommand)]
pub enum MpiCommand {
    /// Find the records of one CSV file that are the same person.
    Dedupe(DedupeArgs),
    /// Find the records of a right CSV file that are the same person as records of a left one.
    Link(LinkArgs),
    /// Write a synthetic CSV of people with known duplicates (FEBRL's columns).
    Generate(generate::GenerateArgs),
}

/// What both `dedupe` and `link` take.
#[derive(clap::Args)]
pub struct MatchOptions {
    /// Which column feeds which field: `given=given_name,family=surname,birthdate=dob,...`
    /// (fields: id, given, family, birthdate, sex, address (repeatable, one line each),
    /// city, state, postcode, phone, ssn, identifier:SYSTEM).
    #[arg(long)]
    map: String,
    /// Where to write pairs.csv, clusters.csv and model.json.
    #[arg(long, default_value = "mpi-out")]
    out: PathBuf,
    /// Score with this saved model instead of training one on the input.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Clusters join pairs at or above this match probability (default: the model's
    /// `probable` threshold).
    #[arg(long)]
    cluster_at: Option<f64>,
    /// Random pairs used to estimate u when training.
    #[arg(long, default_value_t = Training::default().random_pairs)]
    random_pairs: usize,
}

#[derive(clap::Args)]
pub struct DedupeArgs {
    /// The CSV file (with a header row).
    #[arg(long)]
    input: PathBuf,
    #[command(flatten)]
    options: MatchOptions,
}

#[derive(clap::Args)]
pub struct LinkArgs {
    /// The left CSV file.
    #[arg(long)]
    left: PathBuf,
    /// The right CSV file.
    #[arg(long)]
    right: PathBuf,
    /// The column map of the right file, when its columns differ from the left's.
    #[arg(long)]
    right_map: Option<String>,
    #[command(flatten)]
    options: MatchOptions,
}

pub fn run(command: MpiCommand) -> Result<(), String> {
    match command {
        MpiCommand::Dedupe(args) => dedupe(&args),
        MpiCommand::Link(args) => link(&args),
        MpiCommand::Generate(args) => generate::run(&args),
    }
}

fn dedupe(args: &DedupeArgs) -> Result<(), String> {
    let started = Instant::now();
    let map = parse_map(&args.options.map)?;
    let progress = Bar::new();
    let mut dataset = Dataset::dedupe();
    read(&args.input, &map, &progress, |record| dataset.push(record))?;
    finish(&dataset, &args.options, &progress, started)
}

fn link(args: &LinkArgs) -> Result<(), String> {
    let started = Instant::now();
    let map = parse_map(&args.options.map)?;
    let right_map = match &args.right_map {
        Some(text) => parse_map(text)?,
        None => map.clone(),
    };
    let progress = Bar::new();
    let mut dataset = Dataset::link();
    read(&args.left, &map, &progress, |record| dataset.push(record))?;
    read(&args.right, &right_map, &progress, |record| {
        dataset.push_right(record)
    })?;
    finish(&dataset, &args.options, &progress, started)
}

fn parse_map(text: &str) -> Result<ColumnMap, String> {
    ColumnMap::parse(text).map_err(|error| error.to_string())
}

/// Reads `path` through `map`, showing bytes read.
fn read(
    path: &Path,
    map: &ColumnMap,
    progress: &Bar,
    add: impl FnMut(&::mpi::Record) -> Result<(), ::mpi::Error>,
) -> Result<u64, String> {
    let file =
        File::open(path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let size = file.metadata().map(|metadata| metadata.len()).unwrap_or(0);
    progress.start(&format!("reading {}", path.display()), size);
    let counted = Counted {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        bar: &progress.bar,
    };
    ::mpi::read_records(counted, map, add).map_err(|error| format!("{}: {error}", path.display()))
}

/// Trains or loads the model, scores, clusters and writes the results.
fn finish(
    dataset: &Dataset,
    options: &MatchOptions,
    progress: &Bar,
    started: Instant,
) -> Result<(), String> {
    if dataset.is_empty() {
        return Err("no records to match".into());
    }
    let outcome = match &options.model {
        Some(path) => {
            let model = Model::load(path).map_err(|error| error.to_string())?;
            ::mpi::score(dataset, model, progress)
        }
        None => {
            let training = Training {
                random_pairs: options.random_pairs,
                ..Training::default()
            };
            ::mpi::train_and_score(dataset, Model::untrained(), &training, progress)
        }
    }
    .map_err(|error| error.to_string())?;
    let cluster_at = options
        .cluster_at
        .unwrap_or(outcome.model.thresholds.probable);
    let labels = ::mpi::cluster(dataset.len(), &outcome.pairs, cluster_at);
    progress.start("writing", 3);
    std::fs::create_dir_all(&options.out)
        .map_err(|error| format!("cannot create {}: {error}", options.out.display()))?;
    write_pairs(&options.out.join("pairs.csv"), dataset, &outcome)?;
    progress.bar.inc(1);
    let clusters = write_clusters(&options.out.join("clusters.csv"), dataset, &labels)?;
    progress.bar.inc(1);
    outcome
        .model
        .save(&options.out.join("model.json"))
        .map_err(|error| error.to_string())?;
    progress.bar.finish_and_clear();
    let mut classes = [0usize; 3];
    for pair in &outcome.pairs {
        match outcome.model.thresholds.class(f64::from(pair.probability)) {
            MatchClass::Certain => classes[0] += 1,
            MatchClass::Probable => classes[1] += 1,
            _ => classes[2] += 1,
        }
    }
    println!(
        "{} records, {} candidate pairs{}: {} certain, {} probable, {} possible; {} clusters of 2 or more; {:.2} s; results in {}",
        dataset.len(),
        outcome.candidate_pairs,
        if outcome.skipped_blocks > 0 {
            format!(" ({} oversized blocks skipped)", outcome.skipped_blocks)
        } else {
            String::new()
        },
        classes[0],
        classes[1],
        classes[2],
        clusters,
        started.elapsed().as_secs_f64(),
        options.out.display()
    );
    let rules: Vec<String> = outcome
        .rules
        .iter()
        .map(|rule| format!("{} {}", rule.rule, rule.new_pairs))
        .collect();
    println!("pairs found per blocking rule: {}", rules.join(", "));
    Ok(())
}

fn create(path: &Path) -> Result<BufWriter<File>, String> {
    File::create(path)
        .map(|file| BufWriter::with_capacity(1 << 20, file))
        .map_err(|error| format!("cannot create {}: {error}", path.display()))
}

fn write_pairs(path: &Path, dataset: &Dataset, outcome: &Outcome) -> Result<(), String> {
    let failed = |error: csv::Error| format!("cannot write {}: {error}", path.display());
    let mut writer = csv::Writer::from_writer(create(path)?);
    writer
        .write_record(["id_a", "id_b", "match_weight", "match_probability", "class"])
        .map_err(failed)?;
    for pair in &outcome.pairs {
        let class = outcome
            .model
            .thresholds
            .class(f64::from(pair.probability))
            .name();
        writer
            .write_record([
                dataset.id(pair.a),
                dataset.id(pair.b),
                &format!("{:.3}", pair.weight),
                &format!("{:.6}", pair.probability),
                class,
            ])
            .map_err(failed)?;
    }
    writer
        .flush()
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Writes every record with its cluster (the id of the cluster's first record) and, in
/// a linkage, its side; returns the number of clusters of two or more records.
fn write_clusters(path: &Path, dataset: &Dataset, labels: &[u32]) -> Result<usize, String> {
    let failed = |error: csv::Error| format!("cannot write {}: {error}", path.display());
    let mut sizes = std::collections::HashMap::new();
    for label in labels {
        *sizes.entry(*label).or_insert(0usize) += 1;
    }
    let mut writer = csv::Writer::from_writer(create(path)?);
    writer
        .write_record(["cluster", "side", "id"])
        .map_err(failed)?;
    for (index, label) in labels.iter().enumerate() {
        let index = index as u32;
        let side = if dataset.is_right(index) {
            "right"
        } else {
            "left"
        };
        writer
            .write_record([dataset.id(*label), side, dataset.id(index)])
            .map_err(failed)?;
    }
    writer
        .flush()
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(sizes.values().filter(|&&size| size > 1).count())
}

/// The progress bar of a run, on standard error (hidden when that is not a terminal).
struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg:>24} {bar:40} {percent:>3}% {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Bar { bar }
    }

    fn start(&self, name: &str, total: u64) {
        self.bar.set_message(name.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
    }
}

impl ::mpi::Progress for Bar {
    fn stage(&self, name: &str, total: u64) {
        self.start(name, total);
    }

    fn advance(&self, amount: u64) {
        self.bar.inc(amount);
    }
}

/// A reader that moves the progress bar by the bytes it reads.
struct Counted<'a, R> {
    inner: R,
    bar: &'a ProgressBar,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.bar.inc(read as u64);
        Ok(read)
    }
}
