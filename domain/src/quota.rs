//! Quota levels and the arithmetic shared by reservation and usage.

use serde::{Deserialize, Serialize};

/// The five levels a write is checked against, most specific first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
