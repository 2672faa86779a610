//! `search_param` in SQLite: pids looked up on a cache miss, and created, each in a
//! transaction of its own, by the writer.

use rusqlite::{Connection, OptionalExtension};

use crate::StoreError;
pub(super) use crate::params::ParamIds;

impl ParamIds {
    /// The pid of (type, key), or `None` when nothing was ever indexed under it.
    pub(super) fn lookup(
        &self,
        connection: &Connection,
        resource_type: &str,
        key: &str,
    ) -> Result<Option<i64>, rusqlite::Error> {
        if let Some(pid) = self.cached(resource_type, key) {
            return Ok(Some(pid));
        }
        let pid: Option<i64> = connection
            .prepare_cached("SELECT pid FROM search_param WHERE type = ?1 AND key = ?2")?
            .query_row((resource_type, key), |row| row.get(0))
            .optional()?;
        if let Some(pid) = pid {
            self.remember(resource_type, key, pid);
        }
        Ok(pid)
    }

    /// The pids of `key` for every type that has it.
    pub(super) fn lookup_any_type(
        connection: &Connection,
        key: &str,
    ) -> Result<Vec<i64>, rusqlite::Error> {
        let mut statement =
            connection.prepare_cached("SELECT pid FROM search_param WHERE key = ?1")?;
        let rows = statement.query_map([key], |row| row.get(0))?;
        rows.collect()
    }

    /// Creates the pids of `pairs` that do not exist yet, in the caller's transaction,
    /// and returns every pair's pid.
    fn create(
        connection: &Connection,
        pairs: &[(&str, &str)],
    ) -> Result<Vec<(String, String, i64)>, rusqlite::Error> {
        let mut created = Vec::new();
        for &(resource_type, key) in pairs {
            connection
                .prepare_cached("INSERT OR IGNORE INTO search_param (type, key) VALUES (?1, ?2)")?
                .execute((resource_type, key))?;
            let pid: i64 = connection
                .prepare_cached("SELECT pid FROM search_param WHERE type = ?1 AND key = ?2")?
                .query_row((resource_type, key), |row| row.get(0))?;
            created.push((resource_type.to_string(), key.to_string(), pid));
        }
        Ok(created)
    }

    /// Makes sure every pair has a committed pid, in a transaction of its own when some
    /// are new (the first time a type/key is seen), so a write that later rolls back
    /// never leaves the cache naming a pid that does not exist.
    pub(super) fn ensure_committed(
        &self,
        connection: &Connection,
        pairs: &[(&str, &str)],
    ) -> Result<(), StoreError> {
        let missing: Vec<(&str, &str)> = pairs
            .iter()
            .copied()
            .filter(|(resource_type, key)| self.cached(resource_type, key).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        connection.execute_batch("BEGIN IMMEDIATE")?;
        let created = match Self::create(connection, &missing) {
            Ok(created) => created,
            Err(error) => {
                let _ = connection.execute_batch("ROLLBACK");
                return Err(error.into());
            }
        };
        if let Err(error) = connection.execute_batch("COMMIT") {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(error.into());
        }
        for (resource_type, key, pid) in created {
            self.remember(&resource_type, &key, pid);
        }
        Ok(())
    }
}
