//! Change counters by resource type, for caches of what is derived from resources (the
//! server's active Consents): a counter moves whenever a resource of its type may
//! have changed, so a cache that noted it knows when to read again.
//!
//! The store's own commits move them; on PostgreSQL so do other servers' notices, and
//! every counter moves when notices may have been missed (the listening connection
//! dropped or came back). Types share counters by hash: a shared counter only makes a
//! cache read again when it need not.

use std::sync::atomic::{AtomicU64, Ordering};

const SLOTS: usize = 64;

pub(crate) struct Changes {
    counters: Vec<AtomicU64>,
}

impl Changes {
    pub(crate) fn new() -> Changes {
        Changes {
            counters: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn counter(&self, resource_type: &str) -> &AtomicU64 {
        // FNV-1a: stable, and plenty for spreading a few dozen type names.
        let hash = resource_type
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        &self.counters[(hash % SLOTS as u64) as usize]
    }

    pub(crate) fn bump(&self, resource_type: &str) {
        self.counter(resource_type).fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn bump_all(&self) {
        for counter in &self.counters {
            counter.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn of(&self, resource_type: &str) -> u64 {
        self.counter(resource_type).load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_moves_its_types_counter_and_bump_all_moves_every_one() {
        let changes = Changes::new();
        let (consent, before) = ("Consent", changes.of("Consent"));
        changes.bump("Consent");
        assert_ne!(changes.of(consent), before);
        let patient = changes.of("Patient");
        changes.bump_all();
        assert_ne!(changes.of("Patient"), patient);
    }
}
