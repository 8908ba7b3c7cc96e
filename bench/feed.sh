#!/usr/bin/env bash
# The quote feed benchmark (issue 6): the engine serving /v1/feed under order
# load against the floor (bench/src/bin/feed.rs floor: pre-encoded frames
# written to the same number of sockets, nothing behind them), at 1k and 10k
# clients subscribed to every market. Everything runs on this machine.
#   bench/feed.sh [CLIENTS...]     default: 1000 10000
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
clients=("${@:-1000}")
[ $# -gt 0 ] || clients=(1000 10000)
seconds=${SECONDS_PER_RUN:-10}
# Warm-up before measuring: 10k clients take seconds to connect and subscribe,
# and the snapshots and quotes queued meanwhile must drain first.
warmup=${WARMUP:-15}
rate=${ORDER_RATE:-1000}
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bin pat-market -p pat-market
cargo build --release --quiet --bin feed -p pat-bench
bin=target/release
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

# PRICE_TICK="0.000001" (the default here) makes every change of demand move a
# quote, so the feed has something to publish on most markets at every tick;
# PRICE_TICK=config keeps the shipped ticks (a few changes per second).
tick=${PRICE_TICK:-0.000001}
sed -e 's/^connections_per_ip_max = .*/connections_per_ip_max = 20000/' config/default.toml > "$tmp/bench.toml"
[ "$tick" = config ] || sed -i -e "s/^tick = .*/tick = \"$tick\"/" "$tmp/bench.toml"
"$bin/pat-market" serve --config "$tmp/bench.toml" --data-dir "$tmp/data" --listen 127.0.0.1:8090 2> "$tmp/serve.log" &
pids+=($!)
for _ in $(seq 50); do curl -sf http://127.0.0.1:8090/healthz >/dev/null && break; sleep 0.2; done
# Orders on every market, so that quotes keep changing, for as long as the runs last.
"$bin/pat-market" load --url http://127.0.0.1:8090 --config "$tmp/bench.toml" --rate "$rate" \
  --seconds $(( ${#clients[@]} * (seconds + 60) )) --in-flight 32 > "$tmp/load.log" 2>&1 &
pids+=($!)
until grep -q "sending" "$tmp/load.log"; do sleep 0.5; done
sleep 2

published() { curl -s http://127.0.0.1:8090/metrics | awk '/^pat_feed_quotes_published_total/ {print $2}'; }
declare -A rates
for n in "${clients[@]}"; do
  before=$(published); t0=$(date +%s.%N)
  echo "engine, $n clients:"
  "$bin/feed" clients --url ws://127.0.0.1:8090/v1/feed --clients "$n" --warmup "$warmup" --seconds "$seconds"
  after=$(published); t1=$(date +%s.%N)
  rates[$n]=$(python3 -c "print(($after - $before) / ($t1 - $t0))")
  echo "  engine published ${rates[$n]} quote changes/s"
done
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()
for n in "${clients[@]}"; do
  # The engine's publication rate: K quotes per tick, the tick stretched when K would be under one.
  per_tick=$(python3 -c "print(max(1, round(${rates[$n]} / 10)))")
  tick_ms=$(python3 -c "print(max(1, round($per_tick * 1000 / ${rates[$n]})))")
  "$bin/feed" floor --listen 127.0.0.1:8091 --per-tick "$per_tick" --tick-ms "$tick_ms" 2> "$tmp/floor.log" &
  floor=$!
  sleep 0.5
  echo "floor ($per_tick quotes per $tick_ms ms tick), $n clients:"
  "$bin/feed" clients --url ws://127.0.0.1:8091/v1/feed --clients "$n" --warmup "$warmup" --seconds "$seconds"
  kill "$floor"; wait "$floor" 2>/dev/null || true
done
