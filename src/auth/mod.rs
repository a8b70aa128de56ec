//! Authentication: turns a bearer token into verified [`Claims`].
//!
//! Two mutually exclusive modes: with a ScaiKey URL configured, tokens are
//! RS256/ES256 JWTs checked against ScaiKey's JWKS; without one, the server is
//! its own development issuer ([`DevIssuer`]) with a key kept in the data directory.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::Header;
use serde_json::Value;
use url::Url;

mod claims;
mod dev;
mod error;
mod jwks;
mod scope;
mod token;
mod verified;

pub use claims::Claims;
pub use dev::{DevIssuer, MintRequest, DEFAULT_ISSUER, KEY_FILE};
pub use error::AuthError;
pub use scope::{Scope, Scopes};

use jwks::JwksCache;

/// Unknown-`kid` refetches are at most this frequent, so garbage kids cannot hammer ScaiKey.
const MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// Everything the auth layer needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    /// ScaiKey's base URL; `None` turns on the development issuer.
    pub scaikey_url: Option<Url>,
    /// An extra accepted `iss` (ScaiKey mode) or the development issuer's name.
    pub jwt_issuer: Option<String>,
    /// Where the development key is kept.
    pub data_dir: PathBuf,
    /// How long a fetched JWKS is trusted.
    pub jwks_ttl: Duration,
    /// Timeout for each JWKS request.
    pub http_timeout: Duration,
}

impl AuthConfig {
    pub const DEFAULT_JWKS_TTL: Duration = Duration::from_secs(5 * 60);
    pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(5);

    /// Development mode in `data_dir`, default timings; set the other fields as needed.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            scaikey_url: None,
            jwt_issuer: None,
            data_dir: data_dir.into(),
            jwks_ttl: Self::DEFAULT_JWKS_TTL,
            http_timeout: Self::DEFAULT_HTTP_TIMEOUT,
        }
    }
}

/// Verifies bearer tokens; cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    mode: Arc<Mode>,
    verified: Arc<verified::Verified>,
}

enum Mode {
    ScaiKey(ScaiKey),
    Development(DevIssuer),
}

struct ScaiKey {
    /// The ScaiKey URL without trailing slash.
    base: String,
    extra_issuer: Option<String>,
    jwks: JwksCache,
}

impl Authenticator {
    /// Builds the authenticator; in development mode this loads or creates the key.
    pub async fn new(cfg: AuthConfig) -> Result<Self, AuthError> {
        Self::build(cfg, MIN_REFETCH_INTERVAL)
    }

    fn build(cfg: AuthConfig, min_refetch: Duration) -> Result<Self, AuthError> {
        let mode = match cfg.scaikey_url {
            Some(url) => Mode::ScaiKey(ScaiKey::new(
                &url,
                cfg.jwt_issuer,
                cfg.http_timeout,
                cfg.jwks_ttl,
                min_refetch,
            )?),
            None => {
                let dev = DevIssuer::load_or_create(&cfg.data_dir, cfg.jwt_issuer)?;
                tracing::warn!(
                    issuer = dev.issuer(),
                    kid = dev.kid(),
                    "no scaikey configured: development token issuer is active"
                );
                Mode::Development(dev)
            }
        };
        Ok(Self {
            mode: Arc::new(mode),
            verified: Arc::default(),
        })
    }

    /// Verifies a bearer token (without the `Bearer ` prefix) and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header = token::header(token)?;
        let digest = verified::Verified::digest(token);
        match &*self.mode {
            Mode::ScaiKey(scaikey) => {
                let (keys, generation) = scaikey
                    .jwks
                    .keys_for(header.kid.as_deref(), header.alg)
                    .await?;
                if let Some(claims) = self.verified.get(&digest, generation) {
                    return Ok(claims);
                }
                let claims = scaikey.verify(token, &header, &keys)?;
                self.verified.put(digest, generation, &claims);
                Ok(claims)
            }
            Mode::Development(dev) => {
                if let Some(claims) = self.verified.get(&digest, 0) {
                    return Ok(claims);
                }
                let claims = dev.verify(token, &header)?;
                self.verified.put(digest, 0, &claims);
                Ok(claims)
            }
        }
    }

    /// Readiness: ScaiKey's JWKS is cached or reachable now; always Ok in development mode.
    pub async fn check_upstream(&self) -> Result<(), AuthError> {
        match &*self.mode {
            Mode::ScaiKey(scaikey) => scaikey.jwks.ensure_fresh().await,
            Mode::Development(_) => Ok(()),
        }
    }

    /// Whether tokens are verified by the embedded development issuer (no
    /// ScaiKey configured): the only issuer whose first user of a tenant is
    /// seated as its admin, to bootstrap a local tenant.
    pub fn is_development(&self) -> bool {
        matches!(&*self.mode, Mode::Development(_))
    }

    /// The development issuer, present only when no ScaiKey is configured.
    pub fn dev_issuer(&self) -> Option<&DevIssuer> {
        match &*self.mode {
            Mode::Development(dev) => Some(dev),
            Mode::ScaiKey(_) => None,
        }
    }
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.mode {
            Mode::ScaiKey(scaikey) => f
                .debug_struct("Authenticator")
                .field("scaikey", &scaikey.base)
                .finish_non_exhaustive(),
            Mode::Development(dev) => f
                .debug_struct("Authenticator")
                .field("dev_issuer", dev)
                .finish(),
        }
    }
}

impl ScaiKey {
    fn new(
        url: &Url,
        extra_issuer: Option<String>,
        timeout: Duration,
        ttl: Duration,
        min_refetch: Duration,
    ) -> Result<Self, AuthError> {
        if !matches!(url.scheme(), "http" | "https") || url.cannot_be_a_base() {
            return Err(AuthError::Config(
                "the ScaiKey URL must be an http(s) URL".into(),
            ));
        }
        let base = url.as_str().trim_end_matches('/').to_owned();
        // Joined as text: `Url::join` would drop the last path segment of a base without slash.
        let jwks_url = Url::parse(&format!("{base}/.well-known/jwks.json"))
            .map_err(|e| AuthError::Config(format!("cannot derive the JWKS URL: {e}")))?;
        Ok(Self {
            base,
            extra_issuer: extra_issuer
                .map(|i| i.trim_end_matches('/').to_owned())
                .filter(|i| !i.is_empty()),
            jwks: JwksCache::new(jwks_url, timeout, ttl, min_refetch)?,
        })
    }

    fn verify(
        &self,
        token: &str,
        header: &Header,
        keys: &[Arc<token::VerifyKey>],
    ) -> Result<Claims, AuthError> {
        let payload = token::decode(token, header.alg, keys.iter().map(AsRef::as_ref))?;
        let issuer = payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(AuthError::WrongIssuer)?;
        let tenant = payload.get("tenant_id").and_then(Value::as_str);
        if !self.trusts(issuer, tenant) {
            return Err(AuthError::WrongIssuer);
        }
        Claims::from_payload(&payload, issuer)
    }

    /// ScaiKey itself, its per-tenant issuer for the token's own tenant, or the configured issuer.
    fn trusts(&self, issuer: &str, tenant: Option<&str>) -> bool {
        let issuer = issuer.trim_end_matches('/');
        issuer == self.base
            || self.extra_issuer.as_deref() == Some(issuer)
            || tenant.is_some_and(|tenant| {
                !tenant.is_empty()
                    && issuer
                        .strip_prefix(self.base.as_str())
                        .and_then(|rest| rest.strip_prefix("/tenants/"))
                        == Some(tenant)
            })
    }
}

#[cfg(test)]
mod tests;
