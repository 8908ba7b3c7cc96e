//! Consumer orders: signature verification (kept apart so it can run off the
//! market's thread), and the errors of order execution, one per check.

use alloy_primitives::{Address, B256, U256};
use alloy_sol_types::Eip712Domain;
use thiserror::Error;

use crate::code::Code;
use crate::eip712::{self, Order, SignatureError};
use crate::ewma::TimeMs;
use crate::money::Amount;

/// An order as it arrives: the signed fields and the 65-byte signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedOrder {
    pub order: Order,
    pub signature: Vec<u8>,
}

/// An order whose signature has been checked against its consumer. Only
/// [`verify_order`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedOrder {
    order: Order,
    digest: B256,
    signature: Vec<u8>,
}

impl VerifiedOrder {
    pub fn order(&self) -> &Order {
        &self.order
    }

    /// The EIP-712 digest; it is also the fill id.
    pub fn digest(&self) -> B256 {
        self.digest
    }

    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

/// Checks that the order was signed by its consumer under `domain`.
pub fn verify_order(signed: SignedOrder, domain: &Eip712Domain) -> Result<VerifiedOrder, OrderError> {
    let digest = eip712::digest(&signed.order, domain);
    eip712::verify_signer(&digest, &signed.signature, signed.order.consumer).map_err(OrderError::BadSignature)?;
    Ok(VerifiedOrder { order: signed.order, digest, signature: signed.signature })
}

/// Which exposure limit an order would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitScope {
    Market,
    /// All markets of one (window, segment type).
    Group,
}

/// Why a market is not quoting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HaltReason {
    /// The market has not been quoted by a tick yet.
    NotYetQuoted,
    /// The engine is paused: no order intake, no settlement.
    Paused,
    /// Exposure is at the market's hard limit.
    MarketExposure,
    /// Exposure is at the hard limit of the market's (window, type).
    GroupExposure,
    /// No bid and ask on the tick satisfy the margin cap (tick too coarse for the price).
    NoValidPrice,
}

impl HaltReason {
    pub fn code(self) -> &'static str {
        match self {
            Self::NotYetQuoted => "not_yet_quoted",
            Self::Paused => "paused",
            Self::MarketExposure => "market_exposure",
            Self::GroupExposure => "group_exposure",
            Self::NoValidPrice => "no_valid_price",
        }
    }
}

/// Why an order was refused. Nothing changes when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OrderError {
    #[error("the market is paused: no orders are taken")]
    Paused,
    #[error("unknown market {0}")]
    UnknownMarket(B256),
    #[error("bad consumer signature: {0}")]
    BadSignature(SignatureError),
    #[error("order deadline {deadline} has passed (now {now}, unix secs)")]
    Expired { deadline: U256, now: u64 },
    #[error("nonce {nonce} of {consumer} was already used")]
    NonceUsed { consumer: Address, nonce: U256 },
    #[error("quantity {qty} must be between 1 and {max}")]
    InvalidQuantity { qty: U256, max: u64 },
    #[error("market is halted ({})", .0.code())]
    MarketHalted(HaltReason),
    #[error("the market's quote expired at {valid_until_ms} ms and no newer one exists")]
    QuoteStale { valid_until_ms: TimeMs },
    #[error("ask {ask} is above the order's maxPrice {max_price}")]
    PriceAboveMax { ask: Amount, max_price: U256 },
    #[error(
        "{requested} units requested, {available} available to this consumer (one from each segment it does not hold yet)"
    )]
    InsufficientSupply { requested: u64, available: u64 },
    #[error("the fill's notional {notional} would take {scope:?} exposure {exposure} past its hard limit {hard}")]
    ExposureLimit { scope: LimitScope, exposure: Amount, notional: Amount, hard: Amount },
    #[error("the order needs {needed} of escrow, and the consumer's free escrow is {free}")]
    InsufficientEscrow { needed: Amount, free: Amount },
    #[error("nonce {nonce} of {consumer} was cancelled on chain (invalidateNonces)")]
    NonceInvalidated { consumer: Address, nonce: U256 },
    #[error("consumers' escrow is not known to be current ({}); retry", last_current(*.current_at_ms))]
    EscrowUnavailable { current_at_ms: Option<TimeMs> },
}

/// When consumers' escrow was last read to the chain's head, for a message.
fn last_current(at_ms: Option<TimeMs>) -> String {
    match at_ms {
        Some(ms) => format!("last read to the chain's head at {ms} ms"),
        None => "not read to the chain's head since the engine started".to_owned(),
    }
}

impl OrderError {
    /// A stable machine-readable code for clients and metrics.
    pub fn code(&self) -> Code {
        match self {
            Self::Paused => Code::Paused,
            Self::UnknownMarket(_) => Code::UnknownMarket,
            Self::BadSignature(_) => Code::BadSignature,
            Self::Expired { .. } => Code::Expired,
            Self::NonceUsed { .. } => Code::NonceUsed,
            Self::InvalidQuantity { .. } => Code::InvalidQuantity,
            Self::MarketHalted(_) => Code::MarketHalted,
            Self::QuoteStale { .. } => Code::QuoteStale,
            Self::PriceAboveMax { .. } => Code::PriceAboveMax,
            Self::InsufficientSupply { .. } => Code::InsufficientSupply,
            Self::ExposureLimit { .. } => Code::ExposureLimit,
            Self::InsufficientEscrow { .. } => Code::InsufficientEscrow,
            Self::NonceInvalidated { .. } => Code::NonceInvalidated,
            Self::EscrowUnavailable { .. } => Code::EscrowUnavailable,
        }
    }
}
