//! The accounting of disclosures on PostgreSQL (see `crate::disclosure`); the patient
//! is the column `pkey`, the distribution key of docs/scaling.md.

use super::{PostgresStore, error, pool_error};
use crate::{Disclosure, Instant, StoreError};

impl PostgresStore {
    pub(crate) async fn disclosure_add(
        &self,
        disclosures: Vec<Disclosure>,
    ) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        self.spawn(async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            let transaction = client.transaction().await.map_err(error)?;
            let statement = transaction
                .prepare(
                    "INSERT INTO disclosure
                     (pkey, at, recipient, address, purpose, description, principal, request)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .await
                .map_err(error)?;
            for disclosure in &disclosures {
                transaction
                    .execute(
                        &statement,
                        &[
                            &disclosure.patient,
                            &disclosure.at.0,
                            &disclosure.recipient,
                            &disclosure.address,
                            &disclosure.purpose,
                            &disclosure.description,
                            &disclosure.principal,
                            &disclosure.request,
                        ],
                    )
                    .await
                    .map_err(error)?;
            }
            transaction.commit().await.map_err(error)
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
        let pool = self.pool.clone();
        let patient = patient.to_string();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let rows = client
                .query(
                    "SELECT pkey, at, recipient, address, purpose, description, principal, request
                     FROM disclosure WHERE pkey = $1 AND at >= $2 AND at < $3
                     ORDER BY at, seq LIMIT $4",
                    &[&patient, &from.0, &to.0, &limit],
                )
                .await
                .map_err(error)?;
            Ok(rows
                .iter()
                .map(|row| Disclosure {
                    patient: row.get(0),
                    at: Instant(row.get(1)),
                    recipient: row.get(2),
                    address: row.get(3),
                    purpose: row.get(4),
                    description: row.get(5),
                    principal: row.get(6),
                    request: row.get(7),
                })
                .collect())
        })
        .await
    }
}
