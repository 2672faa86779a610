//! `custodian bench coding`: MS-DRG batch grouping throughput on one core, against msdrg
//! 1.2.0 through Python on the same claims, and ICD-10-CM search latency.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use coding::Severity;
use coding::drg::{Claim, ClaimDiagnosis, Sex};

#[derive(clap::Args)]
pub struct CodingArgs {
    /// How many generated claims to group per run.
    #[arg(long, default_value_t = 50_000)]
    claims: usize,
    /// Measured runs; the median is reported.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Skip the msdrg (Python) comparison.
    #[arg(long)]
    no_python: bool,
    /// Where the generated claims are written for msdrg.
    #[arg(long, default_value = "target/bench-coding-claims.ndjson")]
    claims_file: PathBuf,
}

/// A deterministic generator (xorshift64*), so every run measures the same claims.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next() % items.len() as u64) as usize]
    }
}

/// Claims over every MDC with 0-6 secondary diagnoses (a third of them CC or MCC) and
/// 0-4 procedures (mostly ones the principal diagnosis's MDC looks at).
fn generate(count: usize) -> Vec<Claim> {
    let grouper = coding::grouper();
    let mut diagnoses: Vec<(&str, u8, Severity)> = grouper.diagnoses().collect();
    diagnoses.sort_unstable();
    let mut by_mdc: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
    for (code, mdc, _) in &diagnoses {
        if *mdc != 0 {
            by_mdc.entry(*mdc).or_default().push(code);
        }
    }
    let all: Vec<&str> = diagnoses.iter().map(|d| d.0).collect();
    let severe: Vec<&str> = diagnoses
        .iter()
        .filter(|d| d.2 != Severity::None)
        .map(|d| d.0)
        .collect();
    let mut procedures: Vec<&str> = grouper
        .procedures()
        .map(|p| p.0)
        .filter(|c| !c.contains('@'))
        .collect();
    procedures.sort_unstable();
    let in_mdc: BTreeMap<u8, Vec<&str>> = by_mdc
        .keys()
        .map(|m| {
            (
                *m,
                grouper
                    .procedures_in_mdc(*m)
                    .into_iter()
                    .filter(|c| !c.contains('@'))
                    .collect(),
            )
        })
        .collect();
    let mdcs: Vec<u8> = by_mdc.keys().copied().collect();
    let mut random = Random(0x5DEE_CE66_D1CE_4E5B);
    (0..count)
        .map(|i| {
            let mdc = *random.pick(&mdcs);
            let sdx = (0..random.next() % 7)
                .map(|_| {
                    let code = if random.next().is_multiple_of(3) {
                        *random.pick(&severe)
                    } else {
                        *random.pick(&all)
                    };
                    ClaimDiagnosis {
                        code: code.to_string(),
                        poa: Some((*random.pick(&["Y", "Y", "Y", "N", "W"])).to_string()),
                    }
                })
                .collect();
            let local = &in_mdc[&mdc];
            let procedures = (0..random.next() % 5)
                .map(|_| {
                    if !local.is_empty() && random.next().is_multiple_of(2) {
                        *random.pick(local)
                    } else {
                        *random.pick(&procedures)
                    }
                    .to_string()
                })
                .collect();
            Claim {
                id: Some(i.to_string()),
                pdx: random.pick(&by_mdc[&mdc]).to_string(),
                pdx_poa: Some("Y".into()),
                sdx,
                procedures,
                age: (random.next() % 101) as i32,
                sex: *random.pick(&[Sex::Male, Sex::Female]),
                discharge_status: *random.pick(&[1, 1, 1, 2, 3, 6, 7, 20, 62]),
                ..Claim::default()
            }
        })
        .collect()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn run(args: &CodingArgs) -> Result<(), String> {
    if args.runs == 0 || args.claims == 0 {
        return Err("--runs and --claims must be at least 1".into());
    }
    let started = Instant::now();
    let grouper = coding::grouper();
    println!(
        "tables loaded in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let claims = generate(args.claims);
    let lines: Vec<String> = claims
        .iter()
        .map(|c| serde_json::to_string(c).map_err(|e| format!("cannot encode a claim: {e}")))
        .collect::<Result<_, _>>()?;

    let mut rates = Vec::new();
    let mut pipeline_rates = Vec::new();
    let mut checksum = 0u64;
    for run in 0..args.runs {
        let started = Instant::now();
        for claim in &claims {
            checksum += u64::from(grouper.group(claim).final_drg);
        }
        let rate = claims.len() as f64 / started.elapsed().as_secs_f64();
        // The batch command's whole path: parse the line, group, encode the result.
        let started = Instant::now();
        let mut bytes = 0usize;
        for line in &lines {
            let claim: Claim =
                serde_json::from_str(line).map_err(|e| format!("cannot decode a claim: {e}"))?;
            let result = grouper.group(&claim);
            bytes += serde_json::to_vec(&result)
                .map_err(|e| format!("cannot encode a result: {e}"))?
                .len();
        }
        let pipeline = lines.len() as f64 / started.elapsed().as_secs_f64();
        println!(
            "  run {}: group {rate:>9.0} claims/s, parse+group+encode {pipeline:>9.0} claims/s ({bytes} bytes out)",
            run + 1
        );
        rates.push(rate);
        pipeline_rates.push(pipeline);
    }
    println!(
        "MS-DRG v43.1: {} claims, median {:.0} claims/s grouping, {:.0} claims/s with NDJSON parse and encode, on one core (checksum {checksum})",
        claims.len(),
        median(rates),
        median(pipeline_rates)
    );

    let queries = [
        "chf",
        "heart failure systolic",
        "acute myocardial infarction",
        "copd exacerbation",
        "type 2 diabetes with hyperglycemia",
        "sepsis",
        "pneumonia",
        "fracture femur",
        "uti",
        "htn",
        "ckd stage 4",
        "atrial fibrillation",
        "dvt",
        "stroke",
        "pressure ulcer sacral",
        "I50.2",
        "concussion",
        "asthma",
        "obesity",
        "hypertensive heart",
    ];
    let started = Instant::now();
    let _ = coding::icd10cm();
    println!(
        "ICD-10-CM loaded and indexed in {:.0} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let mut latencies = Vec::new();
    let mut found = 0usize;
    for _ in 0..50 {
        for query in queries {
            let started = Instant::now();
            let hits = coding::icd10cm().search(query, 20);
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
            found += hits.len();
        }
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "ICD-10-CM search (20 queries x 50, top 20, {found} hits): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        latencies[latencies.len() - 1]
    );

    if !args.no_python {
        if let Some(parent) = args.claims_file.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&args.claims_file, lines.join("\n") + "\n")
            .map_err(|e| format!("cannot write {}: {e}", args.claims_file.display()))?;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/bench-msdrg.py");
        match std::process::Command::new("python3")
            .arg(script)
            .arg(&args.claims_file)
            .output()
        {
            Ok(output) if output.status.success() => {
                print!("{}", String::from_utf8_lossy(&output.stdout))
            }
            Ok(output) => println!(
                "msdrg comparison skipped: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(error) => println!("msdrg comparison skipped: cannot run python3: {error}"),
        }
    }
    Ok(())
}
