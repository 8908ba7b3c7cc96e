//! # pat-bench: fixtures for benchmarks and the floors they are compared to
//!
//! Benches live in `benches/` (criterion); this library builds their inputs
//! (large synthetic catalogues with live-looking stats) and holds each
//! benchmark's *floor*: the least work the measured code could possibly do,
//! run in the same process so the ratio between the two means something.

use std::sync::Arc;

use pat_engine::market::MarketStats;
use pat_engine::money::{Amount, ONE_PAT};
use pat_engine::params::{EngineConfig, TypeParams};
use pat_engine::quoter::{MarketSpec, Quote};
use pat_engine::state::market_specs;
use pat_engine::testing;

/// Start of the synthetic history, milliseconds.
/// The value after `name` in a bench binary's arguments, or `default`.
pub fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: cannot parse {v}")))
        .unwrap_or(default)
}

pub const T0_MS: u64 = testing::T0 * 1000;

/// A catalogue of at least `markets` markets (types x 3 windows x 3 bands;
/// exactly one market for `markets == 1`), with the test fixtures' parameters.
pub fn catalogue(markets: usize) -> Arc<EngineConfig> {
    let mut cfg = testing::config();
    if markets == 1 {
        cfg.windows.truncate(1);
        cfg.bands.truncate(1);
    }
    let per_type = cfg.windows.len() * cfg.bands.len();
    cfg.types = (0..markets.div_ceil(per_type))
        .map(|i| TypeParams {
            segment_type: format!("T{i:06}").parse().expect("a valid type name"),
            base_value: ONE_PAT + (i as Amount % 97) * ONE_PAT / 10,
            tick: ONE_PAT / 1000,
            access_secs: pat_engine::params::ACCESS_DEFAULT_SECS,
        })
        .collect();
    Arc::new(cfg)
}

/// Stats with supply, minting, consumption and some exposure, varied per market.
pub fn live_stats(cfg: &EngineConfig, now_ms: u64) -> Vec<MarketStats> {
    let hl_ms = cfg.pricing.rate_half_life_secs * 1000.0;
    (0..cfg.market_keys().len())
        .map(|i| {
            let mut s = MarketStats {
                supply_units: 50 + (i as u64 * 7919) % 400,
                next_start_ms: now_ms - (i as u64 % 48) * 3_600_000,
                exposure: (i as Amount % 13) * 40 * ONE_PAT,
                ..MarketStats::default()
            };
            let at = now_ms - (i as u64 % 600) * 1000;
            s.minted.add(at - 60_000, 10.0 + (i % 17) as f64, hl_ms);
            s.consumed.add(at, 3.0 + (i % 11) as f64, hl_ms);
            s.burned.add(at, 4.0 + (i % 5) as f64, hl_ms);
            s.trades.add(at, 1.0 + (i % 3) as f64, hl_ms);
            s
        })
        .collect()
}

/// Everything a tick over a synthetic catalogue reads.
pub struct TickFixture {
    pub cfg: Arc<EngineConfig>,
    pub specs: Vec<MarketSpec>,
    pub stats: Vec<MarketStats>,
    pub group_exposure: Vec<Amount>,
}

impl TickFixture {
    pub fn new(markets: usize) -> Self {
        let cfg = catalogue(markets);
        let specs = market_specs(&cfg);
        let stats = live_stats(&cfg, T0_MS);
        let mut group_exposure = vec![0; cfg.types.len() * cfg.windows.len()];
        for (s, spec) in stats.iter().zip(&specs) {
            group_exposure[spec.group as usize] += s.exposure;
        }
        Self { cfg, specs, stats, group_exposure }
    }
}

/// The floor of a tick: read every market's stats and write a quote, with no
/// pricing. Returns how many quotes changed, so the work is not optimised away.
pub fn floor_tick(stats: &[MarketStats], specs: &[MarketSpec], quotes: &mut [Quote], now_ms: u64) -> usize {
    let mut changed = 0;
    for ((s, spec), q) in stats.iter().zip(specs).zip(quotes.iter_mut()) {
        let bid = u128::from(spec.base_ticks - s.supply_units % 7) * spec.tick;
        let ask = u128::from(spec.base_ticks) * spec.tick + spec.tick * (s.exposure % 5 + 1);
        if (bid, ask) != (q.bid, q.ask) {
            (q.bid, q.ask, q.seq) = (bid, ask, q.seq + 1);
            changed += 1;
        }
        q.valid_until_ms = now_ms + 1_000;
    }
    changed
}

/// A blank quote table for the floor.
pub fn blank_quotes(n: usize) -> Vec<Quote> {
    (0..n).map(|i| Quote::unquoted(pat_engine::MarketId(i as u32))).collect()
}
