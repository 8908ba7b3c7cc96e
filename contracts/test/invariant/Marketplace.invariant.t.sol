// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Fixture} from "../utils/Fixture.sol";
import {Handler} from "./Handler.sol";

/// Invariants of the marketplace under random action sequences driven by {Handler}.
contract MarketplaceInvariantTest is Fixture {
    Handler handler;

    function setUp() public override {
        super.setUp();
        handler = new Handler(market, token, broker, owner);
        token.transfer(address(handler), token.balanceOf(address(this)));
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](10);
        selectors[0] = Handler.deposit.selector;
        selectors[1] = Handler.requestWithdrawal.selector;
        selectors[2] = Handler.withdraw.selector;
        selectors[3] = Handler.withdrawEarnings.selector;
        selectors[4] = Handler.withdrawBrokerEarnings.selector;
        selectors[5] = Handler.warp.selector;
        selectors[6] = Handler.togglePause.selector;
        selectors[7] = Handler.settle.selector;
        selectors[8] = Handler.claim.selector;
        selectors[9] = Handler.invalidate.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    function _sumEscrows() internal view returns (uint256 sum) {
        for (uint256 i; i < handler.N_CONSUMERS(); ++i) {
            sum += market.escrowOf(handler.consumers(i));
        }
        sum += market.escrowOf(consumer); // the Fixture's own deposit
    }

    function _sumEarnings() internal view returns (uint256 sum) {
        for (uint256 i; i < handler.N_PROVIDERS(); ++i) {
            sum += market.earningsOf(handler.providers(i));
        }
    }

    /// The contract holds exactly what it owes.
    function invariant_balanceEqualsLiabilities() public view {
        assertEq(
            token.balanceOf(address(market)),
            _sumEscrows() + _sumEarnings() + market.unclaimedCredits() + market.brokerEarnings(),
            "PAT balance == escrows + claimed earnings + unclaimed credits + broker earnings"
        );
    }

    /// Every consumer debit is split exactly between providers and the broker.
    function invariant_conservation() public view {
        assertEq(
            handler.ghostDebited(),
            handler.ghostProviderCredited() + handler.ghostSpread(),
            "debits == credits + spread"
        );
    }

    /// Money flows add up on each side of the book.
    function invariant_flows() public view {
        assertEq(
            handler.ghostDeposited(),
            handler.ghostWithdrawn() + handler.ghostDebited() + _sumEscrows() - market.escrowOf(consumer),
            "deposits == withdrawals + debits + escrow"
        );
        assertEq(
            handler.ghostProviderCredited(),
            handler.ghostEarningsPaid() + _sumEarnings() + market.unclaimedCredits(),
            "credits == paid + claimed + unclaimed"
        );
        assertEq(handler.ghostClaimed(), handler.ghostEarningsPaid() + _sumEarnings(), "claimed == paid + owed");
        assertEq(handler.ghostSpread(), handler.ghostBrokerPaid() + market.brokerEarnings(), "spread == paid + owed");
    }

    /// No fill id and no (consumer, nonce) ever settles twice (the nonce is the key; a fill id
    /// is its order's digest).
    function invariant_noDoubleSettlement() public view {
        assertEq(handler.ghostDoubleSettlements(), 0, "double settlement");
    }

    /// The contract agrees with the reference model on every balance.
    function invariant_matchesModel() public view {
        for (uint256 i; i < handler.N_CONSUMERS(); ++i) {
            address c = handler.consumers(i);
            assertEq(market.escrowOf(c), handler.modelEscrow(c), "escrow vs model");
        }
        for (uint256 i; i < handler.N_PROVIDERS(); ++i) {
            address p = handler.providers(i);
            assertEq(market.earningsOf(p), handler.modelEarnings(p), "earnings vs model");
        }
        assertEq(market.unclaimedCredits(), handler.modelUnclaimed(), "unclaimed vs model");
        assertEq(market.brokerEarnings(), handler.modelBroker(), "broker vs model");
    }

    /// The handler's fills reach every outcome: settlement and each rejection reason
    /// (so the invariants above are exercised on all paths, not only the happy one).
    function test_handler_reachesEveryOutcome() public {
        handler.deposit(0, 1e21); // consumers 1 and 2 stay unfunded: reason 8
        for (uint256 i; i < 60; ++i) {
            if (i % 10 == 0) {
                for (uint256 c; c < handler.N_CONSUMERS(); ++c) {
                    handler.invalidate(c, i);
                }
                handler.warp(2 hours); // the cancellations take effect: reason 10
            }
            handler.settle(i, 5);
        }
        assertGe(handler.ghostFillsSettled(), 10, "fills settle");
        for (uint256 p; p < handler.N_PROVIDERS(); ++p) {
            handler.claim(p);
        }
        assertEq(market.unclaimedCredits(), 0, "every credit claimed");
        assertGe(handler.ghostClaimed(), 1, "claims pay");
        for (uint8 reason = 2; reason <= 10; ++reason) {
            assertGe(handler.ghostRejectedByReason(reason), 1, "every rejection reason occurs");
        }
    }
}
