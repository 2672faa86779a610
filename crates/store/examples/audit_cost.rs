//! What appending audit records costs the store's writer: N records like a read by
//! id's (one of P patients each, one agent), appended in groups of 4,096 as the
//! server's background trail does, into a fresh SQLite store.
//! `cargo run --release -p store --example audit_cost -- [N] [P]` prints the time per
//! record (the writer is one thread and the caller waits, so this is its CPU time).

use std::sync::Arc;
use std::time::Instant as Clock;

use store::{AuditDetail, AuditRecord, Instant, Store};

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(200_000), |n| n.parse())?;
    let patients: usize = args.next().map_or(Ok(1_000), |n| n.parse())?;
    let dir = std::env::temp_dir().join(format!("audit-cost-{}", std::process::id()));
    let runtime = tokio::runtime::Runtime::new()?;
    let store = runtime.block_on(Store::connect(&format!("sqlite:{}", dir.display())))?;
    let groups: Vec<Arc<[AuditRecord]>> = (0..count)
        .collect::<Vec<_>>()
        .chunks(4096)
        .map(|chunk| chunk.iter().map(|n| record(*n, patients)).collect())
        .collect();
    let started = Clock::now();
    for group in groups {
        runtime.block_on(store.audit_append(group))?;
    }
    let elapsed = started.elapsed();
    println!(
        "{count} records of {patients} patients: {:.2} µs per record ({:.0} records/s)",
        elapsed.as_secs_f64() * 1e6 / count as f64,
        count as f64 / elapsed.as_secs_f64()
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
