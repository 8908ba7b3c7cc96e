//! `pat-market serve`: the engine actor and the HTTP server in one process.
//! Reloads the config on SIGHUP and when the file changes; on SIGINT or
//! SIGTERM it stops taking requests, writes a snapshot and exits.
//!
//! Settlement on chain (the clearing actor) is not wired in yet: fills stay
//! accepted and count in exposure until it is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix::Addr;
use anyhow::Context;
use clap::Args as ClapArgs;
use pat_actors::engine::{Shutdown, system_clock};
use pat_actors::{EngineActor, EngineSettings};
use pat_server::ServerSettings;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Engine config (TOML); reloaded on SIGHUP and when it changes.
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
    /// Data directory: journal and snapshots.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// Address of the HTTP server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
}

/// Environment variable holding the operator's bearer token for admin routes.
const TOKEN_VAR: &str = "PAT_OPERATOR_TOKEN";

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let cfg = pat_config::Config::load(&args.config).map_err(|e| anyhow::anyhow!("{e}")).context("loading config")?;
    actix::System::new().block_on(serve(args, cfg))
}

async fn serve(args: &Args, cfg: pat_config::Config) -> anyhow::Result<ExitCode> {
    let domain = cfg.engine.domain();
    let (engine, startup) =
        EngineActor::start(EngineSettings::new(&args.data_dir), Arc::new(cfg.engine), system_clock())
            .context("recovering the data directory")?;
    eprintln!(
        "recovered {}: snapshot at LSN {}, {} records replayed, {} torn bytes cut; next LSN {}",
        args.data_dir.display(),
        startup.snapshot_lsn,
        startup.replayed,
        startup.torn_tail_bytes,
        startup.next_lsn
    );
    let mut settings = ServerSettings::new(args.listen, args.config.clone());
    settings.admin_token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.is_empty());
    if settings.admin_token.is_none() {
        eprintln!("{TOKEN_VAR} is not set: admin routes refuse every call");
    }
    let (server, addr) = pat_server::start(settings, engine.clone(), domain).context("binding the HTTP server")?;
    eprintln!("serving on http://{addr}");
    let handle = server.handle();
    actix::spawn(watch_config(engine.clone(), args.config.clone()));
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let server = actix::spawn(server);
    loop {
        tokio::select! {
            _ = hangup.recv() => report_reload(pat_server::reload(&engine, &args.config).await, "SIGHUP"),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!("stopping: no new requests, then a snapshot");
    handle.stop(true).await;
    let _ = server.await;
    engine.send(Shutdown { snapshot: true }).await?.context("final snapshot")?;
    Ok(ExitCode::SUCCESS)
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
async fn watch_config(engine: Addr<EngineActor>, path: PathBuf) {
    let mut seen = modified(&path);
    let mut every = tokio::time::interval(Duration::from_secs(1));
    loop {
        every.tick().await;
        let now = modified(&path);
        if now != seen {
            seen = now;
            report_reload(pat_server::reload(&engine, &path).await, "file changed");
        }
    }
}
