//! Per-market gauges for Prometheus: quote, supply and exposure of each market
//! that changed since the last flush, the exposure of its (type, window)
//! group, and the risk limits. Amounts are in PAT (floats are fine for a
//! dashboard; the ledger itself never leaves integers). The quoting actor
//! flushes them on a timer: it learns which markets changed from its tick and
//! from the stats table, so the order path does no metrics work.

use pat_engine::market::MarketSet;
use pat_engine::money::ONE_PAT;
use pat_engine::params::RiskParams;
use pat_engine::{Amount, MarketId, MarketKey, MarketStats, Quote};

fn pat(amount: u128) -> f64 {
    amount as f64 / ONE_PAT as f64
}

/// What the gauges of one market show.
pub struct Row<'a> {
    pub key: &'a MarketKey,
    pub quote: Quote,
    pub stats: &'a MarketStats,
    /// Exposure of the market's (window, type) group.
    pub group_exposure: Amount,
}

/// The markets whose gauges are stale: those whose quote or stats changed.
pub struct MarketGauges {
    stale: MarketSet,
}

impl MarketGauges {
    /// Every market starts stale, so the first flush sets them all.
    pub fn new(markets: usize) -> Self {
        Self { stale: MarketSet::full(markets) }
    }

    /// The market's quote or stats changed.
    pub fn touch(&mut self, id: MarketId) {
        self.stale.insert(id);
    }

    /// Sets the gauges of every stale market, from `row`.
    pub fn flush<'a>(&mut self, row: impl Fn(MarketId) -> Row<'a>) {
        self.stale.take(|id| {
            let Row { key: market, quote, stats, group_exposure } = row(id);
            let key = market.to_string();
            metrics::gauge!("pat_quote_bid_pat", "market" => key.clone()).set(pat(quote.bid));
            metrics::gauge!("pat_quote_ask_pat", "market" => key.clone()).set(pat(quote.ask));
            metrics::gauge!("pat_quote_spread_bps", "market" => key.clone()).set(f64::from(quote.spread_bps));
            metrics::gauge!("pat_market_supply_units", "market" => key.clone()).set(stats.supply_units as f64);
            metrics::gauge!("pat_market_exposure_pat", "market" => key).set(pat(stats.exposure));
            metrics::gauge!(
                "pat_group_exposure_pat",
                "type" => market.segment_type.to_string(),
                "window" => market.window.to_string()
            )
            .set(pat(group_exposure));
        });
    }
}

/// Sets the risk limit gauges (at start-up and on every reload).
pub fn set_limits(risk: &RiskParams) {
    metrics::gauge!("pat_market_exposure_limit_pat", "level" => "soft").set(pat(risk.market_soft));
    metrics::gauge!("pat_market_exposure_limit_pat", "level" => "hard").set(pat(risk.market_hard));
    metrics::gauge!("pat_group_exposure_limit_pat", "level" => "soft").set(pat(risk.group_soft));
    metrics::gauge!("pat_group_exposure_limit_pat", "level" => "hard").set(pat(risk.group_hard));
}
