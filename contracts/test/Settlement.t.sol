// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Vm} from "./utils/Test.sol";
import {Fixture} from "./utils/Fixture.sol";
import {Merkle} from "./utils/Merkle.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";

/// settleBatch: the happy path, each rejection reason, check order, whole-batch reverts,
/// mixed batches and fuzzed accounting.
contract SettlementTest is Fixture {
    bytes32 constant FILL_SETTLED = keccak256("FillSettled(bytes32,address,uint256)");
    bytes32 constant FILL_REJECTED = keccak256("FillRejected(bytes32,uint8)");

    // ------------------------------------------------------------ happy path

    function test_settle_creditsProvidersBrokerAndAccess() public {
        DataMarketplace.Order memory o = _order(consumer, 3, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        bytes memory sig = _sign(CONSUMER_PK, o);

        vm.expectEmit(address(market));
        emit DataMarketplace.FillSettled(_id(o), consumer, 0);
        vm.expectEmit(address(market));
        // leaves: access 0, provider1 1, provider2 2
        bytes32[] memory leaves = new bytes32[](3);
        leaves[0] = Merkle.accessLeaf(0, _id(o), consumer, MARKET, 3);
        leaves[1] = Merkle.creditLeaf(1, provider1, BID);
        leaves[2] = Merkle.creditLeaf(2, provider2, 2 * BID);
        emit DataMarketplace.BatchSettled(1, Merkle.root(leaves), 0, 3, 3 * BID, 3 * (ASK - BID));
        (Merkle.BatchRecord memory b,) = _settleNoClaim(_one(f), _one(sig));
        assertEq(market.unclaimedCredits(), 3 * BID, "credits committed, not yet claimed");
        assertEq(market.earningsOf(provider1), 0, "nothing claimed yet");
        assertEq(market.batchCount(), 1, "one batch of three leaves");
        assertEq(market.leafCount(), 3, "one batch of three leaves");
        market.claimCredits(b.claims);
        assertEq(market.unclaimedCredits(), 0, "all claimed");

        assertEq(market.escrowOf(consumer), 1_000e18 - 3 * ASK, "escrow debited qty*ask");
        assertEq(market.earningsOf(provider1), BID, "provider1 credited 1*bid");
        assertEq(market.earningsOf(provider2), 2 * BID, "provider2 credited 2*bid");
        assertEq(market.brokerEarnings(), 3 * (ASK - BID), "broker gets the spread");
        assertEq(access[consumer][MARKET], 3, "access recorded");
        assertTrue(settledFill[_id(o)], "fill settled");
        assertTrue(market.isNonceUsed(consumer, 1), "nonce used");
        assertEq(token.balanceOf(address(market)), 1_000e18, "no token moved");
    }

    function test_settle_accessAccumulatesAcrossFills() public {
        _settleValid(3, 1);
        _settleValid(4, 2);
        assertEq(access[consumer][MARKET], 7, "units add up");
        assertEq(access[consumer][bytes32(0)], 0, "other market untouched");
    }

    function test_settle_sameProviderTwiceInOneFill() public {
        DataMarketplace.Order memory o = _order(consumer, 5, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.providers[1] = provider1;
        _settleOne(f, _sign(CONSUMER_PK, o));
        assertEq(market.earningsOf(provider1), 5 * BID, "both entries credited");
    }

    function test_settle_exactlyAtMarginCapAndZeroSpread() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.bid = ASK - (ASK * MARGIN_BPS) / 10_000; // spread exactly 20 %
        _settleOne(f, _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_id(o)], "spread at the cap settles");

        o = _order(consumer, 1, ASK, 2);
        f = _fill(o);
        f.bid = ASK; // zero spread
        _settleOne(f, _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_id(o)], "zero spread settles");
        assertEq(market.brokerEarnings(), (ASK * MARGIN_BPS) / 10_000, "only the first spread");
    }

    function test_settle_acceptedAtEqualsDeadlineAndNow() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        o.deadline = block.timestamp;
        DataMarketplace.Fill memory f = _fill(o);
        f.acceptedAt = uint64(block.timestamp);
        _settleOne(f, _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_id(o)], "boundaries are inclusive");
    }

    function test_settle_lateSubmissionOfTimelyAcceptance() public {
        // accepted before the deadline, submitted on chain after it, within maxSettleLag: settles.
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        vm.warp(o.deadline + market.maxSettleLag());
        _settleOne(f, _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_id(o)], "deadline bounds acceptance; deadline + lag bounds submission");
    }

    function test_settle_askBelowMaxPrice() public {
        DataMarketplace.Order memory o = _order(consumer, 2, ASK + 1, 1);
        _settleOne(_fill(o), _sign(CONSUMER_PK, o));
        assertEq(market.escrowOf(consumer), 1_000e18 - 2 * ASK, "pays the ask, not maxPrice");
    }

    // ------------------------------------------------------- rejection reasons

    function _expectRejected(DataMarketplace.Fill memory f, bytes memory sig, uint8 reason) internal {
        uint256 escrowBefore = market.escrowOf(f.order.consumer);
        uint256 brokerBefore = market.brokerEarnings();
        bool nonceBefore = market.isNonceUsed(f.order.consumer, f.order.nonce);
        uint256[] memory earningsBefore = new uint256[](f.providers.length);
        for (uint256 j; j < f.providers.length; ++j) {
            earningsBefore[j] = market.earningsOf(f.providers[j]);
        }
        Vm.Log[] memory logs = _settleLogged(_one(f), _one(sig));
        assertEq(logs.length, 1, "exactly one event");
        assertEq(logs[0].topics[0], FILL_REJECTED, "FillRejected");
        assertEq(logs[0].topics[1], _id(f.order), "fill id");
        assertEq(abi.decode(logs[0].data, (uint8)), reason, "reason code");
        assertEq(market.escrowOf(f.order.consumer), escrowBefore, "escrow untouched");
        assertEq(market.brokerEarnings(), brokerBefore, "broker untouched");
        assertEq(market.isNonceUsed(f.order.consumer, f.order.nonce), nonceBefore, "nonce untouched");
        for (uint256 j; j < f.providers.length; ++j) {
            assertEq(market.earningsOf(f.providers[j]), earningsBefore[j], "provider untouched");
        }
    }

    function test_reject_3_replayedOrder() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        bytes memory sig = _sign(CONSUMER_PK, o);
        _settleOne(_fill(o), sig);
        _expectRejected(_fill(o), sig, 3); // the same fill again: its nonce is the key
        assertEq(market.escrowOf(consumer), 1_000e18 - ASK, "paid once");
    }

    function test_reject_2_signedByAnotherKey() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        _expectRejected(_fill(o), _sign(OTHER_PK, o), 2);
    }

    function test_reject_2_signatureOverOtherOrder() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        bytes memory sig = _sign(CONSUMER_PK, o);
        o.qty = 2; // tampered after signing
        _expectRejected(_fill(o), sig, 2);
    }

    function test_reject_2_malformedSignatures() public {
        // (a signature is 65 packed bytes: other lengths cannot be packed, encodeBatch reverts)
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        bytes memory sig = _sign(CONSUMER_PK, o);
        // bad v
        bytes memory badV = bytes.concat(sig);
        badV[64] = bytes1(uint8(29));
        _expectRejected(_fill(o), badV, 2);
        badV[64] = bytes1(uint8(0));
        _expectRejected(_fill(o), badV, 2);
        // zero r, s
        _expectRejected(_fill(o), abi.encodePacked(bytes32(0), bytes32(0), uint8(27)), 2);
    }

    function test_reject_2_malleableHighS() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(CONSUMER_PK, market.hashOrder(o));
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        bytes memory flipped = abi.encodePacked(r, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        _expectRejected(_fill(o), flipped, 2);
    }

    function test_reject_2_zeroConsumerWithGarbage() public {
        DataMarketplace.Order memory o = _order(address(0), 1, ASK, 1);
        _expectRejected(_fill(o), abi.encodePacked(bytes32(uint256(1)), bytes32(uint256(1)), uint8(27)), 2);
        _expectRejected(_fill(o), new bytes(65), 2);
    }

    function test_reject_3_nonceUsed() public {
        _settleValid(1, 1);
        DataMarketplace.Order memory o = _order(consumer, 2, ASK, 1); // other order, same nonce
        _expectRejected(_fill(o), _sign(CONSUMER_PK, o), 3);
    }

    function test_reject_3_nonceIsPerConsumer() public {
        _settleValid(1, 1);
        _fund(other, 10e18);
        DataMarketplace.Order memory o = _order(other, 1, ASK, 1);
        _settleOne(_fill(o), _sign(OTHER_PK, o));
        assertTrue(settledFill[_id(o)], "another consumer may use the same nonce");
    }

    function test_nonce_bitmapBoundaries() public {
        _settleValid(1, 63); // cached word 0
        _settleValid(1, 64); // cache moves to word 1, word 0 spills to the bitmap
        _settleValid(1, 0); // earlier word: written to the bitmap, cache stays
        _settleValid(1, type(uint256).max); // beyond the 64-bit word range: bitmap only
        _settleValid(1, 65); // still in the cached word
        uint256[6] memory used = [uint256(63), 64, 0, type(uint256).max, 65, 63];
        for (uint256 i; i < used.length; ++i) {
            assertTrue(market.isNonceUsed(consumer, used[i]), "used");
        }
        uint256[5] memory free = [uint256(62), 1, 66, 127, type(uint256).max - 1];
        for (uint256 i; i < free.length; ++i) {
            assertFalse(market.isNonceUsed(consumer, free[i]), "free");
        }
        // every used nonce is refused again, wherever its bit lives
        for (uint256 i; i < 5; ++i) {
            DataMarketplace.Order memory o = _order(consumer, 1, ASK, used[i]);
            o.qty = 2;
            _expectRejected(_fill(o), _sign(CONSUMER_PK, o), 3);
        }
        // the cache jumps far ahead and back: nothing is forgotten
        _settleValid(1, 64 * 1_000);
        _settleValid(1, 66);
        assertTrue(market.isNonceUsed(consumer, 65) && market.isNonceUsed(consumer, 66), "spilled word 1 kept");
        assertEq(market.escrowOf(consumer), 1_000e18 - 7 * ASK, "escrow shares the slot, intact");
    }

    function testFuzz_nonce_independent(uint256 a, uint256 b) public {
        vm.assume(a != b);
        _settleValid(1, a);
        assertTrue(market.isNonceUsed(consumer, a), "a used");
        assertFalse(market.isNonceUsed(consumer, b), "b free");
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, b);
        _settleOne(_fill(o), _sign(CONSUMER_PK, o));
        assertTrue(market.isNonceUsed(consumer, b), "b used");
    }

    function test_reject_4_acceptedAfterDeadline() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        vm.warp(o.deadline + 10);
        f.acceptedAt = uint64(o.deadline + 1);
        _expectRejected(f, _sign(CONSUMER_PK, o), 4);
    }

    function test_reject_4_acceptedInTheFuture() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.acceptedAt = uint64(block.timestamp + 1);
        _expectRejected(f, _sign(CONSUMER_PK, o), 4);
    }

    function test_reject_5_askAboveMax() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK - 1, 1);
        _expectRejected(_fill(o), _sign(CONSUMER_PK, o), 5);
    }

    function test_reject_6_bidAboveAsk() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.bid = ASK + 1;
        _expectRejected(f, _sign(CONSUMER_PK, o), 6);
    }

    function test_reject_6_spreadAboveMargin() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.bid = ASK - (ASK * MARGIN_BPS) / 10_000 - 1; // one wei over 20 %
        _expectRejected(f, _sign(CONSUMER_PK, o), 6);
    }

    function test_reject_6_zeroMarginNeedsBidEqualAsk() public {
        vm.prank(owner);
        market.setBrokerMargin(0);
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.bid = ASK - 1;
        _expectRejected(f, _sign(CONSUMER_PK, o), 6);
    }

    function test_reject_6_largestAskDoesNotOverflow() public {
        DataMarketplace.Order memory o = _order(consumer, 1, type(uint256).max, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.ask = type(uint128).max;
        f.bid = 0;
        _expectRejected(f, _sign(CONSUMER_PK, o), 6);
    }

    function _badUnits(uint256 nonce, address[] memory providers, uint64[] memory units, uint256 qty) internal {
        DataMarketplace.Order memory o = _order(consumer, qty, ASK, nonce);
        DataMarketplace.Fill memory f = _fill(o);
        f.providers = providers;
        f.units = units;
        _expectRejected(f, _sign(CONSUMER_PK, o), 7);
    }

    function test_reject_7_badUnits() public {
        address[] memory p1 = new address[](1);
        p1[0] = provider1;
        uint64[] memory u1 = new uint64[](1);
        u1[0] = 0;
        _badUnits(1, p1, u1, 0); // qty == 0
        // (providers and unit counts of different lengths cannot be packed: encodeBatch reverts)
        _badUnits(4, new address[](0), new uint64[](0), 3); // no providers

        address[] memory p2 = new address[](2);
        p2[0] = provider1;
        uint64[] memory u2 = new uint64[](2);
        u2[0] = 1;
        u2[1] = 2;
        p2[1] = address(0);
        _badUnits(5, p2, u2, 3); // zero provider
        p2[1] = provider2;
        _badUnits(6, p2, u2, 4); // sum < qty
        _badUnits(7, p2, u2, 2); // sum > qty
        u2[0] = type(uint64).max;
        u2[1] = 4;
        _badUnits(8, p2, u2, 3); // sum would overflow
    }

    function test_reject_8_insufficientEscrow() public {
        uint256 qty = 1_000e18 / ASK + 1;
        DataMarketplace.Order memory o = _order(consumer, qty, ASK, 1);
        _expectRejected(_fill(o), _sign(CONSUMER_PK, o), 8);
    }

    function test_reject_8_largestCostDoesNotOverflow() public {
        DataMarketplace.Order memory o = _order(consumer, type(uint64).max, type(uint256).max, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.ask = type(uint128).max;
        f.bid = f.ask;
        _expectRejected(f, _sign(CONSUMER_PK, o), 8);
    }

    function test_reject_8_escrowSpentEarlierInSameBatch() public {
        // escrow 1000e18 covers two fills of 250 units at 2e18, not a third.
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](3);
        bytes[] memory sigs = new bytes[](3);
        for (uint256 i; i < 3; ++i) {
            DataMarketplace.Order memory o = _order(consumer, 250, ASK, i);
            fills[i] = _fill(o);
            sigs[i] = _sign(CONSUMER_PK, o);
        }
        vm.expectEmit(address(market));
        emit DataMarketplace.FillRejected(_id(fills[2].order), 8);
        _settle(fills, sigs);
        assertTrue(settledFill[_id(fills[0].order)] && settledFill[_id(fills[1].order)], "first two settle");
        assertFalse(settledFill[_id(fills[2].order)], "third rejected");
        assertEq(market.escrowOf(consumer), 0, "escrow exhausted exactly");
    }

    function test_reject_sameFillTwiceInOneBatch() public {
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](2);
        bytes[] memory sigs = new bytes[](2);
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        fills[0] = _fill(o);
        fills[1] = _fill(o);
        sigs[0] = _sign(CONSUMER_PK, o);
        sigs[1] = sigs[0];
        vm.expectEmit(address(market));
        emit DataMarketplace.FillRejected(_id(o), 3);
        _settle(fills, sigs);
        assertEq(market.escrowOf(consumer), 1_000e18 - ASK, "paid once");
    }

    function test_reject_checkOrder() public {
        // A fill failing every check reports the first one; fixing them one by one walks
        // through the reason codes in order.
        _settleValid(1, 1);
        DataMarketplace.Order memory o = _order(consumer, 0, ASK - 1, 1); // nonce 1 used
        o.deadline = block.timestamp - 1;
        DataMarketplace.Fill memory f = _fill(o);
        f.ask = ASK;
        f.bid = ASK + 1;
        f.acceptedAt = uint64(block.timestamp);
        bytes memory sig = _sign(OTHER_PK, o); // wrong signer
        _expectRejected(f, sig, 2);
        sig = _sign(CONSUMER_PK, o);
        _expectRejected(f, sig, 3);
        o.nonce = 2;
        f.order = o;
        sig = _sign(CONSUMER_PK, o);
        _expectRejected(f, sig, 4);
        o.deadline = block.timestamp;
        f.order = o;
        sig = _sign(CONSUMER_PK, o);
        _expectRejected(f, sig, 5);
        o.maxPrice = ASK;
        f.order = o;
        sig = _sign(CONSUMER_PK, o);
        _expectRejected(f, sig, 6);
        f.bid = BID;
        _expectRejected(f, sig, 7);
        o.qty = 1_000_000;
        f.order = o;
        f.units[0] = 1_000_000;
        sig = _sign(CONSUMER_PK, o);
        _expectRejected(f, sig, 8);
        o.qty = 1;
        f.order = o;
        f.units[0] = 1;
        _settleOne(f, _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_id(o)], "all fixed: settles");
    }

    // -------------------------------------------------------- mixed batches

    function test_mixedBatch_validSettleInvalidLeaveNoTrace() public {
        _fund(other, 100e18);
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](6);
        bytes[] memory sigs = new bytes[](6);
        DataMarketplace.Order memory o;

        o = _order(consumer, 3, ASK, 1); // valid
        fills[0] = _fill(o);
        sigs[0] = _sign(CONSUMER_PK, o);

        o = _order(consumer, 2, ASK, 2); // bad signature
        fills[1] = _fill(o);
        sigs[1] = _sign(OTHER_PK, o);

        o = _order(other, 4, ASK, 1); // valid, other consumer
        fills[2] = _fill(o);
        sigs[2] = _sign(OTHER_PK, o);

        o = _order(other, 1_000, ASK, 2); // insufficient escrow
        fills[3] = _fill(o);
        sigs[3] = _sign(OTHER_PK, o);

        o = _order(consumer, 1, ASK - 1, 3); // ask above max
        fills[4] = _fill(o);
        sigs[4] = _sign(CONSUMER_PK, o);

        o = _order(consumer, 5, ASK, 4); // valid
        fills[5] = _fill(o);
        sigs[5] = _sign(CONSUMER_PK, o);

        Vm.Log[] memory logs = _settleLogged(fills, sigs);

        uint256 settled;
        uint256 rejected;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == FILL_SETTLED) ++settled;
            if (logs[i].topics[0] == FILL_REJECTED) {
                ++rejected;
                bytes32 id = logs[i].topics[1];
                uint8 reason = abi.decode(logs[i].data, (uint8));
                assertTrue(
                    (id == _id(fills[1].order) && reason == 2) || (id == _id(fills[3].order) && reason == 8)
                        || (id == _id(fills[4].order) && reason == 5),
                    "expected rejection"
                );
            }
        }
        assertEq(settled, 3, "three settled");
        assertEq(rejected, 3, "three rejected");

        address[] memory consumers = new address[](6);
        uint256[] memory nonces = new uint256[](6);
        for (uint256 i; i < 6; ++i) {
            consumers[i] = fills[i].order.consumer;
            nonces[i] = fills[i].order.nonce;
        }
        bool[] memory status = market.noncesUsed(consumers, nonces);
        bool[6] memory expected = [true, false, true, false, false, true];
        for (uint256 i; i < 6; ++i) {
            assertEq(status[i], expected[i], "noncesUsed");
            assertEq(settledFill[_id(fills[i].order)], expected[i], "FillSettled");
        }
        assertFalse(market.isNonceUsed(consumer, 2), "rejected nonce free");
        assertFalse(market.isNonceUsed(consumer, 3), "rejected nonce free");
        assertFalse(market.isNonceUsed(other, 2), "rejected nonce free");
        assertEq(market.escrowOf(consumer), 1_000e18 - 8 * ASK, "consumer pays valid fills only");
        assertEq(market.escrowOf(other), 100e18 - 4 * ASK, "other pays valid fill only");
        assertEq(access[consumer][MARKET], 8, "consumer access");
        assertEq(access[other][MARKET], 4, "other access");
        assertEq(market.brokerEarnings(), 12 * (ASK - BID), "spread of valid fills");
        assertEq(
            market.earningsOf(provider1) + market.earningsOf(provider2), 12 * BID, "providers credited valid units"
        );
    }

    // ---------------------------------------------------- whole-batch reverts

    function test_revert_notBroker() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        bytes[] memory sigs = _one(_sign(CONSUMER_PK, o));
        bytes memory packed = market.encodeBatch(_one(_fill(o)), sigs);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.NotBroker.selector, owner));
        market.settleBatch(packed);
    }

    function test_revert_paused() public {
        vm.prank(owner);
        market.setPaused(true);
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        bytes[] memory sigs = _one(_sign(CONSUMER_PK, o));
        bytes memory packed = market.encodeBatch(_one(_fill(o)), sigs);
        vm.prank(broker);
        vm.expectRevert(DataMarketplace.MarketPaused.selector);
        market.settleBatch(packed);
    }

    function test_revert_malformedBatch() public {
        DataMarketplace.Order memory o = _order(consumer, 2, ASK, 1);
        bytes memory packed = market.encodeBatch(_one(_fill(o)), _one(_sign(CONSUMER_PK, o)));
        assertEq(packed.length, 265 + 2 * 28, "one record, two providers");
        bytes memory cut = new bytes(packed.length - 1);
        for (uint256 i; i < cut.length; ++i) {
            cut[i] = packed[i];
        }
        vm.startPrank(broker);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.MalformedBatch.selector, 0));
        market.settleBatch(cut);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.MalformedBatch.selector, packed.length));
        market.settleBatch(bytes.concat(packed, hex"00"));
        vm.stopPrank();
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.LengthMismatch.selector, 1, 0));
        market.encodeBatch(_one(_fill(o)), new bytes[](0));
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.LengthMismatch.selector, 64, 65));
        market.encodeBatch(_one(_fill(o)), _one(new bytes(64)));
    }

    function test_revert_emptyBatch() public {
        vm.prank(broker);
        vm.expectRevert(DataMarketplace.EmptyBatch.selector);
        market.settleBatch("");
    }

    function test_revert_batchTooLarge() public {
        uint256 n = market.MAX_BATCH() + 1;
        vm.prank(broker);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.BatchTooLarge.selector, n, n - 1));
        market.settleBatch(new bytes(n * 265)); // records without providers
    }

    function test_maxBatchIsAccepted() public {
        uint256 n = market.MAX_BATCH();
        vm.recordLogs();
        vm.prank(broker);
        market.settleBatch(new bytes(n * 265)); // zero records: all bad signatures
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(logs.length, n, "one rejection per fill");
        assertEq(abi.decode(logs[n - 1].data, (uint8)), 2, "bad signature");
    }

    // ------------------------------------------------------------------ claims

    function test_claim_revertsAndWorksWhilePaused() public {
        DataMarketplace.Order memory o = _order(consumer, 3, ASK, 1);
        (Merkle.BatchRecord memory b,) = _settleNoClaim(_one(_fill(o)), _one(_sign(CONSUMER_PK, o)));
        DataMarketplace.Claim[] memory claims = b.claims;
        assertEq(claims.length, 2, "two credits");

        vm.expectRevert(DataMarketplace.EmptyClaims.selector);
        market.claimCredits(new DataMarketplace.Claim[](0));

        DataMarketplace.Claim memory c = claims[0];
        DataMarketplace.Claim[] memory bad = new DataMarketplace.Claim[](1);
        bad[0] = DataMarketplace.Claim(c.batchId, c.leaf, c.provider, c.amount + 1, c.proof); // more than credited
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidCreditProof.selector, c.leaf));
        market.claimCredits(bad);
        bad[0] = DataMarketplace.Claim(c.batchId, c.leaf, provider3, c.amount, c.proof); // someone else's credit
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidCreditProof.selector, c.leaf));
        market.claimCredits(bad);
        bad[0] = DataMarketplace.Claim(2, c.leaf, c.provider, c.amount, c.proof); // no such batch
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidCreditProof.selector, c.leaf));
        market.claimCredits(bad);
        bad[0] = DataMarketplace.Claim(c.batchId, 0, c.provider, c.amount, c.proof); // the access leaf's index
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidCreditProof.selector, 0));
        market.claimCredits(bad);

        vm.prank(owner);
        market.setPaused(true);
        vm.expectEmit(address(market));
        emit DataMarketplace.CreditClaimed(claims[0].leaf, provider1, BID);
        vm.prank(provider3); // anyone may claim; the money goes to the leaf's provider
        market.claimCredits(claims);
        assertEq(market.earningsOf(provider1), BID, "provider1");
        assertEq(market.earningsOf(provider2), 2 * BID, "provider2");
        assertEq(market.earningsOf(provider3), 0, "the caller gets nothing");
        assertEq(market.unclaimedCredits(), 0, "nothing left");
        assertTrue(market.isCreditClaimed(1) && market.isCreditClaimed(2) && !market.isCreditClaimed(0), "bits");

        // V2: a second claim is skipped, not reverted
        vm.expectEmit(address(market));
        emit DataMarketplace.CreditClaimSkipped(claims[0].leaf);
        assertEq(market.claimCredits(claims), 0, "nothing claimed twice");
        assertEq(market.earningsOf(provider1), BID, "provider1 unchanged");
    }

    function test_verifyAccess_rejectsWrongFields() public {
        DataMarketplace.Order memory o = _order(consumer, 3, ASK, 1);
        (Merkle.BatchRecord memory b,) = _settleNoClaim(_one(_fill(o)), _one(_sign(CONSUMER_PK, o)));
        Merkle.AccessRecord memory a = b.access[0];
        assertTrue(market.verifyAccess(1, a.leaf, a.fillId, consumer, MARKET, 3, a.proof), "true record");
        assertFalse(market.verifyAccess(1, a.leaf, a.fillId, consumer, MARKET, 4, a.proof), "more units");
        assertFalse(market.verifyAccess(1, a.leaf, a.fillId, other, MARKET, 3, a.proof), "other consumer");
        assertFalse(market.verifyAccess(1, a.leaf, a.fillId, consumer, bytes32(0), 3, a.proof), "other market");
        assertFalse(market.verifyAccess(2, a.leaf, a.fillId, consumer, MARKET, 3, a.proof), "no such batch");
        assertFalse(market.verifyAccess(1, 1, a.fillId, consumer, MARKET, 3, a.proof), "other leaf index");
    }

    function test_batchOfOnlyRejectionsRecordsNothing() public {
        DataMarketplace.Order memory o = _order(consumer, 3, ASK, 1);
        _settleOne(_fill(o), _sign(OTHER_PK, o));
        assertEq(market.batchCount(), 0, "no batch");
        assertEq(market.leafCount(), 0, "no leaves");
    }

    // ------------------------------------------------------------------ fuzz

    /// Reference model of one fill's outcome against the contract's.
    function testFuzz_settle_matchesModel(
        uint256 qty,
        uint256 ask,
        uint256 bid,
        uint16 marginBps,
        uint256 escrow,
        uint256 split1,
        uint256 split2
    ) public {
        marginBps = uint16(bound(marginBps, 0, 5000));
        qty = bound(qty, 1, 1e9);
        ask = bound(ask, 0, 1e24);
        bid = bound(bid, 0, ask + 1);
        escrow = bound(escrow, 1, 1e26);
        vm.prank(owner);
        market.setBrokerMargin(marginBps);
        _fund(other, escrow);

        DataMarketplace.Order memory o = _order(other, qty, ask, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.ask = uint128(ask);
        f.bid = uint128(bid);
        f.providers = new address[](3);
        f.units = new uint64[](3);
        f.providers[0] = provider1;
        f.providers[1] = provider2;
        f.providers[2] = provider3;
        f.units[0] = uint64(bound(split1, 0, qty));
        f.units[1] = uint64(bound(split2, 0, qty - f.units[0]));
        f.units[2] = uint64(qty - f.units[0] - f.units[1]);

        uint8 expected;
        if (bid > ask || (ask - bid) * 10_000 > ask * marginBps) expected = 6;
        else if (qty * ask > escrow) expected = 8;

        Vm.Log[] memory logs = _settleLogged(_one(f), _one(_sign(OTHER_PK, o)));
        if (expected != 0) {
            assertEq(logs.length, 1, "one rejection");
            assertEq(abi.decode(logs[0].data, (uint8)), expected, "reason");
            assertEq(market.escrowOf(other), escrow, "escrow untouched");
        } else {
            assertTrue(settledFill[_id(o)], "settled");
            assertEq(market.escrowOf(other), escrow - qty * ask, "debit");
            assertEq(market.earningsOf(provider1), uint256(f.units[0]) * bid, "p1");
            assertEq(market.earningsOf(provider2), uint256(f.units[1]) * bid, "p2");
            assertEq(market.earningsOf(provider3), uint256(f.units[2]) * bid, "p3");
            assertEq(market.brokerEarnings(), qty * (ask - bid), "spread");
            assertEq(
                qty * ask,
                market.earningsOf(provider1) + market.earningsOf(provider2) + market.earningsOf(provider3)
                    + market.brokerEarnings(),
                "conservation"
            );
            assertEq(access[other][MARKET], qty, "access");
        }
        assertEq(
            token.balanceOf(address(market)),
            market.escrowOf(consumer) + market.escrowOf(other) + market.earningsOf(provider1)
                + market.earningsOf(provider2) + market.earningsOf(provider3) + market.brokerEarnings(),
            "balance = escrows + earnings + broker"
        );
    }

    /// Arbitrary (even absurd) fill values of the packed widths never revert the batch,
    /// and a good fill alongside them still settles.
    function testFuzz_settle_neverRevertsOnFillData(
        uint64 qty,
        uint128 ask,
        uint128 bid,
        uint64 u0,
        uint64 u1,
        uint64 acceptedAt,
        uint256 maxPrice
    ) public {
        DataMarketplace.Order memory o = _order(consumer, qty, maxPrice, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.ask = ask;
        f.bid = bid;
        f.acceptedAt = acceptedAt;
        f.units = new uint64[](2);
        f.units[0] = u0;
        f.units[1] = u1;
        f.providers = new address[](2);
        f.providers[0] = provider1;
        f.providers[1] = provider2;

        // the good fill is another consumer's, so whatever the first one does to
        // `consumer`'s escrow cannot affect it
        _fund(other, 10e18);
        DataMarketplace.Order memory good = _order(other, 1, ASK, 1);
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](2);
        bytes[] memory sigs = new bytes[](2);
        fills[0] = f;
        sigs[0] = _sign(CONSUMER_PK, o);
        fills[1] = _fill(good);
        sigs[1] = _sign(OTHER_PK, good);
        _settle(fills, sigs);
        assertTrue(settledFill[_id(good)], "good fill settles next to anything");
        assertEq(
            token.balanceOf(address(market)),
            market.escrowOf(consumer) + market.escrowOf(other) + market.earningsOf(provider1)
                + market.earningsOf(provider2) + market.brokerEarnings(),
            "balance = escrows + earnings + broker"
        );
    }

    /// A split of qty over up to 8 providers credits each exactly units*bid.
    function testFuzz_settle_unitSplits(uint256 qty, uint8 nProviders, uint256 seed) public {
        qty = bound(qty, 1, 400);
        uint256 n = bound(nProviders, 1, 8);
        DataMarketplace.Order memory o = _order(consumer, qty, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        f.providers = new address[](n);
        f.units = new uint64[](n);
        uint256 left = qty;
        for (uint256 j; j < n; ++j) {
            f.providers[j] = address(uint160(0x5000 + j));
            f.units[j] = uint64(j == n - 1 ? left : bound(uint256(keccak256(abi.encode(seed, j))), 0, left));
            left -= f.units[j];
        }
        _settleOne(f, _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_id(o)], "settled");
        uint256 credited;
        for (uint256 j; j < n; ++j) {
            assertEq(market.earningsOf(f.providers[j]), uint256(f.units[j]) * BID, "provider credit");
            credited += market.earningsOf(f.providers[j]);
        }
        assertEq(credited + market.brokerEarnings(), qty * ASK, "conservation");
    }
}
