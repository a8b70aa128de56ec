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

    /// Checks parts of the raw JSON the typed pass cannot locate on its own
    /// (fields of a `#[serde(flatten)]` struct, a free-form object with a
    /// schema of its own), usually with [`Found::check_as`]; what it reports
    /// is settled, so the typed pass steps past it.
    fn check_json(_body: &mut Value, _found: &mut Found) {}

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
            ctx: None,
        }));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::validation(FieldError {
            kind: "json_invalid",
            loc: vec![Value::from("body"), Value::from(e.column())],
            msg: "JSON decode error".into(),
            input: Value::Object(Default::default()),
            ctx: Some(serde_json::json!({ "error": e.to_string() })),
        })
    })?;
    parse_json_value(value)
}

/// Validates an already-parsed JSON value against `T` (always an object:
/// serde would otherwise read a struct from an array, field by position).
pub fn parse_json_value<T: DeserializeOwned + Validate>(mut value: Value) -> Result<T, ApiError> {
    integral_numbers(&mut value);
    let mut found = Found::new(&value);
    find_nul(&value, &mut vec![], &mut found);
    let Value::Object(map) = &value else {
        found.errors.push(FieldError {
            kind: "model_attributes_type",
            loc: vec![Value::from("body")],
            msg: "Input should be a valid dictionary or object to extract fields from".into(),
            input: value.clone(),
            ctx: None,
        });
        return Err(found.into_error());
    };
    for f in T::REQUIRED {
        if map.get(*f).is_none_or(Value::is_null) {
            let input = value.clone();
            found.report(vec![Value::from(*f)], "missing", "Field required", input);
        }
    }
    T::check_json(&mut value, &mut found);
    match found.check_as::<T>(&mut value, &[]) {
        Some(parsed) if found.errors.is_empty() => {
            let mut v = Violations::default();
            parsed.validate(&mut v);
            if v.is_empty() {
                Ok(parsed)
            } else {
                Err(ApiError::Validation(v.0))
            }
        }
        _ => Err(found.into_error()),
    }
}

/// Typed passes over a body give up after this many failures (each pass
/// reads the whole body again, so a huge body full of faults stays cheap).
const MAX_PASSES: usize = 256;

/// Stand-ins tried at one place before the search gives up there.
const MAX_TRIES: u8 = 4;

/// The failures found in one body so far, and the places already settled.
#[derive(Debug)]
pub struct Found {
    /// The body as sent, for the `input` of each entry.
    original: Value,
    errors: Vec<FieldError>,
    /// Places (below `body`) already reported: failures at or below one are
    /// consequences (or stand-ins), not new findings.
    settled: Vec<Vec<Value>>,
}

impl Found {
    fn new(original: &Value) -> Self {
        Self {
            original: original.clone(),
            errors: Vec::new(),
            settled: Vec::new(),
        }
    }

    /// Reports a failure at `path` (below `body`), unless one at or above it
    /// was reported already.
    pub fn report(&mut self, path: Vec<Value>, kind: &'static str, msg: &str, input: Value) {
        if self.covers(&path) {
            return;
        }
        let mut loc = vec![Value::from("body")];
        loc.extend(path.iter().cloned());
        self.errors.push(FieldError {
            kind,
            loc,
            msg: msg.to_owned(),
            input,
            ctx: None,
        });
        if !path.is_empty() {
            self.settled.push(path);
        }
    }

    fn covers(&self, path: &[Value]) -> bool {
        self.settled.iter().any(|s| path.starts_with(s))
    }

    /// The value sent at `path`, `null` where it was absent.
    fn sent(&self, path: &[Value]) -> Value {
        lookup(&self.original, path).cloned().unwrap_or(Value::Null)
    }

    /// Deserialises `T` from `value` (found at `at` below `body`) and reports
    /// every failure it can find, not only serde's first.
    ///
    /// serde stops at the first failure, so this runs it again after each
    /// one, with the failing value replaced by a stand-in of the type serde
    /// said it expected (`""`, `0`, `false`, `[]`, `{}`, an enum's first
    /// variant, a well-formed id); a missing field is filled with `null`
    /// (whose type error then names the type), an unknown key is removed.
    /// This is sound because a stand-in only ever replaces a value that was
    /// just reported, failures at or below a reported place are not reported
    /// again, and serde reads each field on its own, so a stand-in cannot make
    /// another field fail: every entry is a real fault of the input. Cross-field
    /// checks ([`Validate::validate`]) run only on a body without stand-ins.
    /// Where no stand-in gets past a place (a value only a custom parser
    /// judges), the search ends with what it has found.
    ///
    /// `None` when `T` could not be built, even with stand-ins.
    pub fn check_as<T: DeserializeOwned>(&mut self, value: &mut Value, at: &[Value]) -> Option<T> {
        let mut tries: Vec<(Vec<Value>, u8)> = Vec::new();
        for _ in 0..MAX_PASSES {
            let err = match serde_path_to_error::deserialize::<_, T>(&*value) {
                Ok(parsed) => return Some(parsed),
                Err(e) => e,
            };
            let mut path = Vec::new();
            let mut located = true;
            for seg in err.path().iter() {
                match seg {
                    serde_path_to_error::Segment::Map { key } => {
                        path.push(Value::from(key.as_str()))
                    }
                    serde_path_to_error::Segment::Seq { index } => path.push(Value::from(*index)),
                    serde_path_to_error::Segment::Enum { variant } => {
                        path.push(Value::from(variant.as_str()))
                    }
                    serde_path_to_error::Segment::Unknown => located = false,
                }
            }
            let fault = Fault::read(&err.into_inner().to_string());
            if let Some(key) = &fault.key {
                path.push(Value::from(key.as_str()));
            }
            let mut full = at.to_vec();
            full.extend(path.iter().cloned());
            if !located || path.is_empty() {
                // Inside a flattened struct serde cannot say where; its
                // `check_json` has located what it could already.
                if self.errors.is_empty() {
                    let input = self.sent(&full);
                    self.report(full, fault.kind, &fault.msg, input);
                }
                return None;
            }
            let n = match tries.iter_mut().find(|(p, _)| *p == path) {
                Some((_, n)) => {
                    *n += 1;
                    *n
                }
                None => {
                    tries.push((path.clone(), 1));
                    1
                }
            };
            if n > MAX_TRIES {
                return None;
            }
            if self.covers(&full) {
                if fault.kind == "enum" {
                    self.name_variants(&full, &fault.msg);
                }
            } else {
                let input = if fault.kind == "missing" {
                    self.sent(&full[..full.len() - 1])
                } else {
                    self.sent(&full)
                };
                self.report(full, fault.kind, &fault.msg, input);
            }
            if !fault.fix.apply(value, &path) {
                return None;
            }
        }
        None
    }

    /// An enum given a non-string was reported before its variants were
    /// known; the probe that followed named them.
    fn name_variants(&mut self, full: &[Value], msg: &str) {
        for e in &mut self.errors {
            if e.kind == "enum" && e.msg.is_empty() && e.loc.get(1..) == Some(full) {
                e.msg = msg.to_owned();
            }
        }
    }

    /// The entries in the order of the body as sent (checks that ran
    /// earlier, e.g. `check_json`, do not come first for that); a field that
    /// was not sent follows the fields of its object that were.
    fn into_error(mut self) -> ApiError {
        for e in &mut self.errors {
            if e.msg.is_empty() {
                e.msg = "Input should be a valid enumeration member".into();
            }
        }
        let original = &self.original;
        self.errors
            .sort_by_cached_key(|e| document_order(original, e.loc.get(1..).unwrap_or_default()));
        if self.errors.is_empty() {
            // Unreachable in practice: a failed typed pass always reports.
            self.errors.push(FieldError {
                kind: "value_error",
                loc: vec![Value::from("body")],
                msg: "Value error, the body does not match the expected shape".into(),
                input: self.original,
                ctx: None,
            });
        }
        ApiError::Validation(self.errors)
    }
}

/// Where `path` sits in `root` as sent: per step, the key's position in its
/// object or the list index; `usize::MAX` from the first step not sent.
fn document_order(root: &Value, path: &[Value]) -> Vec<usize> {
    let mut at = Some(root);
    path.iter()
        .map(|seg| {
            let (pos, next) = match (at, seg) {
                (Some(Value::Object(m)), Value::String(k)) => {
                    (m.keys().position(|x| x == k), m.get(k))
                }
                (Some(Value::Array(a)), Value::Number(i)) => {
                    let i = i.as_u64().and_then(|i| usize::try_from(i).ok());
                    (i.filter(|i| *i < a.len()), i.and_then(|i| a.get(i)))
                }
                _ => (None, None),
            };
            at = next;
            pos.unwrap_or(usize::MAX)
        })
        .collect()
}

fn lookup<'a>(root: &'a Value, path: &[Value]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, seg| match (v, seg) {
        (Value::Object(m), Value::String(k)) => m.get(k),
        (Value::Array(a), Value::Number(i)) => i.as_u64().and_then(|i| a.get(i as usize)),
        _ => None,
    })
}

fn lookup_mut<'a>(root: &'a mut Value, path: &[Value]) -> Option<&'a mut Value> {
    path.iter().try_fold(root, |v, seg| match (v, seg) {
        (Value::Object(m), Value::String(k)) => m.get_mut(k),
        (Value::Array(a), Value::Number(i)) => i.as_u64().and_then(|i| a.get_mut(i as usize)),
        _ => None,
    })
}

/// One serde failure in Pydantic's words, and how to step past it.
struct Fault {
    kind: &'static str,
    msg: String,
    /// The field a `missing` names (serde's path stops at its object).
    key: Option<String>,
    fix: Fix,
}

/// What replaces a reported value for the next typed pass.
enum Fix {
    Set(Value),
    Remove,
}

impl Fix {
    /// Applies the fix at `path` (never empty); false when it cannot.
    fn apply(self, root: &mut Value, path: &[Value]) -> bool {
        let Some((last, parent)) = path.split_last() else {
            return false;
        };
        match (lookup_mut(root, parent), last, self) {
            (Some(Value::Object(m)), Value::String(k), Fix::Set(v)) => {
                m.insert(k.clone(), v);
                true
            }
            (Some(Value::Object(m)), Value::String(k), Fix::Remove) => m.remove(k).is_some(),
            (Some(Value::Array(a)), Value::Number(i), fix) => {
                match i.as_u64().and_then(|i| a.get_mut(i as usize)) {
                    Some(slot) => {
                        // An array keeps its indexes: a removed item is `null`.
                        *slot = match fix {
                            Fix::Set(v) => v,
                            Fix::Remove => Value::Null,
                        };
                        true
                    }
                    None => false,
                }
            }
            _ => false,
        }
    }
}

impl Fault {
    fn new(kind: &'static str, msg: impl Into<String>, fix: Fix) -> Self {
        Self {
            kind,
            msg: msg.into(),
            key: None,
            fix,
        }
    }

    /// Reads one of serde's messages (their wording is stable: serde's own
    /// `de::Error` constructors and the derive's `missing field`/`unknown`).
    fn read(message: &str) -> Fault {
        if let Some(field) = between(message, "missing field `", "`") {
            return Fault {
                key: Some(field.to_owned()),
                ..Fault::new("missing", "Field required", Fix::Set(Value::Null))
            };
        }
        if message.starts_with("unknown field `") {
            return Fault::new(
                "extra_forbidden",
                "Extra inputs are not permitted",
                Fix::Remove,
            );
        }
        if message.starts_with("unknown variant `") {
            let names = message
                .rsplit_once(", expected ")
                .map(|(_, e)| backticked(e))
                .unwrap_or_default();
            let fix = match names.first() {
                Some(first) => Fix::Set(Value::from(first.as_str())),
                None => Fix::Remove,
            };
            return Fault::new("enum", format!("Input should be {}", one_of(&names)), fix);
        }
        if let Some(rest) = message.strip_prefix("invalid type: ") {
            let (unexpected, expected) = rest.rsplit_once(", expected ").unwrap_or((rest, ""));
            return Fault::wrong_type(unexpected, expected, message);
        }
        if let Some(rest) = message.strip_prefix("invalid value: integer `") {
            if let Some((n, expected)) = rest.split_once("`, expected ") {
                if let Some((min, max)) = int_bounds(expected) {
                    return Fault::out_of_bounds(n.starts_with('-'), min, max);
                }
            }
        }
        if let Some(prefix) = between(message, "expected '", "' followed by 26 base32 characters") {
            // One of our ids: a well-formed one of the same kind stands in.
            let stand_in = format!("{prefix}{}", "0".repeat(26));
            return Fault::new(
                "value_error",
                format!("Value error, {message}"),
                Fix::Set(Value::from(stand_in)),
            );
        }
        Fault::new(
            "value_error",
            format!("Value error, {message}"),
            Fix::Remove,
        )
    }

    fn wrong_type(unexpected: &str, expected: &str, message: &str) -> Fault {
        if expected == "string or map" {
            // serde_json's enums: the variants are learnt from the probe `""`.
            return Fault::new("enum", "", Fix::Set(Value::from("")));
        }
        if expected.contains("date") {
            return Fault::new(
                "datetime_type",
                "Input should be a valid datetime",
                Fix::Set(Value::from("1970-01-01T00:00:00Z")),
            );
        }
        if expected.contains("string") || expected == "a character" {
            return Fault::new(
                "string_type",
                "Input should be a valid string",
                Fix::Set(Value::from("")),
            );
        }
        if expected == "a boolean" {
            return Fault::new(
                "bool_type",
                "Input should be a valid boolean",
                Fix::Set(Value::Bool(false)),
            );
        }
        if let Some((min, max)) = int_bounds(expected) {
            if let Some(f) =
                between(unexpected, "floating point `", "`").and_then(|f| f.parse::<f64>().ok())
            {
                if f.fract() == 0.0 {
                    // Integral but beyond what JSON integers hold exactly.
                    return Fault::out_of_bounds(f < 0.0, min, max);
                }
                return Fault::new(
                    "int_from_float",
                    "Input should be a valid integer, got a number with a fractional part",
                    Fix::Set(Value::from(0)),
                );
            }
            return Fault::new(
                "int_type",
                "Input should be a valid integer",
                Fix::Set(Value::from(0)),
            );
        }
        if expected == "f32" || expected == "f64" {
            return Fault::new(
                "float_type",
                "Input should be a valid number",
                Fix::Set(Value::from(0.0)),
            );
        }
        if expected.contains("sequence") || expected.contains("tuple") || expected.contains("array")
        {
            return Fault::new(
                "list_type",
                "Input should be a valid list",
                Fix::Set(Value::Array(Vec::new())),
            );
        }
        if expected.contains("map") || expected.starts_with("struct ") {
            return Fault::new(
                "dict_type",
                "Input should be a valid dictionary",
                Fix::Set(Value::Object(Default::default())),
            );
        }
        Fault::new(
            "value_error",
            format!("Value error, {message}"),
            Fix::Remove,
        )
    }

    fn out_of_bounds(negative: bool, min: i128, max: i128) -> Fault {
        if negative {
            Fault::new(
                "greater_than_equal",
                format!("Input should be greater than or equal to {min}"),
                Fix::Set(Value::from(0)),
            )
        } else {
            Fault::new(
                "less_than_equal",
                format!("Input should be less than or equal to {max}"),
                Fix::Set(Value::from(0)),
            )
        }
    }
}

/// The range of the integer type serde names (`u32`, `i64`, ...).
fn int_bounds(expected: &str) -> Option<(i128, i128)> {
    Some(match expected {
        "u8" => (0, u8::MAX.into()),
        "u16" => (0, u16::MAX.into()),
        "u32" => (0, u32::MAX.into()),
        "u64" | "usize" => (0, u64::MAX.into()),
        "i8" => (i8::MIN.into(), i8::MAX.into()),
        "i16" => (i16::MIN.into(), i16::MAX.into()),
        "i32" => (i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => (i64::MIN.into(), i64::MAX.into()),
        _ => return None,
    })
}

fn between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let rest = &s[s.find(open)? + open.len()..];
    Some(&rest[..rest.find(close)?])
}

/// The names serde lists in backticks: "one of `a`, `b`" → [a, b].
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Pydantic's wording of a choice: `'a'`, `'a' or 'b'`, `'a', 'b' or 'c'`.
fn one_of(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
    match quoted.split_last() {
        None => "a valid enumeration member".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
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

fn find_nul(value: &Value, path: &mut Vec<Value>, found: &mut Found) {
    match value {
        Value::String(s) if s.contains('\0') => found.report(
            path.clone(),
            "value_error",
            "Value error, NUL characters are not allowed",
            value.clone(),
        ),
        Value::Object(map) => {
            for (k, v) in map {
                path.push(Value::from(k.as_str()));
                if k.contains('\0') {
                    found.report(
                        path.clone(),
                        "value_error",
                        "Value error, NUL characters are not allowed in keys",
                        v.clone(),
                    );
                } else {
                    find_nul(v, path, found);
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                path.push(Value::from(i));
                find_nul(v, path, found);
                path.pop();
            }
        }
        _ => {}
    }
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
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(ApiPath(p.0)),
            Err(e) => Err(match bad_id(&e, parts, state).await {
                Some(answer) => answer,
                None => ApiError::BadRequest(format!("invalid path parameter: {}", e.body_text())),
            }),
        }
    }
}

/// The 400 for a typed id in the path (`ApiPath<FolderId>`) that does not
/// parse: `'{raw}' is not a valid {kind} id`, naming the segment as sent.
async fn bad_id<S: Send + Sync>(
    e: &axum::extract::rejection::PathRejection,
    parts: &mut Parts,
    state: &S,
) -> Option<ApiError> {
    use axum::extract::path::ErrorKind;
    use axum::extract::rejection::PathRejection;
    let PathRejection::FailedToDeserializePathParams(e) = e else {
        return None;
    };
    let ErrorKind::Message(msg) = e.kind() else {
        return None;
    };
    // The domain's `IdParseError`: "invalid {kind} id: expected '{prefix}' …".
    let rest = msg.strip_prefix("invalid ")?;
    let (kind, rest) = rest.split_once(" id: expected '")?;
    let (prefix, _) = rest.split_once('\'')?;
    let (prefix, kind) = (prefix.to_owned(), kind.to_owned());
    let params = axum::extract::RawPathParams::from_request_parts(parts, state)
        .await
        .ok()?;
    let raw = params.iter().map(|(_, v)| v).find(|v| {
        v.strip_prefix(prefix.as_str())
            .and_then(scaidrive_domain::id::decode_body)
            .is_none()
    })?;
    Some(ApiError::BadRequest(format!(
        "'{raw}' is not a valid {kind} id"
    )))
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
    struct Outer {
        id: scaidrive_domain::id::ShareId,
        count: u32,
        when: Option<chrono::DateTime<chrono::Utc>>,
        items: Vec<Item>,
        settings: Option<Strict>,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Item {
        name: String,
        kind: Kind,
        on: Option<bool>,
    }

    #[derive(Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Strict {
        days: Option<u32>,
        ratio: Option<f64>,
    }

    impl Validate for Outer {}

    /// (type, loc below body, msg) of each entry.
    fn outer(body: serde_json::Value) -> Vec<(&'static str, Value, String)> {
        match parse_json_value::<Outer>(body) {
            Err(ApiError::Validation(e)) => e
                .into_iter()
                .map(|e| (e.kind, Value::from(e.loc[1..].to_vec()), e.msg))
                .collect(),
            other => panic!("expected validation error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn every_failure_is_reported_at_its_full_loc() {
        let found = outer(serde_json::json!({
            "id": "nope",
            "count": "7",
            "when": 5,
            "items": [
                {"name": "a", "kind": "a"},
                {"name": 1, "kind": "z", "on": "yes"},
                {"kind": 3},
                7
            ],
            "settings": {"days": -1, "ratio": "x", "extra": 1}
        }));
        let expect = |kind: &str, loc: Value| {
            assert!(
                found.iter().any(|(k, l, _)| *k == kind && *l == loc),
                "no {kind} at {loc} in {found:?}"
            );
        };
        use serde_json::json;
        expect("value_error", json!(["id"]));
        expect("int_type", json!(["count"]));
        expect("datetime_type", json!(["when"]));
        expect("string_type", json!(["items", 1, "name"]));
        expect("enum", json!(["items", 1, "kind"]));
        expect("bool_type", json!(["items", 1, "on"]));
        expect("missing", json!(["items", 2, "name"]));
        expect("enum", json!(["items", 2, "kind"]));
        expect("dict_type", json!(["items", 3]));
        expect("greater_than_equal", json!(["settings", "days"]));
        expect("float_type", json!(["settings", "ratio"]));
        expect("extra_forbidden", json!(["settings", "extra"]));
        assert_eq!(found.len(), 12, "{found:?}");
        for (_, _, msg) in &found {
            assert!(!msg.contains('`'), "a raw serde message: {msg}");
        }
        let kinds: Vec<&String> = found
            .iter()
            .filter(|(k, _, _)| *k == "enum")
            .map(|(_, _, m)| m)
            .collect();
        assert_eq!(kinds, ["Input should be 'a'", "Input should be 'a'"]);
    }

    #[test]
    fn missing_shows_the_enclosing_object_and_extra_shows_the_value() {
        let body = serde_json::json!({"count": 1, "items": [], "settings": {"x": [1]}});
        match parse_json_value::<Outer>(body.clone()) {
            Err(ApiError::Validation(e)) => {
                let missing = e.iter().find(|e| e.kind == "missing").expect("missing");
                assert_eq!(missing.loc, vec![Value::from("body"), Value::from("id")]);
                assert_eq!(missing.msg, "Field required");
                assert_eq!(missing.input, body);
                let extra = e
                    .iter()
                    .find(|e| e.kind == "extra_forbidden")
                    .expect("extra");
                assert_eq!(extra.input, serde_json::json!([1]));
                assert_eq!(extra.msg, "Extra inputs are not permitted");
            }
            other => panic!("expected validation error, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn numbers_out_of_range_or_with_a_fraction_are_named_as_pydantic_does() {
        use serde_json::json;
        let id = "shr_00000000000000000000000000";
        let found = outer(json!({"id": id, "count": 5_000_000_000u64, "items": []}));
        assert_eq!(found[0].0, "less_than_equal");
        assert_eq!(
            found[0].2,
            "Input should be less than or equal to 4294967295"
        );
        let found = outer(json!({"id": id, "count": 1.5, "items": []}));
        assert_eq!(found[0].0, "int_from_float");
        let found = outer(json!({"id": id, "count": 1, "items": {}}));
        assert_eq!(found[0].0, "list_type");
        assert!(parse_json_value::<Outer>(json!({"id": id, "count": 1.0, "items": []})).is_ok());
    }

    #[test]
    fn a_json_syntax_error_names_the_parser_error_in_ctx() {
        let e = &errors("{nope")[0];
        assert_eq!(e.msg, "JSON decode error");
        assert!(e.ctx.as_ref().is_some_and(|c| c["error"].is_string()));
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
