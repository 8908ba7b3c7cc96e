// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Test, Vm} from "../utils/Test.sol";
import {PAT} from "../../src/PAT.sol";
import {DataMarketplace} from "../../src/DataMarketplace.sol";
import {Merkle} from "../utils/Merkle.sol";

/// @dev Drives the marketplace with random but bounded actions (deposits, withdrawal
///      requests and payouts, batches of good and bad fills, earnings payouts, pause,
///      time, credit claims), keeps a simple reference model of every balance, checks each batch's
///      per-fill outcome against the model, and counts money flows in ghost variables.
///      No action reverts (the suite runs with fail_on_revert).
contract Handler is Test {
    DataMarketplace public immutable market;
    PAT public immutable token;
    address public immutable broker;
    address public immutable owner;

    uint256 public constant N_CONSUMERS = 3;
    uint256 public constant N_PROVIDERS = 4;
    uint256[N_CONSUMERS] internal consumerPks = [uint256(0xC1), 0xC2, 0xC3];
    address[N_CONSUMERS] public consumers;
    address[N_PROVIDERS] public providers = [address(0xA1), address(0xA2), address(0xA3), address(0xA4)];

    // --- reference model
    mapping(address => uint256) public modelEscrow;
    /// claimed, withdrawable
    mapping(address => uint256) public modelEarnings;
    /// committed by batch roots, not claimed yet
    uint256 public modelUnclaimed;
    uint256 public modelBroker;
    mapping(address => mapping(uint256 => bool)) internal modelNonceUsed;
    bool internal modelPaused;
    /// the model of invalidateNonces, per (consumer, word): bits in effect, pending, and when
    struct ModelCancel {
        uint64 effective;
        uint64 pending;
        uint64 effectiveAt;
    }

    mapping(address => mapping(uint256 => ModelCancel)) internal modelCancel;
    mapping(address => uint256[]) internal cancelledNonces;

    // --- ghosts
    uint256 public ghostDeposited;
    uint256 public ghostWithdrawn;
    uint256 public ghostDebited;
    uint256 public ghostProviderCredited;
    uint256 public ghostSpread;
    uint256 public ghostEarningsPaid;
    uint256 public ghostBrokerPaid;
    uint256 public ghostDoubleSettlements;
    uint256 public ghostFillsSettled;
    uint256 public ghostFillsRejected;
    mapping(uint8 => uint256) public ghostRejectedByReason;
    mapping(bytes32 => uint256) internal settleCount;
    mapping(address => mapping(uint256 => uint256)) internal nonceSettleCount;
    uint256 public ghostClaimed;

    /// credits settled and not claimed yet, with their proofs (rebuilt from the events)
    struct Pending {
        uint256 batchId;
        uint256 leaf;
        address provider;
        uint256 amount;
    }

    Pending[] internal pending;
    mapping(uint256 leaf => bytes32[]) internal proofOf;
    mapping(address => uint256) internal nextNonce;
    mapping(address => uint256[]) internal usedNonces;

    bytes32 constant FILL_SETTLED = keccak256("FillSettled(bytes32,address,uint256)");
    bytes32 constant FILL_REJECTED = keccak256("FillRejected(bytes32,uint8)");

    constructor(DataMarketplace market_, PAT token_, address broker_, address owner_) {
        market = market_;
        token = token_;
        broker = broker_;
        owner = owner_;
        for (uint256 i; i < N_CONSUMERS; ++i) {
            consumers[i] = vm.addr(consumerPks[i]);
        }
    }

    // ------------------------------------------------------------------ escrow

    function deposit(uint256 who, uint256 amount) external {
        address c = consumers[who % N_CONSUMERS];
        amount = bound(amount, 1, 1e22);
        token.transfer(c, amount);
        vm.startPrank(c);
        token.approve(address(market), amount);
        if (modelPaused) {
            vm.expectRevert(DataMarketplace.MarketPaused.selector);
            market.deposit(amount);
            vm.stopPrank();
            return;
        }
        market.deposit(amount);
        vm.stopPrank();
        modelEscrow[c] += amount;
        ghostDeposited += amount;
    }

    function requestWithdrawal(uint256 who, uint256 amount) external {
        address c = consumers[who % N_CONSUMERS];
        uint256 escrow = modelEscrow[c];
        if (escrow == 0) return;
        vm.prank(c);
        market.requestWithdrawal(bound(amount, 1, escrow));
    }

    function withdraw(uint256 who) external {
        address c = consumers[who % N_CONSUMERS];
        (uint256 requested, uint64 readyAt, uint64 expiresAt) = market.withdrawalStatus(c);
        if (readyAt == 0) return;
        if (block.timestamp > expiresAt) {
            // V2: a matured request not withdrawn within the window expired
            vm.prank(c);
            vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalExpired.selector, expiresAt));
            market.withdraw();
            return;
        }
        if (block.timestamp < readyAt) {
            if (modelPaused) {
                // V2: a pause stops the clock of a request not ready yet
                vm.prank(c);
                vm.expectRevert(abi.encodeWithSelector(DataMarketplace.WithdrawalNotReady.selector, readyAt));
                market.withdraw();
                return;
            }
            vm.warp(readyAt);
        }
        uint256 before = token.balanceOf(c);
        vm.prank(c);
        market.withdraw();
        uint256 paid = token.balanceOf(c) - before;
        uint256 expected = requested < modelEscrow[c] ? requested : modelEscrow[c];
        vm.assertEq(paid, expected, "withdraw pays min(requested, escrow)");
        modelEscrow[c] -= paid;
        ghostWithdrawn += paid;
    }

    // ---------------------------------------------------------------- earnings

    function withdrawEarnings(uint256 who) external {
        address p = providers[who % N_PROVIDERS];
        uint256 amount = modelEarnings[p];
        if (amount == 0) return;
        vm.prank(p);
        market.withdrawEarnings();
        modelEarnings[p] = 0;
        ghostEarningsPaid += amount;
    }

    /// Claims every pending credit of one provider, in one call.
    function claim(uint256 who) external {
        address p = providers[who % N_PROVIDERS];
        uint256 count;
        for (uint256 i; i < pending.length; ++i) {
            if (pending[i].provider == p) ++count;
        }
        if (count == 0) return;
        DataMarketplace.Claim[] memory claims = new DataMarketplace.Claim[](count);
        uint256 k;
        uint256 total;
        for (uint256 i = pending.length; i > 0; --i) {
            Pending memory c = pending[i - 1];
            if (c.provider != p) continue;
            claims[k++] = DataMarketplace.Claim(c.batchId, c.leaf, c.provider, c.amount, proofOf[c.leaf]);
            total += c.amount;
            pending[i - 1] = pending[pending.length - 1];
            pending.pop();
        }
        vm.assertEq(market.claimCredits(claims), total, "claimed total");
        // a second claim of the same credit is skipped (V2: not reverted), and pays nothing
        vm.assertEq(market.claimCredits(claims), 0, "nothing claimed twice");
        modelEarnings[p] += total;
        modelUnclaimed -= total;
        ghostClaimed += total;
    }

    function withdrawBrokerEarnings() external {
        if (modelBroker == 0) return;
        vm.prank(broker);
        market.withdrawBrokerEarnings();
        ghostBrokerPaid += modelBroker;
        modelBroker = 0;
    }

    /// A consumer cancels one of its next few nonces (V2); it takes effect maxSettleLag later.
    function invalidate(uint256 who, uint256 ahead) external {
        address c = consumers[who % N_CONSUMERS];
        uint256 nonce = nextNonce[c] + ahead % 3;
        uint256 word = nonce >> 6;
        uint64 mask = uint64(1) << uint8(nonce & 63);
        ModelCancel storage m = modelCancel[c][word];
        if (m.pending != 0 && block.timestamp >= m.effectiveAt) {
            m.effective |= m.pending;
            m.pending = 0;
        }
        m.pending |= mask;
        m.effectiveAt = uint64(block.timestamp) + market.maxSettleLag();
        cancelledNonces[c].push(nonce);
        vm.prank(c);
        market.invalidateNonces(word, mask);
    }

    function _modelCancelled(address c, uint256 nonce) internal view returns (bool) {
        ModelCancel memory m = modelCancel[c][nonce >> 6];
        uint64 bit = uint64(1) << uint8(nonce & 63);
        return m.effective & bit != 0 || (m.pending & bit != 0 && block.timestamp >= m.effectiveAt);
    }

    // ------------------------------------------------------------ environment

    function warp(uint256 secs) external {
        vm.warp(block.timestamp + bound(secs, 0, 2 hours));
    }

    function togglePause(uint256 seed) external {
        if (seed % 4 != 0) return; // keep the market mostly open
        modelPaused = !modelPaused;
        vm.prank(owner);
        market.setPaused(modelPaused);
    }

    // -------------------------------------------------------------- settlement

    struct Draft {
        uint256 rnd;
        uint256 consumerIdx;
        uint256 nProviders;
    }

    function settle(uint256 seed, uint256 count) external {
        uint256 n = bound(count, 1, 5);
        DataMarketplace.Fill[] memory fills = new DataMarketplace.Fill[](n);
        bytes[] memory sigs = new bytes[](n);
        uint8[] memory expected = new uint8[](n);
        for (uint256 i; i < n; ++i) {
            (fills[i], sigs[i]) = _draft(uint256(keccak256(abi.encode(seed, i))));
        }

        bytes memory packed = market.encodeBatch(fills, sigs);
        if (modelPaused) {
            vm.prank(broker);
            vm.expectRevert(DataMarketplace.MarketPaused.selector);
            market.settleBatch(packed);
            return;
        }

        // The model decides each outcome in order, applying the earlier fills' effects.
        for (uint256 i; i < n; ++i) {
            expected[i] = _modelApply(fills[i], sigs[i]);
        }

        vm.recordLogs();
        vm.prank(broker);
        market.settleBatch(packed);
        _checkLogs(fills, expected, vm.getRecordedLogs());
    }

    function _draft(uint256 rnd) internal returns (DataMarketplace.Fill memory f, bytes memory sig) {
        uint256 ci = rnd % N_CONSUMERS;
        address c = consumers[ci];

        DataMarketplace.Order memory o;
        o.consumer = c;
        o.market = bytes32(uint256(1 + (rnd >> 4) % 3));
        o.qty = 1 + (rnd >> 8) % 20;
        // mostly a fresh nonce, sometimes one of this consumer's settled nonces again
        uint256[] storage used = usedNonces[c];
        uint256[] storage cancelled = cancelledNonces[c];
        if ((rnd >> 16) % 8 == 0 && used.length > 0) o.nonce = used[(rnd >> 20) % used.length];
        else if ((rnd >> 16) % 8 == 1 && cancelled.length > 0) o.nonce = cancelled[(rnd >> 20) % cancelled.length];
        else o.nonce = nextNonce[c]++;
        uint256 deadlineCase = (rnd >> 28) % 12;
        o.deadline = deadlineCase == 0 ? block.timestamp - 1 : block.timestamp + 100;
        // V2: accepted in time, but the deadline is more than maxSettleLag ago
        if (deadlineCase == 1) o.deadline = block.timestamp - market.maxSettleLag() - 1 - (rnd >> 24) % 100;

        f.ask = uint128((rnd >> 32) % 3e18);
        // within the 20 % cap, except one time in eight (up to 60 %)
        uint256 spreadBps = (rnd >> 96) % ((rnd >> 92) % 8 == 0 ? 6000 : 2001);
        f.bid = uint128(f.ask - (uint256(f.ask) * spreadBps) / 10_000);
        if ((rnd >> 110) % 25 == 0) f.bid = f.ask + 1;
        o.maxPrice = (rnd >> 116) % 8 == 0 && f.ask > 0 ? f.ask - 1 : f.ask + (rnd >> 120) % 1e18;
        f.acceptedAt = uint64((rnd >> 180) % 15 == 0 ? block.timestamp + 1 : block.timestamp);
        if (deadlineCase == 1 && f.acceptedAt <= block.timestamp) f.acceptedAt = uint64(o.deadline);

        uint256 m = 1 + (rnd >> 170) % 3;
        f.providers = new address[](m);
        f.units = new uint64[](m);
        uint256 left = o.qty;
        for (uint256 j; j < m; ++j) {
            f.providers[j] = providers[(rnd >> (200 + 8 * j)) % N_PROVIDERS];
            f.units[j] = uint64(j == m - 1 ? left : (rnd >> (176 + 4 * j)) % (left + 1));
            left -= f.units[j];
        }
        if ((rnd >> 230) % 15 == 0) f.units[0] += 1; // sum != qty
        f.order = o;

        uint256 pk = (rnd >> 240) % 12 == 0 ? consumerPks[(ci + 1) % N_CONSUMERS] : consumerPks[ci];
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, market.hashOrder(o));
        sig = abi.encodePacked(r, s, v);
    }

    /// Reference model of one fill: the reason it is rejected with, or 0 after applying it.
    function _modelApply(DataMarketplace.Fill memory f, bytes memory sig) internal returns (uint8) {
        DataMarketplace.Order memory o = f.order;
        if (
            ecrecover(market.hashOrder(o), uint8(sig[64]), bytes32(_word(sig, 0)), bytes32(_word(sig, 32)))
                != o.consumer
        ) {
            return 2;
        }
        if (modelNonceUsed[o.consumer][o.nonce]) return 3;
        if (f.acceptedAt > o.deadline || f.acceptedAt > block.timestamp) return 4;
        if (f.ask > o.maxPrice) return 5;
        if (f.bid > f.ask || (f.ask - f.bid) * 10_000 > f.ask * market.brokerMarginBps()) return 6;
        uint256 sum;
        for (uint256 j; j < f.units.length; ++j) {
            sum += f.units[j];
        }
        if (sum != o.qty) return 7;
        uint256 cost = o.qty * f.ask;
        if (modelEscrow[o.consumer] < cost) return 8;
        if (block.timestamp > o.deadline + market.maxSettleLag()) return 9;
        if (_modelCancelled(o.consumer, o.nonce)) return 10;

        modelNonceUsed[o.consumer][o.nonce] = true;
        modelEscrow[o.consumer] -= cost;
        for (uint256 j; j < f.providers.length; ++j) {
            modelUnclaimed += f.units[j] * f.bid;
        }
        modelBroker += o.qty * (f.ask - f.bid);
        return 0;
    }

    function _word(bytes memory b, uint256 at) private pure returns (uint256 w) {
        assembly {
            w := mload(add(add(b, 32), at))
        }
    }

    /// Walks the batch's events fill by fill, checks them against the model, rebuilds the
    /// batch's tree (its root must match: the credits are exactly the model's), keeps the
    /// credits' proofs for later claims, updates ghosts.
    function _checkLogs(DataMarketplace.Fill[] memory fills, uint8[] memory expected, Vm.Log[] memory logs) internal {
        Merkle.BatchRecord memory b = Merkle.record(vm, address(market), fills, logs);
        uint256 k;
        for (uint256 i; i < fills.length; ++i) {
            DataMarketplace.Fill memory f = fills[i];
            vm.assertEq(b.settled[i], expected[i] == 0, "model and contract agree on the outcome");
            if (expected[i] != 0) {
                vm.assertEq(logs[k].topics[0], FILL_REJECTED, "model expects a rejection");
                vm.assertEq(uint256(abi.decode(logs[k].data, (uint8))), expected[i], "rejection reason");
                ++k;
                ++ghostFillsRejected;
                ++ghostRejectedByReason[expected[i]];
                continue;
            }
            vm.assertEq(logs[k].topics[0], FILL_SETTLED, "model expects a settlement");
            ++k;
            uint256 cost = f.order.qty * f.ask;
            ghostDebited += cost;
            ghostProviderCredited += f.order.qty * f.bid;
            ghostSpread += f.order.qty * (f.ask - f.bid);
            ++ghostFillsSettled;
            if (++settleCount[market.hashOrder(f.order)] > 1) ++ghostDoubleSettlements;
            if (++nonceSettleCount[f.order.consumer][f.order.nonce] > 1) ++ghostDoubleSettlements;
            usedNonces[f.order.consumer].push(f.order.nonce);
        }
        for (uint256 i; i < b.claims.length; ++i) {
            DataMarketplace.Claim memory c = b.claims[i];
            pending.push(Pending(c.batchId, c.leaf, c.provider, c.amount));
            proofOf[c.leaf] = c.proof;
        }
        vm.assertEq(k + (b.batchId == 0 ? 0 : 1), logs.length, "no other events");
    }
}
