//! `custodian bench mpi-match`: `Patient/$match` latency on a store of generated
//! patients. It generates FEBRL-like people with duplicates (`custodian mpi generate`),
//! writes them as FHIR Patients (NDJSON), loads them with `custodian import`, starts a
//! server on the store (timing its start, which builds the patient index), and posts
//! `$match` with perturbed copies of stored patients (a typo in a name, day and month
//! swapped, the address or the SSN left out), one request at a time over loopback.
//! It reports p50, p95 and p99, and how often the top match is the same person.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hyper::body::Bytes;
use serde_json::{Value, json};

use super::http::{Connection, ServerProcess, wait_until_up};
use crate::mpi::generate::{Vocabulary, write};

#[derive(clap::Args)]
pub struct MpiMatchArgs {
    /// The shared test data folder (holds febrl/, whose values make the vocabulary).
    #[arg(long, env = "CUSTODIAN_TESTDATA", default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// Patients in the store.
    #[arg(long, default_value_t = 100_000)]
    patients: usize,
    /// Timed `$match` requests (after 20 warm-up requests).
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Port for the benchmarked server (on 127.0.0.1).
    #[arg(long, default_value_t = 18087)]
    port: u16,
    /// Directory for the benchmark database and the generated files.
    #[arg(long, default_value = "target/bench-mpi-match")]
    data_dir: PathBuf,
    /// Leave the store behind (in `<data-dir>/store`), to start a server on it.
    #[arg(long)]
    keep: bool,
}

pub fn run(args: &MpiMatchArgs) -> Result<(), String> {
    if args.patients == 0 || args.requests == 0 {
        return Err("--patients and --requests must be at least 1".into());
    }
    let _ = std::fs::remove_dir_all(&args.data_dir);
    let input_dir = args.data_dir.join("input");
    let store_dir = args.data_dir.join("store");
    std::fs::create_dir_all(&input_dir)
        .map_err(|error| format!("cannot create {}: {error}", input_dir.display()))?;

    let vocabulary = Vocabulary::read(&args.testdata.join("febrl/febrl4/records_a.csv"))?;
    let mut csv = Vec::new();
    write(&vocabulary, args.patients, 0.2, 8, &mut csv)
        .map_err(|error| format!("cannot generate: {error}"))?;
    let patients = patients_of(&csv)?;
    let ndjson = input_dir.join("Patient.ndjson");
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&ndjson)
            .map_err(|error| format!("cannot create {}: {error}", ndjson.display()))?,
    );
    for (_, patient) in &patients {
        writeln!(file, "{patient}").map_err(|error| format!("cannot write: {error}"))?;
    }
    file.flush()
        .map_err(|error| format!("cannot write: {error}"))?;
    drop(file);

    let started = Instant::now();
    let exe = std::env::current_exe().map_err(|error| format!("cannot find myself: {error}"))?;
    let status = Command::new(exe)
        .arg("import")
        .arg("--database")
        .arg(format!("sqlite:{}", store_dir.display()))
        .arg("--checkpoint")
        .arg(args.data_dir.join("import.checkpoint"))
        .arg(&ndjson)
        .stdout(Stdio::null())
        .status()
        .map_err(|error| format!("cannot run custodian import: {error}"))?;
    if !status.success() {
        return Err("custodian import failed".into());
    }
    println!(
        "custodian bench mpi-match: {} patients imported in {:.1} s",
        patients.len(),
        started.elapsed().as_secs_f64()
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| error.to_string())?;
    let address = format!("127.0.0.1:{}", args.port);
    let started = Instant::now();
    let server = ServerProcess::reopen(args.port, &store_dir, &[])?;
    runtime.block_on(wait_until_up(&address))?;
    println!(
        "server start with the patient index built: {:.2} s (peak RSS {:.0} MiB)",
        started.elapsed().as_secs_f64(),
        server.peak_rss_mib().unwrap_or(0.0)
    );

    let (times, top_same, entries) = runtime.block_on(async {
        let mut connection = Connection::open(&address).await?;
        let mut random = 0x2545_f491_4f6c_dd1du64;
        let mut times = Vec::with_capacity(args.requests);
        let mut top_same = 0usize;
        let mut entries = 0usize;
        for round in 0..args.requests + 20 {
            let (person, patient) = &patients[next(&mut random) as usize % patients.len()];
            let query = perturb(patient, next(&mut random));
            let body = json!({"resourceType": "Parameters", "parameter": [
                {"name": "resource", "resource": query},
                {"name": "count", "valueInteger": 5}
            ]});
            let started = Instant::now();
            let (status, answer) = connection
                .request(
                    "POST",
                    "/fhir/Patient/$match",
                    Some(Bytes::from(body.to_string())),
                )
                .await?;
            let elapsed = started.elapsed();
            if status != 200 {
                return Err(format!(
                    "$match answered {status}: {}",
                    String::from_utf8_lossy(&answer[..answer.len().min(300)])
                ));
            }
            if round >= 20 {
                times.push(elapsed);
                let bundle: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
                entries += bundle["entry"].as_array().map_or(0, Vec::len);
                let top = bundle["entry"][0]["resource"]["id"].as_str().unwrap_or("");
                if top.starts_with(&format!("{person}-")) {
                    top_same += 1;
                }
            }
        }
        Ok::<_, String>((times, top_same, entries))
    })?;
    let mut times = times;
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |share: usize| times[(times.len() * share / 100).min(times.len() - 1)];
    println!(
        "$match, {} requests: p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms; {:.2} matches per answer; top match the same person: {:.1}%",
        times.len(),
        ms(at(50)),
        ms(at(95)),
        ms(at(99)),
        entries as f64 / times.len() as f64,
        100.0 * top_same as f64 / times.len() as f64
    );
    drop(server.keep_data(args.keep));
    if !args.keep {
        let _ = std::fs::remove_dir_all(&args.data_dir);
    }
    Ok(())
}

/// The generated rows as (person, Patient): FEBRL's columns mapped onto Patient
/// elements, empty values left out and dates that are not dates dropped.
fn patients_of(csv: &[u8]) -> Result<Vec<(String, Value)>, String> {
    let mut reader = csv::Reader::from_reader(csv);
    let mut patients = Vec::new();
    for row in reader.records() {
        let row = row.map_err(|error| format!("generated CSV: {error}"))?;
        let field = |index: usize| row.get(index).unwrap_or("").trim().to_string();
        let (id, person) = (field(0), field(1));
        let mut patient = json!({"resourceType": "Patient", "id": id});
        let mut name = serde_json::Map::new();
        if !field(3).is_empty() {
            name.insert("family".into(), json!(field(3)));
        }
        if !field(2).is_empty() {
            name.insert("given".into(), json!([field(2)]));
        }
        if !name.is_empty() {
            patient["name"] = json!([name]);
        }
        let birth = field(10);
        if let Some(date) = date(&birth) {
            patient["birthDate"] = json!(date);
        }
        let lines: Vec<String> = [format!("{} {}", field(4), field(5)), field(6)]
            .into_iter()
            .map(|line| line.trim().to_string())
            .filter(|line| !line.is_empty())
            .collect();
        let mut address = serde_json::Map::new();
        if !lines.is_empty() {
            address.insert("line".into(), json!(lines));
        }
        for (key, index) in [("city", 7), ("postalCode", 8), ("state", 9)] {
            if !field(index).is_empty() {
                address.insert(key.into(), json!(field(index)));
            }
        }
        if !address.is_empty() {
            patient["address"] = json!([address]);
        }
        if !field(11).is_empty() {
            patient["identifier"] = json!([{"system": ::mpi::US_SSN_SYSTEM, "value": field(11)}]);
        }
        patients.push((person, patient));
    }
    Ok(patients)
}

/// `YYYYMMDD` as `YYYY-MM-DD` when it is a date.
fn date(text: &str) -> Option<String> {
    if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let month: u32 = text[4..6].parse().ok()?;
    let day: u32 = text[6..8].parse().ok()?;
    ((1..=12).contains(&month) && (1..=28).contains(&day))
        .then(|| format!("{}-{}-{}", &text[0..4], &text[4..6], &text[6..8]))
}

/// A copy of `patient` as a new registration might have it: no id, and one of a typo
/// in a name, day and month swapped, the address left out, the SSN left out.
fn perturb(patient: &Value, roll: u64) -> Value {
    let mut query = patient.clone();
    if let Some(object) = query.as_object_mut() {
        object.remove("id");
    }
    match roll % 4 {
        0 => {
            if let Some(family) = query["name"][0]["family"].as_str() {
                let mut chars: Vec<char> = family.chars().collect();
                if chars.len() > 2 {
                    chars.swap(1, 2);
                }
                query["name"][0]["family"] = json!(chars.into_iter().collect::<String>());
            }
        }
        1 => {
            if let Some(birth) = query["birthDate"].as_str()
                && birth.len() == 10
                && birth[8..10].parse::<u32>().is_ok_and(|day| day <= 12)
            {
                let swapped = format!("{}-{}-{}", &birth[0..4], &birth[8..10], &birth[5..7]);
                query["birthDate"] = json!(swapped);
            }
        }
        2 => {
            if let Some(object) = query.as_object_mut() {
                object.remove("address");
            }
        }
        _ => {
            if let Some(object) = query.as_object_mut() {
                object.remove("identifier");
            }
        }
    }
    query
}

/// xorshift64.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}
