//! [`EngineState`]: every market of the catalogue and the [`Registry`] between
//! them in one single-threaded value; everything but the quotes. Orders
//! execute against a quote the caller supplies (in [`crate::exchange::Exchange`]
//! its own quoter). The state keeps a per-market stats table and says which
//! markets' stats changed, which is all a quoter needs. Recovery rebuilds
//! it; the runtime then splits it ([`EngineState::into_parts`]), one market
//! per actor, with the same per-market calls on the registry. Reads go to
//! [`EngineState::registry`] and [`EngineState::catalogue`]: nothing here
//! forwards them.

use std::sync::Arc;

use alloy_primitives::B256;

pub use crate::registry::{
    ApplyError, FillRecord, FillStateError, PhaseError, ProviderRecord, ReconfigureError, Refusal, Registry, Snapshot,
    half_life_ms, market_specs,
};

use crate::catalogue::Catalogue;
use crate::event::Event;
use crate::ewma::TimeMs;
use crate::fill::Fill;
use crate::market::{Market, MarketId, MarketSet, MarketStats};
use crate::order::{OrderError, VerifiedOrder};
use crate::params::EngineConfig;
use crate::quoter::{Quote, TickInputs};
use crate::segment::{self, Segment, SignedSegment};

/// All markets of a catalogue and the state between them, but their quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineState {
    registry: Registry,
    markets: Vec<Market>,
    stats: Vec<MarketStats>,
    /// Markets whose stats changed since [`EngineState::take_stats_changed`].
    stats_changed: MarketSet,
    /// Every quote needs redoing (pause switched, config changed) since [`EngineState::take_requote_all`].
    requote_all: bool,
}

impl EngineState {
    pub fn new(cfg: Arc<EngineConfig>) -> Self {
        let (registry, markets) = Registry::new(cfg);
        Self::from_parts(registry, markets)
    }

    fn from_parts(registry: Registry, markets: Vec<Market>) -> Self {
        Self {
            stats: markets.iter().map(|m| *m.stats()).collect(),
            stats_changed: MarketSet::full(markets.len()),
            requote_all: true,
            registry,
            markets,
        }
    }

    /// The registry and every market, by [`MarketId`]: what the runtime
    /// hands its market actors and the lock they share.
    pub fn into_parts(self) -> (Registry, Vec<Market>) {
        (self.registry, self.markets)
    }

    /// What a snapshot holds.
    pub fn snapshot(&self) -> Snapshot {
        self.registry.snapshot(self.markets.clone())
    }

    /// Rebuilds the state from a snapshot; derived tables are recomputed and
    /// every market's stats count as changed.
    pub fn from_snapshot(snapshot: Snapshot) -> Self {
        let (registry, markets) = Registry::from_snapshot(snapshot);
        Self::from_parts(registry, markets)
    }

    /// The state between the markets.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Advances the market phase (1 spot .. 4 options); never backwards.
    pub fn set_phase(&mut self, phase: u8) -> Result<Event, PhaseError> {
        self.registry.set_phase(phase)
    }

    /// The fixed markets and their lookups.
    pub fn catalogue(&self) -> &Arc<Catalogue> {
        self.registry.catalogue()
    }

    pub fn markets(&self) -> &[Market] {
        &self.markets
    }

    pub fn market(&self, id: MarketId) -> &Market {
        &self.markets[id.index()]
    }

    /// The emergency switch: while paused no order is taken and no market quotes.
    pub fn set_paused(&mut self, paused: bool) -> Event {
        self.requote_all = true;
        self.registry.set_paused(paused)
    }

    /// Applies a new config to the same catalogue: prices, spreads, limits,
    /// bounds and cadence change live; the set of markets may not.
    pub fn reconfigure(&mut self, cfg: Arc<EngineConfig>) -> Result<Event, ReconfigureError> {
        let event = self.registry.reconfigure(cfg)?;
        let hl_ms = half_life_ms(self.registry.config());
        for m in &mut self.markets {
            m.set_half_life_ms(hl_ms);
        }
        self.requote_all = true;
        Ok(event)
    }

    fn sync_stats(&mut self, id: MarketId) {
        self.stats[id.index()] = *self.markets[id.index()].stats();
        self.stats_changed.insert(id);
    }

    /// Hands `f` every market whose stats (supply, exposure, ...) changed since
    /// the last call, each once, with its stats; the first call hands every market.
    pub fn take_stats_changed(&mut self, mut f: impl FnMut(MarketId, &MarketStats)) {
        let stats = &self.stats;
        self.stats_changed.take(|id| f(id, &stats[id.index()]));
    }

    /// Whether every quote needs redoing (the pause switched or the config
    /// changed) since the last call; the first call says yes.
    pub fn take_requote_all(&mut self) -> bool {
        std::mem::take(&mut self.requote_all)
    }

    /// What a quoting tick as of `now_ms` reads from the books.
    pub fn tick_inputs(&self, now_ms: TimeMs) -> TickInputs<'_> {
        let r = &self.registry;
        TickInputs {
            now_ms,
            stats: &self.stats,
            specs: r.specs(),
            group_exposure: r.group_exposures(),
            cfg: r.shared_config(),
            paused: r.is_paused(),
        }
    }

    /// Verifies a provider's submission and lists its units in the market it
    /// names; returns the listed segment and its event. A badly signed one
    /// is refused with no change and no event.
    pub fn submit_segment(&mut self, signed: &SignedSegment, now_ms: TimeMs) -> Result<(Segment, Event), Refusal> {
        let verified = segment::verify_submission(signed.clone(), self.catalogue().domain())
            .map_err(|error| Refusal { error, provider: None })?;
        // As the runtime's router: one that names no market goes to the first,
        // whose checks refuse it with the reason.
        let catalogue = self.registry.catalogue();
        let named = catalogue.key_of(&verified.signed().submission).ok();
        let id = named.and_then(|key| catalogue.by_key(&key)).unwrap_or(MarketId(0));
        let listed = self.registry.submit(&mut self.markets[id.index()], &verified, now_ms);
        if listed.is_ok() {
            self.sync_stats(id);
        }
        listed
    }

    /// Counts a validly signed but refused submission against its provider.
    pub fn record_refusal(&mut self, provider: alloy_primitives::Address) {
        self.registry.record_refusal(provider);
    }

    /// Lists a segment that passed its checks (now, or when it was journaled).
    pub fn list_segment(&mut self, segment: Segment) -> Result<(), ApplyError> {
        let id = self.catalogue().by_key(&segment.market).ok_or(ApplyError::UnknownMarket(segment.id))?;
        self.registry.list_segment(&mut self.markets[id.index()], segment)?;
        self.sync_stats(id);
        Ok(())
    }

    /// Executes a verified order against its market's current quote, which
    /// `quote_of` gives: every check, then the uniform draw of units, the
    /// ledger and exposure.
    pub fn execute(
        &mut self,
        v: VerifiedOrder,
        now_ms: TimeMs,
        quote_of: impl FnOnce(MarketId) -> Quote,
    ) -> Result<(Fill, Event), OrderError> {
        let market = v.order().market;
        let id = self.catalogue().by_chain_id(&market).ok_or(OrderError::UnknownMarket(market))?;
        let filled = self.registry.execute(&mut self.markets[id.index()], v, now_ms, quote_of)?;
        self.sync_stats(id);
        Ok(filled)
    }

    /// Books a fill accepted earlier (from the journal): takes exactly its
    /// units and moves its money and exposure, with no checks of price or limits.
    pub fn apply_fill(&mut self, fill: Fill) -> Result<(), ApplyError> {
        let id = fill.market;
        let market = self.markets.get_mut(id.index()).ok_or(ApplyError::FillMarket(fill.fill_id))?;
        self.registry.apply_fill(market, fill)?;
        self.sync_stats(id);
        Ok(())
    }

    /// Applies what the chain showed of consumers' escrow up to `sync.block`; its event,
    /// unless it changed nothing but the block.
    pub fn sync_escrow(&mut self, sync: crate::escrow::EscrowSync) -> Option<Event> {
        self.registry.sync_escrow(sync)
    }

    /// Records a mined payout (see [`Registry::record_payout`]).
    pub fn record_payout(&mut self, payout: crate::payout::Payout) -> Result<Event, crate::registry::PayoutError> {
        self.registry.record_payout(payout)
    }

    /// Whether orders must be covered by free escrow (not state: see [`Registry::require_escrow`]).
    pub fn require_escrow(&mut self, required: bool) {
        self.registry.require_escrow(required);
    }

    /// Records that the open fills among `ids` went to the chain in one batch
    /// transaction `tx_hash`; the event names those it marked.
    pub fn record_submission(&mut self, ids: impl IntoIterator<Item = B256>, tx_hash: B256) -> Event {
        self.registry.record_submission(ids, tx_hash)
    }

    /// Records that an open fill went to the chain in transaction `tx_hash`
    /// (a replayed [`Event::FillsSubmitted`]).
    pub fn mark_submitted(&mut self, id: &B256, tx_hash: B256) -> Result<(), FillStateError> {
        self.registry.mark_submitted(id, tx_hash)
    }

    /// The market of fill `id`.
    fn market_of(&self, id: &B256) -> Result<MarketId, FillStateError> {
        Ok(self.registry.fill(id).ok_or(FillStateError::UnknownFill(*id))?.fill.market)
    }

    /// Marks an open fill settled on chain at `now_ms` and releases its exposure.
    pub fn settle(&mut self, id: &B256, now_ms: TimeMs) -> Result<Event, FillStateError> {
        let market = self.market_of(id)?;
        let event = self.registry.settle(&mut self.markets[market.index()], id, now_ms)?;
        self.sync_stats(market);
        Ok(event)
    }

    /// Marks an open fill failed: its units return to supply (or expire),
    /// its exposure is released and its money refunded in the ledger.
    pub fn fail(&mut self, id: &B256, reason: &str, now_ms: TimeMs) -> Result<Event, FillStateError> {
        let market = self.market_of(id)?;
        let event = self.registry.fail(&mut self.markets[market.index()], id, reason, now_ms)?;
        self.sync_stats(market);
        Ok(event)
    }

    /// Removes every unit of market `id` whose window ended by `now_ms`; the
    /// event that records it, when there were any.
    pub fn expire_market(&mut self, id: MarketId, now_ms: TimeMs) -> Option<Event> {
        let event = self.markets[id.index()].sweep(now_ms)?;
        self.sync_stats(id);
        Some(event)
    }

    /// Removes every unit of every market whose window ended by `now_ms`, in
    /// one sweep (the simulator's); the event that records it, when there
    /// were any.
    pub fn expire(&mut self, now_ms: TimeMs) -> Option<Event> {
        let swept = (0..self.markets.len() as u32).filter(|&i| self.expire_market(MarketId(i), now_ms).is_some());
        (swept.count() > 0).then_some(Event::UnitsExpired { at_ms: now_ms })
    }

    /// Panics if any invariant of the books or the ledger is broken.
    pub fn check_invariants(&self) {
        for m in &self.markets {
            assert_eq!(*m.stats(), self.stats[m.id.index()], "{}: stats table is stale", m.key);
        }
        self.registry.check_invariants(&self.markets);
    }
}
