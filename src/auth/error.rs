//! The one error type of the auth layer.

/// Why a request could not be authenticated, or why the auth layer could not start.
///
/// Mapped to HTTP elsewhere: the first four are 401, `Upstream` 502,
/// `UpstreamTimeout` 504. Messages are for people and never carry key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No bearer token was presented.
    #[error("missing bearer token")]
    Missing,
    /// The token is malformed, badly signed or lacks a required claim.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The token's `exp` has passed.
    #[error("token has expired")]
    Expired,
    /// The token's `iss` is not one this server trusts.
    #[error("token issuer is not trusted")]
    WrongIssuer,
    /// ScaiKey's key set could not be fetched or made no sense.
    #[error("identity provider unavailable: {0}")]
    Upstream(String),
    /// ScaiKey did not answer in time.
    #[error("identity provider timed out")]
    UpstreamTimeout,
    /// The auth configuration or the development key on disk is unusable.
    #[error("auth configuration error: {0}")]
    Config(String),
}

impl AuthError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid(reason.into())
    }
}
