//! A local anvil node for tests and benchmarks, started from the project's own toolchain
//! (`contracts/node_modules`, installed by `scripts/toolchain.sh`) on a free loopback port, and
//! killed when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use alloy::node_bindings::{Anvil, AnvilInstance, NodeError};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use thiserror::Error;

/// Longest wait for anvil to report that it listens, milliseconds.
pub const STARTUP_TIMEOUT_MS: u64 = 20_000;
/// Where `scripts/toolchain.sh` puts anvil, relative to the workspace root.
pub const TOOLCHAIN_ANVIL: &str = "contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil";

#[derive(Debug, Error)]
pub enum AnvilError {
    #[error("anvil not found at {0} and scripts/toolchain.sh did not install it")]
    Missing(PathBuf),
    #[error("running scripts/toolchain.sh: {0}")]
    Toolchain(String),
    #[error("starting anvil: {0}")]
    Start(#[from] NodeError),
}

/// A running anvil, killed on drop.
#[derive(Debug)]
pub struct AnvilNode {
    instance: AnvilInstance,
}

impl AnvilNode {
    /// Starts anvil with its defaults (chain id 31337, automine, ten funded dev accounts).
    pub fn start() -> Result<Self, AnvilError> {
        Self::start_with_args(std::iter::empty::<&str>())
    }

    /// Starts anvil with extra command-line arguments (e.g. `["--chain-id", "5"]`).
    pub fn start_with_args<I, S>(args: I) -> Result<Self, AnvilError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let instance =
            Anvil::at(binary()?).host("127.0.0.1").port(0u16).args(args).timeout(STARTUP_TIMEOUT_MS).try_spawn()?;
        Ok(Self { instance })
    }

    /// The JSON-RPC endpoint, on 127.0.0.1.
    pub fn url(&self) -> Url {
        self.instance.endpoint_url()
    }

    pub fn chain_id(&self) -> u64 {
        self.instance.chain_id()
    }

    /// The `n`th funded dev account (0..10).
    pub fn signer(&self, n: usize) -> PrivateKeySigner {
        PrivateKeySigner::from(self.instance.keys()[n].clone())
    }
}

impl Drop for AnvilNode {
    fn drop(&mut self) {
        // A test's chain has nothing worth a graceful shutdown; the instance's own drop then
        // finds the process already gone.
        let child = self.instance.child_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The workspace root: the parent of this crate's directory.
fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("chain/ has a parent")
}

/// `$ANVIL` if set, else the toolchain's anvil, installing the toolchain once if it is missing.
pub fn binary() -> Result<PathBuf, AnvilError> {
    if let Some(path) = std::env::var_os("ANVIL") {
        return Ok(PathBuf::from(path));
    }
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let path = workspace_root().join(TOOLCHAIN_ANVIL);
    if path.is_file() {
        return Ok(path);
    }
    let installed = INSTALLED.get_or_init(|| {
        let script = workspace_root().join("scripts/toolchain.sh");
        let status = Command::new(&script).status().map_err(|e| format!("{}: {e}", script.display()))?;
        match status.success() {
            true => Ok(path.clone()),
            false => Err(format!("{} exited with {status}", script.display())),
        }
    });
    match installed {
        Ok(p) if p.is_file() => Ok(p.clone()),
        Ok(p) => Err(AnvilError::Missing(p.clone())),
        Err(e) => Err(AnvilError::Toolchain(e.clone())),
    }
}
