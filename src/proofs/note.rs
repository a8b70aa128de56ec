//! Checkpoints as C2SP signed notes, their Ed25519 keys and verifier keys,
//! and witness cosignatures (C2SP `tlog-checkpoint`, `signed-note`,
//! `tlog-cosignature`). Pure: shared by the server, the offline verifier and
//! the witness.
//!
//! - A checkpoint body is three lines: origin, tree size (decimal), base64
//!   root hash, each ending in a newline.
//! - A note is the body, a blank line, then signature lines
//!   `— <key name> <base64(4-byte key id ‖ signature)>`.
//! - A key id is the first 4 bytes of SHA-256(key name ‖ `\n` ‖ type ‖
//!   public key), type 0x01 for an Ed25519 note signature and 0x04 for an
//!   Ed25519 cosignature (whose signature is `timestamp (8 bytes, big
//!   endian) ‖ Ed25519 signature` over `cosignature/v1\ntime <t>\n` + body).
//! - A verifier key is `<name>+<8 hex key id>+<base64(type ‖ public key)>`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use scaidrive_domain::merkle::Hash;
use sha2::{Digest, Sha256};

/// The em dash that opens a signature line.
const DASH: &str = "\u{2014} ";
const ED25519: u8 = 0x01;
const COSIGNATURE: u8 = 0x04;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed verifier key: {0}")]
    BadKey(&'static str),
    #[error("malformed note: {0}")]
    Malformed(&'static str),
    #[error("the note carries no valid signature by {0}")]
    Unsigned(String),
    #[error("a key name must be non-empty and hold no space or '+'")]
    BadName,
}

/// A tree head: what a checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The signed text: origin, size and base64 root, one per line.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    fn parse_body(body: &str) -> Result<Self, NoteError> {
        let mut lines = body.split('\n');
        let origin = lines.next().filter(|l| !l.is_empty());
        let size = lines.next().and_then(|l| {
            // Decimal, no sign, no leading zeros (C2SP).
            if l.is_empty()
                || (l.len() > 1 && l.starts_with('0'))
                || !l.bytes().all(|b| b.is_ascii_digit())
            {
                None
            } else {
                l.parse::<u64>().ok()
            }
        });
        let root = lines
            .next()
            .and_then(|l| B64.decode(l).ok())
            .and_then(|b| <Hash>::try_from(b.as_slice()).ok());
        match (origin, size, root) {
            (Some(o), Some(size), Some(root)) => Ok(Checkpoint {
                origin: o.to_owned(),
                size,
                root,
            }),
            _ => Err(NoteError::Malformed(
                "the body is not origin, tree size and base64 root hash",
            )),
        }
    }
}

fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.contains([' ', '+', '\n', '\t']) {
        Err(NoteError::BadName)
    } else {
        Ok(())
    }
}

fn key_id(name: &str, kind: u8, key: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([kind]);
    h.update(key.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

/// A named Ed25519 key: the log's checkpoint key or a witness's key.
pub struct NamedKey {
    name: String,
    key: SigningKey,
}

impl std::fmt::Debug for NamedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NamedKey({})", self.name)
    }
}

impl NamedKey {
    pub fn new(name: &str, seed: [u8; 32]) -> Result<Self, NoteError> {
        check_name(name)?;
        Ok(NamedKey {
            name: name.to_owned(),
            key: SigningKey::from_bytes(&seed),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key of checkpoints this key signs.
    pub fn verifier(&self) -> Verifier {
        Verifier::new(&self.name, ED25519, self.key.verifying_key())
    }

    /// The verifier key of cosignatures this key makes.
    pub fn cosigner(&self) -> Verifier {
        Verifier::new(&self.name, COSIGNATURE, self.key.verifying_key())
    }

    /// The checkpoint as a signed note.
    pub fn sign(&self, cp: &Checkpoint) -> String {
        let body = cp.body();
        let sig = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.name, ED25519, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n{DASH}{} {}\n", self.name, B64.encode(blob))
    }

    /// A cosignature line (with its newline) over the checkpoint at `time`
    /// (seconds since the epoch).
    pub fn cosign(&self, cp: &Checkpoint, time: u64) -> String {
        let msg = cosigned_message(cp, time);
        let sig = self.key.sign(msg.as_bytes());
        let mut blob = key_id(&self.name, COSIGNATURE, &self.key.verifying_key()).to_vec();
        blob.extend_from_slice(&time.to_be_bytes());
        blob.extend_from_slice(&sig.to_bytes());
        format!("{DASH}{} {}\n", self.name, B64.encode(blob))
    }
}

fn cosigned_message(cp: &Checkpoint, time: u64) -> String {
    format!("cosignature/v1\ntime {time}\n{}", cp.body())
}

/// A public verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    kind: u8,
    id: [u8; 4],
    key: VerifyingKey,
}

impl Verifier {
    fn new(name: &str, kind: u8, key: VerifyingKey) -> Self {
        Verifier {
            name: name.to_owned(),
            kind,
            id: key_id(name, kind, &key),
            key,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Parses `<name>+<hex key id>+<base64(type ‖ key)>`.
    pub fn parse(text: &str) -> Result<Self, NoteError> {
        let text = text.trim();
        let mut parts = text.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(NoteError::BadKey("expected name+keyid+key"));
        };
        check_name(name).map_err(|_| NoteError::BadKey("bad key name"))?;
        let id = hex::decode(id)
            .ok()
            .and_then(|b| <[u8; 4]>::try_from(b.as_slice()).ok())
            .ok_or(NoteError::BadKey("the key id is not 8 hex digits"))?;
        let raw = B64
            .decode(key)
            .map_err(|_| NoteError::BadKey("the key is not base64"))?;
        let (kind, pk) = raw.split_first().ok_or(NoteError::BadKey("empty key"))?;
        if *kind != ED25519 && *kind != COSIGNATURE {
            return Err(NoteError::BadKey("not an Ed25519 key"));
        }
        let pk = <[u8; 32]>::try_from(pk)
            .ok()
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or(NoteError::BadKey("not a 32-byte Ed25519 public key"))?;
        let v = Verifier::new(name, *kind, pk);
        if v.id != id {
            return Err(NoteError::BadKey("the key id does not match the key"));
        }
        Ok(v)
    }

    /// The C2SP text form.
    pub fn text(&self) -> String {
        let mut raw = vec![self.kind];
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(raw))
    }

    /// Checks a signed note: it must carry a valid signature line by this
    /// (note-signing) key; answers the checkpoint it states. The origin must
    /// be the key's name.
    pub fn open(&self, note: &str) -> Result<Checkpoint, NoteError> {
        let (body, sigs) = split_note(note)?;
        let cp = Checkpoint::parse_body(body)?;
        for (name, blob) in signature_lines(sigs)? {
            if name != self.name || blob.len() != 68 || blob[..4] != self.id {
                continue;
            }
            let Ok(sig) = Signature::from_slice(&blob[4..]) else {
                continue;
            };
            if self.key.verify(body.as_bytes(), &sig).is_ok() {
                return Ok(cp);
            }
        }
        Err(NoteError::Unsigned(self.name.clone()))
    }

    /// Checks that `note` carries a valid cosignature by this (cosigning)
    /// key; answers its timestamp.
    pub fn cosigned(&self, note: &str) -> Result<u64, NoteError> {
        let (body, sigs) = split_note(note)?;
        let cp = Checkpoint::parse_body(body)?;
        for (name, blob) in signature_lines(sigs)? {
            if name != self.name || blob.len() != 76 || blob[..4] != self.id {
                continue;
            }
            let mut t = [0u8; 8];
            t.copy_from_slice(&blob[4..12]);
            let time = u64::from_be_bytes(t);
            let Ok(sig) = Signature::from_slice(&blob[12..]) else {
                continue;
            };
            if self
                .key
                .verify(cosigned_message(&cp, time).as_bytes(), &sig)
                .is_ok()
            {
                return Ok(time);
            }
        }
        Err(NoteError::Unsigned(self.name.clone()))
    }
}

fn split_note(note: &str) -> Result<(&str, &str), NoteError> {
    let at = note
        .find("\n\n")
        .ok_or(NoteError::Malformed("no blank line after the body"))?;
    Ok((&note[..=at], &note[at + 2..]))
}

fn signature_lines(sigs: &str) -> Result<Vec<(&str, Vec<u8>)>, NoteError> {
    let mut out = Vec::new();
    for line in sigs.split('\n').filter(|l| !l.is_empty()) {
        let rest = line.strip_prefix(DASH).ok_or(NoteError::Malformed(
            "a signature line must start with an em dash",
        ))?;
        let (name, b64) = rest
            .split_once(' ')
            .ok_or(NoteError::Malformed("a signature line is name and base64"))?;
        let blob = B64
            .decode(b64)
            .map_err(|_| NoteError::Malformed("a signature is not base64"))?;
        out.push((name, blob));
    }
    if out.is_empty() {
        return Err(NoteError::Malformed("no signature line"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cp(size: u64) -> Checkpoint {
        Checkpoint {
            origin: "drive.example.com/log".into(),
            size,
            root: [7; 32],
        }
    }

    #[test]
    fn a_signed_note_opens_with_its_verifier_key_only() {
        let k = NamedKey::new("drive.example.com/log", [1; 32]).unwrap();
        let note = k.sign(&cp(42));
        assert!(note.starts_with("drive.example.com/log\n42\nBwcH"));
        assert!(note.contains("\n\n\u{2014} drive.example.com/log "));
        let text = k.verifier().text();
        assert!(text.starts_with("drive.example.com/log+"));
        let v = Verifier::parse(&text).unwrap();
        assert_eq!(v.open(&note).unwrap(), cp(42));
        let other = NamedKey::new("drive.example.com/log", [2; 32]).unwrap();
        assert!(other.verifier().open(&note).is_err());
        let forged = note.replace("\n42\n", "\n43\n");
        assert!(v.open(&forged).is_err());
        assert!(Verifier::parse("a+00000000+AQ==").is_err());
        assert!(Verifier::parse(&text.replace('+', "-")).is_err());
    }

    #[test]
    fn cosignatures_verify_and_bind_the_checkpoint() {
        let log = NamedKey::new("log.example/x", [3; 32]).unwrap();
        let w = NamedKey::new("witness.example/w1", [4; 32]).unwrap();
        let note = log.sign(&cp(9));
        let cosigned = format!("{note}{}", w.cosign(&cp(9), 1_700_000_000));
        let wv = Verifier::parse(&w.cosigner().text()).unwrap();
        assert_eq!(wv.cosigned(&cosigned), Ok(1_700_000_000));
        assert_eq!(log.verifier().open(&cosigned).unwrap().size, 9);
        // A cosignature of another checkpoint does not carry over.
        let moved = format!("{}{}", log.sign(&cp(10)), w.cosign(&cp(9), 1));
        assert!(wv.cosigned(&moved).is_err());
        // The note key is not the cosigning key.
        assert!(w.verifier().cosigned(&cosigned).is_err());
    }
}
