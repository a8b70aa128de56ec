//! `scaidrive-bench --feed`: how fast a client reads a share's sync feed.
//! One share gets N changes (folder events appended straight to the store,
//! each one a change in the feed); once the read models have them, the whole
//! feed is read from `cursor=0` through `GET /sync/changes`, page by page
//! with the returned cursor, at several page sizes, by one reader and by
//! several readers at once (each reading the whole feed).

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::Value;

use super::support::{self as s, Server};

const PAGE_SIZES: [usize; 3] = [100, 1000, 5000];
const READERS: usize = 4;

struct Read {
    what: String,
    readers: usize,
    changes: u64,
    took: Duration,
    page_p50_us: u64,
    page_p99_us: u64,
}

/// Reads the whole feed once; answers the changes seen and page latencies.
async fn read_feed(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    share: &str,
    limit: usize,
    hist: &mut Histogram<u64>,
) -> Result<u64, String> {
    let mut cursor = "0".to_owned();
    let mut seen = 0u64;
    loop {
        let t = Instant::now();
        let page: Value = s::ok_json(
            http.get(format!("{base}/sync/changes"))
                .query(&[
                    ("share_id", share),
                    ("cursor", &cursor),
                    ("limit", &limit.to_string()),
                ])
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| e.to_string())?,
        )
        .await?;
        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
        let n = page["changes"].as_array().map(Vec::len).unwrap_or(0);
        seen += n as u64;
        cursor = page["cursor"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| page["cursor"].as_i64().map(|c| c.to_string()))
            .ok_or(format!("no cursor in the page: {}", page["cursor"]))?;
        if page["has_more"] != Value::Bool(true) {
            return Ok(seen);
        }
        if n == 0 {
            return Err("has_more with an empty page".into());
        }
    }
}

async fn run_backend(
    database_url: Option<&str>,
    changes: usize,
) -> Result<(u64, Vec<Read>), String> {
    let server = Server::start(database_url).await?;
    let http = s::client(READERS)?;
    let token = server.token("bench", "bench")?;
    let (me, share) = s::me_and_share(&http, &server.base, &token, "feed").await?;
    let (_, head) = s::bulk_folders(
        &server.state,
        me["tenant_id"].as_str().unwrap_or_default(),
        me["id"].as_str().unwrap_or_default(),
        std::slice::from_ref(&share),
        changes.div_ceil(2),
        500,
    )
    .await?;
    s::caught_up(&server.state, head).await?;
    let mut rows = Vec::new();
    let mut in_feed = 0;
    for limit in PAGE_SIZES {
        for readers in [1, READERS] {
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..readers {
                let (http, base, token, share) = (
                    http.clone(),
                    server.base.clone(),
                    token.clone(),
                    share.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                        .map_err(|e| e.to_string())?;
                    let n = read_feed(&http, &base, &token, &share, limit, &mut hist).await?;
                    Ok::<_, String>((n, hist))
                }));
            }
            let mut hist =
                Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
            let mut total = 0;
            for task in tasks {
                let (n, h) = task.await.map_err(|e| e.to_string())??;
                in_feed = n;
                total += n;
                hist.add(h).map_err(|e| e.to_string())?;
            }
            rows.push(Read {
                what: format!("GET /sync/changes, limit={limit}"),
                readers,
                changes: total,
                took: t.elapsed(),
                page_p50_us: hist.value_at_quantile(0.5),
                page_p99_us: hist.value_at_quantile(0.99),
            });
        }
    }
    server.stop().await;
    Ok((in_feed, rows))
}

/// Prints the feed table for SQLite (and PostgreSQL with a URL).
pub async fn run(postgres_url: Option<&str>, changes: usize) -> Result<(), String> {
    eprintln!("feed: sqlite, {changes} changes in one share …");
    let mut all = vec![("sqlite", run_backend(None, changes).await?)];
    if let Some(url) = postgres_url {
        eprintln!("feed: postgres, {changes} changes in one share …");
        let r = s::with_scratch_postgres(url, "sd_bench_feed", |u| async move {
            run_backend(Some(&u), changes).await
        })
        .await?;
        all.push(("postgres", r));
    }
    println!();
    println!(
        "{:<9} {:<34} {:>7} {:>9} {:>10} {:>12} {:>12}",
        "backend",
        "sync feed read (cursor=0 → end)",
        "readers",
        "changes",
        "changes/s",
        "page p50 µs",
        "page p99 µs"
    );
    for (backend, (in_feed, rows)) in &all {
        for r in rows {
            println!(
                "{:<9} {:<34} {:>7} {:>9} {:>10.0} {:>12} {:>12}",
                backend,
                r.what,
                r.readers,
                r.changes,
                r.changes as f64 / r.took.as_secs_f64(),
                r.page_p50_us,
                r.page_p99_us
            );
        }
        println!("{backend}: the share's feed holds {in_feed} changes");
    }
    Ok(())
}
