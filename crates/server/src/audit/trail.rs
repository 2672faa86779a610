//! The background writer of audit records: a bounded queue and one task that appends
//! whatever waits in it as one store commit. Nothing is dropped: a full queue holds
//! the request back (back-pressure), and a failed append is retried until it lands.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use store::{AuditRecord, Store};
use tokio::sync::{Notify, mpsc};

/// Records that may wait before requests are held back.
const QUEUE: usize = 16384;
/// Most records in one commit.
const MAX_GROUP: usize = 4096;
/// How long records gather before they are written. Every commit makes the store's
/// reader connections drop their page caches (SQLite sees the database change), so
/// a few large commits a second keep reads fast where one per moment halved them.
const GATHER: Duration = Duration::from_millis(200);

/// The queue of one server's audit records.
pub(crate) struct Trail {
    sender: mpsc::Sender<AuditRecord>,
    /// Records queued so far.
    sent: AtomicU64,
    /// Records committed so far (or given up at shutdown); they commit in queue order.
    done: AtomicU64,
    /// Woken whenever `done` grows.
    drained: Notify,
}

/// Every trail of this process, for [`flush_all`] at shutdown.
static TRAILS: Mutex<Vec<Weak<Trail>>> = Mutex::new(Vec::new());

impl Trail {
    /// Starts the writer task for `store` on the current runtime.
    pub(crate) fn start(store: Store) -> Arc<Trail> {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let trail = Arc::new(Trail {
            sender,
            sent: AtomicU64::new(0),
            done: AtomicU64::new(0),
            drained: Notify::new(),
        });
        let mut trails = TRAILS.lock().unwrap_or_else(PoisonError::into_inner);
        trails.retain(|trail| trail.strong_count() > 0);
        trails.push(Arc::downgrade(&trail));
        tokio::spawn(run(store, receiver, Arc::downgrade(&trail)));
        trail
    }

    /// Queues a record; waits while the queue is full.
    pub(crate) async fn send(&self, record: AuditRecord) {
        // Counted before it can be committed, so `done` never passes `sent`.
        self.sent.fetch_add(1, Ordering::SeqCst);
        if self.sender.send(record).await.is_err() {
            self.done.fetch_add(1, Ordering::SeqCst);
            tracing::error!("the audit writer has stopped; an audit record was not written");
        }
    }

    /// Waits until every record queued before the call is committed (not those queued
    /// meanwhile, so a busy server does not hold it back).
    pub(crate) async fn flush(&self) {
        let target = self.sent.load(Ordering::SeqCst);
        loop {
            let drained = self.drained.notified();
            if self.done.load(Ordering::SeqCst) >= target {
                return;
            }
            // A missed wake-up costs at most this long.
            let _ = tokio::time::timeout(Duration::from_millis(50), drained).await;
        }
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

async fn run(store: Store, mut receiver: mpsc::Receiver<AuditRecord>, trail: Weak<Trail>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        // Sleep rather than wait on the queue: a wake-up per record costs more than
        // the record.
        if group.len() < MAX_GROUP {
            tokio::time::sleep(GATHER).await;
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(record) => group.push(record),
                    Err(_) => break,
                }
            }
        }
        let count = group.len();
        let records: Arc<[AuditRecord]> = group.drain(..).collect();
        let mut delay = Duration::from_millis(100);
        loop {
            match store.audit_append(records.clone()).await {
                Ok(()) => break,
                Err(error) => {
                    // The error names no record content.
                    tracing::error!(%error, count, "cannot append to the audit trail; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        if let Some(trail) = trail.upgrade() {
            trail.done.fetch_add(count as u64, Ordering::SeqCst);
            trail.drained.notify_waiters();
        }
    }
}
