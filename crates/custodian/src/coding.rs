//! `custodian coding`: look up and search ICD-10-CM and ICD-10-PCS codes, and group claims
//! with the MS-DRG v43.1 grouper in batch (NDJSON in, NDJSON out).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use coding::drg::Claim;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum CodingCommand {
    /// Show an ICD-10-CM or ICD-10-PCS code: title, hierarchy or axes, notes, validity.
    Lookup(LookupArgs),
    /// Search ICD-10-CM (or ICD-10-PCS with --pcs) titles for free text.
    Search(SearchArgs),
    /// Group NDJSON claims with MS-DRG v43.1, one JSON result per line.
    Group(GroupArgs),
}

#[derive(clap::Args)]
pub struct LookupArgs {
    /// The code, with or without the dot (I50.21, I5021, 0DTJ4ZZ).
    code: String,
    /// A date of service to check validity on (YYYY-MM-DD).
    #[arg(long)]
    date: Option<String>,
}

#[derive(clap::Args)]
pub struct SearchArgs {
    /// Words to look for ("chf", "heart failure systolic").
    text: Vec<String>,
    /// Search ICD-10-PCS procedures instead of ICD-10-CM diagnoses.
    #[arg(long)]
    pcs: bool,
    /// How many results.
    #[arg(long, default_value_t = 20)]
    limit: usize,
}

#[derive(clap::Args)]
pub struct GroupArgs {
    /// NDJSON claims: {"id","pdx","pdx_poa","sdx":[{"code","poa"}],"procedures":[...],"age","sex":"M|F|U","discharge_status"}.
    #[arg(long)]
    input: PathBuf,
    /// Where the results go (NDJSON); standard output when absent.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Input files above this size show a progress bar.
const PROGRESS_BYTES_MIN: u64 = 1 << 20;
/// The longest claim line accepted, in bytes.
const LINE_BYTES_MAX: usize = 1 << 20;

pub fn run(command: CodingCommand) -> Result<(), String> {
    match command {
        CodingCommand::Lookup(args) => lookup(&args),
        CodingCommand::Search(args) => search(&args),
        CodingCommand::Group(args) => group(&args),
    }
}

fn lookup(args: &LookupArgs) -> Result<(), String> {
    let date = match &args.date {
        Some(text) => Some(
            coding::Date::parse(text)
                .ok_or_else(|| format!("{text:?} is not a date (YYYY-MM-DD)"))?,
        ),
        None => None,
    };
    if let Some(code) = coding::icd10cm().lookup(&args.code) {
        println!("{}  {}", code.display(), code.description());
        println!("system: ICD-10-CM FY2026; kind: {:?}", code.kind());
        let path: Vec<String> = code
            .ancestors()
            .collect::<Vec<_>>()
            .iter()
            .rev()
            .map(|c| format!("{} {}", c.display(), c.description()))
            .collect();
        for (depth, line) in path.iter().enumerate() {
            println!("{}{line}", "  ".repeat(depth + 1));
        }
        let children: Vec<String> = code.children().map(|c| c.display()).collect();
        if !children.is_empty() {
            println!("children: {}", children.join(", "));
        }
        if let Some((first, last)) = code.valid_dates() {
            println!("valid: {first} to {last}");
        }
        if let Some(date) = date {
            println!(
                "valid on {date}: {}",
                if code.is_valid_on(date) { "yes" } else { "no" }
            );
        }
        for kind in [
            coding::icd10cm::NoteKind::Includes,
            coding::icd10cm::NoteKind::InclusionTerm,
            coding::icd10cm::NoteKind::Excludes1,
            coding::icd10cm::NoteKind::Excludes2,
            coding::icd10cm::NoteKind::CodeFirst,
            coding::icd10cm::NoteKind::UseAdditionalCode,
            coding::icd10cm::NoteKind::CodeAlso,
        ] {
            for (holder, note) in code.applicable_notes(kind) {
                println!("{kind:?} (from {}): {}", holder.display(), note.text);
            }
        }
        let sevenths = code.seventh_characters();
        if !sevenths.is_empty() && !code.is_billable() {
            for (character, meaning) in sevenths {
                println!("7th character {character}: {meaning}");
            }
        }
        if let Some((mdc, severity)) = coding::grouper().diagnosis(code.code()) {
            println!("MS-DRG v43.1: MDC {mdc}, as secondary diagnosis {severity:?}");
        }
        return Ok(());
    }
    if let Some(code) = coding::icd10pcs().lookup(&args.code) {
        let title = if code.description().is_empty() {
            "(no title in the shipped sources)"
        } else {
            code.description()
        };
        println!("{}  {title}", code.code());
        println!("system: ICD-10-PCS FY2026");
        for axis in code.axes() {
            println!(
                "  {} {:<15} {}  {}",
                axis.position,
                axis.name,
                axis.value,
                axis.label.unwrap_or_else(|| "?".into())
            );
        }
        let (first, last) = code.valid_dates();
        println!("valid: {first} to {last}");
        if let Some(date) = date {
            println!(
                "valid on {date}: {}",
                if code.is_valid_on(date) { "yes" } else { "no" }
            );
        }
        return Ok(());
    }
    Err(format!(
        "{} is neither an ICD-10-CM nor an ICD-10-PCS code of FY2026",
        args.code
    ))
}

fn search(args: &SearchArgs) -> Result<(), String> {
    let text = args.text.join(" ");
    if text.trim().is_empty() {
        return Err("give words to search for".into());
    }
    // Load (and index) the code set first, so the time below is the search alone.
    if args.pcs {
        coding::icd10pcs();
    } else {
        coding::icd10cm();
    }
    let started = Instant::now();
    let hits = if args.pcs {
        coding::icd10pcs().search(&text, args.limit)
    } else {
        coding::icd10cm().search(&text, args.limit)
    };
    let elapsed = started.elapsed();
    for hit in &hits {
        println!("{:<9} {}", hit.display, hit.description);
    }
    eprintln!(
        "{} results in {:.2} ms",
        hits.len(),
        elapsed.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Parses one claim line; the `id` may be any JSON value and is echoed back.
fn parse_claim(line: &str) -> Result<(Option<Value>, Claim), String> {
    let mut value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let Some(object) = value.as_object_mut() else {
        return Err("not a JSON object".into());
    };
    let id = object.remove("id");
    let claim: Claim = serde_json::from_value(value).map_err(|e| format!("not a claim: {e}"))?;
    if claim.pdx.trim().is_empty() {
        return Err("no principal diagnosis (pdx)".into());
    }
    if claim.sdx.len() > 24 {
        return Err(format!(
            "{} secondary diagnoses, at most 24",
            claim.sdx.len()
        ));
    }
    if claim.procedures.len() > 25 {
        return Err(format!("{} procedures, at most 25", claim.procedures.len()));
    }
    Ok((id, claim))
}

fn group(args: &GroupArgs) -> Result<(), String> {
    let file = File::open(&args.input)
        .map_err(|e| format!("cannot open {}: {e}", args.input.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(BufWriter::new(
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };
    let progress = if size >= PROGRESS_BYTES_MIN {
        ProgressBar::new(size)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let grouper = coding::grouper();
    let started = Instant::now();
    let (mut grouped, mut failed, mut number) = (0u64, 0u64, 0u64);
    let mut line = String::new();
    let write_error = |e: std::io::Error| format!("cannot write the results: {e}");
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
        if read == 0 {
            break;
        }
        number += 1;
        progress.inc(read as u64);
        if line.trim().is_empty() {
            continue;
        }
        let parsed = if line.len() > LINE_BYTES_MAX {
            Err(format!("line longer than {LINE_BYTES_MAX} bytes"))
        } else {
            parse_claim(&line)
        };
        match parsed {
            Ok((id, claim)) => {
                let result = grouper.group(&claim);
                let encoded = serde_json::to_vec(&result)
                    .map_err(|e| format!("cannot encode a result: {e}"))?;
                // The claim's id first, whatever JSON value it was: `{"id":ID,` then the
                // result's fields (the result always has some).
                match id {
                    Some(id) => {
                        out.write_all(b"{\"id\":").map_err(write_error)?;
                        serde_json::to_writer(&mut out, &id)
                            .map_err(|e| format!("cannot write the results: {e}"))?;
                        out.write_all(b",").map_err(write_error)?;
                        out.write_all(&encoded[1..]).map_err(write_error)?;
                    }
                    None => out.write_all(&encoded).map_err(write_error)?,
                }
                out.write_all(b"\n").map_err(write_error)?;
                grouped += 1;
            }
            Err(error) => {
                failed += 1;
                progress.suspend(|| eprintln!("{}:{number}: {error}", args.input.display()));
                let value = serde_json::json!({"line": number, "error": error});
                serde_json::to_writer(&mut out, &value)
                    .map_err(|e| format!("cannot write the results: {e}"))?;
                out.write_all(b"\n").map_err(write_error)?;
            }
        }
    }
    out.flush().map_err(write_error)?;
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "grouped {grouped} claims in {seconds:.2} s ({:.0} claims/s), {failed} lines rejected",
        grouped as f64 / seconds.max(1e-9)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_claim;

    #[test]
    fn claim_lines_keep_any_id_and_refuse_what_is_not_a_claim() {
        let parsed = parse_claim(
            r#"{"id":7,"pdx":"I50.21","sdx":[{"code":"N17.9","poa":"Y"}],"age":70,"sex":"F","discharge_status":1}"#,
        );
        let Ok((id, claim)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(id, Some(serde_json::json!(7)));
        assert_eq!(claim.sdx[0].code, "N17.9");
        assert!(parse_claim("not json").is_err_and(|e| e.starts_with("not JSON")));
        assert!(
            parse_claim(r#"{"pdx":"I50.21","sex":"X"}"#)
                .is_err_and(|e| e.starts_with("not a claim"))
        );
        assert!(parse_claim(r#"{"sdx":[]}"#).is_err());
    }
}
