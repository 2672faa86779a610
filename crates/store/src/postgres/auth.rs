//! The privacy layer's records on PostgreSQL (see `crate::auth`).

use super::{PostgresStore, error, pool_error};
use crate::{AuthKind, StoreError};

impl PostgresStore {
    pub(crate) async fn auth_get(
        &self,
        kind: AuthKind,
        id: &str,
    ) -> Result<Option<String>, StoreError> {
        let pool = self.pool.clone();
        let id = id.to_string();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_opt(
                    "SELECT body FROM auth_record WHERE kind = $1 AND id = $2",
                    &[&kind.as_str(), &id],
                )
                .await
                .map_err(error)?;
            Ok(row.map(|row| row.get(0)))
        })
        .await
    }

    pub(crate) async fn auth_list(
        &self,
        kind: AuthKind,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let pool = self.pool.clone();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT id, body FROM auth_record WHERE kind = $1 ORDER BY id",
                    &[&kind.as_str()],
                )
                .await
                .map_err(error)?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
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
        let pool = self.pool.clone();
        let (id, body) = (id.to_string(), body.to_string());
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let sql = if only_new {
                "INSERT INTO auth_record (kind, id, body) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, id) DO NOTHING"
            } else {
                "INSERT INTO auth_record (kind, id, body) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, id) DO UPDATE SET body = excluded.body"
            };
            let count = client
                .execute(sql, &[&kind.as_str(), &id, &body])
                .await
                .map_err(error)?;
            Ok(count == 1)
        })
        .await
    }

    pub(crate) async fn auth_delete(&self, kind: AuthKind, id: &str) -> Result<bool, StoreError> {
        let pool = self.pool.clone();
        let id = id.to_string();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let count = client
                .execute(
                    "DELETE FROM auth_record WHERE kind = $1 AND id = $2",
                    &[&kind.as_str(), &id],
                )
                .await
                .map_err(error)?;
            Ok(count == 1)
        })
        .await
    }

    pub(crate) async fn use_once(
        &self,
        key: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let pool = self.pool.clone();
        let key = key.to_string();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute("DELETE FROM auth_used_once WHERE expires_at < $1", &[&now])
                .await
                .map_err(error)?;
            let count = client
                .execute(
                    "INSERT INTO auth_used_once (key, expires_at) VALUES ($1, $2)
                     ON CONFLICT (key) DO NOTHING",
                    &[&key, &expires_at],
                )
                .await
                .map_err(error)?;
            Ok(count == 1)
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
        let pool = self.pool.clone();
        let name = name.to_string();
        let max = i64::from(max);
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute(
                    "DELETE FROM login_failure WHERE last <= $1::bigint - $2::bigint",
                    &[&now, &lockout],
                )
                .await
                .map_err(error)?;
            let sql = crate::auth::login_failed_sql(&|n| {
                format!("${n}::{}", if n == 1 { "text" } else { "bigint" })
            });
            let row = client
                .query_one(&sql, &[&name, &now, &max, &lockout])
                .await
                .map_err(error)?;
            Ok(row.get(0))
        })
        .await
    }

    pub(crate) async fn login_locked_until(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let pool = self.pool.clone();
        let name = name.to_string();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let row = client
                .query_opt(
                    "SELECT locked_until FROM login_failure WHERE name = $1",
                    &[&name],
                )
                .await
                .map_err(error)?;
            Ok(row.and_then(|row| row.get(0)))
        })
        .await
    }

    pub(crate) async fn login_succeeded(&self, name: &str) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        let name = name.to_string();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            client
                .execute("DELETE FROM login_failure WHERE name = $1", &[&name])
                .await
                .map_err(error)?;
            Ok(())
        })
        .await
    }
}
