//! `custodian bench server`: starts a server on loopback, drives it from this process, and
//! reports throughput, latency percentiles and the server's peak memory.
//!
//! Every run is bounded in time and in request count.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::body::Bytes;

use super::http::{Connection, ServerProcess, wait_until_up};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Concurrent client connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Length of one measured run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs per scenario; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Patients created before the read runs.
    #[arg(long, default_value_t = 1000)]
    seed: usize,
    /// Port for the benchmarked server (on 127.0.0.1).
    #[arg(long, default_value_t = 18080)]
    port: u16,
    /// Directory for the benchmark database (removed afterwards); it must be on a real disk
    /// for the create figures to mean durable writes.
    #[arg(long, default_value = "target/bench-data")]
    data_dir: PathBuf,
    /// A PostgreSQL server (postgres://USER@HOST:PORT/DATABASE) to keep the records in
    /// instead of SQLite, in a fresh schema dropped afterwards.
    #[arg(long)]
    database: Option<String>,
}

/// Upper bound on requests in one run, whatever the duration.
const MAX_REQUESTS_PER_RUN: usize = 5_000_000;

const PATIENT: &str = r#"{"resourceType":"Patient","active":true,"name":[{"use":"official","family":"Benchmark","given":["Load","Test"]}],"gender":"female","birthDate":"1970-01-01","identifier":[{"system":"urn:oid:1.2.36.146.595.217.0.1","value":"12345"}]}"#;

struct RunResult {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

impl RunResult {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let rank = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[rank]) / 1000.0
    }
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    if args.connections == 0 || args.runs == 0 || args.seconds == 0 {
        return Err("--connections, --runs and --seconds must be at least 1".into());
    }
    let server = ServerProcess::start_on(args.port, &args.data_dir, args.database.as_deref(), &[])?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(drive(&args, &server))
}

async fn drive(args: &BenchArgs, server: &ServerProcess) -> Result<(), String> {
    let address = format!("127.0.0.1:{}", args.port);
    wait_until_up(&address).await?;
    println!(
        "custodian bench server: {} connections, {} runs x {} s per scenario, server on {address}",
        args.connections, args.runs, args.seconds
    );

    let ids = seed(&address, args.seed).await?;
    let mut rows = Vec::new();
    for scenario in [Scenario::Read, Scenario::Create] {
        let mut results = Vec::new();
        for run in 0..args.runs {
            let result = run_scenario(&address, scenario, args, &ids).await?;
            println!(
                "  {:<6} run {}: {:>9.0} req/s, {} errors",
                scenario.name(),
                run + 1,
                result.per_second(),
                result.errors
            );
            results.push(result);
        }
        rows.push((scenario, summarize(results)));
    }
    let rss = server
        .peak_rss_mib()
        .map_or("n/a".to_string(), |mib| format!("{mib:.1} MiB"));
    println!();
    println!("| scenario | connections | median req/s | median p50 ms | median p99 ms | errors |");
    println!("|---|---|---|---|---|---|");
    for (scenario, summary) in &rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {} |",
            scenario.name(),
            args.connections,
            summary.0,
            summary.1,
            summary.2,
            summary.3
        );
    }
    println!();
    println!("server peak RSS (VmHWM): {rss}");
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn summarize(mut results: Vec<RunResult>) -> (f64, f64, f64, usize) {
    let rates = results.iter().map(RunResult::per_second).collect();
    let p50 = results.iter_mut().map(|r| r.percentile_ms(0.50)).collect();
    let p99 = results.iter_mut().map(|r| r.percentile_ms(0.99)).collect();
    let errors = results.iter().map(|r| r.errors).sum();
    (median(rates), median(p50), median(p99), errors)
}

#[derive(Clone, Copy)]
enum Scenario {
    Read,
    Create,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Read => "read",
            Scenario::Create => "create",
        }
    }
}

async fn seed(address: &str, count: usize) -> Result<Vec<String>, String> {
    let mut connection = Connection::open(address).await?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let (status, body) = connection
            .request(
                "POST",
                "/fhir/Patient",
                Some(Bytes::from_static(PATIENT.as_bytes())),
            )
            .await?;
        if status != 201 {
            return Err(format!("seeding failed with HTTP {status}"));
        }
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|error| format!("seeding answer is not JSON: {error}"))?;
        let id = value["id"].as_str().ok_or("seeding answer has no id")?;
        ids.push(format!("/fhir/Patient/{id}"));
    }
    if ids.is_empty() {
        return Err("--seed must be at least 1".into());
    }
    Ok(ids)
}

async fn run_scenario(
    address: &str,
    scenario: Scenario,
    args: &BenchArgs,
    ids: &[String],
) -> Result<RunResult, String> {
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let per_connection_cap = MAX_REQUESTS_PER_RUN / args.connections;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.connections {
        let address = address.to_string();
        let ids = ids.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&address).await?;
            let mut latencies = Vec::new();
            let mut errors = 0;
            let mut next = worker * 7919;
            while Instant::now() < deadline && latencies.len() < per_connection_cap {
                let sent = Instant::now();
                let result = match scenario {
                    Scenario::Read => {
                        next = (next + 1) % ids.len();
                        connection.request("GET", &ids[next], None).await
                    }
                    Scenario::Create => {
                        connection
                            .request(
                                "POST",
                                "/fhir/Patient",
                                Some(Bytes::from_static(PATIENT.as_bytes())),
                            )
                            .await
                    }
                };
                let elapsed = u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX);
                match result {
                    Ok((200 | 201, _)) => latencies.push(elapsed),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        connection = Connection::open(&address).await?;
                    }
                }
            }
            Ok::<_, String>((latencies, errors))
        }));
    }
    let mut result = RunResult {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task
            .await
            .map_err(|error| format!("a client task failed: {error}"))??;
        result.requests += latencies.len();
        result.errors += errors;
        result.latencies_us.extend(latencies);
    }
    result.elapsed = started.elapsed();
    Ok(result)
}
