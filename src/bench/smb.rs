//! `scaidrive bench --smb`: an SMB connector importing from a local Samba
//! (started with scripts/samba in a temp dir) beside `smbclient` copying the
//! same trees in the same run: many small files, one large file, and an
//! incremental run over the unchanged small tree.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::app::Application;
use crate::auth::{DevIssuer, MintRequest};
use crate::config::Config;

const USER: &str = "scaitest";
const PASSWORD: &str = "scaitest-pass";

fn samba_script() -> String {
    std::env::var("SCAIDRIVE_SAMBA_SCRIPT").unwrap_or_else(|_| "scripts/samba".into())
}

/// Starts smbd in `dir`; answers its port.
fn start_samba(dir: &Path) -> Result<u16, String> {
    let out = Command::new(samba_script())
        .arg("start")
        .arg(dir)
        .output()
        .map_err(|e| format!("scripts/samba: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("SCAIDRIVE_TEST_SMBD="))
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| "scripts/samba printed no port".to_owned())
}

fn smbclient_get(port: u16, remote_dir: &str, local: &Path) -> Result<Duration, String> {
    std::fs::create_dir_all(local).map_err(|e| e.to_string())?;
    let start = Instant::now();
    let status = Command::new("smbclient")
        .arg("//127.0.0.1/data")
        .arg("-p")
        .arg(port.to_string())
        .arg("-U")
        .arg(format!("{USER}%{PASSWORD}"))
        .arg("-c")
        .arg(format!(
            "recurse ON; prompt OFF; lcd {}; cd {remote_dir}; mget *",
            local.display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("smbclient: {e}"))?;
    if !status.success() {
        return Err("smbclient failed".into());
    }
    Ok(start.elapsed())
}

async fn json_ok(resp: reqwest::Response) -> Result<Value, String> {
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body)
}

/// Starts a run and waits for it; answers its duration and record.
async fn timed_sync(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
) -> Result<(Duration, Value), String> {
    let start = Instant::now();
    let run = json_ok(
        http.post(format!("{base}/smb-connectors/{id}/sync"))
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await?;
    let run_id = run["run_id"].clone();
    loop {
        let runs = json_ok(
            http.get(format!("{base}/smb-connectors/{id}/runs"))
                .bearer_auth(token)
                .send()
                .await
                .map_err(|e| e.to_string())?,
        )
        .await?;
        if let Some(r) = runs["runs"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["id"] == run_id))
        {
            if r["status"] != "running" {
                if r["status"] != "succeeded" {
                    return Err(format!("the run failed: {r}"));
                }
                return Ok((start.elapsed(), r.clone()));
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(small_files: usize, big_mb: u64) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let samba_dir = tmp.path().join("samba");
    let port = start_samba(&samba_dir)?;
    let share_dir = samba_dir.join("share");
    // The trees: small files in 100 folders, one large file.
    let small_size = 4096usize;
    for i in 0..small_files {
        let d = share_dir.join(format!("small/d{:03}", i % 100));
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let data: Vec<u8> = (0..small_size)
            .map(|j| ((i * 31 + j) % 251) as u8)
            .collect();
        std::fs::write(d.join(format!("f{i:05}.bin")), data).map_err(|e| e.to_string())?;
    }
    std::fs::create_dir_all(share_dir.join("big")).map_err(|e| e.to_string())?;
    {
        use std::io::Write;
        let mut f =
            std::fs::File::create(share_dir.join("big/big.bin")).map_err(|e| e.to_string())?;
        let block: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 253) as u8).collect();
        for n in 0..big_mb {
            let mut b = block.clone();
            b[0] = n as u8;
            b[1] = (n >> 8) as u8;
            f.write_all(&b).map_err(|e| e.to_string())?;
        }
    }
    let _ = Command::new("chmod")
        .arg("-R")
        .arg("0777")
        .arg(&share_dir)
        .status();

    let small_bytes = (small_files * small_size) as f64;
    let big_bytes = (big_mb << 20) as f64;
    let sc_small = smbclient_get(port, "small", &tmp.path().join("sc-small"))?;
    let sc_big = smbclient_get(port, "big", &tmp.path().join("sc-big"))?;

    let data = tmp.path().join("server");
    let mut config = Config::embedded(data.clone());
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
    let issuer = DevIssuer::load_or_create(&data, None).map_err(|e| e.to_string())?;
    let token = issuer
        .mint(&MintRequest {
            ttl: Duration::from_secs(7200),
            ..MintRequest::new("bench-smb", "admin")
        })
        .map_err(|e| e.to_string())?;
    let http = reqwest::Client::new();
    let me = json_ok(
        http.get(format!("{base}/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await?;
    let share = json_ok(
        http.post(format!("{base}/shares"))
            .bearer_auth(&token)
            .json(&json!({"name": "SMB bench", "share_type": "project", "owner_id": me["id"]}))
            .send()
            .await
            .map_err(|e| e.to_string())?,
    )
    .await?;
    let mut ids = Vec::new();
    for (base_path, target) in [("small", "small"), ("big", "big")] {
        let c = json_ok(
            http.post(format!("{base}/smb-connectors"))
                .bearer_auth(&token)
                .json(&json!({
                    "name": base_path, "server_host": "127.0.0.1", "server_port": port,
                    "share_name": "data", "base_path": base_path, "username": USER,
                    "password": PASSWORD, "target_share_id": share["id"], "target_path": target,
                    "sync_direction": "smb_to_scaidrive", "sync_interval_minutes": 0,
                }))
                .send()
                .await
                .map_err(|e| e.to_string())?,
        )
        .await?;
        ids.push(c["id"].as_str().unwrap_or_default().to_owned());
    }
    let (cn_small, _) = timed_sync(&http, &base, &token, &ids[0]).await?;
    let (cn_incr, incr) = timed_sync(&http, &base, &token, &ids[0]).await?;
    let (cn_big, _) = timed_sync(&http, &base, &token, &ids[1]).await?;
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = Command::new(samba_script())
        .arg("stop")
        .arg(&samba_dir)
        .status();

    let mbs = |b: f64, d: Duration| b / 1_048_576.0 / d.as_secs_f64();
    let fps = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "SMB connector vs smbclient ({small_files} x {small_size} B files, one {big_mb} MiB file)"
    );
    println!("| what | smbclient | connector | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| small files: files/s | {:.0} | {:.0} | {:.2}x |",
        fps(small_files, sc_small),
        fps(small_files, cn_small),
        sc_small.as_secs_f64() / cn_small.as_secs_f64()
    );
    println!(
        "| large file: MB/s | {:.1} | {:.1} | {:.2}x |",
        mbs(big_bytes, sc_big),
        mbs(big_bytes, cn_big),
        sc_big.as_secs_f64() / cn_big.as_secs_f64()
    );
    println!(
        "| small tree: first run vs incremental (s) | - | {:.2} / {:.2} | {:.1}x faster |",
        cn_small.as_secs_f64(),
        cn_incr.as_secs_f64(),
        cn_small.as_secs_f64() / cn_incr.as_secs_f64()
    );
    println!(
        "(small-file MB/s: smbclient {:.1}, connector {:.1}; incremental run transferred {} bytes)",
        mbs(small_bytes, sc_small),
        mbs(small_bytes, cn_small),
        incr["bytes_transferred"]
    );
    Ok(())
}
