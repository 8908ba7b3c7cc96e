//! Journal load generator and recovery timer (issue 4), with its floor.
//!
//! `cargo run --release -p pat-bench --bin journal -- [--dir DIR] [--seconds S] [--fills N] [--markets M]
//! [--only appends|recovery|snapshot] [--reuse]` (`--reuse` keeps and reuses the recovery journal)
//!
//! 1. Appends fill-sized records (a real `FillAccepted` event) from 1, 16 and
//!    256 concurrent writers (async tasks on two worker threads) for S seconds
//!    each: durable records per second and p50/p99 time from `append` to durable.
//! 2. The floor, same run: one thread writing the same frames and calling
//!    `fdatasync` once per group of the size the journal formed.
//! 3. Recovery time of a journal of N fills (1M by default).
//! 4. Snapshot write (and load) time for M markets (100k by default).
//!
//! Prints a Markdown table for docs/benchmarks.md.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, U256, keccak256};
use pat_engine::market::{Allocation, MarketId};
use pat_engine::money::ONE_PAT;
use pat_engine::segment::{QualityMetrics, Segment, SegmentId};
use pat_engine::{Event, Exchange, Fill, testing};
use pat_persistence::{DataDir, JournalConfig, frame};

fn arg<T: std::str::FromStr>(name: &str, default: T) -> T {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

const PROVIDERS: u64 = 100;

fn provider(p: u64) -> Address {
    Address::left_padding_from(&(p + 1).to_be_bytes())
}

/// A segment of `units` units by provider `p` in the first market of the fixtures.
fn segment(p: u64, units: u32) -> Segment {
    let cfg = testing::config();
    Segment {
        id: SegmentId(p),
        provider: provider(p),
        market: cfg.market_keys()[0].clone(),
        confidence_bps: 6000,
        window_start_ms: testing::T0 * 1000,
        created_at_ms: testing::T0 * 1000,
        expires_at_ms: (testing::T0 + 86_400) * 1000,
        units,
        payload_hash: keccak256(p.to_be_bytes()),
        payload_bytes: 1000,
        signal_count: 10,
        quality: QualityMetrics::default(),
        listed_at_ms: testing::T0 * 1000,
    }
}

/// Fill `i`: one unit from provider `i % PROVIDERS`, as an accepted order makes it.
fn fill(i: u64) -> Fill {
    let p = i % PROVIDERS;
    let (ask, bid) = (ONE_PAT, 9 * ONE_PAT / 10);
    Fill {
        fill_id: keccak256(i.to_be_bytes()),
        market: MarketId(0),
        market_key_id: testing::config().market_keys()[0].id(),
        consumer: Address::left_padding_from(&(1_000_000 + i % 1000).to_be_bytes()),
        nonce: U256::from(i),
        qty: 1,
        max_price: U256::from(ask),
        deadline: U256::from(testing::T0 + 60),
        ask,
        bid,
        ask_paid: ask,
        bid_credited: bid,
        broker_spread: ask - bid,
        accepted_at_ms: testing::T0 * 1000 + i,
        allocations: vec![Allocation { provider: provider(p), segment: SegmentId(p), units: 1 }],
        signature: vec![0x1b; 65],
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn fresh(dir: &Path, name: &str) -> PathBuf {
    let d = dir.join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// One timed run of `writers` concurrent appenders: (records/s, p50, p99, mean group, records).
fn append_run(dir: &Path, writers: usize, seconds: u64, payload: &[u8]) -> (f64, Duration, Duration, usize, u64) {
    let root = fresh(dir, &format!("append-{writers}"));
    let data = DataDir::open(&root).unwrap();
    let journal = Arc::new(data.open_journal(JournalConfig::new(data.journal_dir()), 1).unwrap());
    let stop = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    // Writers are async tasks, as the server's request handlers are: a durable
    // record wakes a task, not an OS thread.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let mut lat: Vec<Duration> = runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (journal, payload) = (journal.clone(), payload.to_vec());
                tokio::spawn(async move {
                    let mut lat = Vec::new();
                    while Instant::now() < stop {
                        let t = Instant::now();
                        journal.append(payload.clone()).unwrap().await.unwrap();
                        lat.push(t.elapsed());
                    }
                    lat
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let elapsed = start.elapsed();
    lat.sort_unstable();
    let stats = journal.stats();
    let (records, groups) = (stats.records.load(Ordering::Relaxed), stats.groups.load(Ordering::Relaxed));
    let group = (records as f64 / groups as f64).round().max(1.0) as usize;
    (records as f64 / elapsed.as_secs_f64(), percentile(&lat, 0.50), percentile(&lat, 0.99), group, records)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Three rounds of the journal and its floor, alternating (the disk's fsync
/// time drifts); medians of each.
fn appends(dir: &Path, writers: usize, seconds: u64) {
    let payload = pat_persistence::encode_event(&Event::FillAccepted(fill(1)));
    let (mut ours, mut floors, mut p50, mut p99, mut groups) = (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..3 {
        let (rate, a, b, group, records) = append_run(dir, writers, seconds, &payload);
        ours.push(rate);
        p50.push(a.as_secs_f64() * 1e3);
        p99.push(b.as_secs_f64() * 1e3);
        groups.push(group as f64);
        floors.push(floor_rate(dir, &payload, group, records));
    }
    let (rate, floor) = (median(ours), median(floors));
    println!(
        "| {writers} | {} | {rate:.0} | {:.3} | {:.3} | {:.0} | {floor:.0} | {:.2} |",
        payload.len() + frame::FRAME_OVERHEAD,
        median(p50),
        median(p99),
        median(groups),
        floor / rate
    );
}

/// Records per second of writing `records` frames in groups of `group` with one fdatasync per group.
fn floor_rate(dir: &Path, payload: &[u8], group: usize, records: u64) -> f64 {
    let path = dir.join("floor.log");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut buf = Vec::new();
    for i in 0..group {
        frame::encode(&mut buf, i as u64, pat_persistence::SCHEMA_VERSION, payload);
    }
    let groups = (records as usize).div_ceil(group).max(1);
    let start = Instant::now();
    for _ in 0..groups {
        file.write_all(&buf).unwrap();
        file.sync_data().unwrap();
    }
    let rate = (groups * group) as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    rate
}

fn recovery(dir: &Path, fills: u64, reuse: bool) {
    let root = dir.join("recovery");
    if !(reuse && root.exists()) {
        write_fills(&root, fills);
    }
    let bytes: u64 =
        std::fs::read_dir(root.join("journal")).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    let start = Instant::now();
    let rec = DataDir::open(&root).unwrap().recover(&testing::shared_config()).unwrap();
    let took = start.elapsed();
    assert_eq!(rec.replayed, fills + PROVIDERS);
    rec.books.registry().ledger().check_conservation();
    println!(
        "recovery: {} records ({:.0} MB) replayed in {:.3} s ({:.0} records/s)",
        rec.replayed,
        bytes as f64 / 1e6,
        took.as_secs_f64(),
        rec.replayed as f64 / took.as_secs_f64()
    );
}

/// A journal of `fills` one-unit fills over 100 providers' segments.
fn write_fills(root: &Path, fills: u64) {
    let _ = std::fs::remove_dir_all(root);
    let data = DataDir::open(root).unwrap();
    let per_provider = (fills / PROVIDERS + 1) as u32;
    {
        let journal = data.open_journal(JournalConfig::new(data.journal_dir()), 1).unwrap();
        let mut pending = Vec::new();
        for p in 0..PROVIDERS {
            pending.push(journal.append_event(&Event::SegmentListed(segment(p, per_provider))).unwrap());
        }
        for i in 0..fills {
            pending.push(journal.append_event(&Event::FillAccepted(fill(i))).unwrap());
            if pending.len() >= 32_768 {
                pending.drain(..).for_each(|d| {
                    d.wait().unwrap();
                });
            }
        }
        pending.into_iter().for_each(|d| {
            d.wait().unwrap();
        });
    }
}

fn snapshot(dir: &Path, markets: usize) {
    let root = fresh(dir, "snapshot");
    let data = DataDir::open(&root).unwrap();
    let ex = Exchange::new(pat_bench::catalogue(markets));
    let state = ex.state.snapshot();
    let start = Instant::now();
    let report = data.write_snapshot(1, &state, 2).unwrap();
    let write = start.elapsed();
    drop(data);
    let start = Instant::now();
    let rec = DataDir::open(&root).unwrap().recover(&testing::shared_config()).unwrap();
    let load = start.elapsed();
    assert_eq!(rec.books.markets().len(), state.markets.len());
    println!(
        "snapshot: {} markets, {:.1} MB, written in {:.3} s, loaded in {:.3} s",
        state.markets.len(),
        report.bytes as f64 / 1e6,
        write.as_secs_f64(),
        load.as_secs_f64()
    );
}

fn main() {
    let dir = PathBuf::from(arg("--dir", "target/bench-journal".to_owned()));
    std::fs::create_dir_all(&dir).unwrap();
    let seconds = arg("--seconds", 3u64);
    let only = arg("--only", String::new());
    if only.is_empty() || only == "appends" {
        println!(
            "| writers | frame bytes | durable records/s | p50 ms | p99 ms | mean group | floor records/s | floor / ours |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for writers in [1, 16, 256] {
            appends(&dir, writers, seconds);
        }
    }
    if only.is_empty() || only == "recovery" {
        recovery(&dir, arg("--fills", 1_000_000u64), std::env::args().any(|a| a == "--reuse"));
    }
    if only.is_empty() || only == "snapshot" {
        snapshot(&dir, arg("--markets", 100_000usize));
    }
    if !std::env::args().any(|a| a == "--reuse") {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
