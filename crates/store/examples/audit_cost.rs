//! What appending audit records costs the store's writer: N records like a read by
//! id's (one of P patients each, one agent), appended in groups of 4,096 as the
//! server's background trail does, into a fresh SQLite store.
//! `cargo run --release -p store --example audit_cost -- [N] [P]` prints the time per
//! record (the writer is one thread and the caller waits, so this is its CPU time).

use std::sync::Arc;
use std::time::Instant as Clock;

use store::{AuditRecord, Instant, Store};

fn record(n: usize, patients: usize) -> AuditRecord {
    let patient = format!(
        "Patient/{:08x}-5c1e-4e7b-9d1f-{:012x}",
        n % patients,
        n % patients
    );
    let recorded = Instant::now();
    let body = format!(
        r#"{{"resourceType":"AuditEvent","extension":[{{"url":"urn:custodian:audit-severity","valueCode":"informational"}}],"type":{{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"}},"subtype":[{{"system":"http://hl7.org/fhir/restful-interaction","code":"read"}}],"action":"R","recorded":"{}","outcome":"0","outcomeDesc":"HTTP 200","agent":[{{"type":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/extra-security-role-type","code":"dataprocessor"}}]}},"who":{{"identifier":{{"system":"urn:custodian:agent","value":"bench"}}}},"altId":"bench","requestor":true,"role":[{{"coding":[{{"system":"urn:custodian:role","code":"admin"}}]}}],"network":{{"address":"127.0.0.1","type":"2"}}}}],"source":{{"observer":{{"display":"custodian"}},"type":[{{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4"}}]}},"entity":[{{"what":{{"reference":"{patient}"}},"type":{{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1"}},"role":{{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1"}}}}]}}"#,
        recorded.to_fhir()
    );
    AuditRecord {
        recorded,
        type_code: "rest".into(),
        subtype: "read".into(),
        action: "R".into(),
        outcome: "0".into(),
        severity: "informational".into(),
        agent: "bench".into(),
        patient: Some(patient.clone()),
        purpose: None,
        entities: vec![patient],
        body,
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
