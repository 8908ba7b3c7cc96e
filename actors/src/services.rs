//! [`Services`]: every long-running actor of a running engine, in the one
//! order they start and the reverse order they retire. The binary starts a
//! `Services` and stops it; it starts and retires no actor itself.
//!
//! | order | service | started | retired |
//! |---|---|---|---|
//! | 1 | engine actor and the market actors, one per market | by each incarnation's boot (recovery first) | last, by `Shutdown`: a snapshot, then the markets retire with it |
//! | 2 | quoting actor | after the first boot, so it reads the recovered stats | by `Shutdown`, before the engine stops |
//! | 3 | escrow actor (escrow followed) | after the engine: it syncs into it | before the engine |
//! | 4 | clearing actor (settlement on) | last: it takes fills from the engine | first |
//!
//! Steps 1 and 2 are [`EngineActor::start`] and the engine actor's `Shutdown`;
//! [`Services`] adds the rest around them.
//!
//! A service added later (payouts, the catalog projection) goes into this
//! table and into the two functions below, in its place.

use std::sync::Arc;

use pat_chain::{EscrowReader, SettlementClient};
use pat_engine::EngineConfig;

use crate::clearing::{ClearingActor, ClearingSettings};
use crate::clock::Clock;
use crate::engine::{Engine, EngineActor, Startup};
use crate::error::EngineError;
use crate::escrow::{EscrowActor, EscrowSettings};
use crate::messages::Shutdown;
use crate::settings::EngineSettings;
use crate::supervisor::{Retire, Supervised};

/// The running services.
pub struct Services {
    pub engine: Engine,
    /// What recovery found.
    pub startup: Startup,
    escrow: Option<Supervised<EscrowActor>>,
    clearing: Option<Supervised<ClearingActor>>,
}

/// How the engine follows consumers' escrow on chain; without it, no sync
/// arrives (and with `escrow_required`, no order is covered).
pub struct EscrowFollowing {
    pub reader: EscrowReader,
    pub settings: EscrowSettings,
}

/// How the engine settles on chain; without it, fills stay accepted.
pub struct Settlement {
    pub client: SettlementClient,
    pub settings: ClearingSettings,
}

impl Services {
    /// Recovers the data directory and starts every service in order, each
    /// under its supervisor. Call it on an actix system's arbiter.
    pub fn start(
        settings: EngineSettings,
        cfg: Arc<EngineConfig>,
        clock: Clock,
        escrow: Option<EscrowFollowing>,
        settlement: Option<Settlement>,
    ) -> Result<Self, EngineError> {
        let (engine, startup) = EngineActor::start(settings, cfg, clock.clone())?;
        let escrow = escrow
            .map(|e| EscrowActor::start((*engine).clone(), e.reader, e.settings))
            .transpose()
            .map_err(EngineError::Start)?;
        let clearing = settlement
            .map(|s| ClearingActor::start((*engine).clone(), s.client, s.settings, clock))
            .transpose()
            .map_err(EngineError::Start)?;
        Ok(Self { engine, startup, escrow, clearing })
    }

    /// The clearing actor, when settlement is on.
    pub fn clearing(&self) -> Option<&Supervised<ClearingActor>> {
        self.clearing.as_ref()
    }

    /// Retires every service in reverse order: clearing first (a batch in
    /// flight is settled again after the next start, never twice), then the
    /// engine, which writes a snapshot if asked, retires its quoting and
    /// market actors and closes the journal.
    pub async fn stop(self, snapshot: bool) -> Result<(), EngineError> {
        if let Some(clearing) = &self.clearing {
            let _ = clearing.send(Retire).await;
        }
        if let Some(escrow) = &self.escrow {
            let _ = escrow.send(Retire).await;
        }
        match self.engine.send(Shutdown { snapshot }).await {
            Ok(result) => result,
            Err(e) => Err(EngineError::Unavailable(e.to_string())),
        }
    }
}
