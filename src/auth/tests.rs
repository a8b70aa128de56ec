//! Verification in both modes; ScaiKey mode against a JWKS server on loopback.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use parking_lot::Mutex;
use serde_json::{json, Value};

use super::*;

const RSA_PEM: &str = include_str!("testdata/rsa-test-key.pem");
const RSA_JWK: &str = include_str!("testdata/rsa-test-jwk.json");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn dev_auth(dir: &std::path::Path) -> Authenticator {
    Authenticator::new(AuthConfig {
        data_dir: dir.to_path_buf(),
        ..AuthConfig::default()
    })
    .await
    .expect("auth")
}

fn mint(issuer: &DevIssuer, scopes: &[&str]) -> String {
    issuer
        .mint(&MintRequest {
            tenant_id: "acme".into(),
            user_id: "alice".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            email: Some("alice@acme.test".into()),
            groups: vec!["eng".into()],
            ttl: Duration::from_secs(60),
            act: Some("svc-backup".into()),
            ..Default::default()
        })
        .expect("mint")
}

#[tokio::test]
async fn development_tokens_round_trip() {
    let dir = tempfile::tempdir().expect("tmp");
    let auth = dev_auth(dir.path()).await;
    let issuer = auth.dev_issuer().expect("dev mode");
    let c = auth
        .verify(&mint(issuer, &["files:read"]))
        .await
        .expect("verify");
    assert_eq!(c.subject, "alice");
    assert_eq!(c.tenant_id, "acme");
    assert_eq!(c.groups, vec!["eng"]);
    assert_eq!(c.service_account.as_deref(), Some("svc-backup"));
    assert!(c.scopes.allows(Scope::FilesRead) && !c.scopes.allows(Scope::FilesWrite));
}

#[tokio::test]
async fn the_development_key_is_reused_across_processes() {
    let dir = tempfile::tempdir().expect("tmp");
    let cli = DevIssuer::load_or_create(dir.path(), None).expect("cli key");
    let server = dev_auth(dir.path()).await;
    assert_eq!(server.dev_issuer().map(DevIssuer::kid), Some(cli.kid()));
    server
        .verify(&mint(&cli, &[]))
        .await
        .expect("token from the CLI verifies");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("dev-issuer-key.pem"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn expired_tampered_foreign_and_symmetric_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let auth = dev_auth(dir.path()).await;
    let issuer = auth.dev_issuer().expect("dev");
    let expired = issuer
        .sign_claims(
            &json!({"sub": "u", "tenant_id": "t", "exp": now() - 3600, "iss": "scaidrive-dev"}),
        )
        .expect("sign");
    assert_eq!(auth.verify(&expired).await.err(), Some(AuthError::Expired));
    let no_tenant = issuer
        .sign_claims(&json!({"sub": "u", "exp": now() + 60, "iss": "scaidrive-dev"}))
        .expect("sign");
    assert!(matches!(
        auth.verify(&no_tenant).await,
        Err(AuthError::Invalid(_))
    ));
    let wrong_iss = issuer
        .sign_claims(&json!({"sub": "u", "tenant_id": "t", "exp": now() + 60, "iss": "other"}))
        .expect("sign");
    assert_eq!(
        auth.verify(&wrong_iss).await.err(),
        Some(AuthError::WrongIssuer)
    );
    let other_dir = tempfile::tempdir().expect("tmp");
    let stranger = DevIssuer::load_or_create(other_dir.path(), None).expect("other key");
    assert!(matches!(
        auth.verify(&mint(&stranger, &[])).await,
        Err(AuthError::Invalid(_))
    ));

    let good = mint(issuer, &[]);
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        json!({"sub": "root", "tenant_id": "acme", "exp": now() + 60, "iss": "scaidrive-dev"})
            .to_string(),
    );
    parts[1] = &forged_payload;
    assert!(matches!(
        auth.verify(&parts.join(".")).await,
        Err(AuthError::Invalid(_))
    ));

    let hs = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "u", "tenant_id": "t", "exp": now() + 60, "iss": "scaidrive-dev"}),
        &EncodingKey::from_secret(b"secret"),
    )
    .expect("hs256");
    assert!(matches!(auth.verify(&hs).await, Err(AuthError::Invalid(_))));
    assert!(matches!(auth.verify("").await, Err(AuthError::Missing)));
    assert!(matches!(
        auth.verify("a.b.c").await,
        Err(AuthError::Invalid(_))
    ));
}

struct Jwks {
    doc: Mutex<Value>,
    hits: AtomicUsize,
    delay: Mutex<Duration>,
}

async fn jwks_server(doc: Value) -> (String, Arc<Jwks>, tokio::task::JoinHandle<()>) {
    let state = Arc::new(Jwks {
        doc: Mutex::new(doc),
        hits: AtomicUsize::new(0),
        delay: Mutex::new(Duration::ZERO),
    });
    let s = state.clone();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let s = s.clone();
            async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                let d = *s.delay.lock();
                tokio::time::sleep(d).await;
                let doc = s.doc.lock().clone();
                Json(doc)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), state, handle)
}

fn rsa_token(iss: &str, tenant: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(
        &header,
        &json!({"sub": "u1", "tenant_id": tenant, "exp": now() + 60, "iss": iss, "scope": "openid files:write"}),
        &EncodingKey::from_rsa_pem(RSA_PEM.as_bytes()).expect("rsa key"),
    )
    .expect("sign")
}

async fn scaikey_auth(base: &str, timeout: Duration) -> Authenticator {
    let dir = tempfile::tempdir().expect("tmp");
    Authenticator::new(AuthConfig {
        scaikey_url: Some(url::Url::parse(base).expect("url")),
        data_dir: dir.path().to_path_buf(),
        http_timeout: timeout,
        ..AuthConfig::default()
    })
    .await
    .expect("auth")
}

#[tokio::test]
async fn scaikey_tokens_verify_against_the_jwks_with_cache_and_rotation() {
    let rsa: Value = serde_json::from_str(RSA_JWK).expect("jwk");
    let ec_dir = tempfile::tempdir().expect("tmp");
    let ec = DevIssuer::load_or_create(ec_dir.path(), None).expect("ec");
    let (base, server, _h) = jwks_server(json!({"keys": [rsa.clone()]})).await;
    let auth = scaikey_auth(&base, Duration::from_secs(5)).await;
    assert!(
        auth.dev_issuer().is_none(),
        "development issuer is off with ScaiKey"
    );

    let c = auth
        .verify(&rsa_token(&base, "t1", "rsa-test"))
        .await
        .expect("rs256");
    assert!(c.scopes.allows(Scope::FilesWrite) && !c.scopes.allows(Scope::TenantAdmin));
    auth.verify(&rsa_token(&format!("{base}/tenants/t1"), "t1", "rsa-test"))
        .await
        .expect("tenant issuer");
    assert_eq!(
        auth.verify(&rsa_token(&format!("{base}/tenants/t2"), "t1", "rsa-test"))
            .await
            .err(),
        Some(AuthError::WrongIssuer)
    );
    assert_eq!(
        auth.verify(&rsa_token("https://evil.test", "t1", "rsa-test"))
            .await
            .err(),
        Some(AuthError::WrongIssuer)
    );
    assert_eq!(server.hits.load(Ordering::SeqCst), 1, "the JWKS is cached");

    // Rotate in an ES256 key: the unknown kid triggers one refetch.
    let ec_jwk = ec.jwks()["keys"][0].clone();
    *server.doc.lock() = json!({"keys": [rsa, ec_jwk]});
    let es = {
        let dir2 = ec_dir.path();
        let issuer = DevIssuer::load_or_create(dir2, Some(base.clone())).expect("ec issuer");
        issuer
            .mint(&MintRequest {
                tenant_id: "t1".into(),
                user_id: "u2".into(),
                ttl: Duration::from_secs(60),
                ..Default::default()
            })
            .expect("es")
    };
    auth.verify(&es).await.expect("es256 after rotation");
    assert_eq!(server.hits.load(Ordering::SeqCst), 2);
    // Garbage kids do not hammer ScaiKey.
    for _ in 0..5 {
        assert!(auth.verify(&rsa_token(&base, "t1", "nope")).await.is_err());
    }
    assert!(server.hits.load(Ordering::SeqCst) <= 3);
}

#[tokio::test]
async fn an_unreachable_or_slow_jwks_is_an_upstream_failure() {
    let (base, server, handle) = jwks_server(json!({"keys": []})).await;
    *server.delay.lock() = Duration::from_secs(3);
    let slow = scaikey_auth(&base, Duration::from_millis(300)).await;
    assert_eq!(
        slow.verify(&rsa_token(&base, "t", "rsa-test")).await.err(),
        Some(AuthError::UpstreamTimeout)
    );
    handle.abort();
    let _ = handle.await;
    let down = scaikey_auth(&base, Duration::from_secs(2)).await;
    assert!(matches!(
        down.verify(&rsa_token(&base, "t", "rsa-test")).await,
        Err(AuthError::Upstream(_))
    ));
    assert!(matches!(
        down.check_upstream().await,
        Err(AuthError::Upstream(_))
    ));
}
