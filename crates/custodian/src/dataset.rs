//! `custodian dataset --scale N --out DIR`: a larger Synthea data set made from synthea-100.
//!
//! Each patient bundle is cloned N times. Copy 0 is the original; every later copy gives each
//! resource a fresh UUID-shaped id (a hash of the seed, the copy number and the original id),
//! rewrites every reference to it (`urn:uuid:` fullUrls and references, `Type/id` too),
//! varies the patient's names, shifts every day-precision date, dateTime and instant by a
//! per-copy number of days (time of day, zone and precision kept), and makes every
//! `identifier[].value` unique per copy. Hospital and practitioner bundles are written once.
//!
//! Output is either one transaction Bundle file per patient copy (`--format bundles`) or one
//! `Type.ndjson` file per resource type (`--format ndjson`), where references become `Type/id`
//! so `custodian import` PUTs every line under its id. Work streams one source bundle at a
//! time: memory does not grow with N.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value};

#[derive(clap::Args)]
pub struct DatasetArgs {
    /// How many copies of each patient bundle to write (1 writes the originals), at most
    /// 1,000,000 so the six-digit copy numbers in file names keep them in order.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    scale: u32,
    /// Where to write; created if missing, and must be empty.
    #[arg(long)]
    out: PathBuf,
    /// The shared test data folder (holds synthea/synthea-100), or a folder of Synthea bundles.
    #[arg(long, env = "CUSTODIAN_TESTDATA", default_value = "../shared/testdata")]
    testdata: PathBuf,
    /// Seed for ids, name variations, date shifts and identifiers.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output shape.
    #[arg(long, value_enum, default_value = "bundles")]
    format: Format,
    /// Use only the first K patient bundles (in file-name order).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    patients: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// One transaction Bundle JSON file per patient copy.
    Bundles,
    /// One `Type.ndjson` file per resource type, with explicit ids and `Type/id` references.
    Ndjson,
}

/// What was written.
#[derive(Default)]
struct Totals {
    files: u64,
    resources: u64,
    bytes: u64,
}

pub fn run(args: &DatasetArgs) -> Result<(), String> {
    let started = Instant::now();
    let sources = find_sources(&args.testdata)?;
    let patient_count = match args.patients {
        Some(limit) => sources.patients.len().min(limit as usize),
        None => sources.patients.len(),
    };
    prepare_out(&args.out)?;
    let mut output = match args.format {
        Format::Bundles => Output::Bundles {
            dir: args.out.clone(),
        },
        Format::Ndjson => Output::Ndjson {
            dir: args.out.clone(),
            writers: BTreeMap::new(),
        },
    };
    let mut totals = Totals::default();
    for path in &sources.shared {
        let text = read(path)?;
        let mut bundle = parse(path, &text)?;
        let name = format!("0-{}", file_name(path));
        let plan = Plan::identity(&bundle);
        apply(&mut bundle, &plan, args.format);
        output.write(&name, &bundle, &mut totals)?;
    }
    for path in &sources.patients[..patient_count] {
        let text = read(path)?;
        for copy in 0..args.scale {
            let mut bundle = parse(path, &text)?;
            let plan = if copy == 0 {
                Plan::identity(&bundle)
            } else {
                Plan::copy(&bundle, args.seed, copy)
            };
            apply(&mut bundle, &plan, args.format);
            let name = format!("1-{copy:06}-{}", file_name(path));
            output.write(&name, &bundle, &mut totals)?;
        }
    }
    output.finish(&mut totals)?;
    println!(
        "dataset: {} files, {} resources, {} bytes in {:.1} s ({} patient bundles x {}) in {}",
        totals.files,
        totals.resources,
        totals.bytes,
        started.elapsed().as_secs_f64(),
        patient_count,
        args.scale,
        args.out.display()
    );
    Ok(())
}

/// The source bundles: hospital and practitioner ones, then the patients', each sorted by name.
struct Sources {
    shared: Vec<PathBuf>,
    patients: Vec<PathBuf>,
}

fn find_sources(testdata: &Path) -> Result<Sources, String> {
    let nested = testdata.join("synthea").join("synthea-100");
    let folder = if nested.is_dir() {
        nested
    } else {
        testdata.to_path_buf()
    };
    let entries = std::fs::read_dir(&folder).map_err(|error| {
        format!(
            "cannot read the Synthea bundles in {}: {error} (set --testdata or CUSTODIAN_TESTDATA)",
            folder.display()
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    let (shared, patients): (Vec<PathBuf>, Vec<PathBuf>) = files.into_iter().partition(|path| {
        let name = file_name(path);
        name.starts_with("hospitalInformation") || name.starts_with("practitionerInformation")
    });
    if patients.is_empty() {
        return Err(format!(
            "no Synthea patient bundles (*.json) in {}",
            folder.display()
        ));
    }
    Ok(Sources { shared, patients })
}

fn prepare_out(out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out)
        .map_err(|error| format!("cannot create the output folder {}: {error}", out.display()))?;
    let mut entries = std::fs::read_dir(out)
        .map_err(|error| format!("cannot read the output folder {}: {error}", out.display()))?;
    if entries.next().is_some() {
        return Err(format!(
            "the output folder {} is not empty; choose a new or empty one",
            out.display()
        ));
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

fn parse(path: &Path, text: &str) -> Result<Value, String> {
    let bundle: Value = serde_json::from_str(text)
        .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(format!("{} is not a Bundle", path.display()));
    }
    Ok(bundle)
}

/// How one bundle becomes one copy.
struct Plan {
    /// Original id (the fullUrl's UUID or the resource id) to (resource type, new id).
    ids: HashMap<String, (String, String)>,
    /// Zero for copy 0 (and the shared bundles): nothing is perturbed.
    copy: u32,
    seed: u64,
    shift_days: i64,
}

impl Plan {
    fn identity(bundle: &Value) -> Plan {
        Plan::build(bundle, 0, 0, |_, _, id| id.to_string())
    }

    fn copy(bundle: &Value, seed: u64, copy: u32) -> Plan {
        Plan::build(bundle, seed, copy, |seed, copy, id| {
            fresh_id(seed, copy, id)
        })
    }

    fn build(bundle: &Value, seed: u64, copy: u32, id_for: fn(u64, u32, &str) -> String) -> Plan {
        let mut ids = HashMap::new();
        for entry in entries(bundle) {
            let Some(resource) = entry.get("resource") else {
                continue;
            };
            let resource_type = resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let full_url_id = entry
                .get("fullUrl")
                .and_then(Value::as_str)
                .and_then(|url| url.strip_prefix("urn:uuid:"));
            let resource_id = resource.get("id").and_then(Value::as_str);
            // The new id follows the resource id when there is one, so a fullUrl and an id
            // that agreed before still agree.
            let Some(original) = resource_id.or(full_url_id) else {
                continue;
            };
            let new_id = id_for(seed, copy, original);
            for old in [full_url_id, resource_id].into_iter().flatten() {
                ids.insert(old.to_string(), (resource_type.clone(), new_id.clone()));
            }
        }
        let shift_days = if copy == 0 {
            0
        } else {
            // Always into the past, 1 to 730 days, so no date lands in the future.
            -1 - (hash(seed, copy, "date-shift") % 730) as i64
        };
        Plan {
            ids,
            copy,
            seed,
            shift_days,
        }
    }
}

fn entries(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Rewrites one bundle in place into its copy.
fn apply(bundle: &mut Value, plan: &Plan, format: Format) {
    let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else {
        return;
    };
    for entry in entries {
        let Some(entry) = entry.as_object_mut() else {
            continue;
        };
        if let Some(Value::String(url)) = entry.get_mut("fullUrl")
            && let Some(new) = rewrite_reference(url, plan, Format::Bundles)
        {
            *url = new;
        }
        if let Some(Value::Object(request)) = entry.get_mut("request")
            && let Some(Value::String(url)) = request.get_mut("url")
            && let Some(new) = rewrite_reference(url, plan, Format::Bundles)
        {
            *url = new;
        }
        let Some(Value::Object(resource)) = entry.get_mut("resource") else {
            continue;
        };
        if let Some(Value::String(id)) = resource.get_mut("id")
            && let Some((_, new)) = plan.ids.get(id.as_str())
        {
            *id = new.clone();
        }
        let is_patient = resource.get("resourceType").and_then(Value::as_str) == Some("Patient");
        walk_object(resource, plan, format);
        if is_patient && plan.copy > 0 {
            vary_names(resource, plan);
        }
    }
}

/// Keys whose strings are never dates.
const NOT_DATES: &[&str] = &["id", "fullUrl", "url", "system", "div", "code", "display"];

fn walk_object(object: &mut Map<String, Value>, plan: &Plan, format: Format) {
    for (key, value) in object.iter_mut() {
        match value {
            Value::String(text) if key == "reference" => {
                if let Some(new) = rewrite_reference(text, plan, format) {
                    *text = new;
                }
            }
            Value::Array(items) if key == "identifier" => {
                for item in items.iter_mut() {
                    if let Value::Object(identifier) = item {
                        if let Some(Value::String(text)) = identifier.get_mut("value") {
                            *text = vary_identifier(text, plan);
                        }
                        walk_object(identifier, plan, format);
                    }
                }
            }
            Value::Object(identifier) if key == "identifier" => {
                if let Some(Value::String(text)) = identifier.get_mut("value") {
                    *text = vary_identifier(text, plan);
                }
                walk_object(identifier, plan, format);
            }
            _ => walk_value(key, value, plan, format),
        }
    }
}

/// A value under `key` that is not a reference or identifier: an object, an array whose
/// items all sit under `key` (`Timing.event` is a list of dateTimes), or a scalar.
fn walk_value(key: &str, value: &mut Value, plan: &Plan, format: Format) {
    match value {
        Value::Object(object) => walk_object(object, plan, format),
        Value::Array(items) => {
            for item in items {
                walk_value(key, item, plan, format);
            }
        }
        Value::String(text) if plan.shift_days != 0 && !NOT_DATES.contains(&key) => {
            if let Some(shifted) = shift_date(text, plan.shift_days) {
                *text = shifted;
            }
        }
        _ => {}
    }
}

/// The new form of a reference to a resource in this bundle, or `None` to leave it.
/// In NDJSON, every reference to a bundle resource becomes `Type/id`.
fn rewrite_reference(reference: &str, plan: &Plan, format: Format) -> Option<String> {
    if let Some(old) = reference.strip_prefix("urn:uuid:") {
        let (resource_type, new) = plan.ids.get(old)?;
        return Some(match format {
            Format::Bundles => format!("urn:uuid:{new}"),
            Format::Ndjson => format!("{resource_type}/{new}"),
        });
    }
    let (resource_type, old) = reference.split_once('/')?;
    if old.contains('/') {
        return None;
    }
    let (mapped_type, new) = plan.ids.get(old)?;
    (mapped_type == resource_type).then(|| format!("{resource_type}/{new}"))
}

/// Identifiers that name a resource of the bundle (Synthea uses the patient's id as MRN)
/// follow it; others get `-COPY` appended, so copies never share one.
fn vary_identifier(value: &str, plan: &Plan) -> String {
    if plan.copy == 0 {
        return value.to_string();
    }
    if let Some((_, new)) = plan.ids.get(value) {
        return new.clone();
    }
    if looks_like_uuid(value) {
        return fresh_id(plan.seed, plan.copy, value);
    }
    format!("{value}-{}", plan.copy)
}

fn looks_like_uuid(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(index, byte)| match index {
            8 | 13 | 18 | 23 => *byte == b'-',
            _ => byte.is_ascii_hexdigit(),
        })
}

/// Swaps two neighbouring, different letters of every family and given name, at a place
/// chosen by the seed and copy, so each copy's patient is spelt differently from the original.
fn vary_names(patient: &mut Map<String, Value>, plan: &Plan) {
    let Some(Value::Array(names)) = patient.get_mut("name") else {
        return;
    };
    for name in names.iter_mut() {
        let Value::Object(name) = name else {
            continue;
        };
        if let Some(Value::String(family)) = name.get_mut("family") {
            *family = vary_name(family, plan);
        }
        if let Some(Value::Array(given)) = name.get_mut("given") {
            for part in given.iter_mut() {
                if let Value::String(part) = part {
                    *part = vary_name(part, plan);
                }
            }
        }
    }
}

fn vary_name(name: &str, plan: &Plan) -> String {
    let mut chars: Vec<char> = name.chars().collect();
    let places: Vec<usize> = (1..chars.len())
        .filter(|&index| {
            chars[index - 1].is_alphabetic()
                && chars[index].is_alphabetic()
                && chars[index - 1]
                    .to_lowercase()
                    .ne(chars[index].to_lowercase())
        })
        .collect();
    if places.is_empty() {
        // Nothing to swap ("Aa", one letter): add a letter instead.
        let letter = (b'a' + (hash(plan.seed, plan.copy, name) % 26) as u8) as char;
        return format!("{name}{letter}");
    }
    let place = places[(hash(plan.seed, plan.copy, name) % places.len() as u64) as usize];
    let (first, second) = (chars[place - 1], chars[place]);
    // The case pattern stays with the positions: "Koepp" can become "Okepp".
    chars[place - 1] = same_case(second, first);
    chars[place] = same_case(first, second);
    chars.into_iter().collect()
}

/// `letter` in the case of `like`.
fn same_case(letter: char, like: char) -> char {
    if like.is_uppercase() {
        letter.to_uppercase().next().unwrap_or(letter)
    } else {
        letter.to_lowercase().next().unwrap_or(letter)
    }
}

/// A UUID-shaped (version 4 layout) id from the seed, the copy number and the original id.
fn fresh_id(seed: u64, copy: u32, original: &str) -> String {
    let high = hash(seed, copy, original);
    let low = hash(seed ^ 0x9e37_79b9_7f4a_7c15, copy, original);
    let high = (high & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let low = (low & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}

/// FNV-1a over the text, mixed with the seed and copy by splitmix64: stable across runs and
/// platforms (unlike `std`'s hasher).
fn hash(seed: u64, copy: u32, text: &str) -> u64 {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    splitmix(splitmix(state ^ seed) ^ u64::from(copy))
}

fn splitmix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `text` shifted by `days` when it is a FHIR date, dateTime or instant with a day
/// (`YYYY-MM-DD`, optionally followed by `T` and a time); the rest is kept as it was.
/// Year and year-month values have no day to shift and are left alone.
fn shift_date(text: &str, days: i64) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() < 10 {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = &bytes[range];
        if !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    if bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let rest = &text[10..];
    if !(rest.is_empty()
        || rest.starts_with('T') && rest.as_bytes().get(1).is_some_and(u8::is_ascii_digit))
    {
        return None;
    }
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (year, month, day) = civil_from_days(days_from_civil(year, month, day) + days);
    if !(1..=9999).contains(&year) {
        return None;
    }
    Some(format!("{year:04}-{month:02}-{day:02}{rest}"))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_part = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_part + 2) / 5 + 1;
    let month = if month_part < 10 {
        month_part + 3
    } else {
        month_part - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Where copies go.
enum Output {
    Bundles {
        dir: PathBuf,
    },
    Ndjson {
        dir: PathBuf,
        writers: BTreeMap<String, BufWriter<File>>,
    },
}

impl Output {
    fn write(&mut self, name: &str, bundle: &Value, totals: &mut Totals) -> Result<(), String> {
        match self {
            Output::Bundles { dir } => {
                let path = dir.join(name);
                let text = serde_json::to_vec(bundle)
                    .map_err(|error| format!("cannot serialise {name}: {error}"))?;
                std::fs::write(&path, &text)
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
                totals.files += 1;
                totals.bytes += text.len() as u64;
                totals.resources += entries(bundle)
                    .filter(|entry| entry.get("resource").is_some())
                    .count() as u64;
            }
            Output::Ndjson { dir, writers } => {
                for resource in entries(bundle).filter_map(|entry| entry.get("resource")) {
                    let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str)
                    else {
                        continue;
                    };
                    if !writers.contains_key(resource_type) {
                        let path = dir.join(format!("{resource_type}.ndjson"));
                        let file = File::create(&path).map_err(|error| {
                            format!("cannot create {}: {error}", path.display())
                        })?;
                        writers.insert(resource_type.to_string(), BufWriter::new(file));
                    }
                    let Some(writer) = writers.get_mut(resource_type) else {
                        continue;
                    };
                    let mut line = serde_json::to_vec(resource)
                        .map_err(|error| format!("cannot serialise {name}: {error}"))?;
                    line.push(b'\n');
                    writer
                        .write_all(&line)
                        .map_err(|error| format!("cannot write {resource_type}.ndjson: {error}"))?;
                    totals.bytes += line.len() as u64;
                    totals.resources += 1;
                }
            }
        }
        Ok(())
    }

    fn finish(self, totals: &mut Totals) -> Result<(), String> {
        if let Output::Ndjson { writers, .. } = self {
            for (resource_type, mut writer) in writers {
                writer
                    .flush()
                    .map_err(|error| format!("cannot write {resource_type}.ndjson: {error}"))?;
                totals.files += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_shift_keeping_precision_and_validity() {
        assert_eq!(shift_date("2000-03-01", -1).as_deref(), Some("2000-02-29"));
        assert_eq!(shift_date("1999-03-01", -1).as_deref(), Some("1999-02-28"));
        assert_eq!(
            shift_date("2019-01-01T08:30:00-04:00", -365).as_deref(),
            Some("2018-01-01T08:30:00-04:00")
        );
        assert_eq!(
            shift_date("2019-05-31T12:28:34.123Z", 1).as_deref(),
            Some("2019-06-01T12:28:34.123Z")
        );
        assert_eq!(shift_date("2019-05", -10), None);
        assert_eq!(shift_date("2019-02-30", -10), None);
        assert_eq!(shift_date("999-22-1962", -10), None);
        assert_eq!(shift_date("2019-05-31 text", -10), None);
    }

    #[test]
    fn fresh_ids_are_uuid_shaped_and_stable() {
        let id = fresh_id(7, 1, "e925b0f3-8006-43f6-aa31-94bd215e55e7");
        assert!(looks_like_uuid(&id), "{id}");
        assert_eq!(id, fresh_id(7, 1, "e925b0f3-8006-43f6-aa31-94bd215e55e7"));
        assert_ne!(id, fresh_id(7, 2, "e925b0f3-8006-43f6-aa31-94bd215e55e7"));
        assert_ne!(id, fresh_id(8, 1, "e925b0f3-8006-43f6-aa31-94bd215e55e7"));
    }

    #[test]
    fn names_always_change() {
        let plan = Plan {
            ids: HashMap::new(),
            copy: 1,
            seed: 3,
            shift_days: -1,
        };
        for name in ["Koepp521", "Abdul218", "Aa", "X", "Anna"] {
            assert_ne!(vary_name(name, &plan), name);
        }
    }
}
