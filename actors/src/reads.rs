//! [`ReadView`]: what the read routes (segment search, a segment, a fill, a
//! consumer's fills) answer from, off the lock that orders take. It is a
//! projection of the events the actors append: each append under the shared
//! lock hands its event to [`ReadView::project`] (before the journal takes
//! it; a refused append degrades the engine, which rebuilds the view), which
//! takes the segment or the fill record it names from the registry. Segments
//! and fill records are shared with the registry (`Arc`), not copied: a
//! change of a fill's status copies that one record, and the view takes the
//! new one. Readers hold the view's own lock only to copy pointers, and
//! filter and clone outside it, so a projection (and the order behind it)
//! never waits for a long read.
//!
//! The catalog (PostgreSQL) will take the history over; this view keeps the
//! reads off the order path until then.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use alloy_primitives::map::{AddressMap, B256Map, B256Set};
use alloy_primitives::{Address, B256};
use pat_engine::{EngineConfig, Event, FillRecord, MarketKey, Registry, Segment, SegmentId, TimeMs};

use crate::delivery::{self, DeliveryError, DeliveryPlan};
use crate::messages::SearchSegments;

/// The reads of one engine incarnation.
#[derive(Debug, Default)]
pub(crate) struct ReadView(RwLock<Views>);

#[derive(Debug, Default)]
struct Views {
    /// By segment id.
    segments: Vec<Arc<Segment>>,
    /// The payload hash of every listed segment: what the payload store must keep.
    payloads: B256Set,
    /// Each consumer's fills, in the order they were accepted.
    by_consumer: AddressMap<Vec<Arc<FillRecord>>>,
    /// Where each fill is in its consumer's list.
    position: B256Map<(Address, usize)>,
    /// By market id: its key and its type's access period, seconds.
    access: Vec<(MarketKey, u64)>,
}

/// Each market's key and access period under `cfg`.
fn access_of(registry: &Registry, cfg: &EngineConfig) -> Vec<(MarketKey, u64)> {
    let secs = |key: &MarketKey| cfg.type_params(&key.segment_type).map_or(0, |t| t.access_secs);
    registry.catalogue().keys().iter().map(|k| (k.clone(), secs(k))).collect()
}

impl Views {
    fn put(&mut self, record: &Arc<FillRecord>) {
        let (id, consumer) = (record.fill.fill_id, record.fill.consumer);
        match self.position.get(&id) {
            Some(&(owner, at)) => {
                self.by_consumer.get_mut(&owner).expect("a placed fill's consumer")[at] = record.clone()
            }
            None => {
                let list = self.by_consumer.entry(consumer).or_default();
                self.position.insert(id, (consumer, list.len()));
                list.push(record.clone());
            }
        }
    }
}

impl ReadView {
    /// The view of `registry` as recovered.
    pub(crate) fn new(registry: &Registry) -> Self {
        let segments = registry.segments().to_vec();
        let payloads = segments.iter().map(|s| s.payload_hash).collect();
        let access = access_of(registry, registry.config());
        let mut views = Views { segments, payloads, access, ..Views::default() };
        let mut fills: Vec<&Arc<FillRecord>> = registry.fills().collect();
        fills.sort_by_key(|r| (r.fill.accepted_at_ms, r.fill.fill_id));
        for record in fills {
            views.put(record);
        }
        Self(RwLock::new(views))
    }

    fn read(&self) -> RwLockReadGuard<'_, Views> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in what `event`, just appended, changed in `registry`.
    pub(crate) fn project(&self, event: &Event, registry: &Registry) {
        let fills: &[B256] = match event {
            Event::FillAccepted(fill) => std::slice::from_ref(&fill.fill_id),
            Event::FillsSubmitted { fill_ids, .. } => fill_ids,
            Event::FillSettled { fill_id, .. } | Event::FillFailed { fill_id, .. } => std::slice::from_ref(fill_id),
            Event::SegmentListed(segment) => {
                let listed =
                    registry.segments().get(segment.id.0 as usize).expect("a listed segment is in the registry");
                let mut views = self.0.write().unwrap_or_else(|e| e.into_inner());
                views.payloads.insert(listed.payload_hash);
                views.segments.push(listed.clone());
                return;
            }
            Event::ConfigChanged(cfg) => {
                let access = access_of(registry, cfg);
                self.0.write().unwrap_or_else(|e| e.into_inner()).access = access;
                return;
            }
            // Nothing a read shows: the view's lock is not taken.
            Event::SubmissionRefused { .. }
            | Event::UnitsExpired { .. }
            | Event::MarketUnitsExpired { .. }
            | Event::PauseSet { .. }
            | Event::PhaseAdvanced { .. }
            | Event::EscrowSynced(_)
            | Event::ProvidersPaid(_) => return,
        };
        let mut views = self.0.write().unwrap_or_else(|e| e.into_inner());
        for record in fills.iter().filter_map(|id| registry.fill_record(id)) {
            views.put(record);
        }
    }

    pub(crate) fn segment(&self, id: SegmentId) -> Option<Segment> {
        self.read().segments.get(id.0 as usize).map(|s| (**s).clone())
    }

    /// Whether a listed segment has the payload `hash`.
    pub(crate) fn is_listed(&self, hash: &B256) -> bool {
        self.read().payloads.contains(hash)
    }

    /// The payload hashes of every listed segment.
    pub(crate) fn listed_payloads(&self) -> B256Set {
        self.read().payloads.clone()
    }

    /// The newest segments that match `q`, newest first, at most `q.limit`.
    pub(crate) fn search(&self, q: &SearchSegments) -> Vec<Segment> {
        let matches = |s: &&Arc<Segment>| {
            q.segment_type.as_deref().is_none_or(|t| s.market.segment_type.as_str() == t)
                && q.window.as_deref().is_none_or(|w| s.market.window.to_string() == w)
                && q.band.as_deref().is_none_or(|b| s.market.band.to_string() == b)
                && q.min_quality_bps.is_none_or(|m| s.quality.score() >= m)
        };
        let segments = self.read().segments.clone();
        segments.iter().rev().filter(matches).take(q.limit).map(|s| (**s).clone()).collect()
    }

    pub(crate) fn fill(&self, id: &B256) -> Option<FillRecord> {
        let views = self.read();
        let &(consumer, at) = views.position.get(id)?;
        Some((*views.by_consumer[&consumer][at]).clone())
    }

    /// What `consumer` may download of fill `id` at `now_ms`; see [`delivery`].
    pub(crate) fn plan_delivery(
        &self,
        id: &B256,
        consumer: Address,
        now_ms: TimeMs,
    ) -> Result<DeliveryPlan, DeliveryError> {
        let views = self.read();
        let &(owner, at) = views.position.get(id).ok_or(DeliveryError::UnknownFill(*id))?;
        let record = views.by_consumer[&owner][at].clone();
        let (market, access_secs) = views.access[record.fill.market.index()].clone();
        let segment = |id: SegmentId| views.segments.get(id.0 as usize).map(|s| (**s).clone());
        delivery::plan(&record, consumer, segment, market, access_secs, now_ms)
    }

    /// `consumer`'s fills, oldest first.
    pub(crate) fn consumer_fills(&self, consumer: &Address) -> Vec<FillRecord> {
        let list = self.read().by_consumer.get(consumer).cloned().unwrap_or_default();
        let mut fills: Vec<FillRecord> = list.iter().map(|r| (**r).clone()).collect();
        fills.sort_by_key(|r| r.fill.accepted_at_ms);
        fills
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pat_engine::testing::{self, CONSUMER_KEY, T0, key, signed_order, signed_segment};
    use pat_engine::{Exchange, FillStatus};

    /// The view follows every change by its event, shows what the registry
    /// shows, and a view built from the registry afresh (a restart) is equal.
    #[test]
    fn the_view_projects_listings_and_every_status_of_a_fill() {
        let mut ex = Exchange::new(testing::shared_config());
        let view = ReadView::new(ex.state.registry());
        let market: pat_engine::MarketKey = "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap();
        for p in 0..2u8 {
            let payload = testing::payload_salted(3, p as u64);
            let signed = signed_segment(&key(10 + p), "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 10, &payload);
            let (_, event) = ex.state.submit_segment(&signed, T0 * 1000).unwrap();
            view.project(&event, ex.state.registry());
        }
        ex.tick(T0 * 1000, &mut Vec::new());
        let ask = ex.quote(ex.state.catalogue().by_key(&market).unwrap()).ask;
        let mut ids = Vec::new();
        for nonce in 1..=2 {
            let order = signed_order(&CONSUMER_KEY, &market, 1, ask, nonce, T0 + 60);
            let (fill, event) = ex.submit_order(order, T0 * 1000 + nonce).unwrap();
            view.project(&event, ex.state.registry());
            ids.push(fill.fill_id);
        }
        let consumer = testing::signer(&CONSUMER_KEY).address();
        let event = ex.state.record_submission([ids[0]], B256::repeat_byte(7));
        view.project(&event, ex.state.registry());
        let submitted = view.fill(&ids[0]).unwrap().status;
        let event = ex.state.settle(&ids[0], T0 * 1000 + 8).unwrap();
        view.project(&event, ex.state.registry());
        let event = ex.state.fail(&ids[1], "rejected", T0 * 1000 + 9).unwrap();
        view.project(&event, ex.state.registry());

        assert_eq!(submitted, FillStatus::Submitted { tx_hash: B256::repeat_byte(7) });
        let fills = view.consumer_fills(&consumer);
        assert_eq!(fills.iter().map(|r| r.fill.fill_id).collect::<Vec<_>>(), ids, "oldest first");
        assert_eq!(fills[0].status, FillStatus::Settled { tx_hash: Some(B256::repeat_byte(7)), at_ms: T0 * 1000 + 8 });
        assert_eq!(fills[1].status, FillStatus::Failed { reason: "rejected".into() });
        assert_eq!(view.fill(&ids[1]).as_ref(), ex.state.registry().fill(&ids[1]));
        assert!(view.consumer_fills(&Address::ZERO).is_empty());
        let all = SearchSegments { limit: 10, ..SearchSegments::default() };
        let found: Vec<u64> = view.search(&all).iter().map(|s| s.id.0).collect();
        assert_eq!(found, [1, 0], "newest first");
        let none = SearchSegments { window: Some("1D".into()), ..all.clone() };
        assert!(view.search(&none).is_empty());
        assert_eq!(view.segment(SegmentId(1)).as_ref(), ex.state.registry().segment(SegmentId(1)));

        let hashes: B256Set = ex.state.registry().segments().iter().map(|s| s.payload_hash).collect();
        assert_eq!(view.listed_payloads(), hashes);
        assert!(hashes.iter().all(|h| view.is_listed(h)) && !view.is_listed(&B256::ZERO));

        let rebuilt = ReadView::new(ex.state.registry());
        assert_eq!(rebuilt.consumer_fills(&consumer), fills);
        assert_eq!(rebuilt.search(&all), view.search(&all));
        assert_eq!(rebuilt.listed_payloads(), hashes);
    }
}
