//! [`Exchange`]: an [`EngineState`] and a [`Quoter`] in one single-threaded
//! value, what the simulator, the benches and the tests drive. Orders
//! execute against the quoter's current quote; a tick first hands the quoter
//! the markets whose stats changed. The runtime keeps the two apart (the
//! state in the market and engine actors, the quoter in the quoting actor)
//! with the same calls. Everything but quotes is a call on [`Exchange::state`].

use std::sync::Arc;

use crate::event::Event;
use crate::ewma::TimeMs;
use crate::fill::Fill;
use crate::market::MarketId;
use crate::order::{self, OrderError, SignedOrder, VerifiedOrder};
use crate::params::EngineConfig;
use crate::quoter::{Quote, Quoter};
use crate::state::{EngineState, Snapshot};

/// All markets of a catalogue, their state and their quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub state: EngineState,
    quoter: Quoter,
}

impl From<EngineState> for Exchange {
    fn from(state: EngineState) -> Self {
        let n = state.markets().len();
        Self { state, quoter: Quoter::new(n) }
    }
}

impl Exchange {
    pub fn new(cfg: Arc<EngineConfig>) -> Self {
        EngineState::new(cfg).into()
    }

    /// Rebuilds an exchange from a snapshot; every market is quoted afresh on the next tick.
    pub fn from_snapshot(snapshot: Snapshot) -> Self {
        EngineState::from_snapshot(snapshot).into()
    }

    pub fn quote(&self, id: MarketId) -> Quote {
        self.quoter.quote(id)
    }

    pub fn quotes(&self) -> impl ExactSizeIterator<Item = Quote> + '_ {
        self.quoter.quotes()
    }

    /// Recomputes every quote as of `now_ms`, after handing the quoter the
    /// markets whose stats changed; pushes the changed markets onto `changed`.
    pub fn tick(&mut self, now_ms: TimeMs, changed: &mut Vec<MarketId>) {
        let quoter = &mut self.quoter;
        self.state.take_stats_changed(|id, _| quoter.mark_dirty(id));
        if self.state.take_requote_all() {
            quoter.mark_all_dirty();
        }
        quoter.tick(&self.state.tick_inputs(now_ms), changed);
    }

    /// Verifies and executes a consumer's order.
    pub fn submit_order(&mut self, signed: SignedOrder, now_ms: TimeMs) -> Result<(Fill, Event), OrderError> {
        let verified = order::verify_order(signed, self.state.catalogue().domain())?;
        self.execute(verified, now_ms)
    }

    /// Executes a verified order against its market's current quote.
    pub fn execute(&mut self, v: VerifiedOrder, now_ms: TimeMs) -> Result<(Fill, Event), OrderError> {
        let quoter = &self.quoter;
        self.state.execute(v, now_ms, |id| quoter.quote(id))
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
