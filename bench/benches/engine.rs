//! Criterion benches of the engine's hot functions: the quoting tick (one
//! market and 100k markets, all dirty and in steady trading, and its floor),
//! order signature verification, and order execution without it.
//!
//! `cargo bench -p pat-bench --bench engine`; results in docs/benchmarks.md.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use pat_bench::{T0_MS, TickFixture, blank_quotes, floor_tick};
use pat_engine::order::verify_order;
use pat_engine::quoter::{Quoter, TickInputs};
use pat_engine::testing::{self, T0, key, signed_order, signed_segment};
use pat_engine::{Exchange, MarketId, MarketKey};

/// How a tick's work is made: every market dirty (a config reload, the worst
/// case), or 1% of markets changed since the last tick (steady trading).
#[derive(Clone, Copy)]
enum Load {
    AllDirty,
    OnePercentDirty,
}

fn tick(c: &mut Criterion) {
    let mut group = c.benchmark_group("tick");
    for markets in [1usize, 100_000] {
        let f = TickFixture::new(markets);
        let n = f.stats.len();
        for (name, load) in [("all_dirty", Load::AllDirty), ("steady_1pct_dirty", Load::OnePercentDirty)] {
            if n == 1 && matches!(load, Load::OnePercentDirty) {
                continue;
            }
            let mut quoter = Quoter::new(n);
            let mut changed = Vec::with_capacity(n);
            let mut now_ms = T0_MS;
            let mut next_dirty = 0usize;
            group.bench_function(format!("{name}/{n}"), |b| {
                b.iter(|| {
                    now_ms += 100;
                    match load {
                        Load::AllDirty => quoter.mark_all_dirty(),
                        Load::OnePercentDirty => {
                            for _ in 0..n.div_ceil(100) {
                                next_dirty = (next_dirty + 7_919) % n;
                                quoter.mark_dirty(MarketId(next_dirty as u32));
                            }
                        }
                    }
                    changed.clear();
                    let inputs = TickInputs {
                        now_ms,
                        stats: &f.stats,
                        specs: &f.specs,
                        group_exposure: &f.group_exposure,
                        cfg: &f.cfg,
                        paused: false,
                    };
                    quoter.tick(&inputs, &mut changed);
                    black_box(changed.len())
                })
            });
        }
        let mut quotes = blank_quotes(n);
        let mut now_ms = T0_MS;
        group.bench_function(format!("floor/{n}"), |b| {
            b.iter(|| {
                now_ms += 100;
                black_box(floor_tick(black_box(&f.stats), &f.specs, &mut quotes, now_ms))
            })
        });
    }
    group.finish();
}

fn orders(c: &mut Criterion) {
    let market: MarketKey = "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap();
    let now_ms = T0 * 1000;
    let mut ex = Exchange::new(testing::shared_config());
    for p in 0..10u8 {
        let payload = testing::payload_salted(5, u64::from(p));
        let signed = signed_segment(&key(10 + p), "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 100_000, &payload);
        ex.state.submit_segment(&signed, now_ms).unwrap();
    }
    ex.tick(now_ms, &mut Vec::new());
    let signed = signed_order(&testing::CONSUMER_KEY, &market, 3, u128::MAX, 1, T0 + 3600);
    let domain = ex.state.catalogue().domain().clone();
    let mut group = c.benchmark_group("order");
    group.bench_function("verify_signature", |b| b.iter(|| verify_order(black_box(signed.clone()), &domain).unwrap()));
    let verified = verify_order(signed, &domain).unwrap();
    group.bench_function("execute_without_signature", |b| {
        b.iter_batched(
            || (ex.clone(), verified.clone()),
            |(mut ex, v)| {
                let fill = ex.execute(v, now_ms).unwrap();
                (ex, fill)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, tick, orders);
criterion_main!(benches);
