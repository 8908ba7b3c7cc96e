//! The engine actor on a real data directory: acknowledged changes survive a
//! restart, refusals leave no trace, snapshots shorten recovery, quotes are
//! published, config reloads apply live, and a crashed actor is restarted
//! from disk by its supervisor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pat_actors::clock::Clock;
use pat_actors::messages::{
    GetFill, Reconfigure, RequeueTaken, SetPaused, Shutdown, SubscribeQuotes, TakeDurableFills, TakeSnapshot,
};
use pat_actors::supervisor::{Crash, CrashQuoting};
use pat_actors::{Engine, EngineActor, EngineError, EngineSettings};
use pat_engine::VerifiedOrder;
use pat_engine::order::verify_order;
use pat_engine::segment::verify_submission;
use pat_engine::testing::{self, CONSUMER_KEY, T0, key, signed_order, signed_segment};
use pat_engine::{FillStatus, MarketKey};

fn market() -> MarketKey {
    "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap()
}

struct Harness {
    settings: EngineSettings,
    now: Arc<AtomicU64>,
}

impl Harness {
    fn new(dir: &std::path::Path) -> Self {
        // Two market threads, so that markets run apart as on a bigger machine.
        let settings = EngineSettings { market_arbiters: 2, ..EngineSettings::new(dir) };
        Self { settings, now: Arc::new(AtomicU64::new(T0 * 1000)) }
    }

    fn clock(&self) -> Clock {
        let now = self.now.clone();
        Arc::new(move || now.load(Ordering::Relaxed))
    }

    fn start(&self) -> (Engine, pat_actors::engine::Startup) {
        EngineActor::start(self.settings.clone(), testing::shared_config(), self.clock()).unwrap()
    }
}

/// 20 units from each of `providers` providers, in four segments each.
async fn stock(engine: &Engine, providers: u8) {
    for p in 0..providers {
        for s in 0..4 {
            let payload = testing::payload_salted(3, u64::from(p) * 10 + s);
            let signed = signed_segment(&key(10 + p), "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 5, &payload);
            engine
                .markets()
                .submit_segment(verify_submission(signed, &testing::config().domain()).unwrap())
                .await
                .unwrap()
                .unwrap();
        }
    }
}

async fn ask(engine: &Engine) -> u128 {
    // The quoting actor ticks every 100 ms, apart from the engine, and may
    // have priced only some of the listings made so far: wait for a quote of
    // the stocked market that holds still over two ticks (the clock stands
    // still, so the quote settles once it has taken in every listing).
    let mut last = None;
    for _ in 0..40 {
        let markets = engine.markets().views().await.unwrap();
        let m = markets.iter().find(|m| m.key == market()).unwrap();
        if m.quote.halted.is_none() && m.supply_units > 0 {
            if last == Some(m.quote.ask) {
                return m.quote.ask;
            }
            last = Some(m.quote.ask);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    panic!("the market never quoted steadily");
}

/// An order of 2 units, by a consumer of its own per nonce (a consumer never
/// gets a segment twice), the same for the same nonce (a replay).
fn order(engine_ask: u128, nonce: u64) -> VerifiedOrder {
    let signed = signed_order(&key(100 + (nonce % 100) as u8), &market(), 2, engine_ask, nonce, T0 + 60);
    verify_order(signed, &testing::config().domain()).unwrap()
}

#[actix_rt::test]
async fn acknowledged_fills_survive_a_restart_and_refusals_leave_no_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, startup) = h.start();
    assert_eq!((startup.snapshot_lsn, startup.replayed), (0, 0));
    stock(&engine, 3).await;
    let a = ask(&engine).await;
    let fill = engine.markets().place_order(order(a, 1)).await.unwrap().unwrap();
    fill.check_invariants();
    let replay = engine.markets().place_order(order(a, 1)).await.unwrap().unwrap_err();
    assert_eq!(replay.code().as_str(), "nonce_used");
    let too_cheap = engine.markets().place_order(order(a - 1, 2)).await.unwrap().unwrap_err();
    assert_eq!(too_cheap.code().as_str(), "price_above_max");
    engine.send(SetPaused(true)).await.unwrap().unwrap();
    let paused = engine.markets().place_order(order(a, 3)).await.unwrap().unwrap_err();
    assert_eq!(paused, EngineError::Order(pat_engine::OrderError::Paused));
    engine.send(Shutdown { snapshot: false }).await.unwrap().unwrap();

    // A second engine on the same directory: the first config, 12 listings, 1 fill, the pause.
    let (engine, startup) = h.start();
    assert_eq!(startup.replayed, 15);
    let record = engine.send(GetFill(fill.fill_id)).await.unwrap().expect("the acknowledged fill is back");
    assert_eq!((record.fill, record.status), (fill, FillStatus::Accepted));
    let again = engine.markets().place_order(order(a, 4)).await.unwrap().unwrap_err();
    assert_eq!(again.code().as_str(), "paused", "the pause was journaled too");
}

#[actix_rt::test]
async fn a_snapshot_shortens_recovery_to_the_journal_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, _) = h.start();
    stock(&engine, 2).await;
    let a = ask(&engine).await;
    engine.markets().place_order(order(a, 1)).await.unwrap().unwrap();
    let report = engine.send(TakeSnapshot).await.unwrap().unwrap();
    assert_eq!(report.lsn, 10, "the config, 8 listings, a fill");
    engine.markets().place_order(order(a, 2)).await.unwrap().unwrap();
    // Stop without a shutdown snapshot: as after a crash, the journal tail replays.
    engine.send(Shutdown { snapshot: false }).await.unwrap().unwrap();
    let (engine, startup) = h.start();
    assert_eq!((startup.snapshot_lsn, startup.replayed), (10, 1));
    let markets = engine.markets().views().await.unwrap();
    assert_eq!(markets.iter().find(|m| m.key == market()).unwrap().supply_units, 40 - 4);
    // A shutdown snapshot covers everything: the next start replays nothing.
    engine.send(Shutdown { snapshot: true }).await.unwrap().unwrap();
    let (_, startup) = h.start();
    assert_eq!((startup.snapshot_lsn, startup.replayed), (11, 0));
}

/// A first start journals its config: a replay without a snapshot starts
/// from the config the history began under, whatever the file says by then.
#[actix_rt::test]
async fn a_replay_without_a_snapshot_starts_from_the_first_config_not_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, _) = h.start();
    stock(&engine, 3).await;
    // Two fills apart in time: the second decays the first by the half-life.
    let a = ask(&engine).await;
    engine.markets().place_order(order(a, 1)).await.unwrap().unwrap();
    h.now.fetch_add(30_000, Ordering::Relaxed);
    let a = ask(&engine).await;
    engine.markets().place_order(order(a, 2)).await.unwrap().unwrap();
    // The file is edited and reloaded, then the engine stops without a snapshot.
    let mut edited = testing::config();
    edited.pricing.rate_half_life_secs *= 3.0;
    let edited = Arc::new(edited);
    engine.send(Reconfigure(edited.clone())).await.unwrap().unwrap();
    engine.send(Shutdown { snapshot: false }).await.unwrap().unwrap();

    let data = pat_persistence::DataDir::open(tmp.path()).unwrap();
    let from_first = data.recover(&testing::shared_config()).unwrap();
    let from_edited = data.recover(&edited).unwrap();
    assert_eq!(from_first.snapshot_lsn, 0);
    assert_eq!(from_edited.books.registry().config(), &*edited);
    assert_eq!(from_edited.books.snapshot(), from_first.books.snapshot());
}

#[actix_rt::test]
async fn quotes_are_published_and_reloads_apply_live() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, _) = h.start();
    let mut quotes = engine.send(SubscribeQuotes).await.unwrap();
    stock(&engine, 2).await;
    let batch = tokio::time::timeout(std::time::Duration::from_secs(2), quotes.recv()).await.unwrap().unwrap();
    assert!(!batch.is_empty());
    let before = ask(&engine).await;
    let mut wider = testing::config();
    wider.spread.base_bps += 500;
    wider.spread.min_bps += 500;
    engine.send(Reconfigure(Arc::new(wider))).await.unwrap().unwrap();
    h.now.fetch_add(200, Ordering::Relaxed);
    // The quoting actor takes the new config on its next tick (100 ms), or later on a loaded machine.
    let mut raised = false;
    for _ in 0..100 {
        if ask(&engine).await > before {
            raised = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(raised, "a wider spread raises the ask within 5 s");
    let mut fewer = testing::config();
    fewer.windows.pop();
    let err = engine.send(Reconfigure(Arc::new(fewer))).await.unwrap().unwrap_err();
    assert_eq!(err.code().as_str(), "config_not_applicable");
}

/// Every tick renews the quote's `valid_until_ms` from the clock: how often it
/// moves shows the tick's period, before and after a reload changes it.
#[actix_rt::test]
async fn a_reload_changes_the_tick_period_live() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, _) = h.start();
    stock(&engine, 1).await;
    let now = h.now.clone();
    let clock = actix_rt::spawn(async move {
        loop {
            now.fetch_add(10, Ordering::Relaxed);
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    });
    let renewals = async |over_ms: u64| {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..over_ms / 50 {
            let markets = engine.markets().views().await.unwrap();
            seen.insert(markets.iter().find(|m| m.key == market()).unwrap().quote.valid_until_ms);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        seen.len()
    };
    assert!(renewals(600).await >= 4, "a 100 ms tick renews the quote several times in 600 ms");
    let mut slow = testing::config();
    (slow.quoting.tick_ms, slow.quoting.reprice_interval_ms, slow.orders.quote_ttl_ms) = (5_000, 5_000, 5_000);
    engine.send(Reconfigure(Arc::new(slow))).await.unwrap().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(renewals(1_000).await, 1, "a 5 s tick does not renew it within a second");
    clock.abort();
}

/// One Prometheus recorder for the tests of this binary that read metrics.
fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder().unwrap())
}

/// Sends requests until the engine actor and every market actor answer
/// again (after a restart), at most 5 s.
async fn until_back(engine: &Engine) {
    for _ in 0..100 {
        let engine_back = engine.send(GetFill(alloy_primitives::B256::ZERO)).await.is_ok();
        if engine_back && engine.markets().views().await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the supervisor did not restart the engine within 5 s");
}

/// A panic in the engine actor ends its incarnation: the market actors
/// retire, and the supervisor rebuilds everything from the data directory on
/// new arbiters. Orders sent along with the crash (they go to the market
/// actors, which retire only once the engine actor is gone) are each either
/// acknowledged, and then durable, or refused; the same handles reach the new actors,
/// every acknowledged fill and used nonce is back, orders go on, and the
/// restart is counted.
#[actix_rt::test]
async fn a_crashed_engine_restarts_from_durable_state() {
    let metrics = metrics();
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, _) = h.start();
    stock(&engine, 3).await;
    let a = ask(&engine).await;
    let mut fills = Vec::new();
    for nonce in 1..=3 {
        fills.push(engine.markets().place_order(order(a, nonce)).await.unwrap().unwrap());
    }
    let markets = engine.markets();
    let (before, crash, after) =
        tokio::join!(markets.place_order(order(a, 4)), engine.send(Crash), markets.place_order(order(a, 5)));
    assert!(crash.is_err(), "the panic drops the request");
    let mut free = Vec::new();
    for (nonce, answer) in [(4, before), (5, after)] {
        match answer {
            Ok(Ok(fill)) => fills.push(fill),
            _ => free.push(nonce),
        }
    }
    until_back(&engine).await;
    for fill in &fills {
        let record = engine.send(GetFill(fill.fill_id)).await.unwrap().expect("an acknowledged fill survives");
        assert_eq!((&record.fill, &record.status), (fill, &FillStatus::Accepted));
    }
    let replay = engine.markets().place_order(order(a, 1)).await.unwrap().unwrap_err();
    assert_eq!(replay.code().as_str(), "nonce_used", "used nonces are recovered too");
    let markets = engine.markets().views().await.unwrap();
    let sold = 2 * fills.len() as u64;
    assert_eq!(markets.iter().find(|m| m.key == market()).unwrap().supply_units, 60 - sold);
    let a = ask(&engine).await;
    for nonce in free {
        engine.markets().place_order(order(a, nonce)).await.unwrap().expect("a refused order's nonce is still free");
    }
    let text = metrics.render();
    assert!(text.contains("pat_actor_restarts_total{actor=\"engine\"} 1"), "{text}");
}

/// A panic in one market actor restarts that market alone, replayed from the
/// journal: its supply and exposure come back as they were, its fills and
/// nonces stay, another market takes listings meanwhile, orders go on, a
/// reload reaches every market, and the whole live state then equals a
/// replay of the journal from an empty engine.
#[actix_rt::test]
async fn a_crashed_market_actor_restarts_alone_from_the_journal() {
    let metrics = metrics();
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, _) = h.start();
    stock(&engine, 3).await;
    let a = ask(&engine).await;
    let fill = engine.markets().place_order(order(a, 1)).await.unwrap().unwrap();
    let id = engine.markets().by_key(&market()).unwrap();
    let view = |views: Vec<pat_actors::MarketView>| views.into_iter().find(|m| m.id == id).unwrap();
    let before = view(engine.markets().views().await.unwrap());

    engine.markets().actor(id).send(Crash).await.unwrap_err();
    // Another market is not held up: a listing there is accepted at once.
    let other = signed_segment(&key(30), "PURCHASE_INTENT", "1D", 8000, T0 - 3600, T0, 5, &testing::payload(4));
    let listed = engine
        .markets()
        .submit_segment(verify_submission(other, &testing::config().domain()).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_ne!(listed.market, market());
    let mut back = None;
    for _ in 0..100 {
        if let Ok(views) = engine.markets().views().await {
            back = Some(view(views));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let back = back.expect("the market actor is back within 5 s");
    assert_eq!(
        (back.supply_units, back.exposure, back.counters, back.provider_count),
        (before.supply_units, before.exposure, before.counters, before.provider_count)
    );
    let replay = engine.markets().place_order(order(a, 1)).await.unwrap().unwrap_err();
    assert_eq!(replay.code().as_str(), "nonce_used");
    let a = ask(&engine).await;
    engine.markets().place_order(order(a, 2)).await.unwrap().expect("orders go on");
    assert_eq!(engine.send(GetFill(fill.fill_id)).await.unwrap().unwrap().fill, fill);
    let text = metrics.render();
    assert!(text.contains("pat_actor_restarts_total{actor=\"market\"} 1"), "{text}");

    // A reload that changes every market's EWMA half-life: the markets take
    // it between the same two of their events as a replay does.
    let mut slower = testing::config();
    slower.pricing.rate_half_life_secs *= 3.0;
    engine.send(Reconfigure(Arc::new(slower))).await.unwrap().unwrap();
    let a = ask(&engine).await;
    engine.markets().place_order(order(a, 3)).await.unwrap().expect("orders go on after the reload");

    // The whole live state (the shutdown snapshot copies every market as its
    // actor holds it, the restarted one included) is exactly what a replay of
    // the whole journal from an empty engine gives.
    assert_live_state_is_the_journal(engine, tmp.path()).await;
}

/// Shuts the engine down with a snapshot, which copies every market as its
/// actor holds it, and checks that a replay of the whole journal from an
/// empty engine gives exactly that state.
async fn assert_live_state_is_the_journal(engine: Engine, dir: &std::path::Path) {
    engine.send(Shutdown { snapshot: true }).await.unwrap().unwrap();
    let data = pat_persistence::DataDir::open(dir).unwrap();
    let (lsn, live) = data.snapshots().latest().unwrap().expect("the shutdown snapshot");
    let mut replayed = pat_engine::EngineState::new(testing::shared_config());
    for r in pat_persistence::reader::scan(&data.journal_dir()).unwrap().records.into_iter().filter(|r| r.lsn <= lsn) {
        replayed.apply(pat_persistence::decode_event(r.version, &r.payload).unwrap()).unwrap();
    }
    replayed.check_invariants();
    assert_eq!(replayed.snapshot(), live, "live state = replay of the journal through LSN {lsn}");
}

/// Units whose window has ended are never sold, even before the expiry
/// timer sweeps them: an order sweeps its market first, and journals it.
#[actix_rt::test]
async fn an_order_never_draws_units_whose_window_has_ended() {
    let tmp = tempfile::tempdir().unwrap();
    let mut h = Harness::new(tmp.path());
    h.settings.expiry_every = std::time::Duration::from_secs(3600);
    let (engine, _) = h.start();
    let domain = testing::config().domain();
    // Provider 10's window ends a minute from now, provider 11's in days.
    for (p, window_start) in [(10u8, T0 - 7 * 86_400 + 60), (11, T0 - 3600)] {
        for s in 0..2 {
            let payload = testing::payload_salted(3, u64::from(p) * 10 + s);
            let signed = signed_segment(&key(p), "PURCHASE_INTENT", "7D", 8000, window_start, T0, 10, &payload);
            engine.markets().submit_segment(verify_submission(signed, &domain).unwrap()).await.unwrap().unwrap();
        }
    }
    h.now.fetch_add(120_000, Ordering::Relaxed);
    let a = ask(&engine).await;
    let signed = signed_order(&CONSUMER_KEY, &market(), 2, a, 1, T0 + 3600);
    let fill = engine.markets().place_order(verify_order(signed, &domain).unwrap()).await.unwrap().unwrap();
    let ended = testing::signer(&key(10)).address();
    assert!(fill.allocations.iter().all(|u| u.provider != ended), "{:?}", fill.allocations);
    let id = engine.markets().by_key(&market()).unwrap();
    let view = engine.markets().views().await.unwrap().into_iter().find(|m| m.id == id).unwrap();
    assert_eq!((view.supply_units, view.counters.expired), (18, 20));
    assert_live_state_is_the_journal(engine, tmp.path()).await;
}

/// A panic in the quoting actor: its successor starts from the stats table
/// and goes on from the quote table's `seq`s, so subscribers (on the same
/// channel) see quotes newer than any they hold; orders go on.
#[actix_rt::test]
async fn a_crashed_quoting_actor_goes_on_from_the_published_seqs() {
    let metrics = metrics();
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, _) = h.start();
    let mut quotes = engine.send(SubscribeQuotes).await.unwrap();
    stock(&engine, 3).await;
    let a = ask(&engine).await;
    engine.markets().place_order(order(a, 1)).await.unwrap().unwrap();
    // The clock stands still: once the order is priced in, the quote stays.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    while quotes.try_recv().is_ok() {}
    let view = engine.markets().views().await.unwrap().into_iter().find(|m| m.key == market()).unwrap();
    let (id, seen) = (view.id, view.quote.seq);
    assert!(seen > 0, "the market quoted before the crash");

    engine.send(CrashQuoting).await.unwrap();
    let after = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let batch = quotes.recv().await.expect("the channel outlives the actor");
            if let Some(q) = batch.iter().find(|q| q.market == id) {
                return q.seq;
            }
        }
    });
    assert!(after.await.unwrap() > seen, "the successor's quotes are newer than those seen before");
    let a = ask(&engine).await;
    engine.markets().place_order(order(a, 2)).await.unwrap().expect("orders go on");
    let text = metrics.render();
    assert!(text.contains("pat_actor_restarts_total{actor=\"quoting\"} 1"), "{text}");
}

/// What a crashed clearing actor held goes back to the front of the queue
/// when its successor asks, and only then.
#[actix_rt::test]
async fn fills_taken_by_a_lost_clearing_actor_are_handed_over_again() {
    let tmp = tempfile::tempdir().unwrap();
    let h = Harness::new(tmp.path());
    let (engine, _) = h.start();
    stock(&engine, 2).await;
    let a = ask(&engine).await;
    let first = engine.markets().place_order(order(a, 1)).await.unwrap().unwrap();
    let take = || TakeDurableFills { max: 10, accepted_before_ms: u64::MAX };
    let taken = engine.send(take()).await.unwrap();
    assert_eq!(taken, vec![first.clone()]);
    // A millisecond later, so that "oldest first" does not come down to the fill ids.
    h.now.fetch_add(1, Ordering::Relaxed);
    let second = engine.markets().place_order(order(2 * a, 2)).await.unwrap().unwrap();
    assert!(second.accepted_at_ms > first.accepted_at_ms);
    assert_eq!(engine.send(take()).await.unwrap(), vec![second.clone()], "each fill is handed over once");
    assert!(engine.send(take()).await.unwrap().is_empty());
    engine.send(RequeueTaken).await.unwrap();
    assert_eq!(engine.send(take()).await.unwrap(), vec![first, second], "both again, oldest first");
}
