//! The clearing actor: takes durable fills from the engine, batches them by
//! size or age, settles them on chain with [`SettlementClient`], and records
//! the submission and every fill's outcome in the journal through the engine.
//! Only durable fills leave the engine, so the chain never settles a fill a
//! restart would not know. A fill still open at a restart is handed over
//! again; the contract refuses a used nonce, so it never settles twice, and
//! a fill it refuses as `NonceUsed` is checked against the chain and recorded
//! settled (an earlier transaction settled it), never refunded. The actor
//! runs supervised: after a crash its successor first has the engine hand
//! over again what it held.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use alloy_primitives::B256;
use pat_chain::{ChainError, FillOutcome, SettlementClient};

use crate::clock::Clock;
use crate::engine::EngineHandle;
use crate::messages::{RecordOutcomes, RecordSubmission, RequeueTaken, ReturnFills, Settlement, TakeDurableFills};
use crate::supervisor::{self, ExitNotice, Home, Supervised};

/// Batching and pacing of settlement.
#[derive(Debug, Clone)]
pub struct ClearingSettings {
    /// Most fills in one `settleBatch` (gas grows with it; a 30M-gas block holds about 200).
    pub batch_fills_max: usize,
    /// How often the actor looks for fills to settle.
    pub batch_every: Duration,
    /// How long a fill waits after acceptance, so the chain's clock has passed its `acceptedAt`.
    pub settle_after: Duration,
    /// Wait after a failed attempt before the fills are taken again.
    pub retry_after: Duration,
}

impl Default for ClearingSettings {
    fn default() -> Self {
        Self {
            batch_fills_max: 100,
            batch_every: Duration::from_millis(500),
            settle_after: Duration::from_millis(1_500),
            retry_after: Duration::from_secs(5),
        }
    }
}

/// Settles the engine's fills on chain, one batch at a time.
pub struct ClearingActor {
    engine: EngineHandle,
    client: Arc<SettlementClient>,
    settings: ClearingSettings,
    clock: Clock,
    in_flight: bool,
    paused_until: Option<Instant>,
    /// Last: tells the supervisor when the actor is gone.
    exit: ExitNotice,
}

impl ClearingActor {
    /// Starts the actor on the current arbiter under a supervisor that starts
    /// a fresh one there if it crashes.
    pub fn start(
        engine: EngineHandle,
        client: SettlementClient,
        settings: ClearingSettings,
        clock: Clock,
    ) -> Result<Supervised<Self>, String> {
        let client = Arc::new(client);
        supervisor::start("clearing", Home::Here, move |exit| Self {
            engine: engine.clone(),
            client: client.clone(),
            settings: settings.clone(),
            clock: clock.clone(),
            in_flight: false,
            paused_until: None,
            exit,
        })
    }

    fn round(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.paused_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        self.in_flight = true;
        let (engine, client) = (self.engine.clone(), self.client.clone());
        let take = TakeDurableFills {
            max: self.settings.batch_fills_max,
            accepted_before_ms: (self.clock)().saturating_sub(self.settings.settle_after.as_millis() as u64),
        };
        let work = async move { settle_round(engine, client, take).await };
        ctx.spawn(work.into_actor(self).map(|result, act, _| {
            act.in_flight = false;
            if let Err(e) = result {
                metrics::counter!("pat_settlement_failures_total", "retryable" => e.is_retryable().to_string())
                    .increment(1);
                act.paused_until = Some(Instant::now() + act.settings.retry_after);
            }
        }));
    }
}

/// One batch: take, submit, record the submission, wait, record the outcomes.
async fn settle_round(
    engine: EngineHandle,
    client: Arc<SettlementClient>,
    take: TakeDurableFills,
) -> Result<(), ChainError> {
    let fills = engine.send(take).await.unwrap_or_default();
    if fills.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let give_back = |fills: &[pat_engine::Fill]| ReturnFills(fills.iter().map(|f| f.fill_id).collect());
    // The transaction recorded as carrying the fills, if one was.
    let mut recorded = None;
    let report = match client.submit(&fills, None).await {
        Ok(submission) => {
            let tx_hash: B256 = submission.tx_hash;
            recorded = Some(tx_hash);
            let ids = submission.carries.clone();
            if engine.send(RecordSubmission { fill_ids: ids, tx_hash }).await.is_err() {
                return Ok(());
            }
            // Fills handed over again may have settled in an earlier transaction.
            match client.wait(&submission).await {
                Ok(report) => client.confirm_outcomes(&fills, report).await,
                Err(_) => client.resubmit(&fills, Some(&submission)).await,
            }
        }
        // Nothing was sent that could have landed: try again later.
        Err(e) if !e.is_retryable() || e.submission().is_none() => {
            engine.do_send(give_back(&fills));
            return Err(e);
        }
        Err(e) => client.resubmit(&fills, e.submission()).await,
    };
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            // Still open in the engine: they will be taken again and the chain asked first.
            engine.do_send(give_back(&fills));
            return Err(e);
        }
    };
    // A replacement (or a first send after an error) settled them: record the
    // transaction that did, so each settled fill names it.
    if let Some(tx_hash) = report.tx_hash.filter(|h| recorded != Some(*h)) {
        let fill_ids: Vec<B256> =
            report.fills.iter().filter(|r| r.outcome == FillOutcome::Settled).map(|r| r.fill_id).collect();
        if !fill_ids.is_empty() {
            let _ = engine.send(RecordSubmission { fill_ids, tx_hash }).await;
        }
    }
    metrics::histogram!("pat_settlement_seconds").record(started.elapsed().as_secs_f64());
    metrics::histogram!("pat_settlement_batch_fills").record(fills.len() as f64);
    let outcomes = report
        .fills
        .iter()
        .map(|r| {
            let outcome = match r.outcome {
                FillOutcome::Settled | FillOutcome::AlreadySettled => Settlement::Settled,
                FillOutcome::Rejected(reason) => Settlement::Rejected(reason.name().to_owned()),
            };
            (r.fill_id, outcome)
        })
        .collect();
    let _ = engine.send(RecordOutcomes(outcomes)).await;
    Ok(())
}

impl Actor for ClearingActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.engine.do_send(RequeueTaken);
        ctx.run_interval(self.settings.batch_every, |act, ctx| act.round(ctx));
    }
}

supervisor::supervised_handlers!(ClearingActor, |_me| "the clearing actor");
