// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Fixture} from "./utils/Fixture.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";
import {ReentrantToken} from "./mocks/ReentrantToken.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";
import {Initializable} from "@openzeppelin/contracts-upgradeable/proxy/utils/Initializable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {PAT} from "../src/PAT.sol";

/// Initialization, governance, escrow, earnings and views.
contract DataMarketplaceTest is Fixture {
    address stranger = address(0x5757);

    function _unauthorized(address who) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, who);
    }

    // --------------------------------------------------------- initialization

    function test_initialState() public view {
        assertEq(market.owner(), owner, "owner");
        assertEq(address(market.pat()), address(token), "pat");
        assertEq(market.broker(), broker, "broker");
        assertEq(market.brokerWallet(), brokerWallet, "brokerWallet");
        assertEq(market.usersPoolWallet(), usersPool, "usersPool");
        assertEq(market.brokerMarginBps(), MARGIN_BPS, "margin");
        assertEq(market.phase(), 1, "phase starts at 1");
        assertFalse(market.paused(), "not paused");
        assertEq(market.withdrawalDelay(), 3600, "default delay");
        assertEq(market.maxSettleLag(), 1 hours, "default settle lag");
        assertEq(market.withdrawalWindow(), 1 days, "default withdrawal window");
        assertEq(market.version(), 2, "version");
        assertEq(market.brokerEarnings(), 0, "no broker earnings");
        assertEq(market.MAX_BATCH(), 1000, "MAX_BATCH");
    }

    function test_initialize_emitsConfig() public {
        DataMarketplace fresh = new DataMarketplace();
        vm.expectEmit(); // any emitter: the proxy address is not known yet
        emit DataMarketplace.PhaseAdvanced(0, 1);
        vm.expectEmit();
        emit DataMarketplace.BrokerSet(address(0), broker);
        vm.expectEmit();
        emit DataMarketplace.BrokerWalletSet(address(0), brokerWallet);
        vm.expectEmit();
        emit DataMarketplace.UsersPoolWalletSet(address(0), usersPool);
        vm.expectEmit();
        emit DataMarketplace.BrokerMarginSet(0, 100);
        vm.expectEmit();
        emit DataMarketplace.WithdrawalDelaySet(0, 3600);
        vm.expectEmit();
        emit DataMarketplace.MaxSettleLagSet(0, 1 hours);
        vm.expectEmit();
        emit DataMarketplace.WithdrawalWindowSet(0, 1 days);
        new ERC1967Proxy(address(fresh), _initCall(owner, IERC20(address(token)), 100));
    }

    function test_initialize_revert_twice() public {
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        market.initialize(owner, IERC20(address(token)), broker, brokerWallet, usersPool, 0);
    }

    function test_initialize_revert_onImplementation() public {
        vm.expectRevert(Initializable.InvalidInitialization.selector);
        impl.initialize(owner, IERC20(address(token)), broker, brokerWallet, usersPool, 0);
    }

    function _deployExpectRevert(bytes memory init, bytes memory err) internal {
        DataMarketplace fresh = new DataMarketplace();
        vm.expectRevert(err);
        new ERC1967Proxy(address(fresh), init);
    }

    function test_initialize_revert_badArguments() public {
        IERC20 pat_ = IERC20(address(token));
        bytes memory zero = abi.encodeWithSelector(DataMarketplace.ZeroAddress.selector);
        _deployExpectRevert(
            _initCall(address(0), pat_, 0),
            abi.encodeWithSelector(OwnableUpgradeable.OwnableInvalidOwner.selector, address(0))
        );
        _deployExpectRevert(_initCall(owner, IERC20(address(0)), 0), zero);
        _deployExpectRevert(
            abi.encodeCall(DataMarketplace.initialize, (owner, pat_, address(0), brokerWallet, usersPool, 0)), zero
        );
        _deployExpectRevert(
            abi.encodeCall(DataMarketplace.initialize, (owner, pat_, broker, address(0), usersPool, 0)), zero
        );
        _deployExpectRevert(
            abi.encodeCall(DataMarketplace.initialize, (owner, pat_, broker, brokerWallet, address(0), 0)), zero
        );
        _deployExpectRevert(
            _initCall(owner, pat_, 5001),
            abi.encodeWithSelector(DataMarketplace.BrokerMarginTooHigh.selector, 5001, 5000)
        );
    }

    // ------------------------------------------------------------- governance

    function test_setBrokerMargin() public {
        vm.expectEmit(address(market));
        emit DataMarketplace.BrokerMarginSet(MARGIN_BPS, 5000);
        vm.prank(owner);
        market.setBrokerMargin(5000);
        assertEq(market.brokerMarginBps(), 5000, "margin set");
    }

    function test_setBrokerMargin_revert() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.BrokerMarginTooHigh.selector, 5001, 5000));
        market.setBrokerMargin(5001);
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.setBrokerMargin(1);
    }

    function test_setBrokerWallet() public {
        vm.expectEmit(address(market));
        emit DataMarketplace.BrokerWalletSet(brokerWallet, stranger);
        vm.prank(owner);
        market.setBrokerWallet(stranger);
        assertEq(market.brokerWallet(), stranger, "wallet set");

        vm.prank(owner);
        vm.expectRevert(DataMarketplace.ZeroAddress.selector);
        market.setBrokerWallet(address(0));
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.setBrokerWallet(stranger);
    }

    function test_setUsersPoolWallet() public {
        vm.expectEmit(address(market));
        emit DataMarketplace.UsersPoolWalletSet(usersPool, stranger);
        vm.prank(owner);
        market.setUsersPoolWallet(stranger);
        assertEq(market.usersPoolWallet(), stranger, "pool set");

        vm.prank(owner);
        vm.expectRevert(DataMarketplace.ZeroAddress.selector);
        market.setUsersPoolWallet(address(0));
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.setUsersPoolWallet(stranger);
    }

    function test_setBroker() public {
        vm.expectEmit(address(market));
        emit DataMarketplace.BrokerSet(broker, stranger);
        vm.prank(owner);
        market.setBroker(stranger);
        assertEq(market.broker(), stranger, "broker set");

        // the old broker can no longer settle
        vm.prank(broker);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.NotBroker.selector, broker));
        market.settleBatch("");

        vm.prank(owner);
        vm.expectRevert(DataMarketplace.ZeroAddress.selector);
        market.setBroker(address(0));
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.setBroker(stranger);
    }

    function test_setWithdrawalDelay() public {
        vm.expectEmit(address(market));
        emit DataMarketplace.WithdrawalDelaySet(3600, 7200);
        vm.prank(owner);
        market.setWithdrawalDelay(7200);
        assertEq(market.withdrawalDelay(), 7200, "delay set");
        // V2: never below maxSettleLag (1 hour by default), so never 0
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalDelayTooShort.selector, 0, 3600));
        market.setWithdrawalDelay(0);

        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalDelayTooLong.selector, 30 days + 1, 30 days));
        market.setWithdrawalDelay(30 days + 1);
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.setWithdrawalDelay(1);
    }

    function test_advancePhase() public {
        vm.startPrank(owner);
        vm.expectEmit(address(market));
        emit DataMarketplace.PhaseAdvanced(1, 2);
        market.advancePhase(2);
        market.advancePhase(4); // skipping forward is allowed
        assertEq(market.phase(), 4, "phase 4");
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidPhase.selector, 4, 5));
        market.advancePhase(5);
        vm.stopPrank();
    }

    function test_advancePhase_revert() public {
        vm.startPrank(owner);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidPhase.selector, 1, 1));
        market.advancePhase(1);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidPhase.selector, 1, 0));
        market.advancePhase(0);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidPhase.selector, 1, 5));
        market.advancePhase(5);
        market.advancePhase(3);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidPhase.selector, 3, 2));
        market.advancePhase(2);
        vm.stopPrank();
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.advancePhase(4);
    }

    function test_setPaused() public {
        vm.expectEmit(address(market));
        emit DataMarketplace.PausedSet(true);
        vm.prank(owner);
        market.setPaused(true);
        assertTrue(market.paused(), "paused");
        vm.prank(owner);
        market.setPaused(false);
        assertFalse(market.paused(), "unpaused");
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.setPaused(true);
    }

    function test_ownership_twoStep() public {
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.transferOwnership(stranger);

        vm.prank(owner);
        market.transferOwnership(stranger);
        assertEq(market.owner(), owner, "owner unchanged until accepted");
        assertEq(market.pendingOwner(), stranger, "pending");

        vm.prank(broker);
        vm.expectRevert(_unauthorized(broker));
        market.acceptOwnership();

        vm.prank(stranger);
        market.acceptOwnership();
        assertEq(market.owner(), stranger, "new owner");
        vm.prank(owner);
        vm.expectRevert(_unauthorized(owner));
        market.setPaused(true);
    }

    function test_renounceOwnership_disabled() public {
        vm.prank(owner);
        vm.expectRevert(DataMarketplace.RenounceOwnershipDisabled.selector);
        market.renounceOwnership();
        vm.prank(stranger);
        vm.expectRevert(_unauthorized(stranger));
        market.renounceOwnership();
    }

    // ------------------------------------------------------------------ deposit

    function test_deposit() public {
        token.transfer(other, 5e18);
        vm.startPrank(other);
        token.approve(address(market), 5e18);
        vm.expectEmit(address(market));
        emit DataMarketplace.Deposited(other, 5e18);
        market.deposit(5e18);
        vm.stopPrank();
        assertEq(market.escrowOf(other), 5e18, "escrow");
        assertEq(token.balanceOf(address(market)), 1_005e18, "tokens held");
    }

    function test_deposit_revert_escrowAbove128Bits() public {
        PAT big = new PAT(address(this), type(uint256).max);
        DataMarketplace m = DataMarketplace(
            address(new ERC1967Proxy(address(impl), _initCall(owner, IERC20(address(big)), MARGIN_BPS)))
        );
        big.approve(address(m), type(uint256).max);
        uint256 full = type(uint128).max >> 1; // bit 127 is the account's cancellation flag
        m.deposit(full);
        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 127, full + 1));
        m.deposit(1);
        assertEq(m.escrowOf(address(this)), full, "full escrow, nonce bits untouched");
        assertFalse(m.isNonceUsed(address(this), 0), "no nonce used");
    }

    function test_deposit_revert() public {
        vm.prank(other);
        vm.expectRevert(DataMarketplace.ZeroAmount.selector);
        market.deposit(0);

        vm.prank(other);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 1));
        market.deposit(1);

        vm.prank(owner);
        market.setPaused(true);
        vm.prank(other);
        vm.expectRevert(DataMarketplace.MarketPaused.selector);
        market.deposit(1);
    }

    function _permit(uint256 pk, uint256 amount, uint256 deadline)
        internal
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        address holder = vm.addr(pk);
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                holder,
                address(market),
                amount,
                token.nonces(holder),
                deadline
            )
        );
        return vm.sign(pk, keccak256(abi.encodePacked(hex"1901", token.DOMAIN_SEPARATOR(), structHash)));
    }

    function test_depositWithPermit() public {
        token.transfer(other, 7e18);
        uint256 deadline = block.timestamp + 60;
        (uint8 v, bytes32 r, bytes32 s) = _permit(OTHER_PK, 7e18, deadline);
        vm.expectEmit(address(market));
        emit DataMarketplace.Deposited(other, 7e18);
        vm.prank(other);
        market.depositWithPermit(7e18, deadline, v, r, s);
        assertEq(market.escrowOf(other), 7e18, "escrow via permit");
        assertEq(token.allowance(other, address(market)), 0, "allowance used up");
    }

    function test_depositWithPermit_frontRunPermitStillDeposits() public {
        token.transfer(other, 7e18);
        uint256 deadline = block.timestamp + 60;
        (uint8 v, bytes32 r, bytes32 s) = _permit(OTHER_PK, 7e18, deadline);
        token.permit(other, address(market), 7e18, deadline, v, r, s); // griefer submits it first
        vm.prank(other);
        market.depositWithPermit(7e18, deadline, v, r, s);
        assertEq(market.escrowOf(other), 7e18, "deposit went through");
    }

    function test_depositWithPermit_revert() public {
        token.transfer(other, 7e18);
        uint256 deadline = block.timestamp + 60;
        (uint8 v, bytes32 r, bytes32 s) = _permit(CONSUMER_PK, 7e18, deadline); // wrong signer
        vm.prank(other);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, 7e18)
        );
        market.depositWithPermit(7e18, deadline, v, r, s);

        (v, r, s) = _permit(OTHER_PK, 7e18, deadline);
        vm.prank(owner);
        market.setPaused(true);
        vm.prank(other);
        vm.expectRevert(DataMarketplace.MarketPaused.selector);
        market.depositWithPermit(7e18, deadline, v, r, s);

        vm.prank(owner);
        market.setPaused(false);
        vm.prank(other);
        vm.expectRevert(DataMarketplace.ZeroAmount.selector);
        market.depositWithPermit(0, deadline, v, r, s);
    }

    // -------------------------------------------------------------- withdrawal

    function test_withdrawal_twoSteps() public {
        uint64 readyAt = uint64(block.timestamp + 3600);
        vm.expectEmit(address(market));
        emit DataMarketplace.WithdrawalRequested(consumer, 400e18, readyAt);
        vm.prank(consumer);
        market.requestWithdrawal(400e18);
        (uint256 amount, uint64 ready) = market.pendingWithdrawalOf(consumer);
        assertEq(amount, 400e18, "pending amount");
        assertEq(ready, readyAt, "ready at");
        assertEq(market.escrowOf(consumer), 1_000e18, "escrow still there during the delay");

        vm.warp(readyAt - 1);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalNotReady.selector, readyAt));
        market.withdraw();

        vm.warp(readyAt);
        vm.expectEmit(address(market));
        emit DataMarketplace.Withdrawn(consumer, 400e18);
        vm.prank(consumer);
        market.withdraw();
        assertEq(token.balanceOf(consumer), 400e18, "paid");
        assertEq(market.escrowOf(consumer), 600e18, "escrow reduced");
        (amount, ready) = market.pendingWithdrawalOf(consumer);
        assertEq(amount + ready, 0, "request cleared");

        vm.prank(consumer);
        vm.expectRevert(DataMarketplace.NoPendingWithdrawal.selector);
        market.withdraw();
    }

    function test_withdrawal_settlementDuringDelayReducesPayout() public {
        vm.prank(consumer);
        market.requestWithdrawal(1_000e18);
        _settleValid(100, 1); // 200e18 debited while the request waits
        vm.warp(block.timestamp + 3600);
        vm.prank(consumer);
        market.withdraw();
        assertEq(token.balanceOf(consumer), 800e18, "pays min(requested, escrow)");
        assertEq(market.escrowOf(consumer), 0, "escrow empty");
    }

    function test_withdrawal_zeroPayoutWhenEscrowSpent() public {
        vm.prank(consumer);
        market.requestWithdrawal(1_000e18);
        _settleValid(500, 1); // all of it
        vm.warp(block.timestamp + 3600);
        vm.expectEmit(address(market));
        emit DataMarketplace.Withdrawn(consumer, 0);
        vm.prank(consumer);
        market.withdraw();
        (uint256 amount,) = market.pendingWithdrawalOf(consumer);
        assertEq(amount, 0, "request cleared");
    }

    function test_withdrawal_newRequestReplacesAndRestartsClock() public {
        vm.prank(consumer);
        market.requestWithdrawal(100e18);
        vm.warp(block.timestamp + 3000);
        vm.prank(consumer);
        market.requestWithdrawal(50e18);
        (uint256 amount, uint64 ready) = market.pendingWithdrawalOf(consumer);
        assertEq(amount, 50e18, "replaced");
        assertEq(ready, block.timestamp + 3600, "clock restarted");
    }

    function test_withdrawal_delayFixedAtRequest() public {
        vm.prank(consumer);
        market.requestWithdrawal(100e18);
        vm.prank(owner);
        market.setWithdrawalDelay(30 days);
        vm.warp(block.timestamp + 3600);
        vm.prank(consumer);
        market.withdraw();
        assertEq(token.balanceOf(consumer), 100e18, "old request keeps its delay");
    }

    function test_withdrawal_worksWhilePaused() public {
        // a request that matured before the pause stays payable during it
        vm.prank(consumer);
        market.requestWithdrawal(100e18);
        vm.warp(block.timestamp + 3600);
        vm.prank(owner);
        market.setPaused(true);
        vm.warp(block.timestamp + 10 days);
        vm.prank(consumer);
        market.withdraw();
        assertEq(token.balanceOf(consumer), 100e18, "paid while paused");
    }

    function test_requestWithdrawal_revert() public {
        vm.prank(consumer);
        vm.expectRevert(DataMarketplace.ZeroAmount.selector);
        market.requestWithdrawal(0);
        vm.prank(consumer);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InsufficientEscrow.selector, 1_000e18, 1_000e18 + 1));
        market.requestWithdrawal(1_000e18 + 1);
    }

    function test_cancelWithdrawal() public {
        vm.prank(consumer);
        vm.expectRevert(DataMarketplace.NoPendingWithdrawal.selector);
        market.cancelWithdrawal();

        vm.prank(consumer);
        market.requestWithdrawal(100e18);
        vm.expectEmit(address(market));
        emit DataMarketplace.WithdrawalCancelled(consumer);
        vm.prank(consumer);
        market.cancelWithdrawal();
        vm.warp(block.timestamp + 3600);
        vm.prank(consumer);
        vm.expectRevert(DataMarketplace.NoPendingWithdrawal.selector);
        market.withdraw();
    }

    // ---------------------------------------------------------------- earnings

    function test_withdrawEarnings() public {
        _settleValid(3, 1); // provider1: 1 unit, provider2: 2 units
        vm.expectEmit(address(market));
        emit DataMarketplace.EarningsWithdrawn(provider2, 2 * BID);
        vm.prank(provider2);
        market.withdrawEarnings();
        assertEq(token.balanceOf(provider2), 2 * BID, "paid");
        assertEq(market.earningsOf(provider2), 0, "zeroed");

        vm.prank(provider2);
        vm.expectRevert(DataMarketplace.NothingToWithdraw.selector);
        market.withdrawEarnings();
    }

    function test_withdrawEarnings_worksWhilePaused() public {
        _settleValid(3, 1);
        vm.prank(owner);
        market.setPaused(true);
        vm.prank(provider1);
        market.withdrawEarnings();
        assertEq(token.balanceOf(provider1), BID, "paid while paused");
    }

    function test_withdrawBrokerEarnings() public {
        _settleValid(3, 1);
        uint256 spread = 3 * (ASK - BID);
        vm.expectEmit(address(market));
        emit DataMarketplace.BrokerEarningsWithdrawn(brokerWallet, spread);
        vm.prank(broker);
        market.withdrawBrokerEarnings();
        assertEq(token.balanceOf(brokerWallet), spread, "paid to the broker wallet");
        assertEq(market.brokerEarnings(), 0, "zeroed");

        vm.prank(owner);
        vm.expectRevert(DataMarketplace.NothingToWithdraw.selector);
        market.withdrawBrokerEarnings();

        _settleValid(1, 2);
        vm.prank(owner);
        market.setPaused(true);
        vm.prank(owner);
        market.withdrawBrokerEarnings(); // owner may, and while paused
        assertEq(token.balanceOf(brokerWallet), spread + (ASK - BID), "owner triggered payout");
    }

    function test_withdrawBrokerEarnings_revert_stranger() public {
        _settleValid(3, 1);
        vm.prank(brokerWallet);
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.NotBrokerOrOwner.selector, brokerWallet));
        market.withdrawBrokerEarnings();
    }

    // -------------------------------------------------------------- reentrancy

    function test_reentrancy_blocked() public {
        ReentrantToken evil = new ReentrantToken();
        DataMarketplace m = DataMarketplace(
            address(new ERC1967Proxy(address(new DataMarketplace()), _initCall(owner, IERC20(address(evil)), 0)))
        );
        evil.approve(address(m), type(uint256).max);
        evil.arm(address(m), abi.encodeCall(DataMarketplace.deposit, (1)));
        vm.expectRevert(ReentrancyGuard.ReentrancyGuardReentrantCall.selector);
        m.deposit(1);
    }

    // ------------------------------------------------------------------- views

    function test_noncesUsed_andLookups() public {
        _settleValid(1, 1);
        _settleValid(1, 3);
        address[] memory consumers = new address[](4);
        uint256[] memory nonces = new uint256[](4);
        (consumers[0], consumers[1], consumers[2], consumers[3]) = (consumer, consumer, consumer, other);
        (nonces[0], nonces[1], nonces[2], nonces[3]) = (1, 2, 3, 1);
        bool[] memory s = market.noncesUsed(consumers, nonces);
        assertEq(s.length, 4, "one per key");
        assertTrue(s[0] && !s[1] && s[2] && !s[3], "statuses");
        assertEq(market.noncesUsed(new address[](0), new uint256[](0)).length, 0, "empty query");
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.LengthMismatch.selector, 1, 0));
        market.noncesUsed(new address[](1), new uint256[](0));
        assertFalse(market.isNonceUsed(consumer, 2), "nonce 2 free");
        assertTrue(market.isNonceUsed(consumer, 3), "nonce 3 used");
        assertEq(market.batchCount(), 2, "two batches of access + one credit");
        assertEq(market.leafCount(), 4, "two batches of access + one credit");
        assertEq(market.batchRoot(3), bytes32(0), "no third batch");
    }

    function test_domainSeparator_matchesManual() public view {
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("PAT Data Marketplace"),
                keccak256("1"),
                block.chainid,
                address(market)
            )
        );
        assertEq(market.domainSeparator(), expected, "domain separator");
    }

    function test_storageIsNamespaced() public view {
        // ERC-7201 slot of "pat.storage.DataMarketplace": field 0 holds the PAT address.
        bytes32 slot =
            keccak256(abi.encode(uint256(keccak256("pat.storage.DataMarketplace")) - 1)) & ~bytes32(uint256(0xff));
        assertEq(address(uint160(uint256(vm.load(address(market), slot)))), address(token), "pat at namespace slot");
        assertEq(vm.load(address(market), bytes32(0)), bytes32(0), "slot 0 unused");
    }
}
