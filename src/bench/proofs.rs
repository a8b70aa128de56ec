//! `scaidrive bench --proofs`: the Merkle log's costs, through the same code
//! the server runs (`scaidrive_domain::merkle`, the two-pass node loading,
//! the signed-note signer), over a synthetic leaf set held in memory.
//!
//! - appending leaves to the frontier (what the follower does per event);
//! - inclusion and consistency proof generation at the given tree size
//!   (p50/p99), each through the recording pass and the loaded-node pass;
//! - signing a checkpoint note;
//! - command throughput of a running server with the tree kept against
//!   without it ([`tree_cost`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng as _;
use scaidrive_domain::merkle::{self, Frontier, Hash, NodeId, NodeSource, Recorder};

use super::support::{self as s, Load, Server};
use crate::proofs::{Checkpoint, NamedKey};

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs the proof as the server does: record the nodes it reads, load them
/// (here: copy them out of the full map), then compute over the loaded set.
fn two_pass<T>(
    all: &HashMap<NodeId, Hash>,
    f: impl Fn(&dyn NodeSource) -> Result<T, merkle::MerkleError>,
) -> Result<T, String> {
    let rec = Recorder::default();
    f(&rec).map_err(|e| e.to_string())?;
    let loaded: HashMap<NodeId, Hash> = rec
        .into_ids()
        .into_iter()
        .filter_map(|id| all.get(&id).map(|h| (id, *h)))
        .collect();
    f(&loaded).map_err(|e| e.to_string())
}

pub fn run(leaves: u64, samples: usize) -> Result<(), String> {
    let leaves = leaves.max(2);
    let mut f = Frontier::new();
    let mut nodes: HashMap<NodeId, Hash> = HashMap::with_capacity(leaves as usize * 2);
    let t = Instant::now();
    for i in 0..leaves {
        nodes.extend(f.push(merkle::leaf_hash(&i.to_be_bytes())));
    }
    let build = t.elapsed();
    println!(
        "proofs: {leaves} leaves appended in {:.2}s ({:.0} leaves/s, {} stored nodes)",
        build.as_secs_f64(),
        leaves as f64 / build.as_secs_f64(),
        nodes.len()
    );
    let root = f.root();
    let mut rng = rand::thread_rng();
    let mut incl = Vec::with_capacity(samples);
    for _ in 0..samples {
        let i = rng.gen_range(0..leaves);
        let t = Instant::now();
        let p = two_pass(&nodes, |s| merkle::inclusion_proof(s, i, leaves))?;
        incl.push(t.elapsed().as_secs_f64() * 1e6);
        let leaf = merkle::leaf_hash(&i.to_be_bytes());
        if !merkle::verify_inclusion(i, leaves, &leaf, &p, &root) {
            return Err(format!("inclusion proof of leaf {i} does not verify"));
        }
    }
    incl.sort_by(f64::total_cmp);
    println!(
        "proofs: inclusion proof at {leaves} leaves: p50 {:.1} µs, p99 {:.1} µs ({samples} samples)",
        pct(&incl, 0.5),
        pct(&incl, 0.99)
    );
    let mut cons = Vec::with_capacity(samples);
    for _ in 0..samples {
        let from = rng.gen_range(1..leaves);
        let t = Instant::now();
        two_pass(&nodes, |s| merkle::consistency_proof(s, from, leaves))?;
        cons.push(t.elapsed().as_secs_f64() * 1e6);
    }
    cons.sort_by(f64::total_cmp);
    println!(
        "proofs: consistency proof to {leaves} leaves: p50 {:.1} µs, p99 {:.1} µs",
        pct(&cons, 0.5),
        pct(&cons, 0.99)
    );
    let key = NamedKey::new("bench.local/log", [7; 32]).map_err(|e| e.to_string())?;
    let cp = Checkpoint {
        origin: "bench.local/log".into(),
        size: leaves,
        root,
    };
    let n = 2000;
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        bytes += key.sign(&cp).len();
    }
    println!(
        "proofs: signing a checkpoint note: {:.1} µs each ({} bytes)",
        t.elapsed().as_secs_f64() * 1e6 / n as f64,
        bytes / n
    );
    Ok(())
}

/// Writers of the tree-cost measurement.
const TREE_WRITERS: usize = 16;

/// The create-folder command on the bus of a running server for `dur`,
/// with its tree follower on or off, and how many events the tree still
/// lacked when the load stopped (0 when off).
async fn commands_with_tree(
    url: Option<&str>,
    tree: bool,
    dur: Duration,
) -> Result<(Load, u64), String> {
    let server = Server::start_with(url, |c| c.proofs.enabled = tree).await?;
    let http = s::client(4)?;
    let token = server.token("bench", "bench")?;
    let (me, share) = s::me_and_share(&http, &server.base, &token, "bench-tree").await?;
    let ids = s::command_ids(&me, &share)?;
    let state = server.state.clone();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let l = s::load(TREE_WRITERS, dur, move |w, n| {
        let state = state.clone();
        let name = format!("t-{run}-{w}-{n}");
        async move { s::create_root_folder(&state, ids, &name).await.map(drop) }
    })
    .await?;
    let behind = if tree {
        let events = server
            .state
            .db
            .fetch_i64_args("SELECT COUNT(*) FROM events", &[])
            .await
            .map_err(|e| e.to_string())? as u64;
        let size = crate::proofs::tree_size(&server.state.db)
            .await
            .map_err(|e| e.to_string())?;
        events.saturating_sub(size)
    } else {
        0
    };
    server.stop().await;
    Ok((l, behind))
}

/// Command throughput with the Merkle tree kept (its follower reading the
/// log and writing leaves and nodes to the same database while the writers
/// run) against with it off, in the order on, off, off, on on each backend
/// (a fresh database each time), so a drift over the run cancels out.
pub async fn tree_cost(postgres_url: Option<&str>, seconds: u64) -> Result<(), String> {
    let dur = Duration::from_secs(seconds.max(1));
    let mut backends: Vec<(&str, Option<&str>)> = vec![("sqlite", None)];
    if let Some(u) = postgres_url {
        backends.push(("postgres", Some(u)));
    }
    for (name, url) in backends {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        // On, off, off, on: a steady drift (caches warming, the machine's
        // clock) weighs on both sides alike.
        for tree in [true, false, false, true] {
            eprintln!("proofs: {name}, tree {} …", if tree { "on" } else { "off" });
            let (l, behind) = match url {
                None => commands_with_tree(None, tree, dur).await?,
                Some(u) => {
                    s::with_scratch_postgres(u, "sd_bench_tree", |db| async move {
                        commands_with_tree(Some(&db), tree, dur).await
                    })
                    .await?
                }
            };
            println!(
                "proofs: {name}: create-folder commands, {TREE_WRITERS} writers, tree {}: {:.0}/s, p99 {:.1} ms{}",
                if tree { "on " } else { "off" },
                l.per_sec(),
                l.hist.value_at_quantile(0.99) as f64 / 1000.0,
                if tree {
                    format!(", {behind} events not yet in the tree when the load stopped")
                } else {
                    String::new()
                }
            );
            if tree {
                on.push(l.per_sec());
            } else {
                off.push(l.per_sec());
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        println!(
            "proofs: {name}: with the tree on, {:.2}x the command rate with it off (target >= 0.95)",
            mean(&on) / mean(&off)
        );
    }
    Ok(())
}
