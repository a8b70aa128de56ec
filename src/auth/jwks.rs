//! ScaiKey's signing keys: fetched from its JWKS document, cached for a while,
//! refetched (sparingly) when a token names a key we do not know.

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use url::Url;

use super::error::AuthError;
use super::token::VerifyKey;

/// A key set larger than this is not a key set.
const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// The cached key set plus the bookkeeping that keeps fetches rare and shared.
pub(crate) struct JwksCache {
    url: Url,
    client: reqwest::Client,
    ttl: Duration,
    min_refetch: Duration,
    state: parking_lot::Mutex<State>,
    /// Held for the whole of a fetch, so concurrent misses queue behind one request.
    flight: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: Option<Snapshot>,
    last_attempt: Option<Instant>,
    /// Fetches completed so far; lets a queued caller see that one finished meanwhile.
    attempts: u64,
    /// Outcome of the latest fetch when it failed.
    last_error: Option<AuthError>,
}

struct Snapshot {
    keys: Vec<Arc<VerifyKey>>,
    fetched_at: Instant,
    /// Which fetch this is (each successful fetch gets a new number).
    generation: u64,
}

impl Snapshot {
    /// Keys named `kid`, or without a kid every key usable with `alg`.
    fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<Vec<Arc<VerifyKey>>> {
        let found: Vec<_> = match kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .cloned()
                .collect(),
            None => self.keys.iter().filter(|k| k.alg == alg).cloned().collect(),
        };
        (!found.is_empty()).then_some(found)
    }
}

impl JwksCache {
    pub(crate) fn new(
        url: Url,
        timeout: Duration,
        ttl: Duration,
        min_refetch: Duration,
    ) -> Result<Self, AuthError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("scaidrive/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| AuthError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            url,
            client,
            ttl,
            min_refetch,
            state: parking_lot::Mutex::new(State::default()),
            flight: tokio::sync::Mutex::new(()),
        })
    }

    /// The keys that may have signed a token with this `kid` and `alg`.
    /// The candidate keys for a token, with the generation of the key set
    /// they come from (it changes with every fetch: what was verified
    /// against an older set is verified again).
    pub(crate) async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<(Vec<Arc<VerifyKey>>, u64), AuthError> {
        self.resolve(|snap| snap.find(kid, alg).map(|keys| (keys, snap.generation)))
            .await
    }

    /// Succeeds when a current key set is cached or can be fetched now.
    pub(crate) async fn ensure_fresh(&self) -> Result<(), AuthError> {
        self.resolve(|_| Some(())).await
    }

    /// Answers `find` from the cache, fetching first when the cache is stale or
    /// lacks the answer and no fetch happened within `min_refetch`.
    async fn resolve<T>(&self, find: impl Fn(&Snapshot) -> Option<T>) -> Result<T, AuthError> {
        let seen = {
            let st = self.state.lock();
            if let Some(done) = self.cached_answer(&st, &find) {
                return done;
            }
            st.attempts
        };

        let _flight = self.flight.lock().await;
        {
            let st = self.state.lock();
            if st.attempts != seen {
                // A fetch finished while we queued: share its outcome instead of repeating it.
                if let Some(err) = &st.last_error {
                    return Err(err.clone());
                }
                return st.keys.as_ref().and_then(&find).ok_or_else(unknown_key);
            }
        }

        let outcome = self.fetch().await;
        let now = Instant::now();
        let mut st = self.state.lock();
        st.attempts += 1;
        st.last_attempt = Some(now);
        match outcome {
            Ok(keys) => {
                let snapshot = Snapshot {
                    keys,
                    fetched_at: now,
                    generation: st.attempts,
                };
                let found = find(&snapshot);
                st.keys = Some(snapshot);
                st.last_error = None;
                found.ok_or_else(unknown_key)
            }
            Err(err) => {
                // Not logged here: the error travels to the request that handles it.
                st.last_error = Some(err.clone());
                Err(err)
            }
        }
    }

    fn cached_answer<T>(
        &self,
        st: &State,
        find: impl Fn(&Snapshot) -> Option<T>,
    ) -> Option<Result<T, AuthError>> {
        let snapshot = st
            .keys
            .as_ref()
            .filter(|s| s.fetched_at.elapsed() < self.ttl)?;
        if let Some(found) = find(snapshot) {
            return Some(Ok(found));
        }
        let fetched_recently = st
            .last_attempt
            .is_some_and(|at| at.elapsed() < self.min_refetch);
        fetched_recently.then(|| Err(unknown_key()))
    }

    async fn fetch(&self) -> Result<Vec<Arc<VerifyKey>>, AuthError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(from_reqwest)?;
        if !response.status().is_success() {
            return Err(AuthError::Upstream(format!(
                "JWKS request answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(from_reqwest)? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(AuthError::Upstream("JWKS answer is too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let keys = parse_jwks(&body)?;
        tracing::debug!(url = %self.url, keys = keys.len(), "fetched scaikey jwks");
        Ok(keys)
    }
}

fn unknown_key() -> AuthError {
    AuthError::invalid("token is signed with an unknown key")
}

fn from_reqwest(err: reqwest::Error) -> AuthError {
    if err.is_timeout() {
        return AuthError::UpstreamTimeout;
    }
    let err = err.without_url();
    let mut message = format!("JWKS request failed: {err}");
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    AuthError::Upstream(message)
}

/// The RS256/ES256 verification keys of a JWKS document; other keys are skipped.
pub(crate) fn parse_jwks(body: &[u8]) -> Result<Vec<Arc<VerifyKey>>, AuthError> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document = serde_json::from_slice(body)
        .map_err(|_| AuthError::Upstream("JWKS answer is not a JSON key set".into()))?;
    let keys: Vec<_> = document
        .keys
        .into_iter()
        .filter_map(verify_key)
        .map(Arc::new)
        .collect();
    if keys.is_empty() {
        return Err(AuthError::Upstream(
            "JWKS answer has no usable RS256 or ES256 key".into(),
        ));
    }
    Ok(keys)
}

fn verify_key(value: Value) -> Option<VerifyKey> {
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    let (alg, declared) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (Algorithm::RS256, KeyAlgorithm::RS256),
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            (Algorithm::ES256, KeyAlgorithm::ES256)
        }
        _ => return None,
    };
    if jwk.common.key_algorithm.is_some_and(|a| a != declared) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(VerifyKey {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}
