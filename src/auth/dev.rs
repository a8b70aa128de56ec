//! The embedded development issuer: used only when no ScaiKey is configured.
//!
//! Its P-256 key lives in the data directory so that tokens minted by the CLI in
//! one process verify in the server running in another.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use p256::SecretKey;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::claims::Claims;
use super::error::AuthError;
use super::token::{self, VerifyKey};

/// File name of the development key inside the data directory.
pub const KEY_FILE: &str = "dev-issuer-key.pem";
/// The `iss` of development tokens unless one is configured.
pub const DEFAULT_ISSUER: &str = "scaidrive-dev";

/// What a development token should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintRequest {
    pub tenant_id: String,
    pub user_id: String,
    pub partner_id: Option<String>,
    /// Scope names; empty means "no application scope", i.e. `tenant:admin`.
    pub scopes: Vec<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub ttl: Duration,
    /// Service account acting for the user (recorded as `act.sub`).
    pub act: Option<String>,
}

impl MintRequest {
    /// A one-hour token for `user_id` in `tenant_id`, no other claims.
    pub fn new(tenant_id: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            user_id: user_id.into(),
            partner_id: None,
            scopes: Vec::new(),
            email: None,
            name: None,
            groups: Vec::new(),
            ttl: Duration::from_secs(3600),
            act: None,
        }
    }
}

/// A signing key and issuer name for development tokens.
pub struct DevIssuer {
    issuer: String,
    kid: String,
    x: String,
    y: String,
    key_path: PathBuf,
    encoding: EncodingKey,
    verify: VerifyKey,
}

impl DevIssuer {
    /// Loads `{data_dir}/dev-issuer-key.pem`, creating the directory and key (mode 0600) if absent.
    pub fn load_or_create(
        data_dir: impl AsRef<Path>,
        issuer: Option<String>,
    ) -> Result<Self, AuthError> {
        let data_dir = data_dir.as_ref();
        fs::create_dir_all(data_dir).map_err(|e| {
            AuthError::Config(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let key_path = data_dir.join(KEY_FILE);
        let secret = match read_key(&key_path)? {
            Some(secret) => secret,
            None => create_key(&key_path)?,
        };
        Self::from_secret(&secret, key_path, issuer)
    }

    fn from_secret(
        secret: &SecretKey,
        key_path: PathBuf,
        issuer: Option<String>,
    ) -> Result<Self, AuthError> {
        let point = secret.public_key().to_encoded_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(AuthError::Config(
                "development key has no affine coordinates".into(),
            ));
        };
        let x = URL_SAFE_NO_PAD.encode(x);
        let y = URL_SAFE_NO_PAD.encode(y);
        // RFC 7638: required members only, lexicographic order, no whitespace.
        let thumbprint_input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));

        let der = secret
            .to_pkcs8_der()
            .map_err(|_| AuthError::Config("cannot encode the development key".into()))?;
        let encoding = EncodingKey::from_ec_der(der.as_bytes());
        let decoding = DecodingKey::from_ec_components(&x, &y)
            .map_err(|_| AuthError::Config("cannot use the development public key".into()))?;
        Ok(Self {
            issuer: issuer
                .filter(|i| !i.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_ISSUER.to_owned()),
            verify: VerifyKey {
                kid: Some(kid.clone()),
                alg: Algorithm::ES256,
                key: decoding,
            },
            kid,
            x,
            y,
            key_path,
            encoding,
        })
    }

    /// The `iss` of the tokens this issuer mints and accepts.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id: the RFC 7638 thumbprint of the public key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Where the private key is kept.
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Mints a signed ES256 token for the request.
    pub fn mint(&self, req: &MintRequest) -> Result<String, AuthError> {
        if req.tenant_id.trim().is_empty() || req.user_id.trim().is_empty() {
            return Err(AuthError::invalid(
                "a development token needs a tenant id and a user id",
            ));
        }
        let now = chrono::Utc::now().timestamp();
        let ttl = i64::try_from(req.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert("sub".into(), req.user_id.clone().into());
        claims.insert("tenant_id".into(), req.tenant_id.clone().into());
        claims.insert("scope".into(), req.scopes.join(" ").into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(ttl).into());
        claims.insert(
            "jti".into(),
            format!("{:032x}", rand::random::<u128>()).into(),
        );
        let optional = [
            ("partner_id", &req.partner_id),
            ("email", &req.email),
            ("name", &req.name),
        ];
        for (name, value) in optional {
            if let Some(value) = value {
                claims.insert(name.into(), value.clone().into());
            }
        }
        if !req.groups.is_empty() {
            claims.insert("groups".into(), req.groups.clone().into());
        }
        if let Some(act) = &req.act {
            claims.insert("act".into(), json!({ "sub": act }));
        }
        self.sign(&Value::Object(claims))
    }

    /// Signs arbitrary claims with the development key.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
            .map_err(|_| AuthError::Config("cannot sign with the development key".into()))
    }

    /// The public key as a JWKS document, for `/.well-known/jwks.json`-style publishing.
    pub fn jwks(&self) -> Value {
        json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "x": self.x,
                "y": self.y,
                "kid": self.kid,
                "alg": "ES256",
                "use": "sig",
            }]
        })
    }

    /// Verifies a token that must come from this issuer.
    pub(crate) fn verify(&self, token: &str, header: &Header) -> Result<Claims, AuthError> {
        if header.kid.as_deref().is_some_and(|kid| kid != self.kid) {
            return Err(AuthError::invalid("token is signed with an unknown key"));
        }
        let payload = token::decode(token, header.alg, [&self.verify])?;
        let issuer = payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(AuthError::WrongIssuer)?;
        if issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(AuthError::WrongIssuer);
        }
        Claims::from_payload(&payload, issuer)
    }
}

impl fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn read_key(path: &Path) -> Result<Option<SecretKey>, AuthError> {
    let pem = match fs::read_to_string(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuthError::Config(format!(
                "cannot read development key {}: {e}",
                path.display()
            )))
        }
    };
    warn_if_readable_by_others(path);
    SecretKey::from_pkcs8_pem(&pem).map(Some).map_err(|_| {
        AuthError::Config(format!(
            "development key {} is not a PKCS#8 P-256 private key",
            path.display()
        ))
    })
}

/// Creates a fresh key at `path` unless another process wins the race, in which case its key is used.
fn create_key(path: &Path) -> Result<SecretKey, AuthError> {
    let config = |what: &str, e: io::Error| {
        AuthError::Config(format!(
            "cannot {what} development key {}: {e}",
            path.display()
        ))
    };
    let secret = SecretKey::random(&mut rand::rngs::OsRng);
    let pem = secret
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|_| AuthError::Config("cannot encode the development key".into()))?;

    // Write the whole file under a private name, then publish it with a hard link,
    // which (unlike rename) fails instead of replacing a key another process just made.
    let tmp = path.with_file_name(format!(".{KEY_FILE}.{:016x}.tmp", rand::random::<u64>()));
    write_private(&tmp, pem.as_bytes()).map_err(|e| config("write", e))?;
    let published = match fs::hard_link(&tmp, path) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            // Filesystems without hard links: fall back to an atomic rename.
            fs::rename(&tmp, path)
        }
        other => other,
    };
    if let Err(e) = fs::remove_file(&tmp) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %tmp.display(), error = %e, "cannot remove temporary key file");
        }
    }
    match published {
        Ok(()) => {
            tracing::info!(path = %path.display(), "created development issuer key");
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            read_key(path)?.ok_or_else(|| AuthError::Config(format!("{} vanished", path.display())))
        }
        Err(e) => Err(config("store", e)),
    }
}

fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "development key is readable by other users");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_key_is_private_and_reused_by_the_next_load() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested/data");
        let first = DevIssuer::load_or_create(&data_dir, None).unwrap();
        let second = DevIssuer::load_or_create(&data_dir, None).unwrap();

        assert_eq!(first.key_path(), data_dir.join(KEY_FILE));
        assert_eq!(first.kid(), second.kid());
        assert_eq!(first.jwks(), second.jwks());
        assert_eq!(first.issuer(), DEFAULT_ISSUER);
        let leftovers: Vec<_> = fs::read_dir(&data_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [KEY_FILE]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(first.key_path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let pem = fs::read_to_string(first.key_path()).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }

    #[test]
    fn the_kid_is_the_rfc7638_thumbprint_of_the_published_key() {
        let dir = tempfile::tempdir().unwrap();
        let issuer =
            DevIssuer::load_or_create(dir.path(), Some("https://dev.local".into())).unwrap();
        assert_eq!(issuer.issuer(), "https://dev.local");
        let jwk = &issuer.jwks()["keys"][0];
        let canonical = serde_json::to_string(&json!({
            "crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"], "y": jwk["y"],
        }))
        .unwrap();
        let expected = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        assert_eq!(issuer.kid(), expected);
        assert_eq!(jwk["kid"], expected.as_str());
        assert_eq!(issuer.kid().len(), 43);
    }

    #[test]
    fn a_corrupt_key_file_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        let err = DevIssuer::load_or_create(dir.path(), None).unwrap_err();
        assert!(matches!(err, AuthError::Config(_)), "{err:?}");
        assert!(!err.to_string().contains("not a key"));
    }

    #[test]
    fn minting_needs_a_tenant_and_a_user() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = DevIssuer::load_or_create(dir.path(), None).unwrap();
        assert!(issuer.mint(&MintRequest::new("", "u")).is_err());
        assert!(issuer.mint(&MintRequest::new("t", " ")).is_err());
        assert!(issuer.mint(&MintRequest::new("t", "u")).is_ok());
    }

    #[test]
    fn debug_output_hides_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = DevIssuer::load_or_create(dir.path(), None).unwrap();
        let debug = format!("{issuer:?}");
        assert!(debug.contains(issuer.kid()));
        assert!(!debug.contains("PRIVATE"));
    }
}
