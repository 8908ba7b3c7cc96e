//! Signing of orders and submissions with a local key, for clients of the
//! engine: the simulator, load generators and tests. The engine itself only
//! verifies.

use alloy_primitives::{U256, keccak256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolStruct};

use crate::eip712::{self, Access, Order, PayloadAccess, SegmentSubmission};
use crate::market_key::MarketKey;
use crate::order::SignedOrder;
use crate::segment::SignedSegment;

pub use alloy_signer_local::PrivateKeySigner as LocalSigner;

fn sign<T: SolStruct>(signer: &PrivateKeySigner, value: &T, domain: &Eip712Domain) -> Vec<u8> {
    let digest = eip712::digest(value, domain);
    signer.sign_hash_sync(&digest).expect("a local key signs any digest").as_bytes().to_vec()
}

/// Signs `order` under `domain`; the signer should be the order's consumer.
pub fn sign_order(signer: &PrivateKeySigner, order: Order, domain: &Eip712Domain) -> SignedOrder {
    let signature = sign(signer, &order, domain);
    SignedOrder { order, signature }
}

/// Signs the consumer's access to fill `fill_id` until `expires_at` (unix
/// seconds) under `domain`: the access and its 65-byte signature.
pub fn sign_access(
    signer: &PrivateKeySigner,
    fill_id: alloy_primitives::B256,
    expires_at: u64,
    domain: &Eip712Domain,
) -> (Access, Vec<u8>) {
    let access = Access { consumer: signer.address(), fillId: fill_id, expiresAt: expires_at };
    let signature = sign(signer, &access, domain);
    (access, signature)
}

/// Signs the provider's access to the payload of its segment `segment_id`
/// until `expires_at` (unix seconds) under `domain`: the access and its
/// 65-byte signature.
pub fn sign_payload_access(
    signer: &PrivateKeySigner,
    segment_id: u64,
    expires_at: u64,
    domain: &Eip712Domain,
) -> (PayloadAccess, Vec<u8>) {
    let access = PayloadAccess { provider: signer.address(), segmentId: segment_id, expiresAt: expires_at };
    let signature = sign(signer, &access, domain);
    (access, signature)
}

/// Signs a submission under `domain`; the signer should be its provider.
pub fn sign_segment(
    signer: &PrivateKeySigner,
    submission: SegmentSubmission,
    payload: Vec<u8>,
    domain: &Eip712Domain,
) -> SignedSegment {
    let signature = sign(signer, &submission, domain);
    SignedSegment { submission, signature, payload }
}

/// A provider's signed listing of `units` units in `market` (confidence at
/// the band's floor), over `payload`.
#[allow(clippy::too_many_arguments)]
pub fn sign_listing(
    signer: &PrivateKeySigner,
    market: &MarketKey,
    units: u32,
    window_start: u64,
    created_at: u64,
    payload: Vec<u8>,
    domain: &Eip712Domain,
) -> SignedSegment {
    let submission = SegmentSubmission {
        provider: signer.address(),
        segmentType: market.segment_type.to_string(),
        window: market.window.to_string(),
        confidenceBps: market.band.lo(),
        windowStart: window_start,
        createdAt: created_at,
        units,
        payloadHash: keccak256(&payload),
    };
    sign_segment(signer, submission, payload, domain)
}

/// A consumer's signed order for `qty` units of `market` at most `max_price` each.
pub fn sign_order_for(
    signer: &PrivateKeySigner,
    market: &MarketKey,
    qty: u64,
    max_price: u128,
    nonce: u64,
    deadline: u64,
    domain: &Eip712Domain,
) -> SignedOrder {
    let order = Order {
        consumer: signer.address(),
        market: market.id(),
        qty: U256::from(qty),
        maxPrice: U256::from(max_price),
        nonce: U256::from(nonce),
        deadline: U256::from(deadline),
    };
    sign_order(signer, order, domain)
}
