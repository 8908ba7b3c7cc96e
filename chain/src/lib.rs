//! # pat-chain: the PAT contracts from Rust
//!
//! The broker's side of on-chain settlement (DESIGN.md section 8), built on `alloy`:
//!
//! - [`bindings`]: bindings generated from the committed artifacts; engine fill → contract fill.
//! - [`sender`]: [`BrokerSender`], the one sender of the broker's transactions (nonces, fees,
//!   signing, receipts to a confirmation depth, replacement), behind the [`Sender`] trait.
//! - [`client`]: [`SettlementClient`]: connect (chain id checked), submit `settleBatch` through
//!   the sender, per-fill outcomes, retries that never double-settle, balance reads.
//! - [`outcome`]: the contract's rejection codes and the decoding of a batch's events.
//! - [`escrow`]: [`EscrowReader`]: consumers' escrow to a confirmation depth, as the engine's syncs.
//! - [`merkle`]: a settled batch's Merkle tree: provider credit claims and access proofs.
//! - [`deploy`]: token, implementation and initialised proxy, for local chains.
//! - [`permit`]: EIP-2612 permits and a consumer's deposit with one.
//! - [`anvil`]: a local anvil from the project's toolchain, for tests and benchmarks.
//! - [`devnet`]: anvil with the contracts deployed and helpers to fund accounts.

pub mod anvil;
pub mod bindings;
pub mod client;
pub mod deploy;
pub mod devnet;
pub mod escrow;
pub mod merkle;
pub mod outcome;
pub mod permit;
pub mod sender;

pub use client::{BatchReport, ChainConfig, ChainError, Revert, SettlementClient, wallet_provider};
pub use deploy::{DeployParams, Deployment, deploy};
pub use escrow::EscrowReader;
pub use merkle::{BatchTree, MerkleError};
pub use outcome::{BatchCommitment, FillOutcome, FillResult, RejectReason};
pub use sender::{BrokerSender, Call, Sender, Submission};
