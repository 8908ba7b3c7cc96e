//! Fills and the money they move. A fill's amounts always satisfy
//! `ask_paid = bid_credited + broker_spread`, and the [`Ledger`] keeps, over
//! any history, `consumer_debits = provider_credits + broker_revenue + refunds`.

use alloy_primitives::map::AddressMap;
use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::ewma::TimeMs;
use crate::market::{Allocation, MarketId};
use crate::money::Amount;

/// An accepted order: which units it bought from whom, and what was paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The order's EIP-712 digest.
    pub fill_id: B256,
    pub market: MarketId,
    /// The order's `market`: keccak256 of the market key's text form.
    pub market_key_id: B256,
    pub consumer: Address,
    pub nonce: U256,
    pub qty: u64,
    pub max_price: U256,
    pub deadline: U256,
    /// Per unit.
    pub ask: Amount,
    /// Per unit.
    pub bid: Amount,
    /// `qty * ask`.
    pub ask_paid: Amount,
    /// `qty * bid`: the sum of every provider's credit.
    pub bid_credited: Amount,
    /// `ask_paid - bid_credited`.
    pub broker_spread: Amount,
    pub accepted_at_ms: TimeMs,
    /// Sorted by (provider, segment).
    pub allocations: Vec<Allocation>,
    pub signature: Vec<u8>,
}

impl Fill {
    /// Units and credit per provider, sorted by provider: what the contract pays.
    /// Allocations are sorted by provider, so one pass merges them.
    pub fn provider_credits(&self) -> Vec<(Address, u64, Amount)> {
        let mut per: Vec<(Address, u64, Amount)> = Vec::with_capacity(self.allocations.len());
        for a in &self.allocations {
            match per.last_mut() {
                Some(last) if last.0 == a.provider => last.1 += u64::from(a.units),
                _ => per.push((a.provider, u64::from(a.units), 0)),
            }
        }
        for p in &mut per {
            p.2 = u128::from(p.1) * self.bid;
        }
        per
    }

    /// Panics unless the fill's amounts are consistent to the base unit.
    pub fn check_invariants(&self) {
        assert_eq!(self.ask_paid, self.bid_credited + self.broker_spread, "ask paid = bid credited + spread");
        assert_eq!(self.ask_paid, u128::from(self.qty) * self.ask);
        assert_eq!(self.bid_credited, u128::from(self.qty) * self.bid);
        let units: u64 = self.allocations.iter().map(|a| u64::from(a.units)).sum();
        assert_eq!(units, self.qty, "allocated units = qty");
        let credits: Amount = self.provider_credits().iter().map(|c| c.2).sum();
        assert_eq!(credits, self.bid_credited, "sum of provider credits = bid credited");
        assert!(self.allocations.windows(2).all(|w| (w[0].provider, w[0].segment) < (w[1].provider, w[1].segment)));
    }
}

/// Where a fill is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FillStatus {
    /// Journaled; counts in exposure until settled or failed.
    Accepted,
    /// Sent to the chain in the batch transaction `tx_hash`; still exposed.
    Submitted { tx_hash: B256 },
    /// Confirmed on chain (in `tx_hash` when the submission was recorded) at
    /// `at_ms`, which starts the consumer's access period.
    Settled { tx_hash: Option<B256>, at_ms: TimeMs },
    /// Rejected by the chain: units returned to supply, the consumer refunded.
    Failed { reason: String },
}

impl FillStatus {
    /// The status as the API, the feed and errors spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Submitted { .. } => "submitted",
            Self::Settled { .. } => "settled",
            Self::Failed { .. } => "failed",
        }
    }
}

/// Totals of money moved by fills, in base units.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub consumer_debits: Amount,
    pub provider_credits: Amount,
    pub broker_revenue: Amount,
    /// Debits of failed fills given back (their credits and spread reversed).
    pub refunds: Amount,
    pub by_provider: AddressMap<Amount>,
    pub by_consumer: AddressMap<Amount>,
}

impl Ledger {
    /// Books an accepted fill.
    pub fn accept(&mut self, fill: &Fill) {
        self.consumer_debits += fill.ask_paid;
        self.provider_credits += fill.bid_credited;
        self.broker_revenue += fill.broker_spread;
        *self.by_consumer.entry(fill.consumer).or_default() += fill.ask_paid;
        for (provider, _, credit) in fill.provider_credits() {
            *self.by_provider.entry(provider).or_default() += credit;
        }
    }

    /// Reverses a failed fill's credits and spread into a refund.
    pub fn refund(&mut self, fill: &Fill) {
        self.provider_credits -= fill.bid_credited;
        self.broker_revenue -= fill.broker_spread;
        self.refunds += fill.ask_paid;
        *self.by_consumer.get_mut(&fill.consumer).expect("refund of a booked fill") -= fill.ask_paid;
        for (provider, _, credit) in fill.provider_credits() {
            *self.by_provider.get_mut(&provider).expect("refund of a booked fill") -= credit;
        }
    }

    /// Panics unless every consumer debit is a provider credit, broker revenue or refund.
    pub fn check_conservation(&self) {
        assert_eq!(
            self.consumer_debits,
            self.provider_credits + self.broker_revenue + self.refunds,
            "consumer debits = provider credits + broker revenue + refunds"
        );
        assert_eq!(self.by_provider.values().sum::<Amount>(), self.provider_credits);
        assert_eq!(self.by_consumer.values().sum::<Amount>() + self.refunds, self.consumer_debits);
    }
}
