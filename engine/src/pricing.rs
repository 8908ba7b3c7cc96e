//! Price factors and the spread, each a small pure function (DESIGN.md section 4):
//!
//! `Price = BaseValue x Freshness x DemandPressure x Scarcity`, then
//! `bid = price x (1 - s)` and `ask = price x (1 + s)` with `s = spread_bps / 10_000`,
//! both put on the market's tick by [`quote_ticks`]. Factors are `f64`; they
//! meet money once, in [`mid_subticks`], which rounds the mid to an integer
//! number of 1/10_000 ticks; everything after is integer arithmetic.

use crate::money::{self, Amount, BPS};
use crate::params::{FreshnessCurve, PricingParams, SpreadParams};

/// Freshness of a unit whose window is `age_fraction` through its life.
///
/// Linear: `1 - (1 - floor) * a`; exponential: `floor ^ a`, with `a` clamped
/// to `[0, 1]`. Range `[floor, 1]`, 1 at the window's start, `floor` at its end,
/// non-increasing in age.
pub fn freshness(age_fraction: f64, curve: FreshnessCurve, floor: f64) -> f64 {
    let a = age_fraction.clamp(0.0, 1.0);
    match curve {
        FreshnessCurve::Linear => 1.0 - (1.0 - floor) * a,
        FreshnessCurve::Exponential => floor.powf(a),
    }
}

/// DemandPressure: consumption velocity over supply (mint) rate, clamped to
/// `[min, max]`. The ratio comes from [`crate::ewma::DecayedSum::ratio`]: 1.0
/// with no history, `+inf` with consumption and no minting. Non-decreasing in it.
pub fn demand_pressure(consumption_to_mint: f64, min: f64, max: f64) -> f64 {
    consumption_to_mint.clamp(min, max)
}

/// Scarcity from `raw`, the burn rate (units sold or expired) over the mint
/// rate (1.0 with no history). A premium (`raw > 1`) is discounted where
/// substitutes have supply: `1 + (raw - 1) * (1 - d * sub / (sub + own))`, with
/// `d` the substitute discount in [0, 1]; a discount (`raw < 1`) is kept as is.
/// Clamped to `[scarcity_min, scarcity_max]`; non-decreasing in `raw`.
pub fn scarcity(raw: f64, own_supply: f64, substitute_supply: f64, p: &PricingParams) -> f64 {
    let raw = raw.min(p.scarcity_max);
    let value = if raw > 1.0 {
        let total = own_supply + substitute_supply;
        let share = if total > 0.0 { substitute_supply / total } else { 0.0 };
        1.0 + (raw - 1.0) * (1.0 - p.substitute_discount * share)
    } else {
        raw
    };
    value.clamp(p.scarcity_min, p.scarcity_max)
}

/// Thinness of a market in `(0, 1]`: the mean of `depth_ref / (depth_ref + supply)`
/// and `trades_ref / (trades_ref + recent_trades)`. 1 with no supply and no trades.
pub fn thinness(supply_units: f64, recent_trades: f64, p: &SpreadParams) -> f64 {
    let depth = p.depth_ref_units / (p.depth_ref_units + supply_units);
    let trades = p.trades_ref / (p.trades_ref + recent_trades);
    0.5 * (depth + trades)
}

/// How far exposure is past its soft limit toward the hard one, in `[0, 1]`.
pub fn limit_utilization(exposure: Amount, soft: Amount, hard: Amount) -> f64 {
    if exposure <= soft {
        0.0
    } else if exposure >= hard || hard <= soft {
        1.0
    } else {
        (exposure - soft) as f64 / (hard - soft) as f64
    }
}

/// Rounds a non-negative float half up to an integer. Negative values give 0,
/// NaN gives 0, values past `u64::MAX` saturate (Rust's float casts saturate).
/// An add and a truncating conversion: cheaper than `f64::round`, a libm call.
pub fn round_half_up(x: f64) -> u64 {
    (x + 0.5) as u64
}

/// The one-sided spread in basis points:
/// `base + volatility_bps * sigma + thin_liquidity_bps * thinness + soft_limit_widen_bps * utilization`,
/// rounded half up to a basis point and clamped to `[min_bps, max_bps]`.
pub fn spread_bps(volatility: f64, thinness: f64, utilization: f64, p: &SpreadParams) -> u32 {
    let raw = p.base_bps as f64
        + p.volatility_bps * volatility
        + p.thin_liquidity_bps as f64 * thinness
        + p.soft_limit_widen_bps as f64 * utilization;
    let rounded = if raw.is_finite() { round_half_up(raw) } else { u64::from(p.max_bps) };
    (rounded.min(u64::from(u32::MAX)) as u32).clamp(p.min_bps, p.max_bps)
}

/// Resolution of the mid below the tick: the mid is kept in 1/10_000 ticks.
pub const SUBTICKS: u64 = 10_000;

/// The mid in 1/10_000 ticks:
/// `round_half_up(base_ticks x freshness x demand_pressure x scarcity x 10_000)`.
///
/// This is the one float-to-integer step of pricing. `base_ticks` is the
/// type's BaseValue in ticks (config keeps it at most 10^8, and the factor
/// product at most 100, so every later step fits a `u64`).
pub fn mid_subticks(base_ticks: u64, freshness: f64, demand_pressure: f64, scarcity: f64) -> u64 {
    round_half_up(base_ticks as f64 * freshness * demand_pressure * scarcity * SUBTICKS as f64)
}

/// Bid and ask in ticks: the rounding rule of the whole engine.
///
/// `bid = floor(mid x (10_000 - s) / 10^8)` and `ask = ceil(mid x (10_000 + s) / 10^8)`,
/// with `mid` in subticks and `s` the one-sided spread in basis points: both
/// round away from the mid, so `bid <= mid <= ask` and the broker never quotes
/// inside its spread. Then the contract's margin cap: if
/// `(ask - bid) x 10_000 > ask x cap_bps`, the bid is raised to
/// `ceil(ask x (10_000 - cap_bps) / 10_000)`. `None` when that bid would be above
/// the mid (a tick too coarse for the price) or the bid is zero: the market
/// then does not quote.
pub fn quote_ticks(mid_subticks: u64, spread_bps: u32, margin_cap_bps: u16) -> Option<(u64, u64)> {
    const SCALE: u64 = SUBTICKS * BPS as u64;
    let s = u64::from(spread_bps.min(BPS as u32));
    let cap = u64::from(margin_cap_bps);
    let bps = BPS as u64;
    let mut bid = mid_subticks.checked_mul(bps - s)? / SCALE;
    let ask = mid_subticks.checked_mul(bps + s)?.div_ceil(SCALE);
    if (ask - bid).checked_mul(bps)? > ask.checked_mul(cap)? {
        bid = ask.checked_mul(bps - cap)?.div_ceil(bps);
        if bid.checked_mul(SUBTICKS)? > mid_subticks {
            return None;
        }
    }
    (bid > 0).then_some((bid, ask))
}

/// The mid in base units, rounded down: `mid_subticks x tick / 10_000`.
pub fn subticks_to_amount(mid_subticks: u64, tick: Amount) -> Amount {
    money::mul_div_floor(u128::from(mid_subticks), tick, u128::from(SUBTICKS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::ONE_PAT;
    use crate::testing::{pricing_params, spread_params};
    use proptest::prelude::*;

    #[test]
    fn rounds_half_up_and_saturates() {
        assert_eq!((round_half_up(2.5), round_half_up(2.4999), round_half_up(0.0)), (3, 2, 0));
        assert_eq!((round_half_up(-3.0), round_half_up(f64::NAN), round_half_up(1e30)), (0, 0, u64::MAX));
    }

    #[test]
    fn freshness_spans_one_to_floor() {
        for curve in [FreshnessCurve::Linear, FreshnessCurve::Exponential] {
            assert_eq!(freshness(0.0, curve, 0.1), 1.0);
            assert!((freshness(1.0, curve, 0.1) - 0.1).abs() < 1e-12);
            assert_eq!(freshness(7.0, curve, 0.1), freshness(1.0, curve, 0.1));
        }
        assert!((freshness(0.5, FreshnessCurve::Linear, 0.1) - 0.55).abs() < 1e-12);
    }

    #[test]
    fn demand_pressure_is_one_without_history_and_clamped() {
        assert_eq!(demand_pressure(1.0, 0.5, 3.0), 1.0);
        assert_eq!(demand_pressure(f64::INFINITY, 0.5, 3.0), 3.0);
        assert_eq!(demand_pressure(0.0, 0.5, 3.0), 0.5);
        assert_eq!(demand_pressure(2.0, 0.5, 3.0), 2.0);
    }

    #[test]
    fn substitutes_discount_only_the_premium() {
        let p = pricing_params();
        let alone = scarcity(2.0, 10.0, 0.0, &p);
        let with_subs = scarcity(2.0, 10.0, 90.0, &p);
        assert_eq!(alone, 2.0);
        assert!(with_subs < alone && with_subs > 1.0);
        assert_eq!(scarcity(0.5, 10.0, 90.0, &p), 0.5f64.max(p.scarcity_min));
        assert_eq!(scarcity(f64::INFINITY, 0.0, 0.0, &p), p.scarcity_max);
    }

    #[test]
    fn quote_rounds_outward_and_respects_the_cap() {
        // A mid of exactly 1000 ticks with 150 bps each way.
        assert_eq!(quote_ticks(1000 * SUBTICKS, 150, 5000), Some((985, 1015)));
        // A hair above 1000 ticks: the bid stays, the ask rounds up.
        assert_eq!(quote_ticks(1000 * SUBTICKS + 1, 150, 5000), Some((985, 1016)));
        // A 20% spread each way is a 33% margin: over a 25% cap the bid is raised.
        assert_eq!(quote_ticks(1000 * SUBTICKS, 2000, 2500), Some((900, 1200)));
        // A price below two ticks cannot meet a 10% cap; a zero bid never quotes.
        assert_eq!(quote_ticks(SUBTICKS + SUBTICKS / 2, 100, 1000), None);
        assert_eq!(quote_ticks(0, 100, 5000), None);
        assert_eq!(mid_subticks(2500, 0.5, 1.0, 1.0), 1250 * SUBTICKS);
        assert_eq!(subticks_to_amount(1250 * SUBTICKS + 5_000, ONE_PAT / 1000), 1_250_500_000_000_000_000);
    }

    proptest! {
        #[test]
        fn bid_price_ask_are_ordered_and_spread_clamped(
            mid in 0u64..100 * 100_000_000 * SUBTICKS,
            vol in 0.0f64..5.0,
            thin in 0.0f64..1.0,
            util in 0.0f64..1.0,
            tick_exp in 0u32..16,
            // Config keeps the cap at or above the margin of max_bps (2s / (1 + s) = 3334 bps for 2000).
            cap in 3334u16..=5000,
        ) {
            let sp = spread_params();
            let s = spread_bps(vol, thin, util, &sp);
            prop_assert!(sp.min_bps <= s && s <= sp.max_bps);
            let tick = 10u128.pow(tick_exp);
            if let Some((bid, ask)) = quote_ticks(mid, s, cap) {
                let (bid, ask) = (u128::from(bid) * tick, u128::from(ask) * tick);
                let price = subticks_to_amount(mid, tick);
                prop_assert!(bid <= price && price <= ask);
                prop_assert!((ask - bid) * 10_000 <= ask * cap as u128);
                prop_assert!(bid > 0);
            } else {
                // Only a mid of fewer than 2 / min_spread ticks can fail to quote:
                // tick rounding then outweighs the spread.
                prop_assert!(mid < (2 * 10_000 / u64::from(sp.min_bps) + 1) * SUBTICKS, "{} {}", mid, s);
            }
        }

        #[test]
        fn price_is_monotone_in_its_factors(
            base in 1u64..100_000_000,
            age in 0.0f64..1.0, dage in 0.0f64..0.5,
            consumption in 0.0f64..10.0, dconsumption in 0.0f64..10.0,
            burn in 0.0f64..10.0, dburn in 0.0f64..10.0,
            own in 0.0f64..1000.0, subs in 0.0f64..1000.0,
        ) {
            let p = pricing_params();
            let f = |a: f64| freshness(a, p.freshness_curve, p.freshness_floor);
            let dp = |c: f64| demand_pressure(c, p.demand_pressure_min, p.demand_pressure_max);
            let sc = |b: f64| scarcity(b, own, subs, &p);
            let price = |f: f64, d: f64, s: f64| mid_subticks(base, f, d, s);
            let base_price = price(f(age), dp(consumption), sc(burn));
            prop_assert!(price(f(age + dage), dp(consumption), sc(burn)) <= base_price);
            prop_assert!(price(f(age), dp(consumption + dconsumption), sc(burn)) >= base_price);
            prop_assert!(price(f(age), dp(consumption), sc(burn + dburn)) >= base_price);
        }
    }
}
