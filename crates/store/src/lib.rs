//! The record store: every version of every resource, kept durably.
//!
//! The store owns versioning (`meta.versionId`, `meta.lastUpdated`), optimistic
//! concurrency (`If-Match`), deletion as a version, and history.
//! A write is acknowledged only after it is committed and synced; concurrent writers
//! share one sync (group commit).
//!
//! It knows FHIR only as JSON objects with a `resourceType`; it knows nothing about HTTP.
//!
//! Two backends: SQLite (`sqlite:PATH`, embedded, the default) and PostgreSQL
//! (`postgres://...`). They share the preparation of writes (`prepared`) and the search
//! planner and SQL (`query`); what differs is in `sqlite/` and `postgres/`.

mod audit;
mod auth;
mod body;
mod changes;
mod crypt;
mod disclosure;
mod error;
mod history;
mod instant;
mod params;
mod postgres;
mod prepared;
mod query;
#[cfg(test)]
mod query_tests;
mod resource;
mod scan;
#[cfg(test)]
mod scan_tests;
mod search;
mod sqlite;
#[doc(hidden)]
pub mod testing;

use std::sync::Arc;

pub use audit::{
    AuditBatch, AuditColumn, AuditDetail, AuditFilter, AuditPage, AuditQuery, AuditRecord,
    BrokenLink, LOGIN_SUBTYPE, LOGIN_TYPE, Verification,
};
pub use auth::AuthKind;
pub use changes::Heard;
pub use crypt::{Encryption, MasterKey};
pub use disclosure::Disclosure;
pub use error::{StoreError, TransactionError};
pub use history::{HistoryPage, HistoryQuery, HistoryScope};
pub use instant::{Instant, Period};
pub use resource::{Method, Version, Write, Written};
pub use scan::{Patients, Scan, ScanRequest, Scanned, TypeFilter};
pub use search::{SearchPage, SearchRequest};

use postgres::PostgresStore;
use sqlite::SqliteStore;

/// A fresh server-assigned id (a UUID v7: unique and time-ordered).
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A handle to the record store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Arc<Backend>,
    changes: Arc<changes::Changes>,
}

enum Backend {
    Sqlite(SqliteStore),
    Postgres(Box<PostgresStore>),
}

/// How to open a store.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Seals new resource bodies at rest (see docs/security.md); a store that holds
    /// data keys opens only with it.
    pub master_key: Option<MasterKey>,
    /// The size of the read cache of current versions, on PostgreSQL (see
    /// ARCHITECTURE.md); `None` for the default (32 MiB), `Some(0)` to turn it off.
    pub read_cache_bytes: Option<usize>,
}

/// What a database URL names.
enum Url<'a> {
    Sqlite(&'a str),
    Postgres,
}

fn parse_url(url: &str) -> Result<Url<'_>, StoreError> {
    match url.split_once(':') {
        Some(("sqlite", path)) if !path.is_empty() => Ok(Url::Sqlite(path)),
        Some(("postgres" | "postgresql", rest)) if rest.starts_with("//") => Ok(Url::Postgres),
        // Never echo a URL that may hold a password.
        Some(("postgres" | "postgresql", _)) => Err(StoreError::Config(
            "unsupported database URL: expected postgres://USER@HOST:PORT/DATABASE".into(),
        )),
        _ => Err(StoreError::Config(format!(
            "unsupported database URL {url:?}: expected sqlite:PATH or postgres://USER@HOST:PORT/DATABASE"
        ))),
    }
}

/// Brings the schema of the database `url` names up to date without serving it;
/// returns its version before and after.
pub fn migrate(url: &str, options: &Options) -> Result<(u32, u32), StoreError> {
    match parse_url(url)? {
        Url::Sqlite(path) => sqlite::migrate(std::path::Path::new(path), options),
        Url::Postgres => postgres::migrate(url),
    }
}

impl Store {
    /// Opens the store that `url` names, creating it if needed, and applies pending
    /// migrations.
    ///
    /// `sqlite:PATH` opens the SQLite file at PATH; when PATH is a directory, the file
    /// `custodian.db` inside it. `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`
    /// (any libpq-style URL) connects to PostgreSQL; its files (exports) are kept in
    /// `./custodian-data` unless [`Store::with_data_dir`] says otherwise. Blocking (it
    /// works from any thread, async or not, but holds it while it connects).
    pub fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, &Options::default())
    }

    /// [`Store::open`] with options: the master key.
    pub fn open_with(url: &str, options: &Options) -> Result<Store, StoreError> {
        Store::open_as(url, false, options)
    }

    /// [`Store::open`] on a blocking thread, for async callers.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, &Options::default()).await
    }

    /// [`Store::open_with`] on a blocking thread, for async callers.
    pub async fn connect_with(url: &str, options: &Options) -> Result<Store, StoreError> {
        let (url, options) = (url.to_string(), options.clone());
        tokio::task::spawn_blocking(move || Store::open_with(&url, &options))
            .await
            .map_err(|error| StoreError::Backend(format!("opening task failed: {error}")))?
    }

    /// Keeps the store's files (exports) under `dir`. A SQLite store keeps them beside
    /// its database file whatever this says.
    pub fn with_data_dir(mut self, dir: &std::path::Path) -> Store {
        if let Some(Backend::Postgres(postgres)) = Arc::get_mut(&mut self.backend) {
            postgres.set_data_dir(dir);
        }
        self
    }

    /// Which backend this is: `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match &*self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Opens the store for a bulk load. When it holds no resources yet, writes skip the
    /// search value indexes (searches stay correct but scan), and the next [`Store::open`]
    /// builds them in one sorted pass; a store that already holds data opens as usual.
    /// PostgreSQL opens as usual: its bulk writes are multi-row inserts already.
    pub fn open_bulk(url: &str, options: &Options) -> Result<Store, StoreError> {
        Store::open_as(url, true, options)
    }

    fn open_as(url: &str, bulk: bool, options: &Options) -> Result<Store, StoreError> {
        let master = options.master_key.as_ref();
        let changes = Arc::new(changes::Changes::new());
        let backend = match parse_url(url)? {
            Url::Sqlite(path) => {
                Backend::Sqlite(SqliteStore::open(std::path::Path::new(path), bulk, master)?)
            }
            Url::Postgres => Backend::Postgres(Box::new(PostgresStore::open(
                url,
                master,
                options
                    .read_cache_bytes
                    .unwrap_or(postgres::cache::DEFAULT_BYTES),
                changes.clone(),
            )?)),
        };
        Ok(Store {
            backend: Arc::new(backend),
            changes,
        })
    }

    /// Applies one write; returns once it is durable.
    pub async fn write(&self, write: Write) -> Result<Written, StoreError> {
        self.write_audited(write, Vec::new()).await
    }

    /// Applies every write or none (a transaction); returns once they are durable.
    pub async fn write_all(&self, writes: Vec<Write>) -> Result<Vec<Written>, TransactionError> {
        self.write_all_audited(writes, Vec::new()).await
    }

    /// [`Store::write`], appending `audit` to the audit trail in the same transaction:
    /// both commit, or neither does.
    pub async fn write_audited(
        &self,
        write: Write,
        audit: Vec<AuditRecord>,
    ) -> Result<Written, StoreError> {
        let written = match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.write(write, audit).await,
            Backend::Postgres(postgres) => postgres.write(write, audit).await,
        }?;
        self.changed(std::slice::from_ref(&written));
        Ok(written)
    }

    /// Moves the change counters of what was written.
    fn changed(&self, written: &[Written]) {
        for version in written.iter().filter_map(|one| one.version.as_ref()) {
            self.changes.bump(&version.resource_type);
        }
    }

    /// Other servers' writes, as this store hears of them (on PostgreSQL, by notice;
    /// never on SQLite), for what must follow them resource by resource, such as the
    /// patient index. [`Heard::Missed`] comes when the listening connection is back
    /// after a time without it; a receiver that falls behind gets `RecvError::Lagged`,
    /// which means the same.
    pub fn heard(&self) -> tokio::sync::broadcast::Receiver<Heard> {
        self.changes.subscribe()
    }

    /// A number that moves whenever a resource of `resource_type` may have changed: by
    /// this store's writes, and on PostgreSQL by other servers' (heard by notice; every
    /// type's moves when notices may have been missed). For caches of what is derived
    /// from resources, such as the active Consents: read again when it has moved.
    pub fn changes(&self, resource_type: &str) -> u64 {
        self.changes.of(resource_type)
    }

    /// [`Store::write_all`], appending `audit` to the audit trail in the same
    /// transaction.
    pub async fn write_all_audited(
        &self,
        writes: Vec<Write>,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<Written>, TransactionError> {
        let written = match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.write_all(writes, audit).await,
            Backend::Postgres(postgres) => postgres.write_all(writes, audit).await,
        }?;
        self.changed(&written);
        Ok(written)
    }

    /// Appends records to the audit trail (in a transaction of their own); returns once
    /// they are durable.
    pub async fn audit_append(&self, batch: Arc<AuditBatch>) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.audit_append(batch).await,
            Backend::Postgres(postgres) => postgres.audit_append(batch).await,
        }
    }

    /// One audit record's AuditEvent JSON, by its sequence number.
    pub async fn audit_read(&self, seq: i64) -> Result<Option<String>, StoreError> {
        if let Backend::Postgres(postgres) = &*self.backend {
            postgres.audit_read(seq).await
        } else {
            let store = self.clone();
            tokio::task::spawn_blocking(move || match &*store.backend {
                Backend::Sqlite(sqlite) => sqlite.audit_read(seq),
                Backend::Postgres(_) => Err(StoreError::Backend("not a SQLite store".into())),
            })
            .await
            .map_err(|error| StoreError::Backend(format!("audit task failed: {error}")))?
        }
    }

    /// A page of the audit trail.
    pub async fn audit_search(&self, query: AuditQuery) -> Result<AuditPage, StoreError> {
        if let Backend::Postgres(postgres) = &*self.backend {
            postgres.audit_search(query).await
        } else {
            let store = self.clone();
            tokio::task::spawn_blocking(move || match &*store.backend {
                Backend::Sqlite(sqlite) => sqlite.audit_search(&query),
                Backend::Postgres(_) => Err(StoreError::Backend("not a SQLite store".into())),
            })
            .await
            .map_err(|error| StoreError::Backend(format!("audit task failed: {error}")))?
        }
    }

    /// Walks the whole audit chain and reports the first broken link, if any.
    pub async fn audit_verify(&self) -> Result<Verification, StoreError> {
        if let Backend::Postgres(postgres) = &*self.backend {
            return postgres.audit_verify().await;
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.audit_verify(),
            Backend::Postgres(_) => Err(StoreError::Backend("not a SQLite store".into())),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("audit task failed: {error}")))?
    }

    /// The current version of a resource (a deletion has no body), or `None` if it never existed.
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Option<Version>, StoreError> {
        match &*self.backend {
            // A point read takes microseconds: do it on the calling task.
            Backend::Sqlite(sqlite) => sqlite.read(resource_type, id),
            Backend::Postgres(postgres) => postgres.read(resource_type, id).await,
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
            Backend::Postgres(postgres) => postgres.vread(resource_type, id, version).await,
        }
    }

    /// The current, not deleted, versions of every resource of a type, at most `limit`
    /// (for small configuration types such as StructureDefinition, not for searching).
    pub async fn current_of_type(
        &self,
        resource_type: &str,
        limit: usize,
    ) -> Result<Vec<Version>, StoreError> {
        if let Backend::Postgres(postgres) = &*self.backend {
            return postgres.current_of_type(resource_type, limit).await;
        }
        let store = self.clone();
        let resource_type = resource_type.to_string();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.current_of_type(&resource_type, limit),
            Backend::Postgres(_) => Err(StoreError::Backend("not a SQLite store".into())),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("listing task failed: {error}")))?
    }

    /// Opens a scan of the current resources `request` selects, on one snapshot of the
    /// store, for bulk export. Blocking: call it, and read the scan, off the async runtime.
    pub fn scan(&self, request: &ScanRequest) -> Result<Scan, StoreError> {
        let backend = match &*self.backend {
            Backend::Sqlite(sqlite) => scan::ScanBackend::Sqlite(sqlite.scan(request)?),
            Backend::Postgres(postgres) => scan::ScanBackend::Postgres(postgres.scan(request)?),
        };
        Ok(Scan { backend })
    }

    /// The directory the database lives in (exports keep their files under it).
    pub fn data_dir(&self) -> Option<std::path::PathBuf> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.data_dir(),
            Backend::Postgres(postgres) => postgres.data_dir(),
        }
    }

    /// Whether new bodies are sealed, and with which data key.
    pub fn encryption(&self) -> Encryption {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.encryption(),
            Backend::Postgres(postgres) => postgres.encryption(),
        }
    }

    /// Rotates the master key: wraps every data key with `new` instead of the key the
    /// store was opened with, in one transaction; bodies are not rewritten. Returns how
    /// many data keys were rewrapped. From then on the store opens with `new` only.
    pub async fn rotate_master_key(&self, new: &MasterKey) -> Result<usize, StoreError> {
        match &*self.backend {
            // Rare and short: done on the calling task.
            Backend::Sqlite(sqlite) => sqlite.rewrap_keys(new),
            Backend::Postgres(postgres) => postgres.rewrap_keys(new).await,
        }
    }

    /// Seals again, with the newest data key, every stored body that is not sealed
    /// with it: versions stored plain before the store had a master key, and versions
    /// of older data keys (after `rotate-key --new-data-key`, so an old key can be
    /// retired). Safe while servers run: a body's text does not change, only how it is
    /// stored. `progress` hears how many versions were checked so far; returns the
    /// versions checked and those sealed again.
    pub async fn reseal(
        &self,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(u64, u64), StoreError> {
        if self.encryption().sealing_key.is_none() {
            return Err(StoreError::Config(
                "sealing bodies again needs the store's master key".into(),
            ));
        }
        if let Backend::Postgres(postgres) = &*self.backend {
            return postgres.reseal(progress).await;
        }
        // SQLite: a page at a time off the async threads.
        let (mut after, mut checked, mut resealed) = (0i64, 0u64, 0u64);
        loop {
            let store = self.clone();
            let page = tokio::task::spawn_blocking(move || match &*store.backend {
                Backend::Sqlite(sqlite) => sqlite.reseal_page(after),
                Backend::Postgres(_) => Err(StoreError::Backend("not a SQLite store".into())),
            })
            .await
            .map_err(|error| StoreError::Backend(format!("reseal task failed: {error}")))??;
            let (read, again, last) = page;
            let Some(last) = last else {
                return Ok((checked, resealed));
            };
            after = last;
            checked += read;
            resealed += again;
            progress(checked);
        }
    }

    /// Adds a data key that seals the bodies written from now on (older keys keep
    /// opening older bodies); returns its id. Open stores, in this process or another,
    /// learn it within a second.
    pub async fn add_data_key(&self) -> Result<u32, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.add_data_key(),
            Backend::Postgres(postgres) => postgres.add_data_key().await,
        }
    }

    /// A page of history, newest first.
    pub async fn history(&self, query: HistoryQuery) -> Result<HistoryPage, StoreError> {
        if let Backend::Postgres(postgres) = &*self.backend {
            return postgres.history(query).await;
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.history(&query),
            Backend::Postgres(_) => Err(StoreError::Backend("not a SQLite store".into())),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("history task failed: {error}")))?
    }

    /// The document of one account, grant or key record.
    pub async fn auth_get(&self, kind: AuthKind, id: &str) -> Result<Option<String>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.auth_get(kind, id).await,
            Backend::Postgres(postgres) => postgres.auth_get(kind, id).await,
        }
    }

    /// Every record of a kind, by id.
    pub async fn auth_list(&self, kind: AuthKind) -> Result<Vec<(String, String)>, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.auth_list(kind).await,
            Backend::Postgres(postgres) => postgres.auth_list(kind).await,
        }
    }

    /// Stores a record: replaces the one with this id, or with `only_new`, stores it only
    /// if there is none and says whether it did.
    pub async fn auth_put(
        &self,
        kind: AuthKind,
        id: &str,
        body: &str,
        only_new: bool,
    ) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.auth_put(kind, id, body, only_new).await,
            Backend::Postgres(postgres) => postgres.auth_put(kind, id, body, only_new).await,
        }
    }

    /// Removes a record; says whether there was one.
    pub async fn auth_delete(&self, kind: AuthKind, id: &str) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.auth_delete(kind, id).await,
            Backend::Postgres(postgres) => postgres.auth_delete(kind, id).await,
        }
    }

    /// Counts a failed password login of `name` at `now` (seconds since the epoch):
    /// after `max` failures in a row, with no pause as long as `lockout` seconds between
    /// them, the name is locked until `lockout` seconds after the last. Returns whether
    /// it is locked now. The count is in the database, so every server sharing it counts
    /// together and a restart forgets nothing; counts older than the lockout are
    /// forgotten as new failures come.
    pub async fn login_failed(
        &self,
        name: &str,
        now: i64,
        max: u32,
        lockout: i64,
    ) -> Result<bool, StoreError> {
        let until = match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.login_failed(name, now, max, lockout).await,
            Backend::Postgres(postgres) => postgres.login_failed(name, now, max, lockout).await,
        }?;
        Ok(until.is_some_and(|until| until > now))
    }

    /// Whether `name` is locked out of password logins at `now` (seconds since the epoch).
    pub async fn login_locked(&self, name: &str, now: i64) -> Result<bool, StoreError> {
        let until = match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.login_locked_until(name).await,
            Backend::Postgres(postgres) => postgres.login_locked_until(name).await,
        }?;
        Ok(until.is_some_and(|until| until > now))
    }

    /// Clears the failed logins of `name` (it logged in).
    pub async fn login_succeeded(&self, name: &str) -> Result<(), StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.login_succeeded(name).await,
            Backend::Postgres(postgres) => postgres.login_succeeded(name).await,
        }
    }

    /// Records the first use of `key` (a client assertion's id), valid until
    /// `expires_at` (seconds since the epoch): true the first time, false on any reuse
    /// before then. Keys expired at `now` are forgotten.
    pub async fn use_once(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        match &*self.backend {
            Backend::Sqlite(sqlite) => sqlite.use_once(key, expires_at, now).await,
            Backend::Postgres(postgres) => postgres.use_once(key, expires_at, now).await,
        }
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
            Backend::Postgres(postgres) => postgres.write_indexed(write, rows).await,
        }
    }

    /// The SQL and query plan of a search's first page and count (for tuning).
    #[doc(hidden)]
    pub async fn explain_search(&self, request: SearchRequest) -> Result<String, StoreError> {
        if let Backend::Postgres(postgres) = &*self.backend {
            return postgres.explain_search(request).await;
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.explain_search(&request),
            Backend::Postgres(_) => Err(StoreError::Backend("not a SQLite store".into())),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("explain task failed: {error}")))?
    }

    /// One page of a search, with its includes.
    pub async fn search(&self, request: SearchRequest) -> Result<SearchPage, StoreError> {
        if let Backend::Postgres(postgres) = &*self.backend {
            return postgres.search(request).await;
        }
        let store = self.clone();
        tokio::task::spawn_blocking(move || match &*store.backend {
            Backend::Sqlite(sqlite) => sqlite.search(&request),
            Backend::Postgres(_) => Err(StoreError::Backend("not a SQLite store".into())),
        })
        .await
        .map_err(|error| StoreError::Backend(format!("search task failed: {error}")))?
    }
}
