//! `custodian bench`: starts a server on loopback, drives it from this process, and
//! reports throughput, latency percentiles and the server's peak memory.
//!
//! Every run is bounded in time and in request count.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

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

struct ServerProcess {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

impl ServerProcess {
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

pub fn run(args: BenchArgs) -> Result<(), String> {
    if args.connections == 0 || args.runs == 0 || args.seconds == 0 {
        return Err("--connections, --runs and --seconds must be at least 1".into());
    }
    let _ = std::fs::remove_dir_all(&args.data_dir);
    std::fs::create_dir_all(&args.data_dir)
        .map_err(|error| format!("cannot create {}: {error}", args.data_dir.display()))?;
    let exe = std::env::current_exe().map_err(|error| format!("cannot find myself: {error}"))?;
    let child = Command::new(exe)
        .args(["serve", "--listen", &format!("127.0.0.1:{}", args.port)])
        .arg("--database")
        .arg(format!("sqlite:{}", args.data_dir.display()))
        .env("CUSTODIAN_LOG", "warn")
        .stdin(Stdio::null())
        .spawn()
        .map_err(|error| format!("cannot start the server: {error}"))?;
    let server = ServerProcess {
        child,
        data_dir: args.data_dir.clone(),
    };
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
        "custodian bench: {} connections, {} runs x {} s per scenario, server on {address}",
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

async fn wait_until_up(address: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut connection) = Connection::open(address).await
            && let Ok((200, _)) = connection.request("GET", "/health", None).await
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "the server on {address} did not come up within 30 s"
    ))
}

async fn seed(address: &str, count: usize) -> Result<Vec<String>, String> {
    let mut connection = Connection::open(address).await?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let (status, body) = connection
            .request("POST", "/fhir/Patient", Some(PATIENT))
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
                            .request("POST", "/fhir/Patient", Some(PATIENT))
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

/// One HTTP/1.1 keep-alive connection.
struct Connection {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    async fn open(address: &str) -> Result<Connection, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect to {address}: {error}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("handshake failed: {error}"))?;
        tokio::spawn(connection);
        Ok(Connection { sender })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&'static str>,
    ) -> Result<(u16, Bytes), String> {
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "127.0.0.1")
            .header("accept", "application/fhir+json");
        if body.is_some() {
            builder = builder.header("content-type", "application/fhir+json");
        }
        let request = builder
            .body(Full::new(
                body.map(|text| Bytes::from_static(text.as_bytes()))
                    .unwrap_or_default(),
            ))
            .map_err(|error| error.to_string())?;
        self.sender
            .ready()
            .await
            .map_err(|error| format!("connection closed: {error}"))?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| format!("reading the answer failed: {error}"))?
            .to_bytes();
        Ok((status, body))
    }
}
