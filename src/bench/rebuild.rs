//! `scaidrive-bench --rebuild`: projection rebuild speed. A server on
//! loopback gets a log of N folder events (folders created and renamed,
//! spread over several shares) appended straight to the store; once the live
//! read models have caught up, every projection is rebuilt from the log (the
//! same `Projector::rebuild` the admin endpoint runs: replay into scratch
//! tables, then swap), one after the other, and the events read per second
//! are reported per projection and for the whole set.

use std::time::{Duration, Instant};

use super::support::{self as s, Server};

/// Shares the events are spread over.
const SHARES: usize = 8;

struct Rebuilt {
    projection: &'static str,
    events: u64,
    took: Duration,
}

async fn run_backend(
    database_url: Option<&str>,
    events: usize,
) -> Result<(u64, Vec<Rebuilt>), String> {
    let server = Server::start(database_url).await?;
    let http = s::client(1)?;
    let token = server.token("bench", "bench")?;
    let mut shares = Vec::new();
    let mut me = serde_json::Value::Null;
    for i in 0..SHARES {
        let (m, share) =
            s::me_and_share(&http, &server.base, &token, &format!("rebuild-{i}")).await?;
        me = m;
        shares.push(share);
    }
    let tenant = me["tenant_id"].as_str().unwrap_or_default().to_owned();
    let user = me["id"].as_str().unwrap_or_default().to_owned();
    let (appended, head) = s::bulk_folders(
        &server.state,
        &tenant,
        &user,
        &shares,
        events.div_ceil(2),
        500,
    )
    .await?;
    s::caught_up(&server.state, head).await?;
    let mut rows = Vec::new();
    for name in server.state.projector.names() {
        let t = Instant::now();
        let read = server
            .state
            .projector
            .rebuild(name, |_| {})
            .await
            .map_err(|e| format!("rebuild {name}: {e}"))?;
        rows.push(Rebuilt {
            projection: name,
            events: read,
            took: t.elapsed(),
        });
    }
    server.stop().await;
    Ok((appended, rows))
}

/// Prints the rebuild table for SQLite (and PostgreSQL with a URL).
pub async fn run(postgres_url: Option<&str>, events: usize) -> Result<(), String> {
    eprintln!("rebuild: sqlite, {events} events …");
    let mut all = vec![("sqlite", run_backend(None, events).await?)];
    if let Some(url) = postgres_url {
        eprintln!("rebuild: postgres, {events} events …");
        let r = s::with_scratch_postgres(url, "sd_bench_rebuild", |u| async move {
            run_backend(Some(&u), events).await
        })
        .await?;
        all.push(("postgres", r));
    }
    println!();
    println!(
        "{:<9} {:<40} {:>9} {:>9} {:>10}",
        "backend", "rebuild (replay + swap)", "events", "seconds", "events/s"
    );
    for (backend, (appended, rows)) in &all {
        let mut total = Duration::ZERO;
        let mut read = 0;
        for r in rows {
            total += r.took;
            read += r.events;
            println!(
                "{:<9} {:<40} {:>9} {:>9.2} {:>10.0}",
                backend,
                format!("projection {}", r.projection),
                r.events,
                r.took.as_secs_f64(),
                r.events as f64 / r.took.as_secs_f64()
            );
        }
        println!(
            "{:<9} {:<40} {:>9} {:>9.2} {:>10.0}",
            backend,
            format!("all {} projections, one by one", rows.len()),
            read,
            total.as_secs_f64(),
            read as f64 / total.as_secs_f64()
        );
        println!(
            "{backend}: the log ({appended} bulk folder events + setup) replayed into all {} read models in {:.2} s",
            rows.len(),
            total.as_secs_f64()
        );
    }
    Ok(())
}
