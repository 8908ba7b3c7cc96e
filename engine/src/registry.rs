//! [`Registry`]: the changing state between markets (the fixed markets are its
//! [`Catalogue`]): segments and their payload hashes, provider records, used nonces, fills, the
//! ledger, exposure per (window, type), the pause switch, the phase, consumers' escrow and
//! what providers were paid.
//! Every change that touches a market takes that [`Market`] by `&mut`: the
//! caller owns it. [`crate::state::EngineState`] owns every market in one value;
//! the runtime gives each market to its own actor, and the actors share the
//! registry behind one lock, so that a nonce is claimed once, a group's
//! exposure limit holds across its markets, and segment ids follow the
//! journal's order.
//!
//! Every method takes `now_ms`; nothing reads a clock. A method that returns
//! an error has changed nothing (but a provider's reliability count, which is
//! what a refused submission is recorded for).

use std::sync::Arc;

use alloy_primitives::map::{AddressMap, B256Map, B256Set, HashMap, HashSet};
use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::catalogue::Catalogue;
use crate::escrow::{EscrowBook, EscrowRefusal, EscrowSnapshot, EscrowSync};
use crate::event::Event;
use crate::ewma::TimeMs;
use crate::fill::{Fill, FillStatus, Ledger};
use crate::market::{Lot, Market, MarketId, MissingUnits};
use crate::money::Amount;
use crate::order::{LimitScope, OrderError, VerifiedOrder};
use crate::params::EngineConfig;
use crate::payout::{Payout, PayoutBook, ProviderPayout};
use crate::quoter::{MarketSpec, Quote};
use crate::segment::{self, Segment, SegmentId, SubmitError, VerifiedSegment};

/// Why a fill's status could not change.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FillStateError {
    #[error("unknown fill {0}")]
    UnknownFill(B256),
    #[error("fill {0} is already {1:?}")]
    NotAccepted(B256, FillStatus),
    #[error("fill {0} belongs to another market")]
    OtherMarket(B256),
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
    #[error("an expiry names market {0:?}, which is not in the catalogue")]
    ExpiryMarket(MarketId),
    #[error(transparent)]
    MissingUnits(#[from] MissingUnits),
    #[error(transparent)]
    FillState(#[from] FillStateError),
    #[error(transparent)]
    Phase(#[from] PhaseError),
    #[error(transparent)]
    Reconfigure(#[from] ReconfigureError),
    /// Boxed: the largest of these, and recovery's error carries one.
    #[error(transparent)]
    Payout(#[from] Box<PayoutError>),
}

/// A payout that states more for a provider than its settled credits: never the engine's own.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("payout {tx_hash} states {} for provider {}, above its settled credits {settled}", .line.cumulative, .line.provider)]
pub struct PayoutError {
    pub tx_hash: B256,
    pub line: ProviderPayout,
    pub settled: Amount,
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

/// A submission that was not listed. A validly signed one counts against its
/// `provider`, and [`Refusal::event`] records that; one that was badly signed,
/// or for another market, changed nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub error: SubmitError,
    pub provider: Option<Address>,
}

impl Refusal {
    /// The event that records the refusal, when it changed something.
    pub fn event(&self) -> Option<Event> {
        self.provider.map(|provider| Event::SubmissionRefused { provider })
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
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

/// Everything of the books that is not derived from something else:
/// what a snapshot holds. Collections are sorted, so equal states are equal
/// values and encode to equal bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub config: EngineConfig,
    pub markets: Vec<Market>,
    pub segments: Vec<Segment>,
    pub providers: Vec<(Address, ProviderRecord)>,
    pub used_nonces: Vec<(Address, U256)>,
    pub fills: Vec<FillRecord>,
    pub ledger: Ledger,
    pub paused: bool,
    pub phase: u8,
    /// Escrow as synced from the chain, and what open fills hold of it (schema v3).
    pub escrow: EscrowSnapshot,
    /// What mined payouts stated for each provider, by address (schema v4).
    pub paid: Vec<(Address, Amount)>,
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

/// The state between the markets of one catalogue.
#[derive(Debug, Clone, PartialEq)]
pub struct Registry {
    catalogue: Arc<Catalogue>,
    cfg: Arc<EngineConfig>,
    specs: Vec<MarketSpec>,
    group_exposure: Vec<Amount>,
    /// Shared (`Arc`) with the runtime's read view, which lists them without this lock.
    segments: Vec<Arc<Segment>>,
    payload_hashes: B256Set,
    providers: AddressMap<ProviderRecord>,
    used_nonces: HashSet<(Address, U256)>,
    /// Behind an `Arc`: a fill is a few hundred bytes, and the map moves its values when it
    /// grows; the runtime's read view shares each record, and a change of status copies it
    /// (`Arc::make_mut`) while the view still holds the old one.
    fills: B256Map<Arc<FillRecord>>,
    /// The segments each consumer holds, each with the number of its fills
    /// that did not fail and hold it (derived from `fills`; fills of schema v1
    /// may share a segment): a draw for the consumer never gives one again.
    bought: Held,
    ledger: Ledger,
    paused: bool,
    phase: u8,
    escrow: EscrowBook,
    /// Each provider's settled credits (derived from `fills`) and what it was paid.
    payouts: PayoutBook,
}

/// The segments each consumer holds, with the number of its fills holding each.
type Held = AddressMap<HashMap<SegmentId, u32>>;

/// Counts `fill`'s segments as held by its consumer.
fn hold(held: &mut Held, fill: &Fill) {
    let mine = held.entry(fill.consumer).or_default();
    for a in &fill.allocations {
        *mine.entry(a.segment).or_default() += 1;
    }
}

/// The EWMA half-life of `cfg`'s markets, in milliseconds.
pub fn half_life_ms(cfg: &EngineConfig) -> f64 {
    cfg.pricing.rate_half_life_secs * 1000.0
}

impl Registry {
    /// The registry of `cfg`'s catalogue, and its markets, empty.
    pub fn new(cfg: Arc<EngineConfig>) -> (Self, Vec<Market>) {
        let keys = cfg.market_keys();
        let hl_ms = half_life_ms(&cfg);
        let markets: Vec<Market> =
            keys.iter().enumerate().map(|(i, k)| Market::new(MarketId(i as u32), k.clone(), hl_ms)).collect();
        let registry = Self {
            catalogue: Arc::new(Catalogue::new(&cfg)),
            group_exposure: vec![0; cfg.types.len() * cfg.windows.len()],
            specs: market_specs(&cfg),
            cfg,
            segments: Vec::new(),
            payload_hashes: B256Set::default(),
            providers: AddressMap::default(),
            used_nonces: HashSet::default(),
            fills: B256Map::default(),
            bought: AddressMap::default(),
            ledger: Ledger::default(),
            paused: false,
            phase: 1,
            escrow: EscrowBook::default(),
            payouts: PayoutBook::default(),
        };
        (registry, markets)
    }

    /// The state to snapshot, with `markets`, every market of the catalogue
    /// as of the same moment.
    pub fn snapshot(&self, markets: Vec<Market>) -> Snapshot {
        let mut providers: Vec<_> = self.providers.iter().map(|(a, r)| (*a, *r)).collect();
        providers.sort_unstable_by_key(|p| p.0);
        let mut used_nonces: Vec<_> = self.used_nonces.iter().copied().collect();
        used_nonces.sort_unstable();
        let mut fills: Vec<_> = self.fills.values().map(|f| (**f).clone()).collect();
        fills.sort_unstable_by_key(|f| f.fill.fill_id);
        Snapshot {
            config: (*self.cfg).clone(),
            markets,
            segments: self.segments.iter().map(|s| (**s).clone()).collect(),
            providers,
            used_nonces,
            fills,
            ledger: self.ledger.clone(),
            paused: self.paused,
            phase: self.phase,
            escrow: self.escrow.snapshot(),
            paid: self.payouts.paid(),
        }
    }

    /// Rebuilds the registry and the markets from a snapshot; derived tables are recomputed.
    pub fn from_snapshot(state: Snapshot) -> (Self, Vec<Market>) {
        let (mut registry, fresh) = Self::new(Arc::new(state.config));
        assert_eq!(fresh.len(), state.markets.len(), "a snapshot holds every market of its config");
        for m in &state.markets {
            registry.group_exposure[registry.specs[m.id.index()].group as usize] += m.stats().exposure;
        }
        registry.payload_hashes = state.segments.iter().map(|s| s.payload_hash).collect();
        registry.segments = state.segments.into_iter().map(Arc::new).collect();
        registry.providers = state.providers.into_iter().collect();
        registry.used_nonces = state.used_nonces.into_iter().collect();
        registry.payouts = PayoutBook::from_paid(state.paid);
        for r in state.fills.iter().filter(|r| !matches!(r.status, FillStatus::Failed { .. })) {
            hold(&mut registry.bought, &r.fill);
            if matches!(r.status, FillStatus::Settled { .. }) {
                registry.payouts.credit_settled(&r.fill);
            }
        }
        registry.fills = state.fills.into_iter().map(|f| (f.fill.fill_id, Arc::new(f))).collect();
        registry.ledger = state.ledger;
        registry.paused = state.paused;
        registry.phase = state.phase;
        registry.escrow = EscrowBook::from_snapshot(state.escrow);
        (registry, state.markets)
    }

    pub fn phase(&self) -> u8 {
        self.phase
    }

    /// Advances the market phase (1 spot .. 4 options); never backwards.
    pub fn set_phase(&mut self, phase: u8) -> Result<Event, PhaseError> {
        if phase <= self.phase || phase > 4 {
            return Err(PhaseError { current: self.phase, requested: phase });
        }
        self.phase = phase;
        Ok(Event::PhaseAdvanced { phase })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// The config, shared.
    pub fn shared_config(&self) -> &Arc<EngineConfig> {
        &self.cfg
    }

    /// The fixed markets and their lookups, shared with the runtime.
    pub fn catalogue(&self) -> &Arc<Catalogue> {
        &self.catalogue
    }

    /// The fixed facts of every market, by [`MarketId`].
    pub fn specs(&self) -> &[MarketSpec] {
        &self.specs
    }

    /// Exposure of the (window, type) group of market `id`.
    pub fn group_exposure_of(&self, id: MarketId) -> Amount {
        self.group_exposure[self.specs[id.index()].group as usize]
    }

    /// Exposure of every (window, type) group, by group index.
    pub fn group_exposures(&self) -> &[Amount] {
        &self.group_exposure
    }

    pub fn segment(&self, id: SegmentId) -> Option<&Segment> {
        self.segments.get(id.0 as usize).map(|s| &**s)
    }

    /// Every segment by id, shared.
    pub fn segments(&self) -> &[Arc<Segment>] {
        &self.segments
    }

    pub fn provider(&self, provider: &Address) -> ProviderRecord {
        self.providers.get(provider).copied().unwrap_or_default()
    }

    /// Every fill, in no particular order, shared.
    pub fn fills(&self) -> impl Iterator<Item = &Arc<FillRecord>> {
        self.fills.values()
    }

    /// Fill `id`'s record as it is now, shared (a later change of status
    /// copies it, so this one stays as it was).
    pub fn fill_record(&self, id: &B256) -> Option<&Arc<FillRecord>> {
        self.fills.get(id)
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
    pub fn set_paused(&mut self, paused: bool) -> Event {
        self.paused = paused;
        Event::PauseSet { paused }
    }

    /// Checks that `cfg` keeps the catalogue and the signing domain, and takes
    /// it; the caller gives every market the new [`half_life_ms`].
    pub fn reconfigure(&mut self, cfg: Arc<EngineConfig>) -> Result<Event, ReconfigureError> {
        self.catalogue.admits(&cfg)?;
        self.specs = market_specs(&cfg);
        let event = Event::ConfigChanged(Box::new((*cfg).clone()));
        self.cfg = cfg;
        Ok(event)
    }

    /// Validates a provider's verified submission and lists it in `market`,
    /// which must be the market its type, window and confidence name. A
    /// refusal counts against the provider's reliability (its signature is
    /// good), and its [`Refusal`] gives the event that records that; a
    /// submission for another market is refused with no change and no event.
    pub fn submit(
        &mut self,
        market: &mut Market,
        verified: &VerifiedSegment,
        now_ms: TimeMs,
    ) -> Result<(Segment, Event), Refusal> {
        let provider = verified.signed().submission.provider;
        let segment =
            self.check_segment(verified, now_ms).map_err(|error| Refusal { error, provider: Some(provider) })?;
        if segment.market != market.key {
            return Err(Refusal { error: SubmitError::OtherMarket { market: segment.market }, provider: None });
        }
        self.list_segment(market, segment.clone()).expect("a checked segment of this market fits it");
        let event = Event::SegmentListed(segment.clone());
        Ok((segment, event))
    }

    /// Validates a provider's verified submission and gives it the next
    /// segment id. A refusal counts against the provider's reliability.
    fn check_segment(&mut self, verified: &VerifiedSegment, now_ms: TimeMs) -> Result<Segment, SubmitError> {
        let provider = verified.signed().submission.provider;
        let id = SegmentId(self.segments.len() as u64);
        let reliability = self.provider(&provider).reliability_bps();
        let checked = self
            .catalogue
            .key_of(&verified.signed().submission)
            .and_then(|market| segment::check_submission(verified, &self.cfg, market, id, now_ms, reliability))
            .and_then(|s| match self.payload_hashes.contains(&s.payload_hash) {
                true => Err(SubmitError::DuplicatePayload(s.payload_hash)),
                false => Ok(s),
            });
        if checked.is_err() {
            self.record_refusal(provider);
        }
        checked
    }

    /// Counts a validly signed but refused submission against its provider.
    pub fn record_refusal(&mut self, provider: Address) {
        self.providers.entry(provider).or_default().rejected += 1;
    }

    /// Lists a segment that passed its checks (now, or when it was journaled)
    /// in `market`, which must be the segment's.
    pub fn list_segment(&mut self, market: &mut Market, segment: Segment) -> Result<(), ApplyError> {
        let expected = SegmentId(self.segments.len() as u64);
        if segment.id != expected {
            return Err(ApplyError::SegmentOutOfOrder { expected, got: segment.id });
        }
        if market.key != segment.market {
            return Err(ApplyError::UnknownMarket(segment.id));
        }
        let lot = Lot {
            segment: segment.id,
            window_start_ms: segment.window_start_ms,
            expires_at_ms: segment.expires_at_ms,
            units: segment.units,
        };
        market.list(segment.provider, lot, segment.listed_at_ms);
        self.providers.entry(segment.provider).or_default().accepted += 1;
        self.payload_hashes.insert(segment.payload_hash);
        self.segments.push(Arc::new(segment));
        Ok(())
    }

    /// Executes a verified order for `market` against that market's current
    /// quote: every check, then the uniform draw of units, the ledger and
    /// exposure. An order for another market is refused as unknown. The fill
    /// comes with the event that records it.
    pub fn execute(
        &mut self,
        market: &mut Market,
        v: VerifiedOrder,
        now_ms: TimeMs,
        quote: impl FnOnce(MarketId) -> Quote,
    ) -> Result<(Fill, Event), OrderError> {
        if self.paused {
            return Err(OrderError::Paused);
        }
        let o = v.order();
        let id = market.id;
        if self.catalogue.by_chain_id(&o.market) != Some(id) {
            return Err(OrderError::UnknownMarket(o.market));
        }
        let now_secs = now_ms / 1000;
        if o.deadline < U256::from(now_secs) {
            return Err(OrderError::Expired { deadline: o.deadline, now: now_secs });
        }
        if self.used_nonces.contains(&(o.consumer, o.nonce)) {
            return Err(OrderError::NonceUsed { consumer: o.consumer, nonce: o.nonce });
        }
        if self.escrow.is_cancelled(o.consumer, o.nonce) {
            return Err(OrderError::NonceInvalidated { consumer: o.consumer, nonce: o.nonce });
        }
        let qty_max = self.cfg.orders.qty_max;
        let qty = u64::try_from(o.qty)
            .ok()
            .filter(|q| (1..=qty_max).contains(q))
            .ok_or(OrderError::InvalidQuantity { qty: o.qty, max: qty_max })?;
        let quote = quote(id);
        if let Some(reason) = quote.halted {
            return Err(OrderError::MarketHalted(reason));
        }
        if quote.valid_until_ms < now_ms {
            return Err(OrderError::QuoteStale { valid_until_ms: quote.valid_until_ms });
        }
        if U256::from(quote.ask) > o.maxPrice {
            return Err(OrderError::PriceAboveMax { ask: quote.ask, max_price: o.maxPrice });
        }
        if qty > market.supply_units() {
            return Err(OrderError::InsufficientSupply { requested: qty, available: market.supply_units() });
        }
        let notional = quote.ask.saturating_mul(u128::from(qty));
        self.escrow.check(&o.consumer, notional, now_ms).map_err(|r| match r {
            EscrowRefusal::Uncovered { needed, free } => OrderError::InsufficientEscrow { needed, free },
            EscrowRefusal::Stale { current_at_ms } => OrderError::EscrowUnavailable { current_at_ms },
        })?;
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
        let held = self.bought.get(&o.consumer);
        let allocations = market
            .draw(qty, fill_id, |s| held.is_some_and(|h| h.contains_key(&s)))
            .map_err(|available| OrderError::InsufficientSupply { requested: qty, available })?;
        market.take(&allocations, now_ms).expect("the draw is from the book");
        market.add_exposure(notional);
        self.group_exposure[group] += notional;
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
        let event = Event::FillAccepted(fill.clone());
        Ok((fill, event))
    }

    /// Books a fill accepted earlier (from the journal) in `market`, its
    /// market: takes exactly its units and moves its money and exposure,
    /// with no checks of price or limits.
    pub fn apply_fill(&mut self, market: &mut Market, fill: Fill) -> Result<(), ApplyError> {
        if self.fills.contains_key(&fill.fill_id) {
            return Err(ApplyError::DuplicateFill(fill.fill_id));
        }
        if market.id != fill.market {
            return Err(ApplyError::FillMarket(fill.fill_id));
        }
        market.take(&fill.allocations, fill.accepted_at_ms)?;
        market.add_exposure(fill.ask_paid);
        self.group_exposure[self.specs[fill.market.index()].group as usize] += fill.ask_paid;
        self.book(fill);
        Ok(())
    }

    fn book(&mut self, fill: Fill) {
        self.used_nonces.insert((fill.consumer, fill.nonce));
        self.escrow.hold(&fill);
        hold(&mut self.bought, &fill);
        self.ledger.accept(&fill);
        self.fills.insert(fill.fill_id, Arc::new(FillRecord { fill, status: FillStatus::Accepted }));
    }

    /// A fill of `market` still waiting for the chain: accepted or submitted.
    fn take_open(&mut self, market: MarketId, id: &B256) -> Result<&mut FillRecord, FillStateError> {
        let shared = self.fills.get_mut(id).ok_or(FillStateError::UnknownFill(*id))?;
        match shared.status {
            _ if shared.fill.market != market => Err(FillStateError::OtherMarket(*id)),
            // Copied (while the read view holds the old one) only for a change that happens.
            FillStatus::Accepted | FillStatus::Submitted { .. } => Ok(Arc::make_mut(shared)),
            ref other => Err(FillStateError::NotAccepted(*id, other.clone())),
        }
    }

    /// Records that the open fills among `ids` went to the chain in one batch
    /// transaction `tx_hash` (again, for a resubmission); a fill that settled
    /// or failed meanwhile (a raced retry) is left as it is. The event names
    /// the fills it marked.
    pub fn record_submission(&mut self, ids: impl IntoIterator<Item = B256>, tx_hash: B256) -> Event {
        let fill_ids = ids.into_iter().filter(|id| self.mark_submitted(id, tx_hash).is_ok()).collect();
        Event::FillsSubmitted { fill_ids, tx_hash }
    }

    /// Records that an open fill went to the chain in transaction `tx_hash`.
    pub fn mark_submitted(&mut self, id: &B256, tx_hash: B256) -> Result<(), FillStateError> {
        let market = self.fills.get(id).ok_or(FillStateError::UnknownFill(*id))?.fill.market;
        self.take_open(market, id)?.status = FillStatus::Submitted { tx_hash };
        Ok(())
    }

    fn release(&mut self, market: &mut Market, notional: Amount) {
        market.release_exposure(notional);
        self.group_exposure[self.specs[market.id.index()].group as usize] -= notional;
    }

    /// Marks an open fill of `market` settled on chain at `now_ms` and
    /// releases its exposure. A settlement is never earlier than its fill's
    /// acceptance: a clock behind that (another actor's, a journal of schema
    /// v1 that recorded no time) counts from the acceptance.
    pub fn settle(&mut self, market: &mut Market, id: &B256, now_ms: TimeMs) -> Result<Event, FillStateError> {
        let record = self.take_open(market.id, id)?;
        let tx_hash = match record.status {
            FillStatus::Submitted { tx_hash } => Some(tx_hash),
            _ => None,
        };
        let at_ms = now_ms.max(record.fill.accepted_at_ms);
        record.status = FillStatus::Settled { tx_hash, at_ms };
        let notional = record.fill.ask_paid;
        self.payouts.credit_settled(&self.fills[id].fill);
        self.release(market, notional);
        Ok(Event::FillSettled { fill_id: *id, at_ms })
    }

    /// Marks an open fill of `market` failed: its units return to supply (or
    /// expire), its exposure is released and its money refunded in the ledger.
    pub fn fail(
        &mut self,
        market: &mut Market,
        id: &B256,
        reason: &str,
        now_ms: TimeMs,
    ) -> Result<Event, FillStateError> {
        let record = self.take_open(market.id, id)?;
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
        market.restore(&returned, now_ms);
        let held = self.bought.get_mut(&fill.consumer).expect("a booked fill's consumer holds its segments");
        for a in &fill.allocations {
            let count = held.get_mut(&a.segment).expect("a booked fill's segment is held");
            *count -= 1;
            if *count == 0 {
                held.remove(&a.segment);
            }
        }
        if held.is_empty() {
            self.bought.remove(&fill.consumer);
        }
        self.ledger.refund(&fill);
        self.escrow.release(id);
        self.release(market, fill.ask_paid);
        Ok(Event::FillFailed { fill_id: *id, reason: reason.to_owned(), at_ms: now_ms })
    }

    /// Consumers' escrow as synced from the chain, and what open fills hold of it.
    pub fn escrow(&self) -> &EscrowBook {
        &self.escrow
    }

    /// Whether orders must be covered by free escrow (a runtime setting: replaying
    /// accepted fills checks nothing).
    pub fn require_escrow(&mut self, required: bool) {
        self.escrow.set_required(required);
    }

    /// The escrow book, for the runtime's settings and its follower's marks (none of it state).
    pub fn escrow_mut(&mut self) -> &mut EscrowBook {
        &mut self.escrow
    }

    /// Applies what the chain showed up to `sync.block`: accounts, settlements seen
    /// (their fills hold no more escrow) and cancelled nonces; the event that records it,
    /// unless the sync changed nothing but the block (none is journaled for that).
    pub fn sync_escrow(&mut self, sync: EscrowSync) -> Option<Event> {
        if sync.is_empty() {
            self.escrow.follow(sync.block);
            return None;
        }
        self.escrow.apply(&sync);
        Some(Event::EscrowSynced(sync))
    }

    /// Each provider's settled credits and what mined payouts paid it.
    pub fn payouts(&self) -> &PayoutBook {
        &self.payouts
    }

    /// Records a mined payout; refuses one that states more for a provider than its
    /// settled credits (the engine states exactly those), changing nothing.
    pub fn record_payout(&mut self, payout: Payout) -> Result<Event, PayoutError> {
        if let Err(line) = self.payouts.fits(&payout) {
            let settled = self.payouts.account(&line.provider).settled;
            return Err(PayoutError { tx_hash: payout.tx_hash, line, settled });
        }
        self.payouts.record(&payout);
        Ok(Event::ProvidersPaid(payout))
    }

    /// Panics if any invariant of the registry with `markets`, every market
    /// of its catalogue, is broken.
    pub fn check_invariants(&self, markets: &[Market]) {
        let mut groups = vec![0; self.group_exposure.len()];
        for (m, spec) in markets.iter().zip(&self.specs) {
            m.check_invariants();
            groups[spec.group as usize] += m.stats().exposure;
        }
        assert_eq!(groups, self.group_exposure, "group exposure = sum of its markets");
        self.escrow.check_invariants();
        self.payouts.check_invariants();
        let mut settled = PayoutBook::from_paid(self.payouts.paid());
        for r in self.fills.values().filter(|r| matches!(r.status, FillStatus::Settled { .. })) {
            settled.credit_settled(&r.fill);
        }
        assert_eq!(&settled, &self.payouts, "settled credits = the providers' credits of settled fills");
        self.ledger.check_conservation();
        let mut held = Held::default();
        for r in self.fills.values().filter(|r| !matches!(r.status, FillStatus::Failed { .. })) {
            hold(&mut held, &r.fill);
        }
        assert_eq!(held, self.bought, "what each consumer holds = its fills that did not fail");
        let mut open = vec![0; markets.len()];
        for r in self.fills.values() {
            r.fill.check_invariants();
            if matches!(r.status, FillStatus::Accepted | FillStatus::Submitted { .. }) {
                open[r.fill.market.index()] += r.fill.ask_paid;
            }
            // An open fill holds its ask unless the chain already showed it settled (the
            // follower can read a settlement before the clearing actor records it).
            match self.escrow.hold_of(&r.fill.fill_id) {
                Some(hold) if matches!(r.status, FillStatus::Failed { .. }) => panic!("a failed fill holds {hold:?}"),
                Some(hold) => assert_eq!(hold, (r.fill.consumer, r.fill.ask_paid), "a fill holds its own ask"),
                None => {}
            }
        }
        for m in markets {
            assert_eq!(m.stats().exposure, open[m.id.index()], "{}: exposure = open notional", m.key);
        }
    }
}
