// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Vm} from "./Test.sol";
import {DataMarketplace} from "../../src/DataMarketplace.sol";
import {Hashes} from "@openzeppelin/contracts/utils/cryptography/Hashes.sol";

/// @dev The batch's Merkle tree, rebuilt off chain the way a provider or the broker would:
///      from the fills sent and the receipt's events. Independent of the contract's code
///      (plain abi.encode and a level-by-level tree), so a root that matches proves the
///      contract committed exactly the expected credits and access rights.
library Merkle {
    bytes32 constant FILL_SETTLED = keccak256("FillSettled(bytes32,address,uint256)");
    bytes32 constant FILL_REJECTED = keccak256("FillRejected(bytes32,uint8)");
    bytes32 constant BATCH_SETTLED = keccak256("BatchSettled(uint256,bytes32,uint256,uint256,uint256,uint256)");

    /// What one settleBatch call committed.
    struct BatchRecord {
        uint256 batchId;
        bytes32 root;
        uint256 firstLeaf;
        bytes32[] leaves;
        bool[] settled; // per fill, in batch order
        DataMarketplace.Claim[] claims; // every credit leaf, with its proof
        AccessRecord[] access;
    }

    struct AccessRecord {
        uint256 leaf;
        bytes32 fillId;
        address consumer;
        bytes32 market;
        uint256 qty;
        bytes32[] proof;
    }

    function accessLeaf(uint256 leaf, bytes32 fillId, address consumer, bytes32 market, uint256 qty)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(leaf, fillId, consumer, market, qty));
    }

    function creditLeaf(uint256 leaf, address provider, uint256 amount) internal pure returns (bytes32) {
        return keccak256(abi.encode(leaf, provider, amount));
    }

    function root(bytes32[] memory leaves) internal pure returns (bytes32) {
        bytes32[] memory level = leaves;
        while (level.length > 1) level = _up(level);
        return level[0];
    }

    function proof(bytes32[] memory leaves, uint256 index) internal pure returns (bytes32[] memory p) {
        bytes32[] memory buf = new bytes32[](64);
        uint256 len;
        bytes32[] memory level = leaves;
        while (level.length > 1) {
            uint256 sibling = index ^ 1;
            if (sibling < level.length) buf[len++] = level[sibling];
            level = _up(level);
            index >>= 1;
        }
        p = new bytes32[](len);
        for (uint256 i; i < len; ++i) {
            p[i] = buf[i];
        }
    }

    function _up(bytes32[] memory level) private pure returns (bytes32[] memory next) {
        next = new bytes32[]((level.length + 1) / 2);
        for (uint256 i; i < next.length; ++i) {
            next[i] =
                2 * i + 1 < level.length ? Hashes.commutativeKeccak256(level[2 * i], level[2 * i + 1]) : level[2 * i];
        }
    }

    /// Decodes a settleBatch call's logs against its fills and rebuilds the batch's tree.
    /// Checks the events' order (one outcome per fill), each FillSettled's leaf index and
    /// the root; `b.batchId` is 0 when no fill settled.
    function record(Vm vm, address market, DataMarketplace.Fill[] memory fills, Vm.Log[] memory logs)
        internal
        view
        returns (BatchRecord memory b)
    {
        b.settled = new bool[](fills.length);
        bytes32[] memory ids = new bytes32[](fills.length);
        for (uint256 i; i < fills.length; ++i) {
            ids[i] = DataMarketplace(market).hashOrder(fills[i].order);
        }
        uint256[] memory leafOf = new uint256[](fills.length);
        uint256 nLeaves;
        uint256 nAccess;
        uint256 k;
        for (uint256 l; l < logs.length; ++l) {
            if (logs[l].emitter != market) continue;
            bytes32 t = logs[l].topics[0];
            if (t == FILL_SETTLED || t == FILL_REJECTED) {
                vm.assertEq(logs[l].topics[1], ids[k], "outcome events in fill order, fill id = order digest");
                if (t == FILL_SETTLED) {
                    vm.assertEq(logs[l].topics[2], bytes32(uint256(uint160(fills[k].order.consumer))), "consumer");
                    leafOf[k] = abi.decode(logs[l].data, (uint256));
                    b.settled[k] = true;
                    ++nAccess;
                    nLeaves += 1 + fills[k].providers.length;
                }
                ++k;
            } else if (t == BATCH_SETTLED) {
                b.batchId = uint256(logs[l].topics[1]);
                (b.root, b.firstLeaf) = abi.decode(logs[l].data, (bytes32, uint256));
            }
        }
        vm.assertEq(k, fills.length, "one outcome per fill");
        if (nAccess == 0) return b;

        b.leaves = new bytes32[](nLeaves);
        b.claims = new DataMarketplace.Claim[](nLeaves - nAccess);
        b.access = new AccessRecord[](nAccess);
        uint256 n;
        uint256 c;
        uint256 a;
        for (uint256 i; i < fills.length; ++i) {
            if (!b.settled[i]) continue;
            DataMarketplace.Fill memory f = fills[i];
            vm.assertEq(leafOf[i], b.firstLeaf + n, "FillSettled names the fill's access leaf");
            b.access[a++] =
                AccessRecord(b.firstLeaf + n, ids[i], f.order.consumer, f.order.market, f.order.qty, new bytes32[](0));
            b.leaves[n] = accessLeaf(b.firstLeaf + n, ids[i], f.order.consumer, f.order.market, f.order.qty);
            ++n;
            for (uint256 j; j < f.providers.length; ++j) {
                uint256 amount = uint256(f.units[j]) * f.bid;
                b.claims[c++] =
                    DataMarketplace.Claim(b.batchId, b.firstLeaf + n, f.providers[j], amount, new bytes32[](0));
                b.leaves[n] = creditLeaf(b.firstLeaf + n, f.providers[j], amount);
                ++n;
            }
        }
        vm.assertEq(root(b.leaves), b.root, "root commits exactly the expected leaves");
        for (uint256 i; i < b.claims.length; ++i) {
            b.claims[i].proof = proof(b.leaves, b.claims[i].leaf - b.firstLeaf);
        }
        for (uint256 i; i < b.access.length; ++i) {
            b.access[i].proof = proof(b.leaves, b.access[i].leaf - b.firstLeaf);
        }
    }
}
