//! The EIP-712 typed data that providers and consumers sign, the marketplace
//! domain, and signature recovery. The `DataMarketplace` contract hashes the
//! same `Order` type; the digests are pinned by a test vector on both sides.

use alloy_primitives::{Address, B256, Signature};
use alloy_sol_types::{Eip712Domain, SolStruct, eip712_domain, sol};
use thiserror::Error;

sol! {
    /// A consumer's signed intent to buy `qty` units of `market` at an ask per
    /// unit of at most `maxPrice`, accepted by the broker no later than `deadline`.
    #[derive(Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    struct Order {
        address consumer;
        bytes32 market;
        uint256 qty;
        uint256 maxPrice;
        uint256 nonce;
        uint256 deadline;
    }

    /// A provider's signed listing of one segment: `units` units of access to the
    /// signals whose payload hashes to `payloadHash`.
    #[derive(Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    struct SegmentSubmission {
        address provider;
        string segmentType;
        string window;
        uint16 confidenceBps;
        uint64 windowStart;
        uint64 createdAt;
        uint32 units;
        bytes32 payloadHash;
    }
}

/// The name in the marketplace's EIP-712 domain.
pub const DOMAIN_NAME: &str = "PAT Data Marketplace";
/// The version in the marketplace's EIP-712 domain.
pub const DOMAIN_VERSION: &str = "1";

/// The marketplace domain on `chain_id` for the contract at `verifying_contract`.
pub fn domain(chain_id: u64, verifying_contract: Address) -> Eip712Domain {
    eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: verifying_contract,
    }
}

/// Why a signature does not prove its signer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SignatureError {
    #[error("signature must be 65 bytes (r, s, v), got {0}")]
    Length(usize),
    #[error("signature is not a valid secp256k1 signature")]
    Malformed,
    #[error("signature has a high s value (malleable); the contract refuses it")]
    HighS,
    #[error("signature recovers to {recovered}, not the signer {expected}")]
    WrongSigner { expected: Address, recovered: Address },
}

/// The EIP-712 digest of `value` under `domain`.
pub fn digest<T: SolStruct>(value: &T, domain: &Eip712Domain) -> B256 {
    value.eip712_signing_hash(domain)
}

/// Checks that the 65-byte `signature` over `digest` was made by `expected`,
/// by the rules of OpenZeppelin's `ECDSA.tryRecover` (low s only).
pub fn verify_signer(digest: &B256, signature: &[u8], expected: Address) -> Result<(), SignatureError> {
    if signature.len() != 65 {
        return Err(SignatureError::Length(signature.len()));
    }
    let sig = Signature::from_raw(signature).map_err(|_| SignatureError::Malformed)?;
    if sig.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let recovered = sig.recover_address_from_prehash(digest).map_err(|_| SignatureError::Malformed)?;
    if recovered == expected { Ok(()) } else { Err(SignatureError::WrongSigner { expected, recovered }) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{U256, address, b256, keccak256};
    use alloy_signer::SignerSync;
    use alloy_signer_local::PrivateKeySigner;

    /// The key the pinned vectors are signed with (0xA11CE, as in the Foundry test).
    fn alice() -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::left_padding_from(&[0x0a, 0x11, 0xce])).unwrap()
    }

    pub(crate) fn pinned_order() -> Order {
        Order {
            consumer: alice().address(),
            market: keccak256("PURCHASE_INTENT|7D|0.70-0.85"),
            qty: U256::from(3),
            maxPrice: U256::from(2_500_000_000_000_000_000u128),
            nonce: U256::from(7),
            deadline: U256::from(1_767_225_600u64),
        }
    }

    #[test]
    fn order_type_string_is_the_contracts() {
        let order = pinned_order();
        assert_eq!(
            Order::eip712_encode_type(),
            "Order(address consumer,bytes32 market,uint256 qty,uint256 maxPrice,uint256 nonce,uint256 deadline)"
        );
        assert_eq!(order.consumer, address!("0xe05fcC23807536bEe418f142D19fa0d21BB0cfF7"));
    }

    #[test]
    fn signatures_verify_only_for_their_signer() {
        let domain = domain(31337, Address::repeat_byte(0x11));
        let order = pinned_order();
        let digest = digest(&order, &domain);
        let sig = alice().sign_hash_sync(&digest).unwrap().as_bytes();
        assert_eq!(verify_signer(&digest, &sig, order.consumer), Ok(()));
        let other = PrivateKeySigner::random().address();
        assert!(matches!(verify_signer(&digest, &sig, other), Err(SignatureError::WrongSigner { .. })));
        assert_eq!(verify_signer(&digest, &sig[..64], order.consumer), Err(SignatureError::Length(64)));
        // The same digest under another chain id is another digest.
        let elsewhere = digest_of_other_chain(&order);
        assert!(verify_signer(&elsewhere, &sig, order.consumer).is_err());
        // Flip s to n - s (and the parity): still a valid ECDSA signature, but malleable.
        let parsed = Signature::from_raw(&sig).unwrap();
        let n = U256::from_be_bytes(b256!("0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").0);
        let high = Signature::new(parsed.r(), n - parsed.s(), !parsed.v()).as_bytes();
        assert_eq!(verify_signer(&digest, &high, order.consumer), Err(SignatureError::HighS));
        assert_eq!(verify_signer(&digest, &[0u8; 65], order.consumer), Err(SignatureError::Malformed));
    }

    fn digest_of_other_chain(order: &Order) -> B256 {
        digest(order, &domain(1, Address::repeat_byte(0x11)))
    }
}
