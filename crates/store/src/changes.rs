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

use tokio::sync::broadcast;

/// News of other servers' writes waiting for a slow follower before it is told
/// [`Heard::Missed`] instead.
const HEARD_BACKLOG: usize = 4096;

/// What a follower of other servers' writes hears ([`crate::Store::heard`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Heard {
    /// Another server wrote this resource (a create, an update or a deletion).
    Changed { resource_type: String, id: String },
    /// News may have been missed (the listening connection dropped or came back): what
    /// follows other servers' writes should read everything again.
    Missed,
}

pub(crate) struct Changes {
    /// Moves for every type at once.
    everything: AtomicU64,
    by_type: RwLock<HashMap<String, u64>>,
    heard: broadcast::Sender<Heard>,
}

impl Changes {
    pub(crate) fn new() -> Changes {
        Changes {
            everything: AtomicU64::new(0),
            by_type: RwLock::new(HashMap::new()),
            heard: broadcast::channel(HEARD_BACKLOG).0,
        }
    }

    /// Another server wrote `key` (`Type/id`).
    pub(crate) fn heard(&self, key: &str) {
        let Some((resource_type, id)) = key.split_once('/') else {
            self.bump(key);
            return;
        };
        self.bump(resource_type);
        // No follower is not an error.
        let _ = self.heard.send(Heard::Changed {
            resource_type: resource_type.to_string(),
            id: id.to_string(),
        });
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Heard> {
        self.heard.subscribe()
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

    /// Tells the followers that news may have been missed: the listener is back after
    /// a time without it. (While it is down nothing can be heard, so telling them then,
    /// at every try on a hot standby, would only make them read everything again.)
    pub(crate) fn missed(&self) {
        let _ = self.heard.send(Heard::Missed);
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
    fn followers_hear_other_servers_writes_and_when_news_was_missed() {
        let changes = Changes::new();
        let mut follower = changes.subscribe();
        let before = changes.of("Patient");
        changes.heard("Patient/p1");
        assert_ne!(changes.of("Patient"), before);
        changes.missed();
        assert_eq!(
            follower.try_recv().ok(),
            Some(Heard::Changed {
                resource_type: "Patient".into(),
                id: "p1".into()
            })
        );
        assert_eq!(follower.try_recv().ok(), Some(Heard::Missed));
        // The store's own writes are not news.
        changes.bump("Patient");
        assert!(follower.try_recv().is_err());
    }

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
