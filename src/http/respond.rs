//! The one way a write answers.
//!
//! Every handler that changes something ends with a [`Respond`] call, which:
//!
//! - tags the answer with `X-ScaiDrive-Position`, the log position the
//!   write reached (send it back to read your own writes);
//! - honours `Prefer: return=minimal` (see [`super::prefer`]) where the
//!   write is one append about one item: the answer is then `{"id": …}` at
//!   once, with `Preference-Applied: return=minimal`;
//! - otherwise waits (bounded, [`Services::caught_up_to`]) until the read
//!   models that apply the write include it, and reads the item back as its
//!   typed answer (a [`super::dto`] type), so create-then-GET never sees a
//!   stale row.
//!
//! Writes that run several commands one after the other, or answer several
//! items, use [`Respond::after`], which ignores the preference (RFC 7240
//! allows it) and waits for every read model.

use std::convert::Infallible;
use std::future::Future;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use scaidrive_domain::LogPosition;
use serde::Serialize;

use super::error::ApiResult;
use super::prefer::Prefer;
use super::state::Services;
use super::Positioned;
use crate::command::Committed;

static APPLIED: HeaderName = HeaderName::from_static("preference-applied");

/// The answer to a write; take it as a handler argument (it reads the
/// request's `Prefer` header) and finish the handler with one of its methods.
#[derive(Debug, Clone, Copy, Default)]
pub struct Respond {
    prefer: Prefer,
}

/// The body of a minimal answer.
#[derive(Serialize)]
struct IdOnly<'a> {
    id: &'a str,
}

impl Respond {
    /// The same responder for an endpoint that always answers in full: the
    /// preference is ignored (and not reported as applied).
    pub fn full(self) -> Self {
        Self {
            prefer: Prefer::default(),
        }
    }

    /// One item written by one append (`committed`): with `return=minimal`,
    /// its `id` at once; otherwise, once the read models show the write, the
    /// item as `read` reads it back.
    pub async fn item<T, F, Fut>(
        self,
        state: &Services,
        committed: &Committed,
        status: StatusCode,
        id: &str,
        read: F,
    ) -> ApiResult<Response>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        if self.prefer.minimal {
            return Ok(applied(Positioned(
                committed.position,
                (status, Json(IdOnly { id })),
            )));
        }
        state.caught_up_to(committed).await;
        Ok(Positioned(committed.position, (status, Json(read().await?))).into_response())
    }

    /// A write that answers no body (204): with `return=minimal`, without
    /// waiting for the read models.
    pub async fn empty(self, state: &Services, committed: &Committed) -> Response {
        let done = Positioned(committed.position, StatusCode::NO_CONTENT);
        if self.prefer.minimal {
            return applied(done);
        }
        state.caught_up_to(committed).await;
        done.into_response()
    }

    /// A write of several appends, the last of which reached `position`
    /// (`None`: nothing was appended): waits until every read model includes
    /// it, then answers what `read` reads back. The preference is ignored.
    pub async fn after<T, F, Fut>(
        self,
        state: &Services,
        position: Option<LogPosition>,
        status: StatusCode,
        read: F,
    ) -> ApiResult<Response>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        state.caught_up(position).await;
        Ok(Positioned(position, (status, Json(read().await?))).into_response())
    }
}

fn applied(answer: impl IntoResponse) -> Response {
    let mut resp = answer.into_response();
    resp.headers_mut()
        .insert(APPLIED.clone(), HeaderValue::from_static("return=minimal"));
    resp
}

impl<S: Send + Sync> FromRequestParts<S> for Respond {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        Ok(Self {
            prefer: Prefer::from_request_parts(parts, state).await?,
        })
    }
}
