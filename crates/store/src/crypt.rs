//! Encryption at rest of resource bodies: envelope encryption with AES-256-GCM.
//!
//! A master key (from the environment or a key file, never stored) wraps random 256-bit
//! data keys, which the store keeps wrapped in its `data_key` table under a key id. Each
//! body is sealed with the newest data key and a fresh random 96-bit nonce:
//!
//! ```text
//! 0x01 | key id (4 bytes, big-endian) | nonce (12 bytes) | ciphertext | tag (16 bytes)
//! ```
//!
//! The 17-byte header is the associated data, so a changed key id or version fails the
//! tag. A stored JSON body always starts with `{`, never `0x01`, so bodies written
//! before encryption was turned on (or without a master key) read as they are.

use std::cell::RefCell;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce, Tag};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::StoreError;

/// The first byte of a sealed body: the format version.
const SEALED_V1: u8 = 0x01;
/// Versions read per page when bodies are sealed again.
pub(crate) const RESEAL_PAGE: i64 = 500;
/// Format version, key id, nonce.
const HEADER_LEN: usize = 1 + 4 + NONCE_LEN;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// What a wrapped data key is bound to, with its id.
const WRAP_CONTEXT: &[u8] = b"custodian data key ";

/// The key that wraps the data keys: 32 bytes, given as base64
/// (`CUSTODIAN_MASTER_KEY` or a key file). Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Reads a key written as base64 of 32 bytes (surrounding white space ignored).
    pub fn from_base64(text: &str) -> Result<MasterKey, StoreError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| {
            StoreError::Config("the master key is not valid base64 (expected 32 bytes)".into())
        })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|bytes: Vec<u8>| {
            StoreError::Config(format!(
                "the master key is {} bytes long; it must be 32 (256 bits)",
                bytes.len()
            ))
        })?;
        Ok(MasterKey::from_bytes(&bytes))
    }

    /// Reads a key file: base64 of 32 bytes, as `custodian admin new-master-key` writes.
    pub fn from_file(path: &Path) -> Result<MasterKey, StoreError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            StoreError::Config(format!(
                "cannot read the master key file {}: {error}",
                path.display()
            ))
        })?;
        MasterKey::from_base64(&text).map_err(|error| match error {
            StoreError::Config(message) => {
                StoreError::Config(format!("{}: {message}", path.display()))
            }
            other => other,
        })
    }

    /// A new random key, and its base64 text (to keep, e.g. in a key file).
    pub fn generate() -> Result<(MasterKey, String), StoreError> {
        let bytes = random_key()?;
        Ok((MasterKey::from_bytes(&bytes), STANDARD.encode(bytes)))
    }

    fn from_bytes(bytes: &[u8; 32]) -> MasterKey {
        MasterKey {
            cipher: Aes256Gcm::new(&(*bytes).into()),
        }
    }

    /// A data key wrapped for the `data_key` table: nonce, ciphertext, tag.
    fn wrap(&self, id: u32, key: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let nonce = next_nonce()?;
        let mut wrapped = Vec::with_capacity(NONCE_LEN + 32 + TAG_LEN);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(key);
        let tag = self
            .cipher
            .encrypt_inout_detached(
                &Nonce::from(nonce),
                &wrap_context(id),
                (&mut wrapped[NONCE_LEN..]).into(),
            )
            .map_err(|_| StoreError::Backend("cannot wrap a data key".into()))?;
        wrapped.extend_from_slice(&tag);
        Ok(wrapped)
    }

    fn unwrap_key(&self, id: u32, wrapped: &[u8]) -> Result<[u8; 32], StoreError> {
        let refused = || {
            StoreError::Config(format!(
                "the master key does not open data key {id} of this store: is it the right key?"
            ))
        };
        if wrapped.len() != NONCE_LEN + 32 + TAG_LEN {
            return Err(refused());
        }
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(32);
        let mut key = [0u8; 32];
        key.copy_from_slice(ciphertext);
        let nonce = Nonce::try_from(nonce).map_err(|_| refused())?;
        let tag = Tag::try_from(tag).map_err(|_| refused())?;
        self.cipher
            .decrypt_inout_detached(&nonce, &wrap_context(id), (&mut key[..]).into(), &tag)
            .map_err(|_| refused())?;
        Ok(key)
    }
}

fn wrap_context(id: u32) -> Vec<u8> {
    let mut context = WRAP_CONTEXT.to_vec();
    context.extend_from_slice(&id.to_be_bytes());
    context
}

fn random_key() -> Result<[u8; 32], StoreError> {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key)
        .map_err(|error| StoreError::Backend(format!("no randomness for a key: {error}")))?;
    Ok(key)
}

/// Nonces handed out per thread from a buffer of operating-system randomness, so a
/// body costs no system call. The process never forks without `exec`, so no two
/// processes share a buffer.
const NONCES_PER_REFILL: usize = 256;

thread_local! {
    static NONCES: RefCell<(usize, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

fn next_nonce() -> Result<[u8; NONCE_LEN], StoreError> {
    NONCES.with(|cell| {
        let mut cell = cell.borrow_mut();
        let (used, buffer) = &mut *cell;
        if *used >= buffer.len() {
            buffer.resize(NONCE_LEN * NONCES_PER_REFILL, 0);
            getrandom::fill(buffer).map_err(|error| {
                StoreError::Backend(format!("no randomness for a nonce: {error}"))
            })?;
            *used = 0;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&buffer[*used..*used + NONCE_LEN]);
        *used += NONCE_LEN;
        Ok(nonce)
    })
}

/// One data key, unwrapped.
struct DataKey {
    id: u32,
    bytes: [u8; 32],
    cipher: Aes256Gcm,
}

impl DataKey {
    fn unwrap(master: &MasterKey, row: &WrappedKey) -> Result<DataKey, StoreError> {
        let bytes = master.unwrap_key(row.id, &row.wrapped)?;
        Ok(DataKey {
            id: row.id,
            cipher: Aes256Gcm::new(&bytes.into()),
            bytes,
        })
    }
}

/// A data key as the `data_key` table keeps it.
pub(crate) struct WrappedKey {
    pub(crate) id: u32,
    pub(crate) wrapped: Vec<u8>,
}

/// The data keys of an open store: every one opens bodies, the newest seals new ones.
/// Without a master key it is empty, and bodies are written plain. Keys added while
/// the store is open (`rotate-key --new-data-key`, by this process or another) are
/// learnt ([`Keyring::learn`]), so every server opens what any other sealed.
pub(crate) struct Keyring {
    master: Option<MasterKey>,
    /// In id order; the last seals.
    keys: RwLock<Vec<Arc<DataKey>>>,
}

/// What a store's encryption looks like, for operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encryption {
    /// The data key new bodies are sealed with; `None` when bodies are written plain.
    pub sealing_key: Option<u32>,
    /// How many data keys the store holds.
    pub data_keys: usize,
}

impl Keyring {
    /// The keyring of a store whose `data_key` table holds `rows`. A store with data
    /// keys refuses to open without the master key: its bodies cannot be read.
    pub(crate) fn open(
        master: Option<&MasterKey>,
        rows: &[WrappedKey],
    ) -> Result<Keyring, StoreError> {
        let Some(master) = master else {
            if rows.is_empty() {
                return Ok(Keyring {
                    master: None,
                    keys: RwLock::new(Vec::new()),
                });
            }
            return Err(StoreError::Config(
                "this store's resource bodies are encrypted: give its master key \
                 (CUSTODIAN_MASTER_KEY, or --master-key-file)"
                    .into(),
            ));
        };
        let mut keys = Vec::with_capacity(rows.len());
        for row in rows {
            keys.push(Arc::new(DataKey::unwrap(master, row)?));
        }
        keys.sort_by_key(|key| key.id);
        Ok(Keyring {
            master: Some(master.clone()),
            keys: RwLock::new(keys),
        })
    }

    /// Takes in the data keys among `rows` it does not hold yet, and says so in the log.
    /// Without a master key there is nothing to learn: bodies are written plain.
    pub(crate) fn learn(&self, rows: &[WrappedKey]) -> Result<(), StoreError> {
        let Some(master) = &self.master else {
            return Ok(());
        };
        let newest = self.newest();
        let mut learnt = Vec::new();
        for row in rows.iter().filter(|row| row.id > newest) {
            learnt.push(Arc::new(DataKey::unwrap(master, row).map_err(|_| {
                StoreError::Config(format!(
                    "data key {} was added under another master key: restart this server \
                     with the store's master key",
                    row.id
                ))
            })?));
        }
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        for key in learnt {
            if !keys.iter().any(|known| known.id == key.id) {
                tracing::info!(
                    id = key.id,
                    "learnt a new data key: it seals new bodies from now on"
                );
                keys.push(key);
            }
        }
        keys.sort_by_key(|key| key.id);
        Ok(())
    }

    /// The id of the newest data key (0 when there is none).
    pub(crate) fn newest(&self) -> u32 {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .map_or(0, |key| key.id)
    }

    /// A new data key, wrapped by `master`, with the id after the newest of `rows`.
    pub(crate) fn new_key(
        master: &MasterKey,
        rows: &[WrappedKey],
    ) -> Result<WrappedKey, StoreError> {
        let id = rows
            .iter()
            .map(|row| row.id)
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("no data key ids left".into()))?;
        Ok(WrappedKey {
            id,
            wrapped: master.wrap(id, &random_key()?)?,
        })
    }

    /// Every data key wrapped by `new` instead (a master key rotation).
    pub(crate) fn rewrap(&self, new: &MasterKey) -> Result<Vec<WrappedKey>, StoreError> {
        if self.master.is_none() {
            return Err(StoreError::Config(
                "the store was opened without its master key".into(),
            ));
        }
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|key| {
                Ok(WrappedKey {
                    id: key.id,
                    wrapped: new.wrap(key.id, &key.bytes)?,
                })
            })
            .collect()
    }

    /// The master key the store was opened with.
    pub(crate) fn master(&self) -> Option<&MasterKey> {
        self.master.as_ref()
    }

    pub(crate) fn encryption(&self) -> Encryption {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        Encryption {
            sealing_key: keys.last().map(|key| key.id),
            data_keys: keys.len(),
        }
    }

    /// The body as stored: sealed with the newest data key, or `None` when the store
    /// writes bodies plain (then the caller stores the text itself).
    pub(crate) fn seal(&self, body: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let newest = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .last()
            .cloned();
        let Some(key) = newest else {
            return Ok(None);
        };
        let nonce = next_nonce()?;
        let mut sealed = Vec::with_capacity(HEADER_LEN + body.len() + TAG_LEN);
        sealed.push(SEALED_V1);
        sealed.extend_from_slice(&key.id.to_be_bytes());
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(body.as_bytes());
        let (header, text) = sealed.split_at_mut(HEADER_LEN);
        let tag = key
            .cipher
            .encrypt_inout_detached(&Nonce::from(nonce), header, text.into())
            .map_err(|_| StoreError::Backend("cannot seal a body".into()))?;
        sealed.extend_from_slice(&tag);
        Ok(Some(sealed))
    }

    /// `stored` sealed again with the newest data key, or `None` when it already is
    /// (or the store writes bodies plain): for bodies stored plain before the store had
    /// a key, and bodies of older data keys (`rotate-key --reseal`).
    pub(crate) fn reseal(&self, stored: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let newest = self.newest();
        if newest == 0 {
            return Ok(None);
        }
        let sealed_by = (stored.first() == Some(&SEALED_V1))
            .then(|| stored.get(1..5))
            .flatten()
            .and_then(|id| <[u8; 4]>::try_from(id).ok())
            .map(u32::from_be_bytes);
        if sealed_by == Some(newest) {
            return Ok(None);
        }
        let body = self.open_body(stored)?;
        self.seal(&body)
    }

    /// A stored body as text: plain JSON as it is, a sealed body decrypted.
    pub(crate) fn open_body(&self, stored: &[u8]) -> Result<String, StoreError> {
        if stored.first() != Some(&SEALED_V1) {
            return plain(stored.to_vec());
        }
        let Parts {
            header,
            key,
            nonce,
            tag,
        } = self.parse(stored)?;
        let mut text = stored[HEADER_LEN..stored.len() - TAG_LEN].to_vec();
        key.cipher
            .decrypt_inout_detached(&nonce, header, (&mut text[..]).into(), &tag)
            .map_err(|_| damaged(key.id))?;
        plain(text)
    }

    /// [`Keyring::open_body`] on a buffer of its own, decrypted where it lies.
    pub(crate) fn open_owned(&self, mut stored: Vec<u8>) -> Result<String, StoreError> {
        if stored.first() != Some(&SEALED_V1) {
            return plain(stored);
        }
        let Parts {
            header,
            key,
            nonce,
            tag,
        } = self.parse(&stored)?;
        let header: [u8; HEADER_LEN] = header
            .try_into()
            .map_err(|_| StoreError::Backend("a sealed body is cut short".into()))?;
        let id = key.id;
        let cipher = &key.cipher;
        let end = stored.len() - TAG_LEN;
        cipher
            .decrypt_inout_detached(&nonce, &header, (&mut stored[HEADER_LEN..end]).into(), &tag)
            .map_err(|_| damaged(id))?;
        stored.truncate(end);
        stored.drain(..HEADER_LEN);
        plain(stored)
    }

    /// The header, data key, nonce and tag of a sealed body.
    fn parse<'s>(&self, stored: &'s [u8]) -> Result<Parts<'s>, StoreError> {
        if stored.len() < HEADER_LEN + TAG_LEN {
            return Err(StoreError::Backend("a sealed body is cut short".into()));
        }
        let header = &stored[..HEADER_LEN];
        let mut id = [0u8; 4];
        id.copy_from_slice(&header[1..5]);
        let id = u32::from_be_bytes(id);
        let key = self.find(id)?;
        let nonce = Nonce::try_from(&header[5..HEADER_LEN])
            .map_err(|_| StoreError::Backend("a sealed body is cut short".into()))?;
        let tag = Tag::try_from(&stored[stored.len() - TAG_LEN..])
            .map_err(|_| StoreError::Backend("a sealed body is cut short".into()))?;
        Ok(Parts {
            header,
            key,
            nonce,
            tag,
        })
    }

    fn find(&self, id: u32) -> Result<Arc<DataKey>, StoreError> {
        if self.master.is_none() {
            return Err(StoreError::Config(
                "a resource body is encrypted, and the store was opened without its master key"
                    .into(),
            ));
        }
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.binary_search_by_key(&id, |key| key.id)
            .ok()
            .and_then(|index| keys.get(index))
            .cloned()
            .ok_or_else(|| {
                StoreError::Backend(format!(
                    "a resource body is sealed with data key {id}, which this server has not \
                     learnt yet (it looks for new data keys every second)"
                ))
            })
    }
}

/// A sealed body taken apart.
struct Parts<'s> {
    header: &'s [u8],
    key: Arc<DataKey>,
    nonce: Nonce<aes_gcm::aead::consts::U12>,
    tag: Tag,
}

fn damaged(id: u32) -> StoreError {
    StoreError::Backend(format!(
        "a resource body sealed with data key {id} does not authenticate: it was changed or damaged"
    ))
}

fn plain(bytes: Vec<u8>) -> Result<String, StoreError> {
    String::from_utf8(bytes)
        .map_err(|_| StoreError::Backend("a stored resource body is not UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(master: &MasterKey, ids: &[u32]) -> (Keyring, Vec<WrappedKey>) {
        let mut rows = Vec::new();
        for _ in ids {
            let row = Keyring::new_key(master, &rows).unwrap();
            rows.push(row);
        }
        (Keyring::open(Some(master), &rows).unwrap(), rows)
    }

    #[test]
    fn sealed_bodies_open_and_hide_their_text() {
        let (master, _) = MasterKey::generate().unwrap();
        let (keys, _) = keyring(&master, &[1]);
        let body = r#"{"resourceType":"Patient","name":[{"family":"Quixote"}]}"#;
        let sealed = keys.seal(body).unwrap().unwrap();
        assert_eq!(sealed.len(), HEADER_LEN + body.len() + TAG_LEN);
        assert!(!sealed.windows(7).any(|window| window == b"Quixote"));
        assert_eq!(keys.open_body(&sealed).unwrap(), body);
        assert_eq!(keys.open_owned(sealed.clone()).unwrap(), body);
        // A fresh nonce each time.
        assert_ne!(keys.seal(body).unwrap().unwrap(), sealed);
    }

    #[test]
    fn plain_bodies_read_as_they_are() {
        let (master, _) = MasterKey::generate().unwrap();
        let (keys, _) = keyring(&master, &[1]);
        let plain_keys = Keyring::open(None, &[]).unwrap();
        let body = r#"{"resourceType":"Basic"}"#;
        assert_eq!(plain_keys.seal(body).unwrap(), None);
        for keys in [&keys, &plain_keys] {
            assert_eq!(keys.open_body(body.as_bytes()).unwrap(), body);
            assert_eq!(keys.open_owned(body.as_bytes().to_vec()).unwrap(), body);
        }
    }

    #[test]
    fn a_changed_byte_anywhere_is_refused() {
        let (master, _) = MasterKey::generate().unwrap();
        let (keys, _) = keyring(&master, &[1]);
        let sealed = keys.seal(r#"{"resourceType":"Basic"}"#).unwrap().unwrap();
        for index in 1..sealed.len() {
            let mut changed = sealed.clone();
            changed[index] ^= 0x20;
            assert!(keys.open_body(&changed).is_err(), "byte {index}");
            assert!(keys.open_owned(changed).is_err(), "byte {index}");
        }
        assert!(keys.open_body(&sealed[..HEADER_LEN + 3]).is_err());
    }

    #[test]
    fn the_newest_key_seals_and_every_key_opens() {
        let (master, _) = MasterKey::generate().unwrap();
        let (old, mut rows) = keyring(&master, &[1]);
        let sealed_by_first = old.seal(r#"{"a":1}"#).unwrap().unwrap();
        rows.push(Keyring::new_key(&master, &rows).unwrap());
        let keys = Keyring::open(Some(&master), &rows).unwrap();
        assert_eq!(
            keys.encryption(),
            Encryption {
                sealing_key: Some(2),
                data_keys: 2
            }
        );
        let sealed_by_second = keys.seal(r#"{"a":2}"#).unwrap().unwrap();
        assert_eq!(&sealed_by_second[1..5], &2u32.to_be_bytes());
        assert_eq!(keys.open_body(&sealed_by_first).unwrap(), r#"{"a":1}"#);
        assert_eq!(keys.open_body(&sealed_by_second).unwrap(), r#"{"a":2}"#);
        // A server that loaded only the first key says so.
        let error = old.open_body(&sealed_by_second).unwrap_err();
        assert!(error.to_string().contains("data key 2"), "{error}");
    }

    #[test]
    fn rewrapped_keys_open_with_the_new_master_key_only() {
        let (master, _) = MasterKey::generate().unwrap();
        let (keys, rows) = keyring(&master, &[1, 2]);
        let sealed = keys.seal(r#"{"a":1}"#).unwrap().unwrap();
        let (new_master, _) = MasterKey::generate().unwrap();
        let rewrapped = keys.rewrap(&new_master).unwrap();
        assert_eq!(rewrapped.len(), 2);
        let reopened = Keyring::open(Some(&new_master), &rewrapped).unwrap();
        assert_eq!(reopened.open_body(&sealed).unwrap(), r#"{"a":1}"#);
        let error = Keyring::open(Some(&master), &rewrapped)
            .err()
            .expect("the old master key still opened the keys");
        assert!(error.to_string().contains("right key"), "{error}");
        assert!(Keyring::open(Some(&new_master), &rows).is_err());
    }

    #[test]
    fn a_store_with_keys_needs_the_master_key() {
        let (master, _) = MasterKey::generate().unwrap();
        let (_, rows) = keyring(&master, &[1]);
        let error = Keyring::open(None, &rows)
            .err()
            .expect("opened without a key");
        assert!(
            error.to_string().contains("CUSTODIAN_MASTER_KEY"),
            "{error}"
        );
    }

    #[test]
    fn master_keys_are_base64_of_32_bytes() {
        let (_, text) = MasterKey::generate().unwrap();
        assert!(MasterKey::from_base64(&format!(" {text}\n")).is_ok());
        let short = STANDARD.encode([7u8; 16]);
        let error = MasterKey::from_base64(&short).unwrap_err();
        assert!(error.to_string().contains("16 bytes"), "{error}");
        assert!(MasterKey::from_base64("not base64!").is_err());
        assert_eq!(
            format!("{:?}", MasterKey::from_base64(&text).unwrap()),
            "MasterKey(..)"
        );
    }
}
