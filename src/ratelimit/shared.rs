//! Rate-limit windows kept in Redis, so that every instance behind a load
//! balancer spends one budget. Each dimension keeps a counter per fixed
//! window and estimates the sliding window as the previous window's count,
//! weighted by how much of it still overlaps, plus the current count (the
//! "weighted sliding-window counter"): O(1) per request, exact at window
//! boundaries, and never more generous than one window's limit plus the
//! decaying remainder. Check-and-count for all three dimensions is one Lua
//! script, so it is atomic across instances; the clock is Redis's own, so
//! instances with skewed clocks agree.

use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Decision, Dimension, Limits};

/// KEYS: token, user, tenant counter prefixes. ARGV: span (ms), cost, and the
/// three limits. Returns {refused dimension (0 = none, 1..3), the token's
/// units used, milliseconds until retry (refused) or until the window ends}.
const SCRIPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local span = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local idx = math.floor(now / span)
local elapsed = now - idx * span
local weight = (span - elapsed) / span
local cur, prev, used = {}, {}, {}
for i = 1, 3 do
  cur[i] = tonumber(redis.call('GET', KEYS[i] .. ':' .. idx) or '0')
  prev[i] = tonumber(redis.call('GET', KEYS[i] .. ':' .. (idx - 1)) or '0')
  used[i] = prev[i] * weight + cur[i]
end
for i = 1, 3 do
  local limit = tonumber(ARGV[2 + i])
  if used[i] + cost > limit then
    local retry
    if cur[i] + cost <= limit and prev[i] > 0 then
      -- the previous window's share decays until the cost fits
      retry = span * (1 - (limit - cur[i] - cost) / prev[i]) - elapsed
    elseif cost > limit then
      retry = 2 * span - elapsed
    else
      -- only in the next window, once this window's count has decayed enough
      local later = 0
      if cur[i] > limit - cost then
        later = span * (1 - (limit - cost) / cur[i])
      end
      retry = span - elapsed + later
    end
    return {i, math.floor(used[1]), math.ceil(retry)}
  end
end
for i = 1, 3 do
  local key = KEYS[i] .. ':' .. idx
  redis.call('INCRBY', key, cost)
  redis.call('PEXPIRE', key, 2 * span + 1000)
end
return {0, math.floor(used[1] + cost), span - elapsed}
"#;

/// How long requests skip Redis after it failed, so an outage costs each
/// request nothing instead of a connection attempt.
const BACKOFF: Duration = Duration::from_secs(1);

/// The Redis-shared windows.
pub struct RedisLimiter {
    conn: ConnectionManager,
    prefix: String,
    span: Duration,
    script: redis::Script,
    down_until: Mutex<Option<Instant>>,
}

impl RedisLimiter {
    /// Prepares a connection to `url` (made lazily, so a Redis that is down
    /// at start-up does not stop the server); keys start with `prefix`.
    pub fn new(url: &str, prefix: &str, span: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1);
        let conn = ConnectionManager::new_lazy_with_config(client, config)?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            span: span.max(Duration::from_millis(10)),
            script: redis::Script::new(SCRIPT),
            down_until: Mutex::new(None),
        })
    }

    pub fn span(&self) -> Duration {
        self.span
    }

    /// Whether Redis answers (readiness).
    pub async fn ping(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
    }

    /// Checks and counts like the in-process limiter; `None` when Redis
    /// could not be asked (the caller then falls back to its own windows).
    pub async fn check(
        &self,
        token: &str,
        user: &str,
        tenant: &str,
        limits: Limits,
        cost: u64,
    ) -> Option<Decision> {
        if self
            .down_until
            .lock()
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        // The tenant in braces is a hash tag: all three keys of one request
        // land on one Redis Cluster slot, as a multi-key script requires.
        let key = |dim: Dimension, id: &str| {
            format!("{}rl:{{{tenant}}}:{}:{id}", self.prefix, dim.as_str())
        };
        let span_ms = self.span.as_millis() as u64;
        let mut conn = self.conn.clone();
        let answer = self
            .script
            .key(key(Dimension::Token, token))
            .key(key(Dimension::User, user))
            .key(key(Dimension::Tenant, tenant))
            .arg(span_ms)
            .arg(cost)
            .arg(limits.per_token)
            .arg(limits.per_user)
            .arg(limits.per_tenant)
            .invoke_async::<(i64, i64, i64)>(&mut conn)
            .await;
        let (refused, token_used, millis) = match answer {
            Ok(a) => a,
            Err(e) => {
                let was_up = self
                    .down_until
                    .lock()
                    .replace(Instant::now() + BACKOFF)
                    .is_none();
                if was_up {
                    tracing::warn!(error = %e, "redis unreachable: rate limits fall back to this instance's own windows");
                }
                return None;
            }
        };
        if self.down_until.lock().take().is_some() {
            tracing::info!("redis reachable again: rate limits are shared");
        }
        let refused = match refused {
            1 => Some(Dimension::Token),
            2 => Some(Dimension::User),
            3 => Some(Dimension::Tenant),
            _ => None,
        };
        let span_secs = self.span.as_secs().max(1);
        let secs = (millis.max(0) as u64).div_ceil(1000).clamp(1, span_secs);
        Some(Decision {
            refused,
            limit: limits.per_token,
            remaining: limits.per_token.saturating_sub(token_used.max(0) as u64),
            reset_after: secs,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn redis_url() -> String {
        std::env::var("SCAIDRIVE_TEST_REDIS_URL")
            .expect("SCAIDRIVE_TEST_REDIS_URL (scripts/test sets it)")
    }

    fn prefix() -> String {
        format!("test:{}:", uuid::Uuid::now_v7().simple())
    }

    #[tokio::test]
    #[ignore = "needs Redis (scripts/test)"]
    async fn two_limiters_on_one_redis_spend_one_budget() {
        let p = prefix();
        let a = RedisLimiter::new(&redis_url(), &p, Duration::from_secs(60)).unwrap();
        let b = RedisLimiter::new(&redis_url(), &p, Duration::from_secs(60)).unwrap();
        let limits = Limits {
            per_token: 100,
            per_user: 6,
            per_tenant: 100,
        };
        for i in 0..6 {
            let l = if i % 2 == 0 { &a } else { &b };
            let d = l
                .check(&format!("t{i}"), "u", "x", limits, 1)
                .await
                .unwrap();
            assert!(d.refused.is_none(), "unit {i} fits");
        }
        let d = b.check("t9", "u", "x", limits, 1).await.unwrap();
        assert_eq!(d.refused, Some(Dimension::User));
        assert!((1..=60).contains(&d.reset_after), "{}", d.reset_after);
        // Another user of the tenant is unaffected.
        assert!(a
            .check("t9", "v", "x", limits, 1)
            .await
            .unwrap()
            .refused
            .is_none());
    }

    #[tokio::test]
    #[ignore = "needs Redis (scripts/test)"]
    async fn shared_windows_slide() {
        let l = RedisLimiter::new(&redis_url(), &prefix(), Duration::from_millis(200)).unwrap();
        let limits = Limits {
            per_token: 4,
            per_user: 100,
            per_tenant: 100,
        };
        let d = l.check("t", "u", "x", limits, 4).await.unwrap();
        assert!(d.refused.is_none());
        assert_eq!(d.remaining, 0);
        assert_eq!(
            l.check("t", "u", "x", limits, 1).await.unwrap().refused,
            Some(Dimension::Token)
        );
        // Two whole windows later nothing of the first one is left.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if l.check("t", "u", "x", limits, 4)
                .await
                .unwrap()
                .refused
                .is_none()
            {
                break;
            }
            assert!(Instant::now() < deadline, "the window never slid");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_reported_as_absent() {
        // Port 1 on loopback refuses connections at once.
        let l = RedisLimiter::new("redis://127.0.0.1:1/", "x:", Duration::from_secs(60)).unwrap();
        let limits = Limits::default();
        assert!(l.check("t", "u", "x", limits, 1).await.is_none());
        assert!(l.ping().await.is_err());
    }
}
