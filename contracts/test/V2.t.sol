// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Fixture} from "./utils/Fixture.sol";
import {Merkle} from "./utils/Merkle.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";

/// Regression tests of the V2 review fixes (M-1, M-2, L/M-3, L/M-4). Each asserts what V1
/// did not do; test/UpgradeV1.t.sol shows the V1 behaviour on V1 bytecode and the V2 rules
/// after the upgrade.
contract MarketplaceV2Test is Fixture {
    uint64 constant LAG = 1 hours; // DEFAULT_SETTLE_LAG
    uint64 constant WINDOW = 1 days; // DEFAULT_WITHDRAWAL_WINDOW

    // ------------------------------------------------------------------- M-1

    /// V1 settled an order accepted before its deadline at any later time (a year later).
    function test_M1_fillRejectedAfterDeadlinePlusLag() public {
        DataMarketplace.Order memory o = _order(consumer, 2, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o); // accepted now, before the deadline
        bytes memory sig = _sign(CONSUMER_PK, o);

        vm.warp(o.deadline + LAG + 1);
        vm.expectEmit(address(market));
        emit DataMarketplace.FillRejected(_id(o), 9);
        _settleOne(f, sig);
        assertFalse(market.isNonceUsed(consumer, 1), "not settled");
        assertEq(market.escrowOf(consumer), 1_000e18, "not charged");

        vm.warp(o.deadline + 365 days);
        vm.expectEmit(address(market));
        emit DataMarketplace.FillRejected(_id(o), 9);
        _settleOne(f, sig);
    }

    function test_M1_fillSettlesUpToDeadlinePlusLag() public {
        DataMarketplace.Order memory o = _order(consumer, 2, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o);
        vm.warp(o.deadline + LAG);
        _settleOne(f, _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_id(o)], "settles at deadline + lag");
    }

    /// A deadline near 2^256 does not overflow the check.
    function test_M1_hugeDeadline() public {
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        o.deadline = type(uint256).max;
        _settleOne(_fill(o), _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_id(o)], "settles");
    }

    /// V1 had no way to cancel a signed order. V2: invalidateNonces, after maxSettleLag.
    function test_M1_invalidateNonces_afterLag() public {
        DataMarketplace.Order memory o5 = _order(consumer, 1, ASK, 5);
        DataMarketplace.Order memory o6 = _order(consumer, 1, ASK, 6);
        DataMarketplace.Fill memory f5 = _fill(o5); // both accepted before the cancellation
        DataMarketplace.Fill memory f6 = _fill(o6);
        uint64 mask = (uint64(1) << 5) | (uint64(1) << 6);
        uint64 effectiveAt = uint64(block.timestamp) + LAG;

        vm.expectEmit(address(market));
        emit DataMarketplace.NoncesInvalidated(consumer, 0, mask, effectiveAt);
        vm.prank(consumer);
        market.invalidateNonces(0, mask);
        (uint64 eff, uint64 pend, uint64 at) = market.nonceInvalidation(consumer, 0);
        assertEq(eff, 0, "none in effect yet");
        assertEq(pend, mask, "pending");
        assertEq(at, effectiveAt, "effective at");
        assertFalse(market.isNonceInvalidated(consumer, 5), "not yet");

        // a fill accepted before the cancellation still settles within the lag
        vm.warp(effectiveAt - 1);
        _settleOne(f5, _sign(CONSUMER_PK, o5));
        assertTrue(settledFill[_id(o5)], "accepted fill settles during the delay");

        vm.warp(effectiveAt);
        assertTrue(market.isNonceInvalidated(consumer, 6), "in effect");
        vm.expectEmit(address(market));
        emit DataMarketplace.FillRejected(_id(o6), 10);
        _settleOne(f6, _sign(CONSUMER_PK, o6));
        assertFalse(market.isNonceUsed(consumer, 6), "cancelled order never settles");
        assertFalse(market.isNonceInvalidated(consumer, 7), "other nonces untouched");
        assertFalse(market.isNonceInvalidated(other, 6), "other consumers untouched");
    }

    /// Only a consumer who cancelled pays for the cancellation slot: the flag in its account
    /// word survives deposits, settlements (also those that move the cached nonce word) and
    /// withdrawals, so a cancellation in a far word still rejects, and the escrow excludes it.
    function test_M1_cancellationFlagSurvivesEveryAccountWrite() public {
        vm.prank(consumer);
        market.invalidateNonces(9, 1); // nonce 576
        assertEq(market.escrowOf(consumer), 1_000e18, "the flag is not escrow");
        _fund(consumer, 5e18);
        assertEq(market.escrowOf(consumer), 1_005e18, "a deposit keeps the flag out of the escrow");
        // Settlements in word 0, then in word 2 (the cached word moves forward).
        for (uint256 n = 1; n <= 2; ++n) {
            DataMarketplace.Order memory o = _order(consumer, 1, ASK, n);
            _settleOne(_fill(o), _sign(CONSUMER_PK, o));
        }
        DataMarketplace.Order memory far = _order(consumer, 1, ASK, 130);
        _settleOne(_fill(far), _sign(CONSUMER_PK, far));
        assertTrue(settledFill[_id(far)], "another word settles");
        vm.warp(block.timestamp + LAG);
        DataMarketplace.Order memory cancelled = _order(consumer, 1, ASK, 576);
        vm.expectEmit(address(market));
        emit DataMarketplace.FillRejected(_id(cancelled), 10);
        _settleOne(_fill(cancelled), _sign(CONSUMER_PK, cancelled));
        assertEq(market.escrowOf(consumer), 1_005e18 - 3 * ASK, "charged for three fills, not the cancelled one");
    }

    /// A second call after the first took effect makes the first permanent; one before merges.
    function test_M1_invalidateNonces_merge() public {
        vm.prank(consumer);
        market.invalidateNonces(3, 1);
        vm.warp(block.timestamp + LAG);
        vm.prank(consumer);
        market.invalidateNonces(3, 2);
        (uint64 eff, uint64 pend, uint64 at) = market.nonceInvalidation(consumer, 3);
        assertEq(eff, 1, "the first is permanent");
        assertEq(pend, 2, "the second pending");
        assertEq(at, block.timestamp + LAG, "its time");
        assertTrue(market.isNonceInvalidated(consumer, 3 * 64), "first still in effect");
        assertFalse(market.isNonceInvalidated(consumer, 3 * 64 + 1), "second not yet");

        vm.prank(consumer);
        market.invalidateNonces(3, 4); // before the second took effect: merged, clock moved
        (eff, pend, at) = market.nonceInvalidation(consumer, 3);
        assertEq(eff, 1, "permanent unchanged");
        assertEq(pend, 6, "merged");

        vm.prank(consumer);
        vm.expectRevert(DataMarketplace.ZeroMask.selector);
        market.invalidateNonces(3, 0);
    }

    // ------------------------------------------------------------------- M-2

    /// V1: a matured request stayed payable forever (an armed instant withdrawal).
    function test_M2_withdrawalExpiresAfterWindow() public {
        vm.prank(consumer);
        market.requestWithdrawal(100e18);
        (, uint64 readyAt, uint64 expiresAt) = market.withdrawalStatus(consumer);
        assertEq(readyAt, block.timestamp + 3600, "ready");
        assertEq(expiresAt, readyAt + WINDOW, "expires");

        vm.warp(expiresAt + 1);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalExpired.selector, expiresAt));
        market.withdraw();

        // requesting again restarts the delay
        vm.prank(consumer);
        market.requestWithdrawal(100e18);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalNotReady.selector, block.timestamp + 3600));
        market.withdraw();
        vm.warp(block.timestamp + 3600 + WINDOW); // the last second of the window
        vm.prank(consumer);
        market.withdraw();
        assertEq(token.balanceOf(consumer), 100e18, "paid inside the window");
    }

    /// V1 allowed a withdrawal delay of 0 (and any delay below the settlement lag).
    function test_M2_withdrawalDelayAtLeastSettleLag() public {
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalDelayTooShort.selector, 0, LAG));
        market.setWithdrawalDelay(0);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalDelayTooShort.selector, LAG - 1, LAG));
        market.setWithdrawalDelay(LAG - 1);
        market.setWithdrawalDelay(LAG);

        // the lag: [10 min, min(7 days, delay)]
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.SettleLagOutOfRange.selector, LAG + 1, 10 minutes, LAG));
        market.setMaxSettleLag(LAG + 1);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarketplace.SettleLagOutOfRange.selector, 10 minutes - 1, 10 minutes, LAG)
        );
        market.setMaxSettleLag(10 minutes - 1);
        vm.expectEmit(address(market));
        emit DataMarketplace.MaxSettleLagSet(LAG, 10 minutes);
        market.setMaxSettleLag(10 minutes);
        market.setWithdrawalDelay(30 days);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarketplace.SettleLagOutOfRange.selector, 7 days + 1, 10 minutes, 7 days)
        );
        market.setMaxSettleLag(7 days + 1);
        market.setMaxSettleLag(7 days);
        assertEq(market.maxSettleLag(), 7 days, "lag");

        // the window: [1 hour, 30 days]
        vm.expectRevert(
            abi.encodeWithSelector(DataMarketplace.WithdrawalWindowOutOfRange.selector, 1 hours - 1, 1 hours, 30 days)
        );
        market.setWithdrawalWindow(1 hours - 1);
        vm.expectRevert(
            abi.encodeWithSelector(DataMarketplace.WithdrawalWindowOutOfRange.selector, 30 days + 1, 1 hours, 30 days)
        );
        market.setWithdrawalWindow(30 days + 1);
        vm.expectEmit(address(market));
        emit DataMarketplace.WithdrawalWindowSet(WINDOW, 2 days);
        market.setWithdrawalWindow(2 days);
        assertEq(market.withdrawalWindow(), 2 days, "window");
        vm.stopPrank();

        vm.startPrank(other);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, other));
        market.setMaxSettleLag(1 hours);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, other));
        market.setWithdrawalWindow(1 days);
        vm.stopPrank();
    }

    // ----------------------------------------------------------------- L/M-3

    /// V1: the withdrawal clock ran during a pause, while the broker could not settle, so a
    /// consumer could withdraw escrow owed to fills accepted before the pause.
    function test_M3_pauseStopsWithdrawalClock() public {
        DataMarketplace.Order memory o = _order(consumer, 100, ASK, 1);
        DataMarketplace.Fill memory f = _fill(o); // accepted, not settled yet
        vm.prank(consumer);
        market.requestWithdrawal(1_000e18);
        uint256 requestedAt = block.timestamp;

        vm.warp(requestedAt + 1800);
        vm.prank(owner);
        market.setPaused(true);
        vm.warp(requestedAt + 10 days); // far past the V1 readyAt
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalNotReady.selector, block.timestamp + 1800));
        market.withdraw();
        assertEq(market.pauseClock(), 10 days - 1800, "pause clock runs");

        vm.prank(owner);
        market.setPaused(false);
        uint256 unpausedAt = block.timestamp;
        (, uint64 readyAt, uint64 expiresAt) = market.withdrawalStatus(consumer);
        assertEq(readyAt, unpausedAt + 1800, "the rest of the delay after the pause");
        assertEq(expiresAt, readyAt + WINDOW, "window after it");

        // the broker settles the accepted fill before the request matures; it is within the
        // order's settle lag only because the test's deadline is long
        f.order.deadline = block.timestamp + 1;
        f.acceptedAt = uint64(requestedAt);
        bytes memory sig = _sign(CONSUMER_PK, f.order);
        _settleOne(f, sig);
        assertTrue(settledFill[_id(f.order)], "accepted fill settled after the pause");

        vm.warp(readyAt);
        vm.prank(consumer);
        market.withdraw();
        assertEq(token.balanceOf(consumer), 800e18, "pays what is left after settlement");
    }

    /// A pause does not use up a matured request's window either.
    function test_M3_pauseDoesNotConsumeWindow() public {
        vm.prank(consumer);
        market.requestWithdrawal(100e18);
        vm.warp(block.timestamp + 3600 + WINDOW - 10); // 10 s of window left
        vm.prank(owner);
        market.setPaused(true);
        vm.warp(block.timestamp + 5 days);
        vm.prank(owner);
        market.setPaused(false);
        vm.warp(block.timestamp + 10);
        vm.prank(consumer);
        market.withdraw();
        assertEq(token.balanceOf(consumer), 100e18, "paid");
    }

    function test_M3_setPausedTwiceCountsOnce() public {
        vm.startPrank(owner);
        market.setPaused(true);
        vm.warp(block.timestamp + 100);
        market.setPaused(true); // no restart of the pause
        vm.warp(block.timestamp + 100);
        market.setPaused(false);
        market.setPaused(false);
        vm.stopPrank();
        assertEq(market.pauseClock(), 200, "200 s paused");
        vm.warp(block.timestamp + 1000);
        assertEq(market.pauseClock(), 200, "stands still unpaused");
    }

    // ----------------------------------------------------------------- L/M-4

    /// V1: one credit claimed by someone else first reverted the whole sweep.
    function test_M4_sweepSkipsClaimedCredits() public {
        DataMarketplace.Order memory o1 = _order(consumer, 3, ASK, 1);
        DataMarketplace.Order memory o2 = _order(consumer, 5, ASK, 2);
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](2);
        bytes[] memory sigs = new bytes[](2);
        fills[0] = _fill(o1);
        fills[1] = _fill(o2);
        sigs[0] = _sign(CONSUMER_PK, o1);
        sigs[1] = _sign(CONSUMER_PK, o2);
        (Merkle.BatchRecord memory b,) = _settleNoClaim(fills, sigs);
        assertEq(b.claims.length, 4, "four credits");

        // a griefer front-runs the sweep with one of its claims
        DataMarketplace.Claim[] memory one = new DataMarketplace.Claim[](1);
        one[0] = b.claims[2];
        vm.prank(other);
        market.claimCredits(one);

        // the sweep, with a duplicate of another claim in it too
        DataMarketplace.Claim[] memory sweep = new DataMarketplace.Claim[](5);
        for (uint256 i; i < 4; ++i) {
            sweep[i] = b.claims[i];
        }
        sweep[4] = b.claims[0];
        uint256 expected = b.claims[0].amount + b.claims[1].amount + b.claims[3].amount;
        vm.expectEmit(address(market));
        emit DataMarketplace.CreditClaimSkipped(b.claims[2].leaf);
        vm.expectEmit(address(market));
        emit DataMarketplace.CreditClaimSkipped(b.claims[0].leaf);
        vm.prank(broker);
        assertEq(market.claimCredits(sweep), expected, "claims the rest");
        assertEq(market.unclaimedCredits(), 0, "all claimed once");
        assertEq(market.earningsOf(provider1), (1 + 2) * uint256(BID), "provider1 once");
        assertEq(market.earningsOf(provider2), (2 + 3) * uint256(BID), "provider2 once");

        // an invalid proof still reverts (the caller's own input; documented)
        sweep[0].amount += 1;
        sweep[0].leaf = b.claims[0].leaf + 100;
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidCreditProof.selector, sweep[0].leaf));
        market.claimCredits(sweep);
    }

    // ------------------------------------------------------------ initializeV2

    function test_initializeV2_onFreshProxy_ownerOnlyOnce() public {
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, other));
        market.initializeV2(1 hours, 2 hours, 1 days);

        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.SettleLagOutOfRange.selector, 3 hours, 10 minutes, 2 hours));
        market.initializeV2(3 hours, 2 hours, 1 days);

        vm.prank(owner);
        market.initializeV2(2 hours, 2 hours, 3 days);
        assertEq(market.maxSettleLag(), 2 hours, "lag");
        assertEq(market.withdrawalDelay(), 2 hours, "delay");
        assertEq(market.withdrawalWindow(), 3 days, "window");

        vm.prank(owner);
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        market.initializeV2(1 hours, 2 hours, 1 days);
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        impl.initializeV2(1 hours, 2 hours, 1 days);
    }
}
