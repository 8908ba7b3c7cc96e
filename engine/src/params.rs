//! Engine parameters: the typed, validated form of the operator's config that
//! the engine reads. `pat-config` builds an [`EngineConfig`] from TOML and is
//! the only place that validates it; the engine trusts what it is given.

use alloy_primitives::Address;
use alloy_sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};

use crate::eip712;
use crate::market_key::{ConfidenceBand, MarketKey, SegmentType, Window};
use crate::money::Amount;

/// How freshness decays over a window's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FreshnessCurve {
    /// `1 - (1 - floor) * age`.
    Linear,
    /// `floor ^ age`.
    Exponential,
}

/// Parameters of the price factors (DESIGN.md section 4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingParams {
    pub freshness_curve: FreshnessCurve,
    /// Freshness at the end of the window, in (0, 1].
    pub freshness_floor: f64,
    /// Half-life of the mint, consumption, expiry and trade EWMAs, seconds.
    pub rate_half_life_secs: f64,
    pub demand_pressure_min: f64,
    pub demand_pressure_max: f64,
    pub scarcity_min: f64,
    pub scarcity_max: f64,
    /// How much of the scarcity premium substitutes can take away, in [0, 1].
    pub substitute_discount: f64,
}

/// Parameters of the spread (DESIGN.md section 4). `spread_bps` is one-sided:
/// `bid = price * (1 - s)`, `ask = price * (1 + s)`. Also the config file's
/// `[spread]` table, field for field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpreadParams {
    pub base_bps: u32,
    pub min_bps: u32,
    pub max_bps: u32,
    /// Basis points added per unit of volatility (standard deviation of the mid's log changes).
    pub volatility_bps: f64,
    /// Weight of the newest squared log change in the volatility EWMA, in (0, 1].
    pub volatility_alpha: f64,
    /// Basis points added for a market with no supply and no trades.
    pub thin_liquidity_bps: u32,
    /// Supply at which the depth half of the thin-liquidity term is halved, units.
    pub depth_ref_units: f64,
    /// Recent trade count at which the trade half of the thin-liquidity term is halved.
    pub trades_ref: f64,
    /// Basis points added at the hard exposure limit, scaled from 0 at the soft limit.
    pub soft_limit_widen_bps: u32,
}

/// Exposure limits: notional of accepted but unsettled fills (DESIGN.md section 5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskParams {
    pub market_soft: Amount,
    pub market_hard: Amount,
    /// Limits over all markets of one (window, segment type).
    pub group_soft: Amount,
    pub group_hard: Amount,
}

/// Bounds on provider submissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestParams {
    pub payload_bytes_max: usize,
    pub signals_max: usize,
    pub units_max: u32,
    /// How far in the future a submission's timestamps may be, seconds.
    pub clock_skew_secs: u64,
}

/// Bounds on orders and quotes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderParams {
    pub qty_max: u64,
    /// How long a quote stays executable after the tick that made it, milliseconds.
    pub quote_ttl_ms: u64,
}

/// Cadence of the quoting tick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotingParams {
    /// Interval between ticks, milliseconds.
    pub tick_ms: u64,
    /// Every market is repriced at least this often for the passage of time,
    /// milliseconds; markets whose inputs changed are repriced on the next tick.
    pub reprice_interval_ms: u64,
}

/// The access period of a type whose config names none: 30 days.
pub const ACCESS_DEFAULT_SECS: u64 = 30 * 86_400;

/// One segment type of the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeParams {
    pub segment_type: SegmentType,
    /// BaseValue: the floor price of one unit, base units.
    pub base_value: Amount,
    /// Price increment of this type's markets, base units.
    pub tick: Amount,
    /// How long a consumer may download what it bought in this type's
    /// markets, seconds from the fill's settlement.
    pub access_secs: u64,
}

/// Everything the engine needs to run a set of markets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EngineConfig {
    pub chain_id: u64,
    /// The `DataMarketplace` proxy: the EIP-712 verifying contract.
    pub marketplace: Address,
    /// The contract's `brokerMargin`: `(ask - bid) / ask` may not exceed it.
    pub broker_margin_cap_bps: u16,
    pub types: Vec<TypeParams>,
    pub windows: Vec<Window>,
    /// Sorted by `lo`, not overlapping.
    pub bands: Vec<ConfidenceBand>,
    pub pricing: PricingParams,
    pub spread: SpreadParams,
    pub risk: RiskParams,
    pub ingest: IngestParams,
    pub orders: OrderParams,
    pub quoting: QuotingParams,
}

impl EngineConfig {
    /// The EIP-712 domain orders and submissions are signed under.
    pub fn domain(&self) -> Eip712Domain {
        eip712::domain(self.chain_id, self.marketplace)
    }

    /// Every market of the catalogue: types x windows x bands, in that order.
    pub fn market_keys(&self) -> Vec<MarketKey> {
        let mut keys = Vec::with_capacity(self.types.len() * self.windows.len() * self.bands.len());
        for t in &self.types {
            for &w in &self.windows {
                for &b in &self.bands {
                    keys.push(MarketKey::new(t.segment_type.clone(), w, b));
                }
            }
        }
        keys
    }

    pub fn type_params(&self, segment_type: &SegmentType) -> Option<&TypeParams> {
        self.types.iter().find(|t| &t.segment_type == segment_type)
    }

    /// The band a confidence score falls in, if any.
    pub fn band_of(&self, confidence: u16) -> Option<ConfidenceBand> {
        self.bands.iter().copied().find(|b| b.contains(confidence))
    }
}
