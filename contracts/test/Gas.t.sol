// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Fixture} from "./utils/Fixture.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";

/// Gas of settleBatch in steady state: consumers already have escrow, providers already
/// have earnings (so their balances are warm non-zero slots), every fill is fresh and
/// has two providers. The exact call gas is written to snapshots/SettleBatchGasTest.json
/// (checked with FORGE_SNAPSHOT_CHECK); the whole test's gas is in .gas-snapshot.
contract SettleBatchGasTest is Fixture {
    uint256 constant N = 10;
    uint256[N] pks;

    function setUp() public override {
        super.setUp();
        for (uint256 i; i < N; ++i) {
            pks[i] = 0x1000 + i;
            _fund(vm.addr(pks[i]), 100e18);
        }
        _settleValid(2, 1_000); // provider1 and provider2 now hold earnings
        DataMarketplace.Order memory o = _order(consumer, 2, ASK, 1_001);
        DataMarketplace.Fill memory f = _fill(_id(1_001), o);
        f.providers[0] = provider3;
        f.providers[1] = address(0x1004);
        _settleOne(f, _sign(CONSUMER_PK, o)); // and so do provider3 and 0x1004
    }

    function _batch(uint256 n) internal view returns (DataMarketplace.Fill[] memory fills, bytes[] memory sigs) {
        fills = new DataMarketplace.Fill[](n);
        sigs = new bytes[](n);
        for (uint256 i; i < n; ++i) {
            DataMarketplace.Order memory o = _order(vm.addr(pks[i]), 3, ASK, 1);
            fills[i] = _fill(_id(i + 1), o);
            if (i % 2 == 1) {
                fills[i].providers[0] = provider3;
                fills[i].providers[1] = address(0x1004);
            }
            sigs[i] = _sign(pks[i], o);
        }
    }

    function test_gas_settleBatch_1() public {
        (DataMarketplace.Fill[] memory fills, bytes[] memory sigs) = _batch(1);
        vm.prank(broker);
        market.settleBatch(fills, sigs);
        vm.snapshotGasLastCall("settleBatch_1_fill");
        assertTrue(market.isFillSettled(_id(1)), "settled");
    }

    function test_gas_settleBatch_10() public {
        (DataMarketplace.Fill[] memory fills, bytes[] memory sigs) = _batch(10);
        vm.prank(broker);
        market.settleBatch(fills, sigs);
        vm.snapshotGasLastCall("settleBatch_10_fills");
        assertTrue(market.isFillSettled(_id(10)), "settled");
    }

    function test_gas_settleBatch_10_allRejected() public {
        (DataMarketplace.Fill[] memory fills, bytes[] memory sigs) = _batch(10);
        for (uint256 i; i < 10; ++i) {
            fills[i].ask = ASK + 1; // above maxPrice: rejected after the signature check
        }
        vm.prank(broker);
        market.settleBatch(fills, sigs);
        vm.snapshotGasLastCall("settleBatch_10_fills_rejected");
        assertFalse(market.isFillSettled(_id(10)), "rejected");
    }

    /// One consumer, sequential nonces: the nonce bitmap shares one slot.
    function test_gas_settleBatch_10_oneConsumer() public {
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](10);
        bytes[] memory sigs = new bytes[](10);
        for (uint256 i; i < 10; ++i) {
            DataMarketplace.Order memory o = _order(consumer, 3, ASK, i + 1);
            fills[i] = _fill(_id(i + 1), o);
            sigs[i] = _sign(CONSUMER_PK, o);
        }
        vm.prank(broker);
        market.settleBatch(fills, sigs);
        vm.snapshotGasLastCall("settleBatch_10_fills_one_consumer");
        assertTrue(market.isFillSettled(_id(10)), "settled");
    }
}
