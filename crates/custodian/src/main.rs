//! `custodian`: the one binary. It parses the command line, reads configuration and
//! wires the crates together; the work happens in the libraries.

mod admin;
mod audit;
mod bench;
mod client;
mod coding;
mod crypt;
mod dataset;
mod export;
mod import;
mod mpi;

/// mimalloc: the JSON work on every request allocates and frees many small objects, and
/// glibc's allocator spent a third of ingest time doing it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Custodian: a health information management server built on FHIR R4.
#[derive(Parser)]
#[command(name = "custodian", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the FHIR server.
    Serve(ServeArgs),
    /// Load NDJSON and Bundle files (or directories of them, gzip too) into the store.
    Import(import::ImportArgs),
    /// Bulk export as NDJSON files, from the store or a running server (`$export`).
    Export(export::ExportArgs),
    /// Measure the speed targets: `server`, `fhirpath`, `validation`.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Write a Synthea data set scaled N times from synthea-100, as Bundles or NDJSON.
    Dataset(dataset::DatasetArgs),
    /// Clinical coding: ICD-10-CM/PCS look-up and search, MS-DRG v43.1 grouping of claims.
    #[command(subcommand)]
    Coding(coding::CodingCommand),
    /// Patient matching over CSV files: `dedupe`, `link`, `generate`.
    #[command(subcommand)]
    Mpi(mpi::MpiCommand),
    /// Apply the database's pending schema migrations (serve does this on start too).
    Migrate(MigrateArgs),
    /// Accounts and tokens: `create-client`, `create-user`, `grant`, `revoke`, `token`.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// The audit trail: `verify` its hash chain, list break-the-glass accesses (`btg`).
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

#[derive(clap::Args)]
struct MigrateArgs {
    /// The database: sqlite:PATH or postgres://USER@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "CUSTODIAN_DATABASE",
        default_value = "sqlite:custodian-data"
    )]
    database: String,
    #[command(flatten)]
    keys: crypt::MasterKeyArgs,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CUSTODIAN_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first);
    /// needs --tls-key.
    #[arg(long, env = "CUSTODIAN_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CUSTODIAN_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Where records are kept: sqlite:PATH (a file, or a directory for custodian.db), or
    /// postgres://USER@HOST:PORT/DATABASE.
    #[arg(
        long,
        env = "CUSTODIAN_DATABASE",
        default_value = "sqlite:custodian-data"
    )]
    database: String,
    #[command(flatten)]
    keys: crypt::MasterKeyArgs,
    /// Where files that belong with a PostgreSQL store go (export jobs); a SQLite store
    /// keeps them beside its database file. Defaults to ./custodian-data.
    #[arg(long, env = "CUSTODIAN_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// The FHIR base URL clients use; defaults to http://LISTEN/fhir.
    #[arg(long, env = "CUSTODIAN_BASE_URL")]
    base_url: Option<String>,
    /// What validation does to writes: `strict` refuses invalid resources with 422,
    /// `warnings` stores them and logs how many issues they had, `off` skips validation.
    #[arg(
        long,
        env = "CUSTODIAN_VALIDATION",
        value_enum,
        default_value = "strict"
    )]
    validation: Validation,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "CUSTODIAN_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Largest bulk export output file, in bytes; a type's resources continue in a new file.
    #[arg(long, env = "CUSTODIAN_EXPORT_MAX_FILE_BYTES", default_value_t = 256 * 1024 * 1024)]
    export_max_file_bytes: u64,
    /// Failed password logins of one user name before it is locked out.
    #[arg(long, env = "CUSTODIAN_LOGIN_FAILURES_MAX", default_value_t = 5)]
    login_failures_max: u32,
    /// How long a locked-out user name stays locked, in seconds.
    #[arg(long, env = "CUSTODIAN_LOGIN_LOCKOUT_S", default_value_t = 300)]
    login_lockout_s: u64,
    /// Serve without authentication: anyone who can connect may read and change
    /// everything. For local experiments only; refused unless --listen is a loopback
    /// address.
    #[arg(long, env = "CUSTODIAN_INSECURE_NO_AUTH")]
    insecure_no_auth: bool,
    /// Serve without the audit trail: no interaction is recorded. For measurements
    /// only; refused unless --listen is a loopback address.
    #[arg(long, env = "CUSTODIAN_INSECURE_NO_AUDIT")]
    insecure_no_audit: bool,
    #[command(flatten)]
    issuer: admin::IssuerArgs,
    #[command(flatten)]
    external: admin::ExternalArgs,
    /// A matching model saved by `custodian mpi dedupe` (its model.json); without it the
    /// server scores with the model it ships.
    #[arg(long, env = "CUSTODIAN_MPI_MODEL")]
    mpi_model: Option<std::path::PathBuf>,
    /// The identifier system that links the records of one person.
    #[arg(long, env = "CUSTODIAN_MPI_ENTERPRISE_SYSTEM", default_value = server::ENTERPRISE_SYSTEM)]
    mpi_enterprise_system: String,
    /// Link certain matches at once with the enterprise identifier, instead of queueing
    /// them on the duplicate worklist.
    #[arg(long, env = "CUSTODIAN_MPI_AUTO_LINK")]
    mpi_auto_link: bool,
    /// How long a break-the-glass grant (X-Purpose-Of-Use: BTG with a reason) opens a
    /// patient's restricted data to the principal, in minutes.
    #[arg(long, env = "CUSTODIAN_BREAK_GLASS_MINUTES", default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=24 * 60))]
    break_glass_minutes: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Validation {
    Strict,
    Warnings,
    Off,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CUSTODIAN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench(command) => bench::run(command),
        Command::Import(args) => import::run(args),
        Command::Export(args) => export::run(args),
        Command::Dataset(args) => dataset::run(&args),
        Command::Coding(command) => coding::run(command),
        Command::Mpi(command) => mpi::run(command),
        Command::Migrate(args) => migrate(&args),
        Command::Admin(command) => admin::run(command),
        Command::Audit(command) => audit::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("custodian: {message}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))
}

fn migrate(args: &MigrateArgs) -> Result<(), String> {
    let (before, after) =
        store::migrate(&args.database, &args.keys.options()?).map_err(|error| error.to_string())?;
    if before == after {
        println!("the database schema is up to date (version {after})");
    } else {
        println!("migrated the database schema from version {before} to {after}");
    }
    Ok(())
}

fn serve(args: ServeArgs) -> Result<(), String> {
    if args.insecure_no_auth && !args.listen.ip().is_loopback() {
        return Err(format!(
            "--insecure-no-auth serves without authentication, so it listens on loopback addresses only, not {}",
            args.listen
        ));
    }
    if args.insecure_no_audit && !args.listen.ip().is_loopback() {
        return Err(format!(
            "--insecure-no-audit serves without an audit trail, so it listens on loopback addresses only, not {}",
            args.listen
        ));
    }
    // Bad certificate or key files stop the start before anything else happens.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(server::tls::server_config(cert, key)?),
        (None, None) => None,
        _ => return Err("--tls-cert and --tls-key go together: give both, or neither".into()),
    };
    if tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(
            "serving plain HTTP on {}: tokens and patient data cross the network unencrypted; give --tls-cert and --tls-key, or put a TLS-terminating proxy in front",
            args.listen
        );
    }
    let mut store = store::Store::open_with(&args.database, &args.keys.options()?)
        .map_err(|error| error.to_string())?;
    if let Some(dir) = &args.data_dir {
        store = store.with_data_dir(dir);
    }
    match store.encryption().sealing_key {
        Some(id) => tracing::info!("resource bodies are sealed at rest (data key {id})"),
        None => tracing::warn!(
            "resource bodies are stored as plain text: give a master key (CUSTODIAN_MASTER_KEY or --master-key-file) to encrypt them at rest"
        ),
    }
    runtime()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
        let local = listener
            .local_addr()
            .map_err(|error| format!("cannot read the listening address: {error}"))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base_url = args
            .base_url
            .unwrap_or_else(|| format!("{scheme}://{local}/fhir"))
            .trim_end_matches('/')
            .to_string();
        let auth = if args.insecure_no_auth {
            tracing::warn!(
                "AUTHENTICATION IS OFF (--insecure-no-auth): anyone who can connect to {local} may read and change every record"
            );
            server::Auth::Open
        } else {
            let verifier = admin::verifier(&store, &base_url, &args.issuer, &args.external).await?;
            let accounts = privacy::account::count(&store)
                .await
                .map_err(|error| error.to_string())?;
            if accounts == 0 && args.external.external_issuer.is_none() {
                tracing::warn!(
                    "no clients yet: every FHIR request will get 401. Create one with\n  custodian admin create-client --database {} --id my-app --role admin --scope 'system/*.cruds' --generate-secret\nthen get a token with client_credentials at {}/auth/token (or: custodian admin token --client my-app --base-url {base_url})",
                    // A PostgreSQL URL may hold a password: never repeat it.
                    if args.database.starts_with("sqlite:") { args.database.as_str() } else { "URL" },
                    base_url.strip_suffix("/fhir").unwrap_or(&base_url),
                );
            }
            server::Auth::Tokens(verifier)
        };
        let config = server::Config {
            base_url: base_url.clone(),
            limits: server::Limits {
                body_bytes: args.max_body_bytes,
                export_file_bytes: args.export_max_file_bytes,
                login_failures_max: args.login_failures_max,
                login_lockout_s: args.login_lockout_s,
                ..server::Limits::default()
            },
            validation: match args.validation {
                Validation::Strict => server::ValidationMode::Strict,
                Validation::Warnings => server::ValidationMode::Warnings,
                Validation::Off => server::ValidationMode::Off,
            },
            auth,
            mpi: server::MpiConfig {
                enabled: true,
                model: args.mpi_model,
                enterprise_system: args.mpi_enterprise_system,
                auto_link: args.mpi_auto_link,
            },
            break_glass_minutes: args.break_glass_minutes,
            audit: !args.insecure_no_audit,
        };
        if args.insecure_no_audit {
            tracing::warn!("THE AUDIT TRAIL IS OFF (--insecure-no-audit): no interaction is recorded");
        }
        let app = server::router(store, config)
            .await
            .map_err(|error| format!("cannot start: {error}"))?;
        tracing::info!("listening on {scheme}://{local}, FHIR base {base_url}");
        // The client's address goes on each audit record.
        let served = match tls {
            Some(tls) => {
                // `tap_io` gives the listener the connection info of its address.
                let listener = axum::serve::ListenerExt::tap_io(
                    server::tls::TlsListener::new(listener, tls)
                        .map_err(|error| format!("cannot listen on {local}: {error}"))?,
                    |_| {},
                );
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown_signal())
                .await
            }
            None => {
                axum::serve(
                    listener,
                    app.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(shutdown_signal())
                .await
            }
        };
        // Reads' audit records are written in the background: write the last ones.
        server::audit::flush_all(std::time::Duration::from_secs(30)).await;
        served.map_err(|error| format!("server failed: {error}"))
    })
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("shutting down");
}
