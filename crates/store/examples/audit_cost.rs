//! What appending audit records costs the store's writer: N records like a read by
//! id's (one of P patients each, one agent), appended in groups of 4,096 as the
//! server's background trail does, into a fresh SQLite store.
//! `cargo run --release -p store --example audit_cost -- [N] [P]` prints the time per
//! record (wall clock, durable commits included) and the process's CPU time per
//! record, then the time a search by patient takes (its ten newest records).

use std::sync::Arc;
use std::time::Instant as Clock;

use store::{
    AuditBatch, AuditColumn, AuditDetail, AuditFilter, AuditQuery, AuditRecord, Instant, Store,
};

fn record(n: usize, patients: usize) -> AuditRecord {
    let patient = format!(
        "Patient/{:08x}-5c1e-4e7b-9d1f-{:012x}",
        n % patients,
        n % patients
    );
    AuditRecord {
        recorded: Instant::now(),
        type_code: "rest",
        subtype: "read",
        action: "R",
        outcome: "0",
        severity: "informational",
        agent: "bench".into(),
        patient: Some(patient.clone()),
        purpose: None,
        entities: vec![patient],
        detail: AuditDetail {
            status: 200,
            client: Some("bench".into()),
            roles: vec!["admin"],
            address: Some(std::net::IpAddr::from([127, 0, 0, 1])),
            ..AuditDetail::default()
        },
        body: None,
    }
}

/// User and system CPU time of this process so far, in seconds (from `/proc`; zero
/// where it cannot be read).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|value| value.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line; clock ticks are 1/100 s.
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(200_000), |n| n.parse())?;
    let patients: usize = args.next().map_or(Ok(1_000), |n| n.parse())?;
    let dir = std::env::temp_dir().join(format!("audit-cost-{}", std::process::id()));
    let runtime = tokio::runtime::Runtime::new()?;
    let store = runtime.block_on(Store::connect(&format!("sqlite:{}", dir.display())))?;
    let groups: Vec<Arc<AuditBatch>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(4096)
        .map(|chunk| {
            let mut batch = AuditBatch::new();
            for n in chunk {
                batch.push(&record(*n, patients));
            }
            Arc::new(batch)
        })
        .collect();
    let cpu_before = cpu_seconds();
    let started = Clock::now();
    for group in groups {
        runtime.block_on(store.audit_append(group))?;
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    println!(
        "{count} records of {patients} patients: {:.2} µs per record ({:.0} records/s), {:.2} µs of CPU per record",
        elapsed.as_secs_f64() * 1e6 / count as f64,
        count as f64 / elapsed.as_secs_f64(),
        cpu * 1e6 / count as f64
    );
    let mut times: Vec<f64> = Vec::new();
    for n in 0..21 {
        let query = AuditQuery {
            filters: vec![AuditFilter::Is(
                AuditColumn::Patient,
                vec![record(n * 37, patients).patient.unwrap_or_default()],
            )],
            count: 10,
            oldest_first: false,
            after: None,
        };
        let started = Clock::now();
        let page = runtime.block_on(store.audit_search(query))?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if page.records.is_empty() {
            return Err("a search by patient found nothing".into());
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "search by patient, ten newest records: median {:.3} ms of 21",
        times[times.len() / 2]
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
