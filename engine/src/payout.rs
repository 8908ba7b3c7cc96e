//! [`PayoutBook`]: what the broker owes each provider and what it has paid it.
//!
//! A provider is owed the credits of its settled fills (`units * bid` per
//! provider entry, the amounts of its credit leaves on chain). The broker pays
//! them into the provider's wallet with the contract's `payout`, which takes
//! for each provider a *cumulative* statement: the provider's settled credits
//! so far. The contract pays the difference to what it paid before and never
//! less than nothing, so a statement sent twice (a retry, a restart between
//! the broadcast and its record) pays nothing twice. The engine journals each
//! mined payout as [`crate::Event::ProvidersPaid`]; the book keeps, per
//! provider, the largest cumulative a mined payout stated.
//!
//! What a provider claimed itself (`claimCredits`, with its leaves' proofs) the
//! book does not see: the contract pays a later statement only above it.

use alloy_primitives::map::AddressMap;
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};

use crate::fill::Fill;
use crate::money::Amount;

/// One provider's line of a payout: its settled credits so far, as stated on chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderPayout {
    pub provider: Address,
    pub cumulative: Amount,
}

/// A payout transaction the chain mined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub tx_hash: B256,
    pub entries: Vec<ProviderPayout>,
}

/// A provider's account with the broker, base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProviderAccount {
    /// Credits of settled fills.
    pub settled: Amount,
    /// What mined payouts stated (and the contract paid, or had paid before).
    pub paid: Amount,
}

impl ProviderAccount {
    /// Settled and not paid yet.
    pub fn owed(&self) -> Amount {
        self.settled - self.paid
    }
}

/// Every provider's account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayoutBook {
    accounts: AddressMap<ProviderAccount>,
}

impl PayoutBook {
    /// The book of `paid` (a snapshot's), before any settlement is counted.
    pub fn from_paid(paid: impl IntoIterator<Item = (Address, Amount)>) -> Self {
        let accounts = paid.into_iter().map(|(p, paid)| (p, ProviderAccount { settled: 0, paid })).collect();
        Self { accounts }
    }

    /// What a snapshot holds: each provider paid anything, by address.
    pub fn paid(&self) -> Vec<(Address, Amount)> {
        let mut paid: Vec<_> = self.accounts.iter().filter(|(_, a)| a.paid > 0).map(|(p, a)| (*p, a.paid)).collect();
        paid.sort_unstable_by_key(|p| p.0);
        paid
    }

    /// Counts a settled fill's credits to its providers.
    pub fn credit_settled(&mut self, fill: &Fill) {
        for (provider, _, credit) in fill.provider_credits() {
            self.accounts.entry(provider).or_default().settled += credit;
        }
    }

    pub fn account(&self, provider: &Address) -> ProviderAccount {
        self.accounts.get(provider).copied().unwrap_or_default()
    }

    /// Records a mined payout: each provider's paid becomes at least what it stated.
    pub fn record(&mut self, payout: &Payout) {
        for e in &payout.entries {
            let a = self.accounts.entry(e.provider).or_default();
            a.paid = a.paid.max(e.cumulative);
        }
    }

    /// Whether `payout` states nothing above any provider's settled credits: the engine
    /// never states more, so a journal that does is not this engine's.
    pub fn fits(&self, payout: &Payout) -> Result<(), ProviderPayout> {
        match payout.entries.iter().find(|e| e.cumulative > self.account(&e.provider).settled) {
            Some(e) => Err(*e),
            None => Ok(()),
        }
    }

    /// The next payout: every provider owed at least `threshold` (and more than nothing),
    /// the most owed first (ties by address), at most `max`.
    pub fn due(&self, threshold: Amount, max: usize) -> Vec<ProviderPayout> {
        let mut due: Vec<_> = self
            .accounts
            .iter()
            .filter(|(_, a)| a.owed() > 0 && a.owed() >= threshold)
            .map(|(p, a)| (a.owed(), *p, a.settled))
            .collect();
        due.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        due.into_iter().take(max).map(|(_, provider, cumulative)| ProviderPayout { provider, cumulative }).collect()
    }

    /// Totals over every provider: (settled, paid).
    pub fn totals(&self) -> (Amount, Amount) {
        self.accounts.values().fold((0, 0), |(s, p), a| (s + a.settled, p + a.paid))
    }

    /// Panics if a provider was paid more than its settled credits.
    pub fn check_invariants(&self) {
        for (p, a) in &self.accounts {
            assert!(a.paid <= a.settled, "{p}: paid {} above settled {}", a.paid, a.settled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(settled: &[(u8, Amount)]) -> PayoutBook {
        let mut b = PayoutBook::default();
        for (p, s) in settled {
            b.accounts.entry(Address::repeat_byte(*p)).or_default().settled += s;
        }
        b
    }

    fn payout(entries: &[(u8, Amount)]) -> Payout {
        Payout {
            tx_hash: B256::repeat_byte(9),
            entries: entries
                .iter()
                .map(|(p, c)| ProviderPayout { provider: Address::repeat_byte(*p), cumulative: *c })
                .collect(),
        }
    }

    #[test]
    fn due_states_cumulative_settled_credits_most_owed_first() {
        let mut b = book(&[(1, 50), (2, 300), (3, 100), (4, 100)]);
        b.record(&payout(&[(2, 100)]));
        let due = b.due(100, 10);
        let got: Vec<_> = due.iter().map(|e| (e.provider, e.cumulative)).collect();
        // owed: 1 → 50 (below threshold), 2 → 200, 3 → 100, 4 → 100 (ties by address)
        assert_eq!(
            got,
            vec![(Address::repeat_byte(2), 300), (Address::repeat_byte(3), 100), (Address::repeat_byte(4), 100)]
        );
        assert_eq!(b.due(100, 1).len(), 1, "at most max");
        assert!(b.due(1_000, 10).is_empty());
    }

    #[test]
    fn recording_a_payout_twice_or_out_of_order_pays_nothing_twice() {
        let mut b = book(&[(1, 500)]);
        b.record(&payout(&[(1, 300)]));
        b.record(&payout(&[(1, 300)]));
        assert_eq!(b.account(&Address::repeat_byte(1)).paid, 300);
        b.record(&payout(&[(1, 500)]));
        b.record(&payout(&[(1, 300)]));
        let a = b.account(&Address::repeat_byte(1));
        assert_eq!((a.paid, a.owed()), (500, 0));
        assert!(b.due(0, 10).is_empty(), "nothing owed is never due, even at threshold 0");
        b.check_invariants();
    }

    #[test]
    fn a_payout_above_settled_credits_does_not_fit() {
        let b = book(&[(1, 500)]);
        assert!(b.fits(&payout(&[(1, 500)])).is_ok());
        let e = b.fits(&payout(&[(1, 500), (2, 1)])).unwrap_err();
        assert_eq!((e.provider, e.cumulative), (Address::repeat_byte(2), 1));
    }

    #[test]
    fn the_snapshot_keeps_what_was_paid() {
        let mut b = book(&[(1, 500), (2, 40)]);
        b.record(&payout(&[(1, 200)]));
        let restored = PayoutBook::from_paid(b.paid());
        assert_eq!(restored.paid(), vec![(Address::repeat_byte(1), 200)]);
        assert_eq!(restored.account(&Address::repeat_byte(1)).settled, 0, "settlements are counted from the fills");
    }
}
