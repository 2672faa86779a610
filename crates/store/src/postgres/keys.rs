//! The data keys of encryption at rest in PostgreSQL (see `crate::crypt`).

use deadpool_postgres::Client as PooledClient;
use tokio_postgres::Client;

use super::error;
use crate::crypt::{Keyring, MasterKey, WrappedKey};
use crate::{Instant, StoreError};

/// The store's keyring. With a master key and no data key yet, the first one is made
/// (a server opening at the same moment may make it first: its key is the one kept).
pub(super) async fn keyring(
    client: &Client,
    master: Option<&MasterKey>,
) -> Result<Keyring, StoreError> {
    let mut rows = load(client).await?;
    if let Some(master) = master
        && rows.is_empty()
    {
        insert(client, &Keyring::new_key(master, &rows)?).await?;
        rows = load(client).await?;
    }
    Keyring::open(master, &rows)
}

/// How often a store looks for data keys added while it is open.
const KEY_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes into `keys`, while they live, the data keys added to the store since it
/// opened (by `rotate-key --new-data-key`, on this server or another): one query a
/// second when none was.
pub(super) async fn follow(pool: deadpool_postgres::Pool, keys: std::sync::Weak<Keyring>) {
    loop {
        tokio::time::sleep(KEY_CHECK).await;
        let Some(keys) = keys.upgrade() else {
            return;
        };
        if keys.master().is_none() {
            return;
        }
        let Ok(client) = pool.get().await else {
            continue;
        };
        let learnt = async {
            let newest: Option<i32> = client
                .query_one("SELECT max(id) FROM data_key", &[])
                .await
                .map_err(error)?
                .try_get(0)
                .map_err(error)?;
            let newest = newest.and_then(|id| u32::try_from(id).ok()).unwrap_or(0);
            if newest <= keys.newest() {
                return Ok(());
            }
            keys.learn(&load(&client).await?)
        };
        if let Err(error) = learnt.await {
            tracing::warn!(%error, "cannot look for new data keys");
        }
    }
}

async fn load(client: &Client) -> Result<Vec<WrappedKey>, StoreError> {
    let rows = client
        .query("SELECT id, wrapped FROM data_key ORDER BY id", &[])
        .await
        .map_err(error)?;
    rows.iter()
        .map(|row| {
            let id: i32 = row.try_get(0).map_err(error)?;
            Ok(WrappedKey {
                id: u32::try_from(id)
                    .map_err(|_| StoreError::Backend(format!("data key id {id} is negative")))?,
                wrapped: row.try_get(1).map_err(error)?,
            })
        })
        .collect()
}

/// Adds a data key unless one with its id exists; says whether it did.
async fn insert(client: &Client, key: &WrappedKey) -> Result<bool, StoreError> {
    let id = i32::try_from(key.id)
        .map_err(|_| StoreError::Backend(format!("data key id {} is too large", key.id)))?;
    let inserted = client
        .execute(
            "INSERT INTO data_key (id, wrapped, created) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
            &[&id, &key.wrapped, &Instant::now().0],
        )
        .await
        .map_err(error)?;
    Ok(inserted == 1)
}

/// Adds a new data key wrapped by `master`; returns its id.
pub(super) async fn add(client: &Client, master: &MasterKey) -> Result<u32, StoreError> {
    let key = Keyring::new_key(master, &load(client).await?)?;
    if !insert(client, &key).await? {
        return Err(StoreError::Backend(
            "another data key was added at the same time: run it again".into(),
        ));
    }
    Ok(key.id)
}

/// Replaces every data key's wrapping, in one transaction; the set of keys must be
/// the one stored.
pub(super) async fn replace(
    client: &mut PooledClient,
    rows: &[WrappedKey],
) -> Result<usize, StoreError> {
    let transaction = client.transaction().await.map_err(error)?;
    let stored: i64 = transaction
        .query_one("SELECT count(*) FROM data_key", &[])
        .await
        .map_err(error)?
        .get(0);
    if usize::try_from(stored).ok() != Some(rows.len()) {
        return Err(StoreError::Backend(
            "the store's data keys changed since it was opened: run the rotation again".into(),
        ));
    }
    for row in rows {
        let id = i32::try_from(row.id)
            .map_err(|_| StoreError::Backend(format!("data key id {} is too large", row.id)))?;
        let changed = transaction
            .execute(
                "UPDATE data_key SET wrapped = $2 WHERE id = $1",
                &[&id, &row.wrapped],
            )
            .await
            .map_err(error)?;
        if changed != 1 {
            return Err(StoreError::Backend(format!(
                "data key {} is gone: run the rotation again",
                row.id
            )));
        }
    }
    transaction.commit().await.map_err(error)?;
    Ok(rows.len())
}
