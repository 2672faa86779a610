//! `custodian export --out DIR`: bulk export as NDJSON files, one or more per type,
//! split at `--max-file-bytes`.
//!
//! With `--database` (the default) it reads the store directly, writing through the
//! same code as the server's `$export` jobs (`server::export`); with `--server URL` it
//! runs the asynchronous `$export` against a running server (kick-off, polling with
//! progress, download of every file). Either way it prints the count per type.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::{Connection, split_url};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use server::export::{Level, Progress, parse_params, scan_request, write_ndjson};

#[derive(clap::Args)]
pub struct ExportArgs {
    /// The store to export: sqlite:PATH.
    #[arg(
        long,
        env = "CUSTODIAN_DATABASE",
        default_value = "sqlite:custodian-data"
    )]
    database: String,
    #[command(flatten)]
    keys: crate::crypt::MasterKeyArgs,
    /// Export from a running server instead, e.g. http://127.0.0.1:8080/fhir.
    #[arg(long, conflicts_with = "database")]
    server: Option<String>,
    /// Directory for the NDJSON files; created if needed, and must be empty.
    #[arg(long)]
    out: PathBuf,
    /// Only these resource types (comma-separated, or the option repeated).
    #[arg(long = "type", value_delimiter = ',')]
    types: Vec<String>,
    /// Only resources changed after this instant, e.g. 2024-01-01T00:00:00Z.
    #[arg(long)]
    since: Option<String>,
    /// A search that resources of its type must match, e.g.
    /// 'Observation?code=http://loinc.org|8867-4' (repeatable: any of them).
    #[arg(long = "type-filter")]
    type_filters: Vec<String>,
    /// Patient level: the Patient compartments of these patients (ids; repeatable).
    #[arg(long = "patient", conflicts_with = "group")]
    patients: Vec<String>,
    /// Patient level: the Patient compartments of every patient.
    #[arg(long, conflicts_with_all = ["patients", "group"])]
    all_patients: bool,
    /// Group level: the Patient compartments of this Group's member patients.
    #[arg(long)]
    group: Option<String>,
    /// Largest output file, in bytes: a type's resources continue in a new file.
    #[arg(long, env = "CUSTODIAN_EXPORT_MAX_FILE_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_file_bytes: u64,
}

impl ExportArgs {
    fn level(&self) -> Level {
        if self.group.is_some() {
            Level::Group
        } else if self.all_patients || !self.patients.is_empty() {
            Level::Patient
        } else {
            Level::System
        }
    }

    /// The options as `$export` parameters.
    fn params(&self) -> Vec<(String, String)> {
        let mut params = Vec::new();
        if !self.types.is_empty() {
            params.push(("_type".to_string(), self.types.join(",")));
        }
        if let Some(since) = &self.since {
            params.push(("_since".to_string(), since.clone()));
        }
        for filter in &self.type_filters {
            params.push(("_typeFilter".to_string(), type_filter_param(filter)));
        }
        for id in &self.patients {
            params.push(("patient".to_string(), format!("Patient/{id}")));
        }
        params
    }
}

/// A `_typeFilter` value holds one or more queries separated by commas, each decoded
/// once more: the query's own commas and plus signs are escaped.
fn type_filter_param(filter: &str) -> String {
    match filter.split_once('?') {
        Some((resource_type, query)) => format!(
            "{resource_type}?{}",
            query.replace(',', "%2C").replace('+', "%2B")
        ),
        None => filter.to_string(),
    }
}

/// What an export wrote: per file, its type, name and count.
struct Written {
    files: Vec<(String, String, u64)>,
    transaction_time: String,
}

pub fn run(args: ExportArgs) -> Result<(), String> {
    let params = args.params();
    let level = args.level();
    // Check the options here too, so mistakes are named before anything runs.
    let checked = parse_params(&params, level, true).map_err(|error| error.diagnostics)?;
    prepare_out(&args.out)?;
    let started = Instant::now();
    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/~{len} resources {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let written = match &args.server {
        Some(url) => from_server(&args, url, &params, level, &progress)?,
        None => {
            let store = store::Store::open_with(&args.database, &args.keys.options()?)
                .map_err(|error| error.to_string())?;
            let members = match &args.group {
                Some(id) => Some(
                    current_thread()?
                        .block_on(server::export::group_patients(&store, id, None))
                        .map_err(|error| error.diagnostics)?,
                ),
                None => None,
            };
            let request = scan_request(checked, level, members);
            let mut report = |step: Progress| {
                progress.set_length(step.estimate);
                progress.set_position(step.done);
                true
            };
            let exported = write_ndjson(
                &store,
                &request,
                &args.out,
                args.max_file_bytes,
                &mut report,
            )
            .map_err(|error| error.to_string())?;
            Written {
                files: exported
                    .files
                    .into_iter()
                    .map(|file| (file.resource_type, file.name, file.count))
                    .collect(),
                transaction_time: exported.transaction_time.to_fhir(),
            }
        }
    };
    progress.finish_and_clear();
    summarise(&written, &args.out, started.elapsed());
    Ok(())
}

fn prepare_out(out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out)
        .map_err(|error| format!("cannot create {}: {error}", out.display()))?;
    let mut entries = std::fs::read_dir(out)
        .map_err(|error| format!("cannot read {}: {error}", out.display()))?;
    if entries.next().is_some() {
        return Err(format!(
            "{} is not empty; export into a new or empty directory",
            out.display()
        ));
    }
    Ok(())
}

/// Prints the totals and the count per type (a closed stdout is not an error).
fn summarise(written: &Written, out: &Path, elapsed: Duration) {
    let mut per_type: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
    for (resource_type, _, count) in &written.files {
        let entry = per_type.entry(resource_type).or_default();
        entry.0 += count;
        entry.1 += 1;
    }
    let total: u64 = per_type.values().map(|(count, _)| count).sum();
    let seconds = elapsed.as_secs_f64();
    let mut text = format!(
        "exported {total} resources in {} files to {} in {seconds:.1} s ({:.0} resources/s), as of {}\n",
        written.files.len(),
        out.display(),
        total as f64 / seconds.max(1e-9),
        written.transaction_time
    );
    for (resource_type, (count, files)) in per_type {
        let files = if files == 1 {
            String::new()
        } else {
            format!(" ({files} files)")
        };
        text.push_str(&format!("  {resource_type:<28} {count:>9}{files}\n"));
    }
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

fn current_thread() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))
}

/// Kick-off, polling and download against a running server.
fn from_server(
    args: &ExportArgs,
    url: &str,
    params: &[(String, String)],
    level: Level,
    progress: &ProgressBar,
) -> Result<Written, String> {
    let (address, base_path) = split_url(url)?;
    let path = match (level, &args.group) {
        (Level::Group, Some(id)) => format!("{base_path}/Group/{id}/$export"),
        (Level::Patient, _) => format!("{base_path}/Patient/$export"),
        _ => format!("{base_path}/$export"),
    };
    current_thread()?.block_on(async {
        let mut remote = Connection::open(&address).await?;
        // The `patient` parameter only goes in a Parameters body.
        let response = if args.patients.is_empty() {
            let query = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            let target = if query.is_empty() {
                path
            } else {
                format!("{path}?{query}")
            };
            remote.send("GET", &target, &KICK_OFF, None).await?
        } else {
            let parameter: Vec<Value> = params
                .iter()
                .map(|(name, value)| match name.as_str() {
                    "patient" => json!({"name": name, "valueReference": {"reference": value}}),
                    _ => json!({"name": name, "valueString": value}),
                })
                .collect();
            let body = json!({"resourceType": "Parameters", "parameter": parameter});
            let body = Bytes::from(body.to_string());
            remote.send("POST", &path, &KICK_OFF, Some(body)).await?
        };
        let status = response.status().as_u16();
        let location = header(&response, "content-location");
        let text = read_text(response).await?;
        if status != 202 {
            return Err(format!("the server refused the export ({status}): {text}"));
        }
        let status_url = location.ok_or("the server gave no Content-Location to poll")?;
        let status_path = local_path(&status_url, &address)?;
        let manifest = poll(&mut remote, &status_path, progress).await?;
        download(&mut remote, &address, &manifest, &args.out, progress).await
    })
}

const KICK_OFF: [(&str, &str); 2] = [
    ("accept", "application/fhir+json"),
    ("prefer", "respond-async"),
];

/// Polls the status URL until the manifest comes.
async fn poll(
    remote: &mut Connection,
    path: &str,
    progress: &ProgressBar,
) -> Result<Value, String> {
    loop {
        let response = remote
            .send("GET", path, &[("accept", "application/json")], None)
            .await?;
        let status = response.status().as_u16();
        let retry_after = header(&response, "retry-after").and_then(|value| value.parse().ok());
        if let Some((done, estimate)) = header(&response, "x-progress")
            .as_deref()
            .and_then(parse_progress)
        {
            progress.set_length(estimate.max(done));
            progress.set_position(done);
        }
        let text = read_text(response).await?;
        match status {
            202 => {
                let wait = Duration::from_secs(retry_after.unwrap_or(1).min(10));
                tokio::time::sleep(wait.min(Duration::from_millis(500))).await;
            }
            200 => {
                return serde_json::from_str(&text)
                    .map_err(|error| format!("the manifest is not JSON: {error}"));
            }
            _ => return Err(format!("the export failed ({status}): {text}")),
        }
    }
}

/// `Exported 12000 of ~30000 resources` → (12000, 30000).
fn parse_progress(text: &str) -> Option<(u64, u64)> {
    let mut numbers = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .filter_map(|part| part.parse().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Downloads every output file of the manifest into `out`.
async fn download(
    remote: &mut Connection,
    address: &str,
    manifest: &Value,
    out: &Path,
    progress: &ProgressBar,
) -> Result<Written, String> {
    let mut files = Vec::new();
    let outputs = manifest["output"].as_array().cloned().unwrap_or_default();
    progress.set_position(0);
    progress.set_length(outputs.iter().filter_map(|o| o["count"].as_u64()).sum());
    for output in outputs {
        let (Some(resource_type), Some(url)) = (output["type"].as_str(), output["url"].as_str())
        else {
            return Err(format!("a manifest output has no type or url: {output}"));
        };
        let name = url.rsplit('/').next().unwrap_or_default();
        if name.is_empty() || name.contains("..") || name.starts_with('.') {
            return Err(format!("an output url has no usable file name: {url}"));
        }
        let response = remote
            .send(
                "GET",
                &local_path(url, address)?,
                &[("accept", "application/fhir+ndjson")],
                None,
            )
            .await?;
        let status = response.status().as_u16();
        if status != 200 {
            let text = read_text(response).await?;
            return Err(format!("downloading {url} failed ({status}): {text}"));
        }
        let path = out.join(name);
        let file = std::fs::File::create(&path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| format!("downloading {url} failed: {error}"))?;
            if let Ok(data) = frame.into_data() {
                writer
                    .write_all(&data)
                    .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
            }
        }
        writer
            .flush()
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        let count = output["count"].as_u64().unwrap_or(0);
        progress.inc(count);
        files.push((resource_type.to_string(), name.to_string(), count));
    }
    Ok(Written {
        files,
        transaction_time: manifest["transactionTime"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
    })
}

/// The path of a URL the server gave, which must be on the same server.
fn local_path(url: &str, address: &str) -> Result<String, String> {
    let (host, path) = split_url(url)?;
    if host != address {
        return Err(format!(
            "the server sent a URL on another host ({url}); not following it"
        ));
    }
    Ok(path)
}

pub(crate) fn header(response: &hyper::Response<Incoming>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_string)
}

pub(crate) async fn read_text(response: hyper::Response<Incoming>) -> Result<String, String> {
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|error| format!("reading the answer failed: {error}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_header() {
        assert_eq!(
            parse_progress("Exported 12000 of ~30000 resources"),
            Some((12000, 30000))
        );
        assert_eq!(parse_progress("working"), None);
    }

    #[test]
    fn type_filters_keep_their_commas() {
        assert_eq!(
            type_filter_param("Observation?code=a,b&date=ge2024-01-01T00:00:00+01:00"),
            "Observation?code=a%2Cb&date=ge2024-01-01T00:00:00%2B01:00"
        );
    }
}
