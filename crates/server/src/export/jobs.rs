//! Export jobs: each runs on a thread of its own and writes its files under
//! `<export dir>/<job id>/`; the registry answers status polls, cancels, and finds
//! the files to serve.
//!
//! A finished job leaves `manifest.json` next to its files, so it survives a restart;
//! a job interrupted by one is removed when the server starts. (A thread rather than
//! the blocking pool: a shutdown does not wait for a long export to finish.)
//!
//! A job belongs to the principal that started it (`owner`, kept in the manifest); only
//! that principal sees its status and files or cancels it. A job that releases data
//! outside the organisation records its disclosures before it is complete.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use store::{ScanRequest, Store};

use super::ndjson::{ExportError, OutputFile, Progress, write_ndjson};
use crate::disclosure::record::Release;
use crate::disclosure::record_export;

const MANIFEST: &str = "manifest.json";

/// A finished job's record, kept in its directory.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Manifest {
    /// FHIR instant.
    pub transaction_time: String,
    /// The kick-off request's URL.
    pub request: String,
    pub files: Vec<OutputFile>,
    /// Who started the job (`export::owner`); a manifest without one is nobody's.
    #[serde(default)]
    pub owner: Option<String>,
}

pub(crate) enum State {
    Running,
    Complete(Manifest),
    Failed,
}

pub(crate) struct Job {
    pub id: String,
    dir: PathBuf,
    pub request: String,
    /// Who started it (`export::owner`).
    pub owner: Option<String>,
    /// The release it makes outside the organisation, if any.
    release: Option<Release>,
    cancelled: AtomicBool,
    pub done: AtomicU64,
    pub estimate: AtomicU64,
    state: Mutex<State>,
}

impl Job {
    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The path of one of the job's output files, if it has that file.
    pub(crate) fn file(&self, name: &str) -> Option<PathBuf> {
        match &*self.state() {
            State::Complete(manifest) if manifest.files.iter().any(|file| file.name == name) => {
                Some(self.dir.join(name))
            }
            _ => None,
        }
    }
}

/// Every job the server knows.
pub(crate) struct Jobs {
    /// Where job directories go; `None` when the store has no directory.
    dir: Option<PathBuf>,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
}

/// Who asks for a job.
pub(crate) struct Requester {
    /// Who will own it (`export::owner`).
    pub owner: String,
    /// The release it makes outside the organisation, if any.
    pub release: Option<Release>,
}

/// Why a job cannot start.
pub(crate) enum StartError {
    NoDirectory,
    /// Not called on the server's runtime (which records disclosures).
    NoRuntime,
    Busy,
    Thread(std::io::Error),
}

impl Jobs {
    /// The registry of `dir`: finished jobs found there come back, others are removed.
    pub(crate) fn open(dir: Option<PathBuf>) -> Jobs {
        let mut jobs = HashMap::new();
        if let Some(dir) = &dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                let id = entry.file_name().to_string_lossy().to_string();
                match restore(&path) {
                    Some(manifest) => {
                        let job = Job {
                            id: id.clone(),
                            dir: path,
                            request: manifest.request.clone(),
                            owner: manifest.owner.clone(),
                            release: None,
                            cancelled: AtomicBool::new(false),
                            done: AtomicU64::new(manifest.files.iter().map(|f| f.count).sum()),
                            estimate: AtomicU64::new(0),
                            state: Mutex::new(State::Complete(manifest)),
                        };
                        jobs.insert(id, Arc::new(job));
                    }
                    None => remove(&path),
                }
            }
        }
        Jobs {
            dir,
            jobs: Mutex::new(jobs),
        }
    }

    fn jobs(&self) -> MutexGuard<'_, HashMap<String, Arc<Job>>> {
        self.jobs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs().get(id).cloned()
    }

    /// Starts a job on a thread, unless `max_running` jobs are running already.
    pub(crate) fn start(
        &self,
        store: Store,
        scan: ScanRequest,
        request: String,
        max_file_bytes: u64,
        max_running: usize,
        requester: Requester,
    ) -> Result<Arc<Job>, StartError> {
        let Some(root) = &self.dir else {
            return Err(StartError::NoDirectory);
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| StartError::NoRuntime)?;
        let id = store::new_id();
        let job = Arc::new(Job {
            id: id.clone(),
            dir: root.join(&id),
            request,
            owner: Some(requester.owner),
            release: requester.release,
            cancelled: AtomicBool::new(false),
            done: AtomicU64::new(0),
            estimate: AtomicU64::new(0),
            state: Mutex::new(State::Running),
        });
        {
            let mut jobs = self.jobs();
            let running = jobs
                .values()
                .filter(|job| matches!(*job.state(), State::Running))
                .count();
            if running >= max_running {
                return Err(StartError::Busy);
            }
            jobs.insert(id.clone(), job.clone());
        }
        let worker = job.clone();
        let spawned = std::thread::Builder::new()
            .name("export-job".into())
            .spawn(move || run(&worker, &store, &scan, max_file_bytes, &runtime));
        if let Err(error) = spawned {
            self.jobs().remove(&id);
            return Err(StartError::Thread(error));
        }
        Ok(job)
    }

    /// Cancels a job and removes its files (a running job removes them when it
    /// stops). `false` when there is no such job.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        let Some(job) = self.jobs().remove(id) else {
            return false;
        };
        let state = job.state();
        job.cancelled.store(true, Ordering::SeqCst);
        if !matches!(*state, State::Running) {
            remove(&job.dir);
        }
        true
    }
}

fn run(
    job: &Job,
    store: &Store,
    scan: &ScanRequest,
    max_file_bytes: u64,
    runtime: &tokio::runtime::Handle,
) {
    let mut progress = |progress: Progress| {
        job.done.store(progress.done, Ordering::Relaxed);
        job.estimate.store(progress.estimate, Ordering::Relaxed);
        !job.cancelled.load(Ordering::SeqCst)
    };
    let result = write_ndjson(store, scan, &job.dir, max_file_bytes, &mut progress);
    let manifest = result.and_then(|exported| {
        // No file may be fetched before its release is in the accounting of disclosures.
        if let Some(release) = &job.release {
            record_export(runtime, store, release, &job.id, &job.dir, &exported.files)
                .map_err(|error| ExportError::Store(store::StoreError::Backend(error)))?;
        }
        let manifest = Manifest {
            transaction_time: exported.transaction_time.to_fhir(),
            request: job.request.clone(),
            files: exported.files,
            owner: job.owner.clone(),
        };
        let path = job.dir.join(MANIFEST);
        let text = serde_json::to_vec(&manifest).unwrap_or_default();
        std::fs::write(&path, text).map_err(|error| ExportError::Io { path, error })?;
        Ok(manifest)
    });
    let mut state = job.state();
    if job.cancelled.load(Ordering::SeqCst) {
        remove(&job.dir);
        return;
    }
    *state = match manifest {
        Ok(manifest) => State::Complete(manifest),
        Err(error) => {
            tracing::error!(job = %job.id, %error, "an export job failed");
            remove(&job.dir);
            State::Failed
        }
    };
}

/// A finished job's manifest, if its files are all there at their recorded sizes.
fn restore(dir: &Path) -> Option<Manifest> {
    let text = std::fs::read(dir.join(MANIFEST)).ok()?;
    let manifest: Manifest = serde_json::from_slice(&text).ok()?;
    manifest
        .files
        .iter()
        .all(|file| {
            std::fs::metadata(dir.join(&file.name)).is_ok_and(|meta| meta.len() == file.bytes)
        })
        .then_some(manifest)
}

fn remove(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(dir = %dir.display(), %error, "cannot remove an export job's files");
    }
}
