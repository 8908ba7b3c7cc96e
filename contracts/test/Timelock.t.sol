// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {GovernanceFixture} from "./utils/Governance.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";
import {DataMarketplaceV3} from "./mocks/DataMarketplaceV3.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {IERC1967} from "@openzeppelin/contracts/interfaces/IERC1967.sol";

/// @dev Answers getMinDelay like a timelock with two days, and forwards any call at once.
contract FakeTimelock {
    function getMinDelay() external pure returns (uint256) {
        return 2 days;
    }

    function forward(address target, bytes calldata data) external {
        (bool ok, bytes memory ret) = target.call(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }
}

/// Regression tests of finding L-5 (the owner could upgrade at once, with no timelock):
/// upgrades need an owner that is an OpenZeppelin TimelockController with a delay of at
/// least 2 days, so they and every other owner call (the margin...) wait that delay; the
/// guardian pauses at once. Tests marked (L-5) are the finding itself: V2 before the fix let
/// the upgrade through. The others pin the flow through the timelock; they fail if the
/// timelock lets an operation run early (a timelock of delay 0) or the contract has a way
/// around its owner.
contract TimelockTest is GovernanceFixture {
    bytes32 constant IMPLEMENTATION_SLOT = 0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;
    uint256 constant MAINNET = 1;

    TimelockController timelock;
    DataMarketplaceV3 v3;
    address guardian = address(0x6A2D);

    function setUp() public override {
        super.setUp();
        vm.chainId(MAINNET); // not a devnet: an upgrade needs a timelock delay of 2 days
        timelock = _deployTimelock(TIMELOCK_DELAY);
        v3 = new DataMarketplaceV3();
    }

    function _implementation() internal view returns (address) {
        return address(uint160(uint256(vm.load(address(market), IMPLEMENTATION_SLOT))));
    }

    function _upgradeCall() internal view returns (bytes memory) {
        return abi.encodeCall(
            UUPSUpgradeable.upgradeToAndCall, (address(v3), abi.encodeCall(DataMarketplaceV3.initializeV3, (42)))
        );
    }

    function _governance() internal view returns (bool timelocked, uint256 delay, uint256 minDelay) {
        return market.governanceTimelocked();
    }

    // ------------------------------------------------------- the accepted timelock

    /// The code hash the contract accepts is this build's TimelockController (what the Rust
    /// side deploys from chain/artifacts/TimelockController.json). Fails after an
    /// OpenZeppelin or solc change until TIMELOCK_CODEHASH is updated (read its comment).
    function test_L5_thisBuildsTimelockIsAccepted() public {
        (bool timelocked, uint256 delay, uint256 minDelay) = _governance();
        assertFalse(timelocked, "an EOA owner is not a timelock");
        assertEq(delay, 0, "no delay");
        assertEq(minDelay, 2 days, "2 days off a devnet");

        _moveOwnershipTo(timelock);
        (timelocked, delay, minDelay) = _governance();
        assertTrue(timelocked, "TIMELOCK_CODEHASH is this build's TimelockController");
        assertEq(delay, TIMELOCK_DELAY, "its delay");
        // no immutables: every deployment has the same code, whatever its arguments
        assertEq(keccak256(type(TimelockController).runtimeCode), address(timelock).codehash, "one code");
        assertEq(address(_deployTimelock(3 days)).codehash, address(timelock).codehash, "one code hash");
    }

    // ---------------------------------------------------------------- full flow

    /// A deployed V2 moves to a timelock and upgrades through it: the upgrade waits the whole
    /// delay, then runs and keeps every value.
    function test_L5_upgradeThroughTimelock_keepsAllState() public {
        _settleValid(3, 1);
        _fund(other, 50e18);
        vm.prank(consumer);
        market.requestWithdrawal(10e18);
        vm.prank(owner);
        market.setGuardian(guardian); // while the EOA still owns it: at once
        bytes32 domainBefore = market.domainSeparator();

        // the move: transfer, then the timelock accepts after its delay
        vm.prank(owner);
        market.transferOwnership(address(timelock));
        bytes memory accept = abi.encodeCall(Ownable2StepUpgradeable.acceptOwnership, ());
        (bytes32 acceptId, bytes32 acceptSalt) = _schedule(timelock, accept);
        vm.expectRevert(_notReady(acceptId));
        _execute(timelock, accept, acceptSalt);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        _execute(timelock, accept, acceptSalt);
        assertEq(market.owner(), address(timelock), "the timelock owns the market");
        assertEq(market.pendingOwner(), address(0), "nothing pending");

        // the upgrade: scheduled, refused before the delay, run after it
        bytes memory up = _upgradeCall();
        (bytes32 id, bytes32 salt) = _schedule(timelock, up);
        uint256 scheduledAt = block.timestamp;
        assertEq(timelock.getTimestamp(id), scheduledAt + TIMELOCK_DELAY, "ready in 2 days");
        vm.expectRevert(_notReady(id));
        _execute(timelock, up, salt);
        vm.warp(scheduledAt + TIMELOCK_DELAY - 1);
        vm.expectRevert(_notReady(id));
        _execute(timelock, up, salt);
        assertEq(_implementation(), address(impl), "not upgraded a second early");

        vm.warp(scheduledAt + TIMELOCK_DELAY);
        vm.expectEmit(address(market));
        emit IERC1967.Upgraded(address(v3));
        _execute(timelock, up, salt);
        assertTrue(timelock.isOperationDone(id), "done");

        DataMarketplaceV3 upgraded = DataMarketplaceV3(address(market));
        assertEq(_implementation(), address(v3), "implementation slot");
        assertEq(upgraded.version(), 3, "new code");
        assertEq(upgraded.answer(), 42, "initialized in the same call");
        assertEq(upgraded.owner(), address(timelock), "owner");
        assertEq(upgraded.guardian(), guardian, "guardian");
        assertEq(upgraded.escrowOf(consumer), 1_000e18 - 3 * ASK, "escrow");
        assertEq(upgraded.escrowOf(other), 50e18, "other escrow");
        (uint256 amount,) = upgraded.pendingWithdrawalOf(consumer);
        assertEq(amount, 10e18, "pending withdrawal");
        assertEq(upgraded.earningsOf(provider1), BID, "earnings");
        assertEq(upgraded.brokerEarnings(), 3 * (ASK - BID), "broker earnings");
        assertTrue(upgraded.isNonceUsed(consumer, 1), "nonce");
        assertEq(upgraded.batchCount(), 1, "batches");
        assertEq(upgraded.brokerMarginBps(), MARGIN_BPS, "margin");
        assertEq(upgraded.domainSeparator(), domainBefore, "EIP-712 domain");
        (bool timelocked,,) = upgraded.governanceTimelocked();
        assertTrue(timelocked, "still timelocked: the next upgrade goes through it too");
        assertTrue(settledFill[_settleValid(1, 2)], "settles after the upgrade");

        // an operation runs once
        vm.expectRevert(_notReady(id));
        _execute(timelock, up, salt);
    }

    // ------------------------------------------------------------ (1) old owner

    /// After the move the old EOA owner, though the timelock's proposer, cannot
    /// upgrade or change anything directly.
    function test_L5_oldOwnerCannotUpgradeAfterTransfer() public {
        _moveOwnershipTo(timelock);
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, owner));
        market.upgradeToAndCall(address(v3), "");
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, owner));
        market.setBroker(other);
        vm.stopPrank();
        assertEq(_implementation(), address(impl), "unchanged");
    }

    // ------------------------------------------------------- (2) before the delay

    /// An upgrade through the timelock cannot run before its delay, nor be
    /// scheduled with a shorter one.
    function test_L5_upgradeBeforeDelayReverts() public {
        _moveOwnershipTo(timelock);
        bytes memory up = _upgradeCall();
        (bytes32 id, bytes32 salt) = _schedule(timelock, up);
        vm.warp(block.timestamp + TIMELOCK_DELAY - 1);
        vm.expectRevert(_notReady(id));
        _execute(timelock, up, salt);
        assertEq(_implementation(), address(impl), "not upgraded");

        vm.prank(owner);
        vm.expectRevert(
            abi.encodeWithSelector(TimelockController.TimelockInsufficientDelay.selector, 1 hours, TIMELOCK_DELAY)
        );
        timelock.schedule(address(market), 0, up, bytes32(0), bytes32("short"), 1 hours);
    }

    // ------------------------------------------- (3) an owner that is no timelock

    /// (L-5) The finding itself: an EOA owner upgraded at once. Now refused, on a
    /// devnet too.
    function test_L5_eoaOwnerCannotUpgrade() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.OwnerNotTimelock.selector, owner));
        market.upgradeToAndCall(address(v3), "");

        vm.chainId(31337);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.OwnerNotTimelock.selector, owner));
        market.upgradeToAndCall(address(v3), "");
        assertEq(_implementation(), address(impl), "unchanged");
    }

    /// (L-5) A contract claiming a long delay is not a timelock: only the code of
    /// OpenZeppelin's TimelockController proves its calls waited.
    function test_L5_fakeTimelockCannotUpgrade() public {
        FakeTimelock fake = new FakeTimelock();
        vm.prank(owner);
        market.transferOwnership(address(fake));
        fake.forward(address(market), abi.encodeCall(Ownable2StepUpgradeable.acceptOwnership, ()));
        assertEq(market.owner(), address(fake), "the fake owns it");
        (bool timelocked,,) = _governance();
        assertFalse(timelocked, "not timelocked");

        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.OwnerNotTimelock.selector, address(fake)));
        fake.forward(address(market), _upgradeCall());
        assertEq(_implementation(), address(impl), "unchanged");
    }

    /// (L-5) A real timelock with a delay under 2 days cannot upgrade.
    function test_L5_timelockWithShortDelayCannotUpgrade() public {
        TimelockController quick = _deployTimelock(1 days);
        _moveOwnershipTo(quick);
        (bool timelocked, uint256 delay,) = _governance();
        assertFalse(timelocked, "1 day is too short");
        assertEq(delay, 1 days, "its delay");

        bytes memory up = _upgradeCall();
        (, bytes32 salt) = _schedule(quick, up);
        vm.warp(block.timestamp + 1 days);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.TimelockDelayTooShort.selector, 1 days, 2 days));
        _execute(quick, up, salt);
        assertEq(_implementation(), address(impl), "unchanged");
    }

    /// (L-5) A timelock that lowers its own delay (an operation that waits the old delay) below 2
    /// days can no longer upgrade, even an upgrade scheduled before.
    function test_L5_loweredDelayCannotUpgrade() public {
        _moveOwnershipTo(timelock);
        bytes memory up = _upgradeCall();
        (, bytes32 upSalt) = _schedule(timelock, up);
        bytes memory lower = abi.encodeCall(TimelockController.updateDelay, (1 hours));
        vm.prank(owner);
        timelock.schedule(address(timelock), 0, lower, bytes32(0), bytes32("lower"), TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        timelock.execute(address(timelock), 0, lower, bytes32(0), bytes32("lower"));
        assertEq(timelock.getMinDelay(), 1 hours, "lowered");

        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.TimelockDelayTooShort.selector, 1 hours, 2 days));
        _execute(timelock, up, upSalt);
    }

    /// On a devnet (anvil's chain id) any delay will do, 0 included, but still a timelock.
    function test_L5_devnetTimelockWithoutDelayUpgrades() public {
        vm.chainId(31337);
        TimelockController instant = _deployTimelock(0);
        _moveOwnershipTo(instant);
        (bool timelocked, uint256 delay, uint256 minDelay) = _governance();
        assertTrue(timelocked, "timelocked on a devnet");
        assertEq(delay, 0, "no delay");
        assertEq(minDelay, 0, "none needed");
        _throughTimelock(instant, _upgradeCall());
        assertEq(_implementation(), address(v3), "upgraded");

        vm.chainId(MAINNET);
        (timelocked,, minDelay) = DataMarketplace(address(market)).governanceTimelocked();
        assertFalse(timelocked, "the same timelock is too quick off a devnet");
        assertEq(minDelay, 2 days, "2 days");
    }

    // ------------------------------------------------------------ (4) the margin

    /// Once the timelock owns the market, the margin changes only through it,
    /// after its delay.
    function test_L5_marginChangeOnlyThroughTimelock() public {
        _moveOwnershipTo(timelock);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, owner));
        market.setBrokerMargin(3000);

        bytes memory setMargin = abi.encodeCall(DataMarketplace.setBrokerMargin, (3000));
        (bytes32 id, bytes32 salt) = _schedule(timelock, setMargin);
        vm.warp(block.timestamp + TIMELOCK_DELAY - 1);
        vm.expectRevert(_notReady(id));
        _execute(timelock, setMargin, salt);
        assertEq(market.brokerMarginBps(), MARGIN_BPS, "unchanged before the delay");

        vm.warp(block.timestamp + 1);
        vm.expectEmit(address(market));
        emit DataMarketplace.BrokerMarginSet(MARGIN_BPS, 3000);
        _execute(timelock, setMargin, salt);
        assertEq(market.brokerMarginBps(), 3000, "changed after it");

        // the proposer may cancel a scheduled change before it runs
        bytes memory back = abi.encodeCall(DataMarketplace.setBrokerMargin, (MARGIN_BPS));
        (bytes32 backId, bytes32 backSalt) = _schedule(timelock, back);
        vm.prank(owner);
        timelock.cancel(backId);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.expectRevert(_notReady(backId));
        _execute(timelock, back, backSalt);
        assertEq(market.brokerMarginBps(), 3000, "cancelled");
    }

    // ---------------------------------------------------------- (5) the guardian

    /// (L-5) The guardian pauses at once while the owner is a timelock; anyone else
    /// is refused.
    function test_L5_guardianPausesAtOnce() public {
        _moveOwnershipTo(timelock);
        bytes memory setGuardian = abi.encodeCall(DataMarketplace.setGuardian, (guardian));
        (, bytes32 salt) = _schedule(timelock, setGuardian);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.expectEmit(address(market));
        emit DataMarketplace.GuardianSet(address(0), guardian);
        _execute(timelock, setGuardian, salt);
        assertEq(market.guardian(), guardian, "set");

        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, other));
        market.setPaused(true);
        vm.prank(owner); // the old owner neither
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, owner));
        market.setPaused(true);

        uint256 before = block.timestamp;
        vm.expectEmit(address(market));
        emit DataMarketplace.PausedSet(true);
        vm.prank(guardian);
        market.setPaused(true);
        assertTrue(market.paused(), "paused at once");
        assertEq(block.timestamp, before, "in the same block");
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        bytes memory packed = market.encodeBatch(_one(_fill(o)), _one(_sign(CONSUMER_PK, o)));
        vm.prank(broker);
        vm.expectRevert(DataMarketplace.MarketPaused.selector);
        market.settleBatch(packed);
        vm.prank(guardian);
        market.setPaused(true); // again: nothing changes
        assertTrue(market.paused(), "still paused");
    }

    /// The guardian cannot unpause; the owner (the timelock) does, after its delay.
    function test_L5_guardianCannotUnpause_ownerDoes() public {
        _moveOwnershipTo(timelock);
        _throughTimelock(timelock, abi.encodeCall(DataMarketplace.setGuardian, (guardian)));
        vm.prank(guardian);
        market.setPaused(true);
        vm.warp(block.timestamp + 1 hours);

        vm.prank(guardian);
        vm.expectRevert(DataMarketplace.GuardianCannotUnpause.selector);
        market.setPaused(false);
        assertTrue(market.paused(), "still paused");

        _throughTimelock(timelock, abi.encodeCall(DataMarketplace.setPaused, (false)));
        assertFalse(market.paused(), "the owner unpaused");
        assertEq(market.pauseClock(), 1 hours + TIMELOCK_DELAY, "the pause clock counted all of it");
    }

    /// The guardian is set by the owner only, and removed with address(0).
    function test_L5_setGuardianOwnerOnly() public {
        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, other));
        market.setGuardian(other);
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, guardian));
        market.setPaused(true);

        vm.prank(owner); // an EOA owner sets it at once
        market.setGuardian(guardian);
        vm.prank(guardian);
        market.setPaused(true);
        vm.prank(owner); // and unpauses at once
        market.setPaused(false);
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, guardian));
        market.setGuardian(other);

        vm.expectEmit(address(market));
        emit DataMarketplace.GuardianSet(guardian, address(0));
        vm.prank(owner);
        market.setGuardian(address(0));
        vm.prank(guardian);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, guardian));
        market.setPaused(true);
    }

    /// The way out of an emergency: the guardian pauses, the owner schedules the fix and the
    /// unpause as one batch, which runs after the delay.
    function test_L5_fixAndUnpauseInOneBatch() public {
        _moveOwnershipTo(timelock);
        _throughTimelock(timelock, abi.encodeCall(DataMarketplace.setGuardian, (guardian)));
        vm.prank(guardian);
        market.setPaused(true);

        address[] memory targets = new address[](2);
        uint256[] memory values = new uint256[](2);
        bytes[] memory payloads = new bytes[](2);
        targets[0] = address(market);
        targets[1] = address(market);
        payloads[0] = _upgradeCall();
        payloads[1] = abi.encodeCall(DataMarketplace.setPaused, (false));
        vm.prank(owner);
        timelock.scheduleBatch(targets, values, payloads, bytes32(0), bytes32("fix"), TIMELOCK_DELAY);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        timelock.executeBatch(targets, values, payloads, bytes32(0), bytes32("fix"));
        assertEq(_implementation(), address(v3), "fixed");
        assertFalse(market.paused(), "and open again");
    }
}
