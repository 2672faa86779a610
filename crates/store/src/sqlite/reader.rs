//! The search planner's statements on a SQLite connection (see `crate::query`).

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::params::ParamIds;
use super::version_from_row;
use crate::crypt::Keyring;
use crate::query::{Dialect, PageRow, Reader, Sql, Value};
use crate::{StoreError, Version};

pub(super) struct SqliteReader<'c> {
    connection: &'c Connection,
    params: &'c ParamIds,
    keys: &'c Keyring,
}

impl<'c> SqliteReader<'c> {
    pub(super) fn new(
        connection: &'c Connection,
        params: &'c ParamIds,
        keys: &'c Keyring,
    ) -> SqliteReader<'c> {
        SqliteReader {
            connection,
            params,
            keys,
        }
    }
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Integer(integer) => ValueRef::Integer(*integer),
            Value::Real(real) => ValueRef::Real(*real),
            Value::Text(text) => ValueRef::Text(text.as_bytes()),
        }))
    }
}

/// A bound value as rusqlite's own.
pub(super) fn sqlite_value(value: Value) -> SqlValue {
    match value {
        Value::Null => SqlValue::Null,
        Value::Integer(integer) => SqlValue::Integer(integer),
        Value::Real(real) => SqlValue::Real(real),
        Value::Text(text) => SqlValue::Text(text),
    }
}

fn value(value: SqlValue) -> Value {
    match value {
        SqlValue::Integer(integer) => Value::Integer(integer),
        SqlValue::Real(real) => Value::Real(real),
        SqlValue::Text(text) => Value::Text(text),
        SqlValue::Null | SqlValue::Blob(_) => Value::Null,
    }
}

impl Reader for SqliteReader<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn pid(&self, resource_type: &str, key: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.params.lookup(self.connection, resource_type, key)?)
    }

    fn pids_of_any_type(&self, key: &str) -> Result<Vec<i64>, StoreError> {
        Ok(ParamIds::lookup_any_type(self.connection, key)?)
    }

    fn count(&self, sql: &Sql) -> Result<i64, StoreError> {
        Ok(self
            .connection
            .prepare_cached(&sql.text)?
            .query_row(params_from_iter(sql.args.iter()), |row| row.get(0))?)
    }

    fn rows(&self, sql: &Sql, values: usize) -> Result<Vec<PageRow>, StoreError> {
        let mut statement = self.connection.prepare_cached(&sql.text)?;
        let mut result = statement.query(params_from_iter(sql.args.iter()))?;
        let mut rows = Vec::new();
        while let Some(row) = result.next()? {
            let rid: i64 = row.get(0)?;
            let mut sort = Vec::with_capacity(values);
            for index in 0..values {
                sort.push(value(row.get::<_, SqlValue>(index + 1)?));
            }
            rows.push((rid, sort));
        }
        Ok(rows)
    }

    fn typed_rids(&self, sql: &Sql) -> Result<Vec<(i64, String)>, StoreError> {
        let mut statement = self.connection.prepare(&sql.text)?;
        let rows = statement.query_map(params_from_iter(sql.args.iter()), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn fetch(&self, rids: &[i64]) -> Result<Vec<(i64, Version)>, StoreError> {
        let mut statement = self.connection.prepare_cached(
            "SELECT type, id, version, last_updated, method, body, created FROM resource_version
             WHERE seq = (SELECT seq FROM resource WHERE rid = ?1 AND deleted = 0)",
        )?;
        let mut versions = Vec::with_capacity(rids.len());
        for &rid in rids {
            if let Some(version) = statement
                .query_row([rid], |row| version_from_row(row, self.keys))
                .optional()?
            {
                versions.push((rid, version));
            }
        }
        Ok(versions)
    }

    fn plan(&self, sql: &Sql) -> Result<String, StoreError> {
        let mut statement = self
            .connection
            .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))?;
        let mut rows = statement.query(params_from_iter(sql.args.iter()))?;
        let mut out = String::new();
        while let Some(row) = rows.next()? {
            let (id, parent, detail): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(3)?);
            out.push_str(&format!("{id:>4} {parent:>4} {detail}\n"));
        }
        Ok(out)
    }
}
