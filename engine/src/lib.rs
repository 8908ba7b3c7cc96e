//! # pat-engine: the pure domain of the PAT segment market
//!
//! A broker buys intent-signal segments from providers at the bid and sells
//! access to consumers at the ask, quoting both for every segment market
//! (type x window x confidence band). This crate is the whole of that logic
//! and nothing else: no IO, no async, no actors, no clock reads (time is an
//! argument, `now_ms`), no unseeded randomness. Given the same inputs it gives
//! the same quotes and fills, to the base unit.
//!
//! ## Layout
//!
//! - [`code`]: every error code clients meet, with its HTTP status and meaning.
//! - [`money`]: PAT amounts as `u128` base units, decimal text, the tick rounding rule.
//! - [`market_key`]: `SegmentType`, `Window`, `ConfidenceBand`, `MarketKey` and its chain id.
//! - [`text`]: the one accepted text of addresses, hashes, hex bytes and decimals.
//! - [`canonical`]: RFC 8785 canonical JSON, the only form a payload is listed in.
//! - [`eip712`]: the signed `Order` and `SegmentSubmission` types, the domain, recovery.
//! - [`catalogue`]: the fixed markets of a config, their lookups and the signing domain.
//! - [`params`]: the engine's typed parameters (built and validated by `pat-config`).
//! - [`ewma`]: decayed event sums, the rates behind demand pressure and scarcity.
//! - [`pricing`]: the price factors and the spread, one pure function each.
//! - [`segment`]: submission checks and quality metrics.
//! - [`market`]: one market's supply book, the uniform provider draw, its stats.
//! - [`quoter`]: the tick that turns stats into sequenced quotes.
//! - [`order`]: order verification and the errors of execution.
//! - [`fill`]: fills and the ledger that proves conservation of money.
//! - [`escrow`]: consumers' escrow as synced from the chain, and what open fills hold of it.
//! - [`payout`]: what the broker owes each provider for settled fills and has paid it.
//! - [`registry`]: the changing state between markets: segments, providers, nonces, fills, the ledger.
//! - [`state`]: [`EngineState`]: every market and the registry in one value; what recovery rebuilds.
//! - [`exchange`]: an engine state with a quoter; what the simulator, benches and tests drive.
//! - [`event`]: every state change as a recordable outcome, and how to apply it.
//! - `signing` (feature `signing`): signing with a local key, for clients.
//! - `testing` (feature `testing`): fixtures shared by tests and benches.

pub mod canonical;
pub mod catalogue;
pub mod code;
pub mod eip712;
pub mod escrow;
pub mod event;
pub mod ewma;
pub mod exchange;
pub mod fill;
pub mod market;
pub mod market_key;
pub mod money;
pub mod order;
pub mod params;
pub mod payout;
pub mod pricing;
pub mod quoter;
pub mod registry;
pub mod segment;
pub mod state;
pub mod text;

#[cfg(feature = "signing")]
pub mod signing;
#[cfg(feature = "testing")]
pub mod testing;

pub use catalogue::Catalogue;
pub use code::Code;
pub use eip712::{Order, SegmentSubmission};
pub use event::Event;
pub use ewma::TimeMs;
pub use exchange::Exchange;
pub use fill::{Fill, FillStatus, Ledger};
pub use market::{Allocation, MarketId, MarketStats};
pub use market_key::{ConfidenceBand, MarketKey, SegmentType, Window};
pub use money::Amount;
pub use order::{HaltReason, OrderError, SignedOrder, VerifiedOrder};
pub use params::EngineConfig;
pub use quoter::Quote;
pub use segment::{Segment, SegmentId, SignalRecord, SignedSegment, SubmitError, encode_payload};
pub use state::{ApplyError, EngineState, FillRecord, FillStateError, Refusal, Registry, Snapshot};
