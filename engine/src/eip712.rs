//! The EIP-712 typed data that providers and consumers sign (orders,
//! listings, a consumer's access to what it bought and a provider's to
//! what it listed), the marketplace
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

    /// A consumer's permission, for one request, to download what fill
    /// `fillId` bought: valid until `expiresAt` (unix seconds).
    #[derive(Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    struct Access {
        address consumer;
        bytes32 fillId;
        uint64 expiresAt;
    }

    /// A provider's permission, for one request, to read back the payload
    /// it listed as segment `segmentId` (for its audits): valid until
    /// `expiresAt` (unix seconds).
    #[derive(Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
    struct PayloadAccess {
        address provider;
        uint64 segmentId;
        uint64 expiresAt;
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
    #[error("signature's v is {0}; only 27 or 28 are taken, as by the contract's ECDSA.tryRecover")]
    V(u8),
    #[error("signature recovers to {recovered}, not the signer {expected}")]
    WrongSigner { expected: Address, recovered: Address },
}

/// The EIP-712 digest of `value` under `domain`.
pub fn digest<T: SolStruct>(value: &T, domain: &Eip712Domain) -> B256 {
    value.eip712_signing_hash(domain)
}

/// The one signature rule of every route (orders, submissions, feed `auth`),
/// the contract's (OpenZeppelin's `ECDSA.tryRecover`): 65 bytes `r | s | v`,
/// s in the lower half of the curve order, v 27 or 28. A signature the
/// contract would refuse could never settle, so none is taken.
pub fn parse_signature(bytes: &[u8]) -> Result<Signature, SignatureError> {
    if bytes.len() != 65 {
        return Err(SignatureError::Length(bytes.len()));
    }
    if !matches!(bytes[64], 27 | 28) {
        return Err(SignatureError::V(bytes[64]));
    }
    let sig = Signature::from_raw(bytes).map_err(|_| SignatureError::Malformed)?;
    if sig.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    Ok(sig)
}

/// Checks that `signature` over `digest` was made by `expected`, under
/// [`parse_signature`]'s rule.
pub fn verify_signer(digest: &B256, signature: &[u8], expected: Address) -> Result<(), SignatureError> {
    let sig = parse_signature(signature)?;
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
        let mut zero = [0u8; 65];
        zero[64] = 27;
        assert_eq!(verify_signer(&digest, &zero, order.consumer), Err(SignatureError::Malformed));
        // Only v = 27 or 28, as the contract: every other byte, however the
        // rest of the signature recovers, is refused by name.
        for v in (0..=255u8).filter(|v| !matches!(v, 27 | 28)) {
            let mut other_v = sig;
            other_v[64] = v;
            assert_eq!(verify_signer(&digest, &other_v, order.consumer), Err(SignatureError::V(v)), "v = {v}");
        }
        let mut flipped = sig;
        flipped[64] = if sig[64] == 27 { 28 } else { 27 };
        assert!(matches!(verify_signer(&digest, &flipped, order.consumer), Err(SignatureError::WrongSigner { .. })));
    }

    /// The vector pinned on both sides: `contracts/test/OrderHash.t.sol` asserts
    /// the same hashes from the contract, with the proxy at this address.
    const VECTOR_CONTRACT: Address = address!("0xF62849F9A0B5Bf2913b396098F7c7019b51A820a");

    #[test]
    fn order_digest_matches_the_contracts_pinned_vector() {
        let order = pinned_order();
        let domain = domain(31337, VECTOR_CONTRACT);
        assert_eq!(order.market, b256!("0x8ace9ab0da497a604bad060e68dd7aeef9584f3928c7db229e3c5a6316e1221c"));
        assert_eq!(
            order.eip712_type_hash(),
            b256!("0x7bff5eb4c13ebdd3ee473c74cc8af05e91126bb0e18f7c662a6df03c3a0f1294")
        );
        assert_eq!(
            order.eip712_hash_struct(),
            b256!("0xcdd32461df6ac8512c46385871f66ac51e915951e2d2f404ca3a462bd4ebee63")
        );
        assert_eq!(domain.separator(), b256!("0xb3e810d96622f48913fd88b0859c2f78019ec7dbf81bbd7e0dbec4771a096976"));
        let digest = digest(&order, &domain);
        assert_eq!(digest, b256!("0x1c33d017cdccb87c33aa12b183160e0fef09d3b20eb99273cddf016688998d19"));
        // RFC 6979 signatures are deterministic: the same bytes as the Foundry test's vm.sign.
        let sig = alice().sign_hash_sync(&digest).unwrap().as_bytes();
        assert_eq!(
            alloy_primitives::hex::encode(sig),
            "a314d9b7ba3c617b83e8dbbd8915f5ab14dd598dde6997adea1c1ebe4b35911c19f15dbcac9151b8f091cc6816f48cdf8c72bc1ba249b833d6935621f34bef751b"
        );
    }

    /// A submission signed by `cast wallet sign --data` over the same typed data
    /// JSON gives these bytes: the engine's digest is the standard one.
    #[test]
    fn submission_digest_is_pinned() {
        let submission = SegmentSubmission {
            provider: alice().address(),
            segmentType: "PURCHASE_INTENT".into(),
            window: "7D".into(),
            confidenceBps: 8000,
            windowStart: 1_767_222_000,
            createdAt: 1_767_225_600,
            units: 25,
            payloadHash: B256::repeat_byte(0x11),
        };
        let digest = digest(&submission, &domain(31337, VECTOR_CONTRACT));
        assert_eq!(
            SegmentSubmission::eip712_encode_type(),
            "SegmentSubmission(address provider,string segmentType,string window,uint16 confidenceBps,uint64 windowStart,uint64 createdAt,uint32 units,bytes32 payloadHash)"
        );
        assert_eq!(digest, b256!("0xa353f8a1709c1a7dbc16660f34fd64894fb5d4227b3e6978addce0c874ad2d3f"));
        let sig = alice().sign_hash_sync(&digest).unwrap().as_bytes();
        assert_eq!(
            alloy_primitives::hex::encode(sig),
            "b13d84d6f6a6ffea380a520cb1fd59a1bf34e82a1c1b44111928a6319e6748c43eb254391acb10a4288236ae37e572c3b114a3229f6cd53c148f51bafd3184c71c"
        );
    }

    fn digest_of_other_chain(order: &Order) -> B256 {
        digest(order, &domain(1, Address::repeat_byte(0x11)))
    }
}
