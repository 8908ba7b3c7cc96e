#!/usr/bin/env bash
# Installs the contracts toolchain offline-capably and idempotently:
#   - node + npm (Debian packages) if missing,
#   - `npm ci` in contracts/ when node_modules is missing or older than the lock file
#     (Foundry's forge/anvil/cast 1.7.1 binaries, solcjs 0.8.30, OpenZeppelin 5),
#   - s3s-fs 0.14.1 (an S3-protocol server for the storage tests) into .tools/ with cargo install,
# and checks the binaries run. Prints nothing when everything is already in place.
#
#   scripts/toolchain.sh              install if needed
#   scripts/toolchain.sh --print-env  also print `export FORGE=... ANVIL=... CAST=... S3S_FS=...`
#                                     (eval "$(scripts/toolchain.sh --print-env)")
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
contracts="$root/contracts"
print_env=0
case "${1:-}" in
  "") ;;
  --print-env) print_env=1 ;;
  -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
  *) echo "toolchain.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
esac

log() { echo "toolchain: $*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing node and npm with apt-get"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >&2
fi

bin="$contracts/node_modules/@foundry-rs"
FORGE="$bin/forge-linux-amd64/bin/forge"
ANVIL="$bin/anvil-linux-amd64/bin/anvil"
CAST="$bin/cast-linux-amd64/bin/cast"

# npm ci writes node_modules/.package-lock.json; it is our stamp of a complete install.
stamp="$contracts/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$contracts/package-lock.json" -nt "$stamp" ] || [ "$contracts/package.json" -nt "$stamp" ] \
  || [ ! -f "$FORGE" ] || [ ! -f "$ANVIL" ] || [ ! -f "$CAST" ] || [ ! -d "$contracts/node_modules/solc" ]; then
  log "npm ci in contracts/"
  (cd "$contracts" && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$stamp"
fi

for b in "$FORGE" "$ANVIL" "$CAST" "$contracts/solc.js"; do
  [ -x "$b" ] || chmod +x "$b" 2>/dev/null || { log "missing binary: $b"; exit 1; }
done
"$FORGE" --version >/dev/null 2>&1 || { log "forge does not run: $FORGE"; exit 1; }
"$contracts/solc.js" --version | grep -q '^Version: 0\.8\.30+' || { log "solc.js does not report 0.8.30"; exit 1; }

# s3s-fs 0.17 needs a newer rustc than the machine's 1.95; 0.14.1 builds with it (about 3 minutes).
S3S_FS="$root/.tools/bin/s3s-fs"
if [ ! -x "$S3S_FS" ]; then
  log "cargo install s3s-fs 0.14.1 into .tools/"
  cargo install s3s-fs@0.14.1 --locked --features binary --root "$root/.tools" --quiet >&2
fi
"$S3S_FS" --version >/dev/null 2>&1 || { log "s3s-fs does not run: $S3S_FS"; exit 1; }

if [ "$print_env" -eq 1 ]; then
  printf 'export FORGE=%q ANVIL=%q CAST=%q S3S_FS=%q\n' "$FORGE" "$ANVIL" "$CAST" "$S3S_FS"
fi
