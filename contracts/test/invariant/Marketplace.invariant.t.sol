// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Fixture} from "../utils/Fixture.sol";
import {Handler} from "./Handler.sol";

/// Invariants of the marketplace under random action sequences driven by {Handler}.
/// Every asserted quantity is read from the contract's views or the token (or is a running
/// total of their deltas and of the contract's events, kept by the handler); the handler
/// contributes only the actor sets and the inputs it sent. Each action also checks its own
/// deltas (see {Handler}); the invariants here check the state after every call.
contract MarketplaceInvariantTest is Fixture {
    Handler internal handler;

    /// afterInvariant's floor per run (64 calls): a handler whose actions stopped settling or
    /// claiming (every call a no-op, or only expected reverts) fails the suite. About half the
    /// lowest seen while tuning (10 fills and 7 claimed credits in a run of the default seed;
    /// the fuzzer's inputs move with the code, its dictionary takes the sources' literals);
    /// seeds 0x1, 0x2 and 0xabc pass too.
    uint256 internal constant MIN_FILLS_PER_RUN = 5;
    uint256 internal constant MIN_CLAIMS_PER_RUN = 3;

    function setUp() public override {
        super.setUp();
        handler = new Handler(market, token, broker, owner, brokerWallet, CONSUMER_PK);
        token.transfer(address(handler), token.balanceOf(address(this)));
        handler.init();
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](21);
        selectors[0] = Handler.deposit.selector;
        selectors[1] = Handler.depositWithPermit.selector;
        selectors[2] = Handler.requestWithdrawal.selector;
        selectors[3] = Handler.cancelWithdrawal.selector;
        selectors[4] = Handler.withdraw.selector;
        selectors[5] = Handler.withdrawEarnings.selector;
        selectors[6] = Handler.withdrawBrokerEarnings.selector;
        selectors[7] = Handler.claim.selector;
        selectors[8] = Handler.sweep.selector;
        selectors[9] = Handler.invalidate.selector;
        selectors[10] = Handler.settle.selector;
        selectors[11] = Handler.accept.selector;
        selectors[12] = Handler.settleAccepted.selector;
        selectors[13] = Handler.warp.selector;
        selectors[14] = Handler.togglePause.selector;
        selectors[15] = Handler.setMargin.selector;
        // settlement of fresh fills four times as likely as the other actions, claims twice:
        // afterInvariant wants both in every run
        selectors[16] = Handler.settle.selector;
        selectors[17] = Handler.settle.selector;
        selectors[18] = Handler.settle.selector;
        selectors[19] = Handler.claim.selector;
        selectors[20] = Handler.sweep.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
    }

    // ---------------------------------------------------------------------- invariants

    /// The contract holds exactly what it owes: its PAT balance is the sum, over every account
    /// it could owe, of escrowOf and earningsOf, plus unclaimedCredits and brokerEarnings.
    function invariant_solvency() public view {
        _assertSolvent();
    }

    /// Every token that moved is accounted for, measured where it moved:
    ///   - the marketplace's balance is its starting balance plus what left depositors' wallets
    ///     minus what arrived in payees' wallets;
    ///   - each consumer's escrowOf is its starting escrow plus what it paid in, minus what it
    ///     was paid out, minus what settlements debited (escrowOf's own deltas); so no other
    ///     call (claims, cancellations, requests, the account word's flag) touches escrow;
    ///   - each provider's earningsOf is what claims added to it minus what it was paid;
    ///   - brokerEarnings is the BatchSettled spreads minus what the broker wallet received;
    ///   - accounts that are no consumer or provider are owed nothing, ever.
    function invariant_tokenFlows() public view {
        assertEq(
            token.balanceOf(address(market)),
            handler.initialBalance() + handler.tokensIn() - handler.tokensOut(),
            "PAT balance == start + paid in by depositors - received by payees"
        );
        address[] memory consumers = handler.allConsumers();
        for (uint256 i; i < consumers.length; ++i) {
            address c = consumers[i];
            assertEq(
                market.escrowOf(c),
                handler.initialEscrow(c) + handler.deposited(c) - handler.withdrawn(c) - handler.debited(c),
                "escrowOf == start + deposited - withdrawn - debited by settlements"
            );
            assertEq(market.earningsOf(c), 0, "a consumer earns nothing");
        }
        address[] memory providers = handler.allProviders();
        for (uint256 i; i < providers.length; ++i) {
            address p = providers[i];
            assertEq(
                market.earningsOf(p), handler.earned(p) - handler.earningsPaid(p), "earningsOf == claimed - paid out"
            );
            assertEq(market.escrowOf(p), 0, "a provider has no escrow");
        }
        assertEq(
            market.brokerEarnings(),
            handler.spreadTotal() - handler.brokerPaid(),
            "brokerEarnings == BatchSettled spreads - paid to the broker wallet"
        );
        address[] memory outsiders = handler.allOutsiders();
        for (uint256 i; i < outsiders.length; ++i) {
            assertEq(market.earningsOf(outsiders[i]), 0, "third parties earn nothing (claims pay the provider)");
            assertEq(market.escrowOf(outsiders[i]), 0, "third parties have no escrow");
        }
    }

    /// Conservation, from the contract's own numbers: what settlements took from escrow
    /// (escrowOf deltas) is exactly what their BatchSettled events split into provider credits
    /// and broker spread; every credited unit is either unclaimed or claimed (CreditClaimed);
    /// and what the CreditClaimed events announced is what earningsOf grew by.
    function invariant_conservation() public view {
        address[] memory consumers = handler.allConsumers();
        uint256 debited;
        for (uint256 i; i < consumers.length; ++i) {
            debited += handler.debited(consumers[i]);
        }
        assertEq(
            debited,
            handler.creditedTotal() + handler.spreadTotal(),
            "escrow debited == BatchSettled credited + spread, over all batches"
        );
        assertEq(
            handler.creditedTotal(),
            market.unclaimedCredits() + handler.claimedTotal(),
            "BatchSettled credited == unclaimedCredits + CreditClaimed amounts"
        );
        address[] memory actors = handler.allActors();
        uint256 earned;
        for (uint256 i; i < actors.length; ++i) {
            earned += handler.earned(actors[i]);
        }
        assertEq(handler.claimedTotal(), earned, "CreditClaimed amounts == growth of earningsOf");
    }

    /// The claimed-credit bitmap agrees with the events, leaf by leaf, and unclaimedCredits is
    /// exactly the sum of the committed credit leaves (each proved against its batch root)
    /// that isCreditClaimed reports open.
    function invariant_credits() public view {
        _assertCredits();
    }

    /// Nonces, across bitmap words (the cached word, words behind it, words beyond 2^64):
    /// isNonceUsed is true exactly for the nonces a FillSettled named; a cancellation is in
    /// effect once maxSettleLag passed since the last invalidateNonces of its word, and a
    /// nonce never cancelled is never reported cancelled.
    function invariant_nonces() public view {
        _assertNonces();
    }

    /// After each run: the run did exercise settlement and claims; the full checks once more;
    /// then everyone takes out what it is owed, and the marketplace is left holding nothing.
    function afterInvariant() public {
        assertGe(handler.fillsSettled(), MIN_FILLS_PER_RUN, "too few fills settled in this run");
        assertGe(handler.creditsClaimed(), MIN_CLAIMS_PER_RUN, "too few credits claimed in this run");
        _assertSolvent();
        _assertCredits();
        _assertNonces();

        handler.drain();
        _assertSolvent();
        _assertCredits();
        invariant_tokenFlows();
        invariant_conservation();
        assertEq(market.unclaimedCredits(), 0, "drained: no credit left unclaimed");
        assertEq(market.brokerEarnings(), 0, "drained: no broker earnings left");
        assertEq(token.balanceOf(address(market)), 0, "drained: everything owed was paid, nothing is stuck");
    }

    // ------------------------------------------------------------------------- checks

    function _assertSolvent() internal view {
        address[] memory actors = handler.allActors();
        uint256 escrows;
        uint256 earnings;
        for (uint256 i; i < actors.length; ++i) {
            escrows += market.escrowOf(actors[i]);
            earnings += market.earningsOf(actors[i]);
        }
        assertEq(
            token.balanceOf(address(market)),
            escrows + earnings + market.unclaimedCredits() + market.brokerEarnings(),
            "PAT balance == escrows + claimed earnings + unclaimedCredits + brokerEarnings"
        );
    }

    function _assertCredits() internal view {
        Handler.Credit[] memory credits = handler.creditRecords();
        uint256 open;
        for (uint256 i; i < credits.length; ++i) {
            bool claimed = market.isCreditClaimed(credits[i].leaf);
            assertEq(claimed, credits[i].claimed, "isCreditClaimed iff a CreditClaimed named the leaf");
            if (!claimed) open += credits[i].amount;
        }
        assertEq(market.unclaimedCredits(), open, "unclaimedCredits == sum of the open committed credit leaves");
        assertEq(market.leafCount() >= credits.length, true, "leafCount covers every credit leaf");
    }

    function _assertNonces() internal view {
        Handler.NonceRecord[] memory r = handler.nonceRecords();
        address[] memory cs = new address[](r.length);
        uint256[] memory ns = new uint256[](r.length);
        for (uint256 i; i < r.length; ++i) {
            (cs[i], ns[i]) = (r[i].consumer, r[i].nonce);
        }
        bool[] memory used = market.noncesUsed(cs, ns);
        for (uint256 i; i < r.length; ++i) {
            assertEq(used[i], r[i].settled, "isNonceUsed iff a FillSettled used the nonce");
            if (!r[i].cancelled) {
                assertFalse(market.isNonceInvalidated(cs[i], ns[i]), "a nonce never cancelled is not cancelled");
            } else if (block.timestamp >= r[i].cancelEffectiveBy) {
                assertTrue(market.isNonceInvalidated(cs[i], ns[i]), "a cancellation takes effect maxSettleLag on");
            }
        }
    }

    // ------------------------------------------------------------------------ coverage

    /// The handler reaches every path it is meant to: settlement, every refusal reason, the
    /// permit variants, cancelled, early and expired withdrawals, third-party, skipped and
    /// invalid claims, nonce jumps and far nonces, cancellations, margin changes, late warps,
    /// settlement while paused. (The fuzzer picks the calls; this drives them on purpose.)
    function test_handler_reachesEveryOutcome() public {
        handler.setExactModes(true);
        for (uint256 i; i < 80; ++i) {
            if (i % 10 == 0) {
                for (uint256 c; c < handler.N_CONSUMERS(); ++c) {
                    handler.invalidate(c, i * 8 + c % 7); // seed % 8 in 0..6: single bits and wide masks
                }
            }
            if (i % 10 == 5) handler.warp(0, 0); // past maxSettleLag: the cancellations take effect
            if (i % 7 == 0) handler.accept(i, 4);
            if (i % 7 == 3) handler.warp(i * 97, 0); // the accepted fills may now be late: 9
            if (i % 7 == 5) handler.settleAccepted(i, 1);
            if (i % 13 == 4) handler.setMargin(500 + i * 37, 2); // mid-run margin changes: 6
            handler.settle(i, 5);
            if (i % 4 == 1) handler.claim(i, i); // provider or third party, with skips and dups
            if (i % 9 == 2) handler.claim(i, 6); // a bad proof reverts
            if (i % 11 == 3) handler.sweep(i, 1);
            handler.depositWithPermit(i, 1e20 + i, i % 6);
            handler.cancelWithdrawal(i, 1e18);
            if (i % 6 == 0) {
                handler.requestWithdrawal(i, 1e18, 1);
                handler.withdraw(i, 0); // too early
                handler.withdraw(i, 1); // into the window
            }
            if (i % 15 == 7) {
                handler.requestWithdrawal(i, 1e18, 1);
                handler.warp(1 days - 1, 1); // two days: past the window
                handler.withdraw(i, 1);
            }
            if (i % 5 == 0) handler.withdrawEarnings(i + 1);
            if (i % 8 == 0) handler.withdrawBrokerEarnings(i);
        }
        handler.togglePause(0);
        handler.settle(1, 3); // refused while paused
        handler.deposit(0, 1e18);
        handler.togglePause(1);

        assertGe(handler.fillsSettled(), 40, "fills settle");
        assertGe(handler.batchesSettled(), 20, "batches settle");
        for (uint8 reason = 2; reason <= 10; ++reason) {
            assertGe(handler.rejectedByReason(reason), 1, "every refusal reason occurs");
        }
        assertGe(handler.creditsClaimed(), 20, "credits claimed");
        assertGe(handler.thirdPartyClaims(), 5, "third parties claim for providers");
        assertGe(handler.claimsSkipped(), 5, "claimed credits are skipped");
        assertGe(handler.badProofs(), 3, "bad proofs revert");
        assertGe(handler.permitDeposits(), 20, "deposits with permit");
        assertGe(handler.frontRunPermits(), 5, "front-run permits");
        assertGe(handler.badPermits(), 5, "bad permits");
        assertGe(handler.cancelledWithdrawals(), 20, "cancelled withdrawals");
        assertGe(handler.withdrawals(), 5, "withdrawals paid");
        assertGe(handler.earlyWithdrawals(), 5, "early withdrawals refused");
        assertGe(handler.expiredWithdrawals(), 2, "expired withdrawals refused");
        assertGe(handler.nonceJumps(), 10, "nonce jumps across words");
        assertGe(handler.farNonces(), 3, "nonces beyond the cached word's range");
        assertGe(handler.invalidations(), 20, "nonce cancellations");
        assertGe(handler.marginChanges(), 3, "margin changes");
        assertGe(handler.lateWarps(), 5, "time warps past maxSettleLag");
        assertGe(handler.settlesWhilePaused(), 1, "settlement refused while paused");

        invariant_solvency();
        invariant_tokenFlows();
        invariant_conservation();
        invariant_credits();
        invariant_nonces();
        afterInvariant();
    }
}
