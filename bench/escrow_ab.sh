#!/usr/bin/env bash
# Orders per second over HTTP against `pat-market devnet`, with escrow checks on or off
# (issue 15; docs/benchmarks.md). Release build first: cargo build --release -p pat-market
# usage: bench/escrow_ab.sh on|off SEED
set -u
cd "$(dirname "$0")/.."
mkdir -p /tmp/ab
mode=$1; seed=$2
d=$(mktemp -d /tmp/ab/run.XXXX)
base=config/default.toml
if [ "$mode" = off ]; then sed 's/^required = true/required = false/' config/default.toml > $d/base.toml; base=$d/base.toml; fi
target/release/pat-market devnet --data-dir $d/data --config $base --listen 127.0.0.1:18080 > $d/devnet.log 2>&1 &
pid=$!
for i in $(seq 1 300); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.2; done
extra=()
if [ "$mode" = on ]; then extra=(--fund-escrow 100000 --owner-key 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80); fi
target/release/pat-market load --url http://127.0.0.1:18080 --config $d/data/devnet.toml --rate 22000 --seconds 5 --in-flight 256 --seed $seed "${extra[@]}" > $d/load.log 2>&1
echo "== $mode seed $seed"; tail -6 $d/load.log
kill -TERM $pid; wait $pid 2>/dev/null
rm -rf $d
