//! Search at scale: builds (once) a database of synthetic patients with observations,
//! then times selective searches and counts and prints their query plans.
//!
//! cargo run --release -p store --example search_scale -- DIR [PATIENTS] [OBSERVATIONS_PER_PATIENT]

#![allow(clippy::unwrap_used, clippy::expect_used)] // A tool: a panic is the report.

use std::time::Instant;

use search::{
    Clause, Criterion, DateRange, ParamType, Prefix, Query, ReferenceTest, StringMatch,
    SystemMatch, Test, TokenTest, Total,
};
use serde_json::{Map, Value, json};
use store::{Method, SearchRequest, Store, Write};

const CODES: u64 = 200;
const FAMILIES: u64 = 5000;

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ceb9fe1a85ec53);
    x ^ (x >> 33)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!(),
    }
}

fn put(resource_type: &str, id: String, resource: Value) -> Write {
    Write::Update {
        resource_type: resource_type.into(),
        id,
        resource: object(resource),
        if_match: None,
        method: Method::Update,
    }
}

fn patient_writes(p: u64, observations: u64) -> Vec<Write> {
    let mut writes = vec![put(
        "Patient",
        format!("p{p}"),
        json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:mrn", "value": format!("MRN{p}")}],
            "name": [{"family": format!("Family{}", mix(p) % FAMILIES), "given": ["Ann", "Marie"]}],
            "gender": if p.is_multiple_of(2) { "female" } else { "male" },
            "birthDate": format!("{}-0{}-1{}", 1940 + mix(p) % 70, 1 + p % 9, p % 10),
        }),
    )];
    for k in 0..observations {
        let seed = mix(p * 1000 + k);
        let day = seed % (15 * 365);
        let year = 2010 + day / 365;
        let month = 1 + (day % 365) / 31 % 12;
        let dom = 1 + day % 28;
        writes.push(put(
            "Observation",
            format!("o{p}-{k}"),
            json!({
                "resourceType": "Observation",
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": format!("{}-{}", 1000 + seed % CODES, seed % 7), "display": "Something measured"}]},
                "subject": {"reference": format!("Patient/p{p}")},
                "effectiveDateTime": format!("{year}-{month:02}-{dom:02}T10:00:00Z"),
                "issued": format!("{year}-{month:02}-{dom:02}T10:00:00Z"),
                "valueQuantity": {"value": (seed % 1000) as f64 / 10.0, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"},
            }),
        ));
    }
    writes
}

fn criterion(resource_type: &str, param: &str, param_type: ParamType, test: Test) -> Criterion {
    Criterion {
        path: Vec::new(),
        resource_type: Some(resource_type.into()),
        param: param.into(),
        param_type,
        test,
    }
}

fn query(resource_type: &str, criteria: Vec<Criterion>, total: Total) -> Query {
    Query {
        types: vec![resource_type.into()],
        clauses: criteria
            .into_iter()
            .map(|c| Clause { any_of: vec![c] })
            .collect(),
        sort: Vec::new(),
        includes: Vec::new(),
        revincludes: Vec::new(),
        total,
        reached: Vec::new(),
    }
}

fn code_of(seed: u64) -> String {
    format!("{}-{}", 1000 + seed % CODES, seed % 7)
}

fn code(seed: u64) -> Criterion {
    criterion(
        "Observation",
        "code",
        ParamType::Token,
        Test::Token(TokenTest {
            system: SystemMatch::Is("http://loinc.org".into()),
            code: Some(code_of(seed)),
        }),
    )
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("DIR");
    let patients: u64 = args.get(2).map_or(100_000, |n| n.parse().unwrap());
    let per: u64 = args.get(3).map_or(29, |n| n.parse().unwrap());
    let store = Store::open(&format!("sqlite:{dir}")).unwrap();
    if store.read("Patient", "p0").await.unwrap().is_none() {
        let started = Instant::now();
        let tasks = 4;
        let mut handles = Vec::new();
        for task in 0..tasks {
            let store = store.clone();
            handles.push(tokio::spawn(async move {
                let mut p = task;
                while p < patients {
                    let mut batch = Vec::new();
                    for _ in 0..5 {
                        if p < patients {
                            batch.extend(patient_writes(p, per));
                            p += tasks;
                        }
                    }
                    store.write_all(batch).await.unwrap();
                }
            }));
        }
        for handle in handles {
            handle.await.unwrap();
        }
        let total = patients * (per + 1);
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "built {total} resources in {seconds:.1} s ({:.0}/s)",
            total as f64 / seconds
        );
    }

    let since_2020 = || {
        criterion(
            "Observation",
            "date",
            ParamType::Date,
            Test::Date {
                prefix: Prefix::Ge,
                range: DateRange {
                    low: 1_577_836_800_000_000,
                    high: 1_577_836_800_000_000 + 86_400_000_000,
                },
            },
        )
    };
    type Case = (&'static str, Box<dyn Fn(u64) -> Query>, usize);
    let cases: Vec<Case> = vec![
        (
            "Patient?family=X",
            Box::new(|i| {
                query(
                    "Patient",
                    vec![criterion(
                        "Patient",
                        "family",
                        ParamType::String,
                        Test::String {
                            value: format!("family{}", mix(i) % FAMILIES),
                            mode: StringMatch::StartsWith,
                        },
                    )],
                    Total::Unspecified,
                )
            }),
            10,
        ),
        (
            "Observation?patient=P&code=C",
            Box::new(move |i| {
                let p = mix(i) % patients;
                let patient = criterion(
                    "Observation",
                    "patient",
                    ParamType::Reference,
                    Test::Reference(ReferenceTest::Local {
                        resource_type: Some("Patient".into()),
                        id: format!("p{p}"),
                    }),
                );
                query(
                    "Observation",
                    vec![patient, code(mix(p * 1000))],
                    Total::Unspecified,
                )
            }),
            10,
        ),
        (
            "Observation?code=C&date=ge2020&_count=10",
            Box::new(move |i| {
                query(
                    "Observation",
                    vec![code(i), since_2020()],
                    Total::Unspecified,
                )
            }),
            10,
        ),
        (
            "Observation?code=C&_total=accurate&_count=10",
            Box::new(|i| query("Observation", vec![code(i)], Total::Accurate)),
            10,
        ),
        (
            "Observation?code=C&date=ge2020&_total=accurate",
            Box::new(move |i| query("Observation", vec![code(i), since_2020()], Total::Accurate)),
            10,
        ),
        (
            "Observation?date=ge2020&_count=10",
            Box::new(move |_| query("Observation", vec![since_2020()], Total::Unspecified)),
            10,
        ),
        (
            "Patient?_count=10",
            Box::new(|_| query("Patient", vec![], Total::Unspecified)),
            10,
        ),
    ];
    for (name, make, count) in &cases {
        let request = |i| SearchRequest {
            query: make(i),
            count: *count,
            cursor: None,
        };
        println!("== {name}");
        println!("{}", store.explain_search(request(7)).await.unwrap());
        let mut times = Vec::new();
        let mut matches = 0;
        let mut total = None;
        for i in 0..40 {
            let started = Instant::now();
            let page = store.search(request(i)).await.unwrap();
            times.push(started.elapsed().as_secs_f64() * 1000.0);
            matches += page.matches.len();
            total = total.or(page.total);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms; {:.1} matches/page, a total {:?}\n",
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            times[times.len() - 1],
            matches as f64 / 40.0,
            total
        );
    }
}
