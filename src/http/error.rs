//! The one place errors become HTTP responses (SPEC §2): `{"detail": "..."}`
//! with an optional stable `code`, or a 422 with an array of field errors.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use scaidrive_domain::id::UserId;
use scaidrive_domain::DomainError;
use serde::Serialize;
use serde_json::{json, Value};

use crate::auth::AuthError;
use crate::blob::BlobError;
use crate::command::{CommandContext, CommandError};
use crate::store::StoreError;

/// One failing field of a 422 answer, Pydantic-style.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    /// Pydantic's error type: `missing`, `extra_forbidden`, `enum`,
    /// `string_type`, `int_type`, `int_from_float`, `float_type`, `bool_type`,
    /// `list_type`, `dict_type`, `datetime_type`, `model_attributes_type`,
    /// `string_too_short`, `string_too_long`, `greater_than_equal`,
    /// `less_than_equal`, `value_error`, `json_invalid`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where: `body` (or `query`, `path`), then field names and list indexes.
    #[schema(value_type = Vec<LocStep>)]
    pub loc: Vec<Value>,
    /// A sentence for people, e.g. `Field required`, `Input should be a valid integer`.
    pub msg: String,
    /// The value that failed; for `missing`, the object that lacks the field.
    pub input: Value,
    /// More about the failure (`json_invalid`: `{"error": ...}`, the parser's words).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub ctx: Option<Value>,
}

/// The error body of every 4xx/5xx answer (SPEC §2). 429 adds
/// `retry_after` and `dimension`; a sync conflict adds `conflict_id`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub detail: Detail,
    /// Stable machine-readable code, e.g. `NAME_CONFLICT`, `RATE_LIMITED`.
    pub code: Option<String>,
}

/// A message, or (422) one entry per failing field.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Detail {
    Message(String),
    Fields(Vec<FieldError>),
}

/// One step of a field error's location (`body`, a field name, a list index).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum LocStep {
    Name(String),
    Index(u64),
}

impl FieldError {
    /// An entry at a dotted path below `body`; digits name a list index
    /// (`changes.3.name` → `["body", "changes", 3, "name"]`).
    pub fn body(kind: &'static str, path: &[&str], msg: impl Into<String>, input: Value) -> Self {
        let mut loc = vec![Value::from("body")];
        loc.extend(path.iter().map(|p| match p.parse::<u64>() {
            Ok(i) => Value::from(i),
            Err(_) => Value::from(*p),
        }));
        Self {
            kind,
            loc,
            msg: msg.into(),
            input,
            ctx: None,
        }
    }
}

/// A permission refused on a resource the caller can see (403), as the
/// access log records it. The response carries it as an extension and the
/// request middleware (`http::around_request`) records it, with the method
/// and route, once for every handler.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// The caller's tenant, actor and request.
    pub ctx: CommandContext,
    pub user_id: UserId,
    /// `share`, `folder` or `file`.
    pub resource_type: &'static str,
    pub resource_id: String,
    /// The permission lacked (`DELETE`, ...), or `OWNER` for an owner-only
    /// action.
    pub permission: &'static str,
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    /// 403 for a permission lacked on a visible resource (recorded in the
    /// access log).
    #[error("{detail}")]
    Denied {
        detail: String,
        refusal: Box<Refusal>,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("{0}")]
    BadGateway(String),
    #[error("{0}")]
    GatewayTimeout(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{} rate limit exceeded", .dimension.title())]
    RateLimited {
        dimension: crate::ratelimit::Dimension,
        retry_after: u64,
        limit: u64,
    },
    #[error("{0}")]
    NotImplemented(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        ApiError::Internal(err.to_string())
    }

    pub fn validation(err: FieldError) -> Self {
        ApiError::Validation(vec![err])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) | ApiError::Denied { .. } => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Domain(d) => domain_status(d),
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::Domain(d) => Some(d.code()),
            ApiError::Unauthorized(_) => Some("UNAUTHORIZED"),
            ApiError::Forbidden(_) | ApiError::Denied { .. } => Some("FORBIDDEN"),
            ApiError::NotFound(_) => Some("NOT_FOUND"),
            ApiError::PayloadTooLarge(_) => Some("PAYLOAD_TOO_LARGE"),
            ApiError::BadGateway(_) => Some("UPSTREAM_UNAVAILABLE"),
            ApiError::GatewayTimeout(_) => Some("UPSTREAM_TIMEOUT"),
            ApiError::Unavailable(_) => Some("SERVICE_UNAVAILABLE"),
            _ => None,
        }
    }
}

/// The status each domain condition answers with (SPEC §2).
fn domain_status(e: &DomainError) -> StatusCode {
    match e {
        DomainError::NotFound(_) => StatusCode::NOT_FOUND,
        DomainError::NameConflict(_)
        | DomainError::VersionMismatch { .. }
        | DomainError::AlreadyExists(_)
        | DomainError::InvalidTransition(_) => StatusCode::CONFLICT,
        DomainError::Gone(_) => StatusCode::GONE,
        DomainError::Forbidden(_) => StatusCode::FORBIDDEN,
        DomainError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        DomainError::LimitReached(_) => StatusCode::TOO_MANY_REQUESTS,
        DomainError::QuotaExceeded(_) => StatusCode::INSUFFICIENT_STORAGE,
        DomainError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        DomainError::ChecksumMismatch(_) | DomainError::BadRequest(_) => StatusCode::BAD_REQUEST,
        DomainError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            ApiError::Validation(errors) => json!({ "detail": errors }),
            ApiError::Domain(DomainError::Invalid { field, message }) => {
                let path: Vec<&str> = field.split('.').collect();
                json!({ "detail": [FieldError::body("value_error", &path, message.clone(), Value::Null)] })
            }
            ApiError::RateLimited {
                dimension,
                retry_after,
                ..
            } => json!({
                "detail": self.to_string(),
                "code": "RATE_LIMITED",
                "retry_after": retry_after,
                "dimension": dimension.as_str(),
            }),
            ApiError::Internal(msg) => {
                tracing::error!(error = %msg, "request failed");
                json!({ "detail": "Internal server error" })
            }
            other => {
                let mut body = json!({ "detail": other.to_string() });
                if let Some(code) = other.code() {
                    body["code"] = Value::from(code);
                }
                body
            }
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited {
            retry_after, limit, ..
        } = &self
        {
            let h = resp.headers_mut();
            h.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
            h.insert("x-ratelimit-limit", HeaderValue::from(*limit));
            h.insert("x-ratelimit-remaining", HeaderValue::from(0u64));
            let reset = chrono::Utc::now().timestamp().max(0) as u64 + retry_after;
            h.insert("x-ratelimit-reset", HeaderValue::from(reset));
        }
        if let ApiError::Denied { refusal, .. } = self {
            resp.extensions_mut().insert(*refusal);
            return resp;
        }
        if matches!(self, ApiError::Unauthorized(_)) {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                ApiError::Unavailable(format!("database unavailable: {m}"))
            }
            // A conflict that survived every retry: the resource is too hot.
            StoreError::Conflict { .. } => ApiError::Domain(DomainError::InvalidTransition(
                "concurrent modification, try again".into(),
            )),
            StoreError::ClaimTaken { key, .. } => ApiError::Domain(DomainError::NameConflict(key)),
            other => ApiError::internal(other),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => ApiError::Domain(d),
            CommandError::Store(s) => s.into(),
            corrupt @ CommandError::Corrupt { .. } => ApiError::internal(corrupt),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::from_sqlx(e).into()
    }
}

impl From<BlobError> for ApiError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Timeout(_) => ApiError::GatewayTimeout(e.to_string()),
            // A chunk an event references is gone: the store lost data or is
            // the wrong bucket; either way the upstream is at fault.
            BlobError::NotFound(_) | BlobError::Unavailable(_) | BlobError::Config(_) => {
                ApiError::BadGateway(e.to_string())
            }
        }
    }
}

impl ApiError {
    /// A failed content stream, told apart by what failed: the blob store
    /// (502/504) or anything else (500).
    pub fn from_content_io(e: std::io::Error) -> Self {
        match e.into_inner() {
            Some(inner) => match inner.downcast::<BlobError>() {
                Ok(blob) => (*blob).into(),
                Err(other) => ApiError::internal(other),
            },
            None => ApiError::internal("content stream failed"),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Upstream(m) => {
                ApiError::BadGateway(format!("identity provider unreachable: {m}"))
            }
            AuthError::UpstreamTimeout => {
                ApiError::GatewayTimeout("identity provider timed out".into())
            }
            AuthError::Config(m) => ApiError::internal(m),
            other => ApiError::Unauthorized(other.to_string()),
        }
    }
}

/// Shorthand for handler results.
pub type ApiResult<T> = Result<T, ApiError>;
