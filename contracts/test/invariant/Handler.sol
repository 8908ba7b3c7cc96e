// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Test, Vm} from "../utils/Test.sol";
import {PAT} from "../../src/PAT.sol";
import {DataMarketplace} from "../../src/DataMarketplace.sol";
import {Merkle} from "../utils/Merkle.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {OwnableUpgradeable} from "@openzeppelin/contracts-upgradeable/access/OwnableUpgradeable.sol";

/// @dev Drives the marketplace through random, bounded actions: deposits (plain and with
///      EIP-2612 permits, front-run or bad), withdrawal requests, cancellations and payouts
///      (early, in the window, expired, during a pause), batches of good and bad fills (fresh,
///      or accepted earlier and settled after time passed), nonce jumps across bitmap words,
///      nonce cancellations, credit claims (by the provider or by third parties, with
///      already-claimed and duplicate leaves, or a bad proof), earnings and broker payouts,
///      margin changes, pauses and time.
///
///      What it keeps is only what the contract cannot tell:
///        - the actor sets (the contract has no list of its accounts),
///        - the inputs it sent: orders and their nonces, nonce cancellations, and the credit
///          leaves with their proofs (rebuilt from the fills and the events, and checked
///          against each batch's root, so they are what the contract committed),
///        - running totals of what the token and the contract REPORTED: balance deltas of the
///          token, deltas of escrowOf / earningsOf / unclaimedCredits / brokerEarnings around
///          each call, and the amounts of the BatchSettled and CreditClaimed events,
///        - counts of what happened (for afterInvariant and the coverage test).
///      Nothing asserted is the handler's own model of a balance: each action checks the
///      contract's deltas against each other and against the token's, and the invariants
///      compare the running totals with the contract's views.
///      No action reverts unexpectedly (the suite runs with fail_on_revert); expected reverts
///      are checked with vm.expectRevert.
contract Handler is Test {
    DataMarketplace public immutable market;
    PAT public immutable token;
    address public immutable broker;
    address public immutable owner;
    address public immutable brokerWallet;

    // ------------------------------------------------------------------ actor sets

    uint256 public constant N_CONSUMERS = 4;
    uint256 public constant N_PROVIDERS = 4;
    /// escrow every consumer starts the run with (deposited in {init}, measured like any deposit)
    uint256 public constant INITIAL_DEPOSIT = 1_000e18;

    uint256[] internal consumerPks;
    address[] internal consumers;
    address[] internal providers;
    /// accounts the marketplace never owes anything: third-party claimers, permit front-runners,
    /// the broker, the owner and the broker wallet (its spread is brokerEarnings, not earningsOf)
    address[] internal outsiders;
    mapping(address => uint256) internal consumerIndex; // index + 1

    // ----------------------------------- running totals of what the token and contract reported

    /// the marketplace's PAT balance when the handler was deployed (the Fixture's deposit)
    uint256 public initialBalance;
    mapping(address => uint256) public initialEscrow;
    /// PAT that left depositors' wallets in deposits (their balance deltas)
    uint256 public tokensIn;
    /// PAT that arrived in payees' wallets from withdrawals and payouts (their balance deltas)
    uint256 public tokensOut;
    /// per consumer: PAT it paid into deposits / received from withdraw (its wallet's deltas)
    mapping(address => uint256) public deposited;
    mapping(address => uint256) public withdrawn;
    /// per consumer: decrease of escrowOf across settleBatch calls
    mapping(address => uint256) public debited;
    /// sums of BatchSettled's credited and spread
    uint256 public creditedTotal;
    uint256 public spreadTotal;
    /// sum of CreditClaimed amounts
    uint256 public claimedTotal;
    /// per account: increase of earningsOf across claimCredits calls
    mapping(address => uint256) public earned;
    /// per provider: PAT received from withdrawEarnings (its wallet's delta)
    mapping(address => uint256) public earningsPaid;
    /// PAT the broker wallet received from withdrawBrokerEarnings
    uint256 public brokerPaid;

    // ------------------------------------------------------------------------- counts

    uint256 public fillsSettled;
    uint256 public fillsRejected;
    mapping(uint8 => uint256) public rejectedByReason;
    uint256 public batchesSettled;
    uint256 public settlesWhilePaused;
    uint256 public creditsClaimed;
    uint256 public claimsSkipped;
    uint256 public thirdPartyClaims;
    uint256 public badProofs;
    uint256 public permitDeposits;
    uint256 public frontRunPermits;
    uint256 public badPermits;
    uint256 public withdrawals;
    uint256 public expiredWithdrawals;
    uint256 public earlyWithdrawals;
    uint256 public cancelledWithdrawals;
    uint256 public marginChanges;
    uint256 public invalidations;
    uint256 public nonceJumps;
    uint256 public farNonces;
    uint256 public lateWarps;

    // ------------------------------------------------------------------------- inputs

    /// a committed credit leaf (from the fills and the events; the batch root proves it)
    struct Credit {
        uint256 batchId;
        uint256 leaf;
        address provider;
        uint256 amount;
        bool claimed; // a CreditClaimed event named it
    }

    Credit[] internal credits;
    mapping(uint256 leaf => bytes32[]) internal proofOf;
    mapping(address provider => uint256[]) internal openOf; // indexes of its credits not claimed
    uint256[] internal closed; // indexes of claimed credits

    /// every (consumer, nonce) the handler put in an order or cancelled
    struct NonceRecord {
        address consumer;
        uint256 nonce;
        bool settled; // a FillSettled event named an order with it
        bool cancelled; // the consumer called invalidateNonces with its bit
        uint64 cancelEffectiveBy; // the effectiveAt of the last invalidateNonces on its word
    }

    NonceRecord[] internal nonces;
    mapping(address => mapping(uint256 => uint256)) internal nonceRecordOf; // index + 1
    mapping(address => mapping(uint256 word => uint64)) internal lastCancelEffectiveAt;
    mapping(bytes32 fillId => bool) internal fillSettled;

    mapping(address => uint256) internal nextNonce;
    mapping(address => uint256[]) internal gapNonces; // skipped by a jump: unused, behind the cached word
    mapping(address => uint256[]) internal settledNonces;
    mapping(address => uint256[]) internal cancelledNonces;

    /// fills the broker accepted (acceptedAt = then) and has not submitted yet
    struct Accepted {
        DataMarketplace.Fill fill;
        bytes sig;
    }

    Accepted[] internal acceptedQueue;
    /// mixed into every draw: the fuzzer repeats its inputs (0, 1, dictionary values), and the
    /// same seed must not draft the same fill every time
    uint256 internal draws;
    bool internal exactModes;
    uint256 internal constant MAX_QUEUE = 12;

    bytes32 constant FILL_SETTLED = keccak256("FillSettled(bytes32,address,uint256)");
    bytes32 constant FILL_REJECTED = keccak256("FillRejected(bytes32,uint8)");
    bytes32 constant BATCH_SETTLED = keccak256("BatchSettled(uint256,bytes32,uint256,uint256,uint256,uint256)");
    bytes32 constant CREDIT_CLAIMED = keccak256("CreditClaimed(uint256,address,uint256)");
    bytes32 constant CREDIT_CLAIM_SKIPPED = keccak256("CreditClaimSkipped(uint256)");
    bytes32 constant NONCES_INVALIDATED = keccak256("NoncesInvalidated(address,uint256,uint64,uint64)");
    bytes32 constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    constructor(
        DataMarketplace market_,
        PAT token_,
        address broker_,
        address owner_,
        address brokerWallet_,
        uint256 fixtureConsumerPk
    ) {
        market = market_;
        token = token_;
        broker = broker_;
        owner = owner_;
        brokerWallet = brokerWallet_;
        consumerPks = [fixtureConsumerPk, 0xC1, 0xC2, 0xC3];
        for (uint256 i; i < N_CONSUMERS; ++i) {
            address c = vm.addr(consumerPks[i]);
            consumers.push(c);
            consumerIndex[c] = i + 1;
        }
        providers = [address(0xA1), address(0xA2), address(0xA3), address(0xA4)];
        outsiders = [address(0xCAFE), address(0xD00D), broker_, owner_, brokerWallet_];
        initialBalance = token.balanceOf(address(market));
        for (uint256 i; i < N_CONSUMERS; ++i) {
            initialEscrow[consumers[i]] = market.escrowOf(consumers[i]);
        }
    }

    /// For the coverage test: take each action's mode as given (see {_mode}).
    function setExactModes(bool exact) external {
        exactModes = exact;
    }

    /// Funds every consumer's escrow (after the test gave this handler the PAT supply).
    function init() external {
        for (uint256 i; i < N_CONSUMERS; ++i) {
            _depositPlain(consumers[i], INITIAL_DEPOSIT);
        }
    }

    // ------------------------------------------------------------------- actor views

    function allConsumers() external view returns (address[] memory) {
        return consumers;
    }

    function allProviders() external view returns (address[] memory) {
        return providers;
    }

    function allOutsiders() external view returns (address[] memory) {
        return outsiders;
    }

    /// consumers, providers and outsiders: every account the marketplace could owe
    function allActors() public view returns (address[] memory a) {
        a = new address[](consumers.length + providers.length + outsiders.length);
        uint256 k;
        for (uint256 i; i < consumers.length; ++i) {
            a[k++] = consumers[i];
        }
        for (uint256 i; i < providers.length; ++i) {
            a[k++] = providers[i];
        }
        for (uint256 i; i < outsiders.length; ++i) {
            a[k++] = outsiders[i];
        }
    }

    function creditRecords() external view returns (Credit[] memory) {
        return credits;
    }

    function nonceRecords() external view returns (NonceRecord[] memory r) {
        r = nonces;
        for (uint256 i; i < r.length; ++i) {
            if (r[i].cancelled) r[i].cancelEffectiveBy = lastCancelEffectiveAt[r[i].consumer][r[i].nonce >> 6];
        }
    }

    // ------------------------------------------------------------------------ escrow

    function deposit(uint256 who, uint256 amount) external {
        address c = consumers[who % N_CONSUMERS];
        amount = bound(amount, 1, 1e22);
        if (market.paused()) {
            token.transfer(c, amount);
            vm.startPrank(c);
            token.approve(address(market), amount);
            vm.expectRevert(DataMarketplace.MarketPaused.selector);
            market.deposit(amount);
            token.approve(address(market), 0);
            vm.stopPrank();
            return;
        }
        _depositPlain(c, amount);
    }

    function _depositPlain(address c, uint256 amount) internal {
        token.transfer(c, amount);
        vm.prank(c);
        token.approve(address(market), amount);
        _deposit(c, amount, false, Permit(0, 0, 0, 0));
    }

    struct Permit {
        uint256 deadline;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    /// Deposits with an EIP-2612 permit signed by the consumer's key (vm.sign on PAT's domain).
    /// mode: a plain permit; a permit someone else submitted first (front-run: the deposit
    /// still goes through on the allowance it set); a permit signed by the wrong key with no
    /// allowance (the deposit reverts for the allowance); an expired permit over an allowance
    /// approved beforehand (the permit fails inside, the deposit goes through).
    function depositWithPermit(uint256 who, uint256 amount, uint256 mode) external {
        uint256 ci = who % N_CONSUMERS;
        address c = consumers[ci];
        amount = bound(amount, 1, 1e22);
        mode = _mode(mode);
        token.transfer(c, amount);
        if (token.allowance(c, address(market)) != 0) {
            vm.prank(c);
            token.approve(address(market), 0);
        }
        mode %= 6;
        uint256 pk = mode == 3 ? consumerPks[(ci + 1) % N_CONSUMERS] : consumerPks[ci];
        Permit memory p = _signPermit(pk, c, amount, mode == 4 ? block.timestamp - 1 : block.timestamp + 1 hours);
        if (market.paused()) {
            vm.expectRevert(DataMarketplace.MarketPaused.selector);
            vm.prank(c);
            market.depositWithPermit(amount, p.deadline, p.v, p.r, p.s);
            return;
        }
        uint256 nonceBefore = token.nonces(c);
        if (mode == 2) {
            // someone saw the permit in the mempool and submitted it first
            vm.prank(outsiders[0]);
            token.permit(c, address(market), amount, p.deadline, p.v, p.r, p.s);
            ++frontRunPermits;
        } else if (mode == 3) {
            vm.expectRevert(
                abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, amount)
            );
            vm.prank(c);
            market.depositWithPermit(amount, p.deadline, p.v, p.r, p.s);
            assertEq(token.nonces(c), nonceBefore, "a bad permit uses no permit nonce");
            ++badPermits;
            return;
        } else if (mode == 4) {
            vm.prank(c);
            token.approve(address(market), amount);
        }
        _deposit(c, amount, true, p);
        assertEq(token.allowance(c, address(market)), 0, "the deposit used the whole allowance");
        assertEq(token.nonces(c), nonceBefore + (mode == 4 ? 0 : 1), "the permit was used once");
        ++permitDeposits;
    }

    function _signPermit(uint256 pk, address c, uint256 amount, uint256 deadline)
        internal
        view
        returns (Permit memory p)
    {
        bytes32 structHash =
            keccak256(abi.encode(PERMIT_TYPEHASH, c, address(market), amount, token.nonces(c), deadline));
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        p.deadline = deadline;
        (p.v, p.r, p.s) = vm.sign(pk, digest);
    }

    /// A deposit as `c`, checked from three sides: the depositor's wallet, the marketplace's
    /// balance and the depositor's escrowOf all move by `amount`.
    function _deposit(address c, uint256 amount, bool withPermit, Permit memory p) internal {
        uint256 walletBefore = token.balanceOf(c);
        uint256 balanceBefore = token.balanceOf(address(market));
        uint256 escrowBefore = market.escrowOf(c);
        vm.prank(c);
        if (withPermit) market.depositWithPermit(amount, p.deadline, p.v, p.r, p.s);
        else market.deposit(amount);
        uint256 paid = walletBefore - token.balanceOf(c);
        assertEq(paid, amount, "deposit takes the amount from the depositor");
        assertEq(token.balanceOf(address(market)), balanceBefore + paid, "deposit: the PAT arrives at the marketplace");
        assertEq(market.escrowOf(c), escrowBefore + paid, "deposit: escrowOf grows by what was paid");
        tokensIn += paid;
        deposited[c] += paid;
    }

    /// One time in eight (or without escrow) asks for more than the escrow (refused); otherwise
    /// a request of 1..escrow.
    function requestWithdrawal(uint256 who, uint256 amount, uint256 mode) external {
        address c = consumers[who % N_CONSUMERS];
        uint256 escrow = market.escrowOf(c);
        mode = _mode(mode);
        if (mode % 8 == 0 || escrow == 0) {
            uint256 tooMuch = escrow + 1 + amount % 1e18;
            vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InsufficientEscrow.selector, escrow, tooMuch));
            vm.prank(c);
            market.requestWithdrawal(tooMuch);
            return;
        }
        _request(c, bound(amount, 1, escrow));
    }

    function _request(address c, uint256 amount) internal {
        uint256 escrowBefore = market.escrowOf(c);
        uint256 balanceBefore = token.balanceOf(address(market));
        vm.prank(c);
        market.requestWithdrawal(amount);
        (uint256 requested, uint64 readyAt, uint64 expiresAt) = market.withdrawalStatus(c);
        assertEq(requested, amount, "request recorded");
        assertEq(readyAt, block.timestamp + market.withdrawalDelay(), "request ready after withdrawalDelay");
        assertEq(expiresAt, readyAt + market.withdrawalWindow(), "request payable for withdrawalWindow");
        assertEq(market.escrowOf(c), escrowBefore, "a request moves no escrow");
        assertEq(token.balanceOf(address(market)), balanceBefore, "a request moves no PAT");
    }

    /// Cancels the consumer's pending request; if it has none, makes one first. A cancelled
    /// request pays nothing and leaves the escrow as it was. Without escrow: the refusal.
    function cancelWithdrawal(uint256 who, uint256 amount) external {
        address c = consumers[who % N_CONSUMERS];
        (, uint64 readyAt,) = market.withdrawalStatus(c);
        if (readyAt == 0) {
            uint256 escrow = market.escrowOf(c);
            if (escrow == 0) {
                vm.expectRevert(DataMarketplace.NoPendingWithdrawal.selector);
                vm.prank(c);
                market.cancelWithdrawal();
                return;
            }
            _request(c, bound(amount, 1, escrow));
        }
        uint256 escrowBefore = market.escrowOf(c);
        uint256 walletBefore = token.balanceOf(c);
        vm.prank(c);
        market.cancelWithdrawal();
        (uint256 a, uint64 r, uint64 e) = market.withdrawalStatus(c);
        assertEq(a + r + e, 0, "a cancelled request is gone");
        (a, r) = market.pendingWithdrawalOf(c);
        assertEq(a + r, 0, "a cancelled request is gone (pendingWithdrawalOf)");
        vm.expectRevert(DataMarketplace.NoPendingWithdrawal.selector);
        vm.prank(c);
        market.withdraw();
        assertEq(market.escrowOf(c), escrowBefore, "cancelling keeps the escrow");
        assertEq(token.balanceOf(c), walletBefore, "a cancelled request pays nothing");
        ++cancelledWithdrawals;
    }

    /// Withdraws the consumer's pending request: too early (refused), or after warping into
    /// or past its window (paid, or refused as expired). During a pause the clock of a request
    /// that is not ready yet stands still, so it stays refused.
    function withdraw(uint256 who, uint256 mode) external {
        address c = consumers[who % N_CONSUMERS];
        mode = _mode(mode);
        (, uint64 readyAt, uint64 expiresAt) = market.withdrawalStatus(c);
        if (readyAt == 0) {
            vm.expectRevert(DataMarketplace.NoPendingWithdrawal.selector);
            vm.prank(c);
            market.withdraw();
            return;
        }
        if (block.timestamp < readyAt) {
            if (market.paused() || mode % 5 == 0) {
                vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalNotReady.selector, readyAt));
                vm.prank(c);
                market.withdraw();
                ++earlyWithdrawals;
                return;
            }
            // into the window, sometimes past it
            vm.warp(readyAt + (mode >> 8) % (uint256(market.withdrawalWindow()) + 2 hours));
            (, readyAt, expiresAt) = market.withdrawalStatus(c);
        }
        if (block.timestamp > expiresAt) {
            vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalExpired.selector, expiresAt));
            vm.prank(c);
            market.withdraw();
            ++expiredWithdrawals;
            return;
        }
        _withdraw(c);
    }

    /// Pays a ready request; checks the payout is min(requested, escrow) on all three sides.
    function _withdraw(address c) internal {
        (uint256 requested,,) = market.withdrawalStatus(c);
        uint256 escrowBefore = market.escrowOf(c);
        uint256 walletBefore = token.balanceOf(c);
        uint256 balanceBefore = token.balanceOf(address(market));
        vm.prank(c);
        market.withdraw();
        uint256 got = token.balanceOf(c) - walletBefore;
        assertEq(got, requested < escrowBefore ? requested : escrowBefore, "withdraw pays min(requested, escrow)");
        assertEq(token.balanceOf(address(market)), balanceBefore - got, "withdraw: the PAT leaves the marketplace");
        assertEq(market.escrowOf(c), escrowBefore - got, "withdraw: escrowOf shrinks by what was paid");
        (uint256 a,,) = market.withdrawalStatus(c);
        assertEq(a, 0, "a paid request is gone");
        tokensOut += got;
        withdrawn[c] += got;
        ++withdrawals;
    }

    // ---------------------------------------------------------------------- earnings

    /// A provider (or, one time in four, an outsider who is owed nothing) withdraws its earnings.
    function withdrawEarnings(uint256 who) external {
        who = _mode(who);
        address a = who % 4 == 0 ? outsiders[(who >> 8) % outsiders.length] : providers[who % N_PROVIDERS];
        _withdrawEarnings(a);
    }

    function _withdrawEarnings(address a) internal {
        uint256 owed = market.earningsOf(a);
        if (owed == 0) {
            vm.expectRevert(DataMarketplace.NothingToWithdraw.selector);
            vm.prank(a);
            market.withdrawEarnings();
            return;
        }
        uint256 walletBefore = token.balanceOf(a);
        uint256 balanceBefore = token.balanceOf(address(market));
        vm.prank(a);
        market.withdrawEarnings();
        uint256 got = token.balanceOf(a) - walletBefore;
        assertEq(got, owed, "withdrawEarnings pays earningsOf");
        assertEq(token.balanceOf(address(market)), balanceBefore - got, "withdrawEarnings: the PAT leaves");
        assertEq(market.earningsOf(a), 0, "withdrawEarnings empties earningsOf");
        tokensOut += got;
        earningsPaid[a] += got;
    }

    /// The broker or the owner pays the spread to the broker wallet; anyone else is refused.
    function withdrawBrokerEarnings(uint256 seed) external {
        seed = _mode(seed);
        address caller = seed % 5 < 2 ? broker : seed % 5 < 4 ? owner : outsiders[0];
        _withdrawBrokerEarnings(caller);
    }

    function _withdrawBrokerEarnings(address caller) internal {
        if (caller != broker && caller != owner) {
            vm.expectRevert(abi.encodeWithSelector(DataMarketplace.NotBrokerOrOwner.selector, caller));
            vm.prank(caller);
            market.withdrawBrokerEarnings();
            return;
        }
        uint256 owed = market.brokerEarnings();
        if (owed == 0) {
            vm.expectRevert(DataMarketplace.NothingToWithdraw.selector);
            vm.prank(caller);
            market.withdrawBrokerEarnings();
            return;
        }
        uint256 walletBefore = token.balanceOf(brokerWallet);
        uint256 balanceBefore = token.balanceOf(address(market));
        vm.prank(caller);
        market.withdrawBrokerEarnings();
        uint256 got = token.balanceOf(brokerWallet) - walletBefore;
        assertEq(got, owed, "withdrawBrokerEarnings pays brokerEarnings to the broker wallet");
        assertEq(token.balanceOf(address(market)), balanceBefore - got, "withdrawBrokerEarnings: the PAT leaves");
        assertEq(market.brokerEarnings(), 0, "withdrawBrokerEarnings empties brokerEarnings");
        tokensOut += got;
        brokerPaid += got;
    }

    // ------------------------------------------------------------------------ claims

    /// Claims some of one provider's open credits. The caller is the provider, or a third
    /// party (another provider, a consumer, an outsider, the broker): the money must go to the
    /// leaf's provider whoever calls. Sometimes with already claimed credits mixed in (V2
    /// skips them, whatever their proof), a leaf twice in one call, or a bad proof (the call
    /// reverts).
    function claim(uint256 seed, uint256 mode) external {
        (seed, mode) = (_mode(seed), _mode(mode));
        address p = providers[seed % N_PROVIDERS];
        for (uint256 q = 1; q < N_PROVIDERS && openOf[p].length == 0; ++q) {
            p = providers[(seed % N_PROVIDERS + q) % N_PROVIDERS]; // one that has open credits, if any
        }
        uint256 c = (seed >> 8) % 5;
        address caller = c == 0
            ? p
            : c == 1 ? providers[(seed % N_PROVIDERS + 1) % N_PROVIDERS] : c == 2 ? consumers[(seed >> 16) % N_CONSUMERS] : outsiders[c == 3 ? 0 : 2];
        if (mode % 7 == 6 && openOf[p].length != 0) {
            _badClaim(p, caller, mode >> 8);
            return;
        }
        _claim(p, false, caller, mode);
    }

    /// A third party sweeps every provider's open credits in one call.
    function sweep(uint256 seed, uint256 mode) external {
        mode = _mode(mode);
        _claim(address(0), true, outsiders[seed % 2], mode);
    }

    function _badClaim(address p, address caller, uint256 r) internal {
        Credit memory cr = credits[openOf[p][r % openOf[p].length]];
        DataMarketplace.Claim[] memory list = new DataMarketplace.Claim[](1);
        list[0] = DataMarketplace.Claim(cr.batchId, cr.leaf, cr.provider, cr.amount, proofOf[cr.leaf]);
        uint256 k = (r >> 8) % 3;
        if (k == 0) list[0].amount += 1; // more than committed

        else if (k == 1) list[0].provider = caller == p ? outsiders[0] : caller; // someone else's credit

        else list[0].batchId = cr.batchId + 1; // against another (or no) root
        vm.expectRevert(abi.encodeWithSelector(DataMarketplace.InvalidCreditProof.selector, cr.leaf));
        vm.prank(caller);
        market.claimCredits(list);
        ++badProofs;
    }

    struct ClaimPlan {
        DataMarketplace.Claim[] list;
        uint256[] creditIdx; // credits index of each entry
        bool[] fresh; // entry is claimed by this call (else skipped)
        uint256 n;
    }

    function _claim(address p, bool all, address caller, uint256 mode) internal {
        ClaimPlan memory plan = _plan(p, all, mode);
        if (plan.n == 0) return;
        DataMarketplace.Claim[] memory list = new DataMarketplace.Claim[](plan.n);
        for (uint256 j; j < plan.n; ++j) {
            list[j] = plan.list[j];
        }

        address[] memory actors = allActors();
        uint256[] memory earningsBefore = new uint256[](actors.length);
        for (uint256 i; i < actors.length; ++i) {
            earningsBefore[i] = market.earningsOf(actors[i]);
        }
        uint256 unclaimedBefore = market.unclaimedCredits();
        uint256 balanceBefore = token.balanceOf(address(market));
        uint256 callerWallet = token.balanceOf(caller);

        vm.recordLogs();
        vm.prank(caller);
        uint256 total = market.claimCredits(list);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        uint256 fromEvents = _checkClaimLogs(plan, logs, caller);
        assertEq(total, fromEvents, "claimCredits returns the sum of its CreditClaimed amounts");
        assertEq(market.unclaimedCredits(), unclaimedBefore - total, "claims move unclaimedCredits by what they paid");
        assertEq(token.balanceOf(address(market)), balanceBefore, "claims move no PAT");
        assertEq(token.balanceOf(caller), callerWallet, "the caller of a claim receives no PAT");
        for (uint256 i; i < actors.length; ++i) {
            uint256 gain;
            for (uint256 j; j < plan.n; ++j) {
                if (plan.fresh[j] && plan.list[j].provider == actors[i]) gain += plan.list[j].amount;
            }
            uint256 now_ = market.earningsOf(actors[i]);
            assertEq(now_, earningsBefore[i] + gain, "a claim credits the leaf's provider, nobody else");
            earned[actors[i]] += now_ - earningsBefore[i];
        }
        claimedTotal += fromEvents;
    }

    /// Which credits to claim: open ones of `p` (or of everyone), then perhaps claimed ones and
    /// a duplicate, each marked fresh (this call claims it) or not (this call skips it).
    function _plan(address p, bool all, uint256 mode) internal view returns (ClaimPlan memory plan) {
        uint256 cap = 24;
        plan.list = new DataMarketplace.Claim[](cap);
        plan.creditIdx = new uint256[](cap);
        plan.fresh = new bool[](cap);
        for (uint256 q; q < N_PROVIDERS; ++q) {
            address owner_ = all ? providers[q] : p;
            uint256[] storage open = openOf[owner_];
            uint256 take = all ? open.length : 1 + (mode >> 16) % 8;
            for (uint256 i; i < open.length && i < take && plan.n < 16; ++i) {
                _add(plan, open[i], true);
            }
            if (!all) break;
        }
        if (mode % 3 == 1) {
            for (uint256 i; i < 2 && closed.length != 0; ++i) {
                _add(plan, closed[(mode >> (32 + 8 * i)) % closed.length], false);
                // skipped before the proof is looked at: any proof will do
                if ((mode >> 48) % 2 == 0) plan.list[plan.n - 1].proof = new bytes32[](0);
            }
        }
        if (mode % 4 == 2 && plan.n != 0) _add(plan, plan.creditIdx[0], false);
    }

    function _add(ClaimPlan memory plan, uint256 idx, bool fresh) internal view {
        Credit storage cr = credits[idx];
        plan.list[plan.n] = DataMarketplace.Claim(cr.batchId, cr.leaf, cr.provider, cr.amount, proofOf[cr.leaf]);
        plan.creditIdx[plan.n] = idx;
        plan.fresh[plan.n] = fresh;
        ++plan.n;
    }

    /// One event per entry, in order: CreditClaimed(leaf, provider, amount) for the fresh,
    /// CreditClaimSkipped(leaf) for the others. Records the claimed ones. Returns the sum of
    /// the CreditClaimed amounts.
    function _checkClaimLogs(ClaimPlan memory plan, Vm.Log[] memory logs, address caller)
        internal
        returns (uint256 sum)
    {
        assertEq(logs.length, plan.n, "one event per claim entry");
        for (uint256 j; j < plan.n; ++j) {
            Vm.Log memory l = logs[j];
            DataMarketplace.Claim memory c = plan.list[j];
            assertEq(l.emitter, address(market), "claim event from the marketplace");
            assertEq(uint256(l.topics[1]), c.leaf, "claim event names the leaf");
            if (!plan.fresh[j]) {
                assertEq(l.topics[0], CREDIT_CLAIM_SKIPPED, "a claimed credit is skipped (V2)");
                ++claimsSkipped;
                continue;
            }
            assertEq(l.topics[0], CREDIT_CLAIMED, "an open credit is claimed");
            assertEq(l.topics[2], bytes32(uint256(uint160(c.provider))), "CreditClaimed names the leaf's provider");
            uint256 amount = abi.decode(l.data, (uint256));
            assertEq(amount, c.amount, "CreditClaimed pays the leaf's amount");
            sum += amount;
            _close(plan.creditIdx[j]);
            ++creditsClaimed;
            if (caller != c.provider) ++thirdPartyClaims;
        }
    }

    function _close(uint256 idx) internal {
        Credit storage cr = credits[idx];
        cr.claimed = true;
        uint256[] storage open = openOf[cr.provider];
        for (uint256 i; i < open.length; ++i) {
            if (open[i] == idx) {
                open[i] = open[open.length - 1];
                open.pop();
                break;
            }
        }
        closed.push(idx);
    }

    // -------------------------------------------------------------- nonce cancellation

    /// A consumer cancels nonces: one of its next few, a few bits of a word it used, or some
    /// of the far words. Checks the event and that cancellations already in effect stay so.
    function invalidate(uint256 who, uint256 seed) external {
        address c = consumers[who % N_CONSUMERS];
        seed = _mode(seed);
        uint256 k = seed % 8;
        uint256 word;
        uint64 mask;
        if (k < 5) {
            uint256 n = nextNonce[c] + (seed >> 8) % 4;
            word = n >> 6;
            mask = uint64(1) << uint8(n & 63);
        } else if (k < 7) {
            word = k == 5 ? nextNonce[c] >> 6 : (1 << 194); // the word of 2^200
            mask = uint64(seed >> 16) & uint64(seed >> 80) & uint64(seed >> 144); // about 8 bits
            if (mask == 0) mask = 1;
        } else {
            vm.expectRevert(DataMarketplace.ZeroMask.selector);
            vm.prank(c);
            market.invalidateNonces(word, 0);
            return;
        }

        _invalidate(c, word, mask);
    }

    function _invalidate(address c, uint256 word, uint64 mask) internal {
        // the consumer's earlier cancellations in this word that are in effect now
        uint256[] storage mine = cancelledNonces[c];
        bool[] memory inEffect = new bool[](mine.length);
        for (uint256 i; i < mine.length; ++i) {
            inEffect[i] = (mine[i] >> 6) == word && market.isNonceInvalidated(c, mine[i]);
        }
        uint256 escrowBefore = market.escrowOf(c);

        vm.recordLogs();
        vm.prank(c);
        market.invalidateNonces(word, mask);
        uint64 effectiveAt = _checkInvalidated(c, word, mask, vm.getRecordedLogs());

        assertEq(market.escrowOf(c), escrowBefore, "the cancellation flag is not escrow");
        for (uint256 i; i < inEffect.length; ++i) {
            if (inEffect[i]) assertTrue(market.isNonceInvalidated(c, mine[i]), "a cancellation in effect stays so");
        }
        for (uint256 b; b < 64; ++b) {
            if ((mask >> b) & 1 != 0) _noteCancelled(c, (word << 6) | b);
        }
        lastCancelEffectiveAt[c][word] = effectiveAt;
        ++invalidations;
    }

    function _checkInvalidated(address c, uint256 word, uint64 mask, Vm.Log[] memory logs)
        internal
        view
        returns (uint64 effectiveAt)
    {
        assertEq(logs.length, 1, "one NoncesInvalidated");
        assertEq(logs[0].topics[0], NONCES_INVALIDATED, "NoncesInvalidated");
        assertEq(uint256(logs[0].topics[1]), uint256(uint160(c)), "NoncesInvalidated: consumer");
        assertEq(uint256(logs[0].topics[2]), word, "NoncesInvalidated: word");
        uint64 m;
        (m, effectiveAt) = abi.decode(logs[0].data, (uint64, uint64));
        assertEq(m, mask, "NoncesInvalidated: mask");
        assertEq(effectiveAt, block.timestamp + market.maxSettleLag(), "a cancellation takes effect maxSettleLag on");
        (, uint64 pending, uint64 at) = market.nonceInvalidation(c, word);
        assertEq(pending & mask, mask, "the new bits are pending");
        assertEq(at, effectiveAt, "pending from effectiveAt");
    }

    function _noteCancelled(address c, uint256 n) internal {
        NonceRecord storage r = _nonceRecord(c, n);
        if (r.cancelled) return;
        assertFalse(market.isNonceInvalidated(c, n), "a new cancellation is not in effect yet");
        r.cancelled = true;
        cancelledNonces[c].push(n);
    }

    function _nonceRecord(address c, uint256 n) internal returns (NonceRecord storage r) {
        uint256 i = nonceRecordOf[c][n];
        if (i == 0) {
            nonces.push(NonceRecord(c, n, false, false, 0));
            i = nonces.length;
            nonceRecordOf[c][n] = i;
        }
        return nonces[i - 1];
    }

    // ------------------------------------------------------------------- environment

    /// Time passes: mostly up to 2 hours, sometimes past maxSettleLag (accepted fills and
    /// orders expire on chain), sometimes a day or two (withdrawal windows close). While paused,
    /// the pause clock runs with time and pushes pending requests back by as much.
    function warp(uint256 secs, uint256 mode) external {
        mode = _mode(mode);
        uint256 lag = market.maxSettleLag();
        uint256 dt;
        if (mode % 8 == 0) {
            dt = lag + 1 + secs % 2 hours;
            ++lateWarps;
        } else if (mode % 8 == 1) {
            dt = 1 days + secs % 1 days;
        } else {
            dt = secs % 2 hours;
        }
        bool paused_ = market.paused();
        uint64 clock = market.pauseClock();
        uint64[] memory readyAt = new uint64[](N_CONSUMERS);
        for (uint256 i; i < N_CONSUMERS; ++i) {
            (, readyAt[i],) = market.withdrawalStatus(consumers[i]);
        }
        vm.warp(block.timestamp + dt);
        assertEq(market.pauseClock(), clock + (paused_ ? dt : 0), "the pause clock runs exactly while paused");
        for (uint256 i; i < N_CONSUMERS; ++i) {
            if (readyAt[i] == 0) continue;
            (, uint64 r,) = market.withdrawalStatus(consumers[i]);
            assertEq(r, readyAt[i] + (paused_ ? dt : 0), "a pause pushes pending requests back by its length");
        }
    }

    /// Pauses one time in four, unpauses every time asked: the market is mostly open.
    function togglePause(uint256 seed) external {
        seed = _mode(seed);
        bool paused_ = market.paused();
        if (!paused_ && seed % 4 != 0) return;
        _setPaused(!paused_);
    }

    function _setPaused(bool paused_) internal {
        uint64 clock = market.pauseClock();
        vm.prank(owner);
        market.setPaused(paused_);
        assertEq(market.paused(), paused_, "pause set");
        assertEq(market.pauseClock(), clock, "pausing or unpausing does not move the pause clock");
    }

    /// The owner changes the broker margin mid-run (fills priced under the old one may now be
    /// refused, reason 6); above 50 % is refused, and so is anyone but the owner.
    function setMargin(uint256 bps, uint256 mode) external {
        mode = _mode(mode);
        if (mode % 8 == 0) {
            uint16 tooHigh = uint16(5001 + bps % 1000);
            vm.expectRevert(abi.encodeWithSelector(DataMarketplace.BrokerMarginTooHigh.selector, tooHigh, 5000));
            vm.prank(owner);
            market.setBrokerMargin(tooHigh);
            return;
        }
        if (mode % 8 == 1) {
            vm.expectRevert(abi.encodeWithSelector(OwnableUpgradeable.OwnableUnauthorizedAccount.selector, broker));
            vm.prank(broker);
            market.setBrokerMargin(0);
            return;
        }
        uint16 m = uint16(bound(bps, 0, 5000));
        vm.prank(owner);
        market.setBrokerMargin(m);
        assertEq(market.brokerMarginBps(), m, "margin set");
        ++marginChanges;
    }

    // -------------------------------------------------------------------- settlement

    /// Settles 1-5 fresh fills (one time in eight with one of them twice).
    function settle(uint256 seed, uint256 count) external {
        uint256 n = 1 + _rand(count) % 5;
        bool dup = _rand(seed) % 8 == 0;
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](n + (dup ? 1 : 0));
        bytes[] memory sigs = new bytes[](fills.length);
        for (uint256 i; i < n; ++i) {
            (fills[i], sigs[i]) = _draft(_rand(seed));
        }
        if (dup) {
            fills[n] = fills[0];
            sigs[n] = sigs[0];
        }
        _submit(fills, sigs);
    }

    /// The broker accepts 1-4 fills now (acceptedAt = now) and submits them later.
    function accept(uint256 seed, uint256 count) external {
        uint256 n = 1 + _rand(count) % 4;
        for (uint256 i; i < n && acceptedQueue.length < MAX_QUEUE; ++i) {
            (DataMarketplace.Fill memory f, bytes memory sig) = _draft(_rand(seed));
            Accepted storage a = acceptedQueue.push();
            a.fill = f;
            a.sig = sig;
        }
    }

    /// Submits every accepted fill, plus 0-2 fresh ones. By now some may be past their deadline
    /// plus maxSettleLag (reason 9), their nonce cancelled (10) or used (3), the escrow
    /// withdrawn (8) or the margin lowered (6).
    function settleAccepted(uint256 seed, uint256 count) external {
        uint256 q = acceptedQueue.length;
        uint256 extra = q == 0 ? 1 + count % 3 : count % 3;
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](q + extra);
        bytes[] memory sigs = new bytes[](q + extra);
        for (uint256 i; i < q; ++i) {
            fills[i] = acceptedQueue[i].fill;
            sigs[i] = acceptedQueue[i].sig;
        }
        delete acceptedQueue;
        for (uint256 i; i < extra; ++i) {
            (fills[q + i], sigs[q + i]) = _draft(_rand(seed));
        }
        _submit(fills, sigs);
    }

    function _rand(uint256 seed) internal returns (uint256) {
        return uint256(keccak256(abi.encode(seed, ++draws)));
    }

    /// An action's mode (which branch it takes): hashed, since the fuzzer's small and repeated
    /// values would always take the same branch, unless the coverage test asked for exact modes.
    function _mode(uint256 m) internal returns (uint256) {
        return exactModes ? m : _rand(m);
    }

    function _draft(uint256 rnd) internal returns (DataMarketplace.Fill memory f, bytes memory sig) {
        uint256 ci = rnd % N_CONSUMERS;
        DataMarketplace.Order memory o;
        o.consumer = consumers[ci];
        o.market = bytes32(uint256(1 + (rnd >> 4) % 3));
        o.qty = 1 + (rnd >> 8) % 20;
        o.nonce = _pickNonce(o.consumer, uint256(keccak256(abi.encode(rnd, "nonce"))));
        f.acceptedAt = uint64(block.timestamp);
        uint256 t = (rnd >> 16) % 40;
        if (t == 0) {
            o.deadline = block.timestamp - 1; // accepted after its deadline: 4
        } else if (t == 1) {
            // accepted in time, submitted more than maxSettleLag after the deadline: 9
            o.deadline = block.timestamp - market.maxSettleLag() - 1 - (rnd >> 20) % 100;
            f.acceptedAt = uint64(o.deadline);
        } else {
            o.deadline = block.timestamp + 60 + (rnd >> 20) % 2 hours;
        }
        if ((rnd >> 40) % 40 == 0) f.acceptedAt = uint64(block.timestamp + 1); // in the future: 4
        _price(f, o, rnd >> 48);
        _split(f, o.qty, rnd >> 160);
        f.order = o;
        uint256 pk = (rnd >> 250) % 32 == 0 ? consumerPks[(ci + 1) % N_CONSUMERS] : consumerPks[ci]; // 2
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, market.hashOrder(o));
        sig = abi.encodePacked(r, s, v);
        _nonceRecord(o.consumer, o.nonce);
    }

    /// ask and bid: within the current margin cap, except one time in 20 (6); bid above ask
    /// one time in 50 (6); maxPrice below the ask one time in 20 (5). One time in 30 the ask
    /// is sized to the consumer's escrow now: just above it (8), or using all of it.
    function _price(DataMarketplace.Fill memory f, DataMarketplace.Order memory o, uint256 r) internal view {
        uint256 margin = market.brokerMarginBps();
        uint256 ask = r % 3e18;
        uint256 sized = (r >> 120) % 60;
        if (sized < 2) ask = market.escrowOf(o.consumer) / o.qty + (sized == 0 ? 1 : 0);
        uint256 s = (r >> 64) % 20 == 0 ? margin + 1 + (r >> 72) % 1000 : (r >> 72) % (margin + 1);
        if (s > 10_000) s = 10_000;
        uint256 bid = ask - (ask * s) / 10_000;
        if ((r >> 90) % 50 == 0) bid = ask + 1;
        f.ask = uint128(ask);
        f.bid = uint128(bid);
        o.maxPrice = (r >> 100) % 20 == 0 && ask > 0 ? ask - 1 : ask + (r >> 104) % 1e18;
    }

    /// 1-3 provider entries whose units sum to qty, except one time in 40 (7).
    function _split(DataMarketplace.Fill memory f, uint256 qty, uint256 r) internal view {
        uint256 m = 1 + r % 3;
        f.providers = new address[](m);
        f.units = new uint64[](m);
        uint256 left = qty;
        for (uint256 j; j < m; ++j) {
            f.providers[j] = providers[(r >> (8 + 8 * j)) % N_PROVIDERS];
            f.units[j] = uint64(j == m - 1 ? left : (r >> (40 + 8 * j)) % (left + 1));
            left -= f.units[j];
        }
        if ((r >> 80) % 40 == 0) f.units[0] += 1;
    }

    /// Mostly the next nonce; sometimes a jump of +64 or +1000 (into a later bitmap word; the
    /// skipped nonces stay usable and are used later, from a word behind the cached one), a
    /// nonce beyond the cached word's 64-bit range (2^200 + i, 2^70 + i) or in its last word
    /// (2^64 - 1), a nonce already settled (3) or one the consumer cancelled (10 once in effect).
    function _pickNonce(address c, uint256 r) internal returns (uint256) {
        uint256 k = r % 100;
        r >>= 8;
        if (k < 4 && settledNonces[c].length != 0) return settledNonces[c][r % settledNonces[c].length];
        if (k < 7 && cancelledNonces[c].length != 0) return cancelledNonces[c][r % cancelledNonces[c].length];
        if (k < 13 && gapNonces[c].length != 0) return gapNonces[c][r % gapNonces[c].length];
        if (k < 19) {
            uint256 skipped = nextNonce[c];
            gapNonces[c].push(skipped);
            nextNonce[c] = skipped + (r % 2 == 0 ? 64 : 1000);
            ++nonceJumps;
            return nextNonce[c]++;
        }
        if (k < 22) {
            ++farNonces;
            uint256 i = (r >> 8) % 64;
            uint256 which = r % 3;
            if (which == 0) return (1 << 200) + i;
            if (which == 1) return (1 << 70) + i;
            return (uint256(type(uint64).max) << 6) + i;
        }
        return nextNonce[c]++;
    }

    struct Before {
        uint256[] escrow;
        uint256 unclaimed;
        uint256 brokerEarnings;
        uint256 balance;
        uint256 batchCount;
        uint256 leafCount;
    }

    /// Settles as the broker. While paused the batch is refused; then the owner lifts the pause
    /// and the broker submits it again (so a pause lasts until the next settlement).
    function _submit(DataMarketplace.Fill[] memory fills, bytes[] memory sigs) internal {
        bytes memory packed = market.encodeBatch(fills, sigs);
        if (market.paused()) {
            vm.expectRevert(DataMarketplace.MarketPaused.selector);
            vm.prank(broker);
            market.settleBatch(packed);
            ++settlesWhilePaused;
            _setPaused(false);
        }
        uint8[] memory expected = _predict(fills, sigs);
        Before memory b0;
        b0.escrow = new uint256[](N_CONSUMERS);
        for (uint256 i; i < N_CONSUMERS; ++i) {
            b0.escrow[i] = market.escrowOf(consumers[i]);
        }
        b0.unclaimed = market.unclaimedCredits();
        b0.brokerEarnings = market.brokerEarnings();
        b0.balance = token.balanceOf(address(market));
        b0.batchCount = market.batchCount();
        b0.leafCount = market.leafCount();

        vm.recordLogs();
        vm.prank(broker);
        market.settleBatch(packed);
        Vm.Log[] memory logs = vm.getRecordedLogs();

        Merkle.BatchRecord memory rec = Merkle.record(vm, address(market), fills, logs);
        _checkOutcomes(fills, expected, rec, logs);
        (uint256 credited, uint256 spread) = _checkBatchEvent(rec, logs, b0);
        _checkDeltas(fills, rec, b0, credited, spread);
        for (uint256 i; i < rec.claims.length; ++i) {
            DataMarketplace.Claim memory c = rec.claims[i];
            openOf[c.provider].push(credits.length);
            credits.push(Credit(c.batchId, c.leaf, c.provider, c.amount, false));
            proofOf[c.leaf] = c.proof;
        }
    }

    /// The reason each fill should be refused with (0: it settles), from the contract's state
    /// before the batch (escrowOf, isNonceUsed, isNonceInvalidated, brokerMarginBps,
    /// maxSettleLag) and the batch's earlier fills. The checks run in the contract's order.
    function _predict(DataMarketplace.Fill[] memory fills, bytes[] memory sigs)
        internal
        view
        returns (uint8[] memory out)
    {
        out = new uint8[](fills.length);
        uint256[] memory escrow = new uint256[](N_CONSUMERS);
        for (uint256 i; i < N_CONSUMERS; ++i) {
            escrow[i] = market.escrowOf(consumers[i]);
        }
        bytes32[] memory usedHere = new bytes32[](fills.length);
        for (uint256 i; i < fills.length; ++i) {
            DataMarketplace.Fill memory f = fills[i];
            uint256 ci = consumerIndex[f.order.consumer] - 1;
            bytes32 key = keccak256(abi.encode(f.order.consumer, f.order.nonce));
            bool usedInBatch;
            for (uint256 j; j < i; ++j) {
                if (usedHere[j] == key) usedInBatch = true;
            }
            out[i] = _reason(f, sigs[i], escrow[ci], usedInBatch);
            if (out[i] == 0) {
                escrow[ci] -= f.order.qty * f.ask;
                usedHere[i] = key;
            }
        }
    }

    function _reason(DataMarketplace.Fill memory f, bytes memory sig, uint256 escrow, bool usedInBatch)
        internal
        view
        returns (uint8)
    {
        DataMarketplace.Order memory o = f.order;
        (bytes32 r, bytes32 s) = (_word(sig, 0), _word(sig, 32));
        if (ecrecover(market.hashOrder(o), uint8(sig[64]), r, s) != o.consumer) return 2;
        if (usedInBatch || market.isNonceUsed(o.consumer, o.nonce)) return 3;
        if (f.acceptedAt > o.deadline || f.acceptedAt > block.timestamp) return 4;
        if (f.ask > o.maxPrice) return 5;
        if (f.bid > f.ask || (uint256(f.ask) - f.bid) * 10_000 > uint256(f.ask) * market.brokerMarginBps()) return 6;
        uint256 sum;
        for (uint256 j; j < f.units.length; ++j) {
            sum += f.units[j];
        }
        if (sum != o.qty) return 7;
        if (escrow < o.qty * f.ask) return 8;
        if (block.timestamp > o.deadline + market.maxSettleLag()) return 9;
        if (market.isNonceInvalidated(o.consumer, o.nonce)) return 10;
        return 0;
    }

    function _word(bytes memory b, uint256 at) private pure returns (bytes32 w) {
        assembly {
            w := mload(add(add(b, 32), at))
        }
    }

    /// Each fill's event against the prediction; no (consumer, nonce) and no fill id settles twice.
    function _checkOutcomes(
        DataMarketplace.Fill[] memory fills,
        uint8[] memory expected,
        Merkle.BatchRecord memory rec,
        Vm.Log[] memory logs
    ) internal {
        uint256 k;
        for (uint256 i; i < fills.length; ++i) {
            while (logs[k].topics[0] != FILL_SETTLED && logs[k].topics[0] != FILL_REJECTED) ++k;
            Vm.Log memory l = logs[k++];
            DataMarketplace.Order memory o = fills[i].order;
            if (expected[i] != 0) {
                assertFalse(rec.settled[i], "the fill is refused");
                assertEq(uint256(abi.decode(l.data, (uint8))), expected[i], "refusal reason");
                ++fillsRejected;
                ++rejectedByReason[expected[i]];
                continue;
            }
            assertTrue(rec.settled[i], "the fill settles");
            NonceRecord storage r = _nonceRecord(o.consumer, o.nonce);
            assertFalse(r.settled, "no (consumer, nonce) settles twice");
            assertFalse(fillSettled[l.topics[1]], "no fill id settles twice");
            r.settled = true;
            fillSettled[l.topics[1]] = true;
            settledNonces[o.consumer].push(o.nonce);
            ++fillsSettled;
        }
    }

    /// BatchSettled iff a fill settled; its id, root and leaf range match the contract's views.
    function _checkBatchEvent(Merkle.BatchRecord memory rec, Vm.Log[] memory logs, Before memory b0)
        internal
        returns (uint256 credited, uint256 spread)
    {
        Vm.Log memory l;
        uint256 nBatch;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics[0] == BATCH_SETTLED) {
                l = logs[i];
                ++nBatch;
            }
        }
        if (rec.batchId == 0) {
            assertEq(nBatch, 0, "no BatchSettled without a settled fill");
            assertEq(market.batchCount(), b0.batchCount, "no batch recorded");
            assertEq(market.leafCount(), b0.leafCount, "no leaves committed");
            return (0, 0);
        }
        assertEq(nBatch, 1, "one BatchSettled");
        bytes32 root;
        uint256 firstLeaf;
        uint256 leafCount;
        (root, firstLeaf, leafCount, credited, spread) =
            abi.decode(l.data, (bytes32, uint256, uint256, uint256, uint256));
        assertEq(rec.batchId, b0.batchCount + 1, "batch ids count up");
        assertEq(market.batchCount(), rec.batchId, "batchCount");
        assertEq(market.batchRoot(rec.batchId), root, "batchRoot is the event's root");
        assertEq(firstLeaf, b0.leafCount, "the batch's leaves follow the last batch's");
        assertEq(leafCount, rec.leaves.length, "leafCount: an access leaf per fill and a credit leaf per provider");
        assertEq(market.leafCount(), b0.leafCount + leafCount, "leafCount view");
        ++batchesSettled;
    }

    /// The batch's effect on the contract's views, against its BatchSettled and its leaves.
    function _checkDeltas(
        DataMarketplace.Fill[] memory fills,
        Merkle.BatchRecord memory rec,
        Before memory b0,
        uint256 credited,
        uint256 spread
    ) internal {
        uint256[] memory charged = new uint256[](N_CONSUMERS); // qty * ask of its settled fills
        uint256 signedSpread;
        for (uint256 i; i < fills.length; ++i) {
            if (!rec.settled[i]) continue;
            DataMarketplace.Fill memory f = fills[i];
            charged[consumerIndex[f.order.consumer] - 1] += f.order.qty * f.ask;
            signedSpread += f.order.qty * (uint256(f.ask) - f.bid);
        }
        uint256 escrowDecrease;
        for (uint256 i; i < N_CONSUMERS; ++i) {
            uint256 e = market.escrowOf(consumers[i]);
            assertLe(e, b0.escrow[i], "settlement only debits escrow");
            assertEq(b0.escrow[i] - e, charged[i], "a consumer is debited qty * ask of its settled fills");
            debited[consumers[i]] += b0.escrow[i] - e;
            escrowDecrease += b0.escrow[i] - e;
        }
        uint256 leafSum;
        for (uint256 i; i < rec.claims.length; ++i) {
            leafSum += rec.claims[i].amount;
        }
        assertEq(escrowDecrease, credited + spread, "escrow debited == BatchSettled credited + spread");
        assertEq(credited, leafSum, "credited == sum of the batch's credit leaves (the root commits them)");
        assertEq(spread, signedSpread, "spread == sum of qty * (ask - bid)");
        assertEq(market.unclaimedCredits(), b0.unclaimed + credited, "unclaimedCredits grows by credited");
        assertEq(market.brokerEarnings(), b0.brokerEarnings + spread, "brokerEarnings grows by spread");
        assertEq(token.balanceOf(address(market)), b0.balance, "settlement moves no PAT");
        creditedTotal += credited;
        spreadTotal += spread;
    }

    // -------------------------------------------------------------------------- drain

    /// Everyone takes out what it is owed: a third party claims every open credit, providers
    /// and the broker withdraw, every consumer requests and withdraws its whole escrow.
    function drain() external {
        if (market.paused()) _setPaused(false);
        for (uint256 guard; guard < 64; ++guard) {
            bool open;
            for (uint256 q; q < N_PROVIDERS; ++q) {
                if (openOf[providers[q]].length != 0) open = true;
            }
            if (!open) break;
            _claim(address(0), true, outsiders[1], 0);
        }
        for (uint256 q; q < N_PROVIDERS; ++q) {
            if (market.earningsOf(providers[q]) != 0) _withdrawEarnings(providers[q]);
        }
        if (market.brokerEarnings() != 0) _withdrawBrokerEarnings(broker);
        bool[] memory requested = new bool[](N_CONSUMERS);
        for (uint256 i; i < N_CONSUMERS; ++i) {
            uint256 e = market.escrowOf(consumers[i]);
            if (e != 0) _request(consumers[i], e);
            requested[i] = e != 0;
        }
        vm.warp(block.timestamp + market.withdrawalDelay());
        for (uint256 i; i < N_CONSUMERS; ++i) {
            if (requested[i]) _withdraw(consumers[i]);
        }
    }
}
