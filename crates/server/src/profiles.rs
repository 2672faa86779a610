//! The constraint profiles this server knows: every StructureDefinition stored in it with
//! `derivation = constraint`, compiled once and kept in memory, so a resource that claims
//! one in `meta.profile` is validated against it.
//!
//! The server's own writes are learnt at once ([`ProfileRegistry::register`]); those of
//! other servers on the same database move the store's StructureDefinition change
//! counter, and [`ProfileRegistry::follow`] compiles the profiles again within a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde_json::Value;
use store::{Store, StoreError};
use validation::Profile;

/// Most StructureDefinitions loaded at start-up.
const MAX_PROFILES: usize = 10_000;

/// How often the registry looks whether StructureDefinitions changed.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct ProfileRegistry {
    inner: RwLock<Registry>,
    /// The store's StructureDefinition change counter when the profiles were read.
    seen: AtomicU64,
    /// Moves at every [`ProfileRegistry::register`] and [`ProfileRegistry::forget`], so
    /// that a reload read before one of them does not undo it.
    learnt: AtomicU64,
}

#[derive(Default)]
struct Registry {
    /// Canonical URL → compiled profile.
    by_url: HashMap<String, Arc<Profile>>,
    /// StructureDefinition id → its canonical URL, to forget it when it is deleted.
    url_of_id: HashMap<String, String>,
}

impl ProfileRegistry {
    /// Compiles every stored constraint StructureDefinition.
    pub async fn load(store: &Store) -> Result<ProfileRegistry, StoreError> {
        let registry = ProfileRegistry::default();
        registry.reload(store).await?;
        Ok(registry)
    }

    /// Compiles the stored profiles again, unless one was learnt meanwhile (then the
    /// next look does it).
    async fn reload(&self, store: &Store) -> Result<(), StoreError> {
        // Both read before the store: a write that races the read moves them after.
        let seen = store.changes("StructureDefinition");
        let learnt = self.learnt.load(Ordering::Acquire);
        let fresh = ProfileRegistry::default();
        for version in store
            .current_of_type("StructureDefinition", MAX_PROFILES)
            .await?
        {
            let Some(body) = &version.body else { continue };
            match serde_json::from_str::<Value>(body) {
                Ok(resource) => {
                    if let Err(error) = fresh.register(&version.id, &resource) {
                        tracing::warn!(id = %version.id, %error, "a stored profile cannot be used");
                    }
                }
                Err(error) => {
                    tracing::warn!(id = %version.id, %error, "a stored profile is unreadable")
                }
            }
        }
        let fresh = fresh
            .inner
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Ok(mut registry) = self.inner.write()
            && self.learnt.load(Ordering::Acquire) == learnt
        {
            *registry = fresh;
            self.seen.store(seen, Ordering::Release);
        }
        Ok(())
    }

    /// Follows `store` while the registry lives: compiles the profiles again whenever
    /// its StructureDefinitions changed (on PostgreSQL, also by other servers' writes).
    pub fn follow(self: &Arc<Self>, store: Store) {
        let registry: Weak<ProfileRegistry> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(FOLLOW_EVERY).await;
                let Some(registry) = registry.upgrade() else {
                    return;
                };
                if registry.seen.load(Ordering::Acquire) == store.changes("StructureDefinition") {
                    continue;
                }
                if let Err(error) = registry.reload(&store).await {
                    tracing::warn!(%error, "cannot read the stored profiles again");
                }
            }
        });
    }

    /// Learns (or relearns) a stored StructureDefinition; other kinds are ignored.
    pub fn register(&self, id: &str, structure_definition: &Value) -> Result<(), String> {
        self.forget(id);
        self.learnt.fetch_add(1, Ordering::AcqRel);
        if structure_definition
            .get("derivation")
            .and_then(Value::as_str)
            != Some("constraint")
        {
            return Ok(());
        }
        let profile = Profile::compile(structure_definition)?;
        let url = profile.url().to_string();
        if let Ok(mut registry) = self.inner.write() {
            registry.url_of_id.insert(id.to_string(), url.clone());
            registry.by_url.insert(url, Arc::new(profile));
        }
        Ok(())
    }

    /// Forgets the StructureDefinition with this id, if it was a profile.
    pub fn forget(&self, id: &str) {
        self.learnt.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut registry) = self.inner.write()
            && let Some(url) = registry.url_of_id.remove(id)
        {
            registry.by_url.remove(&url);
        }
    }

    /// A known profile by canonical URL (a `|version` suffix is ignored).
    pub fn get(&self, url: &str) -> Option<Arc<Profile>> {
        let canonical = url.split('|').next().unwrap_or(url);
        let registry = self.inner.read().ok()?;
        registry.by_url.get(canonical).cloned()
    }

    /// The profiles `meta.profile` names (a `|version` suffix is ignored), and the URLs it
    /// names that this server does not know.
    pub fn claimed(&self, resource: &Value) -> (Vec<Arc<Profile>>, Vec<String>) {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        let Ok(registry) = self.inner.read() else {
            return (known, unknown);
        };
        for url in resource["meta"]["profile"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let canonical = url.split('|').next().unwrap_or(url);
            match registry.by_url.get(canonical) {
                Some(profile) => known.push(Arc::clone(profile)),
                None => unknown.push(url.to_string()),
            }
        }
        (known, unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const URL: &str = "http://example.org/fhir/StructureDefinition/patient-dob";

    fn profile() -> store::Write {
        let resource = json!({"resourceType": "StructureDefinition", "id": "patient-dob",
            "url": URL, "name": "PatientWithBirthDate", "status": "active",
            "kind": "resource", "abstract": false, "type": "Patient",
            "baseDefinition": "http://hl7.org/fhir/StructureDefinition/Patient",
            "derivation": "constraint",
            "differential": {"element": [{"id": "Patient", "path": "Patient"},
                {"id": "Patient.birthDate", "path": "Patient.birthDate", "min": 1}]}});
        store::Write::Update {
            resource_type: "StructureDefinition".into(),
            id: "patient-dob".into(),
            resource: resource.as_object().cloned().unwrap_or_default(),
            if_match: None,
            method: store::Method::Update,
        }
    }

    /// A profile written past the registry (straight into the store, or by another
    /// server on the same PostgreSQL database) is learnt without a restart.
    #[tokio::test]
    async fn profiles_written_past_the_registry_are_learnt() {
        let database = store::testing::TestDatabase::sqlite();
        let store = database.open();
        let registry = Arc::new(ProfileRegistry::load(&store).await.unwrap());
        registry.follow(store.clone());
        assert!(registry.get(URL).is_none());
        store.write(profile()).await.unwrap();
        assert!(
            store::testing::eventually(|| registry.get(URL).is_some()).await,
            "on SQLite"
        );

        let Some(database) = store::testing::TestDatabase::postgres() else {
            return;
        };
        let (one, two) = (database.open(), database.open());
        let registry = Arc::new(ProfileRegistry::load(&two).await.unwrap());
        registry.follow(two.clone());
        one.write(profile()).await.unwrap();
        assert!(
            store::testing::eventually(|| registry.get(URL).is_some()).await,
            "from another store"
        );
        // A deletion there lifts it here too.
        one.write(store::Write::Delete {
            resource_type: "StructureDefinition".into(),
            id: "patient-dob".into(),
            if_match: None,
        })
        .await
        .unwrap();
        assert!(store::testing::eventually(|| registry.get(URL).is_none()).await);
    }
}
