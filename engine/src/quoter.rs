//! The quoting tick: reads every market's [`MarketStats`], recomputes price and
//! spread, and keeps one [`Quote`] per market whose `seq` goes up by one each
//! time its bid, ask or status changes. The volatility of each market's mid
//! lives here, since the mid is made here.

use crate::ewma::TimeMs;
use crate::market::{MarketId, MarketStats};
use crate::money::Amount;
use crate::order::HaltReason;
use crate::params::EngineConfig;
use crate::pricing;

/// What a market sells at and buys at, per unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub market: MarketId,
    pub bid: Amount,
    pub ask: Amount,
    /// The mid before the spread, not on the tick.
    pub price: Amount,
    /// One-sided spread: `bid ~ price * (1 - s)`, `ask ~ price * (1 + s)`.
    pub spread_bps: u32,
    /// Up by one per change of bid, ask or status.
    pub seq: u64,
    pub valid_until_ms: TimeMs,
    /// `None` when the market quotes, the reason when it is halted.
    pub halted: Option<HaltReason>,
}

impl Quote {
    fn unquoted(market: MarketId) -> Self {
        Self {
            market,
            bid: 0,
            ask: 0,
            price: 0,
            spread_bps: 0,
            seq: 0,
            valid_until_ms: 0,
            halted: Some(HaltReason::NotYetQuoted),
        }
    }
}

/// The fixed facts of a market the tick needs, derived from config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MarketSpec {
    pub base_value: Amount,
    pub tick: Amount,
    pub window_ms: f64,
    /// Index of the market's (window, segment type) in the group tables.
    pub group: u32,
    /// Neighbouring bands and windows of the same type; `u32::MAX` is empty.
    pub substitutes: [u32; 4],
}

/// Per-market state of the quoting side.
#[derive(Debug, Clone, Copy, PartialEq)]
struct QuoteState {
    quote: Quote,
    /// EWMA of the squared log change of the mid.
    vol_var: f64,
}

/// Everything one tick reads.
pub struct TickInputs<'a> {
    pub now_ms: TimeMs,
    pub stats: &'a [MarketStats],
    pub specs: &'a [MarketSpec],
    /// Exposure per (window, segment type) group.
    pub group_exposure: &'a [Amount],
    pub cfg: &'a EngineConfig,
    pub paused: bool,
}

/// The quote table and the state behind it; one writer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Quoter {
    states: Vec<QuoteState>,
}

impl Quoter {
    pub fn new(markets: usize) -> Self {
        let states =
            (0..markets).map(|i| QuoteState { quote: Quote::unquoted(MarketId(i as u32)), vol_var: 0.0 }).collect();
        Self { states }
    }

    /// Makes room for markets added to the catalogue.
    pub fn grow(&mut self, markets: usize) {
        for i in self.states.len()..markets {
            self.states.push(QuoteState { quote: Quote::unquoted(MarketId(i as u32)), vol_var: 0.0 });
        }
    }

    pub fn quote(&self, market: MarketId) -> &Quote {
        &self.states[market.index()].quote
    }

    pub fn quotes(&self) -> impl ExactSizeIterator<Item = &Quote> {
        self.states.iter().map(|s| &s.quote)
    }

    /// Recomputes every market's quote as of `inputs.now_ms`; pushes the ids of
    /// those whose bid, ask or status changed onto `changed`.
    pub fn tick(&mut self, inputs: &TickInputs<'_>, changed: &mut Vec<MarketId>) {
        debug_assert_eq!(inputs.stats.len(), self.states.len());
        debug_assert_eq!(inputs.specs.len(), self.states.len());
        let ttl = inputs.cfg.orders.quote_ttl_ms;
        for (i, state) in self.states.iter_mut().enumerate() {
            let next = compute(i, state, inputs);
            let q = &mut state.quote;
            if (next.bid, next.ask, next.halted) != (q.bid, q.ask, q.halted) {
                if next.halted.is_none() && q.halted.is_none() && q.price > 0 && next.price > 0 {
                    let r = (next.price as f64 / q.price as f64).ln();
                    let a = inputs.cfg.spread.volatility_alpha;
                    state.vol_var = (1.0 - a) * state.vol_var + a * r * r;
                }
                *q = Quote { seq: q.seq + 1, ..next };
                changed.push(q.market);
            } else {
                q.price = next.price;
                q.spread_bps = next.spread_bps;
            }
            q.valid_until_ms = inputs.now_ms + ttl;
        }
    }
}

/// One market's quote from its stats; `seq` and validity are the caller's.
fn compute(i: usize, state: &QuoteState, inputs: &TickInputs<'_>) -> Quote {
    let (stats, spec, cfg) = (&inputs.stats[i], &inputs.specs[i], inputs.cfg);
    let (p, sp, risk) = (&cfg.pricing, &cfg.spread, &cfg.risk);
    let hl_ms = p.rate_half_life_secs * 1000.0;
    let age = if stats.supply_units == 0 {
        0.0
    } else {
        inputs.now_ms.saturating_sub(stats.next_start_ms) as f64 / spec.window_ms
    };
    let freshness = pricing::freshness(age, p.freshness_curve, p.freshness_floor);
    let demand = pricing::demand_pressure(
        stats.consumed.ratio(&stats.minted, hl_ms),
        p.demand_pressure_min,
        p.demand_pressure_max,
    );
    let substitutes: u64 =
        spec.substitutes.iter().filter(|&&s| s != u32::MAX).map(|&s| inputs.stats[s as usize].supply_units).sum();
    let burn_ratio = stats.burned.ratio(&stats.minted, hl_ms);
    let scarcity = pricing::scarcity(burn_ratio, stats.supply_units as f64, substitutes as f64, p);
    let price = pricing::price(spec.base_value, freshness, demand, scarcity);
    let thin = pricing::thinness(stats.supply_units as f64, stats.trades.value_at(inputs.now_ms, hl_ms), sp);
    let group_exposure = inputs.group_exposure[spec.group as usize];
    let utilization = pricing::limit_utilization(stats.exposure, risk.market_soft, risk.market_hard)
        .max(pricing::limit_utilization(group_exposure, risk.group_soft, risk.group_hard));
    let spread_bps = pricing::spread_bps(state.vol_var.sqrt(), thin, utilization, sp);
    let mut quote = Quote { price, spread_bps, ..state.quote };
    let halted = if inputs.paused {
        Some(HaltReason::Paused)
    } else if stats.exposure >= risk.market_hard {
        Some(HaltReason::MarketExposure)
    } else if group_exposure >= risk.group_hard {
        Some(HaltReason::GroupExposure)
    } else {
        match pricing::quote_prices(price, spread_bps, spec.tick, cfg.broker_margin_cap_bps) {
            Some((bid, ask)) => {
                (quote.bid, quote.ask) = (bid, ask);
                None
            }
            None => Some(HaltReason::NoValidPrice),
        }
    };
    if halted.is_some() {
        (quote.bid, quote.ask) = (0, 0);
    }
    quote.halted = halted;
    quote
}
