//! The search planner's statements in PostgreSQL (see `crate::query`): one read-only,
//! repeatable-read transaction per search, so the page, its total and its includes
//! see one snapshot. The planner is synchronous: it runs on a blocking thread of the
//! store's runtime and waits for each statement there.
//!
//! Round trips are what a search costs here, so the transaction's `BEGIN` goes out
//! in one pipeline with the first statement, its `ROLLBACK` is sent after the answer
//! is ready (the connection goes back to the pool when it is done), and a page comes
//! back with its resources' bodies in one statement ([`Reader::page`]).
//!
//! The builder writes `?` placeholders; [`numbered`] turns them into `$1, $2, ...`, and
//! each statement goes out with its argument types ([`typed`]). On a pooled connection
//! it is prepared once and kept in the connection's statement cache, so that repeated
//! searches skip parsing and, once PostgreSQL settles on a generic plan, planning; the
//! cache is emptied when it holds [`STATEMENTS_KEPT`]. Elsewhere (scans) statements go
//! out unprepared, in one round trip.

use std::cell::Cell;
use std::collections::HashMap;

use bytes::BytesMut;
use deadpool_postgres::{Pool, StatementCache};
use tokio::runtime::Handle;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

use super::{error, pool_error, version_at, version_from_row};
use crate::crypt::Keyring;
use crate::params::ParamIds;
use crate::query::{Dialect, Found, PageRow, Reader, Sql, Value};
use crate::{StoreError, Version};

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Integer(integer) => integer.to_sql(ty, out),
            Value::Real(real) => real.to_sql(ty, out),
            Value::Text(text) => text.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::INT8 | Type::FLOAT8 | Type::TEXT | Type::UNKNOWN)
    }

    to_sql_checked!();
}

/// The PostgreSQL type each argument is sent as; a NULL's the server infers.
fn type_of(value: &Value) -> Type {
    match value {
        Value::Integer(_) => Type::INT8,
        Value::Real(_) => Type::FLOAT8,
        Value::Text(_) => Type::TEXT,
        Value::Null => Type::UNKNOWN,
    }
}

/// The arguments of a statement with their types, for `query_typed`.
pub(super) fn typed(args: &[Value]) -> Vec<(&(dyn ToSql + Sync), Type)> {
    args.iter()
        .map(|value| (value as &(dyn ToSql + Sync), type_of(value)))
        .collect()
}

/// `?` placeholders as `$1, $2, ...`, in order; string literals are left alone.
pub(super) fn numbered(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut in_literal = false;
    let mut next = 0;
    for c in text.chars() {
        match c {
            '\'' => {
                in_literal = !in_literal;
                out.push(c);
            }
            '?' if !in_literal => {
                next += 1;
                out.push('$');
                out.push_str(&next.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// The most statements a pooled connection keeps prepared for searches.
const STATEMENTS_KEPT: usize = 256;

/// The transaction a search reads in.
const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

pub(super) struct PgReader<'t> {
    pub(super) handle: &'t Handle,
    pub(super) client: &'t tokio_postgres::Client,
    pub(super) params: &'t ParamIds,
    keys: &'t Keyring,
    /// The pooled connection's statement cache.
    statements: Option<&'t StatementCache>,
    /// Whether the read-only transaction has begun (with the first statement).
    begun: Cell<bool>,
}

/// Runs `f` with a reader in a read-only snapshot, then ends the snapshot.
pub(super) fn in_snapshot<T>(
    handle: &Handle,
    pool: &Pool,
    params: &ParamIds,
    keys: &Keyring,
    f: impl FnOnce(&PgReader<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let client = handle.block_on(pool.get()).map_err(pool_error)?;
    let statements = client.statement_cache.clone();
    if statements.size() >= STATEMENTS_KEPT {
        statements.clear();
    }
    let reader = PgReader {
        handle,
        client: &client,
        params,
        keys,
        statements: Some(&statements),
        begun: Cell::new(false),
    };
    let result = f(&reader);
    if reader.begun.get() {
        // Read only: ending it changes nothing, so the answer need not wait for it.
        // The connection returns to the pool once the transaction has ended; if it
        // cannot end, the connection is dropped rather than reused mid-transaction.
        handle.spawn(async move {
            if let Err(failure) = client.batch_execute("ROLLBACK").await {
                tracing::debug!(error = %failure, "ending a search's transaction failed");
                let _ = deadpool_postgres::Object::take(client);
            }
        });
    }
    result
}

impl<'t> PgReader<'t> {
    /// A reader on a connection already in the transaction it is to read in.
    pub(super) fn in_transaction(
        handle: &'t Handle,
        client: &'t tokio_postgres::Client,
        params: &'t ParamIds,
        keys: &'t Keyring,
    ) -> PgReader<'t> {
        PgReader {
            handle,
            client,
            params,
            keys,
            statements: None,
            begun: Cell::new(true),
        }
    }

    /// Runs one statement, in the search's transaction.
    fn run(
        &self,
        text: &str,
        args: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let client = self.client;
        let statements = self.statements;
        let rows = if self.begun.get() {
            self.handle
                .block_on(execute(client, statements, text, args))
        } else {
            // One pipeline: `BEGIN` is sent first (biased polling), then the statement.
            let (begun, rows) = self.handle.block_on(async {
                tokio::join!(
                    biased;
                    client.batch_execute(BEGIN),
                    execute(client, statements, text, args),
                )
            });
            begun.map_err(error)?;
            self.begun.set(true);
            rows
        };
        rows.map_err(|failure| {
            tracing::debug!(sql = %text, "search statement failed");
            error(failure)
        })
    }

    fn query(&self, sql: &Sql) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.run(&numbered(&sql.text), &typed(&sql.args))
    }
}

/// Runs one statement: prepared through `statements` when given (and no argument is
/// NULL, whose type only the server can infer), else unprepared.
async fn execute(
    client: &tokio_postgres::Client,
    statements: Option<&StatementCache>,
    text: &str,
    args: &[(&(dyn ToSql + Sync), Type)],
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    match statements {
        Some(statements) if args.iter().all(|(_, ty)| *ty != Type::UNKNOWN) => {
            let types: Vec<Type> = args.iter().map(|(_, ty)| ty.clone()).collect();
            let statement = statements.prepare_typed(client, text, &types).await?;
            let values: Vec<&(dyn ToSql + Sync)> = args.iter().map(|(value, _)| *value).collect();
            client.query(&statement, &values).await
        }
        _ => client.query_typed(text, args).await,
    }
}

/// A sort value read back, by its column type.
fn value(row: &tokio_postgres::Row, index: usize) -> Result<Value, StoreError> {
    let column_type = row
        .columns()
        .get(index)
        .map(|column| column.type_().clone())
        .ok_or_else(|| StoreError::Backend(format!("no column {index}")))?;
    let value = match column_type {
        Type::INT8 => row
            .try_get::<_, Option<i64>>(index)
            .map(|v| v.map(Value::Integer)),
        Type::INT4 => row
            .try_get::<_, Option<i32>>(index)
            .map(|v| v.map(|v| Value::Integer(i64::from(v)))),
        Type::INT2 => row
            .try_get::<_, Option<i16>>(index)
            .map(|v| v.map(|v| Value::Integer(i64::from(v)))),
        Type::FLOAT8 => row
            .try_get::<_, Option<f64>>(index)
            .map(|v| v.map(Value::Real)),
        _ => row
            .try_get::<_, Option<String>>(index)
            .map(|v| v.map(Value::Text)),
    };
    Ok(value.map_err(error)?.unwrap_or(Value::Null))
}

impl Reader for PgReader<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn pid(&self, resource_type: &str, key: &str) -> Result<Option<i64>, StoreError> {
        if let Some(pid) = self.params.cached(resource_type, key) {
            return Ok(Some(pid));
        }
        let mut sql = Sql::new("SELECT pid FROM search_param WHERE type = ");
        sql.arg(resource_type.to_string())
            .push(" AND key = ")
            .arg(key.to_string());
        let pid: Option<i64> = self.query(&sql)?.first().map(|row| row.get(0));
        if let Some(pid) = pid {
            self.params.remember(resource_type, key, pid);
        }
        Ok(pid)
    }

    fn pids_of_any_type(&self, key: &str) -> Result<Vec<i64>, StoreError> {
        let mut sql = Sql::new("SELECT pid FROM search_param WHERE key = ");
        sql.arg(key.to_string());
        Ok(self.query(&sql)?.iter().map(|row| row.get(0)).collect())
    }

    fn count(&self, sql: &Sql) -> Result<i64, StoreError> {
        let rows = self.query(sql)?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Backend("a count returned no row".into()))?;
        row.try_get(0).map_err(error)
    }

    /// Every count in one statement: `SELECT (count), (count), ...`.
    fn counts(&self, sqls: &[Sql]) -> Result<Vec<i64>, StoreError> {
        if sqls.is_empty() {
            return Ok(Vec::new());
        }
        let mut all = Sql::new("SELECT ");
        for (index, sql) in sqls.iter().enumerate() {
            if index > 0 {
                all.push(", ");
            }
            all.push("(").append(sql).push(")");
        }
        let rows = self.query(&all)?;
        let row = rows
            .first()
            .ok_or_else(|| StoreError::Backend("the counts returned no row".into()))?;
        (0..sqls.len())
            .map(|index| row.try_get(index).map_err(error))
            .collect()
    }

    fn rows(&self, sql: &Sql, values: usize) -> Result<Vec<PageRow>, StoreError> {
        let mut rows = Vec::new();
        for row in self.query(sql)? {
            let rid: i64 = row.try_get(0).map_err(error)?;
            let mut sort = Vec::with_capacity(values);
            for index in 0..values {
                sort.push(value(&row, index + 1)?);
            }
            rows.push((rid, sort));
        }
        Ok(rows)
    }

    /// The page and its bodies in one statement: the page numbered in its order, joined
    /// to the current versions.
    fn page(&self, sql: &Sql, values: usize) -> Result<Vec<Found>, StoreError> {
        let mut with_bodies = Sql::new(
            "SELECT p.*, v.type, v.id, v.version, v.last_updated, v.method, v.body, v.created FROM (SELECT q.*, row_number() OVER () AS n FROM (",
        );
        with_bodies.append(sql).push(
            ") q) p LEFT JOIN resource r ON r.rid = p.rid AND r.deleted = 0 \
             LEFT JOIN resource_version v ON v.type = r.type AND v.id = r.id \
             AND v.version = r.version AND v.pkey = r.pkey ORDER BY p.n",
        );
        let mut found = Vec::new();
        for row in self.query(&with_bodies)? {
            let rid: i64 = row.try_get(0).map_err(error)?;
            let mut sort = Vec::with_capacity(values);
            for index in 0..values {
                sort.push(value(&row, index + 1)?);
            }
            // After the rid, the sort values and the row number.
            let offset = values + 2;
            let present: Option<String> = row.try_get(offset).map_err(error)?;
            let version = present
                .map(|_| version_at(&row, offset, self.keys))
                .transpose()?;
            found.push(((rid, sort), version));
        }
        Ok(found)
    }

    fn typed_rids(&self, sql: &Sql) -> Result<Vec<(i64, String)>, StoreError> {
        self.query(sql)?
            .iter()
            .map(|row| {
                Ok((
                    row.try_get(0).map_err(error)?,
                    row.try_get(1).map_err(error)?,
                ))
            })
            .collect()
    }

    fn fetch(&self, rids: &[i64]) -> Result<Vec<(i64, Version)>, StoreError> {
        if rids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = self.run(
            "SELECT v.type, v.id, v.version, v.last_updated, v.method, v.body, v.created, r.rid
             FROM resource r JOIN resource_version v ON v.type = r.type AND v.id = r.id
               AND v.version = r.version AND v.pkey = r.pkey
             WHERE r.rid = ANY($1) AND r.deleted = 0",
            &[(&rids, Type::INT8_ARRAY)],
        )?;
        let mut found: HashMap<i64, Version> = HashMap::with_capacity(rows.len());
        for row in &rows {
            found.insert(
                row.try_get(7).map_err(error)?,
                version_from_row(row, self.keys)?,
            );
        }
        Ok(rids
            .iter()
            .filter_map(|rid| found.remove(rid).map(|version| (*rid, version)))
            .collect())
    }

    fn plan(&self, sql: &Sql) -> Result<String, StoreError> {
        let mut explain = Sql::new("EXPLAIN ");
        explain.append(sql);
        let mut out = String::new();
        for row in self.query(&explain)? {
            let line: String = row.try_get(0).map_err(error)?;
            out.push_str(&line);
            out.push('\n');
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            numbered("a = ? AND b = '?' AND c IN (?, ?) AND d = ''"),
            "a = $1 AND b = '?' AND c IN ($2, $3) AND d = ''"
        );
    }
}
