//! [`EngineError`]: why a request to the running engine failed, each case
//! with its [`Code`] (and so its HTTP status). Nothing changed unless it says so.

use pat_engine::state::ReconfigureError;
use pat_engine::{Code, OrderError, SubmitError};
use pat_persistence::{JournalError, RecoveryError};
use thiserror::Error;

/// Why a request to the engine failed. Nothing changed unless it says so.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EngineError {
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Reconfigure(#[from] ReconfigureError),
    #[error("engine busy: the journal queue is full, retry later")]
    Busy,
    #[error("the journal failed, so the engine takes no more changes until it restarts: {0}")]
    Degraded(String),
    #[error("journal: {0}")]
    Journal(JournalError),
    #[error("recovery: {0}")]
    Recovery(#[from] RecoveryError),
    #[error("phase: {0}")]
    Phase(String),
    #[error("the engine could not start: {0}")]
    Start(String),
    #[error("unavailable: {0}; retry shortly")]
    Unavailable(String),
    #[error("a request reached the wrong market actor: {0}")]
    Routing(String),
    #[error("{0}; nothing was listed, retry")]
    StorageUnavailable(String),
}

impl EngineError {
    /// A stable machine-readable code.
    pub fn code(&self) -> Code {
        match self {
            Self::Submit(e) => e.code(),
            Self::Order(e) => e.code(),
            Self::Reconfigure(_) => Code::ConfigNotApplicable,
            Self::Busy => Code::Busy,
            Self::Degraded(_) => Code::Degraded,
            Self::Journal(_) => Code::JournalFailed,
            Self::Recovery(_) => Code::RecoveryFailed,
            Self::Phase(_) => Code::InvalidPhase,
            Self::Start(_) => Code::StartFailed,
            Self::Unavailable(_) => Code::Unavailable,
            Self::Routing(_) => Code::RoutingFailed,
            Self::StorageUnavailable(_) => Code::StorageUnavailable,
        }
    }
}
