// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Test, Vm} from "./Test.sol";
import {Merkle} from "./Merkle.sol";
import {PAT} from "../../src/PAT.sol";
import {DataMarketplace} from "../../src/DataMarketplace.sol";
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @dev A deployed market (PAT + implementation + ERC1967 proxy) with a funded consumer,
///      and helpers to build, sign and settle fills.
abstract contract Fixture is Test {
    PAT internal token;
    DataMarketplace internal impl;
    DataMarketplace internal market;

    address internal owner = address(0x0E1);
    address internal broker = address(0xB20);
    address internal brokerWallet = address(0xB3A);
    address internal usersPool = address(0x9001);

    uint256 internal constant CONSUMER_PK = 0xC0FFEE;
    address internal consumer;
    uint256 internal constant OTHER_PK = 0xBEEF;
    address internal other;

    address internal provider1 = address(0x1001);
    address internal provider2 = address(0x1002);
    address internal provider3 = address(0x1003);

    uint16 internal constant MARGIN_BPS = 2000; // 20 %
    uint256 internal constant SUPPLY = 1_000_000_000e18;
    uint256 internal constant START = 1_767_000_000;
    bytes32 internal constant MARKET = keccak256("PURCHASE_INTENT|7D|0.70-0.85");

    uint128 internal constant ASK = 2e18;
    uint128 internal constant BID = 1.7e18; // spread 15 % < 20 %

    function setUp() public virtual {
        vm.warp(START);
        consumer = vm.addr(CONSUMER_PK);
        other = vm.addr(OTHER_PK);
        token = new PAT(address(this), SUPPLY);
        impl = new DataMarketplace();
        market = DataMarketplace(
            address(new ERC1967Proxy(address(impl), _initCall(owner, IERC20(address(token)), MARGIN_BPS)))
        );
        vm.label(address(market), "marketplace");
        vm.label(consumer, "consumer");
        _fund(consumer, 1_000e18);
    }

    function _initCall(address owner_, IERC20 pat_, uint16 bps) internal view returns (bytes memory) {
        return abi.encodeCall(DataMarketplace.initialize, (owner_, pat_, broker, brokerWallet, usersPool, bps));
    }

    /// Gives `who` `amount` PAT and deposits it into escrow.
    function _fund(address who, uint256 amount) internal {
        token.transfer(who, amount);
        vm.startPrank(who);
        token.approve(address(market), amount);
        market.deposit(amount);
        vm.stopPrank();
    }

    function _order(address who, uint256 qty, uint256 maxPrice, uint256 nonce)
        internal
        view
        returns (DataMarketplace.Order memory)
    {
        return DataMarketplace.Order({
            consumer: who, market: MARKET, qty: qty, maxPrice: maxPrice, nonce: nonce, deadline: block.timestamp + 3600
        });
    }

    function _sign(uint256 pk, DataMarketplace.Order memory o) internal view returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, market.hashOrder(o));
        return abi.encodePacked(r, s, v);
    }

    /// A valid fill of `qty` units from provider1 (and provider2 if qty > 1), at ASK/BID.
    function _fill(DataMarketplace.Order memory o) internal view returns (DataMarketplace.Fill memory f) {
        address[] memory providers;
        uint64[] memory units;
        if (o.qty > 1) {
            providers = new address[](2);
            units = new uint64[](2);
            providers[0] = provider1;
            providers[1] = provider2;
            units[0] = uint64(o.qty / 2);
            units[1] = uint64(o.qty - o.qty / 2);
        } else {
            providers = new address[](1);
            units = new uint64[](1);
            providers[0] = provider1;
            units[0] = uint64(o.qty);
        }
        f = DataMarketplace.Fill({
            order: o, ask: ASK, bid: BID, acceptedAt: uint64(block.timestamp), providers: providers, units: units
        });
    }

    function _one(DataMarketplace.Fill memory f) internal pure returns (DataMarketplace.Fill[] memory fills) {
        fills = new DataMarketplace.Fill[](1);
        fills[0] = f;
    }

    function _one(bytes memory sig) internal pure returns (bytes[] memory sigs) {
        sigs = new bytes[](1);
        sigs[0] = sig;
    }

    /// What the tests' batches settled, rebuilt from the events and proved on chain.
    mapping(bytes32 fillId => bool) internal settledFill;
    mapping(address consumer => mapping(bytes32 market => uint256 units)) internal access;

    /// Settles a batch as the broker, rebuilds its Merkle tree from the events (the root must
    /// match), proves every access leaf with verifyAccess and claims every credit, so
    /// earningsOf shows what each provider was credited.
    function _settle(DataMarketplace.Fill[] memory fills, bytes[] memory sigs) internal {
        _settleLogged(fills, sigs);
    }

    /// {_settle}, returning the settleBatch call's logs.
    function _settleLogged(DataMarketplace.Fill[] memory fills, bytes[] memory sigs)
        internal
        returns (Vm.Log[] memory logs)
    {
        Merkle.BatchRecord memory b;
        (b, logs) = _settleNoClaim(fills, sigs);
        if (b.claims.length != 0) market.claimCredits(b.claims);
        assertEq(market.unclaimedCredits(), 0, "every credit claimed");
    }

    /// Settles and proves access, leaving the credits unclaimed; returns the batch's record.
    function _settleNoClaim(DataMarketplace.Fill[] memory fills, bytes[] memory sigs)
        internal
        returns (Merkle.BatchRecord memory b, Vm.Log[] memory logs)
    {
        bytes memory packed = market.encodeBatch(fills, sigs);
        vm.recordLogs();
        vm.prank(broker);
        market.settleBatch(packed);
        logs = vm.getRecordedLogs();
        b = Merkle.record(vm, address(market), fills, logs);
        for (uint256 i; i < b.access.length; ++i) {
            Merkle.AccessRecord memory a = b.access[i];
            assertTrue(
                market.verifyAccess(b.batchId, a.leaf, a.fillId, a.consumer, a.market, a.qty, a.proof), "access proved"
            );
            settledFill[a.fillId] = true;
            access[a.consumer][a.market] += a.qty;
        }
    }

    function _settleOne(DataMarketplace.Fill memory f, bytes memory sig) internal {
        _settle(_one(f), _one(sig));
    }

    /// Settles one valid fill of `qty` units for `consumer` with `nonce`; returns its id.
    function _settleValid(uint256 qty, uint256 nonce) internal returns (bytes32 id) {
        DataMarketplace.Order memory o = _order(consumer, qty, ASK, nonce);
        _settleOne(_fill(o), _sign(CONSUMER_PK, o));
        id = market.hashOrder(o);
    }

    /// The fill id of an order: its EIP-712 digest.
    function _id(DataMarketplace.Order memory o) internal view returns (bytes32) {
        return market.hashOrder(o);
    }
}
