//! Recovery against damaged and partial data directories: a torn tail cut at
//! every byte, a flipped bit in the middle, a missing snapshot, a snapshot
//! newer than the journal; and a property test that any history, snapshotted
//! at any point and recovered, gives the state of applying it without a crash.

mod common;

use std::path::Path;

use alloy_primitives::{Address, B256};
use common::copy_dir;
use pat_engine::testing::{self, T0, key, signed_order, signed_segment};
use pat_engine::{Event, Exchange};
use pat_persistence::reader::{self, ReadError};
use pat_persistence::{DataDir, JournalConfig, RecoveryError};
use proptest::prelude::*;

fn refused(i: u64) -> Event {
    Event::SubmissionRefused { provider: Address::left_padding_from(&i.to_be_bytes()) }
}

/// Appends `events` to the journal of `data`, starting at `first_lsn`, in
/// groups of at most `group` records (files roll between groups).
fn journal(data: &DataDir, events: &[Event], first_lsn: u64, file_bytes_max: u64, group: usize) {
    let cfg = JournalConfig { file_bytes_max, ..JournalConfig::new(data.journal_dir()) };
    let j = data.open_journal(cfg, first_lsn).unwrap();
    for (c, chunk) in events.chunks(group).enumerate() {
        let pending: Vec<_> = chunk.iter().map(|e| j.append_event(e).unwrap()).collect();
        for (i, d) in pending.into_iter().enumerate() {
            assert_eq!(d.wait().unwrap(), first_lsn + (c * group + i) as u64);
        }
    }
}

fn recover(root: &Path) -> Result<pat_persistence::Recovered, RecoveryError> {
    DataDir::open(root).unwrap().recover(&testing::shared_config())
}

#[test]
fn a_torn_tail_is_cut_at_every_byte_and_the_journal_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("base");
    let events: Vec<Event> = (1..=10).map(refused).collect();
    journal(&DataDir::open(&root).unwrap(), &events, 1, 1 << 20, 64);
    let scan = reader::scan(&root.join("journal")).unwrap();
    let last = scan.records.last().unwrap().clone();
    let file_len = std::fs::metadata(&last.path).unwrap().len();
    for cut in last.offset..file_len {
        let case = tmp.path().join(format!("cut-{cut}"));
        copy_dir(&root, &case);
        let path = case.join("journal").join(last.path.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        let rec = recover(&case).unwrap();
        assert_eq!(rec.replayed, 9, "cut at {cut}");
        assert_eq!(rec.next_lsn, 10);
        assert_eq!(rec.torn.as_ref().map(|t| t.offset), (cut > last.offset).then_some(last.offset));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), last.offset, "the torn bytes are gone");
        // The journal goes on from there, and everything reads back.
        journal(&DataDir::open(&case).unwrap(), &[refused(11)], rec.next_lsn, 1 << 20, 64);
        let again = recover(&case).unwrap();
        assert_eq!((again.replayed, again.torn), (10, None));
        std::fs::remove_dir_all(&case).unwrap();
    }
}

#[test]
fn a_flipped_bit_before_the_tail_stops_recovery_naming_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (1..=10).map(refused).collect();
    journal(&DataDir::open(tmp.path()).unwrap(), &events, 1, 1 << 20, 64);
    let scan = reader::scan(&tmp.path().join("journal")).unwrap();
    let third = &scan.records[2];
    let mut bytes = std::fs::read(&third.path).unwrap();
    bytes[third.offset as usize + 20] ^= 0x04;
    std::fs::write(&third.path, bytes).unwrap();
    match recover(tmp.path()) {
        Err(RecoveryError::Read(ReadError::Corrupt { path, offset, reason })) => {
            assert_eq!((path, offset), (third.path.clone(), third.offset));
            assert!(reason.contains("CRC32C"), "{reason}");
        }
        other => panic!("expected a corruption error, got {:?}", other.map(|r| r.replayed)),
    }
    let message = recover(tmp.path()).err().unwrap().to_string();
    assert!(message.contains(&format!("offset {}", third.offset)) && message.contains("refusing to skip"), "{message}");
}

#[test]
fn corruption_in_an_older_file_is_never_taken_for_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let events: Vec<Event> = (1..=40).map(refused).collect();
    // Small files: the journal rolls several times.
    journal(&DataDir::open(tmp.path()).unwrap(), &events, 1, 300, 4);
    let scan = reader::scan(&tmp.path().join("journal")).unwrap();
    assert!(scan.files.len() > 3, "{} files", scan.files.len());
    let (_, first_file) = &scan.files[0];
    let len = std::fs::metadata(first_file).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(first_file).unwrap().set_len(len - 3).unwrap();
    assert!(matches!(recover(tmp.path()), Err(RecoveryError::Read(ReadError::Corrupt { .. }))));
}

#[test]
fn a_missing_snapshot_is_a_full_replay_or_a_clear_gap() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let events: Vec<Event> = (1..=40).map(refused).collect();
    {
        let data = DataDir::open(root).unwrap();
        journal(&data, &events, 1, 300, 4);
    }
    // No snapshot ever: the whole journal replays.
    assert_eq!(recover(root).unwrap().replayed, 40);
    // A snapshot at LSN 30 lets the files before it go...
    {
        let data = DataDir::open(root).unwrap();
        let mut ex = Exchange::new(testing::shared_config());
        for e in &events[..30] {
            ex.state.apply(e.clone()).unwrap();
        }
        let report = data.write_snapshot(30, &ex.state.snapshot(), 1).unwrap();
        assert!(!report.removed_files.is_empty());
    }
    let rec = recover(root).unwrap();
    assert_eq!((rec.snapshot_lsn, rec.replayed, rec.next_lsn), (30, 10, 41));
    assert_eq!(rec.books.snapshot().providers.len(), 40);
    // ...so that without the snapshot the journal has a hole, and says so.
    std::fs::remove_file(root.join("snapshots.redb")).unwrap();
    match recover(root) {
        Err(RecoveryError::Gap { expected: 1, found, snapshot_lsn: 0, .. }) => assert!(found > 1),
        other => panic!("expected a gap, got {:?}", other.map(|r| r.replayed)),
    }
}

#[test]
fn a_snapshot_newer_than_the_journal_wins_and_the_journal_continues_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let events: Vec<Event> = (1..=12).map(refused).collect();
    let data = DataDir::open(root).unwrap();
    journal(&data, &events[..5], 1, 1 << 20, 64);
    let mut ex = Exchange::new(testing::shared_config());
    for e in &events[..8] {
        ex.state.apply(e.clone()).unwrap();
    }
    data.write_snapshot(8, &ex.state.snapshot(), 2).unwrap();
    drop(data);
    let rec = recover(root).unwrap();
    assert_eq!((rec.snapshot_lsn, rec.replayed, rec.next_lsn), (8, 0, 9));
    assert_eq!(rec.books.snapshot(), ex.state.snapshot());
    journal(&DataDir::open(root).unwrap(), &events[8..], rec.next_lsn, 1 << 20, 64);
    let rec = recover(root).unwrap();
    assert_eq!((rec.replayed, rec.next_lsn), (4, 13));
    assert_eq!(rec.books.snapshot().providers.len(), 12);
}

#[test]
fn appends_wait_for_durability_and_refuse_when_the_queue_is_full() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::open(tmp.path()).unwrap();
    let cfg = JournalConfig { queue_records_max: 4, group_records_max: 2, ..JournalConfig::new(data.journal_dir()) };
    let j = data.open_journal(cfg, 1).unwrap();
    let mut accepted = Vec::new();
    let mut busy = 0;
    for i in 0..10_000 {
        match j.append_event(&refused(i)) {
            Ok(d) => accepted.push(d),
            Err(pat_persistence::JournalError::Busy(4)) => busy += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(busy > 0, "a bounded queue pushes back");
    let lsns: Vec<u64> = accepted.into_iter().map(|d| d.wait().unwrap()).collect();
    assert_eq!(lsns, (1..=lsns.len() as u64).collect::<Vec<_>>());
    let stats = j.stats();
    assert_eq!(stats.records.load(std::sync::atomic::Ordering::Relaxed), lsns.len() as u64);
    assert!(stats.groups.load(std::sync::atomic::Ordering::Relaxed) >= lsns.len() as u64 / 2, "groups of at most 2");
    assert_eq!(stats.durable_lsn.load(std::sync::atomic::Ordering::Acquire), lsns.len() as u64);
    let big = vec![0u8; pat_persistence::frame::PAYLOAD_MAX + 1];
    assert!(matches!(j.append(big), Err(pat_persistence::JournalError::TooLarge(_))));
}

#[test]
fn a_new_file_that_cannot_be_started_poisons_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let data = DataDir::open(tmp.path()).unwrap();
    // Every group fills its file, so each append starts a new one.
    let cfg = JournalConfig { file_bytes_max: 1, ..JournalConfig::new(data.journal_dir()) };
    let j = data.open_journal(cfg, 1).unwrap();
    assert_eq!(j.append_event(&refused(1)).unwrap().wait().unwrap(), 1);
    // A directory where the next file goes: creating it fails.
    let blocker = data.journal_dir().join(pat_persistence::journal::file_name(2));
    std::fs::create_dir(&blocker).unwrap();
    let failed = j.append_event(&refused(2)).unwrap().wait();
    assert!(matches!(failed, Err(pat_persistence::JournalError::Io { .. })), "{failed:?}");
    // The failed group's LSN is spent: nothing may be written after it, even
    // once the file could be created.
    std::fs::remove_dir(&blocker).unwrap();
    let later = j.append_event(&refused(3)).and_then(|d| d.wait());
    assert!(matches!(later, Err(pat_persistence::JournalError::Poisoned(_))), "{later:?}");
    assert!(j.is_poisoned());
    assert_eq!(j.stats().durable_lsn.load(std::sync::atomic::Ordering::Acquire), 1);
}

/// A step of a random engine history.
#[derive(Debug, Clone)]
enum Step {
    Submit { provider: u8, market: u32, units: u32 },
    Order { consumer: u8, market: u32, qty: u64 },
    Settle(usize),
    Fail(usize),
    Expire { advance_hours: u64 },
    Pause(bool),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0u8..4, 0u32..3, 1u32..20).prop_map(|(provider, market, units)| Step::Submit { provider, market, units }),
        4 => (0u8..3, 0u32..3, 1u64..6).prop_map(|(consumer, market, qty)| Step::Order { consumer, market, qty }),
        2 => any::<usize>().prop_map(Step::Settle),
        1 => any::<usize>().prop_map(Step::Fail),
        1 => (1u64..48).prop_map(|advance_hours| Step::Expire { advance_hours }),
        1 => any::<bool>().prop_map(Step::Pause),
    ]
}

/// Runs a history through an exchange; returns the events a runtime journals.
fn history(steps: &[Step]) -> (Exchange, Vec<Event>) {
    let cfg = testing::shared_config();
    let keys = cfg.market_keys();
    let mut ex = Exchange::new(cfg);
    let (mut now, mut events, mut open, mut nonce) = (T0 * 1000, Vec::new(), Vec::<B256>::new(), 0);
    for (i, s) in steps.iter().enumerate() {
        match *s {
            Step::Submit { provider, market, units } => {
                let k = &keys[market as usize];
                let payload = testing::payload_salted(2, i as u64);
                let now_s = now / 1000;
                let signed = signed_segment(
                    &key(30 + provider),
                    k.segment_type.as_str(),
                    &k.window.to_string(),
                    k.band.lo(),
                    now_s - 60,
                    now_s,
                    units,
                    &payload,
                );
                match ex.state.submit_segment(&signed, now) {
                    Ok((_, event)) => events.push(event),
                    Err(refusal) => events.extend(refusal.event()),
                }
            }
            Step::Order { consumer, market, qty } => {
                ex.tick(now, &mut Vec::new());
                nonce += 1;
                let signed =
                    signed_order(&key(60 + consumer), &keys[market as usize], qty, u128::MAX, nonce, now / 1000 + 60);
                if let Ok((fill, event)) = ex.submit_order(signed, now) {
                    open.push(fill.fill_id);
                    events.push(event);
                }
            }
            Step::Settle(pick) if !open.is_empty() => {
                let id = open.swap_remove(pick % open.len());
                let tx_hash = B256::repeat_byte(pick as u8);
                events.push(ex.state.record_submission([id], tx_hash));
                events.push(ex.state.settle(&id, now).unwrap());
            }
            Step::Fail(pick) if !open.is_empty() => {
                let id = open.swap_remove(pick % open.len());
                events.push(ex.state.fail(&id, "escrow", now).unwrap());
            }
            Step::Settle(_) | Step::Fail(_) => {}
            Step::Expire { advance_hours } => {
                now += advance_hours * 3_600_000;
                events.extend(ex.state.expire(now));
            }
            Step::Pause(paused) => {
                events.push(ex.state.set_paused(paused));
            }
        }
    }
    (ex, events)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Any history, journaled, snapshotted after any prefix and recovered,
    /// rebuilds the state of running it without a crash.
    #[test]
    fn recovery_rebuilds_the_uncrashed_state(steps in prop::collection::vec(step(), 1..60), cut in any::<prop::sample::Index>()) {
        let (ex, events) = history(&steps);
        let tmp = tempfile::tempdir().unwrap();
        let data = DataDir::open(tmp.path()).unwrap();
        journal(&data, &events, 1, 4096, 16);
        let at = cut.index(events.len() + 1);
        let mut prefix = Exchange::new(testing::shared_config());
        for e in &events[..at] {
            prefix.state.apply(e.clone()).unwrap();
        }
        if at > 0 {
            data.write_snapshot(at as u64, &prefix.state.snapshot(), 1).unwrap();
        }
        let rec = data.recover(&testing::shared_config()).unwrap();
        prop_assert_eq!(rec.replayed as usize, events.len() - at);
        prop_assert_eq!(rec.next_lsn as usize, events.len() + 1);
        prop_assert_eq!(rec.books.snapshot(), ex.state.snapshot());
        rec.books.check_invariants();
    }
}
