//! Index rows in the index tables: written with the version they index, in the same
//! transaction, and only for current, not deleted, versions.

use rusqlite::{CachedStatement, Connection};
use search::{IndexRow, IndexValue};

use super::params::ParamIds;
use super::schema::INDEX_TABLES;
use crate::StoreError;
use crate::crypt::Keyring;
use crate::prepared::{indexable, key_pairs};

/// Resources reindexed per transaction when the store opens.
const REINDEX_BATCH: i64 = 1000;

/// Removes every index row of a resource.
pub(super) fn remove(connection: &Connection, rid: i64) -> Result<(), rusqlite::Error> {
    for table in INDEX_TABLES {
        connection
            .prepare_cached(&format!("DELETE FROM {table} WHERE rid = ?1"))?
            .execute([rid])?;
    }
    connection
        .prepare_cached("DELETE FROM sp_text WHERE rowid = ?1")?
        .execute([rid])?;
    Ok(())
}

/// Indexes the narrative and content text of the resource `rid`.
pub(super) fn insert_text(
    connection: &Connection,
    rid: i64,
    text: Option<&search::FullText>,
) -> Result<(), rusqlite::Error> {
    let Some(text) = text.filter(|t| !t.narrative.is_empty() || !t.content.is_empty()) else {
        return Ok(());
    };
    connection
        .prepare_cached("INSERT INTO sp_text (rowid, narrative, content) VALUES (?1, ?2, ?3)")?
        .execute((rid, &text.narrative, &text.content))?;
    Ok(())
}

const INSERT_STRING: &str = "INSERT OR IGNORE INTO sp_string (rid, pid, value, exact, grp)
     VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_TOKEN: &str = "INSERT OR IGNORE INTO sp_token (rid, pid, code, system, grp)
     VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_REFERENCE: &str =
    "INSERT OR IGNORE INTO sp_reference (rid, pid, target_id, target_type, url, grp)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
const INSERT_DATE: &str = "INSERT OR IGNORE INTO sp_date (rid, pid, low, high, grp)
     VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_NUMBER: &str = "INSERT OR IGNORE INTO sp_number (rid, pid, low, high, grp)
     VALUES (?1, ?2, ?3, ?4, ?5)";
const INSERT_QUANTITY: &str =
    "INSERT OR IGNORE INTO sp_quantity (rid, pid, code, system, low, high, grp)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
const INSERT_URI: &str =
    "INSERT OR IGNORE INTO sp_uri (rid, pid, uri, grp) VALUES (?1, ?2, ?3, ?4)";

/// The insert statements of one resource's rows, each taken from the statement cache
/// the first time a row needs it rather than for every row.
struct Inserts<'c> {
    connection: &'c Connection,
    statements: [Option<CachedStatement<'c>>; 7],
}

impl<'c> Inserts<'c> {
    fn new(connection: &'c Connection) -> Inserts<'c> {
        Inserts {
            connection,
            statements: Default::default(),
        }
    }

    fn statement(
        &mut self,
        slot: usize,
        sql: &'static str,
    ) -> Result<&mut CachedStatement<'c>, rusqlite::Error> {
        let statement = &mut self.statements[slot];
        if statement.is_none() {
            *statement = Some(self.connection.prepare_cached(sql)?);
        }
        statement.as_mut().ok_or(rusqlite::Error::InvalidQuery)
    }
}

/// Inserts `rows` for the resource `rid`. `pids` holds the pid of each row's key where
/// the caller found it cached; the others must have one by now
/// ([`ParamIds::ensure_committed`]). Repeated values are kept once. Values no search
/// can match (a range whose low end is above its high end, NaN) are left out.
pub(super) fn insert(
    connection: &Connection,
    params: &ParamIds,
    resource_type: &str,
    rid: i64,
    rows: &[IndexRow],
    pids: &[Option<i64>],
) -> Result<(), StoreError> {
    let mut inserts = Inserts::new(connection);
    for (at, row) in rows.iter().enumerate() {
        if !indexable(&row.value) {
            continue;
        }
        let known = pids.get(at).copied().flatten();
        let Some(pid) = known.or_else(|| params.cached(resource_type, &row.key)) else {
            return Err(StoreError::Backend(format!(
                "no search parameter id for {resource_type} {}",
                row.key
            )));
        };
        let grp = i64::from(row.group);
        match &row.value {
            IndexValue::String { normalized, exact } => {
                inserts
                    .statement(0, INSERT_STRING)?
                    .execute((rid, pid, normalized, exact, grp))?;
            }
            IndexValue::Token { system, code } => {
                inserts.statement(1, INSERT_TOKEN)?.execute((
                    rid,
                    pid,
                    code.as_deref().unwrap_or(""),
                    system.as_deref().unwrap_or(""),
                    grp,
                ))?;
            }
            IndexValue::Reference {
                resource_type: target_type,
                id,
                url,
            } => {
                inserts.statement(2, INSERT_REFERENCE)?.execute((
                    rid,
                    pid,
                    id.as_deref().unwrap_or(""),
                    target_type.as_deref().unwrap_or(""),
                    url.as_deref().unwrap_or(""),
                    grp,
                ))?;
            }
            IndexValue::Date(range) => {
                inserts
                    .statement(3, INSERT_DATE)?
                    .execute((rid, pid, range.low, range.high, grp))?;
            }
            IndexValue::Number(range) => {
                inserts
                    .statement(4, INSERT_NUMBER)?
                    .execute((rid, pid, range.low, range.high, grp))?;
            }
            IndexValue::Quantity {
                range,
                system,
                code,
            } => {
                inserts.statement(5, INSERT_QUANTITY)?.execute((
                    rid,
                    pid,
                    code.as_deref().unwrap_or(""),
                    system.as_deref().unwrap_or(""),
                    range.low,
                    range.high,
                    grp,
                ))?;
            }
            IndexValue::Uri(uri) => {
                inserts
                    .statement(6, INSERT_URI)?
                    .execute((rid, pid, uri, grp))?;
            }
        }
    }
    Ok(())
}

/// One resource being reindexed.
struct Reindexed<'a> {
    rid: i64,
    resource_type: &'a str,
    rows: Vec<IndexRow>,
    text: Option<search::FullText>,
}

/// Indexes the resources queued in `search_reindex` (those stored before search
/// existed), a batch per transaction, on the writing connection before the writer starts.
pub(super) fn reindex_pending(
    connection: &Connection,
    params: &ParamIds,
    keys: &Keyring,
) -> Result<(), StoreError> {
    loop {
        let batch: Vec<(i64, String, Option<String>)> = {
            let mut statement = connection.prepare_cached(
                "SELECT q.rid, r.type, CASE WHEN r.deleted THEN NULL
                   ELSE (SELECT body FROM resource_version WHERE seq = r.seq) END
                 FROM search_reindex q LEFT JOIN resource r ON r.rid = q.rid
                 ORDER BY q.rid LIMIT ?1",
            )?;
            let rows = statement.query_map([REINDEX_BATCH], |row| {
                Ok((
                    row.get(0)?,
                    row.get::<_, Option<String>>(1)?.unwrap_or_default(),
                    super::body_at(row, 2, keys)?,
                ))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let Some(&(last, _, _)) = batch.last() else {
            return Ok(());
        };
        let indexed: Vec<Reindexed<'_>> = batch
            .iter()
            .map(|(rid, resource_type, body)| {
                let value = body
                    .as_deref()
                    .and_then(|body| serde_json::from_str::<serde_json::Value>(body).ok());
                Reindexed {
                    rid: *rid,
                    resource_type: resource_type.as_str(),
                    rows: value.as_ref().map(search::index).unwrap_or_default(),
                    text: value.as_ref().map(search::full_text),
                }
            })
            .collect();
        let pairs: Vec<(&str, &str)> = indexed
            .iter()
            .flat_map(|one| key_pairs(one.resource_type, one.rows.iter()))
            .collect();
        params.ensure_committed(connection, &pairs)?;
        connection.execute_batch("BEGIN IMMEDIATE")?;
        let result = (|| {
            for one in &indexed {
                remove(connection, one.rid)?;
                insert(
                    connection,
                    params,
                    one.resource_type,
                    one.rid,
                    &one.rows,
                    &[],
                )?;
                insert_text(connection, one.rid, one.text.as_ref())?;
            }
            connection
                .prepare_cached("DELETE FROM search_reindex WHERE rid <= ?1")?
                .execute([last])?;
            Ok::<_, StoreError>(())
        })();
        match result {
            Ok(()) => connection.execute_batch("COMMIT")?,
            Err(error) => {
                let _ = connection.execute_batch("ROLLBACK");
                return Err(error);
            }
        }
    }
}
