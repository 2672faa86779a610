//! Verified tokens, kept until they expire so a client's next request skips the
//! signature check. Keyed by the whole token: a signature alone could be glued to
//! other claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use privacy::Principal;

/// Tokens kept at most; when full, the cache starts over.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<String, Arc<Principal>>>,
}

impl TokenCache {
    /// The principal of a token verified before, while it is still valid.
    pub fn get(&self, token: &str) -> Option<Arc<Principal>> {
        let mut entries = self.entries.lock().ok()?;
        let principal = entries.get(token)?;
        if principal.expires_at > privacy::token::now() {
            Some(principal.clone())
        } else {
            entries.remove(token);
            None
        }
    }

    pub fn put(&self, token: &str, principal: Principal) -> Arc<Principal> {
        let principal = Arc::new(principal);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(token.to_string(), principal.clone());
        }
        principal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_entries_are_not_returned() {
        let cache = TokenCache::default();
        let mut principal = Principal::anonymous();
        principal.expires_at = privacy::token::now() + 60;
        cache.put("a", principal.clone());
        assert!(cache.get("a").is_some());
        principal.expires_at = privacy::token::now().saturating_sub(1);
        cache.put("b", principal);
        assert!(cache.get("b").is_none());
        assert!(cache.get("c").is_none());
    }
}
