//! [`Books`]: every market of the catalogue in one single-threaded value,
//! with the state that spans markets: segments, used nonces, exposure per
//! (window, type), fills, the ledger and the pause switch; everything but the
//! quotes. Orders execute against a quote the caller supplies: in the runtime
//! the quoting actor's table, in [`crate::exchange::Exchange`] its own quoter.
//! The books keep a per-market stats table and say which markets' stats
//! changed, which is all a quoter needs.
//!
//! Every method takes `now_ms`; nothing reads a clock. A method that returns
//! an error has changed nothing (but a provider's reliability count, which is
//! what a refused submission is recorded for).

use std::collections::HashMap;
use std::sync::Arc;

use alloy_primitives::map::{AddressMap, B256Map, B256Set, HashSet};
use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ewma::TimeMs;
use crate::fill::{Fill, FillStatus, Ledger};
use crate::market::{Lot, Market, MarketId, MarketSet, MarketStats, MissingUnits};
use crate::market_key::MarketKey;
use crate::money::Amount;
use crate::order::{LimitScope, OrderError, VerifiedOrder};
use crate::params::EngineConfig;
use crate::quoter::{MarketSpec, Quote, TickInputs};
use crate::segment::{self, Segment, SegmentId, SignedSegment, SubmitError};

/// Why a fill's status could not change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FillStateError {
    #[error("unknown fill {0}")]
    UnknownFill(B256),
    #[error("fill {0} is already {1:?}")]
    NotAccepted(B256, FillStatus),
}

/// Why a recorded outcome (from the journal) does not fit the state it is
/// applied to. Recovery stops on it: the journal and the state disagree.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ApplyError {
    #[error("segment {got:?} listed where segment {expected:?} comes next")]
    SegmentOutOfOrder { expected: SegmentId, got: SegmentId },
    #[error("segment {0:?} names a market that is not in the catalogue")]
    UnknownMarket(SegmentId),
    #[error("fill {0} is already booked")]
    DuplicateFill(B256),
    #[error("fill {0} names a market that is not in the catalogue")]
    FillMarket(B256),
    #[error(transparent)]
    MissingUnits(#[from] MissingUnits),
    #[error(transparent)]
    FillState(#[from] FillStateError),
    #[error(transparent)]
    Phase(#[from] PhaseError),
    #[error(transparent)]
    Reconfigure(#[from] ReconfigureError),
}

/// The market phases: 1 spot, 2 forwards, 3 synthetics, 4 options. Forward only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("phase can only move forward within 1..=4: at {current}, asked for {requested}")]
pub struct PhaseError {
    pub current: u8,
    pub requested: u8,
}

/// Why a new config cannot be applied to a running exchange.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReconfigureError {
    #[error("the catalogue (segment types, windows, bands) changed; that needs a restart")]
    CatalogueChanged,
    #[error("the chain id or marketplace address changed; that needs a restart")]
    DomainChanged,
}

/// A provider's submission history, for its reliability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub accepted: u64,
    pub rejected: u64,
}

impl ProviderRecord {
    /// Share of submissions accepted, in basis points; 10_000 with no history.
    pub fn reliability_bps(&self) -> u16 {
        match self.accepted + self.rejected {
            0 => 10_000,
            n => (self.accepted * 10_000 / n) as u16,
        }
    }
}

/// A fill and where it is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FillRecord {
    pub fill: Fill,
    pub status: FillStatus,
}

/// All markets of a catalogue and the state between them, but their quotes.
#[derive(Debug, Clone, PartialEq)]
pub struct Books {
    cfg: Arc<EngineConfig>,
    domain: Eip712Domain,
    markets: Vec<Market>,
    specs: Vec<MarketSpec>,
    stats: Vec<MarketStats>,
    by_chain_id: B256Map<MarketId>,
    by_key: HashMap<MarketKey, MarketId>,
    group_exposure: Vec<Amount>,
    /// Markets whose stats changed since [`Books::take_stats_changed`].
    stats_changed: MarketSet,
    /// Every quote needs redoing (pause switched, config changed) since [`Books::take_requote_all`].
    requote_all: bool,
    segments: Vec<Segment>,
    payload_hashes: B256Set,
    providers: AddressMap<ProviderRecord>,
    used_nonces: HashSet<(Address, U256)>,
    /// Boxed: a fill is a few hundred bytes, and the map moves its values when it grows.
    fills: B256Map<Box<FillRecord>>,
    ledger: Ledger,
    paused: bool,
    phase: u8,
}

/// Everything of the [`Books`] that is not derived from something else:
/// what a snapshot holds. Collections are sorted, so equal states are equal
/// values and encode to equal bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeState {
    pub config: EngineConfig,
    pub markets: Vec<Market>,
    pub segments: Vec<Segment>,
    pub providers: Vec<(Address, ProviderRecord)>,
    pub used_nonces: Vec<(Address, U256)>,
    pub fills: Vec<FillRecord>,
    pub ledger: Ledger,
    pub paused: bool,
    pub phase: u8,
}

/// The fixed facts of every market of `cfg`, in [`EngineConfig::market_keys`] order.
pub fn market_specs(cfg: &EngineConfig) -> Vec<MarketSpec> {
    let (nw, nb) = (cfg.windows.len(), cfg.bands.len());
    let mut specs = Vec::with_capacity(cfg.types.len() * nw * nb);
    for (t, tp) in cfg.types.iter().enumerate() {
        for (w, window) in cfg.windows.iter().enumerate() {
            for b in 0..nb {
                let id = |w: usize, b: usize| (t * nw * nb + w * nb + b) as u32;
                let group_first = id(w, 0);
                let mut substitutes = [u32::MAX; 4];
                let neighbours = [
                    (b > 0).then(|| id(w, b - 1)),
                    (b + 1 < nb).then(|| id(w, b + 1)),
                    (w > 0).then(|| id(w - 1, b)),
                    (w + 1 < nw).then(|| id(w + 1, b)),
                ];
                for (slot, n) in substitutes.iter_mut().zip(neighbours.into_iter().flatten()) {
                    *slot = n;
                }
                specs.push(MarketSpec {
                    base_ticks: u64::try_from(tp.base_value / tp.tick).expect("config bounds base_value / tick"),
                    tick: tp.tick,
                    window_ms: window.secs() as f64 * 1000.0,
                    group: (t * nw + w) as u32,
                    group_first,
                    group_len: nb as u32,
                    substitutes,
                });
            }
        }
    }
    specs
}

impl Books {
    pub fn new(cfg: Arc<EngineConfig>) -> Self {
        let keys = cfg.market_keys();
        let hl_ms = cfg.pricing.rate_half_life_secs * 1000.0;
        let markets: Vec<Market> =
            keys.iter().enumerate().map(|(i, k)| Market::new(MarketId(i as u32), k.clone(), hl_ms)).collect();
        let by_chain_id = keys.iter().enumerate().map(|(i, k)| (k.id(), MarketId(i as u32))).collect();
        let by_key = keys.iter().enumerate().map(|(i, k)| (k.clone(), MarketId(i as u32))).collect();
        let specs = market_specs(&cfg);
        Self {
            domain: cfg.domain(),
            stats: vec![MarketStats::default(); markets.len()],
            group_exposure: vec![0; cfg.types.len() * cfg.windows.len()],
            stats_changed: MarketSet::full(markets.len()),
            requote_all: true,
            markets,
            specs,
            by_chain_id,
            by_key,
            cfg,
            segments: Vec::new(),
            payload_hashes: B256Set::default(),
            providers: AddressMap::default(),
            used_nonces: HashSet::default(),
            fills: B256Map::default(),
            ledger: Ledger::default(),
            paused: false,
            phase: 1,
        }
    }

    /// The state to snapshot.
    pub fn state(&self) -> ExchangeState {
        let mut providers: Vec<_> = self.providers.iter().map(|(a, r)| (*a, *r)).collect();
        providers.sort_unstable_by_key(|p| p.0);
        let mut used_nonces: Vec<_> = self.used_nonces.iter().copied().collect();
        used_nonces.sort_unstable();
        let mut fills: Vec<_> = self.fills.values().map(|f| (**f).clone()).collect();
        fills.sort_unstable_by_key(|f| f.fill.fill_id);
        ExchangeState {
            config: (*self.cfg).clone(),
            markets: self.markets.clone(),
            segments: self.segments.clone(),
            providers,
            used_nonces,
            fills,
            ledger: self.ledger.clone(),
            paused: self.paused,
            phase: self.phase,
        }
    }

    /// Rebuilds the books from a snapshot; derived tables are recomputed and
    /// every market's stats count as changed.
    pub fn from_state(state: ExchangeState) -> Self {
        let mut ex = Self::new(Arc::new(state.config));
        assert_eq!(ex.markets.len(), state.markets.len(), "a snapshot holds every market of its config");
        ex.markets = state.markets;
        for i in 0..ex.markets.len() {
            ex.stats[i] = *ex.markets[i].stats();
            ex.group_exposure[ex.specs[i].group as usize] += ex.stats[i].exposure;
        }
        ex.payload_hashes = state.segments.iter().map(|s| s.payload_hash).collect();
        ex.segments = state.segments;
        ex.providers = state.providers.into_iter().collect();
        ex.used_nonces = state.used_nonces.into_iter().collect();
        ex.fills = state.fills.into_iter().map(|f| (f.fill.fill_id, Box::new(f))).collect();
        ex.ledger = state.ledger;
        ex.paused = state.paused;
        ex.phase = state.phase;
        ex
    }

    pub fn phase(&self) -> u8 {
        self.phase
    }

    /// Advances the market phase (1 spot .. 4 options); never backwards.
    pub fn set_phase(&mut self, phase: u8) -> Result<(), PhaseError> {
        if phase <= self.phase || phase > 4 {
            return Err(PhaseError { current: self.phase, requested: phase });
        }
        self.phase = phase;
        Ok(())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The config, shared.
    pub fn shared_config(&self) -> &Arc<EngineConfig> {
        &self.cfg
    }

    pub fn domain(&self) -> &Eip712Domain {
        &self.domain
    }

    pub fn markets(&self) -> &[Market] {
        &self.markets
    }

    pub fn market(&self, id: MarketId) -> &Market {
        &self.markets[id.index()]
    }

    pub fn market_by_key(&self, key: &MarketKey) -> Option<MarketId> {
        self.by_key.get(key).copied()
    }

    /// The market whose on-chain id (keccak256 of its key) is `id`.
    pub fn market_by_chain_id(&self, id: &B256) -> Option<MarketId> {
        self.by_chain_id.get(id).copied()
    }

    /// Exposure of the (window, type) group of market `id`.
    pub fn group_exposure_of(&self, id: MarketId) -> Amount {
        self.group_exposure[self.specs[id.index()].group as usize]
    }

    pub fn segment(&self, id: SegmentId) -> Option<&Segment> {
        self.segments.get(id.0 as usize)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    pub fn provider(&self, provider: &Address) -> ProviderRecord {
        self.providers.get(provider).copied().unwrap_or_default()
    }

    /// Every fill, in no particular order.
    pub fn fills(&self) -> impl Iterator<Item = &FillRecord> {
        self.fills.values().map(|f| &**f)
    }

    pub fn fill(&self, id: &B256) -> Option<&FillRecord> {
        self.fills.get(id).map(|f| &**f)
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The emergency switch: while paused no order is taken and no market quotes.
    pub fn set_paused(&mut self, paused: bool) {
        self.paused = paused;
        self.requote_all = true;
    }

    /// Applies a new config to the same catalogue: prices, spreads, limits,
    /// bounds and cadence change live; the set of markets may not.
    pub fn reconfigure(&mut self, cfg: Arc<EngineConfig>) -> Result<(), ReconfigureError> {
        if cfg.market_keys() != self.cfg.market_keys() {
            return Err(ReconfigureError::CatalogueChanged);
        }
        if (cfg.chain_id, cfg.marketplace) != (self.cfg.chain_id, self.cfg.marketplace) {
            return Err(ReconfigureError::DomainChanged);
        }
        let hl_ms = cfg.pricing.rate_half_life_secs * 1000.0;
        for m in &mut self.markets {
            m.set_half_life_ms(hl_ms);
        }
        self.specs = market_specs(&cfg);
        self.cfg = cfg;
        self.requote_all = true;
        Ok(())
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

    /// Exposure of every (window, type) group, by group index.
    pub fn group_exposures(&self) -> &[Amount] {
        &self.group_exposure
    }

    /// What a quoting tick as of `now_ms` reads from the books.
    pub fn tick_inputs(&self, now_ms: TimeMs) -> TickInputs<'_> {
        TickInputs {
            now_ms,
            stats: &self.stats,
            specs: &self.specs,
            group_exposure: &self.group_exposure,
            cfg: &self.cfg,
            paused: self.paused,
        }
    }

    /// Validates a provider's submission and lists its units; returns the
    /// listed segment (what the journal records).
    pub fn submit_segment(&mut self, signed: &SignedSegment, now_ms: TimeMs) -> Result<Segment, SubmitError> {
        let record = self.provider(&signed.submission.provider);
        let id = SegmentId(self.segments.len() as u64);
        let checked = segment::check_submission(signed, &self.cfg, &self.domain, id, now_ms, record.reliability_bps())
            .and_then(|s| match self.payload_hashes.contains(&s.payload_hash) {
                true => Err(SubmitError::DuplicatePayload(s.payload_hash)),
                false => Ok(s),
            });
        let segment = match checked {
            Ok(s) => s,
            Err(e) => {
                if e.is_attributable() {
                    self.record_refusal(signed.submission.provider);
                }
                return Err(e);
            }
        };
        self.list_segment(segment.clone()).expect("a checked segment fits the catalogue");
        Ok(segment)
    }

    /// Counts a validly signed but refused submission against its provider.
    pub fn record_refusal(&mut self, provider: Address) {
        self.providers.entry(provider).or_default().rejected += 1;
    }

    /// Lists a segment that passed its checks (now, or when it was journaled).
    pub fn list_segment(&mut self, segment: Segment) -> Result<(), ApplyError> {
        let expected = SegmentId(self.segments.len() as u64);
        if segment.id != expected {
            return Err(ApplyError::SegmentOutOfOrder { expected, got: segment.id });
        }
        let market = self.market_by_key(&segment.market).ok_or(ApplyError::UnknownMarket(segment.id))?;
        let lot = Lot {
            segment: segment.id,
            window_start_ms: segment.window_start_ms,
            expires_at_ms: segment.expires_at_ms,
            units: segment.units,
        };
        self.markets[market.index()].list(segment.provider, lot, segment.listed_at_ms);
        self.sync_stats(market);
        self.providers.entry(segment.provider).or_default().accepted += 1;
        self.payload_hashes.insert(segment.payload_hash);
        self.segments.push(segment);
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
    ) -> Result<Fill, OrderError> {
        if self.paused {
            return Err(OrderError::Paused);
        }
        let o = v.order();
        let id = self.market_by_chain_id(&o.market).ok_or(OrderError::UnknownMarket(o.market))?;
        let now_secs = now_ms / 1000;
        if o.deadline < U256::from(now_secs) {
            return Err(OrderError::Expired { deadline: o.deadline, now: now_secs });
        }
        if self.used_nonces.contains(&(o.consumer, o.nonce)) {
            return Err(OrderError::NonceUsed { consumer: o.consumer, nonce: o.nonce });
        }
        let qty_max = self.cfg.orders.qty_max;
        let qty = u64::try_from(o.qty)
            .ok()
            .filter(|q| (1..=qty_max).contains(q))
            .ok_or(OrderError::InvalidQuantity { qty: o.qty, max: qty_max })?;
        let quote = quote_of(id);
        if let Some(reason) = quote.halted {
            return Err(OrderError::MarketHalted(reason));
        }
        if quote.valid_until_ms < now_ms {
            return Err(OrderError::QuoteStale { valid_until_ms: quote.valid_until_ms });
        }
        if U256::from(quote.ask) > o.maxPrice {
            return Err(OrderError::PriceAboveMax { ask: quote.ask, max_price: o.maxPrice });
        }
        let market = &self.markets[id.index()];
        if qty > market.supply_units() {
            return Err(OrderError::InsufficientSupply { requested: qty, available: market.supply_units() });
        }
        let notional = quote.ask.saturating_mul(u128::from(qty));
        let risk = &self.cfg.risk;
        let group = self.specs[id.index()].group as usize;
        for (scope, exposure, hard) in [
            (LimitScope::Market, market.stats().exposure, risk.market_hard),
            (LimitScope::Group, self.group_exposure[group], risk.group_hard),
        ] {
            if exposure.saturating_add(notional) > hard {
                return Err(OrderError::ExposureLimit { scope, exposure, notional, hard });
            }
        }
        let fill_id = v.digest();
        let market = &mut self.markets[id.index()];
        let allocations = market.draw(qty, fill_id, now_ms);
        market.add_exposure(notional);
        self.group_exposure[group] += notional;
        self.sync_stats(id);
        let bid_credited = quote.bid * u128::from(qty);
        let fill = Fill {
            fill_id,
            market: id,
            market_key_id: o.market,
            consumer: o.consumer,
            nonce: o.nonce,
            qty,
            max_price: o.maxPrice,
            deadline: o.deadline,
            ask: quote.ask,
            bid: quote.bid,
            ask_paid: notional,
            bid_credited,
            broker_spread: notional - bid_credited,
            accepted_at_ms: now_ms,
            allocations,
            signature: v.signature().to_vec(),
        };
        self.book(fill.clone());
        Ok(fill)
    }

    /// Books a fill accepted earlier (from the journal): takes exactly its
    /// units and moves its money and exposure, with no checks of price or limits.
    pub fn apply_fill(&mut self, fill: Fill) -> Result<(), ApplyError> {
        if self.fills.contains_key(&fill.fill_id) {
            return Err(ApplyError::DuplicateFill(fill.fill_id));
        }
        let market = self.markets.get_mut(fill.market.index()).ok_or(ApplyError::FillMarket(fill.fill_id))?;
        market.take(&fill.allocations, fill.accepted_at_ms)?;
        market.add_exposure(fill.ask_paid);
        self.group_exposure[self.specs[fill.market.index()].group as usize] += fill.ask_paid;
        self.sync_stats(fill.market);
        self.book(fill);
        Ok(())
    }

    fn book(&mut self, fill: Fill) {
        self.used_nonces.insert((fill.consumer, fill.nonce));
        self.ledger.accept(&fill);
        self.fills.insert(fill.fill_id, Box::new(FillRecord { fill, status: FillStatus::Accepted }));
    }

    /// A fill still waiting for the chain: accepted or submitted.
    fn take_open(&mut self, id: &B256) -> Result<&mut FillRecord, FillStateError> {
        let record = self.fills.get_mut(id).ok_or(FillStateError::UnknownFill(*id))?;
        match record.status {
            FillStatus::Accepted | FillStatus::Submitted { .. } => Ok(record),
            ref other => Err(FillStateError::NotAccepted(*id, other.clone())),
        }
    }

    /// Records that an open fill went to the chain in transaction `tx_hash`
    /// (again, for a resubmission).
    pub fn mark_submitted(&mut self, id: &B256, tx_hash: B256) -> Result<(), FillStateError> {
        self.take_open(id)?.status = FillStatus::Submitted { tx_hash };
        Ok(())
    }

    fn release(&mut self, market: MarketId, notional: Amount) {
        self.markets[market.index()].release_exposure(notional);
        self.group_exposure[self.specs[market.index()].group as usize] -= notional;
        self.sync_stats(market);
    }

    /// Marks an open fill settled on chain and releases its exposure.
    pub fn settle(&mut self, id: &B256) -> Result<(), FillStateError> {
        let record = self.take_open(id)?;
        let tx_hash = match record.status {
            FillStatus::Submitted { tx_hash } => Some(tx_hash),
            _ => None,
        };
        record.status = FillStatus::Settled { tx_hash };
        let (market, notional) = (record.fill.market, record.fill.ask_paid);
        self.release(market, notional);
        Ok(())
    }

    /// Marks an open fill failed: its units return to supply (or expire),
    /// its exposure is released and its money refunded in the ledger.
    pub fn fail(&mut self, id: &B256, reason: &str, now_ms: TimeMs) -> Result<(), FillStateError> {
        let record = self.take_open(id)?;
        record.status = FillStatus::Failed { reason: reason.to_owned() };
        let fill = record.fill.clone();
        let returned: Vec<_> = fill
            .allocations
            .iter()
            .map(|a| {
                let s = &self.segments[a.segment.0 as usize];
                let lot = Lot {
                    segment: s.id,
                    window_start_ms: s.window_start_ms,
                    expires_at_ms: s.expires_at_ms,
                    units: a.units,
                };
                (*a, lot)
            })
            .collect();
        self.markets[fill.market.index()].restore(&returned, now_ms);
        self.ledger.refund(&fill);
        self.release(fill.market, fill.ask_paid);
        Ok(())
    }

    /// Removes every unit whose window ended by `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: TimeMs) -> u64 {
        let mut total = 0;
        for i in 0..self.markets.len() {
            let expired = self.markets[i].expire(now_ms);
            if expired > 0 {
                total += expired;
                self.sync_stats(MarketId(i as u32));
            }
        }
        total
    }

    /// Panics if any invariant of the books or the ledger is broken.
    pub fn check_invariants(&self) {
        let mut groups = vec![0; self.group_exposure.len()];
        for (m, spec) in self.markets.iter().zip(&self.specs) {
            m.check_invariants();
            assert_eq!(*m.stats(), self.stats[m.id.index()], "{}: stats table is stale", m.key);
            groups[spec.group as usize] += m.stats().exposure;
        }
        assert_eq!(groups, self.group_exposure, "group exposure = sum of its markets");
        self.ledger.check_conservation();
        let mut open = vec![0; self.markets.len()];
        for r in self.fills.values() {
            r.fill.check_invariants();
            if matches!(r.status, FillStatus::Accepted | FillStatus::Submitted { .. }) {
                open[r.fill.market.index()] += r.fill.ask_paid;
            }
        }
        for m in &self.markets {
            assert_eq!(m.stats().exposure, open[m.id.index()], "{}: exposure = open notional", m.key);
        }
    }
}
