//! `custodian bench terminology`: `ValueSet/$expand?filter=` latency over HTTP against a
//! freshly started server: many realistic filters (ICD-10-CM diagnoses as coders type
//! them, abbreviations included, and ICD-10-PCS procedures), p50 and p95.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::http::{Connection, ServerProcess, wait_until_up};

#[derive(clap::Args)]
pub struct TerminologyArgs {
    /// Port of the server the benchmark starts.
    #[arg(long, default_value_t = 8094)]
    port: u16,
    /// Its data directory (removed afterwards).
    #[arg(long, default_value = "target/bench-terminology")]
    data_dir: PathBuf,
    /// Times each filter is asked.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Codes per expansion page (`count`).
    #[arg(long, default_value_t = 10)]
    count: usize,
}

const CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const PCS: &str = "http://www.cms.gov/Medicare/Coding/ICD10";

/// Diagnoses as a coder types them.
const CM_FILTERS: &[&str] = &[
    "chf",
    "heart failure systolic",
    "acute on chronic diastolic heart failure",
    "type 2 diabetes with hyperglycemia",
    "diabetes with ckd",
    "copd exacerbation",
    "pneumonia",
    "aspiration pneumonia",
    "sepsis",
    "severe sepsis with septic shock",
    "uti",
    "acute kidney injury",
    "ckd stage 3",
    "esrd",
    "atrial fibrillation",
    "afib",
    "essential hypertension",
    "nstemi",
    "stemi anterior wall",
    "stroke",
    "cerebral infarction",
    "asthma",
    "appendicitis",
    "cellulitis of left lower limb",
    "dehydration",
    "hyponatremia",
    "iron deficiency anemia",
    "pressure ulcer sacral region stage 3",
    "morbid obesity",
    "major depressive disorder recurrent",
    "generalized anxiety",
    "alcohol dependence with withdrawal",
    "opioid overdose",
    "chest pain",
    "syncope",
    "gi bleed",
    "acute pancreatitis",
    "cholecystitis",
    "dvt",
    "pulmonary embolism",
    "covid",
    "influenza",
    "migraine",
    "seizure",
    "dementia",
    "parkinson",
    "breast cancer",
    "lung cancer",
    "fracture of neck of femur",
    "hip fracture",
    "displaced fracture of shaft of right tibia",
    "fall",
    "laceration",
    "osteoarthritis knee",
    "rheumatoid arthritis",
    "gout",
    "hypothyroidism",
    "cirrhosis",
    "hepatitis c",
    "hiv",
    "preterm labor",
    "neonatal jaundice",
    "fever",
    "abdominal pain",
    "low back pain",
    "I50.2",
    "E11",
];

/// Procedures.
const PCS_FILTERS: &[&str] = &[
    "resection of appendix",
    "dilation coronary artery drug-eluting",
    "bypass coronary artery",
    "replacement of right hip joint",
    "replacement knee",
    "excision colon",
    "drainage pleural cavity",
    "insertion pacemaker",
    "hemodialysis",
    "mechanical ventilation",
    "transfusion red blood cells",
    "0DTJ",
];

pub fn run(args: &TerminologyArgs) -> Result<(), String> {
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let address = format!("127.0.0.1:{}", args.port);
    let _server = ServerProcess::start(args.port, &args.data_dir, &[])?;
    runtime.block_on(async {
        wait_until_up(&address).await?;
        let mut connection = Connection::open(&address).await?;
        let filters: Vec<(&str, &str)> = CM_FILTERS
            .iter()
            .map(|f| (CM, *f))
            .chain(PCS_FILTERS.iter().map(|f| (PCS, *f)))
            .collect();
        // The first request of each system loads its tables; it is not measured.
        for system in [CM, PCS] {
            expand(&mut connection, system, "heart", args.count).await?;
        }
        let mut times: Vec<Duration> = Vec::with_capacity(filters.len() * args.rounds);
        let mut empty = Vec::new();
        for round in 0..args.rounds {
            for (system, filter) in &filters {
                let started = Instant::now();
                let found = expand(&mut connection, system, filter, args.count).await?;
                times.push(started.elapsed());
                if round == 0 && found == 0 {
                    empty.push(*filter);
                }
            }
        }
        times.sort();
        let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
        println!(
            "ValueSet/$expand?filter= ({} filters x {} rounds, count={}): p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
            filters.len(),
            args.rounds,
            args.count,
            at(0.5),
            at(0.95),
            at(1.0)
        );
        if !empty.is_empty() {
            println!("filters that found nothing: {empty:?}");
        }
        Ok::<_, String>(())
    })
}

/// One expansion; the number of codes it returned.
async fn expand(
    connection: &mut Connection,
    system: &str,
    filter: &str,
    count: usize,
) -> Result<usize, String> {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("url", &format!("{system}?fhir_vs"))
        .append_pair("filter", filter)
        .append_pair("count", &count.to_string())
        .finish();
    let path = format!("/fhir/ValueSet/$expand?{query}");
    let (status, body) = connection.request("GET", &path, None).await?;
    if status != 200 {
        return Err(format!(
            "$expand of {filter:?} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|error| format!("$expand answer: {error}"))?;
    Ok(value["expansion"]["contains"]
        .as_array()
        .map_or(0, Vec::len))
}
