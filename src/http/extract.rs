//! Request extractors that fail the way SPEC §2 says: JSON bodies → 422 with a
//! Pydantic-style array, path and query values → 400, always `{"detail"}`.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{ApiError, FieldError};

/// Checks a parsed body beyond what serde can say.
pub trait Validate {
    /// Fields that must be present; all missing ones are reported together.
    const REQUIRED: &'static [&'static str] = &[];

    fn validate(&self, _v: &mut Violations) {}
}

/// Collected field failures of one body.
#[derive(Debug, Default)]
pub struct Violations(pub Vec<FieldError>);

impl Violations {
    pub fn push(&mut self, kind: &'static str, field: &str, msg: impl Into<String>, input: Value) {
        let path: Vec<&str> = field.split('.').collect();
        self.0.push(FieldError::body(kind, &path, msg, input));
    }

    /// Checks a string's length in characters.
    pub fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        if n < min {
            let msg = if min == 1 {
                "String should have at least 1 character".to_owned()
            } else {
                format!("String should have at least {min} characters")
            };
            self.push("string_too_short", field, msg, Value::from(value));
        } else if n > max {
            self.push(
                "string_too_long",
                field,
                format!("String should have at most {max} characters"),
                Value::from(value),
            );
        }
    }

    /// Checks an integer against an inclusive range.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min {
            self.push(
                "greater_than_equal",
                field,
                format!("Input should be greater than or equal to {min}"),
                Value::from(value),
            );
        } else if value > max {
            self.push(
                "less_than_equal",
                field,
                format!("Input should be less than or equal to {max}"),
                Value::from(value),
            );
        }
    }

    /// Checks a file or folder name (1–255 characters, no `/`, NUL, `.`, `..`).
    pub fn item_name(&mut self, field: &str, value: &str) {
        if let Err(m) = scaidrive_domain::name::validate_item_name(value) {
            self.push(
                "value_error",
                field,
                format!("Value error, {m}"),
                Value::from(value),
            );
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A JSON body, parsed and validated.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|ct| {
                let mime = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge("request body is too large".into())
            } else {
                ApiError::BadRequest(format!("could not read the request body: {e}"))
            }
        })?;
        match is_json {
            Some(true) => {}
            Some(false) => {
                return Err(ApiError::UnsupportedMediaType(
                    "expected Content-Type: application/json".into(),
                ));
            }
            None if bytes.is_empty() => {}
            None => {
                return Err(ApiError::UnsupportedMediaType(
                    "expected Content-Type: application/json".into(),
                ))
            }
        }
        parse_json_body(&bytes).map(ApiJson)
    }
}

/// Parses and validates a JSON body (also used for JSON parts of other bodies).
pub fn parse_json_body<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::validation(FieldError {
            kind: "missing",
            loc: vec![Value::from("body")],
            msg: "Field required".into(),
            input: Value::Null,
        }));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::validation(FieldError {
            kind: "json_invalid",
            loc: vec![Value::from("body"), Value::from(e.column())],
            msg: format!("JSON decode error: {e}"),
            input: Value::Object(Default::default()),
        })
    })?;
    parse_json_value(value)
}

/// Validates an already-parsed JSON value against `T` (always an object:
/// serde would otherwise read a struct from an array, field by position).
pub fn parse_json_value<T: DeserializeOwned + Validate>(mut value: Value) -> Result<T, ApiError> {
    let mut errors = Vec::new();
    find_nul(&value, &mut vec![], &mut errors);
    integral_numbers(&mut value);
    match &value {
        Value::Object(map) => {
            for f in T::REQUIRED {
                if map.get(*f).is_none_or(Value::is_null) {
                    errors.push(FieldError::body(
                        "missing",
                        &[f],
                        "Field required",
                        value.clone(),
                    ));
                }
            }
        }
        _ => errors.push(FieldError {
            kind: "model_attributes_type",
            loc: vec![Value::from("body")],
            msg: "Input should be a valid object".into(),
            input: value.clone(),
        }),
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let parsed: T = serde_path_to_error::deserialize(&value).map_err(|e| {
        let path: Vec<String> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                serde_path_to_error::Segment::Enum { variant } => Some(variant.clone()),
                serde_path_to_error::Segment::Unknown => None,
            })
            .collect();
        ApiError::validation(serde_field_error(&value, path, &e.into_inner().to_string()))
    })?;
    let mut v = Violations::default();
    parsed.validate(&mut v);
    if !v.is_empty() {
        return Err(ApiError::Validation(v.0));
    }
    Ok(parsed)
}

/// `5.0` is the integer 5 (JSON Schema's and Pydantic's reading), so integer
/// fields take it; a float with a fraction stays a float and is refused there.
fn integral_numbers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64() {
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    // Exactly representable, so the cast is lossless.
                    *value = Value::from(f as i64);
                }
            }
        }
        Value::Object(map) => map.values_mut().for_each(integral_numbers),
        Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        _ => {}
    }
}

fn find_nul(value: &Value, path: &mut Vec<String>, out: &mut Vec<FieldError>) {
    match value {
        Value::String(s) if s.contains('\0') => {
            let p: Vec<&str> = path.iter().map(String::as_str).collect();
            out.push(FieldError::body(
                "value_error",
                &p,
                "Value error, NUL characters are not allowed",
                value.clone(),
            ));
        }
        Value::Object(map) => {
            for (k, v) in map {
                path.push(k.clone());
                if k.contains('\0') {
                    let p: Vec<&str> = path.iter().map(String::as_str).collect();
                    out.push(FieldError::body(
                        "value_error",
                        &p,
                        "Value error, NUL characters are not allowed in keys",
                        v.clone(),
                    ));
                } else {
                    find_nul(v, path, out);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(i.to_string());
                find_nul(v, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Turns a serde message into a Pydantic-style entry.
fn serde_field_error(root: &Value, mut path: Vec<String>, message: &str) -> FieldError {
    let (kind, msg): (&'static str, String) = if let Some(rest) =
        message.strip_prefix("missing field `")
    {
        let field = rest.split('`').next().unwrap_or_default().to_owned();
        path.push(field);
        ("missing", "Field required".into())
    } else if message.starts_with("unknown variant") {
        let expected = message.split("expected ").nth(1).unwrap_or("a known value");
        (
            "enum",
            format!("Input should be {}", expected.replace('`', "'")),
        )
    } else if message.starts_with("invalid type") {
        let expected = message.rsplit("expected ").next().unwrap_or("");
        if expected.contains("string") || expected.contains("char") {
            ("string_type", "Input should be a valid string".into())
        } else if expected.contains("bool") {
            ("bool_type", "Input should be a valid boolean".into())
        } else if [
            "i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64", "usize", "integer",
        ]
        .iter()
        .any(|t| expected.contains(t))
        {
            ("int_type", "Input should be a valid integer".into())
        } else if expected.contains("sequence") {
            ("list_type", "Input should be a valid list".into())
        } else if expected.contains("map") || expected.contains("struct") {
            (
                "model_attributes_type",
                "Input should be a valid object".into(),
            )
        } else {
            ("value_error", format!("Value error, {message}"))
        }
    } else if message.starts_with("invalid value: integer `-") && message.contains("expected u") {
        (
            "greater_than_equal",
            "Input should be greater than or equal to 0".into(),
        )
    } else if message.starts_with("invalid value: integer") {
        ("less_than_equal", format!("Value error, {message}"))
    } else {
        ("value_error", format!("Value error, {message}"))
    };
    let mut input = root;
    for seg in &path {
        let next = match input {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(v) => input = v,
            None => break,
        }
    }
    let refs: Vec<&str> = path.iter().map(String::as_str).collect();
    FieldError::body(kind, &refs, msg, input.clone())
}

/// Query parameters; malformed ones answer 400.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        if has_encoded_nul(query) {
            return Err(ApiError::BadRequest(
                "invalid query parameters: NUL characters are not allowed".into(),
            ));
        }
        serde_urlencoded::from_str(query)
            .map(ApiQuery)
            .map_err(|e| ApiError::BadRequest(format!("invalid query parameters: {e}")))
    }
}

/// A URI part that decodes to a NUL character (`%00`; a raw NUL cannot be in
/// a URI). No id, name or filter of ours may hold one.
fn has_encoded_nul(raw: &str) -> bool {
    raw.as_bytes().windows(3).any(|w| w == b"%00")
}

/// Path parameters; malformed ones answer 400.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if has_encoded_nul(parts.uri.path()) {
            return Err(ApiError::BadRequest(
                "invalid path parameter: NUL characters are not allowed".into(),
            ));
        }
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::BadRequest(format!("invalid path parameter: {}", e.body_text())))
    }
}

/// A multipart body; a malformed one answers 400 with `detail`.
pub struct ApiMultipart(pub axum::extract::Multipart);

impl<S> FromRequest<S> for ApiMultipart
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(ApiMultipart)
            .map_err(|e| {
                ApiError::BadRequest(format!(
                    "expected a multipart/form-data body: {}",
                    e.body_text()
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        size: Option<u64>,
        kind: Option<Kind>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        A,
    }

    impl Validate for Body {
        const REQUIRED: &'static [&'static str] = &["name"];
        fn validate(&self, v: &mut Violations) {
            v.length("name", &self.name, 1, 5);
        }
    }

    fn errors(body: &str) -> Vec<FieldError> {
        match parse_json_body::<Body>(body.as_bytes()) {
            Err(ApiError::Validation(e)) => e,
            other => panic!("expected validation error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn each_failure_maps_to_its_pydantic_type() {
        assert_eq!(errors("{}")[0].kind, "missing");
        assert_eq!(
            errors("{}")[0].loc,
            vec![Value::from("body"), Value::from("name")]
        );
        assert_eq!(errors(r#"{"name": 5}"#)[0].kind, "string_type");
        assert_eq!(errors(r#"{"name": "ab", "size": "x"}"#)[0].kind, "int_type");
        assert_eq!(
            errors(r#"{"name": "ab", "size": -1}"#)[0].kind,
            "greater_than_equal"
        );
        assert_eq!(errors(r#"{"name": "ab", "kind": "b"}"#)[0].kind, "enum");
        assert_eq!(errors(r#"{"name": "abcdefg"}"#)[0].kind, "string_too_long");
        assert_eq!(errors(r#"{"name": "a\u0000"}"#)[0].kind, "value_error");
        assert_eq!(errors("{nope")[0].kind, "json_invalid");
        assert_eq!(errors("")[0].kind, "missing");
        assert_eq!(errors("[1]")[0].kind, "model_attributes_type");
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Optional {
        size: Option<u64>,
    }

    impl Validate for Optional {}

    #[test]
    fn a_body_is_an_object_even_when_every_field_is_optional() {
        match parse_json_body::<Optional>(b"[null]") {
            Err(ApiError::Validation(e)) => assert_eq!(e[0].kind, "model_attributes_type"),
            other => panic!("expected validation error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn an_integral_float_is_an_integer() {
        let parsed = parse_json_body::<Optional>(br#"{"size": 93.0}"#).map(|o| o.size);
        assert_eq!(parsed.ok().flatten(), Some(93));
        assert!(parse_json_body::<Optional>(br#"{"size": 93.5}"#).is_err());
    }
}
