//! EIP-2612 permits for the PAT token, and a consumer's escrow deposit with one: sign the
//! permit locally, then `depositWithPermit` approves and deposits in one transaction.

use alloy::primitives::{Address, TxHash, U256};
use alloy::providers::DynProvider;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol;
use alloy::sol_types::{Eip712Domain, SolStruct, eip712_domain};

use crate::bindings::{DataMarketplace, PAT};
use crate::client::ChainError;

sol! {
    /// EIP-2612's typed data, as OpenZeppelin's `ERC20Permit` hashes it.
    #[derive(Debug, PartialEq, Eq)]
    struct Permit {
        address owner;
        address spender;
        uint256 value;
        uint256 nonce;
        uint256 deadline;
    }
}

/// The PAT token's EIP-712 domain (`ERC20Permit("PAT")`, version "1").
pub fn pat_domain(chain_id: u64, token: Address) -> Eip712Domain {
    eip712_domain! { name: "PAT", version: "1", chain_id: chain_id, verifying_contract: token, }
}

/// `owner`'s signature of `permit` under `domain`: (v, r, s) as `permit` takes them.
pub fn sign_permit(owner: &PrivateKeySigner, permit: &Permit, domain: &Eip712Domain) -> (u8, U256, U256) {
    let digest = permit.eip712_signing_hash(domain);
    let sig = owner.sign_hash_sync(&digest).expect("a local key signs any digest");
    (27 + u8::from(sig.v()), sig.r(), sig.s())
}

/// Sends a deposit of `amount` of `consumer`'s PAT into `marketplace` escrow with a permit that
/// expires at `deadline` (unix seconds); returns the transaction to watch. `provider` must sign
/// as `consumer` (see [`crate::client::wallet_provider`]).
pub async fn deposit_with_permit(
    provider: &DynProvider,
    consumer: &PrivateKeySigner,
    marketplace: Address,
    amount: U256,
    deadline: u64,
) -> Result<TxHash, ChainError> {
    let failed = |what| move |source| ChainError::Contract { what, source };
    let market = DataMarketplace::new(marketplace, provider);
    let token_address = market.pat().call().await.map_err(failed("pat()"))?;
    let token = PAT::new(token_address, provider);
    let nonce = token.nonces(consumer.address()).call().await.map_err(failed("nonces"))?;
    let chain_id = alloy::providers::Provider::get_chain_id(provider)
        .await
        .map_err(|source| ChainError::Rpc { what: "eth_chainId", source })?;
    let permit = Permit {
        owner: consumer.address(),
        spender: marketplace,
        value: amount,
        nonce,
        deadline: U256::from(deadline),
    };
    let (v, r, s) = sign_permit(consumer, &permit, &pat_domain(chain_id, token_address));
    let call = market.depositWithPermit(amount, U256::from(deadline), v, r.into(), s.into());
    let pending = call.send().await.map_err(failed("depositWithPermit"))?;
    Ok(*pending.tx_hash())
}
