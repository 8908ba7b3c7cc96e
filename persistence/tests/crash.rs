//! Crash tests with a real child process (`pat-journal-crash-child`): SIGKILL
//! at random moments under load, and a disk that fills up (RLIMIT_FSIZE).
//! Each checks the journal on disk against what the child acknowledged.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use alloy_primitives::Address;
use pat_engine::testing;
use pat_persistence::DataDir;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const CHILD: &str = env!("CARGO_BIN_EXE_pat-journal-crash-child");

fn write_config(dir: &Path) -> PathBuf {
    let path = dir.join("engine-config.postcard");
    std::fs::write(&path, postcard::to_stdvec(&testing::config()).unwrap()).unwrap();
    path
}

fn id_of(provider: &Address) -> u64 {
    u64::from_be_bytes(provider.0[12..].try_into().unwrap())
}

/// Runs the child; kills it after `kill_after` if given. Returns its stdout lines.
fn run_child(
    data: &Path,
    config: &Path,
    id_base: u64,
    writers: usize,
    records: u64,
    fsize: Option<u64>,
    kill_after: Option<Duration>,
) -> Vec<String> {
    let mut cmd = Command::new(CHILD);
    cmd.arg(data).arg(config).arg(id_base.to_string()).arg(writers.to_string()).arg(records.to_string());
    if let Some(limit) = fsize {
        cmd.arg(limit.to_string());
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("spawn the crash child");
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || BufReader::new(stdout).lines().map_while(Result::ok).collect::<Vec<_>>());
    if let Some(after) = kill_after {
        std::thread::sleep(after);
        child.kill().expect("SIGKILL the child");
    }
    let status = child.wait().unwrap();
    if kill_after.is_none() {
        assert!(status.success(), "child failed: {status}");
    }
    reader.join().unwrap()
}

/// Ids whose record is in the recovered state, each checked to be there once.
fn recovered_ids(data: &Path) -> BTreeSet<u64> {
    let dir = DataDir::open(data).unwrap();
    let recovered = dir.recover(&testing::shared_config()).unwrap();
    let state = recovered.books.snapshot();
    state
        .providers
        .iter()
        .map(|(provider, record)| {
            assert_eq!((record.accepted, record.rejected), (0, 1), "record {} applied exactly once", id_of(provider));
            id_of(provider)
        })
        .collect()
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_record() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let data = tmp.path().join("data");
    let writers = 16;
    let mut rng = ChaCha8Rng::seed_from_u64(20261201);
    let mut acked = BTreeSet::new();
    for round in 0..20u64 {
        let base = round * 1_000_000_000;
        let kill_after = Duration::from_millis(rng.random_range(30..300));
        let lines = run_child(&data, &config, base, writers, 10_000_000, None, Some(kill_after));
        let mut this_round = BTreeSet::new();
        for line in &lines {
            if let Some(id) = line.strip_prefix("ack ") {
                let id: u64 = id.parse().unwrap();
                assert!(this_round.insert(id), "acknowledged twice: {id}");
            } else {
                assert!(line.starts_with("recovered "), "unexpected child output: {line}");
            }
        }
        let present = recovered_ids(&data);
        let missing: Vec<_> = this_round.iter().chain(&acked).filter(|id| !present.contains(id)).collect();
        assert!(missing.is_empty(), "round {round}: acknowledged but lost: {missing:?}");
        // Durable but unacknowledged records can only be the last in flight: at most one per writer.
        let extra = present.iter().filter(|id| **id >= base && !this_round.contains(id)).count();
        assert!(extra <= writers, "round {round}: {extra} records present that were never in flight");
        // The model: every record ever acknowledged, plus this round's durable in-flight ones.
        acked.extend(this_round);
        acked.extend(present.iter().copied().filter(|id| *id >= base));
        assert_eq!(present, acked, "round {round}: recovered state = model of every durable record");
    }
    assert!(acked.len() > 1_000, "the child made progress: {} records", acked.len());
}

#[test]
fn a_full_disk_fails_appends_cleanly_and_reports_nothing_durable_that_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let config = write_config(tmp.path());
    let data = tmp.path().join("data");
    // 48 KiB per file: about a thousand records fit, the rest must fail.
    let lines = run_child(&data, &config, 0, 4, 3_000, Some(48 * 1024), None);
    let mut acked = BTreeSet::new();
    let mut failed: HashMap<u64, String> = HashMap::new();
    for line in &lines {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next().and_then(|id| id.parse::<u64>().ok())) {
            (Some("ack"), Some(id)) => {
                acked.insert(id);
            }
            (Some("err"), Some(id)) => {
                failed.insert(id, parts.next().unwrap_or_default().to_owned());
            }
            _ => assert!(line.starts_with("recovered") || line == "done", "unexpected: {line}"),
        }
    }
    assert!(acked.len() > 100 && failed.len() > 100, "{} acked, {} failed", acked.len(), failed.len());
    // The first failed group reports the write; everything after it finds the journal poisoned.
    assert!(failed.values().any(|e| e.contains("journal write failed")), "{:?}", failed.values().next());
    let refused = |e: &String| e.contains("journal write failed") || e.contains("poisoned");
    assert!(failed.values().all(refused), "{:?}", failed.values().find(|e| !refused(e)));
    let present = recovered_ids(&data);
    assert_eq!(present, acked, "exactly the acknowledged records are in the journal");
    // A fresh journal on the recovered directory takes appends once space is back.
    let more = run_child(&data, &config, 1_000_000, 2, 50, None, None);
    assert_eq!(more.iter().filter(|l| l.starts_with("ack ")).count(), 50);
    assert_eq!(recovered_ids(&data).len(), acked.len() + 50);
}
