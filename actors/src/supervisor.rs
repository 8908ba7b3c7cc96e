//! Supervision: an actor that stops without being asked (a panic in one of
//! its handlers, or the engine after a failed journal write) is started again
//! from durable state by a supervisor thread, and the handles that callers
//! hold point at the new one. Each restart is counted in
//! `pat_actor_restarts_total{actor}`.
//!
//! An actor reports its end through an [`ExitNotice`], its last field: Rust
//! drops fields in order, so by the time the notice is sent everything the
//! actor held (journal writer joined, data directory closed) is released and
//! the replacement can open it.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use actix::dev::{Request, ToEnvelope};
use actix::prelude::*;

/// Fault injection for tests: a supervised actor's handler of it panics, as a bug would.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

/// Fault injection for tests: the engine actor passes a [`Crash`] to its quoting actor.
#[cfg(feature = "fault-injection")]
#[derive(Message)]
#[rtype(result = "()")]
pub struct CrashQuoting;

/// Stops a supervised actor for good: it is not restarted (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// How an actor ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Asked to stop (shutdown): not restarted.
    Planned,
    /// Panicked or gave up: restarted.
    Crashed,
}

/// Sent to the supervisor when dropped, with the actor's key (which market;
/// `()` for a one-of-a-kind actor): [`Exit::Planned`] once
/// [`ExitNotice::plan`] was called, else [`Exit::Crashed`]. Also tells
/// `released` listeners that the actor and what it held are gone.
pub(crate) struct ExitNotice<K: Copy = ()> {
    exits: Sender<(K, Exit)>,
    key: K,
    planned: bool,
    released: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl ExitNotice<()> {
    pub(crate) fn new(exits: Sender<((), Exit)>) -> Self {
        Self::keyed(exits, ())
    }
}

impl<K: Copy> ExitNotice<K> {
    pub(crate) fn keyed(exits: Sender<(K, Exit)>, key: K) -> Self {
        Self { exits, key, planned: false, released: Vec::new() }
    }

    /// The coming stop is asked for; `released` hears once the actor is dropped.
    pub(crate) fn plan(&mut self, released: Option<tokio::sync::oneshot::Sender<()>>) {
        self.planned = true;
        self.released.extend(released);
    }

    pub(crate) fn is_planned(&self) -> bool {
        self.planned
    }
}

impl<K: Copy> Drop for ExitNotice<K> {
    fn drop(&mut self) {
        for tx in self.released.drain(..) {
            let _ = tx.send(());
        }
        let _ = self.exits.send((self.key, if self.planned { Exit::Planned } else { Exit::Crashed }));
    }
}

/// The address of a supervised actor that stays valid across its restarts.
/// While a restart is under way, requests fail with `MailboxError::Closed`.
pub struct Supervised<A: Actor> {
    current: Arc<RwLock<Addr<A>>>,
}

impl<A: Actor> Clone for Supervised<A> {
    fn clone(&self) -> Self {
        Self { current: self.current.clone() }
    }
}

impl<A: Actor<Context = Context<A>>> Supervised<A> {
    pub(crate) fn new(addr: Addr<A>) -> Self {
        Self { current: Arc::new(RwLock::new(addr)) }
    }

    /// The running actor's address (a dead one while it restarts).
    pub fn addr(&self) -> Addr<A> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends to the running actor; see [`Addr::send`].
    pub fn send<M>(&self, msg: M) -> Request<A, M>
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.addr().send(msg)
    }

    /// Sends to the running actor without waiting; see [`Addr::do_send`].
    pub fn do_send<M>(&self, msg: M)
    where
        M: Message + Send + 'static,
        M::Result: Send,
        A: Handler<M>,
        A::Context: ToEnvelope<A, M>,
    {
        self.addr().do_send(msg)
    }

    /// Points the handle at a new incarnation.
    pub(crate) fn point(&self, addr: Addr<A>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = addr;
    }

    fn downgrade(&self) -> Weak<RwLock<Addr<A>>> {
        Arc::downgrade(&self.current)
    }
}

/// Restarts come at once the first time; a crash within `CALM` of the last
/// restart waits twice as long as the one before, up to `BACKOFF_MAX`, so a
/// failure that recurs (a full disk) does not spin.
const CALM: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The wait before each restart of one actor.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    last_restart: Option<Instant>,
    wait: Duration,
}

impl Backoff {
    /// The wait before the first attempt after a crash.
    pub(crate) fn crashed(&mut self) -> Duration {
        self.wait = match self.last_restart {
            Some(at) if at.elapsed() < CALM => (self.wait * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX),
            _ => Duration::ZERO,
        };
        self.wait
    }

    /// The wait before the next attempt after one that failed.
    pub(crate) fn failed(&mut self) -> Duration {
        self.wait = (self.wait * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX);
        self.wait
    }

    pub(crate) fn restarted(&mut self) {
        self.last_restart = Some(Instant::now());
    }
}

/// Where actors keyed by `K` report their ends.
pub(crate) type Exits<K> = Sender<(K, Exit)>;

/// A new [`ExitNotice`] channel: the actor's first incarnation takes a notice
/// built on the sender; the supervisor takes the receiver.
pub(crate) fn exit_channel<K>() -> (Exits<K>, Receiver<(K, Exit)>) {
    channel()
}

/// Whether the actix system still runs (its arbiter takes work).
pub(crate) fn system_alive() -> bool {
    System::current().arbiter().spawn(async {})
}

/// Starts the supervisor thread of `handle`'s actor, named `actor` in logs
/// and metrics. On each crash it calls `restart` until that succeeds, then
/// points `handle` at the new address. It ends after a planned exit, when no
/// handle is left (nobody could use a restarted actor), or when the actix
/// system has stopped.
pub(crate) fn supervise<A, F>(actor: &'static str, handle: &Supervised<A>, exits: Receiver<((), Exit)>, mut restart: F)
where
    A: Actor<Context = Context<A>>,
    F: FnMut() -> Result<Addr<A>, String> + Send + 'static,
{
    let current = handle.downgrade();
    spawn_supervisor(actor, move || {
        let mut backoff = Backoff::default();
        while let Ok(((), Exit::Crashed)) = exits.recv() {
            let mut wait = backoff.crashed();
            metrics::counter!("pat_actor_restarts_total", "actor" => actor).increment(1);
            eprintln!("{actor} actor stopped unexpectedly; restarting from durable state");
            loop {
                std::thread::sleep(wait);
                // Nobody left to use it, or the system is gone.
                if current.strong_count() == 0 || !system_alive() {
                    return;
                }
                match restart() {
                    Ok(addr) => {
                        let Some(current) = current.upgrade() else { return };
                        Supervised { current }.point(addr);
                        eprintln!("{actor} actor restarted");
                        break;
                    }
                    Err(e) => {
                        eprintln!("{actor} actor could not restart, retrying: {e}");
                        wait = backoff.failed();
                    }
                }
            }
            backoff.restarted();
        }
    });
}

/// Where a supervised actor runs: on the arbiter that starts it, or on an
/// arbiter of its own, a new one for each incarnation (the old one stopped).
pub(crate) enum Home {
    Here,
    Own,
}

/// Starts the actor `make` builds under a supervisor named `actor` (in logs
/// and metrics) that builds and starts a fresh one after each crash; `make`
/// gets the [`ExitNotice`] its actor keeps as its last field. What a
/// one-of-a-kind actor (quoting, clearing) needs to be supervised.
pub(crate) fn start<A, F>(actor: &'static str, home: Home, make: F) -> Result<Supervised<A>, String>
where
    A: Actor<Context = Context<A>> + Send,
    F: Fn(ExitNotice) -> A + Send + 'static,
{
    let (exits, exited) = exit_channel();
    let here = Arbiter::current();
    let launch = move || -> Result<(Addr<A>, Option<ArbiterHandle>), String> {
        let actor = make(ExitNotice::new(exits.clone()));
        match home {
            Home::Here => Ok((A::start_in_arbiter(&here, move |_| actor), None)),
            Home::Own => {
                let arbiter = Arbiter::try_new().map_err(|e| e.to_string())?.handle();
                Ok((A::start_in_arbiter(&arbiter, move |_| actor), Some(arbiter)))
            }
        }
    };
    let (addr, mut arbiter) = launch()?;
    let handle = Supervised::new(addr);
    supervise(actor, &handle, exited, move || {
        let (addr, next) = launch()?;
        if let Some(old) = std::mem::replace(&mut arbiter, next) {
            old.stop();
        }
        Ok(addr)
    });
    Ok(handle)
}

/// The two handlers every supervised actor has, alike for each: [`Retire`]
/// plans the exit (no restart) and stops the actor; [`Crash`] (fault
/// injection, for tests) panics as a bug in one of its handlers would, with
/// `$what` naming the actor. The actor keeps its [`ExitNotice`] in `exit`.
macro_rules! supervised_handlers {
    ($actor:ty, |$me:ident| $what:expr) => {
        impl actix::Handler<$crate::supervisor::Retire> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::supervisor::Retire, ctx: &mut actix::Context<Self>) {
                self.exit.plan(None);
                actix::ActorContext::stop(ctx);
            }
        }

        #[cfg(feature = "fault-injection")]
        impl actix::Handler<$crate::supervisor::Crash> for $actor {
            type Result = ();
            fn handle(&mut self, _: $crate::supervisor::Crash, _: &mut actix::Context<Self>) {
                let $me = &*self;
                panic!("injected fault: {} panics", $what);
            }
        }
    };
}
pub(crate) use supervised_handlers;

/// Runs `body` on a thread of its own, in the current actix system.
pub(crate) fn spawn_supervisor(actor: &str, body: impl FnOnce() + Send + 'static) {
    let system = System::current();
    let spawned = std::thread::Builder::new().name(format!("pat-supervise-{actor}")).spawn(move || {
        System::set_current(system);
        body();
    });
    if let Err(e) = spawned {
        eprintln!("no supervisor thread for the {actor} actor, it will not restart: {e}");
    }
}
