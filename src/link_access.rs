//! What unlocks an external link: its password (an argon2id hash), the keyed
//! digest of an emailed one-time code, and the short-lived access token an
//! unlock hands out (`payload.HMAC-SHA256`, see ARCHITECTURE "External links").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::Rng;
use scaidrive_domain::id::LinkId;
use scaidrive_domain::link::{code_message, Link};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::secrets::SecretKey;

/// How long a link access token lives.
pub const ACCESS_TOKEN_SECS: i64 = 900;

/// Why a password could not be hashed or checked, or a token key not be had.
#[derive(Debug, thiserror::Error)]
pub enum LinkAccessError {
    #[error("link password hashing: {0}")]
    Password(String),
    #[error("link-secret: {0}")]
    Key(String),
    #[error("link-secret: {0}")]
    Io(#[from] std::io::Error),
}

// ------------------------------------------------------------- passwords

/// An argon2id PHC hash of a link password (on a blocking thread: argon2 is
/// slow on purpose).
pub async fn hash_password(password: String) -> Result<String, LinkAccessError> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| LinkAccessError::Password(e.to_string()))
    })
    .await
    .map_err(|e| LinkAccessError::Password(e.to_string()))?
}

/// Checks a password against a stored hash; argon2's comparison is
/// constant-time.
pub async fn verify_password(hash: String, password: String) -> Result<bool, LinkAccessError> {
    tokio::task::spawn_blocking(move || {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let parsed =
            PasswordHash::new(&hash).map_err(|e| LinkAccessError::Password(e.to_string()))?;
        Ok(argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| LinkAccessError::Password(e.to_string()))?
}

/// The keyed digest of an emailed one-time code, as the log keeps it.
pub fn email_code_digest(secrets: &SecretKey, link: LinkId, email: &str, code: &str) -> String {
    secrets.digest("link-email-code", &code_message(link, email, code))
}

// ------------------------------------------------------ link access tokens

static KEYS: LazyLock<parking_lot::Mutex<BTreeMap<PathBuf, [u8; 32]>>> =
    LazyLock::new(Default::default);

/// The HMAC key for link access tokens: from configuration (`secret`), or a
/// random key created once in `data_dir` (so restarts keep sessions valid).
pub fn signing_key(secret: Option<&str>, data_dir: &Path) -> Result<[u8; 32], LinkAccessError> {
    if let Some(s) = secret {
        return Ok(Sha256::digest(s.as_bytes()).into());
    }
    let dir = data_dir.to_path_buf();
    if let Some(k) = KEYS.lock().get(&dir) {
        return Ok(*k);
    }
    let path = dir.join("link-secret");
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => decode_key(&text)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(&dir)?;
            let mut key = [0u8; 32];
            OsRng.fill(&mut key);
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            match opts.open(&path) {
                Ok(mut f) => {
                    std::io::Write::write_all(&mut f, hex::encode(key).as_bytes())?;
                    key
                }
                // Another request created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    decode_key(&std::fs::read_to_string(&path)?)?
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(e) => return Err(e.into()),
    };
    KEYS.lock().insert(dir, key);
    Ok(key)
}

fn decode_key(text: &str) -> Result<[u8; 32], LinkAccessError> {
    let bytes = hex::decode(text.trim()).map_err(|e| LinkAccessError::Key(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| LinkAccessError::Key("it must hold 32 hex-encoded bytes".into()))
}

#[derive(Serialize, Deserialize)]
struct Claims {
    /// Link id.
    l: String,
    /// The link's token generation (regeneration ends sessions).
    g: u32,
    /// Verified email, if the link asked for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    e: Option<String>,
    /// Expiry, unix seconds.
    x: i64,
}

fn mac(key: &[u8; 32], payload: &str) -> Hmac<Sha256> {
    // HMAC takes a key of any length; 32 bytes never fails.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    m.update(b"scaidrive-link-access\n");
    m.update(payload.as_bytes());
    m
}

/// A token for `link` (and the email it verified), valid
/// [`ACCESS_TOKEN_SECS`] from `now`: `payload.signature`, both URL-safe base64.
pub fn mint(key: &[u8; 32], link: &Link, email: Option<String>, now: DateTime<Utc>) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = Claims {
        l: link.id.map(|i| i.to_string()).unwrap_or_default(),
        g: link.generation,
        e: email,
        x: now.timestamp() + ACCESS_TOKEN_SECS,
    };
    // A struct of strings and integers always serializes.
    let json = serde_json::to_vec(&claims).unwrap_or_default();
    let payload = b64.encode(json);
    let sig = mac(key, &payload).finalize().into_bytes();
    format!("{payload}.{}", b64.encode(sig))
}

/// The verified email (possibly none) of a token that is valid for this
/// link, its generation and `now`.
pub fn verify(
    key: &[u8; 32],
    link: &Link,
    raw: &str,
    now: DateTime<Utc>,
) -> Option<Option<String>> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let (payload, sig) = raw.split_once('.')?;
    let sig = b64.decode(sig).ok()?;
    // verify_slice compares in constant time.
    mac(key, payload).verify_slice(&sig).ok()?;
    let claims: Claims = serde_json::from_slice(&b64.decode(payload).ok()?).ok()?;
    let ok = Some(claims.l.as_str()) == link.id.map(|i| i.to_string()).as_deref()
        && claims.g == link.generation
        && claims.x > now.timestamp();
    ok.then_some(claims.e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaidrive_domain::id::LinkId;
    use uuid::Uuid;

    fn link(generation: u32) -> Link {
        let mut l = Link::default();
        l.id = Some(LinkId::from_uuid(Uuid::now_v7()));
        l.generation = generation;
        l
    }

    #[test]
    fn a_minted_token_verifies_for_its_link_and_generation_until_it_expires() {
        let key = [7u8; 32];
        let now = Utc::now();
        let l = link(1);
        let t = mint(&key, &l, Some("a@example.com".into()), now);
        assert_eq!(
            verify(&key, &l, &t, now),
            Some(Some("a@example.com".into()))
        );
        assert_eq!(verify(&key, &link(1), &t, now), None, "another link");
        let mut regenerated = l.clone();
        regenerated.generation = 2;
        assert_eq!(verify(&key, &regenerated, &t, now), None, "regenerated");
        let later = now + chrono::Duration::seconds(ACCESS_TOKEN_SECS);
        assert_eq!(verify(&key, &l, &t, later), None, "expired");
        assert_eq!(verify(&[8u8; 32], &l, &t, now), None, "another key");
    }
}
