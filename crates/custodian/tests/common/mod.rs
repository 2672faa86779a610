//! Test harness: runs the real `custodian serve` binary on a free loopback port with a
//! fresh data directory, and talks to it over HTTP.
//!
//! In the `on_postgres` test binary, or with `CUSTODIAN_TEST_BACKEND=postgres`, the
//! server keeps its records in PostgreSQL (`CUSTODIAN_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`): each data directory gets a fresh
//! schema of its own ([`database_url`]), dropped once the directory is gone, and keeps
//! only its files (exports) on disk.
//! `CUSTODIAN_TEST_SERVER_LOG=1` echoes the servers' logs into the test output.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod fhir;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{LazyLock, Mutex, mpsc};
use std::time::Duration;

use store::testing::TestDatabase;

/// The PostgreSQL schema of each data directory, for the run's life or until the
/// directory is gone.
static DATABASES: LazyLock<Mutex<HashMap<PathBuf, TestDatabase>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The test binary that runs the suites it includes on PostgreSQL (`on_postgres.rs`).
const POSTGRES_BINARY: &str = "on_postgres";

/// Whether the servers keep their records in PostgreSQL: in the `on_postgres` binary,
/// or with `CUSTODIAN_TEST_BACKEND=postgres`.
pub fn on_postgres() -> bool {
    env!("CARGO_CRATE_NAME") == POSTGRES_BINARY || postgres_asked()
}

fn postgres_asked() -> bool {
    std::env::var("CUSTODIAN_TEST_BACKEND").is_ok_and(|backend| backend == "postgres")
}

/// In the `on_postgres` binary, a PostgreSQL that cannot be reached skips the whole
/// binary: a notice, and the process ends with success before any server starts
/// (`TestDatabase::postgres_for` panics instead under `CI=true`).
fn skip_binary_without_postgres() {
    static REACHABLE: LazyLock<bool> = LazyLock::new(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        TestDatabase::postgres_for(dir.path()).is_some()
    });
    if postgres_asked() || *REACHABLE {
        return;
    }
    // Straight to stderr: the test harness captures `eprintln!`.
    let _ = std::io::stderr().write_all(
        b"SKIPPED: PostgreSQL is unreachable; the HTTP suites on PostgreSQL did not run \
          (set CUSTODIAN_TEST_POSTGRES)\n",
    );
    std::process::exit(0);
}

/// The `--database` URL that stands for `data_dir`: `sqlite:DIR`, or on PostgreSQL the
/// schema made for the directory on first use (the same one every time after).
pub fn database_url(data_dir: &Path) -> String {
    if !on_postgres() {
        return format!("sqlite:{}", data_dir.display());
    }
    skip_binary_without_postgres();
    let mut databases = DATABASES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    // Schemas of directories that are gone go now.
    databases.retain(|dir, _| dir.exists());
    databases
        .entry(data_dir.to_path_buf())
        .or_insert_with(|| {
            TestDatabase::postgres_for(data_dir).unwrap_or_else(|| {
                panic!("CUSTODIAN_TEST_BACKEND=postgres, but PostgreSQL is unreachable")
            })
        })
        .url
        .clone()
}

/// A running server; killed when dropped.
pub struct TestServer {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    /// `http://127.0.0.1:PORT/fhir`
    pub base: String,
    pub data_dir: PathBuf,
}

impl TestServer {
    /// Starts a server on a fresh temporary data directory.
    pub fn start() -> (TestServer, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = TestServer::start_in(dir.path(), &[]);
        (server, dir)
    }

    /// Starts a server on `data_dir` with extra `serve` arguments.
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> TestServer {
        TestServer::start_on(&database_url(data_dir), data_dir, extra)
    }

    /// Starts a server on the database `url`, keeping its files in `data_dir`, without
    /// authentication (`--insecure-no-auth`), as every suite but the auth tests wants.
    pub fn start_on(url: &str, data_dir: &Path, extra: &[&str]) -> TestServer {
        let mut args = vec!["--insecure-no-auth"];
        args.extend_from_slice(extra);
        TestServer::start_secure_on(url, data_dir, &args)
    }

    /// Starts a server on `data_dir` with authentication on (the default of `serve`).
    pub fn start_secure_in(data_dir: &Path, extra: &[&str]) -> TestServer {
        TestServer::start_secure_on(&database_url(data_dir), data_dir, extra)
    }

    /// Starts a server on the database `url` with `serve`'s own defaults plus `extra`.
    pub fn start_secure_on(url: &str, data_dir: &Path, extra: &[&str]) -> TestServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_custodian"))
            .args(["serve", "--listen", "127.0.0.1:0", "--database"])
            .arg(url)
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("CUSTODIAN_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start custodian");
        let stderr = child.stderr.take().expect("stderr");
        let (found, address) = mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("CUSTODIAN_TEST_SERVER_LOG").is_some() {
                    eprintln!("SERVER: {line}");
                }
                if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                    // `http://ADDRESS` or `https://ADDRESS`, as the server says.
                    let origin = rest.split([',', ' ']).next().unwrap_or("").to_string();
                    let _ = found.send(origin);
                    sent = true;
                }
            }
        });
        let origin = address
            .recv_timeout(Duration::from_secs(30))
            .expect("custodian did not start listening within 30 s");
        TestServer {
            child,
            base: format!("{origin}/fhir"),
            origin,
            data_dir: data_dir.to_path_buf(),
        }
    }

    /// Kills the server with SIGKILL (no shutdown, no flush).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if on_postgres() && !self.data_dir.exists() {
            let mut databases = DATABASES
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            databases.remove(&self.data_dir);
        }
    }
}

/// An HTTP agent that returns non-2xx answers as responses instead of errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .new_agent()
}

/// Where the shared external test data lives (`CUSTODIAN_TESTDATA`, default `../shared/testdata`
/// next to the checkout). `None` means absent: skip with a notice, unless `CI=true`, where it fails.
pub fn testdata(sub: &str) -> Option<PathBuf> {
    let root = std::env::var_os("CUSTODIAN_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/testdata"));
    let path = root.join(sub);
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("test data {} is missing and CI=true", path.display());
    }
    eprintln!(
        "SKIPPED: test data {} is absent (set CUSTODIAN_TESTDATA)",
        path.display()
    );
    None
}
