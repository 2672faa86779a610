//! What the HTTP benchmarks share: a server process of our own, and a lean client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use crate::client::Connection;

/// A `custodian serve` child process on a fresh data directory (and, on PostgreSQL, a
/// fresh schema); killed and cleaned up when dropped.
pub struct ServerProcess {
    child: Child,
    data_dir: PathBuf,
    /// Leave the data directory behind when dropped.
    keep: bool,
    /// The PostgreSQL schema the server keeps its records in, dropped with it.
    postgres: Option<store::testing::TestDatabase>,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

impl ServerProcess {
    /// Starts a server on `127.0.0.1:port` with an empty database in `data_dir`.
    pub fn start(port: u16, data_dir: &Path, extra: &[&str]) -> Result<ServerProcess, String> {
        let _ = std::fs::remove_dir_all(data_dir);
        ServerProcess::reopen(port, data_dir, extra)
    }

    /// [`ServerProcess::start`], or with `postgres` (a `postgres://` server URL) on a
    /// fresh schema there, dropped when the server is.
    pub fn start_on(
        port: u16,
        data_dir: &Path,
        postgres: Option<&str>,
        extra: &[&str],
    ) -> Result<ServerProcess, String> {
        let Some(server) = postgres else {
            return ServerProcess::start(port, data_dir, extra);
        };
        let _ = std::fs::remove_dir_all(data_dir);
        std::fs::create_dir_all(data_dir)
            .map_err(|error| format!("cannot create {}: {error}", data_dir.display()))?;
        let database = store::testing::TestDatabase::postgres_on(server, data_dir)
            .map_err(|error| format!("cannot prepare the PostgreSQL schema: {error}"))?;
        let mut args = vec!["--database", database.url.as_str()];
        args.extend_from_slice(extra);
        let mut process = ServerProcess::spawn(port, data_dir, &args)?;
        process.postgres = Some(database);
        Ok(process)
    }

    /// Starts a server on `127.0.0.1:port` with the database already in `data_dir`.
    pub fn reopen(port: u16, data_dir: &Path, extra: &[&str]) -> Result<ServerProcess, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|error| format!("cannot create {}: {error}", data_dir.display()))?;
        let database = format!("sqlite:{}", data_dir.display());
        let mut args = vec!["--database", database.as_str()];
        args.extend_from_slice(extra);
        ServerProcess::spawn(port, data_dir, &args)
    }

    /// Starts a server with authentication on, on the SQLite database in `data_dir`
    /// (which the caller prepared: clients, signing key).
    pub fn start_secure(
        port: u16,
        data_dir: &Path,
        extra: &[&str],
    ) -> Result<ServerProcess, String> {
        let database = format!("sqlite:{}", data_dir.display());
        let mut args = vec!["--database", database.as_str()];
        args.extend_from_slice(extra);
        ServerProcess::spawn_as(port, data_dir, &args, false)
    }

    /// A server without authentication: the benchmarks measure the FHIR work, and
    /// `bench auth` compares the two.
    fn spawn(port: u16, data_dir: &Path, args: &[&str]) -> Result<ServerProcess, String> {
        ServerProcess::spawn_as(port, data_dir, args, true)
    }

    fn spawn_as(
        port: u16,
        data_dir: &Path,
        args: &[&str],
        insecure: bool,
    ) -> Result<ServerProcess, String> {
        let exe =
            std::env::current_exe().map_err(|error| format!("cannot find myself: {error}"))?;
        let child = Command::new(exe)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            // The benchmarks measure the FHIR work: without authentication, and without
            // the audit trail, whose cost `bench auth` measures with authentication's.
            .args(
                insecure
                    .then_some(["--insecure-no-auth", "--insecure-no-audit"])
                    .into_iter()
                    .flatten(),
            )
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env("CUSTODIAN_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start the server: {error}"))?;
        Ok(ServerProcess {
            child,
            data_dir: data_dir.to_path_buf(),
            keep: false,
            postgres: None,
        })
    }

    /// Whether to leave the data directory behind when dropped.
    pub fn keep_data(mut self, keep: bool) -> ServerProcess {
        self.keep = keep;
        self
    }

    /// The server's peak resident memory so far (`VmHWM`), in MiB.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }

    /// CPU time the server has used so far (user and system), in seconds, where
    /// `/proc` tells (Linux's clock tick of 100 Hz assumed).
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // The command name may hold spaces; the fields after it are plain numbers.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let user: f64 = fields.get(11)?.parse().ok()?;
        let system: f64 = fields.get(12)?.parse().ok()?;
        Some((user + system) / 100.0)
    }

    /// The size of the database files (or PostgreSQL tables and indexes), in bytes.
    pub fn database_bytes(&self) -> u64 {
        if let Some(database) = &self.postgres {
            return database.size_bytes();
        }
        std::fs::read_dir(&self.data_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.metadata().ok())
                    .map(|metadata| metadata.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

pub async fn wait_until_up(address: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(mut connection) = Connection::open(address).await
            && let Ok((200, _)) = connection.request("GET", "/health", None).await
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!(
        "the server on {address} did not come up within 30 s"
    ))
}
