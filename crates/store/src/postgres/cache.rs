//! The read cache: current versions read by id, kept in memory so that reading the
//! same resource again costs no round trip to PostgreSQL.
//!
//! Several servers may share one database, so an entry must go when anyone changes its
//! resource. After each commit the writer sends the keys it changed with `NOTIFY` (see
//! `writer::notify`), and each store listens on a connection of its own ([`listen`]). The store's own writes also forget their keys themselves right after
//! the commit, so a server reads its own writes at once; another server's change is seen
//! once its notice arrives (milliseconds over a local network).
//!
//! The listener runs with the cache turned off too: the store's change counters
//! (`crate::changes`) hear other servers' writes through it.
//! The cache is used only while the listener is connected: when it drops, the cache is
//! emptied and bypassed until a new listener is in place, so no notice can be missed.
//! No entry is served after `MAX_AGE`, should a notice be lost.
//! A read that missed takes a ticket before it asks the database; its answer is kept only
//! if nothing was forgotten in its shard meanwhile, so a read that raced a write cannot
//! put back the version the write replaced.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use tokio_postgres::{AsyncMessage, NoTls};

use crate::Version;
use crate::changes::Changes;

/// The channel every store of a database notifies and listens on.
pub(super) const CHANNEL: &str = "custodian_resources";
/// The default size of the cache.
pub(crate) const DEFAULT_BYTES: usize = 32 * 1024 * 1024;
/// A notice's payload is at most 8,000 bytes; keys go in notices of at most this much.
const NOTICE_BYTES: usize = 7_000;
/// Bookkeeping per entry beyond its strings (map slot, queue slot, the struct).
const OVERHEAD: usize = 160;
const SHARDS: usize = 16;
/// The oldest entry served: the bound on staleness should a notice be lost (a server
/// that stops between its commit and its notice).
const MAX_AGE: Duration = Duration::from_secs(30);
/// How long the listener waits before connecting again: at first, and at most (it
/// doubles while connecting or `LISTEN` keeps failing, as on a hot standby, which
/// refuses `LISTEN`; the cache is bypassed there).
const RETRY: Duration = Duration::from_secs(1);
const RETRY_AT_MOST: Duration = Duration::from_secs(60);

pub(super) struct ReadCache {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    /// Bytes per shard; zero turns the cache off.
    budget: usize,
    /// Whether the listener is connected, so other servers' changes reach us.
    live: AtomicBool,
    /// The first line of this store's notices (`@`, an id of its own, a space and the
    /// schema), by which the listener knows them from other servers': its own writes
    /// forgot and counted what they changed at their commit already.
    pub(super) origin: String,
    /// The schema the store's tables are in. Notices go to every session of the
    /// database, so stores in other schemas (other tenants, test runs) are ignored.
    schema: String,
}

#[derive(Default)]
struct Shard {
    entries: HashMap<String, Entry>,
    /// Keys in the order they were filled, for eviction (first in, first out); an
    /// item whose stamp no longer matches its entry is skipped.
    order: VecDeque<(String, u64)>,
    bytes: usize,
    /// Counts what was forgotten here: a fill whose ticket is older is dropped.
    epoch: u64,
    stamp: u64,
}

struct Entry {
    version: Version,
    stamp: u64,
    size: usize,
    filled: Instant,
}

/// Taken by a read that missed, before it asks the database.
pub(super) struct Ticket {
    key: String,
    shard: usize,
    epoch: u64,
}

fn key(resource_type: &str, id: &str) -> String {
    let mut key = String::with_capacity(resource_type.len() + id.len() + 1);
    key.push_str(resource_type);
    key.push('/');
    key.push_str(id);
    key
}

impl ReadCache {
    /// A cache of about `bytes` for the store whose tables are in `schema`; it starts
    /// bypassed, until [`ReadCache::set_live`].
    pub(super) fn new(bytes: usize, schema: &str) -> ReadCache {
        ReadCache {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            budget: bytes / SHARDS,
            live: AtomicBool::new(false),
            origin: format!("@{} {schema}", uuid::Uuid::now_v7()),
            schema: schema.to_owned(),
        }
    }

    /// Whether a notice whose first line is `origin` is news to this store: sent by
    /// another store of the same schema (older servers sent no schema).
    fn hears(&self, origin: &str) -> bool {
        if origin == self.origin {
            return false;
        }
        match origin.split_once(' ') {
            Some((_, schema)) => schema == self.schema,
            None => true,
        }
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) % SHARDS as u64) as usize
    }

    fn lock(&self, shard: usize) -> Option<MutexGuard<'_, Shard>> {
        // A poisoned shard is only a cache: bypass it.
        self.shards.get(shard)?.lock().ok()
    }

    /// The cached version, or else a ticket for filling it after the read (none when
    /// the cache is off or bypassed).
    pub(super) fn get(&self, resource_type: &str, id: &str) -> Result<Version, Option<Ticket>> {
        if self.budget == 0 || !self.live.load(Ordering::Acquire) {
            return Err(None);
        }
        let key = key(resource_type, id);
        let shard = self.shard_of(&key);
        let Some(mut guard) = self.lock(shard) else {
            return Err(None);
        };
        match guard.entries.get(&key) {
            Some(entry) if entry.filled.elapsed() < MAX_AGE => return Ok(entry.version.clone()),
            Some(_) => {
                if let Some(old) = guard.entries.remove(&key) {
                    guard.bytes -= old.size;
                }
            }
            None => {}
        }
        let epoch = guard.epoch;
        drop(guard);
        Err(Some(Ticket { key, shard, epoch }))
    }

    /// Keeps what a read found, unless its shard forgot something since the ticket.
    pub(super) fn fill(&self, ticket: Ticket, version: &Version) {
        let Some(mut shard) = self.lock(ticket.shard) else {
            return;
        };
        if shard.epoch != ticket.epoch {
            return;
        }
        let size = OVERHEAD
            + 2 * ticket.key.len()
            + version.resource_type.len()
            + version.id.len()
            + version.body.as_ref().map_or(0, String::len);
        if size > self.budget {
            return;
        }
        shard.stamp += 1;
        let stamp = shard.stamp;
        if let Some(old) = shard.entries.insert(
            ticket.key.clone(),
            Entry {
                version: version.clone(),
                stamp,
                size,
                filled: Instant::now(),
            },
        ) {
            shard.bytes -= old.size;
        }
        shard.bytes += size;
        shard.order.push_back((ticket.key, stamp));
        shard.evict(self.budget);
    }

    /// Forgets `keys` (`Type/id`), changed by a write.
    pub(super) fn forget<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        if self.budget == 0 {
            return;
        }
        for key in keys {
            if let Some(mut shard) = self.lock(self.shard_of(key)) {
                shard.epoch += 1;
                if let Some(old) = shard.entries.remove(key) {
                    shard.bytes -= old.size;
                }
            }
        }
    }

    /// Forgets everything.
    fn clear(&self) {
        for shard in &self.shards {
            if let Ok(mut shard) = shard.lock() {
                shard.epoch += 1;
                shard.entries.clear();
                shard.order.clear();
                shard.bytes = 0;
            }
        }
    }

    /// Uses the cache (`true`: a listener is in place) or bypasses it; either way what
    /// it held is forgotten, since notices may have been missed.
    pub(super) fn set_live(&self, live: bool) {
        if live {
            self.clear();
            self.live.store(true, Ordering::Release);
        } else {
            self.live.store(false, Ordering::Release);
            self.clear();
        }
    }
}

impl Shard {
    fn evict(&mut self, budget: usize) {
        while self.bytes > budget {
            let Some((key, stamp)) = self.order.pop_front() else {
                break;
            };
            if self
                .entries
                .get(&key)
                .is_some_and(|entry| entry.stamp == stamp)
                && let Some(old) = self.entries.remove(&key)
            {
                self.bytes -= old.size;
            }
        }
        // Items of forgotten or refilled entries stay in the queue until evicted; keep
        // the queue from growing past its entries when nothing is evicted.
        if self.order.len() > 2 * self.entries.len() + 64 {
            let entries = &self.entries;
            self.order
                .retain(|(key, stamp)| entries.get(key).is_some_and(|entry| entry.stamp == *stamp));
        }
    }
}

/// The payloads that tell other stores which resources a transaction changed: the
/// keys, one per line, in notices small enough for PostgreSQL.
pub(super) fn notices(origin: &str, keys: &[String]) -> Vec<String> {
    let mut notices = Vec::new();
    let mut current = String::new();
    for key in keys {
        if !current.is_empty() && current.len() + key.len() + 1 > NOTICE_BYTES {
            notices.push(std::mem::take(&mut current));
        }
        if current.is_empty() {
            current.push_str(origin);
        }
        current.push('\n');
        current.push_str(key);
    }
    if !current.is_empty() {
        notices.push(current);
    }
    notices
}

/// Listens for other stores' changes while the cache lives, connecting again whenever
/// the connection drops; the cache is bypassed while it is down.
/// The change counters hear the same notices (see `crate::changes`), and every one
/// moves whenever the cache goes live or is bypassed, since notices may have been missed.
pub(super) async fn listen(
    config: tokio_postgres::Config,
    cache: Weak<ReadCache>,
    changes: Weak<Changes>,
) {
    let mut retry = RETRY;
    loop {
        if cache.upgrade().is_none() {
            return;
        }
        if let Ok((client, mut connection)) = config.connect(NoTls).await {
            let (notified, counted) = (cache.clone(), changes.clone());
            let mut driver = tokio::spawn(async move {
                while let Some(Ok(message)) =
                    std::future::poll_fn(|context| connection.poll_message(context)).await
                {
                    if let AsyncMessage::Notification(notice) = message {
                        let (Some(cache), Some(changes)) = (notified.upgrade(), counted.upgrade())
                        else {
                            return;
                        };
                        if notice.channel() == CHANNEL {
                            let mut lines = notice.payload().split('\n').peekable();
                            // Servers before the origin line sent keys alone.
                            if let Some(first) = lines.next_if(|line| line.starts_with('@'))
                                && !cache.hears(first)
                            {
                                continue;
                            }
                            for key in lines {
                                cache.forget([key]);
                                changes.heard(key);
                            }
                        }
                    }
                }
            });
            let statement = format!("LISTEN {CHANNEL}");
            let listening = tokio::select! {
                listened = client.batch_execute(&statement) => listened.is_ok(),
                _ = &mut driver => false,
            };
            if listening {
                retry = RETRY;
                if let Some(cache) = cache.upgrade() {
                    cache.set_live(true);
                }
                if let Some(changes) = changes.upgrade() {
                    changes.bump_all();
                    changes.missed();
                }
                let _ = (&mut driver).await;
                tracing::debug!("the read cache's listener lost its connection");
            }
            if let Some(cache) = cache.upgrade() {
                cache.set_live(false);
            }
            if let Some(changes) = changes.upgrade() {
                changes.bump_all();
            }
            driver.abort();
            drop(client);
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_AT_MOST);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Method;

    fn version(id: &str, number: u64, body: &str) -> Version {
        Version {
            resource_type: "Patient".into(),
            id: id.into(),
            version: number,
            last_updated: crate::Instant(0),
            method: Method::Update,
            body: Some(body.into()),
            created: number == 1,
        }
    }

    fn live(bytes: usize) -> ReadCache {
        let cache = ReadCache::new(bytes, "public");
        cache.set_live(true);
        cache
    }

    #[test]
    fn a_filled_entry_is_served_until_forgotten() {
        let cache = live(1 << 20);
        let Err(Some(ticket)) = cache.get("Patient", "a") else {
            panic!("an empty cache gives a ticket");
        };
        cache.fill(ticket, &version("a", 1, "{}"));
        assert_eq!(cache.get("Patient", "a").map(|v| v.version).ok(), Some(1));
        cache.forget(["Patient/a"]);
        assert!(matches!(cache.get("Patient", "a"), Err(Some(_))));
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_kept() {
        let cache = live(1 << 20);
        let Err(Some(ticket)) = cache.get("Patient", "a") else {
            panic!("an empty cache gives a ticket");
        };
        // The write commits and forgets the key while the read is on its way.
        cache.forget(["Patient/a"]);
        cache.fill(ticket, &version("a", 1, "{}"));
        assert!(matches!(cache.get("Patient", "a"), Err(Some(_))));
    }

    #[test]
    fn a_bypassed_cache_gives_no_ticket_and_forgets_what_it_held() {
        let cache = live(1 << 20);
        let Err(Some(ticket)) = cache.get("Patient", "a") else {
            panic!("an empty cache gives a ticket");
        };
        cache.fill(ticket, &version("a", 1, "{}"));
        cache.set_live(false);
        assert!(matches!(cache.get("Patient", "a"), Err(None)));
        cache.set_live(true);
        assert!(matches!(cache.get("Patient", "a"), Err(Some(_))));
        let off = ReadCache::new(0, "public");
        off.set_live(true);
        assert!(matches!(off.get("Patient", "a"), Err(None)));
    }

    #[test]
    fn the_budget_bounds_what_is_kept() {
        let body = "x".repeat(1000);
        let cache = live(SHARDS * 10_000);
        for n in 0..1000 {
            let id = format!("p{n}");
            if let Err(Some(ticket)) = cache.get("Patient", &id) {
                cache.fill(ticket, &version(&id, 1, &body));
            }
        }
        for shard in &cache.shards {
            let shard = shard.lock().unwrap();
            assert!(shard.bytes <= 10_000, "{} bytes", shard.bytes);
            assert!(!shard.entries.is_empty());
            assert_eq!(
                shard.bytes,
                shard
                    .entries
                    .values()
                    .map(|entry| entry.size)
                    .sum::<usize>()
            );
            assert!(shard.order.len() <= 2 * shard.entries.len() + 64);
        }
        // The newest are kept.
        assert!(cache.get("Patient", "p999").is_ok());
    }

    #[test]
    fn notices_stay_under_the_payload_limit_and_name_every_key() {
        let ids: Vec<String> = (0..2000).map(|n| format!("{n:036}")).collect();
        let keys: Vec<String> = ids.iter().map(|id| format!("Observation/{id}")).collect();
        let origin = ReadCache::new(0, "public").origin;
        let notices = notices(&origin, &keys);
        assert!(notices.len() > 1);
        assert!(notices.iter().all(|notice| notice.len() <= NOTICE_BYTES));
        // Each names its sender first.
        assert!(
            notices
                .iter()
                .all(|notice| notice.split('\n').next() == Some(origin.as_str()))
        );
        let keys: Vec<&str> = notices.iter().flat_map(|n| n.split('\n').skip(1)).collect();
        assert_eq!(keys.len(), 2000);
        assert_eq!(keys[0], format!("Observation/{}", ids[0]));
    }

    #[test]
    fn hears_other_stores_of_its_own_schema_only() {
        let cache = ReadCache::new(0, "tenant_a");
        let neighbour = ReadCache::new(0, "tenant_a");
        let stranger = ReadCache::new(0, "tenant_b");
        assert!(!cache.hears(&cache.origin));
        assert!(cache.hears(&neighbour.origin));
        assert!(!cache.hears(&stranger.origin));
        // A notice from a server that named no schema is heard.
        assert!(cache.hears("@0190aaaa-0000-7000-8000-000000000000"));
    }
}
