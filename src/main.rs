//! `pat-market`: the operator's binary. Only CLI and glue; the logic lives in
//! the workspace crates (`pat-engine`, `pat-config`, `pat-storage`, ...).

mod agents;
mod client;
mod devnet;
mod inspect;
mod load;
mod serve;
mod simulate;
mod storage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "pat-market", version, about = "PAT segment market engine")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file: prints OK, or every error with its key, and exits non-zero.
    CheckConfig {
        /// The TOML file to check.
        file: PathBuf,
    },
    /// Run the engine over simulated time with synthetic providers and consumers,
    /// printing how quotes, spreads, supply and exposure evolve per market.
    Simulate(simulate::Args),
    /// Run the engine and its HTTP API (REST, admin, /metrics) on a data directory.
    Serve(serve::Args),
    /// The local market in one command: anvil, contracts, demo accounts, engine, settlement, HTTP.
    Devnet(devnet::Args),
    /// Send signed orders to a running engine at a target rate; report accepted/s and latency.
    Load(load::Args),
    /// Buy units of a market as a consumer: sign at the quoted ask, post, wait for settlement, print the fill.
    Buy(client::BuyArgs),
    /// Download what a settled fill bought into a directory, then verify it.
    Download(client::DownloadArgs),
    /// Check a downloaded fill: each payload hashes to its signed listing, signed by its provider.
    Verify {
        /// The directory `download` unpacked into.
        dir: PathBuf,
    },
    /// Operator tools for the payload store: `storage rotate-key`.
    Storage(storage::Args),
    /// Operator tools for the durable journal.
    Journal {
        #[command(subcommand)]
        command: JournalCommand,
    },
}

#[derive(Subcommand)]
enum JournalCommand {
    /// Print every record of a data directory's journal, its snapshots, and any torn tail.
    Inspect {
        /// The engine's data directory (holding `journal/` and `snapshots.redb`).
        dir: PathBuf,
        /// Print each event in full.
        #[arg(long)]
        verbose: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Simulate(args) => simulate::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Devnet(args) => devnet::run(&args),
        Command::Load(args) => load::run(&args),
        Command::Storage(args) => storage::run(&args),
        Command::Buy(args) => client::buy(&args),
        Command::Download(args) => client::download(&args),
        Command::Verify { dir } => client::verify_dir(&dir),
        Command::Journal { command: JournalCommand::Inspect { dir, verbose } } => inspect::run(&dir, verbose),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    match pat_config::Config::load(file) {
        Ok(cfg) => {
            for w in &cfg.warnings {
                eprintln!("warning: {}: {w}", file.display());
            }
            println!("OK: {} ({} markets)", file.display(), cfg.engine.market_keys().len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{}: {e}", file.display());
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
