//! Signing of orders and submissions with a local key, for clients of the
//! engine: the simulator, load generators and tests. The engine itself only
//! verifies.

use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::{Eip712Domain, SolStruct};

use crate::eip712::{self, Order, SegmentSubmission};
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
