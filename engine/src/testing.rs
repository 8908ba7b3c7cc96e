//! Fixtures for tests of the engine and of the crates above it: a small catalogue, keys, and signed
//! submissions and orders.

use std::sync::Arc;

use alloy_primitives::{Address, B256, keccak256};
use alloy_signer_local::PrivateKeySigner;

use crate::eip712::SegmentSubmission;
use crate::market_key::MarketKey;
use crate::money::{ONE_PAT, parse_pat};
use crate::order::SignedOrder;
use crate::params::*;
use crate::segment::{SignalRecord, SignedSegment, encode_payload};
use crate::signing;

/// 2026-01-01T00:00:00Z, unix seconds: "now" in the fixtures.
pub const T0: u64 = 1_767_225_600;
pub const PROVIDER_KEY: [u8; 32] = key(1);
pub const CONSUMER_KEY: [u8; 32] = key(2);

pub const fn key(n: u8) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[31] = n;
    k
}

pub fn signer(key: &[u8; 32]) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&B256::from(*key)).unwrap()
}

pub fn pricing_params() -> PricingParams {
    PricingParams {
        freshness_curve: FreshnessCurve::Linear,
        freshness_floor: 0.1,
        rate_half_life_secs: 3_600.0,
        demand_pressure_min: 0.5,
        demand_pressure_max: 3.0,
        scarcity_min: 0.5,
        scarcity_max: 3.0,
        substitute_discount: 0.5,
    }
}

pub fn spread_params() -> SpreadParams {
    SpreadParams {
        base_bps: 100,
        min_bps: 50,
        max_bps: 2_000,
        volatility_bps: 2_000.0,
        volatility_alpha: 0.1,
        thin_liquidity_bps: 300,
        depth_ref_units: 100.0,
        trades_ref: 5.0,
        soft_limit_widen_bps: 200,
    }
}

pub fn config() -> EngineConfig {
    let ty = |name: &str, base: &str| TypeParams {
        segment_type: name.parse().unwrap(),
        base_value: parse_pat(base).unwrap(),
        tick: ONE_PAT / 1000,
        access_secs: crate::params::ACCESS_DEFAULT_SECS,
    };
    EngineConfig {
        chain_id: 31_337,
        marketplace: Address::repeat_byte(0x42),
        broker_margin_cap_bps: 5_000,
        types: vec![ty("PURCHASE_INTENT", "2.5"), ty("RESEARCH_INTENT", "1"), ty("TRAVEL_INTENT", "4")],
        windows: ["1D", "7D", "30D"].iter().map(|w| w.parse().unwrap()).collect(),
        bands: ["0.50-0.70", "0.70-0.85", "0.85-1.00"].iter().map(|b| b.parse().unwrap()).collect(),
        pricing: pricing_params(),
        spread: spread_params(),
        risk: RiskParams {
            market_soft: 500 * ONE_PAT,
            market_hard: 1_000 * ONE_PAT,
            group_soft: 1_500 * ONE_PAT,
            group_hard: 2_000 * ONE_PAT,
        },
        ingest: IngestParams {
            payload_bytes_max: 64 * 1024,
            signals_max: 1_000,
            units_max: 1_000_000,
            clock_skew_secs: 60,
        },
        orders: OrderParams { qty_max: 10_000, quote_ttl_ms: 1_000 },
        quoting: QuotingParams { tick_ms: 100, reprice_interval_ms: 1_000 },
    }
}

pub fn shared_config() -> Arc<EngineConfig> {
    Arc::new(config())
}

/// A payload of `n` complete, consistent purchase-intent signals ending at [`T0`].
pub fn payload(n: usize) -> Vec<u8> {
    payload_salted(n, 0)
}

/// Like [`payload`], with `salt` in every category so that payloads differ.
pub fn payload_salted(n: usize, salt: u64) -> Vec<u8> {
    let signals: Vec<SignalRecord> = (0..n)
        .map(|i| SignalRecord::new(T0 - (i as u64 % 60), "PURCHASE_INTENT", 0.8, format!("c{i}-{salt}")))
        .collect();
    encode_payload(&signals)
}

pub fn sign_segment(key: &[u8; 32], submission: SegmentSubmission, payload: Vec<u8>) -> SignedSegment {
    signing::sign_segment(&signer(key), submission, payload, &config().domain())
}

#[allow(clippy::too_many_arguments)]
pub fn signed_segment(
    key: &[u8; 32],
    segment_type: &str,
    window: &str,
    confidence_bps: u16,
    window_start: u64,
    created_at: u64,
    units: u32,
    payload: &[u8],
) -> SignedSegment {
    let submission = SegmentSubmission {
        provider: signer(key).address(),
        segmentType: segment_type.into(),
        window: window.into(),
        confidenceBps: confidence_bps,
        windowStart: window_start,
        createdAt: created_at,
        units,
        payloadHash: keccak256(payload),
    };
    sign_segment(key, submission, payload.to_vec())
}

pub fn signed_order(
    key: &[u8; 32],
    market: &MarketKey,
    qty: u64,
    max_price: u128,
    nonce: u64,
    deadline: u64,
) -> SignedOrder {
    signing::sign_order_for(&signer(key), market, qty, max_price, nonce, deadline, &config().domain())
}
