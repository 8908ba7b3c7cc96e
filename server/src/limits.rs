//! [`RateLimits`]: per-identity admission limits. Each consumer's orders and
//! each provider's submissions pass a token bucket of config `[limits]`
//! (a sustained rate and a burst) before the engine sees them, and past it
//! get `429 rate_limited` with `Retry-After`. The check runs after the
//! request's signature is verified, so no one can spend another identity's
//! budget by sending in its name; a refused request changes nothing. The
//! limits change live on reload; buckets keep what they hold.
//!
//! Tokens are counted in thousandths, refilled by the microsecond: integer
//! arithmetic; a refused request leaves its bucket as it was. A bucket that refilled to its burst is the same as
//! no bucket, so idle identities are dropped once many are held.

use std::sync::{Mutex, RwLock};
use std::time::Instant;

use alloy_primitives::Address;
use alloy_primitives::map::AddressMap;
use pat_config::LimitParams;
use pat_engine::Code;

use crate::error::ApiError;

/// Buckets held before the full ones are dropped.
const HELD_MAX: usize = 65_536;
/// One request, in thousandths of a token.
const COST: u64 = 1_000;

/// What a bucket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// A consumer's orders.
    Orders,
    /// A provider's segment submissions.
    Submissions,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Thousandths of a token.
    held: u64,
    at: Instant,
}

/// The token buckets of every consumer and provider; see the module doc.
#[derive(Debug)]
pub struct RateLimits {
    params: RwLock<LimitParams>,
    orders: Mutex<Buckets>,
    submissions: Mutex<Buckets>,
}

/// One limit's buckets, and the size at which the full ones are dropped next: twice what
/// a drop left, so that identities that keep their buckets from filling cannot make every
/// newcomer pay for a scan.
#[derive(Debug)]
struct Buckets {
    held: AddressMap<Bucket>,
    prune_at: usize,
}

impl Default for Buckets {
    fn default() -> Self {
        Self { held: AddressMap::default(), prune_at: HELD_MAX }
    }
}

impl RateLimits {
    pub fn new(params: LimitParams) -> Self {
        Self { params: RwLock::new(params), orders: Mutex::default(), submissions: Mutex::default() }
    }

    /// Applies reloaded limits; buckets keep what they hold (up to the new burst).
    pub fn set(&self, params: LimitParams) {
        *self.params.write().unwrap_or_else(|e| e.into_inner()) = params;
    }

    /// Takes one request of `who` for `what` now: `429 rate_limited` if its
    /// bucket is empty.
    pub fn admit(&self, what: Limited, who: Address) -> Result<(), ApiError> {
        self.admit_at(what, who, Instant::now())
    }

    fn admit_at(&self, what: Limited, who: Address, now: Instant) -> Result<(), ApiError> {
        let params = *self.params.read().unwrap_or_else(|e| e.into_inner());
        let (per_sec, burst, buckets, name) = match what {
            Limited::Orders => {
                (params.orders_per_consumer_per_sec, params.orders_per_consumer_burst, &self.orders, "orders")
            }
            Limited::Submissions => (
                params.submissions_per_provider_per_sec,
                params.submissions_per_provider_burst,
                &self.submissions,
                "submissions",
            ),
        };
        if per_sec == 0 {
            return Ok(());
        }
        let (per_sec, full) = (u64::from(per_sec), u64::from(burst) * COST);
        let refilled = |b: &Bucket| {
            let micros = u64::try_from(now.saturating_duration_since(b.at).as_micros()).unwrap_or(u64::MAX);
            b.held.saturating_add(micros.saturating_mul(per_sec) / 1_000).min(full)
        };
        let mut buckets = buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.held.len() >= buckets.prune_at && !buckets.held.contains_key(&who) {
            buckets.held.retain(|_, b| refilled(b) < full);
            buckets.prune_at = (2 * buckets.held.len()).max(HELD_MAX);
        }
        let bucket = buckets.held.entry(who).or_insert(Bucket { held: full, at: now });
        let held = refilled(bucket);
        if held >= COST {
            // A clock read before another thread's later one never moves a bucket back.
            *bucket = Bucket { held: held - COST, at: now.max(bucket.at) };
            return Ok(());
        }
        // Refused: the bucket stays as it was, so its refill keeps counting from then.
        // Microseconds until one token is back, in whole seconds (at least 1).
        let wait_micros = ((COST - held) * 1_000).div_ceil(per_sec);
        let retry_after = wait_micros.div_ceil(1_000_000).max(1);
        Err(ApiError::new(
            Code::RateLimited,
            format!("{who} is over its limit of {per_sec} {name} per second (burst {burst}); retry in {retry_after} s"),
        )
        .retry_after(retry_after))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(per_sec: u32, burst: u32) -> RateLimits {
        RateLimits::new(LimitParams {
            orders_per_consumer_per_sec: per_sec,
            orders_per_consumer_burst: burst,
            submissions_per_provider_per_sec: 0,
            submissions_per_provider_burst: 0,
        })
    }

    #[test]
    fn a_burst_then_the_rate_each_identity_alone() {
        let l = limits(10, 3);
        let (a, b, t0) = (Address::repeat_byte(1), Address::repeat_byte(2), Instant::now());
        for _ in 0..3 {
            l.admit_at(Limited::Orders, a, t0).unwrap();
        }
        let refused = l.admit_at(Limited::Orders, a, t0).unwrap_err();
        assert_eq!((refused.code, refused.retry_after), (Code::RateLimited, Some(1)));
        l.admit_at(Limited::Orders, b, t0).expect("another consumer has its own bucket");
        // 10 per second: one token back after 100 ms, not before.
        assert!(l.admit_at(Limited::Orders, a, t0 + Duration::from_millis(99)).is_err());
        l.admit_at(Limited::Orders, a, t0 + Duration::from_millis(200)).unwrap();
        // Over a long run, exactly the rate gets through.
        let mut admitted = 0;
        for ms in (1_000..11_000).step_by(10) {
            admitted += u32::from(l.admit_at(Limited::Orders, a, t0 + Duration::from_millis(ms)).is_ok());
        }
        assert!((100..=104).contains(&admitted), "10/s over 10 s (plus the burst refilled): {admitted}");
        l.admit_at(Limited::Submissions, a, t0).expect("submissions are off");
    }

    #[test]
    fn reloaded_limits_apply_at_once_and_a_rate_of_zero_is_off() {
        let l = limits(1, 1);
        let (a, t0) = (Address::repeat_byte(1), Instant::now());
        l.admit_at(Limited::Orders, a, t0).unwrap();
        assert!(l.admit_at(Limited::Orders, a, t0).is_err());
        l.set(LimitParams { orders_per_consumer_per_sec: 0, ..LimitParams::default() });
        for _ in 0..10_000 {
            l.admit_at(Limited::Orders, a, t0).unwrap();
        }
        l.set(LimitParams { orders_per_consumer_per_sec: 1, orders_per_consumer_burst: 1, ..LimitParams::default() });
        let slow = l.admit_at(Limited::Orders, a, t0).unwrap_err();
        assert_eq!(slow.retry_after, Some(1));
    }

    #[test]
    fn idle_full_buckets_are_dropped_when_many_are_held() {
        let l = limits(1_000, 1);
        let t0 = Instant::now();
        for i in 0..HELD_MAX as u64 {
            let mut bytes = [0u8; 20];
            bytes[..8].copy_from_slice(&i.to_be_bytes());
            l.admit_at(Limited::Orders, Address::from(bytes), t0).unwrap();
        }
        // A second later every bucket is full again: the next newcomer drops them.
        l.admit_at(Limited::Orders, Address::repeat_byte(0xff), t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(l.orders.lock().unwrap().held.len(), 1);
    }

    /// Identities that keep their buckets from filling: a drop that frees nothing moves the
    /// next one to twice the size, so newcomers do not each pay for a scan.
    #[test]
    fn a_drop_that_frees_nothing_moves_the_next_one_away() {
        let l = limits(1, 1);
        let t0 = Instant::now();
        let address = |i: u64| {
            let mut bytes = [0u8; 20];
            bytes[..8].copy_from_slice(&i.to_be_bytes());
            Address::from(bytes)
        };
        for i in 0..=HELD_MAX as u64 {
            l.admit_at(Limited::Orders, address(i), t0).unwrap();
        }
        let buckets = l.orders.lock().unwrap();
        assert_eq!((buckets.held.len(), buckets.prune_at), (HELD_MAX + 1, 2 * HELD_MAX));
    }
}
