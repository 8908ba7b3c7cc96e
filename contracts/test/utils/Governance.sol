// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Fixture} from "./Fixture.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {Ownable2StepUpgradeable} from "@openzeppelin/contracts-upgradeable/access/Ownable2StepUpgradeable.sol";

/// @dev The Fixture's market, with helpers to put its ownership under an OpenZeppelin
///      TimelockController (L-5) and to run owner calls through it. The Fixture's `owner`
///      EOA becomes the timelock's only proposer (and canceller); anyone may execute a
///      ready operation; the timelock has no admin.
abstract contract GovernanceFixture is Fixture {
    uint256 internal constant TIMELOCK_DELAY = 2 days;
    uint256 private saltCounter;

    function _deployTimelock(uint256 minDelay) internal returns (TimelockController t) {
        address[] memory proposers = new address[](1);
        proposers[0] = owner;
        address[] memory executors = new address[](1);
        executors[0] = address(0); // open role: anyone executes a ready operation
        t = new TimelockController(minDelay, proposers, executors, address(0));
        vm.label(address(t), "timelock");
    }

    /// How a deployed chain moves to the timelock: the EOA owner transfers ownership, the
    /// timelock accepts it in an operation that waits its delay.
    function _moveOwnershipTo(TimelockController t) internal {
        vm.prank(owner);
        market.transferOwnership(address(t));
        _throughTimelock(t, abi.encodeCall(Ownable2StepUpgradeable.acceptOwnership, ()));
        assertEq(market.owner(), address(t), "the timelock owns the market");
    }

    /// Schedules `data` on the market through `t` with its minimum delay, as the proposer;
    /// returns the operation's id and salt.
    function _schedule(TimelockController t, bytes memory data) internal returns (bytes32 id, bytes32 salt) {
        salt = bytes32(++saltCounter);
        uint256 delay = t.getMinDelay(); // before the prank, which the next call takes
        vm.prank(owner);
        t.schedule(address(market), 0, data, bytes32(0), salt, delay);
        id = t.hashOperation(address(market), 0, data, bytes32(0), salt);
    }

    /// Executes a scheduled operation (anyone may).
    function _execute(TimelockController t, bytes memory data, bytes32 salt) internal {
        vm.prank(address(0xE7EC));
        t.execute(address(market), 0, data, bytes32(0), salt);
    }

    /// Schedules `data`, waits the delay, executes.
    function _throughTimelock(TimelockController t, bytes memory data) internal {
        (, bytes32 salt) = _schedule(t, data);
        vm.warp(block.timestamp + t.getMinDelay());
        _execute(t, data, salt);
    }

    /// What TimelockController reverts with for an operation not ready (waiting, or unset).
    function _notReady(bytes32 id) internal pure returns (bytes memory) {
        bytes32 readyState = bytes32(uint256(1) << uint8(TimelockController.OperationState.Ready));
        return abi.encodeWithSelector(TimelockController.TimelockUnexpectedOperationState.selector, id, readyState);
    }
}
