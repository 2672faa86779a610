//! The writer thread: group commit.
//!
//! Writes queue on a channel. The writer takes every write waiting, applies each in
//! its own savepoint (a failed write rolls back alone), commits once, syncs once, and
//! only then answers each caller. Writers that arrive during a sync share the next one.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::oneshot;

use super::index;
use super::params::ParamIds;
use crate::audit::AuditBatch;
use crate::body::Template;
use crate::crypt::Keyring;
use crate::prepared::{Clock, Current, Indexed, Prepared, check_if_match};
use crate::{Instant, Method, StoreError, TransactionError, Version, Written};

/// Most writes in one commit.
const MAX_GROUP: usize = 512;
/// Writes that may wait for the writer before callers are held back.
const QUEUE: usize = 4096;

/// One unit of work for the writer, with where to send its answer.
pub(super) enum Job {
    /// One write, and the audit records that go with it.
    One {
        write: Indexed,
        audit: AuditBatch,
        reply: oneshot::Sender<Result<Written, StoreError>>,
    },
    /// Writes that all apply, or none does (a transaction Bundle), and their audit
    /// records.
    All {
        writes: Vec<Indexed>,
        audit: AuditBatch,
        reply: oneshot::Sender<Result<Vec<Written>, TransactionError>>,
    },
    /// Audit records alone (reads, searches, refusals).
    Audit {
        batch: std::sync::Arc<AuditBatch>,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// What the writer thread holds.
struct Writer {
    connection: Connection,
    clock: Clock,
    params: ParamIds,
    /// Seals bodies before they are stored.
    keys: Arc<Keyring>,
}

enum Outcome {
    One(Result<Written, StoreError>),
    All(Result<Vec<Written>, TransactionError>),
    Audit(Result<(), StoreError>),
}

impl Job {
    fn key_pairs(&self) -> Vec<(&str, &str)> {
        match self {
            Job::One { write, .. } => write.key_pairs(),
            Job::All { writes, .. } => writes.iter().flat_map(Indexed::key_pairs).collect(),
            Job::Audit { .. } => Vec::new(),
        }
    }

    fn into_reply(self) -> Reply {
        match self {
            Job::One { reply, .. } => Reply::One(reply),
            Job::All { reply, .. } => Reply::All(reply),
            Job::Audit { reply, .. } => Reply::Audit(reply),
        }
    }

    fn apply(self, writer: &mut Writer) -> (Reply, Outcome) {
        let Writer {
            connection,
            clock,
            params,
            keys,
        } = writer;
        let connection = &*connection;
        match self {
            Job::One {
                write,
                audit,
                reply,
            } => {
                let result = in_savepoint(connection, |connection| {
                    let written = apply(connection, clock, params, keys, write)?;
                    super::audit::append(connection, &audit)?;
                    Ok(written)
                });
                (Reply::One(reply), Outcome::One(result))
            }
            Job::All {
                writes,
                audit,
                reply,
            } => {
                let result = in_savepoint(connection, |connection| {
                    let mut written = Vec::with_capacity(writes.len());
                    for (index, write) in writes.into_iter().enumerate() {
                        match apply(connection, clock, params, keys, write) {
                            Ok(one) => written.push(one),
                            Err(error) => return Err(TransactionError { index, error }),
                        }
                    }
                    super::audit::append(connection, &audit)?;
                    Ok(written)
                });
                (Reply::All(reply), Outcome::All(result))
            }
            Job::Audit { batch, reply } => {
                let result = in_savepoint(connection, |connection| {
                    super::audit::append(connection, &batch)
                });
                (Reply::Audit(reply), Outcome::Audit(result))
            }
        }
    }
}

enum Reply {
    One(oneshot::Sender<Result<Written, StoreError>>),
    All(oneshot::Sender<Result<Vec<Written>, TransactionError>>),
    Audit(oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    fn send(self, outcome: Outcome) {
        // A caller that went away still had its write committed; nothing to tell.
        match (self, outcome) {
            (Reply::One(reply), Outcome::One(result)) => {
                let _ = reply.send(result);
            }
            (Reply::All(reply), Outcome::All(result)) => {
                let _ = reply.send(result);
            }
            (Reply::Audit(reply), Outcome::Audit(result)) => {
                let _ = reply.send(result);
            }
            (reply, _) => reply.fail(StoreError::Backend("mismatched reply".into())),
        }
    }

    fn fail(self, error: StoreError) {
        match self {
            Reply::One(reply) => {
                let _ = reply.send(Err(error));
            }
            Reply::All(reply) => {
                let _ = reply.send(Err(TransactionError { index: 0, error }));
            }
            Reply::Audit(reply) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}

pub(super) fn start(
    connection: Connection,
    params: ParamIds,
    keys: Arc<Keyring>,
) -> Result<SyncSender<Job>, StoreError> {
    let last: Option<i64> = connection.query_row(
        "SELECT max(last_updated) FROM resource_version",
        [],
        |row| row.get(0),
    )?;
    let clock = Clock {
        last: Instant(last.unwrap_or(0)),
    };
    let (jobs, queue) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("store-writer".into())
        .spawn(move || {
            run(
                Writer {
                    connection,
                    clock,
                    params,
                    keys,
                },
                queue,
            )
        })
        .map_err(|error| StoreError::Backend(format!("cannot start the writer: {error}")))?;
    Ok(jobs)
}

/// How often the writer looks for data keys added while the store is open.
const KEY_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

fn run(mut writer: Writer, queue: Receiver<Job>) {
    let mut checked = std::time::Instant::now();
    loop {
        match queue.recv_timeout(KEY_CHECK) {
            Ok(first) => {
                let mut group = vec![first];
                while group.len() < MAX_GROUP {
                    match queue.try_recv() {
                        Ok(job) => group.push(job),
                        Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                    }
                }
                commit_group(&mut writer, group);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if checked.elapsed() >= KEY_CHECK {
            checked = std::time::Instant::now();
            if let Err(error) = super::keys::learn_new(&writer.connection, &writer.keys) {
                tracing::warn!(%error, "cannot look for new data keys");
            }
        }
    }
}

/// Applies every job in one transaction, commits (one sync), then answers each.
fn commit_group(writer: &mut Writer, group: Vec<Job>) {
    // New search parameter ids commit first, on their own: a write that rolls back
    // must not take with it an id the cache already hands out.
    let pairs: Vec<(&str, &str)> = group.iter().flat_map(Job::key_pairs).collect();
    let started = writer
        .params
        .ensure_committed(&writer.connection, &pairs)
        .and_then(|()| Ok(writer.connection.execute_batch("BEGIN IMMEDIATE")?));
    if let Err(error) = started {
        for job in group {
            job.into_reply().fail(error.clone());
        }
        return;
    }
    let connection = &writer.connection;
    // Another process may have written to this file: never hand out an instant older
    // than the newest one stored, so history order stays time order.
    let newest: Result<Option<i64>, _> = connection
        .prepare_cached("SELECT max(last_updated) FROM resource_version")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)));
    if let Ok(Some(newest)) = newest {
        writer.clock.observe(Instant(newest));
    }
    let answers: Vec<(Reply, Outcome)> = group.into_iter().map(|job| job.apply(writer)).collect();
    let connection = &writer.connection;
    if let Err(error) = connection.execute_batch("COMMIT") {
        tracing::error!(%error, "commit failed; rolling back the group");
        let _ = connection.execute_batch("ROLLBACK");
        let error = StoreError::from(error);
        for (reply, _) in answers {
            reply.fail(error.clone());
        }
        return;
    }
    for (reply, outcome) in answers {
        reply.send(outcome);
    }
}

/// Runs `f` in a savepoint: everything it wrote stays if it succeeds, none of it if not.
fn in_savepoint<T, E: From<StoreError>>(
    connection: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, E>,
) -> Result<T, E> {
    connection
        .execute_batch("SAVEPOINT write")
        .map_err(|error| E::from(StoreError::from(error)))?;
    let result = f(connection);
    let end = if result.is_ok() {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    connection
        .execute_batch(end)
        .map_err(|error| E::from(StoreError::from(error)))?;
    result
}

fn current(
    connection: &Connection,
    resource_type: &str,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    let row = connection
        .prepare_cached("SELECT version, deleted, rid FROM resource WHERE type = ?1 AND id = ?2")?
        .query_row((resource_type, id), |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?, row.get(2)?))
        })
        .optional()?;
    Ok(row.map(|(version, deleted, rid)| Current {
        rid,
        version: u64::try_from(version).unwrap_or(0),
        deleted,
    }))
}

fn apply(
    connection: &Connection,
    clock: &mut Clock,
    params: &ParamIds,
    keys: &Keyring,
    indexed: Indexed,
) -> Result<Written, StoreError> {
    let Indexed {
        write,
        rows,
        pids,
        text,
    } = indexed;
    match write? {
        Prepared::Create {
            resource_type,
            id,
            body,
        } => {
            if current(connection, &resource_type, &id)?.is_some() {
                return Err(StoreError::Invalid(format!(
                    "{resource_type}/{id} already exists"
                )));
            }
            let (version, rid) = insert(
                connection,
                clock,
                keys,
                NewVersion {
                    resource_type: resource_type.as_str(),
                    id: id.as_str(),
                    version: 1,
                    method: Method::Create,
                    body: Some(&body),
                    created: true,
                    rid: None,
                },
            )?;
            index::insert(connection, params, &resource_type, rid, &rows, &pids)?;
            index::insert_text(connection, rid, text.as_ref())?;
            Ok(Written {
                version: Some(version),
                created: true,
            })
        }
        Prepared::Update {
            resource_type,
            id,
            body,
            if_match,
            method,
        } => {
            let current = current(connection, &resource_type, &id)?;
            check_if_match(if_match, current.as_ref())?;
            let created = current.as_ref().is_none_or(|c| c.deleted);
            if let Some(live) = current.as_ref().filter(|c| !c.deleted) {
                index::remove(connection, live.rid)?;
            }
            let current_rid = current.as_ref().map(|c| c.rid);
            let next = current.map_or(1, |c| c.version + 1);
            let (version, rid) = insert(
                connection,
                clock,
                keys,
                NewVersion {
                    resource_type: resource_type.as_str(),
                    id: id.as_str(),
                    version: next,
                    method,
                    body: Some(&body),
                    created,
                    rid: current_rid,
                },
            )?;
            index::insert(connection, params, &resource_type, rid, &rows, &pids)?;
            index::insert_text(connection, rid, text.as_ref())?;
            Ok(Written {
                version: Some(version),
                created,
            })
        }
        Prepared::Delete {
            resource_type,
            id,
            if_match,
        } => {
            let current = current(connection, &resource_type, &id)?;
            check_if_match(if_match, current.as_ref())?;
            let Some(current) = current.filter(|c| !c.deleted) else {
                return Ok(Written {
                    version: None,
                    created: false,
                });
            };
            index::remove(connection, current.rid)?;
            let (version, _) = insert(
                connection,
                clock,
                keys,
                NewVersion {
                    resource_type: resource_type.as_str(),
                    id: id.as_str(),
                    version: current.version + 1,
                    method: Method::Delete,
                    body: None,
                    created: false,
                    rid: Some(current.rid),
                },
            )?;
            Ok(Written {
                version: Some(version),
                created: false,
            })
        }
    }
}

/// One version to write.
struct NewVersion<'a> {
    resource_type: &'a str,
    id: &'a str,
    version: u64,
    method: Method,
    /// `None` for a deletion.
    body: Option<&'a Template>,
    created: bool,
    /// The resource's rid, when it has a row in `resource` already.
    rid: Option<i64>,
}

/// Writes the version and points the resource at it; returns it with the resource's rid.
fn insert(
    connection: &Connection,
    clock: &mut Clock,
    keys: &Keyring,
    new: NewVersion<'_>,
) -> Result<(Version, i64), StoreError> {
    let NewVersion {
        resource_type,
        id,
        version,
        method,
        body,
        created,
        rid,
    } = new;
    let last_updated = clock.tick();
    let body = body.map(|template| template.render(version, last_updated));
    // Sealed bodies are BLOBs; plain ones stay TEXT.
    let sealed = match &body {
        Some(body) => keys.seal(body)?,
        None => None,
    };
    let stored = match (&sealed, &body) {
        (Some(sealed), _) => ValueRef::Blob(sealed),
        (None, Some(body)) => ValueRef::Text(body.as_bytes()),
        (None, None) => ValueRef::Null,
    };
    let version_number = i64::try_from(version)
        .map_err(|_| StoreError::Invalid(format!("version {version} is out of range")))?;
    connection
        .prepare_cached(
            "INSERT INTO resource_version (type, id, version, last_updated, method, body, created)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute((
            resource_type,
            id,
            version_number,
            last_updated.0,
            method.verb(),
            ToSqlOutput::Borrowed(stored),
            created,
        ))?;
    let seq = connection.last_insert_rowid();
    // Two plain statements rather than an upsert with RETURNING, which costs a
    // statement journal per write.
    let rid = match rid {
        Some(rid) => {
            connection
                .prepare_cached(
                    "UPDATE resource SET version = ?2, seq = ?3, deleted = ?4, last_updated = ?5
                     WHERE rid = ?1",
                )?
                .execute((rid, version_number, seq, body.is_none(), last_updated.0))?;
            rid
        }
        None => {
            connection
                .prepare_cached(
                    "INSERT INTO resource (type, id, version, seq, deleted, last_updated)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute((
                    resource_type,
                    id,
                    version_number,
                    seq,
                    body.is_none(),
                    last_updated.0,
                ))?;
            connection.last_insert_rowid()
        }
    };
    let version = Version {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version,
        last_updated,
        method,
        body,
        created,
    };
    Ok((version, rid))
}
