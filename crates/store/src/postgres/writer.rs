//! Writes in PostgreSQL: each call is one transaction, however many writes it holds.
//!
//! 1. Pids for keys never seen commit first, on their own (as in SQLite).
//! 2. The transaction locks the `resource_key` row of every resource it writes
//!    (`FOR UPDATE`, in key order): writers of one resource queue there, so each reads
//!    the version the previous one committed and `If-Match` is checked against it.
//! 3. The writes are applied in order in memory: versions, instants, bodies, and each
//!    resource's final state and index rows.
//! 4. New keys are inserted (a key a concurrent writer created meanwhile restarts the
//!    transaction), then every version, state and index row goes out in a few
//!    multi-row statements (`INSERT ... SELECT FROM unnest($1, $2, ...)`), pipelined.
//!    Each state change is conditional on the version it replaces, so the database
//!    itself refuses a lost update.
//! 5. Commit. Deadlocks and the races above retry the whole transaction.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use deadpool_postgres::{Pool, Transaction};
use search::{IndexRow, IndexValue};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::horizon::InFlight;
use super::schema::INDEX_TABLES;
use super::{error, pool_error};
use crate::audit::AuditBatch;
use crate::crypt::Keyring;
use crate::params::ParamIds;
use crate::prepared::{Clock, Current, Indexed, Prepared, check_if_match, indexable};
use crate::query::dialect::tsvector_text;
use crate::{Instant, Method, StoreError, TransactionError, Version, Written};

/// Attempts of a transaction that keeps meeting concurrent writers.
const ATTEMPTS: usize = 8;
/// The longest indexed text value kept, in bytes: a B-tree entry must fit in a third
/// of a page, so longer values are cut (at a character boundary) to this.
const MAX_INDEXED_BYTES: usize = 2048;
/// The most text of one resource the full-text index reads.
const MAX_TEXT_BYTES: usize = 256 * 1024;

pub(super) struct Writer {
    pub(super) pool: Pool,
    pub(super) params: ParamIds,
    pub(super) times: Arc<Mutex<super::horizon::Times>>,
    pub(super) analyzer: super::analyze::Analyzer,
    /// Seals bodies before they are stored.
    pub(super) keys: Arc<Keyring>,
    /// Forgets what the writes change (see `cache`).
    pub(super) cache: Arc<super::cache::ReadCache>,
}

/// Why an attempt did not commit.
enum Failed {
    /// A write was refused: the transaction fails with it.
    Write(TransactionError),
    /// A concurrent writer got in the way: try again.
    Retry(String),
}

impl From<TransactionError> for Failed {
    fn from(error: TransactionError) -> Failed {
        Failed::Write(error)
    }
}

impl From<StoreError> for Failed {
    fn from(error: StoreError) -> Failed {
        Failed::Write(error.into())
    }
}

/// A database error: a deadlock, a serialisation failure or a key a concurrent writer
/// took first is retried. So is "transaction aborted" (25P02), which stands for an
/// earlier failure of the same transaction that was not the one reported.
/// NOTE: under 200 concurrent updates of five resources (store test
/// `last_updated_strictly_increases_along_history`) about one run in fifteen met 25P02
/// as the first error reported; which statement failed before it is not yet known.
fn failed(failure: tokio_postgres::Error) -> Failed {
    match failure.code() {
        Some(code)
            if *code == SqlState::T_R_DEADLOCK_DETECTED
                || *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::UNIQUE_VIOLATION
                || *code == SqlState::IN_FAILED_SQL_TRANSACTION =>
        {
            Failed::Retry(super::detail(&failure))
        }
        _ => Failed::Write(error(failure).into()),
    }
}

impl Writer {
    pub(super) async fn write_one(
        &self,
        write: Indexed,
        audit: &AuditBatch,
    ) -> Result<Written, StoreError> {
        let mut written = self
            .write_all(std::slice::from_ref(&write), audit)
            .await
            .map_err(|failure| failure.error)?;
        written
            .pop()
            .ok_or_else(|| StoreError::Backend("the write made no answer".into()))
    }

    pub(super) async fn write_all(
        &self,
        writes: &[Indexed],
        audit: &AuditBatch,
    ) -> Result<Vec<Written>, TransactionError> {
        let mut client = self.pool.get().await.map_err(pool_error)?;
        self.ensure_pids(&client, writes).await?;
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            let transaction = client.transaction().await.map_err(error)?;
            match self.attempt(&transaction, writes, audit).await {
                Ok((written, in_flight)) => {
                    transaction.commit().await.map_err(error)?;
                    // Committed: history may show its versions now, and reads here
                    // must not be answered from before it.
                    drop(in_flight);
                    let keys = written_keys(writes);
                    self.cache.forget(keys.iter().map(String::as_str));
                    notify(&client, &self.cache.origin, &keys).await;
                    let versions = written.iter().filter(|one| one.version.is_some()).count();
                    self.analyzer.wrote(versions as u64);
                    return Ok(written);
                }
                Err(Failed::Write(failure)) => {
                    // A refused If-Match may come from a stale cached read: read anew.
                    self.cache
                        .forget(written_keys(writes).iter().map(String::as_str));
                    return Err(failure);
                }
                Err(Failed::Retry(reason)) => {
                    transaction.rollback().await.map_err(error)?;
                    last = reason;
                }
            }
        }
        Err(StoreError::Backend(format!(
            "concurrent writes to the same resources kept colliding ({last}); try again"
        ))
        .into())
    }

    /// Gives every row key of `writes` a committed pid (see `ParamIds`).
    async fn ensure_pids(
        &self,
        client: &deadpool_postgres::Client,
        writes: &[Indexed],
    ) -> Result<(), StoreError> {
        let mut types = Vec::new();
        let mut keys = Vec::new();
        let mut seen = HashSet::new();
        for write in writes {
            for (resource_type, key) in write.key_pairs() {
                if self.params.cached(resource_type, key).is_none()
                    && seen.insert((resource_type, key))
                {
                    types.push(resource_type.to_string());
                    keys.push(key.to_string());
                }
            }
        }
        if types.is_empty() {
            return Ok(());
        }
        client
            .execute(
                "INSERT INTO search_param (type, key) SELECT * FROM unnest($1::text[], $2::text[])
                 ON CONFLICT DO NOTHING",
                &[&types, &keys],
            )
            .await
            .map_err(error)?;
        let rows = client
            .query(
                "SELECT p.pid, p.type, p.key FROM search_param p
                 JOIN unnest($1::text[], $2::text[]) AS u(type, key) ON p.type = u.type AND p.key = u.key",
                &[&types, &keys],
            )
            .await
            .map_err(error)?;
        for row in rows {
            self.params.remember(row.get(1), row.get(2), row.get(0));
        }
        Ok(())
    }

    async fn attempt(
        &self,
        transaction: &Transaction<'_>,
        writes: &[Indexed],
        audit: &AuditBatch,
    ) -> Result<(Vec<Written>, InFlight), Failed> {
        // Lock every resource written, in key order, and read its state.
        let mut types = Vec::new();
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        for write in writes {
            if let Ok(prepared) = &write.write {
                let (resource_type, id) = prepared.key();
                if seen.insert((resource_type, id)) {
                    types.push(resource_type.to_string());
                    ids.push(id.to_string());
                }
            }
        }
        // The lock first; the state after it, in a statement of its own, so that it
        // reads what the writer we waited for committed (a locking read sees the
        // locked row's latest version, but joined rows as of its start).
        let lock = transaction
            .prepare_cached(
                "SELECT 1 FROM resource_key
                 WHERE (type, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
                 ORDER BY type, id FOR UPDATE",
            )
            .await
            .map_err(failed)?;
        let state = transaction
            .prepare_cached(
                "SELECT k.type, k.id, k.rid, k.pkey, r.version, r.deleted
                 FROM resource_key k LEFT JOIN resource r ON r.rid = k.rid AND r.pkey = k.pkey
                 WHERE (k.type, k.id) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            )
            .await
            .map_err(failed)?;
        let newest = transaction
            .prepare_cached("SELECT max(last_updated) FROM resource_version")
            .await
            .map_err(failed)?;
        let keys: [&(dyn ToSql + Sync); 2] = [&types, &ids];
        // Pipelined; when one fails the later ones fail only because the transaction
        // has (25P02), so the first failure in statement order is the one to report.
        let (locking, locked, newest) = tokio::join!(
            transaction.execute(&lock, &keys),
            transaction.query(&state, &keys),
            transaction.query_one(&newest, &[]),
        );
        locking.map_err(failed)?;
        let (locked, newest) = (locked.map_err(failed)?, newest.map_err(failed)?);
        let mut found: HashMap<(String, String), Found> = HashMap::with_capacity(locked.len());
        for row in &locked {
            let version: Option<i64> = row.get(4);
            let deleted: Option<i16> = row.get(5);
            found.insert(
                (row.get(0), row.get(1)),
                Found {
                    rid: row.get(2),
                    pkey: row.get(3),
                    version: u64::try_from(version.unwrap_or(0)).unwrap_or(0),
                    deleted: deleted.unwrap_or(1) != 0,
                },
            );
        }
        let newest: Option<i64> = newest.get(0);

        let (applied, in_flight) = {
            let mut times = self
                .times
                .lock()
                .map_err(|_| StoreError::Backend("the clock lock is poisoned".into()))?;
            if let Some(newest) = newest {
                times.clock.observe(Instant(newest));
            }
            let in_flight = InFlight::enter(&self.times, &mut times);
            let applied = apply(writes, &found, &mut times.clock);
            // Unlocked before `in_flight` can drop (it takes the same lock).
            drop(times);
            (applied, in_flight)
        };
        let applied = applied?;
        // Outside the clock's lock: sealing takes a few microseconds per body.
        let sealed = seal(&self.keys, &applied)?;

        // New resources get their keys (and rids) first; a key that exists by now was
        // created by a concurrent writer after our lock query: start again.
        let rids = self.insert_keys(transaction, &applied).await?;
        let rows = Rows::of(&applied, &sealed, writes, &rids, &self.params)?;
        rows.write(transaction).await?;
        // Last, so the chain's head stays locked only until the commit.
        super::audit::append(transaction, audit)
            .await
            .map_err(|failure| match failure {
                super::audit::AppendError::Database(failure) => failed(failure),
                super::audit::AppendError::Invalid(error) => Failed::from(error),
            })?;
        Ok((applied.written, in_flight))
    }

    /// Inserts the keys of new resources; returns every written resource's rid.
    async fn insert_keys(
        &self,
        transaction: &Transaction<'_>,
        applied: &Applied<'_>,
    ) -> Result<HashMap<(String, String), i64>, Failed> {
        let mut rids = HashMap::with_capacity(applied.states.len());
        let (mut types, mut ids, mut pkeys) = (Vec::new(), Vec::new(), Vec::new());
        for state in applied.states.iter().filter(|state| state.changed()) {
            match &state.found {
                Some(found) => {
                    rids.insert(
                        (state.resource_type.to_string(), state.id.to_string()),
                        found.rid,
                    );
                }
                None => {
                    types.push(state.resource_type);
                    ids.push(state.id);
                    pkeys.push(state.pkey.as_str());
                }
            }
        }
        if types.is_empty() {
            return Ok(rids);
        }
        let insert = transaction
            .prepare_cached(
                "INSERT INTO resource_key (type, id, rid, pkey)
                 SELECT u.type, u.id, nextval('resource_rid'), u.pkey
                 FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS u(type, id, pkey, n)
                 ORDER BY u.n
                 ON CONFLICT DO NOTHING RETURNING type, id, rid",
            )
            .await
            .map_err(failed)?;
        let inserted = transaction
            .query(&insert, &[&types, &ids, &pkeys])
            .await
            .map_err(failed)?;
        if inserted.len() != types.len() {
            return Err(Failed::Retry("a resource was created concurrently".into()));
        }
        for row in inserted {
            rids.insert((row.get(0), row.get(1)), row.get(2));
        }
        Ok(rids)
    }
}

/// A resource's row in `resource`, as locked.
struct Found {
    rid: i64,
    pkey: String,
    version: u64,
    deleted: bool,
}

/// What the writes of one transaction do to one resource.
struct State<'a> {
    resource_type: &'a str,
    id: &'a str,
    found: Option<&'a Found>,
    /// After the last write.
    version: u64,
    deleted: bool,
    last_updated: Instant,
    pkey: String,
    /// The write whose index rows and text the resource has at the end.
    indexed_by: Option<usize>,
}

impl State<'_> {
    /// Whether any write made a version (not only deletes of nothing).
    fn changed(&self) -> bool {
        self.version != self.found.map_or(0, |found| found.version)
    }
}

/// The writes applied in memory.
struct Applied<'a> {
    written: Vec<Written>,
    /// One per resource, in order of first write.
    states: Vec<State<'a>>,
    /// The versions to insert: their resource's state, and where in `written` they are.
    versions: Vec<(usize, usize)>,
}

impl Prepared {
    fn key(&self) -> (&str, &str) {
        match self {
            Prepared::Create {
                resource_type, id, ..
            }
            | Prepared::Update {
                resource_type, id, ..
            }
            | Prepared::Delete {
                resource_type, id, ..
            } => (resource_type, id),
        }
    }
}

/// Tells other stores' read caches what a committed transaction changed: `NOTIFY` in
/// a transaction of its own, after the commit. Inside the write's transaction it would
/// hold PostgreSQL's notify lock through the commit's WAL flush, one committer at a
/// time (single creates lost 15% of their throughput); on its own it writes no WAL.
/// A notice lost with the connection is covered by the cache's age limit.
async fn notify(client: &deadpool_postgres::Client, origin: &str, keys: &[String]) {
    let notices = super::cache::notices(origin, keys);
    if notices.is_empty() {
        return;
    }
    let sent = async {
        let statement = client
            .prepare_cached("SELECT pg_notify($1, notice) FROM unnest($2::text[]) AS notice")
            .await?;
        client
            .execute(&statement, &[&super::cache::CHANNEL, &notices])
            .await
    };
    if let Err(failure) = sent.await {
        tracing::debug!(error = %failure, "could not notify the read caches");
    }
}

/// `Type/id` of every resource `writes` name.
fn written_keys(writes: &[Indexed]) -> Vec<String> {
    writes
        .iter()
        .filter_map(|write| write.write.as_ref().ok())
        .map(|prepared| {
            let (resource_type, id) = prepared.key();
            format!("{resource_type}/{id}")
        })
        .collect()
}

/// The sealed body of each version to insert, in the order of `applied.versions`
/// (`None` for a deletion, or when the store writes bodies plain).
fn seal(keys: &Keyring, applied: &Applied<'_>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    applied
        .versions
        .iter()
        .map(|&(_, at)| {
            match applied
                .written
                .get(at)
                .and_then(|written| written.version.as_ref())
                .and_then(|version| version.body.as_deref())
            {
                Some(body) => keys.seal(body),
                None => Ok(None),
            }
        })
        .collect()
}

/// Applies `writes` in order against what was `found`, as SQLite's writer does one by
/// one: the first write that fails fails them all.
fn apply<'a>(
    writes: &'a [Indexed],
    found: &'a HashMap<(String, String), Found>,
    clock: &mut Clock,
) -> Result<Applied<'a>, TransactionError> {
    let mut applied = Applied {
        written: Vec::with_capacity(writes.len()),
        states: Vec::new(),
        versions: Vec::with_capacity(writes.len()),
    };
    let mut slots: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, write) in writes.iter().enumerate() {
        let fail = |error: StoreError| TransactionError { index, error };
        let prepared = write.write.as_ref().map_err(|error| fail(error.clone()))?;
        let (resource_type, id) = prepared.key();
        let slot = *slots.entry((resource_type, id)).or_insert_with(|| {
            let found = found.get(&(resource_type.to_string(), id.to_string()));
            applied.states.push(State {
                resource_type,
                id,
                found,
                version: found.map_or(0, |found| found.version),
                deleted: found.is_none_or(|found| found.deleted),
                last_updated: Instant(0),
                pkey: found.map_or_else(String::new, |found| found.pkey.clone()),
                indexed_by: None,
            });
            applied.states.len() - 1
        });
        let state = &mut applied.states[slot];
        let current = (state.version > 0).then_some(Current {
            rid: 0,
            version: state.version,
            deleted: state.deleted,
        });
        let (method, body, created) = match prepared {
            Prepared::Create { body, .. } => {
                if current.is_some() {
                    return Err(fail(StoreError::Invalid(format!(
                        "{resource_type}/{id} already exists"
                    ))));
                }
                (Method::Create, Some(body), true)
            }
            Prepared::Update {
                body,
                if_match,
                method,
                ..
            } => {
                check_if_match(*if_match, current.as_ref()).map_err(fail)?;
                (
                    *method,
                    Some(body),
                    current.as_ref().is_none_or(|c| c.deleted),
                )
            }
            Prepared::Delete { if_match, .. } => {
                check_if_match(*if_match, current.as_ref()).map_err(fail)?;
                if current.as_ref().is_none_or(|c| c.deleted) {
                    applied.written.push(Written {
                        version: None,
                        created: false,
                    });
                    continue;
                }
                (Method::Delete, None, false)
            }
        };
        let last_updated = clock.tick();
        let version = state.version + 1;
        i64::try_from(version).map_err(|_| {
            fail(StoreError::Invalid(format!(
                "version {version} is out of range"
            )))
        })?;
        state.version = version;
        state.deleted = body.is_none();
        state.last_updated = last_updated;
        if body.is_some() {
            state.pkey = patient_key(resource_type, id, &write.rows);
            state.indexed_by = Some(index);
        } else {
            state.indexed_by = None;
        }
        let stored = Version {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
            version,
            last_updated,
            method,
            body: body.map(|template| template.render(version, last_updated)),
            created,
        };
        applied.versions.push((slot, applied.written.len()));
        applied.written.push(Written {
            version: Some(stored),
            created,
        });
    }
    Ok(applied)
}

/// The distribution key of a resource: a Patient's own id; for a resource in the
/// Patient compartment, the patient its first compartment reference names; for any
/// other, `Type/id` (a key no patient id can equal, ids having no `/`).
pub(crate) fn patient_key(resource_type: &str, id: &str, rows: &[IndexRow]) -> String {
    if resource_type == "Patient" {
        return id.to_string();
    }
    if let Some(compartment) = search::compartment("Patient", "", resource_type) {
        for criterion in &compartment.any_of {
            let patient = rows.iter().find_map(|row| match &row.value {
                IndexValue::Reference {
                    resource_type: Some(target),
                    id: Some(target_id),
                    ..
                } if row.group == 0 && row.key == criterion.param && target == "Patient" => {
                    Some(target_id)
                }
                _ => None,
            });
            if let Some(patient) = patient {
                return patient.clone();
            }
        }
    }
    format!("{resource_type}/{id}")
}

/// `text` cut to at most `limit` bytes at a character boundary.
fn clip(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn clipped(text: &Option<String>) -> &str {
    clip(text.as_deref().unwrap_or(""), MAX_INDEXED_BYTES)
}

/// Every row one transaction writes, column by column (one array per column).
#[derive(Default)]
struct Rows<'a> {
    // resource_version
    v_pkey: Vec<&'a str>,
    v_type: Vec<&'a str>,
    v_id: Vec<&'a str>,
    v_version: Vec<i64>,
    v_last_updated: Vec<i64>,
    v_method: Vec<&'static str>,
    /// Sealed, or the plain JSON's bytes.
    v_body: Vec<Option<&'a [u8]>>,
    v_created: Vec<bool>,
    // resource rows to insert (new, or moved to another pkey)
    n_rid: Vec<i64>,
    n_pkey: Vec<&'a str>,
    n_type: Vec<&'a str>,
    n_id: Vec<&'a str>,
    n_version: Vec<i64>,
    n_deleted: Vec<i16>,
    n_last_updated: Vec<i64>,
    // resource rows to change in place: rid, pkey, version replaced, new state
    u_rid: Vec<i64>,
    u_pkey: Vec<&'a str>,
    u_old: Vec<i64>,
    u_version: Vec<i64>,
    u_deleted: Vec<i16>,
    u_last_updated: Vec<i64>,
    // resource rows moving away: rid, old pkey, version replaced
    m_rid: Vec<i64>,
    m_pkey: Vec<&'a str>,
    m_old: Vec<i64>,
    // resource keys whose pkey changes
    k_type: Vec<&'a str>,
    k_id: Vec<&'a str>,
    k_pkey: Vec<&'a str>,
    /// Rids whose index rows go, and the pkeys those rows are under.
    unindexed: Vec<i64>,
    unindexed_pkeys: Vec<&'a str>,
    index: IndexColumns<'a>,
}

/// One index table's rows to insert, a vector per column (rid, pid, values..., grp,
/// pkey), in the column order of its insert (`index_inserts`).
type StringColumns<'a> = (
    Vec<i64>,
    Vec<i64>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<i32>,
    Vec<&'a str>,
);
type TokenColumns<'a> = StringColumns<'a>;
type ReferenceColumns<'a> = (
    Vec<i64>,
    Vec<i64>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<i32>,
    Vec<&'a str>,
);
type DateColumns<'a> = (
    Vec<i64>,
    Vec<i64>,
    Vec<i64>,
    Vec<i64>,
    Vec<i32>,
    Vec<&'a str>,
);
type NumberColumns<'a> = (
    Vec<i64>,
    Vec<i64>,
    Vec<f64>,
    Vec<f64>,
    Vec<i32>,
    Vec<&'a str>,
);
type QuantityColumns<'a> = (
    Vec<i64>,
    Vec<i64>,
    Vec<&'a str>,
    Vec<&'a str>,
    Vec<f64>,
    Vec<f64>,
    Vec<i32>,
    Vec<&'a str>,
);
type UriColumns<'a> = (Vec<i64>, Vec<i64>, Vec<&'a str>, Vec<i32>, Vec<&'a str>);
/// rid, pkey, narrative words, content words.
type TextColumns<'a> = (Vec<i64>, Vec<&'a str>, Vec<String>, Vec<String>);

/// The index rows to insert, per table.
#[derive(Default)]
struct IndexColumns<'a> {
    string: StringColumns<'a>,
    token: TokenColumns<'a>,
    reference: ReferenceColumns<'a>,
    date: DateColumns<'a>,
    number: NumberColumns<'a>,
    quantity: QuantityColumns<'a>,
    uri: UriColumns<'a>,
    text: TextColumns<'a>,
}

/// One index row, for leaving out repeats within a resource.
#[derive(Hash, PartialEq, Eq)]
struct RowKey<'a> {
    pid: i64,
    group: u32,
    texts: [&'a str; 3],
    numbers: [u64; 2],
    kind: u8,
}

impl<'a> Rows<'a> {
    fn of(
        applied: &'a Applied<'a>,
        sealed: &'a [Option<Vec<u8>>],
        writes: &'a [Indexed],
        rids: &HashMap<(String, String), i64>,
        params: &ParamIds,
    ) -> Result<Rows<'a>, Failed> {
        let mut rows = Rows::default();
        let rid_of = |state: &State<'_>| {
            rids.get(&(state.resource_type.to_string(), state.id.to_string()))
                .copied()
                .ok_or_else(|| {
                    StoreError::Backend(format!("no rid for {}/{}", state.resource_type, state.id))
                })
        };
        for (&(slot, at), sealed) in applied.versions.iter().zip(sealed) {
            let state = &applied.states[slot];
            let Some(version) = applied.written.get(at).and_then(|w| w.version.as_ref()) else {
                continue;
            };
            // Under the resource's final pkey: where its current rows are.
            rows.v_pkey.push(&state.pkey);
            rows.v_type.push(state.resource_type);
            rows.v_id.push(state.id);
            rows.v_version
                .push(i64::try_from(version.version).unwrap_or(i64::MAX));
            rows.v_last_updated.push(version.last_updated.0);
            rows.v_method.push(version.method.verb());
            rows.v_body.push(
                sealed
                    .as_deref()
                    .or_else(|| version.body.as_deref().map(str::as_bytes)),
            );
            rows.v_created.push(version.created);
        }
        for state in applied.states.iter().filter(|state| state.changed()) {
            let rid = rid_of(state)?;
            let version = i64::try_from(state.version).unwrap_or(i64::MAX);
            let deleted = i16::from(state.deleted);
            match state.found {
                Some(found) if found.pkey == state.pkey => {
                    rows.u_rid.push(rid);
                    rows.u_pkey.push(&found.pkey);
                    rows.u_old
                        .push(i64::try_from(found.version).unwrap_or(i64::MAX));
                    rows.u_version.push(version);
                    rows.u_deleted.push(deleted);
                    rows.u_last_updated.push(state.last_updated.0);
                }
                found => {
                    if let Some(found) = found {
                        rows.m_rid.push(rid);
                        rows.m_pkey.push(&found.pkey);
                        rows.m_old
                            .push(i64::try_from(found.version).unwrap_or(i64::MAX));
                        rows.k_type.push(state.resource_type);
                        rows.k_id.push(state.id);
                        rows.k_pkey.push(&state.pkey);
                    }
                    rows.n_rid.push(rid);
                    rows.n_pkey.push(&state.pkey);
                    rows.n_type.push(state.resource_type);
                    rows.n_id.push(state.id);
                    rows.n_version.push(version);
                    rows.n_deleted.push(deleted);
                    rows.n_last_updated.push(state.last_updated.0);
                }
            }
            if let Some(found) = state.found.filter(|found| !found.deleted) {
                rows.unindexed.push(rid);
                rows.unindexed_pkeys.push(&found.pkey);
            }
            if let Some(index) = state.indexed_by {
                let write = &writes[index];
                rows.index
                    .add(rid, &state.pkey, state.resource_type, write, params)?;
            }
        }
        Ok(rows)
    }

    async fn write(&self, transaction: &Transaction<'_>) -> Result<(), Failed> {
        let statements = [
            "INSERT INTO resource_version (pkey, type, id, version, last_updated, method, body, created)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::bytea[], $8::bool[])",
            "DELETE FROM resource r USING unnest($1::int8[], $2::text[], $3::int8[]) AS u(rid, pkey, old)
             WHERE r.rid = u.rid AND r.pkey = u.pkey AND r.version = u.old",
            "INSERT INTO resource (rid, pkey, type, id, version, deleted, last_updated)
             SELECT * FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int2[], $7::int8[])",
            "UPDATE resource r SET version = u.version, deleted = u.deleted, last_updated = u.last_updated
             FROM unnest($1::int8[], $2::text[], $3::int8[], $4::int8[], $5::int2[], $6::int8[])
               AS u(rid, pkey, old, version, deleted, last_updated)
             WHERE r.rid = u.rid AND r.pkey = u.pkey AND r.version = u.old",
            "UPDATE resource_key k SET pkey = u.pkey FROM unnest($1::text[], $2::text[], $3::text[]) AS u(type, id, pkey)
             WHERE k.type = u.type AND k.id = u.id",
        ];
        let mut prepared = Vec::with_capacity(statements.len());
        for sql in statements {
            prepared.push(transaction.prepare_cached(sql).await.map_err(failed)?);
        }
        let removal = removal_sql();
        let removal = transaction.prepare_cached(&removal).await.map_err(failed)?;
        let index = &self.index;
        let inserts = index_inserts();
        let mut insert_statements = Vec::with_capacity(inserts.len());
        for sql in inserts {
            insert_statements.push(transaction.prepare_cached(sql).await.map_err(failed)?);
        }

        let versions: [&(dyn ToSql + Sync); 8] = [
            &self.v_pkey,
            &self.v_type,
            &self.v_id,
            &self.v_version,
            &self.v_last_updated,
            &self.v_method,
            &self.v_body,
            &self.v_created,
        ];
        let moved: [&(dyn ToSql + Sync); 3] = [&self.m_rid, &self.m_pkey, &self.m_old];
        let inserted: [&(dyn ToSql + Sync); 7] = [
            &self.n_rid,
            &self.n_pkey,
            &self.n_type,
            &self.n_id,
            &self.n_version,
            &self.n_deleted,
            &self.n_last_updated,
        ];
        let updated: [&(dyn ToSql + Sync); 6] = [
            &self.u_rid,
            &self.u_pkey,
            &self.u_old,
            &self.u_version,
            &self.u_deleted,
            &self.u_last_updated,
        ];
        let keys: [&(dyn ToSql + Sync); 3] = [&self.k_type, &self.k_id, &self.k_pkey];
        let removed: [&(dyn ToSql + Sync); 2] = [&self.unindexed, &self.unindexed_pkeys];
        let string: [&(dyn ToSql + Sync); 6] = [
            &index.string.0,
            &index.string.1,
            &index.string.2,
            &index.string.3,
            &index.string.4,
            &index.string.5,
        ];
        let token: [&(dyn ToSql + Sync); 6] = [
            &index.token.0,
            &index.token.1,
            &index.token.2,
            &index.token.3,
            &index.token.4,
            &index.token.5,
        ];
        let reference: [&(dyn ToSql + Sync); 7] = [
            &index.reference.0,
            &index.reference.1,
            &index.reference.2,
            &index.reference.3,
            &index.reference.4,
            &index.reference.5,
            &index.reference.6,
        ];
        let date: [&(dyn ToSql + Sync); 6] = [
            &index.date.0,
            &index.date.1,
            &index.date.2,
            &index.date.3,
            &index.date.4,
            &index.date.5,
        ];
        let number: [&(dyn ToSql + Sync); 6] = [
            &index.number.0,
            &index.number.1,
            &index.number.2,
            &index.number.3,
            &index.number.4,
            &index.number.5,
        ];
        let quantity: [&(dyn ToSql + Sync); 8] = [
            &index.quantity.0,
            &index.quantity.1,
            &index.quantity.2,
            &index.quantity.3,
            &index.quantity.4,
            &index.quantity.5,
            &index.quantity.6,
            &index.quantity.7,
        ];
        let uri: [&(dyn ToSql + Sync); 5] = [
            &index.uri.0,
            &index.uri.1,
            &index.uri.2,
            &index.uri.3,
            &index.uri.4,
        ];
        let text: [&(dyn ToSql + Sync); 4] =
            [&index.text.0, &index.text.1, &index.text.2, &index.text.3];

        // In this order, pipelined (each is sent when first polled, and `try_join!`
        // polls in order): old rows go before new ones are added. Empty ones are skipped.
        let (_, moved_count, _, updated_count, _, _, _, _, _, _, _, _, _, _) = tokio::try_join!(
            run(transaction, &prepared[0], &versions, self.v_id.len()),
            run(transaction, &prepared[1], &moved, self.m_rid.len()),
            run(transaction, &removal, &removed, self.unindexed.len()),
            run(transaction, &prepared[3], &updated, self.u_rid.len()),
            run(transaction, &prepared[2], &inserted, self.n_rid.len()),
            run(transaction, &prepared[4], &keys, self.k_id.len()),
            run(
                transaction,
                &insert_statements[0],
                &string,
                index.string.0.len()
            ),
            run(
                transaction,
                &insert_statements[1],
                &token,
                index.token.0.len()
            ),
            run(
                transaction,
                &insert_statements[2],
                &reference,
                index.reference.0.len()
            ),
            run(
                transaction,
                &insert_statements[3],
                &date,
                index.date.0.len()
            ),
            run(
                transaction,
                &insert_statements[4],
                &number,
                index.number.0.len()
            ),
            run(
                transaction,
                &insert_statements[5],
                &quantity,
                index.quantity.0.len()
            ),
            run(transaction, &insert_statements[6], &uri, index.uri.0.len()),
            run(
                transaction,
                &insert_statements[7],
                &text,
                index.text.0.len()
            ),
        )
        .map_err(failed)?;
        // Every state change is conditional on the version it replaces: fewer rows
        // than expected means another writer changed a resource under us.
        if moved_count != self.m_rid.len() as u64 || updated_count != self.u_rid.len() as u64 {
            return Err(Failed::Retry(
                "a resource changed under the transaction".into(),
            ));
        }
        Ok(())
    }
}

/// Runs `statement` unless it has no rows to write.
async fn run(
    transaction: &Transaction<'_>,
    statement: &tokio_postgres::Statement,
    params: &[&(dyn ToSql + Sync)],
    rows: usize,
) -> Result<u64, tokio_postgres::Error> {
    if rows == 0 {
        Ok(0)
    } else {
        transaction.execute(statement, params).await
    }
}

/// One statement that removes every index row of the rids in `$1` (under the pkeys in
/// `$2`, which lets Citus send it to their shards only).
fn removal_sql() -> String {
    let mut sql = String::from("WITH ");
    let last = INDEX_TABLES.len() - 1;
    for (at, table) in INDEX_TABLES[..last].iter().enumerate() {
        if at > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "d{at} AS (DELETE FROM {table} WHERE rid = ANY($1::int8[]) AND pkey = ANY($2::text[]))"
        ));
    }
    sql.push_str(&format!(
        " DELETE FROM {} WHERE rid = ANY($1::int8[]) AND pkey = ANY($2::text[])",
        INDEX_TABLES[last]
    ));
    sql
}

/// The insert of each index table, in the order of `IndexColumns`.
fn index_inserts() -> [&'static str; 8] {
    [
        "INSERT INTO sp_string (rid, pid, value, exact, grp, pkey)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int4[], $6::text[])",
        "INSERT INTO sp_token (rid, pid, code, system, grp, pkey)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::int4[], $6::text[])",
        "INSERT INTO sp_reference (rid, pid, target_id, target_type, url, grp, pkey)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::int4[], $7::text[])",
        "INSERT INTO sp_date (rid, pid, low, high, grp, pkey)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::int8[], $4::int8[], $5::int4[], $6::text[])",
        "INSERT INTO sp_number (rid, pid, low, high, grp, pkey)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::float8[], $4::float8[], $5::int4[], $6::text[])",
        "INSERT INTO sp_quantity (rid, pid, code, system, low, high, grp, pkey)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::text[], $5::float8[], $6::float8[], $7::int4[], $8::text[])",
        "INSERT INTO sp_uri (rid, pid, uri, grp, pkey)
         SELECT * FROM unnest($1::int8[], $2::int8[], $3::text[], $4::int4[], $5::text[])",
        "INSERT INTO sp_text (rid, pkey, narrative, content)
         SELECT u.rid, u.pkey, strip(to_tsvector('simple', u.narrative)), strip(to_tsvector('simple', u.content))
         FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[]) AS u(rid, pkey, narrative, content)",
    ]
}

impl<'a> IndexColumns<'a> {
    /// The rows and text of `write` for the resource `rid`, each distinct row once.
    fn add(
        &mut self,
        rid: i64,
        pkey: &'a str,
        resource_type: &str,
        write: &'a Indexed,
        params: &ParamIds,
    ) -> Result<(), StoreError> {
        let mut seen: HashSet<RowKey<'a>> = HashSet::with_capacity(write.rows.len());
        for (at, row) in write.rows.iter().enumerate() {
            if !indexable(&row.value) {
                continue;
            }
            let known = write.pids.get(at).copied().flatten();
            let Some(pid) = known.or_else(|| params.cached(resource_type, &row.key)) else {
                return Err(StoreError::Backend(format!(
                    "no search parameter id for {resource_type} {}",
                    row.key
                )));
            };
            let group = i32::try_from(row.group).map_err(|_| {
                StoreError::Invalid(format!("index group {} is out of range", row.group))
            })?;
            let key = |kind: u8, texts: [&'a str; 3], numbers: [u64; 2]| RowKey {
                pid,
                group: row.group,
                texts,
                numbers,
                kind,
            };
            match &row.value {
                IndexValue::String { normalized, exact } => {
                    let (value, exact) = (
                        clip(normalized, MAX_INDEXED_BYTES),
                        clip(exact, MAX_INDEXED_BYTES),
                    );
                    if seen.insert(key(0, [value, exact, ""], [0, 0])) {
                        let t = &mut self.string;
                        t.0.push(rid);
                        t.1.push(pid);
                        t.2.push(value);
                        t.3.push(exact);
                        t.4.push(group);
                        t.5.push(pkey);
                    }
                }
                IndexValue::Token { system, code } => {
                    let (code, system) = (clipped(code), clipped(system));
                    if seen.insert(key(1, [code, system, ""], [0, 0])) {
                        let t = &mut self.token;
                        t.0.push(rid);
                        t.1.push(pid);
                        t.2.push(code);
                        t.3.push(system);
                        t.4.push(group);
                        t.5.push(pkey);
                    }
                }
                IndexValue::Reference {
                    resource_type: target_type,
                    id,
                    url,
                } => {
                    let (id, target_type, url) = (clipped(id), clipped(target_type), clipped(url));
                    if seen.insert(key(2, [id, target_type, url], [0, 0])) {
                        let t = &mut self.reference;
                        t.0.push(rid);
                        t.1.push(pid);
                        t.2.push(id);
                        t.3.push(target_type);
                        t.4.push(url);
                        t.5.push(group);
                        t.6.push(pkey);
                    }
                }
                IndexValue::Date(range) => {
                    let bits = [range.low as u64, range.high as u64];
                    if seen.insert(key(3, ["", "", ""], bits)) {
                        let t = &mut self.date;
                        t.0.push(rid);
                        t.1.push(pid);
                        t.2.push(range.low);
                        t.3.push(range.high);
                        t.4.push(group);
                        t.5.push(pkey);
                    }
                }
                IndexValue::Number(range) => {
                    if seen.insert(key(
                        4,
                        ["", "", ""],
                        [range.low.to_bits(), range.high.to_bits()],
                    )) {
                        let t = &mut self.number;
                        t.0.push(rid);
                        t.1.push(pid);
                        t.2.push(range.low);
                        t.3.push(range.high);
                        t.4.push(group);
                        t.5.push(pkey);
                    }
                }
                IndexValue::Quantity {
                    range,
                    system,
                    code,
                } => {
                    let (code, system) = (clipped(code), clipped(system));
                    if seen.insert(key(
                        5,
                        [code, system, ""],
                        [range.low.to_bits(), range.high.to_bits()],
                    )) {
                        let t = &mut self.quantity;
                        t.0.push(rid);
                        t.1.push(pid);
                        t.2.push(code);
                        t.3.push(system);
                        t.4.push(range.low);
                        t.5.push(range.high);
                        t.6.push(group);
                        t.7.push(pkey);
                    }
                }
                IndexValue::Uri(uri) => {
                    let uri = clip(uri, MAX_INDEXED_BYTES);
                    if seen.insert(key(6, [uri, "", ""], [0, 0])) {
                        let t = &mut self.uri;
                        t.0.push(rid);
                        t.1.push(pid);
                        t.2.push(uri);
                        t.3.push(group);
                        t.4.push(pkey);
                    }
                }
            }
        }
        if let Some(text) = write
            .text
            .as_ref()
            .filter(|text| !text.narrative.is_empty() || !text.content.is_empty())
        {
            self.text.0.push(rid);
            self.text.1.push(pkey);
            self.text
                .2
                .push(tsvector_text(clip(&text.narrative, MAX_TEXT_BYTES)));
            self.text
                .3
                .push(tsvector_text(clip(&text.content, MAX_TEXT_BYTES)));
        }
        Ok(())
    }
}
