// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Fixture} from "./utils/Fixture.sol";
import {DataMarketplace} from "../src/DataMarketplace.sol";

/// Pinned EIP-712 test vector shared with the Rust engine (which signs and hashes the
/// same Order): every literal below was computed outside Solidity, with `cast keccak` /
/// `cast abi-encode` by hand from the type string and domain, and the signature with
/// `cast wallet sign --no-hash`. If one of them changes, orders signed by the engine no
/// longer verify: change both sides together.
contract OrderHashTest is Fixture {
    uint256 constant ALICE_PK = 0xA11CE;
    address constant ALICE = 0xe05fcC23807536bEe418f142D19fa0d21BB0cfF7;

    /// Proxy address of the Fixture deployment (third contract created by the test
    /// contract 0x7FA9385bE102ac3EAc297483Dd6233D62b3e1496), chain id 31337.
    address constant VERIFYING_CONTRACT = 0xF62849F9A0B5Bf2913b396098F7c7019b51A820a;

    bytes32 constant MARKET_ID = 0x8ace9ab0da497a604bad060e68dd7aeef9584f3928c7db229e3c5a6316e1221c;
    bytes32 constant TYPEHASH = 0x7bff5eb4c13ebdd3ee473c74cc8af05e91126bb0e18f7c662a6df03c3a0f1294;
    bytes32 constant STRUCT_HASH = 0xcdd32461df6ac8512c46385871f66ac51e915951e2d2f404ca3a462bd4ebee63;
    bytes32 constant DOMAIN_SEPARATOR = 0xb3e810d96622f48913fd88b0859c2f78019ec7dbf81bbd7e0dbec4771a096976;
    bytes32 constant DIGEST = 0x1c33d017cdccb87c33aa12b183160e0fef09d3b20eb99273cddf016688998d19;
    bytes constant SIGNATURE =
        hex"a314d9b7ba3c617b83e8dbbd8915f5ab14dd598dde6997adea1c1ebe4b35911c19f15dbcac9151b8f091cc6816f48cdf8c72bc1ba249b833d6935621f34bef751b";

    function _vectorOrder() internal pure returns (DataMarketplace.Order memory) {
        return DataMarketplace.Order({
            consumer: ALICE,
            market: MARKET_ID,
            qty: 3,
            maxPrice: 2_500_000_000_000_000_000,
            nonce: 7,
            deadline: 1_767_225_600
        });
    }

    function test_vector_inputs() public view {
        assertEq(vm.addr(ALICE_PK), ALICE, "consumer = vm.addr(0xA11CE)");
        assertEq(keccak256("PURCHASE_INTENT|7D|0.70-0.85"), MARKET_ID, "market id");
        assertEq(block.chainid, 31337, "chain id");
        assertEq(address(market), VERIFYING_CONTRACT, "proxy address");
    }

    function test_vector_typeHash() public view {
        assertEq(market.ORDER_TYPEHASH(), TYPEHASH, "ORDER_TYPEHASH");
        assertEq(
            keccak256(
                "Order(address consumer,bytes32 market,uint256 qty,uint256 maxPrice,uint256 nonce,uint256 deadline)"
            ),
            TYPEHASH,
            "type string"
        );
    }

    function test_vector_structHash() public view {
        assertEq(market.hashOrderStruct(_vectorOrder()), STRUCT_HASH, "struct hash");
    }

    function test_vector_domainSeparator() public view {
        assertEq(market.domainSeparator(), DOMAIN_SEPARATOR, "domain separator");
        (, string memory name, string memory version, uint256 chainId, address verifying,,) = market.eip712Domain();
        assertEq(name, "PAT Data Marketplace", "name");
        assertEq(version, "1", "version");
        assertEq(chainId, 31337, "chainId");
        assertEq(verifying, VERIFYING_CONTRACT, "verifyingContract is the proxy");
    }

    function test_vector_digest() public view {
        assertEq(market.hashOrder(_vectorOrder()), DIGEST, "digest");
        assertEq(keccak256(abi.encodePacked(hex"1901", DOMAIN_SEPARATOR, STRUCT_HASH)), DIGEST, "digest by hand");
    }

    /// Third, independent computation: Foundry's EIP-712 JSON encoder.
    function test_vector_digestMatchesFoundryTypedData() public pure {
        string memory json = string.concat(
            '{"types":{"EIP712Domain":[{"name":"name","type":"string"},{"name":"version","type":"string"},',
            '{"name":"chainId","type":"uint256"},{"name":"verifyingContract","type":"address"}],',
            '"Order":[{"name":"consumer","type":"address"},{"name":"market","type":"bytes32"},',
            '{"name":"qty","type":"uint256"},{"name":"maxPrice","type":"uint256"},',
            '{"name":"nonce","type":"uint256"},{"name":"deadline","type":"uint256"}]},',
            '"primaryType":"Order","domain":{"name":"PAT Data Marketplace","version":"1","chainId":31337,',
            '"verifyingContract":"0xF62849F9A0B5Bf2913b396098F7c7019b51A820a"},',
            '"message":{"consumer":"0xe05fcC23807536bEe418f142D19fa0d21BB0cfF7",',
            '"market":"0x8ace9ab0da497a604bad060e68dd7aeef9584f3928c7db229e3c5a6316e1221c",',
            '"qty":"3","maxPrice":"2500000000000000000","nonce":"7","deadline":"1767225600"}}'
        );
        assertEq(vm.eip712HashTypedData(json), DIGEST, "vm.eip712HashTypedData");
    }

    function test_vector_signature() public {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, DIGEST);
        assertEq(keccak256(abi.encodePacked(r, s, v)), keccak256(SIGNATURE), "RFC 6979 signature");

        // and it settles: the vector is a real, acceptable order
        _fund(ALICE, 10e18);
        vm.warp(1_767_225_600);
        DataMarketplace.Order memory o = _vectorOrder();
        DataMarketplace.Fill memory f = _fill(o);
        _settleOne(f, SIGNATURE);
        assertTrue(settledFill[DIGEST], "vector order settles, its fill id is the pinned digest");
        assertEq(access[ALICE][MARKET_ID], 3, "access");
    }
}
