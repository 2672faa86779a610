//! The background writer of audit records: requests pack their records into one
//! shared batch, and one task appends whatever the batch holds as one store commit.
//! Nothing is dropped: a full batch holds the request back (back-pressure), and a
//! failed append is retried until it lands.
//!
//! A record is packed on the request's own thread and its parts are freed there; only
//! the packed bytes reach the writer. (Queued as separate values, each record's dozen
//! allocations were freed on the writer's thread 200 ms later, and the allocator's
//! cache misses on the request threads cost more than the records.)

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use store::{AuditBatch, AuditRecord, Store};
use tokio::sync::Notify;

/// Records that may wait before requests are held back.
const QUEUE: usize = 16384;
/// Records that end the gathering early.
const MAX_GROUP: usize = 4096;
/// How long records gather before they are written. Every commit makes the store's
/// reader connections drop their page caches (SQLite sees the database change), so
/// a few large commits a second keep reads fast where one per moment halved them.
const GATHER: Duration = Duration::from_millis(200);

/// The queue of one server's audit records.
pub(crate) struct Trail {
    shared: Arc<Shared>,
}

/// What the requests and the writer task share.
struct Shared {
    batch: Mutex<AuditBatch>,
    /// Woken when a record arrives in an empty batch.
    first: Notify,
    /// Woken when the batch reaches `MAX_GROUP` records.
    full: Notify,
    /// Woken when the writer takes the batch (room for requests held back).
    room: Notify,
    /// Set when the trail is dropped: the writer writes what is left and stops.
    closed: AtomicBool,
    /// Records queued so far.
    sent: AtomicU64,
    /// Records committed so far (or given up at shutdown); they commit in queue order.
    done: AtomicU64,
    /// Woken whenever `done` grows.
    drained: Notify,
}

impl Shared {
    fn batch(&self) -> MutexGuard<'_, AuditBatch> {
        // Packing cannot leave a batch half-written in a way a later push trips on.
        self.batch.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queued(&self) -> usize {
        self.batch().len()
    }
}

/// Every trail of this process, for [`flush_all`] at shutdown.
static TRAILS: Mutex<Vec<Weak<Trail>>> = Mutex::new(Vec::new());

impl Trail {
    /// Starts the writer task for `store` on the current runtime.
    pub(crate) fn start(store: Store) -> Arc<Trail> {
        let shared = Arc::new(Shared {
            batch: Mutex::new(AuditBatch::new()),
            first: Notify::new(),
            full: Notify::new(),
            room: Notify::new(),
            closed: AtomicBool::new(false),
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            drained: Notify::new(),
        });
        let trail = Arc::new(Trail {
            shared: shared.clone(),
        });
        let mut trails = TRAILS.lock().unwrap_or_else(PoisonError::into_inner);
        trails.retain(|trail| trail.strong_count() > 0);
        trails.push(Arc::downgrade(&trail));
        tokio::spawn(run(store, shared));
        trail
    }

    /// Queues a record; waits while the queue is full.
    pub(crate) async fn send(&self, record: AuditRecord) {
        let shared = &*self.shared;
        // Counted before it can be committed, so `done` never passes `sent`.
        shared.sent.fetch_add(1, Ordering::SeqCst);
        loop {
            // Made before the check, so a wake-up between the two is not missed.
            let room = shared.room.notified();
            let queued = {
                let mut batch = shared.batch();
                if batch.len() < QUEUE {
                    batch.push(&record);
                    Some(batch.len())
                } else {
                    None
                }
            };
            match queued {
                Some(1) => shared.first.notify_waiters(),
                Some(MAX_GROUP) => shared.full.notify_waiters(),
                Some(_) => {}
                None => {
                    room.await;
                    continue;
                }
            }
            return;
        }
    }

    /// Waits until every record queued before the call is committed (not those queued
    /// meanwhile, so a busy server does not hold it back).
    pub(crate) async fn flush(&self) {
        let shared = &*self.shared;
        let target = shared.sent.load(Ordering::SeqCst);
        loop {
            let drained = shared.drained.notified();
            if shared.done.load(Ordering::SeqCst) >= target {
                return;
            }
            // A missed wake-up costs at most this long.
            let _ = tokio::time::timeout(Duration::from_millis(50), drained).await;
        }
    }
}

impl Drop for Trail {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.first.notify_waiters();
        self.shared.full.notify_waiters();
    }
}

/// Waits until every audit record of every server in this process is committed (at
/// shutdown), for at most `limit`.
pub async fn flush_all(limit: Duration) {
    let trails: Vec<Arc<Trail>> = TRAILS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let flushing = async {
        for trail in trails {
            trail.flush().await;
        }
    };
    if tokio::time::timeout(limit, flushing).await.is_err() {
        tracing::error!("audit records were still waiting to be written at shutdown");
    }
}

async fn run(store: Store, shared: Arc<Shared>) {
    // The batch written last, emptied: the next one to fill, so its room is reused.
    let mut spare = AuditBatch::new();
    loop {
        // Wait for a record.
        let first = shared.first.notified();
        if shared.queued() == 0 {
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            first.await;
            continue;
        }
        drop(first);
        // Gather for a while, unless the batch fills up first. Sleep rather than wake
        // per record: a wake-up per record costs more than the record.
        let deadline = tokio::time::Instant::now() + GATHER;
        loop {
            let full = shared.full.notified();
            if shared.queued() >= MAX_GROUP || shared.closed.load(Ordering::SeqCst) {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => break,
                () = full => {}
            }
        }
        let batch = std::mem::replace(&mut *shared.batch(), spare);
        shared.room.notify_waiters();
        let count = batch.len();
        let batch = Arc::new(batch);
        let mut delay = Duration::from_millis(100);
        loop {
            match store.audit_append(batch.clone()).await {
                Ok(()) => break,
                Err(error) => {
                    // The error names no record content.
                    tracing::error!(%error, count, "cannot append to the audit trail; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        shared.done.fetch_add(count as u64, Ordering::SeqCst);
        shared.drained.notify_waiters();
        spare = match Arc::try_unwrap(batch) {
            Ok(mut batch) => {
                batch.clear();
                batch
            }
            Err(_) => AuditBatch::new(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: i64) -> AuditRecord {
        AuditRecord {
            recorded: store::Instant(n),
            type_code: "rest",
            subtype: "read",
            action: "R",
            outcome: "0",
            severity: "informational",
            agent: format!("agent-{n}"),
            patient: None,
            purpose: None,
            entities: vec![format!("Patient/{n}")],
            detail: store::AuditDetail::default(),
            body: None,
        }
    }

    /// More records than the queue holds, sent at once: every one is committed, in
    /// order, and a flush returns only once they are.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_record_lands_in_order_even_past_the_queue() {
        let database = store::testing::TestDatabase::sqlite();
        let store = Store::open(&database.url).unwrap();
        let trail = Trail::start(store.clone());
        let total = QUEUE + MAX_GROUP + 7;
        let mut senders = tokio::task::JoinSet::new();
        for part in 0..4 {
            let trail = trail.clone();
            senders.spawn(async move {
                for n in (part..total).step_by(4) {
                    trail.send(record(n as i64)).await;
                }
            });
        }
        while senders.join_next().await.is_some() {}
        trail.flush().await;
        let verified = store.audit_verify().await.unwrap();
        assert_eq!(verified.count, total as u64);
        assert_eq!(verified.broken, None);
        let page = store
            .audit_search(store::AuditQuery {
                count: 3,
                oldest_first: true,
                ..store::AuditQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.records.len(), 3);
        assert!(page.records[0].1.contains("\"recorded\""));
    }
}
