//! The delivery format: the body of `GET /v1/fills/{id}/data`, what
//! `pat-market download` unpacks and `pat-market verify` checks. It is built
//! from what never changes once a fill settled (its segments, their signed
//! listings, its settlement), so every download of a fill is the same bytes,
//! its length is known before a byte is read from the store, and a broken
//! download resumes with a `Range`.
//!
//! ```text
//! manifest line            JSON Manifest, then "\n"
//! per segment, in the fill's allocation order:
//!   header line            JSON SegmentHeader (the signed listing), then "\n"
//!   payload                payload_bytes raw bytes
//! ```
//!
//! A consumer checks each segment without trusting the broker: the payload
//! hashes to the listing's `payloadHash`, and the listing is signed by its
//! provider under the marketplace's EIP-712 domain (`chain_id`, `marketplace`).

use std::io::{BufRead, Read};

use alloy_primitives::{Address, B256, Bytes, keccak256};
use pat_engine::eip712::{self, SegmentSubmission, SignatureError};
use pat_engine::segment::submission_of;
use pat_engine::{Segment, TimeMs};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The format name in every manifest.
pub const FORMAT: &str = "pat-delivery/1";
/// The media type of a delivery body.
pub const CONTENT_TYPE: &str = "application/vnd.pat.delivery";
/// The longest line a reader takes: a manifest or a header is far shorter.
const LINE_MAX: u64 = 64 * 1024;
/// The largest payload a reader takes (the engine lists at most
/// `ingest.payload_bytes_max`, 256 KiB by default).
const PAYLOAD_MAX: u32 = 16 * 1024 * 1024;
/// Every listing signature is 65 bytes (the one signature rule).
const SIGNATURE_BYTES: usize = 65;

/// What the body is of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub fill_id: B256,
    pub consumer: Address,
    pub market: String,
    /// The EIP-712 domain the listings are signed under.
    pub chain_id: u64,
    pub marketplace: Address,
    pub settled_at_ms: TimeMs,
    /// How many segments follow.
    pub segments: u32,
}

/// One segment's listing, before its payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentHeader {
    pub segment_id: u64,
    /// Units of this segment the fill bought.
    pub units: u32,
    pub payload_bytes: u32,
    /// The listing as its provider signed it.
    pub submission: SegmentSubmission,
    pub signature: Bytes,
}

impl SegmentHeader {
    /// The header of `segment`, of which a fill bought `units`, with `signature`.
    pub fn new(segment: &Segment, units: u32, signature: Vec<u8>) -> Self {
        Self {
            segment_id: segment.id.0,
            units,
            payload_bytes: segment.payload_bytes,
            submission: submission_of(segment),
            signature: signature.into(),
        }
    }
}

/// The ETag of a fill's body: the body is a function of the fill and the format.
pub fn etag(fill_id: B256) -> String {
    format!("\"{fill_id}.{}\"", FORMAT.replace('/', "-"))
}

/// One JSON line.
pub fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).expect("a delivery line serializes");
    bytes.push(b'\n');
    bytes
}

/// Where each part of a body lies, from what the engine lists alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub manifest: Vec<u8>,
    /// Per segment: its first byte in the body, and its header's length.
    pub parts: Vec<(u64, u64)>,
    pub total: u64,
}

impl Layout {
    /// The layout of `manifest` and `segments` (with the units bought of each).
    /// A header's length does not depend on its signature's bytes (always 65).
    pub fn new(manifest: &Manifest, segments: &[(Segment, u32)]) -> Self {
        let manifest = line(manifest);
        let mut at = manifest.len() as u64;
        let mut parts = Vec::with_capacity(segments.len());
        for (segment, units) in segments {
            let header = line(&SegmentHeader::new(segment, *units, vec![0; SIGNATURE_BYTES])).len() as u64;
            parts.push((at, header));
            at += header + u64::from(segment.payload_bytes);
        }
        Self { manifest, parts, total: at }
    }

    /// The first segment with a byte at or after `offset`.
    pub fn segment_at(&self, offset: u64) -> usize {
        self.parts.partition_point(|&(start, _)| start <= offset).saturating_sub(1)
    }
}

/// Why a body, or a segment of it, is not what was listed and sold.
#[derive(Debug, Error)]
pub enum VerifyError {
    #[error("reading the delivery: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a delivery: {0}")]
    Format(String),
    #[error("segment {segment}: the payload is {actual} bytes, the header says {expected}")]
    Length { segment: u64, expected: u32, actual: usize },
    #[error("segment {segment}: the payload hashes to {actual}, not the signed payloadHash {signed}")]
    Hash { segment: u64, signed: B256, actual: B256 },
    #[error("segment {segment}: the listing is not signed by its provider: {reason}")]
    Signature { segment: u64, reason: SignatureError },
    #[error("segment {segment}: listed in {listed}, not in the fill's market {market}")]
    Market { segment: u64, listed: String, market: String },
    #[error("segment {segment}: {bought} units bought, {listed} listed")]
    Units { segment: u64, bought: u32, listed: u32 },
}

/// Checks one segment of a delivery: its payload is the one its provider
/// signed, in the fill's market, under the manifest's domain.
pub fn verify_segment(manifest: &Manifest, header: &SegmentHeader, payload: &[u8]) -> Result<(), VerifyError> {
    let (segment, s) = (header.segment_id, &header.submission);
    if payload.len() != header.payload_bytes as usize {
        return Err(VerifyError::Length { segment, expected: header.payload_bytes, actual: payload.len() });
    }
    let actual = keccak256(payload);
    if actual != s.payloadHash {
        return Err(VerifyError::Hash { segment, signed: s.payloadHash, actual });
    }
    let listed = format!("{}|{}|", s.segmentType, s.window);
    if !manifest.market.starts_with(&listed) {
        return Err(VerifyError::Market { segment, listed, market: manifest.market.clone() });
    }
    if header.units == 0 || header.units > s.units {
        return Err(VerifyError::Units { segment, bought: header.units, listed: s.units });
    }
    let digest = eip712::digest(s, &eip712::domain(manifest.chain_id, manifest.marketplace));
    eip712::verify_signer(&digest, &header.signature, s.provider)
        .map_err(|reason| VerifyError::Signature { segment, reason })
}

/// Reads a delivery body part by part.
pub struct Reader<R> {
    inner: R,
    left: u32,
}

fn read_line<R: BufRead, T: serde::de::DeserializeOwned>(r: &mut R, what: &str) -> Result<T, VerifyError> {
    let mut bytes = Vec::new();
    r.take(LINE_MAX).read_until(b'\n', &mut bytes)?;
    if bytes.pop() != Some(b'\n') {
        return Err(VerifyError::Format(format!("the {what} line is cut short or too long")));
    }
    serde_json::from_slice(&bytes).map_err(|e| VerifyError::Format(format!("the {what} line: {e}")))
}

impl<R: BufRead> Reader<R> {
    /// Reads the manifest.
    pub fn new(mut inner: R) -> Result<(Manifest, Self), VerifyError> {
        let manifest: Manifest = read_line(&mut inner, "manifest")?;
        if manifest.format != FORMAT {
            return Err(VerifyError::Format(format!("format {:?}, this build reads {FORMAT:?}", manifest.format)));
        }
        let left = manifest.segments;
        Ok((manifest, Self { inner, left }))
    }

    /// The next segment's header and payload; `None` after the last, if the body ends there.
    pub fn next_segment(&mut self) -> Result<Option<(SegmentHeader, Vec<u8>)>, VerifyError> {
        if self.left == 0 {
            let mut rest = [0u8; 1];
            return match self.inner.read(&mut rest)? {
                0 => Ok(None),
                _ => Err(VerifyError::Format("bytes after the last segment".into())),
            };
        }
        let header: SegmentHeader = read_line(&mut self.inner, "segment header")?;
        if header.payload_bytes > PAYLOAD_MAX {
            return Err(VerifyError::Format(format!(
                "a payload of {} bytes, over {PAYLOAD_MAX}",
                header.payload_bytes
            )));
        }
        let mut payload = vec![0; header.payload_bytes as usize];
        self.inner.read_exact(&mut payload).map_err(|_| VerifyError::Format("a payload is cut short".into()))?;
        self.left -= 1;
        Ok(Some((header, payload)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pat_engine::testing::{self, PROVIDER_KEY, T0};
    use pat_engine::{Catalogue, SegmentId};

    /// A body of `n` segments written as the route writes it, with the manifest and segments.
    fn body(n: usize) -> (Vec<u8>, Layout) {
        let cfg = testing::config();
        let mut segments = Vec::new();
        let mut signed = Vec::new();
        for i in 0..n {
            let payload = testing::payload_salted(2 + i, i as u64);
            let s = testing::signed_segment(&PROVIDER_KEY, "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 10, &payload);
            let verified = pat_engine::segment::verify_submission(s.clone(), &cfg.domain()).unwrap();
            let market = Catalogue::new(&cfg).key_of(&s.submission).unwrap();
            let id = SegmentId(i as u64);
            let seg = pat_engine::segment::check_submission(&verified, &cfg, market, id, T0 * 1000, 10_000).unwrap();
            segments.push((seg, 1 + i as u32));
            signed.push(s);
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            fill_id: B256::repeat_byte(9),
            consumer: Address::repeat_byte(3),
            market: "PURCHASE_INTENT|7D|0.70-0.85".into(),
            chain_id: cfg.chain_id,
            marketplace: cfg.marketplace,
            settled_at_ms: T0 * 1000,
            segments: n as u32,
        };
        let layout = Layout::new(&manifest, &segments);
        let mut bytes = layout.manifest.clone();
        for ((seg, units), s) in segments.iter().zip(&signed) {
            bytes.extend(line(&SegmentHeader::new(seg, *units, s.signature.clone())));
            bytes.extend(&s.payload);
        }
        (bytes, layout)
    }

    #[test]
    fn the_layout_is_known_before_the_signatures_and_every_segment_verifies() {
        let (bytes, layout) = body(3);
        assert_eq!(layout.total, bytes.len() as u64, "the length comes from the listings alone");
        let (manifest, mut reader) = Reader::new(&bytes[..]).unwrap();
        let mut seen = 0;
        while let Some((header, payload)) = reader.next_segment().unwrap() {
            let (start, header_len) = layout.parts[seen];
            assert_eq!(&bytes[(start + header_len) as usize..][..payload.len()], &payload[..]);
            verify_segment(&manifest, &header, &payload).unwrap();
            assert_eq!(layout.segment_at(start), seen);
            assert_eq!(layout.segment_at(start + header_len), seen);
            seen += 1;
        }
        assert_eq!(seen, 3);
        assert_eq!(layout.segment_at(0), 0, "the manifest belongs to the first part's range");
    }

    #[test]
    fn a_flipped_byte_or_a_broken_body_is_caught() {
        let (bytes, layout) = body(2);
        let (start, header_len) = layout.parts[1];
        let mut flipped = bytes.clone();
        flipped[(start + header_len) as usize + 3] ^= 1;
        let (manifest, mut reader) = Reader::new(&flipped[..]).unwrap();
        let (h, p) = reader.next_segment().unwrap().unwrap();
        verify_segment(&manifest, &h, &p).unwrap();
        let (h, p) = reader.next_segment().unwrap().unwrap();
        assert!(matches!(verify_segment(&manifest, &h, &p), Err(VerifyError::Hash { segment: 1, .. })));

        let (_, mut reader) = Reader::new(&bytes[..]).unwrap();
        reader.next_segment().unwrap();
        let (h, p) = reader.next_segment().unwrap().unwrap();
        verify_segment(&manifest, &h, &p).unwrap();
        let mut resigned = h.clone();
        resigned.submission.units += 1;
        assert!(matches!(verify_segment(&manifest, &resigned, &p), Err(VerifyError::Signature { .. })));
        let elsewhere = Manifest { market: "PURCHASE_INTENT|1D|0.70-0.85".into(), ..manifest.clone() };
        assert!(matches!(verify_segment(&elsewhere, &h, &p), Err(VerifyError::Market { .. })));

        let cut = &bytes[..bytes.len() - 1];
        let (_, mut reader) = Reader::new(cut).unwrap();
        reader.next_segment().unwrap();
        assert!(matches!(reader.next_segment(), Err(VerifyError::Format(_))));
        let mut longer = bytes.clone();
        longer.push(b'x');
        let (_, mut reader) = Reader::new(&longer[..]).unwrap();
        reader.next_segment().unwrap();
        reader.next_segment().unwrap();
        assert!(matches!(reader.next_segment(), Err(VerifyError::Format(_))));
        assert!(matches!(Reader::new(&b"{\"format\":1}\n"[..]), Err(VerifyError::Format(_))));
    }
}
