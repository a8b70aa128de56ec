//! Sliding-window rate limits per token, per user and per tenant (SPEC
//! §4.11). A request is checked and counted against all three at once; the
//! most specific exhausted dimension is reported. Windows live in this
//! process, or in Redis when one is configured so that every instance shares
//! them (`shared.rs`); an unreachable Redis falls back to this process's own
//! windows (fail open) instead of refusing traffic.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

mod shared;

pub use self::shared::RedisLimiter;

/// Which budget a request was refused by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    Token,
    User,
    Tenant,
}

impl Dimension {
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Token => "token",
            Dimension::User => "user",
            Dimension::Tenant => "tenant",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Dimension::Token => "Per-token",
            Dimension::User => "Per-user",
            Dimension::Tenant => "Per-tenant",
        }
    }
}

/// Units allowed per window for each dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub per_token: u64,
    pub per_user: u64,
    pub per_tenant: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_token: 1000,
            per_user: 5000,
            per_tenant: 50_000,
        }
    }
}

/// The outcome of one check, for the response headers.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// `Some(dimension)` when refused.
    pub refused: Option<Dimension>,
    /// The token budget (what `X-RateLimit-*` describe).
    pub limit: u64,
    pub remaining: u64,
    /// Seconds until the window has room again (refused) or fully resets.
    pub reset_after: u64,
}

#[derive(Default)]
struct Window {
    entries: VecDeque<(Instant, u64)>,
    used: u64,
}

impl Window {
    fn prune(&mut self, now: Instant, span: Duration) {
        while let Some((t, c)) = self.entries.front().copied() {
            if now.duration_since(t) < span {
                break;
            }
            self.entries.pop_front();
            self.used -= c;
        }
    }

    /// Seconds until `need` more units fit under `limit`.
    fn wait_for(&self, now: Instant, span: Duration, limit: u64, need: u64) -> u64 {
        let mut used = self.used;
        for (t, c) in &self.entries {
            if used + need <= limit {
                break;
            }
            used -= c;
            let free_at = *t + span;
            if used + need <= limit {
                return free_at.saturating_duration_since(now).as_secs().max(1);
            }
        }
        span.as_secs()
    }
}

/// The limiter the HTTP layer asks: Redis-shared when configured, with this
/// process's windows as the fallback.
pub struct RateLimiter {
    local: LocalLimiter,
    shared: Option<RedisLimiter>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(Duration::from_secs(60))
    }
}

impl RateLimiter {
    /// An in-process limiter with windows of `span`.
    pub fn new(span: Duration) -> Self {
        Self {
            local: LocalLimiter::new(span),
            shared: None,
        }
    }

    /// A limiter whose windows live in Redis, shared by every instance.
    pub fn shared(redis: RedisLimiter) -> Self {
        Self {
            local: LocalLimiter::new(redis.span()),
            shared: Some(redis),
        }
    }

    /// The Redis backend, when configured (readiness pings it).
    pub fn redis(&self) -> Option<&RedisLimiter> {
        self.shared.as_ref()
    }

    /// Checks `cost` against the token, user and tenant budgets and, when all
    /// have room, counts it against each.
    pub async fn check(
        &self,
        token: &str,
        user: &str,
        tenant: &str,
        limits: Limits,
        cost: u64,
    ) -> Decision {
        if let Some(shared) = &self.shared {
            if let Some(decision) = shared.check(token, user, tenant, limits, cost).await {
                return decision;
            }
        }
        self.local.check(token, user, tenant, limits, cost)
    }
}

/// Windows kept in this process.
pub struct LocalLimiter {
    span: Duration,
    windows: Mutex<HashMap<(Dimension, String), Window>>,
}

impl LocalLimiter {
    pub fn new(span: Duration) -> Self {
        Self {
            span,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Checks `cost` against the token, user and tenant budgets and, when all
    /// have room, counts it against each.
    pub fn check(
        &self,
        token: &str,
        user: &str,
        tenant: &str,
        limits: Limits,
        cost: u64,
    ) -> Decision {
        let now = Instant::now();
        let mut map = self.windows.lock();
        if map.len() > 100_000 {
            map.retain(|_, w| {
                w.prune(now, self.span);
                !w.entries.is_empty()
            });
        }
        let keys = [
            (Dimension::Token, token, limits.per_token),
            (Dimension::User, user, limits.per_user),
            (Dimension::Tenant, tenant, limits.per_tenant),
        ];
        for (dim, key, limit) in keys {
            let w = map.entry((dim, key.to_owned())).or_default();
            w.prune(now, self.span);
            if w.used + cost > limit {
                let retry = w.wait_for(now, self.span, limit, cost);
                let token_used = map
                    .get(&(Dimension::Token, token.to_owned()))
                    .map(|w| w.used)
                    .unwrap_or(0);
                return Decision {
                    refused: Some(dim),
                    limit: limits.per_token,
                    remaining: limits.per_token.saturating_sub(token_used),
                    reset_after: retry,
                };
            }
        }
        for (dim, key, _) in keys {
            if let Some(w) = map.get_mut(&(dim, key.to_owned())) {
                w.entries.push_back((now, cost));
                w.used += cost;
            }
        }
        let w = map.get(&(Dimension::Token, token.to_owned()));
        let used = w.map(|w| w.used).unwrap_or(0);
        let reset = w
            .and_then(|w| w.entries.front())
            .map(|(t, _)| {
                (*t + self.span)
                    .saturating_duration_since(now)
                    .as_secs()
                    .max(1)
            })
            .unwrap_or(self.span.as_secs());
        Decision {
            refused: None,
            limit: limits.per_token,
            remaining: limits.per_token.saturating_sub(used),
            reset_after: reset,
        }
    }
}

/// The cost class of a request (SPEC §4.11).
pub fn cost(method: &str, path: &str) -> u64 {
    let p = path.trim_end_matches('/');
    if p.contains("/search/semantic")
        || p.contains("/search/hybrid")
        || p.contains("/search/context")
    {
        20
    } else if p.ends_with("/search") || p.contains("/search/principals") {
        10
    } else if p.ends_with("/content")
        || p.ends_with("/preview")
        || p.ends_with("/upload")
        || p.contains("/chunks/")
        || p.contains("/sync/download/")
        || (method == "POST" && p.ends_with("/files"))
    {
        5
    } else if method != "GET" && method != "HEAD"
        || [
            "/children",
            "/shares",
            "/versions",
            "/trash",
            "/events",
            "/audit/events",
            "/members",
            "/invitations",
            "/sync/changes",
            "/sync/conflicts",
            "/sync/devices",
            "/external/links",
            "/sessions",
            "/deliveries",
            "/admin/users",
            "/admin/groups",
            "/tenants",
        ]
        .iter()
        .any(|s| p.ends_with(s))
    {
        // writes and lists
        2
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_shared_by_dimension_and_refuse_the_most_specific() {
        let rl = LocalLimiter::new(Duration::from_secs(60));
        let limits = Limits {
            per_token: 5,
            per_user: 8,
            per_tenant: 100,
        };
        for _ in 0..5 {
            assert!(rl.check("t1", "u1", "acme", limits, 1).refused.is_none());
        }
        let d = rl.check("t1", "u1", "acme", limits, 1);
        assert_eq!(d.refused, Some(Dimension::Token));
        assert!(d.reset_after >= 1 && d.reset_after <= 60);
        // Another token of the same user: the user budget (8) still has 3.
        for _ in 0..3 {
            assert!(rl.check("t2", "u1", "acme", limits, 1).refused.is_none());
        }
        assert_eq!(
            rl.check("t2", "u1", "acme", limits, 1).refused,
            Some(Dimension::User)
        );
        assert!(rl.check("t3", "u2", "acme", limits, 2).refused.is_none());
    }

    #[test]
    fn windows_slide() {
        let rl = LocalLimiter::new(Duration::from_millis(50));
        let limits = Limits {
            per_token: 2,
            per_user: 10,
            per_tenant: 10,
        };
        assert!(rl.check("t", "u", "x", limits, 2).refused.is_none());
        assert!(rl.check("t", "u", "x", limits, 1).refused.is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(rl.check("t", "u", "x", limits, 1).refused.is_none());
    }

    #[test]
    fn cost_classes_follow_the_spec() {
        assert_eq!(cost("GET", "/api/v1/files/fil_x"), 1);
        assert_eq!(cost("GET", "/api/v1/folders/fld_x/children"), 2);
        assert_eq!(cost("PATCH", "/api/v1/files/fil_x"), 2);
        assert_eq!(cost("GET", "/api/v1/files/fil_x/content"), 5);
        assert_eq!(cost("PUT", "/api/v1/uploads/upl_x/chunks/3"), 5);
        assert_eq!(cost("POST", "/api/v1/files"), 5);
        assert_eq!(cost("GET", "/api/v1/search"), 10);
        assert_eq!(cost("GET", "/api/v1/shares/search/principals"), 10);
        assert_eq!(cost("GET", "/api/v1/sync/changes"), 2);
        assert_eq!(cost("GET", "/api/v1/public/links/abc/content"), 5);
        assert_eq!(cost("POST", "/api/v1/search/semantic"), 20);
    }
}
