//! The engine actor: sole owner of the [`Books`] and sole appender to the
//! journal. A mutating request changes the books, appends its [`Event`],
//! and its reply resolves only once that event is durable; the actor goes on
//! with the next request meanwhile, so concurrent requests share an fsync
//! (group commit). Reads answer from memory at once. After every change it
//! writes the changed markets' stats into the [`Tables`] it shares with the
//! [`QuotingActor`], and executes orders against that actor's quote table.
//!
//! If a journal write fails after the books already changed, memory may
//! hold a change that is not durable: the actor then refuses every further
//! mutation (`degraded`) and stops, and its supervisor starts it again from
//! disk (crash-only). A panic in a handler ends the same way. Callers hold an
//! [`EngineHandle`], which follows the restarts; subscribers keep their
//! channels, and quote `seq`s continue where they were.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use alloy_primitives::{Address, B256};
use pat_engine::books::ReconfigureError;
use pat_engine::market::UnitCounters;
use pat_engine::{
    Books, EngineConfig, Event, Fill, FillRecord, FillStatus, MarketId, MarketKey, OrderError, Quote, Segment,
    SegmentId, SignedSegment, SubmitError, TimeMs, VerifiedOrder,
};
use pat_persistence::{DataDir, Durable, Journal, JournalConfig, JournalError, RecoveryError, SnapshotReport};
use thiserror::Error;
use tokio::sync::broadcast;

use crate::quoting::{QuotingActor, Tables};
use crate::supervisor::{self, Exit, ExitNotice, Retire, Supervised};

/// The engine actor's address across its restarts.
pub type EngineHandle = Supervised<EngineActor>;

/// Where the engine keeps its data and how often its timers fire.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub data_dir: PathBuf,
    pub journal: JournalConfig,
    /// Interval of expiry sweeps.
    pub expiry_every: Duration,
    /// Interval of snapshots.
    pub snapshot_every: Duration,
    /// Snapshots kept; journal files older than the oldest kept one are deleted.
    pub snapshot_retain: usize,
    /// Requests that may wait in the actor's mailbox.
    pub mailbox_capacity: usize,
    /// Changed-quote batches the broadcast channel keeps for slow subscribers.
    pub quote_channel_capacity: usize,
    /// Fill status changes the broadcast channel keeps for slow subscribers.
    pub fill_channel_capacity: usize,
}

impl EngineSettings {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            journal: JournalConfig::new(data_dir.join("journal")),
            data_dir,
            expiry_every: Duration::from_secs(1),
            snapshot_every: Duration::from_secs(300),
            snapshot_retain: 2,
            mailbox_capacity: 16_384,
            quote_channel_capacity: 1_024,
            fill_channel_capacity: 16_384,
        }
    }
}

/// Why a request to the engine failed. Nothing changed unless it says so.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Reconfigure(#[from] ReconfigureError),
    #[error("engine busy: the journal queue is full, retry later")]
    Busy,
    #[error("the journal failed, so the engine takes no more changes until it restarts: {0}")]
    Degraded(String),
    #[error("journal: {0}")]
    Journal(JournalError),
    #[error("recovery: {0}")]
    Recovery(#[from] RecoveryError),
    #[error("phase: {0}")]
    Phase(String),
    #[error("the engine could not start: {0}")]
    Start(String),
}

impl EngineError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Submit(e) => e.code(),
            Self::Order(e) => e.code(),
            Self::Reconfigure(_) => "config_not_applicable",
            Self::Busy => "busy",
            Self::Degraded(_) => "degraded",
            Self::Journal(_) => "journal_failed",
            Self::Recovery(_) => "recovery_failed",
            Self::Phase(_) => "invalid_phase",
            Self::Start(_) => "start_failed",
        }
    }
}

/// The clock the engine reads; tests pass their own.
pub type Clock = Arc<dyn Fn() -> TimeMs + Send + Sync>;

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as TimeMs))
}

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

/// List a provider's segment; replies with the listed segment once durable.
#[derive(Message)]
#[rtype(result = "Result<Segment, EngineError>")]
pub struct SubmitSegment(pub SignedSegment);

/// Execute a verified order; replies with the fill once durable.
#[derive(Message)]
#[rtype(result = "Result<Fill, EngineError>")]
pub struct PlaceOrder(pub VerifiedOrder);

/// Every market with its quote.
#[derive(Message)]
#[rtype(result = "Vec<MarketView>")]
pub struct GetMarkets;

/// One market with its quote.
#[derive(Message)]
#[rtype(result = "Option<MarketView>")]
pub struct GetMarket(pub MarketKey);

/// One fill and its status.
#[derive(Message)]
#[rtype(result = "Option<FillRecord>")]
pub struct GetFill(pub B256);

/// One segment.
#[derive(Message)]
#[rtype(result = "Option<Segment>")]
pub struct GetSegment(pub SegmentId);

/// Segments matching a filter, newest first, at most `limit`.
#[derive(Message, Debug, Clone, Default)]
#[rtype(result = "Vec<Segment>")]
pub struct SearchSegments {
    pub segment_type: Option<String>,
    pub window: Option<String>,
    pub band: Option<String>,
    pub min_quality_bps: Option<u16>,
    pub limit: usize,
}

/// Fills of one consumer, and credits of one provider.
#[derive(Message)]
#[rtype(result = "Vec<FillRecord>")]
pub struct ConsumerFills(pub Address);

/// PAT credited to a provider by accepted fills (settled or not), base units.
#[derive(Message)]
#[rtype(result = "u128")]
pub struct ProviderCredits(pub Address);

/// The emergency switch: journaled, then applied.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct SetPaused(pub bool);

/// Advance the market phase: journaled, then applied.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct AdvancePhase(pub u8);

/// Apply a validated config live: journaled, then applied.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Reconfigure(pub Arc<EngineConfig>);

/// Write a snapshot now (also done on a timer).
#[derive(Message)]
#[rtype(result = "Result<SnapshotReport, EngineError>")]
pub struct TakeSnapshot;

/// Stop the actor and its arbiter, after a snapshot if `snapshot`; replies
/// once the data directory is released (the actor dropped), so another engine
/// may open it.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct Shutdown {
    pub snapshot: bool,
}

/// Hands the clearing side up to `max` accepted fills that are durable and
/// were accepted no later than `accepted_before_ms`, oldest first. Each fill
/// is handed over once per run (and again after a restart, while still open).
#[derive(Message)]
#[rtype(result = "Vec<Fill>")]
pub struct TakeDurableFills {
    pub max: usize,
    pub accepted_before_ms: TimeMs,
}

/// Gives back fills the clearing side took but could not submit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReturnFills(pub Vec<B256>);

/// Hands over again, first, every open fill that the clearing side took and
/// neither gave back nor settled: every clearing actor sends it before it
/// takes anything (after a crash, what its predecessor held died with it).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RequeueTaken;

/// Records that fills went to the chain in `tx_hash`; replies once durable.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RecordSubmission {
    pub fill_ids: Vec<B256>,
    pub tx_hash: B256,
}

/// The chain's decision on one fill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    Settled,
    /// Rejected by the contract, with its reason: the fill fails and its units return.
    Rejected(String),
}

/// Records the chain's decisions; replies once they are durable.
#[derive(Message)]
#[rtype(result = "Result<(), EngineError>")]
pub struct RecordOutcomes(pub Vec<(B256, Settlement)>);

/// A receiver of the markets whose quotes changed, one batch per tick.
#[derive(Message)]
#[rtype(result = "broadcast::Receiver<Arc<Vec<Quote>>>")]
pub struct SubscribeQuotes;

/// The tables shared with the quoting actor, for readers of quotes.
#[derive(Message)]
#[rtype(result = "Arc<Tables>")]
pub struct GetTables;

/// A receiver of fill status changes, each sent once its event is durable.
#[derive(Message)]
#[rtype(result = "broadcast::Receiver<FillUpdate>")]
pub struct SubscribeFills;

/// A fill's new status, durable: `accepted`, `submitted`, `settled` or `failed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FillUpdate {
    pub fill_id: B256,
    pub consumer: Address,
    pub market: MarketId,
    pub status: FillStatus,
}

/// What outlives one incarnation of the engine actor: its subscribers'
/// channels, the tables it shares with the quoting actor, and that actor.
#[derive(Clone)]
struct Outlets {
    quotes: broadcast::Sender<Arc<Vec<Quote>>>,
    fill_updates: broadcast::Sender<FillUpdate>,
    tables: Arc<Tables>,
    /// Set once, right after the first incarnation started.
    quoting: Arc<OnceLock<Supervised<QuotingActor>>>,
}

/// Everything needed to start the engine actor, again after a crash.
struct Launch {
    settings: EngineSettings,
    /// The config file's at the first start (a restart keeps the journaled one).
    config: Arc<EngineConfig>,
    clock: Clock,
    outlets: Outlets,
    exits: std::sync::mpsc::Sender<Exit>,
}

/// The engine actor.
pub struct EngineActor {
    books: Books,
    data: Arc<DataDir>,
    settings: EngineSettings,
    clock: Clock,
    /// Appends whose durability the actor has not yet heard of.
    pending: Arc<AtomicU64>,
    degraded: Arc<AtomicBool>,
    outlets: Outlets,
    /// The actor's own address, for a failed append to stop it.
    me: Option<actix::WeakAddr<Self>>,
    /// The LSN the journal gives the next append: the actor is its only
    /// appender and LSNs are consecutive (a failed write degrades the actor).
    next_lsn: u64,
    /// Accepted fills not yet handed to clearing, with the LSN of their record
    /// (0 for fills recovered from disk, durable already).
    handoff: std::collections::VecDeque<(u64, B256)>,
    /// Dropped after the data directory (field order), then joins its writer.
    journal: Journal,
    /// Last: tells the supervisor once everything above is released.
    exit: ExitNotice,
}

/// What recovery found, for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Startup {
    pub snapshot_lsn: u64,
    pub replayed: u64,
    pub next_lsn: u64,
    pub torn_tail_bytes: u64,
}

impl EngineActor {
    /// Recovers the data directory and starts the actor on its own arbiter,
    /// under a supervisor that restarts it from disk if it crashes. `cfg` is
    /// the config file's; if the recovered state ran under another, the
    /// change is journaled like a reload.
    pub fn start(
        settings: EngineSettings,
        cfg: Arc<EngineConfig>,
        clock: Clock,
    ) -> Result<(EngineHandle, Startup), EngineError> {
        let (quotes, _) = broadcast::channel(settings.quote_channel_capacity);
        let (fill_updates, _) = broadcast::channel(settings.fill_channel_capacity);
        let tables = Arc::new(Tables::new(&cfg));
        let outlets = Outlets { quotes, fill_updates, tables, quoting: Arc::new(OnceLock::new()) };
        let (exits, exited) = supervisor::exit_channel();
        let launch = Launch { settings, config: cfg, clock, outlets, exits };
        let (addr, mut arbiter, startup) = Self::boot(&launch, true)?;
        // After the boot, so that the quoting actor starts from the recovered stats.
        let out = &launch.outlets;
        let quoting = QuotingActor::start(out.tables.clone(), out.quotes.clone(), launch.clock.clone())
            .map_err(EngineError::Start)?;
        let _ = out.quoting.set(quoting);
        let handle = Supervised::new(addr);
        supervisor::supervise("engine", &handle, exited, move || {
            let (addr, next, _) = Self::boot(&launch, false).map_err(|e| e.to_string())?;
            let old = std::mem::replace(&mut arbiter, next);
            // The old actor is gone and its journal joined, so every append it
            // made has its answer; the old arbiter forwards them, then stops.
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(1));
                old.stop();
            });
            Ok(addr)
        });
        Ok((handle, startup))
    }

    /// Recovers and starts one incarnation. `adopt` journals the launch
    /// config if the recovered state ran under another (a first start); a
    /// restart keeps the recovered one.
    fn boot(launch: &Launch, adopt: bool) -> Result<(Addr<Self>, ArbiterHandle, Startup), EngineError> {
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
        if adopt && *books.config() != **cfg {
            books.reconfigure(cfg.clone())?;
            journal.append_event(&Event::ConfigChanged(Box::new((**cfg).clone()))).map_err(EngineError::Journal)?;
            next_lsn += 1;
        }
        let handoff = open_fills(&books, |_| true).into_iter().map(|id| (0, id)).collect();
        // Every market of new books counts as changed: the quoting actor re-reads them all.
        launch.outlets.tables.stats.write(&mut books);
        let arbiter = Arbiter::try_new().map_err(|e| EngineError::Start(e.to_string()))?.handle();
        let actor = Self {
            books,
            data: Arc::new(data),
            settings: settings.clone(),
            clock: launch.clock.clone(),
            pending: Arc::new(AtomicU64::new(0)),
            degraded: Arc::new(AtomicBool::new(false)),
            outlets: launch.outlets.clone(),
            me: None,
            next_lsn,
            handoff,
            journal,
            exit: ExitNotice::new(launch.exits.clone()),
        };
        Ok((Self::start_in_arbiter(&arbiter, |_| actor), arbiter, startup))
    }

    /// Refuses a mutation when the engine is degraded or the journal is full.
    fn writable(&self) -> Result<(), EngineError> {
        // A handler panicked and the actor is being dropped: actix still runs
        // what is queued, against books the panic may have left half-changed.
        if std::thread::panicking() {
            return Err(EngineError::Degraded("the engine actor crashed".into()));
        }
        if self.degraded.load(Ordering::Acquire) {
            return Err(EngineError::Degraded("a journal write failed".into()));
        }
        if self.journal.is_full() {
            return Err(EngineError::Busy);
        }
        Ok(())
    }

    /// Appends an event whose change is already in memory; the returned
    /// future resolves once it is durable. Any failure degrades the engine
    /// and stops it, for its supervisor to recover it from disk.
    fn journal(&mut self, event: &Event) -> impl Future<Output = Result<(), EngineError>> + use<> {
        let started = Instant::now();
        let appended: Result<Durable, JournalError> = self.journal.append_event(event);
        self.next_lsn += 1;
        // Every change is journaled right after it is made: hand the quoting side its stats.
        self.outlets.tables.stats.write(&mut self.books);
        let (pending, degraded, me) = (self.pending.clone(), self.degraded.clone(), self.me.clone());
        pending.fetch_add(1, Ordering::AcqRel);
        async move {
            let result = match appended {
                Ok(durable) => durable.await,
                Err(e) => Err(e),
            };
            pending.fetch_sub(1, Ordering::AcqRel);
            metrics::histogram!("pat_journal_append_seconds").record(started.elapsed().as_secs_f64());
            result.map(|_| ()).map_err(|e| {
                metrics::counter!("pat_journal_failures_total").increment(1);
                if !degraded.swap(true, Ordering::AcqRel)
                    && let Some(me) = me.and_then(|me| me.upgrade())
                {
                    me.do_send(Stop);
                }
                EngineError::Journal(e)
            })
        }
    }

    fn expire(&mut self, ctx: &mut Context<Self>) {
        if self.writable().is_err() {
            return;
        }
        let now = (self.clock)();
        if self.books.expire(now) > 0 {
            let durable = self.journal(&Event::UnitsExpired { at_ms: now });
            ctx.spawn(async move { durable.await.err() }.into_actor(self).map(|_, _, _| ()));
        }
    }

    /// Takes the state once every appended event is durable, so the snapshot
    /// covers exactly the journal through its LSN; writes it off the actor.
    /// The mailbox waits meanwhile (`ctx.wait`): no new event can slip in
    /// between the drain and the copy of the state.
    fn snapshot(&mut self, ctx: &mut Context<Self>) -> Reply<SnapshotReport> {
        let pending = self.pending.clone();
        let drained = async move {
            while pending.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        ctx.wait(drained.into_actor(self).map(move |(), act, _| {
            let state = act.books.state();
            let lsn = act.journal.stats().durable_lsn.load(Ordering::Acquire);
            let _ = tx.send((state, lsn, act.data.clone(), act.settings.snapshot_retain));
        }));
        Box::pin(async move {
            let (state, lsn, data, retain) = rx.await.map_err(|_| EngineError::Journal(JournalError::Closed))?;
            let started = Instant::now();
            let report = tokio::task::spawn_blocking(move || data.write_snapshot(lsn, &state, retain))
                .await
                .map_err(|e| EngineError::Journal(JournalError::Write(e.to_string())))??;
            metrics::histogram!("pat_snapshot_seconds").record(started.elapsed().as_secs_f64());
            Ok(report)
        })
    }
}

impl Actor for EngineActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.mailbox_capacity);
        self.me = Some(ctx.address().downgrade());
        ctx.run_interval(self.settings.expiry_every, |act, ctx| act.expire(ctx));
        ctx.run_interval(self.settings.snapshot_every, |act, ctx| {
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

    fn stopped(&mut self, _: &mut Self::Context) {
        // After a crash the arbiter still has replies to deliver for appends
        // that became durable; the supervisor stops it once they are out.
        if self.exit.is_planned() {
            Arbiter::current().stop();
        }
    }
}

impl Handler<Shutdown> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        let snapshot = msg.snapshot.then(|| self.snapshot(ctx));
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.exit.plan(Some(tx));
        if let Some(quoting) = self.outlets.quoting.get() {
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

/// Stops the actor: sent by `Shutdown` once its snapshot is written (planned),
/// and by a failed append (for the supervisor to restart it from disk).
#[derive(Message)]
#[rtype(result = "()")]
struct Stop;

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
        if let Some(quoting) = self.outlets.quoting.get() {
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

type Reply<T> = Pin<Box<dyn Future<Output = Result<T, EngineError>>>>;

fn refused<T: 'static>(e: EngineError) -> Reply<T> {
    Box::pin(std::future::ready(Err(e)))
}

impl Handler<SubmitSegment> for EngineActor {
    type Result = ResponseFuture<Result<Segment, EngineError>>;
    fn handle(&mut self, msg: SubmitSegment, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.writable() {
            return refused(e);
        }
        match self.books.submit_segment(&msg.0, (self.clock)()) {
            Ok(segment) => {
                let durable = self.journal(&Event::SegmentListed(segment.clone()));
                Box::pin(async move { durable.await.map(|()| segment) })
            }
            Err(e) => {
                metrics::counter!("pat_submissions_refused_total", "reason" => e.code()).increment(1);
                if e.is_attributable() {
                    let provider = msg.0.submission.provider;
                    let durable = self.journal(&Event::SubmissionRefused { provider });
                    return Box::pin(async move { durable.await.and(Err(e.into())) });
                }
                refused(e.into())
            }
        }
    }
}

impl Handler<PlaceOrder> for EngineActor {
    type Result = ResponseFuture<Result<Fill, EngineError>>;
    fn handle(&mut self, msg: PlaceOrder, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.writable() {
            return refused(e);
        }
        let quotes = &self.outlets.tables.quotes;
        match self.books.execute(msg.0, (self.clock)(), |id| quotes.get(id)) {
            Ok(fill) => {
                metrics::counter!("pat_fills_total", "status" => "accepted").increment(1);
                let durable = self.journal(&Event::FillAccepted(fill.clone()));
                self.handoff.push_back((self.next_lsn - 1, fill.fill_id));
                let updates = self.fill_update(&fill.fill_id).into_iter().collect();
                let announced = announce_when_durable(durable, self.outlets.fill_updates.clone(), updates);
                Box::pin(async move { announced.await.map(|()| fill) })
            }
            Err(e) => {
                metrics::counter!("pat_orders_refused_total", "reason" => e.code()).increment(1);
                refused(e.into())
            }
        }
    }
}

impl EngineActor {
    /// The fill's current status as an update, if the fill exists.
    fn fill_update(&self, id: &B256) -> Option<FillUpdate> {
        self.books.fill(id).map(|r| FillUpdate {
            fill_id: r.fill.fill_id,
            consumer: r.fill.consumer,
            market: r.fill.market,
            status: r.status.clone(),
        })
    }

    fn market_view(&self, id: MarketId) -> MarketView {
        let (ex, m) = (&self.books, self.books.market(id));
        MarketView {
            id,
            key: m.key.clone(),
            quote: self.outlets.tables.quotes.get(id),
            supply_units: m.supply_units(),
            provider_count: m.provider_count(),
            exposure: m.stats().exposure,
            group_exposure: ex.group_exposure_of(id),
            counters: m.counters(),
        }
    }
}

impl Handler<GetMarkets> for EngineActor {
    type Result = MessageResult<GetMarkets>;
    fn handle(&mut self, _: GetMarkets, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.books.markets().iter().map(|m| self.market_view(m.id)).collect())
    }
}

impl Handler<GetMarket> for EngineActor {
    type Result = Option<MarketView>;
    fn handle(&mut self, msg: GetMarket, _: &mut Context<Self>) -> Self::Result {
        self.books.market_by_key(&msg.0).map(|id| self.market_view(id))
    }
}

impl Handler<GetFill> for EngineActor {
    type Result = Option<FillRecord>;
    fn handle(&mut self, msg: GetFill, _: &mut Context<Self>) -> Self::Result {
        self.books.fill(&msg.0).cloned()
    }
}

impl Handler<GetSegment> for EngineActor {
    type Result = Option<Segment>;
    fn handle(&mut self, msg: GetSegment, _: &mut Context<Self>) -> Self::Result {
        self.books.segment(msg.0).cloned()
    }
}

impl Handler<SearchSegments> for EngineActor {
    type Result = MessageResult<SearchSegments>;
    fn handle(&mut self, q: SearchSegments, _: &mut Context<Self>) -> Self::Result {
        let matches = |s: &&Segment| {
            q.segment_type.as_deref().is_none_or(|t| s.market.segment_type.as_str() == t)
                && q.window.as_deref().is_none_or(|w| s.market.window.to_string() == w)
                && q.band.as_deref().is_none_or(|b| s.market.band.to_string() == b)
                && q.min_quality_bps.is_none_or(|m| s.quality.score() >= m)
        };
        MessageResult(self.books.segments().iter().rev().filter(matches).take(q.limit).cloned().collect())
    }
}

impl Handler<ConsumerFills> for EngineActor {
    type Result = MessageResult<ConsumerFills>;
    fn handle(&mut self, msg: ConsumerFills, _: &mut Context<Self>) -> Self::Result {
        let mut fills: Vec<FillRecord> = self.books.fills().filter(|r| r.fill.consumer == msg.0).cloned().collect();
        fills.sort_by_key(|r| r.fill.accepted_at_ms);
        MessageResult(fills)
    }
}

impl Handler<ProviderCredits> for EngineActor {
    type Result = MessageResult<ProviderCredits>;
    fn handle(&mut self, msg: ProviderCredits, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.books.ledger().by_provider.get(&msg.0).copied().unwrap_or(0))
    }
}

impl Handler<SetPaused> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: SetPaused, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.writable() {
            return refused(e);
        }
        self.books.set_paused(msg.0);
        metrics::gauge!("pat_paused").set(if msg.0 { 1.0 } else { 0.0 });
        Box::pin(self.journal(&Event::PauseSet { paused: msg.0 }))
    }
}

impl Handler<AdvancePhase> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: AdvancePhase, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.writable() {
            return refused(e);
        }
        if let Err(e) = self.books.set_phase(msg.0) {
            return refused(EngineError::Phase(e.to_string()));
        }
        Box::pin(self.journal(&Event::PhaseAdvanced { phase: msg.0 }))
    }
}

impl Handler<Reconfigure> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: Reconfigure, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.writable() {
            return refused(e);
        }
        if let Err(e) = self.books.reconfigure(msg.0.clone()) {
            return refused(e.into());
        }
        Box::pin(self.journal(&Event::ConfigChanged(Box::new((*msg.0).clone()))))
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
        let durable = self.journal.stats().durable_lsn.load(Ordering::Acquire);
        let mut fills = Vec::new();
        while fills.len() < msg.max {
            let Some(&(lsn, id)) = self.handoff.front() else { break };
            let Some(record) = self.books.fill(&id) else {
                self.handoff.pop_front();
                continue;
            };
            if lsn > durable || record.fill.accepted_at_ms > msg.accepted_before_ms {
                break;
            }
            self.handoff.pop_front();
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
        for id in msg.0.into_iter().rev() {
            self.handoff.push_front((0, id));
        }
    }
}

impl Handler<RequeueTaken> for EngineActor {
    type Result = ();
    fn handle(&mut self, _: RequeueTaken, _: &mut Context<Self>) {
        let queued: alloy_primitives::map::B256Set = self.handoff.iter().map(|&(_, id)| id).collect();
        // Only durable fills are ever taken, so these go back with LSN 0.
        for id in open_fills(&self.books, |id| !queued.contains(id)).into_iter().rev() {
            self.handoff.push_front((0, id));
        }
    }
}

/// Open (accepted or submitted) fills passing `keep`, oldest first.
fn open_fills(books: &Books, keep: impl Fn(&B256) -> bool) -> Vec<B256> {
    let mut open: Vec<&FillRecord> = books
        .fills()
        .filter(|r| matches!(r.status, FillStatus::Accepted | FillStatus::Submitted { .. }) && keep(&r.fill.fill_id))
        .collect();
    open.sort_by_key(|r| (r.fill.accepted_at_ms, r.fill.fill_id));
    open.into_iter().map(|r| r.fill.fill_id).collect()
}

impl Handler<RecordSubmission> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: RecordSubmission, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.writable() {
            return refused(e);
        }
        // A fill that settled or failed meanwhile (a raced retry) is left as it is.
        let ids: Vec<B256> =
            msg.fill_ids.into_iter().filter(|id| self.books.mark_submitted(id, msg.tx_hash).is_ok()).collect();
        let updates: Vec<_> = ids.iter().filter_map(|id| self.fill_update(id)).collect();
        let durable = self.journal(&Event::FillsSubmitted { fill_ids: ids, tx_hash: msg.tx_hash });
        Box::pin(announce_when_durable(durable, self.outlets.fill_updates.clone(), updates))
    }
}

impl Handler<RecordOutcomes> for EngineActor {
    type Result = ResponseFuture<Result<(), EngineError>>;
    fn handle(&mut self, msg: RecordOutcomes, _: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.writable() {
            return refused(e);
        }
        let now = (self.clock)();
        let mut durables = Vec::new();
        let mut updates = Vec::new();
        for (id, outcome) in msg.0 {
            let event = match outcome {
                Settlement::Settled => match self.books.settle(&id) {
                    Ok(()) => Event::FillSettled { fill_id: id },
                    Err(_) => continue,
                },
                Settlement::Rejected(reason) => match self.books.fail(&id, &reason, now) {
                    Ok(()) => {
                        // Reasons are the contract's reject codes: a small, fixed set.
                        metrics::counter!("pat_fills_failed_total", "reason" => reason.clone()).increment(1);
                        Event::FillFailed { fill_id: id, reason, at_ms: now }
                    }
                    Err(_) => continue,
                },
            };
            let status = if matches!(event, Event::FillSettled { .. }) { "settled" } else { "failed" };
            metrics::counter!("pat_fills_total", "status" => status).increment(1);
            durables.push(self.journal(&event));
            updates.extend(self.fill_update(&id));
        }
        let durable = async move {
            for d in durables {
                d.await?;
            }
            Ok(())
        };
        Box::pin(announce_when_durable(durable, self.outlets.fill_updates.clone(), updates))
    }
}

impl Handler<SubscribeFills> for EngineActor {
    type Result = MessageResult<SubscribeFills>;
    fn handle(&mut self, _: SubscribeFills, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.outlets.fill_updates.subscribe())
    }
}

/// Resolves once `durable` has, then sends `updates` (durable by then); no
/// subscriber is not an error.
async fn announce_when_durable(
    durable: impl Future<Output = Result<(), EngineError>>,
    sender: broadcast::Sender<FillUpdate>,
    updates: Vec<FillUpdate>,
) -> Result<(), EngineError> {
    durable.await?;
    for update in updates {
        let _ = sender.send(update);
    }
    Ok(())
}

impl Handler<GetTables> for EngineActor {
    type Result = MessageResult<GetTables>;
    fn handle(&mut self, _: GetTables, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.outlets.tables.clone())
    }
}

impl Handler<SubscribeQuotes> for EngineActor {
    type Result = MessageResult<SubscribeQuotes>;
    fn handle(&mut self, _: SubscribeQuotes, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.outlets.quotes.subscribe())
    }
}
