//! The accounting of disclosures on SQLite (see `crate::disclosure`).
//!
//! Releases are few next to resource writes, so each call opens a connection of its own
//! on a blocking thread, as the account records do; WAL and the busy timeout order it
//! with the writer.

use rusqlite::Connection;

use super::SqliteStore;
use crate::{Disclosure, Instant, StoreError};

impl SqliteStore {
    async fn with_disclosure_connection<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut connection = Connection::open(&path)?;
            connection.busy_timeout(std::time::Duration::from_secs(10))?;
            Ok(f(&mut connection)?)
        })
        .await
        .map_err(|error| StoreError::Backend(format!("disclosure task failed: {error}")))?
    }

    pub(crate) async fn disclosure_add(
        &self,
        disclosures: Vec<Disclosure>,
    ) -> Result<(), StoreError> {
        self.with_disclosure_connection(move |connection| {
            let transaction = connection.transaction()?;
            {
                let mut statement = transaction.prepare(
                    "INSERT INTO disclosure
                     (patient, at, recipient, address, purpose, description, principal, request)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for disclosure in &disclosures {
                    statement.execute((
                        &disclosure.patient,
                        disclosure.at.0,
                        &disclosure.recipient,
                        &disclosure.address,
                        &disclosure.purpose,
                        &disclosure.description,
                        &disclosure.principal,
                        &disclosure.request,
                    ))?;
                }
            }
            transaction.commit()
        })
        .await
    }

    pub(crate) async fn disclosures(
        &self,
        patient: &str,
        from: Instant,
        to: Instant,
        limit: i64,
    ) -> Result<Vec<Disclosure>, StoreError> {
        let patient = patient.to_string();
        self.with_disclosure_connection(move |connection| {
            let mut statement = connection.prepare(
                "SELECT patient, at, recipient, address, purpose, description, principal, request
                 FROM disclosure WHERE patient = ?1 AND at >= ?2 AND at < ?3
                 ORDER BY at, seq LIMIT ?4",
            )?;
            let rows = statement.query_map((&patient, from.0, to.0, limit), |row| {
                Ok(Disclosure {
                    patient: row.get(0)?,
                    at: Instant(row.get(1)?),
                    recipient: row.get(2)?,
                    address: row.get(3)?,
                    purpose: row.get(4)?,
                    description: row.get(5)?,
                    principal: row.get(6)?,
                    request: row.get(7)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}
