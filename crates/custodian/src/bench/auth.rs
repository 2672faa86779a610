//! `custodian bench auth`: what authentication, authorisation and the audit trail
//! cost. Two servers on loopback hold the same patients, one with `--insecure-no-auth`
//! (and no audit trail) and one with tokens and the audit trail, as `serve` runs by
//! default; read-by-id and search throughput are measured on both in alternating
//! runs, and the cost is the drop from the first to the second. Afterwards the secure
//! server's audit chain is verified and its records counted: one per request.
//!
//! Every run is bounded in time and in request count.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use privacy::account::Client;
use privacy::keys::SigningKey;
use privacy::token::{Grant, Issuer};
use privacy::{Role, Scopes};

use super::http::{Connection, ServerProcess, wait_until_up};

#[derive(clap::Args)]
pub struct AuthArgs {
    /// Concurrent client connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Length of one measured run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs per scenario and server; medians are reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Patients created before the runs.
    #[arg(long, default_value_t = 1000)]
    seed: usize,
    /// Further patients, each with an active Consent that denies everyone all of its
    /// records (on both servers; they are neither read nor found by the search), so
    /// the runs pay for checking that many consents.
    #[arg(long, default_value_t = 0)]
    consents: usize,
    /// Port of the server without authentication; the other listens on the next one.
    #[arg(long, default_value_t = 18090)]
    port: u16,
    /// Only this scenario (`read` or `search`); both by default.
    #[arg(long)]
    only: Option<String>,
    /// Further arguments for the secure server's `serve`, to measure a part alone
    /// (for example `--secure-arg=--insecure-no-audit`: tokens without the trail).
    #[arg(long = "secure-arg", allow_hyphen_values = true)]
    secure_args: Vec<String>,
    /// Directory for the two databases (removed afterwards).
    #[arg(long, default_value = "target/bench-auth")]
    data_dir: PathBuf,
}

/// Upper bound on requests in one run, whatever the duration.
const MAX_REQUESTS_PER_RUN: usize = 5_000_000;

const PATIENT: &str = r#"{"resourceType":"Patient","active":true,"name":[{"family":"Benchmark","given":["Auth"]}],"gender":"female","birthDate":"1970-01-01"}"#;
const SEARCH: &str = "/fhir/Patient?family=Benchmark&_count=10";

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Read,
    Search,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Read => "read by id",
            Scenario::Search => "search",
        }
    }
}

/// One server under test: where it listens, the `Authorization` it needs, and its
/// process (for the CPU it uses).
struct Target<'a> {
    address: String,
    authorization: Option<String>,
    process: &'a ServerProcess,
}

pub fn run(args: &AuthArgs) -> Result<(), String> {
    if args.connections == 0 || args.runs == 0 || args.seconds == 0 || args.seed == 0 {
        return Err("--connections, --runs, --seconds and --seed must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let open_dir = args.data_dir.join("open");
    let secure_dir = args.data_dir.join("secure");
    let secure_port = args.port.checked_add(1).ok_or("--port is too high")?;
    let token = runtime.block_on(prepare_secure(&secure_dir, secure_port))?;
    let open_server = ServerProcess::start(args.port, &open_dir, &[])?;
    let secure_server = ServerProcess::start_secure(
        secure_port,
        &secure_dir,
        &args
            .secure_args
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    )?;
    let open = Target {
        address: format!("127.0.0.1:{}", args.port),
        authorization: None,
        process: &open_server,
    };
    let secure = Target {
        address: format!("127.0.0.1:{secure_port}"),
        authorization: Some(format!("Bearer {token}")),
        process: &secure_server,
    };
    let result = runtime
        .block_on(drive(args, &open, &secure))
        .and_then(|()| {
            if args
                .secure_args
                .iter()
                .any(|arg| arg == "--insecure-no-audit")
            {
                return Ok(());
            }
            runtime.block_on(report_trail(&secure, &secure_dir))
        });
    drop(open);
    drop(secure);
    drop(open_server);
    drop(secure_server);
    let _ = std::fs::remove_dir_all(&args.data_dir);
    result
}

/// Verifies the secure server's audit chain and says how many records it holds.
async fn report_trail(secure: &Target<'_>, dir: &std::path::Path) -> Result<(), String> {
    // A search of the trail waits until every record queued before it is written.
    let mut connection = Connection::open(&secure.address).await?;
    let (status, _) = connection
        .request_with("GET", "/fhir/AuditEvent?_count=1", None, &headers(secure))
        .await?;
    if status != 200 {
        return Err(format!("searching the audit trail answered HTTP {status}"));
    }
    let store = store::Store::connect(&format!("sqlite:{}", dir.display()))
        .await
        .map_err(|error| error.to_string())?;
    let verification = store
        .audit_verify()
        .await
        .map_err(|error| error.to_string())?;
    match verification.broken {
        None => println!(
            "\naudit trail of the secure server: {} records, chain verified",
            verification.count
        ),
        Some(broken) => {
            return Err(format!(
                "the audit chain is broken at record {}: {}",
                broken.seq, broken.problem
            ));
        }
    }
    Ok(())
}

/// A fresh database with a client and a signing key; returns a token for the client.
async fn prepare_secure(dir: &std::path::Path, port: u16) -> Result<String, String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let store = store::Store::connect(&format!("sqlite:{}", dir.display()))
        .await
        .map_err(|error| error.to_string())?;
    let secret = privacy::password::generate_secret().map_err(|error| error.to_string())?;
    let client = Client {
        id: "bench".into(),
        name: "bench".into(),
        roles: vec![Role::Admin],
        scopes: "system/*.cruds".into(),
        secret_hash: Some(privacy::password::hash(&secret).map_err(|error| error.to_string())?),
        jwks: None,
        patient: None,
        recipient: None,
    };
    privacy::account::create_client(&store, &client)
        .await
        .map_err(|error| error.to_string())?;
    let key = SigningKey::load_or_create(&store)
        .await
        .map_err(|error| error.to_string())?;
    let origin = format!("http://127.0.0.1:{port}");
    let issuer = Issuer::new(origin.clone(), format!("{origin}/fhir"), 3600, key);
    let issued = issuer
        .issue(&Grant {
            subject: client.id.clone(),
            client_id: Some(client.id),
            user: None,
            roles: client.roles,
            scopes: Scopes::parse(&client.scopes),
            patient: None,
        })
        .map_err(|error| error.to_string())?;
    Ok(issued.access_token)
}

fn headers<'a>(target: &'a Target<'_>) -> Vec<(&'a str, &'a str)> {
    match &target.authorization {
        Some(value) => vec![("authorization", value.as_str())],
        None => Vec::new(),
    }
}

/// `count` patients of their own, each with a Consent that denies everyone everything.
async fn seed_consents(target: &Target<'_>, count: usize) -> Result<(), String> {
    let mut connection = Connection::open(&target.address).await?;
    for n in 0..count {
        let patient = format!(
            r#"{{"resourceType":"Patient","id":"restricted-{n}","name":[{{"family":"Restricted"}}]}}"#
        );
        let consent = format!(
            r#"{{"resourceType":"Consent","id":"restricted-{n}","status":"active","scope":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}}]}},"category":[{{"coding":[{{"system":"http://loinc.org","code":"59284-0"}}]}}],"patient":{{"reference":"Patient/restricted-{n}"}},"policyRule":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"OPTOUT"}}]}},"provision":{{"type":"deny"}}}}"#
        );
        for (path, body) in [
            (format!("/fhir/Patient/restricted-{n}"), patient),
            (format!("/fhir/Consent/restricted-{n}"), consent),
        ] {
            let (status, answer) = connection
                .request_with("PUT", &path, Some(Bytes::from(body)), &headers(target))
                .await?;
            if status != 201 && status != 200 {
                return Err(format!(
                    "seeding {path} failed with HTTP {status}: {}",
                    String::from_utf8_lossy(&answer)
                ));
            }
        }
    }
    Ok(())
}

async fn seed(target: &Target<'_>, count: usize) -> Result<Vec<String>, String> {
    let mut connection = Connection::open(&target.address).await?;
    let mut ids = Vec::with_capacity(count);
    for _ in 0..count {
        let (status, body) = connection
            .request_with(
                "POST",
                "/fhir/Patient",
                Some(Bytes::from_static(PATIENT.as_bytes())),
                &headers(target),
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
    Ok(ids)
}

async fn drive(args: &AuthArgs, open: &Target<'_>, secure: &Target<'_>) -> Result<(), String> {
    wait_until_up(&open.address).await?;
    wait_until_up(&secure.address).await?;
    println!(
        "custodian bench auth: {} connections, {} runs x {} s per scenario and server, {} patients, {} consents",
        args.connections, args.runs, args.seconds, args.seed, args.consents
    );
    let open_ids = seed(open, args.seed).await?;
    let secure_ids = seed(secure, args.seed).await?;
    seed_consents(open, args.consents).await?;
    seed_consents(secure, args.consents).await?;
    // A profiler attached now (`perf stat -p`) sees the measured requests only.
    println!("\nseeded");
    println!(
        "| scenario | --insecure-no-auth req/s | tokens + audit req/s | cost | cost of each pair, lowest to highest | p50 ms (open / tokens) | server CPU µs per request (open / tokens) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let scenarios = match args.only.as_deref() {
        None => vec![Scenario::Read, Scenario::Search],
        Some("read") => vec![Scenario::Read],
        Some("search") => vec![Scenario::Search],
        Some(other) => return Err(format!("--only takes read or search, not {other}")),
    };
    let mut requests = (0usize, 0usize);
    for scenario in scenarios {
        let mut open_rates = Vec::new();
        let mut secure_rates = Vec::new();
        let mut open_p50 = Vec::new();
        let mut secure_p50 = Vec::new();
        let mut open_cpu = Vec::new();
        let mut secure_cpu = Vec::new();
        // Alternate, so drift in the machine's load hits both alike; every other pair
        // starts with the secure server, so neither always goes first.
        for run in 0..args.runs {
            for secure_turn in [run % 2 == 1, run % 2 == 0] {
                if secure_turn {
                    let (rate, p50, cpu, count) =
                        measure(secure, scenario, args, &secure_ids).await?;
                    requests.1 += count;
                    secure_rates.push(rate);
                    secure_p50.push(p50);
                    secure_cpu.push(cpu);
                } else {
                    let (rate, p50, cpu, count) = measure(open, scenario, args, &open_ids).await?;
                    requests.0 += count;
                    open_rates.push(rate);
                    open_p50.push(p50);
                    open_cpu.push(cpu);
                }
            }
        }
        // The cost of each back-to-back pair, and their median: the host's speed drifts
        // over a run of minutes, and a pair sees the same host.
        let mut costs: Vec<f64> = open_rates
            .iter()
            .zip(&secure_rates)
            .map(|(open, secure)| (1.0 - secure / open) * 100.0)
            .collect();
        costs.sort_by(f64::total_cmp);
        let spread = costs
            .iter()
            .map(|cost| format!("{cost:.1}"))
            .collect::<Vec<_>>()
            .join(" ");
        let cost = median(costs);
        let (open_rate, secure_rate) = (median(open_rates), median(secure_rates));
        println!(
            "| {} | {open_rate:.0} | {secure_rate:.0} | {cost:.1}% | {spread} | {:.2} / {:.2} | {:.1} / {:.1} |",
            scenario.name(),
            median(open_p50),
            median(secure_p50),
            median(open_cpu),
            median(secure_cpu)
        );
    }
    println!(
        "\nrequests measured: {} open, {} secure",
        requests.0, requests.1
    );
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// One timed run: requests per second, the median latency in milliseconds, and the
/// server's CPU time per request in microseconds (NaN where `/proc` does not tell),
/// and the number of requests.
async fn measure(
    target: &Target<'_>,
    scenario: Scenario,
    args: &AuthArgs,
    ids: &[String],
) -> Result<(f64, f64, f64, usize), String> {
    let cpu_before = target.process.cpu_seconds();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let per_connection_cap = MAX_REQUESTS_PER_RUN / args.connections;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..args.connections {
        let address = target.address.clone();
        let authorization = target.authorization.clone();
        let ids = ids.to_vec();
        tasks.push(tokio::spawn(async move {
            let headers: Vec<(&str, &str)> = authorization
                .as_deref()
                .map(|value| vec![("authorization", value)])
                .unwrap_or_default();
            let mut connection = Connection::open(&address).await?;
            let mut latencies: Vec<u32> = Vec::new();
            let mut next = worker * 7919;
            while Instant::now() < deadline && latencies.len() < per_connection_cap {
                let path = match scenario {
                    Scenario::Read => {
                        next = (next + 1) % ids.len();
                        ids[next].as_str()
                    }
                    Scenario::Search => SEARCH,
                };
                let sent = Instant::now();
                let (status, _) = connection.request_with("GET", path, None, &headers).await?;
                if status != 200 {
                    return Err(format!("GET {path} answered HTTP {status}"));
                }
                latencies.push(u32::try_from(sent.elapsed().as_micros()).unwrap_or(u32::MAX));
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(
            task.await
                .map_err(|error| format!("a client task failed: {error}"))??,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    let rate = latencies.len() as f64 / elapsed;
    let cpu = match (cpu_before, target.process.cpu_seconds()) {
        (Some(before), Some(after)) if !latencies.is_empty() => {
            (after - before) * 1e6 / latencies.len() as f64
        }
        _ => f64::NAN,
    };
    latencies.sort_unstable();
    let p50 = latencies
        .get(latencies.len() / 2)
        .map_or(f64::NAN, |us| f64::from(*us) / 1000.0);
    Ok((rate, p50, cpu, latencies.len()))
}
