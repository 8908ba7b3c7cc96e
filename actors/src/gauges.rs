//! Per-market gauges for Prometheus: quote, supply and exposure of each market
//! that changed since the last flush, the exposure of its (type, window)
//! group, and the risk limits. Amounts are in PAT (floats are fine for a
//! dashboard; the ledger itself never leaves integers). Flushed on a timer:
//! which markets changed comes from the tick and from the exchange's own
//! change tracking, so the order path does no metrics work.

use pat_engine::market::MarketSet;
use pat_engine::money::ONE_PAT;
use pat_engine::params::RiskParams;
use pat_engine::{Exchange, MarketId};

fn pat(amount: u128) -> f64 {
    amount as f64 / ONE_PAT as f64
}

/// The markets whose gauges are stale: those whose quote changed (from the
/// tick) or whose stats changed (from the exchange, at flush).
pub struct MarketGauges {
    stale: MarketSet,
}

impl MarketGauges {
    /// Every market starts stale, so the first flush sets them all.
    pub fn new(markets: usize) -> Self {
        Self { stale: MarketSet::full(markets) }
    }

    /// The market's quote changed.
    pub fn touch(&mut self, id: MarketId) {
        self.stale.insert(id);
    }

    /// Sets the gauges of every market whose quote or stats changed.
    pub fn flush(&mut self, exchange: &mut Exchange) {
        let stale = &mut self.stale;
        exchange.take_stats_changed(|id| stale.insert(id));
        stale.take(|id| {
            let market = exchange.market(id);
            let quote = exchange.quote(id);
            let key = market.key.to_string();
            metrics::gauge!("pat_quote_bid_pat", "market" => key.clone()).set(pat(quote.bid));
            metrics::gauge!("pat_quote_ask_pat", "market" => key.clone()).set(pat(quote.ask));
            metrics::gauge!("pat_quote_spread_bps", "market" => key.clone()).set(f64::from(quote.spread_bps));
            metrics::gauge!("pat_market_supply_units", "market" => key.clone()).set(market.supply_units() as f64);
            metrics::gauge!("pat_market_exposure_pat", "market" => key).set(pat(market.stats().exposure));
            metrics::gauge!(
                "pat_group_exposure_pat",
                "type" => market.key.segment_type.to_string(),
                "window" => market.key.window.to_string()
            )
            .set(pat(exchange.group_exposure_of(id)));
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
