//! [`EscrowBook`]: what the engine knows of each consumer's escrow on chain,
//! and how much of it the engine's own open fills hold, so that an order the
//! consumer's free escrow does not cover is refused before anything is taken.
//!
//! The chain's side arrives as an [`EscrowSync`]: the contract's state
//! (`escrowOf`, `pendingWithdrawalOf`) at one confirmed block for every
//! consumer whose escrow moved since the previous sync, the fills whose
//! settlement the chain shows up to that block, and the nonces consumers
//! cancelled. The runtime's escrow follower reads it; the engine journals it
//! as [`crate::Event::EscrowSynced`], so a restart resumes from the last
//! synced block with the same view.
//!
//! Free escrow = escrow − requested withdrawal − held, where held is the ask
//! of every fill of the consumer that neither failed nor was seen settled by
//! a sync. A fill that settled on chain after the synced block still holds
//! its ask: the synced escrow still counts that money.

use alloy_primitives::map::{AddressMap, B256Map, HashMap};
use alloy_primitives::{Address, B256, U256};
use serde::{Deserialize, Serialize};

use crate::ewma::TimeMs;
use crate::fill::Fill;
use crate::money::Amount;

/// A consumer's escrow on chain at a synced block.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowAccount {
    /// `escrowOf`: deposited, less settled asks and withdrawals.
    pub escrow: Amount,
    /// `pendingWithdrawalOf`: requested and not withdrawn or cancelled (0 if none).
    pub withdrawing: Amount,
}

/// A consumer's `NoncesInvalidated`: the bits of `mask` in 64-nonce word `word`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceCancel {
    pub consumer: Address,
    pub word: U256,
    pub mask: u64,
}

/// What the chain showed up to one confirmed block, since the previous sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowSync {
    /// The last block read; the next sync starts after it.
    pub block: u64,
    /// Every consumer whose escrow or withdrawal moved, as of `block`.
    pub accounts: Vec<(Address, EscrowAccount)>,
    /// Fills whose `FillSettled` is in a block up to `block`.
    pub settled: Vec<B256>,
    /// Cancellations of nonces up to `block`.
    pub cancelled: Vec<NonceCancel>,
}

impl EscrowSync {
    /// Whether it changes nothing but the block (the follower journals none such).
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.settled.is_empty() && self.cancelled.is_empty()
    }
}

/// A consumer's escrow as the engine counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EscrowView {
    pub escrow: Amount,
    pub withdrawing: Amount,
    /// Asks of the consumer's fills not yet settled as of the synced block.
    pub held: Amount,
    /// What an order may still use: escrow − withdrawing − held, at least 0.
    pub free: Amount,
}

/// Why escrow does not let an order through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EscrowRefusal {
    /// Free escrow does not cover the order.
    Uncovered { needed: Amount, free: Amount },
    /// The view is not known to be current: the follower has not read the chain up to its
    /// head within the allowed time (since `current_at_ms`; `None`: not since this start).
    Stale { current_at_ms: Option<TimeMs> },
}

/// What a snapshot holds of the book; sorted, so equal books encode equally.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscrowSnapshot {
    pub synced_block: u64,
    pub accounts: Vec<(Address, EscrowAccount)>,
    /// (fill, consumer, ask paid) of every fill that holds escrow.
    pub holds: Vec<(B256, Address, Amount)>,
    /// Cancelled bits per (consumer, word).
    pub cancelled: Vec<(Address, U256, u64)>,
}

/// Every consumer's escrow as synced from the chain, and what open fills hold of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EscrowBook {
    /// Whether orders must be covered (runtime setting, not state: replaying an accepted fill checks nothing).
    required: bool,
    /// With `required`, orders are refused once the view was last current this long ago
    /// (runtime setting; `None`: never, for engines driven without a follower).
    stale_after_ms: Option<TimeMs>,
    /// When the follower last read the chain up to its confirmed head (runtime, not state).
    current_at_ms: Option<TimeMs>,
    /// The last block of a journaled sync.
    synced_block: u64,
    /// The last block read, with or without change (at least `synced_block`; not journaled:
    /// a restart reads again from `synced_block`).
    followed_block: u64,
    accounts: AddressMap<EscrowAccount>,
    holds: B256Map<(Address, Amount)>,
    /// Per consumer, the sum of its holds (derived from `holds`).
    held: AddressMap<Amount>,
    cancelled: HashMap<(Address, U256), u64>,
}

impl EscrowBook {
    /// Whether orders must be covered by free escrow.
    pub fn required(&self) -> bool {
        self.required
    }

    pub fn set_required(&mut self, required: bool) {
        self.required = required;
    }

    /// Refuse orders once the view was last current more than `ms` ago (`None`: never).
    pub fn set_stale_after(&mut self, ms: Option<TimeMs>) {
        self.stale_after_ms = ms;
    }

    /// When the follower last read the chain up to its confirmed head (`None`: not since this start).
    pub fn current_at_ms(&self) -> Option<TimeMs> {
        self.current_at_ms
    }

    /// Records that the follower read the chain up to its confirmed head at `now_ms`.
    pub fn mark_current(&mut self, now_ms: TimeMs) {
        self.current_at_ms = Some(now_ms);
    }

    /// The last block of a sync that changed something (0: none yet): where a restart resumes.
    pub fn synced_block(&self) -> u64 {
        self.synced_block
    }

    /// The last block read from the chain, changed or not: what the book is current to.
    pub fn followed_block(&self) -> u64 {
        self.followed_block
    }

    /// Records that blocks up to `block` changed nothing.
    pub fn follow(&mut self, block: u64) {
        self.followed_block = self.followed_block.max(block);
    }

    /// `consumer`'s escrow as the engine counts it.
    pub fn view(&self, consumer: &Address) -> EscrowView {
        let account = self.accounts.get(consumer).copied().unwrap_or_default();
        let held = self.held.get(consumer).copied().unwrap_or(0);
        EscrowView {
            escrow: account.escrow,
            withdrawing: account.withdrawing,
            held,
            free: account.escrow.saturating_sub(account.withdrawing).saturating_sub(held),
        }
    }

    /// Whether an order of `consumer` for `needed` at `now_ms` is covered (always, when not
    /// required): by a current view, and by free escrow.
    pub fn check(&self, consumer: &Address, needed: Amount, now_ms: TimeMs) -> Result<(), EscrowRefusal> {
        if !self.required {
            return Ok(());
        }
        if let Some(limit) = self.stale_after_ms
            && self.current_at_ms.is_none_or(|at| now_ms.saturating_sub(at) > limit)
        {
            return Err(EscrowRefusal::Stale { current_at_ms: self.current_at_ms });
        }
        let free = self.view(consumer).free;
        if needed > free { Err(EscrowRefusal::Uncovered { needed, free }) } else { Ok(()) }
    }

    /// Whether `consumer` cancelled `nonce` on chain (pending or in effect: an order
    /// accepted now could not settle once the cancellation takes effect).
    pub fn is_cancelled(&self, consumer: Address, nonce: U256) -> bool {
        let word = nonce >> 6;
        let bit = 1u64 << (nonce.as_limbs()[0] & 63);
        self.cancelled.get(&(consumer, word)).is_some_and(|mask| mask & bit != 0)
    }

    /// Holds `fill`'s ask against its consumer's escrow.
    pub fn hold(&mut self, fill: &Fill) {
        self.hold_amount(fill.fill_id, fill.consumer, fill.ask_paid);
    }

    fn hold_amount(&mut self, id: B256, consumer: Address, amount: Amount) {
        if self.holds.insert(id, (consumer, amount)).is_none() {
            *self.held.entry(consumer).or_default() += amount;
        }
    }

    /// Releases fill `id`'s hold, if it has one (it failed, or a sync saw it settle).
    pub fn release(&mut self, id: &B256) {
        let Some((consumer, amount)) = self.holds.remove(id) else { return };
        let held = self.held.get_mut(&consumer).expect("a hold counts in its consumer's sum");
        *held -= amount;
        if *held == 0 {
            self.held.remove(&consumer);
        }
    }

    /// Applies what the chain showed up to `sync.block`.
    pub fn apply(&mut self, sync: &EscrowSync) {
        self.synced_block = self.synced_block.max(sync.block);
        self.follow(sync.block);
        for (consumer, account) in &sync.accounts {
            if *account == EscrowAccount::default() {
                self.accounts.remove(consumer);
            } else {
                self.accounts.insert(*consumer, *account);
            }
        }
        for id in &sync.settled {
            self.release(id);
        }
        for c in &sync.cancelled {
            *self.cancelled.entry((c.consumer, c.word)).or_default() |= c.mask;
        }
    }

    /// Fill `id`'s hold, if it has one.
    pub fn hold_of(&self, id: &B256) -> Option<(Address, Amount)> {
        self.holds.get(id).copied()
    }

    pub fn snapshot(&self) -> EscrowSnapshot {
        let mut accounts: Vec<_> = self.accounts.iter().map(|(a, e)| (*a, *e)).collect();
        accounts.sort_unstable_by_key(|a| a.0);
        let mut holds: Vec<_> = self.holds.iter().map(|(id, (c, a))| (*id, *c, *a)).collect();
        holds.sort_unstable_by_key(|h| h.0);
        let mut cancelled: Vec<_> = self.cancelled.iter().map(|((c, w), m)| (*c, *w, *m)).collect();
        cancelled.sort_unstable();
        EscrowSnapshot { synced_block: self.synced_block, accounts, holds, cancelled }
    }

    /// The book a snapshot holds (not required until the runtime says so).
    pub fn from_snapshot(s: EscrowSnapshot) -> Self {
        let mut book = Self {
            synced_block: s.synced_block,
            followed_block: s.synced_block,
            accounts: s.accounts.into_iter().collect(),
            cancelled: s.cancelled.into_iter().map(|(c, w, m)| ((c, w), m)).collect(),
            ..Self::default()
        };
        for (id, consumer, amount) in s.holds {
            book.hold_amount(id, consumer, amount);
        }
        book
    }

    /// Panics unless each consumer's held sum is the sum of its holds.
    pub fn check_invariants(&self) {
        let mut held = AddressMap::<Amount>::default();
        for (consumer, amount) in self.holds.values() {
            *held.entry(*consumer).or_default() += amount;
        }
        assert_eq!(held, self.held, "held per consumer = sum of its fills' holds");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn book(required: bool) -> EscrowBook {
        let mut b = EscrowBook::default();
        b.set_required(required);
        b
    }

    const ALICE: Address = Address::repeat_byte(0xa1);
    const BOB: Address = Address::repeat_byte(0xb0);

    fn account(escrow: Amount, withdrawing: Amount) -> EscrowAccount {
        EscrowAccount { escrow, withdrawing }
    }

    #[test]
    fn a_consumer_never_synced_has_nothing_free() {
        let b = book(true);
        assert_eq!(b.check(&ALICE, 1, 0), Err(EscrowRefusal::Uncovered { needed: 1, free: 0 }));
        assert_eq!(b.check(&ALICE, 0, 0), Ok(()));
        assert_eq!(book(false).check(&ALICE, 1, 0), Ok(()), "not required: every order is covered");
    }

    #[test]
    fn a_view_not_current_lately_covers_nothing() {
        let mut b = book(true);
        b.set_stale_after(Some(1_000));
        b.apply(&EscrowSync { block: 5, accounts: vec![(ALICE, account(100, 0))], ..Default::default() });
        assert_eq!(b.check(&ALICE, 1, 10), Err(EscrowRefusal::Stale { current_at_ms: None }), "not since this start");
        b.mark_current(10);
        assert_eq!(b.check(&ALICE, 1, 1_010), Ok(()));
        assert_eq!(b.check(&ALICE, 1, 1_011), Err(EscrowRefusal::Stale { current_at_ms: Some(10) }));
        assert_eq!(book(false).check(&ALICE, 1, 1_011), Ok(()), "not required: no view needed");
    }

    #[test]
    fn free_is_escrow_less_withdrawal_less_open_fills() {
        let mut b = book(true);
        b.apply(&EscrowSync { block: 5, accounts: vec![(ALICE, account(100, 30))], ..Default::default() });
        assert_eq!(b.view(&ALICE).free, 70);
        b.hold_amount(B256::repeat_byte(1), ALICE, 50);
        b.hold_amount(B256::repeat_byte(1), ALICE, 50); // the same fill twice holds once
        assert_eq!(b.view(&ALICE), EscrowView { escrow: 100, withdrawing: 30, held: 50, free: 20 });
        assert_eq!(b.check(&ALICE, 20, 0), Ok(()));
        assert_eq!(b.check(&ALICE, 21, 0), Err(EscrowRefusal::Uncovered { needed: 21, free: 20 }));
        assert_eq!(b.view(&BOB).free, 0, "another consumer's escrow covers nothing of Alice's");
        // Over-held (a withdrawal raced ahead): free is 0, never negative.
        b.apply(&EscrowSync { block: 6, accounts: vec![(ALICE, account(40, 0))], ..Default::default() });
        assert_eq!(b.view(&ALICE).free, 0);
        b.check_invariants();
    }

    #[test]
    fn a_settled_fill_holds_until_a_sync_shows_its_settlement() {
        let mut b = book(true);
        b.apply(&EscrowSync { block: 1, accounts: vec![(ALICE, account(100, 0))], ..Default::default() });
        b.hold_amount(B256::repeat_byte(1), ALICE, 60);
        b.hold_amount(B256::repeat_byte(2), ALICE, 10);
        assert_eq!(b.view(&ALICE).free, 30);
        // The chain settled fill 1: escrow 40 at block 9, and the hold goes in the same sync.
        b.apply(&EscrowSync {
            block: 9,
            accounts: vec![(ALICE, account(40, 0))],
            settled: vec![B256::repeat_byte(1)],
            ..Default::default()
        });
        assert_eq!(b.view(&ALICE), EscrowView { escrow: 40, withdrawing: 0, held: 10, free: 30 });
        // A failed fill releases at once; a release of nothing changes nothing.
        b.release(&B256::repeat_byte(2));
        b.release(&B256::repeat_byte(2));
        assert_eq!(b.view(&ALICE).free, 40);
        assert_eq!(b.synced_block(), 9);
        b.follow(12);
        b.follow(11);
        assert_eq!((b.synced_block(), b.followed_block()), (9, 12), "an empty read moves only the followed block");
        b.check_invariants();
    }

    #[test]
    fn cancelled_nonces_are_known_by_word_and_bit() {
        let mut b = book(true);
        let word = U256::from(3);
        b.apply(&EscrowSync {
            block: 2,
            cancelled: vec![NonceCancel { consumer: ALICE, word, mask: 0b101 }],
            ..Default::default()
        });
        assert!(b.is_cancelled(ALICE, U256::from(3 * 64)));
        assert!(!b.is_cancelled(ALICE, U256::from(3 * 64 + 1)));
        assert!(b.is_cancelled(ALICE, U256::from(3 * 64 + 2)));
        assert!(!b.is_cancelled(BOB, U256::from(3 * 64)));
        assert!(!b.is_cancelled(ALICE, U256::from(2 * 64)));
        b.apply(&EscrowSync {
            block: 3,
            cancelled: vec![NonceCancel { consumer: ALICE, word, mask: 0b10 }],
            ..Default::default()
        });
        assert!(b.is_cancelled(ALICE, U256::from(3 * 64 + 1)), "cancellations add up");
        assert!(b.is_cancelled(ALICE, U256::from(3 * 64)));
    }

    #[test]
    fn a_snapshot_rebuilds_the_same_book() {
        let mut b = book(true);
        b.apply(&EscrowSync {
            block: 4,
            accounts: vec![(ALICE, account(100, 5)), (BOB, account(7, 0))],
            cancelled: vec![NonceCancel { consumer: BOB, word: U256::ZERO, mask: 1 }],
            ..Default::default()
        });
        b.hold_amount(B256::repeat_byte(1), ALICE, 60);
        b.hold_amount(B256::repeat_byte(2), BOB, 3);
        let mut again = EscrowBook::from_snapshot(b.snapshot());
        again.set_required(true);
        assert_eq!(again, b);
        // An account synced back to nothing leaves the book.
        b.apply(&EscrowSync { block: 5, accounts: vec![(BOB, account(0, 0))], ..Default::default() });
        assert_eq!(b.snapshot().accounts.len(), 1);
    }
}
