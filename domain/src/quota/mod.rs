//! Quota levels and the arithmetic shared by reservation and usage.

use serde::{Deserialize, Serialize};

/// The five levels a write is checked against, most specific first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum QuotaLevel {
    Share,
    User,
    Group,
    Tenant,
    Partner,
}

impl QuotaLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Share => "share",
            Self::User => "user",
            Self::Group => "group",
            Self::Tenant => "tenant",
            Self::Partner => "partner",
        }
    }

    /// Capitalised for messages: "Share quota exceeded".
    pub fn title(self) -> &'static str {
        match self {
            Self::Share => "Share",
            Self::User => "User",
            Self::Group => "Group",
            Self::Tenant => "Tenant",
            Self::Partner => "Partner",
        }
    }
}

impl std::str::FromStr for QuotaLevel {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "share" => Ok(Self::Share),
            "user" => Ok(Self::User),
            "group" => Ok(Self::Group),
            "tenant" => Ok(Self::Tenant),
            "partner" => Ok(Self::Partner),
            _ => Err(()),
        }
    }
}

pub mod account;

pub use account::{LimitType, QuotaAccount, QuotaCommand, QuotaEvent, QuotaLimit};

/// The quota account of one target: the deterministic id (and stream) of
/// `(level, target_id)`, so every writer finds the same account without a lookup.
pub fn account_id(level: QuotaLevel, target_id: &str) -> crate::id::QuotaId {
    crate::id::QuotaId::from_external(&format!("quota/{}/{target_id}", level.as_str()))
}
