//! How often the access log may record: refused permissions and signed-in
//! content reads are bounded per key and window (and refusals per tenant and
//! minute), so a client looping on a 403 or a video player's range requests
//! cannot flood the log. The entry that is written next for a key carries
//! how many were left out before it (`suppressed`).
//!
//! The bound is in-process: each server instance bounds its own requests, so
//! N instances behind a balancer record at most N times the bound.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The bounds (defaults: one entry per key and minute, 100 refusal entries
/// per tenant and minute).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// At most one refusal entry per (tenant, user, resource, permission) in
    /// this window.
    pub denial_window: Duration,
    /// At most this many refusal entries per tenant and minute.
    pub denials_per_tenant_minute: u32,
    /// At most one read entry per (user, file, version, download or preview
    /// and endpoint) in this window.
    pub read_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            denial_window: Duration::from_secs(60),
            denials_per_tenant_minute: 100,
            read_window: Duration::from_secs(60),
        }
    }
}

/// Keys kept before expired ones are swept out.
const SWEEP_AT: usize = 4096;
/// Keys kept at most: beyond it, expired keys go even with counts pending.
const MAX_KEYS: usize = 100_000;
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// When the key's last entry was admitted (`None`: never, only refused
    /// by the tenant ceiling so far).
    recorded_at: Option<Instant>,
    /// Occurrences left out since then.
    suppressed: u64,
}

/// Admits at most one occurrence per key and window, and optionally at most
/// `ceiling` per tenant and minute.
#[derive(Debug)]
pub struct Throttle<K> {
    window: Duration,
    ceiling: Option<u32>,
    keys: HashMap<K, Slot>,
    /// Start of the tenant's current minute and the entries admitted in it.
    tenants: HashMap<String, (Instant, u32)>,
}

impl<K: Hash + Eq> Throttle<K> {
    pub fn new(window: Duration, ceiling: Option<u32>) -> Self {
        Throttle {
            window,
            ceiling,
            keys: HashMap::new(),
            tenants: HashMap::new(),
        }
    }

    /// `Some(n)` when this occurrence is to be recorded, `n` being how many
    /// of the key were left out since its previous entry; `None` when it is
    /// left out (and counted).
    pub fn admit(&mut self, tenant: &str, key: K, now: Instant) -> Option<u64> {
        if self.keys.len() >= SWEEP_AT {
            self.sweep(now);
        }
        let window = self.window;
        let slot = self.keys.entry(key).or_insert(Slot {
            recorded_at: None,
            suppressed: 0,
        });
        if let Some(at) = slot.recorded_at {
            if now.saturating_duration_since(at) < window {
                slot.suppressed += 1;
                return None;
            }
        }
        if let Some(max) = self.ceiling {
            let t = self.tenants.entry(tenant.to_owned()).or_insert((now, 0));
            if now.saturating_duration_since(t.0) >= MINUTE {
                *t = (now, 0);
            }
            if t.1 >= max {
                slot.suppressed += 1;
                return None;
            }
            t.1 += 1;
        }
        slot.recorded_at = Some(now);
        Some(std::mem::take(&mut slot.suppressed))
    }

    /// Drops keys whose window has passed and that have nothing pending (and,
    /// if the table is still too large, those with counts pending too), and
    /// tenants whose minute has passed.
    fn sweep(&mut self, now: Instant) {
        let window = self.window;
        let expired = |s: &Slot| {
            s.recorded_at
                .is_none_or(|at| now.saturating_duration_since(at) >= window)
        };
        self.keys.retain(|_, s| !(expired(s) && s.suppressed == 0));
        if self.keys.len() >= MAX_KEYS {
            self.keys.retain(|_, s| !expired(s));
        }
        self.tenants
            .retain(|_, t| now.saturating_duration_since(t.0) < MINUTE);
    }
}

/// A refusal's key: tenant, user, resource, permission.
pub type DenialKey = (String, String, String, &'static str);
/// A read's key: user, file, version, and how it was read (download,
/// sync download or preview).
pub type ReadKey = (String, String, u64, &'static str);

/// The process's two throttles.
#[derive(Debug)]
pub struct AccessLog {
    denials: Mutex<Throttle<DenialKey>>,
    reads: Mutex<Throttle<ReadKey>>,
}

impl AccessLog {
    pub fn new(settings: Settings) -> Self {
        AccessLog {
            denials: Mutex::new(Throttle::new(
                settings.denial_window,
                Some(settings.denials_per_tenant_minute),
            )),
            reads: Mutex::new(Throttle::new(settings.read_window, None)),
        }
    }

    /// Whether a refusal is recorded now, with the count left out before it.
    pub fn admit_denial(&self, tenant: &str, key: DenialKey) -> Option<u64> {
        self.denials.lock().admit(tenant, key, Instant::now())
    }

    /// Whether a content read is recorded now, with the count left out before it.
    pub fn admit_read(&self, tenant: &str, key: ReadKey) -> Option<u64> {
        self.reads.lock().admit(tenant, key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_per_key_and_window_carrying_the_count_left_out() {
        let mut t = Throttle::new(Duration::from_secs(60), None);
        let start = Instant::now();
        assert_eq!(t.admit("t", "a", start), Some(0));
        for i in 1..=199 {
            assert_eq!(t.admit("t", "a", start + Duration::from_millis(i)), None);
        }
        assert_eq!(t.admit("t", "b", start), Some(0), "another key");
        let later = start + Duration::from_secs(60);
        assert_eq!(t.admit("t", "a", later), Some(199));
        assert_eq!(t.admit("t", "a", later), None);
    }

    #[test]
    fn the_tenant_ceiling_bounds_distinct_keys_and_counts_what_it_refused() {
        let mut t = Throttle::new(Duration::from_secs(60), Some(3));
        let start = Instant::now();
        let admitted = (0..200)
            .filter(|i| t.admit("t1", *i, start).is_some())
            .count();
        assert_eq!(admitted, 3);
        assert_eq!(t.admit("t2", 500, start), Some(0), "other tenants");
        // Next minute: key 10, refused once by the ceiling, says so.
        let later = start + MINUTE;
        assert_eq!(t.admit("t1", 10, later), Some(1));
    }

    #[test]
    fn sweeping_keeps_pending_counts_and_bounds_the_table() {
        let mut t = Throttle::new(Duration::from_secs(1), None);
        let start = Instant::now();
        for i in 0..SWEEP_AT {
            t.admit("t", i, start);
        }
        t.admit("t", 0, start);
        let later = start + Duration::from_secs(2);
        t.admit("t", SWEEP_AT, later);
        // Key 0 has a count pending; every other expired key went.
        assert_eq!(t.keys.len(), 2);
        assert_eq!(t.admit("t", 0, later), Some(1));
    }
}
