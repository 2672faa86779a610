//! The master patient index inside the server: an `mpi::Index` of every current Patient,
//! built from the store at start and kept in step with every Patient write, and the
//! operations on it: `$match` (`matching.rs`), the duplicate worklist (`worklist.rs`),
//! `$merge` and `$unmerge` (`merge.rs`, with `repoint.rs` finding and rewriting
//! references), the enterprise identifier (`enterprise.rs`) and the audit record of a
//! merge (`audit.rs`). `params.rs` reads the operations' Parameters.
//!
//! The model is the configured one or the shipped default; once 200 Patients are indexed
//! (at start or later), and again each time their number doubles, its u (how often
//! strangers agree) is measured on them, since u belongs to a population and m (how
//! records of one person differ) travels.
//!
//! Duplicate checks after a write run on one background task, in write order, so a
//! write is answered without waiting for them; the worklist's list and decision wait
//! until the checks queued before them are done.

mod audit;
mod enterprise;
pub(crate) mod matching;
pub(crate) mod merge;
mod params;
mod repoint;
pub(crate) mod worklist;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};

use serde_json::Value;
use store::{ScanRequest, Store, Version};
use tokio::sync::{mpsc, oneshot};

use crate::AppState;

/// The model the server scores with when none is configured: trained without labels
/// (`custodian mpi dedupe`) on 100,000 generated FEBRL-like records.
const DEFAULT_MODEL: &str = include_str!("../../../../data/mpi/default-model.json");

/// u is measured on the indexed Patients (see `mpi::Index::estimate_u`) once there are
/// this many, and again each time their number has doubled since; below it, the
/// model's own u stays.
const U_POPULATION: usize = 200;
/// Most random pairs for measuring u (never more than there are distinct pairs), and
/// their seed: the same records give the same model.
const U_SAMPLES: usize = 300_000;
const U_SEED: u64 = 0x5eed;

/// The default system of the enterprise identifier.
pub const ENTERPRISE_SYSTEM: &str = "urn:custodian:enterprise-id";

/// Master patient index settings.
#[derive(Clone, Debug)]
pub struct MpiConfig {
    /// Whether the server keeps an index and checks Patient writes for duplicates (off
    /// for a one-off `custodian import`, which has no use for either).
    pub enabled: bool,
    /// A model saved by `custodian mpi dedupe` (`model.json`); the shipped default when
    /// `None`.
    pub model: Option<PathBuf>,
    /// The identifier system that links the records of one person.
    pub enterprise_system: String,
    /// Link certain matches at once (an enterprise identifier) instead of queueing them
    /// for review.
    pub auto_link: bool,
}

impl Default for MpiConfig {
    fn default() -> MpiConfig {
        MpiConfig {
            enabled: true,
            model: None,
            enterprise_system: ENTERPRISE_SYSTEM.into(),
            auto_link: false,
        }
    }
}

/// What the background task is asked to do.
enum Job {
    /// Look for duplicates of the Patient with this id.
    Check(String),
    /// Answer once every job before this one is done.
    Flush(oneshot::Sender<()>),
}

/// The server's index and the queue of its duplicate checks.
pub(crate) struct Mpi {
    index: RwLock<mpi::Index>,
    /// The number of indexed Patients at which u is measured next.
    next_estimate: AtomicUsize,
    queue: mpsc::UnboundedSender<Job>,
    pub enabled: bool,
}

/// The receiving end of the queue, for [`spawn_worker`].
pub(crate) struct Jobs(mpsc::UnboundedReceiver<Job>);

impl Mpi {
    /// The index of every current Patient in `store`, scored with the configured model.
    pub async fn load(store: &Store, config: &MpiConfig) -> Result<(Mpi, Jobs), store::StoreError> {
        let model = match &config.model {
            Some(path) => mpi::Model::load(path),
            None => mpi::Model::from_json(DEFAULT_MODEL),
        }
        .map_err(|error| store::StoreError::Config(format!("the matching model: {error}")))?;
        let mut index = mpi::Index::new(model)
            .map_err(|error| store::StoreError::Config(format!("the matching model: {error}")))?;
        if config.enabled {
            let store = store.clone();
            let started = std::time::Instant::now();
            index = tokio::task::spawn_blocking(move || {
                let mut index = fill(&store, index)?;
                estimate_u(&mut index);
                Ok::<_, store::StoreError>(index)
            })
            .await
            .map_err(|error| store::StoreError::Backend(error.to_string()))??;
            tracing::info!(
                patients = index.len(),
                ms = started.elapsed().as_millis() as u64,
                "patient index built"
            );
        }
        let (queue, jobs) = mpsc::unbounded_channel();
        let mpi = Mpi {
            next_estimate: AtomicUsize::new(next_estimate(index.len())),
            index: RwLock::new(index),
            queue,
            enabled: config.enabled,
        };
        Ok((mpi, Jobs(jobs)))
    }

    /// Candidates for `record`, best first.
    pub fn search(&self, record: &mpi::Record) -> Vec<mpi::Candidate> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index.search(record)
    }

    /// Why `record` and the indexed Patient `id` score what they do.
    pub fn explain(&self, record: &mpi::Record, id: &str) -> Option<mpi::Explanation> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index.explain(record, id)
    }

    /// Follows a client's write: the index takes the new version, and a Patient
    /// created or updated is queued for a duplicate check.
    pub fn observe(&self, version: &Version) {
        if self.reindex(version) {
            // The receiver lives as long as the server; a send can only fail at shutdown.
            let _ = self.queue.send(Job::Check(version.id.clone()));
        }
    }

    /// Puts a Patient version into the index (or takes it out, when deleted or merged
    /// into another); true when it is indexed afterwards.
    pub fn reindex(&self, version: &Version) -> bool {
        if !self.enabled || version.resource_type != "Patient" {
            return false;
        }
        let patient = version
            .body
            .as_deref()
            .and_then(|body| serde_json::from_str::<Value>(body).ok());
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        // The write is already durable: a bug in the index must not fail it.
        let indexed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match patient {
            Some(patient) if !is_replaced(&patient) => {
                let inserted = index.insert(&mpi::record_from_patient(&patient)).is_ok();
                if index.len() >= self.next_estimate.load(Ordering::Relaxed) {
                    estimate_u(&mut index);
                    self.next_estimate
                        .store(next_estimate(index.len()), Ordering::Relaxed);
                }
                inserted
            }
            _ => {
                index.remove(&version.id);
                false
            }
        }));
        indexed.unwrap_or_else(|_| {
            tracing::error!("the patient index failed on a Patient; it may miss that record");
            false
        })
    }

    /// Takes the Patient `id` out of the index (deleted by another server).
    fn forget(&self, id: &str) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        index.remove(id);
    }

    /// Builds the index again from every current Patient of `store` (other servers'
    /// writes may have been missed), with the model as it stands.
    async fn rebuild(&self, store: &Store) -> Result<(), store::StoreError> {
        let model = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .model()
            .clone();
        let index = mpi::Index::new(model)
            .map_err(|error| store::StoreError::Config(format!("the matching model: {error}")))?;
        let store = store.clone();
        let index = tokio::task::spawn_blocking(move || fill(&store, index))
            .await
            .map_err(|error| store::StoreError::Backend(error.to_string()))??;
        let count = index.len();
        *self.index.write().unwrap_or_else(PoisonError::into_inner) = index;
        self.next_estimate
            .store(next_estimate(count), Ordering::Relaxed);
        tracing::info!(patients = count, "patient index built again");
        Ok(())
    }

    /// Waits until every duplicate check queued so far has run.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.queue.send(Job::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Runs the duplicate checks for `state` on a task of their own.
pub(crate) fn spawn_worker(jobs: Jobs, state: AppState) {
    let Jobs(mut jobs) = jobs;
    tokio::spawn(async move {
        while let Some(job) = jobs.recv().await {
            match job {
                Job::Check(id) => {
                    if let Err(error) = worklist::check(&state, &id).await {
                        tracing::warn!(status = error.status.as_u16(), "a duplicate check failed");
                    }
                }
                Job::Flush(done) => {
                    let _ = done.send(());
                }
            }
        }
    });
}

/// Keeps the index in step with other servers' Patient writes (on PostgreSQL, heard by
/// notice): each one's current version replaces what the index held, and the whole
/// index is built again when news may have been missed. Their duplicate checks are
/// left to the server that took the write, so the worklist gets one task per pair.
pub(crate) fn follow_other_servers(state: AppState) {
    use tokio::sync::broadcast::error::RecvError;
    let mut heard = state.store.heard();
    tokio::spawn(async move {
        loop {
            let news = heard.recv().await;
            match news {
                Ok(store::Heard::Changed { resource_type, id }) if resource_type == "Patient" => {
                    match state.store.read("Patient", &id).await {
                        Ok(Some(version)) => {
                            state.mpi.reindex(&version);
                        }
                        Ok(None) => state.mpi.forget(&id),
                        Err(error) => {
                            tracing::warn!(%error, "cannot read a Patient another server wrote")
                        }
                    }
                }
                Ok(store::Heard::Changed { .. }) => {}
                Ok(store::Heard::Missed) | Err(RecvError::Lagged(_)) => {
                    // Whatever else was missed is covered by this one build.
                    heard = heard.resubscribe();
                    if let Err(error) = state.mpi.rebuild(&state.store).await {
                        tracing::warn!(%error, "cannot build the patient index again");
                    }
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Measures u on the indexed Patients when there are enough of them.
fn estimate_u(index: &mut mpi::Index) {
    let count = index.len();
    if count < U_POPULATION {
        return;
    }
    let pairs = count.saturating_mul(count - 1) / 2;
    let started = std::time::Instant::now();
    index.estimate_u(U_SAMPLES.min(pairs), U_SEED);
    tracing::info!(
        patients = count,
        ms = started.elapsed().as_millis() as u64,
        "u measured on the indexed patients"
    );
}

/// The number of indexed Patients at which u is measured after `count`.
fn next_estimate(count: usize) -> usize {
    if count < U_POPULATION {
        U_POPULATION
    } else {
        count.saturating_mul(2)
    }
}

/// Every current Patient of `store` into `index`, except those merged into another.
fn fill(store: &Store, mut index: mpi::Index) -> Result<mpi::Index, store::StoreError> {
    let mut scan = store.scan(&ScanRequest {
        types: vec!["Patient".into()],
        ..ScanRequest::default()
    })?;
    while let Some(page) = scan.next_page()? {
        for scanned in page {
            let Ok(patient) = serde_json::from_str::<Value>(&scanned.body) else {
                continue;
            };
            if is_replaced(&patient) {
                continue;
            }
            if let Err(error) = index.insert(&mpi::record_from_patient(&patient)) {
                return Err(store::StoreError::Backend(format!(
                    "the patient index: {error}"
                )));
            }
        }
    }
    Ok(index)
}

/// Whether a Patient was merged into another (a `replaced-by` link).
pub(crate) fn is_replaced(patient: &Value) -> bool {
    links(patient).any(|(kind, _)| kind == "replaced-by")
}

/// A Patient's links: (type, reference).
pub(crate) fn links(patient: &Value) -> impl Iterator<Item = (&str, &str)> {
    patient
        .get("link")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|link| {
            Some((
                link.get("type")?.as_str()?,
                link.get("other")?.get("reference")?.as_str()?,
            ))
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patient(id: &str) -> store::Write {
        let resource = json!({"resourceType": "Patient", "id": id,
            "name": [{"family": "Lindqvist", "given": ["Astrid"]}],
            "gender": "female", "birthDate": "1961-04-09"});
        store::Write::Update {
            resource_type: "Patient".into(),
            id: id.into(),
            resource: resource.as_object().cloned().unwrap_or_default(),
            if_match: None,
            method: store::Method::Update,
        }
    }

    fn indexed(state: &AppState, id: &str) -> bool {
        let probe = mpi::record_from_patient(&json!({"resourceType": "Patient", "id": "probe",
            "name": [{"family": "Lindqvist", "given": ["Astrid"]}],
            "gender": "female", "birthDate": "1961-04-09"}));
        state.mpi.explain(&probe, id).is_some()
    }

    /// Two servers on one PostgreSQL database: a Patient written, then deleted, on one
    /// reaches the other's patient index without a restart.
    #[tokio::test]
    async fn the_index_follows_other_servers_patient_writes() {
        let Some(database) = store::testing::TestDatabase::postgres() else {
            eprintln!("SKIPPED: PostgreSQL is unreachable");
            return;
        };
        let (one, two) = (database.open(), database.open());
        let state = AppState::new(two, crate::Config::default()).await.unwrap();
        assert!(!indexed(&state, "astrid"));
        one.write(patient("astrid")).await.unwrap();
        assert!(store::testing::eventually(|| indexed(&state, "astrid")).await);
        one.write(store::Write::Delete {
            resource_type: "Patient".into(),
            id: "astrid".into(),
            if_match: None,
        })
        .await
        .unwrap();
        assert!(store::testing::eventually(|| !indexed(&state, "astrid")).await);
    }
}
