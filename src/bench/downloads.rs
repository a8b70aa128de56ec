//! `scaidrive-bench --downloads`: many concurrent downloads of one large
//! file from a `scaidrive serve` child process on loopback, with the
//! server's resident memory sampled from `/proc/PID/status` throughout.
//! Every download is read to the end and compared byte for byte with what
//! was uploaded. Prints baseline and peak RSS and the aggregate rate.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::auth::{DevIssuer, MintRequest};

/// `scaidrive-bench --downloads` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadsArgs {
    /// Also measure server memory while serving many concurrent downloads.
    #[arg(long)]
    pub downloads: bool,
    /// Concurrent downloads.
    #[arg(long, default_value_t = 1000)]
    pub downloads_count: usize,
    /// Size of the downloaded file, in MiB.
    #[arg(long, default_value_t = 100)]
    pub downloads_size_mb: u64,
    /// The server binary to start; default: `scaidrive` beside this program
    /// (`cargo build --features bench` builds both).
    #[arg(long, env = "SCAIDRIVE_BENCH_SERVER")]
    pub downloads_server: Option<std::path::PathBuf>,
}

/// What one run measured. Memory in KiB.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    pub downloads: usize,
    pub bytes_each: u64,
    /// Server VmRSS after the upload, before any download.
    pub baseline_rss_kib: u64,
    /// Highest server VmRSS sampled while the downloads ran.
    pub peak_rss_kib: u64,
    /// The server's VmHWM (peak RSS over its whole life, upload included).
    pub hwm_kib: u64,
    pub seconds: f64,
    /// Requests answered 503 (and tried again) before their download began.
    pub retried_503: u64,
}

impl DownloadReport {
    /// Aggregate rate, MB (10^6 bytes) per second.
    pub fn mb_per_sec(&self) -> f64 {
        (self.downloads as f64 * self.bytes_each as f64) / 1e6 / self.seconds.max(1e-9)
    }
}

pub async fn run(args: &DownloadsArgs) -> Result<(), String> {
    let exe = match &args.downloads_server {
        Some(path) => path.clone(),
        None => {
            let own = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
            own.with_file_name(format!("scaidrive{}", std::env::consts::EXE_SUFFIX))
        }
    };
    if !exe.is_file() {
        return Err(format!(
            "no server binary at {} (build it with `cargo build --features bench`, or pass --downloads-server)",
            exe.display()
        ));
    }
    eprintln!(
        "downloads: {} concurrent downloads of a {} MiB file …",
        args.downloads_count, args.downloads_size_mb
    );
    let r = measure(
        &exe,
        args.downloads_count,
        args.downloads_size_mb.max(1) * 1024 * 1024,
    )
    .await?;
    println!();
    println!(
        "{:<34} {:>9} {:>8} {:>13} {:>13} {:>13} {:>9} {:>9}",
        "operation",
        "downloads",
        "MiB each",
        "baseline MiB",
        "peak RSS MiB",
        "VmHWM MiB",
        "seconds",
        "MB/s"
    );
    println!(
        "{:<34} {:>9} {:>8} {:>13.1} {:>13.1} {:>13.1} {:>9.1} {:>9.0}",
        "downloads: server memory",
        r.downloads,
        r.bytes_each / (1024 * 1024),
        r.baseline_rss_kib as f64 / 1024.0,
        r.peak_rss_kib as f64 / 1024.0,
        r.hwm_kib as f64 / 1024.0,
        r.seconds,
        r.mb_per_sec()
    );
    println!("requests answered 503 and retried: {}", r.retried_503);
    println!(
        "peak RSS grew {:.1} MiB over the baseline: {:.1} KiB per open download",
        r.peak_rss_kib.saturating_sub(r.baseline_rss_kib) as f64 / 1024.0,
        r.peak_rss_kib.saturating_sub(r.baseline_rss_kib) as f64 / r.downloads.max(1) as f64
    );
    Ok(())
}

/// A `VmRSS:`-style line of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The soft limit on open files of this process (and so of the child).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
}

/// Content that does not deduplicate: a xorshift sequence.
fn content(size: u64) -> Bytes {
    let mut out = Vec::with_capacity(size as usize + 8);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while (out.len() as u64) < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(size as usize);
    Bytes::from(out)
}

async fn json_ok(resp: Result<reqwest::Response, reqwest::Error>) -> Result<Value, String> {
    let resp = resp.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("setup failed with {status}: {body}"));
    }
    Ok(body)
}

/// Starts `exe serve` on loopback, uploads a `size`-byte file, downloads it
/// `downloads` times at once (each read to the end and compared with the
/// upload) and reports the server's memory.
pub async fn measure(exe: &Path, downloads: usize, size: u64) -> Result<DownloadReport, String> {
    // Both ends of every connection live on this machine: this process and
    // the server (which inherits the limit) each need one descriptor each.
    if let Some(limit) = open_files_limit() {
        if limit < downloads as u64 + 256 {
            return Err(format!(
                "open-file limit {limit} is too low for {downloads} downloads: raise it (ulimit -n {})",
                downloads + 1024
            ));
        }
    }
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let issuer = DevIssuer::load_or_create(dir.path(), None).map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut child = tokio::process::Command::new(exe)
        .arg("serve")
        .env("SCAIDRIVE_BIND", format!("127.0.0.1:{port}"))
        .env("SCAIDRIVE_DATA_DIR", dir.path())
        .env_remove("SCAIDRIVE_DATABASE_URL")
        .env_remove("SCAIDRIVE_BLOB_URL")
        .env_remove("SCAIDRIVE_KAFKA_BROKERS")
        .env("SCAIDRIVE_RATE_LIMIT_PER_TOKEN", "100000000")
        .env("SCAIDRIVE_RATE_LIMIT_PER_USER", "100000000")
        .env("SCAIDRIVE_RATE_LIMIT_PER_TENANT", "100000000")
        .env("SCAIDRIVE_DRAIN_DELAY_MS", "0")
        .env("SCAIDRIVE_LOG", "error")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", exe.display()))?;
    let pid = child.id().ok_or("the server exited at once")?;
    let base = format!("http://127.0.0.1:{port}/api/v1");
    let http = reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(downloads)
        .connect_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(r) = http.get(format!("{base}/ready")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the server exited before it was ready: {status}"));
        }
        if Instant::now() > deadline {
            return Err("the server never became ready".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let token = issuer
        .mint(&MintRequest {
            ttl: Duration::from_secs(7200),
            email: Some("reader@bench.test".into()),
            name: Some("reader".into()),
            ..MintRequest::new("bench", "reader")
        })
        .map_err(|e| e.to_string())?;
    let me = json_ok(
        http.get(format!("{base}/users/me"))
            .bearer_auth(&token)
            .send()
            .await,
    )
    .await?;
    let share = json_ok(
        http.post(format!("{base}/shares"))
            .bearer_auth(&token)
            .json(&json!({"name": "Downloads", "share_type": "project", "owner_id": me["id"]}))
            .send()
            .await,
    )
    .await?;
    let data = content(size);
    let form = reqwest::multipart::Form::new()
        .text(
            "share_id",
            share["id"].as_str().unwrap_or_default().to_owned(),
        )
        .part(
            "file",
            reqwest::multipart::Part::stream_with_length(data.clone(), size)
                .file_name("big.bin")
                .mime_str("application/octet-stream")
                .map_err(|e| e.to_string())?,
        );
    let file = json_ok(
        http.post(format!("{base}/files"))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await,
    )
    .await?;
    let file_id = file["id"].as_str().unwrap_or_default().to_owned();
    if file["size"].as_u64() != Some(size) {
        return Err(format!("uploaded file has the wrong size: {file}"));
    }

    // Let the upload's buffers go back before taking the baseline.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = status_kib(pid, "VmRSS:").ok_or("cannot read the server's VmRSS")?;
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling) = (peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                if let Some(rss) = status_kib(pid, "VmRSS:") {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let url = format!("{base}/files/{file_id}/content");
    let retries = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..downloads)
        .map(|i| {
            let (http, url, token, data) = (http.clone(), url.clone(), token.clone(), data.clone());
            let retries = retries.clone();
            tokio::spawn(async move {
                // All requests arrive at once: one whose metadata lookup
                // waited too long for a database connection gets a 503 and,
                // like any client, tries again a moment later.
                let mut attempt = 0u64;
                let mut resp = loop {
                    let resp = http
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .map_err(|e| format!("download {i}: {e}"))?;
                    if resp.status() != 503 || attempt >= 100 {
                        break resp;
                    }
                    attempt += 1;
                    retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200 + (i as u64 % 50) * 10)).await;
                };
                if resp.status() != 200 {
                    return Err(format!("download {i}: status {}", resp.status()));
                }
                let mut offset = 0usize;
                while let Some(piece) = resp
                    .chunk()
                    .await
                    .map_err(|e| format!("download {i} at byte {offset}: {e}"))?
                {
                    let end = offset + piece.len();
                    if data.get(offset..end) != Some(&piece[..]) {
                        return Err(format!("download {i}: wrong bytes at {offset}"));
                    }
                    offset = end;
                }
                if offset != data.len() {
                    return Err(format!(
                        "download {i}: {offset} bytes instead of {}",
                        data.len()
                    ));
                }
                Ok(())
            })
        })
        .collect();
    let mut failures = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let hwm = status_kib(pid, "VmHWM:").unwrap_or(0);
    let _ = child.kill().await;
    if !failures.is_empty() {
        return Err(format!(
            "{} of {downloads} downloads failed, first: {}",
            failures.len(),
            failures[0]
        ));
    }
    Ok(DownloadReport {
        downloads,
        bytes_each: size,
        baseline_rss_kib: baseline,
        peak_rss_kib: peak.load(Ordering::Relaxed),
        hwm_kib: hwm,
        seconds,
        retried_503: retries.load(Ordering::Relaxed),
    })
}
