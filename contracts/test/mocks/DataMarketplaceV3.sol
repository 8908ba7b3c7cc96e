// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {DataMarketplace} from "../../src/DataMarketplace.sol";

/// @dev Upgrade target for tests: the current contract (V2) plus a version and one new
///      value kept in its own ERC-7201 namespace, set by a reinitializer (version 3).
/// @custom:oz-upgrades-unsafe-allow constructor
contract DataMarketplaceV3 is DataMarketplace {
    /// @custom:storage-location erc7201:pat.storage.DataMarketplaceV2
    struct V2Storage {
        uint256 answer;
    }

    // keccak256(abi.encode(uint256(keccak256("pat.storage.DataMarketplaceV2")) - 1)) & ~bytes32(uint256(0xff))
    bytes32 private constant V2_LOCATION = 0x0624272de5b63ed7f8cf154032550a15f9d4c78bab8ef9154f30fca68e8dc000;

    function initializeV3(uint256 answer_) external reinitializer(3) {
        _v2().answer = answer_;
    }

    function version() external pure override returns (uint256) {
        return 3;
    }

    function answer() external view returns (uint256) {
        return _v2().answer;
    }

    function _v2() private pure returns (V2Storage storage $) {
        assembly {
            $.slot := V2_LOCATION
        }
    }
}

/// @dev Not UUPS: upgrading to it must be refused (it would brick future upgrades).
contract NotUUPS {
    function hello() external pure returns (uint256) {
        return 1;
    }
}
