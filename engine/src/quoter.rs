//! The quoting tick: recomputes price and spread from [`MarketStats`] and keeps
//! one [`Quote`] per market whose `seq` goes up by one each time its bid, ask
//! or status changes. The volatility of each market's mid lives here, since
//! the mid is made here.
//!
//! A tick reprices only what can have moved: markets whose inputs changed
//! since the last tick ([`Quoter::mark_dirty`]: their own stats, and with them
//! their substitutes and the other bands of their (window, type) group), plus
//! a rotating slice of all markets sized so that each is repriced at least
//! every `reprice_interval_ms`, for the passage of time (freshness, decay of
//! recent trades). Every quote's validity is renewed by every tick.

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
    /// The mid before the spread, rounded down to a base unit (not to the tick).
    pub price: Amount,
    /// One-sided spread: `bid ~ price * (1 - s)`, `ask ~ price * (1 + s)`.
    pub spread_bps: u32,
    /// Up by one per change of bid, ask or status.
    pub seq: u64,
    /// Renewed by every tick: executable until then.
    pub valid_until_ms: TimeMs,
    /// `None` when the market quotes, the reason when it is halted.
    pub halted: Option<HaltReason>,
}

impl Quote {
    /// A market's quote before its first tick: halted, nothing quoted.
    pub fn unquoted(market: MarketId) -> Self {
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
    /// BaseValue in ticks (config keeps BaseValue a whole number of ticks).
    pub base_ticks: u64,
    pub tick: Amount,
    pub window_ms: f64,
    /// Index of the market's (window, segment type) in the group tables.
    pub group: u32,
    /// The group's markets are `group_first .. group_first + group_len`.
    pub group_first: u32,
    pub group_len: u32,
    /// Neighbouring bands and windows of the same type; `u32::MAX` is empty.
    pub substitutes: [u32; 4],
}

/// Per-market state of the quoting side.
#[derive(Debug, Clone, Copy, PartialEq)]
struct QuoteState {
    quote: Quote,
    /// Bid and ask of `quote` in ticks.
    bid_ticks: u64,
    ask_ticks: u64,
    /// The mid in whole ticks as of the last repricing.
    mid_ticks: u64,
    /// EWMA of the squared log change of the mid, over its moves of a tick or more.
    vol_var: f64,
}

impl QuoteState {
    fn new(market: MarketId) -> Self {
        Self { quote: Quote::unquoted(market), bid_ticks: 0, ask_ticks: 0, mid_ticks: 0, vol_var: 0.0 }
    }
}

/// A tick's verdict on one market, before it is compared with the last quote.
struct Computed {
    bid_ticks: u64,
    ask_ticks: u64,
    mid_subticks: u64,
    mid_ticks: u64,
    vol_var: f64,
    spread_bps: u32,
    halted: Option<HaltReason>,
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
#[derive(Debug, Clone, PartialEq)]
pub struct Quoter {
    states: Vec<QuoteState>,
    /// Markets whose inputs changed since the last tick (flag and list).
    dirty: Vec<bool>,
    dirty_list: Vec<u32>,
    all_dirty: bool,
    /// Tick number at which each market was last repriced (dedupes a tick's work).
    repriced_at: Vec<u64>,
    ticks: u64,
    /// Next market of the rotating time-driven slice.
    cursor: usize,
    valid_until_ms: TimeMs,
}

impl Quoter {
    pub fn new(markets: usize) -> Self {
        Self {
            states: (0..markets).map(|i| QuoteState::new(MarketId(i as u32))).collect(),
            dirty: vec![false; markets],
            dirty_list: Vec::new(),
            all_dirty: true,
            repriced_at: vec![0; markets],
            ticks: 0,
            cursor: 0,
            valid_until_ms: 0,
        }
    }

    /// Continues each market's `seq` from `floors` (the last ones published,
    /// by market index), so that after a restart every quote is newer than
    /// any an observer already holds.
    pub fn resume_seqs(&mut self, floors: &[u64]) {
        for (state, &floor) in self.states.iter_mut().zip(floors) {
            state.quote.seq = state.quote.seq.max(floor);
        }
    }

    /// Until when every quote is executable, as of the last tick.
    pub fn valid_until_ms(&self) -> TimeMs {
        self.valid_until_ms
    }

    pub fn quote(&self, market: MarketId) -> Quote {
        Quote { valid_until_ms: self.valid_until_ms, ..self.states[market.index()].quote }
    }

    pub fn quotes(&self) -> impl ExactSizeIterator<Item = Quote> + '_ {
        self.states.iter().map(|s| Quote { valid_until_ms: self.valid_until_ms, ..s.quote })
    }

    /// The market's inputs changed: reprice it (and its substitutes and group) next tick.
    pub fn mark_dirty(&mut self, market: MarketId) {
        let flag = &mut self.dirty[market.index()];
        if !*flag {
            *flag = true;
            self.dirty_list.push(market.0);
        }
    }

    /// Everything changed (config, pause): reprice every market next tick.
    pub fn mark_all_dirty(&mut self) {
        self.all_dirty = true;
    }

    /// Reprices market `i` once per tick at most.
    fn reprice(&mut self, i: usize, inputs: &TickInputs<'_>, changed: &mut Vec<MarketId>) {
        if self.repriced_at[i] == self.ticks {
            return;
        }
        self.repriced_at[i] = self.ticks;
        let state = &mut self.states[i];
        let next = compute(i, state, inputs);
        // The volatility and mid move with the computation itself, so that
        // repricing again with the same inputs changes nothing (idempotent).
        (state.mid_ticks, state.vol_var) = (next.mid_ticks, next.vol_var);
        if (next.bid_ticks, next.ask_ticks, next.halted) == (state.bid_ticks, state.ask_ticks, state.quote.halted) {
            return;
        }
        let tick = inputs.specs[i].tick;
        (state.bid_ticks, state.ask_ticks) = (next.bid_ticks, next.ask_ticks);
        let q = &mut state.quote;
        q.bid = u128::from(next.bid_ticks) * tick;
        q.ask = u128::from(next.ask_ticks) * tick;
        q.price = pricing::subticks_to_amount(next.mid_subticks, tick);
        q.spread_bps = next.spread_bps;
        q.halted = next.halted;
        q.seq += 1;
        changed.push(q.market);
    }

    /// Reprices, as of `inputs.now_ms`, the markets whose inputs changed and
    /// this tick's slice of the rest; renews every quote's validity. Pushes
    /// the ids of markets whose bid, ask or status changed onto `changed`.
    pub fn tick(&mut self, inputs: &TickInputs<'_>, changed: &mut Vec<MarketId>) {
        let n = self.states.len();
        debug_assert_eq!(inputs.stats.len(), n);
        debug_assert_eq!(inputs.specs.len(), n);
        self.ticks += 1;
        self.valid_until_ms = inputs.now_ms + inputs.cfg.orders.quote_ttl_ms;
        if std::mem::take(&mut self.all_dirty) {
            for i in 0..n {
                self.reprice(i, inputs, changed);
            }
        } else {
            let dirty = std::mem::take(&mut self.dirty_list);
            for &m in &dirty {
                self.dirty[m as usize] = false;
                let spec = &inputs.specs[m as usize];
                self.reprice(m as usize, inputs, changed);
                for &s in spec.substitutes.iter().filter(|&&s| s != u32::MAX) {
                    self.reprice(s as usize, inputs, changed);
                }
                for g in spec.group_first..spec.group_first + spec.group_len {
                    self.reprice(g as usize, inputs, changed);
                }
            }
            self.dirty_list = dirty;
            self.dirty_list.clear();
            let q = &inputs.cfg.quoting;
            let slice = (n as u64 * q.tick_ms).div_ceil(q.reprice_interval_ms.max(1)).min(n as u64) as usize;
            for _ in 0..slice {
                self.cursor = if self.cursor + 1 >= n { 0 } else { self.cursor + 1 };
                self.reprice(self.cursor, inputs, changed);
            }
        }
    }
}

/// One market's bid, ask and status from its stats and its last quote state.
fn compute(i: usize, state: &QuoteState, inputs: &TickInputs<'_>) -> Computed {
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
    let mid_subticks = pricing::mid_subticks(spec.base_ticks, freshness, demand, scarcity);
    let mid_ticks = mid_subticks / pricing::SUBTICKS;
    let mut vol_var = state.vol_var;
    if state.mid_ticks > 0 && mid_ticks > 0 && mid_ticks != state.mid_ticks {
        let r = (mid_ticks as f64 / state.mid_ticks as f64).ln();
        vol_var = (1.0 - sp.volatility_alpha) * vol_var + sp.volatility_alpha * r * r;
    }
    let thin = pricing::thinness(stats.supply_units as f64, stats.trades.value_at(inputs.now_ms, hl_ms), sp);
    let group_exposure = inputs.group_exposure[spec.group as usize];
    let utilization = pricing::limit_utilization(stats.exposure, risk.market_soft, risk.market_hard)
        .max(pricing::limit_utilization(group_exposure, risk.group_soft, risk.group_hard));
    let spread_bps = pricing::spread_bps(vol_var.sqrt(), thin, utilization, sp);
    let mut out = Computed { bid_ticks: 0, ask_ticks: 0, mid_subticks, mid_ticks, vol_var, spread_bps, halted: None };
    out.halted = if inputs.paused {
        Some(HaltReason::Paused)
    } else if stats.exposure >= risk.market_hard {
        Some(HaltReason::MarketExposure)
    } else if group_exposure >= risk.group_hard {
        Some(HaltReason::GroupExposure)
    } else {
        match pricing::quote_ticks(mid_subticks, spread_bps, cfg.broker_margin_cap_bps) {
            Some((bid, ask)) => {
                (out.bid_ticks, out.ask_ticks) = (bid, ask);
                None
            }
            None => Some(HaltReason::NoValidPrice),
        }
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::ONE_PAT;
    use crate::state::market_specs;
    use crate::testing;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const NOW: TimeMs = testing::T0 * 1000;

    fn stats(n: usize) -> Vec<MarketStats> {
        (0..n)
            .map(|i| {
                let mut s =
                    MarketStats { supply_units: 10 + i as u64, next_start_ms: NOW - 3_600_000, ..Default::default() };
                s.minted.add(NOW - 60_000, 20.0, 3_600_000.0);
                s
            })
            .collect()
    }

    fn group_exposure(stats: &[MarketStats], specs: &[MarketSpec], groups: usize) -> Vec<Amount> {
        let mut g = vec![0; groups];
        for (s, spec) in stats.iter().zip(specs) {
            g[spec.group as usize] += s.exposure;
        }
        g
    }

    /// Repricing only dirty markets (with their substitutes and groups) gives
    /// the same quote table as repricing everything, tick after tick.
    #[test]
    fn dirty_tracking_matches_a_full_recompute() {
        let cfg = testing::config();
        let specs = market_specs(&cfg);
        let n = specs.len();
        let groups = cfg.types.len() * cfg.windows.len();
        let mut st = stats(n);
        let (mut inc, mut full) = (Quoter::new(n), Quoter::new(n));
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let mut moved = 0;
        for step in 0..300 {
            let m = rng.random_range(0..n);
            match step % 3 {
                0 => st[m].supply_units = rng.random_range(0..500),
                1 => st[m].exposure = rng.random_range(0..2_500) * ONE_PAT,
                _ => st[m].consumed.add(NOW, rng.random_range(1.0..30.0), 3_600_000.0),
            }
            inc.mark_dirty(MarketId(m as u32));
            full.mark_all_dirty();
            let ge = group_exposure(&st, &specs, groups);
            let inputs =
                TickInputs { now_ms: NOW, stats: &st, specs: &specs, group_exposure: &ge, cfg: &cfg, paused: false };
            a.clear();
            b.clear();
            inc.tick(&inputs, &mut a);
            full.tick(&inputs, &mut b);
            assert_eq!(inc.quotes().collect::<Vec<_>>(), full.quotes().collect::<Vec<_>>(), "step {step}");
            a.sort();
            assert_eq!(a, b, "step {step}");
            moved += a.len();
        }
        assert!(moved > 100, "the test moved quotes: {moved}");
    }

    /// With no input changing, the passage of time still reaches every market
    /// within `reprice_interval_ms`.
    #[test]
    fn time_alone_reprices_every_market_within_the_interval() {
        let cfg = testing::config();
        let specs = market_specs(&cfg);
        let n = specs.len();
        let st = stats(n);
        let ge = vec![0; cfg.types.len() * cfg.windows.len()];
        let mut q = Quoter::new(n);
        let mut changed = Vec::new();
        let inputs =
            |now_ms| TickInputs { now_ms, stats: &st, specs: &specs, group_exposure: &ge, cfg: &cfg, paused: false };
        q.tick(&inputs(NOW), &mut changed);
        let before: Vec<Quote> = q.quotes().collect();
        // Half a day later every market's freshness has fallen; one interval of ticks follows.
        let later = NOW + 12 * 3_600_000;
        let ticks = cfg.quoting.reprice_interval_ms / cfg.quoting.tick_ms;
        changed.clear();
        for k in 0..ticks {
            q.tick(&inputs(later + k * cfg.quoting.tick_ms), &mut changed);
        }
        let after: Vec<Quote> = q.quotes().collect();
        for (b, a) in before.iter().zip(&after) {
            assert!(a.ask < b.ask && a.seq > b.seq, "{b:?} -> {a:?}");
            assert_eq!(a.valid_until_ms, later + (ticks - 1) * cfg.quoting.tick_ms + cfg.orders.quote_ttl_ms);
        }
        assert_eq!(changed.len(), n);
    }

    /// A resumed quoter publishes every market above the floor it was given
    /// (what an observer of the previous quoter last saw), never at or below.
    #[test]
    fn resumed_seqs_continue_above_the_floors() {
        let cfg = testing::config();
        let specs = market_specs(&cfg);
        let n = specs.len();
        let st = stats(n);
        let ge = vec![0; cfg.types.len() * cfg.windows.len()];
        let floors: Vec<u64> = (0..n as u64).map(|i| i * 7).collect();
        let mut q = Quoter::new(n);
        q.resume_seqs(&floors);
        let mut changed = Vec::new();
        let inputs =
            TickInputs { now_ms: NOW, stats: &st, specs: &specs, group_exposure: &ge, cfg: &cfg, paused: false };
        q.tick(&inputs, &mut changed);
        assert_eq!(changed.len(), n, "the first tick publishes every market");
        for (quote, floor) in q.quotes().zip(&floors) {
            assert_eq!(quote.seq, floor + 1);
        }
    }
}
