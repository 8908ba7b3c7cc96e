//! Per-market gauges for Prometheus: quote, supply and exposure of each market
//! touched since the last flush, the exposure of its (type, window) group, and
//! the risk limits. Amounts are in PAT (floats are fine for a dashboard; the
//! ledger itself never leaves integers). Flushed on a timer, so the order path
//! pays one flag write per touched market, not a metrics lookup.

use pat_engine::money::ONE_PAT;
use pat_engine::params::RiskParams;
use pat_engine::{Exchange, MarketId};

fn pat(amount: u128) -> f64 {
    amount as f64 / ONE_PAT as f64
}

/// The markets whose gauges are stale.
pub struct MarketGauges {
    touched: Vec<bool>,
    list: Vec<MarketId>,
}

impl MarketGauges {
    /// Every market starts stale, so the first flush sets them all.
    pub fn new(markets: usize) -> Self {
        Self { touched: vec![true; markets], list: (0..markets as u32).map(MarketId).collect() }
    }

    pub fn touch(&mut self, id: MarketId) {
        if let Some(flag) = self.touched.get_mut(id.0 as usize)
            && !*flag
        {
            *flag = true;
            self.list.push(id);
        }
    }

    pub fn touch_all(&mut self) {
        for i in 0..self.touched.len() {
            self.touch(MarketId(i as u32));
        }
    }

    /// Sets the gauges of every touched market.
    pub fn flush(&mut self, exchange: &Exchange) {
        for id in self.list.drain(..) {
            self.touched[id.0 as usize] = false;
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
        }
    }
}

/// Sets the risk limit gauges (at start-up and on every reload).
pub fn set_limits(risk: &RiskParams) {
    metrics::gauge!("pat_market_exposure_limit_pat", "level" => "soft").set(pat(risk.market_soft));
    metrics::gauge!("pat_market_exposure_limit_pat", "level" => "hard").set(pat(risk.market_hard));
    metrics::gauge!("pat_group_exposure_limit_pat", "level" => "soft").set(pat(risk.group_soft));
    metrics::gauge!("pat_group_exposure_limit_pat", "level" => "hard").set(pat(risk.group_hard));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_market_is_listed_once_however_often_it_is_touched() {
        let mut gauges = MarketGauges::new(3);
        gauges.list.clear();
        gauges.touched.fill(false);
        gauges.touch(MarketId(1));
        gauges.touch(MarketId(1));
        gauges.touch(MarketId(7)); // unknown: ignored
        assert_eq!(gauges.list, [MarketId(1)]);
        gauges.touch_all();
        assert_eq!(gauges.list, [MarketId(1), MarketId(0), MarketId(2)]);
    }
}
