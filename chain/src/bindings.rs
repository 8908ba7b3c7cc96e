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

/// The contract's `Fill` for an engine fill: the order as the consumer signed it, the per-unit
/// ask and bid, the acceptance second, and each provider's units (sorted by provider).
pub fn contract_fill(fill: &pat_engine::Fill) -> DataMarketplace::Fill {
    let (providers, units) = fill.provider_credits().into_iter().map(|(p, u, _)| (p, U256::from(u))).unzip();
    DataMarketplace::Fill {
        fillId: fill.fill_id,
        order: DataMarketplace::Order {
            consumer: fill.consumer,
            market: fill.market_key_id,
            qty: U256::from(fill.qty),
            maxPrice: fill.max_price,
            nonce: fill.nonce,
            deadline: fill.deadline,
        },
        ask: U256::from(fill.ask),
        bid: U256::from(fill.bid),
        acceptedAt: fill.accepted_at_ms / 1000,
        providers,
        units,
    }
}

/// The `settleBatch(fills, signatures)` call for `fills`, in their order.
pub fn settle_batch_call(fills: &[pat_engine::Fill]) -> DataMarketplace::settleBatchCall {
    DataMarketplace::settleBatchCall {
        fills: fills.iter().map(contract_fill).collect(),
        signatures: fills.iter().map(|f| Bytes::copy_from_slice(&f.signature)).collect(),
    }
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
        assert_eq!(c.fillId, fill.fill_id);
        assert_eq!(
            (c.order.consumer, c.order.market, c.order.qty, c.order.maxPrice, c.order.nonce, c.order.deadline),
            (fill.consumer, fill.market_key_id, U256::from(3), U256::from(12), U256::from(5), U256::from(1_000))
        );
        assert_eq!((c.ask, c.bid, c.acceptedAt), (U256::from(11), U256::from(10), 999));
        assert_eq!(c.providers, [Address::repeat_byte(1), Address::repeat_byte(2)], "sorted by provider");
        assert_eq!(c.units, [U256::from(1), U256::from(2)]);
        let call = settle_batch_call(std::slice::from_ref(&fill));
        assert_eq!(call.signatures[0].as_ref(), fill.signature.as_slice());
    }
}
