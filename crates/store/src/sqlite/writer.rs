//! The writer thread: group commit.
//!
//! Writes queue on a channel. The writer takes every write waiting, applies each in
//! its own savepoint (a failed write rolls back alone), commits once, syncs once, and
//! only then answers each caller. Writers that arrive during a sync share the next one.

use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};

use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value};
use tokio::sync::oneshot;

use crate::resource::stamp;
use crate::{Instant, Method, StoreError, Version, Write, Written};

/// Most writes in one commit.
const MAX_GROUP: usize = 512;
/// Writes that may wait for the writer before callers are held back.
const QUEUE: usize = 4096;

pub(super) struct Job {
    pub(super) write: Write,
    pub(super) reply: oneshot::Sender<Result<Written, StoreError>>,
}

pub(super) fn start(connection: Connection) -> Result<SyncSender<Job>, StoreError> {
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
        .spawn(move || run(connection, queue, clock))
        .map_err(|error| StoreError::Backend(format!("cannot start the writer: {error}")))?;
    Ok(jobs)
}

/// Hands out strictly increasing instants, so history order is time order.
struct Clock {
    last: Instant,
}

impl Clock {
    fn observe(&mut self, newest: Instant) {
        self.last = self.last.max(newest);
    }

    fn tick(&mut self) -> Instant {
        let now = Instant::now();
        self.last = if now > self.last {
            now
        } else {
            Instant(self.last.0 + 1)
        };
        self.last
    }
}

fn run(connection: Connection, queue: Receiver<Job>, mut clock: Clock) {
    while let Ok(first) = queue.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let (writes, replies): (Vec<Write>, Vec<_>) =
            group.into_iter().map(|job| (job.write, job.reply)).unzip();
        let results = commit_group(&connection, &mut clock, writes);
        for (reply, result) in replies.into_iter().zip(results) {
            // A caller that went away still had its write committed; nothing to tell.
            let _ = reply.send(result);
        }
    }
}

fn commit_group(
    connection: &Connection,
    clock: &mut Clock,
    writes: Vec<Write>,
) -> Vec<Result<Written, StoreError>> {
    let count = writes.len();
    if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
        let error = StoreError::from(error);
        return (0..count).map(|_| Err(error.clone())).collect();
    }
    // Another process may have written to this file: never hand out an instant older
    // than the newest one stored, so history order stays time order.
    let newest: Result<Option<i64>, _> = connection
        .prepare_cached("SELECT max(last_updated) FROM resource_version")
        .and_then(|mut statement| statement.query_row([], |row| row.get(0)));
    if let Ok(Some(newest)) = newest {
        clock.observe(Instant(newest));
    }
    let mut results = Vec::with_capacity(count);
    for write in writes {
        let result = in_savepoint(connection, |connection| apply(connection, clock, write));
        results.push(result);
    }
    if let Err(error) = connection.execute_batch("COMMIT") {
        tracing::error!(%error, "commit failed; rolling back the group");
        let _ = connection.execute_batch("ROLLBACK");
        let error = StoreError::from(error);
        return (0..count).map(|_| Err(error.clone())).collect();
    }
    results
}

fn in_savepoint(
    connection: &Connection,
    f: impl FnOnce(&Connection) -> Result<Written, StoreError>,
) -> Result<Written, StoreError> {
    connection.execute_batch("SAVEPOINT write")?;
    let result = f(connection);
    let end = if result.is_ok() {
        "RELEASE write"
    } else {
        "ROLLBACK TO write; RELEASE write"
    };
    connection.execute_batch(end)?;
    result
}

struct Current {
    version: u64,
    deleted: bool,
}

fn current(
    connection: &Connection,
    resource_type: &str,
    id: &str,
) -> Result<Option<Current>, StoreError> {
    let row = connection
        .prepare_cached("SELECT version, deleted FROM resource WHERE type = ?1 AND id = ?2")?
        .query_row((resource_type, id), |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, bool>(1)?))
        })
        .optional()?;
    Ok(row.map(|(version, deleted)| Current {
        version: u64::try_from(version).unwrap_or(0),
        deleted,
    }))
}

fn check_if_match(if_match: Option<u64>, current: Option<&Current>) -> Result<(), StoreError> {
    match (if_match, current) {
        (Some(expected), Some(current)) if expected != current.version => {
            Err(StoreError::VersionMismatch {
                expected,
                current: Some(current.version),
            })
        }
        (Some(expected), None) => Err(StoreError::VersionMismatch {
            expected,
            current: None,
        }),
        _ => Ok(()),
    }
}

fn resource_type_of(resource: &Map<String, Value>) -> Result<String, StoreError> {
    match resource.get("resourceType") {
        Some(Value::String(resource_type)) => Ok(resource_type.clone()),
        _ => Err(StoreError::Invalid(
            "the resource has no resourceType".into(),
        )),
    }
}

fn apply(connection: &Connection, clock: &mut Clock, write: Write) -> Result<Written, StoreError> {
    match write {
        Write::Create { resource } => {
            let resource_type = resource_type_of(&resource)?;
            let id = uuid::Uuid::now_v7().to_string();
            let version = insert(
                connection,
                clock,
                NewVersion {
                    resource_type: resource_type.as_str(),
                    id: id.as_str(),
                    version: 1,
                    method: Method::Create,
                    resource: Some(resource),
                    created: true,
                },
            )?;
            Ok(Written {
                version: Some(version),
                created: true,
            })
        }
        Write::Update {
            resource_type,
            id,
            resource,
            if_match,
            method,
        } => {
            if resource_type_of(&resource)? != resource_type {
                return Err(StoreError::Invalid(format!(
                    "the resource is not a {resource_type}"
                )));
            }
            let current = current(connection, &resource_type, &id)?;
            check_if_match(if_match, current.as_ref())?;
            let created = current.as_ref().is_none_or(|c| c.deleted);
            let next = current.map_or(1, |c| c.version + 1);
            let version = insert(
                connection,
                clock,
                NewVersion {
                    resource_type: resource_type.as_str(),
                    id: id.as_str(),
                    version: next,
                    method,
                    resource: Some(resource),
                    created,
                },
            )?;
            Ok(Written {
                version: Some(version),
                created,
            })
        }
        Write::Delete {
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
            let version = insert(
                connection,
                clock,
                NewVersion {
                    resource_type: resource_type.as_str(),
                    id: id.as_str(),
                    version: current.version + 1,
                    method: Method::Delete,
                    resource: None,
                    created: false,
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
    resource: Option<Map<String, Value>>,
    created: bool,
}

fn insert(
    connection: &Connection,
    clock: &mut Clock,
    new: NewVersion<'_>,
) -> Result<Version, StoreError> {
    let NewVersion {
        resource_type,
        id,
        version,
        method,
        resource,
        created,
    } = new;
    let last_updated = clock.tick();
    let body = match resource {
        Some(resource) => {
            let stamped = stamp(resource, id, version, last_updated);
            Some(
                serde_json::to_string(&Value::Object(stamped))
                    .map_err(|error| StoreError::Invalid(error.to_string()))?,
            )
        }
        None => None,
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
            body.as_deref(),
            created,
        ))?;
    let seq = connection.last_insert_rowid();
    connection
        .prepare_cached(
            "INSERT INTO resource (type, id, version, seq, deleted) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (type, id) DO UPDATE
             SET version = excluded.version, seq = excluded.seq, deleted = excluded.deleted",
        )?
        .execute((resource_type, id, version_number, seq, body.is_none()))?;
    Ok(Version {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version,
        last_updated,
        method,
        body,
        created,
    })
}
