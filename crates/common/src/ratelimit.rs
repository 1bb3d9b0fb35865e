//! Per-tenant token buckets for ingestion rate limits (rate and burst come from [`crate::limits::Limits`]).

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

use crate::TenantId;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by tenant. Rate/burst are passed on every call so that hot-reloaded limits
/// take effect immediately.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl RateLimiter {
    /// Takes `n` tokens for `tenant` if available. A rate of 0 (or less) means unlimited.
    /// A single request larger than the burst is allowed only when the bucket is full, so that
    /// big batches are not rejected forever.
    pub fn try_take(&self, tenant: &TenantId, n: u64, rate: f64, burst: u64) -> bool {
        if rate <= 0.0 || n == 0 {
            return true;
        }
        let now = Instant::now();
        let burst = burst.max(1) as f64;
        let mut map = self.buckets.lock();
        let b = map.entry(tenant.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(burst);
        b.last = now;
        let need = n as f64;
        if b.tokens >= need || (need > burst && b.tokens >= burst) {
            b.tokens -= need;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_reject() {
        let r = RateLimiter::default();
        let t = TenantId::new("a").unwrap();
        assert!(r.try_take(&t, 60, 10.0, 100));
        assert!(r.try_take(&t, 40, 10.0, 100));
        assert!(!r.try_take(&t, 10, 10.0, 100));
        let other = TenantId::new("b").unwrap();
        assert!(r.try_take(&other, 100, 10.0, 100));
        assert!(r.try_take(&t, 1_000_000, 0.0, 0));
    }
}
