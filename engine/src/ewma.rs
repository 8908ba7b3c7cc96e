//! Exponentially decayed event sums: the EWMA rates of minting, consumption,
//! expiry and trades. A sum decays by half every half-life; its rate is
//! `sum * ln 2 / half_life`. Ratios of two sums with the same half-life need no
//! rate constant and only one `exp2`.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch: the engine's clock, always an argument.
pub type TimeMs = u64;

/// A sum of event sizes, each weighted by `2^(-age / half_life)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct DecayedSum {
    value: f64,
    at_ms: TimeMs,
}

impl DecayedSum {
    /// The sum as of `now_ms`.
    pub fn value_at(&self, now_ms: TimeMs, half_life_ms: f64) -> f64 {
        if self.value == 0.0 {
            return 0.0;
        }
        let age = now_ms.saturating_sub(self.at_ms) as f64;
        self.value * (-age / half_life_ms).exp2()
    }

    /// Adds an event of `amount` at `now_ms` (never earlier than the last one).
    pub fn add(&mut self, now_ms: TimeMs, amount: f64, half_life_ms: f64) {
        let now_ms = now_ms.max(self.at_ms);
        self.value = self.value_at(now_ms, half_life_ms) + amount;
        self.at_ms = now_ms;
    }

    /// Events per second as of `now_ms`.
    pub fn rate_per_sec(&self, now_ms: TimeMs, half_life_ms: f64) -> f64 {
        self.value_at(now_ms, half_life_ms) * std::f64::consts::LN_2 / (half_life_ms / 1000.0)
    }

    /// `self / other` as of any common time, with one `exp2`; 1 when both are
    /// empty and `+inf` when only `other` is.
    pub fn ratio(&self, other: &Self, half_life_ms: f64) -> f64 {
        match (self.value > 0.0, other.value > 0.0) {
            (false, false) => 1.0,
            (true, false) => f64::INFINITY,
            (false, true) => 0.0,
            (true, true) => {
                let shift = (self.at_ms as f64 - other.at_ms as f64) / half_life_ms;
                self.value / other.value * shift.exp2()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halves_every_half_life() {
        let mut sum = DecayedSum::default();
        sum.add(1_000, 8.0, 1_000.0);
        assert_eq!(sum.value_at(1_000, 1_000.0), 8.0);
        assert_eq!(sum.value_at(2_000, 1_000.0), 4.0);
        assert_eq!(sum.value_at(4_000, 1_000.0), 1.0);
        sum.add(2_000, 4.0, 1_000.0);
        assert_eq!(sum.value_at(2_000, 1_000.0), 8.0);
        // An event stamped before the last one counts as simultaneous.
        sum.add(1_500, 1.0, 1_000.0);
        assert_eq!(sum.value_at(2_000, 1_000.0), 9.0);
    }

    #[test]
    fn ratio_matches_values_at_a_common_time() {
        let (mut a, mut b) = (DecayedSum::default(), DecayedSum::default());
        a.add(1_000, 6.0, 500.0);
        b.add(3_000, 2.0, 500.0);
        let direct = a.value_at(9_000, 500.0) / b.value_at(9_000, 500.0);
        assert!((a.ratio(&b, 500.0) - direct).abs() < 1e-12);
        assert_eq!(DecayedSum::default().ratio(&b, 500.0), 0.0);
        assert_eq!(a.ratio(&DecayedSum::default(), 500.0), f64::INFINITY);
        assert_eq!(DecayedSum::default().ratio(&DecayedSum::default(), 500.0), 1.0);
    }

    #[test]
    fn rate_of_a_steady_stream_is_its_frequency() {
        let mut sum = DecayedSum::default();
        for i in 0..10_000u64 {
            sum.add(i * 100, 1.0, 60_000.0);
        }
        let rate = sum.rate_per_sec(999_900, 60_000.0);
        assert!((rate - 10.0).abs() < 0.1, "{rate}");
    }
}
