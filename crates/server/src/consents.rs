//! The active patient-privacy Consents, read from the store once and kept in memory
//! until a Consent may have changed: the store's change counter for Consents moves
//! with this server's writes (when they commit, before they answer) and, on PostgreSQL,
//! with other servers' (by notice). They are read again after [`MAX_AGE`] whatever the
//! counter says, should a change go unheard (a server on a replica hears no notices).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use privacy::consent::Consent;
use serde_json::Value;
use store::{Store, StoreError};

use crate::restrict::Denied;

/// Most Consents read; more are left out with a warning.
const MAX_CONSENTS: usize = 100_000;

/// The longest the Consents are kept without reading them again.
const MAX_AGE: Duration = Duration::from_secs(60);

/// The Consents read, with the store's change counter before the read and when.
struct Read {
    consents: Arc<Vec<Consent>>,
    changes: u64,
    at: Instant,
}

/// Most principals whose denials are kept for the current second.
const DENIED_KEPT: usize = 1024;

/// What the consents deny each principal, worked out this second from these consents.
#[derive(Default)]
struct DeniedNow {
    second: i64,
    /// The consents they were worked out from (held, so that its address names it).
    consents: Option<Arc<Vec<Consent>>>,
    by_principal: HashMap<String, Arc<Denied>>,
}

#[derive(Default)]
pub(crate) struct Consents {
    cached: RwLock<Option<Read>>,
    denied: Mutex<DeniedNow>,
}

impl Consents {
    /// The active patient-privacy consents.
    pub(crate) async fn active(&self, store: &Store) -> Result<Arc<Vec<Consent>>, StoreError> {
        let changes = store.changes("Consent");
        if let Ok(cached) = self.cached.read()
            && let Some(read) = cached.as_ref()
            && read.changes == changes
            && read.at.elapsed() < MAX_AGE
        {
            return Ok(Arc::clone(&read.consents));
        }
        // The counter was read before the Consents: a write that races the read moves it
        // after, so what is kept here is read again at the next request.
        let versions = store.current_of_type("Consent", MAX_CONSENTS).await?;
        if versions.len() >= MAX_CONSENTS {
            tracing::warn!("more Consents than the limit; some are not enforced");
        }
        let consents: Vec<Consent> = versions
            .iter()
            .filter_map(|version| version.body.as_deref())
            .filter_map(|body| serde_json::from_str::<Value>(body).ok())
            .filter_map(|resource| privacy::consent::parse(&resource))
            .collect();
        let consents = Arc::new(consents);
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some(Read {
                consents: Arc::clone(&consents),
                changes,
                at: Instant::now(),
            });
        }
        Ok(consents)
    }

    /// What `consents` deny the principal `key` names (who asks, and what lifts or
    /// limits its view), worked out by `work` at most once a second: the consents'
    /// provisions have periods, and a request should not pay for reading every consent.
    pub(crate) fn denied(
        &self,
        consents: &Arc<Vec<Consent>>,
        key: String,
        work: impl FnOnce() -> Denied,
    ) -> Arc<Denied> {
        let second = crate::restrict::now();
        let same = |kept: &DeniedNow| {
            kept.second == second
                && kept
                    .consents
                    .as_ref()
                    .is_some_and(|from| Arc::ptr_eq(from, consents))
        };
        if let Ok(kept) = self.denied.lock()
            && same(&kept)
            && let Some(denied) = kept.by_principal.get(&key)
        {
            return Arc::clone(denied);
        }
        let denied = Arc::new(work());
        if let Ok(mut kept) = self.denied.lock() {
            if !same(&kept) || kept.by_principal.len() >= DENIED_KEPT {
                *kept = DeniedNow {
                    second,
                    consents: Some(Arc::clone(consents)),
                    by_principal: HashMap::new(),
                };
            }
            kept.by_principal.insert(key, Arc::clone(&denied));
        }
        denied
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn consent(id: &str, status: &str) -> store::Write {
        let resource = json!({"resourceType": "Consent", "id": id, "status": status,
            "scope": {"coding": [{"code": "patient-privacy"}]},
            "category": [{"text": "privacy"}],
            "patient": {"reference": "Patient/p1"},
            "provision": {"type": "deny"}});
        store::Write::Update {
            resource_type: "Consent".into(),
            id: id.into(),
            resource: resource.as_object().cloned().unwrap_or_default(),
            if_match: None,
            method: store::Method::Update,
        }
    }

    /// A Consent written past this server (by another server, or straight into the
    /// store) is enforced without a restart: the store's change counter moves.
    #[tokio::test]
    async fn consents_written_past_the_server_are_read_again() {
        let database = store::testing::TestDatabase::sqlite();
        let store = database.open();
        let consents = Consents::default();
        assert!(consents.active(&store).await.unwrap().is_empty());
        store.write(consent("c1", "active")).await.unwrap();
        let active = consents.active(&store).await.unwrap();
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].patient, "p1");
        // Kept while nothing changes; read again when a Consent changes.
        assert!(Arc::ptr_eq(
            &active,
            &consents.active(&store).await.unwrap()
        ));
        store.write(consent("c1", "inactive")).await.unwrap();
        assert!(consents.active(&store).await.unwrap().is_empty());
    }
}
