//! [`Listings`]: a provider's verified submission on its way to being
//! listed with its payload kept, and the sweep of what a crash left behind.
//!
//! Durability order: the payload is sealed and durable in the store first,
//! then the market actor checks the submission and journals its
//! `SegmentListed`; the provider hears `201` only after both. So a crash
//! leaves at most an object no listed segment names (an orphan), never a
//! listed segment without its payload. Objects are named by payload hash,
//! which the registry keeps unique, so:
//! - a submission of a payload already listed goes to its market to be
//!   refused (and counted against its provider) without touching the store,
//!   where a write would replace the listed segment's objects;
//! - two submissions of one payload at once: the second is refused at once
//!   (`duplicate_payload`), without a write;
//! - a refused submission's objects are deleted again. Any other failure
//!   after the write (the engine busy or restarting, a timeout) leaves them:
//!   the listing may still be journaled, and if not, the sweep removes them.
//!
//! The sweep deletes objects of unlisted payloads older than a grace (longer
//! than any listing takes), at start and then periodically.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::MailboxError;
use alloy_primitives::B256;
use alloy_primitives::map::B256Set;
use pat_engine::segment::VerifiedSegment;
use pat_engine::{Segment, SubmitError};
use pat_storage::{PayloadStore, StorageError};

use crate::engine::Engine;
use crate::error::EngineError;
use crate::messages::{ListedPayloads, PayloadListed};

/// Longest a listing waits for its payload to be stored, below the HTTP
/// server's engine timeout (5 s), so that a store that hangs is answered
/// `storage_unavailable`, not `busy`.
pub const PUT_DEADLINE: Duration = Duration::from_secs(4);

/// When and how the sweep runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepSettings {
    /// Time between two sweeps.
    pub every: Duration,
    /// Objects written less than this long ago are kept even if unlisted: a
    /// listing may be between its store write and its journal append.
    pub grace: Duration,
}

impl Default for SweepSettings {
    fn default() -> Self {
        Self { every: Duration::from_secs(600), grace: Duration::from_secs(600) }
    }
}

/// The payload store with the listings in flight to it.
#[derive(Debug)]
pub struct Listings {
    store: Arc<PayloadStore>,
    in_flight: Mutex<B256Set>,
}

/// Holds a payload hash in flight until dropped (also when the request's future is).
struct Claim<'a> {
    listings: &'a Listings,
    hash: B256,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.listings.in_flight.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.hash);
    }
}

/// Records a store operation's latency, and its failure.
pub(crate) fn observe<T>(op: &'static str, began: Instant, result: &Result<T, StorageError>) {
    metrics::histogram!("pat_storage_operation_seconds", "op" => op).record(began.elapsed().as_secs_f64());
    if result.is_err() {
        metrics::counter!("pat_storage_errors_total", "op" => op).increment(1);
    }
}

impl Listings {
    pub fn new(store: Arc<PayloadStore>) -> Self {
        Self { store, in_flight: Mutex::default() }
    }

    fn claim(&self, hash: B256) -> Option<Claim<'_>> {
        let fresh = self.in_flight.lock().unwrap_or_else(|e| e.into_inner()).insert(hash);
        fresh.then_some(Claim { listings: self, hash })
    }

    /// Stores the payload, then has `engine`'s market list the segment; see the module doc.
    pub async fn list(
        &self,
        engine: &Engine,
        verified: VerifiedSegment,
    ) -> Result<Result<Segment, EngineError>, MailboxError> {
        let hash = verified.signed().submission.payloadHash;
        let Some(_claim) = self.claim(hash) else {
            return Ok(Err(SubmitError::PayloadInFlight(hash).into()));
        };
        if engine.send(PayloadListed(hash)).await? {
            return engine.markets().submit_segment(verified).await;
        }
        let began = Instant::now();
        let stored = match tokio::time::timeout(PUT_DEADLINE, self.store.put(verified.signed())).await {
            Ok(stored) => stored,
            Err(_) => Err(StorageError::Unavailable(format!("no answer within {PUT_DEADLINE:?}"))),
        };
        observe("put", began, &stored);
        match stored {
            // Its market refuses it, and counts it against its provider; nothing was written.
            Err(StorageError::HashMismatch(_)) => return engine.markets().submit_segment(verified).await,
            Err(e) => {
                // The detail (endpoint, bucket, path) is the operator's, not the provider's.
                eprintln!("payload store: storing {hash}: {e}");
                return Ok(Err(EngineError::StorageUnavailable("the payload store did not answer".into())));
            }
            Ok(()) => {}
        }
        let listed = engine.markets().submit_segment(verified).await;
        if let Ok(Err(EngineError::Submit(_))) = &listed {
            let began = Instant::now();
            let deleted = self.store.delete(&hash).await;
            observe("delete", began, &deleted);
        }
        listed
    }

    /// One sweep: removes the objects of payloads `engine` does not list
    /// whose objects are all older than `grace`, and the staging files of
    /// puts a crash cut off, older than `grace` too. Each is checked again under
    /// its claim just before it goes, so a payload listed since the sweep
    /// began, or being listed now, is kept.
    pub async fn sweep(&self, engine: &Engine, grace: Duration) -> Result<pat_storage::Walk, String> {
        let listed = engine.send(ListedPayloads).await.map_err(|e| e.to_string())?;
        let began = Instant::now();
        let found = self.store.orphans(|h| listed.contains(h), grace).await;
        observe("sweep", began, &found);
        let found = found.map_err(|e| e.to_string())?;
        let mut removed = 0;
        for hash in found.hashes {
            let Some(_claim) = self.claim(hash) else { continue };
            if engine.send(PayloadListed(hash)).await.map_err(|e| e.to_string())? {
                continue;
            }
            let began = Instant::now();
            let deleted = self.store.delete(&hash).await;
            observe("delete", began, &deleted);
            deleted.map_err(|e| e.to_string())?;
            removed += 1;
        }
        removed += self.store.remove_stale_staging(grace).await.map_err(|e| e.to_string())?;
        metrics::counter!("pat_storage_orphans_removed_total").increment(removed);
        metrics::gauge!("pat_storage_objects").set(found.objects as f64);
        metrics::gauge!("pat_storage_bytes").set(found.bytes as f64);
        Ok(pat_storage::Walk { examined: found.objects, changed: removed })
    }

    /// Sweeps now and then every `settings.every`, until the system stops.
    /// A failed sweep (the store or the engine away) waits for the next.
    pub fn spawn_sweeps(self: &Arc<Self>, engine: Engine, settings: SweepSettings) {
        let listings = self.clone();
        actix::spawn(async move {
            let mut every = tokio::time::interval(settings.every);
            loop {
                every.tick().await;
                if let Err(e) = listings.sweep(&engine, settings.grace).await {
                    eprintln!("payload store sweep failed, next in {:?}: {e}", settings.every);
                }
            }
        });
    }
}
