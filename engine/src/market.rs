//! One segment market's live state: the units each provider has listed and not
//! yet sold or expired, the EWMA event sums, exposure and unit counters; the
//! uniform draw of providers for a fill; and [`MarketStats`], the copy of it the
//! quoting side reads.
//!
//! Invariant: `listed = sold + expired + available`, checked by
//! [`Market::check_invariants`] in tests and debug builds.

use std::collections::{BTreeMap, VecDeque};

use alloy_primitives::map::{HashMap, HashSet};

use alloy_primitives::{Address, B256};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::ewma::{DecayedSum, TimeMs};
use crate::market_key::MarketKey;
use crate::money::Amount;
use crate::segment::SegmentId;

/// Index of a market in the engine's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MarketId(pub u32);

impl MarketId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A set of markets that remembers the order they joined it, each once:
/// markets whose state changed since someone last took them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarketSet {
    member: Vec<bool>,
    list: Vec<MarketId>,
}

impl MarketSet {
    /// Every one of `markets` markets, in index order.
    pub fn full(markets: usize) -> Self {
        Self { member: vec![true; markets], list: (0..markets as u32).map(MarketId).collect() }
    }

    /// Adds `id` unless it is already in (or not a market of the set).
    pub fn insert(&mut self, id: MarketId) {
        if let Some(flag) = self.member.get_mut(id.index())
            && !*flag
        {
            *flag = true;
            self.list.push(id);
        }
    }

    /// Empties the set, handing each market to `f` in the order it joined.
    pub fn take(&mut self, mut f: impl FnMut(MarketId)) {
        for id in self.list.drain(..) {
            self.member[id.index()] = false;
            f(id);
        }
    }
}

#[cfg(test)]
mod market_set_tests {
    use super::*;

    fn taken(set: &mut MarketSet) -> Vec<MarketId> {
        let mut out = Vec::new();
        set.take(|id| out.push(id));
        out
    }

    #[test]
    fn a_market_is_listed_once_however_often_it_is_inserted() {
        let mut set = MarketSet::full(3);
        assert_eq!(taken(&mut set), [MarketId(0), MarketId(1), MarketId(2)], "full: every market, in index order");
        set.insert(MarketId(1));
        set.insert(MarketId(1));
        set.insert(MarketId(7)); // unknown: ignored
        set.insert(MarketId(0));
        assert_eq!(taken(&mut set), [MarketId(1), MarketId(0)]);
        assert!(taken(&mut set).is_empty());
    }
}

/// Units of one segment still for sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    pub segment: SegmentId,
    pub window_start_ms: TimeMs,
    pub expires_at_ms: TimeMs,
    pub units: u32,
}

/// Units of one provider's segment delivered by a fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub provider: Address,
    pub segment: SegmentId,
    pub units: u32,
}

/// One provider's lots in a market, soonest expiry first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ProviderBook {
    provider: Address,
    lots: VecDeque<Lot>,
    units: u64,
}

impl ProviderBook {
    fn front_start(&self) -> TimeMs {
        self.lots.front().map_or(0, |l| l.window_start_ms)
    }
}

/// What the quoting side reads of a market: a plain copy, written by the
/// market's owner each time it changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct MarketStats {
    pub supply_units: u64,
    /// Mean window start of the units each provider would deliver next; the
    /// expected window start of the next unit under a uniform provider draw.
    pub next_start_ms: TimeMs,
    pub minted: DecayedSum,
    pub consumed: DecayedSum,
    /// Units sold or expired.
    pub burned: DecayedSum,
    pub trades: DecayedSum,
    /// Notional of accepted but unsettled fills.
    pub exposure: Amount,
}

/// A fill's units are not in the book: the journal and the book disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{units} units of segment {segment:?} from {provider} are not for sale")]
pub struct MissingUnits {
    pub provider: Address,
    pub segment: SegmentId,
    pub units: u32,
}

/// Counters of a market's units over its whole history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitCounters {
    pub listed: u64,
    pub sold: u64,
    pub expired: u64,
}

/// A segment market's state, owned by one writer. Providers are kept sorted
/// by address, so the book (and every later draw) depends only on which units
/// are where, never on the order in which they came and went: a fill applied
/// from the journal leaves the same book as the draw that made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Market {
    pub id: MarketId,
    pub key: MarketKey,
    providers: Vec<ProviderBook>,
    start_sum_ms: u128,
    stats: MarketStats,
    counters: UnitCounters,
    half_life_ms: f64,
}

impl Market {
    pub fn new(id: MarketId, key: MarketKey, half_life_ms: f64) -> Self {
        Self {
            id,
            key,
            providers: Vec::new(),
            start_sum_ms: 0,
            stats: MarketStats::default(),
            counters: UnitCounters::default(),
            half_life_ms,
        }
    }

    pub fn stats(&self) -> &MarketStats {
        &self.stats
    }

    pub fn counters(&self) -> UnitCounters {
        self.counters
    }

    pub fn supply_units(&self) -> u64 {
        self.stats.supply_units
    }

    /// Number of providers with units for sale.
    pub fn provider_count(&self) -> usize {
        self.providers.len()
    }

    /// Units each provider has for sale, in the market's provider order.
    pub fn provider_supply(&self) -> impl Iterator<Item = (Address, u64)> + '_ {
        self.providers.iter().map(|p| (p.provider, p.units))
    }

    pub fn set_half_life_ms(&mut self, half_life_ms: f64) {
        self.half_life_ms = half_life_ms;
    }

    pub fn add_exposure(&mut self, notional: Amount) {
        self.stats.exposure += notional;
    }

    pub fn release_exposure(&mut self, notional: Amount) {
        debug_assert!(self.stats.exposure >= notional);
        self.stats.exposure -= notional;
    }

    /// Lists a provider's units.
    pub fn list(&mut self, provider: Address, lot: Lot, now_ms: TimeMs) {
        self.insert_lot(provider, lot);
        self.counters.listed += u64::from(lot.units);
        self.stats.minted.add(now_ms, f64::from(lot.units), self.half_life_ms);
    }

    fn slot_of(&self, provider: &Address) -> Result<usize, usize> {
        self.providers.binary_search_by_key(provider, |p| p.provider)
    }

    fn insert_lot(&mut self, provider: Address, lot: Lot) {
        let slot = self.slot_of(&provider).unwrap_or_else(|slot| {
            self.providers.insert(slot, ProviderBook { provider, lots: VecDeque::new(), units: 0 });
            slot
        });
        let book = &mut self.providers[slot];
        let old_front = (!book.lots.is_empty()).then(|| book.front_start());
        let key = (lot.expires_at_ms, lot.segment);
        match book.lots.binary_search_by_key(&key, |l| (l.expires_at_ms, l.segment)) {
            Ok(i) => book.lots[i].units += lot.units,
            Err(i) => book.lots.insert(i, lot),
        }
        book.units += u64::from(lot.units);
        let new_front = book.front_start();
        self.start_sum_ms = self.start_sum_ms - old_front.unwrap_or(0) as u128 + new_front as u128;
        self.stats.supply_units += u64::from(lot.units);
        self.refresh_next_start();
    }

    fn refresh_next_start(&mut self) {
        self.stats.next_start_ms = match self.providers.len() {
            0 => 0,
            n => (self.start_sum_ms / n as u128) as TimeMs,
        };
    }

    /// Takes `units` from lot `lot` of provider slot `slot`; drops emptied lots and providers.
    fn take_from(&mut self, slot: usize, lot: usize, units: u32) -> Allocation {
        let book = &mut self.providers[slot];
        let old_front = book.front_start();
        let l = &mut book.lots[lot];
        l.units -= units;
        let taken = Allocation { provider: book.provider, segment: l.segment, units };
        if l.units == 0 {
            book.lots.remove(lot);
        }
        book.units -= u64::from(units);
        self.stats.supply_units -= u64::from(units);
        self.start_sum_ms -= old_front as u128;
        if book.units == 0 {
            self.providers.remove(slot);
        } else {
            self.start_sum_ms += book.front_start() as u128;
        }
        taken
    }

    fn book_sale(&mut self, qty: u64, now_ms: TimeMs) {
        self.refresh_next_start();
        self.counters.sold += qty;
        let hl = self.half_life_ms;
        self.stats.consumed.add(now_ms, qty as f64, hl);
        self.stats.burned.add(now_ms, qty as f64, hl);
        self.stats.trades.add(now_ms, 1.0, hl);
    }

    /// Draws `qty` units for a fill, each from a distinct segment that
    /// `bought` (the segments the consumer already holds) does not name: for
    /// each unit a provider is chosen uniformly among those with such a
    /// segment left (every provider equally likely, whatever its size), and
    /// its soonest-expiring one gives the unit. The draw is a function of
    /// `seed` (the fill id), the book and `bought` alone. It changes nothing:
    /// the fill takes its units with [`Market::take`], as a replay of its
    /// allocations does, so both leave the same book.
    ///
    /// Fewer than `qty` such segments: the error says how many there are.
    pub fn draw(&self, qty: u64, seed: B256, held: impl Fn(SegmentId) -> bool) -> Result<Vec<Allocation>, u64> {
        let mut rng = ChaCha8Rng::from_seed(seed.0);
        let n = self.providers.len();
        let mut taken: BTreeMap<(Address, SegmentId), u32> = BTreeMap::new();
        let mut taken_here: HashSet<SegmentId> = HashSet::default();
        // Per provider slot reached so far: the first lot it may still give.
        let mut cursor: HashMap<usize, usize> = HashMap::default();
        let mut exhausted: HashSet<usize> = HashSet::default();
        let mut eligible: Option<Vec<usize>> = None;
        while (taken.len() as u64) < qty {
            if exhausted.len() == n {
                return Err(self.segments_left(&held));
            }
            // Rejection sampling over the providers, until too many are exhausted
            // for it to be quick; then a uniform pick from the list of those left.
            let slot = if exhausted.len() * 2 <= n {
                let slot = rng.random_range(0..n);
                if exhausted.contains(&slot) {
                    continue;
                }
                slot
            } else {
                let left = eligible.get_or_insert_with(|| (0..n).filter(|s| !exhausted.contains(s)).collect());
                left.retain(|s| !exhausted.contains(s));
                left[rng.random_range(0..left.len())]
            };
            let lots = &self.providers[slot].lots;
            let from = cursor.entry(slot).or_insert(0);
            match lots.iter().skip(*from).position(|l| !held(l.segment) && !taken_here.contains(&l.segment)) {
                Some(at) => {
                    let segment = lots[*from + at].segment;
                    *from += at + 1;
                    taken_here.insert(segment);
                    taken.insert((self.providers[slot].provider, segment), 1);
                }
                None => {
                    exhausted.insert(slot);
                }
            }
        }
        Ok(taken.into_iter().map(|((provider, segment), units)| Allocation { provider, segment, units }).collect())
    }

    /// Distinct segments with supply that are not `held`.
    fn segments_left(&self, held: impl Fn(SegmentId) -> bool) -> u64 {
        let lots = self.providers.iter().flat_map(|p| p.lots.iter());
        lots.filter(|l| !held(l.segment)).map(|l| l.segment).collect::<HashSet<_>>().len() as u64
    }

    /// Takes exactly the units a fill drew (a fill replayed from the journal);
    /// leaves the same book as the [`Market::draw`] that made them. Checks
    /// every allocation before it takes any.
    pub fn take(&mut self, allocations: &[Allocation], now_ms: TimeMs) -> Result<(), MissingUnits> {
        let find = |m: &Self, a: &Allocation| {
            let slot = m.slot_of(&a.provider).ok()?;
            let lot = m.providers[slot].lots.iter().position(|l| l.segment == a.segment)?;
            (m.providers[slot].lots[lot].units >= a.units).then_some((slot, lot))
        };
        if let Some(a) = allocations.iter().find(|a| find(self, a).is_none()) {
            return Err(MissingUnits { provider: a.provider, segment: a.segment, units: a.units });
        }
        for a in allocations {
            let (slot, lot) = find(self, a).expect("checked above");
            self.take_from(slot, lot, a.units);
        }
        self.book_sale(allocations.iter().map(|a| u64::from(a.units)).sum(), now_ms);
        Ok(())
    }

    /// Returns the units of a failed fill to supply; units whose window ended
    /// meanwhile count as expired. `lots` gives each allocation's window.
    pub fn restore(&mut self, returned: &[(Allocation, Lot)], now_ms: TimeMs) {
        for (alloc, lot) in returned {
            self.counters.sold -= u64::from(alloc.units);
            if lot.expires_at_ms <= now_ms {
                self.counters.expired += u64::from(alloc.units);
                self.stats.burned.add(now_ms, f64::from(alloc.units), self.half_life_ms);
            } else {
                self.insert_lot(alloc.provider, Lot { units: alloc.units, ..*lot });
            }
        }
    }

    /// Removes the units whose window ended by `now_ms`, as a market's own
    /// sweep does; the event that records it, when there were any.
    pub fn sweep(&mut self, now_ms: TimeMs) -> Option<Event> {
        (self.expire(now_ms) > 0).then_some(Event::MarketUnitsExpired { market: self.id, at_ms: now_ms })
    }

    /// Removes every unit whose window has ended by `now_ms`; returns how many.
    pub fn expire(&mut self, now_ms: TimeMs) -> u64 {
        let mut expired = 0u64;
        let mut slot = 0;
        while slot < self.providers.len() {
            let book = &mut self.providers[slot];
            let old_front = book.front_start();
            let mut gone = 0u64;
            while book.lots.front().is_some_and(|l| l.expires_at_ms <= now_ms) {
                gone += u64::from(book.lots.pop_front().map_or(0, |l| l.units));
            }
            if gone == 0 {
                slot += 1;
                continue;
            }
            book.units -= gone;
            expired += gone;
            self.start_sum_ms -= old_front as u128;
            if book.units == 0 {
                self.providers.remove(slot);
            } else {
                self.start_sum_ms += book.front_start() as u128;
                slot += 1;
            }
        }
        if expired > 0 {
            self.stats.supply_units -= expired;
            self.counters.expired += expired;
            self.stats.burned.add(now_ms, expired as f64, self.half_life_ms);
            self.refresh_next_start();
        }
        expired
    }

    /// Panics if the book's totals disagree with its lots or counters.
    pub fn check_invariants(&self) {
        let lots: u64 = self.providers.iter().flat_map(|p| &p.lots).map(|l| u64::from(l.units)).sum();
        assert_eq!(lots, self.stats.supply_units, "{}: lots vs supply", self.key);
        for book in &self.providers {
            assert!(book.units > 0, "{}: empty provider kept", self.key);
            assert_eq!(book.units, book.lots.iter().map(|l| u64::from(l.units)).sum::<u64>());
        }
        assert!(self.providers.windows(2).all(|w| w[0].provider < w[1].provider), "{}: providers sorted", self.key);
        let starts: u128 = self.providers.iter().map(|p| p.front_start() as u128).sum();
        assert_eq!(starts, self.start_sum_ms, "{}: start sum", self.key);
        let c = self.counters;
        assert_eq!(
            c.listed,
            c.sold + c.expired + self.stats.supply_units,
            "{}: listed = sold + expired + available",
            self.key
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn market() -> Market {
        Market::new(MarketId(0), "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap(), 3_600_000.0)
    }

    fn lot(segment: u64, start: TimeMs, units: u32) -> Lot {
        Lot { segment: SegmentId(segment), window_start_ms: start, expires_at_ms: start + 1_000, units }
    }

    /// Draws and takes, as an accepted fill does.
    fn draw_take(m: &mut Market, qty: u64, seed: B256, now_ms: TimeMs) -> Vec<Allocation> {
        let drawn = m.draw(qty, seed, |_| false).unwrap();
        m.take(&drawn, now_ms).unwrap();
        drawn
    }

    #[test]
    fn a_draw_takes_one_unit_of_distinct_segments_soonest_expiry_first() {
        let mut m = market();
        let (a, b) = (Address::repeat_byte(1), Address::repeat_byte(2));
        m.list(a, lot(2, 200, 3), 0);
        m.list(a, lot(1, 100, 2), 0);
        m.list(a, lot(4, 400, 1), 0);
        m.list(b, lot(3, 300, 1), 0);
        assert_eq!(m.supply_units(), 7);
        assert_eq!(m.stats().next_start_ms, 200); // (100 + 300) / 2
        assert_eq!(m.draw(5, B256::ZERO, |_| false), Err(4), "4 distinct segments");
        let bought: HashSet<SegmentId> = [SegmentId(1)].into_iter().collect();
        let drawn = m.draw(3, B256::repeat_byte(9), |s| bought.contains(&s)).unwrap();
        let per: Vec<_> = drawn.iter().map(|x| (x.provider, x.segment.0, x.units)).collect();
        assert_eq!(per, vec![(a, 2, 1), (a, 4, 1), (b, 3, 1)], "never a segment the consumer holds");
        assert_eq!(m.draw(4, B256::ZERO, |s| bought.contains(&s)), Err(3));
        assert_eq!(m.supply_units(), 7, "a draw changes nothing");
        m.take(&drawn, 10).unwrap();
        assert_eq!((m.supply_units(), m.provider_count()), (4, 1));
        let rest = draw_take(&mut m, 2, B256::repeat_byte(1), 20);
        assert_eq!(rest.iter().map(|x| x.segment.0).collect::<Vec<_>>(), [1, 2], "the soonest expiry first");
        m.check_invariants();
    }

    /// Each provider with `segments` segments of one unit or more.
    fn book_of(providers: &[Address], segments: u64) -> Market {
        let mut m = market();
        for (i, &p) in providers.iter().enumerate() {
            for s in 0..segments {
                let id = SegmentId(i as u64 * 1_000 + s);
                m.list(p, Lot { segment: id, window_start_ms: 0, expires_at_ms: u64::MAX, units: 1 + 9 * s as u32 }, 0);
            }
        }
        m
    }

    /// Units per provider over `fills` draws of `qty` from `m` for a consumer holding `bought`.
    fn provider_counts(m: &Market, fills: u64, qty: u64, bought: &HashSet<SegmentId>) -> HashMap<Address, u64> {
        let mut counts: HashMap<Address, u64> = HashMap::default();
        for fill in 0..fills {
            let drawn = m.draw(qty, alloy_primitives::keccak256(fill.to_be_bytes()), |s| bought.contains(&s)).unwrap();
            let distinct: HashSet<SegmentId> = drawn.iter().map(|a| a.segment).collect();
            assert_eq!(distinct.len() as u64, qty, "distinct segments");
            assert!(distinct.iter().all(|s| !bought.contains(s)), "none held");
            for a in drawn {
                *counts.entry(a.provider).or_default() += u64::from(a.units);
            }
        }
        counts
    }

    fn chi_square(counts: &HashMap<Address, u64>, providers: &[Address], expected: f64) -> f64 {
        providers.iter().map(|p| (counts.get(p).copied().unwrap_or(0) as f64 - expected).powi(2) / expected).sum()
    }

    /// Every provider is equally likely per unit, whatever its size: a
    /// chi-square test over 100k units among 10 providers of unequal supply
    /// (a draw weighted by supply would give counts proportional to size).
    #[test]
    fn provider_choice_is_uniform() {
        let providers: Vec<Address> = (1..=10u8).map(Address::repeat_byte).collect();
        let mut m = book_of(&providers, 20);
        for (i, &p) in providers.iter().enumerate() {
            let big = Lot {
                segment: SegmentId(900 + i as u64),
                window_start_ms: 0,
                expires_at_ms: u64::MAX,
                units: 5_000 * i as u32 + 1,
            };
            m.list(p, big, 0);
        }
        let counts = provider_counts(&m, 20_000, 5, &HashSet::default());
        // 27.88 is the 0.999 quantile of chi-square with 9 degrees of freedom.
        let chi2 = chi_square(&counts, &providers, 10_000.0);
        assert!(chi2 < 27.88, "chi-square {chi2}: {counts:?}");
    }

    /// For a consumer that holds segments already: providers whose every
    /// segment it holds are never drawn, held segments never come again, and
    /// the draw stays uniform among the providers still eligible for it.
    #[test]
    fn the_draw_is_uniform_among_the_providers_still_eligible_for_the_consumer() {
        let providers: Vec<Address> = (1..=10u8).map(Address::repeat_byte).collect();
        let m = book_of(&providers, 8);
        // All of providers 1 to 3, and half of providers 4 to 6.
        let bought: HashSet<SegmentId> = (0..3u64)
            .flat_map(|i| (0..8).map(move |s| SegmentId(i * 1_000 + s)))
            .chain((3..6u64).flat_map(|i| (0..4).map(move |s| SegmentId(i * 1_000 + s))))
            .collect();
        let counts = provider_counts(&m, 35_000, 2, &bought);
        assert!(providers[..3].iter().all(|p| !counts.contains_key(p)), "{counts:?}");
        // 22.46 is the 0.999 quantile of chi-square with 6 degrees of freedom.
        let chi2 = chi_square(&counts, &providers[3..], 10_000.0);
        assert!(chi2 < 22.46, "chi-square {chi2}: {counts:?}");
    }

    #[test]
    fn expiry_removes_only_ended_windows_and_restore_returns_units() {
        let mut m = market();
        let a = Address::repeat_byte(1);
        m.list(a, lot(1, 0, 2), 0);
        m.list(a, lot(2, 5_000, 4), 0);
        assert_eq!(m.expire(999), 0);
        assert_eq!(m.expire(1_000), 2);
        assert_eq!(m.supply_units(), 4);
        let drawn = draw_take(&mut m, 1, B256::ZERO, 1_000);
        m.restore(&[(drawn[0], lot(2, 5_000, 1))], 2_000);
        assert_eq!(m.supply_units(), 4);
        let drawn = draw_take(&mut m, 1, B256::ZERO, 2_000);
        m.restore(&[(drawn[0], lot(2, 5_000, 1))], 9_000);
        assert_eq!((m.supply_units(), m.counters().expired), (3, 3));
        m.check_invariants();
    }
}
