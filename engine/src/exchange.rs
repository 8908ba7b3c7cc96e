//! [`Exchange`]: the [`Books`] and a [`Quoter`] in one single-threaded value,
//! what the simulator, the benches and the tests drive. Orders execute
//! against the quoter's current quote; a tick first hands the quoter the
//! markets whose stats changed. The runtime keeps the two apart (the books in
//! the engine actor, the quoter in the quoting actor) with the same calls.
//!
//! Everything of the books is reachable through `Deref`; what involves quotes
//! is here.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use crate::books::{Books, ExchangeState};
use crate::event::Event;
use crate::ewma::TimeMs;
use crate::fill::Fill;
use crate::market::MarketId;
use crate::order::{self, OrderError, SignedOrder, VerifiedOrder};
use crate::params::EngineConfig;
use crate::quoter::{Quote, Quoter};

/// All markets of a catalogue, their books and their quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    books: Books,
    quoter: Quoter,
}

impl Deref for Exchange {
    type Target = Books;
    fn deref(&self) -> &Books {
        &self.books
    }
}

impl DerefMut for Exchange {
    fn deref_mut(&mut self) -> &mut Books {
        &mut self.books
    }
}

impl From<Books> for Exchange {
    fn from(books: Books) -> Self {
        let n = books.markets().len();
        Self { books, quoter: Quoter::new(n) }
    }
}

impl Exchange {
    pub fn new(cfg: Arc<EngineConfig>) -> Self {
        Books::new(cfg).into()
    }

    /// Rebuilds an exchange from a snapshot; every market is quoted afresh on the next tick.
    pub fn from_state(state: ExchangeState) -> Self {
        Books::from_state(state).into()
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
        self.books.take_stats_changed(|id, _| quoter.mark_dirty(id));
        if self.books.take_requote_all() {
            quoter.mark_all_dirty();
        }
        quoter.tick(&self.books.tick_inputs(now_ms), changed);
    }

    /// Verifies and executes a consumer's order.
    pub fn submit_order(&mut self, signed: SignedOrder, now_ms: TimeMs) -> Result<(Fill, Event), OrderError> {
        if self.books.is_paused() {
            return Err(OrderError::Paused);
        }
        let verified = order::verify_order(signed, self.books.domain())?;
        self.execute(verified, now_ms)
    }

    /// Executes a verified order against its market's current quote.
    pub fn execute(&mut self, v: VerifiedOrder, now_ms: TimeMs) -> Result<(Fill, Event), OrderError> {
        let quoter = &self.quoter;
        self.books.execute(v, now_ms, |id| quoter.quote(id))
    }
}

#[cfg(test)]
#[path = "exchange_tests.rs"]
mod tests;
