//! Which clients and users act for recipients outside the organisation, read from their
//! account records and kept for a minute, so a request does not read the store each
//! time. A change to a record's recipient takes effect within that minute.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use privacy::Principal;
use privacy::disclosure::{Recipient, external_recipient};
use store::Store;

use crate::error::ApiError;

/// How long a record's recipient is kept.
const KEEP: Duration = Duration::from_secs(60);
/// Most principals kept; the cache starts over when full.
const MAX_ENTRIES: usize = 10_000;

/// A principal's client and user.
type Key = (Option<String>, Option<String>);
/// Its recipient, if any, and when it was read.
type Known = HashMap<Key, (Option<Recipient>, Instant)>;

/// The recipients of clients and users, by (client, user).
#[derive(Default)]
pub(crate) struct Recipients {
    known: Mutex<Known>,
}

impl Recipients {
    /// The recipient `principal` acts for, if it is registered as one.
    pub(crate) async fn of(
        &self,
        store: &Store,
        principal: &Principal,
    ) -> Result<Option<Recipient>, ApiError> {
        let key = (principal.client_id.clone(), principal.user.clone());
        if let Some((recipient, at)) = self.lock().get(&key)
            && at.elapsed() < KEEP
        {
            return Ok(recipient.clone());
        }
        let recipient =
            external_recipient(store, principal)
                .await
                .map_err(|error| match error {
                    privacy::PrivacyError::Store(error) => ApiError::from(error),
                    other => ApiError::from(store::StoreError::Backend(other.to_string())),
                })?;
        let mut known = self.lock();
        if known.len() >= MAX_ENTRIES {
            known.clear();
        }
        known.insert(key, (recipient.clone(), Instant::now()));
        Ok(recipient)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
