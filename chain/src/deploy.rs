//! Deployment of the contracts on a local chain: the PAT token with its supply minted to a
//! holder, the `DataMarketplace` implementation, and the ERC-1967 proxy initialised in the
//! same transaction that creates it (so nobody can initialise it first).

use alloy::primitives::{Address, U256};
use alloy::providers::DynProvider;
use alloy::sol_types::SolCall;

use crate::bindings::{DataMarketplace, ERC1967Proxy, PAT};
use crate::client::ChainError;

/// Who gets what at deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployParams {
    /// Receives the whole PAT supply.
    pub token_holder: Address,
    pub token_supply: U256,
    /// Governance: upgrades, margin, wallets, phase, pause.
    pub owner: Address,
    /// The only account allowed to call `settleBatch`.
    pub broker: Address,
    /// Receives the broker's spread on `withdrawBrokerEarnings`.
    pub broker_wallet: Address,
    pub users_pool_wallet: Address,
    /// Cap on `(ask - bid) / ask`, at most 5000.
    pub broker_margin_bps: u16,
}

/// Addresses of a deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deployment {
    pub pat: Address,
    pub implementation: Address,
    /// The proxy: the marketplace every client talks to, and the EIP-712 verifying contract.
    pub marketplace: Address,
}

/// Deploys the three contracts with `provider`'s wallet (see [`crate::client::wallet_provider`]).
pub async fn deploy(provider: &DynProvider, params: &DeployParams) -> Result<Deployment, ChainError> {
    let failed = |what| move |source| ChainError::Contract { what, source };
    let pat = PAT::deploy(provider, params.token_holder, params.token_supply).await.map_err(failed("deploy PAT"))?;
    let implementation =
        DataMarketplace::deploy(provider).await.map_err(failed("deploy DataMarketplace implementation"))?;
    let init = DataMarketplace::initializeCall {
        owner_: params.owner,
        pat_: *pat.address(),
        broker_: params.broker,
        brokerWallet_: params.broker_wallet,
        usersPoolWallet_: params.users_pool_wallet,
        brokerMarginBps_: params.broker_margin_bps,
    };
    let proxy = ERC1967Proxy::deploy(provider, *implementation.address(), init.abi_encode().into())
        .await
        .map_err(failed("deploy ERC1967Proxy"))?;
    Ok(Deployment { pat: *pat.address(), implementation: *implementation.address(), marketplace: *proxy.address() })
}
