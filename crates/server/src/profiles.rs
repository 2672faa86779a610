//! The constraint profiles this server knows: every StructureDefinition stored in it with
//! `derivation = constraint`, compiled once and kept in memory, so a resource that claims
//! one in `meta.profile` is validated against it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::Value;
use store::{Store, StoreError};
use validation::Profile;

/// Most StructureDefinitions loaded at start-up.
const MAX_PROFILES: usize = 10_000;

#[derive(Default)]
pub struct ProfileRegistry {
    inner: RwLock<Registry>,
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
        for version in store
            .current_of_type("StructureDefinition", MAX_PROFILES)
            .await?
        {
            let Some(body) = &version.body else { continue };
            match serde_json::from_str::<Value>(body) {
                Ok(resource) => {
                    if let Err(error) = registry.register(&version.id, &resource) {
                        tracing::warn!(id = %version.id, %error, "a stored profile cannot be used");
                    }
                }
                Err(error) => {
                    tracing::warn!(id = %version.id, %error, "a stored profile is unreadable")
                }
            }
        }
        Ok(registry)
    }

    /// Learns (or relearns) a stored StructureDefinition; other kinds are ignored.
    pub fn register(&self, id: &str, structure_definition: &Value) -> Result<(), String> {
        self.forget(id);
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
