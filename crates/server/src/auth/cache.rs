//! Verified tokens, kept until they expire so a client's next request skips the
//! signature check. Looked up by the signature (short, so cheap to hash) but matched on
//! the whole token: a signature alone could be glued to other claims.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use privacy::Principal;

/// Tokens kept at most; when full, the cache starts over.
const CAPACITY: usize = 4096;

#[derive(Default)]
pub struct TokenCache {
    /// Signature → (the whole token, its principal).
    entries: Mutex<HashMap<String, (String, Arc<Principal>)>>,
}

fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap_or(token)
}

impl TokenCache {
    /// The principal of a token verified before, while it is still valid.
    pub fn get(&self, token: &str) -> Option<Arc<Principal>> {
        let mut entries = self.entries.lock().ok()?;
        let key = signature(token);
        let (kept, principal) = entries.get(key)?;
        if kept != token {
            return None;
        }
        if principal.expires_at > privacy::token::now() {
            Some(principal.clone())
        } else {
            entries.remove(key);
            None
        }
    }

    pub fn put(&self, token: &str, principal: Principal) -> Arc<Principal> {
        let principal = Arc::new(principal);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CAPACITY {
                entries.clear();
            }
            entries.insert(
                signature(token).to_string(),
                (token.to_string(), principal.clone()),
            );
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
        cache.put("h.a.s1", principal.clone());
        assert!(cache.get("h.a.s1").is_some());
        principal.expires_at = privacy::token::now().saturating_sub(1);
        cache.put("h.b.s2", principal);
        assert!(cache.get("h.b.s2").is_none());
        assert!(cache.get("h.c.s3").is_none());
    }

    #[test]
    fn a_known_signature_on_other_claims_is_not_a_hit() {
        let cache = TokenCache::default();
        let mut principal = Principal::anonymous();
        principal.expires_at = privacy::token::now() + 60;
        cache.put("header.claims.sig", principal);
        assert!(cache.get("header.forged-claims.sig").is_none());
    }
}
