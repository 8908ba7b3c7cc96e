//! The escrow actor: follows consumers' escrow on chain for the engine. Every
//! round it reads, with [`EscrowReader`], what changed from the last block it
//! read (at start, the block the engine's escrow is current to) to the newest
//! block at the confirmation depth, and hands
//! it to the engine, which journals it ([`SyncEscrow`]) before its orders see
//! it. A sync that changes nothing is not journaled; the engine only learns how
//! far the chain was read, and after a restart the actor resumes from the last
//! journaled block (reading again what changed nothing costs a log query, not
//! a wrong view).
//! The actor runs supervised; its successor asks the engine where to resume.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use pat_chain::{ChainError, EscrowReader};
use pat_engine::escrow::EscrowSync;

use crate::engine::EngineHandle;
use crate::error::EngineError;
use crate::messages::{EscrowCursor, SyncEscrow};
use crate::supervisor::{self, ExitNotice, Home, Supervised};

/// How often the actor reads the chain.
#[derive(Debug, Clone)]
pub struct EscrowSettings {
    pub every: Duration,
}

impl Default for EscrowSettings {
    fn default() -> Self {
        Self { every: Duration::from_millis(500) }
    }
}

/// Why a round did not sync.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the engine did not take the sync: {0}")]
    Engine(#[from] EngineError),
    #[error("the engine did not answer: {0}")]
    Mailbox(#[from] MailboxError),
}

/// Syncs consumers' escrow from the chain into the engine.
pub struct EscrowActor {
    engine: EngineHandle,
    reader: Arc<EscrowReader>,
    settings: EscrowSettings,
    /// The last block read (journaled or empty); `None` until the engine said where it stands.
    cursor: Option<u64>,
    in_flight: bool,
    /// Last: tells the supervisor when the actor is gone.
    exit: ExitNotice,
}

impl EscrowActor {
    /// Starts the actor on the current arbiter under a supervisor that starts
    /// a fresh one there if it crashes.
    pub fn start(
        engine: EngineHandle,
        reader: EscrowReader,
        settings: EscrowSettings,
    ) -> Result<Supervised<Self>, String> {
        let reader = Arc::new(reader);
        supervisor::start("escrow", Home::Here, move |exit| Self {
            engine: engine.clone(),
            reader: reader.clone(),
            settings: settings.clone(),
            cursor: None,
            in_flight: false,
            exit,
        })
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        self.in_flight = true;
        let (engine, reader, cursor) = (self.engine.clone(), self.reader.clone(), self.cursor);
        let work = async move { catch_up(&engine, &reader, cursor).await };
        ctx.spawn(work.into_actor(self).map(|result, act, _| {
            act.in_flight = false;
            match result {
                Ok(block) => act.cursor = Some(block),
                Err(e) => {
                    // Where the engine stands is asked again: a sync it refused is read again.
                    act.cursor = None;
                    metrics::counter!("pat_escrow_sync_failures_total").increment(1);
                    eprintln!("escrow sync: {e}");
                }
            }
        }));
    }
}

/// Reads from `cursor` (or where the engine stands) up to the confirmed head, in
/// ranges the node serves, handing each non-empty sync to the engine; the last block read.
async fn catch_up(engine: &EngineHandle, reader: &EscrowReader, cursor: Option<u64>) -> Result<u64, RoundError> {
    let mut after = match cursor {
        Some(block) => block,
        None => engine.send(EscrowCursor).await?,
    };
    let head = reader.confirmed_head().await?;
    loop {
        // Nothing new: an empty sync still tells the engine its view is current.
        let sync = if after < head {
            reader.read(after, head).await?
        } else {
            EscrowSync { block: after, ..EscrowSync::default() }
        };
        let block = sync.block;
        let current = block >= head;
        engine.send(SyncEscrow { sync, current }).await??;
        after = block;
        metrics::gauge!("pat_escrow_synced_block").set(after as f64);
        if current {
            return Ok(after);
        }
    }
}

impl Actor for EscrowActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.round(ctx);
        ctx.run_interval(self.settings.every, |act, ctx| act.round(ctx));
    }
}

supervisor::supervised_handlers!(EscrowActor, |_me| "the escrow actor");
