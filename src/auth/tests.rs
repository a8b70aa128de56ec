//! Authenticator tests in both modes; ScaiKey is played by a small axum JWKS server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use serde_json::{json, Value};

use super::*;

const RSA_PRIVATE_PEM: &[u8] = include_bytes!("testdata/rsa-private.pem");
const RSA_PUBLIC_PEM: &[u8] = include_bytes!("testdata/rsa-public.pem");
const RSA_PUBLIC_JWK: &str = include_str!("testdata/rsa-public.jwk.json");
const RSA_KID: &str = "test-rsa-1";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

// ---------------------------------------------------------------------------
// Development mode

async fn dev_authenticator(dir: &std::path::Path) -> Authenticator {
    Authenticator::new(AuthConfig::new(dir)).await.unwrap()
}

fn full_request() -> MintRequest {
    MintRequest {
        tenant_id: "acme".into(),
        user_id: "alice".into(),
        partner_id: Some("reseller".into()),
        scopes: vec!["openid".into(), "files:write".into()],
        email: Some("alice@acme.test".into()),
        name: Some("Alice".into()),
        groups: vec!["eng".into(), "ops".into()],
        ttl: Duration::from_secs(600),
        act: Some("sync-bot".into()),
    }
}

#[tokio::test]
async fn a_minted_development_token_verifies_with_all_its_claims() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dev_authenticator(dir.path()).await;
    let dev = auth.dev_issuer().expect("development mode");
    let token = dev.mint(&full_request()).unwrap();

    let claims = auth.verify(&token).await.unwrap();
    assert_eq!(claims.subject, "alice");
    assert_eq!(claims.tenant_id, "acme");
    assert_eq!(claims.partner_id.as_deref(), Some("reseller"));
    assert_eq!(claims.email.as_deref(), Some("alice@acme.test"));
    assert_eq!(claims.name.as_deref(), Some("Alice"));
    assert_eq!(claims.groups, ["eng", "ops"]);
    assert_eq!(claims.raw_scope, "openid files:write");
    assert_eq!(claims.scopes.names(), ["files:read", "files:write"]);
    assert_eq!(claims.service_account.as_deref(), Some("sync-bot"));
    assert_eq!(claims.issuer, DEFAULT_ISSUER);
    assert!((claims.expires_at - (now() + 600)).abs() <= 5);
    assert_eq!(auth.check_upstream().await, Ok(()));
}

#[tokio::test]
async fn a_token_without_scopes_gets_tenant_admin() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dev_authenticator(dir.path()).await;
    let token = auth
        .dev_issuer()
        .unwrap()
        .mint(&MintRequest::new("acme", "alice"))
        .unwrap();
    let claims = auth.verify(&token).await.unwrap();
    assert!(claims.scopes.allows(Scope::TenantAdmin));
    assert!(!claims.scopes.allows(Scope::PartnerAdmin));
    assert!(claims.groups.is_empty());
    assert_eq!(claims.service_account, None);
}

#[tokio::test]
async fn a_token_minted_by_another_process_verifies_in_the_server() {
    let dir = tempfile::tempdir().unwrap();
    // The CLI creates the key first, in its own process.
    let cli = DevIssuer::load_or_create(dir.path(), None).unwrap();
    let token = cli.mint(&MintRequest::new("acme", "alice")).unwrap();

    let server = dev_authenticator(dir.path()).await;
    assert_eq!(server.dev_issuer().unwrap().kid(), cli.kid());
    assert_eq!(server.verify(&token).await.unwrap().subject, "alice");
}

#[tokio::test]
async fn an_expired_development_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dev_authenticator(dir.path()).await;
    let dev = auth.dev_issuer().unwrap();
    let token = dev
        .sign(&json!({
            "iss": DEFAULT_ISSUER, "sub": "alice", "tenant_id": "acme", "exp": now() - 3600
        }))
        .unwrap();
    assert_eq!(auth.verify(&token).await, Err(AuthError::Expired));
}

#[tokio::test]
async fn a_development_token_from_another_issuer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dev_authenticator(dir.path()).await;
    // Same key on disk, different issuer name.
    let other = DevIssuer::load_or_create(dir.path(), Some("someone-else".into())).unwrap();
    let token = other.mint(&MintRequest::new("acme", "alice")).unwrap();
    assert_eq!(auth.verify(&token).await, Err(AuthError::WrongIssuer));

    let no_issuer = auth
        .dev_issuer()
        .unwrap()
        .sign(&json!({"sub": "alice", "tenant_id": "acme", "exp": now() + 60}))
        .unwrap();
    assert_eq!(auth.verify(&no_issuer).await, Err(AuthError::WrongIssuer));
}

#[tokio::test]
async fn a_configured_issuer_name_is_minted_and_required() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = AuthConfig::new(dir.path());
    cfg.jwt_issuer = Some("https://drive.local".into());
    let auth = Authenticator::new(cfg).await.unwrap();
    let token = auth
        .dev_issuer()
        .unwrap()
        .mint(&MintRequest::new("acme", "alice"))
        .unwrap();
    assert_eq!(
        auth.verify(&token).await.unwrap().issuer,
        "https://drive.local"
    );

    let default_named = DevIssuer::load_or_create(dir.path(), None).unwrap();
    let token = default_named
        .mint(&MintRequest::new("acme", "alice"))
        .unwrap();
    assert_eq!(auth.verify(&token).await, Err(AuthError::WrongIssuer));
}

#[tokio::test]
async fn a_token_signed_by_another_development_key_is_refused() {
    let ours = tempfile::tempdir().unwrap();
    let theirs = tempfile::tempdir().unwrap();
    let auth = dev_authenticator(ours.path()).await;
    let foreign = DevIssuer::load_or_create(theirs.path(), None).unwrap();
    let token = foreign.mint(&MintRequest::new("acme", "alice")).unwrap();
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn tampered_development_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dev_authenticator(dir.path()).await;
    let token = auth
        .dev_issuer()
        .unwrap()
        .mint(&MintRequest::new("acme", "alice"))
        .unwrap();
    let parts: Vec<&str> = token.split('.').collect();

    let mut signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    signature[10] ^= 0x01;
    let bad_signature = format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        URL_SAFE_NO_PAD.encode(&signature)
    );
    assert!(matches!(
        auth.verify(&bad_signature).await,
        Err(AuthError::Invalid(_))
    ));

    let forged_payload = URL_SAFE_NO_PAD.encode(
        json!({"iss": DEFAULT_ISSUER, "sub": "mallory", "tenant_id": "acme", "exp": now() + 60})
            .to_string(),
    );
    let bad_payload = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    assert!(matches!(
        auth.verify(&bad_payload).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn hs256_and_unsigned_tokens_are_refused_in_development_mode() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dev_authenticator(dir.path()).await;
    let claims =
        json!({"iss": DEFAULT_ISSUER, "sub": "alice", "tenant_id": "acme", "exp": now() + 60});
    for token in [hs256(&claims), unsigned(&claims)] {
        assert!(matches!(
            auth.verify(&token).await,
            Err(AuthError::Invalid(_))
        ));
    }
}

#[tokio::test]
async fn missing_or_malformed_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let auth = dev_authenticator(dir.path()).await;
    assert_eq!(auth.verify("").await, Err(AuthError::Missing));
    assert_eq!(auth.verify("   ").await, Err(AuthError::Missing));
    for garbage in ["abc", "a.b.c", "....", &"x".repeat(20_000)] {
        assert!(matches!(
            auth.verify(garbage).await,
            Err(AuthError::Invalid(_))
        ));
    }
    let no_tenant = auth
        .dev_issuer()
        .unwrap()
        .sign(&json!({"iss": DEFAULT_ISSUER, "sub": "alice", "exp": now() + 60}))
        .unwrap();
    assert!(matches!(
        auth.verify(&no_tenant).await,
        Err(AuthError::Invalid(_))
    ));
}

fn hs256(claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(b"shared secret"),
    )
    .unwrap()
}

fn unsigned(claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

// ---------------------------------------------------------------------------
// ScaiKey mode

/// A stand-in for ScaiKey serving a JWKS that tests can swap, slow down and count.
struct FakeScaiKey {
    url: Url,
    state: Arc<FakeState>,
}

struct FakeState {
    jwks: parking_lot::Mutex<Value>,
    delay: Duration,
    hits: AtomicUsize,
}

impl FakeScaiKey {
    async fn start(keys: Vec<Value>) -> Self {
        Self::start_slow(keys, Duration::ZERO).await
    }

    async fn start_slow(keys: Vec<Value>, delay: Duration) -> Self {
        let state = Arc::new(FakeState {
            jwks: parking_lot::Mutex::new(json!({ "keys": keys })),
            delay,
            hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/jwks.json", get(serve_jwks))
            .route("/realm/.well-known/jwks.json", get(serve_jwks))
            .route(
                "/broken/.well-known/jwks.json",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route(
                "/garbage/.well-known/jwks.json",
                get(|| async { "<html>not a key set</html>" }),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: Url::parse(&format!("http://{addr}")).unwrap(),
            state,
        }
    }

    fn serve(&self, keys: Vec<Value>) {
        *self.state.jwks.lock() = json!({ "keys": keys });
    }

    fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    /// The issuer tokens carry: the URL without trailing slash.
    fn issuer(&self) -> String {
        self.url.as_str().trim_end_matches('/').to_owned()
    }

    fn config(&self) -> AuthConfig {
        let mut cfg = AuthConfig::new(std::env::temp_dir().join("scaidrive-auth-unused"));
        cfg.scaikey_url = Some(self.url.clone());
        cfg
    }

    async fn authenticator(&self) -> Authenticator {
        Authenticator::new(self.config()).await.unwrap()
    }
}

async fn serve_jwks(State(state): State<Arc<FakeState>>) -> Json<Value> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    if !state.delay.is_zero() {
        tokio::time::sleep(state.delay).await;
    }
    Json(state.jwks.lock().clone())
}

/// A signing key with the JWK ScaiKey would publish for it.
struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn rsa() -> Self {
        Self {
            kid: RSA_KID.into(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_pem(RSA_PRIVATE_PEM).unwrap(),
            jwk: serde_json::from_str(RSA_PUBLIC_JWK).unwrap(),
        }
    }

    fn ec(kid: &str) -> Self {
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let point = secret.public_key().to_encoded_point(false);
        Self {
            kid: kid.into(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(secret.to_pkcs8_der().unwrap().as_bytes()),
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            }),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn claims_from(issuer: &str, tenant: &str) -> Value {
    json!({
        "iss": issuer, "sub": "alice", "tenant_id": tenant, "aud": "someone-else",
        "scope": "openid files:read", "exp": now() + 600,
    })
}

#[test]
fn the_committed_rsa_jwk_belongs_to_the_committed_key_pair() {
    let key = TestKey::rsa();
    let token = key.sign(&json!({"sub": "x", "exp": now() + 60}));
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    let from_pem = DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM).unwrap();
    assert!(jsonwebtoken::decode::<Value>(&token, &from_pem, &validation).is_ok());
    let keys = jwks::parse_jwks(json!({"keys": [key.jwk]}).to_string().as_bytes()).unwrap();
    assert!(jsonwebtoken::decode::<Value>(&token, &keys[0].key, &validation).is_ok());
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_scaikey_verify() {
    let rsa = TestKey::rsa();
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start(vec![rsa.jwk.clone(), ec.jwk.clone()]).await;
    let auth = scaikey.authenticator().await;
    assert!(auth.dev_issuer().is_none());

    for key in [&rsa, &ec] {
        let claims = auth
            .verify(&key.sign(&claims_from(&scaikey.issuer(), "acme")))
            .await
            .unwrap();
        assert_eq!(claims.subject, "alice");
        assert_eq!(claims.tenant_id, "acme");
        assert_eq!(claims.scopes.names(), ["files:read"]);
        assert_eq!(claims.issuer, scaikey.issuer());
    }
    assert_eq!(scaikey.hits(), 1);
}

#[tokio::test]
async fn a_token_without_kid_is_tried_against_keys_of_its_algorithm() {
    let ec = TestKey::ec("ec-1");
    let other = TestKey::ec("ec-2");
    let scaikey = FakeScaiKey::start(vec![other.jwk.clone(), ec.jwk.clone()]).await;
    let auth = scaikey.authenticator().await;
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims_from(&scaikey.issuer(), "acme"),
        &ec.encoding,
    )
    .unwrap();
    assert_eq!(auth.verify(&token).await.unwrap().subject, "alice");
}

#[tokio::test]
async fn scaikey_tenant_and_configured_issuers_are_accepted_and_others_refused() {
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start(vec![ec.jwk.clone()]).await;
    let mut cfg = scaikey.config();
    cfg.jwt_issuer = Some("https://issuer.example/".into());
    let auth = Authenticator::new(cfg).await.unwrap();
    let base = scaikey.issuer();

    for (issuer, tenant) in [
        (base.clone(), "acme"),
        (format!("{base}/"), "acme"),
        (format!("{base}/tenants/acme"), "acme"),
        (format!("{base}/tenants/acme/"), "acme"),
        ("https://issuer.example".to_owned(), "acme"),
        ("https://issuer.example/".to_owned(), "acme"),
    ] {
        let token = ec.sign(&claims_from(&issuer, tenant));
        let claims = auth.verify(&token).await;
        assert!(claims.is_ok(), "{issuer} should be trusted: {claims:?}");
    }

    for (issuer, tenant) in [
        (format!("{base}/tenants/other"), "acme"),
        (format!("{base}/tenants/"), ""),
        (format!("{base}/realm"), "acme"),
        (format!("{base}x"), "acme"),
        ("scaidrive-dev".to_owned(), "acme"),
        ("https://evil.example".to_owned(), "acme"),
    ] {
        let token = ec.sign(&claims_from(&issuer, tenant));
        assert_eq!(
            auth.verify(&token).await,
            Err(AuthError::WrongIssuer),
            "{issuer} must not be trusted"
        );
    }
}

#[tokio::test]
async fn a_scaikey_url_with_a_path_finds_its_jwks_under_that_path() {
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start(vec![ec.jwk.clone()]).await;
    let mut cfg = scaikey.config();
    let realm = scaikey.url.join("realm").unwrap();
    cfg.scaikey_url = Some(realm.clone());
    let auth = Authenticator::new(cfg).await.unwrap();
    let token = ec.sign(&claims_from(&format!("{realm}/tenants/acme"), "acme"));
    assert_eq!(auth.verify(&token).await.unwrap().tenant_id, "acme");
}

#[tokio::test]
async fn the_jwks_is_cached_until_its_ttl_runs_out() {
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start(vec![ec.jwk.clone()]).await;
    let token = ec.sign(&claims_from(&scaikey.issuer(), "acme"));

    let auth = scaikey.authenticator().await;
    assert_eq!(auth.check_upstream().await, Ok(()));
    for _ in 0..3 {
        auth.verify(&token).await.unwrap();
    }
    assert_eq!(auth.check_upstream().await, Ok(()));
    assert_eq!(scaikey.hits(), 1);

    let mut cfg = scaikey.config();
    cfg.jwks_ttl = Duration::ZERO;
    let uncached = Authenticator::new(cfg).await.unwrap();
    uncached.verify(&token).await.unwrap();
    uncached.verify(&token).await.unwrap();
    assert_eq!(scaikey.hits(), 3);
}

#[tokio::test]
async fn an_unknown_kid_triggers_a_refetch_that_picks_up_rotated_keys() {
    let old = TestKey::ec("old");
    let new = TestKey::ec("new");
    let scaikey = FakeScaiKey::start(vec![old.jwk.clone()]).await;
    let auth = Authenticator::build(scaikey.config(), Duration::ZERO).unwrap();
    let issuer = scaikey.issuer();

    auth.verify(&old.sign(&claims_from(&issuer, "acme")))
        .await
        .unwrap();
    assert_eq!(scaikey.hits(), 1);

    scaikey.serve(vec![new.jwk.clone()]);
    auth.verify(&new.sign(&claims_from(&issuer, "acme")))
        .await
        .unwrap();
    assert_eq!(scaikey.hits(), 2);

    // The retired key is gone after the refetch.
    let retired = auth.verify(&old.sign(&claims_from(&issuer, "acme"))).await;
    assert!(matches!(retired, Err(AuthError::Invalid(_))), "{retired:?}");
    assert_eq!(scaikey.hits(), 3);
}

#[tokio::test]
async fn garbage_kids_do_not_hammer_scaikey() {
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start(vec![ec.jwk.clone()]).await;
    let auth = scaikey.authenticator().await;
    let issuer = scaikey.issuer();
    auth.verify(&ec.sign(&claims_from(&issuer, "acme")))
        .await
        .unwrap();

    for i in 0..20 {
        let token = ec.sign_as(&format!("garbage-{i}"), &claims_from(&issuer, "acme"));
        assert!(matches!(
            auth.verify(&token).await,
            Err(AuthError::Invalid(_))
        ));
    }
    assert_eq!(scaikey.hits(), 1);
}

#[tokio::test]
async fn concurrent_cache_misses_share_one_fetch() {
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start_slow(vec![ec.jwk.clone()], Duration::from_millis(100)).await;
    let auth = scaikey.authenticator().await;
    let token = ec.sign(&claims_from(&scaikey.issuer(), "acme"));
    let garbage = ec.sign_as("garbage", &claims_from(&scaikey.issuer(), "acme"));

    let mut tasks = Vec::new();
    for i in 0..10 {
        let auth = auth.clone();
        let token = if i % 2 == 0 {
            token.clone()
        } else {
            garbage.clone()
        };
        tasks.push(tokio::spawn(async move { auth.verify(&token).await }));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.unwrap();
        if i % 2 == 0 {
            assert!(outcome.is_ok(), "{outcome:?}");
        } else {
            assert!(matches!(outcome, Err(AuthError::Invalid(_))), "{outcome:?}");
        }
    }
    assert_eq!(scaikey.hits(), 1);
}

#[tokio::test]
async fn an_unreachable_scaikey_is_an_upstream_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = AuthConfig::new(std::env::temp_dir());
    cfg.scaikey_url = Some(Url::parse(&format!("http://{addr}")).unwrap());
    let auth = Authenticator::new(cfg).await.unwrap();
    let token = TestKey::ec("ec-1").sign(&claims_from(&format!("http://{addr}"), "acme"));

    let err = auth.verify(&token).await.unwrap_err();
    assert!(matches!(err, AuthError::Upstream(_)), "{err:?}");
    let err = auth.check_upstream().await.unwrap_err();
    assert!(matches!(err, AuthError::Upstream(_)), "{err:?}");
}

#[tokio::test]
async fn a_bad_jwks_answer_is_an_upstream_error() {
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start(vec![]).await;
    for path in ["broken", "garbage", ""] {
        let mut cfg = scaikey.config();
        cfg.scaikey_url = Some(scaikey.url.join(path).unwrap());
        let auth = Authenticator::new(cfg).await.unwrap();
        let token = ec.sign(&claims_from(&scaikey.issuer(), "acme"));
        let err = auth.verify(&token).await.unwrap_err();
        assert!(matches!(err, AuthError::Upstream(_)), "/{path}: {err:?}");
        assert_eq!(auth.check_upstream().await, Err(err));
    }
}

#[tokio::test]
async fn a_slow_scaikey_is_an_upstream_timeout() {
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start_slow(vec![ec.jwk.clone()], Duration::from_secs(5)).await;
    let mut cfg = scaikey.config();
    cfg.http_timeout = Duration::from_millis(100);
    let auth = Authenticator::new(cfg).await.unwrap();
    let token = ec.sign(&claims_from(&scaikey.issuer(), "acme"));
    assert_eq!(auth.verify(&token).await, Err(AuthError::UpstreamTimeout));
    assert_eq!(auth.check_upstream().await, Err(AuthError::UpstreamTimeout));
}

#[tokio::test]
async fn scaikey_mode_refuses_other_algorithms_without_asking_scaikey() {
    let scaikey = FakeScaiKey::start(vec![TestKey::rsa().jwk]).await;
    let auth = scaikey.authenticator().await;
    let claims = claims_from(&scaikey.issuer(), "acme");
    for token in [hs256(&claims), unsigned(&claims)] {
        assert!(matches!(
            auth.verify(&token).await,
            Err(AuthError::Invalid(_))
        ));
    }
    assert_eq!(scaikey.hits(), 0);
}

#[tokio::test]
async fn a_token_whose_algorithm_does_not_match_its_key_is_refused() {
    let rsa = TestKey::rsa();
    let ec = TestKey::ec("ec-1");
    let scaikey = FakeScaiKey::start(vec![rsa.jwk.clone()]).await;
    let auth = scaikey.authenticator().await;
    // An ES256 token claiming the RSA key's kid.
    let token = ec.sign_as(RSA_KID, &claims_from(&scaikey.issuer(), "acme"));
    assert!(matches!(
        auth.verify(&token).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn expired_and_tampered_scaikey_tokens_are_refused() {
    let rsa = TestKey::rsa();
    let scaikey = FakeScaiKey::start(vec![rsa.jwk.clone()]).await;
    let auth = scaikey.authenticator().await;

    let mut expired = claims_from(&scaikey.issuer(), "acme");
    expired["exp"] = json!(now() - 3600);
    assert_eq!(
        auth.verify(&rsa.sign(&expired)).await,
        Err(AuthError::Expired)
    );

    let mut no_exp = claims_from(&scaikey.issuer(), "acme");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        auth.verify(&rsa.sign(&no_exp)).await,
        Err(AuthError::Invalid(_))
    ));

    let token = rsa.sign(&claims_from(&scaikey.issuer(), "acme"));
    let (signed, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    bytes[0] ^= 0x80;
    let tampered = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(bytes));
    assert!(matches!(
        auth.verify(&tampered).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn the_development_issuer_is_never_active_with_scaikey() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevIssuer::load_or_create(dir.path(), None).unwrap();
    let dev_token = dev.mint(&MintRequest::new("acme", "alice")).unwrap();

    let scaikey = FakeScaiKey::start(vec![TestKey::ec("ec-1").jwk]).await;
    let mut cfg = scaikey.config();
    cfg.data_dir = dir.path().to_owned();
    let auth = Authenticator::new(cfg).await.unwrap();
    assert!(auth.dev_issuer().is_none());
    assert!(matches!(
        auth.verify(&dev_token).await,
        Err(AuthError::Invalid(_))
    ));

    // Nor does ScaiKey mode create a development key.
    let fresh = tempfile::tempdir().unwrap();
    let mut cfg = scaikey.config();
    cfg.data_dir = fresh.path().to_owned();
    Authenticator::new(cfg).await.unwrap();
    assert!(!fresh.path().join(KEY_FILE).exists());
}

#[tokio::test]
async fn a_non_http_scaikey_url_is_a_config_error() {
    let mut cfg = AuthConfig::new(std::env::temp_dir());
    cfg.scaikey_url = Some(Url::parse("ftp://scaikey.example").unwrap());
    assert!(matches!(
        Authenticator::new(cfg).await,
        Err(AuthError::Config(_))
    ));
}
