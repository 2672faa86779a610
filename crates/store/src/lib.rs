//! The record store: every version of every resource, kept durably.
//!
//! The store owns versioning (`meta.versionId`, `meta.lastUpdated`), optimistic
//! concurrency (`If-Match`), deletion as a version, and history.
//! A write is acknowledged only after it is committed and synced; concurrent writers
//! share one sync (group commit).
//!
//! It knows FHIR only as JSON objects with a `resourceType`; it knows nothing about HTTP.

mod body;
mod error;
mod history;
mod instant;
mod resource;
mod scan;
mod search;
mod sqlite;

use std::sync::Arc;

pub use error::{StoreError, TransactionError};
pub use history::{HistoryPage, HistoryQuery, HistoryScope};
pub use instant::{Instant, Period};
pub use resource::{Method, Version, Write, Written};
pub use scan::{Patients, Scan, ScanRequest, Scanned, TypeFilter};
pub use search::{SearchPage, SearchRequest};

use sqlite::SqliteStore;

/// A fresh server-assigned id (a UUID v7: unique and time-ordered).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A handle to the record store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
}

enum Backend {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the store that `url` names, creating it if needed.
    ///
    /// `sqlite:PATH` opens the SQLite file at PATH; when PATH is a directory, the file
    /// `custodian.db` inside it.
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_as(url, false)
    }

    /// Opens the store for a bulk load. When it holds no resources yet, writes skip the
    /// search value indexes (searches stay correct but scan), and the next [`Store::open`]
    /// builds them in one sorted pass; a store that already holds data opens as usual.
    pub fn open_bulk(url: &str) -> Result<Store, StoreError> {
        Store::open_as(url, true)
    }

    fn open_as(url: &str, bulk: bool) -> Result<Store, StoreError> {
        let backend = match url.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => {
                Backend::Sqlite(SqliteStore::open(std::path::Path::new(path), bulk)?)
            }
            _ => {
                return Err(StoreError::Config(format!(
                    "unsupported database URL {url:?}: expected sqlite:PATH"
                )));
            }
        };
        Ok(Store {
            backend: Arc::new(backend),
        })
    }

    /// Applies one write; returns once it is durable.
    pub async fn write(&self, write: Write) -> Result<Written, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.write(write).await,
        }
    }

    /// Applies every write or none (a transaction); returns once they are durable.
    pub async fn write_all(&self, writes: Vec<Write>) -> Result<Vec<Written>, TransactionError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.write_all(writes).await,
        }
    }

    /// The current version of a resource (a deletion has no body), or `None` if it never existed.
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Version>, StoreError> {
        match &*self.backend {
            // A point read takes microseconds: do it on the calling task.
            Backend::Sqlite(sqlite) => sqlite.read(resource_type, id),
        }
    }

    /// One version of a resource.
    pub async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> Result<Option<Version>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.vread(resource_type, id, version),
        }
    }

    /// The current, not deleted, versions of every resource of a type, at most `limit`
    /// (for small configuration types such as StructureDefinition, not for searching).
    pub async fn current_of_type(
        &self,
        resource_type: &str,
        limit: usize,
    ) -> Result<Vec<Version>, StoreError> {
        let store = self.clone();
        let resource_type = resource_type.to_string();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.current_of_type(&resource_type, limit),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("listing task failed: {error}")))?
    }

    /// Opens a scan of the current resources `request` selects, on one snapshot of the
    /// store, for bulk export. Blocking: call it, and read the scan, off the async runtime.
    pub fn scan(&self, request: &ScanRequest) -> Result<Scan, StoreError> {
        let backend = match &*self.backend {
            Backend::Sqlite(sqlite) => scan::ScanBackend::Sqlite(sqlite.scan(request)?),
        };
        Ok(Scan { backend })
    }

    /// The directory the database lives in (exports keep their files under it).
    pub fn data_dir(&self) -> Option<std::path::PathBuf> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.data_dir(),
        }
    }

    /// A page of history, newest first.
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPage, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.history(&query),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("history task failed: {error}")))?
    }

    /// Writes with the given index rows instead of the indexer's (tests of search).
    #[cfg(test)]
    pub(crate) async fn write_indexed(
        &self,
        write: Write,
        rows: Vec<::search::IndexRow>,
    ) -> Result<Written, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.write_indexed(write, rows).await,
        }
    }

    /// The SQL and query plan of a search's first page and count (for tuning).
    #[doc(hidden)]
    pub async fn explain_search(&self, request: SearchRequest) -> Result<String, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.explain_search(&request),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("explain task failed: {error}")))?
    }

    /// One page of a search, with its includes.
    pub async fn search(&self, request: SearchRequest) -> Result<SearchPage, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.search(&request),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("search task failed: {error}")))?
    }
}
