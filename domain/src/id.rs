//! Prefixed, ULID-style identifiers: `shr_` + 26 Crockford base32 characters.
//!
//! Inside every id is a UUID (v7 when the service mints it). The domain never
//! generates ids itself: they arrive in commands, so `decide` stays pure.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Encodes 128 bits as 26 Crockford base32 characters (the ULID text form).
pub fn encode_body(value: u128) -> String {
    let mut out = [0u8; 26];
    let mut v = value;
    for slot in out.iter_mut().rev() {
        *slot = CROCKFORD[(v & 0x1f) as usize];
        v >>= 5;
    }
    out.iter().map(|&b| b as char).collect()
}

/// Decodes a 26-character Crockford body (case-insensitive; I/L read as 1, O as 0).
pub fn decode_body(body: &str) -> Option<u128> {
    if body.len() != 26 {
        return None;
    }
    let mut v: u128 = 0;
    for (i, c) in body.bytes().enumerate() {
        let d = match c.to_ascii_uppercase() {
            b'0' | b'O' => 0,
            b'1' | b'I' | b'L' => 1,
            c @ b'2'..=b'9' => c - b'0',
            c => CROCKFORD.iter().position(|&x| x == c)? as u8,
        };
        // The first character carries only 3 bits (26 * 5 = 130 > 128).
        if i == 0 && d > 7 {
            return None;
        }
        v = (v << 5) | u128::from(d);
    }
    Some(v)
}

/// Why a string is not an id of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} id: expected '{prefix}' followed by 26 base32 characters")]
pub struct IdParseError {
    pub kind: &'static str,
    pub prefix: &'static str,
}

macro_rules! define_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;
            pub const KIND: &'static str = $kind;

            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub const fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the canonical text form (`prefix` + 26-character body).
            pub fn parse(s: &str) -> Result<Self, IdParseError> {
                let err = IdParseError { kind: $kind, prefix: $prefix };
                let body = s.strip_prefix($prefix).ok_or(err.clone())?;
                decode_body(body).map(|v| Self(Uuid::from_u128(v))).ok_or(err)
            }

            /// Maps an identifier from an outside system (a token claim, a CLI
            /// argument) onto ours: a well-formed id is taken as is, anything
            /// else is hashed deterministically, so the same outside id always
            /// lands on the same resource.
            pub fn from_external(s: &str) -> Self {
                if let Ok(id) = Self::parse(s) {
                    return id;
                }
                let digest = Sha256::digest(format!("{}{}", $prefix, s).as_bytes());
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($prefix)?;
                f.write_str(&encode_body(self.0.as_u128()))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "description": concat!("A ", $kind, " id: '", $prefix, "' and 26 Crockford base32 characters."),
                    "pattern": concat!("^", $prefix, "[0-9A-HJKMNP-TV-Z]{26}$"),
                })
            }
        }
    };
}

define_id!(/// A partner (reseller) above tenants.
    PartnerId, "prt_", "partner");
define_id!(/// A tenant (customer organisation).
    TenantId, "tnt_", "tenant");
define_id!(/// A user inside a tenant.
    UserId, "usr_", "user");
define_id!(/// A group of users inside a tenant.
    GroupId, "grp_", "group");
define_id!(/// A share: the top of a folder tree.
    ShareId, "shr_", "share");
define_id!(/// A folder inside a share.
    FolderId, "fld_", "folder");
define_id!(/// A file inside a share.
    FileId, "fil_", "file");
define_id!(/// One version of a file.
    VersionId, "ver_", "version");
define_id!(/// One entry of the sync change feed.
    ChangeId, "chg_", "change");
define_id!(/// An external (public) link.
    LinkId, "lnk_", "link");
define_id!(/// A quota account.
    QuotaId, "qta_", "quota");
define_id!(/// An ACL entry.
    AceId, "ace_", "ACL entry");
define_id!(/// An event in the log.
    EventId, "evt_", "event");
define_id!(/// A share invitation.
    InvitationId, "inv_", "invitation");
define_id!(/// A resumable upload session.
    UploadId, "upl_", "upload session");
define_id!(/// A sync conflict.
    ConflictId, "cfl_", "conflict");
define_id!(/// An outbound webhook.
    WebhookId, "whk_", "webhook");
define_id!(/// A connector.
    ConnectorId, "cnn_", "connector");
define_id!(/// A legal hold.
    HoldId, "hld_", "legal hold");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_round_trips_every_bit_pattern_edge() {
        for v in [
            0u128,
            1,
            u128::MAX,
            0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        ] {
            let body = encode_body(v);
            assert_eq!(body.len(), 26);
            assert_eq!(decode_body(&body), Some(v));
        }
    }

    #[test]
    fn ids_print_with_prefix_and_parse_back() {
        let id = ShareId::from_uuid(Uuid::now_v7());
        let text = id.to_string();
        assert!(text.starts_with("shr_"));
        assert_eq!(text.len(), 30);
        assert_eq!(ShareId::parse(&text), Ok(id));
        assert_eq!(ShareId::parse(&text.to_lowercase()), Ok(id));
    }

    #[test]
    fn wrong_prefix_or_body_is_rejected() {
        let id = ShareId::from_uuid(Uuid::now_v7()).to_string();
        assert!(FolderId::parse(&id).is_err());
        assert!(ShareId::parse("shr_short").is_err());
        assert!(ShareId::parse("shr_ZZZZZZZZZZZZZZZZZZZZZZZZZZ").is_err());
    }

    #[test]
    fn external_ids_map_deterministically() {
        assert_eq!(
            TenantId::from_external("acme"),
            TenantId::from_external("acme")
        );
        assert_ne!(
            TenantId::from_external("acme"),
            TenantId::from_external("other")
        );
        let real = TenantId::from_uuid(Uuid::now_v7());
        assert_eq!(TenantId::from_external(&real.to_string()), real);
    }
}
