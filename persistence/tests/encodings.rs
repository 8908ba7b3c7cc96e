//! The schema versions of the data directory hold: a data directory written
//! by every older build still recovers, and the shape of today's types is
//! the one frozen for [`SCHEMA_VERSION`], so no change slips in under an old
//! version.
//!
//! - `fixtures/vN/` is a data directory written by the build of version N (a
//!   journal with every event kind, and a snapshot in the middle of it). It
//!   is committed once and never rewritten: `PAT_WRITE_FIXTURE=1 cargo test
//!   -p pat-persistence --test encodings` writes the one of [`SCHEMA_VERSION`]
//!   if it is missing.
//! - `golden/schema-vN.json` is the serde shape (serde-reflection's registry)
//!   of every type reachable from `Event` and `Snapshot` in version N, as
//!   traced when it was frozen; the test compares shapes, not the names of
//!   types, which postcard never writes. `PAT_WRITE_GOLDEN=1` writes the one
//!   of [`SCHEMA_VERSION`] if missing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alloy_primitives::{B256, U256};
use common::copy_dir;
use pat_engine::escrow::{EscrowAccount, EscrowSync, NonceCancel};
use pat_engine::payout::{Payout, ProviderPayout};
use pat_engine::testing::{self, T0, key, signed_order, signed_segment};
use pat_engine::{EngineConfig, Event, Exchange, FillStatus, MarketKey, Snapshot};
use pat_persistence::{DataDir, JournalConfig, SCHEMA_VERSION, decode_event, reader};
use serde_reflection::{Samples, Tracer, TracerConfig};

const NOW: u64 = T0 * 1000;
const HOUR_MS: u64 = 3_600_000;

/// Every kind of event, by an exhaustive match: a new kind does not compile
/// here until [`history`] makes it, so the fixture of the next version has it.
fn kind_index(event: &Event) -> usize {
    match event {
        Event::SegmentListed(_) => 0,
        Event::SubmissionRefused { .. } => 1,
        Event::FillAccepted(_) => 2,
        Event::FillsSubmitted { .. } => 3,
        Event::FillSettled { .. } => 4,
        Event::FillFailed { .. } => 5,
        Event::UnitsExpired { .. } => 6,
        Event::ConfigChanged(_) => 7,
        Event::PauseSet { .. } => 8,
        Event::PhaseAdvanced { .. } => 9,
        Event::MarketUnitsExpired { .. } => 10,
        Event::EscrowSynced(_) => 11,
        Event::ProvidersPaid(_) => 12,
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn golden(version: u8) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/schema-v{version}.json"))
}

fn market(text: &str) -> MarketKey {
    text.parse().unwrap()
}

/// A history the engine decides, with every kind of event, the state at the
/// point where the snapshot is taken, and the final state.
struct History {
    events: Vec<Event>,
    /// Events before the snapshot.
    snapshot_after: usize,
    snapshot: Snapshot,
    end: Snapshot,
}

fn history() -> History {
    let cfg = testing::shared_config();
    let mut ex = Exchange::new(cfg.clone());
    // A new data directory starts with its config, as `serve` journals it.
    let mut events = vec![ex.state.reconfigure(cfg.clone()).unwrap()];
    let week = market("PURCHASE_INTENT|7D|0.70-0.85");
    let day = market("RESEARCH_INTENT|1D|0.50-0.70");
    for p in 0..3u8 {
        let payload = testing::payload_salted(2 + p as usize, p as u64);
        let signed = signed_segment(&key(10 + p), "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 20, &payload);
        events.push(ex.state.submit_segment(&signed, NOW).unwrap().1);
    }
    let payload = testing::payload_salted(3, 9);
    let signed = signed_segment(&key(13), "RESEARCH_INTENT", "1D", 6000, T0 - 3600, T0, 5, &payload);
    events.push(ex.state.submit_segment(&signed, NOW).unwrap().1);
    // The same payload again: validly signed, refused, counted against its provider.
    let again = signed_segment(&key(13), "RESEARCH_INTENT", "1D", 6000, T0 - 3600, T0, 5, &payload);
    events.push(ex.state.submit_segment(&again, NOW).unwrap_err().event().unwrap());

    ex.tick(NOW, &mut Vec::new());
    let ask = ex.quote(ex.state.catalogue().by_key(&week).unwrap()).ask;
    let mut fills = Vec::new();
    for nonce in 1..=4 {
        // A consumer per order: a fill takes one unit of each segment it draws, and a
        // consumer never gets a segment twice.
        let order = signed_order(&key(30 + nonce as u8), &week, nonce.min(3), ask, nonce, T0 + 60);
        let (fill, event) = ex.submit_order(order, NOW + nonce).unwrap();
        events.push(event);
        fills.push(fill.fill_id);
    }
    events.push(ex.state.record_submission(fills[..3].to_vec(), B256::repeat_byte(0xa1)));
    events.push(ex.state.settle(&fills[0], NOW + 30_000).unwrap());
    // The chain showed the first fill settled, one consumer's escrow and a cancelled nonce.
    events.push(
        ex.state
            .sync_escrow(EscrowSync {
                block: 12,
                accounts: vec![(
                    testing::signer(&key(31)).address(),
                    EscrowAccount { escrow: 10 * ask, withdrawing: ask },
                )],
                settled: vec![fills[0]],
                cancelled: vec![NonceCancel {
                    consumer: testing::signer(&key(32)).address(),
                    word: U256::from(1),
                    mask: 0b11,
                }],
            })
            .expect("a sync that changed something"),
    );
    // The broker paid the first fill's providers their settled credits.
    let payouts = ex.state.registry().payouts();
    let entries = ex
        .state
        .registry()
        .fill(&fills[0])
        .unwrap()
        .fill
        .provider_credits()
        .into_iter()
        .map(|(provider, _, _)| ProviderPayout { provider, cumulative: payouts.account(&provider).settled });
    let payout = Payout { tx_hash: B256::repeat_byte(0xc3), entries: entries.collect() };
    events.push(ex.state.record_payout(payout).unwrap());
    events.push(ex.state.fail(&fills[1], "insufficient escrow", NOW + HOUR_MS).unwrap());
    events.push(ex.state.set_paused(true));
    events.push(ex.state.set_paused(false));
    events.push(ex.state.set_phase(2).unwrap());
    let snapshot_after = events.len();
    let snapshot = ex.state.snapshot();
    let states: std::collections::HashSet<_> =
        snapshot.fills.iter().map(|f| std::mem::discriminant(&f.status)).collect();
    assert_eq!(states.len(), 4, "the snapshot holds a fill in each state");

    // The tail after the snapshot: recovery replays these over it.
    events.push(ex.state.fail(&fills[2], "order deadline passed on chain", NOW + 2 * HOUR_MS).unwrap());
    let id = ex.state.catalogue().by_key(&day).unwrap();
    events.push(ex.state.expire_market(id, NOW + 25 * HOUR_MS).expect("the 1D window ended"));
    events.push(ex.state.expire(NOW + 8 * 24 * HOUR_MS).expect("the 7D window ended"));
    let mut changed: EngineConfig = (*cfg).clone();
    changed.pricing.rate_half_life_secs = 7_200.0;
    events.push(ex.state.reconfigure(Arc::new(changed)).unwrap());
    events.push(ex.state.record_submission([fills[3]], B256::repeat_byte(0xb2)));
    events.push(ex.state.settle(&fills[3], NOW + 3 * HOUR_MS).unwrap());
    ex.state.check_invariants();
    History { events, snapshot_after, snapshot, end: ex.state.snapshot() }
}

/// The config the fixture's first record carries: recovery from an empty
/// state starts with it, whatever today's test config is.
fn first_config(journal: &Path) -> Arc<EngineConfig> {
    let scan = reader::scan(journal).unwrap();
    let first = &scan.records[0];
    match decode_event(first.version, &first.payload).unwrap() {
        Event::ConfigChanged(cfg) => Arc::new(*cfg),
        other => panic!("a data directory starts with its config, not {}", other.kind()),
    }
}

fn fixture_versions() -> Vec<u8> {
    let mut versions: Vec<u8> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.strip_prefix('v')?.parse().ok())
        .collect();
    versions.sort();
    versions
}

#[test]
fn every_committed_data_directory_recovers() {
    write_fixture_if_asked();
    let versions = fixture_versions();
    assert_eq!(versions.first(), Some(&1), "the fixture of version 1 is committed");
    assert!(
        versions.contains(&SCHEMA_VERSION),
        "no fixture of schema version {SCHEMA_VERSION}: see this file's header"
    );
    for version in versions {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        copy_dir(&fixtures().join(format!("v{version}")), &root);
        let initial = first_config(&root.join("journal"));

        // Every record decodes, each kind of event is there, each at its version.
        let scan = reader::scan(&root.join("journal")).unwrap();
        assert!(scan.torn.is_none());
        let mut kinds = BTreeSet::new();
        for r in &scan.records {
            assert_eq!(r.version, version, "LSN {}", r.lsn);
            kinds.insert(kind_index(&decode_event(r.version, &r.payload).unwrap()));
        }
        // Version 3 added escrow_synced, version 4 providers_paid; older builds wrote all the others.
        let known = Event::KINDS.len() - [2, 2, 1].get(version as usize - 1).copied().unwrap_or(0);
        assert_eq!(kinds.len(), known, "v{version}: the fixture holds every kind of event of its version");

        // Snapshot + tail, as start-up does.
        let data = DataDir::open(&root).unwrap();
        let recovered = data.recover(&initial).unwrap();
        assert!(recovered.snapshot_lsn > 0, "v{version}: recovery starts from the snapshot");
        assert!(recovered.replayed > 0, "v{version}: and replays the journal after it");
        assert_eq!(recovered.next_lsn, scan.records.len() as u64 + 1);
        recovered.books.check_invariants();
        let state = recovered.books.snapshot();

        // The whole journal from empty gives the same state.
        let journal_only = tmp.path().join("journal-only");
        copy_dir(&root.join("journal"), &journal_only.join("journal"));
        let replayed = DataDir::open(&journal_only).unwrap().recover(&initial).unwrap();
        assert_eq!(replayed.snapshot_lsn, 0);
        assert!(replayed.books.snapshot() == state, "v{version}: snapshot + tail equals the journal from empty");

        // What the history did, in facts any later build keeps.
        let ledger = &state.ledger;
        assert_eq!(ledger.consumer_debits, ledger.provider_credits + ledger.broker_revenue + ledger.refunds);
        assert!(ledger.refunds > 0 && ledger.provider_credits > 0);
        assert_eq!(state.segments.len(), 4);
        let statuses: Vec<_> = state.fills.iter().map(|f| std::mem::discriminant(&f.status)).collect();
        let settled = std::mem::discriminant(&FillStatus::Settled { tx_hash: None, at_ms: 0 });
        assert_eq!(state.fills.len(), 4);
        assert_eq!(statuses.iter().filter(|s| **s == settled).count(), 2);
        for r in &state.fills {
            if let FillStatus::Settled { at_ms, .. } = r.status {
                // v1 recorded no settlement time: the acceptance stands in.
                let expected = if version == 1 { r.fill.accepted_at_ms } else { at_ms.max(r.fill.accepted_at_ms + 1) };
                assert_eq!(at_ms, expected, "v{version}: when fill {} settled", r.fill.fill_id);
            }
        }
        assert!(state.config.types.iter().all(|t| t.access_secs > 0), "v{version}: every type has an access period");
        assert_eq!((state.paused, state.phase), (false, 2));
        assert_eq!(state.config.pricing.rate_half_life_secs, 7_200.0);
        assert_eq!(state.providers.iter().map(|(_, p)| p.rejected).sum::<u64>(), 1);
        if version >= 4 {
            assert!(
                !state.paid.is_empty() && state.paid.iter().all(|(_, a)| *a > 0),
                "v{version}: providers were paid"
            );
        } else {
            assert!(state.paid.is_empty(), "v{version}: nothing was paid before payouts");
        }
    }
}

/// Writes `fixtures/v{SCHEMA_VERSION}` from [`history`] when
/// `PAT_WRITE_FIXTURE=1` and it does not exist yet. A fixture is never
/// rewritten: it is what that version's build wrote.
fn write_fixture_if_asked() {
    let dir = fixtures().join(format!("v{SCHEMA_VERSION}"));
    if std::env::var("PAT_WRITE_FIXTURE").as_deref() != Ok("1") || dir.exists() {
        return;
    }
    let h = history();
    let data = DataDir::open(&dir).unwrap();
    let journal = data.open_journal(JournalConfig::new(data.journal_dir()), 1).unwrap();
    for (i, event) in h.events.iter().enumerate() {
        assert_eq!(journal.append_event(event).unwrap().wait().unwrap(), i as u64 + 1);
    }
    data.write_snapshot(h.snapshot_after as u64, &h.snapshot, 2).unwrap();
}

/// The shape of every type behind the data directory, as serde-reflection
/// traces it from the values of [`history`] (every event kind, a snapshot).
fn traced_schema(h: &History) -> String {
    let config = TracerConfig::default()
        .record_samples_for_newtype_structs(true)
        .record_samples_for_tuple_structs(true)
        .record_samples_for_structs(true);
    let mut tracer = Tracer::new(config);
    let mut samples = Samples::new();
    for event in &h.events {
        tracer.trace_value(&mut samples, event).unwrap();
    }
    tracer.trace_value(&mut samples, &h.snapshot).unwrap();
    tracer.trace_value(&mut samples, &h.end).unwrap();
    // Then every variant of the enums, including those no history shows,
    // deserialized from the recorded samples of the structs around them.
    // (`FillStatus` cannot be traced so, B256 has no default: the snapshot
    // holds a fill in each of its states instead.)
    tracer.trace_type::<Event>(&samples).unwrap();
    tracer.trace_type::<pat_engine::params::FreshnessCurve>(&samples).unwrap();
    let registry = tracer.registry().expect("the history shows every type's shape");
    serde_json::to_string_pretty(&registry).unwrap() + "\n"
}

#[test]
fn todays_types_have_the_shape_frozen_for_the_schema_version() {
    let traced = traced_schema(&history());
    let path = golden(SCHEMA_VERSION);
    if !path.exists() && std::env::var("PAT_WRITE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &traced).unwrap();
    }
    let frozen = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: see this file's header", path.display()));
    if shapes(&traced) != shapes(&frozen) {
        let out = std::env::temp_dir().join(format!("schema-v{SCHEMA_VERSION}.traced.json"));
        std::fs::write(&out, &traced).unwrap();
        panic!(
            "the encoding of a journaled or snapshotted type changed, but SCHEMA_VERSION is still \
             {SCHEMA_VERSION}: compare {} with {}. Bump SCHEMA_VERSION, freeze the old shapes in \
             pat_persistence::codec::v{SCHEMA_VERSION} with conversions, and commit the new golden \
             file and fixture (docs/decisions.md, \"Versioned encodings\")",
            out.display(),
            path.display()
        );
    }
}

/// The shapes of a registry's types with their names left out (postcard
/// writes no names): each container with every type it names inlined. A
/// renamed type (`ExchangeState` became `Snapshot`) keeps its shape; a new,
/// removed, retyped or moved field or variant does not.
fn shapes(registry_json: &str) -> BTreeSet<String> {
    fn inline(format: &serde_json::Value, registry: &serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
        use serde_json::Value;
        match format {
            Value::Object(o) if o.len() == 1 && o.contains_key("TYPENAME") => {
                let name = o["TYPENAME"].as_str().expect("a type name");
                inline(&registry[name], registry)
            }
            Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), inline(v, registry))).collect()),
            Value::Array(a) => Value::Array(a.iter().map(|v| inline(v, registry)).collect()),
            other => other.clone(),
        }
    }
    let registry: serde_json::Value = serde_json::from_str(registry_json).expect("a registry in JSON");
    let registry = registry.as_object().expect("a registry maps names to formats");
    registry.values().map(|format| inline(format, registry).to_string()).collect()
}

#[test]
fn a_history_replayed_from_its_events_is_the_state_the_engine_reached() {
    let h = history();
    let mut books = pat_engine::EngineState::new(testing::shared_config());
    for (i, event) in h.events.iter().enumerate() {
        let bytes = pat_persistence::encode_event(event);
        books.apply(decode_event(SCHEMA_VERSION, &bytes).unwrap()).unwrap();
        if i + 1 == h.snapshot_after {
            assert!(books.snapshot() == h.snapshot);
        }
    }
    assert!(books.snapshot() == h.end);
}

#[test]
fn a_record_of_a_newer_schema_stops_recovery_saying_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::open(tmp.path()).unwrap();
    let mut bytes = pat_persistence::frame::file_header(1).to_vec();
    let payload = pat_persistence::encode_event(&Event::PauseSet { paused: true });
    pat_persistence::frame::encode(&mut bytes, 1, SCHEMA_VERSION + 1, &payload);
    // A valid record after it: this is no torn tail, it is a newer build's data.
    pat_persistence::frame::encode(&mut bytes, 2, SCHEMA_VERSION, &payload);
    std::fs::write(data.journal_dir().join(pat_persistence::journal::file_name(1)), bytes).unwrap();
    let err = data.recover(&testing::shared_config()).err().expect("refused");
    let text = err.to_string();
    assert!(matches!(err, pat_persistence::RecoveryError::Decode { lsn: 1, .. }), "{text}");
    assert!(text.contains("newer than this build reads"), "{text}");
}
