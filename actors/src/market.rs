//! The market actors: one [`MarketActor`] per [`MarketKey`], spread over the
//! market arbiters (`EngineSettings::market_arbiters`). Each owns its
//! [`Market`] (live supply, EWMA event sums, exposure, unit counters) and is
//! its only writer: it takes the
//! market's orders and submissions, records the chain's outcomes of its
//! fills, sweeps its expired units on a timer, and writes its stats into the
//! stats table after each change. What spans markets it changes through the
//! [`Shared`] registry, under whose lock it also appends the event.
//!
//! [`Markets`] routes requests to the actors and outlives them. A market
//! actor that panics is restarted alone, by the market supervisor of its
//! engine incarnation: its market is replayed from the newest snapshot and
//! the journal through the last append, while the other markets trade on.
//! The engine freezes every market actor ([`Freeze`]) for a snapshot and for
//! a config change, so that both fall between two events of every market.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use actix::prelude::*;
use alloy_primitives::B256;
use pat_engine::market::{Market, UnitCounters};
use pat_engine::segment::VerifiedSegment;
use pat_engine::{Catalogue, Fill, MarketId, MarketKey, OrderError, Quote, Segment, TimeMs, VerifiedOrder};

use crate::error::EngineError;
use crate::messages::Settlement;
use crate::shared::{Shared, SharedState, refused};
use crate::supervisor::{self, Backoff, Exit, ExitNotice, Retire, Supervised};

/// A market as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketView {
    pub id: MarketId,
    pub key: MarketKey,
    pub quote: Quote,
    pub supply_units: u64,
    pub provider_count: usize,
    pub exposure: u128,
    pub group_exposure: u128,
    pub counters: UnitCounters,
}

/// List a provider's segment (its signature checked by the sender);
/// replies with the listed segment once durable.
#[derive(Message)]
#[rtype(result = "Result<Segment, EngineError>")]
pub struct SubmitSegment(pub VerifiedSegment);

/// Execute a verified order; replies with the fill once durable.
#[derive(Message)]
#[rtype(result = "Result<Fill, EngineError>")]
pub struct PlaceOrder(pub VerifiedOrder);

/// The market with its quote.
#[derive(Message)]
#[rtype(result = "MarketView")]
pub struct GetMarket;

/// Records the chain's decisions on fills of this market; replies once durable.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub(crate) struct RecordMarketOutcomes(pub Vec<(B256, Settlement)>);

/// What a frozen market actor does once it thaws.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Thaw {
    /// A new EWMA half-life (a config change), applied before anything else.
    pub half_life_ms: Option<f64>,
}

/// Stops the market actor between two events until `thaw` resolves (or its
/// sender is dropped); replies with a copy of the market if `copy`.
#[derive(Message)]
#[rtype(result = "Option<Market>")]
pub(crate) struct Freeze {
    pub copy: bool,
    pub thaw: tokio::sync::oneshot::Receiver<Thaw>,
}

/// The market actor.
pub struct MarketActor {
    market: Market,
    shared: Arc<Shared>,
    exit: ExitNotice<MarketId>,
}

impl MarketActor {
    /// Starts the actor of `market` on its arbiter of `shared`'s incarnation.
    pub(crate) fn launch(market: Market, shared: Arc<Shared>, exit: ExitNotice<MarketId>) -> Addr<Self> {
        let markets = &shared.arbiters[1..];
        let arbiter = markets[market.id.index() % markets.len()].clone();
        Self::start_in_arbiter(&arbiter, move |_| Self { market, shared, exit })
    }

    fn view(&self) -> MarketView {
        let m = &self.market;
        MarketView {
            id: m.id,
            key: m.key.clone(),
            quote: self.shared.outlets.tables.quotes.get(m.id),
            supply_units: m.supply_units(),
            provider_count: m.provider_count(),
            exposure: m.stats().exposure,
            group_exposure: self.shared.read().registry.group_exposure_of(m.id),
            counters: m.counters(),
        }
    }

    fn expire(&mut self) {
        let Ok(mut st) = self.shared.begin(1) else { return };
        sweep(&self.shared, &mut st, &mut self.market, (self.shared.clock)());
    }
}

/// Removes `market`'s units whose window has ended by `now`, if any, and
/// journals it under `st`. Nobody waits for that record: a failed write
/// degrades the engine from a task of its own.
fn sweep(shared: &Shared, st: &mut SharedState, market: &mut Market, now: TimeMs) {
    let Some(event) = market.sweep(now) else { return };
    let durable = shared.append(st, &event);
    shared.outlets.tables.stats.write_market(market, &st.registry);
    actix::spawn(async move {
        let _ = durable.await;
    });
}

impl Actor for MarketActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.shared.is_closing() {
            self.exit.plan(None);
            ctx.stop();
            return;
        }
        ctx.set_mailbox_capacity(self.shared.settings.mailbox_capacity);
        ctx.run_interval(self.shared.settings.expiry_every, |act, _| act.expire());
    }
}

supervisor::supervised_handlers!(MarketActor, |me| format!("market actor {}", me.market.key));

impl Handler<SubmitSegment> for MarketActor {
    type Result = ResponseFuture<Result<Segment, EngineError>>;
    fn handle(&mut self, msg: SubmitSegment, _: &mut Context<Self>) -> Self::Result {
        let shared = &self.shared;
        let mut st = match shared.begin(1) {
            Ok(st) => st,
            Err(e) => return refused(e),
        };
        match st.registry.submit(&mut self.market, &msg.0, (shared.clock)()) {
            Ok((segment, event)) => {
                let durable = shared.append(&mut st, &event);
                shared.outlets.tables.stats.write_market(&self.market, &st.registry);
                Box::pin(async move { durable.await.map(|()| segment) })
            }
            Err(refusal) => match refusal.event() {
                // The router sent it to the wrong market: nothing changed.
                None => refused(EngineError::Routing(refusal.to_string())),
                Some(event) => {
                    // Validly signed, so it counts against the provider: journaled.
                    let error = refusal.error;
                    metrics::counter!("pat_submissions_refused_total", "reason" => error.code().as_str()).increment(1);
                    let durable = shared.append(&mut st, &event);
                    Box::pin(async move { durable.await.and(Err(error.into())) })
                }
            },
        }
    }
}

impl Handler<PlaceOrder> for MarketActor {
    type Result = ResponseFuture<Result<Fill, EngineError>>;
    fn handle(&mut self, msg: PlaceOrder, _: &mut Context<Self>) -> Self::Result {
        let shared = &self.shared;
        // Room for an expiry record and the fill.
        let mut st = match shared.begin(2) {
            Ok(st) => st,
            Err(e) => return refused(e),
        };
        let now = (shared.clock)();
        // Units whose window has ended are never sold: the timer sweeps only
        // every `expiry_every`, so an order sweeps its market first.
        sweep(shared, &mut st, &mut self.market, now);
        let quotes = &shared.outlets.tables.quotes;
        match st.registry.execute(&mut self.market, msg.0, now, |id| quotes.get(id)) {
            Ok((fill, event)) => {
                metrics::counter!("pat_fills_total", "status" => "accepted").increment(1);
                // A refused append (the engine degrades) hands nothing to clearing.
                let (lsn, durable) = shared.append_at(&mut st, &event);
                if let Some(lsn) = lsn {
                    st.handoff.push_back((lsn, fill.fill_id));
                }
                shared.outlets.tables.stats.write_market(&self.market, &st.registry);
                let updates = st.fill_update(&fill.fill_id).into_iter().collect();
                let announced = shared.announce_when_durable(&st, durable, updates);
                Box::pin(async move { announced.await.map(|()| fill) })
            }
            Err(e) => {
                metrics::counter!("pat_orders_refused_total", "reason" => e.code().as_str()).increment(1);
                refused(e.into())
            }
        }
    }
}

impl Handler<RecordMarketOutcomes> for MarketActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: RecordMarketOutcomes, _: &mut Context<Self>) -> Self::Result {
        let shared = &self.shared;
        let mut st = match shared.begin(msg.0.len()) {
            Ok(st) => st,
            Err(e) => return refused(e),
        };
        let now = (shared.clock)();
        let (mut durables, mut updates) = (Vec::new(), Vec::new());
        for (id, outcome) in msg.0 {
            let (event, status) = match outcome {
                Settlement::Settled => match st.registry.settle(&mut self.market, &id, now) {
                    Ok(event) => (event, "settled"),
                    Err(_) => continue,
                },
                Settlement::Rejected(reason) => match st.registry.fail(&mut self.market, &id, &reason, now) {
                    Ok(event) => {
                        // Reasons are the contract's reject codes: a small, fixed set.
                        metrics::counter!("pat_fills_failed_total", "reason" => reason).increment(1);
                        (event, "failed")
                    }
                    Err(_) => continue,
                },
            };
            metrics::counter!("pat_fills_total", "status" => status).increment(1);
            durables.push(shared.append(&mut st, &event));
            updates.extend(st.fill_update(&id));
        }
        shared.outlets.tables.stats.write_market(&self.market, &st.registry);
        let durable = async move {
            for d in durables {
                d.await?;
            }
            Ok(())
        };
        Box::pin(shared.announce_when_durable(&st, durable, updates))
    }
}

impl Handler<GetMarket> for MarketActor {
    type Result = MessageResult<GetMarket>;
    fn handle(&mut self, _: GetMarket, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.view())
    }
}

impl Handler<Freeze> for MarketActor {
    type Result = Option<Market>;
    fn handle(&mut self, msg: Freeze, ctx: &mut Context<Self>) -> Self::Result {
        ctx.wait(msg.thaw.into_actor(self).map(|thaw, act, _| {
            if let Ok(Thaw { half_life_ms: Some(hl) }) = thaw {
                act.market.set_half_life_ms(hl);
            }
        }));
        msg.copy.then(|| self.market.clone())
    }
}

/// A pending reply of a market actor, or of the router itself.
pub type Routed<T> = Pin<Box<dyn Future<Output = Result<T, MailboxError>>>>;

/// The market actors by [`MarketId`], and how to find a request's market.
/// It outlives the actors: each handle follows its market's restarts.
pub struct Markets {
    actors: Vec<Supervised<MarketActor>>,
    /// The markets (fixed while the process runs), to route requests.
    catalogue: Arc<Catalogue>,
    /// Held from a freeze to its thaw.
    freezing: Arc<tokio::sync::Mutex<()>>,
}

impl Markets {
    pub(crate) fn new(addrs: Vec<Addr<MarketActor>>, catalogue: Arc<Catalogue>) -> Self {
        Self { actors: addrs.into_iter().map(Supervised::new).collect(), catalogue, freezing: Arc::default() }
    }

    /// Points every handle at a new incarnation's actors.
    pub(crate) fn point(&self, addrs: Vec<Addr<MarketActor>>) {
        for (handle, addr) in self.actors.iter().zip(addrs) {
            handle.point(addr);
        }
    }

    pub(crate) fn each(&self, f: impl Fn(&Supervised<MarketActor>)) {
        self.actors.iter().for_each(f);
    }

    /// The actor of market `id`.
    pub fn actor(&self, id: MarketId) -> &Supervised<MarketActor> {
        &self.actors[id.index()]
    }

    pub fn by_key(&self, key: &MarketKey) -> Option<MarketId> {
        self.catalogue.by_key(key)
    }

    /// Sends the order to its market's actor; an order for no market of the
    /// catalogue is refused here.
    pub fn place_order(&self, v: VerifiedOrder) -> Routed<Result<Fill, EngineError>> {
        let market = v.order().market;
        match self.catalogue.by_chain_id(&market) {
            Some(id) => Box::pin(self.actor(id).send(PlaceOrder(v))),
            None => Box::pin(std::future::ready(Ok(Err(OrderError::UnknownMarket(market).into())))),
        }
    }

    /// Sends the verified submission to the actor of the market it names.
    /// One that names no market of the catalogue goes to the first market's
    /// actor, whose checks refuse it with the precise reason and count it
    /// against the provider, as for any other refusal.
    pub fn submit_segment(&self, verified: VerifiedSegment) -> Routed<Result<Segment, EngineError>> {
        let named = self.catalogue.key_of(&verified.signed().submission).ok();
        let id = named.and_then(|k| self.by_key(&k)).unwrap_or(MarketId(0));
        Box::pin(self.actor(id).send(SubmitSegment(verified)))
    }

    /// Every market with its quote, by [`MarketId`].
    pub async fn views(&self) -> Result<Vec<MarketView>, MailboxError> {
        let asked: Vec<_> = self.actors.iter().map(|a| a.send(GetMarket)).collect();
        let mut views = Vec::with_capacity(asked.len());
        for view in asked {
            views.push(view.await?);
        }
        Ok(views)
    }

    /// Freezes every market actor (see [`Freeze`]), one freeze at a time (two
    /// interleaved would wait on each other). Fails if a market actor is down
    /// (restarting); those already frozen then thaw as they were.
    pub(crate) async fn freeze(&self, copy: bool) -> Result<Frozen, MailboxError> {
        let gate = self.freezing.clone().lock_owned().await;
        let mut thaws = Vec::with_capacity(self.actors.len());
        let mut asked = Vec::with_capacity(self.actors.len());
        for actor in &self.actors {
            let (tx, thaw) = tokio::sync::oneshot::channel();
            thaws.push(tx);
            asked.push(actor.send(Freeze { copy, thaw }));
        }
        let mut copies = Vec::with_capacity(asked.len());
        for reply in asked {
            copies.push(reply.await?);
        }
        Ok(Frozen { copies, thaws, _gate: gate })
    }
}

/// Every market actor, frozen between two events; dropping this thaws them as they were.
pub(crate) struct Frozen {
    /// The copies asked for, by [`MarketId`].
    pub copies: Vec<Option<Market>>,
    thaws: Vec<tokio::sync::oneshot::Sender<Thaw>>,
    _gate: tokio::sync::OwnedMutexGuard<()>,
}

impl Frozen {
    pub(crate) fn thaw(self, thaw: Thaw) {
        for tx in self.thaws {
            let _ = tx.send(thaw);
        }
    }
}

/// Starts the market supervisor of one engine incarnation: it restarts each
/// market actor that crashes, alone, from durable state, until the
/// incarnation ends. A crash that left the registry half-changed (its lock
/// poisoned) instead degrades the engine, which restarts whole.
pub(crate) fn supervise_markets(
    shared: Weak<Shared>,
    router: Arc<OnceLock<Arc<Markets>>>,
    exits: Receiver<(MarketId, Exit)>,
) {
    supervisor::spawn_supervisor("markets", move || {
        let mut backoffs: HashMap<MarketId, Backoff> = HashMap::new();
        while let Ok((id, exit)) = exits.recv() {
            if exit == Exit::Planned {
                continue;
            }
            let backoff = backoffs.entry(id).or_default();
            let mut wait = backoff.crashed();
            metrics::counter!("pat_actor_restarts_total", "actor" => "market").increment(1);
            eprintln!("market actor {} stopped unexpectedly; restarting from durable state", id.0);
            loop {
                std::thread::sleep(wait);
                let Some(shared) = shared.upgrade() else { return };
                if shared.is_closing() || !supervisor::system_alive() {
                    break;
                }
                match restart_market(&shared, &router, id) {
                    Ok(()) => {
                        eprintln!("market actor {} restarted", id.0);
                        break;
                    }
                    Err(e) => {
                        eprintln!("market actor {} could not restart, retrying: {e}", id.0);
                        wait = backoff.failed();
                    }
                }
            }
            backoff.restarted();
        }
    });
}

/// Replays market `id` through the newest append, once that is durable, and
/// starts its actor again. Nothing else appends for the market meanwhile:
/// its events come only from its actor, and a config change waits for every
/// market to freeze.
fn restart_market(shared: &Arc<Shared>, router: &OnceLock<Arc<Markets>>, id: MarketId) -> Result<(), String> {
    let router = router.get().ok_or("the market router is not set yet")?;
    let through = shared.begin(0).map_err(|e| e.to_string())?.last_lsn();
    while shared.durable_lsn() < through {
        shared.alive().map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(1));
    }
    let books = shared.data.replay_through(&shared.launch_config, through).map_err(|e| e.to_string())?;
    let (_, mut markets) = books.into_parts();
    let market = markets.swap_remove(id.index());
    shared.outlets.tables.stats.write_market(&market, &shared.read().registry);
    let exit = ExitNotice::keyed(shared.market_exits(), id);
    let addr = MarketActor::launch(market, shared.clone(), exit);
    router.actor(id).point(addr.clone());
    // The incarnation may have ended while this one started: see `Shared::close`.
    if shared.is_closing() {
        addr.do_send(Retire);
    }
    Ok(())
}
