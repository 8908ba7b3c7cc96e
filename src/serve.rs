//! `pat-market serve`: the engine actor and the HTTP server in one process.
//! Reloads the config on SIGHUP and when the file changes; on SIGINT or
//! SIGTERM it stops taking requests, writes a snapshot and exits.
//!
//! With the broker's key in `PAT_BROKER_KEY`, a clearing actor settles fills
//! on the chain of the config (`chain.rpc_url`, `chain.marketplace`); the key
//! is never printed. Without it, settlement is off: fills stay accepted.
//!
//! Listed payloads are kept sealed in the payload store of `[storage]`
//! (`store/` in the data directory by default; see [`crate::storage`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Args as ClapArgs;
use pat_actors::clearing::ClearingSettings;
use pat_actors::clock::system_clock;
use pat_actors::escrow::EscrowSettings;
use pat_actors::listing::SweepSettings;
use pat_actors::services::{EscrowFollowing, Services, Settlement};
use pat_actors::{EngineHandle, EngineSettings};
use pat_server::ServerSettings;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Engine config (TOML); reloaded on SIGHUP and when it changes.
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
    /// Data directory: journal, snapshots, and by default the payload store and its key file.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Address of the HTTP server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

/// Environment variable holding the operator's bearer token for admin routes.
const TOKEN_VAR: &str = "PAT_OPERATOR_TOKEN";
/// Environment variable holding the broker's private key (hex) that signs `settleBatch`.
const BROKER_KEY_VAR: &str = "PAT_BROKER_KEY";

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cfg = load_config(&args.config).context("loading config")?;
    actix::System::new().block_on(serve(args, cfg))
}

/// Loads and validates a config file, and tells the operator about every
/// old key name it still uses.
pub fn load_config(path: &std::path::Path) -> anyhow::Result<pat_config::Config> {
    let cfg = pat_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    for w in &cfg.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(cfg)
}

/// Connects the settlement client when the broker's key is set.
async fn settlement(cfg: &pat_config::Config) -> anyhow::Result<Option<pat_chain::SettlementClient>> {
    let Some(key) = std::env::var(BROKER_KEY_VAR).ok().filter(|k| !k.is_empty()) else {
        eprintln!("{BROKER_KEY_VAR} is not set: settlement on chain is off, fills stay accepted");
        return Ok(None);
    };
    let broker: pat_engine::signing::LocalSigner =
        key.trim().parse().map_err(|_| anyhow::anyhow!("{BROKER_KEY_VAR} is not a hex private key"))?;
    let client =
        pat_chain::SettlementClient::connect(chain_config(cfg)?, broker).await.context("connecting to the chain")?;
    eprintln!("settling on chain {} as broker {}", cfg.engine.chain_id, client.broker());
    Ok(Some(client))
}

/// The chain of the config: node, domain and confirmation depth.
fn chain_config(cfg: &pat_config::Config) -> anyhow::Result<pat_chain::ChainConfig> {
    let url = alloy::transports::http::reqwest::Url::parse(&cfg.chain.rpc_url).context("chain.rpc_url")?;
    let mut chain = pat_chain::ChainConfig::new(url, cfg.engine.chain_id, cfg.engine.marketplace);
    chain.confirmations = cfg.chain.confirmations;
    Ok(chain)
}

/// The escrow follower of the config's chain, when orders must be covered by escrow.
fn escrow_following(cfg: &pat_config::Config) -> anyhow::Result<Option<EscrowFollowing>> {
    if !cfg.escrow.required {
        eprintln!("escrow.required is off: orders are taken whatever the consumer's escrow");
        return Ok(None);
    }
    let reader = pat_chain::EscrowReader::connect(&chain_config(cfg)?);
    Ok(Some(EscrowFollowing { reader, settings: EscrowSettings { every: Duration::from_millis(cfg.escrow.poll_ms) } }))
}

async fn serve(args: &Args, cfg: pat_config::Config) -> anyhow::Result<ExitCode> {
    let client = settlement(&cfg).await?;
    run_engine(cfg, &args.config, &args.data_dir, args.listen, client).await
}

/// Runs the engine, its clearing (with a client) and the HTTP server until
/// SIGTERM or Ctrl-C; reloads `config_path` on SIGHUP and when it changes.
pub async fn run_engine(
    cfg: pat_config::Config,
    config_path: &Path,
    data_dir: &Path,
    listen: SocketAddr,
    client: Option<pat_chain::SettlementClient>,
) -> anyhow::Result<ExitCode> {
    let domain = cfg.engine.domain();
    let feed = pat_server::feed::FeedSettings::from(&cfg.feed);
    let http = pat_server::HttpSettings::from(&cfg.http);
    let limits = Arc::new(pat_server::limits::RateLimits::new(cfg.limits));
    // The recorder first, so that the engine's first metrics are kept.
    pat_server::metrics_handle();
    let settlement = client.map(|client| Settlement { client, settings: ClearingSettings::default() });
    let mut engine_settings = EngineSettings::new(data_dir);
    engine_settings.payload_store = Some(Arc::new(crate::storage::open(&cfg.storage, data_dir).await?));
    engine_settings.sweep = SweepSettings {
        every: Duration::from_secs(cfg.storage.sweep_interval_secs),
        grace: Duration::from_secs(cfg.storage.orphan_grace_secs),
    };
    let required = cfg.escrow.required;
    engine_settings.escrow_required = required;
    engine_settings.escrow_stale_after = Some(Duration::from_millis(cfg.escrow.stale_after_ms));
    let escrow = escrow_following(&cfg)?;
    let services = Services::start(engine_settings, Arc::new(cfg.engine), system_clock(), escrow, settlement)
        .context("recovering the data directory")?;
    let (engine, startup) = (services.engine.clone(), &services.startup);
    if required {
        escrow_caught_up(&engine).await;
    }
    eprintln!(
        "recovered {}: snapshot at LSN {}, {} records replayed, {} torn bytes cut; next LSN {}",
        data_dir.display(),
        startup.snapshot_lsn,
        startup.replayed,
        startup.torn_tail_bytes,
        startup.next_lsn
    );
    let mut settings = ServerSettings::new(listen, config_path.to_owned());
    settings.admin_token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty());
    settings.feed = feed;
    settings.http = http;
    settings.limits = limits.clone();
    if settings.admin_token.is_none() {
        eprintln!("{TOKEN_VAR} is not set: admin routes refuse every call");
    }
    let (server, addr) =
        pat_server::start(settings, engine.clone(), domain).await.context("binding the HTTP server")?;
    eprintln!("serving on http://{addr}");
    let handle = server.handle();
    actix::spawn(watch_config((*engine).clone(), limits.clone(), config_path.to_owned()));
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let server = actix::spawn(server);
    loop {
        tokio::select! {
            _ = hangup.recv() => report_reload(pat_server::reload(&engine, &limits, config_path).await, "SIGHUP"),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("stopping: no new requests, then a snapshot");
    handle.stop(true).await;
    let _ = server.await;
    services.stop(true).await.context("final snapshot")?;
    Ok(ExitCode::SUCCESS)
}

/// How long a start waits for the escrow follower to reach the chain's head.
const ESCROW_CATCH_UP: Duration = Duration::from_secs(30);

/// Waits, at most [`ESCROW_CATCH_UP`], until the follower has read the chain to its
/// confirmed head: a restarted engine then takes funded consumers' orders from its first
/// request instead of answering `escrow_unavailable` until the follower caught up.
async fn escrow_caught_up(engine: &EngineHandle) {
    let deadline = std::time::Instant::now() + ESCROW_CATCH_UP;
    while std::time::Instant::now() < deadline {
        let status = engine.send(pat_actors::messages::ConsumerEscrow(alloy_primitives::Address::ZERO)).await;
        if let Ok(status) = status
            && status.current_at_ms.is_some()
        {
            return eprintln!("escrow synced from the chain to block {}", status.synced_block);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "escrow: not read to the chain's head within {ESCROW_CATCH_UP:?}; orders get escrow_unavailable until it is"
    );
}

fn report_reload(result: Result<(), pat_server::ReloadError>, why: &str) {
    match result {
        Ok(()) => eprintln!("config reloaded ({why})"),
        Err(pat_server::ReloadError::Invalid(errors)) => {
            eprintln!("config reload ({why}) refused, the running config stays:\n{errors}")
        }
        Err(e) => eprintln!("config reload ({why}) failed: {e}"),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Reloads when the file's modification time changes (polled every second).
/// A reload the engine could not take just then (restarting) is tried again
/// on the next poll; one it refused (an invalid file) waits for the next change.
async fn watch_config(engine: EngineHandle, limits: Arc<pat_server::limits::RateLimits>, path: PathBuf) {
    let mut seen = modified(&path);
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let now = modified(&path);
        if now != seen {
            let result = pat_server::reload(&engine, &limits, &path).await;
            if !result.as_ref().is_err_and(pat_server::ReloadError::is_transient) {
                seen = now;
            }
            report_reload(result, "file changed");
        }
    }
}
