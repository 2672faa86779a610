//! The embedded SQLite backend.
//!
//! One writer thread owns the only writing connection and commits writes in groups
//! (see `writer`); readers take connections from a small pool and never block it (WAL).

mod audit;
mod auth;
mod disclosure;
mod index;
mod keys;
mod params;
mod reader;
pub(crate) mod scan;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use rusqlite::types::{Type, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};
use tokio::sync::oneshot;

use self::reader::SqliteReader;
use crate::audit::{AuditBatch, AuditRecord};
use crate::crypt::{Keyring, MasterKey};
use crate::prepared::Indexed;
use crate::{
    HistoryPage, HistoryQuery, HistoryScope, Instant, Method, StoreError, TransactionError,
    Version, Write, Written, query,
};

/// The database file inside a data directory.
const FILE_NAME: &str = "custodian.db";
/// Readers kept open between requests; more may open under load, and close after.
const READERS_KEPT: usize = 8;

pub(crate) struct SqliteStore {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    jobs: SyncSender<writer::Job>,
    params: params::ParamIds,
    /// Opens stored bodies (and, in the writer, seals new ones).
    keys: Arc<Keyring>,
}

impl SqliteStore {
    /// Opens the store at `path`; `bulk` asks for a bulk load (see
    /// [`crate::Store::open_bulk`]).
    pub(crate) fn open(
        path: &Path,
        bulk: bool,
        master: Option<&MasterKey>,
    ) -> Result<SqliteStore, StoreError> {
        let path = resolve_path(path)?;
        let connection = Connection::open(&path).map_err(|error| {
            StoreError::Config(format!("cannot open {}: {error}", path.display()))
        })?;
        schema::prepare_writer(&connection)?;
        schema::migrate(&connection)?;
        let keys = Arc::new(keys::keyring(&connection, master)?);
        let params = params::ParamIds::default();
        index::reindex_pending(&connection, &params, &keys)?;
        audit::index_pending(&connection)?;
        if !(bulk && schema::drop_value_indexes_if_empty(&connection)?) {
            schema::ensure_value_indexes(&connection)?;
        }
        let jobs = writer::start(connection, params.clone(), keys.clone())?;
        Ok(SqliteStore {
            path,
            readers: Mutex::new(Vec::new()),
            jobs,
            params,
            keys,
        })
    }

    pub(crate) fn data_dir(&self) -> Option<PathBuf> {
        self.path.parent().map(Path::to_path_buf)
    }

    pub(crate) async fn write(
        &self,
        write: Write,
        audit: Vec<AuditRecord>,
    ) -> Result<Written, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(writer::Job::One {
                write: Indexed::new(write, &self.params),
                audit: AuditBatch::from(audit),
                reply,
            })
            .map_err(|_| StoreError::Backend("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the writer dropped a write".into()))?
    }

    #[cfg(test)]
    pub(crate) async fn write_indexed(
        &self,
        write: Write,
        rows: Vec<::search::IndexRow>,
    ) -> Result<Written, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(writer::Job::One {
                write: Indexed::with_rows(write, rows),
                audit: AuditBatch::new(),
                reply,
            })
            .map_err(|_| StoreError::Backend("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the writer dropped a write".into()))?
    }

    pub(crate) async fn write_all(
        &self,
        writes: Vec<Write>,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<Written>, TransactionError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(writer::Job::All {
                writes: writes
                    .into_iter()
                    .map(|write| Indexed::new(write, &self.params))
                    .collect(),
                audit: AuditBatch::from(audit),
                reply,
            })
            .map_err(|_| StoreError::Backend("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the writer dropped a write".into()))?
    }

    /// Appends audit records in a commit of their own (shared with other writes).
    pub(crate) async fn audit_append(
        &self,
        batch: std::sync::Arc<AuditBatch>,
    ) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(writer::Job::Audit { batch, reply })
            .map_err(|_| StoreError::Backend("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the writer dropped an audit record".into()))?
    }

    pub(crate) fn search(
        &self,
        request: &crate::SearchRequest,
    ) -> Result<crate::SearchPage, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let connection = match pooled {
            Some(connection) => connection,
            None => schema::open_reader(&self.path)?,
        };
        // One read transaction: the page, its total and its includes see one snapshot.
        let result = connection
            .execute_batch("BEGIN")
            .map_err(StoreError::from)
            .and_then(|()| {
                query::search(
                    &SqliteReader::new(&connection, &self.params, &self.keys),
                    request,
                )
            });
        let ended = connection.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
        if ended.is_ok() {
            self.give_back(connection);
        }
        result
    }

    /// Returns a reader to the pool, unless the pool is full (then it closes, and its
    /// page cache goes with it).
    fn give_back(&self, connection: Connection) {
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < READERS_KEPT
        {
            pool.push(connection);
        }
    }

    pub(crate) fn explain_search(
        &self,
        request: &crate::SearchRequest,
    ) -> Result<String, StoreError> {
        let connection = schema::open_reader(&self.path)?;
        query::explain(
            &SqliteReader::new(&connection, &self.params, &self.keys),
            request,
        )
    }

    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, StoreError> {
        let pooled = self.readers.lock().ok().and_then(|mut pool| pool.pop());
        let connection = match pooled {
            Some(connection) => connection,
            None => schema::open_reader(&self.path)?,
        };
        let result = f(&connection);
        self.give_back(connection);
        Ok(result?)
    }

    pub(crate) fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Version>, StoreError> {
        self.with_reader(|connection| {
            connection
                .prepare_cached(
                    // A scalar subquery, not a join: SQLite re-prepares the join form
                    // on every new binding, which costs more than the lookup itself.
                    "SELECT type, id, version, last_updated, method, body, created FROM resource_version
                     WHERE seq = (SELECT seq FROM resource WHERE type = ?1 AND id = ?2)",
                )?
                .query_row((resource_type, id), |row| version_from_row(row, &self.keys))
                .optional()
        })
    }

    pub(crate) fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> Result<Option<Version>, StoreError> {
        let Ok(version) = i64::try_from(version) else {
            return Ok(None);
        };
        self.with_reader(|connection| {
            connection
                .prepare_cached(
                    "SELECT type, id, version, last_updated, method, body, created
                     FROM resource_version WHERE type = ?1 AND id = ?2 AND version = ?3",
                )?
                .query_row((resource_type, id, version), |row| {
                    version_from_row(row, &self.keys)
                })
                .optional()
        })
    }

    pub(crate) fn current_of_type(
        &self,
        resource_type: &str,
        limit: usize,
    ) -> Result<Vec<Version>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|connection| {
            let mut statement = connection.prepare_cached(
                "SELECT v.type, v.id, v.version, v.last_updated, v.method, v.body, v.created
                 FROM resource r, resource_version v
                 WHERE r.type = ?1 AND r.deleted = 0 AND v.seq = r.seq
                 ORDER BY r.id LIMIT ?2",
            )?;
            let rows = statement.query_map((resource_type, limit), |row| {
                version_from_row(row, &self.keys)
            })?;
            rows.collect()
        })
    }

    pub(crate) fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        self.with_reader(|connection| {
            let mut filters = Vec::new();
            let mut args: Vec<SqlValue> = Vec::new();
            match &query.scope {
                HistoryScope::System => {}
                HistoryScope::Type(resource_type) => {
                    filters.push("v.type = ?".to_string());
                    args.push(SqlValue::Text(resource_type.clone()));
                }
                HistoryScope::Instance(resource_type, id) => {
                    filters.push("v.type = ? AND v.id = ?".to_string());
                    args.push(SqlValue::Text(resource_type.clone()));
                    args.push(SqlValue::Text(id.clone()));
                }
            }
            if let Some(since) = query.since {
                // Instants grow with the change sequence, so `_since` is a sequence bound.
                let first_seq: Option<i64> = connection
                    .prepare_cached(
                        "SELECT min(seq) FROM resource_version WHERE last_updated >= ?1",
                    )?
                    .query_row([since.0], |row| row.get(0))?;
                filters.push("v.seq >= ?".to_string());
                args.push(SqlValue::Integer(first_seq.unwrap_or(i64::MAX)));
            }
            if let Some(at) = query.at {
                filters.push(
                    "v.last_updated < ? AND coalesce((SELECT n.last_updated FROM resource_version n
                       WHERE n.type = v.type AND n.id = v.id AND n.version = v.version + 1), ?) > ?"
                        .to_string(),
                );
                args.push(SqlValue::Integer(at.end.0));
                args.push(SqlValue::Integer(i64::MAX));
                args.push(SqlValue::Integer(at.start.0));
            }
            let where_clause = |extra: Option<&str>| {
                let mut all: Vec<&str> = filters.iter().map(String::as_str).collect();
                all.extend(extra);
                if all.is_empty() {
                    String::new()
                } else {
                    format!("WHERE {}", all.join(" AND "))
                }
            };

            let total: i64 = connection
                .prepare(&format!(
                    "SELECT count(*) FROM resource_version v {}",
                    where_clause(None)
                ))?
                .query_row(params_from_iter(args.iter()), |row| row.get(0))?;

            let mut page_args = args.clone();
            let cursor_filter = query.before.map(|before| {
                page_args.push(SqlValue::Integer(before));
                "v.seq < ?"
            });
            let limit = i64::try_from(query.count)
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            page_args.push(SqlValue::Integer(limit));
            let mut statement = connection.prepare(&format!(
                "SELECT v.type, v.id, v.version, v.last_updated, v.method, v.body, v.created, v.seq
                 FROM resource_version v {} ORDER BY v.seq DESC LIMIT ?",
                where_clause(cursor_filter)
            ))?;
            let mut rows = statement.query(params_from_iter(page_args.iter()))?;
            let mut versions = Vec::new();
            let mut next_cursor = None;
            while let Some(row) = rows.next()? {
                if versions.len() == query.count {
                    next_cursor = versions.last().map(|(seq, _)| *seq);
                    break;
                }
                versions.push((row.get::<_, i64>(7)?, version_from_row(row, &self.keys)?));
            }
            Ok(HistoryPage {
                versions: versions.into_iter().map(|(_, version)| version).collect(),
                total: u64::try_from(total).unwrap_or(0),
                next_cursor,
            })
        })
    }
}

fn version_from_row(row: &Row<'_>, keys: &Keyring) -> Result<Version, rusqlite::Error> {
    let version: i64 = row.get(2)?;
    let method: String = row.get(4)?;
    Ok(Version {
        resource_type: row.get(0)?,
        id: row.get(1)?,
        version: u64::try_from(version).unwrap_or(0),
        last_updated: Instant(row.get(3)?),
        method: Method::from_verb(&method),
        body: body_at(row, 5, keys)?,
        created: row.get(6)?,
    })
}

/// A body column as text: plain JSON (TEXT) as it is, a sealed body (BLOB) opened.
fn body_at(row: &Row<'_>, index: usize, keys: &Keyring) -> Result<Option<String>, rusqlite::Error> {
    let stored = match row.get_ref(index)? {
        ValueRef::Null => return Ok(None),
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => bytes,
        other => {
            return Err(rusqlite::Error::InvalidColumnType(
                index,
                "body".into(),
                other.data_type(),
            ));
        }
    };
    keys.open_body(stored).map(Some).map_err(|error| {
        rusqlite::Error::FromSqlConversionFailure(index, Type::Blob, Box::new(error))
    })
}

/// Applies pending migrations (and the index work they queue); returns the schema
/// version before and after.
pub(crate) fn migrate(path: &Path, options: &crate::Options) -> Result<(u32, u32), StoreError> {
    let file = resolve_path(path)?;
    let version = || -> Result<u32, StoreError> {
        let version: i64 =
            Connection::open(&file)?.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        Ok(u32::try_from(version).unwrap_or(0))
    };
    let before = version()?;
    drop(SqliteStore::open(path, false, options.master_key.as_ref())?);
    Ok((before, version()?))
}

/// `PATH` names the database file, or a directory to keep it in.
fn resolve_path(path: &Path) -> Result<PathBuf, StoreError> {
    let is_file_name = path
        .extension()
        .is_some_and(|ext| ext == "db" || ext == "sqlite" || ext == "sqlite3");
    let file = if path.is_dir() || !is_file_name {
        std::fs::create_dir_all(path).map_err(|error| {
            StoreError::Config(format!("cannot create {}: {error}", path.display()))
        })?;
        path.join(FILE_NAME)
    } else {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Config(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        path.to_path_buf()
    };
    Ok(file)
}
