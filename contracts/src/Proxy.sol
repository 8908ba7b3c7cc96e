// SPDX-License-Identifier: MIT
pragma solidity ^0.8.30;

// Compiles OpenZeppelin's ERC1967Proxy with the same settings as the marketplace, so
// chain/artifacts/ERC1967Proxy.json is built here and the Rust side can deploy
// implementation + proxy.
import {ERC1967Proxy} from "@openzeppelin/contracts/proxy/ERC1967/ERC1967Proxy.sol";
