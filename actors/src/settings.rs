//! [`EngineSettings`]: where the engine keeps its data, how often its timers
//! fire, and the bound of every queue the runtime holds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pat_persistence::JournalConfig;
use pat_storage::PayloadStore;

use crate::listing::SweepSettings;

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
    /// Arbiters (threads) the market actors are spread over. One by default:
    /// every market change runs under the one registry lock, so a second
    /// market thread adds contention and no parallelism (docs/benchmarks.md,
    /// fourth measurement); more pay off once that lock is sharded.
    pub market_arbiters: usize,
    /// Requests that may wait in each actor's mailbox.
    pub mailbox_capacity: usize,
    /// Changed-quote batches the broadcast channel keeps for slow subscribers.
    pub quote_channel_capacity: usize,
    /// Fill status changes the broadcast channel keeps for slow subscribers.
    pub fill_channel_capacity: usize,
    /// Where listed payloads are kept, sealed. Without a store a payload is
    /// checked and not kept (engine tests, benchmarks of the engine alone).
    pub payload_store: Option<Arc<PayloadStore>>,
    /// The payload store's orphan sweep.
    pub sweep: SweepSettings,
    /// Whether an order must be covered by its consumer's free escrow as the escrow
    /// actor syncs it from the chain (`[escrow] required`). Off: engine tests and
    /// benchmarks with no chain.
    pub escrow_required: bool,
    /// With `escrow_required`, orders are refused (`escrow_unavailable`) once the escrow
    /// actor last read the chain to its head longer ago than this (`[escrow]
    /// stale_after_ms`); `None`: never (an engine with no follower).
    pub escrow_stale_after: Option<Duration>,
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
            market_arbiters: 1,
            mailbox_capacity: 16_384,
            quote_channel_capacity: 1_024,
            fill_channel_capacity: 16_384,
            payload_store: None,
            sweep: SweepSettings::default(),
            escrow_required: false,
            escrow_stale_after: None,
        }
    }
}
