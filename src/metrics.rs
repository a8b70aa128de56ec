//! Prometheus metrics: counters kept in-process, rendered as text at
//! `GET /metrics` (SPEC §4.11).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// Upper bounds (seconds) of the request-duration histogram.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Every counter the service exports.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<(String, String), Histogram>>,
    events_appended: Mutex<BTreeMap<String, u64>>,
    rate_limit_rejections: Mutex<BTreeMap<&'static str, u64>>,
    upload_bytes: AtomicU64,
    chunks_deduplicated: AtomicU64,
    sync_conflicts: AtomicU64,
}

impl Metrics {
    /// One answered request; `path` is the route template, not the raw path.
    pub fn request(&self, method: &str, path: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .entry((method.to_owned(), path.to_owned(), status))
            .or_default() += 1;
        let mut d = self.durations.lock();
        let h = d.entry((method.to_owned(), path.to_owned())).or_default();
        h.count += 1;
        h.sum += seconds;
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                h.counts[i] += 1;
            }
        }
    }

    pub fn events_appended<'a>(&self, types: impl IntoIterator<Item = &'a str>) {
        let mut m = self.events_appended.lock();
        for t in types {
            *m.entry(t.to_owned()).or_default() += 1;
        }
    }

    pub fn rate_limited(&self, dimension: &'static str) {
        *self
            .rate_limit_rejections
            .lock()
            .entry(dimension)
            .or_default() += 1;
    }

    pub fn upload_bytes(&self, n: u64) {
        self.upload_bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn chunks_deduplicated(&self, n: u64) {
        self.chunks_deduplicated.fetch_add(n, Ordering::Relaxed);
    }

    /// A device's change met a newer server state (whatever the strategy).
    pub fn sync_conflict(&self) {
        self.sync_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with `lag` per projection and the
    /// worker `leases` this process holds added.
    pub fn render(&self, lag: &[(&str, i64)], leases: &[(String, bool)]) -> String {
        let mut out = String::new();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        out.push_str("# HELP scaidrive_requests_total HTTP requests answered.\n# TYPE scaidrive_requests_total counter\n");
        for ((m, p, s), n) in self.requests.lock().iter() {
            let _ = writeln!(
                out,
                "scaidrive_requests_total{{method=\"{}\",path=\"{}\",status=\"{s}\"}} {n}",
                esc(m),
                esc(p)
            );
        }
        out.push_str(
            "# HELP scaidrive_request_duration_seconds Time to answer a request.\n# TYPE scaidrive_request_duration_seconds histogram\n",
        );
        for ((m, p), h) in self.durations.lock().iter() {
            let labels = format!("method=\"{}\",path=\"{}\"", esc(m), esc(p));
            for (i, b) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "scaidrive_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "scaidrive_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "scaidrive_request_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "scaidrive_request_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        out.push_str("# HELP scaidrive_events_appended_total Events appended to the log by this process.\n# TYPE scaidrive_events_appended_total counter\n");
        for (t, n) in self.events_appended.lock().iter() {
            let _ = writeln!(
                out,
                "scaidrive_events_appended_total{{event_type=\"{}\"}} {n}",
                esc(t)
            );
        }
        out.push_str("# HELP scaidrive_rate_limit_rejections_total Requests refused by a rate limit.\n# TYPE scaidrive_rate_limit_rejections_total counter\n");
        for d in ["token", "user", "tenant"] {
            let n = self
                .rate_limit_rejections
                .lock()
                .get(d)
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "scaidrive_rate_limit_rejections_total{{dimension=\"{d}\"}} {n}"
            );
        }
        out.push_str("# HELP scaidrive_uploads_bytes_total Content bytes received by uploads.\n# TYPE scaidrive_uploads_bytes_total counter\n");
        let _ = writeln!(
            out,
            "scaidrive_uploads_bytes_total {}",
            self.upload_bytes.load(Ordering::Relaxed)
        );
        out.push_str("# HELP scaidrive_chunks_deduplicated_total Chunks the tenant already stored.\n# TYPE scaidrive_chunks_deduplicated_total counter\n");
        let _ = writeln!(
            out,
            "scaidrive_chunks_deduplicated_total {}",
            self.chunks_deduplicated.load(Ordering::Relaxed)
        );
        out.push_str("# HELP scaidrive_sync_conflicts_total Sync changes that met a newer server version.\n# TYPE scaidrive_sync_conflicts_total counter\n");
        let _ = writeln!(
            out,
            "scaidrive_sync_conflicts_total {}",
            self.sync_conflicts.load(Ordering::Relaxed)
        );
        out.push_str("# HELP scaidrive_projection_lag_events Events the read model is behind the log.\n# TYPE scaidrive_projection_lag_events gauge\n");
        for (name, l) in lag {
            let _ = writeln!(
                out,
                "scaidrive_projection_lag_events{{projection=\"{}\"}} {l}",
                esc(name)
            );
        }
        out.push_str("# HELP scaidrive_worker_lease_held Whether this process holds the worker's lease (and does its work).\n# TYPE scaidrive_worker_lease_held gauge\n");
        for (worker, held) in leases {
            let _ = writeln!(
                out,
                "scaidrive_worker_lease_held{{worker=\"{}\"}} {}",
                esc(worker),
                u8::from(*held)
            );
        }
        out
    }
}
