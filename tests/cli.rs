//! The `pat-market` binary as an operator runs it: `check-config` verdicts and
//! exit codes, and `simulate` being deterministic for a seed.

use std::process::{Command, Output};

fn pat_market(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pat-market"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run pat-market")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_config_accepts_the_default() {
    let out = pat_market(&["check-config", "config/default.toml"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).starts_with("OK: config/default.toml (54 markets)"), "{}", text(&out.stdout));
}

#[test]
fn check_config_lists_every_error_and_fails() {
    let dir = std::env::temp_dir().join(format!("pat-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    let default = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml")).unwrap();
    std::fs::write(&bad, default.replace("max_bps = 1500", "max_bps = 4000").replace("tick_ms = 100", "tick_ms = 1"))
        .unwrap();
    let out = pat_market(&["check-config", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("spread.max_bps:"), "{stderr}");
    assert!(stderr.contains("quoting.tick_ms:"), "{stderr}");
    assert!(out.stdout.is_empty());
    let missing = pat_market(&["check-config", dir.join("none.toml").to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("cannot read"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn simulate_is_deterministic_for_a_seed_and_conserves_money() {
    let args = ["simulate", "--hours", "6", "--report-every-mins", "120", "--seed", "7", "--providers", "8"];
    let first = pat_market(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = pat_market(&args);
    assert_eq!(first.stdout, second.stdout, "same seed, same output");
    let out = text(&first.stdout);
    assert!(out.contains("conservation (debits = credits + revenue + refunds): holds"), "{out}");
    assert!(out.contains("== t = 6.0 h =="), "{out}");
    let fills: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("orders ").and_then(|r| r.split("fills ").nth(1)))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("a summary line with the fill count");
    assert!(fills > 10, "the simulation traded: {out}");
    let other =
        pat_market(&["simulate", "--hours", "6", "--report-every-mins", "120", "--seed", "8", "--providers", "8"]);
    assert_ne!(first.stdout, other.stdout, "another seed, another run");
}

#[test]
fn journal_inspect_prints_records_and_refuses_corruption() {
    use pat_engine::Event;
    let dir = std::env::temp_dir().join(format!("pat-inspect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let data = pat_persistence::DataDir::open(&dir).unwrap();
        let journal = data.open_journal(pat_persistence::JournalConfig::new(data.journal_dir()), 1).unwrap();
        for paused in [true, false] {
            journal.append_event(&Event::PauseSet { paused }).unwrap().wait().unwrap();
        }
    }
    let out = pat_market(&["journal", "inspect", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("snapshots: none"), "{stdout}");
    assert!(stdout.contains("pause_set paused = true") && stdout.contains("pause_set paused = false"), "{stdout}");
    assert!(stdout.contains("2 records"), "{stdout}");
    // Damage the first record: inspect names the file and offset and fails.
    let file = std::fs::read_dir(dir.join("journal")).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[pat_persistence::frame::FILE_HEADER_LEN + 10] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let out = pat_market(&["journal", "inspect", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("corrupt record at offset 13"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
