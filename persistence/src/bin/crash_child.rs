//! Test support for the crash and disk-full tests (not an operator tool):
//! recovers a data directory, then appends records from several threads and
//! prints `ack <id>` for each record only once the journal says it is durable
//! (`err <id> <reason>` when an append fails). The tests kill it at random
//! moments, or run it under a file-size limit, and check the journal against
//! what it printed.
//!
//! Usage: `pat-journal-crash-child DIR CONFIG ID_BASE WRITERS RECORDS [FSIZE_LIMIT_BYTES]`
//! where CONFIG is a postcard-encoded `EngineConfig` (the state to start from
//! when the directory has no snapshot).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use pat_engine::{EngineConfig, Event};
use pat_persistence::{DataDir, JournalConfig};

/// The provider address a record id stands for.
fn provider_of(id: u64) -> alloy_primitives::Address {
    alloy_primitives::Address::left_padding_from(&id.to_be_bytes())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).unwrap_or_else(|| panic!("usage: DIR CONFIG ID_BASE WRITERS RECORDS [FSIZE]"));
    let dir = std::path::PathBuf::from(arg(1));
    let config: EngineConfig =
        postcard::from_bytes(&std::fs::read(arg(2)).expect("read CONFIG")).expect("CONFIG is an EngineConfig");
    let id_base: u64 = arg(3).parse().expect("ID_BASE");
    let writers: usize = arg(4).parse().expect("WRITERS");
    let records: u64 = arg(5).parse().expect("RECORDS");
    let data = DataDir::open(&dir).expect("open data dir");
    let recovered = data.recover(&Arc::new(config)).expect("recover");
    println!("recovered next_lsn={} replayed={}", recovered.next_lsn, recovered.replayed);
    // The disk "fills up" once the engine runs: the limit applies after recovery.
    if let Some(limit) = args.get(6) {
        let limit: libc::rlim_t = limit.parse().expect("FSIZE_LIMIT");
        // SAFETY: plain libc calls on this process's own signal disposition and limits.
        unsafe {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rl), 0, "setrlimit");
        }
    }
    let cfg = JournalConfig { file_bytes_max: 256 * 1024, ..JournalConfig::new(data.journal_dir()) };
    let journal = Arc::new(data.open_journal(cfg, recovered.next_lsn).expect("open journal"));
    let next = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..writers)
        .map(|_| {
            let (journal, next) = (journal.clone(), next.clone());
            std::thread::spawn(move || {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= records {
                        break;
                    }
                    let id = id_base + n;
                    let result = journal
                        .append_event(&Event::SubmissionRefused { provider: provider_of(id) })
                        .and_then(|d| d.wait());
                    let mut out = std::io::stdout().lock();
                    match result {
                        Ok(_) => writeln!(out, "ack {id}"),
                        Err(e) => writeln!(out, "err {id} {e}"),
                    }
                    .and_then(|()| out.flush())
                    .expect("stdout");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer thread");
    }
    println!("done");
}
