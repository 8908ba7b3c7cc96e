//! [`Clock`]: the one way the runtime reads the time. The engine itself reads
//! no clock (time is an argument); the actors ask theirs, and tests pass one
//! they move by hand.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use pat_engine::TimeMs;

/// The clock the engine reads; tests pass their own.
pub type Clock = Arc<dyn Fn() -> TimeMs + Send + Sync>;

/// Milliseconds since the Unix epoch from the system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as TimeMs))
}
