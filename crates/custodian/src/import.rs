//! `custodian import PATH...`: loads NDJSON files (one resource per line) and Bundle JSON
//! files, or directories of them, gzip included, into the record store.
//!
//! Lines go to the store in batches, several in flight, so the store commits them in
//! groups; each line keeps its id (an update), or gets one (a create) when it has none.
//! Every line is validated like any other write. A rejected line never stops the import unless `--strict`;
//! at the end every rejected line is listed with its file, line number and reason.
//!
//! Loading only NDJSON into an empty local store is a bulk load: writes skip the search
//! value indexes, which are built in one sorted pass at the end (or, if the import stops,
//! when the store is next opened).
//!
//! With `--database` (the default) NDJSON lines are written straight into the store, and
//! Bundle files go through a server the import runs in-process on a loopback port; with
//! `--server URL` everything goes, as batch Bundles, to a running server. A checkpoint file records how far
//! each input got, so an interrupted import resumes where it stopped.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hyper::body::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Deserialize;
use serde_json::Value;
use server::load::Loader;
use tokio::task::JoinSet;

use crate::client::{Connection, split_url};

#[derive(clap::Args)]
pub struct ImportArgs {
    /// NDJSON or Bundle JSON files (`.gz` too), or directories of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// The store to load: sqlite:PATH.
    #[arg(
        long,
        env = "CUSTODIAN_DATABASE",
        default_value = "sqlite:custodian-data"
    )]
    database: String,
    #[command(flatten)]
    keys: crate::crypt::MasterKeyArgs,
    /// Load through a running server instead, e.g. http://127.0.0.1:8080/fhir.
    #[arg(long, conflicts_with = "database")]
    server: Option<String>,
    /// Stop at the first rejected line.
    #[arg(long)]
    strict: bool,
    /// Resources per batch.
    #[arg(long, default_value_t = 2000)]
    batch: usize,
    /// Batches in flight at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Where progress is recorded for resuming; removed when the import completes.
    #[arg(long, default_value = "custodian-import.checkpoint")]
    checkpoint: PathBuf,
    /// Largest line or Bundle file accepted, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_bytes: usize,
}

/// Where a resource came from.
#[derive(Clone, Debug)]
struct Origin {
    file: usize,
    line: usize,
}

/// One resource ready to send.
struct Item {
    origin: Origin,
    /// Empty when the line is loaded straight into the store, which reads it there.
    resource_type: String,
    /// `Type/id` for a PUT, `Type` for a POST (empty when loaded straight into the store).
    url: String,
    method: &'static str,
    text: String,
}

struct Rejected {
    origin: Origin,
    reason: String,
}

#[derive(Deserialize)]
struct Head {
    #[serde(rename = "resourceType")]
    resource_type: Option<String>,
    id: Option<Value>,
}

fn input_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found = Vec::new();
            collect_dir(path, &mut found)?;
            found.sort();
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(format!("{} does not exist", path.display()));
        }
    }
    Ok(files)
}

fn collect_dir(dir: &Path, found: &mut Vec<PathBuf>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir)
        .map_err(|error| format!("cannot read {}: {error}", dir.display()))?;
    for entry in entries {
        let path = entry
            .map_err(|error| format!("cannot read {}: {error}", dir.display()))?
            .path();
        if path.is_dir() {
            collect_dir(&path, found)?;
        } else {
            let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
            if name.is_some_and(|n| {
                n.ends_with(".ndjson")
                    || n.ends_with(".ndjson.gz")
                    || n.ends_with(".json")
                    || n.ends_with(".json.gz")
            }) {
                found.push(path);
            }
        }
    }
    Ok(())
}

fn open_text(path: &Path) -> Result<Box<dyn Read + Send>, String> {
    let file =
        File::open(path).map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(file)))
    } else {
        Ok(Box::new(file))
    }
}

fn is_ndjson(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_lowercase());
    name.is_some_and(|n| n.ends_with(".ndjson") || n.ends_with(".ndjson.gz"))
}

/// Reads one resource line into an item, or says why it cannot be imported.
/// The item for one resource's JSON text. Only what goes to a server over HTTP needs its
/// type and id read here (`heads`): a line loaded straight into the store is parsed once,
/// by the loader, which refuses it with the same words.
fn item_from_text(origin: Origin, text: String, heads: bool) -> Result<Item, Rejected> {
    if !heads {
        return Ok(Item {
            origin,
            resource_type: String::new(),
            url: String::new(),
            method: "",
            text,
        });
    }
    let reject = |reason: String| Rejected {
        origin: origin.clone(),
        reason,
    };
    let head: Head =
        serde_json::from_str(&text).map_err(|error| reject(format!("not JSON: {error}")))?;
    let Some(resource_type) = head.resource_type else {
        return Err(reject("not a FHIR resource: it has no resourceType".into()));
    };
    let (method, url) = match head.id {
        None => ("POST", resource_type.clone()),
        Some(Value::String(id)) if fhir::is_valid_id(&id) => {
            ("PUT", format!("{resource_type}/{id}"))
        }
        Some(other) => return Err(reject(format!("the id {other} is not a valid FHIR id"))),
    };
    Ok(Item {
        origin,
        resource_type,
        url,
        method,
        text,
    })
}

/// What the reader hands to the sender: items in order, and bytes read so far.
enum Read_ {
    Item(Item),
    Rejected(Rejected),
    /// A whole transaction or batch Bundle file, sent as it is.
    Bundle {
        origin: Origin,
        text: String,
    },
}

fn read_file(
    index: usize,
    path: &Path,
    max_bytes: usize,
    skip: usize,
    heads: bool,
    out: &mut dyn FnMut(Read_) -> bool,
) -> Result<(), String> {
    let reader = open_text(path)?;
    if is_ndjson(path) {
        let mut reader = BufReader::new(reader);
        let mut line = String::new();
        let mut number = 0;
        loop {
            line.clear();
            let read = reader
                .read_line(&mut line)
                .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
            if read == 0 {
                break;
            }
            number += 1;
            if number <= skip {
                continue;
            }
            let origin = Origin {
                file: index,
                line: number,
            };
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let read = if text.len() > max_bytes {
                Read_::Rejected(Rejected {
                    origin,
                    reason: format!("the line is larger than {max_bytes} bytes"),
                })
            } else {
                match item_from_text(origin, text.to_string(), heads) {
                    Ok(item) => Read_::Item(item),
                    Err(rejected) => Read_::Rejected(rejected),
                }
            };
            if !out(read) {
                break;
            }
        }
        return Ok(());
    }
    if skip > 0 {
        return Ok(());
    }
    let mut text = String::new();
    reader
        .take(max_bytes as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let origin = Origin {
        file: index,
        line: 1,
    };
    if text.len() > max_bytes {
        out(Read_::Rejected(Rejected {
            origin,
            reason: format!("the file is larger than {max_bytes} bytes"),
        }));
        return Ok(());
    }
    let value: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(error) => {
            out(Read_::Rejected(Rejected {
                origin,
                reason: format!("not JSON: {error}"),
            }));
            return Ok(());
        }
    };
    let kind = value["type"].as_str().unwrap_or("");
    if value["resourceType"] == "Bundle" && (kind == "transaction" || kind == "batch") {
        out(Read_::Bundle { origin, text });
    } else if value["resourceType"] == "Bundle" {
        // A collection, searchset or document: import its resources one by one.
        for (position, entry) in value["entry"].as_array().into_iter().flatten().enumerate() {
            let origin = Origin {
                file: index,
                line: position + 1,
            };
            let read = match entry.get("resource") {
                Some(resource) => match item_from_text(origin, resource.to_string(), heads) {
                    Ok(item) => Read_::Item(item),
                    Err(rejected) => Read_::Rejected(rejected),
                },
                None => Read_::Rejected(Rejected {
                    origin,
                    reason: "the entry has no resource".into(),
                }),
            };
            if !out(read) {
                break;
            }
        }
    } else {
        out(match item_from_text(origin, text, heads) {
            Ok(item) => Read_::Item(item),
            Err(rejected) => Read_::Rejected(rejected),
        });
    }
    Ok(())
}

/// A batch Bundle around `items`, their JSON spliced in as it was read.
fn batch_body(items: &[Item]) -> Bytes {
    let mut body =
        String::with_capacity(items.iter().map(|item| item.text.len() + 96).sum::<usize>() + 64);
    body.push_str(r#"{"resourceType":"Bundle","type":"batch","entry":["#);
    for (position, item) in items.iter().enumerate() {
        if position > 0 {
            body.push(',');
        }
        body.push_str(r#"{"resource":"#);
        body.push_str(&item.text);
        body.push_str(r#","request":{"method":""#);
        body.push_str(item.method);
        body.push_str(r#"","url":""#);
        body.push_str(&item.url);
        body.push_str(r#""}}"#);
    }
    body.push_str("]}");
    Bytes::from(body)
}

/// What came back for one sent unit.
struct Answer {
    accepted: Vec<String>,
    rejected: Vec<Rejected>,
    /// The file and the last line this unit covered, for the checkpoint.
    file: usize,
    last_line: usize,
}

fn entry_reason(entry: &Value) -> String {
    let status = entry["response"]["status"].as_str().unwrap_or("no status");
    let detail = entry["response"]["outcome"]["issue"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|issue| {
            let text = issue["diagnostics"].as_str()?;
            match issue["expression"][0].as_str() {
                Some(at) => Some(format!("{at}: {text}")),
                None => Some(text.to_string()),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!("{status}: {detail}")
}

async fn send_items(
    connection: &mut Connection,
    base_path: &str,
    items: Vec<Item>,
) -> Result<Answer, String> {
    let (file, last_line) = items
        .last()
        .map_or((0, 0), |item| (item.origin.file, item.origin.line));
    // Only each entry's status is read: the resources need not come back.
    let (status, body) = connection
        .request_with(
            "POST",
            base_path,
            Some(batch_body(&items)),
            &[("prefer", "return=minimal")],
        )
        .await?;
    if status != 200 {
        return Err(format!(
            "the server refused a batch ({status}): {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        ));
    }
    let response: Value = serde_json::from_slice(&body)
        .map_err(|error| format!("the server's answer is not JSON: {error}"))?;
    let entries = response["entry"].as_array().cloned().unwrap_or_default();
    let mut answer = Answer {
        accepted: Vec::new(),
        rejected: Vec::new(),
        file,
        last_line,
    };
    for (item, entry) in items
        .into_iter()
        .zip(entries.iter().chain(std::iter::repeat(&Value::Null)))
    {
        let status = entry["response"]["status"].as_str().unwrap_or("");
        if status.starts_with('2') {
            answer.accepted.push(item.resource_type);
        } else {
            answer.rejected.push(Rejected {
                origin: item.origin,
                reason: entry_reason(entry),
            });
        }
    }
    Ok(answer)
}

/// Writes `items` straight into the store; each line is answered on its own.
async fn load_items(loader: &Loader, items: Vec<Item>) -> Answer {
    let (file, last_line) = items
        .last()
        .map_or((0, 0), |item| (item.origin.file, item.origin.line));
    let mut origins = Vec::with_capacity(items.len());
    let mut texts = Vec::with_capacity(items.len());
    for item in items {
        origins.push(item.origin);
        texts.push(item.text);
    }
    let mut answer = Answer {
        accepted: Vec::new(),
        rejected: Vec::new(),
        file,
        last_line,
    };
    for (origin, loaded) in origins.into_iter().zip(loader.load(texts).await) {
        match loaded {
            Ok(resource_type) => answer.accepted.push(resource_type),
            Err(reason) => answer.rejected.push(Rejected { origin, reason }),
        }
    }
    answer
}

async fn send_bundle(
    connection: &mut Connection,
    base_path: &str,
    origin: Origin,
    text: String,
) -> Result<Answer, String> {
    let (status, body) = connection
        .request_with(
            "POST",
            base_path,
            Some(Bytes::from(text)),
            &[("prefer", "return=minimal")],
        )
        .await?;
    let mut answer = Answer {
        accepted: Vec::new(),
        rejected: Vec::new(),
        file: origin.file,
        last_line: origin.line,
    };
    let response: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if status == 200 {
        for entry in response["entry"].as_array().into_iter().flatten() {
            let status = entry["response"]["status"].as_str().unwrap_or("");
            let location = entry["response"]["location"].as_str().unwrap_or("");
            if status.starts_with('2') {
                answer
                    .accepted
                    .push(location.split('/').next().unwrap_or("?").to_string());
            } else {
                answer.rejected.push(Rejected {
                    origin: origin.clone(),
                    reason: entry_reason(entry),
                });
            }
        }
    } else {
        let detail = response["issue"][0]["diagnostics"]
            .as_str()
            .unwrap_or("no detail")
            .to_string();
        answer.rejected.push(Rejected {
            origin,
            reason: format!("the Bundle was refused ({status}): {detail}"),
        });
    }
    Ok(answer)
}

/// Lines done per input file, for resuming.
#[derive(Default, serde::Serialize, Deserialize)]
struct Checkpoint {
    done: BTreeMap<String, usize>,
}

impl Checkpoint {
    fn load(path: &Path) -> Checkpoint {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    fn save(&self, path: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|error| error.to_string())?;
        let partial = path.with_extension("partial");
        std::fs::write(&partial, text)
            .and_then(|()| std::fs::rename(&partial, path))
            .map_err(|error| format!("cannot write the checkpoint {}: {error}", path.display()))
    }
}

pub fn run(args: ImportArgs) -> Result<(), String> {
    if args.batch == 0 || args.concurrency == 0 {
        return Err("--batch and --concurrency must be at least 1".into());
    }
    let files = input_files(&args.paths)?;
    // Only NDJSON into a local store may bulk load: Bundle files can hold conditional
    // references, which search, and searches want the value indexes.
    let bulk = args.server.is_none() && files.iter().all(|path| is_ndjson(path));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let imported = runtime.block_on(async {
        let (address, base_path, loader, token) = match &args.server {
            Some(url) => {
                let (address, base_path) = split_url(url)?;
                (address, base_path, None, None)
            }
            None => {
                let (address, loader, token) =
                    in_process_server(&args.database, &args.keys.options()?, bulk).await?;
                (address, "/fhir".to_string(), Some(loader), Some(token))
            }
        };
        let target = Target {
            address,
            base_path,
            token,
        };
        import(&args, &files, &target, loader).await
    });
    // Closes the store: the in-process server and every handle go with the runtime.
    drop(runtime);
    if bulk {
        // A bulk load skipped the search value indexes; opening the store builds them.
        let started = Instant::now();
        println!("building the search indexes...");
        store::Store::open_with(&args.database, &args.keys.options()?)
            .map_err(|error| error.to_string())?;
        println!(
            "search indexes built in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    imported
}

/// Where the import sends Bundle files.
struct Target {
    address: String,
    base_path: String,
    /// The in-process server's token (a `--server` takes `CUSTODIAN_TOKEN`).
    token: Option<String>,
}

/// Serves the store on a loopback port for the import's own use (Bundle files go
/// through it), and loads NDJSON lines straight into the same store. The server
/// requires a token like any other, from a key that lives only in this process; the
/// import gets the one token.
async fn in_process_server(
    database: &str,
    options: &store::Options,
    bulk: bool,
) -> Result<(String, Arc<Loader>, String), String> {
    let open = if bulk {
        store::Store::open_bulk
    } else {
        store::Store::open_with
    };
    let store = open(database, options).map_err(|error| error.to_string())?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| format!("cannot open a loopback port: {error}"))?;
    let local = listener
        .local_addr()
        .map_err(|error| format!("cannot read the loopback port: {error}"))?;
    let base_url = format!("http://{local}/fhir");
    // The load is audited as the operating-system user's: each Bundle entry as over
    // HTTP, each batch of NDJSON lines by the loader.
    let operator = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let key = privacy::keys::SigningKey::generate().map_err(|error| error.to_string())?;
    let issuer =
        privacy::token::Issuer::new(format!("http://{local}"), base_url.clone(), 24 * 3600, key);
    let token = issuer
        .issue(&privacy::token::Grant {
            subject: "custodian-import".into(),
            client_id: None,
            user: Some(format!("operator:{operator}")),
            roles: vec![privacy::Role::Admin],
            scopes: privacy::Scopes::parse("system/*.cruds"),
            patient: None,
        })
        .map_err(|error| error.to_string())?
        .access_token;
    let config = server::Config {
        base_url,
        auth: server::Auth::Tokens(Arc::new(privacy::token::Verifier {
            own: issuer,
            external: Vec::new(),
        })),
        // A one-off load has no use for the patient index: the server builds it at start.
        mpi: server::MpiConfig {
            enabled: false,
            ..server::MpiConfig::default()
        },
        ..server::Config::default()
    };
    let loader = Loader::new(store.clone(), config.clone())
        .await
        .map_err(|error| format!("cannot start: {error}"))?
        .audited_as(&operator);
    let app = server::router(store, config)
        .await
        .map_err(|error| format!("cannot start: {error}"))?;
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            tracing::error!(%error, "the import's server stopped");
        }
    });
    Ok((local.to_string(), Arc::new(loader), token))
}

/// Everything the import has learnt so far.
struct Tally<'a> {
    args: &'a ImportArgs,
    files: &'a [PathBuf],
    counts: BTreeMap<String, u64>,
    rejected: Vec<Rejected>,
    imported: u64,
    /// Per file, the last line of each unit sent, in order.
    dispatched: HashMap<usize, VecDeque<usize>>,
    /// Per file, the units answered (by last line) but not yet counted into the checkpoint.
    answered: HashMap<usize, HashSet<usize>>,
    checkpoint: Checkpoint,
    progress: ProgressBar,
    started: Instant,
    stop: bool,
}

impl Tally<'_> {
    fn sent(&mut self, file: usize, last_line: usize) {
        self.dispatched
            .entry(file)
            .or_default()
            .push_back(last_line);
    }

    fn absorb(&mut self, answer: Answer) {
        for resource_type in answer.accepted {
            *self.counts.entry(resource_type).or_default() += 1;
            self.imported += 1;
        }
        if self.args.strict && !answer.rejected.is_empty() {
            self.stop = true;
        }
        self.rejected.extend(answer.rejected);
        // The checkpoint moves past a unit only once every earlier unit of its file is done.
        let answered = self.answered.entry(answer.file).or_default();
        answered.insert(answer.last_line);
        let mut watermark = None;
        if let Some(order) = self.dispatched.get_mut(&answer.file) {
            while let Some(front) = order.front().copied() {
                if !answered.remove(&front) {
                    break;
                }
                order.pop_front();
                watermark = Some(front);
            }
        }
        if let (Some(line), Some(path)) = (watermark, self.files.get(answer.file)) {
            self.checkpoint
                .done
                .insert(path.display().to_string(), line);
            if let Err(error) = self.checkpoint.save(&self.args.checkpoint) {
                self.progress.println(error);
            }
        }
        let rate = self.imported as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        self.progress.set_message(format!(
            "{} resources, {rate:.0}/s, {} rejected",
            self.imported,
            self.rejected.len()
        ));
    }
}

/// Sends units on the free connections, waiting for one to come back when all are busy.
struct Sender {
    address: String,
    base_path: String,
    token: Option<String>,
    /// Loads NDJSON lines straight into the store (without `--server`).
    loader: Option<Arc<Loader>>,
    idle: Vec<Connection>,
    in_flight: JoinSet<(Connection, Result<Answer, String>)>,
}

impl Sender {
    async fn send(&mut self, unit: Unit, tally: &mut Tally<'_>) -> Result<(), String> {
        while self.idle.is_empty() {
            self.collect_one(tally).await?;
        }
        let Some(mut connection) = self.idle.pop() else {
            return Err("no connection to the server is left".into());
        };
        let (file, last_line) = match &unit {
            Unit::Items(items) => items
                .last()
                .map_or((0, 0), |item| (item.origin.file, item.origin.line)),
            Unit::Bundle(origin, _) => (origin.file, origin.line),
        };
        tally.sent(file, last_line);
        let base_path = self.base_path.clone();
        let loader = self.loader.clone();
        self.in_flight.spawn(async move {
            let result = match (unit, loader) {
                (Unit::Items(items), Some(loader)) => Ok(load_items(&loader, items).await),
                (Unit::Items(items), None) => send_items(&mut connection, &base_path, items).await,
                (Unit::Bundle(origin, text), _) => {
                    send_bundle(&mut connection, &base_path, origin, text).await
                }
            };
            (connection, result)
        });
        Ok(())
    }

    async fn collect_one(&mut self, tally: &mut Tally<'_>) -> Result<bool, String> {
        let Some(joined) = self.in_flight.join_next().await else {
            return Ok(false);
        };
        let (connection, result) = joined.map_err(|error| format!("a sender failed: {error}"))?;
        match result {
            Ok(answer) => {
                self.idle.push(connection);
                tally.absorb(answer);
                Ok(true)
            }
            Err(error) => {
                // The connection may be broken: open a fresh one, and stop the import.
                if let Ok(fresh) = Connection::open(&self.address).await {
                    self.idle.push(fresh.bearer(self.token.as_deref()));
                }
                Err(error)
            }
        }
    }
}

enum Unit {
    Items(Vec<Item>),
    Bundle(Origin, String),
}

async fn import(
    args: &ImportArgs,
    files: &[PathBuf],
    target: &Target,
    loader: Option<Arc<Loader>>,
) -> Result<(), String> {
    let checkpoint = Checkpoint::load(&args.checkpoint);
    let resumed = !checkpoint.done.is_empty();
    let total_bytes: u64 = files
        .iter()
        .filter_map(|path| std::fs::metadata(path).ok())
        .map(|metadata| metadata.len())
        .sum();
    let progress = ProgressBar::new(total_bytes);
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if resumed {
        progress.println(format!("resuming from {}", args.checkpoint.display()));
    }
    let mut tally = Tally {
        args,
        files,
        counts: BTreeMap::new(),
        rejected: Vec::new(),
        imported: 0,
        dispatched: HashMap::new(),
        answered: HashMap::new(),
        checkpoint,
        progress,
        started: Instant::now(),
        stop: false,
    };
    let mut sender = Sender {
        address: target.address.clone(),
        base_path: target.base_path.clone(),
        token: target.token.clone(),
        loader,
        idle: Vec::new(),
        in_flight: JoinSet::new(),
    };
    for _ in 0..args.concurrency {
        sender.idle.push(
            Connection::open(&target.address)
                .await?
                .bearer(target.token.as_deref()),
        );
    }

    for (index, path) in files.iter().enumerate() {
        if tally.stop {
            break;
        }
        let skip = tally
            .checkpoint
            .done
            .get(&path.display().to_string())
            .copied()
            .unwrap_or(0);
        // The file is read on a thread of its own, a bounded queue ahead of the writes,
        // so memory does not grow with the file.
        let (queue, mut reads) = tokio::sync::mpsc::channel::<Read_>(args.batch * 2);
        let (reader_path, max_bytes) = (path.clone(), args.max_bytes);
        let heads = sender.loader.is_none();
        let reader = tokio::task::spawn_blocking(move || {
            read_file(index, &reader_path, max_bytes, skip, heads, &mut |read| {
                queue.blocking_send(read).is_ok()
            })
        });
        let mut batch: Vec<Item> = Vec::new();
        while let Some(read) = reads.recv().await {
            match read {
                Read_::Rejected(one) => {
                    tally.rejected.push(one);
                    if args.strict {
                        tally.stop = true;
                    }
                }
                Read_::Item(item) => {
                    batch.push(item);
                    if batch.len() >= args.batch {
                        sender
                            .send(Unit::Items(std::mem::take(&mut batch)), &mut tally)
                            .await?;
                    }
                }
                Read_::Bundle { origin, text } => {
                    sender.send(Unit::Bundle(origin, text), &mut tally).await?;
                }
            }
            if tally.stop {
                break;
            }
        }
        // Closing the queue stops the reader if it is still going (--strict).
        drop(reads);
        reader
            .await
            .map_err(|error| format!("the reader of {} failed: {error}", path.display()))??;
        if !batch.is_empty() && !tally.stop {
            sender.send(Unit::Items(batch), &mut tally).await?;
        }
        tally
            .progress
            .inc(std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
    }
    while sender.collect_one(&mut tally).await? {}
    tally.progress.finish_and_clear();

    let elapsed = tally.started.elapsed().as_secs_f64();
    println!(
        "imported {} resources from {} files in {elapsed:.1} s ({:.0} resources/s)",
        tally.imported,
        files.len(),
        tally.imported as f64 / elapsed.max(1e-9)
    );
    for (resource_type, count) in &tally.counts {
        println!("  {resource_type:<28} {count:>9}");
    }
    if !tally.rejected.is_empty() {
        tally
            .rejected
            .sort_by_key(|one| (one.origin.file, one.origin.line));
        println!("rejected {} lines:", tally.rejected.len());
        for one in &tally.rejected {
            let file = files
                .get(one.origin.file)
                .map_or("?".into(), |p| p.display().to_string());
            println!("  {file}:{}: {}", one.origin.line, one.reason);
        }
    }
    if tally.stop {
        return Err(
            "stopped at the first rejected line (--strict); fix it and run again to resume".into(),
        );
    }
    let _ = std::fs::remove_file(&args.checkpoint);
    Ok(())
}
