//! # pat-actors: the engine as a running service
//!
//! Wires the pure engine (`pat-engine`) to time, durability and concurrency
//! with actix actors. A [`market::MarketActor`] per market, spread over the
//! market arbiters, owns that market's state and takes its orders and
//! submissions; what spans markets (the [`pat_engine::Registry`]) the actors
//! of one engine incarnation share behind one lock, under which each change
//! also appends its event, and replies go out once the event is durable. The
//! [`engine::EngineActor`] boots each incarnation from disk and handles what
//! belongs to no single market: reads, pause, phase, reloads, snapshots and
//! the clearing hand-off. The [`quoting::QuotingActor`], on an arbiter of
//! its own, reprices every tick from the stats table the market actors write
//! into the quote table orders execute against, and publishes changed quotes
//! on a broadcast channel.
//!
//! A [`clearing::ClearingActor`] takes the engine's durable fills, settles
//! them on chain in batches, and records submissions and outcomes back
//! through the engine, which journals them. An [`escrow::EscrowActor`]
//! follows consumers' escrow on chain, so the engine refuses an order its
//! consumer's free escrow does not cover. Each actor runs under a
//! [`supervisor`] that restarts it from durable state after a crash; a
//! market restarts alone, by replay of the journal.
//!
//! ## Layout
//!
//! - [`engine`]: the engine actor (boot, snapshots, what no single market owns) and [`Engine`].
//! - [`messages`]: the engine actor's messages and their replies.
//! - [`error`]: [`EngineError`], each case with its code.
//! - [`settings`]: [`EngineSettings`]: data directory, timers, queue bounds.
//! - [`clock`]: the [`clock::Clock`] the runtime reads.
//! - [`market`]: the market actors, their router and their supervisor.
//! - `shared`: what one incarnation's actors share: the registry and the journal.
//! - `reads`: the read view the read routes answer from, off the lock orders take.
//! - [`quoting`]: the stats and quote tables and the quoting actor.
//! - [`clearing`]: the clearing actor: batches, `settleBatch`, outcomes.
//! - [`escrow`]: the escrow actor: consumers' escrow synced from the chain into the engine.
//! - [`services`]: [`services::Services`]: the start and retire order of every long-running actor.
//! - [`supervisor`]: restarts, the handle that follows them, planned stops, the handlers and
//!   start-up every supervised actor shares.
//! - [`listing`]: [`listing::Listings`]: a submission's payload stored before it is listed, and the
//!   orphan sweep.
//! - [`delivery`]: [`delivery::Deliveries`]: a settled fill's segments read back from the payload
//!   store for its consumer, during its access period.
//! - [`gauges`]: per-market quote, supply and exposure gauges, and risk limits.

pub mod clearing;
pub mod clock;
pub mod delivery;
pub mod engine;
pub mod error;
pub mod escrow;
pub mod gauges;
pub mod listing;
pub mod market;
pub mod messages;
pub mod quoting;
mod reads;
pub mod services;
pub mod settings;
mod shared;
pub mod supervisor;

pub use engine::{Engine, EngineActor, EngineHandle};
pub use error::EngineError;
pub use market::{MarketActor, MarketView, Markets};
pub use settings::EngineSettings;

/// Registers the name, unit and help text of every metric the actors record,
/// for the exporter the binary installs (Prometheus needs the help text).
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!("pat_fills_total", Unit::Count, "Fills by status (accepted, settled, failed).");
    describe_counter!("pat_orders_refused_total", Unit::Count, "Orders refused by the engine, by reason code.");
    describe_counter!("pat_fills_failed_total", Unit::Count, "Fills the chain rejected, by reason.");
    describe_counter!("pat_submissions_refused_total", Unit::Count, "Segment submissions refused, by reason code.");
    describe_counter!("pat_quote_updates_total", Unit::Count, "Quotes whose bid, ask or status changed.");
    describe_counter!("pat_journal_failures_total", Unit::Count, "Journal appends that failed (the engine degrades).");
    describe_counter!("pat_snapshot_failures_total", Unit::Count, "Snapshots that could not be written.");
    describe_counter!("pat_config_reloads_total", Unit::Count, "Config reloads by result (applied, rejected).");
    describe_counter!("pat_actor_restarts_total", Unit::Count, "Actors restarted from durable state after a crash.");
    describe_counter!("pat_settlement_failures_total", Unit::Count, "Settlement rounds that failed, by retryable.");
    describe_counter!(
        "pat_escrow_sync_failures_total",
        Unit::Count,
        "Escrow sync rounds that failed (chain unreachable, engine refused); the next round reads again."
    );
    describe_gauge!(
        "pat_escrow_synced_block",
        "The block consumers' escrow is synced to, chain.confirmations deep (compare with the chain's head)."
    );
    describe_histogram!("pat_settlement_seconds", Unit::Seconds, "Time from submitting a batch to its outcomes.");
    describe_histogram!("pat_settlement_batch_fills", Unit::Count, "Fills per settled batch.");
    describe_histogram!("pat_journal_append_seconds", Unit::Seconds, "Time from journal append to durable.");
    describe_histogram!("pat_quote_tick_seconds", Unit::Seconds, "Duration of one quoting tick.");
    describe_histogram!("pat_snapshot_seconds", Unit::Seconds, "Duration of one snapshot write.");
    describe_histogram!(
        "pat_storage_operation_seconds",
        Unit::Seconds,
        "Payload store calls (put, delete, sweep), by op."
    );
    describe_counter!("pat_storage_errors_total", Unit::Count, "Payload store calls that failed, by op.");
    describe_counter!(
        "pat_storage_orphans_removed_total",
        Unit::Count,
        "Unlisted payloads (both objects) and staging files of cut-off puts the sweep removed."
    );
    describe_gauge!("pat_storage_objects", "Objects in the payload store when the last sweep began (two per listing).");
    describe_gauge!("pat_storage_bytes", Unit::Bytes, "Bytes of those objects, sealed.");
    describe_gauge!("pat_paused", "1 while the engine is paused, else 0.");
    describe_gauge!("pat_quote_bid_pat", "A market's bid, PAT per unit.");
    describe_gauge!("pat_quote_ask_pat", "A market's ask, PAT per unit.");
    describe_gauge!("pat_quote_spread_bps", "A market's one-sided spread, basis points.");
    describe_gauge!("pat_market_supply_units", "Units a market can sell now.");
    describe_gauge!("pat_market_exposure_pat", "Notional of a market's accepted, unsettled fills, PAT.");
    describe_gauge!("pat_market_exposure_limit_pat", "Per-market exposure limit (soft widens, hard halts), PAT.");
    describe_gauge!("pat_group_exposure_pat", "Exposure over the markets of one (type, window), PAT.");
    describe_gauge!("pat_group_exposure_limit_pat", "Per-(type, window) exposure limit, PAT.");
}
