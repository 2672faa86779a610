//! The audit trail on SQLite (see `crate::audit`): appends run on the writer thread,
//! in the transaction of the writes they record; reads on a reader connection.

use std::fmt::Write as _;

use rusqlite::{Connection, OptionalExtension, Row, params_from_iter};

use super::SqliteStore;
use crate::StoreError;
use crate::audit::{
    AuditBatch, AuditPage, AuditQuery, ChainCheck, KeyKind, StoredAudit, VERIFY_PAGE, Verification,
    chain_batch, lookup_key, where_clause,
};

const COLUMNS: &str = "seq, recorded, type, subtype, action, outcome, severity, agent, patient, \
                       purpose, entity, body, prev_hash, hash";

/// Appends the records of `batch` to the chain; the caller's transaction commits them.
/// Each row is inserted from the batch in place (see `crate::audit::chain_batch`).
pub(super) fn append(connection: &Connection, batch: &AuditBatch) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let (head, head_hash, upto): (i64, String, i64) = connection
        .prepare_cached(
            "SELECT h.seq, h.hash, k.upto FROM audit_head h, audit_key_head k
             WHERE h.id = 1 AND k.id = 1",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    let mut insert = connection.prepare_cached(
        "INSERT INTO audit_event (seq, recorded, type, subtype, action, outcome, severity, agent,
             patient, purpose, entity, body, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    let (seq, hash) = chain_batch(batch, (head, &head_hash), |row, hash| {
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
            hash,
        ])?;
        Ok(())
    })?;
    connection
        .prepare_cached("UPDATE audit_head SET seq = ?1, hash = ?2 WHERE id = 1")?
        .execute((seq, hash))?;
    if seq - upto >= KEY_BATCH {
        index_keys(connection, upto, seq)?;
    }
    Ok(())
}

/// Records appended between two fillings of `audit_key`: each batch adds one row per
/// patient and per agent in it, whatever the number of its records.
const KEY_BATCH: i64 = 16_384;

/// Indexes the records appended since the last batch, a batch at a time (at open: a
/// trail written before `audit_key` had its present form).
pub(super) fn index_pending(connection: &Connection) -> Result<(), StoreError> {
    let (head, mut upto): (i64, i64) = connection.query_row(
        "SELECT h.seq, k.upto FROM audit_head h, audit_key_head k WHERE h.id = 1 AND k.id = 1",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    while head > upto {
        let end = head.min(upto.saturating_add(KEY_BATCH));
        connection.execute_batch("BEGIN IMMEDIATE")?;
        match index_keys(connection, upto, end) {
            Ok(()) => connection.execute_batch("COMMIT")?,
            Err(error) => {
                let _ = connection.execute_batch("ROLLBACK");
                return Err(error);
            }
        }
        upto = end;
    }
    Ok(())
}

/// Adds the records after `upto`, up to `seq`, to `audit_key`: for each patient and
/// agent among them, one row with its key ([`lookup_key`]) and the list of its records.
/// A row per record put 16,384 entries at scattered places of the B-tree each batch,
/// which cost a third of what appending a record cost; a row per key in the batch puts
/// a few hundred.
fn index_keys(connection: &Connection, upto: i64, seq: i64) -> Result<(), StoreError> {
    let capacity = usize::try_from(seq - upto).unwrap_or(0).saturating_mul(2);
    let mut keys: Vec<(i64, i64)> = Vec::with_capacity(capacity);
    {
        let mut select = connection.prepare_cached(
            "SELECT seq, patient, agent FROM audit_event WHERE seq > ?1 AND seq <= ?2",
        )?;
        let mut rows = select.query((upto, seq))?;
        while let Some(row) = rows.next()? {
            let at: i64 = row.get(0)?;
            let patient = row
                .get_ref(1)?
                .as_str_or_null()
                .map_err(rusqlite::Error::from)?;
            if let Some(patient) = patient {
                keys.push((lookup_key(KeyKind::Patient, patient), at));
            }
            let agent = row.get_ref(2)?.as_str().map_err(rusqlite::Error::from)?;
            keys.push((lookup_key(KeyKind::Agent, agent), at));
        }
    }
    keys.sort_unstable();
    keys.dedup();
    let mut insert =
        connection.prepare_cached("INSERT INTO audit_key (key, upto, seqs) VALUES (?1, ?2, ?3)")?;
    let mut list = String::new();
    for group in keys.chunk_by(|a, b| a.0 == b.0) {
        list.clear();
        list.push('[');
        for (index, (_, at)) in group.iter().enumerate() {
            if index > 0 {
                list.push(',');
            }
            let _ = write!(list, "{at}");
        }
        list.push(']');
        insert.execute((group[0].0, seq, list.as_str()))?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditColumn, AuditFilter};

    /// The plan of a search by patient: the records come from the lookup index and
    /// the tail after it, never from a walk of the whole trail.
    #[test]
    fn a_search_by_patient_reads_its_records_by_sequence_number() {
        let connection = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&connection).unwrap();
        let query = AuditQuery {
            filters: vec![AuditFilter::Is(
                AuditColumn::Patient,
                vec!["Patient/p1".into()],
            )],
            count: 10,
            oldest_first: false,
            after: None,
        };
        let (clause, args) = where_clause(
            &query,
            &|n| format!("?{n}"),
            &|slot| format!("CAST({slot} AS INTEGER)"),
            true,
        );
        let sql =
            format!("EXPLAIN QUERY PLAN SELECT seq FROM audit_event {clause} ORDER BY seq DESC");
        let mut statement = connection.prepare(&sql).unwrap();
        let plan: Vec<String> = statement
            .query_map(params_from_iter(args.iter()), |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !plan.iter().any(|step| step.starts_with("SCAN audit_event")),
            "{plan:?}"
        );
        for step in [
            "SEARCH audit_event USING INTEGER PRIMARY KEY (rowid=?)",
            "SEARCH audit_key USING PRIMARY KEY (key=?)",
            "SEARCH audit_event USING INTEGER PRIMARY KEY (rowid>?)",
        ] {
            assert!(plan.iter().any(|line| line == step), "{step}: {plan:?}");
        }
    }
}
