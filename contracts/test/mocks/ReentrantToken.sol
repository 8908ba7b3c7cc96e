// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @dev A hostile token that calls back into a target during transfers, to prove the
///      marketplace's nonReentrant guards hold.
contract ReentrantToken is ERC20 {
    address public target;
    bytes public callData;
    bytes public lastRevert;

    constructor() ERC20("Evil", "EVIL") {
        _mint(msg.sender, 1e30);
    }

    function arm(address target_, bytes calldata callData_) external {
        target = target_;
        callData = callData_;
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        address t = target;
        if (t != address(0)) {
            target = address(0); // once
            (bool ok, bytes memory ret) = t.call(callData);
            if (!ok) {
                assembly {
                    revert(add(ret, 32), mload(ret))
                }
            }
        }
    }
}
