//! Search latency over loopback: a fixed mix of queries against a server loaded with
//! synthea-100 or a data set scaled from it (`custodian dataset --scale N`).
//!
//! The load is timed too (transaction Bundles, four clients), so the cost of indexing
//! on write shows. Each query kind then runs on one connection, one request at a time,
//! with values sampled from the loaded data; p50 and p99 are reported per kind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::http::{Connection, ServerProcess, wait_until_up};

#[derive(clap::Args)]
pub struct SearchArgs {
    /// A folder of transaction Bundles to load (a `custodian dataset` output); default:
    /// synthea-100 from the shared test data.
    #[arg(long)]
    bundles: Option<PathBuf>,
    /// The shared test data folder (holds synthea/synthea-100).
    #[arg(long, env = "CUSTODIAN_TESTDATA", default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// Requests per query kind (after 10 warm-up requests).
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Port for the benchmarked server (on 127.0.0.1).
    #[arg(long, default_value_t = 18082)]
    port: u16,
    /// Directory for the benchmark database.
    #[arg(long, default_value = "target/bench-search")]
    data_dir: PathBuf,
    /// Keep the loaded database and reuse it on the next run with `--reuse`.
    #[arg(long)]
    keep: bool,
    /// Skip loading: reuse a database kept by an earlier `--keep` run.
    #[arg(long)]
    reuse: bool,
    /// A PostgreSQL server (postgres://USER@HOST:PORT/DATABASE) to load and search
    /// instead of SQLite, in a fresh schema dropped afterwards (no `--keep`/`--reuse`).
    #[arg(long)]
    database: Option<String>,
}

/// Values taken from the loaded data, to fill in the queries.
#[derive(Default, Serialize, Deserialize)]
struct Samples {
    resources: usize,
    /// (id, family, identifier system, identifier value)
    patients: Vec<(String, String, String, String)>,
    /// (patient id, system|code, effective year)
    observations: Vec<(String, String, String)>,
    /// (patient id, code)
    conditions: Vec<(String, String)>,
}

const SAMPLES_FILE: &str = "bench-samples.json";
const MAX_SAMPLES: usize = 5_000;

pub fn run(args: &SearchArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let address = format!("127.0.0.1:{}", args.port);
    let samples_path = args.data_dir.join(SAMPLES_FILE);
    if args.database.is_some() && (args.keep || args.reuse) {
        return Err("--keep and --reuse work with SQLite only".into());
    }
    let reuse = args.reuse && samples_path.exists();
    let server = if reuse {
        ServerProcess::reopen(args.port, &args.data_dir, &[])?
    } else {
        ServerProcess::start_on(args.port, &args.data_dir, args.database.as_deref(), &[])?
    };
    let server = server.keep_data(args.keep || args.reuse);
    let samples = runtime.block_on(async {
        wait_until_up(&address).await?;
        if reuse {
            let text = std::fs::read_to_string(&samples_path)
                .map_err(|error| format!("cannot read {}: {error}", samples_path.display()))?;
            serde_json::from_str::<Samples>(&text)
                .map_err(|error| format!("{} is corrupt: {error}", samples_path.display()))
        } else {
            let files = bundle_files(args)?;
            let samples = load(&address, &files).await?;
            let text = serde_json::to_string(&samples).map_err(|error| error.to_string())?;
            std::fs::write(&samples_path, text)
                .map_err(|error| format!("cannot write {}: {error}", samples_path.display()))?;
            Ok(samples)
        }
    })?;
    if samples.patients.is_empty() || samples.observations.is_empty() {
        return Err("the loaded data has no patients or observations to sample".into());
    }
    let bytes = server.database_bytes();
    println!(
        "database: {} resources, {:.1} MiB ({:.0} bytes/resource)",
        samples.resources,
        bytes as f64 / 1_048_576.0,
        bytes as f64 / samples.resources.max(1) as f64
    );
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>9}",
        "query", "p50 ms", "p99 ms", "mean ms", "matches"
    );
    runtime.block_on(async {
        let mut connection = Connection::open(&address).await?;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for kind in KINDS {
            let mut times = Vec::with_capacity(args.requests);
            let mut matches = 0u64;
            for round in 0..args.requests + 10 {
                let path = kind.path(&samples, &mut rng);
                let started = Instant::now();
                let (status, body) = connection.request("GET", &path, None).await?;
                let elapsed = started.elapsed();
                if status != 200 {
                    return Err(format!(
                        "{} answered {status}: {}",
                        kind.name,
                        String::from_utf8_lossy(&body[..body.len().min(300)])
                    ));
                }
                if round >= 10 {
                    times.push(elapsed);
                    matches += count_matches(&body);
                }
            }
            report(kind.name, &mut times, matches);
        }
        Ok::<_, String>(())
    })?;
    Ok(())
}

fn report(name: &str, times: &mut [Duration], matches: u64) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p50 = times[times.len() / 2];
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    let mean = times.iter().map(|d| ms(*d)).sum::<f64>() / times.len() as f64;
    println!(
        "{name:<44} {:>9.2} {:>9.2} {mean:>9.2} {:>9.1}",
        ms(p50),
        ms(p99),
        matches as f64 / times.len() as f64
    );
}

fn count_matches(body: &[u8]) -> u64 {
    let Ok(bundle) = serde_json::from_slice::<Value>(body) else {
        return 0;
    };
    bundle["entry"].as_array().map_or(0, |entries| {
        entries
            .iter()
            .filter(|entry| entry["search"]["mode"] == "match")
            .count() as u64
    })
}

/// One query kind of the mix.
struct Kind {
    name: &'static str,
    build: fn(&Samples, &mut Rng) -> String,
}

impl Kind {
    fn path(&self, samples: &Samples, rng: &mut Rng) -> String {
        format!("/fhir/{}", (self.build)(samples, rng))
    }
}

fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

const KINDS: [Kind; 10] = [
    Kind {
        name: "Patient by family name",
        build: |s, rng| {
            let p = rng.pick(&s.patients);
            format!("Patient?family={}", encode(&p.1))
        },
    },
    Kind {
        name: "Patient by identifier",
        build: |s, rng| {
            let p = rng.pick(&s.patients);
            format!("Patient?identifier={}", encode(&format!("{}|{}", p.2, p.3)))
        },
    },
    Kind {
        name: "Observation by patient and code",
        build: |s, rng| {
            let o = rng.pick(&s.observations);
            format!("Observation?patient={}&code={}", o.0, encode(&o.1))
        },
    },
    Kind {
        name: "Observation by code and date range",
        build: |s, rng| {
            let o = rng.pick(&s.observations);
            let year: i32 = o.2.parse().unwrap_or(2015);
            format!(
                "Observation?code={}&date=ge{year}-01-01&date=lt{}-07-01&_count=10",
                encode(&o.1),
                year
            )
        },
    },
    Kind {
        name: "Condition by patient",
        build: |s, rng| {
            let c = rng.pick(&s.conditions);
            format!("Condition?patient={}", c.0)
        },
    },
    Kind {
        name: "Encounter by patient, -date, _count=10",
        build: |s, rng| {
            let p = rng.pick(&s.patients);
            format!("Encounter?patient={}&_sort=-date&_count=10", p.0)
        },
    },
    Kind {
        name: "chain: Observation?subject:Patient.family",
        build: |s, rng| {
            let o = rng.pick(&s.observations);
            let p = rng.pick(&s.patients);
            format!(
                "Observation?subject:Patient.family={}&code={}",
                encode(&p.1),
                encode(&o.1)
            )
        },
    },
    Kind {
        name: "_has: Patient?_has:Condition:patient:code",
        build: |s, rng| {
            let c = rng.pick(&s.conditions);
            let p = rng.pick(&s.patients);
            format!(
                "Patient?_has:Condition:patient:code={}&family={}",
                encode(&c.1),
                encode(&p.1)
            )
        },
    },
    Kind {
        name: "_revinclude: Patient?_id&_revinclude=Enc",
        build: |s, rng| {
            let p = rng.pick(&s.patients);
            format!("Patient?_id={}&_revinclude=Encounter:patient", p.0)
        },
    },
    Kind {
        name: "_total=accurate: Observation?code",
        build: |s, rng| {
            let o = rng.pick(&s.observations);
            format!(
                "Observation?code={}&_total=accurate&_count=10",
                encode(&o.1)
            )
        },
    },
];

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

fn bundle_files(args: &SearchArgs) -> Result<Vec<PathBuf>, String> {
    match &args.bundles {
        Some(dir) => {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|error| format!("cannot read {}: {error}", dir.display()))?
                .filter_map(|entry| entry.ok().map(|entry| entry.path()))
                .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
                .collect();
            // `custodian dataset` names shared bundles 0-*, patients 1-*.
            files.sort();
            Ok(files)
        }
        None => {
            let mut files = super::synthea_files(&args.testdata)?;
            files.sort_by_key(|path| {
                let name = path.file_name().map(|n| n.to_string_lossy().to_string());
                !name.is_some_and(|n| n.starts_with("hospital") || n.starts_with("practitioner"))
            });
            Ok(files)
        }
    }
}

/// Posts every bundle (four clients; shared bundles first, alone), and samples values
/// from the patients' bundles with the ids the server gave.
async fn load(address: &str, files: &[PathBuf]) -> Result<Samples, String> {
    let started = Instant::now();
    let shared = files
        .iter()
        .take_while(|path| {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string());
            name.is_some_and(|n| {
                n.starts_with("0-") || n.starts_with("hospital") || n.starts_with("practitioner")
            })
        })
        .count();
    let mut connection = Connection::open(address).await?;
    let mut samples = Samples::default();
    for path in &files[..shared] {
        let (count, _) = post(&mut connection, path).await?;
        samples.resources += count;
    }
    let files: Arc<Vec<PathBuf>> = Arc::new(files[shared..].to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let files = Arc::clone(&files);
        let next = Arc::clone(&next);
        let address = address.to_string();
        tasks.push(tokio::spawn(async move {
            let mut connection = Connection::open(&address).await?;
            let mut samples = Samples::default();
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(index) else {
                    return Ok::<_, String>(samples);
                };
                let (count, answered) = post(&mut connection, path).await?;
                samples.resources += count;
                // One sample bundle in 20 keeps memory bounded on big data sets.
                if index.is_multiple_of(20) || files.len() < 200 {
                    sample(path, &answered, &mut samples)?;
                }
                if index.is_multiple_of(500) && index > 0 {
                    eprintln!("  loaded {index} of {} bundles", files.len());
                }
            }
        }));
    }
    for task in tasks {
        let part = task
            .await
            .map_err(|error| format!("a client failed: {error}"))??;
        samples.resources += part.resources;
        samples.patients.extend(part.patients);
        samples.observations.extend(part.observations);
        samples.conditions.extend(part.conditions);
    }
    samples.patients.truncate(MAX_SAMPLES);
    samples.observations.truncate(MAX_SAMPLES);
    samples.conditions.truncate(MAX_SAMPLES);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "load: {} resources in {elapsed:.1} s ({:.0} resources/s, transactions, 4 clients, indexing on write)",
        samples.resources,
        samples.resources as f64 / elapsed
    );
    Ok(samples)
}

async fn post(connection: &mut Connection, path: &Path) -> Result<(usize, Value), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let count = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|bundle| bundle["entry"].as_array().map(Vec::len))
        .unwrap_or(0);
    let (status, body) = connection
        .request("POST", "/fhir", Some(Bytes::from(text)))
        .await?;
    if status != 200 {
        return Err(format!(
            "{} answered {status}: {}",
            path.display(),
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    let answered: Value = serde_json::from_slice(&body)
        .map_err(|error| format!("the answer to {} is not JSON: {error}", path.display()))?;
    Ok((count, answered))
}

/// Takes values from a patient bundle, with the ids its transaction response gave.
fn sample(path: &Path, answered: &Value, samples: &mut Samples) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let bundle: Value = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
    let requests = bundle["entry"].as_array().cloned().unwrap_or_default();
    let responses = answered["entry"].as_array().cloned().unwrap_or_default();
    let id_of = |index: usize| -> Option<String> {
        let location = responses.get(index)?["response"]["location"].as_str()?;
        location.split('/').nth(1).map(str::to_string)
    };
    let mut patient_id = None;
    for (index, entry) in requests.iter().enumerate() {
        let resource = &entry["resource"];
        match resource["resourceType"].as_str() {
            Some("Patient") => {
                let Some(id) = id_of(index) else { continue };
                patient_id = Some(id.clone());
                let family = resource["name"][0]["family"].as_str().unwrap_or("");
                let identifier = resource["identifier"]
                    .as_array()
                    .and_then(|ids| ids.iter().find(|i| i["type"]["coding"][0]["code"] == "MR"))
                    .or_else(|| resource["identifier"].get(0));
                if let Some(identifier) = identifier {
                    samples.patients.push((
                        id,
                        family.to_string(),
                        identifier["system"].as_str().unwrap_or("").to_string(),
                        identifier["value"].as_str().unwrap_or("").to_string(),
                    ));
                }
            }
            Some("Observation") => {
                let (Some(patient), Some(system), Some(code), Some(date)) = (
                    patient_id.clone(),
                    resource["code"]["coding"][0]["system"].as_str(),
                    resource["code"]["coding"][0]["code"].as_str(),
                    resource["effectiveDateTime"].as_str(),
                ) else {
                    continue;
                };
                if index % 7 == 0 {
                    samples.observations.push((
                        patient,
                        format!("{system}|{code}"),
                        date.get(..4).unwrap_or("2015").to_string(),
                    ));
                }
            }
            Some("Condition") => {
                if let (Some(patient), Some(code)) = (
                    patient_id.clone(),
                    resource["code"]["coding"][0]["code"].as_str(),
                ) {
                    samples.conditions.push((patient, code.to_string()));
                }
            }
            _ => {}
        }
    }
    Ok(())
}
