//! A local development chain in one value: an anvil from the project's toolchain with the
//! contracts deployed, dev account 0 as owner, token holder and broker, and helpers to fund
//! accounts. Tests, benchmarks and a `devnet` command use it; nothing here is for a real chain.

use std::time::Duration;

use alloy::primitives::{Address, TxHash, U256};
use alloy::providers::{DynProvider, PendingTransactionBuilder, Provider};
use alloy::signers::local::PrivateKeySigner;

use crate::anvil::{AnvilError, AnvilNode};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;

use crate::bindings::{DataMarketplace, PAT};
use crate::client::{ChainConfig, ChainError, SettlementClient, wallet_provider};
use crate::deploy::{DeployParams, Deployment, Release, V2Params, deploy_release, upgrade_to_v2_call};
use crate::permit::deposit_with_permit;

/// The PAT supply minted to the holder: one billion PAT.
pub const DEVNET_SUPPLY: u128 = 1_000_000_000 * 10u128.pow(18);
/// The broker margin cap set at deployment: the contract's maximum, 50%.
pub const DEVNET_MARGIN_BPS: u16 = 5_000;
/// Ether given to an account that must send transactions: 100 ETH.
pub const DEVNET_ETH: u128 = 100 * 10u128.pow(18);
/// Longest wait for a devnet transaction's receipt (anvil mines on arrival).
pub const DEVNET_RECEIPT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error(transparent)]
    Anvil(#[from] AnvilError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("transaction {0} reverted")]
    Reverted(TxHash),
    #[error("transaction {0} not mined within {DEVNET_RECEIPT_TIMEOUT:?}")]
    NotMined(TxHash),
}

/// A running local chain with the contracts deployed. Dropping it stops anvil.
#[derive(Debug)]
pub struct Devnet {
    pub node: AnvilNode,
    pub deployment: Deployment,
    /// Dev account 0: owner, token holder and broker.
    pub owner: PrivateKeySigner,
    /// Dev account 1's address: the broker wallet.
    pub broker_wallet: Address,
    /// Signs as [`Self::owner`].
    pub owner_provider: DynProvider,
}

impl Devnet {
    /// Starts anvil and deploys the contracts.
    pub async fn start() -> Result<Self, DevnetError> {
        Self::start_with_args(std::iter::empty::<&str>()).await
    }

    /// Starts anvil and deploys the contracts with the proxy on the frozen V1, as a chain
    /// deployed before V2 runs it; [`Self::upgrade_to_v2`] moves it on.
    pub async fn start_v1() -> Result<Self, DevnetError> {
        Self::start_release(std::iter::empty::<&str>(), Release::V1).await
    }

    /// Starts anvil with extra arguments (e.g. `["--gas-limit", "100000000"]`) and deploys.
    pub async fn start_with_args<I, S>(args: I) -> Result<Self, DevnetError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        Self::start_release(args, Release::Current).await
    }

    async fn start_release<I, S>(args: I, release: Release) -> Result<Self, DevnetError>
    where
        I: IntoIterator<Item = S>,
        S: Into<std::ffi::OsString>,
    {
        let node = AnvilNode::start_with_args(args)?;
        let owner = node.signer(0);
        let broker_wallet = node.signer(1).address();
        let owner_provider = wallet_provider(node.url(), owner.clone());
        let params = DeployParams {
            token_holder: owner.address(),
            token_supply: U256::from(DEVNET_SUPPLY),
            owner: owner.address(),
            broker: owner.address(),
            broker_wallet,
            users_pool_wallet: node.signer(2).address(),
            broker_margin_bps: DEVNET_MARGIN_BPS,
        };
        let deployment = deploy_release(&owner_provider, &params, release).await?;
        Ok(Self { node, deployment, owner, broker_wallet, owner_provider })
    }

    /// Upgrades the marketplace proxy from V1 to a fresh deployment of this build's
    /// implementation, as its owner, keeping all state; returns the new implementation once
    /// the upgrade is mined.
    pub async fn upgrade_to_v2(&self, params: V2Params) -> Result<Address, DevnetError> {
        let implementation =
            *DataMarketplace::deploy(&self.owner_provider).await.map_err(contract("deploy DataMarketplace"))?.address();
        let call = upgrade_to_v2_call(implementation, params);
        let tx = TransactionRequest::default().to(self.deployment.marketplace).input(call.abi_encode().into());
        let pending =
            self.owner_provider.send_transaction(tx).await.map_err(rpc("eth_sendTransaction upgradeToAndCall"))?;
        confirm(&self.owner_provider, pending).await?;
        Ok(implementation)
    }

    /// The settlement config of this chain, with the default limits.
    pub fn chain_config(&self) -> ChainConfig {
        ChainConfig::new(self.node.url(), self.node.chain_id(), self.deployment.marketplace)
    }

    /// A settlement client for the broker (dev account 0).
    pub async fn client(&self) -> Result<SettlementClient, ChainError> {
        SettlementClient::connect(self.chain_config(), self.owner.clone()).await
    }

    /// A provider signing as `signer`.
    pub fn provider_for(&self, signer: &PrivateKeySigner) -> DynProvider {
        wallet_provider(self.node.url(), signer.clone())
    }

    /// Funds accounts on this chain from its token holder.
    pub fn funder(&self) -> DevnetFunder {
        DevnetFunder {
            url: self.node.url(),
            owner_provider: self.owner_provider.clone(),
            pat: self.deployment.pat,
            marketplace: self.deployment.marketplace,
        }
    }

    /// The latest block's timestamp, unix seconds: "now" on this chain.
    pub async fn timestamp(&self) -> Result<u64, DevnetError> {
        self.funder().timestamp().await
    }

    /// Sets `account`'s ether balance (anvil_setBalance).
    pub async fn set_eth(&self, account: Address, wei: U256) -> Result<(), DevnetError> {
        self.funder().set_eth(account, wei).await
    }

    /// Mines one block (evm_mine).
    pub async fn mine(&self) -> Result<(), DevnetError> {
        self.owner_provider.raw_request::<_, String>("evm_mine".into(), ()).await.map_err(rpc("evm_mine"))?;
        Ok(())
    }

    /// Turns anvil's mining on arrival on or off (evm_setAutomine).
    pub async fn set_automine(&self, on: bool) -> Result<(), DevnetError> {
        self.owner_provider.raw_request::<_, ()>("evm_setAutomine".into(), (on,)).await.map_err(rpc("evm_setAutomine"))
    }

    /// Transfers `amount` PAT from the holder to `to`.
    pub async fn give_pat(&self, to: Address, amount: U256) -> Result<(), DevnetError> {
        self.funder().give_pat(to, amount).await
    }

    /// Gives `consumer` ether and `escrow` PAT, and deposits the PAT into its escrow with a permit.
    pub async fn fund_consumer(&self, consumer: &PrivateKeySigner, escrow: U256) -> Result<(), DevnetError> {
        self.funder().fund_consumer(consumer, escrow).await
    }
}

/// Funds accounts on a local chain from its token holder (dev account 0): what a [`Devnet`]
/// does for its tests, and what `pat-market load` does attached to a running `pat-market
/// devnet`. Anvil only (it sets ether balances directly).
#[derive(Debug, Clone)]
pub struct DevnetFunder {
    url: alloy::transports::http::reqwest::Url,
    owner_provider: DynProvider,
    pat: Address,
    marketplace: Address,
}

impl DevnetFunder {
    /// Attaches to the chain at `url` as `owner`, the token holder, for `marketplace`'s token.
    pub async fn attach(
        url: alloy::transports::http::reqwest::Url,
        owner: PrivateKeySigner,
        marketplace: Address,
    ) -> Result<Self, DevnetError> {
        let owner_provider = wallet_provider(url.clone(), owner);
        let market = DataMarketplace::new(marketplace, &owner_provider);
        let pat = market.pat().call().await.map_err(contract("pat()"))?;
        Ok(Self { url, owner_provider, pat, marketplace })
    }

    /// The latest block's timestamp, unix seconds: "now" on this chain.
    pub async fn timestamp(&self) -> Result<u64, DevnetError> {
        let block =
            self.owner_provider.get_block_by_number(Default::default()).await.map_err(rpc("eth_getBlockByNumber"))?;
        Ok(block.map_or(0, |b| b.header.timestamp))
    }

    /// Sets `account`'s ether balance (anvil_setBalance).
    pub async fn set_eth(&self, account: Address, wei: U256) -> Result<(), DevnetError> {
        let params = (account, wei);
        self.owner_provider
            .raw_request::<_, ()>("anvil_setBalance".into(), params)
            .await
            .map_err(rpc("anvil_setBalance"))
    }

    /// Transfers `amount` PAT from the holder to `to`.
    pub async fn give_pat(&self, to: Address, amount: U256) -> Result<(), DevnetError> {
        let token = PAT::new(self.pat, &self.owner_provider);
        let pending = token.transfer(to, amount).send().await.map_err(contract("transfer"))?;
        confirm(&self.owner_provider, pending).await
    }

    /// Gives `consumer` ether and `escrow` PAT, and deposits the PAT into its escrow with a permit.
    pub async fn fund_consumer(&self, consumer: &PrivateKeySigner, escrow: U256) -> Result<(), DevnetError> {
        self.set_eth(consumer.address(), U256::from(DEVNET_ETH)).await?;
        self.give_pat(consumer.address(), escrow).await?;
        let deadline = self.timestamp().await? + 3_600;
        let provider = wallet_provider(self.url.clone(), consumer.clone());
        let hash = deposit_with_permit(&provider, consumer, self.marketplace, escrow, deadline).await?;
        confirm(&provider, PendingTransactionBuilder::new(provider.root().clone(), hash)).await
    }
}

/// Waits (polling, anvil mines on arrival) until `pending` is mined and checks it succeeded.
pub async fn confirm(
    provider: &DynProvider,
    pending: PendingTransactionBuilder<alloy::network::Ethereum>,
) -> Result<(), DevnetError> {
    let hash = *pending.tx_hash();
    let deadline = tokio::time::Instant::now() + DEVNET_RECEIPT_TIMEOUT;
    loop {
        match provider.get_transaction_receipt(hash).await.map_err(rpc("eth_getTransactionReceipt"))? {
            Some(r) if r.status() => return Ok(()),
            Some(_) => return Err(DevnetError::Reverted(hash)),
            None if tokio::time::Instant::now() > deadline => return Err(DevnetError::NotMined(hash)),
            None => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

fn rpc(
    what: &'static str,
) -> impl Fn(alloy::transports::RpcError<alloy::transports::TransportErrorKind>) -> DevnetError {
    move |source| DevnetError::Chain(ChainError::Rpc { what, source })
}

fn contract(what: &'static str) -> impl Fn(alloy::contract::Error) -> DevnetError {
    move |source| DevnetError::Chain(ChainError::Contract { what, source })
}
