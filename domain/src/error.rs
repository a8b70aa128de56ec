//! The one error type every `decide` returns. Variants name the condition; the
//! HTTP layer maps each to a status in exactly one place.

use crate::quota::QuotaLevel;

/// A command was refused by the rules of the domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The resource does not exist (or must look as if it did not).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A live sibling already has this name (case-insensitive, NFC).
    #[error("an item named '{0}' already exists here")]
    NameConflict(String),
    /// The client based its change on a version that is no longer current.
    #[error("version mismatch: expected {expected}, current is {actual}")]
    VersionMismatch { expected: String, actual: String },
    /// The resource already exists (a second create of the same thing).
    #[error("{0}")]
    AlreadyExists(String),
    /// A state machine refused a transition into the state it is already in.
    #[error("{0}")]
    InvalidTransition(String),
    /// The resource is soft-deleted, expired, revoked or disabled.
    #[error("{0}")]
    Gone(String),
    /// The caller may see the resource but may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// A credential for the resource (a link password) is missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// A counter cap or attempt limit is reached.
    #[error("{0}")]
    LimitReached(String),
    /// Storing the bytes would exceed a quota at the named level.
    #[error("{} quota exceeded", .0.title())]
    QuotaExceeded(QuotaLevel),
    /// The content is larger than the tenant allows for one file.
    #[error("file size {size} exceeds the limit of {limit} bytes")]
    PayloadTooLarge { size: u64, limit: u64 },
    /// Content did not match the checksum the client announced.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// A field value is well-formed JSON but not acceptable.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A request that is malformed beyond one field.
    #[error("{0}")]
    BadRequest(String),
}

impl DomainError {
    /// A stable machine-readable code sent next to `detail`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NOT_FOUND",
            Self::NameConflict(_) => "NAME_CONFLICT",
            Self::VersionMismatch { .. } => "VERSION_CONFLICT",
            Self::AlreadyExists(_) => "ALREADY_EXISTS",
            Self::InvalidTransition(_) => "INVALID_STATE",
            Self::Gone(_) => "GONE",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::LimitReached(_) => "LIMIT_REACHED",
            Self::QuotaExceeded(_) => "QUOTA_EXCEEDED",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::ChecksumMismatch(_) => "CHECKSUM_MISMATCH",
            Self::Invalid { .. } => "VALIDATION_ERROR",
            Self::BadRequest(_) => "BAD_REQUEST",
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
