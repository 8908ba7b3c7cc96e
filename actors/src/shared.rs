//! What one incarnation of the engine shares between its engine actor and
//! its market actors: the [`Registry`] (the state between markets: nonces,
//! payload hashes, group exposure, fills, the ledger) and the clearing
//! hand-off queue behind one lock, and the journal. Every change appends its
//! event while it still holds the lock, so the journal's LSN order is the
//! order in which the changes were made, and a replay gives the same state:
//! segment ids follow the journal, a nonce is claimed once, a group's
//! exposure limit holds across its markets.
//!
//! The incarnation ends when the last actor holding it is gone; its
//! [`ExitNotice`], the last field, then tells the engine's supervisor.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use actix::prelude::*;
use alloy_primitives::B256;
use pat_engine::{EngineConfig, Event, FillStatus, MarketId, Quote, Registry};
use pat_persistence::{DataDir, Durable, Journal};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::error::EngineError;
use crate::messages::{FillUpdate, Stop};
use crate::quoting::Tables;
use crate::reads::ReadView;
use crate::settings::EngineSettings;
use crate::supervisor::{Exit, ExitNotice};

/// The state under the lock.
pub(crate) struct SharedState {
    pub(crate) registry: Registry,
    /// Accepted fills not yet handed to clearing, with the LSN of their record
    /// (0 for fills recovered from disk, durable already).
    pub(crate) handoff: VecDeque<(u64, B256)>,
    /// The LSN the journal gives the next append: every append happens under
    /// the lock and LSNs are consecutive (a failed write degrades the engine).
    next_lsn: u64,
}

impl SharedState {
    /// The LSN of the newest append.
    pub(crate) fn last_lsn(&self) -> u64 {
        self.next_lsn - 1
    }

    /// The fill's current status as an update, if the fill exists.
    pub(crate) fn fill_update(&self, id: &B256) -> Option<FillUpdate> {
        self.registry.fill(id).map(|r| FillUpdate {
            fill_id: r.fill.fill_id,
            consumer: r.fill.consumer,
            market: r.fill.market,
            status: r.status.clone(),
        })
    }

    /// Puts fills back at the front of the hand-off queue, in their order,
    /// but those queued already (a fill is queued at most once). Only durable
    /// fills are ever taken, so they go back with LSN 0.
    pub(crate) fn hand_back(&mut self, ids: Vec<B256>) {
        let queued: alloy_primitives::map::B256Set = self.handoff.iter().map(|&(_, id)| id).collect();
        for id in ids.into_iter().rev().filter(|id| !queued.contains(id)) {
            self.handoff.push_front((0, id));
        }
    }

    /// Open (accepted or submitted) fills passing `keep`, oldest first.
    pub(crate) fn open_fills(&self, keep: impl Fn(&B256) -> bool) -> Vec<B256> {
        let mut open: Vec<_> = self
            .registry
            .fills()
            .filter(|r| {
                matches!(r.status, FillStatus::Accepted | FillStatus::Submitted { .. }) && keep(&r.fill.fill_id)
            })
            .collect();
        open.sort_by_key(|r| (r.fill.accepted_at_ms, r.fill.fill_id));
        open.into_iter().map(|r| r.fill.fill_id).collect()
    }
}

/// What outlives one incarnation of the engine: its subscribers' channels
/// and the tables shared with the quoting actor.
#[derive(Clone)]
pub(crate) struct Outlets {
    pub(crate) quotes: broadcast::Sender<Arc<Vec<Quote>>>,
    pub(crate) fill_updates: broadcast::Sender<FillUpdate>,
    pub(crate) tables: Arc<Tables>,
}

/// One incarnation of the engine, shared by its actors.
pub(crate) struct Shared {
    state: Mutex<SharedState>,
    degraded: Arc<AtomicBool>,
    /// Set once the incarnation ends: no market actor may start in it.
    closing: AtomicBool,
    /// The engine actor, for a failed append to stop it.
    engine: OnceLock<actix::WeakRecipient<Stop>>,
    pub(crate) outlets: Outlets,
    /// What the read routes answer from, off `state`'s lock.
    pub(crate) reads: ReadView,
    announcements: Arc<Announcements>,
    pub(crate) clock: Clock,
    pub(crate) settings: EngineSettings,
    /// The config file's at the first start: what a replay starts from without a snapshot.
    pub(crate) launch_config: Arc<EngineConfig>,
    /// The engine actor's arbiter first, then those the market actors are spread over.
    pub(crate) arbiters: Vec<ArbiterHandle>,
    pub(crate) data: Arc<DataDir>,
    market_exits: Sender<(MarketId, Exit)>,
    /// Joins its writer when dropped, after everything above.
    journal: Journal,
    /// Stops the arbiters, after the journal is joined (so every durable
    /// append has its answer queued) and a grace second for the answers.
    _arbiters_stop: ArbitersStop,
    /// Last: tells the supervisor once everything above is released.
    exit: Mutex<ExitNotice>,
}

/// A reply that resolves once what it reports is durable.
pub(crate) type Reply<T> = Pin<Box<dyn Future<Output = Result<T, EngineError>>>>;

pub(crate) fn refused<T: 'static>(e: EngineError) -> Reply<T> {
    Box::pin(std::future::ready(Err(e)))
}

/// What [`Shared::new`] takes.
pub(crate) struct SharedParts {
    pub(crate) registry: Registry,
    pub(crate) next_lsn: u64,
    pub(crate) outlets: Outlets,
    pub(crate) clock: Clock,
    pub(crate) settings: EngineSettings,
    pub(crate) launch_config: Arc<EngineConfig>,
    pub(crate) arbiters: Vec<ArbiterHandle>,
    pub(crate) data: DataDir,
    pub(crate) journal: Journal,
    pub(crate) market_exits: Sender<(MarketId, Exit)>,
    pub(crate) exit: ExitNotice,
}

impl Shared {
    /// The incarnation; every open fill waits in the hand-off queue.
    pub(crate) fn new(p: SharedParts) -> Self {
        let mut state = SharedState { registry: p.registry, handoff: VecDeque::new(), next_lsn: p.next_lsn };
        state.handoff = state.open_fills(|_| true).into_iter().map(|id| (0, id)).collect();
        Self {
            reads: ReadView::new(&state.registry),
            state: Mutex::new(state),
            market_exits: p.market_exits,
            degraded: Arc::new(AtomicBool::new(false)),
            closing: AtomicBool::new(false),
            engine: OnceLock::new(),
            announcements: Arc::new(Announcements::new(p.outlets.fill_updates.clone())),
            outlets: p.outlets,
            clock: p.clock,
            settings: p.settings,
            launch_config: p.launch_config,
            arbiters: p.arbiters.clone(),
            data: Arc::new(p.data),
            journal: p.journal,
            _arbiters_stop: ArbitersStop(p.arbiters),
            exit: Mutex::new(p.exit),
        }
    }

    /// Where a market actor of this incarnation reports its end.
    pub(crate) fn market_exits(&self) -> Sender<(MarketId, Exit)> {
        self.market_exits.clone()
    }

    pub(crate) fn set_engine(&self, engine: actix::WeakRecipient<Stop>) {
        let _ = self.engine.set(engine);
    }

    /// The state, for a change of up to `events` events: refused when the
    /// engine is degraded or the journal has no room for them. Checked under
    /// the lock, since every appender takes it. A lock poisoned by a panic
    /// may guard a half-made change: the engine degrades and restarts from disk.
    pub(crate) fn begin(&self, events: usize) -> Result<MutexGuard<'_, SharedState>, EngineError> {
        // A handler panicked and its actor is being dropped: actix may still
        // poll what it spawned, against state the panic may have left half-changed.
        if std::thread::panicking() {
            return Err(EngineError::Degraded("the actor crashed".into()));
        }
        let st = self.state.lock().map_err(|_| {
            self.degrade();
            EngineError::Degraded("an actor crashed while changing the registry".into())
        })?;
        self.alive()?;
        if !self.journal.has_room(events) {
            return Err(EngineError::Busy);
        }
        Ok(st)
    }

    /// The state, for a read (also behind a poisoned lock: the engine is restarting then).
    pub(crate) fn read(&self) -> MutexGuard<'_, SharedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuses once the engine is degraded: a journal write failed, so
    /// memory may hold changes that are not durable.
    pub(crate) fn alive(&self) -> Result<(), EngineError> {
        match self.degraded.load(Ordering::Acquire) {
            true => Err(EngineError::Degraded("a journal write failed".into())),
            false => Ok(()),
        }
    }

    /// Marks the engine degraded and stops it, once, for its supervisor to
    /// start it again from disk.
    pub(crate) fn degrade(&self) {
        if !self.degraded.swap(true, Ordering::AcqRel) {
            stop_engine(self.engine.get());
        }
    }

    /// Appends an event whose change `st` (from [`Shared::begin`]) already
    /// holds; the returned future resolves once it is durable. Any failure
    /// degrades the engine: at once if the append is refused (no later
    /// change may then be journaled after it), or when the write fails.
    pub(crate) fn append(
        &self,
        st: &mut SharedState,
        event: &Event,
    ) -> impl Future<Output = Result<(), EngineError>> + use<> {
        self.append_at(st, event).1
    }

    /// [`Shared::append`], also giving the event's LSN (`None`: refused).
    pub(crate) fn append_at(
        &self,
        st: &mut SharedState,
        event: &Event,
    ) -> (Option<u64>, impl Future<Output = Result<(), EngineError>> + use<>) {
        let started = Instant::now();
        self.reads.project(event, &st.registry);
        let appended = self.alive().and_then(|()| {
            self.journal.append_event(event).map_err(|e| {
                metrics::counter!("pat_journal_failures_total").increment(1);
                self.degrade();
                EngineError::Journal(e)
            })
        });
        let lsn = appended.is_ok().then(|| {
            st.next_lsn += 1;
            st.last_lsn()
        });
        let (degraded, engine) = (self.degraded.clone(), self.engine.get().cloned());
        let durable = async move {
            let durable: Durable = appended?;
            let result = durable.await;
            metrics::histogram!("pat_journal_append_seconds").record(started.elapsed().as_secs_f64());
            result.map(|_| ()).map_err(|e| {
                metrics::counter!("pat_journal_failures_total").increment(1);
                if !degraded.swap(true, Ordering::AcqRel) {
                    stop_engine(engine.as_ref());
                }
                EngineError::Journal(e)
            })
        };
        (lsn, durable)
    }

    /// The newest LSN the journal has made durable.
    pub(crate) fn durable_lsn(&self) -> u64 {
        self.journal.stats().durable_lsn.load(Ordering::Acquire)
    }

    /// Resolves once `durable` has, then announces `updates`: the fills'
    /// statuses after the changes `st` holds, whose records `durable` waits
    /// for and the last of which is the newest append. Nothing is announced
    /// if an append was refused.
    pub(crate) fn announce_when_durable<F>(
        &self,
        st: &SharedState,
        durable: F,
        updates: Vec<FillUpdate>,
    ) -> impl Future<Output = Result<(), EngineError>> + use<F>
    where
        F: Future<Output = Result<(), EngineError>>,
    {
        // Without updates the newest append may be another change's, not durable yet.
        let lsn = (!updates.is_empty() && self.alive().is_ok()).then(|| {
            self.announcements.push(st.last_lsn(), updates);
            st.last_lsn()
        });
        let announcements = self.announcements.clone();
        async move {
            durable.await?;
            if let Some(lsn) = lsn {
                announcements.send_through(lsn);
            }
            Ok(())
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Ends the incarnation: no market actor starts in it any more (the
    /// engine actor then retires the running ones).
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
    }

    /// The coming end is asked for (shutdown); `released` hears once every
    /// actor of the incarnation is gone and the data directory is closed.
    pub(crate) fn plan_exit(&self, released: tokio::sync::oneshot::Sender<()>) {
        self.exit.lock().unwrap_or_else(|e| e.into_inner()).plan(Some(released));
    }
}

/// Stops the arbiters of an ended incarnation a second after it is dropped:
/// they still carry replies (for appends that became durable, and the
/// shutdown's own).
struct ArbitersStop(Vec<ArbiterHandle>);

impl Drop for ArbitersStop {
    fn drop(&mut self) {
        let arbiters = std::mem::take(&mut self.0);
        let stopper = std::thread::Builder::new().name("pat-arbiter-stop".into()).spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(1));
            for arbiter in arbiters {
                arbiter.stop();
            }
        });
        if let Err(e) = stopper {
            eprintln!("the arbiters of an ended engine incarnation stay: {e}");
        }
    }
}

fn stop_engine(engine: Option<&actix::WeakRecipient<Stop>>) {
    if let Some(engine) = engine.and_then(|e| e.upgrade()) {
        engine.do_send(Stop);
    }
}

/// Fill updates waiting for their records to become durable, in LSN order.
/// Whoever sees an LSN durable sends every update through it, so a
/// subscriber hears a fill's changes in the order they were journaled
/// (`accepted` before `submitted`), whichever waiter's thread wakes first,
/// and a waiter that is dropped (its arbiter stopped) loses nothing.
pub(crate) struct Announcements {
    pending: Mutex<VecDeque<(u64, FillUpdate)>>,
    sender: broadcast::Sender<FillUpdate>,
}

impl Announcements {
    pub(crate) fn new(sender: broadcast::Sender<FillUpdate>) -> Self {
        Self { pending: Mutex::new(VecDeque::new()), sender }
    }

    /// Queues updates whose records end at `lsn`; LSNs never go down.
    fn push(&self, lsn: u64, updates: Vec<FillUpdate>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend(updates.into_iter().map(|u| (lsn, u)));
    }

    /// Sends, in order, every queued update whose records are durable by
    /// `lsn`; no subscriber is not an error.
    fn send_through(&self, lsn: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while let Some((_, update)) = pending.pop_front_if(|(at, _)| *at <= lsn) {
            let _ = self.sender.send(update);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;

    fn update(n: u8, status: FillStatus) -> FillUpdate {
        FillUpdate { fill_id: B256::repeat_byte(n), consumer: Address::ZERO, market: pat_engine::MarketId(0), status }
    }

    #[test]
    fn updates_go_out_in_lsn_order_whoever_sees_durability_first() {
        let (sender, mut heard) = broadcast::channel(16);
        let announcements = Announcements::new(sender);
        let accepted = update(1, FillStatus::Accepted);
        let submitted = update(1, FillStatus::Submitted { tx_hash: B256::repeat_byte(9) });
        announcements.push(7, vec![accepted.clone()]);
        announcements.push(8, vec![submitted.clone(), update(2, FillStatus::Accepted)]);
        announcements.push(9, vec![update(3, FillStatus::Accepted)]);
        // The waiter of LSN 8 wakes before the waiter of LSN 7.
        announcements.send_through(8);
        assert_eq!(heard.try_recv().unwrap(), accepted);
        assert_eq!(heard.try_recv().unwrap(), submitted);
        assert_eq!(heard.try_recv().unwrap(), update(2, FillStatus::Accepted));
        assert!(heard.try_recv().is_err(), "LSN 9 is not durable yet");
        announcements.send_through(7);
        assert!(heard.try_recv().is_err(), "nothing is sent twice");
        announcements.send_through(9);
        assert_eq!(heard.try_recv().unwrap(), update(3, FillStatus::Accepted));
    }
}
