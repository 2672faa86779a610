//! Connection settings and versioned migrations.

use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;

/// Migrations, applied in order; `PRAGMA user_version` records how many have run.
/// Never edit or remove one that has shipped: add a new one.
const MIGRATIONS: &[&str] = &[
    // 1: versions and the current-version pointer.
    "CREATE TABLE resource_version (
        seq INTEGER PRIMARY KEY,          -- the change sequence: orders all history
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,    -- microseconds since the Unix epoch, UTC
        method TEXT NOT NULL,             -- POST, PUT, PATCH or DELETE
        body TEXT,                        -- the resource JSON; NULL for a deletion
        created INTEGER NOT NULL,         -- 1 when this version brought the resource into being
        UNIQUE (type, id, version)
    );
    CREATE INDEX resource_version_type_seq ON resource_version (type, seq);
    CREATE INDEX resource_version_last_updated ON resource_version (last_updated);
    CREATE TABLE resource (
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        PRIMARY KEY (type, id)
    ) WITHOUT ROWID;",
];

fn settings(connection: &Connection) -> Result<(), rusqlite::Error> {
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.execute_batch(
        "PRAGMA cache_size = -65536;
         PRAGMA mmap_size = 268435456;
         PRAGMA temp_store = MEMORY;",
    )
}

/// The writing connection: WAL, and a sync on every commit so an acknowledged write
/// survives power loss.
pub(super) fn prepare_writer(connection: &Connection) -> Result<(), StoreError> {
    let mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Config(format!(
            "the database cannot use write-ahead logging (journal_mode is {mode})"
        )));
    }
    connection.execute_batch("PRAGMA synchronous = FULL;")?;
    settings(connection)?;
    Ok(())
}

pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    settings(&connection)?;
    connection.execute_batch("PRAGMA query_only = ON;")?;
    Ok(connection)
}

pub(super) fn migrate(connection: &Connection) -> Result<(), StoreError> {
    let applied: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > MIGRATIONS.len() {
        return Err(StoreError::Config(format!(
            "the database schema is version {applied}, newer than this build knows ({}); upgrade custodian",
            MIGRATIONS.len()
        )));
    }
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
        connection.execute_batch(&format!(
            "BEGIN IMMEDIATE; {migration}; PRAGMA user_version = {}; COMMIT;",
            index + 1
        ))?;
    }
    Ok(())
}
