//! `pat-market devnet`: the whole market on this machine in one command. It
//! installs the project's toolchain if missing, starts anvil with its state
//! kept in the data directory, deploys the contracts once (addresses kept
//! there too), funds demo consumers' escrow, and runs the engine, clearing and
//! HTTP server with the broker's dev key. A restart continues where it stopped.
//!
//! Data directory: `anvil-state.json` (the chain), `deployment.json`,
//! `devnet.toml` (the config in use: edit it to reload live), `engine/`
//! (journal and snapshots).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use alloy_primitives::{Address, U256};
use anyhow::Context;
use clap::Args as ClapArgs;
use pat_chain::anvil::AnvilNode;
use pat_chain::devnet::Devnet;
use pat_chain::{DeployParams, Deployment, SettlementClient, deploy, wallet_provider};

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Where the chain state, deployment and engine data live.
    #[arg(long, default_value = "data")]
    data_dir: PathBuf,
    /// The config the devnet starts from (chain settings are replaced by the local chain's).
    #[arg(long, default_value = "config/default.toml")]
    config: PathBuf,
    /// Address of the HTTP server.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Also run synthetic browser agents (segment listings) and consumers
    /// (orders, escrow top-ups) against the engine over HTTP.
    #[arg(long)]
    simulate: bool,
}

/// Anvil's dev accounts 3.. are the demo consumers.
const DEMO_CONSUMERS: usize = 5;
/// PAT each demo consumer deposits in escrow.
const DEMO_ESCROW: u128 = 10_000 * 10u128.pow(18);
/// The whole PAT supply, minted to the owner (dev account 0).
const SUPPLY: u128 = 1_000_000_000 * 10u128.pow(18);

fn save_deployment(path: &Path, d: &Deployment) -> anyhow::Result<()> {
    let json = serde_json::json!({"pat": d.pat, "implementation": d.implementation, "marketplace": d.marketplace});
    std::fs::write(path, serde_json::to_string_pretty(&json)?).context("writing deployment.json")
}

fn load_deployment(path: &Path) -> anyhow::Result<Option<Deployment>> {
    let Ok(text) = std::fs::read_to_string(path) else { return Ok(None) };
    let v: serde_json::Value = serde_json::from_str(&text).context("deployment.json")?;
    let addr = |k: &str| -> anyhow::Result<Address> {
        v[k].as_str().and_then(|s| s.parse().ok()).with_context(|| format!("deployment.json: {k}"))
    };
    Ok(Some(Deployment {
        pat: addr("pat")?,
        implementation: addr("implementation")?,
        marketplace: addr("marketplace")?,
    }))
}

/// The config text with its chain section pointed at the local chain.
fn devnet_config(base: &Path, rpc_url: &str, chain_id: u64, marketplace: Address) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(base).with_context(|| format!("reading {}", base.display()))?;
    let mut doc: toml::Table = text.parse().context("parsing the base config")?;
    let chain = doc.get_mut("chain").and_then(|c| c.as_table_mut()).context("the base config has no [chain]")?;
    chain.insert("rpc_url".into(), rpc_url.into());
    chain.insert("chain_id".into(), toml::Value::Integer(chain_id as i64));
    chain.insert("marketplace".into(), marketplace.to_string().into());
    Ok(format!(
        "# Written by `pat-market devnet` from {} at its start; edit to reload live.\n{}",
        base.display(),
        toml::to_string(&doc)?
    ))
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    actix::System::new().block_on(devnet(args))
}

async fn devnet(args: &Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.data_dir).context("creating the data directory")?;
    let data = std::fs::canonicalize(&args.data_dir)?;
    let state = data.join("anvil-state.json");
    let state_arg = state.to_str().context("data directory path is not UTF-8")?;
    // Anvil loads the state file if present and writes it back every second.
    let node = AnvilNode::start_with_args(["--state", state_arg, "--state-interval", "1"])
        .context("starting anvil (scripts/toolchain.sh installs it)")?;
    let owner = node.signer(0);
    let owner_provider = wallet_provider(node.url(), owner.clone());
    let deployment_path = data.join("deployment.json");
    let (deployment, fresh) = match load_deployment(&deployment_path)? {
        Some(d) => (d, false),
        None => {
            let params = DeployParams {
                token_holder: owner.address(),
                token_supply: U256::from(SUPPLY),
                owner: owner.address(),
                broker: owner.address(),
                broker_wallet: node.signer(1).address(),
                users_pool_wallet: node.signer(2).address(),
                broker_margin_bps: 5_000,
            };
            let d = deploy(&owner_provider, &params).await.context("deploying the contracts")?;
            save_deployment(&deployment_path, &d)?;
            (d, true)
        }
    };
    // Written at the first start from --config; later starts keep its edits but point its
    // chain at this start's anvil (a new port each time: the follower reads chain.rpc_url).
    let config_path = data.join("devnet.toml");
    let base = if config_path.exists() { config_path.clone() } else { args.config.clone() };
    let text = devnet_config(&base, node.url().as_str(), node.chain_id(), deployment.marketplace)?;
    std::fs::write(&config_path, text).context("writing devnet.toml")?;
    let cfg = crate::serve::load_config(&config_path)?;
    let broker_wallet = node.signer(1).address();
    let consumers: Vec<_> = (3..3 + DEMO_CONSUMERS).map(|i| node.signer(i)).collect();
    let mut chain = pat_chain::ChainConfig::new(node.url(), node.chain_id(), deployment.marketplace);
    chain.poll_interval = std::time::Duration::from_millis(50);
    let client = SettlementClient::connect(chain, owner.clone())
        .await
        .context("the marketplace is not on the chain: remove the data directory to start over")?;
    let devnet = Devnet { node, deployment, owner, broker_wallet, owner_provider };
    if fresh {
        for c in &consumers {
            devnet.fund_consumer(c, U256::from(DEMO_ESCROW)).await.context("funding a demo consumer")?;
        }
    }
    eprintln!("chain {} at {} (state in {})", devnet.node.chain_id(), devnet.node.url(), state.display());
    eprintln!("marketplace {}, PAT {}", devnet.deployment.marketplace, devnet.deployment.pat);
    for c in &consumers {
        eprintln!(
            "demo consumer {} (anvil dev key), {} PAT in escrow at first start",
            c.address(),
            DEMO_ESCROW / 10u128.pow(18)
        );
    }
    let devnet = std::sync::Arc::new(devnet);
    let agents = args.simulate.then(|| {
        eprintln!("simulating browser agents and consumers against http://{}", args.listen);
        let base = format!("http://{}", args.listen);
        actix::spawn(crate::agents::simulate(base, cfg.engine.clone(), consumers, devnet.clone()))
    });
    // `devnet` (anvil) lives until the engine stops.
    let code = crate::serve::run_engine(cfg, &config_path, &data.join("engine"), args.listen, Some(client)).await;
    if let Some(agents) = agents {
        agents.abort();
        let _ = agents.await;
    }
    // Anvil writes its state file every second and is killed on drop: let it
    // write the last settlements first.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    drop(devnet);
    code
}
