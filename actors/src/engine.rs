//! The engine actor and the running engine's front door. The engine actor
//! boots an incarnation of the engine from disk (recovery), starts a
//! [`MarketActor`] per market over its market arbiters, and then handles
//! what is not one market's: reads of fills, segments and the ledger, the
//! pause switch, the phase, config reloads, snapshots, and the clearing
//! side's hand-off of durable fills. Changes append their [`Event`] under
//! the shared lock (see [`crate::shared`]) and reply once it is durable.
//!
//! If a journal write fails, or an actor crashes while changing the shared
//! registry, memory may hold a change that is not durable: the incarnation
//! refuses every further change (`degraded`) and ends, and the supervisor
//! starts a new one from disk (crash-only). A panic in the engine actor ends
//! it the same way; a panic in a market actor restarts that market alone.
//! Callers hold an [`Engine`], whose handles follow the restarts;
//! subscribers keep their channels, and quote `seq`s continue.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use alloy_primitives::B256;
use pat_engine::segment::VerifiedSegment;
use pat_engine::state::half_life_ms;
use pat_engine::{Catalogue, EngineConfig, Event, FillRecord, FillStatus, MarketId, Registry, Segment};
use pat_persistence::{DataDir, JournalError, SnapshotReport};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::delivery::{Deliveries, DeliveryError, DeliveryPlan};
use crate::error::EngineError;
use crate::listing::Listings;
use crate::market::{self, MarketActor, Markets, RecordMarketOutcomes, Routed, Thaw};
use crate::messages::*;
use crate::quoting::{QuotingActor, Tables};
use crate::settings::EngineSettings;
use crate::shared::{Outlets, Reply, Shared, SharedParts, refused};
use crate::supervisor::{self, Exit, ExitNotice, Retire, Supervised};

/// The engine actor's address across its restarts.
pub type EngineHandle = Supervised<EngineActor>;

/// The actors that outlive one incarnation of the engine, and that each
/// incarnation's engine actor reaches: set once, right after the first
/// incarnation started.
#[derive(Clone, Default)]
struct Lasting {
    quoting: Arc<OnceLock<Supervised<QuotingActor>>>,
    markets: Arc<OnceLock<Arc<Markets>>>,
}

/// Everything needed to start an incarnation, again after a crash.
struct Launch {
    settings: EngineSettings,
    /// The config file's at the first start (a restart keeps the journaled one).
    config: Arc<EngineConfig>,
    clock: Clock,
    outlets: Outlets,
    lasting: Lasting,
    exits: std::sync::mpsc::Sender<((), Exit)>,
}

/// The engine actor: one per incarnation, on its own arbiter.
pub struct EngineActor {
    shared: Arc<Shared>,
    lasting: Lasting,
}

/// The running engine: the engine actor's handle (through `Deref`), the
/// market actors' router, and the tables quotes are read from. Clones share
/// all three; each follows the restarts.
#[derive(Clone)]
pub struct Engine {
    handle: EngineHandle,
    markets: Arc<Markets>,
    tables: Arc<Tables>,
    /// With a payload store: listings keep their payloads.
    listings: Option<Arc<Listings>>,
    /// With a payload store: settled fills are delivered from it.
    deliveries: Option<Arc<Deliveries>>,
}

impl std::ops::Deref for Engine {
    type Target = EngineHandle;
    fn deref(&self) -> &EngineHandle {
        &self.handle
    }
}

impl Engine {
    /// The market actors, to send orders and submissions to.
    pub fn markets(&self) -> &Markets {
        &self.markets
    }

    /// The stats and quote tables.
    pub fn tables(&self) -> Arc<Tables> {
        self.tables.clone()
    }

    /// Lists a verified submission: with a payload store, its payload is
    /// stored first (see [`crate::listing`]); without, its market checks and
    /// lists it alone. The stored path runs as a task of its own, so a caller
    /// that stops waiting (a timeout) leaves it to finish, its payload hash
    /// claimed, rather than cutting it between a write and its cleanup.
    pub fn list_segment(&self, verified: VerifiedSegment) -> Routed<Result<Segment, EngineError>> {
        match self.listings.clone() {
            None => self.markets.submit_segment(verified),
            Some(listings) => {
                let engine = self.clone();
                let (tx, rx) = tokio::sync::oneshot::channel();
                actix::spawn(async move {
                    let _ = tx.send(listings.list(&engine, verified).await);
                });
                Box::pin(async move { rx.await.unwrap_or(Err(actix::MailboxError::Closed)) })
            }
        }
    }

    /// The listing path to the payload store, when there is one.
    pub fn listings(&self) -> Option<&Arc<Listings>> {
        self.listings.as_ref()
    }

    /// The delivery path from the payload store, when there is one.
    pub fn deliveries(&self) -> Option<&Arc<Deliveries>> {
        self.deliveries.as_ref()
    }
}

/// What recovery found, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    pub snapshot_lsn: u64,
    pub replayed: u64,
    pub next_lsn: u64,
    pub torn_tail_bytes: u64,
}

/// One booted incarnation.
struct Booted {
    engine: Addr<EngineActor>,
    markets: Vec<Addr<MarketActor>>,
    startup: Startup,
}

impl EngineActor {
    /// Recovers the data directory and starts the engine actor and the market
    /// actors, under supervisors that restart them from disk if they crash.
    /// `cfg` is the config file's; if the recovered state ran under another,
    /// the change is journaled like a reload.
    pub fn start(
        settings: EngineSettings,
        cfg: Arc<EngineConfig>,
        clock: Clock,
    ) -> Result<(Engine, Startup), EngineError> {
        let (store, sweep) = (settings.payload_store.clone(), settings.sweep);
        let (quotes, _) = broadcast::channel(settings.quote_channel_capacity);
        let (fill_updates, _) = broadcast::channel(settings.fill_channel_capacity);
        let catalogue = Arc::new(Catalogue::new(&cfg));
        let tables = Arc::new(Tables::new(&cfg, catalogue.clone()));
        let outlets = Outlets { quotes, fill_updates, tables: tables.clone() };
        let (exits, exited) = supervisor::exit_channel();
        let launch = Launch { settings, config: cfg.clone(), clock, outlets, lasting: Lasting::default(), exits };
        let first = Self::boot(&launch, true)?;
        let markets = Arc::new(Markets::new(first.markets, catalogue));
        let _ = launch.lasting.markets.set(markets.clone());
        // After the boot, so that the quoting actor starts from the recovered stats.
        let out = &launch.outlets;
        let quoting = QuotingActor::start(out.tables.clone(), out.quotes.clone(), launch.clock.clone())
            .map_err(EngineError::Start)?;
        let _ = launch.lasting.quoting.set(quoting);
        let handle = Supervised::new(first.engine);
        supervisor::supervise("engine", &handle, exited, move || {
            let next = Self::boot(&launch, false).map_err(|e| e.to_string())?;
            Ok(next.engine)
        });
        let listings = store.clone().map(|store| Arc::new(Listings::new(store)));
        let deliveries = store.map(|store| Arc::new(Deliveries::new(store)));
        let engine = Engine { handle, markets, tables, listings, deliveries };
        if let Some(listings) = &engine.listings {
            listings.spawn_sweeps(engine.clone(), sweep);
        }
        Ok((engine, first.startup))
    }

    /// Recovers and starts one incarnation. `adopt` journals the launch
    /// config if the recovered state ran under another, or if the data
    /// directory is new, so that a replay without a snapshot starts from the
    /// config its history began under, not from what the file says by then
    /// (a first start); a restart keeps the recovered one.
    fn boot(launch: &Launch, adopt: bool) -> Result<Booted, EngineError> {
        let (settings, cfg) = (&launch.settings, &launch.config);
        let data = DataDir::open(&settings.data_dir)?;
        let recovered = data.recover(cfg)?;
        let startup = Startup {
            snapshot_lsn: recovered.snapshot_lsn,
            replayed: recovered.replayed,
            next_lsn: recovered.next_lsn,
            torn_tail_bytes: recovered.torn.as_ref().map_or(0, |t| t.bytes),
        };
        let mut books = recovered.books;
        let journal = data.open_journal(settings.journal.clone(), recovered.next_lsn).map_err(EngineError::Journal)?;
        let mut next_lsn = recovered.next_lsn;
        let new_directory = recovered.snapshot_lsn == 0 && recovered.next_lsn == 1;
        if adopt && (new_directory || *books.registry().config() != **cfg) {
            let event = books.reconfigure(cfg.clone())?;
            journal.append_event(&event).map_err(EngineError::Journal)?;
            next_lsn += 1;
        }
        let (mut registry, markets) = books.into_parts();
        registry.require_escrow(settings.escrow_required);
        registry.escrow_mut().set_stale_after(settings.escrow_stale_after.map(|d| d.as_millis() as u64));
        // Every market counts as changed: the quoting actor re-reads them all.
        let stats = &launch.outlets.tables.stats;
        markets.iter().for_each(|m| stats.write_market(m, &registry));
        stats.write_switches(&registry);
        let arbiters = (0..=settings.market_arbiters.max(1))
            .map(|_| Arbiter::try_new().map(|a| a.handle()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::Start(e.to_string()))?;
        let (market_exits, market_exited) = supervisor::exit_channel();
        let shared = Arc::new(Shared::new(SharedParts {
            registry,
            next_lsn,
            outlets: launch.outlets.clone(),
            clock: launch.clock.clone(),
            settings: settings.clone(),
            launch_config: cfg.clone(),
            arbiters: arbiters.clone(),
            data,
            journal,
            market_exits: market_exits.clone(),
            exit: ExitNotice::new(launch.exits.clone()),
        }));
        let markets: Vec<_> = markets
            .into_iter()
            .map(|m| {
                let exit = ExitNotice::keyed(market_exits.clone(), m.id);
                MarketActor::launch(m, shared.clone(), exit)
            })
            .collect();
        // A restart points the router at the new actors before any of them
        // can be restarted alone (the first start builds the router from them).
        if let Some(router) = launch.lasting.markets.get() {
            router.point(markets.clone());
        }
        market::supervise_markets(Arc::downgrade(&shared), launch.lasting.markets.clone(), market_exited);
        let actor = Self { shared: shared.clone(), lasting: launch.lasting.clone() };
        let engine = Self::start_in_arbiter(&arbiters[0], |_| actor);
        shared.set_engine(engine.clone().recipient().downgrade());
        Ok(Booted { engine, markets, startup })
    }

    fn markets(&self) -> Result<Arc<Markets>, EngineError> {
        self.lasting.markets.get().cloned().ok_or_else(|| EngineError::Unavailable("starting".into()))
    }

    /// Freezes every market and copies the state with the LSN of the newest
    /// append, so the snapshot covers exactly the journal through that LSN;
    /// thaws them, waits until that LSN is durable, and writes the snapshot
    /// off the actor. The actor's mailbox waits for the copy (`ctx.wait`).
    fn snapshot(&mut self, ctx: &mut Context<Self>) -> Reply<SnapshotReport> {
        let shared = self.shared.clone();
        let markets = self.markets();
        let taken = async move {
            let frozen = markets?.freeze(true).await.map_err(unavailable)?;
            let st = shared.begin(0)?;
            Ok::<_, EngineError>((st.registry.snapshot(frozen.copies.into_iter().flatten().collect()), st.last_lsn()))
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        ctx.wait(taken.into_actor(self).map(move |taken, _, _| {
            let _ = tx.send(taken);
        }));
        let shared = self.shared.clone();
        Box::pin(async move {
            let (state, lsn) = rx.await.map_err(|_| EngineError::Journal(JournalError::Closed))??;
            while shared.durable_lsn() < lsn {
                shared.alive()?;
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let started = Instant::now();
            let (data, retain) = (shared.data.clone(), shared.settings.snapshot_retain);
            let report = tokio::task::spawn_blocking(move || data.write_snapshot(lsn, &state, retain))
                .await
                .map_err(|e| EngineError::Journal(JournalError::Write(e.to_string())))??;
            metrics::histogram!("pat_snapshot_seconds").record(started.elapsed().as_secs_f64());
            Ok(report)
        })
    }
}

fn unavailable(_: MailboxError) -> EngineError {
    EngineError::Unavailable("a market actor is restarting".into())
}

impl Actor for EngineActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.shared.settings.mailbox_capacity);
        ctx.run_interval(self.shared.settings.snapshot_every, |act, ctx| {
            let snapshot = act.snapshot(ctx);
            ctx.spawn(
                async move {
                    if snapshot.await.is_err() {
                        metrics::counter!("pat_snapshot_failures_total").increment(1);
                    }
                }
                .into_actor(act),
            );
        });
    }
}

impl Drop for EngineActor {
    /// However the engine actor ends (shutdown, a failed append, a panic),
    /// its incarnation ends with it: the market actors retire.
    fn drop(&mut self) {
        self.shared.close();
        if let Some(markets) = self.lasting.markets.get() {
            markets.each(|m| m.do_send(Retire));
        }
    }
}

impl Handler<Shutdown> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let snapshot = msg.snapshot.then(|| self.snapshot(ctx));
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.shared.plan_exit(tx);
        if let Some(quoting) = self.lasting.quoting.get() {
            quoting.do_send(Retire);
        }
        let addr = ctx.address();
        Box::pin(async move {
            let written = match snapshot {
                Some(s) => s.await.map(|_| ()),
                None => Ok(()),
            };
            addr.do_send(Stop);
            let _ = rx.await;
            written
        })
    }
}

impl Handler<Stop> for EngineActor {
    type Result = ();
    fn handle(&mut self, _: Stop, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::supervisor::CrashQuoting> for EngineActor {
    type Result = ();
    fn handle(&mut self, _: crate::supervisor::CrashQuoting, _: &mut Context<Self>) {
        if let Some(quoting) = self.lasting.quoting.get() {
            quoting.do_send(crate::supervisor::Crash);
        }
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<crate::supervisor::Crash> for EngineActor {
    type Result = ();
    fn handle(&mut self, _: crate::supervisor::Crash, _: &mut Context<Self>) {
        panic!("injected fault: the engine actor panics");
    }
}

impl Handler<GetFill> for EngineActor {
    type Result = Option<FillRecord>;
    fn handle(&mut self, msg: GetFill, _: &mut Context<Self>) -> Self::Result {
        self.shared.reads.fill(&msg.0)
    }
}

impl Handler<GetSegment> for EngineActor {
    type Result = Option<Segment>;
    fn handle(&mut self, msg: GetSegment, _: &mut Context<Self>) -> Self::Result {
        self.shared.reads.segment(msg.0)
    }
}

impl Handler<PlanDelivery> for EngineActor {
    type Result = Result<DeliveryPlan, DeliveryError>;
    fn handle(&mut self, msg: PlanDelivery, _: &mut Context<Self>) -> Self::Result {
        self.shared.reads.plan_delivery(&msg.fill_id, msg.consumer, (self.shared.clock)())
    }
}

impl Handler<PayloadListed> for EngineActor {
    type Result = bool;
    fn handle(&mut self, msg: PayloadListed, _: &mut Context<Self>) -> bool {
        self.shared.reads.is_listed(&msg.0)
    }
}

impl Handler<ListedPayloads> for EngineActor {
    type Result = MessageResult<ListedPayloads>;
    fn handle(&mut self, _: ListedPayloads, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.reads.listed_payloads())
    }
}

impl Handler<SearchSegments> for EngineActor {
    type Result = MessageResult<SearchSegments>;
    fn handle(&mut self, q: SearchSegments, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.reads.search(&q))
    }
}

impl Handler<ConsumerFills> for EngineActor {
    type Result = MessageResult<ConsumerFills>;
    fn handle(&mut self, msg: ConsumerFills, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.reads.consumer_fills(&msg.0))
    }
}

impl Handler<ProviderCredits> for EngineActor {
    type Result = MessageResult<ProviderCredits>;
    fn handle(&mut self, msg: ProviderCredits, _: &mut Context<Self>) -> Self::Result {
        let st = self.shared.read();
        let credited = st.registry.ledger().by_provider.get(&msg.0).copied().unwrap_or(0);
        let account = st.registry.payouts().account(&msg.0);
        MessageResult(crate::messages::Credits {
            settled: account.settled,
            pending: credited - account.settled,
            paid: account.paid,
        })
    }
}

impl Handler<ConsumerEscrow> for EngineActor {
    type Result = MessageResult<ConsumerEscrow>;
    fn handle(&mut self, msg: ConsumerEscrow, _: &mut Context<Self>) -> Self::Result {
        let st = self.shared.read();
        let book = st.registry.escrow();
        MessageResult(EscrowStatus {
            view: book.view(&msg.0),
            synced_block: book.followed_block(),
            required: book.required(),
            current_at_ms: book.current_at_ms(),
        })
    }
}

impl Handler<EscrowCursor> for EngineActor {
    type Result = u64;
    fn handle(&mut self, _: EscrowCursor, _: &mut Context<Self>) -> u64 {
        self.shared.read().registry.escrow().followed_block()
    }
}

impl Handler<SyncEscrow> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: SyncEscrow, _: &mut Context<Self>) -> Self::Result {
        let now_ms = (self.shared.clock)();
        let SyncEscrow { sync, current } = msg;
        if sync.is_empty() {
            // Nothing to journal: the book only learns how far the chain was read.
            let mut st = match self.shared.begin(0) {
                Ok(st) => st,
                Err(e) => return refused(e),
            };
            st.registry.sync_escrow(sync);
            if current {
                st.registry.escrow_mut().mark_current(now_ms);
            }
            return Box::pin(std::future::ready(Ok(())));
        }
        // Current once durable: orders see the view the journal holds.
        let shared = self.shared.clone();
        let durable =
            self.change(|registry| Ok(registry.sync_escrow(sync).expect("a sync that changes something has an event")));
        Box::pin(async move {
            durable.await?;
            if current {
                shared.begin(0)?.registry.escrow_mut().mark_current(now_ms);
            }
            Ok(())
        })
    }
}

impl EngineActor {
    /// Makes a change of the registry alone (no market's), appends its event
    /// under the same lock, and replies once it is durable. Only a pause
    /// that switched has every market repriced (a phase changes no price).
    fn change(
        &self,
        change: impl FnOnce(&mut Registry) -> Result<Event, EngineError>,
    ) -> ResponseFuture<Result<(), EngineError>> {
        let mut st = match self.shared.begin(1) {
            Ok(st) => st,
            Err(e) => return refused(e),
        };
        let paused = st.registry.is_paused();
        match change(&mut st.registry) {
            Ok(event) => {
                let durable = self.shared.append(&mut st, &event);
                if st.registry.is_paused() != paused {
                    self.shared.outlets.tables.stats.write_switches(&st.registry);
                }
                Box::pin(durable)
            }
            Err(e) => refused(e),
        }
    }
}

impl Handler<SetPaused> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: SetPaused, _: &mut Context<Self>) -> Self::Result {
        self.change(|registry| {
            metrics::gauge!("pat_paused").set(if msg.0 { 1.0 } else { 0.0 });
            Ok(registry.set_paused(msg.0))
        })
    }
}

impl Handler<AdvancePhase> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: AdvancePhase, _: &mut Context<Self>) -> Self::Result {
        self.change(|registry| registry.set_phase(msg.0).map_err(|e| EngineError::Phase(e.to_string())))
    }
}

impl Handler<Reconfigure> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    /// Freezes every market, so that the new config takes effect between
    /// the same two events of each market as in a replay of the journal.
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.shared.alive() {
            return refused(e);
        }
        let (shared, markets, cfg) = (self.shared.clone(), self.markets(), msg.0);
        Box::pin(async move {
            let frozen = markets?.freeze(false).await.map_err(unavailable)?;
            let durable = {
                let mut st = shared.begin(1)?;
                let event = st.registry.reconfigure(cfg.clone())?;
                let durable = shared.append(&mut st, &event);
                shared.outlets.tables.stats.write_switches(&st.registry);
                durable
            };
            frozen.thaw(Thaw { half_life_ms: Some(half_life_ms(&cfg)) });
            durable.await
        })
    }
}

impl Handler<TakeSnapshot> for EngineActor {
    type Result = ResponseFuture<Result<SnapshotReport, EngineError>>;
    fn handle(&mut self, _: TakeSnapshot, ctx: &mut Context<Self>) -> Self::Result {
        self.snapshot(ctx)
    }
}

impl Handler<TakeDurableFills> for EngineActor {
    type Result = MessageResult<TakeDurableFills>;
    fn handle(&mut self, msg: TakeDurableFills, _: &mut Context<Self>) -> Self::Result {
        let durable = self.shared.durable_lsn();
        let mut st = self.shared.read();
        let st = &mut *st;
        let mut fills = Vec::new();
        while fills.len() < msg.max {
            let Some(&(lsn, id)) = st.handoff.front() else { break };
            let Some(record) = st.registry.fill(&id) else {
                st.handoff.pop_front();
                continue;
            };
            if lsn > durable || record.fill.accepted_at_ms > msg.accepted_before_ms {
                break;
            }
            st.handoff.pop_front();
            if matches!(record.status, FillStatus::Accepted | FillStatus::Submitted { .. }) {
                fills.push(record.fill.clone());
            }
        }
        MessageResult(fills)
    }
}

impl Handler<ReturnFills> for EngineActor {
    type Result = ();
    fn handle(&mut self, msg: ReturnFills, _: &mut Context<Self>) {
        self.shared.read().hand_back(msg.0);
    }
}

impl Handler<RequeueTaken> for EngineActor {
    type Result = ();
    fn handle(&mut self, _: RequeueTaken, _: &mut Context<Self>) {
        let mut st = self.shared.read();
        let open = st.open_fills(|_| true);
        st.hand_back(open);
    }
}

impl Handler<RecordSubmission> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: RecordSubmission, _: &mut Context<Self>) -> Self::Result {
        let mut st = match self.shared.begin(1) {
            Ok(st) => st,
            Err(e) => return refused(e),
        };
        // A fill that settled or failed meanwhile (a raced retry) is left as it is.
        let event = st.registry.record_submission(msg.fill_ids, msg.tx_hash);
        let updates: Vec<_> = match &event {
            Event::FillsSubmitted { fill_ids, .. } => fill_ids.iter().filter_map(|id| st.fill_update(id)).collect(),
            _ => Vec::new(),
        };
        let durable = self.shared.append(&mut st, &event);
        Box::pin(self.shared.announce_when_durable(&st, durable, updates))
    }
}

impl Handler<RecordOutcomes> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    /// Hands each market's outcomes to its actor. The fills of a market that
    /// could not record them (restarting) go back to the hand-off queue, so
    /// clearing confirms them on chain again.
    fn handle(&mut self, msg: RecordOutcomes, _: &mut Context<Self>) -> Self::Result {
        let markets = match self.markets() {
            Ok(m) => m,
            Err(e) => return refused(e),
        };
        let mut by_market: std::collections::BTreeMap<MarketId, Vec<(B256, Settlement)>> = Default::default();
        {
            let st = self.shared.read();
            for (id, outcome) in msg.0 {
                if let Some(r) = st.registry.fill(&id) {
                    by_market.entry(r.fill.market).or_default().push((id, outcome));
                }
            }
        }
        let shared = self.shared.clone();
        Box::pin(async move {
            let mut result = Ok(());
            for (market, outcomes) in by_market {
                let ids: Vec<B256> = outcomes.iter().map(|(id, _)| *id).collect();
                let recorded = markets.actor(market).send(RecordMarketOutcomes(outcomes)).await;
                if let Err(e) = recorded.map_err(unavailable).and_then(|r| r) {
                    shared.read().hand_back(ids);
                    result = Err(e);
                }
            }
            result
        })
    }
}

impl Handler<SubscribeFills> for EngineActor {
    type Result = MessageResult<SubscribeFills>;
    fn handle(&mut self, _: SubscribeFills, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.outlets.fill_updates.subscribe())
    }
}

impl Handler<SubscribeQuotes> for EngineActor {
    type Result = MessageResult<SubscribeQuotes>;
    fn handle(&mut self, _: SubscribeQuotes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.shared.outlets.quotes.subscribe())
    }
}
