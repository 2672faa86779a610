//! The active patient-privacy Consents, read from the store once and kept in memory
//! until any Consent is written (`validate::after_write` forgets them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use privacy::consent::Consent;
use serde_json::Value;
use store::{Store, StoreError};

/// Most Consents read; more are left out with a warning.
const MAX_CONSENTS: usize = 100_000;

#[derive(Default)]
pub(crate) struct Consents {
    cached: RwLock<Option<Arc<Vec<Consent>>>>,
    /// Counts the writes of Consents, so a read that raced one is not kept.
    generation: AtomicU64,
}

impl Consents {
    /// The active patient-privacy consents.
    pub(crate) async fn active(&self, store: &Store) -> Result<Arc<Vec<Consent>>, StoreError> {
        if let Ok(cached) = self.cached.read()
            && let Some(consents) = cached.as_ref()
        {
            return Ok(Arc::clone(consents));
        }
        let generation = self.generation.load(Ordering::Acquire);
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
        if let Ok(mut cached) = self.cached.write()
            && self.generation.load(Ordering::Acquire) == generation
        {
            *cached = Some(Arc::clone(&consents));
        }
        Ok(consents)
    }

    /// Forgets what was read: a Consent was written.
    pub(crate) fn forget(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Ok(mut cached) = self.cached.write() {
            *cached = None;
        }
    }
}
