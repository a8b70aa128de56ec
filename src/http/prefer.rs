//! `Prefer: return=minimal` (RFC 7240) on writes.
//!
//! By default a write answers with the item as the read models show it, so
//! the answer waits until the projections have applied the write
//! (read-your-writes, `Services::caught_up_to`). A client that does not need
//! the item back (a sync client pushing a tree, a bulk import) can say so:
//! the write then answers as soon as its events are in the log, with the
//! item's id and the `X-ScaiDrive-Position` it reached, and
//! `Preference-Applied: return=minimal`. A later request that must see the
//! write sends that position back in `X-ScaiDrive-Position`; without it, it
//! may briefly find the read models a step behind (a 404 for the item just
//! created).
//!
//! Write endpoints that answer with more than one item, or run several
//! commands one after the other, ignore the preference (and say nothing in
//! `Preference-Applied`), as RFC 7240 allows. [`super::respond::Respond`]
//! answers accordingly; this module only reads the header.

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};

static PREFER: HeaderName = HeaderName::from_static("prefer");

/// Whether the request asked for a minimal answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prefer {
    pub minimal: bool,
}

impl Prefer {
    /// Reads the `Prefer` header(s): a comma-separated list of preferences,
    /// each `name[=value]` with optional `;` parameters; names are
    /// case-insensitive, values may be quoted. Anything else is ignored.
    pub fn parse<'a>(headers: impl IntoIterator<Item = &'a HeaderValue>) -> Self {
        let minimal = headers
            .into_iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|pref| pref.split(';').next())
            .filter_map(|pref| pref.split_once('='))
            .any(|(name, value)| {
                name.trim().eq_ignore_ascii_case("return")
                    && value
                        .trim()
                        .trim_matches('"')
                        .eq_ignore_ascii_case("minimal")
            });
        Self { minimal }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Prefer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Self::parse(parts.headers.get_all(&PREFER)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(values: &[&str]) -> bool {
        let values: Vec<HeaderValue> = values
            .iter()
            .map(|v| HeaderValue::from_str(v).expect("header"))
            .collect();
        Prefer::parse(&values).minimal
    }

    #[test]
    fn reads_return_minimal_wherever_it_stands() {
        assert!(parse(&["return=minimal"]));
        assert!(parse(&["Return = \"Minimal\""]));
        assert!(parse(&["respond-async, return=minimal; x=1"]));
        assert!(parse(&["wait=5", "return=minimal"]));
    }

    #[test]
    fn ignores_everything_else() {
        assert!(!parse(&[]));
        assert!(!parse(&["return=representation"]));
        assert!(!parse(&["minimal"]));
        assert!(!parse(&["return-minimal", "handling=lenient"]));
        assert!(!parse(&["x; return=minimal"]));
    }
}
