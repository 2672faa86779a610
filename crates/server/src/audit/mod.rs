//! The audit trail at the HTTP boundary: every request leaves an AuditEvent.
//!
//! `record` (a layer outside authentication) opens a [`Scope`] for the request in a
//! task-local, runs it, and records what it did: who (the principal `note_principal`
//! saw, or the client the token endpoint named), what (`classify`, plus what handlers
//! note: the patient of a resource read, a Bundle's type), when, from where, why
//! (purpose of use, and the reason of a break-the-glass request) and the outcome
//! (the status). Reads, searches, refusals and failures go to the [`Trail`], a
//! background writer that commits them in groups; a successful write's record is
//! appended by [`write`] and [`write_all`] in the write's own transaction instead.
//! `api` serves the trail as AuditEvent read and search, and refuses every change.

pub(crate) mod api;
pub(crate) mod classify;
pub(crate) mod event;
mod trail;

use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use privacy::Principal;
use serde_json::{Map, Value};
use store::{Instant, Store, StoreError, TransactionError, Write, Written};

use classify::What;
use event::Who;

pub(crate) use trail::Trail;
pub use trail::flush_all;

/// The header that carries the reason of a break-the-glass request.
pub const BREAK_GLASS_REASON: &str = "x-break-glass-reason";
/// The longest break-the-glass reason kept, in bytes.
const REASON_BYTES: usize = 1024;

/// What one request's audit record gathers while it runs.
#[derive(Default)]
struct Scope {
    who: Who,
    what: What,
    /// The request's own record went into the transaction of its write.
    written: bool,
}

tokio::task_local! {
    static SCOPE: Arc<Mutex<Scope>>;
}

/// Runs `f` on the current request's scope, if there is one.
fn with_scope<T>(f: impl FnOnce(&mut Scope) -> T) -> Option<T> {
    SCOPE
        .try_with(|scope| f(&mut scope.lock().unwrap_or_else(PoisonError::into_inner)))
        .ok()
}

/// The layer outside authentication: records every request.
pub(crate) async fn record(
    State(trail): State<Option<Arc<Trail>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(trail) = trail else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if classify::is_unaudited(path) {
        return next.run(request).await;
    }
    let recorded = Instant::now();
    let what = classify::classify(
        request.method().as_str(),
        path,
        request.uri().query(),
        crate::auth::smart::TOKEN_PATH,
    );
    let headers = request.headers();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|value| !value.is_empty())
    };
    let purpose = header(crate::auth::PURPOSE_OF_USE)
        .filter(|value| value.len() <= 64)
        .map(|value| clip(value, 64).to_ascii_uppercase());
    let btg_reason = header(BREAK_GLASS_REASON).map(|reason| clip(reason, REASON_BYTES));
    let address = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let scope = Arc::new(Mutex::new(Scope {
        who: Who {
            address,
            purpose,
            btg_reason,
            ..Who::default()
        },
        what,
        written: false,
    }));
    let response = SCOPE.scope(scope.clone(), next.run(request)).await;
    let status = response.status().as_u16();
    let record = {
        let mut scope = scope.lock().unwrap_or_else(PoisonError::into_inner);
        if scope.written && status < 400 {
            None
        } else {
            // The request is done: its scope's parts move into the record.
            let who = std::mem::take(&mut scope.who);
            let what = std::mem::take(&mut scope.what);
            Some(event::record(who, what, status, recorded))
        }
    };
    if let Some(record) = record {
        trail.send(record).await;
    }
    response
}

/// The layer inside authentication: notes who the request's principal is.
pub(crate) async fn note_principal(request: Request, next: Next) -> Response {
    if let Some(principal) = request.extensions().get::<Arc<Principal>>() {
        let principal = principal.clone();
        with_scope(|scope| {
            scope.who.agent = Some(
                principal
                    .user
                    .clone()
                    .or_else(|| principal.client_id.clone())
                    .unwrap_or_else(|| principal.subject.clone()),
            );
            scope.who.client.clone_from(&principal.client_id);
            scope.who.user = principal.user.is_some();
            scope.who.roles = principal.roles.iter().map(|role| role.as_str()).collect();
            if let Some(patient) = &principal.patient
                && scope.what.patient.is_none()
            {
                scope.what.patient = Some(format!("Patient/{patient}"));
            }
        });
    }
    next.run(request).await
}

/// Notes the client a token request named (it authenticates in the body).
pub(crate) fn note_client(client_id: &str) {
    let client_id = clip(client_id, 256);
    with_scope(|scope| {
        scope.who.agent = Some(client_id.clone());
        scope.who.client = Some(client_id);
    });
}

/// Notes the patient of a resource read, from its stored text.
pub(crate) fn note_read(version: &store::Version) {
    if let Some(body) = &version.body {
        let patient = classify::patient_in_body(&version.resource_type, &version.id, body);
        if patient.is_some() {
            with_scope(|scope| scope.what.patient = patient);
        }
    }
}

/// Notes that a Bundle is a transaction (rather than a batch).
pub(crate) fn note_transaction() {
    with_scope(|scope| scope.what.subtype = "transaction");
}

/// `future` in the current request's scope, for a task it spawns.
pub(crate) fn in_scope<F: std::future::Future>(
    future: F,
) -> impl std::future::Future<Output = F::Output> {
    let scope = SCOPE.try_with(Arc::clone).ok();
    async move {
        match scope {
            Some(scope) => SCOPE.scope(scope, future).await,
            None => future.await,
        }
    }
}

/// The records of `writes` done in the current request; `deleted` holds the patient of
/// each deletion's resource (see [`deleted_patients`]).
fn records_for(writes: &[Write], deleted: &[Option<String>]) -> Vec<store::AuditRecord> {
    let recorded = Instant::now();
    with_scope(|scope| {
        let single = writes.len() == 1
            && matches!(scope.what.subtype, "create" | "update" | "patch" | "delete");
        let records = writes
            .iter()
            .enumerate()
            .map(|(n, write)| {
                let mut what = what_of(write);
                if what.patient.is_none() {
                    what.patient = deleted.get(n).cloned().flatten();
                }
                event::record(scope.who.clone(), what, 200, recorded)
            })
            .collect();
        // A single write's record stands for the request; a Bundle's request gets a
        // record of its own too.
        scope.written = single;
        records
    })
    .unwrap_or_default()
}

/// What a write does, for its record.
fn what_of(write: &Write) -> What {
    let (subtype, action, resource_type, id, resource) = match write {
        Write::Create { resource, id } => (
            "create",
            "C",
            resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or(""),
            id.as_deref().unwrap_or(""),
            Some(resource),
        ),
        Write::Update {
            resource_type,
            id,
            resource,
            method,
            ..
        } => {
            let subtype = if *method == store::Method::Patch {
                "patch"
            } else {
                "update"
            };
            (
                subtype,
                "U",
                resource_type.as_str(),
                id.as_str(),
                Some(resource),
            )
        }
        Write::Delete {
            resource_type, id, ..
        } => ("delete", "D", resource_type.as_str(), id.as_str(), None),
    };
    let patient = match resource {
        _ if resource_type == "Patient" => Some(format!("Patient/{id}")),
        Some(resource) => patient_of(resource),
        None => None,
    };
    What {
        subtype,
        action,
        entities: vec![format!("{resource_type}/{id}")],
        patient,
        ..What::default()
    }
}

/// The Patient a resource's `subject`, `patient` or `beneficiary` refers to.
fn patient_of(resource: &Map<String, Value>) -> Option<String> {
    ["subject", "patient", "beneficiary"]
        .iter()
        .find_map(|key| {
            let reference = resource.get(*key)?.get("reference")?.as_str()?;
            let id = reference.strip_prefix("Patient/")?;
            fhir::is_valid_id(id).then(|| reference.to_string())
        })
}

/// The patient each deletion among `writes` takes records from: a deletion carries no
/// body, so the current version is read for it (a read by id; `None` where there is
/// none, or for other writes).
async fn deleted_patients(store: &Store, writes: &[Write]) -> Vec<Option<String>> {
    let mut patients = Vec::with_capacity(writes.len());
    for write in writes {
        let patient = match write {
            Write::Delete {
                resource_type, id, ..
            } if resource_type != "Patient" => match store.read(resource_type, id).await {
                Ok(Some(current)) => current
                    .body
                    .as_deref()
                    .and_then(|body| classify::patient_in_body(resource_type, id, body)),
                _ => None,
            },
            _ => None,
        };
        patients.push(patient);
    }
    patients
}

/// Gives a create its id now, so its record can name it.
fn with_id(write: Write) -> Write {
    match write {
        Write::Create { resource, id: None } => Write::Create {
            resource,
            id: Some(store::new_id()),
        },
        other => other,
    }
}

/// [`Store::write`] with the request's audit record in the same transaction.
pub(crate) async fn write(store: &Store, write: Write) -> Result<Written, StoreError> {
    let write = with_id(write);
    let writes = std::slice::from_ref(&write);
    let records = records_for(writes, &deleted_patients(store, writes).await);
    store.write_audited(write, records).await
}

/// [`Store::write_all`] with one audit record per write in the same transaction.
pub(crate) async fn write_all(
    store: &Store,
    writes: Vec<Write>,
) -> Result<Vec<Written>, TransactionError> {
    let writes: Vec<Write> = writes.into_iter().map(with_id).collect();
    let records = records_for(&writes, &deleted_patients(store, &writes).await);
    store.write_all_audited(writes, records).await
}

/// [`write_all`] with `extra` records (an operation's own AuditEvent) in the same
/// transaction.
pub(crate) async fn write_all_with(
    store: &Store,
    writes: Vec<Write>,
    extra: Vec<store::AuditRecord>,
) -> Result<Vec<Written>, TransactionError> {
    let writes: Vec<Write> = writes.into_iter().map(with_id).collect();
    let mut records = records_for(&writes, &deleted_patients(store, &writes).await);
    records.extend(extra);
    store.write_all_audited(writes, records).await
}

/// A record of an AuditEvent an operation made itself (`body`), for `operation` on
/// `entities` and `patient` by the current request's caller.
pub(crate) fn event_record(
    body: Map<String, Value>,
    operation: &str,
    entities: Vec<String>,
    patient: Option<String>,
) -> store::AuditRecord {
    let who = with_scope(|scope| scope.who.clone()).unwrap_or_default();
    let what = What {
        subtype: "operation",
        operation: Some(operation.to_string()),
        action: "E",
        entities,
        patient,
        query: None,
    };
    let mut record = event::record(who, what, 200, Instant::now());
    record.body = Some(Value::Object(body).to_string());
    record
}

/// `text` cut to at most `limit` bytes, at a character boundary, without control
/// characters.
fn clip(text: &str, limit: usize) -> String {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].chars().filter(|c| !c.is_control()).collect()
}
