//! Crash safety: an acknowledged write survives SIGKILL.
//!
//! Four times on the same data directory: writers create and update Patients as fast as
//! they can, the server is killed mid-stream, and after a restart every write that got a
//! 2xx answer must be readable, with the version it was acknowledged as.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Tests: a panic is a failure report.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{TestServer, agent};
use serde_json::{Value, json};

const ROUNDS: usize = 4;
const WRITERS: usize = 8;
/// Resources every writer updates with PUT.
const SHARED: usize = 4;
/// Upper bound on writes per writer per round, whatever the speed.
const MAX_WRITES_PER_WRITER: usize = 20_000;
/// Upper bound on the time a writer runs in one round.
const WRITER_TIME_LIMIT: Duration = Duration::from_secs(3);
const MARKER_SYSTEM: &str = "urn:custodian:crash-test";

/// A write the server answered with 2xx.
#[derive(Clone, Debug)]
struct Ack {
    id: String,
    version: u64,
    marker: String,
    /// `true` for a PUT to a shared resource, `false` for a POST create.
    update: bool,
}

#[derive(Default)]
struct WriterReport {
    acks: Vec<Ack>,
    attempts: usize,
    unanswered: usize,
    /// Non-2xx answers: none are expected.
    unexpected: Vec<String>,
}

/// splitmix64: deterministic, good enough to vary the kill point.
fn pseudo_random(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn shared_id(n: usize) -> String {
    format!("crash-shared-{n}")
}

fn patient(id: Option<&str>, marker: &str) -> String {
    let mut body = json!({
        "resourceType": "Patient",
        "identifier": [{"system": MARKER_SYSTEM, "value": marker}],
        "active": true,
        "name": [{"family": "Crash", "given": ["Test", marker]}],
    });
    if let Some(id) = id {
        body["id"] = json!(id);
    }
    body.to_string()
}

/// `W/"3"` → 3.
fn etag_version(response: &ureq::http::Response<ureq::Body>) -> Option<u64> {
    let etag = response.headers().get("etag")?.to_str().ok()?;
    etag.trim_start_matches("W/").trim_matches('"').parse().ok()
}

/// `.../Patient/{id}/_history/{n}` → `(id, n)`.
fn location_id_version(response: &ureq::http::Response<ureq::Body>) -> Option<(String, u64)> {
    let location = response.headers().get("location")?.to_str().ok()?;
    let (prefix, version) = location.rsplit_once("/_history/")?;
    let (_, id) = prefix.rsplit_once('/')?;
    Some((id.to_string(), version.parse().ok()?))
}

fn write_loop(
    base: String,
    writer: usize,
    round: usize,
    killed: Arc<AtomicBool>,
    acknowledged: Arc<AtomicUsize>,
) -> WriterReport {
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let started = Instant::now();
    let mut report = WriterReport::default();
    let mut transport_errors = 0;
    for n in 0..MAX_WRITES_PER_WRITER {
        if started.elapsed() > WRITER_TIME_LIMIT {
            break;
        }
        let marker = format!("r{round}-w{writer}-n{n}");
        let update = n % 4 == 3;
        report.attempts += 1;
        let result = if update {
            let id = shared_id((writer + n) % SHARED);
            http.put(&format!("{base}/Patient/{id}"))
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=minimal")
                .send(patient(Some(&id), &marker))
                .map(|response| (Some(id), response))
        } else {
            http.post(&format!("{base}/Patient"))
                .header("content-type", "application/fhir+json")
                .header("prefer", "return=minimal")
                .send(patient(None, &marker))
                .map(|response| (None, response))
        };
        match result {
            Ok((put_id, mut response)) if response.status().is_success() => {
                // The status line is the acknowledgement; the headers say what was written.
                let ack = match put_id {
                    Some(id) => etag_version(&response).map(|version| (id, version)),
                    None => location_id_version(&response),
                };
                match ack {
                    Some((id, version)) => {
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                        report.acks.push(Ack {
                            id,
                            version,
                            marker,
                            update,
                        });
                    }
                    None => report.unexpected.push(format!(
                        "{marker}: {} without ETag/Location: {:?}",
                        response.status(),
                        response.headers()
                    )),
                }
                let _ = response.body_mut().read_to_string();
            }
            Ok((_, mut response)) => {
                let status = response.status();
                let body = response.body_mut().read_to_string().unwrap_or_default();
                report.unexpected.push(format!("{marker}: {status} {body}"));
            }
            Err(_) => {
                report.unanswered += 1;
                if killed.load(Ordering::SeqCst) {
                    break;
                }
                transport_errors += 1;
                if transport_errors > 50 {
                    report.unexpected.push(format!(
                        "{marker}: too many transport errors before the kill"
                    ));
                    break;
                }
                thread::sleep(Duration::from_millis(2));
            }
        }
    }
    report
}

/// GET a JSON body; `(status, body)`.
fn get_json(http: &ureq::Agent, url: &str) -> Result<(u16, Value), String> {
    let mut response = http
        .get(url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| format!("GET {url}: body: {e}"))?;
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Ok((status, body))
}

fn marker_of(body: &Value) -> Option<&str> {
    body["identifier"][0]["value"].as_str()
}

/// Checks one acknowledged write; `Err` says what is wrong.
fn check_ack(http: &ureq::Agent, base: &str, ack: &Ack) -> Result<(), String> {
    let url = if ack.update {
        format!("{base}/Patient/{}/_history/{}", ack.id, ack.version)
    } else {
        format!("{base}/Patient/{}", ack.id)
    };
    let (status, body) = get_json(http, &url)?;
    if status != 200 {
        return Err(format!("{url}: {status} {body}"));
    }
    if marker_of(&body) != Some(ack.marker.as_str()) {
        return Err(format!(
            "{url}: marker {:?}, acknowledged {:?}",
            marker_of(&body),
            ack.marker
        ));
    }
    let version_id = body["meta"]["versionId"].as_str().unwrap_or("");
    if version_id != ack.version.to_string() {
        return Err(format!(
            "{url}: meta.versionId {version_id:?}, acknowledged {}",
            ack.version
        ));
    }
    Ok(())
}

/// Every acknowledged write so far, checked on the restarted server, in parallel.
fn verify(base: &str, acks: &[Ack], attempts: usize) -> Vec<String> {
    let next = AtomicUsize::new(0);
    let mut failures: Vec<String> = thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let http = agent();
                    let mut failures = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(ack) = acks.get(index) else { break };
                        if let Err(failure) = check_ack(&http, base, ack) {
                            failures.push(failure);
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("verifier thread"))
            .collect()
    });

    let http = agent();
    // Shared resources: the current version is at least the highest acknowledged one,
    // and every version up to it is there (no gaps).
    let mut highest: BTreeMap<&str, u64> = BTreeMap::new();
    for ack in acks.iter().filter(|ack| ack.update) {
        let entry = highest.entry(ack.id.as_str()).or_default();
        *entry = (*entry).max(ack.version);
    }
    let mut shared_versions = 0;
    for (id, acknowledged) in &highest {
        let current = match get_json(&http, &format!("{base}/Patient/{id}")) {
            Ok((200, body)) => body["meta"]["versionId"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0),
            other => {
                failures.push(format!("read Patient/{id}: {other:?}"));
                continue;
            }
        };
        if current < *acknowledged {
            failures.push(format!(
                "Patient/{id} is at version {current}, but version {acknowledged} was acknowledged"
            ));
        }
        shared_versions += current;
        for version in 1..=current {
            match get_json(&http, &format!("{base}/Patient/{id}/_history/{version}")) {
                Ok((200, _)) => {}
                other => failures.push(format!("vread Patient/{id}/{version}: {other:?}")),
            }
        }
        match get_json(&http, &format!("{base}/Patient/{id}/_history?_count=0")) {
            Ok((200, body)) if body["total"].as_u64() == Some(current) => {}
            other => failures.push(format!(
                "Patient/{id}/_history total should be {current}: {other:?}"
            )),
        }
    }

    // History totals: every acknowledged write is a version; no more versions than writes sent.
    let total = |url: String| match get_json(&http, &url) {
        Ok((200, body)) => body["total"].as_u64(),
        _ => None,
    };
    let system = total(format!("{base}/_history?_count=0"));
    let patients = total(format!("{base}/Patient/_history?_count=0"));
    let acked = acks.len() as u64;
    match (system, patients) {
        (Some(system), Some(patients))
            if system == patients
                && (acked..=attempts as u64).contains(&system)
                && system >= shared_versions => {}
        other => failures.push(format!(
            "history totals (system, Patient) = {other:?}: expected equal, between {acked} acknowledged and {attempts} attempted writes, and ≥ {shared_versions} shared versions"
        )),
    }
    failures
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut acks: Vec<Ack> = Vec::new();
    let mut attempts = 0;
    let mut failures = Vec::new();

    for round in 0..ROUNDS {
        let server = TestServer::start_in(dir.path(), &[]);
        let killed = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let base = server.base.clone();
                let killed = Arc::clone(&killed);
                let acknowledged = Arc::clone(&acknowledged);
                thread::spawn(move || write_loop(base, writer, round, killed, acknowledged))
            })
            .collect();
        // The kill comes a random while after the first acknowledgement, however long
        // a busy machine takes to give it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while acknowledged.load(Ordering::SeqCst) == 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        let delay_ms = 150 + pseudo_random(0xC0FFEE + round as u64) % 251;
        thread::sleep(Duration::from_millis(delay_ms));
        killed.store(true, Ordering::SeqCst);
        server.kill();

        let mut round_acks = 0;
        let mut unanswered = 0;
        for writer in writers {
            let report = writer.join().expect("writer thread");
            attempts += report.attempts;
            unanswered += report.unanswered;
            round_acks += report.acks.len();
            acks.extend(report.acks);
            failures.extend(report.unexpected);
        }
        assert!(
            round_acks > 0,
            "round {round}: no write was acknowledged within 30 s of the start"
        );

        let restarted = TestServer::start_in(dir.path(), &[]);
        let round_failures = verify(&restarted.base, &acks, attempts);
        eprintln!(
            "round {round}: killed after {delay_ms} ms; {round_acks} writes acknowledged, {unanswered} unanswered; {} acknowledged so far verified, {} failures",
            acks.len(),
            round_failures.len()
        );
        failures.extend(round_failures);
        restarted.kill();
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the crash test is taking too long"
        );
    }

    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for ack in acks.iter().filter(|ack| !ack.update) {
        *by_id.entry(ack.id.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = by_id.iter().filter(|(_, count)| **count > 1).collect();
    assert!(duplicates.is_empty(), "ids assigned twice: {duplicates:?}");

    eprintln!(
        "{} acknowledged writes over {ROUNDS} crashes verified in {:.1} s",
        acks.len(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        for failure in failures.iter().take(30) {
            eprintln!("FAILURE: {failure}");
        }
        panic!("{} acknowledged writes were lost or wrong", failures.len());
    }
}
