//! The development issuer: with no ScaiKey configured, the server signs and
//! accepts its own ES256 tokens. The key lives in the data directory so the
//! `scaidrive token` command and the server share it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::AuthError;

/// The issuer name when none is configured.
pub const DEFAULT_ISSUER: &str = "scaidrive-dev";
const KEY_FILE: &str = "dev-issuer-key.pem";

/// What a development token says.
#[derive(Debug, Clone, Default)]
pub struct MintRequest {
    pub tenant_id: String,
    pub user_id: String,
    pub partner_id: Option<String>,
    pub scopes: Vec<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub ttl: Duration,
    /// A delegating service account (`act.client_id`).
    pub act: Option<String>,
}

/// The development signing key and its public half.
pub struct DevIssuer {
    issuer: String,
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    x: String,
    y: String,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish()
    }
}

impl DevIssuer {
    /// Loads the key from `data_dir`, creating it (mode 0600) on first use.
    pub fn load_or_create(data_dir: &Path, issuer: Option<String>) -> Result<DevIssuer, AuthError> {
        let path: PathBuf = data_dir.join(KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
                AuthError::Config(format!("{}: not a PKCS#8 P-256 key: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir).map_err(|e| {
                    AuthError::Config(format!("cannot create {}: {e}", data_dir.display()))
                })?;
                let key = SigningKey::random(&mut rand::rngs::OsRng);
                let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| {
                    AuthError::Config(format!("cannot encode the development key: {e}"))
                })?;
                write_private(&path, pem.as_bytes())?;
                // Another process may have won the race; use whatever is on disk.
                let on_disk = std::fs::read_to_string(&path).map_err(|e| {
                    AuthError::Config(format!("cannot read {}: {e}", path.display()))
                })?;
                SigningKey::from_pkcs8_pem(&on_disk).map_err(|e| {
                    AuthError::Config(format!("{}: not a PKCS#8 P-256 key: {e}", path.display()))
                })?
            }
            Err(e) => {
                return Err(AuthError::Config(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        Self::from_key(&key, issuer.unwrap_or_else(|| DEFAULT_ISSUER.to_owned()))
    }

    fn from_key(key: &SigningKey, issuer: String) -> Result<DevIssuer, AuthError> {
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| AuthError::Config(e.to_string()))?;
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes())
            .map_err(|e| AuthError::Config(e.to_string()))?;
        let point = key.verifying_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(AuthError::Config(
                "development key has no affine coordinates".into(),
            ));
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        let decoding = DecodingKey::from_ec_components(&x, &y)
            .map_err(|e| AuthError::Config(e.to_string()))?;
        // RFC 7638 thumbprint: SHA-256 of the required members in lexical order.
        let thumb = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumb.as_bytes()));
        Ok(DevIssuer {
            issuer,
            kid,
            encoding,
            decoding,
            x,
            y,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The public key as a JWKS document.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y, "kid": self.kid, "alg": "ES256", "use": "sig"}]})
    }

    /// Signs arbitrary claims (tests forge edge cases with it).
    #[doc(hidden)]
    pub fn sign_claims(&self, claims: &Value) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|e| AuthError::Config(e.to_string()))
    }

    /// Signs a token.
    pub fn mint(&self, req: &MintRequest) -> Result<String, AuthError> {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": req.user_id,
            "tenant_id": req.tenant_id,
            "iat": now,
            "exp": now + req.ttl.as_secs() as i64,
            "scope": req.scopes.join(" "),
            "groups": req.groups,
        });
        for (k, v) in [
            ("partner_id", &req.partner_id),
            ("email", &req.email),
            ("name", &req.name),
        ] {
            if let Some(v) = v {
                claims[k] = Value::from(v.clone());
            }
        }
        if let Some(a) = &req.act {
            claims["act"] = json!({ "client_id": a });
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| AuthError::Config(e.to_string()))
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => f
            .write_all(bytes)
            .map_err(|e| AuthError::Config(format!("cannot write {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(AuthError::Config(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
    }
}
