//! The data keys of encryption at rest in SQLite (see `crate::crypt`). Key changes are
//! rare, so each opens a connection of its own rather than queueing behind the writer.

use rusqlite::Connection;

use super::SqliteStore;
use crate::crypt::RESEAL_PAGE;
use crate::crypt::{Encryption, Keyring, MasterKey, WrappedKey};
use crate::{Instant, StoreError};

/// The store's keyring. With a master key and no data key yet, the first one is made
/// (another process opening at once may make it first: its key is the one kept).
pub(super) fn keyring(
    connection: &Connection,
    master: Option<&MasterKey>,
) -> Result<Keyring, StoreError> {
    let mut rows = data_keys(connection)?;
    if let Some(master) = master
        && rows.is_empty()
    {
        insert_data_key(connection, &Keyring::new_key(master, &rows)?)?;
        rows = data_keys(connection)?;
    }
    Keyring::open(master, &rows)
}

/// Takes into `keys` the data keys added to the store since it last looked (by
/// `rotate-key --new-data-key`, in this process or another); one query when none was.
pub(super) fn learn_new(connection: &Connection, keys: &Keyring) -> Result<(), StoreError> {
    if keys.master().is_none() {
        return Ok(());
    }
    let newest: Option<u32> =
        connection.query_row("SELECT max(id) FROM data_key", [], |row| row.get(0))?;
    if newest.unwrap_or(0) <= keys.newest() {
        return Ok(());
    }
    keys.learn(&data_keys(connection)?)
}

fn data_keys(connection: &Connection) -> Result<Vec<WrappedKey>, StoreError> {
    let mut statement = connection.prepare("SELECT id, wrapped FROM data_key ORDER BY id")?;
    let rows = statement.query_map([], |row| {
        Ok(WrappedKey {
            id: row.get(0)?,
            wrapped: row.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds a data key unless one with its id exists; says whether it did.
fn insert_data_key(connection: &Connection, key: &WrappedKey) -> Result<bool, StoreError> {
    Ok(connection.execute(
        "INSERT INTO data_key (id, wrapped, created) VALUES (?1, ?2, ?3)
         ON CONFLICT (id) DO NOTHING",
        (key.id, &key.wrapped, Instant::now().0),
    )? == 1)
}

impl SqliteStore {
    pub(crate) fn encryption(&self) -> Encryption {
        self.keys.encryption()
    }

    /// Wraps every data key with `new` instead, in one transaction.
    pub(crate) fn rewrap_keys(&self, new: &MasterKey) -> Result<usize, StoreError> {
        let rows = self.keys.rewrap(new)?;
        let mut connection = self.key_connection()?;
        let transaction = connection.transaction()?;
        for row in &rows {
            let changed = transaction.execute(
                "UPDATE data_key SET wrapped = ?2 WHERE id = ?1",
                (row.id, &row.wrapped),
            )?;
            if changed != 1 {
                return Err(StoreError::Backend(format!(
                    "data key {} changed while it was rewrapped",
                    row.id
                )));
            }
        }
        let stored: i64 =
            transaction.query_row("SELECT count(*) FROM data_key", [], |row| row.get(0))?;
        if usize::try_from(stored).ok() != Some(rows.len()) {
            return Err(StoreError::Backend(
                "a data key was added while the keys were rewrapped: run the rotation again".into(),
            ));
        }
        transaction.commit()?;
        Ok(rows.len())
    }

    /// Adds a data key, which seals new bodies once the writer learns it (`learn_new`);
    /// returns its id.
    pub(crate) fn add_data_key(&self) -> Result<u32, StoreError> {
        let master = self
            .keys
            .master()
            .ok_or_else(|| StoreError::Config("a data key needs the master key".into()))?;
        let connection = self.key_connection()?;
        let key = Keyring::new_key(master, &data_keys(&connection)?)?;
        if !insert_data_key(&connection, &key)? {
            return Err(StoreError::Backend(
                "another data key was added at the same time: run it again".into(),
            ));
        }
        Ok(key.id)
    }

    /// Seals again the bodies of a page of versions after sequence number `after` that
    /// are not sealed with the newest data key, in a transaction of its own (a running
    /// server's writer waits at most that long); returns the versions read, those
    /// sealed again and the page's last sequence number (`None` past the end).
    pub(crate) fn reseal_page(&self, after: i64) -> Result<(u64, u64, Option<i64>), StoreError> {
        let connection = self.key_connection()?;
        let page: Vec<(i64, Vec<u8>)> = {
            let mut select = connection.prepare(
                "SELECT seq, body FROM resource_version
                 WHERE seq > ?1 AND body IS NOT NULL ORDER BY seq LIMIT ?2",
            )?;
            let rows = select.query_map((after, RESEAL_PAGE), |row| {
                let body = row.get_ref(1)?.as_bytes()?.to_vec();
                Ok((row.get(0)?, body))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let Some(&(last, _)) = page.last() else {
            return Ok((0, 0, None));
        };
        let mut changes = Vec::new();
        for (seq, body) in &page {
            if let Some(sealed) = self.keys.reseal(body)? {
                changes.push((*seq, sealed));
            }
        }
        if !changes.is_empty() {
            let transaction = rusqlite::Transaction::new_unchecked(
                &connection,
                rusqlite::TransactionBehavior::Immediate,
            )?;
            {
                let mut update =
                    transaction.prepare("UPDATE resource_version SET body = ?2 WHERE seq = ?1")?;
                for (seq, sealed) in &changes {
                    update.execute((seq, sealed))?;
                }
            }
            transaction.commit()?;
        }
        Ok((page.len() as u64, changes.len() as u64, Some(last)))
    }

    fn key_connection(&self) -> Result<Connection, StoreError> {
        let connection = Connection::open(&self.path)?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        Ok(connection)
    }
}
