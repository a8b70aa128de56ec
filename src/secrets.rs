//! The server key that keeps secrets out of the log: values the service must
//! read back are sealed with ChaCha20-Poly1305 (`sealed:v1:` + base64 of
//! nonce ‖ ciphertext), values it only compares are HMAC-SHA256 digests
//! (`hmac:v1:` + hex). The key comes from `SCAIDRIVE_SECRET_KEY` (base64 of
//! 32 bytes) or, by default, from a key file created once in the data
//! directory (mode 0600). Losing the key makes sealed values unreadable:
//! back it up with the database.

use std::path::Path;

use base64::Engine;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
// The RustCrypto 0.10 crates take keys and nonces as generic-array 0.14,
// which its last release marks deprecated.
#[allow(deprecated)]
use hmac::digest::generic_array::GenericArray;
use hmac::{Hmac, Mac};
use rand::RngCore;
use scaidrive_domain::secret::{MAC_PREFIX, SEALED_PREFIX};
use sha2::{Digest, Sha256};

/// Name of the default key file in the data directory.
pub const KEY_FILE: &str = "secret-key";

const NONCE_LEN: usize = 12;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// Why a key could not be loaded or a value not opened.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretError {
    #[error("SCAIDRIVE_SECRET_KEY must be the base64 encoding of exactly 32 bytes")]
    BadKey,
    #[error("the key file {path} does not hold the base64 encoding of 32 bytes")]
    BadKeyFile { path: String },
    #[error("cannot read or create the key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("a sealed value is malformed or was sealed under another key")]
    Unsealable,
}

/// The server key, split into an AEAD key and a MAC key.
#[derive(Clone)]
pub struct SecretKey {
    aead: ChaCha20Poly1305,
    mac_key: [u8; 64],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

impl SecretKey {
    /// A key from its 32 bytes; sealing and digests get keys of their own.
    #[allow(deprecated)]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let derive = |label: &[u8]| -> [u8; 32] {
            let mut h = Sha256::new();
            h.update(label);
            h.update(bytes);
            h.finalize().into()
        };
        let mut mac_key = [0u8; 64];
        mac_key[..32].copy_from_slice(&derive(b"scaidrive-secret-mac-1"));
        mac_key[32..].copy_from_slice(&derive(b"scaidrive-secret-mac-2"));
        let seal_key = derive(b"scaidrive-secret-seal");
        Self {
            aead: ChaCha20Poly1305::new(GenericArray::from_slice(&seal_key)),
            mac_key,
        }
    }

    /// A key from its base64 form (standard alphabet, padding optional).
    pub fn from_base64(text: &str) -> Result<Self, SecretError> {
        decode(text)
            .map(Self::from_bytes)
            .ok_or(SecretError::BadKey)
    }

    /// The configured key, or the data directory's key file (created with a
    /// random key on first start).
    pub fn load(configured: Option<&str>, data_dir: &Path) -> Result<Self, SecretError> {
        if let Some(text) = configured {
            return Self::from_base64(text);
        }
        Ok(Self::from_bytes(key_file(&data_dir.join(KEY_FILE))?))
    }

    /// `sealed:v1:` + base64(nonce ‖ ciphertext) under a fresh random nonce.
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
        // Encryption fails only for inputs beyond 256 GiB.
        let ct = self
            .aead
            .encrypt(&nonce, plaintext.as_bytes())
            .unwrap_or_default();
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        format!("{SEALED_PREFIX}{}", B64.encode(out))
    }

    /// The plaintext of a stored value. A value without the sealed prefix was
    /// written before sealing existed and is its own plaintext.
    #[allow(deprecated)]
    pub fn open(&self, stored: &str) -> Result<String, SecretError> {
        let Some(body) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_owned());
        };
        let raw = B64
            .decode(body.trim_end_matches('='))
            .map_err(|_| SecretError::Unsealable)?;
        if raw.len() < NONCE_LEN {
            return Err(SecretError::Unsealable);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let pt = self
            .aead
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| SecretError::Unsealable)?;
        String::from_utf8(pt).map_err(|_| SecretError::Unsealable)
    }

    /// Seals a value unless it already is (legacy plaintext carried forward
    /// into a new event is sealed on the way).
    pub fn reseal(&self, stored: &str) -> String {
        if stored.starts_with(SEALED_PREFIX) {
            stored.to_owned()
        } else {
            self.seal(stored)
        }
    }

    /// `hmac:v1:` + hex HMAC-SHA256 of `message` under the MAC key, with the
    /// purpose bound in so digests of one use never match another.
    #[allow(deprecated)]
    pub fn digest(&self, purpose: &str, message: &str) -> String {
        // A 64-byte key is exactly SHA-256's block: no padding or hashing.
        let mut m = <Hmac<Sha256> as KeyInit>::new(GenericArray::from_slice(&self.mac_key));
        m.update(purpose.as_bytes());
        m.update(b"\n");
        m.update(message.as_bytes());
        format!("{MAC_PREFIX}{}", hex::encode(m.finalize().into_bytes()))
    }
}

/// Reads the base64 key held in `path`, or creates the file with a random
/// key (mode 0600) when there is none. The key is written whole under a
/// private name, then linked into place: processes starting together never
/// read a half-written key, and the first link wins.
pub fn key_file(path: &Path) -> Result<[u8; 32], SecretError> {
    let shown = path.display().to_string();
    let io = |e: std::io::Error| SecretError::KeyFile {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let parse = |text: &str| {
        decode(text).ok_or_else(|| SecretError::BadKeyFile {
            path: shown.clone(),
        })
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    let mut nonce = [0u8; 8];
    OsRng.fill_bytes(&mut nonce);
    let tmp = path.with_extension(format!("{}.tmp", hex::encode(nonce)));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let written = opts.open(&tmp).and_then(|mut f| {
        std::io::Write::write_all(&mut f, B64.encode(key).as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(key),
        // Another process linked its key first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            parse(&std::fs::read_to_string(path).map_err(io)?)
        }
        Err(e) => Err(io(e)),
    }
}

/// A 32-byte key from base64 (standard alphabet, padding optional).
pub fn decode(text: &str) -> Option<[u8; 32]> {
    let bytes = B64.decode(text.trim().trim_end_matches('=')).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretKey {
        SecretKey::from_bytes([7u8; 32])
    }

    #[test]
    fn sealed_values_open_and_hide_their_plaintext() {
        let k = key();
        let sealed = k.seal("a-link-token");
        assert!(sealed.starts_with(SEALED_PREFIX));
        assert!(!sealed.contains("a-link-token"));
        assert_ne!(sealed, k.seal("a-link-token"), "fresh nonce every time");
        assert_eq!(k.open(&sealed).unwrap(), "a-link-token");
        assert_eq!(k.reseal(&sealed), sealed);
    }

    #[test]
    fn legacy_plaintext_opens_as_itself() {
        assert_eq!(key().open("old-token").unwrap(), "old-token");
    }

    #[test]
    fn another_key_or_a_tampered_value_does_not_open() {
        let sealed = key().seal("x");
        let other = SecretKey::from_bytes([8u8; 32]);
        assert!(other.open(&sealed).is_err());
        let mut tampered = sealed.clone();
        tampered.push('A');
        assert!(key().open(&tampered).is_err());
        assert!(key().open("sealed:v1:%%").is_err());
    }

    #[test]
    fn digests_are_keyed_and_bound_to_their_purpose() {
        let k = key();
        assert_eq!(k.digest("p", "m"), k.digest("p", "m"));
        assert_ne!(k.digest("p", "m"), k.digest("q", "m"));
        assert_ne!(
            k.digest("p", "m"),
            SecretKey::from_bytes([8u8; 32]).digest("p", "m")
        );
    }

    #[test]
    fn keys_parse_from_base64_of_32_bytes_only() {
        let text = base64::engine::general_purpose::STANDARD.encode([1u8; 32]);
        assert!(SecretKey::from_base64(&text).is_ok());
        assert!(SecretKey::from_base64("c2hvcnQ=").is_err());
        assert!(SecretKey::from_base64("not base64!").is_err());
    }

    #[test]
    fn processes_starting_together_share_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<SecretKey> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| SecretKey::load(None, dir.path()).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sealed = keys[0].seal("shared");
        for k in &keys {
            assert_eq!(k.open(&sealed).unwrap(), "shared");
        }
        let files = std::fs::read_dir(dir.path()).unwrap().count();
        assert_eq!(files, 1, "no temporary key file is left behind");
    }

    #[test]
    fn the_default_key_file_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = SecretKey::load(None, dir.path()).unwrap();
        let b = SecretKey::load(None, dir.path()).unwrap();
        assert_eq!(b.open(&a.seal("v")).unwrap(), "v");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
