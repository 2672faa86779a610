//! `search_param`: the small integer (`pid`) that stands for a (resource type, index
//! key) pair in the index tables, created by a writer on first use and cached in
//! memory for the writers and the readers of either backend.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// type → key → pid.
type Map = HashMap<String, HashMap<String, i64>>;

/// The pids known so far, shared by the writer and the readers. A pid, once
/// committed, never changes, so a cached one is always right; a miss is looked up.
#[derive(Clone, Default)]
pub(crate) struct ParamIds {
    map: Arc<RwLock<Map>>,
}

impl ParamIds {
    pub(crate) fn cached(&self, resource_type: &str, key: &str) -> Option<i64> {
        let map = self.map.read().ok()?;
        map.get(resource_type)?.get(key).copied()
    }

    /// The cached pid of each row's key (one lock for all of them); `None` for a key
    /// not seen yet.
    pub(crate) fn cached_rows(
        &self,
        resource_type: &str,
        rows: &[search::IndexRow],
    ) -> Vec<Option<i64>> {
        let map = self.map.read().ok();
        let keys = map.as_ref().and_then(|map| map.get(resource_type));
        rows.iter()
            .map(|row| keys.and_then(|keys| keys.get(&row.key).copied()))
            .collect()
    }

    pub(crate) fn remember(&self, resource_type: &str, key: &str, pid: i64) {
        if let Ok(mut map) = self.map.write() {
            map.entry(resource_type.to_string())
                .or_default()
                .insert(key.to_string(), pid);
        }
    }
}
