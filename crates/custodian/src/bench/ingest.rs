//! Transaction-Bundle ingest over HTTP: every synthea-100 bundle, posted by a few
//! concurrent clients to a fresh server, each commit durable.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hyper::body::Bytes;

use super::http::{Connection, ServerProcess, wait_until_up};

#[derive(clap::Args)]
pub struct IngestArgs {
    /// The shared test data folder (holds synthea/synthea-100).
    #[arg(long, env = "CUSTODIAN_TESTDATA", default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// Concurrent clients posting bundles.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Measured runs, each on a fresh database; the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Port for the benchmarked server (on 127.0.0.1).
    #[arg(long, default_value_t = 18081)]
    port: u16,
    /// Directory for the benchmark database (removed afterwards).
    #[arg(long, default_value = "target/bench-ingest")]
    data_dir: PathBuf,
    /// A PostgreSQL server (postgres://USER@HOST:PORT/DATABASE) to ingest into instead
    /// of SQLite: each run gets a fresh schema there, dropped afterwards.
    #[arg(long)]
    database: Option<String>,
}

struct Bundle {
    body: Bytes,
    resources: usize,
}

fn load(args: &IngestArgs) -> Result<Vec<Bundle>, String> {
    let mut files = super::synthea_files(&args.testdata)?;
    // Organizations and practitioners first, as Synthea loads them.
    files.sort_by_key(|path| {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string());
        !name.is_some_and(|n| n.starts_with("hospital") || n.starts_with("practitioner"))
    });
    let mut bundles = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
        let resources = value["entry"].as_array().map_or(0, Vec::len);
        bundles.push(Bundle {
            body: Bytes::from(text),
            resources,
        });
    }
    Ok(bundles)
}

pub fn run(args: &IngestArgs) -> Result<(), String> {
    if args.clients == 0 || args.runs == 0 {
        return Err("--clients and --runs must be at least 1".into());
    }
    let bundles = Arc::new(load(args)?);
    let total: usize = bundles.iter().map(|bundle| bundle.resources).sum();
    let bytes: usize = bundles.iter().map(|bundle| bundle.body.len()).sum();
    println!(
        "custodian bench ingest: {} transaction bundles, {total} resources, {:.1} MiB, {} clients",
        bundles.len(),
        bytes as f64 / 1_048_576.0,
        args.clients
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let mut rates = Vec::new();
    for run in 0..args.runs {
        let server =
            ServerProcess::start_on(args.port, &args.data_dir, args.database.as_deref(), &[])?;
        let address = format!("127.0.0.1:{}", args.port);
        let elapsed = runtime.block_on(async {
            wait_until_up(&address).await?;
            let next = Arc::new(AtomicUsize::new(0));
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..args.clients {
                let bundles = Arc::clone(&bundles);
                let next = Arc::clone(&next);
                let address = address.clone();
                tasks.push(tokio::spawn(async move {
                    let mut connection = Connection::open(&address).await?;
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(bundle) = bundles.get(index) else {
                            return Ok::<_, String>(());
                        };
                        let (status, body) = connection
                            .request("POST", "/fhir", Some(bundle.body.clone()))
                            .await?;
                        if status != 200 {
                            return Err(format!(
                                "bundle {index} answered {status}: {}",
                                String::from_utf8_lossy(&body[..body.len().min(300)])
                            ));
                        }
                    }
                }));
            }
            for task in tasks {
                task.await
                    .map_err(|error| format!("a client failed: {error}"))??;
            }
            Ok::<_, String>(started.elapsed())
        })?;
        let rate = total as f64 / elapsed.as_secs_f64();
        let rss = server
            .peak_rss_mib()
            .map_or("n/a".to_string(), |mib| format!("{mib:.1} MiB"));
        let per_resource = server.database_bytes() as f64 / total as f64;
        println!(
            "  run {}: {rate:>8.0} resources/s ({:.2} s), server peak RSS {rss}, database {per_resource:.0} bytes/resource",
            run + 1,
            elapsed.as_secs_f64()
        );
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "ingest: median {:.0} resources/s over {} runs",
        rates[rates.len() / 2],
        args.runs
    );
    Ok(())
}
