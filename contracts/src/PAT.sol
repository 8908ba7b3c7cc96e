// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title PAT
/// @notice The payment token of the segment market: a fixed-supply ERC-20 (18 decimals)
///         with EIP-2612 permit, so a consumer can approve and deposit in one transaction.
/// @dev The whole supply is minted once, to `holder`; there is no mint or burn afterwards.
contract PAT is ERC20, ERC20Permit {
    /// @param holder receives the whole supply (reverts with ERC20InvalidReceiver if zero)
    /// @param supply total supply in base units
    constructor(address holder, uint256 supply) ERC20("PAT", "PAT") ERC20Permit("PAT") {
        _mint(holder, supply);
    }
}
