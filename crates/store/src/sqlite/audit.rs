//! The audit trail on SQLite (see `crate::audit`): appends run on the writer thread,
//! in the transaction of the writes they record; reads on a reader connection.

use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};

use super::SqliteStore;
use crate::StoreError;
use crate::audit::{
    AuditPage, AuditQuery, AuditRecord, ChainCheck, StoredAudit, VERIFY_PAGE, Verification,
    chain_all, where_clause,
};

const COLUMNS: &str = "seq, recorded, type, subtype, action, outcome, severity, agent, patient, \
                       purpose, entity, body, prev_hash, hash";

/// Appends `records` to the chain; the caller's transaction commits them.
pub(super) fn append(connection: &Connection, records: &[AuditRecord]) -> Result<(), StoreError> {
    if records.is_empty() {
        return Ok(());
    }
    let (head, upto): ((i64, String), i64) = connection
        .prepare_cached(
            "SELECT h.seq, h.hash, k.upto FROM audit_head h, audit_key_head k
             WHERE h.id = 1 AND k.id = 1",
        )?
        .query_row([], |row| Ok(((row.get(0)?, row.get(1)?), row.get(2)?)))?;
    let (rows, (seq, hash)) = chain_all(records, head)?;
    let mut insert = connection.prepare_cached(
        "INSERT INTO audit_event (seq, recorded, type, subtype, action, outcome, severity, agent,
             patient, purpose, entity, body, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    for row in &rows {
        insert.execute(rusqlite::params![
            row.seq,
            row.recorded,
            row.type_code,
            row.subtype,
            row.action,
            row.outcome,
            row.severity,
            row.agent,
            row.patient,
            row.purpose,
            row.entity,
            row.body,
            row.prev_hash,
            row.hash,
        ])?;
    }
    connection
        .prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?
        .execute((seq, hash))?;
    if seq - upto >= KEY_BATCH {
        index_keys(connection, upto, seq)?;
    }
    Ok(())
}

/// Records appended between two fillings of `audit_key`. A row index on the patient
/// dirtied one page per patient in every commit; filled in sorted batches, each page of
/// `audit_key` is written about once a batch. Searches scan the rows after the batch.
const KEY_BATCH: i64 = 16_384;

/// Adds the patient and agent keys of the records after `upto`, up to `seq`, in key
/// order.
fn index_keys(connection: &Connection, upto: i64, seq: i64) -> Result<(), StoreError> {
    connection
        .prepare_cached(
            "INSERT INTO audit_key (key, seq)
             SELECT key, seq FROM (
                 SELECT 'p' || patient AS key, seq FROM audit_event
                     WHERE seq > ?1 AND seq <= ?2 AND patient IS NOT NULL
                 UNION ALL
                 SELECT 'a' || agent AS key, seq FROM audit_event WHERE seq > ?1 AND seq <= ?2
             ) ORDER BY key, seq",
        )?
        .execute((upto, seq))?;
    connection
        .prepare_cached("UPDATE audit_key_head SET upto = ?1 WHERE id = 1")?
        .execute([seq])?;
    Ok(())
}

fn stored_from_row(row: &Row<'_>) -> Result<StoredAudit, rusqlite::Error> {
    Ok(StoredAudit {
        seq: row.get(0)?,
        recorded: row.get(1)?,
        type_code: row.get(2)?,
        subtype: row.get(3)?,
        action: row.get(4)?,
        outcome: row.get(5)?,
        severity: row.get(6)?,
        agent: row.get(7)?,
        patient: row.get(8)?,
        purpose: row.get(9)?,
        entity: row.get(10)?,
        body: row.get(11)?,
        prev_hash: row.get(12)?,
        hash: row.get(13)?,
    })
}

impl SqliteStore {
    pub(crate) fn audit_read(&self, seq: i64) -> Result<Option<String>, StoreError> {
        let stored = self.with_reader(|connection| {
            connection
                .prepare_cached(&format!("SELECT {COLUMNS} FROM audit_event WHERE seq = ?1"))?
                .query_row([seq], stored_from_row)
                .optional()
        })?;
        Ok(stored.map(|stored| stored.render()))
    }

    pub(crate) fn audit_search(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let (clause, args) = where_clause(
            query,
            &|n| format!("?{n}"),
            &|slot| format!("CAST({slot} AS INTEGER)"),
            true,
        );
        let order = if query.oldest_first { "ASC" } else { "DESC" };
        let limit = i64::try_from(query.count)
            .unwrap_or(i64::MAX)
            .saturating_add(1);
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_event {clause} ORDER BY seq {order} LIMIT {limit}"
        );
        let rows: Vec<StoredAudit> = self.with_reader(|connection| {
            let mut statement = connection.prepare(&sql)?;
            let rows = statement.query_map(params_from_iter(args.iter()), stored_from_row)?;
            rows.collect()
        })?;
        let mut records: Vec<(i64, String)> =
            rows.iter().map(|row| (row.seq, row.render())).collect();
        let next = if records.len() > query.count {
            records.truncate(query.count);
            records.last().map(|(seq, _)| *seq)
        } else {
            None
        };
        Ok(AuditPage { records, next })
    }

    pub(crate) fn audit_verify(&self) -> Result<Verification, StoreError> {
        let connection = super::schema::open_reader(&self.path)?;
        // One snapshot for the whole walk, so appends meanwhile do not look like a
        // broken head.
        connection.execute_batch("BEGIN")?;
        let mut check = ChainCheck::new();
        let mut after = 0i64;
        loop {
            let rows: Vec<StoredAudit> = {
                let mut statement = connection.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM audit_event WHERE seq > ?1 ORDER BY seq LIMIT ?2"
                ))?;
                let rows = statement.query_map((after, VERIFY_PAGE), stored_from_row)?;
                rows.collect::<Result<_, _>>()?
            };
            let Some(last) = rows.last() else { break };
            after = last.seq;
            if !rows.iter().all(|row| check.next(row)) {
                break;
            }
        }
        let head: (i64, String) =
            connection.query_row("SELECT seq, hash FROM audit_head WHERE id = 1", [], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
        connection.execute_batch("COMMIT")?;
        Ok(check.finish(head))
    }
}
