//! The verified identity a request carries, read from a token's payload.

use serde_json::{Map, Value};

use super::error::AuthError;
use super::scope::Scopes;

/// What a verified token says about its bearer. Ids are the raw claim strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// `sub`: the user (or service principal) id.
    pub subject: String,
    pub tenant_id: String,
    pub partner_id: Option<String>,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    /// Effective scopes, implications applied.
    pub scopes: Scopes,
    /// `exp`, unix seconds.
    pub expires_at: i64,
    /// RFC 8693 `act.client_id`, else `act.sub`: the service acting for the subject.
    pub service_account: Option<String>,
    pub issuer: String,
    /// The scope claim as issued (space-separated), for audit.
    pub raw_scope: String,
}

impl Claims {
    /// Reads the claims of a payload whose signature, `exp` and issuer were already checked.
    pub(crate) fn from_payload(
        payload: &Map<String, Value>,
        issuer: &str,
    ) -> Result<Self, AuthError> {
        let subject =
            text(payload, "sub").ok_or_else(|| AuthError::invalid("token has no sub claim"))?;
        let tenant_id = text(payload, "tenant_id")
            .ok_or_else(|| AuthError::invalid("token has no tenant_id claim"))?;
        let expires_at = payload
            .get("exp")
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
            .ok_or_else(|| AuthError::invalid("token has no numeric exp claim"))?;
        let raw_scope = match payload.get("scope").or_else(|| payload.get("scp")) {
            Some(v) => strings(v).join(" "),
            None => String::new(),
        };
        let service_account = payload
            .get("act")
            .and_then(Value::as_object)
            .and_then(|act| text(act, "client_id").or_else(|| text(act, "sub")));
        Ok(Claims {
            subject,
            tenant_id,
            partner_id: text(payload, "partner_id"),
            email: text(payload, "email"),
            name: text(payload, "name"),
            groups: payload.get("groups").map(strings).unwrap_or_default(),
            scopes: Scopes::parse(&raw_scope),
            expires_at,
            service_account,
            issuer: issuer.to_owned(),
            raw_scope,
        })
    }
}

/// A non-empty string claim; numeric ids are accepted as their decimal text.
pub(crate) fn text(map: &Map<String, Value>, key: &str) -> Option<String> {
    match map.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A claim that is either a space-separated string or an array of strings.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::Scope;

    fn payload(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn full_claims_are_read() {
        let p = payload(json!({
            "sub": "u1", "tenant_id": "t1", "partner_id": "p1", "email": "a@b.c",
            "name": "Ann", "groups": ["g1", "g2"], "scope": "openid files:write",
            "exp": 2_000_000_000, "act": {"client_id": "svc", "sub": "other"}
        }));
        let c = Claims::from_payload(&p, "iss").unwrap();
        assert_eq!(c.subject, "u1");
        assert_eq!(c.tenant_id, "t1");
        assert_eq!(c.partner_id.as_deref(), Some("p1"));
        assert_eq!(c.email.as_deref(), Some("a@b.c"));
        assert_eq!(c.name.as_deref(), Some("Ann"));
        assert_eq!(c.groups, ["g1", "g2"]);
        assert_eq!(c.raw_scope, "openid files:write");
        assert!(c.scopes.allows(Scope::FilesWrite));
        assert!(!c.scopes.allows(Scope::TenantAdmin));
        assert_eq!(c.expires_at, 2_000_000_000);
        assert_eq!(c.service_account.as_deref(), Some("svc"));
        assert_eq!(c.issuer, "iss");
    }

    #[test]
    fn optional_claims_may_be_absent_and_scp_arrays_count() {
        let p = payload(json!({
            "sub": "u1", "tenant_id": 42, "exp": 1, "scp": ["files:read"], "act": {"sub": "bot"}
        }));
        let c = Claims::from_payload(&p, "iss").unwrap();
        assert_eq!(c.tenant_id, "42");
        assert!(c.groups.is_empty());
        assert_eq!(c.raw_scope, "files:read");
        assert!(!c.scopes.allows(Scope::FilesWrite));
        assert_eq!(c.service_account.as_deref(), Some("bot"));
        assert_eq!(c.partner_id, None);
    }

    #[test]
    fn missing_sub_or_tenant_is_invalid() {
        for p in [
            json!({"tenant_id": "t", "exp": 1}),
            json!({"sub": "", "tenant_id": "t", "exp": 1}),
            json!({"sub": "u", "exp": 1}),
            json!({"sub": "u", "tenant_id": null, "exp": 1}),
        ] {
            let err = Claims::from_payload(&payload(p.clone()), "iss").unwrap_err();
            assert!(matches!(err, AuthError::Invalid(_)), "{p}: {err:?}");
        }
    }
}
