//! Change counters by resource type, for caches of what is derived from resources (the
//! server's active Consents, its profiles): a counter moves whenever a resource of its
//! type may have changed, so a cache that noted it knows when to read again.
//!
//! The store's own commits move them; on PostgreSQL so do other servers' notices, and
//! every counter moves when notices may have been missed (the listening connection
//! dropped or came back). Each type has a counter of its own: a shared one made a
//! cache of Consents read them all again at every ServiceRequest written.

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct Changes {
    /// Moves for every type at once.
    everything: AtomicU64,
    by_type: RwLock<HashMap<String, u64>>,
}

impl Changes {
    pub(crate) fn new() -> Changes {
        Changes {
            everything: AtomicU64::new(0),
            by_type: RwLock::new(HashMap::new()),
        }
    }

    pub(crate) fn bump(&self, resource_type: &str) {
        let mut by_type = self
            .by_type
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match by_type.get_mut(resource_type) {
            Some(count) => *count += 1,
            None => {
                by_type.insert(resource_type.to_string(), 1);
            }
        }
    }

    pub(crate) fn bump_all(&self) {
        self.everything.fetch_add(1, Ordering::AcqRel);
    }

    /// The counter of `resource_type`: the sum of two counts that only grow, so it
    /// moves whenever either does.
    pub(crate) fn of(&self, resource_type: &str) -> u64 {
        let own = self
            .by_type
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(resource_type)
            .copied()
            .unwrap_or(0);
        self.everything.load(Ordering::Acquire).wrapping_add(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_moves_its_types_counter_alone_and_bump_all_moves_every_one() {
        let changes = Changes::new();
        let consent = changes.of("Consent");
        let others: Vec<u64> = ["ServiceRequest", "PractitionerRole", "Patient"]
            .iter()
            .map(|name| changes.of(name))
            .collect();
        changes.bump("Consent");
        assert_ne!(changes.of("Consent"), consent);
        // ServiceRequest shared Consent's counter when counters were slots by hash.
        let after: Vec<u64> = ["ServiceRequest", "PractitionerRole", "Patient"]
            .iter()
            .map(|name| changes.of(name))
            .collect();
        assert_eq!(after, others);
        let patient = changes.of("Patient");
        changes.bump_all();
        assert_ne!(changes.of("Patient"), patient);
        let consent = changes.of("Consent");
        changes.bump_all();
        changes.bump("Consent");
        assert_ne!(changes.of("Consent"), consent);
    }
}
