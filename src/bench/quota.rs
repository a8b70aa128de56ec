//! `scaidrive-bench --quota`: simple uploads per second through the real HTTP
//! server with a hard tenant quota in force, 32 writers into ONE tenant (all
//! reserving on the same tenant account) against 32 writers spread over 32
//! tenants (one account each), and the ratio between the two. Every writer
//! has its own share in both setups, so only the tenant (and its quota
//! account) is shared or not.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app::Application;
use crate::auth::{DevIssuer, MintRequest};
use crate::config::Config;

const WRITERS: usize = 32;
const FILE_BYTES: usize = 4096;

struct Tenant {
    token: String,
    /// One share per writer of this tenant, so both setups differ only in
    /// how many tenants (and tenant accounts) the writers share.
    shares: Vec<String>,
}

async fn json_ok(resp: reqwest::Response) -> Result<Value, String> {
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("setup failed with {status}: {body}"));
    }
    Ok(body)
}

/// Provisions a tenant, gives it a (large) hard quota and `shares` shares.
async fn tenant(
    http: &reqwest::Client,
    base: &str,
    issuer: &DevIssuer,
    name: &str,
    shares: usize,
) -> Result<Tenant, String> {
    let mint = |scopes: Vec<String>| {
        issuer
            .mint(&MintRequest {
                tenant_id: name.into(),
                user_id: "writer".into(),
                scopes,
                ttl: Duration::from_secs(7200),
                ..MintRequest::new(name, "writer")
            })
            .map_err(|e| e.to_string())
    };
    let token = mint(vec![])?;
    let partner = mint(vec!["partner:admin".into()])?;
    let me = json_ok(
        http.get(format!("{base}/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await?;
    json_ok(
        http.put(format!("{base}/quotas/tenant"))
            .bearer_auth(&partner)
            .json(&json!({"limit_bytes": 1u64 << 40}))
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await?;
    let mut ids = Vec::with_capacity(shares);
    for i in 0..shares {
        let share = json_ok(
            http.post(format!("{base}/shares"))
                .bearer_auth(&token)
                .json(&json!({"name": format!("bench-{i}"), "share_type": "project", "owner_id": me["id"]}))
                .send()
                .await
                .map_err(|e| e.to_string())?,
        )
        .await?;
        ids.push(share["id"].as_str().unwrap_or_default().to_owned());
    }
    Ok(Tenant { token, shares: ids })
}

/// Runs `WRITERS` writers for `seconds`, writer `i` into `tenants[i % len]`;
/// answers uploads per second.
async fn measure(
    http: &reqwest::Client,
    base: &str,
    tenants: &[Arc<Tenant>],
    seconds: u64,
) -> Result<f64, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let t = tenants[w % tenants.len()].clone();
        let share = t.shares[w / tenants.len() % t.shares.len()].clone();
        let (http, base) = (http.clone(), base.to_owned());
        let (stop, done, failed) = (stop.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let form = reqwest::multipart::Form::new()
                    .text("share_id", share.clone())
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(vec![(w % 251) as u8; FILE_BYTES])
                            .file_name(format!("w{w}-{n}-{}.bin", uuid::Uuid::now_v7().simple())),
                    );
                let answer = http
                    .post(format!("{base}/files"))
                    .bearer_auth(&t.token)
                    .multipart(form)
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().as_u16() == 201 => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        if failed.fetch_add(1, Ordering::Relaxed) == 0 {
                            let why = match other {
                                Ok(r) => {
                                    format!("{} {}", r.status(), r.text().await.unwrap_or_default())
                                }
                                Err(e) => e.to_string(),
                            };
                            eprintln!("upload failed: {why}");
                        }
                    }
                }
            }
        }));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let elapsed = started.elapsed();
    let failures = failed.load(Ordering::Relaxed);
    if failures > 0 {
        return Err(format!("{failures} uploads failed during the measurement"));
    }
    Ok(done.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64())
}

/// Measures both setups on one backend; answers (one tenant, 32 tenants) uploads/s.
pub async fn run_backend(database_url: Option<String>, seconds: u64) -> Result<(f64, f64), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = Config::embedded(dir.path().to_path_buf());
    if let Some(url) = database_url {
        config.database_url = url;
    }
    config.consistency_wait = Duration::from_secs(30);
    config.rate_limits = crate::ratelimit::Limits {
        per_token: u64::MAX / 4,
        per_user: u64::MAX / 4,
        per_tenant: u64::MAX / 4,
    };
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://{}/api/v1", app.local_addr());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));
    let issuer = DevIssuer::load_or_create(dir.path(), None).map_err(|e| e.to_string())?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(WRITERS * 2)
        .build()
        .map_err(|e| e.to_string())?;
    let one = vec![Arc::new(
        tenant(&http, &base, &issuer, "bench-one", WRITERS).await?,
    )];
    let mut many = Vec::new();
    for i in 0..WRITERS {
        many.push(Arc::new(
            tenant(&http, &base, &issuer, &format!("bench-{i}"), 1).await?,
        ));
    }
    // Warm up connections and caches on both setups before measuring.
    measure(&http, &base, &one, 1).await?;
    measure(&http, &base, &many, 1).await?;
    let single = measure(&http, &base, &one, seconds).await?;
    let spread = measure(&http, &base, &many, seconds).await?;
    let _ = stop_tx.send(());
    let _ = server.await;
    Ok((single, spread))
}

/// Prints uploads/s for both setups and their ratio, per backend.
pub async fn run(postgres_url: Option<&str>, seconds: u64) -> Result<(), String> {
    let mut rows = vec![("sqlite", run_backend(None, seconds).await?)];
    if let Some(url) = postgres_url {
        let result = super::support::with_scratch_postgres(url, "sd_bench_quota", |u| async move {
            run_backend(Some(u), seconds).await
        })
        .await;
        rows.push(("postgres", result?));
    }
    println!();
    println!(
        "{:<9} {:>22} {:>22} {:>7}",
        "backend", "1 tenant, 32 writers", "32 tenants, 1 each", "ratio"
    );
    for (backend, (single, spread)) in rows {
        println!(
            "{:<9} {:>17.0} up/s {:>17.0} up/s {:>7.2}",
            backend,
            single,
            spread,
            single / spread
        );
    }
    println!(
        "(simple uploads of {FILE_BYTES} bytes over loopback HTTP, hard tenant quota in force)"
    );
    Ok(())
}
