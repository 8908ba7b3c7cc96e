// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {Test} from "./utils/Test.sol";
import {PAT} from "../src/PAT.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

contract PATTest is Test {
    PAT token;
    uint256 constant OWNER_PK = 0xA11CE;
    address holder;
    address spender = address(0x5BE);

    bytes32 constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    function setUp() public {
        holder = vm.addr(OWNER_PK);
        token = new PAT(holder, 1_000e18);
    }

    function test_metadataAndSupply() public view {
        assertEq(token.name(), "PAT", "name");
        assertEq(token.symbol(), "PAT", "symbol");
        assertEq(token.decimals(), 18, "decimals");
        assertEq(token.totalSupply(), 1_000e18, "supply");
        assertEq(token.balanceOf(holder), 1_000e18, "all to holder");
    }

    function test_revert_zeroHolder() public {
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InvalidReceiver.selector, address(0)));
        new PAT(address(0), 1);
    }

    function _permitDigest(uint256 value, uint256 nonce, uint256 deadline) internal view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, holder, spender, value, nonce, deadline));
        return keccak256(abi.encodePacked(hex"1901", token.DOMAIN_SEPARATOR(), structHash));
    }

    function test_permit() public {
        uint256 deadline = block.timestamp + 1;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(OWNER_PK, _permitDigest(5e18, 0, deadline));
        token.permit(holder, spender, 5e18, deadline, v, r, s);
        assertEq(token.allowance(holder, spender), 5e18, "allowance set by permit");
        assertEq(token.nonces(holder), 1, "nonce consumed");

        vm.expectRevert(
            abi.encodeWithSelector(ERC20Permit.ERC2612InvalidSigner.selector, _recoverFor(5e18, 1, deadline, v, r, s), holder)
        );
        token.permit(holder, spender, 5e18, deadline, v, r, s); // replay
    }

    function _recoverFor(uint256 value, uint256 nonce, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        internal
        view
        returns (address)
    {
        return ecrecover(_permitDigest(value, nonce, deadline), v, r, s);
    }

    function test_permit_revert_expired() public {
        uint256 deadline = block.timestamp;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(OWNER_PK, _permitDigest(1, 0, deadline));
        vm.warp(deadline + 1);
        vm.expectRevert(abi.encodeWithSelector(ERC20Permit.ERC2612ExpiredSignature.selector, deadline));
        token.permit(holder, spender, 1, deadline, v, r, s);
    }

    function test_domainName() public view {
        (, string memory name, string memory version,,,,) = token.eip712Domain();
        assertEq(name, "PAT", "permit domain name");
        assertEq(version, "1", "permit domain version");
    }
}
