//! Batch and transaction Bundles: `POST [base]` (FHIR R4 RESTful API, "batch/transaction").
//!
//! Entries are processed in the order DELETE, POST, PUT and PATCH, GET. In a transaction
//! every `urn:uuid:`/`urn:oid:` fullUrl (and any other fullUrl of a created entry) gets its
//! server id first, every reference to it in the Bundle is rewritten, and all writes go to
//! the store as one atomic unit: any failure leaves the store exactly as before and the
//! answer names the entry. In a batch each entry stands alone and gets its own status.
//!
//! Conditional entries (`request.ifNoneExist`, `PUT`/`PATCH`/`DELETE Type?criteria`) are
//! resolved by search before anything is written ([`resolve`]); in a transaction that
//! happens for every entry first, under the conditional-write locks of the types involved,
//! and the writes stay one atomic unit. Conditional references (`Patient?identifier=x`) are
//! resolved in transactions only, where R4 defines them; a batch stores them as written
//! (bulk exports such as Synthea's carry them, and their targets may come later).
//! `GET Type?criteria` entries run the search and answer with the searchset Bundle
//! (lenient handling).
//!
//! A PATCH entry carries a FHIRPath Patch or a JSON Patch in a Binary ([`patch`]); it
//! applies to the current version and is written with `ifMatch` on that version, so a
//! concurrent change is never lost (a batch entry retries; a transaction fails with 409).

mod answer;
mod patch;
mod resolve;

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhir::{IssueType, Severity};
use privacy::Principal;
use serde_json::{Map, Value, json};
use store::{Method, StoreError, Version, Write, Written};

use self::answer::Answer;
use crate::AppState;
use crate::body::{check_resource, parse_object, read_limited};
use crate::conditional::criteria;
use crate::error::ApiError;
use crate::extract::{FhirRequest, check_id, check_type};
use crate::format::require_json_body;
use crate::patch::{PATCH_ATTEMPTS, Patch};
use crate::references::referenced;
use crate::response::{Return, json_response, parse_etag};
use crate::search::Scope;
use crate::validate::{after_write, check_on_write};
use crate::write::new_version;

/// What one entry asks for.
enum Action {
    Create {
        resource: Map<String, Value>,
        /// `request.ifNoneExist`, as parameters.
        if_none_exist: Option<Vec<(String, String)>>,
    },
    /// `PUT Type?criteria`.
    ConditionalUpdate {
        criteria: Vec<(String, String)>,
        resource: Map<String, Value>,
        if_match: Option<u64>,
    },
    /// `PATCH Type?criteria`.
    ConditionalPatch {
        criteria: Vec<(String, String)>,
        patch: Patch,
        if_match: Option<u64>,
    },
    /// `DELETE Type?criteria`.
    ConditionalDelete {
        criteria: Vec<(String, String)>,
        if_match: Option<u64>,
    },
    /// What a conditional delete resolved to: every match.
    DeleteMany {
        ids: Vec<String>,
        if_match: Option<u64>,
    },
    /// An `ifNoneExist` create whose criteria matched this resource: nothing to write.
    Existing {
        version: Version,
    },
    /// `GET Type?criteria`.
    Search {
        params: Vec<(String, String)>,
    },
    Update {
        id: String,
        resource: Map<String, Value>,
        if_match: Option<u64>,
    },
    Patch {
        id: String,
        patch: Patch,
        if_match: Option<u64>,
    },
    Delete {
        id: String,
        if_match: Option<u64>,
    },
    Read {
        id: String,
        version: Option<u64>,
    },
}

struct Entry {
    index: usize,
    resource_type: String,
    full_url: Option<String>,
    action: Action,
}

impl Action {
    /// What an action is replaced by while it is taken apart.
    fn placeholder() -> Action {
        Action::Read {
            id: String::new(),
            version: None,
        }
    }
}

impl Entry {
    /// Processing order: DELETE, POST, PUT and PATCH, GET.
    fn phase(&self) -> u8 {
        match self.action {
            Action::Delete { .. }
            | Action::ConditionalDelete { .. }
            | Action::DeleteMany { .. } => 0,
            Action::Create { .. } | Action::Existing { .. } => 1,
            Action::Update { .. }
            | Action::ConditionalUpdate { .. }
            | Action::Patch { .. }
            | Action::ConditionalPatch { .. } => 2,
            Action::Read { .. } | Action::Search { .. } => 3,
        }
    }

    /// Refuses (403) the entry unless the principal may do each interaction it stands
    /// for; a conditional entry also searches.
    fn authorize(&self, principal: &Principal) -> Result<(), ApiError> {
        use privacy::Interaction;
        let interaction = match &self.action {
            Action::Create { .. } | Action::Existing { .. } => Interaction::Create,
            Action::Update { .. } | Action::ConditionalUpdate { .. } => Interaction::Update,
            Action::Patch { .. } | Action::ConditionalPatch { .. } => Interaction::Patch,
            Action::Delete { .. }
            | Action::ConditionalDelete { .. }
            | Action::DeleteMany { .. } => Interaction::Delete,
            Action::Read {
                version: Some(_), ..
            } => Interaction::Vread,
            Action::Read { version: None, .. } => Interaction::Read,
            Action::Search { .. } => Interaction::Search,
        };
        if self.resource_type == "AuditEvent"
            && !matches!(
                interaction,
                Interaction::Read | Interaction::Vread | Interaction::Search
            )
        {
            return Err(crate::audit::api::entry_refusal(interaction.as_str()));
        }
        crate::auth::authorize(principal, interaction, &self.resource_type)?;
        if self.is_conditional() {
            crate::auth::authorize(principal, Interaction::Search, &self.resource_type)?;
        }
        Ok(())
    }

    /// Whether the entry's target is found by search (and takes the type's lock).
    fn is_conditional(&self) -> bool {
        matches!(
            self.action,
            Action::Create {
                if_none_exist: Some(_),
                ..
            } | Action::ConditionalUpdate { .. }
                | Action::ConditionalPatch { .. }
                | Action::ConditionalDelete { .. }
        )
    }
}

fn entry_error(index: usize, error: ApiError) -> ApiError {
    let prefix = format!("Bundle.entry[{index}]");
    match error.outcome {
        Some(mut outcome) => {
            // Validation issues point into the entry's resource.
            for issue in outcome["issue"].as_array_mut().into_iter().flatten() {
                // `get_mut`, not indexing: indexing would add `"expression": null`.
                if let Some(expressions) = issue.get_mut("expression").and_then(Value::as_array_mut)
                {
                    for expression in expressions {
                        if let Some(text) = expression.as_str() {
                            let inner = text.split_once('.').map_or("", |(_, rest)| rest);
                            let located = if inner.is_empty() {
                                format!("{prefix}.resource")
                            } else {
                                format!("{prefix}.resource.{inner}")
                            };
                            *expression = Value::String(located);
                        }
                    }
                }
            }
            name_entry(&mut outcome, &prefix);
            ApiError::with_outcome(error.status, error.code, outcome)
        }
        None => ApiError::new(
            error.status,
            error.code,
            format!("{prefix}: {}", error.diagnostics),
        ),
    }
}

/// Issues without a location get the entry named in their diagnostics.
fn name_entry(outcome: &mut Value, prefix: &str) {
    for issue in outcome["issue"].as_array_mut().into_iter().flatten() {
        if issue.get("expression").is_none()
            && let Some(Value::String(diagnostics)) = issue.get_mut("diagnostics")
        {
            *diagnostics = format!("{prefix}: {diagnostics}");
        }
    }
}

/// Reads one entry's `request` into an action.
fn parse_entry(index: usize, entry: Value) -> Result<Entry, ApiError> {
    let Value::Object(mut entry) = entry else {
        return Err(ApiError::bad_request("the entry is not an object"));
    };
    let Some(Value::Object(request)) = entry.shift_remove("request") else {
        return Err(ApiError::bad_request("the entry has no request"));
    };
    let method = request.get("method").and_then(Value::as_str).unwrap_or("");
    let url = request.get("url").and_then(Value::as_str).unwrap_or("");
    if url.is_empty() {
        return Err(ApiError::bad_request("the entry's request has no url"));
    }
    for conditional in ["ifNoneMatch", "ifModifiedSince"] {
        if request.contains_key(conditional) {
            return Err(ApiError::not_supported(
                StatusCode::BAD_REQUEST,
                format!("request.{conditional} is not supported yet"),
            ));
        }
    }
    let if_none_exist = match request.get("ifNoneExist") {
        None => None,
        Some(Value::String(text)) if method == "POST" => Some(criteria(text)),
        Some(Value::String(_)) => {
            return Err(ApiError::bad_request(format!(
                "request.ifNoneExist applies to POST, not {method}"
            )));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "request.ifNoneExist must be a string",
            ));
        }
    };
    let (path, query) = match url.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (url, None),
    };
    let if_match = match request.get("ifMatch").and_then(Value::as_str) {
        None => None,
        Some(text) => Some(parse_etag(text).ok_or_else(|| {
            ApiError::bad_request(format!("ifMatch {text:?} is not a version ETag"))
        })?),
    };
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let resource_type = segments.first().copied().unwrap_or("").to_string();
    check_type(&resource_type)?;
    let full_url = entry
        .get("fullUrl")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut resource = || -> Result<Map<String, Value>, ApiError> {
        match entry.shift_remove("resource") {
            Some(Value::Object(resource)) => Ok(resource),
            _ => Err(ApiError::bad_request(format!(
                "{method} {url} needs a resource in the entry"
            ))),
        }
    };
    let action = match (method, segments.as_slice(), query) {
        ("POST", [_], None) => Action::Create {
            resource: resource()?,
            if_none_exist,
        },
        ("PUT", [_], Some(query)) => Action::ConditionalUpdate {
            criteria: criteria(query),
            resource: resource()?,
            if_match,
        },
        ("DELETE", [_], Some(query)) => Action::ConditionalDelete {
            criteria: criteria(query),
            if_match,
        },
        ("GET", [_], query) => Action::Search {
            params: query.map(criteria).unwrap_or_default(),
        },
        ("PUT", [_, id], None) => {
            check_id(id)?;
            Action::Update {
                id: (*id).to_string(),
                resource: resource()?,
                if_match,
            }
        }
        ("DELETE", [_, id], None) => {
            check_id(id)?;
            Action::Delete {
                id: (*id).to_string(),
                if_match,
            }
        }
        ("GET", [_, id], None) => {
            check_id(id)?;
            Action::Read {
                id: (*id).to_string(),
                version: None,
            }
        }
        ("GET", [_, id, "_history", version], None) => {
            check_id(id)?;
            let version = version.parse().map_err(|_| {
                ApiError::bad_request(format!("{version:?} is not a version number"))
            })?;
            Action::Read {
                id: (*id).to_string(),
                version: Some(version),
            }
        }
        ("PATCH", [_, id], None) => {
            check_id(id)?;
            Action::Patch {
                id: (*id).to_string(),
                patch: patch::parse(resource()?)?,
                if_match,
            }
        }
        ("PATCH", [_], Some(query)) => Action::ConditionalPatch {
            criteria: criteria(query),
            patch: patch::parse(resource()?)?,
            if_match,
        },
        _ => {
            return Err(ApiError::not_supported(
                StatusCode::BAD_REQUEST,
                format!("{method} {url} is not an interaction a Bundle entry can carry here"),
            ));
        }
    };
    Ok(Entry {
        index,
        resource_type,
        full_url,
        action,
    })
}

/// Replaces every `reference` that names a key of `targets` with its value.
fn rewrite_references(value: &mut Value, targets: &HashMap<String, String>) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                if key == "reference"
                    && let Value::String(reference) = child
                    && let Some(target) = targets.get(reference.as_str())
                {
                    *reference = target.clone();
                } else {
                    rewrite_references(child, targets);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite_references(item, targets);
            }
        }
        _ => {}
    }
}

fn rewrite_in_map(resource: &mut Map<String, Value>, targets: &HashMap<String, String>) {
    for child in resource.values_mut() {
        rewrite_references(child, targets);
    }
}

/// Checks a resource bound for the store, as a single create or update would; in a
/// transaction, its conditional references are resolved first.
async fn prepare(
    state: &AppState,
    entry: &Entry,
    mut resource: Map<String, Value>,
    in_transaction: bool,
) -> Result<Map<String, Value>, ApiError> {
    if in_transaction {
        resolve::references(state, &mut resource).await?;
    }
    let resource = check_resource(resource, &entry.resource_type)?;
    let fetched = referenced(state, &resource).await?;
    check_on_write(state, resource, fetched.as_ref())
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

/// The answer to a write entry: its `response`, and the resource as stored unless the
/// client asked for less.
fn written_entry(version: &Version, status: StatusCode, prefer: Return) -> Answer {
    let mut response = json!({
        "status": status_text(status),
        "location": format!("{}/{}/_history/{}", version.resource_type, version.id, version.version),
        "etag": version.etag(),
        "lastModified": version.last_updated.to_fhir(),
    });
    match &version.body {
        Some(body) if prefer == Return::Representation => Answer::Resource {
            text: body.clone(),
            response,
        },
        Some(_) => Answer::Json(json!({ "response": response })),
        None => {
            // A deletion has no location to point at.
            if let Some(response) = response.as_object_mut() {
                response.shift_remove("location");
            }
            Answer::Json(json!({ "response": response }))
        }
    }
}

fn error_entry(error: ApiError) -> Answer {
    let outcome = error.outcome.unwrap_or_else(|| {
        fhir::operation_outcome(Severity::Error, error.code, &error.diagnostics)
    });
    Answer::Json(json!({"response": {"status": status_text(error.status), "outcome": outcome}}))
}

async fn read_entry(
    state: &AppState,
    principal: &Principal,
    entry: &Entry,
) -> Result<Answer, ApiError> {
    let (id, version) = match &entry.action {
        Action::Read { id, version } => (id, version),
        Action::Search { params } => return search_entry(state, principal, entry, params).await,
        _ => return Err(unresolved()),
    };
    let store = &state.store;
    let found = match version {
        Some(version) => store.vread(&entry.resource_type, id, *version).await?,
        None => store.read(&entry.resource_type, id).await?,
    };
    let view = crate::restrict::View::of(state, principal).await?;
    match view.keep(crate::access::keep_visible(principal, found)) {
        None => Err(ApiError::not_found(format!(
            "{}/{id} is not known",
            entry.resource_type
        ))),
        Some(found) if found.is_deleted() => Err(ApiError::new(
            StatusCode::GONE,
            IssueType::Deleted,
            format!("{}/{id} was deleted", entry.resource_type),
        )),
        Some(found) => {
            let response = json!({
                "status": "200 OK",
                "etag": found.etag(),
                "lastModified": found.last_updated.to_fhir(),
            });
            Ok(Answer::Resource {
                text: found.body.unwrap_or_else(|| "{}".into()),
                response,
            })
        }
    }
}

/// `GET Type?criteria`: the searchset Bundle as the entry's resource.
async fn search_entry(
    state: &AppState,
    principal: &Principal,
    entry: &Entry,
    params: &[(String, String)],
) -> Result<Answer, ApiError> {
    let scope = Scope::Type(entry.resource_type.clone());
    let text = crate::search::run(state, principal, &scope, params, false).await?;
    Ok(Answer::Resource {
        text,
        response: json!({"status": "200 OK"}),
    })
}

/// A conditional entry reached writing without being resolved: a bug, not bad input.
fn unresolved() -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        IssueType::Exception,
        "the entry was not resolved before it was processed",
    )
}

fn no_content_entry() -> Answer {
    Answer::Json(json!({"response": {"status": status_text(StatusCode::NO_CONTENT)}}))
}

fn response_bundle(kind: &str, answers: &[Answer], output: crate::format::Output) -> Response {
    json_response(StatusCode::OK, answer::bundle_text(kind, answers), output)
}

fn update_write(
    entry: &Entry,
    id: String,
    resource: Map<String, Value>,
    if_match: Option<u64>,
) -> Write {
    Write::Update {
        resource_type: entry.resource_type.clone(),
        id,
        resource,
        if_match,
        method: Method::Update,
    }
}

/// A patched resource, written only over the version it was patched from.
fn patch_write(
    entry: &Entry,
    id: String,
    resource: Map<String, Value>,
    patched_from: u64,
) -> Write {
    Write::Update {
        resource_type: entry.resource_type.clone(),
        id,
        resource,
        if_match: Some(patched_from),
        method: Method::Patch,
    }
}

fn delete_write(entry: &Entry, id: String, if_match: Option<u64>) -> Write {
    Write::Delete {
        resource_type: entry.resource_type.clone(),
        id,
        if_match,
    }
}

/// 400 unless an update's resource carries the id of its URL.
fn check_update_id(id: &str, resource: &Map<String, Value>) -> Result<(), ApiError> {
    if resource.get("id").and_then(Value::as_str) == Some(id) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "the resource id must equal the id in the request url ({id})"
        )))
    }
}

fn write_status(written: &Written, is_delete: bool) -> StatusCode {
    if is_delete {
        StatusCode::NO_CONTENT
    } else if written.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

pub(crate) async fn base_post(
    State(state): State<AppState>,
    request: FhirRequest,
    body: Body,
) -> Result<Response, ApiError> {
    require_json_body(&request.headers)?;
    let bytes = read_limited(&request.headers, body, state.config.limits.body_bytes).await?;
    let mut bundle = parse_object(&bytes)?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(ApiError::bad_request(
            "POST to the base takes a Bundle of type transaction or batch",
        ));
    }
    let entries = match bundle.shift_remove("entry") {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    let kind = bundle.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "transaction" => {
            crate::audit::note_transaction();
            transaction(&state, &request, entries).await
        }
        "batch" => Ok(batch(&state, &request, entries).await),
        other => Err(ApiError::bad_request(format!(
            "a Bundle of type {other:?} cannot be processed; POST a transaction or batch here, or store it with POST [base]/Bundle"
        ))),
    }
}

async fn transaction(
    state: &AppState,
    request: &FhirRequest,
    raw_entries: Vec<Value>,
) -> Result<Response, ApiError> {
    let entry_count = raw_entries.len();
    let mut entries = Vec::with_capacity(entry_count);
    for (index, raw) in raw_entries.into_iter().enumerate() {
        entries.push(parse_entry(index, raw).map_err(|error| entry_error(index, error))?);
    }
    // A transaction with one forbidden entry is refused whole, before anything runs.
    for entry in &entries {
        entry
            .authorize(&request.principal)
            .map_err(|error| entry_error(entry.index, error))?;
    }
    // Conditional entries resolve first, under the locks of their types, held until the
    // writes are durable.
    let conditional_types: Vec<String> = entries
        .iter()
        .filter(|entry| entry.is_conditional())
        .map(|entry| entry.resource_type.clone())
        .collect();
    let _guards = state
        .locks
        .lock_all(conditional_types.iter().map(String::as_str))
        .await;
    let view = crate::restrict::View::of(state, &request.principal).await?;
    for entry in &mut entries {
        let index = entry.index;
        resolve::conditional(state, &view, entry)
            .await
            .map_err(|error| entry_error(index, error))?;
        keep_to_compartment(state, &request.principal, entry)
            .await
            .map_err(|error| entry_error(index, error))?;
    }
    // Server ids for created resources, known before anything is written, so references
    // between entries can point at them.
    let mut targets: HashMap<String, String> = HashMap::new();
    let mut created_ids: HashMap<usize, String> = HashMap::new();
    for entry in &entries {
        match &entry.action {
            Action::Create { .. } => {
                let id = store::new_id();
                if let Some(full_url) = &entry.full_url {
                    targets.insert(full_url.clone(), format!("{}/{id}", entry.resource_type));
                }
                created_ids.insert(entry.index, id);
            }
            Action::Existing { version } => {
                if let Some(full_url) = &entry.full_url {
                    targets.insert(
                        full_url.clone(),
                        format!("{}/{}", entry.resource_type, version.id),
                    );
                }
            }
            Action::Update { id, .. } => {
                if let Some(full_url) = entry
                    .full_url
                    .as_ref()
                    .filter(|url| url.starts_with("urn:"))
                {
                    targets.insert(full_url.clone(), format!("{}/{id}", entry.resource_type));
                }
            }
            _ => {}
        }
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&position| entries[position].phase());

    let mut answers: Vec<Answer> = (0..entry_count).map(|_| Answer::Missing).collect();
    let mut writes = Vec::new();
    let mut write_entries = Vec::new();
    // Writes of patches without `ifMatch`: a version mismatch there is a concurrent change.
    let mut unguarded_patches: HashMap<usize, (String, String)> = HashMap::new();
    let mut reads = Vec::new();
    let mut slots: Vec<Option<Entry>> = entries.into_iter().map(Some).collect();
    for position in order {
        let Some(mut entry) = slots[position].take() else {
            continue;
        };
        let index = entry.index;
        let action = std::mem::replace(&mut entry.action, Action::placeholder());
        match action {
            read @ (Action::Read { .. } | Action::Search { .. }) => {
                entry.action = read;
                reads.push(entry);
            }
            Action::Existing { version } => {
                answers[index] = written_entry(&version, StatusCode::OK, request.prefer);
            }
            Action::Create { mut resource, .. } => {
                rewrite_in_map(&mut resource, &targets);
                resource.shift_remove("id");
                let resource = prepare(state, &entry, resource, true)
                    .await
                    .map_err(|e| entry_error(index, e))?;
                writes.push(Write::Create {
                    resource,
                    id: created_ids.remove(&index),
                });
                write_entries.push((index, false));
            }
            Action::Update {
                id,
                mut resource,
                if_match,
            } => {
                rewrite_in_map(&mut resource, &targets);
                check_update_id(&id, &resource).map_err(|e| entry_error(index, e))?;
                let resource = prepare(state, &entry, resource, true)
                    .await
                    .map_err(|e| entry_error(index, e))?;
                writes.push(update_write(&entry, id, resource, if_match));
                write_entries.push((index, false));
            }
            Action::Patch {
                id,
                patch,
                if_match,
            } => {
                let (mut resource, version) =
                    patch::patched(state, &entry.resource_type, &id, &patch, if_match)
                        .await
                        .map_err(|e| entry_error(index, e))?;
                crate::write_limit::check_resource(
                    &request.principal,
                    &entry.resource_type,
                    &resource,
                )
                .map_err(|e| entry_error(index, e))?;
                rewrite_in_map(&mut resource, &targets);
                let resource = prepare(state, &entry, resource, true)
                    .await
                    .map_err(|e| entry_error(index, e))?;
                if if_match.is_none() {
                    unguarded_patches
                        .insert(writes.len(), (entry.resource_type.clone(), id.clone()));
                }
                writes.push(patch_write(&entry, id, resource, version));
                write_entries.push((index, false));
            }
            Action::Delete { id, if_match } => {
                writes.push(delete_write(&entry, id, if_match));
                write_entries.push((index, true));
            }
            Action::DeleteMany { ids, if_match } => {
                answers[index] = no_content_entry();
                for id in ids {
                    writes.push(delete_write(&entry, id, if_match));
                    write_entries.push((index, true));
                }
            }
            Action::ConditionalUpdate { .. }
            | Action::ConditionalPatch { .. }
            | Action::ConditionalDelete { .. } => {
                return Err(entry_error(index, unresolved()));
            }
        }
    }

    let written = if writes.is_empty() {
        Vec::new()
    } else {
        crate::audit::write_all(&state.store, writes)
            .await
            .map_err(|failure| {
                let index = write_entries
                    .get(failure.index)
                    .map_or(0, |(index, _)| *index);
                let error = match failure.error {
                    StoreError::VersionMismatch { .. } => {
                        match unguarded_patches.get(&failure.index) {
                            Some((resource_type, id)) => patch::kept_changing(resource_type, id),
                            None => ApiError::from(failure.error),
                        }
                    }
                    error => ApiError::from(error),
                };
                entry_error(index, error)
            })?
    };

    for ((index, is_delete), written) in write_entries.into_iter().zip(written) {
        let status = write_status(&written, is_delete);
        if let Some(version) = &written.version {
            after_write(state, version);
        }
        answers[index] = match &written.version {
            Some(version) => written_entry(version, status, request.prefer),
            None => no_content_entry(),
        };
    }
    for entry in reads {
        answers[entry.index] = read_entry(state, &request.principal, &entry)
            .await
            .map_err(|error| entry_error(entry.index, error))?;
    }
    Ok(response_bundle(
        "transaction-response",
        &answers,
        request.output,
    ))
}

/// How many entries of a batch run at once.
const BATCH_IN_FLIGHT: usize = 256;

async fn batch(state: &AppState, request: &FhirRequest, raw_entries: Vec<Value>) -> Response {
    let mut answers: Vec<Answer> = (0..raw_entries.len()).map(|_| Answer::Missing).collect();
    let mut entries = Vec::new();
    for (index, raw) in raw_entries.into_iter().enumerate() {
        match parse_entry(index, raw).and_then(|entry| {
            entry.authorize(&request.principal)?;
            Ok(entry)
        }) {
            Ok(entry) => entries.push(entry),
            Err(error) => answers[index] = error_entry(error),
        }
    }
    entries.sort_by_key(Entry::phase);
    // Entries of one phase are independent: send them together so they share commits.
    while let Some(first) = entries.first() {
        let phase = first.phase();
        let phase_end = entries
            .iter()
            .position(|entry| entry.phase() != phase)
            .unwrap_or(entries.len());
        let mut tasks = tokio::task::JoinSet::new();
        let mut phase_entries = entries.drain(..phase_end);
        loop {
            // At most BATCH_IN_FLIGHT at once: enough to fill the writer's commits, few
            // enough that a huge batch does not queue past the database pool's wait.
            while tasks.len() < BATCH_IN_FLIGHT
                && let Some(entry) = phase_entries.next()
            {
                let state = state.clone();
                let prefer = request.prefer;
                let principal = request.principal.clone();
                tasks.spawn(crate::audit::in_scope(async move {
                    let index = entry.index;
                    (index, batch_entry(&state, &principal, entry, prefer).await)
                }));
            }
            let Some(joined) = tasks.join_next().await else {
                break;
            };
            match joined {
                Ok((index, Ok(answer))) => answers[index] = answer,
                Ok((index, Err(error))) => answers[index] = error_entry(error),
                Err(error) => {
                    tracing::error!(%error, "a batch entry task failed");
                }
            }
        }
    }
    for answer in &mut answers {
        if answer.is_missing() {
            *answer = error_entry(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                IssueType::Exception,
                "the entry was not processed",
            ));
        }
    }
    response_bundle("batch-response", &answers, request.output).into_response()
}

async fn batch_entry(
    state: &AppState,
    principal: &Principal,
    mut entry: Entry,
    prefer: Return,
) -> Result<Answer, ApiError> {
    let _guards = if entry.is_conditional() {
        state.locks.lock(&entry.resource_type).await
    } else {
        Vec::new()
    };
    let view = crate::restrict::View::of(state, principal).await?;
    resolve::conditional(state, &view, &mut entry).await?;
    keep_to_compartment(state, principal, &entry).await?;
    let action = std::mem::replace(&mut entry.action, Action::placeholder());
    let write = match action {
        read @ (Action::Read { .. } | Action::Search { .. }) => {
            entry.action = read;
            return read_entry(state, principal, &entry).await;
        }
        Action::Existing { version } => {
            return Ok(written_entry(&version, StatusCode::OK, prefer));
        }
        Action::Create { mut resource, .. } => {
            resource.shift_remove("id");
            let resource = prepare(state, &entry, resource, false).await?;
            Write::Create { resource, id: None }
        }
        Action::Update {
            id,
            resource,
            if_match,
        } => {
            check_update_id(&id, &resource)?;
            let resource = prepare(state, &entry, resource, false).await?;
            update_write(&entry, id, resource, if_match)
        }
        Action::Patch {
            id,
            patch,
            if_match,
        } => return batch_patch(state, principal, &entry, &id, &patch, if_match, prefer).await,
        Action::Delete { id, if_match } => delete_write(&entry, id, if_match),
        Action::DeleteMany { ids, if_match } => {
            let writes: Vec<Write> = ids
                .into_iter()
                .map(|id| delete_write(&entry, id, if_match))
                .collect();
            if !writes.is_empty() {
                let written = crate::audit::write_all(&state.store, writes)
                    .await
                    .map_err(|failure| ApiError::from(failure.error))?;
                for version in written
                    .iter()
                    .filter_map(|written| written.version.as_ref())
                {
                    after_write(state, version);
                }
            }
            return Ok(no_content_entry());
        }
        Action::ConditionalUpdate { .. }
        | Action::ConditionalPatch { .. }
        | Action::ConditionalDelete { .. } => {
            return Err(unresolved());
        }
    };
    let is_delete = matches!(write, Write::Delete { .. });
    let written = crate::audit::write(&state.store, write).await?;
    let status = write_status(&written, is_delete);
    if let Some(version) = &written.version {
        after_write(state, version);
    }
    Ok(match &written.version {
        Some(version) => written_entry(version, status, prefer),
        None => no_content_entry(),
    })
}

/// A write entry of a principal limited to one patient keeps to its compartment: what
/// it changes or deletes must be there (404), what it stores must be there (403).
async fn keep_to_compartment(
    state: &AppState,
    principal: &Principal,
    entry: &Entry,
) -> Result<(), ApiError> {
    use crate::write_limit::{check_resource, check_target};
    let resource_type = &entry.resource_type;
    match &entry.action {
        Action::Create { resource, .. } => check_resource(principal, resource_type, resource),
        Action::Update { id, resource, .. } => {
            check_target(state, principal, resource_type, id).await?;
            check_resource(principal, resource_type, resource)
        }
        Action::Patch { id, .. } | Action::Delete { id, .. } => {
            check_target(state, principal, resource_type, id).await
        }
        Action::DeleteMany { ids, .. } => {
            for id in ids {
                check_target(state, principal, resource_type, id).await?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A batch's PATCH entry: applied to the current version and written over it; when
/// another write got there first, applied again (without `ifMatch`) or 412 (with it).
async fn batch_patch(
    state: &AppState,
    principal: &Principal,
    entry: &Entry,
    id: &str,
    patch: &Patch,
    if_match: Option<u64>,
    prefer: Return,
) -> Result<Answer, ApiError> {
    for _ in 0..PATCH_ATTEMPTS {
        let (resource, version) =
            patch::patched(state, &entry.resource_type, id, patch, if_match).await?;
        crate::write_limit::check_resource(principal, &entry.resource_type, &resource)?;
        let resource = prepare(state, entry, resource, false).await?;
        let write = patch_write(entry, id.to_string(), resource, version);
        match crate::audit::write(&state.store, write).await {
            Ok(written) => {
                let version = new_version(written)?;
                after_write(state, &version);
                return Ok(written_entry(&version, StatusCode::OK, prefer));
            }
            Err(StoreError::VersionMismatch { .. }) if if_match.is_none() => continue,
            Err(error) => return Err(error.into()),
        }
    }
    Err(patch::kept_changing(&entry.resource_type, id))
}
