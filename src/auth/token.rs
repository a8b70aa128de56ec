//! Signature and time checks shared by the ScaiKey and development modes.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::error::AuthError;

/// Larger tokens are refused before any parsing.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
pub(crate) const LEEWAY_SECS: u64 = 30;

/// A public key allowed to verify tokens, with the one algorithm it is used with.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
}

/// The token's header, if the token is well-formed and uses an accepted algorithm.
pub(crate) fn header(token: &str) -> Result<Header, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::invalid("token is too large"));
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| AuthError::invalid("malformed token"))?;
    match header.alg {
        Algorithm::RS256 | Algorithm::ES256 => Ok(header),
        other => Err(AuthError::Invalid(format!(
            "signing algorithm {other:?} is not accepted"
        ))),
    }
}

/// Checks the signature against the candidate keys, then `exp`/`nbf`; returns the payload.
pub(crate) fn decode<'a>(
    token: &str,
    alg: Algorithm,
    candidates: impl IntoIterator<Item = &'a VerifyKey>,
) -> Result<Map<String, Value>, AuthError> {
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_aud = false;
    validation.validate_nbf = true;
    validation.set_required_spec_claims(&["exp"]);

    let mut tried = false;
    for key in candidates.into_iter().filter(|k| k.alg == alg) {
        tried = true;
        match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
            Ok(data) => return Ok(data.claims),
            // Several keys may share no kid; only a bad signature means "try the next one".
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
            Err(e) => return Err(from_jwt(e.kind())),
        }
    }
    if tried {
        Err(AuthError::invalid("bad signature"))
    } else {
        Err(AuthError::invalid(
            "token algorithm does not match its signing key",
        ))
    }
}

fn from_jwt(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::invalid("bad signature"),
        ErrorKind::ImmatureSignature => AuthError::invalid("token is not valid yet"),
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Invalid(format!("token has no {claim} claim"))
        }
        ErrorKind::InvalidAlgorithm => {
            AuthError::invalid("token algorithm does not match its signing key")
        }
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_) => AuthError::invalid("malformed token"),
        _ => AuthError::invalid("token could not be verified"),
    }
}
