//! Price factors and the spread, each a small pure function (DESIGN.md section 4):
//!
//! `Price = BaseValue x Freshness x DemandPressure x Scarcity`, then
//! `bid = price x (1 - s)` and `ask = price x (1 + s)` with `s = spread_bps / 10_000`,
//! both put on the market's tick by [`quote_prices`]. Factors are `f64`; money
//! is `u128` and meets a factor only through [`crate::money::apply_factor`].

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

/// The one-sided spread in basis points:
/// `base + volatility_bps * sigma + thin_liquidity_bps * thinness + soft_limit_widen_bps * utilization`,
/// rounded to the nearest basis point and clamped to `[min_bps, max_bps]`.
pub fn spread_bps(volatility: f64, thinness: f64, utilization: f64, p: &SpreadParams) -> u32 {
    let raw = p.base_bps as f64
        + p.volatility_bps * volatility
        + p.thin_liquidity_bps as f64 * thinness
        + p.soft_limit_widen_bps as f64 * utilization;
    let rounded = if raw.is_finite() { raw.round() } else { p.max_bps as f64 };
    (rounded.max(0.0).min(u32::MAX as f64) as u32).clamp(p.min_bps, p.max_bps)
}

/// The mid price: `base_value x factor`, where factor is the product of the
/// price factors, rounded down to a base unit (not yet on the tick).
pub fn price(base_value: Amount, freshness: f64, demand_pressure: f64, scarcity: f64) -> Amount {
    money::apply_factor(base_value, freshness * demand_pressure * scarcity)
}

/// Bid and ask on the tick: the rounding rule of the whole engine.
///
/// `bid = floor_tick(price * (10_000 - s) / 10_000)` and
/// `ask = ceil_tick(price * (10_000 + s) / 10_000)`: both round away from the
/// price, so `bid <= price <= ask` and the broker never quotes inside its spread.
/// Then the contract's margin cap: if `(ask - bid) * 10_000 > ask * cap_bps`,
/// the bid is raised to `ceil_tick(ask * (10_000 - cap_bps) / 10_000)`.
/// `None` when no bid can satisfy both the cap and `bid <= price` (a tick too
/// coarse for the price), when the bid would be zero, or on overflow: the
/// market then does not quote.
pub fn quote_prices(price: Amount, spread_bps: u32, tick: Amount, margin_cap_bps: u16) -> Option<(Amount, Amount)> {
    let s = spread_bps.min(BPS as u32) as u128;
    let cap = margin_cap_bps as u128;
    let mut bid = money::floor_to_tick(money::mul_div_floor(price, BPS - s, BPS), tick);
    let ask = money::ceil_to_tick(money::mul_div_ceil(price, BPS + s, BPS), tick)?;
    if (ask - bid).checked_mul(BPS)? > ask.checked_mul(cap)? {
        bid = money::ceil_to_tick(money::mul_div_ceil(ask, BPS - cap, BPS), tick)?;
        if bid > price {
            return None;
        }
    }
    (bid > 0).then_some((bid, ask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::ONE_PAT;
    use crate::testing::{pricing_params, spread_params};
    use proptest::prelude::*;

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
        let tick = ONE_PAT / 1000;
        let (bid, ask) = quote_prices(ONE_PAT, 150, tick, 5000).unwrap();
        assert_eq!((bid, ask), (985 * tick, 1015 * tick));
        let (bid, ask) = quote_prices(ONE_PAT + 1, 150, tick, 5000).unwrap();
        assert_eq!((bid, ask), (985 * tick, 1016 * tick));
        // A 20% spread each way is a 33% margin: over a 25% cap the bid is raised.
        let (bid, ask) = quote_prices(ONE_PAT, 2000, tick, 2500).unwrap();
        assert_eq!(ask, 1200 * tick);
        assert_eq!(bid, 900 * tick);
        assert!((ask - bid) * 10_000 <= ask * 2500);
        // A tick coarser than the price cannot quote.
        assert_eq!(quote_prices(ONE_PAT, 100, 10 * ONE_PAT, 5000), None);
        assert_eq!(quote_prices(0, 100, 1, 5000), None);
    }

    proptest! {
        #[test]
        fn bid_price_ask_are_ordered_and_spread_clamped(
            price in 1u128..1_000_000 * ONE_PAT,
            vol in 0.0f64..5.0,
            thin in 0.0f64..1.0,
            util in 0.0f64..1.0,
            tick_exp in 0u32..16,
            cap in 1u16..=5000,
        ) {
            let sp = spread_params();
            let s = spread_bps(vol, thin, util, &sp);
            prop_assert!(sp.min_bps <= s && s <= sp.max_bps);
            let tick = 10u128.pow(tick_exp);
            if let Some((bid, ask)) = quote_prices(price, s, tick, cap) {
                prop_assert!(bid <= price && price <= ask);
                prop_assert!(bid % tick == 0 && ask % tick == 0);
                prop_assert!((ask - bid) * 10_000 <= ask * cap as u128);
                prop_assert!(bid > 0);
            }
        }

        #[test]
        fn price_is_monotone_in_its_factors(
            base in 1u128..1_000 * ONE_PAT,
            age in 0.0f64..1.0, dage in 0.0f64..0.5,
            consumption in 0.0f64..10.0, dconsumption in 0.0f64..10.0,
            burn in 0.0f64..10.0, dburn in 0.0f64..10.0,
            own in 0.0f64..1000.0, subs in 0.0f64..1000.0,
        ) {
            let p = pricing_params();
            let f = |a: f64| freshness(a, p.freshness_curve, p.freshness_floor);
            let dp = |c: f64| demand_pressure(c, p.demand_pressure_min, p.demand_pressure_max);
            let sc = |b: f64| scarcity(b, own, subs, &p);
            let base_price = price(base, f(age), dp(consumption), sc(burn));
            prop_assert!(price(base, f(age + dage), dp(consumption), sc(burn)) <= base_price);
            prop_assert!(price(base, f(age), dp(consumption + dconsumption), sc(burn)) >= base_price);
            prop_assert!(price(base, f(age), dp(consumption), sc(burn + dburn)) >= base_price);
        }
    }
}
