//! Tokens already verified: a client sends the same bearer token with every
//! request until it expires, and checking its signature again each time is
//! the most expensive step of authenticating it. A token is remembered by
//! its SHA-256 digest with its claims and the key set it was verified
//! against; a hit is used only while that key set is still the current one
//! (a JWKS refetch starts over) and the token has not expired.

use std::num::NonZeroUsize;

use lru::LruCache;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::claims::Claims;
use super::token::LEEWAY_SECS;

/// Tokens remembered at most (least recently used go first).
const CAPACITY: NonZeroUsize = match NonZeroUsize::new(10_000) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

/// A token's identity in the cache.
pub(crate) type TokenDigest = [u8; 32];

struct Entry {
    claims: Claims,
    /// The key set's generation (0 for the development issuer's one key).
    keys: u64,
}

pub(crate) struct Verified {
    entries: Mutex<LruCache<TokenDigest, Entry>>,
}

impl Default for Verified {
    fn default() -> Self {
        Self {
            entries: Mutex::new(LruCache::new(CAPACITY)),
        }
    }
}

impl Verified {
    pub(crate) fn digest(token: &str) -> TokenDigest {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The claims of a token verified against key set `keys` that has not
    /// expired (with the same clock-skew leeway as the full check).
    pub(crate) fn get(&self, token: &TokenDigest, keys: u64) -> Option<Claims> {
        let mut entries = self.entries.lock();
        let entry = entries.get(token)?;
        let now = chrono::Utc::now().timestamp();
        if entry.keys != keys || entry.claims.expires_at < now - LEEWAY_SECS as i64 {
            entries.pop(token);
            return None;
        }
        Some(entry.claims.clone())
    }

    pub(crate) fn put(&self, token: TokenDigest, keys: u64, claims: &Claims) {
        self.entries.lock().put(
            token,
            Entry {
                claims: claims.clone(),
                keys,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scopes;

    fn claims(expires_at: i64) -> Claims {
        Claims {
            subject: "alice".into(),
            tenant_id: "acme".into(),
            partner_id: None,
            email: None,
            name: None,
            groups: vec![],
            scopes: Scopes::default(),
            expires_at,
            service_account: None,
            issuer: "https://issuer.test".into(),
            raw_scope: String::new(),
        }
    }

    #[test]
    fn a_hit_needs_the_same_key_set_and_an_unexpired_token() {
        let cache = Verified::default();
        let now = chrono::Utc::now().timestamp();
        let token = Verified::digest("header.payload.signature");
        assert!(cache.get(&token, 1).is_none());
        cache.put(token, 1, &claims(now + 600));
        assert_eq!(cache.get(&token, 1), Some(claims(now + 600)));
        // Another token, another entry.
        assert!(cache
            .get(&Verified::digest("header.payload.other"), 1)
            .is_none());
        // A refetched key set: verified again (and the old entry is gone).
        assert!(cache.get(&token, 2).is_none());
        assert!(cache.get(&token, 1).is_none());
        // Expired beyond the leeway: never answered from memory.
        let old = Verified::digest("old.token.sig");
        cache.put(old, 1, &claims(now - LEEWAY_SECS as i64 - 5));
        assert!(cache.get(&old, 1).is_none());
        // Within the leeway it still counts, as in the full check.
        let late = Verified::digest("late.token.sig");
        cache.put(late, 1, &claims(now - 1));
        assert!(cache.get(&late, 1).is_some());
    }
}
