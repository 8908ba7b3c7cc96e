#!/usr/bin/env bash
# The whole test suite, as CI runs it, from a fresh machine:
#   1. installs the project's toolchain (node/npm if missing, Foundry, solcjs, OpenZeppelin,
#      the s3s-fs S3 server, promtool from Debian's prometheus package),
#   2. checks formatting and clippy (warnings are errors),
#   3. runs every Rust test (unit, property, end-to-end against anvil),
#   4. builds and tests the contracts, checks the gas snapshot and that the
#      committed ABI/bytecode in chain/artifacts match a fresh build,
#   5. validates the shipped config with the real binary.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
scripts/toolchain.sh
if ! command -v promtool >/dev/null 2>&1; then
  # promtool (Debian package prometheus) lints the /metrics exposition in the server tests.
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null
fi
eval "$(scripts/toolchain.sh --print-env)"
export FORGE ANVIL CAST S3S_FS

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "contracts: forge test, gas snapshot, artifacts"
scripts/contracts.sh test
scripts/contracts.sh check-artifacts

step "config check with the binary"
cargo run --quiet --locked -- check-config config/default.toml

step "rust tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
