//! ScaiKey's signing keys: fetched from its JWKS endpoint, cached, and
//! refetched (at most every few seconds) when a token names an unknown key.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Mutex;

use super::AuthError;

/// Shortest gap between two refetches caused by unknown key ids.
const REFETCH_GAP: Duration = Duration::from_secs(10);

struct Cached {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    /// Keys without a `kid`, tried when a token names none.
    anonymous: Vec<(DecodingKey, Algorithm)>,
    fetched_at: Instant,
}

/// A JWKS client with a time-bounded cache.
pub struct JwksClient {
    url: String,
    ttl: Duration,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
    last_forced: Mutex<Option<Instant>>,
}

impl JwksClient {
    pub fn new(url: String, ttl: Duration, timeout: Duration) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| AuthError::Config(format!("cannot build HTTP client: {e}")))?;
        Ok(Self {
            url,
            ttl,
            http,
            cache: Mutex::new(None),
            last_forced: Mutex::new(None),
        })
    }

    async fn fetch(&self) -> Result<Cached, AuthError> {
        let resp = self.http.get(&self.url).send().await.map_err(|e| {
            if e.is_timeout() {
                AuthError::UpstreamTimeout
            } else {
                AuthError::Upstream(format!("JWKS fetch failed: {e}"))
            }
        })?;
        if !resp.status().is_success() {
            return Err(AuthError::Upstream(format!(
                "JWKS endpoint answered {}",
                resp.status()
            )));
        }
        let set: JwkSet = resp.json().await.map_err(|e| {
            if e.is_timeout() {
                AuthError::UpstreamTimeout
            } else {
                AuthError::Upstream(format!("JWKS document unreadable: {e}"))
            }
        })?;
        let mut keys = HashMap::new();
        let mut anonymous = Vec::new();
        for jwk in &set.keys {
            let alg = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Algorithm::RS256,
                AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            match &jwk.common.key_id {
                Some(kid) => {
                    keys.insert(kid.clone(), (key, alg));
                }
                None => anonymous.push((key, alg)),
            }
        }
        Ok(Cached {
            keys,
            anonymous,
            fetched_at: Instant::now(),
        })
    }

    /// The key for `kid` (or the only key, when the token names none).
    pub async fn key(&self, kid: Option<&str>) -> Result<(DecodingKey, Algorithm), AuthError> {
        let mut cache = self.cache.lock().await;
        let stale = cache
            .as_ref()
            .is_none_or(|c| c.fetched_at.elapsed() > self.ttl);
        if stale {
            *cache = Some(self.fetch().await?);
        }
        if let Some(found) = cache.as_ref().and_then(|c| lookup(c, kid)) {
            return Ok(found);
        }
        // Unknown key: ScaiKey may have rotated. Refetch, but not too often.
        if !stale {
            let mut last = self.last_forced.lock().await;
            if last.is_none_or(|t| t.elapsed() >= REFETCH_GAP) {
                *last = Some(Instant::now());
                *cache = Some(self.fetch().await?);
                if let Some(found) = cache.as_ref().and_then(|c| lookup(c, kid)) {
                    return Ok(found);
                }
            }
        }
        Err(AuthError::Invalid(
            "token signed with an unknown key".into(),
        ))
    }

    /// Readiness: the JWKS endpoint answers (uses the cache while fresh).
    pub async fn check(&self) -> Result<(), AuthError> {
        let mut cache = self.cache.lock().await;
        if cache
            .as_ref()
            .is_none_or(|c| c.fetched_at.elapsed() > self.ttl)
        {
            *cache = Some(self.fetch().await?);
        }
        Ok(())
    }
}

fn lookup(c: &Cached, kid: Option<&str>) -> Option<(DecodingKey, Algorithm)> {
    match kid {
        Some(k) => c.keys.get(k).cloned(),
        None => {
            let all: Vec<_> = c.anonymous.iter().chain(c.keys.values()).collect();
            (all.len() == 1).then(|| all[0].clone())
        }
    }
}
