//! `scaidrive bench --search`: the keyword index beside PostgreSQL
//! full-text search (tsvector + GIN) and SQLite FTS5 on the same synthetic
//! corpus, plus the whole path through a server (upload → indexer → HTTP
//! search, permission filtering included) and the index rebuild from a log.
//!
//! Corpus: `files` documents, each a name of three words and a body of 60
//! words drawn from a 20 000-word vocabulary with a Zipf-like skew (a few
//! words are very common, most are rare), seeded so every run and every
//! engine sees the same text. Queries are one or two mid-frequency words.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::support::{self as support, Server};
use crate::search::index::{dir_size, FileDoc, KeywordIndex};

const VOCABULARY: usize = 20_000;
const BODY_WORDS: usize = 60;
const USERS: usize = 16;
const TENANT: &str = "tnt_bench";

fn vocabulary() -> Vec<String> {
    const SYL: &[&str] = &[
        "ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "ve", "zu", "ba", "de", "fi", "go", "hu",
        "ja", "ke", "li", "mo", "ne",
    ];
    (0..VOCABULARY)
        .map(|i| {
            let mut w = String::new();
            let mut n = i;
            for _ in 0..4 {
                w.push_str(SYL[n % SYL.len()]);
                n /= SYL.len();
            }
            w
        })
        .collect()
}

/// A Zipf-like pick: low indexes are much more frequent.
fn pick(rng: &mut StdRng) -> usize {
    let u: f64 = rng.gen_range(0.0..1.0);
    ((VOCABULARY as f64).powf(u) as usize)
        .saturating_sub(1)
        .min(VOCABULARY - 1)
}

fn corpus(files: usize) -> Vec<(String, String)> {
    let words = vocabulary();
    let mut rng = StdRng::seed_from_u64(21);
    (0..files)
        .map(|i| {
            let name = format!(
                "{} {} {} {i}.txt",
                words[pick(&mut rng)],
                words[pick(&mut rng)],
                words[pick(&mut rng)]
            );
            let body: Vec<&str> = (0..BODY_WORDS)
                .map(|_| words[pick(&mut rng)].as_str())
                .collect();
            (name, body.join(" "))
        })
        .collect()
}

/// Mid-frequency query words (each matching roughly 0.1–3 % of files).
fn queries(n: usize) -> Vec<String> {
    let words = vocabulary();
    let mut rng = StdRng::seed_from_u64(7);
    (0..n)
        .map(|_| {
            let a = &words[rng.gen_range(20..400)];
            if rng.gen_bool(0.3) {
                format!("{a} {}", words[rng.gen_range(20..200)])
            } else {
                a.clone()
            }
        })
        .collect()
}

/// What one engine measured.
struct Row {
    engine: &'static str,
    files: usize,
    index_per_sec: f64,
    size_bytes: u64,
    qps: f64,
    p50_us: u64,
    p99_us: u64,
}

fn print(rows: &[Row]) {
    println!();
    println!(
        "{:<34} {:>8} {:>12} {:>10} {:>9} {:>9} {:>9}",
        "engine", "files", "indexed/s", "size MiB", "q/s", "p50 µs", "p99 µs"
    );
    for r in rows {
        println!(
            "{:<34} {:>8} {:>12.0} {:>10.1} {:>9.0} {:>9} {:>9}",
            r.engine,
            r.files,
            r.index_per_sec,
            r.size_bytes as f64 / 1048576.0,
            r.qps,
            r.p50_us,
            r.p99_us
        );
    }
}

/// Runs `query` on `USERS` threads for `dur`.
fn threads_load<F>(dur: Duration, query: F) -> Result<(f64, u64, u64), String>
where
    F: Fn(&str) -> Result<(), String> + Send + Sync + 'static,
{
    let query = Arc::new(query);
    let qs = Arc::new(queries(1000));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let handles: Vec<_> = (0..USERS)
        .map(|u| {
            let (query, qs, stop) = (query.clone(), qs.clone(), stop.clone());
            std::thread::spawn(move || -> Result<(u64, Histogram<u64>), String> {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .map_err(|e| e.to_string())?;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let q = &qs[(u * 61 + n as usize) % qs.len()];
                    let t = Instant::now();
                    query(q)?;
                    let _ = h.record(t.elapsed().as_micros().max(1) as u64);
                    n += 1;
                }
                Ok((n, h))
            })
        })
        .collect();
    std::thread::sleep(dur);
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    let mut hist =
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).map_err(|e| e.to_string())?;
    for h in handles {
        let (n, part) = h
            .join()
            .map_err(|_| "a query thread panicked".to_owned())??;
        total += n;
        hist.add(part).map_err(|e| e.to_string())?;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok((
        total as f64 / secs,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
    ))
}

fn tantivy_row(docs: &[(String, String)], dur: Duration) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ix = KeywordIndex::open(dir.path(), 200_000_000).map_err(|e| e.to_string())?;
    let started = Instant::now();
    for (i, (name, body)) in docs.iter().enumerate() {
        ix.put(&FileDoc {
            file_id: format!("fil_{i:026}"),
            tenant_id: TENANT.into(),
            name: name.clone(),
            content: body.clone(),
            version_id: String::new(),
            extraction: "ok".into(),
        })
        .map_err(|e| e.to_string())?;
    }
    ix.commit(scaidrive_domain::LogPosition::new(1, docs.len() as i64))
        .map_err(|e| e.to_string())?;
    let index_per_sec = docs.len() as f64 / started.elapsed().as_secs_f64();
    let size_bytes = dir_size(dir.path());
    let ix = Arc::new(ix);
    // 50 results, as a page of answers asks; the server asks for every
    // candidate (up to 10 000) to filter permissions, measured below.
    let (qps, p50_us, p99_us) = threads_load(dur, move |q| {
        ix.search(TENANT, q, 50)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })?;
    Ok(Row {
        engine: "tantivy (this index), top 50",
        files: docs.len(),
        index_per_sec,
        size_bytes,
        qps,
        p50_us,
        p99_us,
    })
}

async fn sqlite_row(docs: &[(String, String)], dur: Duration) -> Result<Row, String> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("fts.db");
    let opts = SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let pool = SqlitePoolOptions::new()
        .max_connections(USERS as u32)
        .connect_with(opts)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query("CREATE VIRTUAL TABLE docs USING fts5(file_id UNINDEXED, tenant_id UNINDEXED, name, content, tokenize = 'unicode61')")
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    for (b, part) in docs.chunks(5_000).enumerate() {
        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        for (i, (name, body)) in part.iter().enumerate() {
            sqlx::query(
                "INSERT INTO docs (file_id, tenant_id, name, content) VALUES ($1, $2, $3, $4)",
            )
            .bind(format!("fil_{:026}", b * 5_000 + i))
            .bind(TENANT)
            .bind(name)
            .bind(body)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
    }
    let index_per_sec = docs.len() as f64 / started.elapsed().as_secs_f64();
    let size_bytes = dir_size(dir.path());
    let pool2 = pool.clone();
    let load = support::load(USERS, dur, move |u, n| {
        let pool = pool2.clone();
        async move {
            let qs = queries(1000);
            let q = &qs[(u * 61 + n as usize) % qs.len()];
            sqlx::query("SELECT file_id, bm25(docs, 0, 0, 2.0, 1.0) AS r FROM docs WHERE docs MATCH $1 ORDER BY r LIMIT 50")
                .bind(q)
                .fetch_all(&pool)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await?;
    pool.close().await;
    Ok(Row {
        engine: "SQLite FTS5 (bm25), top 50",
        files: docs.len(),
        index_per_sec,
        size_bytes,
        qps: load.per_sec(),
        p50_us: load.p50_us(),
        p99_us: load.p99_us(),
    })
}

async fn postgres_row(url: &str, docs: &[(String, String)], dur: Duration) -> Result<Row, String> {
    let docs = docs.to_vec();
    support::with_scratch_postgres(url, "scaidrive_bench_fts", move |scratch| async move {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(USERS as u32)
            .connect(&scratch)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(
            "CREATE TABLE docs (file_id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, name TEXT NOT NULL, content TEXT NOT NULL, \
             tsv tsvector GENERATED ALWAYS AS (setweight(to_tsvector('simple', name), 'A') || to_tsvector('simple', content)) STORED)",
        )
        .execute(&pool)
        .await
        .map_err(|e| e.to_string())?;
        sqlx::query("CREATE INDEX docs_tsv ON docs USING GIN (tsv)")
            .execute(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        for (b, part) in docs.chunks(1_000).enumerate() {
            let ids: Vec<String> = (0..part.len()).map(|i| format!("fil_{:026}", b * 1_000 + i)).collect();
            let names: Vec<String> = part.iter().map(|d| d.0.clone()).collect();
            let bodies: Vec<String> = part.iter().map(|d| d.1.clone()).collect();
            sqlx::query("INSERT INTO docs (file_id, tenant_id, name, content) SELECT i, $2, n, c FROM unnest($1::text[], $3::text[], $4::text[]) AS t(i, n, c)")
                .bind(&ids)
                .bind(TENANT)
                .bind(&names)
                .bind(&bodies)
                .execute(&pool)
                .await
                .map_err(|e| e.to_string())?;
        }
        let index_per_sec = docs.len() as f64 / started.elapsed().as_secs_f64();
        sqlx::query("VACUUM ANALYZE docs").execute(&pool).await.map_err(|e| e.to_string())?;
        let size_bytes: i64 = sqlx::query_scalar("SELECT pg_total_relation_size('docs')")
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
        let pool2 = pool.clone();
        let load = support::load(USERS, dur, move |u, n| {
            let pool = pool2.clone();
            async move {
                let qs = queries(1000);
                let q = &qs[(u * 61 + n as usize) % qs.len()];
                sqlx::query("SELECT file_id, ts_rank(tsv, q) AS r FROM docs, plainto_tsquery('simple', $1) q \
                             WHERE tenant_id = $2 AND tsv @@ q ORDER BY r DESC LIMIT 50")
                    .bind(q)
                    .bind(TENANT)
                    .fetch_all(&pool)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        })
        .await?;
        pool.close().await;
        Ok(Row {
            engine: "PostgreSQL FTS (GIN, ts_rank), top 50",
            files: docs.len(),
            index_per_sec,
            size_bytes: size_bytes.max(0) as u64,
            qps: load.per_sec(),
            p50_us: load.p50_us(),
            p99_us: load.p99_us(),
        })
    })
    .await
}

/// Uploads `files` small text files through a server, measures how fast the
/// indexer keeps up, HTTP search at 16 users, and a rebuild from the log.
async fn through_server(files: usize, dur: Duration) -> Result<(), String> {
    let server = Server::start(None).await?;
    let http = support::client(USERS)?;
    let token = server.token("bench", "alice")?;
    let (_, share) = support::me_and_share(&http, &server.base, &token, "Search").await?;
    let docs = Arc::new(corpus(files));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..USERS {
        let (http, base, token, share, docs, next) = (
            http.clone(),
            server.base.clone(),
            token.clone(),
            share.clone(),
            docs.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((name, body)) = docs.get(i) else {
                    return Ok::<(), String>(());
                };
                let form = reqwest::multipart::Form::new()
                    .text("share_id", share.clone())
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(body.clone().into_bytes())
                            .file_name(name.clone())
                            .mime_str("text/plain")
                            .map_err(|e| e.to_string())?,
                    );
                let req = http
                    .post(format!("{base}/files"))
                    .bearer_auth(&token)
                    .header("Prefer", "return=minimal")
                    .multipart(form);
                support::expect_status(req, 201).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    let uploaded = started.elapsed();
    let search = server
        .state
        .search
        .clone()
        .ok_or("the server has no search index")?;
    let head = server.state.store.head().await.map_err(|e| e.to_string())?;
    search.wait_for(head, Duration::from_secs(600)).await;
    let indexed = started.elapsed();
    println!();
    println!(
        "through a server (SQLite): {files} uploads in {:.1} s ({:.0}/s, 16 clients); indexed {:.1} s after the first upload ({:.0} files/s end to end, extraction included)",
        uploaded.as_secs_f64(),
        files as f64 / uploaded.as_secs_f64(),
        indexed.as_secs_f64(),
        files as f64 / indexed.as_secs_f64()
    );
    let qs = Arc::new(queries(1000));
    let (base, t2) = (server.base.clone(), token.clone());
    let http2 = http.clone();
    let load = support::load(USERS, dur, move |u, n| {
        let (http, base, token, qs) = (http2.clone(), base.clone(), t2.clone(), qs.clone());
        async move {
            let q = &qs[(u * 61 + n as usize) % qs.len()];
            let req = http
                .get(format!("{base}/search"))
                .query(&[("q", q.as_str()), ("limit", "50")])
                .bearer_auth(&token);
            support::expect_status(req, 200).await
        }
    })
    .await?;
    support::print_header();
    support::print_row(
        "sqlite",
        "GET /search (HTTP, permission-filtered)",
        USERS,
        &load,
    );

    let settings = crate::search::Settings::from_env(&server.state.config.data_dir);
    let started = Instant::now();
    let events =
        crate::search::indexer::rebuild(&settings, &server.state.store, &server.state.blob, |_| {})
            .await
            .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rebuild of the keyword index from the log: {events} events ({files} files) in {secs:.2} s = {:.0} events/s, {:.0} files/s",
        events as f64 / secs,
        files as f64 / secs
    );
    server.stop().await;
    Ok(())
}

/// The entry point of `bench --search`.
pub async fn run(
    postgres_url: Option<&str>,
    files: usize,
    server_files: usize,
    seconds: u64,
) -> Result<(), String> {
    let dur = Duration::from_secs(seconds.max(1));
    eprintln!("search: generating {files} documents …");
    let docs = corpus(files);
    let mut rows = Vec::new();
    eprintln!("search: tantivy …");
    let d2 = docs.clone();
    rows.push(
        tokio::task::spawn_blocking(move || tantivy_row(&d2, dur))
            .await
            .map_err(|e| e.to_string())??,
    );
    eprintln!("search: SQLite FTS5 …");
    rows.push(sqlite_row(&docs, dur).await?);
    if let Some(url) = postgres_url {
        eprintln!("search: PostgreSQL FTS …");
        rows.push(postgres_row(url, &docs, dur).await?);
    }
    print(&rows);
    if server_files > 0 {
        eprintln!("search: {server_files} uploads through a server …");
        through_server(server_files, dur).await?;
    }
    Ok(())
}

/// Semantic search: how fast the local model embeds chunks on this CPU
/// (with `SCAIDRIVE_EMBEDDING_MODEL_DIR`), and the vector index's query
/// latency over `chunks` chunks of one tenant (synthetic unit vectors of
/// 384 dimensions; the query asks for the best 1000 candidates, as the
/// endpoints do), plus the query's embedding when the model is there.
pub async fn semantic(chunks: usize, seconds: u64) -> Result<(), String> {
    use crate::search::chunk::Chunk;
    use crate::search::embed::{normalize, MiniLm};
    use crate::search::vectors::{FileMeta, Op, StoredChunk, VectorIndex};

    const DIMS: usize = 384;
    const PER_FILE: usize = 10;
    let dur = Duration::from_secs(seconds.max(1));
    let model = match std::env::var("SCAIDRIVE_EMBEDDING_MODEL_DIR") {
        Ok(dir) if !dir.trim().is_empty() => Some(Arc::new(
            MiniLm::load(std::path::Path::new(&dir)).map_err(|e| e.to_string())?,
        )),
        _ => {
            eprintln!("semantic: SCAIDRIVE_EMBEDDING_MODEL_DIR unset: no embedding figures");
            None
        }
    };
    if let Some(m) = &model {
        // Chunks of about 200 words (~250 tokens, what the chunker makes).
        let docs = corpus(64);
        let texts: Vec<String> = docs
            .chunks(3)
            .map(|d| {
                d.iter()
                    .map(|(_, b)| b.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        let m2 = m.clone();
        let (n, secs) = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let mut n = 0usize;
            while started.elapsed() < dur || n == 0 {
                n += m2.embed(&texts).map_err(|e| e.to_string())?.len();
            }
            Ok::<_, String>((n, started.elapsed().as_secs_f64()))
        })
        .await
        .map_err(|e| e.to_string())??;
        println!(
            "semantic: embedded {n} chunks of ~250 tokens in {secs:.2} s: {:.1} chunks/s",
            n as f64 / secs
        );
    }
    eprintln!("semantic: filling a vector index with {chunks} chunks …");
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ix = VectorIndex::open(dir.path()).map_err(|e| e.to_string())?;
    let version: scaidrive_domain::drive::file::Version = serde_json::from_value(serde_json::json!({
        "number": 1, "version_id": scaidrive_domain::id::VersionId::from_uuid(uuid::Uuid::nil()).to_string(), "size": 1, "checksum_sha256": "00",
        "mime_type": "text/plain", "chunk_size": 4194304, "chunks": [],
        "by": scaidrive_domain::id::UserId::from_uuid(uuid::Uuid::nil()).to_string(), "at": "2026-01-01T00:00:00Z",
    }))
    .map_err(|e| e.to_string())?;
    let mut rng = StdRng::seed_from_u64(384);
    let unit = |rng: &mut StdRng| {
        let mut v: Vec<f32> = (0..DIMS).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        normalize(&mut v);
        v
    };
    let started = Instant::now();
    // Kept for the HNSW comparison: (file, chunk) and the vector.
    let mut kept: Vec<((usize, u32), Vec<f32>)> = Vec::with_capacity(chunks);
    for f in 0..chunks.div_ceil(PER_FILE) {
        let id = format!("fil_{f}");
        let stored: Vec<StoredChunk> = (0..PER_FILE.min(chunks - f * PER_FILE))
            .map(|i| {
                let c = Chunk {
                    index: i as u32,
                    page: None,
                    section: None,
                    content: format!("chunk {i} of file {f}"),
                };
                let v = unit(&mut rng);
                let s = StoredChunk::new(&c, &v);
                kept.push(((f, i as u32), v));
                s
            })
            .collect();
        ix.apply(&[
            Op::File {
                id: id.clone(),
                meta: FileMeta {
                    tenant_id: TENANT.into(),
                    share_id: format!("shr_{}", f % 16),
                    name: format!("{f}.txt"),
                    version: version.clone(),
                    trashed: false,
                },
            },
            Op::Chunks { id, chunks: stored },
        ])
        .map_err(|e| e.to_string())?;
    }
    println!(
        "semantic: {} chunks in the index ({:.1} s to fill)",
        ix.chunks(TENANT),
        started.elapsed().as_secs_f64()
    );
    let queries: Vec<Vec<f32>> = (0..256).map(|_| unit(&mut rng)).collect();
    let queries2 = queries.clone();
    let ix = Arc::new(ix);
    let ix2 = ix.clone();
    let hist = tokio::task::spawn_blocking(move || {
        timed(dur, 50, |i| {
            std::hint::black_box(ix2.search(TENANT, &queries[i % queries.len()], 1000, |_| true));
            Ok(())
        })
    })
    .await
    .map_err(|e| e.to_string())??;
    println!(
        "semantic: vector query over {chunks} chunks (top 1000, one thread): {} queries, p50 {:.1} ms, p99 {:.1} ms",
        hist.len(),
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0
    );
    let ix3 = ix.clone();
    tokio::task::spawn_blocking(move || flat_versus_hnsw(&ix3, kept, &queries2, dur))
        .await
        .map_err(|e| e.to_string())??;
    if let Some(m) = model {
        let hist = tokio::task::spawn_blocking(move || {
            let qs = [
                "how many quokkas were counted?",
                "quarterly revenue in Zürich",
                "who approves invoices before payment",
            ];
            timed(dur, 20, |i| {
                m.embed(&[qs[i % qs.len()].to_owned()])
                    .map(drop)
                    .map_err(|e| e.to_string())
            })
        })
        .await
        .map_err(|e| e.to_string())??;
        println!(
            "semantic: query embedding (local model): {} queries, p50 {:.1} ms, p99 {:.1} ms",
            hist.len(),
            hist.value_at_quantile(0.5) as f64 / 1000.0,
            hist.value_at_quantile(0.99) as f64 / 1000.0
        );
    }
    Ok(())
}

/// Times `op` (given the iteration's number) on this thread, again and
/// again for `dur` and at least `min` times; a histogram in microseconds.
fn timed(
    dur: Duration,
    min: usize,
    mut op: impl FnMut(usize) -> Result<(), String>,
) -> Result<Histogram<u64>, String> {
    let mut hist = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < dur || i < min {
        let t = Instant::now();
        op(i)?;
        hist.record(t.elapsed().as_micros() as u64)
            .map_err(|e| e.to_string())?;
        i += 1;
    }
    Ok(hist)
}

/// A unit vector for the HNSW graph; distance is 1 - cosine.
#[derive(Clone)]
struct Unit(Vec<f32>);

impl instant_distance::Point for Unit {
    fn distance(&self, other: &Self) -> f32 {
        1.0 - crate::search::vectors::dot(&self.0, &other.0)
    }
}

/// The exact scan the index does against an HNSW graph (`instant-distance`,
/// M = 32, ef 100) over the same vectors: build time, top-10 query latency
/// on one thread, and the graph's recall@10 against the exact answer.
fn flat_versus_hnsw(
    ix: &crate::search::vectors::VectorIndex,
    kept: Vec<((usize, u32), Vec<f32>)>,
    queries: &[Vec<f32>],
    dur: Duration,
) -> Result<(), String> {
    use instant_distance::{Builder, Search};

    let n = kept.len();
    let mut flat = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    let mut exact: Vec<Vec<(usize, u32)>> = Vec::with_capacity(queries.len());
    for q in queries {
        let t = Instant::now();
        let hits = ix.search(TENANT, q, 10, |_| true);
        flat.record(t.elapsed().as_micros() as u64)
            .map_err(|e| e.to_string())?;
        exact.push(
            hits.iter()
                .map(|h| {
                    let f = h
                        .chunk
                        .file_id
                        .trim_start_matches("fil_")
                        .parse()
                        .unwrap_or(0);
                    (f, h.chunk.chunk_index)
                })
                .collect(),
        );
    }
    eprintln!("semantic: building an HNSW graph over {n} chunks …");
    let (ids, points): (Vec<(usize, u32)>, Vec<Unit>) =
        kept.into_iter().map(|(id, v)| (id, Unit(v))).unzip();
    let started = Instant::now();
    let graph = Builder::default().seed(384).build(points, ids);
    let build = started.elapsed().as_secs_f64();
    let mut found = 0usize;
    let mut search = Search::default();
    let hnsw = timed(dur, queries.len(), |i| {
        let q = Unit(queries[i % queries.len()].clone());
        let top: Vec<(usize, u32)> = graph
            .search(&q, &mut search)
            .take(10)
            .map(|h| *h.value)
            .collect();
        if i < queries.len() {
            found += top.iter().filter(|id| exact[i].contains(id)).count();
        }
        Ok(())
    })?;
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "semantic: top 10 over {n} chunks, one thread: exact scan p50 {:.1} ms p99 {:.1} ms (recall 1.000); \
         HNSW p50 {:.2} ms p99 {:.2} ms, recall@10 {:.3}, built in {build:.1} s",
        ms(&flat, 0.5),
        ms(&flat, 0.99),
        ms(&hnsw, 0.5),
        ms(&hnsw, 0.99),
        found as f64 / (queries.len() * 10) as f64,
    );
    Ok(())
}
