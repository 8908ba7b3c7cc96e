//! Segments: a provider's signed batch of intent signals. Validation of a
//! submission (one distinct error per failure) and the quality metrics
//! computed at ingest. A listed [`Segment`] is immutable.
//!
//! The payload is JSON: `{"signals": [{"ts": <unix secs>, "intent": "PURCHASE_INTENT",
//! "confidence": 0.82, "category": "electronics"}, ...]}`. Its keccak256 is the
//! `payloadHash` the provider signs; the engine keeps the hash and the metrics.

use alloy_primitives::{Address, B256, keccak256};
use alloy_sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::canonical;
use crate::code::Code;
use crate::eip712::{self, SegmentSubmission, SignatureError};
use crate::ewma::TimeMs;
use crate::market_key::{CONFIDENCE_MAX, ConfidenceBps, MarketKey, SegmentType, Window};
use crate::params::EngineConfig;

/// A listed segment's id, assigned in listing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SegmentId(pub u64);

/// A provider's submission as it arrives: the signed fields, the signature and the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedSegment {
    pub submission: SegmentSubmission,
    pub signature: Vec<u8>,
    pub payload: Vec<u8>,
}

/// Quality of a segment, each in basis points (0..=10_000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct QualityMetrics {
    /// Share of signals with every field present (ts, intent, confidence, category).
    pub completeness: u16,
    /// `1 - (createdAt - newest signal) / window`: how current the batch is when listed.
    pub timeliness: u16,
    /// Share of signals inside `[windowStart, createdAt]` whose intent is the segment's type.
    pub consistency: u16,
    /// Confidence-weighted consistency: `sum(conf of consistent signals) / sum(conf)`.
    pub accuracy: u16,
    /// Share of the provider's earlier validly signed submissions that were accepted (1.0 with none).
    pub reliability: u16,
}

impl QualityMetrics {
    /// The mean of the five metrics, in basis points: what `min_quality` filters on.
    pub fn score(&self) -> u16 {
        let sum = u32::from(self.completeness)
            + u32::from(self.timeliness)
            + u32::from(self.consistency)
            + u32::from(self.accuracy)
            + u32::from(self.reliability);
        (sum / 5) as u16
    }
}

/// A listed segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub id: SegmentId,
    pub provider: Address,
    pub market: MarketKey,
    pub confidence_bps: ConfidenceBps,
    pub window_start_ms: TimeMs,
    pub created_at_ms: TimeMs,
    pub expires_at_ms: TimeMs,
    pub units: u32,
    pub payload_hash: B256,
    pub payload_bytes: u32,
    pub signal_count: u32,
    pub quality: QualityMetrics,
    pub listed_at_ms: TimeMs,
}

/// Why a submission was refused. Nothing is listed when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SubmitError {
    #[error("bad provider signature: {0}")]
    BadSignature(SignatureError),
    #[error("unknown segment type: {0}")]
    UnknownSegmentType(String),
    #[error("unknown window: {0}")]
    UnknownWindow(String),
    #[error("confidence {0} bps is outside every configured band")]
    ConfidenceOutsideBands(u16),
    #[error("the observation window ended at {ended_at} (unix secs)")]
    WindowEnded { ended_at: u64 },
    #[error("{field} {value} is in the future (now {now}, unix secs)")]
    FutureTimestamp { field: &'static str, value: u64, now: u64 },
    #[error("createdAt {created_at} is before windowStart {window_start}")]
    CreatedBeforeWindow { created_at: u64, window_start: u64 },
    #[error("empty payload")]
    EmptyPayload,
    #[error("payload of {size} bytes exceeds the limit of {max}")]
    PayloadTooLarge { size: usize, max: usize },
    #[error("payload hashes to {actual}, but the signed payloadHash is {signed}")]
    PayloadHashMismatch { signed: B256, actual: B256 },
    #[error("payload is not a signal batch: {0}")]
    MalformedPayload(String),
    #[error("payload is not in canonical form (RFC 8785): {0}")]
    NonCanonicalPayload(String),
    #[error("payload has {count} signals; between 1 and {max} are accepted")]
    SignalCount { count: usize, max: usize },
    #[error("units {units} must be between 1 and {max}")]
    UnitsOutOfRange { units: u32, max: u32 },
    #[error("a segment with payload hash {0} is already listed")]
    DuplicatePayload(B256),
    #[error("a segment with payload hash {0} is being listed right now; nothing changed")]
    PayloadInFlight(B256),
    #[error("the submission is for market {market}, which another actor owns (a routing bug; nothing changed)")]
    OtherMarket { market: MarketKey },
}

impl SubmitError {
    /// A stable machine-readable code for clients and metrics.
    pub fn code(&self) -> Code {
        match self {
            Self::BadSignature(_) => Code::BadSignature,
            Self::UnknownSegmentType(_) => Code::UnknownSegmentType,
            Self::UnknownWindow(_) => Code::UnknownWindow,
            Self::ConfidenceOutsideBands(_) => Code::ConfidenceOutsideBands,
            Self::WindowEnded { .. } => Code::WindowEnded,
            Self::FutureTimestamp { .. } => Code::FutureTimestamp,
            Self::CreatedBeforeWindow { .. } => Code::CreatedBeforeWindow,
            Self::EmptyPayload => Code::EmptyPayload,
            Self::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            Self::PayloadHashMismatch { .. } => Code::PayloadHashMismatch,
            Self::MalformedPayload(_) => Code::MalformedPayload,
            Self::NonCanonicalPayload(_) => Code::NonCanonicalPayload,
            Self::SignalCount { .. } => Code::SignalCount,
            Self::UnitsOutOfRange { .. } => Code::UnitsOutOfRange,
            Self::DuplicatePayload(_) | Self::PayloadInFlight(_) => Code::DuplicatePayload,
            Self::OtherMarket { .. } => Code::RoutingFailed,
        }
    }
}

/// One intent signal of a payload. Missing fields lower completeness.
#[derive(Debug, Clone, Deserialize)]
struct Signal {
    ts: Option<u64>,
    intent: Option<String>,
    confidence: Option<f64>,
    category: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    signals: Vec<Signal>,
}

/// One intent signal as a provider writes it into a payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SignalRecord {
    /// Unix seconds.
    pub ts: u64,
    pub intent: String,
    /// In [0, 1].
    pub confidence: f64,
    pub category: String,
}

impl SignalRecord {
    pub fn new(ts: u64, intent: impl Into<String>, confidence: f64, category: impl Into<String>) -> Self {
        Self { ts, intent: intent.into(), confidence, category: category.into() }
    }
}

/// The payload of `signals` in the canonical form a submission must carry.
pub fn encode_payload(signals: &[SignalRecord]) -> Vec<u8> {
    canonical::to_vec(&serde_json::json!({ "signals": signals }))
}

/// A submission whose provider signature checked out under the
/// marketplace's domain; only [`verify_submission`] makes one. The costly
/// part of a submission's checks (signature recovery), done apart from the
/// rest so the runtime can do it off the engine's lock, on the HTTP worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSegment(SignedSegment);

impl VerifiedSegment {
    pub fn signed(&self) -> &SignedSegment {
        &self.0
    }
}

/// Checks the provider's signature, under the marketplace's `domain`.
pub fn verify_submission(signed: SignedSegment, domain: &Eip712Domain) -> Result<VerifiedSegment, SubmitError> {
    let digest = eip712::digest(&signed.submission, domain);
    eip712::verify_signer(&digest, &signed.signature, signed.submission.provider).map_err(SubmitError::BadSignature)?;
    Ok(VerifiedSegment(signed))
}

/// The submission `segment` was listed from, field for field as its provider
/// signed it: a listed submission spells its type and window canonically
/// (anything else is refused), and its times are whole seconds.
pub fn submission_of(segment: &Segment) -> SegmentSubmission {
    SegmentSubmission {
        provider: segment.provider,
        segmentType: segment.market.segment_type.as_str().to_owned(),
        window: segment.market.window.to_string(),
        confidenceBps: segment.confidence_bps,
        windowStart: segment.window_start_ms / 1000,
        createdAt: segment.created_at_ms / 1000,
        units: segment.units,
        payloadHash: segment.payload_hash,
    }
}

/// Checks everything about a verified submission for `market` (the one it
/// names, [`crate::catalogue::Catalogue::key_of`]) that needs no engine state
/// but the provider's reliability, in a fixed order, and computes its
/// quality: the segment it would list as `id` at `now_ms` (all but the
/// duplicate check).
pub fn check_submission(
    verified: &VerifiedSegment,
    cfg: &EngineConfig,
    market: MarketKey,
    id: SegmentId,
    now_ms: TimeMs,
    reliability_bps: u16,
) -> Result<Segment, SubmitError> {
    let signed = verified.signed();
    let s = &signed.submission;
    let (segment_type, window) = (market.segment_type.clone(), market.window);
    let now = now_ms / 1000;
    let latest_ok = now + cfg.ingest.clock_skew_secs;
    for (field, value) in [("windowStart", s.windowStart), ("createdAt", s.createdAt)] {
        if value > latest_ok {
            return Err(SubmitError::FutureTimestamp { field, value, now });
        }
    }
    if s.createdAt < s.windowStart {
        return Err(SubmitError::CreatedBeforeWindow { created_at: s.createdAt, window_start: s.windowStart });
    }
    let ended_at = s.windowStart.saturating_add(window.secs());
    if ended_at <= now {
        return Err(SubmitError::WindowEnded { ended_at });
    }
    if s.units == 0 || s.units > cfg.ingest.units_max {
        return Err(SubmitError::UnitsOutOfRange { units: s.units, max: cfg.ingest.units_max });
    }
    let size = signed.payload.len();
    if size == 0 {
        return Err(SubmitError::EmptyPayload);
    }
    if size > cfg.ingest.payload_bytes_max {
        return Err(SubmitError::PayloadTooLarge { size, max: cfg.ingest.payload_bytes_max });
    }
    let actual = keccak256(&signed.payload);
    if actual != s.payloadHash {
        return Err(SubmitError::PayloadHashMismatch { signed: s.payloadHash, actual });
    }
    let canonical =
        canonical::canonicalize(&signed.payload).map_err(|e| SubmitError::MalformedPayload(e.to_string()))?;
    if canonical != signed.payload {
        return Err(SubmitError::NonCanonicalPayload(first_difference(&signed.payload, &canonical)));
    }
    let payload: Payload =
        serde_json::from_slice(&signed.payload).map_err(|e| SubmitError::MalformedPayload(e.to_string()))?;
    let count = payload.signals.len();
    if count == 0 || count > cfg.ingest.signals_max {
        return Err(SubmitError::SignalCount { count, max: cfg.ingest.signals_max });
    }
    let quality = quality_of(&payload.signals, s, &segment_type, window, reliability_bps);
    Ok(Segment {
        id,
        provider: s.provider,
        market,
        confidence_bps: s.confidenceBps,
        window_start_ms: s.windowStart * 1000,
        created_at_ms: s.createdAt * 1000,
        expires_at_ms: ended_at * 1000,
        units: s.units,
        payload_hash: actual,
        payload_bytes: size as u32,
        signal_count: count as u32,
        quality,
        listed_at_ms: now_ms,
    })
}

/// Where a payload first differs from its canonical form, for the refusal.
fn first_difference(given: &[u8], canonical: &[u8]) -> String {
    let at = given.iter().zip(canonical).take_while(|(a, b)| a == b).count();
    let show = |bytes: &[u8]| String::from_utf8_lossy(&bytes[at..bytes.len().min(at + 16)]).into_owned();
    format!("from byte {at}, the canonical form reads {:?} where the payload reads {:?}", show(canonical), show(given))
}

fn share_bps(part: f64, whole: f64) -> u16 {
    if whole <= 0.0 { 0 } else { ((part / whole).clamp(0.0, 1.0) * f64::from(CONFIDENCE_MAX)).round() as u16 }
}

/// The quality metrics of a payload; see [`QualityMetrics`] for each formula.
fn quality_of(
    signals: &[Signal],
    s: &SegmentSubmission,
    segment_type: &SegmentType,
    window: Window,
    reliability_bps: u16,
) -> QualityMetrics {
    let n = signals.len() as f64;
    let confidence = |sig: &Signal| sig.confidence.filter(|c| c.is_finite()).map_or(0.0, |c| c.clamp(0.0, 1.0));
    let complete = signals
        .iter()
        .filter(|sig| sig.ts.is_some() && sig.intent.is_some() && sig.confidence.is_some() && sig.category.is_some())
        .count();
    let consistent = |sig: &Signal| {
        sig.ts.is_some_and(|ts| ts >= s.windowStart && ts <= s.createdAt)
            && sig.intent.as_deref() == Some(segment_type.as_str())
    };
    let consistent_count = signals.iter().filter(|sig| consistent(sig)).count();
    let conf_total: f64 = signals.iter().map(confidence).sum();
    let conf_consistent: f64 = signals.iter().filter(|sig| consistent(sig)).map(confidence).sum();
    let newest = signals.iter().filter_map(|sig| sig.ts).filter(|&ts| ts <= s.createdAt).max();
    let timeliness = newest.map_or(0, |ts| {
        let lag = (s.createdAt - ts) as f64 / window.secs() as f64;
        share_bps(1.0 - lag, 1.0)
    });
    QualityMetrics {
        completeness: share_bps(complete as f64, n),
        timeliness,
        consistency: share_bps(consistent_count as f64, n),
        accuracy: share_bps(conf_consistent, conf_total),
        reliability: reliability_bps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Catalogue;
    use crate::testing::{self, PROVIDER_KEY, T0};

    fn good() -> SignedSegment {
        testing::signed_segment(&PROVIDER_KEY, "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 10, &testing::payload(3))
    }

    fn check(signed: &SignedSegment) -> Result<Segment, SubmitError> {
        check_at(signed, 10_000)
    }

    fn check_at(signed: &SignedSegment, reliability_bps: u16) -> Result<Segment, SubmitError> {
        let cfg = testing::config();
        let verified = verify_submission(signed.clone(), &cfg.domain())?;
        let market = Catalogue::new(&cfg).key_of(&signed.submission)?;
        check_submission(&verified, &cfg, market, SegmentId(0), T0 * 1000, reliability_bps)
    }

    fn resigned(edit: impl FnOnce(&mut SegmentSubmission)) -> SignedSegment {
        let mut signed = good();
        edit(&mut signed.submission);
        testing::sign_segment(&PROVIDER_KEY, signed.submission, signed.payload)
    }

    #[test]
    fn a_good_submission_passes_with_quality() {
        let checked = check(&good()).unwrap();
        assert_eq!(checked.market.to_string(), "PURCHASE_INTENT|7D|0.70-0.85");
        assert_eq!(checked.expires_at_ms, (T0 - 3600 + 7 * 86_400) * 1000);
        let q = checked.quality;
        assert_eq!((q.completeness, q.consistency, q.accuracy, q.reliability), (10_000, 10_000, 10_000, 10_000));
        assert!(q.timeliness > 9_900, "{q:?}");
        assert_eq!(submission_of(&checked), good().submission, "a listing gives back what was signed");
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let mut tampered = good();
        tampered.submission.units = 11;
        assert!(matches!(check(&tampered), Err(SubmitError::BadSignature(SignatureError::WrongSigner { .. }))));
        let cases: Vec<(SignedSegment, &str)> = vec![
            (resigned(|s| s.segmentType = "NO_SUCH_TYPE".into()), "unknown_segment_type"),
            (resigned(|s| s.segmentType = "lower".into()), "unknown_segment_type"),
            (resigned(|s| s.window = "2D".into()), "unknown_window"),
            (resigned(|s| s.confidenceBps = 1000), "confidence_outside_bands"),
            (resigned(|s| s.windowStart = T0 + 3600), "future_timestamp"),
            (resigned(|s| s.createdAt = T0 + 3600), "future_timestamp"),
            (resigned(|s| s.windowStart = T0 - 8 * 86_400), "window_ended"),
            (resigned(|s| s.createdAt = s.windowStart - 1), "created_before_window"),
            (resigned(|s| s.units = 0), "units_out_of_range"),
            (resigned(|s| s.units = 1_000_001), "units_out_of_range"),
        ];
        for (signed, code) in cases {
            assert_eq!(check(&signed).unwrap_err().code().as_str(), code, "{:?}", signed.submission);
        }
        let payload_case = |payload: Vec<u8>| {
            let mut signed = good();
            signed.submission.payloadHash = keccak256(&payload);
            testing::sign_segment(&PROVIDER_KEY, signed.submission, payload)
        };
        assert_eq!(check(&payload_case(vec![])).unwrap_err(), SubmitError::EmptyPayload);
        let huge = vec![b' '; testing::config().ingest.payload_bytes_max + 1];
        assert!(matches!(check(&payload_case(huge)), Err(SubmitError::PayloadTooLarge { .. })));
        assert!(matches!(check(&payload_case(b"{not json".to_vec())), Err(SubmitError::MalformedPayload(_))));
        assert!(matches!(check(&payload_case(br#"{"signals":[]}"#.to_vec())), Err(SubmitError::SignalCount { .. })));
        let mut swapped = good();
        swapped.payload = testing::payload(4);
        let swapped = testing::sign_segment(&PROVIDER_KEY, swapped.submission, swapped.payload);
        assert!(matches!(check(&swapped), Err(SubmitError::PayloadHashMismatch { .. })));
    }

    /// The same signals in any other spelling (a trailing space, keys in
    /// another order, `0.80`) are refused, so one batch has one hash and can
    /// be listed, and sold, once.
    #[test]
    fn a_payload_is_taken_in_canonical_form_only() {
        let canonical = testing::payload(2);
        let text = String::from_utf8(canonical.clone()).unwrap();
        let variants = [
            format!("{text} "),
            text.replacen(r#""category":"c0-0","confidence":0.8"#, r#""confidence":0.8,"category":"c0-0""#, 1),
            text.replacen("0.8", "0.80", 1),
        ];
        for variant in variants {
            assert_ne!(variant.as_bytes(), &canonical[..]);
            let mut signed = good();
            signed.submission.payloadHash = keccak256(variant.as_bytes());
            let signed = testing::sign_segment(&PROVIDER_KEY, signed.submission, variant.clone().into_bytes());
            let refused = check_at(&signed, 5_000).unwrap_err();
            assert!(matches!(refused, SubmitError::NonCanonicalPayload(_)), "{variant}: {refused}");
            assert_eq!(refused.code(), Code::NonCanonicalPayload);
        }
    }

    #[test]
    fn quality_reflects_the_signals() {
        let payload = br#"{"signals":[
            {"ts": 1767222000, "intent": "PURCHASE_INTENT", "confidence": 0.9, "category": "shoes"},
            {"ts": 1767222000, "intent": "RESEARCH_INTENT", "confidence": 0.3, "category": "shoes"},
            {"ts": 1767222000, "intent": "PURCHASE_INTENT", "confidence": 0.6},
            {"intent": "PURCHASE_INTENT", "confidence": 0.2, "category": "shoes"}
        ]}"#;
        // Listed only in canonical form; the checks read the same signals.
        let payload = canonical::canonicalize(payload).unwrap();
        let mut signed = good();
        signed.submission.payloadHash = keccak256(&payload);
        let signed = testing::sign_segment(&PROVIDER_KEY, signed.submission, payload);
        let q = check_at(&signed, 5_000).unwrap().quality;
        assert_eq!(q.completeness, 5_000);
        assert_eq!(q.consistency, 5_000);
        assert_eq!(q.accuracy, 7_500); // (0.9 + 0.6) / (0.9 + 0.3 + 0.6 + 0.2)
        assert_eq!(q.reliability, 5_000);
        // Newest signal 3600 s before createdAt in a 7-day window: 1 - 3600 / 604800.
        assert_eq!(q.timeliness, 9_940);
        assert_eq!(q.score(), (5_000 + 9_940 + 5_000 + 7_500 + 5_000) / 5);
    }
}
