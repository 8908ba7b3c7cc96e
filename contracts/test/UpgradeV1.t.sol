// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {GovernanceFixture} from "./utils/Governance.sol";
import {Merkle} from "./utils/Merkle.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";
import {DataMarketplaceV1} from "./mocks/DataMarketplaceV1.sol";
import {DataMarketplaceV3} from "./mocks/DataMarketplaceV3.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {IERC1967} from "@openzeppelin/contracts/interfaces/IERC1967.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {PAT} from "../src/PAT.sol";

/// The deployed V1 (its bytecode, test/mocks/DataMarketplaceV1.sol) upgraded in place to
/// src/DataMarketplace.sol with initializeV2: every V1 value is kept, and the V2 rules apply
/// to it. On V1 each review finding is shown first, so these tests fail on V1 behaviour.
contract UpgradeFromV1Test is GovernanceFixture {
    bytes32 constant IMPLEMENTATION_SLOT = 0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;

    // values read before the upgrade (storage: the test has too many for the stack)
    uint256 escrow;
    uint256 unclaimed;
    uint256 brokerEarned;
    bytes32 root1;
    bytes32 domain;
    uint256 otherAmount;
    uint64 otherReady;

    function setUp() public override {
        super.setUp();
        DataMarketplaceV1 v1 = new DataMarketplaceV1();
        // the Fixture's helpers now drive a V1 proxy (same ABI for everything they call
        // except claimCredits, which V1 returns nothing from: called low-level below)
        market = DataMarketplace(
            address(
                new ERC1967Proxy(
                    address(v1),
                    abi.encodeCall(
                        DataMarketplaceV1.initialize, (owner, token, broker, brokerWallet, usersPool, MARGIN_BPS)
                    )
                )
            )
        );
        _fund(consumer, 1_000e18);
    }

    function _claimLowLevel(DataMarketplace.Claim[] memory claims) internal returns (bool ok) {
        (ok,) = address(market).call(abi.encodeWithSelector(DataMarketplace.claimCredits.selector, claims));
    }

    function _upgrade() internal returns (DataMarketplace v2) {
        v2 = new DataMarketplace();
        vm.expectEmit(address(market));
        emit IERC1967.Upgraded(address(v2));
        vm.prank(owner);
        market.upgradeToAndCall(address(v2), abi.encodeCall(DataMarketplace.initializeV2, (1 hours, 2 hours, 1 days)));
        assertEq(address(uint160(uint256(vm.load(address(market), IMPLEMENTATION_SLOT)))), address(v2), "impl");
    }

    function test_upgradeFromV1_keepsStateAndAppliesV2Rules() public {
        // --- V1 state of every kind
        DataMarketplace.Order memory o1 = _order(consumer, 3, ASK, 1);
        (Merkle.BatchRecord memory b,) = _settleNoClaim(_one(_fill(o1)), _one(_sign(CONSUMER_PK, o1)));
        DataMarketplace.Claim[] memory first = new DataMarketplace.Claim[](1);
        first[0] = b.claims[0];
        assertTrue(_claimLowLevel(first), "V1 claim");

        // V1 finding L/M-4: a sweep containing a claimed credit reverts whole
        assertFalse(_claimLowLevel(b.claims), "V1: the sweep reverts");

        // V1 finding M-1: an order accepted in time settles 30 days after its deadline
        DataMarketplace.Order memory late = _order(consumer, 1, ASK, 2);
        DataMarketplace.Fill memory lateFill = _fill(late);
        bytes memory lateSig = _sign(CONSUMER_PK, late);
        // the same kind of fill, to submit after the upgrade
        DataMarketplace.Fill memory late3Fill = _fill(_order(consumer, 1, ASK, 3));
        bytes memory late3Sig = _sign(CONSUMER_PK, late3Fill.order);
        vm.warp(late.deadline + 30 days);
        _settleNoClaim(_one(lateFill), _one(lateSig));
        assertTrue(market.isNonceUsed(consumer, 2), "V1: settled a month late");

        // V1 finding M-2: a delay of 0 is allowed
        _fund(other, 50e18);
        vm.startPrank(owner);
        market.setWithdrawalDelay(0);
        market.setBrokerMargin(3000);
        market.advancePhase(2);
        market.transferOwnership(other); // pending, not accepted
        vm.stopPrank();
        vm.prank(other);
        market.requestWithdrawal(10e18); // ready at once, and in V1 forever
        vm.prank(consumer);
        market.requestWithdrawal(1e18);

        escrow = market.escrowOf(consumer);
        unclaimed = market.unclaimedCredits();
        brokerEarned = market.brokerEarnings();
        root1 = market.batchRoot(1);
        domain = market.domainSeparator();
        (otherAmount, otherReady) = market.pendingWithdrawalOf(other);
        assertEq(otherReady, block.timestamp, "V1: delay 0");

        // --- upgrade
        _upgrade();
        _checkKept(b);
        _checkV2Rules(b, late3Fill, late3Sig);
    }

    function _checkKept(Merkle.BatchRecord memory b) internal view {
        assertEq(market.version(), 2, "V2 code");
        assertEq(market.maxSettleLag(), 1 hours, "lag");
        assertEq(market.withdrawalDelay(), 2 hours, "delay");
        assertEq(market.withdrawalWindow(), 1 days, "window");

        // --- every V1 value kept
        assertEq(market.owner(), owner, "owner");
        assertEq(market.pendingOwner(), other, "pending owner");
        assertEq(address(market.pat()), address(token), "pat");
        assertEq(market.broker(), broker, "broker");
        assertEq(market.brokerWallet(), brokerWallet, "broker wallet");
        assertEq(market.usersPoolWallet(), usersPool, "users pool");
        assertEq(market.brokerMarginBps(), 3000, "margin");
        assertEq(market.phase(), 2, "phase");
        assertFalse(market.paused(), "not paused");
        assertEq(market.escrowOf(consumer), escrow, "escrow");
        assertEq(escrow, 1_000e18 - 4 * uint256(ASK), "escrow value");
        assertEq(market.escrowOf(other), 50e18, "other escrow");
        assertEq(market.unclaimedCredits(), unclaimed, "unclaimed");
        assertEq(market.brokerEarnings(), brokerEarned, "broker earnings");
        assertEq(market.earningsOf(provider1), b.claims[0].amount, "claimed earnings");
        assertEq(market.batchCount(), 2, "batches");
        assertEq(market.leafCount(), 5, "leaves");
        assertEq(market.batchRoot(1), root1, "root");
        assertTrue(market.isCreditClaimed(b.claims[0].leaf), "claimed bit");
        assertFalse(market.isCreditClaimed(b.claims[1].leaf), "unclaimed bit");
        assertTrue(market.isNonceUsed(consumer, 1) && market.isNonceUsed(consumer, 2), "nonces");
        assertFalse(market.isNonceUsed(consumer, 3), "unused nonce");
        assertEq(market.domainSeparator(), domain, "EIP-712 domain unchanged: old signatures stay valid");
        (uint256 a, uint64 r) = market.pendingWithdrawalOf(other);
        assertEq(a, otherAmount, "V1 request amount");
        assertEq(r, otherReady, "V1 request readyAt");
    }

    function _checkV2Rules(Merkle.BatchRecord memory b, DataMarketplace.Fill memory late3Fill, bytes memory late3Sig)
        internal
    {
        DataMarketplace.Order memory late3 = late3Fill.order;

        // --- the V2 rules apply
        // M-1: the same kind of late fill is now rejected
        vm.expectEmit(address(market));
        emit DataMarketplace.FillRejected(_id(late3), 9);
        _settleNoClaim(_one(late3Fill), _one(late3Sig));
        assertFalse(market.isNonceUsed(consumer, 3), "V2: not settled");
        // L/M-4: the sweep that reverted on V1 now claims what is left
        assertEq(market.claimCredits(b.claims), b.claims[1].amount, "V2: the sweep claims the rest");
        assertEq(market.unclaimedCredits(), unclaimed - b.claims[1].amount, "V1 credits claimable after upgrade");
        // M-2: the delay floor, and the V1 request expires after its window
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalDelayTooShort.selector, 0, 1 hours));
        market.setWithdrawalDelay(0);
        (, uint64 readyAt, uint64 expiresAt) = market.withdrawalStatus(other);
        assertEq(readyAt, otherReady, "V1 readyAt kept");
        assertEq(expiresAt, otherReady + 1 days, "window from the V1 readyAt");
        vm.warp(expiresAt + 1);
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalExpired.selector, expiresAt));
        market.withdraw();
        // new requests take the V2 delay; nonces can be cancelled
        vm.prank(other);
        market.requestWithdrawal(10e18);
        (, readyAt,) = market.withdrawalStatus(other);
        assertEq(readyAt, block.timestamp + 2 hours, "V2 delay");
        vm.prank(consumer);
        market.invalidateNonces(0, uint64(1) << 4);
        vm.warp(block.timestamp + 1 hours);
        assertTrue(market.isNonceInvalidated(consumer, 4), "cancellation in effect");
        // and a fresh fill settles
        DataMarketplace.Order memory o5 = _order(consumer, 1, ASK, 5);
        _settleNoClaim(_one(_fill(o5)), _one(_sign(CONSUMER_PK, o5)));
        assertTrue(settledFill[_id(o5)], "settles after the upgrade");

        vm.prank(owner);
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        market.initializeV2(1 hours, 2 hours, 1 days);
    }

    /// The whole move of a chain deployed on V1 (L-5): its EOA owner upgrades to V2 (V1's code
    /// authorises that) and sets the guardian at once, then hands ownership to a timelock; V2
    /// refuses the EOA the next upgrade, the timelock makes it after its delay.
    function test_upgradeFromV1_thenTimelockOnly() public {
        vm.chainId(1); // not a devnet: the timelock needs 2 days
        _upgrade();
        address guardian = address(0x6A2D);
        vm.prank(owner);
        market.setGuardian(guardian);
        DataMarketplaceV3 v3 = new DataMarketplaceV3();
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.OwnerNotTimelock.selector, owner));
        market.upgradeToAndCall(address(v3), "");

        TimelockController timelock = _deployTimelock(TIMELOCK_DELAY);
        _moveOwnershipTo(timelock);
        (bool timelocked,,) = market.governanceTimelocked();
        assertTrue(timelocked, "timelocked");
        vm.prank(guardian);
        market.setPaused(true); // the guardian still pauses at once
        _throughTimelock(
            timelock,
            abi.encodeCall(
                UUPSUpgradeable.upgradeToAndCall, (address(v3), abi.encodeCall(DataMarketplaceV3.initializeV3, (7)))
            )
        );
        assertEq(market.version(), 3, "upgraded through the timelock");
        assertEq(market.escrowOf(consumer), 1_000e18, "escrow kept");
        assertTrue(market.paused(), "still paused: the owner unpauses");
    }

    /// V1 left at a delay below the settle lag: initializeV2 sets both, in one call.
    function test_upgradeFromV1_initializeV2Checks() public {
        DataMarketplace v2 = new DataMarketplace();
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.SettleLagOutOfRange.selector, 1 hours, 10 minutes, 0));
        market.upgradeToAndCall(address(v2), abi.encodeCall(DataMarketplace.initializeV2, (1 hours, 0, 1 days)));
        vm.expectRevert(
            abi.encodeWithSelector(DataMarketplace.WithdrawalWindowOutOfRange.selector, 0, 1 hours, 30 days)
        );
        market.upgradeToAndCall(address(v2), abi.encodeCall(DataMarketplace.initializeV2, (1 hours, 1 hours, 0)));
        // upgraded without the call, initializeV2 stays owner-only
        market.upgradeToAndCall(address(v2), "");
        vm.stopPrank();
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, other));
        market.initializeV2(1 hours, 1 hours, 1 days);
        vm.prank(owner);
        market.initializeV2(1 hours, 1 hours, 1 days);
        assertEq(market.maxSettleLag(), 1 hours, "set");
    }

    /// V2 keeps escrow in 127 bits: a V1 proxy over a token whose supply could reach bit 127
    /// is not upgraded (its accounts could hold escrow there), one over PAT's is.
    function test_upgradeFromV1_refusesATokenBeyond127Bits() public {
        PAT big = new PAT(address(this), uint256(1) << 127);
        DataMarketplaceV1 v1 = new DataMarketplaceV1();
        DataMarketplace m = DataMarketplace(
            address(
                new ERC1967Proxy(
                    address(v1),
                    abi.encodeCall(
                        DataMarketplaceV1.initialize,
                        (owner, IERC20(address(big)), broker, brokerWallet, usersPool, MARGIN_BPS)
                    )
                )
            )
        );
        DataMarketplace v2 = new DataMarketplace();
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.SupplyTooLarge.selector, uint256(1) << 127));
        m.upgradeToAndCall(address(v2), abi.encodeCall(DataMarketplace.initializeV2, (1 hours, 1 hours, 1 days)));
    }

    /// Paused under V1 at the upgrade: the pause clock starts at the upgrade, and a V1 request
    /// not ready yet waits for the end of the pause.
    function test_upgradeFromV1_whilePaused() public {
        vm.prank(consumer);
        market.requestWithdrawal(100e18); // V1 delay 3600
        vm.prank(owner);
        market.setPaused(true);
        vm.warp(block.timestamp + 600);
        _upgrade();
        vm.warp(block.timestamp + 1 days);
        vm.prank(owner);
        market.setPaused(false);
        assertEq(market.pauseClock(), 1 days, "counted from the upgrade");
        (, uint64 readyAt,) = market.withdrawalStatus(consumer);
        assertEq(readyAt, START + 3600 + 1 days, "pushed back by the pause after the upgrade");
        vm.warp(readyAt);
        vm.prank(consumer);
        market.withdraw();
        assertEq(token.balanceOf(consumer), 100e18, "paid");
    }
}
