//! The PostgreSQL backend, for `postgres://` URLs.
//!
//! Connections come from a pool (deadpool-postgres) and run on a small runtime of the
//! store's own, so the store opens, and a bulk-export scan reads, the same from any
//! thread, async or not. Writes are transactions of their own: row locks on the
//! resource's key and a version check in each `UPDATE` keep concurrent writers from
//! losing updates (`writer`). Search is the shared planner (`crate::query`) run
//! statement by statement in one read-only snapshot (`reader`).
//! Every table of the Patient compartment carries `pkey`, the patient the row belongs
//! to, so that Citus can keep a patient's resources and index rows on one node (see
//! `schema` and docs/scaling.md).

mod analyze;
mod audit;
mod auth;
pub(crate) mod cache;
mod disclosure;
mod history;
mod horizon;
mod keys;
mod reader;
pub(crate) mod scan;
mod schema;
mod writer;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod};
use tokio::runtime::{Handle, Runtime};
use tokio_postgres::error::SqlState;
use tokio_postgres::{NoTls, Row};

use crate::audit::{AuditBatch, AuditRecord};
use crate::crypt::{Encryption, Keyring, MasterKey};
use crate::params::ParamIds;
use crate::prepared::Indexed;
use crate::{
    HistoryPage, HistoryQuery, Instant, Method, SearchPage, SearchRequest, StoreError,
    TransactionError, Version, Write, Written,
};

/// Pooled connections: enough for a busy server on a few cores, few enough for a
/// database's default `max_connections` (100) to serve several servers.
const POOL_SIZE: usize = 16;
/// How long a request waits for a connection, or for one to be made, before it gets
/// `StoreError::Unavailable` (a 503) instead of hanging while the database is away.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a statement of a pooled connection may run: a search whose client has
/// long gone must not keep a database core busy (migrations and scans have their own
/// connections, without this limit).
const STATEMENT_TIMEOUT: &str = "60s";

pub(crate) struct PostgresStore {
    /// The store's runtime; shut down (without blocking) when the store is dropped.
    runtime: Option<Runtime>,
    handle: Handle,
    pool: Pool,
    config: tokio_postgres::Config,
    params: ParamIds,
    /// The writers' clock and their instants in flight (see `horizon`).
    times: Arc<Mutex<horizon::Times>>,
    analyzer: analyze::Analyzer,
    data_dir: PathBuf,
    /// Opens stored bodies and seals new ones.
    keys: Arc<Keyring>,
    /// Current versions read by id (see `cache`).
    cache: Arc<cache::ReadCache>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The connection settings of a `postgres://` URL, with our timeouts where it sets none.
fn config(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    // The URL may hold a password: never repeat it in an error.
    let mut config = tokio_postgres::Config::from_str(url)
        .map_err(|error| StoreError::Config(format!("invalid PostgreSQL URL: {error}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("custodian");
    }
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// Where the server is, for messages: `host:port/dbname`, no user or password.
fn describe(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("postgres")
    )
}

fn runtime() -> Result<Runtime, StoreError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("store-postgres")
        .enable_all()
        .build()
        .map_err(|error| StoreError::Backend(format!("cannot start the database runtime: {error}")))
}

/// Runs `future` on `handle`'s runtime and waits for it on this thread, whatever
/// thread this is (an async task's too: it blocks that task's worker meanwhile).
fn block_on<T: Send + 'static>(
    handle: &Handle,
    future: impl Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver
        .recv()
        .map_err(|_| StoreError::Backend("the database task stopped".into()))
}

/// Opens one connection outside the pool (migrations, scans), its driver running on
/// the current runtime.
async fn connect(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client, StoreError> {
    let (client, connection) = config.connect(NoTls).await.map_err(|error| {
        StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL at {}: {}",
            describe(config),
            detail(&error)
        ))
    })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Makes the pool's connections on the store's runtime, whichever runtime asks for one:
/// their sockets and driver tasks live there, so a request on another runtime only
/// hands statements to the driver and is woken with the answer.
struct OnStoreRuntime(Handle);

impl deadpool_postgres::Connect for OnStoreRuntime {
    fn connect(
        &self,
        config: &tokio_postgres::Config,
    ) -> std::pin::Pin<
        Box<
            dyn Future<
                    Output = Result<
                        (tokio_postgres::Client, tokio::task::JoinHandle<()>),
                        tokio_postgres::Error,
                    >,
                > + Send
                + '_,
        >,
    > {
        let config = config.clone();
        let made = self.0.spawn(make_connection(config.clone()));
        Box::pin(async move {
            match made.await {
                Ok(made) => made,
                // The store's runtime is shutting down: make it here instead.
                Err(_) => make_connection(config).await,
            }
        })
    }
}

/// A connection and its driver task, on the current runtime.
async fn make_connection(
    config: tokio_postgres::Config,
) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>), tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "PostgreSQL connection ended");
        }
    });
    Ok((client, driver))
}

/// Applies pending migrations to the database `url` names; returns the schema
/// version before and after.
pub(crate) fn migrate(url: &str) -> Result<(u32, u32), StoreError> {
    let config = config(url)?;
    let runtime = runtime()?;
    let result = block_on(runtime.handle(), async move {
        let mut client = connect(&config).await?;
        schema::migrate(&mut client).await
    });
    runtime.shutdown_background();
    result?
}

impl PostgresStore {
    pub(crate) fn open(
        url: &str,
        master: Option<&MasterKey>,
        cache_bytes: usize,
        changes: Arc<crate::changes::Changes>,
    ) -> Result<PostgresStore, StoreError> {
        let config = config(url)?;
        let runtime = runtime()?;
        let handle = runtime.handle().clone();
        let params = ParamIds::default();
        let opened = {
            let config = config.clone();
            let params = params.clone();
            let master = master.cloned();
            block_on(&handle, async move {
                let mut client = connect(&config).await?;
                schema::migrate(&mut client).await?;
                let keys = keys::keyring(&client, master.as_ref()).await?;
                for row in client
                    .query("SELECT pid, type, key FROM search_param", &[])
                    .await
                    .map_err(error)?
                {
                    params.remember(row.get(1), row.get(2), row.get(0));
                }
                let newest: Option<i64> = client
                    .query_one("SELECT max(last_updated) FROM resource_version", &[])
                    .await
                    .map_err(error)?
                    .get(0);
                let resources: i64 = client
                    .query_one(
                        "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'resource'::regclass",
                        &[],
                    )
                    .await
                    .map_err(error)?
                    .get(0);
                let schema: String = client
                    .query_one("SELECT current_schema()", &[])
                    .await
                    .map_err(error)?
                    .get(0);
                Ok::<_, StoreError>((Instant(newest.unwrap_or(0)), resources, keys, schema))
            })
        };
        let (newest, resources, keys, schema) = match opened.and_then(|opened| opened) {
            Ok(opened) => opened,
            Err(error) => {
                runtime.shutdown_background();
                return Err(error);
            }
        };
        let mut pooled = config.clone();
        let options = match config.get_options() {
            Some(options) => format!("{options} -c statement_timeout={STATEMENT_TIMEOUT}"),
            None => format!("-c statement_timeout={STATEMENT_TIMEOUT}"),
        };
        pooled.options(&options);
        let manager = Manager::from_connect(
            pooled,
            OnStoreRuntime(handle.clone()),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| {
                StoreError::Config(format!("cannot build the connection pool: {error}"))
            })?;
        let keys = Arc::new(keys);
        handle.spawn(keys::follow(pool.clone(), Arc::downgrade(&keys)));
        // The listener runs with the cache off too: the change counters hear other
        // servers' writes through it.
        let cache = Arc::new(cache::ReadCache::new(cache_bytes, &schema));
        handle.spawn(cache::listen(
            config.clone(),
            Arc::downgrade(&cache),
            Arc::downgrade(&changes),
        ));
        Ok(PostgresStore {
            runtime: Some(runtime),
            handle,
            analyzer: analyze::Analyzer::new(pool.clone(), u64::try_from(resources).unwrap_or(0)),
            pool,
            config,
            params,
            times: Arc::new(Mutex::new(horizon::Times::new(newest))),
            data_dir: PathBuf::from("custodian-data"),
            keys,
            cache,
        })
    }

    pub(crate) fn data_dir(&self) -> Option<PathBuf> {
        Some(self.data_dir.clone())
    }

    pub(crate) fn set_data_dir(&mut self, dir: &Path) {
        self.data_dir = dir.to_path_buf();
    }

    /// Runs `future` on the store's runtime.
    async fn spawn<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.handle
            .spawn(future)
            .await
            .map_err(|error| StoreError::Backend(format!("database task failed: {error}")))?
    }

    fn writer(&self) -> writer::Writer {
        writer::Writer {
            pool: self.pool.clone(),
            params: self.params.clone(),
            times: self.times.clone(),
            analyzer: self.analyzer.clone(),
            keys: self.keys.clone(),
            cache: self.cache.clone(),
        }
    }

    pub(crate) async fn write(
        &self,
        write: Write,
        audit: Vec<AuditRecord>,
    ) -> Result<Written, StoreError> {
        let indexed = Indexed::new(write, &self.params);
        let audit = AuditBatch::from(audit);
        let writer = self.writer();
        self.spawn(async move { writer.write_one(indexed, &audit).await })
            .await
    }

    #[cfg(test)]
    pub(crate) async fn write_indexed(
        &self,
        write: Write,
        rows: Vec<::search::IndexRow>,
    ) -> Result<Written, StoreError> {
        let indexed = Indexed::with_rows(write, rows);
        let writer = self.writer();
        self.spawn(async move { writer.write_one(indexed, &AuditBatch::new()).await })
            .await
    }

    pub(crate) async fn write_all(
        &self,
        writes: Vec<Write>,
        audit: Vec<AuditRecord>,
    ) -> Result<Vec<Written>, TransactionError> {
        let indexed: Vec<Indexed> = writes
            .into_iter()
            .map(|write| Indexed::new(write, &self.params))
            .collect();
        let audit = AuditBatch::from(audit);
        let writer = self.writer();
        self.handle
            .spawn(async move { writer.write_all(&indexed, &audit).await })
            .await
            .map_err(|error| StoreError::Backend(format!("database task failed: {error}")))?
    }

    /// Reads run on the caller's runtime (the statement goes to the connection's driver
    /// on the store's runtime): a hop fewer than a task of their own. The read cache
    /// answers first when it can.
    pub(crate) async fn read(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Version>, StoreError> {
        let ticket = match self.cache.get(resource_type, id) {
            Ok(version) => return Ok(Some(version)),
            Err(ticket) => ticket,
        };
        let version = self.read_stored(resource_type, id).await?;
        if let (Some(ticket), Some(version)) = (ticket, &version) {
            self.cache.fill(ticket, version);
        }
        Ok(version)
    }

    async fn read_stored(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<Version>, StoreError> {
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client
            .prepare_cached(
                "SELECT v.type, v.id, v.version, v.last_updated, v.method, v.body, v.created
                 FROM resource_key k
                 JOIN resource r ON r.rid = k.rid AND r.pkey = k.pkey
                 JOIN resource_version v ON v.type = k.type AND v.id = k.id
                   AND v.version = r.version AND v.pkey = r.pkey
                 WHERE k.type = $1 AND k.id = $2",
            )
            .await
            .map_err(error)?;
        let row = client
            .query_opt(&statement, &[&resource_type, &id])
            .await
            .map_err(error)?;
        row.as_ref()
            .map(|row| version_from_row(row, &self.keys))
            .transpose()
    }

    pub(crate) async fn vread(
        &self,
        resource_type: &str,
        id: &str,
        version: u64,
    ) -> Result<Option<Version>, StoreError> {
        let Ok(version) = i64::try_from(version) else {
            return Ok(None);
        };
        let client = self.pool.get().await.map_err(pool_error)?;
        let statement = client
            .prepare_cached(
                "SELECT type, id, version, last_updated, method, body, created
                 FROM resource_version WHERE type = $1 AND id = $2 AND version = $3",
            )
            .await
            .map_err(error)?;
        let row = client
            .query_opt(&statement, &[&resource_type, &id, &version])
            .await
            .map_err(error)?;
        row.as_ref()
            .map(|row| version_from_row(row, &self.keys))
            .transpose()
    }

    pub(crate) async fn current_of_type(
        &self,
        resource_type: &str,
        limit: usize,
    ) -> Result<Vec<Version>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let pool = self.pool.clone();
        let resource_type = resource_type.to_string();
        let keys = self.keys.clone();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let statement = client
                .prepare_cached(
                    "SELECT v.type, v.id, v.version, v.last_updated, v.method, v.body, v.created
                     FROM resource r JOIN resource_version v ON v.type = r.type AND v.id = r.id
                       AND v.version = r.version AND v.pkey = r.pkey
                     WHERE r.type = $1 AND r.deleted = 0 ORDER BY r.id LIMIT $2",
                )
                .await
                .map_err(error)?;
            client
                .query(&statement, &[&resource_type, &limit])
                .await
                .map_err(error)?
                .iter()
                .map(|row| version_from_row(row, &keys))
                .collect()
        })
        .await
    }

    pub(crate) async fn history(&self, query: HistoryQuery) -> Result<HistoryPage, StoreError> {
        let pool = self.pool.clone();
        // Before the statements' snapshots, and after (see `horizon`).
        let times = self.times.clone();
        let start = times
            .lock()
            .map_err(|_| StoreError::Backend("the clock lock is poisoned".into()))?
            .read_start();
        let keys = self.keys.clone();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            let horizon = || {
                times
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .horizon(start)
            };
            history::page(&client, &keys, &query, start.first_in_flight(), horizon).await
        })
        .await
    }

    /// Runs `f` with a reader on one read-only snapshot, on a blocking thread of the
    /// store's runtime (the planner is synchronous).
    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&reader::PgReader<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let pool = self.pool.clone();
        let params = self.params.clone();
        let handle = self.handle.clone();
        let keys = self.keys.clone();
        self.handle
            .spawn_blocking(move || reader::in_snapshot(&handle, &pool, &params, &keys, f))
            .await
            .map_err(|error| StoreError::Backend(format!("search task failed: {error}")))?
    }

    pub(crate) async fn search(&self, request: SearchRequest) -> Result<SearchPage, StoreError> {
        self.with_reader(move |reader| crate::query::search(reader, &request))
            .await
    }

    pub(crate) async fn explain_search(
        &self,
        request: SearchRequest,
    ) -> Result<String, StoreError> {
        self.with_reader(move |reader| crate::query::explain(reader, &request))
            .await
    }
}

fn version_from_row(row: &Row, keys: &Keyring) -> Result<Version, StoreError> {
    version_at(row, 0, keys)
}

/// A version from the columns type, id, version, last_updated, method, body and
/// created, starting at column `offset`.
fn version_at(row: &Row, offset: usize, keys: &Keyring) -> Result<Version, StoreError> {
    let version: i64 = row.try_get(offset + 2).map_err(error)?;
    let method: String = row.try_get(offset + 4).map_err(error)?;
    Ok(Version {
        resource_type: row.try_get(offset).map_err(error)?,
        id: row.try_get(offset + 1).map_err(error)?,
        version: u64::try_from(version).unwrap_or(0),
        last_updated: Instant(row.try_get(offset + 3).map_err(error)?),
        method: Method::from_verb(&method),
        body: body_at(row, offset + 5, keys)?,
        created: row.try_get(offset + 6).map_err(error)?,
    })
}

/// A body column (bytea) as text: plain JSON as it is, a sealed body opened where it
/// lies.
fn body_at(row: &Row, index: usize, keys: &Keyring) -> Result<Option<String>, StoreError> {
    row.try_get::<_, Option<Vec<u8>>>(index)
        .map_err(error)?
        .map(|stored| keys.open_owned(stored))
        .transpose()
}

impl PostgresStore {
    pub(crate) fn encryption(&self) -> Encryption {
        self.keys.encryption()
    }

    /// Wraps every data key with `new` instead, in one transaction.
    pub(crate) async fn rewrap_keys(&self, new: &MasterKey) -> Result<usize, StoreError> {
        let rows = self.keys.rewrap(new)?;
        let pool = self.pool.clone();
        self.spawn(async move {
            let mut client = pool.get().await.map_err(pool_error)?;
            keys::replace(&mut client, &rows).await
        })
        .await
    }

    /// Adds a data key, which seals new bodies once the stores learn it (`keys::follow`);
    /// returns its id.
    /// Seals again every stored body not sealed with the newest data key, a page of
    /// versions at a time (keyset order of the primary key), each page's changes in a
    /// transaction of their own; returns the versions checked and those sealed again.
    pub(crate) async fn reseal(
        &self,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(u64, u64), StoreError> {
        /// A version's primary key: type, id, version and patient key.
        type Cursor = (String, String, i64, String);
        let mut after: Cursor = (String::new(), String::new(), -1, String::new());
        let (mut checked, mut resealed) = (0u64, 0u64);
        loop {
            let (pool, keys, from) = (self.pool.clone(), self.keys.clone(), after.clone());
            let page = self
                .spawn(async move {
                    let mut client = pool.get().await.map_err(pool_error)?;
                    let rows = client
                        .query(
                            "SELECT type, id, version, pkey, body FROM resource_version
                             WHERE (type, id, version, pkey) > ($1, $2, $3, $4)
                               AND body IS NOT NULL
                             ORDER BY type, id, version, pkey LIMIT $5",
                            &[
                                &from.0,
                                &from.1,
                                &from.2,
                                &from.3,
                                &crate::crypt::RESEAL_PAGE,
                            ],
                        )
                        .await
                        .map_err(error)?;
                    let mut changed: (Vec<String>, Vec<String>, Vec<i64>, Vec<String>) =
                        Default::default();
                    let mut sealed: Vec<Vec<u8>> = Vec::new();
                    let mut last: Option<Cursor> = None;
                    for row in &rows {
                        let key: Cursor = (row.get(0), row.get(1), row.get(2), row.get(3));
                        let body: Vec<u8> = row.get(4);
                        if let Some(again) = keys.reseal(&body)? {
                            changed.0.push(key.0.clone());
                            changed.1.push(key.1.clone());
                            changed.2.push(key.2);
                            changed.3.push(key.3.clone());
                            sealed.push(again);
                        }
                        last = Some(key);
                    }
                    if !sealed.is_empty() {
                        let transaction = client.transaction().await.map_err(error)?;
                        transaction
                            .execute(
                                "UPDATE resource_version AS v SET body = u.body
                                 FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[],
                                     $5::bytea[]) AS u (type, id, version, pkey, body)
                                 WHERE v.type = u.type AND v.id = u.id AND v.version = u.version
                                   AND v.pkey = u.pkey",
                                &[&changed.0, &changed.1, &changed.2, &changed.3, &sealed],
                            )
                            .await
                            .map_err(error)?;
                        transaction.commit().await.map_err(error)?;
                    }
                    Ok::<_, StoreError>((rows.len() as u64, sealed.len() as u64, last))
                })
                .await?;
            let (read, again, last) = page;
            let Some(last) = last else {
                break;
            };
            after = last;
            checked += read;
            resealed += again;
            progress(checked);
        }
        Ok((checked, resealed))
    }

    pub(crate) async fn add_data_key(&self) -> Result<u32, StoreError> {
        let master = self
            .keys
            .master()
            .cloned()
            .ok_or_else(|| StoreError::Config("a data key needs the master key".into()))?;
        let pool = self.pool.clone();
        self.spawn(async move {
            let client = pool.get().await.map_err(pool_error)?;
            keys::add(&client, &master).await
        })
        .await
    }
}

/// The message of a PostgreSQL error, with the server's detail when it sent one.
fn detail(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// Whether an error means the database is away (connection lost or refused, server
/// shutting down or starting up) rather than that a statement failed.
fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    if error.is_closed() {
        return true;
    }
    match error.code() {
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
        }
        // No server error: the connection itself failed (I/O, closed, refused).
        None => std::error::Error::source(error)
            .is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some()),
    }
}

/// A PostgreSQL error as the store reports it.
pub(crate) fn error(error: tokio_postgres::Error) -> StoreError {
    if is_unavailable(&error) {
        StoreError::Unavailable(format!("PostgreSQL connection lost: {}", detail(&error)))
    } else if error.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION) {
        // A hot standby, or `default_transaction_read_only`: the write never started.
        StoreError::ReadOnly(detail(&error))
    } else {
        StoreError::Backend(detail(&error))
    }
}

/// A failure to get a pooled connection: the database is away, or too busy.
pub(crate) fn pool_error(error: PoolError) -> StoreError {
    match error {
        PoolError::Backend(error) if !is_unavailable(&error) => StoreError::Backend(detail(&error)),
        PoolError::Backend(error) => {
            StoreError::Unavailable(format!("cannot connect to PostgreSQL: {}", detail(&error)))
        }
        PoolError::Timeout(_) => {
            StoreError::Unavailable("no PostgreSQL connection became available in time".into())
        }
        other => StoreError::Unavailable(format!("PostgreSQL connection pool: {other}")),
    }
}
