//! The audit trail on PostgreSQL (see `crate::audit`): an append locks the chain's
//! head row (`FOR UPDATE`) in the transaction of the writes it records, so appends are
//! serialised and the chain order is the table order; reads use pooled connections.

use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::{PostgresStore, error, pool_error};
use crate::StoreError;
use crate::audit::{
    AuditBatch, AuditPage, AuditQuery, ChainCheck, StoredAudit, VERIFY_PAGE, Verification,
    chain_all, where_clause,
};

const COLUMNS: &str = "seq, recorded, type, subtype, action, outcome, severity, agent, patient, \
                       purpose, entity, body, prev_hash, hash";

/// Why an append failed.
pub(super) enum AppendError {
    Database(tokio_postgres::Error),
    Invalid(StoreError),
}

/// Appends `records` to the chain in `transaction`, which commits them.
pub(super) async fn append(
    transaction: &Transaction<'_>,
    batch: &AuditBatch,
) -> Result<(), AppendError> {
    if batch.is_empty() {
        return Ok(());
    }
    let head = transaction
        .query_one(
            "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE",
            &[],
        )
        .await
        .map_err(AppendError::Database)?;
    let head_hash: String = head.get(1);
    let (rows, (seq, hash)) =
        chain_all(batch, (head.get(0), &head_hash)).map_err(AppendError::Invalid)?;
    let column = |f: fn(&StoredAudit) -> String| rows.iter().map(f).collect::<Vec<String>>();
    let optional =
        |f: fn(&StoredAudit) -> Option<String>| rows.iter().map(f).collect::<Vec<Option<String>>>();
    let seqs: Vec<i64> = rows.iter().map(|row| row.seq).collect();
    let recorded: Vec<i64> = rows.iter().map(|row| row.recorded).collect();
    let (types, subtypes, actions, outcomes, severities, agents) = (
        column(|row| row.type_code.clone()),
        column(|row| row.subtype.clone()),
        column(|row| row.action.clone()),
        column(|row| row.outcome.clone()),
        column(|row| row.severity.clone()),
        column(|row| row.agent.clone()),
    );
    let (patients, purposes) = (
        optional(|row| row.patient.clone()),
        optional(|row| row.purpose.clone()),
    );
    let (entities, bodies, prev_hashes, hashes) = (
        column(|row| row.entity.clone()),
        column(|row| row.body.clone()),
        column(|row| row.prev_hash.clone()),
        column(|row| row.hash.clone()),
    );
    transaction
        .execute(
            "INSERT INTO audit_event (seq, recorded, type, subtype, action, outcome, severity,
                 agent, patient, purpose, entity, body, prev_hash, hash)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],
                 $12::text[], $13::text[], $14::text[])",
            &[
                &seqs,
                &recorded,
                &types,
                &subtypes,
                &actions,
                &outcomes,
                &severities,
                &agents,
                &patients,
                &purposes,
                &entities,
                &bodies,
                &prev_hashes,
                &hashes,
            ],
        )
        .await
        .map_err(AppendError::Database)?;
    transaction
        .execute(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            &[&seq, &hash],
        )
        .await
        .map_err(AppendError::Database)?;
    Ok(())
}

fn stored_from_row(row: &Row) -> StoredAudit {
    StoredAudit {
        seq: row.get(0),
        recorded: row.get(1),
        type_code: row.get(2),
        subtype: row.get(3),
        action: row.get(4),
        outcome: row.get(5),
        severity: row.get(6),
        agent: row.get(7),
        patient: row.get(8),
        purpose: row.get(9),
        entity: row.get(10),
        body: row.get(11),
        prev_hash: row.get(12),
        hash: row.get(13),
    }
}

impl PostgresStore {
    pub(crate) async fn audit_append(
        &self,
        batch: std::sync::Arc<AuditBatch>,
    ) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        self.spawn(async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let transaction = client.transaction().await.map_err(error)?;
            append(&transaction, &batch)
                .await
                .map_err(|failure| match failure {
                    AppendError::Database(failure) => error(failure),
                    AppendError::Invalid(failure) => failure,
                })?;
            transaction.commit().await.map_err(error)
        })
        .await
    }

    pub(crate) async fn audit_read(&self, seq: i64) -> Result<Option<String>, StoreError> {
        let pool = self.pool.clone();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM audit_event WHERE seq = $1"),
                    &[&seq],
                )
                .await
                .map_err(error)?;
            Ok(row.map(|row| stored_from_row(&row).render()))
        })
        .await
    }

    pub(crate) async fn audit_search(&self, query: AuditQuery) -> Result<AuditPage, StoreError> {
        let pool = self.pool.clone();
        self.spawn(async move {
            let (clause, args) = where_clause(
                &query,
                &|n| format!("${n}::text"),
                &|slot| format!("CAST({slot} AS bigint)"),
                false,
            );
            let order = if query.oldest_first { "ASC" } else { "DESC" };
            let limit = i64::try_from(query.count)
                .unwrap_or(i64::MAX)
                .saturating_add(1);
            let sql = format!(
                "SELECT {COLUMNS} FROM audit_event {clause} ORDER BY seq {order} LIMIT {limit}"
            );
            let client = pool.get().await.map_err(pool_error)?;
            let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = args
                .iter()
                .map(|arg| arg as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            let rows = client.query(&sql, &params).await.map_err(error)?;
            let mut records: Vec<(i64, String)> = rows
                .iter()
                .map(|row| {
                    let stored = stored_from_row(row);
                    (stored.seq, stored.render())
                })
                .collect();
            let next = if records.len() > query.count {
                records.truncate(query.count);
                records.last().map(|(seq, _)| *seq)
            } else {
                None
            };
            Ok(AuditPage { records, next })
        })
        .await
    }

    pub(crate) async fn audit_verify(&self) -> Result<Verification, StoreError> {
        let pool = self.pool.clone();
        self.spawn(async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            // One snapshot for the whole walk, so appends meanwhile do not look like a
            // broken head.
            let transaction = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(error)?;
            let mut check = ChainCheck::new();
            let mut after = 0i64;
            let select =
                format!("SELECT {COLUMNS} FROM audit_event WHERE seq > $1 ORDER BY seq LIMIT $2");
            loop {
                let rows = transaction
                    .query(&select, &[&after, &VERIFY_PAGE])
                    .await
                    .map_err(error)?;
                let rows: Vec<StoredAudit> = rows.iter().map(stored_from_row).collect();
                let Some(last) = rows.last() else { break };
                after = last.seq;
                if !rows.iter().all(|row| check.next(row)) {
                    break;
                }
            }
            let head = transaction
                .query_one("SELECT seq, hash FROM audit_head WHERE id = 1", &[])
                .await
                .map_err(error)?;
            transaction.rollback().await.map_err(error)?;
            Ok(check.finish((head.get(0), head.get(1))))
        })
        .await
    }
}
