//! Loading resources straight into the store, without HTTP, for `custodian import`:
//! each resource gets the checks a create or update over HTTP gets (structure,
//! validation, stored profiles), and a batch of them is written as one store job.

use serde_json::{Map, Value};
use store::{Method, Store, StoreError, Write};

use crate::body::check_resource;
use crate::duplicates::{ParseError, parse_json};
use crate::references::referenced;
use crate::validate::{after_write, check_on_write};
use crate::{AppState, Config};

/// The checks and the store behind a load.
pub struct Loader {
    state: AppState,
    /// Who runs the load, for its audit records; without one it writes none.
    operator: Option<String>,
}

/// What became of one resource: its type, or why it was refused.
pub type Loaded = Result<String, String>;

impl Loader {
    /// A loader for `store` with the server's settings (validation mode, limits).
    pub async fn new(store: Store, config: Config) -> Result<Loader, StoreError> {
        Ok(Loader {
            state: AppState::new(store, config).await?,
            operator: None,
        })
    }

    /// Audits each batch as done by `operator` (an operating-system user): one record
    /// per batch, in the batch's own transaction, subtype `batch` and operation `import`.
    pub fn audited_as(mut self, operator: &str) -> Loader {
        self.operator = Some(format!("operator:{operator}"));
        self
    }

    fn records(&self) -> Vec<store::AuditRecord> {
        let Some(agent) = &self.operator else {
            return Vec::new();
        };
        let who = crate::audit::event::Who {
            agent: Some(agent.clone()),
            user: true,
            ..Default::default()
        };
        let what = crate::audit::classify::What {
            subtype: "batch",
            action: "C",
            operation: Some("import".into()),
            ..Default::default()
        };
        vec![crate::audit::event::record(
            who,
            what,
            200,
            store::Instant::now(),
        )]
    }

    /// Writes each JSON text as a resource: an update (create or replace) when it has
    /// an id, a create with a new id when it has none. Every text gets its own answer;
    /// a refused one takes nothing else with it.
    pub async fn load(&self, texts: Vec<String>) -> Vec<Loaded> {
        let mut answers: Vec<Option<Loaded>> = Vec::with_capacity(texts.len());
        let mut writes = Vec::new();
        let mut positions = Vec::new();
        for (position, text) in texts.iter().enumerate() {
            match self.prepare(text).await {
                Ok((resource_type, write)) => {
                    answers.push(Some(Ok(resource_type)));
                    writes.push(write);
                    positions.push(position);
                }
                Err(reason) => answers.push(Some(Err(reason))),
            }
        }
        // One store job for the lot; when the store refuses one write (which rolls the
        // job back), that one is answered and the rest are written again without it.
        while !writes.is_empty() {
            match self
                .state
                .store
                .write_all_audited(std::mem::take(&mut writes), self.records())
                .await
            {
                Ok(written) => {
                    for version in written.iter().filter_map(|w| w.version.as_ref()) {
                        after_write(&self.state, version);
                    }
                    break;
                }
                Err(failure) => {
                    let why = reason(&crate::ApiError::from(failure.error));
                    let Some(&failed) = positions.get(failure.index) else {
                        // Not one write's fault (the store itself failed): all fail.
                        for &position in &positions {
                            answers[position] = Some(Err(why.clone()));
                        }
                        break;
                    };
                    answers[failed] = Some(Err(why));
                    positions.remove(failure.index);
                    // The failed job took the writes with it: prepare the rest again
                    // (rare: the checks above catch what the store would refuse).
                    let mut kept = Vec::with_capacity(positions.len());
                    for &position in &positions {
                        match self.prepare(&texts[position]).await {
                            Ok((_, write)) => {
                                writes.push(write);
                                kept.push(position);
                            }
                            Err(reason) => answers[position] = Some(Err(reason)),
                        }
                    }
                    positions = kept;
                }
            }
        }
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|| Err("not processed".into())))
            .collect()
    }

    async fn prepare(&self, text: &str) -> Result<(String, Write), String> {
        let resource = match parse_json(text.as_bytes()) {
            Ok(Value::Object(resource)) => resource,
            Ok(_) => return Err("not a FHIR resource: not a JSON object".into()),
            Err(ParseError::Syntax(error)) => return Err(format!("not JSON: {error}")),
            Err(ParseError::Duplicate(path)) => {
                return Err(format!(
                    "not FHIR JSON: the property {path} appears more than once in its object"
                ));
            }
        };
        let resource_type = match resource.get("resourceType") {
            Some(Value::String(resource_type)) => resource_type.clone(),
            _ => return Err("not a FHIR resource: it has no resourceType".into()),
        };
        let resource = check_resource(resource, &resource_type).map_err(|error| reason(&error))?;
        let fetched = referenced(&self.state, &resource)
            .await
            .map_err(|error| reason(&error))?;
        let resource = check_on_write(&self.state, resource, fetched.as_ref())
            .map_err(|error| reason(&error))?;
        let write = to_write(resource_type.clone(), resource);
        Ok((resource_type, write))
    }
}

fn to_write(resource_type: String, resource: Map<String, Value>) -> Write {
    match resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        Some(id) => Write::Update {
            resource_type,
            id,
            resource,
            if_match: None,
            method: Method::Update,
        },
        None => Write::Create { resource, id: None },
    }
}

/// An error's status, then its diagnostics or the issues of its OperationOutcome, as
/// a batch Bundle entry over HTTP would report them: `422 Unprocessable Entity: ...`.
fn reason(error: &crate::ApiError) -> String {
    format!(
        "{} {}: {}",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or(""),
        detail(error)
    )
}

fn detail(error: &crate::ApiError) -> String {
    let issues: Vec<String> = error
        .outcome
        .as_ref()
        .and_then(|outcome| outcome.get("issue"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|issue| issue["severity"] == "error" || issue["severity"] == "fatal")
        .filter_map(|issue| {
            let text = issue["diagnostics"].as_str()?;
            Some(match issue["expression"][0].as_str() {
                Some(at) => format!("{at}: {text}"),
                None => text.to_string(),
            })
        })
        .collect();
    if issues.is_empty() {
        error.diagnostics.clone()
    } else {
        issues.join("; ")
    }
}
