//! `pat-market simulate`: the engine in process over simulated time. Synthetic
//! providers list signed segments and synthetic consumers send signed orders
//! at Poisson rates; fills settle (or fail) after a delay. Prints each
//! market's quote, supply and exposure at intervals, then a summary whose
//! conservation check must hold. Deterministic for a given `--seed`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use alloy_primitives::{B256, U256, keccak256};
use anyhow::{Context, bail};
use clap::Args as ClapArgs;
use pat_engine::money::{Amount, format_pat};
use pat_engine::signing::{LocalSigner, sign_order, sign_segment};
use pat_engine::{Exchange, MarketId, Order, SegmentSubmission, SignalRecord, TimeMs, encode_payload};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// 2026-01-01T00:00:00Z: simulated time starts here.
const START_SECS: u64 = 1_767_225_600;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Engine config.
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
    /// Seed of every random choice; the same seed prints the same run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Simulated hours.
    #[arg(long, default_value_t = 48)]
    hours: u64,
    /// Simulated seconds between steps (each step ticks quotes and expires units).
    #[arg(long, default_value_t = 10)]
    step_secs: u64,
    /// Number of synthetic browser agents (providers).
    #[arg(long, default_value_t = 20)]
    providers: u32,
    /// Segment submissions per provider per hour.
    #[arg(long, default_value_t = 2.0)]
    submissions_per_hour: f64,
    /// Number of synthetic consumers.
    #[arg(long, default_value_t = 10)]
    consumers: u32,
    /// Orders per consumer per hour.
    #[arg(long, default_value_t = 6.0)]
    orders_per_hour: f64,
    /// Seconds from acceptance to settlement on the simulated chain.
    #[arg(long, default_value_t = 60)]
    settle_after_secs: u64,
    /// Share of fills the simulated chain rejects, in [0, 1].
    #[arg(long, default_value_t = 0.02)]
    fail_rate: f64,
    /// Simulated minutes between reports.
    #[arg(long, default_value_t = 360)]
    report_every_mins: u64,
    /// Only report markets whose key contains this text.
    #[arg(long)]
    only: Option<String>,
}

fn key_for(seed: u64, role: &str, i: u32) -> anyhow::Result<LocalSigner> {
    let bytes = keccak256(format!("pat-sim/{seed}/{role}/{i}"));
    LocalSigner::from_bytes(&bytes).context("derive a synthetic key")
}

/// Draws whether an event with `per_hour` rate happens in a step of `step_secs`.
fn happens(rng: &mut ChaCha8Rng, per_hour: f64, step_secs: u64) -> bool {
    let p = 1.0 - (-per_hour * step_secs as f64 / 3600.0).exp();
    rng.random::<f64>() < p
}

struct Totals {
    submitted: u64,
    refused: u64,
    orders: u64,
    fills: u64,
    settled: u64,
    failed: u64,
    rejections: std::collections::BTreeMap<&'static str, u64>,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.fail_rate) || args.step_secs == 0 {
        bail!("--fail-rate must be in [0, 1] and --step-secs positive");
    }
    let cfg = pat_config::Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cfg = Arc::new(cfg.engine);
    let domain = cfg.domain();
    let keys = cfg.market_keys();
    let mut ex = Exchange::new(cfg.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    let providers: Vec<LocalSigner> =
        (0..args.providers).map(|i| key_for(args.seed, "provider", i)).collect::<anyhow::Result<_>>()?;
    let consumers: Vec<LocalSigner> =
        (0..args.consumers).map(|i| key_for(args.seed, "consumer", i)).collect::<anyhow::Result<_>>()?;
    let mut pending: std::collections::VecDeque<(TimeMs, B256)> = Default::default();
    let mut nonce = 0u64;
    let mut t =
        Totals { submitted: 0, refused: 0, orders: 0, fills: 0, settled: 0, failed: 0, rejections: Default::default() };
    let end = START_SECS + args.hours * 3600;
    let report_every = args.report_every_mins.max(1) * 60;
    let mut changed = Vec::new();
    let mut step = 0u64;
    let mut now_secs = START_SECS;
    while now_secs <= end {
        let now_ms = now_secs * 1000;
        ex.state.expire(now_ms);
        while let Some(&(due, id)) = pending.front() {
            if due > now_ms {
                break;
            }
            pending.pop_front();
            if rng.random::<f64>() < args.fail_rate {
                ex.state.fail(&id, "simulated chain rejection", now_ms)?;
                t.failed += 1;
            } else {
                ex.state.settle(&id, now_ms)?;
                t.settled += 1;
            }
        }
        changed.clear();
        ex.tick(now_ms, &mut changed);
        for (i, provider) in providers.iter().enumerate() {
            if !happens(&mut rng, args.submissions_per_hour, args.step_secs) {
                continue;
            }
            let key = &keys[rng.random_range(0..keys.len())];
            let band = key.band;
            let confidence = rng.random_range(band.lo()..band.hi());
            let window = key.window.secs();
            let window_start = now_secs - rng.random_range(0..window / 4);
            let signals = rng.random_range(3..20u64);
            let payload = synthetic_payload(key.segment_type.as_str(), window_start, now_secs, signals, i, step);
            let submission = SegmentSubmission {
                provider: provider.address(),
                segmentType: key.segment_type.to_string(),
                window: key.window.to_string(),
                confidenceBps: confidence,
                windowStart: window_start,
                createdAt: now_secs,
                units: rng.random_range(1..50),
                payloadHash: keccak256(&payload),
            };
            t.submitted += 1;
            if ex.state.submit_segment(&sign_segment(provider, submission, payload, &domain), now_ms).is_err() {
                t.refused += 1;
            }
        }
        for consumer in &consumers {
            if !happens(&mut rng, args.orders_per_hour, args.step_secs) {
                continue;
            }
            let id = MarketId(rng.random_range(0..keys.len() as u32));
            let quote = ex.quote(id);
            let slack_bps = rng.random_range(0..200u128);
            nonce += 1;
            let order = Order {
                consumer: consumer.address(),
                market: keys[id.index()].id(),
                qty: U256::from(rng.random_range(1..6u64)),
                maxPrice: U256::from(quote.ask + quote.ask * slack_bps / 10_000),
                nonce: U256::from(nonce),
                deadline: U256::from(now_secs + 60),
            };
            t.orders += 1;
            match ex.submit_order(sign_order(consumer, order, &domain), now_ms) {
                Ok((fill, _)) => {
                    t.fills += 1;
                    pending.push_back((now_ms + args.settle_after_secs * 1000, fill.fill_id));
                }
                Err(e) => *t.rejections.entry(e.code().as_str()).or_default() += 1,
            }
        }
        if (now_secs - START_SECS).is_multiple_of(report_every) {
            print!("{}", report(&ex, now_secs, args.only.as_deref()));
        }
        step += 1;
        now_secs += args.step_secs;
    }
    print!("{}", summary(&ex, &t));
    ex.state.check_invariants();
    Ok(ExitCode::SUCCESS)
}

fn synthetic_payload(segment_type: &str, from: u64, to: u64, signals: u64, provider: usize, step: u64) -> Vec<u8> {
    let span = (to - from).max(1);
    let items: Vec<SignalRecord> = (0..signals)
        .map(|j| {
            let confidence = (50 + (j * 7) % 50) as f64 / 100.0;
            SignalRecord::new(from + span * j / signals, segment_type, confidence, format!("p{provider}-s{step}-{j}"))
        })
        .collect();
    encode_payload(&items)
}

fn pat(amount: Amount) -> String {
    format_pat(amount)
}

fn report(ex: &Exchange, now_secs: u64, only: Option<&str>) -> String {
    let hours = (now_secs - START_SECS) as f64 / 3600.0;
    let mut out = format!("\n== t = {hours:.1} h ==\n");
    let _ = writeln!(
        out,
        "{:<36} {:>10} {:>10} {:>7} {:>7} {:>6} {:>12} {:>6}",
        "market", "bid", "ask", "spread", "supply", "sold", "exposure", "seq"
    );
    for (m, q) in ex.state.markets().iter().zip(ex.quotes()) {
        let key = m.key.to_string();
        if only.is_some_and(|o| !key.contains(o)) || m.counters().listed == 0 {
            continue;
        }
        let (bid, ask) = match q.halted {
            None => (pat(q.bid), pat(q.ask)),
            Some(r) => (r.code().to_owned(), "-".to_owned()),
        };
        let _ = writeln!(
            out,
            "{key:<36} {bid:>10} {ask:>10} {:>7} {:>7} {:>6} {:>12} {:>6}",
            q.spread_bps,
            m.supply_units(),
            m.counters().sold,
            pat(m.stats().exposure),
            q.seq
        );
    }
    out
}

fn summary(ex: &Exchange, t: &Totals) -> String {
    let l = ex.state.registry().ledger();
    let mut out = String::from("\n== summary ==\n");
    let _ = writeln!(out, "segments submitted {} (refused {})", t.submitted, t.refused);
    let _ = writeln!(out, "orders {} -> fills {} (settled {}, failed {})", t.orders, t.fills, t.settled, t.failed);
    let _ = writeln!(out, "orders refused by reason: {:?}", t.rejections);
    let _ = writeln!(out, "consumer debits  {} PAT", pat(l.consumer_debits));
    let _ = writeln!(out, "provider credits {} PAT", pat(l.provider_credits));
    let _ = writeln!(out, "broker revenue   {} PAT", pat(l.broker_revenue));
    let _ = writeln!(out, "refunds          {} PAT", pat(l.refunds));
    let ok = l.consumer_debits == l.provider_credits + l.broker_revenue + l.refunds;
    let _ =
        writeln!(out, "conservation (debits = credits + revenue + refunds): {}", if ok { "holds" } else { "BROKEN" });
    out
}
