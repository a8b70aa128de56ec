//! `scaidrive-bench --drive`: content and metadata throughput through the
//! real HTTP server on loopback, beside the same bytes written to and read
//! from the local disk directly.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::app::Application;
use crate::auth::{DevIssuer, MintRequest};
use crate::config::Config;

const CHUNK: usize = 4 * 1024 * 1024;

fn chunk_bytes(seed: &[u8], index: usize) -> Vec<u8> {
    // Distinct per chunk (no accidental dedup), cheap to make.
    let mut c = seed.to_vec();
    for (i, b) in (index as u64).to_le_bytes().iter().enumerate() {
        c[i] ^= b;
        c[CHUNK - 1 - i] ^= b;
    }
    c
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / d.as_secs_f64()
}

/// Runs the drive benchmarks and prints their table.
pub async fn run(size_mb: u64, items: usize) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let mut config = Config::embedded(dir.path().to_path_buf());
    config.consistency_wait = Duration::from_secs(30);
    // The benchmark is one client on purpose; it measures throughput, not limits.
    config.rate_limits = crate::ratelimit::Limits {
        per_token: u64::MAX / 4,
        per_user: u64::MAX / 4,
        per_tenant: u64::MAX / 4,
    };
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://{}/api/v1", app.local_addr());
    let services = app.state();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stop_rx.await;
    }));
    let issuer = DevIssuer::load_or_create(dir.path(), None).map_err(|e| e.to_string())?;
    let token = issuer
        .mint(&MintRequest {
            tenant_id: "bench".into(),
            user_id: "bench".into(),
            ttl: Duration::from_secs(7200),
            ..MintRequest::new("bench", "bench")
        })
        .map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let me: Value = http
        .get(format!("{base}/users/me"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let share: Value = http
        .post(format!("{base}/shares"))
        .bearer_auth(&token)
        .json(&json!({"name": "bench", "share_type": "project", "owner_id": me["id"]}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let share_id = share["id"].as_str().unwrap_or_default().to_owned();

    let n_chunks = ((size_mb * 1_048_576) as usize).div_ceil(CHUNK);
    let total = (n_chunks * CHUNK) as u64;
    let mut seed = vec![0u8; CHUNK];
    rand::Rng::fill(&mut rand::thread_rng(), seed.as_mut_slice());
    let mut rows: Vec<(String, String)> = Vec::new();

    // Raw disk: the same bytes, written and read back in 4 MiB blocks.
    let raw_path = dir.path().join("raw.bin");
    let t = Instant::now();
    {
        let mut f = std::fs::File::create(&raw_path).map_err(|e| e.to_string())?;
        for i in 0..n_chunks {
            f.write_all(&chunk_bytes(&seed, i))
                .map_err(|e| e.to_string())?;
        }
        f.sync_all().map_err(|e| e.to_string())?;
    }
    let raw_write = t.elapsed();
    let t = Instant::now();
    {
        let mut f = std::fs::File::open(&raw_path).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; CHUNK];
        let mut h = Sha256::new();
        while f.read(&mut buf).map_err(|e| e.to_string())? > 0 {
            h.update(&buf[..1]);
        }
    }
    let raw_read = t.elapsed();
    std::fs::remove_file(&raw_path).map_err(|e| e.to_string())?;
    rows.push((
        "raw disk write (4 MiB blocks, fsync)".into(),
        format!("{:.0} MB/s", mbps(total, raw_write)),
    ));
    rows.push((
        "raw disk read (page cache warm)".into(),
        format!("{:.0} MB/s", mbps(total, raw_read)),
    ));

    // Resumable upload: 4 chunk PUTs in flight.
    let hashes: Vec<String> = (0..n_chunks)
        .map(|i| hex::encode(Sha256::digest(chunk_bytes(&seed, i))))
        .collect();
    let start = |name: &str| {
        http.post(format!("{base}/uploads")).bearer_auth(&token).json(&json!({
            "share_id": share_id, "file_name": name, "file_size": total, "chunk_size": CHUNK, "chunk_hashes": hashes,
        }))
    };
    let session: Value = start("big.bin")
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let sid = session["session_id"]
        .as_str()
        .ok_or(format!("upload start failed: {session}"))?
        .to_owned();
    let t = Instant::now();
    let puts = futures::stream::iter(0..n_chunks)
        .map(|i| {
            let (http, base, token, sid, body) = (
                http.clone(),
                base.clone(),
                token.clone(),
                sid.clone(),
                chunk_bytes(&seed, i),
            );
            async move {
                let r = http
                    .put(format!("{base}/uploads/{sid}/chunks/{i}"))
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("chunk {i}: {}", r.status()))
                }
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<Result<(), String>>>()
        .await;
    puts.into_iter().collect::<Result<Vec<()>, String>>()?;
    let done: Value = http
        .post(format!("{base}/uploads/{sid}/complete"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let upload = t.elapsed();
    let file_id = done["id"]
        .as_str()
        .ok_or(format!("complete failed: {done}"))?
        .to_owned();
    rows.push((
        format!("upload {size_mb} MiB (resumable, 4 parallel chunk PUTs, incl. complete)"),
        format!("{:.0} MB/s", mbps(total, upload)),
    ));

    // Download, streamed.
    let t = Instant::now();
    let resp = http
        .get(format!("{base}/files/{file_id}/content"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let mut stream = resp.bytes_stream();
    let mut got = 0u64;
    while let Some(b) = stream.next().await {
        got += b.map_err(|e| e.to_string())?.len() as u64;
    }
    let download = t.elapsed();
    if got != total {
        return Err(format!("download returned {got} of {total} bytes"));
    }
    rows.push((
        format!("download {size_mb} MiB (streamed)"),
        format!("{:.0} MB/s", mbps(total, download)),
    ));

    // Re-upload of identical content: nothing to send.
    let again: Value = start("same.bin")
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let missing = again["missing_chunks"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(usize::MAX);
    rows.push((
        "re-upload identical content: chunk bytes to send".into(),
        format!("{} bytes ({missing} chunks missing)", missing * CHUNK),
    ));

    // Metadata: create files, then page through a folder of `items` entries.
    let folder: Value = http
        .post(format!("{base}/folders"))
        .bearer_auth(&token)
        .json(&json!({"share_id": share_id, "name": "many"}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let folder_id = folder["id"]
        .as_str()
        .ok_or("folder create failed")?
        .to_owned();
    let t = Instant::now();
    let creates = futures::stream::iter(0..items)
        .map(|i| {
            let (http, base, token, share_id, folder_id) = (
                http.clone(),
                base.clone(),
                token.clone(),
                share_id.clone(),
                folder_id.clone(),
            );
            async move {
                let form = reqwest::multipart::Form::new()
                    .text("share_id", share_id)
                    .text("folder_id", folder_id)
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(format!("file {i}").into_bytes())
                            .file_name(format!("f{i:05}.txt")),
                    );
                let r = http
                    .post(format!("{base}/files"))
                    .bearer_auth(&token)
                    .multipart(form)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("create {i}: {}", r.status()))
                }
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<Result<(), String>>>()
        .await;
    creates.into_iter().collect::<Result<Vec<()>, String>>()?;
    let create = t.elapsed();
    rows.push((
        format!("create file (small, 8 clients), {items} files"),
        format!("{:.0} ops/s", items as f64 / create.as_secs_f64()),
    ));
    let (list, seen) = list_all(&http, &base, &token, &folder_id).await?;
    rows.push((
        format!("list a {items}-item folder (pages of 100)"),
        per_page(list, seen),
    ));

    // The permission index: a regular member lists the same folder, first
    // with no ACLs in the share, then with one child in 50 denying them.
    let member = issuer
        .mint(&MintRequest {
            scopes: vec!["files:read".into(), "files:write".into()],
            ttl: Duration::from_secs(7200),
            ..MintRequest::new("bench", "member")
        })
        .map_err(|e| e.to_string())?;
    let member_me: Value = get_json(&http, &format!("{base}/users/me"), &member).await?;
    let added = http
        .post(format!("{base}/shares/{share_id}/members"))
        .bearer_auth(&token)
        .json(&json!({"principal_type": "user", "principal_id": member_me["id"], "role": "contributor"}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !added.status().is_success() {
        return Err(format!("adding the member: {}", added.status()));
    }
    let (list, seen) = list_all(&http, &base, &member, &folder_id).await?;
    rows.push((
        "list it as a member (role only, no ACLs)".to_string(),
        per_page(list, seen),
    ));
    let mut denied = 0usize;
    let mut offset = 0usize;
    while offset < items {
        let page: Value = get_json(
            &http,
            &format!("{base}/folders/{folder_id}/children?limit=100&offset={offset}"),
            &token,
        )
        .await?;
        let ids: Vec<String> = page["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            break;
        }
        for id in ids.iter().step_by(50) {
            let r = http
                .post(format!("{base}/permissions/acl/file/{id}"))
                .bearer_auth(&token)
                .json(&json!({"principal_type": "user", "principal_id": member_me["id"], "permissions": ["READ"], "ace_type": "deny"}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !r.status().is_success() {
                return Err(format!("adding an ACL entry: {}", r.status()));
            }
            denied += 1;
        }
        offset += ids.len();
    }
    let (list, seen) = list_all(&http, &base, &member, &folder_id).await?;
    rows.push((
        format!("list it as a member with {denied} children denying them"),
        per_page(list, seen),
    ));

    // Rebuilding every read model from the log this run wrote.
    for name in services.projector.names() {
        let t = Instant::now();
        let events = services
            .projector
            .rebuild(name, |_| {})
            .await
            .map_err(|e| e.to_string())?;
        rows.push((
            format!("rebuild projection '{name}' from the log"),
            format!(
                "{:.0} events/s ({events} events)",
                events as f64 / t.elapsed().as_secs_f64()
            ),
        ));
    }

    let _ = stop_tx.send(());
    let _ = server.await;
    if let Some(peak) = peak_rss_mib() {
        rows.push((
            "peak RSS of the whole process (server + client)".into(),
            format!("{peak} MiB"),
        ));
    }
    println!();
    println!("{:<68} result", "drive operation");
    for (k, v) in rows {
        println!("{k:<68} {v}");
    }
    Ok(())
}

async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Result<Value, String> {
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}

/// Pages through a folder's children; answers the time taken and items seen.
async fn list_all(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    folder_id: &str,
) -> Result<(Duration, usize), String> {
    let t = Instant::now();
    let mut seen = 0usize;
    loop {
        let page = get_json(
            http,
            &format!("{base}/folders/{folder_id}/children?limit=100&offset={seen}"),
            token,
        )
        .await?;
        let n = page["items"].as_array().map(|a| a.len()).unwrap_or(0);
        if n == 0 {
            return Ok((t.elapsed(), seen));
        }
        seen += n;
    }
}

fn per_page(list: Duration, seen: usize) -> String {
    format!(
        "{:.0} ms total, {:.1} ms/page, {seen} items",
        list.as_secs_f64() * 1000.0,
        list.as_secs_f64() * 1000.0 / (seen as f64 / 100.0).ceil().max(1.0)
    )
}

/// The process's peak resident set size (Linux), in MiB.
fn peak_rss_mib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}
