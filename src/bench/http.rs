//! `scaidrive-bench --http`: requests per second (and p50/p99) through the
//! real server on loopback for read and write endpoints, beside a bare axum
//! handler served in the same process and driven by the same load generator
//! (N keep-alive connections, bounded by time), and beside the create-folder
//! command run straight on the command bus at the same concurrency, the
//! command-level figure the HTTP write is compared with.

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::support::{self as s, Load, Server};

/// Children of the folder the listing benchmark reads.
const LISTED: usize = 20;

/// A bare axum router: a GET answering a small JSON object, and a POST
/// parsing a JSON body and answering 201 with it.
async fn bare_server() -> Result<(String, tokio::task::JoinHandle<()>), String> {
    let app = Router::new()
        .route("/get", get(|| async { Json(json!({"ok": true})) }))
        .route(
            "/post",
            post(|Json(v): Json<Value>| async move { (axum::http::StatusCode::CREATED, Json(v)) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}"), task))
}

/// One backend's rows: (operation, load).
async fn run_backend(
    database_url: Option<&str>,
    conns: usize,
    dur: Duration,
) -> Result<Vec<(String, Load)>, String> {
    let mut rows = Vec::new();
    let http = s::client(conns)?;

    let (bare, bare_task) = bare_server().await?;
    let bare = Arc::new(bare);
    {
        let (http, bare) = (http.clone(), bare.clone());
        let l = s::load(conns, dur, move |_, _| {
            let req = http.get(format!("{bare}/get"));
            async move { s::expect_status(req, 200).await }
        })
        .await?;
        rows.push(("bare axum GET (baseline)".to_owned(), l));
    }
    {
        let (http, bare) = (http.clone(), bare.clone());
        let l = s::load(conns, dur, move |w, n| {
            let req = http
                .post(format!("{bare}/post"))
                .json(&json!({"share_id": "shr_x", "name": format!("w{w}-{n}")}));
            async move { s::expect_status(req, 201).await }
        })
        .await?;
        rows.push(("bare axum POST JSON (baseline)".to_owned(), l));
    }
    bare_task.abort();

    let server = Server::start(database_url).await?;
    let base = Arc::new(server.base.clone());
    let token = Arc::new(server.token("bench", "bench")?);
    let (me, share) = s::me_and_share(&http, &base, &token, "bench-http").await?;
    let listed = s::post_json(
        &http,
        &format!("{base}/folders"),
        &token,
        &json!({"share_id": share, "name": "listed"}),
    )
    .await?;
    let listed = listed["id"].as_str().unwrap_or_default().to_owned();
    for i in 0..LISTED {
        s::post_json(
            &http,
            &format!("{base}/folders"),
            &token,
            &json!({"share_id": share, "parent_id": listed, "name": format!("child-{i}")}),
        )
        .await?;
    }
    // A second user, a reader of the share: their reads go through the
    // membership check a tenant admin skips.
    let member = Arc::new(server.token("bench", "member")?);
    let member_me = s::get_json(&http, &format!("{base}/users/me"), &member).await?;
    s::post_json(
        &http,
        &format!("{base}/shares/{share}/members"),
        &token,
        &json!({"principal_type": "user", "principal_id": member_me["id"], "role": "reader"}),
    )
    .await?;
    let share = Arc::new(share);
    let listed = Arc::new(listed);

    {
        let (http, base, token, share) = (http.clone(), base.clone(), token.clone(), share.clone());
        let l = s::load(conns, dur, move |_, _| {
            let req = http
                .get(format!("{base}/shares/{share}"))
                .bearer_auth(token.as_str());
            async move { s::expect_status(req, 200).await }
        })
        .await?;
        rows.push(("GET /shares/{id}".to_owned(), l));
    }
    {
        let (http, base, member, share) =
            (http.clone(), base.clone(), member.clone(), share.clone());
        let l = s::load(conns, dur, move |_, _| {
            let req = http
                .get(format!("{base}/shares/{share}"))
                .bearer_auth(member.as_str());
            async move { s::expect_status(req, 200).await }
        })
        .await?;
        rows.push(("GET /shares/{id} (a member)".to_owned(), l));
    }
    {
        let (http, base, token, listed) =
            (http.clone(), base.clone(), token.clone(), listed.clone());
        let l = s::load(conns, dur, move |_, _| {
            let req = http
                .get(format!("{base}/folders/{listed}/children?limit=100"))
                .bearer_auth(token.as_str());
            async move { s::expect_status(req, 200).await }
        })
        .await?;
        rows.push((format!("GET /folders/{{id}}/children ({LISTED} items)"), l));
    }
    // The write as clients send it by default (read-your-writes: the answer
    // waits for the read models and reads the folder back), then for a
    // client that does not need the folder back: answered once the events
    // are in the log (src/http/prefer.rs).
    for (label, prefer) in [
        ("POST /folders (create folder)", None),
        (
            "POST /folders, Prefer: return=minimal",
            Some("return=minimal"),
        ),
    ] {
        let (http, base, token, share) = (http.clone(), base.clone(), token.clone(), share.clone());
        let run = uuid::Uuid::now_v7().simple().to_string();
        let l = s::load(conns, dur, move |w, n| {
            let mut req = http
                .post(format!("{base}/folders"))
                .bearer_auth(token.as_str())
                .json(&json!({"share_id": share.as_str(), "name": format!("h-{run}-{w}-{n}")}));
            if let Some(p) = prefer {
                req = req.header("Prefer", p);
            }
            async move { s::expect_status(req, 201).await }
        })
        .await?;
        rows.push((label.to_owned(), l));
    }
    // The same command the POST runs, straight on the bus: no HTTP,
    // authentication, permission check or read-back; first waiting, as the
    // POST does, until the read models show the write (the projection work
    // each write costs), then without waiting (the bare command).
    let ids = s::command_ids(&me, &share)?;
    for (label, wait) in [
        ("command + read-model wait (bus)", true),
        ("command: create folder (bus)", false),
    ] {
        let state = server.state.clone();
        let run = uuid::Uuid::now_v7().simple().to_string();
        let l = s::load(conns, dur, move |w, n| {
            let state = state.clone();
            let name = format!("c-{run}-{w}-{n}");
            async move {
                let committed = s::create_root_folder(&state, ids, &name).await?;
                if wait {
                    state.caught_up_to(&committed).await;
                }
                Ok(())
            }
        })
        .await?;
        rows.push((label.to_owned(), l));
    }
    server.stop().await;
    Ok(rows)
}

/// Prints the HTTP table for SQLite (and PostgreSQL with a URL).
pub async fn run(postgres_url: Option<&str>, conns: usize, seconds: u64) -> Result<(), String> {
    let dur = Duration::from_secs(seconds.max(1));
    eprintln!("http: sqlite, {conns} connections, {seconds} s per measurement …");
    let mut all = vec![("sqlite", run_backend(None, conns, dur).await?)];
    if let Some(url) = postgres_url {
        eprintln!("http: postgres, {conns} connections, {seconds} s per measurement …");
        let rows = s::with_scratch_postgres(url, "sd_bench_http", |u| async move {
            run_backend(Some(&u), conns, dur).await
        })
        .await?;
        all.push(("postgres", rows));
    }
    println!();
    s::print_header();
    for (backend, rows) in &all {
        for (op, l) in rows {
            s::print_row(backend, op, conns, l);
        }
    }
    for (backend, rows) in &all {
        let find = |k: &str| rows.iter().find(|(op, _)| op.starts_with(k)).map(|r| &r.1);
        if let (Some(h), Some(c)) = (find("POST /folders"), find("command: create folder")) {
            println!(
                "{backend}: HTTP create folder reaches {:.0}% of the create-folder command rate (target ≥ 60%)",
                100.0 * h.per_sec() / c.per_sec()
            );
        }
        if let (Some(h), Some(c)) = (
            find("POST /folders, Prefer: return=minimal"),
            find("command: create folder"),
        ) {
            println!(
                "{backend}: HTTP create folder with Prefer: return=minimal reaches {:.0}% of the create-folder command rate (target ≥ 60%)",
                100.0 * h.per_sec() / c.per_sec()
            );
        }
        if let (Some(h), Some(c)) = (find("POST /folders"), find("command + read-model wait")) {
            println!(
                "{backend}: HTTP create folder reaches {:.0}% of the command + read-model wait rate",
                100.0 * h.per_sec() / c.per_sec()
            );
        }
        if let (Some(h), Some(b)) = (find("GET /shares/"), find("bare axum GET")) {
            println!(
                "{backend}: GET /shares/{{id}} reaches {:.0}% of the bare axum GET rate",
                100.0 * h.per_sec() / b.per_sec()
            );
        }
    }
    Ok(())
}
