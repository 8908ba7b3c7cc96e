//! The quoting side of the runtime. Each market actor writes its market's
//! stats into the [`StatsTable`] as they change (the engine actor writes the
//! config, on a pause or reload); every tick the
//! [`QuotingActor`] reads what changed, reprices those markets (and a slice
//! of the rest, for the passage of time) with the engine's [`Quoter`], writes
//! the new quotes with their `seq` into the [`QuoteTable`] and broadcasts the
//! changed ones to the feed. Orders execute against the quote table's ask,
//! and reads answer from it. The actor also keeps the per-market gauges,
//! since it holds both stats and quotes.
//!
//! Each table's rows have one writer and a short lock: a market never waits
//! for a tick, and a tick never for an order.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use actix::prelude::*;
use pat_engine::market::Market;
use pat_engine::market::MarketSet;
use pat_engine::quoter::{MarketSpec, Quoter, TickInputs};
use pat_engine::state::market_specs;
use pat_engine::{Amount, Catalogue, EngineConfig, MarketId, MarketKey, MarketStats, Quote, Registry, TimeMs};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::gauges::{self, MarketGauges};
use crate::supervisor::{self, ExitNotice, Home, Supervised};

/// The inputs of quoting as the engine actor last wrote them.
struct StatsRows {
    stats: Vec<MarketStats>,
    group_exposure: Vec<Amount>,
    cfg: Arc<EngineConfig>,
    paused: bool,
    /// Markets written since the quoting actor last read.
    changed: MarketSet,
    /// The pause switched or the config changed since the quoting actor last read.
    requote_all: bool,
}

/// Each market's stats, the exposure of each (window, type) group, the
/// config and the pause switch: written by the engine actor, read by the
/// quoting actor.
pub struct StatsTable {
    rows: Mutex<StatsRows>,
}

impl StatsTable {
    fn new(cfg: &Arc<EngineConfig>, markets: usize) -> Self {
        Self {
            rows: Mutex::new(StatsRows {
                stats: vec![MarketStats::default(); markets],
                group_exposure: vec![0; cfg.types.len() * cfg.windows.len()],
                cfg: cfg.clone(),
                paused: false,
                changed: MarketSet::full(markets),
                requote_all: true,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, StatsRows> {
        self.rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `market`'s stats and the exposure of every group (a market
    /// actor, after each change of its market; under the registry's lock).
    pub(crate) fn write_market(&self, market: &Market, registry: &Registry) {
        let mut rows = self.lock();
        rows.stats[market.id.index()] = *market.stats();
        rows.changed.insert(market.id);
        rows.group_exposure.copy_from_slice(registry.group_exposures());
    }

    /// Writes the config and the pause switch: every market is repriced.
    pub(crate) fn write_switches(&self, registry: &Registry) {
        let mut rows = self.lock();
        rows.cfg = registry.shared_config().clone();
        rows.paused = registry.is_paused();
        rows.requote_all = true;
    }
}

struct QuoteRows {
    quotes: Vec<Quote>,
    valid_until_ms: TimeMs,
}

/// Every market's current quote: written by the quoting actor each tick, read
/// by the engine actor's order checks and by every reader of quotes.
pub struct QuoteTable {
    rows: RwLock<QuoteRows>,
}

impl QuoteTable {
    fn new(markets: usize) -> Self {
        let quotes = (0..markets as u32).map(|i| Quote::unquoted(MarketId(i))).collect();
        Self { rows: RwLock::new(QuoteRows { quotes, valid_until_ms: 0 }) }
    }

    /// A market's quote, executable until its `valid_until_ms`.
    pub fn get(&self, id: MarketId) -> Quote {
        let rows = self.rows.read().unwrap_or_else(|e| e.into_inner());
        Quote { valid_until_ms: rows.valid_until_ms, ..rows.quotes[id.index()] }
    }

    /// Until when the quotes are executable (one validity for the table, moved every tick).
    pub fn valid_until_ms(&self) -> TimeMs {
        self.rows.read().unwrap_or_else(|e| e.into_inner()).valid_until_ms
    }

    /// Every market's quote, by [`MarketId`].
    pub fn all(&self) -> Vec<Quote> {
        let rows = self.rows.read().unwrap_or_else(|e| e.into_inner());
        rows.quotes.iter().map(|q| Quote { valid_until_ms: rows.valid_until_ms, ..*q }).collect()
    }

    /// The `seq` each market's quote was last published with.
    fn seqs(&self) -> Vec<u64> {
        self.rows.read().unwrap_or_else(|e| e.into_inner()).quotes.iter().map(|q| q.seq).collect()
    }

    fn write(&self, changed: &[Quote], valid_until_ms: TimeMs) {
        let mut rows = self.rows.write().unwrap_or_else(|e| e.into_inner());
        for q in changed {
            rows.quotes[q.market.index()] = *q;
        }
        rows.valid_until_ms = valid_until_ms;
    }
}

/// The two tables between the engine actor and the quoting actor, and the
/// catalogue they are indexed by. Readers of quotes (the REST quotes route,
/// the feed) read the quote table directly, without the engine.
pub struct Tables {
    pub stats: StatsTable,
    pub quotes: QuoteTable,
    /// The markets (fixed while the process runs), shared with the router.
    pub catalogue: Arc<Catalogue>,
}

impl Tables {
    pub(crate) fn new(cfg: &Arc<EngineConfig>, catalogue: Arc<Catalogue>) -> Self {
        let n = catalogue.len();
        Self { stats: StatsTable::new(cfg, n), quotes: QuoteTable::new(n), catalogue }
    }

    /// Every market's key with its current quote.
    pub fn quoted(&self) -> impl Iterator<Item = (&MarketKey, Quote)> {
        self.catalogue.keys().iter().zip(self.quotes.all())
    }
}

/// Reprices markets every `quoting.tick_ms` from the stats table into the quote table.
pub struct QuotingActor {
    tables: Arc<Tables>,
    quoter: Quoter,
    /// The quoting actor's copy of the stats table, updated with what changed.
    stats: Vec<MarketStats>,
    group_exposure: Vec<Amount>,
    cfg: Arc<EngineConfig>,
    specs: Vec<MarketSpec>,
    paused: bool,
    published: broadcast::Sender<Arc<Vec<Quote>>>,
    clock: Clock,
    gauges: MarketGauges,
    changed: Vec<MarketId>,
    /// The tick's timer and its period, replaced when a reload changes `quoting.tick_ms`.
    ticker: Option<(SpawnHandle, u64)>,
    /// Last: tells the supervisor when the actor is gone.
    exit: ExitNotice,
}

impl QuotingActor {
    /// Starts the actor on an arbiter of its own, under a supervisor.
    pub(crate) fn start(
        tables: Arc<Tables>,
        published: broadcast::Sender<Arc<Vec<Quote>>>,
        clock: Clock,
    ) -> Result<Supervised<Self>, String> {
        supervisor::start("quoting", Home::Own, move |exit| {
            Self::new(tables.clone(), published.clone(), clock.clone(), exit)
        })
    }

    /// A quoter that goes on from the quote table's `seq`s, with a full copy
    /// of the stats table.
    fn new(tables: Arc<Tables>, published: broadcast::Sender<Arc<Vec<Quote>>>, clock: Clock, exit: ExitNotice) -> Self {
        let seqs = tables.quotes.seqs();
        let (stats, group_exposure, cfg, paused) = {
            let mut rows = tables.stats.lock();
            rows.changed.take(|_| ());
            rows.requote_all = false;
            (rows.stats.clone(), rows.group_exposure.clone(), rows.cfg.clone(), rows.paused)
        };
        let mut quoter = Quoter::new(stats.len());
        quoter.resume_seqs(&seqs);
        gauges::set_limits(&cfg.risk);
        Self {
            gauges: MarketGauges::new(stats.len()),
            specs: market_specs(&cfg),
            tables,
            quoter,
            stats,
            group_exposure,
            cfg,
            paused,
            published,
            clock,
            changed: Vec::new(),
            ticker: None,
            exit,
        }
    }

    /// Takes in what the engine wrote since the last tick.
    fn read_stats(&mut self, ctx: &mut Context<Self>) {
        let mut guard = self.tables.stats.lock();
        let rows = &mut *guard;
        let (stats, quoter, gauges) = (&mut self.stats, &mut self.quoter, &mut self.gauges);
        rows.changed.take(|id| {
            stats[id.index()] = rows.stats[id.index()];
            quoter.mark_dirty(id);
            gauges.touch(id);
        });
        self.group_exposure.copy_from_slice(&rows.group_exposure);
        if std::mem::take(&mut rows.requote_all) {
            (self.cfg, self.paused) = (rows.cfg.clone(), rows.paused);
            drop(guard);
            self.specs = market_specs(&self.cfg);
            self.quoter.mark_all_dirty();
            gauges::set_limits(&self.cfg.risk);
            self.schedule_ticks(ctx);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let started = Instant::now();
        self.read_stats(ctx);
        self.changed.clear();
        let inputs = TickInputs {
            now_ms: (self.clock)(),
            stats: &self.stats,
            specs: &self.specs,
            group_exposure: &self.group_exposure,
            cfg: &self.cfg,
            paused: self.paused,
        };
        self.quoter.tick(&inputs, &mut self.changed);
        let batch: Vec<Quote> = self.changed.iter().map(|&id| self.quoter.quote(id)).collect();
        self.tables.quotes.write(&batch, self.quoter.valid_until_ms());
        if !batch.is_empty() {
            self.changed.iter().for_each(|&id| self.gauges.touch(id));
            metrics::counter!("pat_quote_updates_total").increment(batch.len() as u64);
            // No subscriber is not an error: the feed may not be running.
            let _ = self.published.send(Arc::new(batch));
        }
        metrics::histogram!("pat_quote_tick_seconds").record(started.elapsed().as_secs_f64());
    }

    /// (Re)starts the tick at the config's `quoting.tick_ms`, if that changed.
    fn schedule_ticks(&mut self, ctx: &mut Context<Self>) {
        let tick_ms = self.cfg.quoting.tick_ms;
        match self.ticker.take() {
            Some((handle, ms)) if ms == tick_ms => self.ticker = Some((handle, ms)),
            old => {
                if let Some((handle, _)) = old {
                    ctx.cancel_future(handle);
                }
                let handle = ctx.run_interval(Duration::from_millis(tick_ms), |act, ctx| act.tick(ctx));
                self.ticker = Some((handle, tick_ms));
            }
        }
    }

    fn flush_gauges(&mut self) {
        let Self { gauges, tables, quoter, stats, specs, group_exposure, .. } = self;
        gauges.flush(|id| gauges::Row {
            key: tables.catalogue.key(id),
            quote: quoter.quote(id),
            stats: &stats[id.index()],
            group_exposure: group_exposure[specs[id.index()].group as usize],
        });
    }
}

impl Actor for QuotingActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule_ticks(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, _| act.flush_gauges());
        self.tick(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        // After a crash the supervisor stops the arbiter.
        if self.exit.is_planned() {
            Arbiter::current().stop();
        }
    }
}

supervisor::supervised_handlers!(QuotingActor, |_me| "the quoting actor");

#[cfg(test)]
mod tests {
    use super::*;
    use pat_engine::testing::{self, T0, key, signed_segment};

    fn stats_of(tables: &Tables, id: MarketId) -> (MarketStats, bool, bool) {
        let mut rows = tables.stats.lock();
        let mut changed = false;
        rows.changed.take(|m| changed |= m == id);
        (rows.stats[id.index()], changed, std::mem::take(&mut rows.requote_all))
    }

    /// The writes reach the table market by market: a listing changes its
    /// market's row and marks it, a pause asks for a full requote.
    #[test]
    fn the_stats_table_takes_what_changed_in_the_books() {
        let cfg = testing::shared_config();
        let tables = Tables::new(&cfg, Arc::new(pat_engine::Catalogue::new(&cfg)));
        let (mut registry, mut markets) = pat_engine::EngineState::new(cfg.clone()).into_parts();
        let market: MarketKey = "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap();
        let id = registry.catalogue().by_key(&market).unwrap();
        let (_, _, requote) = stats_of(&tables, id);
        assert!(requote, "a new table asks for every quote");

        let signed = signed_segment(&key(10), "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 20, &testing::payload(3));
        let verified = pat_engine::segment::verify_submission(signed, registry.catalogue().domain()).unwrap();
        registry.submit(&mut markets[id.index()], &verified, T0 * 1000).unwrap();
        tables.stats.write_market(&markets[id.index()], &registry);
        let (stats, changed, requote) = stats_of(&tables, id);
        assert_eq!((stats.supply_units, changed, requote), (20, true, false));

        registry.set_paused(true);
        tables.stats.write_switches(&registry);
        let (_, changed, requote) = stats_of(&tables, id);
        assert_eq!((changed, requote), (false, true));
        assert!(tables.stats.lock().paused);
    }

    /// Quotes read back with the table's validity; the seqs are the last written.
    #[test]
    fn the_quote_table_serves_the_last_written_quotes() {
        let cfg = testing::shared_config();
        let tables = Tables::new(&cfg, Arc::new(pat_engine::Catalogue::new(&cfg)));
        let quote = Quote { bid: 90, ask: 110, seq: 7, halted: None, ..Quote::unquoted(MarketId(3)) };
        tables.quotes.write(&[quote], 5_000);
        assert_eq!(tables.quotes.get(MarketId(3)), Quote { valid_until_ms: 5_000, ..quote });
        assert_eq!(tables.quotes.get(MarketId(0)).halted, Some(pat_engine::HaltReason::NotYetQuoted));
        let seqs = tables.quotes.seqs();
        assert_eq!((seqs.len(), seqs[3], seqs[0]), (tables.catalogue.len(), 7, 0));
        assert!(tables.quoted().all(|(_, q)| q.valid_until_ms == 5_000));
    }
}
