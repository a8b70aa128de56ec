//! Authentication: verifying bearer tokens (ScaiKey's, or the development
//! issuer's when ScaiKey is not configured) into [`Claims`].

use std::path::PathBuf;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

mod dev;
mod jwks;
mod scopes;

pub use dev::{DevIssuer, MintRequest, DEFAULT_ISSUER};
pub use scopes::{Scope, Scopes};

/// Why a token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Not authenticated")]
    Missing,
    #[error("Invalid token: {0}")]
    Invalid(String),
    #[error("Token has expired")]
    Expired,
    #[error("Token issuer is not accepted")]
    WrongIssuer,
    #[error("identity provider unreachable: {0}")]
    Upstream(String),
    #[error("identity provider timed out")]
    UpstreamTimeout,
    #[error("authentication misconfigured: {0}")]
    Config(String),
}

/// Settings for [`Authenticator::new`].
#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub scaikey_url: Option<url::Url>,
    pub jwt_issuer: Option<String>,
    pub data_dir: PathBuf,
    pub jwks_ttl: Duration,
    pub http_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            scaikey_url: None,
            jwt_issuer: None,
            data_dir: PathBuf::from("./scaidrive-data"),
            jwks_ttl: Duration::from_secs(300),
            http_timeout: Duration::from_secs(5),
        }
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone)]
pub struct Claims {
    pub subject: String,
    pub tenant_id: String,
    pub partner_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub scopes: Scopes,
    pub expires_at: i64,
    /// `act.client_id` or `act.sub` of a delegated token.
    pub service_account: Option<String>,
    pub issuer: String,
}

enum Mode {
    ScaiKey {
        base: String,
        jwks: jwks::JwksClient,
    },
    Dev(DevIssuer),
}

/// Verifies tokens.
pub struct Authenticator {
    mode: Mode,
    extra_issuer: Option<String>,
}

impl Authenticator {
    pub async fn new(cfg: AuthConfig) -> Result<Self, AuthError> {
        let mode = match &cfg.scaikey_url {
            Some(url) => {
                let base = url.as_str().trim_end_matches('/').to_owned();
                let jwks = jwks::JwksClient::new(
                    format!("{base}/.well-known/jwks.json"),
                    cfg.jwks_ttl,
                    cfg.http_timeout,
                )?;
                Mode::ScaiKey { base, jwks }
            }
            None => Mode::Dev(DevIssuer::load_or_create(
                &cfg.data_dir,
                cfg.jwt_issuer.clone(),
            )?),
        };
        Ok(Self {
            mode,
            extra_issuer: cfg.jwt_issuer,
        })
    }

    /// The development issuer, when ScaiKey is not configured.
    pub fn dev_issuer(&self) -> Option<&DevIssuer> {
        match &self.mode {
            Mode::Dev(d) => Some(d),
            Mode::ScaiKey { .. } => None,
        }
    }

    /// Readiness of the identity provider (always fine in development mode).
    pub async fn check_upstream(&self) -> Result<(), AuthError> {
        match &self.mode {
            Mode::ScaiKey { jwks, .. } => jwks.check().await,
            Mode::Dev(_) => Ok(()),
        }
    }

    /// Verifies signature, algorithm, expiry and issuer; extracts the claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let (key, alg): (DecodingKey, Algorithm) = match &self.mode {
            Mode::ScaiKey { jwks, .. } => jwks.key(header.kid.as_deref()).await?,
            Mode::Dev(d) => {
                if header.kid.as_deref().is_some_and(|k| k != d.kid()) {
                    return Err(AuthError::Invalid(
                        "token signed with an unknown key".into(),
                    ));
                }
                (d.decoding_key().clone(), Algorithm::ES256)
            }
        };
        if alg != header.alg {
            return Err(AuthError::Invalid(
                "token algorithm does not match its key".into(),
            ));
        }
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        validation.leeway = 30;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(c) => {
                AuthError::Invalid(format!("missing claim '{c}'"))
            }
            _ => AuthError::Invalid(e.to_string()),
        })?;
        let claims = extract(&data.claims)?;
        if !self.issuer_accepted(&claims.issuer, &claims.tenant_id) {
            return Err(AuthError::WrongIssuer);
        }
        Ok(claims)
    }

    fn issuer_accepted(&self, iss: &str, tenant_id: &str) -> bool {
        if self.extra_issuer.as_deref() == Some(iss) {
            return true;
        }
        match &self.mode {
            Mode::ScaiKey { base, .. } => {
                let iss = iss.trim_end_matches('/');
                iss == base || iss == format!("{base}/tenants/{tenant_id}")
            }
            Mode::Dev(d) => iss == d.issuer(),
        }
    }
}

fn string_claim(v: &Value, name: &str) -> Option<String> {
    match v.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn extract(v: &Value) -> Result<Claims, AuthError> {
    let subject =
        string_claim(v, "sub").ok_or_else(|| AuthError::Invalid("missing claim 'sub'".into()))?;
    let tenant_id = string_claim(v, "tenant_id")
        .ok_or_else(|| AuthError::Invalid("missing claim 'tenant_id'".into()))?;
    let scope_items: Vec<String> = match (v.get("scope"), v.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().map(str::to_owned).collect(),
        (_, Some(Value::Array(a))) | (Some(Value::Array(a)), _) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        (_, Some(Value::String(s))) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let groups = match v.get("groups") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    let service_account = v
        .get("act")
        .and_then(|a| string_claim(a, "client_id").or_else(|| string_claim(a, "sub")));
    Ok(Claims {
        subject,
        tenant_id,
        partner_id: string_claim(v, "partner_id"),
        email: string_claim(v, "email"),
        name: string_claim(v, "name"),
        groups,
        scopes: Scopes::parse(scope_items.iter().map(String::as_str)),
        expires_at: v.get("exp").and_then(Value::as_i64).unwrap_or_default(),
        service_account,
        issuer: string_claim(v, "iss").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests;
