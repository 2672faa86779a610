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
    // 2: search. Every logical resource gets an integer key (`rid`), and the current,
    // not deleted, version of each has index rows, one table per kind of value, keyed
    // by a small integer per (type, index key) (`search_param`). Each index table's
    // primary key starts with `rid` (cheap appends, fast removal of a resource's rows);
    // a secondary index per table serves the searches. Resources already stored are
    // queued in `search_reindex` and indexed when the store opens (SQL cannot run the
    // indexer).
    "CREATE TABLE resource_2 (
        rid INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        last_updated INTEGER NOT NULL,    -- of the current version, microseconds
        UNIQUE (type, id)
    );
    INSERT INTO resource_2 (type, id, version, seq, deleted, last_updated)
        SELECT r.type, r.id, r.version, r.seq, r.deleted, v.last_updated
        FROM resource r JOIN resource_version v ON v.seq = r.seq
        ORDER BY r.seq;
    DROP TABLE resource;
    ALTER TABLE resource_2 RENAME TO resource;
    CREATE INDEX resource_type_deleted ON resource (type, deleted);
    CREATE INDEX resource_type_last_updated ON resource (type, last_updated);
    CREATE TABLE search_param (
        pid INTEGER PRIMARY KEY,
        type TEXT NOT NULL,
        key TEXT NOT NULL,                -- an IndexRow key: code, code:text, code$0, ...
        UNIQUE (type, key)
    );
    CREATE TABLE search_reindex (rid INTEGER PRIMARY KEY);
    INSERT INTO search_reindex (rid) SELECT rid FROM resource WHERE deleted = 0;
    -- Absent optional parts are stored as '' (primary key columns cannot be NULL).
    CREATE TABLE sp_string (
        rid INTEGER NOT NULL, pid INTEGER NOT NULL,
        value TEXT NOT NULL,              -- normalised
        exact TEXT NOT NULL,              -- as written
        grp INTEGER NOT NULL,
        PRIMARY KEY (rid, pid, value, exact, grp)
    ) WITHOUT ROWID;
    CREATE INDEX sp_string_value ON sp_string (pid, value) WHERE grp = 0;
    CREATE TABLE sp_token (
        rid INTEGER NOT NULL, pid INTEGER NOT NULL,
        code TEXT NOT NULL,
        system TEXT NOT NULL,
        grp INTEGER NOT NULL,
        PRIMARY KEY (rid, pid, code, system, grp)
    ) WITHOUT ROWID;
    CREATE INDEX sp_token_code ON sp_token (pid, code) WHERE grp = 0;
    CREATE TABLE sp_reference (
        rid INTEGER NOT NULL, pid INTEGER NOT NULL,
        target_id TEXT NOT NULL,
        target_type TEXT NOT NULL,
        url TEXT NOT NULL,
        grp INTEGER NOT NULL,
        PRIMARY KEY (rid, pid, target_id, target_type, url, grp)
    ) WITHOUT ROWID;
    CREATE INDEX sp_reference_target ON sp_reference (pid, target_id, target_type) WHERE grp = 0;
    CREATE INDEX sp_reference_url ON sp_reference (pid, url) WHERE url <> '' AND grp = 0;
    CREATE TABLE sp_date (
        rid INTEGER NOT NULL, pid INTEGER NOT NULL,
        low INTEGER NOT NULL,             -- microseconds, inclusive; i64::MIN when open
        high INTEGER NOT NULL,            -- microseconds, exclusive; i64::MAX when open
        grp INTEGER NOT NULL,
        PRIMARY KEY (rid, pid, low, high, grp)
    ) WITHOUT ROWID;
    CREATE INDEX sp_date_low ON sp_date (pid, low) WHERE grp = 0;
    CREATE INDEX sp_date_high ON sp_date (pid, high) WHERE grp = 0;
    CREATE TABLE sp_number (
        rid INTEGER NOT NULL, pid INTEGER NOT NULL,
        low REAL NOT NULL,
        high REAL NOT NULL,
        grp INTEGER NOT NULL,
        PRIMARY KEY (rid, pid, low, high, grp)
    ) WITHOUT ROWID;
    CREATE INDEX sp_number_low ON sp_number (pid, low) WHERE grp = 0;
    CREATE TABLE sp_quantity (
        rid INTEGER NOT NULL, pid INTEGER NOT NULL,
        code TEXT NOT NULL,
        system TEXT NOT NULL,
        low REAL NOT NULL,
        high REAL NOT NULL,
        grp INTEGER NOT NULL,
        PRIMARY KEY (rid, pid, code, system, low, high, grp)
    ) WITHOUT ROWID;
    CREATE INDEX sp_quantity_low ON sp_quantity (pid, low) WHERE grp = 0;
    CREATE TABLE sp_uri (
        rid INTEGER NOT NULL, pid INTEGER NOT NULL,
        uri TEXT NOT NULL,
        grp INTEGER NOT NULL,
        PRIMARY KEY (rid, pid, uri, grp)
    ) WITHOUT ROWID;
    CREATE INDEX sp_uri_uri ON sp_uri (pid, uri) WHERE grp = 0;
    -- _text and _content: the narrative and every string of each current resource,
    -- rowid = rid. Contentless (the text is in resource_version already), with deletes.
    CREATE VIRTUAL TABLE sp_text USING fts5 (
        narrative, content,
        content = '', contentless_delete = 1,
        tokenize = 'unicode61 remove_diacritics 2'
    );",
    // 3: the full-text index keeps which column a word is in, not where: `_text` and
    // `_content` match words, never phrases, so positions were never read.
    "DROP TABLE sp_text;
    CREATE VIRTUAL TABLE sp_text USING fts5 (
        narrative, content,
        content = '', contentless_delete = 1, detail = column,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT OR IGNORE INTO search_reindex (rid) SELECT rid FROM resource WHERE deleted = 0;",
    // 4: accounts, grants and keys of the privacy layer (clients, users, the token
    // signing key), and the client assertions already used. Not FHIR resources: no
    // FHIR interaction reaches them.
    "CREATE TABLE auth_record (
        kind TEXT NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (kind, id)
    ) WITHOUT ROWID;
    CREATE TABLE auth_used_once (
        key TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // The accounting of disclosures: one row per release of one patient's data,
    // append-only (an UPDATE or DELETE is refused).
    "CREATE TABLE disclosure (
        seq INTEGER PRIMARY KEY,
        patient TEXT NOT NULL,
        at INTEGER NOT NULL,              -- microseconds since the epoch
        recipient TEXT NOT NULL,
        address TEXT NOT NULL,
        purpose TEXT NOT NULL,
        description TEXT NOT NULL,
        principal TEXT NOT NULL,
        request TEXT NOT NULL
    );
    CREATE INDEX disclosure_patient_at ON disclosure (patient, at);
    CREATE TRIGGER disclosure_no_update BEFORE UPDATE ON disclosure
    BEGIN SELECT RAISE(ABORT, 'disclosures are append-only'); END;
    CREATE TRIGGER disclosure_no_delete BEFORE DELETE ON disclosure
    BEGIN SELECT RAISE(ABORT, 'disclosures are append-only'); END;",
    // 6: the data keys of encryption at rest (`crate::crypt`), each wrapped by the
    // master key, which is never stored. Sealed bodies are BLOBs in `body`, plain ones
    // stay TEXT.
    "CREATE TABLE data_key (
        id INTEGER PRIMARY KEY,
        wrapped BLOB NOT NULL,            -- nonce, the key encrypted by the master key, tag
        created INTEGER NOT NULL          -- microseconds since the Unix epoch, UTC
    );",
    // 7: the audit trail, append-only and hash-chained (`crate::audit`): one row per
    // AuditEvent with the columns searches use, and the head of the chain. Triggers
    // refuse changes and deletions; the chain shows any made around them.
    "CREATE TABLE audit_event (
        seq INTEGER PRIMARY KEY,
        recorded INTEGER NOT NULL,
        type TEXT NOT NULL,
        subtype TEXT NOT NULL,
        action TEXT NOT NULL,
        outcome TEXT NOT NULL,
        severity TEXT NOT NULL,
        agent TEXT NOT NULL,
        patient TEXT,
        purpose TEXT,
        entity TEXT NOT NULL,
        body TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    );
    CREATE INDEX audit_event_recorded ON audit_event (recorded);
    CREATE INDEX audit_event_patient ON audit_event (patient) WHERE patient IS NOT NULL;
    CREATE INDEX audit_event_agent ON audit_event (agent);
    CREATE INDEX audit_event_purpose ON audit_event (purpose) WHERE purpose IS NOT NULL;
    CREATE TABLE audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL
    );
    INSERT INTO audit_head (id, seq, hash)
        VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
    CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // 8: the audit trail's patient and agent lookups move to a deferred index
    // (`sqlite::audit`): a row index on the patient dirtied a page per patient in every
    // commit. `audit_key` is filled in sorted batches (here with the records so far);
    // rows after `upto` are found by a scan of the trail's tail. It is derived from the
    // chain, and append-only too.
    "DROP INDEX audit_event_patient;
    DROP INDEX audit_event_agent;
    CREATE TABLE audit_key (
        key TEXT NOT NULL,                -- 'p' and the patient, or 'a' and the agent
        seq INTEGER NOT NULL,
        PRIMARY KEY (key, seq)
    ) WITHOUT ROWID;
    CREATE TABLE audit_key_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        upto INTEGER NOT NULL             -- audit_key holds the records up to this seq
    );
    INSERT INTO audit_key (key, seq)
        SELECT key, seq FROM (
            SELECT 'p' || patient AS key, seq FROM audit_event WHERE patient IS NOT NULL
            UNION ALL
            SELECT 'a' || agent AS key, seq FROM audit_event
        ) ORDER BY key, seq;
    INSERT INTO audit_key_head (id, upto) VALUES (1, (SELECT seq FROM audit_head WHERE id = 1));
    CREATE TRIGGER audit_key_no_update BEFORE UPDATE ON audit_key
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_key_no_delete BEFORE DELETE ON audit_key
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // 9: `audit_key` holds a row per patient and per agent of each batch, with the list
    // of its records, instead of a row per record and key: filling it was a third of
    // what appending a record cost, most of it placing entries all over the B-tree.
    // Keys are integers (`crate::audit::lookup_key`). The index is derived from the
    // chain, so it is emptied here and filled again from the trail when the store opens
    // (`sqlite::audit::index_pending`).
    "DROP TABLE audit_key;
    CREATE TABLE audit_key (
        key INTEGER NOT NULL,             -- lookup_key of the patient, or of the agent
        upto INTEGER NOT NULL,            -- the last record of the batch
        seqs TEXT NOT NULL,               -- the batch's records with this key, a JSON array
        PRIMARY KEY (key, upto)
    ) WITHOUT ROWID;
    UPDATE audit_key_head SET upto = 0;
    CREATE TRIGGER audit_key_no_update BEFORE UPDATE ON audit_key
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    CREATE TRIGGER audit_key_no_delete BEFORE DELETE ON audit_key
        BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    // 10: failed password logins by user name, for the lockout (`Store::login_failed`),
    // in the database so that every server sharing it counts together.
    "CREATE TABLE login_failure (
        name TEXT PRIMARY KEY,
        failures INTEGER NOT NULL,        -- in a row, without a pause as long as the lockout
        last INTEGER NOT NULL,            -- seconds since the Unix epoch
        locked_until INTEGER              -- seconds since the Unix epoch, while locked
    );
    CREATE INDEX login_failure_last ON login_failure (last);",
];

/// The value indexes of the index tables (name, then table and columns): searches find
/// values through them. A bulk load into an empty store drops them, so its writes only
/// append to the rid-first tables, and the next open builds them in one sorted pass.
const VALUE_INDEXES: [(&str, &str); 9] = [
    ("sp_string_value", "sp_string (pid, value) WHERE grp = 0"),
    ("sp_token_code", "sp_token (pid, code) WHERE grp = 0"),
    (
        "sp_reference_target",
        "sp_reference (pid, target_id, target_type) WHERE grp = 0",
    ),
    (
        "sp_reference_url",
        "sp_reference (pid, url) WHERE url <> '' AND grp = 0",
    ),
    ("sp_date_low", "sp_date (pid, low) WHERE grp = 0"),
    ("sp_date_high", "sp_date (pid, high) WHERE grp = 0"),
    ("sp_number_low", "sp_number (pid, low) WHERE grp = 0"),
    ("sp_quantity_low", "sp_quantity (pid, low) WHERE grp = 0"),
    ("sp_uri_uri", "sp_uri (pid, uri) WHERE grp = 0"),
];

/// Builds the value indexes that are missing (after a bulk load, or one that stopped
/// part-way); returns how many it built.
pub(super) fn ensure_value_indexes(connection: &Connection) -> Result<usize, StoreError> {
    let mut built = 0;
    for (name, definition) in VALUE_INDEXES {
        let exists: bool = connection.query_row(
            "SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'index' AND name = ?1",
            [name],
            |row| row.get(0),
        )?;
        if !exists {
            if built == 0 {
                tracing::info!("building the search value indexes");
                // Sort on disk rather than in memory: the indexes can be large; and
                // sort on every core (SQLite's sorter merges in worker threads).
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
                connection.execute_batch(&format!(
                    "PRAGMA temp_store = FILE; PRAGMA threads = {threads};"
                ))?;
            }
            connection.execute_batch(&format!("CREATE INDEX {name} ON {definition};"))?;
            built += 1;
        }
    }
    if built > 0 {
        connection.execute_batch("PRAGMA temp_store = MEMORY; PRAGMA threads = 0;")?;
    }
    Ok(built)
}

/// Drops the value indexes when the store holds no resources yet (a bulk load);
/// returns whether it did.
pub(super) fn drop_value_indexes_if_empty(connection: &Connection) -> Result<bool, StoreError> {
    let empty: bool =
        connection.query_row("SELECT NOT EXISTS (SELECT 1 FROM resource)", [], |row| {
            row.get(0)
        })?;
    if empty {
        let drops: String = VALUE_INDEXES
            .iter()
            .map(|(name, _)| format!("DROP INDEX IF EXISTS {name};"))
            .collect();
        connection.execute_batch(&format!("BEGIN IMMEDIATE; {drops} COMMIT;"))?;
    }
    Ok(empty)
}

/// The index tables, for removing a resource's rows.
pub(super) const INDEX_TABLES: [&str; 7] = [
    "sp_string",
    "sp_token",
    "sp_reference",
    "sp_date",
    "sp_number",
    "sp_quantity",
    "sp_uri",
];

/// The writer's page cache: index inserts land all over the value indexes, and pages
/// that stay cached are not read again.
const WRITER_CACHE_KIB: u32 = 64 * 1024;
/// Each reader's page cache: enough for the upper levels of the big indexes; leaf pages
/// come from the operating system's cache.
const READER_CACHE_KIB: u32 = 8 * 1024;

/// Memory is bounded, whatever the size of the database: a page cache per connection
/// and no memory map (mapped pages would count against the process, up to the map's size).
fn settings(connection: &Connection, cache_kib: u32) -> Result<(), rusqlite::Error> {
    // The writer uses some twenty statements, and a search a dozen shapes.
    connection.set_prepared_statement_cache_capacity(128);
    // A cached statement stays as prepared whatever is bound to it. Without this,
    // SQLite marks parameters it compares with a partial index's condition and prepares
    // the statement again at every new binding: a search paid for parsing and planning
    // its SQL each time. The builder writes those conditions as literals (`grp = 0`,
    // `url <> ''`), so the plans do not need the bound values.
    connection.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    connection.execute_batch(&format!(
        "PRAGMA cache_size = -{cache_kib};
         PRAGMA mmap_size = 0;
         PRAGMA temp_store = MEMORY;"
    ))
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
    // Index rows dirty many pages per commit; checkpointing every 1,000 pages (the
    // default) would write most of them twice per group. 10,000 pages is a 40 MiB WAL.
    connection.execute_batch("PRAGMA wal_autocheckpoint = 10000;")?;
    settings(connection, WRITER_CACHE_KIB)?;
    Ok(())
}

pub(super) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    settings(&connection, READER_CACHE_KIB)?;
    connection.execute_batch("PRAGMA query_only = ON;")?;
    Ok(connection)
}

pub(super) fn migrate(connection: &Connection) -> Result<(), StoreError> {
    apply(connection, MIGRATIONS)
}

fn apply(connection: &Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let applied: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    if applied > migrations.len() {
        return Err(StoreError::Config(format!(
            "the database schema is version {applied}, newer than this build knows ({}); upgrade custodian",
            migrations.len()
        )));
    }
    for (index, migration) in migrations.iter().enumerate().skip(applied) {
        // On lines of their own, so a migration ending in a comment cannot swallow
        // them; a failure rolls the whole migration back.
        let script = format!(
            "BEGIN IMMEDIATE;\n{migration}\n;\nPRAGMA user_version = {};\nCOMMIT;",
            index + 1
        );
        if let Err(error) = connection.execute_batch(&script) {
            let _ = connection.execute_batch("ROLLBACK");
            return Err(error.into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(connection: &Connection) -> i64 {
        connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .unwrap_or(-1)
    }

    fn has_table(connection: &Connection, name: &str) -> bool {
        connection
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = ?1",
                [name],
                |row| row.get::<_, i64>(0),
            )
            .unwrap_or(0)
            == 1
    }

    #[test]
    fn a_bulk_load_drops_the_value_indexes_only_when_empty_and_open_builds_them() {
        let connection = Connection::open_in_memory().unwrap();
        migrate(&connection).unwrap();
        assert_eq!(ensure_value_indexes(&connection).unwrap(), 0);
        assert!(drop_value_indexes_if_empty(&connection).unwrap());
        for (name, _) in VALUE_INDEXES {
            assert!(!has_table(&connection, name), "{name} should be gone");
        }
        assert_eq!(
            ensure_value_indexes(&connection).unwrap(),
            VALUE_INDEXES.len()
        );
        for (name, _) in VALUE_INDEXES {
            assert!(has_table(&connection, name), "{name} should be back");
        }
        connection
            .execute_batch(
                "INSERT INTO resource (type, id, version, seq, deleted, last_updated)
                 VALUES ('Patient', 'p1', 1, 1, 0, 0);",
            )
            .unwrap();
        assert!(!drop_value_indexes_if_empty(&connection).unwrap());
        assert!(has_table(&connection, "sp_token_code"));
    }

    #[test]
    fn a_migration_ending_in_a_comment_still_records_its_version() {
        let connection = Connection::open_in_memory().unwrap();
        apply(
            &connection,
            &["CREATE TABLE a (x); -- the last line is a comment"],
        )
        .unwrap();
        assert_eq!(version(&connection), 1);
        assert!(has_table(&connection, "a"));
    }

    #[test]
    fn a_failing_migration_leaves_the_schema_as_it_was() {
        let connection = Connection::open_in_memory().unwrap();
        apply(&connection, &["CREATE TABLE a (x);"]).unwrap();
        let failing = [
            "CREATE TABLE a (x);",
            "CREATE TABLE b (x); INSERT INTO missing VALUES (1);",
        ];
        assert!(apply(&connection, &failing).is_err());
        assert_eq!(version(&connection), 1);
        assert!(!has_table(&connection, "b"));
        // And the connection is usable: the next attempt runs in a fresh transaction.
        let fixed = ["CREATE TABLE a (x);", "CREATE TABLE b (x);"];
        apply(&connection, &fixed).unwrap();
        assert_eq!(version(&connection), 2);
        assert!(has_table(&connection, "b"));
    }
}
