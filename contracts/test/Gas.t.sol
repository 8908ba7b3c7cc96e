// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Fixture} from "./utils/Fixture.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";
import {Merkle} from "./utils/Merkle.sol";

/// Gas of settleBatch: consumers already have escrow, every fill is fresh and has two
/// providers. "First trade": each consumer's first order (its nonce word is cached in the
/// escrow slot, so nothing new is created). Settlement writes no per-provider storage, so a
/// provider's history does not change the cost. The exact call gas is written to
/// snapshots/SettleBatchGasTest.json (checked with FORGE_SNAPSHOT_CHECK); the whole test's
/// gas is in .gas-snapshot. The bench (bench/src/bin/settlement_gas.rs) measures whole
/// transactions, calldata included.
contract SettleBatchGasTest is Fixture {
    uint256 constant N = 100;
    uint256[N] pks;

    function setUp() public override {
        super.setUp();
        for (uint256 i; i < N; ++i) {
            pks[i] = 0x1000 + i;
            _fund(vm.addr(pks[i]), 100e18);
        }
    }

    /// `n` fills of distinct consumers, each from two providers of its own.
    function _batch(uint256 n, uint256 nonce)
        internal
        view
        returns (DataMarketplace.Fill[] memory fills, bytes[] memory sigs)
    {
        fills = new DataMarketplace.Fill[](n);
        sigs = new bytes[](n);
        for (uint256 i; i < n; ++i) {
            DataMarketplace.Order memory o = _order(vm.addr(pks[i]), 2, ASK, nonce);
            fills[i] = _fill(o);
            fills[i].providers[0] = address(uint160(0x10000 + 2 * i));
            fills[i].providers[1] = address(uint160(0x10001 + 2 * i));
            sigs[i] = _sign(pks[i], o);
        }
    }

    function _settleMeasured(uint256 n, uint256 nonce, string memory name) internal {
        (DataMarketplace.Fill[] memory fills, bytes[] memory sigs) = _batch(n, nonce);
        bytes memory packed = market.encodeBatch(fills, sigs);
        vm.prank(broker);
        market.settleBatch(packed);
        vm.snapshotGasLastCall(name);
        assertTrue(market.isNonceUsed(vm.addr(pks[n - 1]), nonce), "settled");
    }

    function test_gas_settleBatch_1() public {
        _settleMeasured(1, 1, "settleBatch_1_fill");
    }

    function test_gas_settleBatch_10() public {
        _settleMeasured(10, 1, "settleBatch_10_fills");
    }

    function test_gas_settleBatch_100() public {
        _settleMeasured(100, 1, "settleBatch_100_fills");
    }

    /// The same consumers again (nonce 2). Foundry runs a test as one transaction, so the
    /// slots the first batch touched are warm here: a lower bound, not the cold repeat cost
    /// (the bench measures that).
    function test_gas_settleBatch_100_repeat() public {
        (DataMarketplace.Fill[] memory fills, bytes[] memory sigs) = _batch(100, 1);
        bytes memory packed = market.encodeBatch(fills, sigs);
        vm.prank(broker);
        market.settleBatch(packed);
        _settleMeasured(100, 2, "settleBatch_100_fills_repeat");
    }

    /// The providers' side of the lazy transfer: all 200 credits of a 100-fill batch claimed
    /// in one call (each a proof of 9 hashes, a claimed bit, a first write of the provider's
    /// earnings). Paid once per credit, by whoever claims, not by settlement.
    function test_gas_claimCredits_200() public {
        (DataMarketplace.Fill[] memory fills, bytes[] memory sigs) = _batch(100, 1);
        (Merkle.BatchRecord memory b,) = _settleNoClaim(fills, sigs);
        assertEq(b.claims.length, 200, "two credits per fill");
        market.claimCredits(b.claims);
        vm.snapshotGasLastCall("claimCredits_200_credits");
        assertEq(market.unclaimedCredits(), 0, "all claimed");
    }

    function test_gas_settleBatch_10_allRejected() public {
        (DataMarketplace.Fill[] memory fills, bytes[] memory sigs) = _batch(10, 1);
        for (uint256 i; i < 10; ++i) {
            fills[i].ask = ASK + 1; // above maxPrice: rejected after the signature check
        }
        bytes memory packed = market.encodeBatch(fills, sigs);
        vm.prank(broker);
        market.settleBatch(packed);
        vm.snapshotGasLastCall("settleBatch_10_fills_rejected");
        assertFalse(market.isNonceUsed(vm.addr(pks[9]), 1), "rejected");
    }

    /// One consumer, sequential nonces: one escrow-and-nonce slot for all ten.
    function test_gas_settleBatch_10_oneConsumer() public {
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](10);
        bytes[] memory sigs = new bytes[](10);
        for (uint256 i; i < 10; ++i) {
            DataMarketplace.Order memory o = _order(consumer, 3, ASK, i + 1);
            fills[i] = _fill(o);
            sigs[i] = _sign(CONSUMER_PK, o);
        }
        bytes memory packed = market.encodeBatch(fills, sigs);
        vm.prank(broker);
        market.settleBatch(packed);
        vm.snapshotGasLastCall("settleBatch_10_fills_one_consumer");
        assertTrue(market.isNonceUsed(consumer, 10), "settled");
    }
}
