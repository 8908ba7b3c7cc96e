#!/usr/bin/env node
// Writes compact Foundry-shaped artifacts for the Rust crate (alloy's
// `sol!(Name, "path.json")` reads `abi`, `bytecode.object`, `deployedBytecode.object`).
//   node export-artifacts.js <forge out dir> <destination dir>
// Output is deterministic: fixed key order, 2-space indent, trailing newline.
"use strict";
const fs = require("fs");
const path = require("path");

// artifact name -> source file under out/
const CONTRACTS = {
  PAT: "PAT.sol",
  DataMarketplace: "DataMarketplace.sol",
  ERC1967Proxy: "ERC1967Proxy.sol",
  // The frozen V1 implementation, for the live-upgrade test (chain::devnet::Devnet::start_v1).
  DataMarketplaceV1: "DataMarketplaceV1.sol",
  // OpenZeppelin's, compiled because DataMarketplace.sol imports it: the owner that may upgrade
  // (L-5). Deploy exactly this code: DataMarketplace accepts only its code hash.
  TimelockController: "TimelockController.sol",
};

const [outDir, destDir] = process.argv.slice(2);
if (!outDir || !destDir) {
  console.error("usage: export-artifacts.js <forge out dir> <destination dir>");
  process.exit(2);
}
fs.mkdirSync(destDir, { recursive: true });

for (const [name, source] of Object.entries(CONTRACTS)) {
  const file = path.join(outDir, source, `${name}.json`);
  const artifact = JSON.parse(fs.readFileSync(file, "utf8"));
  const bytecode = artifact.bytecode && artifact.bytecode.object;
  const deployed = artifact.deployedBytecode && artifact.deployedBytecode.object;
  if (!Array.isArray(artifact.abi) || !/^0x[0-9a-f]+$/.test(bytecode) || !/^0x[0-9a-f]+$/.test(deployed)) {
    console.error(`export-artifacts: ${file} has no abi or no linked bytecode`);
    process.exit(1);
  }
  const compact = { abi: artifact.abi, bytecode: { object: bytecode }, deployedBytecode: { object: deployed } };
  fs.writeFileSync(path.join(destDir, `${name}.json`), JSON.stringify(compact, null, 2) + "\n");
}
