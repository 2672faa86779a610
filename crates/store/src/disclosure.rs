//! The accounting of disclosures: an append-only record of every release of a patient's
//! data outside the organisation (who received it, where, why, and what was released).
//!
//! The store keeps the rows and answers by patient and period; what counts as a
//! disclosure, and which ones an accounting leaves out, is the privacy layer's business.
//! Rows are never changed or deleted: both backends refuse an `UPDATE` or `DELETE` on
//! the table.

use crate::{Backend, Instant, Store, StoreError};

/// One release of one patient's data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disclosure {
    /// The Patient id whose data was released.
    pub patient: String,
    /// When it was released.
    pub at: Instant,
    /// Who received it (a person or organisation).
    pub recipient: String,
    /// The recipient's address, if known (empty otherwise).
    pub address: String,
    /// The purpose of use (an HL7 v3 PurposeOfUse code, e.g. `HLEGAL`, `BTG`).
    pub purpose: String,
    /// What was released: resource types and counts, never the data itself.
    pub description: String,
    /// Who released it: the client or user that made the request.
    pub principal: String,
    /// The request that released it (method and path, or the export's kick-off URL).
    pub request: String,
}

impl Store {
    /// Appends disclosures, all or none.
    pub async fn disclosure_add(&self, disclosures: Vec<Disclosure>) -> Result<(), StoreError> {
        if disclosures.is_empty() {
            return Ok(());
        }
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.disclosure_add(disclosures).await,
            Backend::Postgres(postgres) => postgres.disclosure_add(disclosures).await,
        }
    }

    /// The disclosures of `patient` made in `[from, to)`, oldest first, at most `limit`.
    pub async fn disclosures(
        &self,
        patient: &str,
        from: Instant,
        to: Instant,
        limit: usize,
    ) -> Result<Vec<Disclosure>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.disclosures(patient, from, to, limit).await,
            Backend::Postgres(postgres) => postgres.disclosures(patient, from, to, limit).await,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests: a panic is a failure report.
mod tests {
    use super::*;

    fn disclosure(patient: &str, at: i64, recipient: &str) -> Disclosure {
        Disclosure {
            patient: patient.into(),
            at: Instant(at),
            recipient: recipient.into(),
            address: "1 Main St".into(),
            purpose: "HLEGAL".into(),
            description: "Observation: 2".into(),
            principal: "client roi".into(),
            request: "GET Patient/p1/$everything".into(),
        }
    }

    crate::each_backend! {
        #[tokio::test]
        async fn disclosures_come_back_by_patient_and_period(db) {
            let store = db.open();
            store
                .disclosure_add(vec![
                    disclosure("p1", 3_000, "Law firm"),
                    disclosure("p1", 1_000, "Insurer"),
                    disclosure("p2", 2_000, "Other"),
                    disclosure("p1", 5_000, "Later"),
                ])
                .await
                .unwrap();
            let found = store
                .disclosures("p1", Instant(1_000), Instant(5_000), 100)
                .await
                .unwrap();
            let recipients: Vec<&str> = found.iter().map(|d| d.recipient.as_str()).collect();
            assert_eq!(recipients, ["Insurer", "Law firm"]);
            assert_eq!(found[0], disclosure("p1", 1_000, "Insurer"));
            let limited = store
                .disclosures("p1", Instant(0), Instant(10_000), 2)
                .await
                .unwrap();
            assert_eq!(limited.len(), 2);
            assert!(store
                .disclosures("p3", Instant(0), Instant(10_000), 10)
                .await
                .unwrap()
                .is_empty());
        }
    }

    crate::each_backend! {
        #[tokio::test]
        async fn disclosures_cannot_be_changed_or_deleted(db) {
            let store = db.open();
            store
                .disclosure_add(vec![disclosure("p1", 1_000, "Law firm")])
                .await
                .unwrap();
            for statement in [
                "UPDATE disclosure SET recipient = 'someone else'",
                "DELETE FROM disclosure",
            ] {
                let refused = db.execute(statement).unwrap_err();
                assert!(refused.contains("append-only"), "{statement}: {refused}");
            }
            let found = store
                .disclosures("p1", Instant(0), Instant(10_000), 10)
                .await
                .unwrap();
            assert_eq!(found, [disclosure("p1", 1_000, "Law firm")]);
        }
    }
}
