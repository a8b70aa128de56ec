//! `scaidrive-bench --links`: the hot-aggregate ratio for external links.
//! Every recipient download through a link is decided and counted on that
//! link's aggregate (caps keep their counters per link), so downloads
//! through ONE link by 32 concurrent recipients all append to one stream,
//! while 32 recipients over 32 links (one each, same file) append to 32
//! streams. Both are measured through the real server on loopback, with a
//! download cap in force on every link, and the ratio is printed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::support::{self as s, Load, Server};

pub const RECIPIENTS: usize = 32;
const FILE_BYTES: usize = 4096;

async fn run_backend(database_url: Option<&str>, dur: Duration) -> Result<(Load, Load), String> {
    let server = Server::start(database_url).await?;
    let http = s::client(RECIPIENTS)?;
    let base = server.base.clone();
    let token = server.token("bench", "bench")?;
    let (_, share) = s::me_and_share(&http, &base, &token, "links").await?;
    let form = reqwest::multipart::Form::new()
        .text("share_id", share.clone())
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![7u8; FILE_BYTES]).file_name("shared.bin"),
        );
    let file = s::ok_json(
        http.post(format!("{base}/files"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await?;
    let file_id = file["id"]
        .as_str()
        .ok_or(format!("upload failed: {file}"))?;
    let mut tokens = Vec::with_capacity(RECIPIENTS);
    for _ in 0..RECIPIENTS {
        let link = s::post_json(
            &http,
            &format!("{base}/external/links"),
            &token,
            &json!({
                "resource_type": "file", "resource_id": file_id, "share_id": share,
                "link_type": "DOWNLOAD", "max_downloads": 1_000_000_000u64,
            }),
        )
        .await?;
        tokens.push(
            link["token"]
                .as_str()
                .ok_or(format!("no token in {link}"))?
                .to_owned(),
        );
    }
    let tokens = Arc::new(tokens);
    let measure = |spread: bool| {
        let (http, base, tokens) = (http.clone(), base.clone(), tokens.clone());
        s::load(RECIPIENTS, dur, move |w, _| {
            let link = if spread { &tokens[w] } else { &tokens[0] };
            let req = http.get(format!("{base}/public/links/{link}/content"));
            async move { s::expect_status(req, 200).await }
        })
    };
    // Warm up connections and caches on both setups first.
    measure(false).await?;
    measure(true).await?;
    let one = measure(false).await?;
    let spread = measure(true).await?;
    server.stop().await;
    Ok((one, spread))
}

/// Prints downloads/s through one link and over 32 links, and the ratio.
pub async fn run(postgres_url: Option<&str>, seconds: u64) -> Result<(), String> {
    let dur = Duration::from_secs(seconds.max(1));
    eprintln!("links: sqlite, {RECIPIENTS} recipients …");
    let mut all = vec![("sqlite", run_backend(None, dur).await?)];
    if let Some(url) = postgres_url {
        eprintln!("links: postgres, {RECIPIENTS} recipients …");
        let r = s::with_scratch_postgres(url, "sd_bench_links", |u| async move {
            run_backend(Some(&u), dur).await
        })
        .await?;
        all.push(("postgres", r));
    }
    println!();
    s::print_header();
    for (backend, (one, spread)) in &all {
        s::print_row(
            backend,
            "link downloads: 1 link, 32 recipients",
            RECIPIENTS,
            one,
        );
        s::print_row(
            backend,
            "link downloads: 32 links, 1 each",
            RECIPIENTS,
            spread,
        );
    }
    for (backend, (one, spread)) in &all {
        println!(
            "{backend}: one hot link reaches {:.2} of the spread rate (downloads of {FILE_BYTES} bytes, download cap in force)",
            one.per_sec() / spread.per_sec()
        );
    }
    Ok(())
}
