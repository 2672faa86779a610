//! What sealing bodies at rest costs writes and reads by id: N Patients written in
//! transactions of 500, then each read back by id, into a fresh SQLite store with or
//! without a master key.
//! `cargo run --release -p store --example crypt_cost -- [N] [plain|sealed]`; run it
//! under `valgrind --tool=callgrind` and compare the inclusive cost of `write_phase`
//! (plus the writer thread) and `read_phase`.

use serde_json::{Map, Value, json};
use store::{MasterKey, Options, Store, Write};

fn patient(n: usize) -> Map<String, Value> {
    let value = json!({
        "resourceType": "Patient",
        "identifier": [
            {"system": "https://github.com/synthetichealth/synthea", "value": format!("p-{n}")},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
             "system": "http://hospital.smarthealthit.org", "value": format!("mr-{n}")},
            {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]},
             "system": "http://hl7.org/fhir/sid/us-ssn", "value": format!("999-{:02}-{:04}", n % 100, n % 10000)}
        ],
        "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">Generated patient {n}</div>")},
        "name": [{"use": "official", "family": format!("Family{n}"), "given": [format!("Given{n}"), "Middle"], "prefix": ["Mr."]}],
        "telecom": [{"system": "phone", "value": format!("555-{:03}-{:04}", n % 1000, n % 10000), "use": "home"}],
        "gender": if n.is_multiple_of(2) { "male" } else { "female" },
        "birthDate": format!("19{:02}-0{}-1{}", n % 100, 1 + n % 9, n % 10),
        "address": [{"line": [format!("{n} Main Street")], "city": "Boston", "state": "MA", "postalCode": "02110", "country": "US",
                     "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/geolocation",
                                    "extension": [{"url": "latitude", "valueDecimal": 42.36}, {"url": "longitude", "valueDecimal": -71.05}]}]}],
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "Married"}]},
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US", "display": "English"}]}}]
    });
    match value {
        Value::Object(object) => object,
        _ => Map::new(),
    }
}

#[inline(never)]
fn write_phase(runtime: &tokio::runtime::Runtime, store: &Store, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    let mut next = 0;
    while next < count {
        let batch: Vec<Write> = (next..count.min(next + 500))
            .map(|n| Write::Create {
                resource: patient(n),
                id: None,
            })
            .collect();
        next += batch.len();
        let written = runtime
            .block_on(store.write_all(batch))
            .unwrap_or_else(|error| panic!("write failed: {error}"));
        ids.extend(
            written
                .into_iter()
                .filter_map(|written| written.version.map(|version| version.id)),
        );
    }
    ids
}

#[inline(never)]
fn read_phase(runtime: &tokio::runtime::Runtime, store: &Store, ids: &[String]) -> usize {
    let mut bytes = 0;
    for id in ids {
        let version = runtime
            .block_on(store.read("Patient", id))
            .unwrap_or_else(|error| panic!("read failed: {error}"));
        bytes += version.and_then(|v| v.body).map_or(0, |body| body.len());
    }
    bytes
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map_or(Ok(5000), |n| n.parse())?;
    let sealed = args.next().is_some_and(|mode| mode == "sealed");
    let dir = std::env::temp_dir().join(format!("custodian-crypt-cost-{}", std::process::id()));
    let options = Options {
        master_key: if sealed {
            Some(MasterKey::generate()?.0)
        } else {
            None
        },
        ..Options::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = Store::open_with(&format!("sqlite:{}", dir.display()), &options)?;
    let started = std::time::Instant::now();
    let ids = write_phase(&runtime, &store, count);
    let written = started.elapsed();
    let started = std::time::Instant::now();
    let bytes = read_phase(&runtime, &store, &ids);
    let read = started.elapsed();
    println!(
        "{} {count} patients: written in {:.2} s, read back ({bytes} bytes of JSON) in {:.2} s",
        if sealed { "sealed" } else { "plain" },
        written.as_secs_f64(),
        read.as_secs_f64()
    );
    drop(store);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
