//! Bulk export speed: a data set loaded with `custodian import` (synthea-100, or a
//! folder written by `custodian dataset --format ndjson`), then timed `$export` jobs on
//! a real server process, kick-off to manifest, and timed `custodian export` runs.
//!
//! Reports the median resources per second of each and the server's peak resident
//! memory, which must not grow with the data set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::{ServerProcess, wait_until_up};
use crate::client::Connection;
use crate::export::{header, read_text};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A folder of NDJSON or Bundle files to load (e.g. `custodian dataset --scale 10
    /// --format ndjson --out DIR`); default: synthea-100 from the shared test data.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The shared test data folder (holds synthea/synthea-100).
    #[arg(long, env = "CUSTODIAN_TESTDATA", default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// Measured runs of each kind; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Port for the benchmarked server (on 127.0.0.1).
    #[arg(long, default_value_t = 18083)]
    port: u16,
    /// Directory for the benchmark database and the exported files.
    #[arg(long, default_value = "target/bench-export")]
    data_dir: PathBuf,
    /// Keep the loaded database, to run again on it with `--reuse`.
    #[arg(long)]
    keep: bool,
    /// Skip loading: reuse a database kept by an earlier `--keep` run.
    #[arg(long)]
    reuse: bool,
}

pub fn run(args: &ExportArgs) -> Result<(), String> {
    if args.runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let database_dir = args.data_dir.join("db");
    let out_dir = args.data_dir.join("out");
    let exe = std::env::current_exe().map_err(|error| format!("cannot find myself: {error}"))?;
    if !(args.reuse && database_dir.join("custodian.db").exists()) {
        let _ = std::fs::remove_dir_all(&args.data_dir);
        load(&exe, args, &database_dir)?;
    }
    let outcome = measure(&exe, args, &database_dir, &out_dir);
    let _ = std::fs::remove_dir_all(&out_dir);
    if !(args.keep || args.reuse) {
        let _ = std::fs::remove_dir_all(&args.data_dir);
    }
    outcome
}

/// Loads the data set with `custodian import --database`.
fn load(exe: &Path, args: &ExportArgs, database_dir: &Path) -> Result<(), String> {
    let inputs: Vec<PathBuf> = match &args.data {
        Some(folder) => vec![folder.clone()],
        None => {
            // Organizations and practitioners first: the patients' bundles refer to them.
            let mut files = super::synthea_files(&args.testdata)?;
            files.sort_by_key(|path| {
                let name = path.file_name().map(|n| n.to_string_lossy().to_string());
                !name.is_some_and(|n| n.starts_with("hospital") || n.starts_with("practitioner"))
            });
            files
        }
    };
    std::fs::create_dir_all(database_dir)
        .map_err(|error| format!("cannot create {}: {error}", database_dir.display()))?;
    println!("loading with custodian import ...");
    let started = Instant::now();
    let output = Command::new(exe)
        .arg("import")
        .arg("--database")
        .arg(format!("sqlite:{}", database_dir.display()))
        .arg("--checkpoint")
        .arg(args.data_dir.join("import.checkpoint"))
        .args(&inputs)
        .env("CUSTODIAN_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run custodian import: {error}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "the import failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    println!(
        "  {} ({:.1} s)",
        text.lines().next().unwrap_or(""),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn measure(
    exe: &Path,
    args: &ExportArgs,
    database_dir: &Path,
    out_dir: &Path,
) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let address = format!("127.0.0.1:{}", args.port);
    let server = ServerProcess::reopen(args.port, database_dir, &[])?.keep_data(true);
    let mut server_rss_idle = None;
    let server_runs = runtime.block_on(async {
        wait_until_up(&address).await?;
        server_rss_idle = server.peak_rss_mib();
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            runs.push(server_export(&address, &database_dir.join("export")).await?);
        }
        Ok::<_, String>(runs)
    })?;
    let server_rss = server.peak_rss_mib();
    drop(server);

    let mut cli_runs = Vec::new();
    let mut cli_rss: f64 = 0.0;
    for run in 0..args.runs {
        let out = out_dir.join(format!("cli-{run}"));
        let started = Instant::now();
        let mut child = Command::new(exe)
            .arg("export")
            .arg("--database")
            .arg(format!("sqlite:{}", database_dir.display()))
            .arg("--out")
            .arg(&out)
            .env("CUSTODIAN_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot run custodian export: {error}"))?;
        // Peak memory, read while it runs (gone once it is waited for).
        let pid = child.id();
        while child
            .try_wait()
            .map_err(|error| error.to_string())?
            .is_none()
        {
            if let Some(mib) = peak_rss_mib(pid) {
                cli_rss = cli_rss.max(mib);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let output = child
            .wait_with_output()
            .map_err(|error| error.to_string())?;
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            return Err(format!("custodian export failed: {text}"));
        }
        let resources: u64 = text
            .strip_prefix("exported ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|count| count.parse().ok())
            .ok_or_else(|| format!("custodian export printed no count: {text}"))?;
        let bytes = directory_bytes(&out);
        let _ = std::fs::remove_dir_all(&out);
        cli_runs.push(Run {
            resources,
            bytes,
            elapsed,
        });
    }

    report("server $export", &server_runs);
    report("custodian export", &cli_runs);
    let mib = |rss: Option<f64>| rss.map_or("?".into(), |mib| format!("{mib:.0}"));
    println!(
        "peak RSS: server {} MiB ({} MiB before the first export), custodian export {cli_rss:.0} MiB",
        mib(server_rss),
        mib(server_rss_idle)
    );
    Ok(())
}

struct Run {
    resources: u64,
    bytes: u64,
    elapsed: Duration,
}

fn report(name: &str, runs: &[Run]) {
    let mut rates: Vec<f64> = Vec::new();
    for (index, run) in runs.iter().enumerate() {
        let rate = run.resources as f64 / run.elapsed.as_secs_f64();
        println!(
            "  {name} run {}: {} resources, {:.0} MiB in {:.2} s: {rate:.0} resources/s",
            index + 1,
            run.resources,
            run.bytes as f64 / 1_048_576.0,
            run.elapsed.as_secs_f64()
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!("{name}: median {:.0} resources/s", rates[rates.len() / 2]);
}

/// One `$export` on the server: kick-off to manifest. The job is deleted afterwards.
async fn server_export(address: &str, export_dir: &Path) -> Result<Run, String> {
    let mut remote = Connection::open(address).await?;
    let started = Instant::now();
    let response = remote
        .send(
            "GET",
            "/fhir/$export",
            &[
                ("accept", "application/fhir+json"),
                ("prefer", "respond-async"),
            ],
            None,
        )
        .await?;
    let status = response.status().as_u16();
    let location = header(&response, "content-location");
    let text = read_text(response).await?;
    let location = match (status, location) {
        (202, Some(location)) => location,
        _ => return Err(format!("the kick-off answered {status}: {text}")),
    };
    let path = location
        .find("/fhir/")
        .map(|at| location[at..].to_string())
        .ok_or_else(|| format!("unexpected status URL {location}"))?;
    let manifest: Value = loop {
        let response = remote.send("GET", &path, &[], None).await?;
        let status = response.status().as_u16();
        let text = read_text(response).await?;
        match status {
            202 => tokio::time::sleep(Duration::from_millis(20)).await,
            200 => break serde_json::from_str(&text).map_err(|error| error.to_string())?,
            _ => return Err(format!("the export failed ({status}): {text}")),
        }
    };
    let elapsed = started.elapsed();
    let resources = manifest["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|output| output["count"].as_u64())
        .sum();
    let job = path.rsplit('/').next().unwrap_or_default();
    let bytes = directory_bytes(&export_dir.join(job));
    let response = remote.send("DELETE", &path, &[], None).await?;
    let _ = read_text(response).await?;
    Ok(Run {
        resources,
        bytes,
        elapsed,
    })
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// The size of the NDJSON files in `dir`.
fn directory_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "ndjson"))
                .filter_map(|entry| entry.metadata().ok())
                .map(|metadata| metadata.len())
                .sum()
        })
        .unwrap_or(0)
}
