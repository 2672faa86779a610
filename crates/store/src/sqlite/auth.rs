//! The privacy layer's records on SQLite (see `crate::auth`).
//!
//! They are written rarely (an account change, a token request), so each call opens a
//! connection of its own on a blocking thread rather than queueing behind the resource
//! writer; WAL and the busy timeout order it with the writer.

use rusqlite::{Connection, OptionalExtension};

use super::SqliteStore;
use crate::{AuthKind, StoreError};

impl SqliteStore {
    async fn with_auth_connection<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let connection = Connection::open(&path)?;
            connection.busy_timeout(std::time::Duration::from_secs(10))?;
            Ok(f(&connection)?)
        })
        .await
        .map_err(|error| StoreError::Backend(format!("account task failed: {error}")))?
    }

    pub(crate) async fn auth_get(
        &self,
        kind: AuthKind,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let id = id.to_string();
        self.with_auth_connection(move |connection| {
            connection
                .query_row(
                    "SELECT body FROM auth_record WHERE kind = ?1 AND id = ?2",
                    (kind.as_str(), &id),
                    |row| row.get(0),
                )
                .optional()
        })
        .await
    }

    pub(crate) async fn auth_list(
        &self,
        kind: AuthKind,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.with_auth_connection(move |connection| {
            let mut statement = connection
                .prepare("SELECT id, body FROM auth_record WHERE kind = ?1 ORDER BY id")?;
            let rows =
                statement.query_map([kind.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?;
            rows.collect()
        })
        .await
    }

    pub(crate) async fn auth_put(
        &self,
        kind: AuthKind,
        id: &str,
        body: &str,
        only_new: bool,
    ) -> Result<bool, StoreError> {
        let (id, body) = (id.to_string(), body.to_string());
        self.with_auth_connection(move |connection| {
            let sql = if only_new {
                "INSERT INTO auth_record (kind, id, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, id) DO NOTHING"
            } else {
                "INSERT INTO auth_record (kind, id, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body"
            };
            Ok(connection.execute(sql, (kind.as_str(), &id, &body))? == 1)
        })
        .await
    }

    pub(crate) async fn auth_delete(&self, kind: AuthKind, id: &str) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.with_auth_connection(move |connection| {
            Ok(connection.execute(
                "DELETE FROM auth_record WHERE kind = ?1 AND id = ?2",
                (kind.as_str(), &id),
            )? == 1)
        })
        .await
    }

    pub(crate) async fn use_once(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let key = key.to_string();
        self.with_auth_connection(move |connection| {
            connection.execute("DELETE FROM auth_used_once WHERE expires_at < ?1", [now])?;
            Ok(connection.execute(
                "INSERT INTO auth_used_once (key, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (key) DO NOTHING",
                (&key, expires_at),
            )? == 1)
        })
        .await
    }

    pub(crate) async fn login_failed(
        &self,
        name: &str,
        now: i64,
        max: u32,
        lockout: i64,
    ) -> Result<Option<i64>, StoreError> {
        let name = name.to_string();
        self.with_auth_connection(move |connection| {
            connection.execute(
                "DELETE FROM login_failure WHERE last <= ?1 - ?2",
                (now, lockout),
            )?;
            connection.query_row(
                &crate::auth::login_failed_sql(&|n| format!("?{n}")),
                (&name, now, i64::from(max), lockout),
                |row| row.get(0),
            )
        })
        .await
    }

    pub(crate) async fn login_locked_until(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let name = name.to_string();
        self.with_auth_connection(move |connection| {
            Ok(connection
                .query_row(
                    "SELECT locked_until FROM login_failure WHERE name = ?1",
                    [&name],
                    |row| row.get::<_, Option<i64>>(0),
                )
                .optional()?
                .flatten())
        })
        .await
    }

    pub(crate) async fn login_succeeded(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.with_auth_connection(move |connection| {
            connection.execute("DELETE FROM login_failure WHERE name = ?1", [&name])?;
            Ok(())
        })
        .await
    }
}
