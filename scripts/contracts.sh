#!/usr/bin/env bash
# Builds, tests and exports the Solidity contracts (contracts/), offline.
#
#   scripts/contracts.sh build            forge build
#   scripts/contracts.sh test             forge build + forge test + gas snapshot check
#   scripts/contracts.sh export           write chain/artifacts/{PAT,DataMarketplace,ERC1967Proxy,DataMarketplaceV1,TimelockController}.json
#   scripts/contracts.sh check-artifacts  rebuild and fail if chain/artifacts is stale
#   scripts/contracts.sh snapshot         rewrite contracts/.gas-snapshot and contracts/snapshots/
#
# Installs the toolchain first if needed (scripts/toolchain.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
artifacts="$root/chain/artifacts"
names=(PAT DataMarketplace ERC1967Proxy DataMarketplaceV1 TimelockController)

usage() { sed -n '2,10p' "$0" >&2; exit 2; }
[ $# -eq 1 ] || usage

eval "$("$root/scripts/toolchain.sh" --print-env)"
cd "$root/contracts"

build() { "$FORGE" build --quiet; }

export_to() { build && node export-artifacts.js out "$1"; }

case "$1" in
  build)
    build
    ;;
  test)
    build
    "$FORGE" test
    # .gas-snapshot holds each test's gas; snapshots/*.json the exact settleBatch call gas.
    FORGE_SNAPSHOT_CHECK=true "$FORGE" snapshot --check
    ;;
  snapshot)
    build
    "$FORGE" snapshot
    ;;
  export)
    export_to "$artifacts"
    echo "wrote ${names[*]/%/.json} to chain/artifacts/"
    ;;
  check-artifacts)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    export_to "$tmp"
    stale=0
    for n in "${names[@]}"; do
      if ! cmp -s "$tmp/$n.json" "$artifacts/$n.json"; then
        echo "chain/artifacts/$n.json differs from a fresh build of contracts/" >&2
        stale=1
      fi
    done
    if [ "$stale" -ne 0 ]; then
      echo "artifacts are stale: run scripts/contracts.sh export and commit chain/artifacts/" >&2
      exit 1
    fi
    echo "chain/artifacts is up to date"
    ;;
  *)
    usage
    ;;
esac
