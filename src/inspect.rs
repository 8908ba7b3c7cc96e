//! `pat-market journal inspect DIR`: what the journal and snapshots of a data
//! directory hold, for operators. Reads only; never cuts a torn tail.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use pat_engine::Event;
use pat_engine::money::format_pat;
use pat_persistence::{decode_event, reader, snapshot::SnapshotStore};

fn summary(event: &Event) -> String {
    match event {
        Event::SegmentListed(s) => {
            format!(
                "segment {} by {} in {}: {} units, quality {}",
                s.id.0,
                s.provider,
                s.market,
                s.units,
                s.quality.score()
            )
        }
        Event::SubmissionRefused { provider } => format!("provider {provider}"),
        Event::FillAccepted(f) => format!(
            "fill {} by {}: {} units at ask {} (paid {} PAT, spread {} PAT)",
            f.fill_id,
            f.consumer,
            f.qty,
            format_pat(f.ask),
            format_pat(f.ask_paid),
            format_pat(f.broker_spread)
        ),
        Event::FillsSubmitted { fill_ids, tx_hash } => format!("{} fills in tx {tx_hash}", fill_ids.len()),
        Event::FillSettled { fill_id, at_ms } => format!("fill {fill_id} at {at_ms} ms"),
        Event::FillFailed { fill_id, reason, .. } => format!("fill {fill_id}: {reason}"),
        Event::UnitsExpired { at_ms } => format!("at {at_ms} ms"),
        Event::MarketUnitsExpired { market, at_ms } => format!("market {} at {at_ms} ms", market.0),
        Event::ConfigChanged(_) => "new engine config".to_owned(),
        Event::PauseSet { paused } => format!("paused = {paused}"),
        Event::PhaseAdvanced { phase } => format!("phase {phase}"),
        Event::EscrowSynced(s) => format!(
            "to block {}: {} accounts, {} settlements seen, {} nonce cancellations",
            s.block,
            s.accounts.len(),
            s.settled.len(),
            s.cancelled.len()
        ),
        Event::ProvidersPaid(p) => format!("{} providers in {}", p.entries.len(), p.tx_hash),
    }
}

pub fn run(dir: &Path, verbose: bool) -> anyhow::Result<ExitCode> {
    let store = dir.join("snapshots.redb");
    match snapshot_lsns(&store) {
        _ if !store.exists() => println!("snapshots: none"),
        Ok((lsns, _)) if lsns.is_empty() => println!("snapshots: none"),
        Ok((lsns, false)) => println!("snapshots at LSN: {lsns:?}"),
        Ok((lsns, true)) => {
            println!("snapshots at LSN: {lsns:?} (the store was not closed cleanly: read from a repaired copy)")
        }
        Err(e) => println!("snapshots: unreadable ({e}); a running engine holds the store"),
    }
    let scan =
        reader::scan(&dir.join("journal")).with_context(|| format!("reading the journal in {}", dir.display()))?;
    for (first, path) in &scan.files {
        println!("file {} (first LSN {first})", path.display());
    }
    for r in &scan.records {
        let file = r.path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
        match decode_event(r.version, &r.payload) {
            Ok(event) if verbose => println!("{:>10} {file}@{} {} {event:?}", r.lsn, r.offset, event.kind()),
            Ok(event) => println!("{:>10} {file}@{} {} {}", r.lsn, r.offset, event.kind(), summary(&event)),
            Err(e) => println!("{:>10} {file}@{} UNDECODABLE ({} bytes): {e}", r.lsn, r.offset, r.payload.len()),
        }
    }
    println!("{} records", scan.records.len());
    if let Some(t) = &scan.torn {
        println!(
            "torn tail: {} bytes at {}@{} ({}); recovery will cut them",
            t.bytes,
            t.path.display(),
            t.offset,
            t.reason
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The snapshot LSNs of `store`, opened read-only. A store its engine did not
/// close (a crash) needs a repair, which writes: that is done on a copy, so
/// an inspection never changes the data directory. Says whether it was.
fn snapshot_lsns(store: &Path) -> Result<(Vec<u64>, bool), pat_persistence::snapshot::SnapshotError> {
    let direct = SnapshotStore::open_read_only(store).and_then(|s| s.lsns());
    let Err(first) = direct else { return direct.map(|lsns| (lsns, false)) };
    let copy = std::env::temp_dir().join(format!("pat-inspect-{}.redb", std::process::id()));
    if std::fs::copy(store, &copy).is_err() {
        return Err(first);
    }
    let repaired = SnapshotStore::open(&copy).and_then(|s| s.lsns()).map(|lsns| (lsns, true));
    let _ = std::fs::remove_file(&copy);
    repaired.or(Err(first))
}
