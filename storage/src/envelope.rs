//! Envelope encryption of one listing, as pure functions over bytes: the
//! formats of the two objects a listing is stored as, sealing, opening and
//! re-wrapping. No IO.
//!
//! Each listing gets its own random 256-bit data key. XChaCha20-Poly1305
//! ([`crate::aead`]: a 192-bit random nonce, so random nonces never collide
//! in practice) seals:
//! - the payload object, `PATP | v1 | nonce(24) | ciphertext+tag`, whose
//!   plaintext is the provider's signed submission, its signature and the
//!   payload, under the data key, with the payload hash as associated data;
//! - the key object, `PATK | v1 | kid len | kid | nonce(24) | wrapped key+tag`,
//!   the data key under the master key `kid`, with the payload hash and the
//!   kid as associated data.
//!
//! The payload hash names a listing in the store: the registry refuses a
//! second listing of the same payload, so it is one segment's identity. A
//! ciphertext or key moved under another hash fails to open. Sealing refuses
//! a payload that does not hash to its listing's `payloadHash`, and the AEAD
//! (the hash is its associated data) opens nothing else under that name: so
//! every payload that opens hashes to its name, and opening does not hash it
//! again (a download reads each payload, a listing seals it once). Re-wrapping
//! rewrites only the key object; deleting the key object shreds the payload.

use alloy_primitives::{B256, keccak256};
use bytes::Bytes;
use pat_engine::SegmentSubmission;
use pat_engine::SignedSegment;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::aead::{self, NONCE, TAG};
use crate::key::{KID_MAX, Keyring};

const PAYLOAD_MAGIC: &[u8; 4] = b"PATP";
const KEY_MAGIC: &[u8; 4] = b"PATK";
const VERSION: u8 = 1;
/// Longest signature a record carries (65 today).
const SIGNATURE_MAX: usize = 255;

/// Why an object did not open. Reasons are fixed texts: nothing of a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Corrupt(&'static str),
    #[error("wrapped under key {0}, which the keyring does not hold")]
    UnknownKey(String),
}

/// A listing whose payload does not hash to its `payloadHash` is not sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the payload does not hash to the listing's payloadHash")]
pub struct HashMismatch;

/// A listing's two objects, as stored.
pub struct Sealed {
    pub payload_object: Vec<u8>,
    pub key_object: Vec<u8>,
}

/// A data key, zeroed on drop.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(key.as_mut());
        Self(key)
    }

    fn bytes(&self) -> &[u8; aead::KEY] {
        &self.0
    }
}

fn nonce() -> [u8; NONCE] {
    let mut n = [0u8; NONCE];
    rand::rng().fill_bytes(&mut n);
    n
}

fn sliced_nonce(bytes: &[u8]) -> [u8; NONCE] {
    bytes.try_into().expect("a sliced nonce is 24 bytes")
}

fn payload_aad(hash: &B256) -> Vec<u8> {
    [PAYLOAD_MAGIC.as_slice(), &[VERSION], hash.as_slice()].concat()
}

fn key_aad(hash: &B256, kid: &str) -> Vec<u8> {
    [KEY_MAGIC.as_slice(), &[VERSION], hash.as_slice(), kid.as_bytes()].concat()
}

/// The plaintext of a payload object: `u32 json len | submission JSON | u8 sig
/// len | signature | payload`.
fn encode_record(signed: &SignedSegment) -> Zeroizing<Vec<u8>> {
    let json = serde_json::to_vec(&signed.submission).expect("a submission serializes");
    assert!(signed.signature.len() <= SIGNATURE_MAX, "a verified signature is 65 bytes");
    let mut out = Zeroizing::new(Vec::with_capacity(5 + json.len() + signed.signature.len() + signed.payload.len()));
    out.extend_from_slice(&(json.len() as u32).to_be_bytes());
    out.extend_from_slice(&json);
    out.push(signed.signature.len() as u8);
    out.extend_from_slice(&signed.signature);
    out.extend_from_slice(&signed.payload);
    out
}

/// A record's submission and signature, and where its payload starts.
fn decode_record(bytes: &[u8], hash: &B256) -> Result<(SegmentSubmission, Vec<u8>, usize), OpenError> {
    let bad = OpenError::Corrupt;
    let len = u32::from_be_bytes(bytes.get(..4).ok_or(bad("record too short"))?.try_into().expect("4 bytes")) as usize;
    let json = bytes.get(4..4 + len).ok_or(bad("record too short"))?;
    let submission: SegmentSubmission =
        serde_json::from_slice(json).map_err(|_| bad("submission is not valid JSON"))?;
    let rest = &bytes[4 + len..];
    let sig_len = *rest.first().ok_or(bad("record too short"))? as usize;
    let signature = rest.get(1..1 + sig_len).ok_or(bad("record too short"))?.to_vec();
    if submission.payloadHash != *hash {
        return Err(bad("the submission names another payload"));
    }
    Ok((submission, signature, 4 + len + 1 + sig_len))
}

/// Seals a listing under a fresh data key wrapped by the keyring's current
/// key, if its payload hashes to its `payloadHash`.
pub fn seal(keyring: &Keyring, signed: &SignedSegment) -> Result<Sealed, HashMismatch> {
    let hash = signed.submission.payloadHash;
    if keccak256(&signed.payload) != hash {
        return Err(HashMismatch);
    }
    let data_key = DataKey::generate();
    let record = encode_record(signed);
    let n = nonce();
    let ciphertext = aead::seal(data_key.bytes(), &n, &payload_aad(&hash), &record);
    let payload_object = [PAYLOAD_MAGIC.as_slice(), &[VERSION], &n, &ciphertext].concat();
    Ok(Sealed { payload_object, key_object: wrap(keyring, &hash, &data_key) })
}

fn wrap(keyring: &Keyring, hash: &B256, data_key: &DataKey) -> Vec<u8> {
    let master = keyring.current();
    let kid = master.id();
    let n = nonce();
    let wrapped = aead::seal(master.bytes(), &n, &key_aad(hash, kid), data_key.bytes());
    [KEY_MAGIC.as_slice(), &[VERSION, kid.len() as u8], kid.as_bytes(), &n, &wrapped].concat()
}

/// The key id a key object is wrapped under.
pub fn key_id(key_object: &[u8]) -> Result<&str, OpenError> {
    let bad = OpenError::Corrupt;
    if key_object.get(..4) != Some(KEY_MAGIC.as_slice()) {
        return Err(bad("not a key object"));
    }
    if key_object.get(4) != Some(&VERSION) {
        return Err(bad("unknown key object version"));
    }
    let len = *key_object.get(5).ok_or(bad("key object too short"))? as usize;
    if len == 0 || len > KID_MAX {
        return Err(bad("key object has a bad key id"));
    }
    let kid = key_object.get(6..6 + len).ok_or(bad("key object too short"))?;
    std::str::from_utf8(kid).map_err(|_| bad("key object has a bad key id"))
}

/// Unwraps the data key of the listing of payload `hash`.
pub fn unwrap_key(keyring: &Keyring, hash: &B256, key_object: &[u8]) -> Result<DataKey, OpenError> {
    let kid = key_id(key_object)?;
    let master = keyring.get(kid).ok_or_else(|| OpenError::UnknownKey(kid.to_owned()))?;
    let body = &key_object[6 + kid.len()..];
    if body.len() != NONCE + 32 + TAG {
        return Err(OpenError::Corrupt("key object has the wrong length"));
    }
    let mut body = Zeroizing::new(body.to_vec());
    let (nonce, wrapped) = body.split_at_mut(NONCE);
    let key = aead::open_in_place(master.bytes(), &sliced_nonce(nonce), &key_aad(hash, kid), wrapped)
        .map_err(|_| OpenError::Corrupt("the data key does not open: tampered, or filed under another payload"))?;
    Ok(DataKey(Zeroizing::new((&*key).try_into().expect("checked 32 bytes"))))
}

/// Re-wraps a key object under the keyring's current key.
pub fn rewrap(keyring: &Keyring, hash: &B256, key_object: &[u8]) -> Result<Vec<u8>, OpenError> {
    Ok(wrap(keyring, hash, &unwrap_key(keyring, hash, key_object)?))
}

/// A listing opened from its payload object: the provider's signed
/// submission, and the payload as a view into the decrypted object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub submission: SegmentSubmission,
    pub signature: Vec<u8>,
    pub payload: Bytes,
}

impl PartialEq<SignedSegment> for Listing {
    fn eq(&self, other: &SignedSegment) -> bool {
        self.submission == other.submission && self.signature == other.signature && self.payload == other.payload
    }
}

/// Opens the payload object of payload `hash` with its data key, and checks
/// that what it holds is that payload's listing. Decrypts in place: the
/// payload is a slice of the object's own buffer, nothing is copied.
pub fn open(data_key: &DataKey, hash: &B256, mut payload_object: Vec<u8>) -> Result<Listing, OpenError> {
    let bad = OpenError::Corrupt;
    if payload_object.get(..4) != Some(PAYLOAD_MAGIC.as_slice()) {
        return Err(bad("not a payload object"));
    }
    if payload_object.get(4) != Some(&VERSION) {
        return Err(bad("unknown payload object version"));
    }
    const HEAD: usize = 5 + NONCE;
    if payload_object.len() < HEAD + TAG {
        return Err(bad("payload object too short"));
    }
    let end = payload_object.len() - TAG;
    let (head, sealed) = payload_object.split_at_mut(HEAD);
    let record = aead::open_in_place(data_key.bytes(), &sliced_nonce(&head[5..]), &payload_aad(hash), sealed)
        .map_err(|_| bad("the payload does not open: tampered, or filed under another payload"))?;
    let (submission, signature, payload_at) = decode_record(record, hash)?;
    let payload = Bytes::from(payload_object).slice(HEAD + payload_at..end);
    Ok(Listing { submission, signature, payload })
}

#[cfg(test)]
mod tests {
    use pat_engine::testing::{self, T0};

    use super::*;
    use crate::key::MasterKey;

    fn listing(salt: u64) -> SignedSegment {
        let payload = testing::payload_salted(5, salt);
        testing::signed_segment(&testing::PROVIDER_KEY, "PURCHASE_INTENT", "1h", 8_000, T0, T0, 3, &payload)
    }

    fn ring(kid: &str) -> Keyring {
        Keyring::single(MasterKey::generate(kid).unwrap())
    }

    /// A listing sealed under a fresh keyring `k1`, and its data key unwrapped.
    fn sealed(signed: &SignedSegment) -> (Keyring, B256, Sealed, DataKey) {
        let ring = ring("k1");
        let hash = signed.submission.payloadHash;
        let sealed = seal(&ring, signed).unwrap();
        let key = unwrap_key(&ring, &hash, &sealed.key_object).unwrap();
        (ring, hash, sealed, key)
    }

    #[test]
    fn a_sealed_listing_opens_to_itself() {
        let signed = listing(1);
        let (_, hash, sealed, key) = sealed(&signed);
        assert_eq!(open(&key, &hash, sealed.payload_object.clone()).unwrap(), signed);
        assert_eq!(key_id(&sealed.key_object).unwrap(), "k1");
        // The plaintext is nowhere in the ciphertext.
        let needle = &signed.payload[..16];
        assert!(!sealed.payload_object.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let (ring, hash, sealed, key) = sealed(&listing(2));
        for i in (0..sealed.payload_object.len()).step_by(7) {
            let mut bad = sealed.payload_object.clone();
            bad[i] ^= 0x10;
            assert!(open(&key, &hash, bad).is_err(), "payload byte {i}");
        }
        for i in 0..sealed.key_object.len() {
            let mut bad = sealed.key_object.clone();
            bad[i] ^= 0x01;
            assert!(unwrap_key(&ring, &hash, &bad).is_err(), "key byte {i}");
        }
    }

    #[test]
    fn objects_filed_under_another_payload_do_not_open() {
        let ring = ring("k1");
        let (a, b) = (listing(3), listing(4));
        let (ha, hb) = (a.submission.payloadHash, b.submission.payloadHash);
        let (sa, sb) = (seal(&ring, &a).unwrap(), seal(&ring, &b).unwrap());
        // A's key object under B's name.
        assert!(matches!(unwrap_key(&ring, &hb, &sa.key_object), Err(OpenError::Corrupt(_))));
        // A's payload object under B's name, opened with B's key or A's.
        let kb = unwrap_key(&ring, &hb, &sb.key_object).unwrap();
        let ka = unwrap_key(&ring, &ha, &sa.key_object).unwrap();
        assert!(open(&kb, &hb, sa.payload_object.clone()).is_err());
        assert!(open(&ka, &hb, sa.payload_object.clone()).is_err());
    }

    #[test]
    fn rewrap_moves_a_key_to_the_current_master_only() {
        let old = ring("k1");
        let signed = listing(5);
        let hash = signed.submission.payloadHash;
        let sealed = seal(&old, &signed).unwrap();
        let during = old.rotated_to(MasterKey::generate("k2").unwrap()).unwrap();
        let rewrapped = rewrap(&during, &hash, &sealed.key_object).unwrap();
        assert_eq!(key_id(&rewrapped).unwrap(), "k2");
        let after = during.current_only();
        let key = unwrap_key(&after, &hash, &rewrapped).unwrap();
        assert_eq!(open(&key, &hash, sealed.payload_object.clone()).unwrap(), signed);
        // The old key alone opens nothing re-wrapped, nor does the new key the old wrapping.
        assert_eq!(unwrap_key(&old, &hash, &rewrapped).err(), Some(OpenError::UnknownKey("k2".into())));
        assert_eq!(unwrap_key(&after, &hash, &sealed.key_object).err(), Some(OpenError::UnknownKey("k1".into())));
    }

    #[test]
    fn a_payload_that_does_not_match_its_hash_is_not_sealed() {
        let mut signed = listing(6);
        signed.payload.push(b' ');
        assert_eq!(seal(&ring("k1"), &signed).err(), Some(HashMismatch));
    }
}
