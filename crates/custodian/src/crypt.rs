//! The master key of encryption at rest, for every command that opens the store: from
//! `--master-key-file` or `CUSTODIAN_MASTER_KEY` (base64 of 32 bytes). Also the key
//! commands of `custodian admin`: `new-master-key` and `rotate-key`.
//!
//! The key itself is never taken on the command line, where process lists and shell
//! history would show it.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use store::MasterKey;

/// The variable that may hold the master key itself.
const KEY_VARIABLE: &str = "CUSTODIAN_MASTER_KEY";

#[derive(Args, Clone, Default)]
pub struct MasterKeyArgs {
    /// A file holding the master key that seals resource bodies at rest (base64 of 32
    /// bytes; `custodian admin new-master-key` writes one). Without it the key comes
    /// from CUSTODIAN_MASTER_KEY; without either, bodies are stored as plain text.
    #[arg(long, env = "CUSTODIAN_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// On PostgreSQL, the memory for current versions read by id, in MiB (0 turns the
    /// cache off; default 32). Other servers' writes reach it by notice.
    #[arg(long, env = "CUSTODIAN_READ_CACHE_MIB")]
    pub read_cache_mib: Option<usize>,
}

impl MasterKeyArgs {
    /// The master key given, if any.
    pub fn master_key(&self) -> Result<Option<MasterKey>, String> {
        if let Some(path) = &self.master_key_file {
            return MasterKey::from_file(path)
                .map(Some)
                .map_err(|error| error.to_string());
        }
        match std::env::var(KEY_VARIABLE) {
            Ok(text) if !text.trim().is_empty() => MasterKey::from_base64(&text)
                .map(Some)
                .map_err(|error| format!("{KEY_VARIABLE}: {error}")),
            _ => Ok(None),
        }
    }

    /// The store options these arguments give.
    pub fn options(&self) -> Result<store::Options, String> {
        Ok(store::Options {
            master_key: self.master_key()?,
            read_cache_bytes: self
                .read_cache_mib
                .map(|mib| mib.saturating_mul(1024 * 1024)),
        })
    }
}

#[derive(Args)]
pub struct NewMasterKeyArgs {
    /// The file to write (created; an existing file is never overwritten). It is
    /// readable by its owner only.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
pub struct RotateKeyArgs {
    #[command(flatten)]
    database: crate::admin::DatabaseArg,
    /// Rewrap the store's data keys with the master key in this file (bodies are not
    /// rewritten); from then on the store opens with it only.
    #[arg(long, required_unless_present_any = ["new_data_key", "reseal"])]
    new_key_file: Option<PathBuf>,
    /// Add a data key that seals the bodies written from now on: running servers learn
    /// it within a second (older keys keep opening older bodies).
    #[arg(long)]
    new_data_key: bool,
    /// Seal every stored body again with the newest data key: versions stored plain
    /// before the store had a master key, and versions of older data keys (after
    /// --new-data-key, to retire an old one). Safe while servers run.
    #[arg(long)]
    reseal: bool,
}

/// `custodian admin new-master-key`: a random key, written to a file of its own.
pub fn new_master_key(args: &NewMasterKeyArgs) -> Result<(), String> {
    let (_, text) = MasterKey::generate().map_err(|error| error.to_string())?;
    write_private(&args.out, &format!("{text}\n"))?;
    println!("wrote a new master key to {}", args.out.display());
    Ok(())
}

fn write_private(path: &Path, text: &str) -> Result<(), String> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

/// Seals every stored body again with the newest data key, with a progress bar.
async fn reseal(store: &store::Store) -> Result<(), String> {
    let progress = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template("{spinner} {pos} versions checked ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let (checked, resealed) = store
        .reseal(&mut |count| progress.set_position(count))
        .await
        .map_err(|error| error.to_string())?;
    progress.finish_and_clear();
    let key = store.encryption().sealing_key.unwrap_or_default();
    println!("checked {checked} stored version(s): sealed {resealed} again with data key {key}");
    Ok(())
}

/// `custodian admin rotate-key`: a new data key, a new master key, or both; and the
/// stored bodies sealed again with the newest data key.
pub async fn rotate_key(args: RotateKeyArgs) -> Result<(), String> {
    let options = args.database.keys.options()?;
    if options.master_key.is_none() {
        return Err(format!(
            "rotate-key needs the store's current master key (--master-key-file or {KEY_VARIABLE})"
        ));
    }
    let new = match &args.new_key_file {
        Some(path) => Some(MasterKey::from_file(path).map_err(|error| error.to_string())?),
        None => None,
    };
    let url = &args.database.database;
    let store = store::Store::connect_with(url, &options)
        .await
        .map_err(|error| error.to_string())?;
    let mut store = Some(store);
    if args.new_data_key {
        let Some(opened) = store.take() else {
            return Err("the store is not open".into());
        };
        let id = opened
            .add_data_key()
            .await
            .map_err(|error| error.to_string())?;
        println!(
            "added data key {id}: running servers learn it within a second and seal new bodies with it"
        );
        // Reopened, so that what follows knows the new key.
        drop(opened);
        if new.is_some() || args.reseal {
            store = Some(
                store::Store::connect_with(url, &options)
                    .await
                    .map_err(|error| error.to_string())?,
            );
        }
    }
    if args.reseal
        && let Some(store) = &store
    {
        reseal(store).await?;
    }
    if let (Some(new), Some(store)) = (&new, &store) {
        let rewrapped = store
            .rotate_master_key(new)
            .await
            .map_err(|error| error.to_string())?;
        println!(
            "rewrapped {rewrapped} data key(s) with the new master key: start the server with it from now on"
        );
    }
    Ok(())
}
