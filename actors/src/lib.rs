//! # pat-actors: the engine as a running service
//!
//! Wires the pure engine (`pat-engine`) to time, durability and concurrency
//! with actix actors. Today one [`engine::EngineActor`] owns the whole
//! [`pat_engine::Exchange`] on its own arbiter (thread): it takes orders and
//! submissions, acknowledges them only once their events are durable in the
//! journal, runs the quoting tick, expiry and snapshots on timers, and
//! publishes changed quotes on a broadcast channel. Splitting it into one
//! actor per market (DESIGN.md section 6) is the next step; the messages here
//! are the interface that split keeps.
//!
//! ## Layout
//!
//! - [`engine`]: the engine actor, its messages and its error type.

pub mod engine;

pub use engine::{EngineActor, EngineError, EngineSettings};
