//! Databases for tests, of either backend: a fresh SQLite directory, or a fresh schema
//! in the PostgreSQL that `CUSTODIAN_TEST_POSTGRES` names (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each is removed when dropped.
//! When PostgreSQL cannot be reached the PostgreSQL tests print a notice and pass,
//! unless `CI=true`, where they fail. Not part of the store's API.
//!
//! [`each_backend!`](crate::each_backend) writes one test per backend from one body.

#![allow(clippy::expect_used)] // Test support: a failure here is a failed test.

use std::io::{Read, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::Store;

/// Which server the PostgreSQL tests use.
pub const POSTGRES_VARIABLE: &str = "CUSTODIAN_TEST_POSTGRES";
/// The server the PostgreSQL tests use when the variable is not set.
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// One test's database; dropping it removes it.
pub struct TestDatabase {
    /// The URL to open the store with.
    pub url: String,
    /// A directory the test may keep files in (a SQLite database's own directory).
    pub dir: PathBuf,
    /// The PostgreSQL server and the schema made for this test.
    postgres: Option<(String, String)>,
    /// Whether `dir` was made for this database (and goes with it).
    owns_dir: bool,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A name no other test of any process uses at the same time.
fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `work` with a client of the server `url` names, on a thread and runtime of
/// their own (so it works from sync code and from inside a test's runtime alike).
fn with_client<F, Fut>(url: &str, work: F) -> Result<(), String>
where
    F: FnOnce(tokio_postgres::Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let url = url.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        runtime.block_on(async move {
            let mut config: tokio_postgres::Config = url
                .parse()
                .map_err(|error: tokio_postgres::Error| error.to_string())?;
            config.connect_timeout(std::time::Duration::from_secs(5));
            let (client, connection) =
                config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|error| match std::error::Error::source(&error) {
                        Some(source) => format!("{error}: {source}"),
                        None => error.to_string(),
                    })?;
            tokio::spawn(connection);
            work(client).await
        })
    })
    .join()
    .map_err(|_| "the database thread panicked".to_string())?
}

/// Runs `statements` on the server `url` names.
fn execute(url: &str, statements: String) -> Result<(), String> {
    with_client(url, |client| async move {
        client
            .batch_execute(&statements)
            .await
            .map_err(|error| match error.as_db_error() {
                Some(db) => db.message().to_string(),
                None => error.to_string(),
            })
    })
}

/// Whether tests must not skip (`CI=true`).
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

impl TestDatabase {
    /// A fresh SQLite database in a new temporary directory.
    pub fn sqlite() -> TestDatabase {
        let dir = std::env::temp_dir().join(unique("custodian-test"));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TestDatabase {
            url: format!("sqlite:{}", dir.display()),
            dir,
            postgres: None,
            owns_dir: true,
        }
    }

    /// A fresh schema in the test PostgreSQL, or `None` (after a notice) when it cannot
    /// be reached. Panics when it cannot be reached and `CI=true`.
    pub fn postgres() -> Option<TestDatabase> {
        let dir = std::env::temp_dir().join(unique("custodian-test"));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        let mut database = TestDatabase::postgres_for(&dir)?;
        database.owns_dir = true;
        Some(database)
    }

    /// A fresh schema in the test PostgreSQL for a test whose files live in `dir` (which
    /// the test owns). The schema is dropped with this value, and, should the test
    /// never drop it, by a later one once `dir` is gone.
    pub fn postgres_for(dir: &Path) -> Option<TestDatabase> {
        let server =
            std::env::var(POSTGRES_VARIABLE).unwrap_or_else(|_| DEFAULT_POSTGRES.to_string());
        match TestDatabase::postgres_on(&server, dir) {
            Ok(database) => Some(database),
            Err(error) => {
                let server_name = server.rsplit('@').next().unwrap_or(&server);
                if in_ci() {
                    panic!("PostgreSQL at {server_name} is unreachable and CI=true: {error}");
                }
                eprintln!(
                    "SKIPPED: PostgreSQL at {server_name} is unreachable ({error}); set {POSTGRES_VARIABLE} to run the PostgreSQL tests"
                );
                None
            }
        }
    }

    /// A fresh schema on the PostgreSQL server `server` (a `postgres://` URL), for
    /// files in `dir`; dropped with this value (benchmarks use it too).
    pub fn postgres_on(server: &str, dir: &Path) -> Result<TestDatabase, String> {
        let schema = unique("custodian_test");
        // An absolute path: other processes' sweeps check it from their own directories.
        let absolute = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let comment = absolute.display().to_string().replace('\'', "''");
        sweep_orphans(server)?;
        execute(
            server,
            format!("CREATE SCHEMA {schema}; COMMENT ON SCHEMA {schema} IS '{comment}'"),
        )?;
        let separator = if server.contains('?') { '&' } else { '?' };
        Ok(TestDatabase {
            url: format!("{server}{separator}options=-c%20search_path%3D{schema}"),
            dir: dir.to_path_buf(),
            postgres: Some((server.to_string(), schema)),
            owns_dir: false,
        })
    }

    /// The bytes the database takes: its files, or its schema's tables and indexes.
    pub fn size_bytes(&self) -> u64 {
        match &self.postgres {
            None => std::fs::read_dir(&self.dir)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter_map(|entry| entry.metadata().ok())
                        .map(|metadata| metadata.len())
                        .sum()
                })
                .unwrap_or(0),
            Some((_, schema)) => u64::try_from(self.scalar(&format!(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                 WHERE n.nspname = '{schema}' AND c.relkind IN ('r', 'm')"
            )))
            .unwrap_or(0),
        }
    }

    /// The database of the backend `CUSTODIAN_TEST_BACKEND` names (`sqlite`, the
    /// default, or `postgres`); a PostgreSQL that cannot be reached is a failure here,
    /// since the run asked for it.
    pub fn from_env() -> TestDatabase {
        match std::env::var("CUSTODIAN_TEST_BACKEND").as_deref() {
            Ok("postgres") => TestDatabase::postgres().unwrap_or_else(|| {
                panic!("CUSTODIAN_TEST_BACKEND=postgres, but PostgreSQL is unreachable")
            }),
            _ => TestDatabase::sqlite(),
        }
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        if self.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// Opens the store (applying migrations); panics if it cannot.
    pub fn open(&self) -> Store {
        Store::open(&self.url).expect("open the test store")
    }

    /// The SQLite database file (meaningless for PostgreSQL).
    pub fn sqlite_file(&self) -> PathBuf {
        self.dir.join("custodian.db")
    }

    /// The number of rows in `table`.
    pub fn count(&self, table: &str) -> i64 {
        self.scalar(&format!("SELECT count(*) FROM {table}"))
    }

    /// Runs `sql` on the database directly, past the store (for tests that tamper with
    /// it); the database's refusal as text.
    pub fn execute(&self, sql: &str) -> Result<(), String> {
        match &self.postgres {
            None => rusqlite::Connection::open(self.sqlite_file())
                .and_then(|connection| connection.execute_batch(sql))
                .map_err(|error| error.to_string()),
            Some(_) => execute(&self.url, sql.to_string()),
        }
    }

    /// The integer the query `sql` returns.
    pub fn scalar(&self, sql: &str) -> i64 {
        match &self.postgres {
            None => {
                let connection =
                    rusqlite::Connection::open(self.sqlite_file()).expect("open the database");
                connection
                    .query_row(sql, [], |row| row.get(0))
                    .expect("run the query")
            }
            Some(_) => {
                let url = self.url.clone();
                let sql = sql.to_string();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    runtime.block_on(async move {
                        let (client, connection) = url
                            .parse::<tokio_postgres::Config>()
                            .expect("URL")
                            .connect(tokio_postgres::NoTls)
                            .await
                            .expect("connect");
                        tokio::spawn(connection);
                        client
                            .query_one(&sql, &[])
                            .await
                            .expect("run the query")
                            .get::<_, i64>(0)
                    })
                })
                .join()
                .expect("query thread")
            }
        }
    }

    /// Where the test may keep files.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((server, schema)) = &self.postgres {
            let dropped = execute(
                server,
                format!(
                    "SET client_min_messages = warning; SET lock_timeout = '20s';
                     DROP SCHEMA IF EXISTS {schema} CASCADE"
                ),
            );
            if let Err(error) = dropped {
                eprintln!("warning: could not drop test schema {schema}: {error}");
            }
        }
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether `check` holds within ten seconds, asked every 50 ms: for what another
/// store or a background task does a moment later.
pub async fn eventually(check: impl Fn() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(10) {
        if check() {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    check()
}

/// Every stored body of the database `url` names (sqlite:DIR or a postgres:// URL),
/// as the raw bytes the database holds: for checking what is kept at rest.
pub fn stored_bodies(url: &str) -> Vec<Vec<u8>> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        let path = Path::new(path);
        let file = if path.is_dir() {
            path.join("custodian.db")
        } else {
            path.to_path_buf()
        };
        let connection = rusqlite::Connection::open(file).expect("open the database");
        let mut statement = connection
            .prepare("SELECT body FROM resource_version WHERE body IS NOT NULL")
            .expect("prepare");
        let rows = statement
            .query_map([], |row| {
                Ok(match row.get_ref(0)? {
                    rusqlite::types::ValueRef::Text(bytes)
                    | rusqlite::types::ValueRef::Blob(bytes) => bytes.to_vec(),
                    _ => Vec::new(),
                })
            })
            .expect("query");
        return rows.collect::<Result<_, _>>().expect("read the bodies");
    }
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let into = bodies.clone();
    with_client(url, |client| async move {
        let rows = client
            .query(
                "SELECT body FROM resource_version WHERE body IS NOT NULL",
                &[],
            )
            .await
            .map_err(|error| error.to_string())?;
        let mut into = into.lock().map_err(|_| "poisoned".to_string())?;
        for row in rows {
            into.push(
                row.try_get::<_, Vec<u8>>(0)
                    .map_err(|error| error.to_string())?,
            );
        }
        Ok(())
    })
    .expect("read the bodies");
    bodies.lock().expect("bodies").clone()
}

/// Drops the test schemas whose test directory is gone (tests that never dropped
/// theirs: killed, or holding it until the process ended).
fn sweep_orphans(server: &str) -> Result<(), String> {
    with_client(server, |client| async move {
        let rows = client
            .query(
                "SELECT nspname::text, obj_description(oid, 'pg_namespace') FROM pg_namespace
                 WHERE nspname LIKE 'custodian\\_test\\_%'",
                &[],
            )
            .await
            .map_err(|error| error.to_string())?;
        for row in rows {
            let schema: String = row.get(0);
            let dir: Option<String> = row.get(1);
            if dir.is_some_and(|dir| !Path::new(&dir).exists()) {
                // Another process may be sweeping too: failures are harmless.
                let _ = client
                    .batch_execute(&format!(
                        "SET client_min_messages = warning; SET lock_timeout = '2s';
                         DROP SCHEMA IF EXISTS {schema} CASCADE"
                    ))
                    .await;
            }
        }
        Ok(())
    })
}

/// A TCP proxy to the test PostgreSQL that a test can cut (every connection through
/// it dropped, new ones refused) and restore: the database going away and coming back,
/// without disturbing the other tests on the same server.
pub struct Proxy {
    pub port: u16,
    open: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    /// A proxy to `upstream` (`host:port`).
    pub fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener
            .local_addr()
            .map(|address| address.port())
            .unwrap_or(0);
        let open = Arc::new(AtomicBool::new(true));
        let live = Arc::new(Mutex::new(Vec::new()));
        let (accepting, connections) = (open.clone(), live.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !accepting.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (Ok(client_copy), Ok(server_copy), Ok(client_in), Ok(server_out)) = (
                    client.try_clone(),
                    server.try_clone(),
                    client.try_clone(),
                    server.try_clone(),
                ) else {
                    continue;
                };
                if let Ok(mut streams) = connections.lock() {
                    streams.push(client_copy);
                    streams.push(server_copy);
                }
                pipe(client_in, server_out);
                pipe(server, client);
            }
        });
        Proxy { port, open, live }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        if let Ok(mut streams) = self.live.lock() {
            for stream in streams.drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// A proxy to the server of `database`, and the database's URL through it.
    pub fn to(database: &TestDatabase) -> (Proxy, String) {
        let config: tokio_postgres::Config = database.url.parse().expect("a PostgreSQL URL");
        let host = match config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
            _ => "127.0.0.1".into(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let upstream = (host.as_str(), port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addresses| addresses.next())
            .map_or_else(|| format!("{host}:{port}"), |address| address.to_string());
        let proxy = Proxy::start(upstream);
        let url = database.url.replacen(
            &format!("@{host}:{port}/"),
            &format!("@127.0.0.1:{}/", proxy.port),
            1,
        );
        assert_ne!(url, database.url, "the test URL must name its host:port");
        (proxy, url)
    }
}

/// Copies `from` to `to` on a thread of its own until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// One test per backend from one body: `each_backend! { #[tokio::test] async fn
/// name(db) { ... } }` makes `name::sqlite` and `name::postgres`, each with its own
/// fresh [`TestDatabase`] as `db`.
#[macro_export]
macro_rules! each_backend {
    ($(#[$attr:meta])* async fn $name:ident($db:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            async fn sqlite() {
                let $db = $crate::testing::TestDatabase::sqlite();
                $body
            }

            $(#[$attr])*
            async fn postgres() {
                let Some($db) = $crate::testing::TestDatabase::postgres() else {
                    return;
                };
                $body
            }
        }
    };
}
