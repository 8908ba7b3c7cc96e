#!/usr/bin/env node
// Offline solc for forge: wraps the pinned solcjs (npm "solc") so that
// foundry.toml can say `solc = "solc.js"` with `offline = true`.
// Supports the two calls forge makes:
//   solc.js --version                          -> "Version: 0.8.30+commit..."
//   solc.js [--base-path P] [--include-path P] [--allow-paths ...] --standard-json
//                                              -> standard JSON in on stdin, out on stdout
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const args = process.argv.slice(2);

if (args.includes("--version") || args.includes("-v")) {
  process.stdout.write("solc, the solidity compiler commandline interface\n");
  process.stdout.write(`Version: ${solc.version()}\n`);
  process.exit(0);
}

if (!args.includes("--standard-json")) {
  process.stderr.write("solc.js: only --version and --standard-json are supported\n");
  process.exit(2);
}

// Roots an import may be resolved against, in order (like solc's VFS).
const roots = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === "--base-path" || args[i] === "--include-path") roots.push(args[++i]);
}
roots.push(process.cwd(), __dirname);

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath)
    ? [importPath]
    : roots.map((r) => path.resolve(r, importPath));
  for (const c of candidates) {
    try {
      return { contents: fs.readFileSync(c, "utf8") };
    } catch (_) {
      /* try the next root */
    }
  }
  return { error: `File not found: ${importPath}` };
}

const input = fs.readFileSync(0, "utf8");
process.stdout.write(solc.compile(input, { import: findImports }));
