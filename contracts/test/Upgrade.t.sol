// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {GovernanceFixture} from "./utils/Governance.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";
import {DataMarketplaceV3, NotUUPS} from "./mocks/DataMarketplaceV3.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {UUPSUpgradeable} from "@openzeppelin/contracts-upgradeable/proxy/utils/UUPSUpgradeable.sol";
import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC1967Utils} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Utils.sol";
import {IERC1967} from "@openzeppelin/contracts/interfaces/IERC1967.sol";

/// Upgrades of V2 go through the owner, an OpenZeppelin TimelockController (L-5; the rules
/// of that are in test/Timelock.t.sol).
contract UpgradeTest is GovernanceFixture {
    bytes32 constant IMPLEMENTATION_SLOT = 0x360894a13ba1a3210667c828492db98dca3e2076cc3735a920a3ca505d382bbc;
    TimelockController timelock;

    function setUp() public override {
        super.setUp();
        timelock = _deployTimelock(TIMELOCK_DELAY);
    }

    function _implementation() internal view returns (address) {
        return address(uint160(uint256(vm.load(address(market), IMPLEMENTATION_SLOT))));
    }

    function test_upgrade_keepsAllState() public {
        // build up state of every kind
        _settleValid(3, 1);
        _fund(other, 50e18);
        vm.prank(consumer);
        market.requestWithdrawal(10e18);
        vm.startPrank(owner);
        market.setBrokerMargin(3000);
        market.advancePhase(2);
        market.setWithdrawalDelay(7200);
        vm.stopPrank();
        _moveOwnershipTo(timelock);
        // pending, not accepted
        _throughTimelock(timelock, abi.encodeCall(Ownable2StepUpgradeable.transferOwnership, (other)));
        bytes32 domainBefore = market.domainSeparator();
        bytes32 rootBefore = market.batchRoot(1);
        (uint256 pendingAmount, uint64 pendingReady) = market.pendingWithdrawalOf(consumer);

        DataMarketplaceV3 v3 = new DataMarketplaceV3();
        bytes memory up = abi.encodeCall(
            UUPSUpgradeable.upgradeToAndCall, (address(v3), abi.encodeCall(DataMarketplaceV3.initializeV3, (42)))
        );
        (, bytes32 salt) = _schedule(timelock, up);
        vm.warp(block.timestamp + TIMELOCK_DELAY);
        vm.expectEmit(address(market));
        emit IERC1967.Upgraded(address(v3));
        _execute(timelock, up, salt);

        DataMarketplaceV3 upgraded = DataMarketplaceV3(address(market));
        assertEq(_implementation(), address(v3), "implementation slot");
        assertEq(upgraded.version(), 3, "new code");
        assertEq(upgraded.answer(), 42, "new state initialized");

        assertEq(upgraded.owner(), address(timelock), "owner");
        assertEq(upgraded.pendingOwner(), other, "pending owner");
        assertEq(address(upgraded.pat()), address(token), "pat");
        assertEq(upgraded.broker(), broker, "broker");
        assertEq(upgraded.brokerWallet(), brokerWallet, "broker wallet");
        assertEq(upgraded.usersPoolWallet(), usersPool, "users pool");
        assertEq(upgraded.brokerMarginBps(), 3000, "margin");
        assertEq(upgraded.phase(), 2, "phase");
        assertEq(upgraded.withdrawalDelay(), 7200, "delay");
        assertEq(upgraded.escrowOf(consumer), 1_000e18 - 3 * ASK, "escrow");
        assertEq(upgraded.escrowOf(other), 50e18, "other escrow");
        (uint256 a, uint64 r) = upgraded.pendingWithdrawalOf(consumer);
        assertEq(a, pendingAmount, "pending withdrawal amount");
        assertEq(r, pendingReady, "pending withdrawal time");
        assertEq(upgraded.earningsOf(provider1), BID, "earnings p1");
        assertEq(upgraded.earningsOf(provider2), 2 * BID, "earnings p2");
        assertEq(upgraded.brokerEarnings(), 3 * (ASK - BID), "broker earnings");
        assertTrue(upgraded.isNonceUsed(consumer, 1), "nonce");
        assertEq(upgraded.batchCount(), 1, "batch and leaf counters");
        assertEq(upgraded.leafCount(), 3, "batch and leaf counters");
        assertTrue(rootBefore != bytes32(0) && upgraded.batchRoot(1) == rootBefore, "batch root");
        assertTrue(upgraded.isCreditClaimed(1) && upgraded.isCreditClaimed(2), "claims");
        assertEq(upgraded.domainSeparator(), domainBefore, "EIP-712 domain unchanged: old signatures stay valid");

        // and it keeps working: a replayed fill is still rejected, a new one settles
        DataMarketplace.Order memory o = _order(consumer, 1, ASK, 1);
        vm.expectEmit(address(market));
        emit DataMarketplace.FillRejected(_id(o), 3);
        _settleOne(_fill(o), _sign(CONSUMER_PK, o));
        assertTrue(settledFill[_settleValid(1, 2)], "settles after upgrade");

        vm.expectRevert(Initializable.InvalidInitialization.selector);
        upgraded.initializeV3(7);
    }

    function test_upgrade_revert_notOwner() public {
        DataMarketplaceV3 v3 = new DataMarketplaceV3();
        vm.prank(broker);
        vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, broker));
        market.upgradeToAndCall(address(v3), "");
        assertEq(_implementation(), address(impl), "unchanged");
    }

    function test_upgrade_revert_notUUPS() public {
        NotUUPS bad = new NotUUPS();
        _moveOwnershipTo(timelock);
        vm.prank(address(timelock)); // as an executed operation of the timelock would
        vm.expectRevert(abi.encodeWithSelector(ERC1967Utils.ERC1967InvalidImplementation.selector, address(bad)));
        market.upgradeToAndCall(address(bad), "");
    }

    function test_upgrade_revert_directlyOnImplementation() public {
        DataMarketplaceV3 v3 = new DataMarketplaceV3();
        vm.prank(owner);
        vm.expectRevert(UUPSUpgradeable.UUPSUnauthorizedCallContext.selector);
        impl.upgradeToAndCall(address(v3), "");
    }

    function test_implementation_cannotBeInitialized() public {
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        impl.initialize(address(this), IERC20(address(token)), broker, brokerWallet, usersPool, 0);
        assertEq(impl.owner(), address(0), "implementation stays ownerless");
    }

    function test_proxiableUUID() public view {
        assertEq(impl.proxiableUUID(), IMPLEMENTATION_SLOT, "ERC-1822 slot");
    }
}
