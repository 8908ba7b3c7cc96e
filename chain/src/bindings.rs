//! alloy bindings to the committed contract artifacts (`chain/artifacts/*.json`, exported by
//! `scripts/contracts.sh export`), so building this crate needs no Node or solc, and the
//! conversion of the engine's [`pat_engine::Fill`] into the contract's `Fill` argument.

use alloy::primitives::{Bytes, U256};
use alloy::sol;

// Generated: `permit` takes eight arguments, as EIP-2612 defines it.
sol!(
    #[allow(clippy::too_many_arguments)]
    #[sol(rpc, all_derives)]
    PAT,
    "artifacts/PAT.json"
);

// Generated: `verifyAccess` takes seven arguments (the access leaf's fields and its proof).
sol!(
    #[allow(clippy::too_many_arguments)]
    #[sol(rpc, all_derives)]
    DataMarketplace,
    "artifacts/DataMarketplace.json"
);

sol!(
    #[sol(rpc, all_derives)]
    ERC1967Proxy,
    "artifacts/ERC1967Proxy.json"
);

// The frozen V1 implementation (`contracts/test/mocks/DataMarketplaceV1.sol`): what a chain
// deployed before V2 runs, for the live-upgrade test. Its ABI is a subset of V2's.
sol!(
    #[allow(clippy::too_many_arguments)]
    #[sol(rpc)]
    DataMarketplaceV1,
    "artifacts/DataMarketplaceV1.json"
);

/// The contract's logical `Fill` for an engine fill (what `encodeBatch` takes): the order as
/// the consumer signed it, the per-unit ask and bid, the acceptance second, and each provider's
/// units in the engine's order (sorted by provider).
pub fn contract_fill(fill: &pat_engine::Fill) -> DataMarketplace::Fill {
    let (providers, units) = fill.provider_credits().into_iter().map(|(p, u, _)| (p, u)).unzip();
    DataMarketplace::Fill {
        order: DataMarketplace::Order {
            consumer: fill.consumer,
            market: fill.market_key_id,
            qty: U256::from(fill.qty),
            maxPrice: fill.max_price,
            nonce: fill.nonce,
            deadline: fill.deadline,
        },
        ask: fill.ask,
        bid: fill.bid,
        acceptedAt: fill.accepted_at_ms / 1000,
        providers,
        units,
    }
}

/// Bytes of one packed fill record before its providers (the contract's `FILL_HEAD`).
pub const FILL_HEAD: usize = 265;
/// Bytes of one provider entry of a packed record (`PROVIDER_LEN`).
pub const PROVIDER_LEN: usize = 28;

/// Appends `fill` as the contract's packed record (big-endian, no padding): consumer (20),
/// market (32), qty (8), maxPrice (32), nonce (32), deadline (32), ask (16), bid (16),
/// acceptedAt (8), the signature r, s, v (65), the provider count (4), then per provider its
/// address (20) and units (8). A signature that is not 65 bytes is sent as zeros, which the
/// contract rejects as a bad signature.
pub fn pack_fill(fill: &pat_engine::Fill, out: &mut Vec<u8>) {
    let credits = fill.provider_credits();
    out.reserve(FILL_HEAD + PROVIDER_LEN * credits.len());
    out.extend_from_slice(fill.consumer.as_slice());
    out.extend_from_slice(fill.market_key_id.as_slice());
    out.extend_from_slice(&fill.qty.to_be_bytes());
    out.extend_from_slice(&fill.max_price.to_be_bytes::<32>());
    out.extend_from_slice(&fill.nonce.to_be_bytes::<32>());
    out.extend_from_slice(&fill.deadline.to_be_bytes::<32>());
    out.extend_from_slice(&fill.ask.to_be_bytes());
    out.extend_from_slice(&fill.bid.to_be_bytes());
    out.extend_from_slice(&(fill.accepted_at_ms / 1000).to_be_bytes());
    match <&[u8; 65]>::try_from(fill.signature.as_slice()) {
        Ok(signature) => out.extend_from_slice(signature),
        Err(_) => out.extend_from_slice(&[0; 65]),
    }
    let count = u32::try_from(credits.len()).expect("a fill has fewer than 2^32 providers");
    out.extend_from_slice(&count.to_be_bytes());
    for (provider, units, _) in credits {
        out.extend_from_slice(provider.as_slice());
        out.extend_from_slice(&units.to_be_bytes());
    }
}

/// The `settleBatch(batch)` call for `fills`, packed in their order.
pub fn settle_batch_call(fills: &[pat_engine::Fill]) -> DataMarketplace::settleBatchCall {
    let mut batch = Vec::new();
    for fill in fills {
        pack_fill(fill, &mut batch);
    }
    DataMarketplace::settleBatchCall { batch: Bytes::from(batch) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::{Address, B256};

    #[test]
    fn engine_fills_convert_to_the_contracts_fill() {
        let consumer = Address::repeat_byte(0xc0);
        let fill = pat_engine::Fill {
            fill_id: B256::repeat_byte(9),
            market: pat_engine::MarketId(4),
            market_key_id: B256::repeat_byte(0x3a),
            consumer,
            nonce: U256::from(5),
            qty: 3,
            max_price: U256::from(12),
            deadline: U256::from(1_000),
            ask: 11,
            bid: 10,
            ask_paid: 33,
            bid_credited: 30,
            broker_spread: 3,
            accepted_at_ms: 999_999,
            // The engine keeps allocations sorted by (provider, segment).
            allocations: vec![
                pat_engine::Allocation {
                    provider: Address::repeat_byte(1),
                    segment: pat_engine::SegmentId(1),
                    units: 1,
                },
                pat_engine::Allocation {
                    provider: Address::repeat_byte(2),
                    segment: pat_engine::SegmentId(0),
                    units: 1,
                },
                pat_engine::Allocation {
                    provider: Address::repeat_byte(2),
                    segment: pat_engine::SegmentId(2),
                    units: 1,
                },
            ],
            signature: vec![7; 65],
        };
        let c = contract_fill(&fill);
        assert_eq!(
            (c.order.consumer, c.order.market, c.order.qty, c.order.maxPrice, c.order.nonce, c.order.deadline),
            (fill.consumer, fill.market_key_id, U256::from(3), U256::from(12), U256::from(5), U256::from(1_000))
        );
        assert_eq!((c.ask, c.bid, c.acceptedAt), (11, 10, 999));
        assert_eq!(c.providers, [Address::repeat_byte(1), Address::repeat_byte(2)], "sorted by provider");
        assert_eq!(c.units, [1, 2]);

        let call = settle_batch_call(&[fill.clone(), fill.clone()]);
        let record = FILL_HEAD + 2 * PROVIDER_LEN;
        assert_eq!(call.batch.len(), 2 * record, "two records of two providers");
        let r = &call.batch[..record];
        assert_eq!(&r[..20], consumer.as_slice());
        assert_eq!(&r[20..52], fill.market_key_id.as_slice());
        assert_eq!(r[52..60], 3u64.to_be_bytes());
        assert_eq!(r[60..92], U256::from(12).to_be_bytes::<32>());
        assert_eq!(r[92..124], U256::from(5).to_be_bytes::<32>());
        assert_eq!(r[124..156], U256::from(1_000).to_be_bytes::<32>());
        assert_eq!(r[156..172], 11u128.to_be_bytes());
        assert_eq!(r[172..188], 10u128.to_be_bytes());
        assert_eq!(r[188..196], 999u64.to_be_bytes());
        assert_eq!(&r[196..261], fill.signature.as_slice());
        assert_eq!(r[261..265], 2u32.to_be_bytes());
        assert_eq!(&r[265..285], Address::repeat_byte(1).as_slice());
        assert_eq!(r[285..293], 1u64.to_be_bytes());
        assert_eq!(&r[293..313], Address::repeat_byte(2).as_slice());
        assert_eq!(r[313..321], 2u64.to_be_bytes());
        assert_eq!(&call.batch[record..], r, "records back to back");

        let mut unsigned = fill;
        unsigned.signature = vec![1; 64];
        let call = settle_batch_call(std::slice::from_ref(&unsigned));
        assert_eq!(&call.batch[196..261], [0; 65], "a malformed signature goes as zeros");
    }
}
