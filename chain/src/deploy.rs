//! Deployment of the contracts on a local chain: the PAT token with its supply minted to a
//! holder, the `DataMarketplace` implementation, and the ERC-1967 proxy initialised in the
//! same transaction that creates it (so nobody can initialise it first); and the upgrade of
//! a proxy deployed on V1 to this build's implementation (V2), keeping all its state.

use alloy::primitives::{Address, U256};
use alloy::providers::DynProvider;
use alloy::sol_types::SolCall;

use crate::bindings::{DataMarketplace, DataMarketplaceV1, ERC1967Proxy, PAT};
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

/// The implementation a proxy is deployed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The frozen V1, as chains deployed before V2 run it.
    V1,
    /// This build's implementation (V2).
    Current,
}

/// V2's parameters, set by `initializeV2` at the upgrade (seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V2Params {
    /// How long after an order's deadline its fill may still settle.
    pub max_settle_lag: u64,
    /// The withdrawal delay, at least `max_settle_lag`.
    pub withdrawal_delay: u64,
    /// How long a matured withdrawal request stays payable.
    pub withdrawal_window: u64,
}

impl Default for V2Params {
    /// The contract's defaults: 1 hour, 1 hour, 1 day.
    fn default() -> Self {
        Self { max_settle_lag: 3_600, withdrawal_delay: 3_600, withdrawal_window: 86_400 }
    }
}

/// Deploys the three contracts with `provider`'s wallet (see [`crate::client::wallet_provider`]).
pub async fn deploy(provider: &DynProvider, params: &DeployParams) -> Result<Deployment, ChainError> {
    deploy_release(provider, params, Release::Current).await
}

/// [`deploy`], with the proxy on `release`'s implementation.
pub async fn deploy_release(
    provider: &DynProvider,
    params: &DeployParams,
    release: Release,
) -> Result<Deployment, ChainError> {
    let failed = |what| move |source| ChainError::Contract { what, source };
    let pat = PAT::deploy(provider, params.token_holder, params.token_supply).await.map_err(failed("deploy PAT"))?;
    let implementation = match release {
        Release::Current => {
            *DataMarketplace::deploy(provider).await.map_err(failed("deploy DataMarketplace implementation"))?.address()
        }
        Release::V1 => *DataMarketplaceV1::deploy(provider)
            .await
            .map_err(failed("deploy DataMarketplace V1 implementation"))?
            .address(),
    };
    let init = DataMarketplace::initializeCall {
        owner_: params.owner,
        pat_: *pat.address(),
        broker_: params.broker,
        brokerWallet_: params.broker_wallet,
        usersPoolWallet_: params.users_pool_wallet,
        brokerMarginBps_: params.broker_margin_bps,
    };
    // V1's `initialize` has the same signature, so the same call data.
    let proxy = ERC1967Proxy::deploy(provider, implementation, init.abi_encode().into())
        .await
        .map_err(failed("deploy ERC1967Proxy"))?;
    Ok(Deployment { pat: *pat.address(), implementation, marketplace: *proxy.address() })
}

/// The owner's call that moves a proxy on V1 to `implementation` (a deployment of this
/// build's) in one transaction: `upgradeToAndCall` with `initializeV2(params)`. Every balance,
/// credit root, nonce and setting stays.
pub fn upgrade_to_v2_call(implementation: Address, params: V2Params) -> DataMarketplace::upgradeToAndCallCall {
    let init = DataMarketplace::initializeV2Call {
        maxSettleLag_: params.max_settle_lag,
        withdrawalDelay_: params.withdrawal_delay,
        withdrawalWindow_: params.withdrawal_window,
    };
    DataMarketplace::upgradeToAndCallCall { newImplementation: implementation, data: init.abi_encode().into() }
}
