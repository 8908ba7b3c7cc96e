//! [`Event`]: every change of engine state, as an outcome that can be
//! recorded and applied again. The journal stores events; recovery applies
//! them with [`EngineState::apply`] over a snapshot. An event carries what was
//! decided (the listed segment, the fill with its drawn units), never the
//! request that led to it, so applying it needs no signature, price or limit
//! check and gives the same state whatever code decided it.

use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use crate::escrow::EscrowSync;
use crate::ewma::TimeMs;
use crate::fill::Fill;
use crate::market::MarketId;
use crate::params::EngineConfig;
use crate::payout::Payout;
use crate::segment::Segment;
use crate::state::{ApplyError, EngineState};

/// One change of engine state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    SegmentListed(Segment),
    /// A validly signed submission was refused (it counts against reliability).
    SubmissionRefused {
        provider: Address,
    },
    FillAccepted(Fill),
    /// The fills went to the chain in one batch transaction.
    FillsSubmitted {
        fill_ids: Vec<B256>,
        tx_hash: B256,
    },
    /// Settled on chain; `at_ms` starts the consumer's access period.
    FillSettled {
        fill_id: B256,
        at_ms: TimeMs,
    },
    FillFailed {
        fill_id: B256,
        reason: String,
        at_ms: TimeMs,
    },
    /// Units of every market whose window ended by `at_ms` were removed.
    UnitsExpired {
        at_ms: TimeMs,
    },
    ConfigChanged(Box<EngineConfig>),
    PauseSet {
        paused: bool,
    },
    PhaseAdvanced {
        phase: u8,
    },
    /// Units of one market whose window ended by `at_ms` were removed (each
    /// market actor sweeps its own market). Last, so older journals decode.
    MarketUnitsExpired {
        market: MarketId,
        at_ms: TimeMs,
    },
    /// What the chain showed of consumers' escrow up to a confirmed block (schema v3).
    EscrowSynced(EscrowSync),
    /// A payout the chain mined: each provider's settled credits, as stated (schema v4).
    ProvidersPaid(Payout),
}

impl Event {
    /// Every [`Event::kind`], for tests that check a history holds them all.
    pub const KINDS: [&'static str; 13] = [
        "segment_listed",
        "submission_refused",
        "fill_accepted",
        "fills_submitted",
        "fill_settled",
        "fill_failed",
        "units_expired",
        "config_changed",
        "pause_set",
        "phase_advanced",
        "market_units_expired",
        "escrow_synced",
        "providers_paid",
    ];

    /// A short stable name, for logs and `journal inspect`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SegmentListed(_) => "segment_listed",
            Self::SubmissionRefused { .. } => "submission_refused",
            Self::FillAccepted(_) => "fill_accepted",
            Self::FillsSubmitted { .. } => "fills_submitted",
            Self::FillSettled { .. } => "fill_settled",
            Self::FillFailed { .. } => "fill_failed",
            Self::UnitsExpired { .. } => "units_expired",
            Self::ConfigChanged(_) => "config_changed",
            Self::PauseSet { .. } => "pause_set",
            Self::PhaseAdvanced { .. } => "phase_advanced",
            Self::MarketUnitsExpired { .. } => "market_units_expired",
            Self::EscrowSynced(_) => "escrow_synced",
            Self::ProvidersPaid(_) => "providers_paid",
        }
    }
}

impl EngineState {
    /// Applies a recorded event. An error means the event does not fit this
    /// state (the journal and the snapshot disagree); the state may then be
    /// partly changed and must not be used.
    pub fn apply(&mut self, event: Event) -> Result<(), ApplyError> {
        match event {
            Event::SegmentListed(segment) => self.list_segment(segment)?,
            Event::SubmissionRefused { provider } => self.record_refusal(provider),
            Event::FillAccepted(fill) => self.apply_fill(fill)?,
            Event::FillsSubmitted { fill_ids, tx_hash } => {
                for id in &fill_ids {
                    self.mark_submitted(id, tx_hash)?;
                }
            }
            Event::FillSettled { fill_id, at_ms } => {
                self.settle(&fill_id, at_ms)?;
            }
            Event::FillFailed { fill_id, reason, at_ms } => {
                self.fail(&fill_id, &reason, at_ms)?;
            }
            Event::UnitsExpired { at_ms } => {
                self.expire(at_ms);
            }
            Event::MarketUnitsExpired { market, at_ms } => {
                if market.index() >= self.markets().len() {
                    return Err(ApplyError::ExpiryMarket(market));
                }
                self.expire_market(market, at_ms);
            }
            Event::ConfigChanged(cfg) => {
                self.reconfigure(std::sync::Arc::new(*cfg))?;
            }
            Event::PauseSet { paused } => {
                self.set_paused(paused);
            }
            Event::PhaseAdvanced { phase } => {
                self.set_phase(phase)?;
            }
            Event::EscrowSynced(sync) => {
                self.sync_escrow(sync);
            }
            Event::ProvidersPaid(payout) => {
                self.record_payout(payout).map_err(Box::new)?;
            }
        }
        Ok(())
    }
}
