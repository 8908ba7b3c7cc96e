//! Tests of the exchange: every order error leaves the state as it was, fills
//! conserve money, risk limits widen and halt, and random histories keep every
//! invariant and replay identically.

use super::*;
use crate::code::Code;
use crate::escrow::{EscrowAccount, EscrowSync, NonceCancel};
use crate::event::Event;
use crate::fill::FillStatus;
use crate::market_key::MarketKey;
use crate::money::Amount;
use crate::money::ONE_PAT;
use crate::order::HaltReason;
use crate::order::LimitScope;
use crate::order::OrderError;
use crate::payout::Payout;
use crate::segment::SubmitError;
use crate::state::{FillStateError, ProviderRecord, ReconfigureError};
use crate::testing::{self, CONSUMER_KEY, PROVIDER_KEY, T0, key, signed_order, signed_segment};
use alloy_primitives::{Address, B256, U256};
use proptest::prelude::*;

const NOW: TimeMs = T0 * 1000;

fn purchase_7d() -> MarketKey {
    "PURCHASE_INTENT|7D|0.70-0.85".parse().unwrap()
}

/// An exchange with `units` listed in PURCHASE_INTENT|7D|0.70-0.85 by each of
/// `providers` providers (in up to 250 segments each: a fill takes one unit of
/// each segment it draws), quoted at `NOW`.
fn stocked(providers: u8, units: u32) -> Exchange {
    let mut ex = Exchange::new(testing::shared_config());
    for p in 0..providers {
        let segments = units.min(250);
        for s in 0..segments {
            let size = units / segments + u32::from(s < units % segments);
            let payload = testing::payload_salted(2 + p as usize, u64::from(s));
            let signed = signed_segment(&key(10 + p), "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, size, &payload);
            ex.state.submit_segment(&signed, NOW).unwrap();
        }
    }
    ex.tick(NOW, &mut Vec::new());
    ex
}

fn ask(ex: &Exchange) -> Amount {
    ex.quote(ex.state.catalogue().by_key(&purchase_7d()).unwrap()).ask
}

#[test]
fn a_fill_moves_money_exactly_and_settles() {
    let mut ex = stocked(3, 10);
    let a = ask(&ex);
    let (fill, event) = ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), 4, a, 1, T0 + 60), NOW).unwrap();
    assert_eq!(event, Event::FillAccepted(fill.clone()));
    fill.check_invariants();
    assert_eq!(fill.ask_paid, 4 * a);
    assert!(fill.bid < a && fill.broker_spread == 4 * (a - fill.bid));
    let id = ex.state.catalogue().by_key(&purchase_7d()).unwrap();
    assert_eq!(ex.state.market(id).supply_units(), 26);
    assert_eq!(ex.state.market(id).stats().exposure, fill.ask_paid);
    assert_eq!(ex.state.registry().group_exposure_of(id), fill.ask_paid);
    ex.state.check_invariants();
    let at_ms = fill.accepted_at_ms + 5_000;
    assert_eq!(ex.state.settle(&fill.fill_id, at_ms), Ok(Event::FillSettled { fill_id: fill.fill_id, at_ms }));
    assert_eq!(ex.state.market(id).stats().exposure, 0);
    let settled = FillStatus::Settled { tx_hash: None, at_ms };
    assert_eq!(ex.state.settle(&fill.fill_id, at_ms), Err(FillStateError::NotAccepted(fill.fill_id, settled)));
    assert_eq!(ex.state.settle(&B256::ZERO, at_ms), Err(FillStateError::UnknownFill(B256::ZERO)));
    ex.state.check_invariants();
}

/// Units of one fill come from distinct segments, and a consumer is never
/// given a segment it holds: its supply is the segments it does not hold.
/// A failed fill gives its segments back.
#[test]
fn a_consumer_never_receives_a_segment_twice() {
    let mut ex = Exchange::new(testing::shared_config());
    for s in 0..3 {
        let payload = testing::payload_salted(2, s);
        let signed = signed_segment(&PROVIDER_KEY, "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 5, &payload);
        ex.state.submit_segment(&signed, NOW).unwrap();
    }
    ex.tick(NOW, &mut Vec::new());
    let a = ask(&ex);
    let buy = |ex: &mut Exchange, who: u8, qty: u64, nonce: u64| {
        ex.submit_order(signed_order(&key(who), &purchase_7d(), qty, a, nonce, T0 + 60), NOW + nonce)
    };
    let first = buy(&mut ex, 40, 2, 1).unwrap().0;
    let segments = |f: &Fill| f.allocations.iter().map(|x| x.segment).collect::<Vec<_>>();
    assert_eq!(first.allocations.len(), 2, "two distinct segments: {:?}", first.allocations);
    let second = buy(&mut ex, 40, 1, 2).unwrap().0;
    assert!(!segments(&first).contains(&segments(&second)[0]), "not one it holds");
    let before = ex.clone();
    let err = buy(&mut ex, 40, 1, 3).unwrap_err();
    assert_eq!(err, OrderError::InsufficientSupply { requested: 1, available: 0 });
    assert_eq!(ex, before, "refused, nothing changed");
    assert_eq!(buy(&mut ex, 41, 3, 4).unwrap().0.allocations.len(), 3, "another consumer buys all three");
    ex.state.fail(&first.fill_id, "rejected", NOW + 10).unwrap();
    let again = buy(&mut ex, 40, 2, 5).unwrap().0;
    assert_eq!(segments(&again), segments(&first), "a failed fill's segments can be bought again");
    ex.state.check_invariants();
}

#[test]
fn a_failed_fill_returns_units_and_refunds() {
    let mut ex = stocked(2, 5);
    let (fill, _) = ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), 3, ask(&ex), 1, T0 + 60), NOW).unwrap();
    let event = ex.state.fail(&fill.fill_id, "insufficient escrow", NOW + 1).unwrap();
    let reason = "insufficient escrow".to_owned();
    assert_eq!(event, Event::FillFailed { fill_id: fill.fill_id, reason, at_ms: NOW + 1 });
    let id = ex.state.catalogue().by_key(&purchase_7d()).unwrap();
    assert_eq!(ex.state.market(id).supply_units(), 10);
    assert_eq!(ex.state.registry().ledger().refunds, fill.ask_paid);
    assert_eq!((ex.state.registry().ledger().provider_credits, ex.state.registry().ledger().broker_revenue), (0, 0));
    assert!(matches!(ex.state.registry().fill(&fill.fill_id).unwrap().status, FillStatus::Failed { .. }));
    ex.state.check_invariants();
}

#[test]
fn every_order_error_changes_nothing() {
    let base = stocked(2, 5);
    let a = ask(&base);
    let market = purchase_7d();
    let order = |qty: u64, max: Amount, nonce: u64, deadline: u64| {
        signed_order(&CONSUMER_KEY, &market, qty, max, nonce, deadline)
    };
    // A used nonce needs one accepted fill first.
    let mut used = base.clone();
    used.submit_order(order(1, a, 9, T0 + 60), NOW).unwrap();

    let mut tampered = order(1, a, 1, T0 + 60);
    tampered.order.qty = U256::from(2);
    let mut unknown = order(1, a, 1, T0 + 60);
    unknown.order.market = B256::repeat_byte(7);
    let unknown =
        crate::signing::sign_order(&testing::signer(&CONSUMER_KEY), unknown.order, base.state.catalogue().domain());
    let cases: Vec<(Exchange, SignedOrder, TimeMs, &str)> = vec![
        (base.clone(), tampered, NOW, "bad_signature"),
        (base.clone(), unknown, NOW, "unknown_market"),
        (base.clone(), order(1, a, 1, T0 - 1), NOW, "expired"),
        (used.clone(), order(1, a, 9, T0 + 60), NOW, "nonce_used"),
        (base.clone(), order(0, a, 1, T0 + 60), NOW, "invalid_quantity"),
        (base.clone(), order(10_001, a, 1, T0 + 60), NOW, "invalid_quantity"),
        (Exchange::new(testing::shared_config()), order(1, a, 1, T0 + 60), NOW, "market_halted"),
        (base.clone(), order(1, a, 1, T0 + 60), NOW + 1_001, "quote_stale"),
        (base.clone(), order(1, a - 1, 1, T0 + 60), NOW, "price_above_max"),
        (base.clone(), order(11, a, 1, T0 + 60), NOW, "insufficient_supply"),
    ];
    for (mut ex, signed, now, code) in cases {
        let before = ex.clone();
        let err = ex.submit_order(signed, now).unwrap_err();
        assert_eq!(err.code().as_str(), code, "{err}");
        assert_eq!(ex, before, "{code} changed the state");
    }
    let mut paused = base.clone();
    paused.state.set_paused(true);
    let before = paused.clone();
    assert_eq!(paused.submit_order(order(1, a, 1, T0 + 60), NOW), Err(OrderError::Paused));
    assert_eq!(paused, before);
}

/// With escrow required, a consumer the chain never showed funded takes nothing (no
/// unit, no exposure, no quote change); a funded one takes what its free escrow covers,
/// less what its unsettled fills and requested withdrawal hold; a settlement frees
/// nothing until a sync shows it, since the synced escrow still counts its ask.
#[test]
fn orders_are_held_to_free_escrow() {
    let mut ex = stocked(3, 10);
    ex.state.require_escrow(true);
    let a = ask(&ex);
    let id = ex.state.catalogue().by_key(&purchase_7d()).unwrap();
    let consumer = testing::signer(&CONSUMER_KEY).address();
    let order = |qty: u64, nonce: u64| signed_order(&CONSUMER_KEY, &purchase_7d(), qty, a, nonce, T0 + 60);
    let before = (ex.state.snapshot(), ex.quote(id));
    let err = ex.submit_order(order(2, 1), NOW).unwrap_err();
    assert_eq!(err, OrderError::InsufficientEscrow { needed: 2 * a, free: 0 });
    assert_eq!(err.code(), Code::InsufficientEscrow);
    assert_eq!(err.code().status(), 422);
    let mut changed = Vec::new();
    ex.tick(NOW, &mut changed);
    assert!(changed.is_empty() && (ex.state.snapshot(), ex.quote(id)) == before, "nothing reserved, nothing requoted");

    // Funded for 5 units with 1 unit's worth being withdrawn: 4 units free.
    let account = EscrowAccount { escrow: 5 * a, withdrawing: a };
    let sync = |block, settled: Vec<B256>, escrow| EscrowSync {
        block,
        accounts: vec![(consumer, EscrowAccount { escrow, withdrawing: a })],
        settled,
        cancelled: Vec::new(),
    };
    assert!(ex.state.sync_escrow(sync(3, Vec::new(), account.escrow)).is_some());
    let (fill, _) = ex.submit_order(order(3, 1), NOW).unwrap();
    assert_eq!(ex.state.registry().escrow().view(&consumer).free, a);
    assert_eq!(
        ex.submit_order(order(2, 2), NOW).unwrap_err(),
        OrderError::InsufficientEscrow { needed: 2 * a, free: a }
    );
    // Settled on chain: still held until a sync shows it, then the escrow is lower by its ask.
    ex.state.settle(&fill.fill_id, NOW + 1_000).unwrap();
    assert_eq!(ex.state.registry().escrow().view(&consumer).free, a);
    ex.state.sync_escrow(sync(4, vec![fill.fill_id], 2 * a)).unwrap();
    assert_eq!(ex.state.registry().escrow().view(&consumer).free, a);
    let (second, _) = ex.submit_order(order(1, 2), NOW).unwrap();
    // A failed fill frees its ask at once.
    ex.state.fail(&second.fill_id, "rejected", NOW + 2_000).unwrap();
    assert_eq!(ex.state.registry().escrow().view(&consumer).free, a);
    ex.state.check_invariants();
}

/// A nonce the consumer cancelled on chain is refused before anything else about the order.
#[test]
fn a_nonce_cancelled_on_chain_is_refused() {
    let mut ex = stocked(2, 10);
    let consumer = testing::signer(&CONSUMER_KEY).address();
    let cancelled = NonceCancel { consumer, word: U256::from(1), mask: 1 << 2 };
    ex.state.sync_escrow(EscrowSync { block: 1, cancelled: vec![cancelled], ..EscrowSync::default() }).unwrap();
    let a = ask(&ex);
    let err = ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), 1, a, 66, T0 + 60), NOW).unwrap_err();
    assert_eq!(err, OrderError::NonceInvalidated { consumer, nonce: U256::from(66) });
    assert_eq!((err.code(), err.code().status()), (Code::NonceInvalidated, 409));
    assert!(ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), 1, a, 65, T0 + 60), NOW).is_ok());
    // An empty read moves how far the chain was read, and journals nothing.
    assert_eq!(ex.state.sync_escrow(EscrowSync { block: 9, ..EscrowSync::default() }), None);
    assert_eq!(ex.state.registry().escrow().followed_block(), 9);
}

#[test]
fn exposure_limits_widen_then_halt() {
    let mut ex = stocked(4, 1_000);
    let id = ex.state.catalogue().by_key(&purchase_7d()).unwrap();
    let calm_spread = ex.quote(id).spread_bps;
    let a = ask(&ex);
    // Up to the soft limit (500 PAT) then past it.
    let qty = (600 * ONE_PAT / a) as u64;
    ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), qty, a, 1, T0 + 60), NOW).unwrap();
    ex.tick(NOW + 100, &mut Vec::new());
    assert!(ex.quote(id).spread_bps > calm_spread, "soft limit widens the spread");
    // An order that would cross the hard limit (1000 PAT) is refused...
    let a = ask(&ex);
    let big = (500 * ONE_PAT / a) as u64;
    let before = ex.clone();
    let err = ex.submit_order(signed_order(&key(31), &purchase_7d(), big, a, 2, T0 + 60), NOW + 100).unwrap_err();
    assert!(matches!(err, OrderError::ExposureLimit { scope: LimitScope::Market, .. }), "{err}");
    assert_eq!(ex, before);
    // ...and at the hard limit the market stops quoting.
    let fill_to_limit = ((1_000 * ONE_PAT - ex.state.market(id).stats().exposure) / a) as u64;
    ex.submit_order(signed_order(&key(32), &purchase_7d(), fill_to_limit, a, 3, T0 + 60), NOW + 100).unwrap();
    let rest = 1_000 * ONE_PAT - ex.state.market(id).stats().exposure;
    assert!(rest < a);
    ex.tick(NOW + 200, &mut Vec::new());
    // Not at the hard limit by less than one unit: still quoting but refusing any order.
    let err =
        ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), 1, u128::MAX, 4, T0 + 60), NOW + 200).unwrap_err();
    assert_eq!(err.code(), Code::ExposureLimit);
    ex.state.check_invariants();
}

#[test]
fn hard_limits_halt_quoting_and_group_limits_span_bands() {
    let mut cfg = testing::config();
    cfg.risk.market_hard = 10 * ONE_PAT;
    cfg.risk.market_soft = 5 * ONE_PAT;
    cfg.risk.group_hard = 15 * ONE_PAT;
    cfg.risk.group_soft = 10 * ONE_PAT;
    let mut ex = Exchange::new(Arc::new(cfg));
    let high: MarketKey = "PURCHASE_INTENT|7D|0.85-1.00".parse().unwrap();
    for (i, conf) in [(0u8, 8000u16), (1, 9000)] {
        for s in 0..20 {
            let payload = testing::payload_salted(3 + i as usize, s);
            let signed = signed_segment(&key(20 + i), "PURCHASE_INTENT", "7D", conf, T0 - 3600, T0, 5, &payload);
            ex.state.submit_segment(&signed, NOW).unwrap();
        }
    }
    ex.tick(NOW, &mut Vec::new());
    let id = ex.state.catalogue().by_key(&purchase_7d()).unwrap();
    let a = ex.quote(id).ask;
    let qty = (10 * ONE_PAT / a) as u64;
    ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), qty, a, 1, T0 + 60), NOW).unwrap();
    // Fill the rest of the market limit exactly is impossible on ticks; push the group instead.
    let hid = ex.state.catalogue().by_key(&high).unwrap();
    let ha = ex.quote(hid).ask;
    let room = 15 * ONE_PAT - ex.state.registry().group_exposure_of(hid);
    let err =
        ex.submit_order(signed_order(&CONSUMER_KEY, &high, (room / ha) as u64 + 1, ha, 2, T0 + 60), NOW).unwrap_err();
    assert!(matches!(err, OrderError::ExposureLimit { scope: LimitScope::Group, .. }), "{err}");
    // Lower the hard limit to what is already exposed: the tick halts the market.
    let mut cfg = testing::config();
    cfg.risk.market_hard = ex.state.market(id).stats().exposure;
    cfg.risk.market_soft = cfg.risk.market_hard / 2;
    ex.state.reconfigure(Arc::new(cfg)).unwrap();
    let mut changed = Vec::new();
    ex.tick(NOW + 100, &mut changed);
    assert!(changed.contains(&id));
    assert_eq!(ex.quote(id).halted, Some(HaltReason::MarketExposure));
    let err =
        ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), 1, u128::MAX, 3, T0 + 60), NOW + 100).unwrap_err();
    assert_eq!(err, OrderError::MarketHalted(HaltReason::MarketExposure));
}

#[test]
fn seq_moves_only_when_the_quote_changes() {
    let mut ex = stocked(2, 50);
    let id = ex.state.catalogue().by_key(&purchase_7d()).unwrap();
    let seq = ex.quote(id).seq;
    let mut changed = Vec::new();
    ex.tick(NOW + 1, &mut changed);
    assert!(!changed.contains(&id));
    assert_eq!(ex.quote(id).seq, seq);
    assert_eq!(ex.quote(id).valid_until_ms, NOW + 1 + 1_000);
    ex.submit_order(signed_order(&CONSUMER_KEY, &purchase_7d(), 20, u128::MAX, 1, T0 + 60), NOW + 1).unwrap();
    ex.tick(NOW + 2, &mut changed);
    assert!(changed.contains(&id));
    assert_eq!(ex.quote(id).seq, seq + 1);
    ex.state.set_paused(true);
    ex.tick(NOW + 3, &mut changed);
    assert_eq!(ex.quote(id).halted, Some(HaltReason::Paused));
    assert_eq!(ex.quote(id).seq, seq + 2);
}

#[test]
fn expiry_removes_unsold_units_at_window_end() {
    let mut ex = stocked(2, 5);
    let id = ex.state.catalogue().by_key(&purchase_7d()).unwrap();
    let end = (T0 - 3600 + 7 * 86_400) * 1000;
    assert_eq!(ex.state.expire(end - 1), None);
    assert_eq!(ex.state.expire(end), Some(Event::UnitsExpired { at_ms: end }));
    assert_eq!(ex.state.market(id).supply_units(), 0);
    assert_eq!(ex.state.market(id).counters().expired, 10);
    ex.state.check_invariants();
}

#[test]
fn duplicate_payloads_are_refused_and_count_against_reliability() {
    let mut ex = Exchange::new(testing::shared_config());
    let payload = testing::payload(3);
    let signed = signed_segment(&PROVIDER_KEY, "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 5, &payload);
    ex.state.submit_segment(&signed, NOW).unwrap();
    let again = signed_segment(&PROVIDER_KEY, "PURCHASE_INTENT", "1D", 8000, T0 - 3600, T0, 5, &payload);
    let err = ex.state.submit_segment(&again, NOW).unwrap_err();
    assert_eq!(err.error, SubmitError::DuplicatePayload(alloy_primitives::keccak256(&payload)));
    let provider = testing::signer(&PROVIDER_KEY).address();
    assert_eq!(err.event(), Some(Event::SubmissionRefused { provider }));
    assert_eq!(ex.state.registry().segments().len(), 1);
    assert_eq!(ex.state.registry().provider(&provider), ProviderRecord { accepted: 1, rejected: 1 });
    let next = testing::payload(4);
    let third = signed_segment(&PROVIDER_KEY, "PURCHASE_INTENT", "7D", 8000, T0 - 3600, T0, 5, &next);
    let (listed, event) = ex.state.submit_segment(&third, NOW).unwrap();
    assert_eq!(event, Event::SegmentListed(listed.clone()));
    assert_eq!(ex.state.registry().segment(listed.id).unwrap().quality.reliability, 5_000);
}

/// Histories touch the first markets of the catalogue: PURCHASE_INTENT's
/// 1D and 7D windows, all bands (substitutes of each other).
const MARKETS: usize = 6;

/// One step of a random history.
#[derive(Debug, Clone)]
enum Op {
    Submit {
        provider: u8,
        market: usize,
        units: u32,
        age_secs: u64,
        signals: usize,
    },
    Order {
        consumer: u8,
        market: usize,
        qty: u64,
        slack_bps: u32,
    },
    Tick,
    Advance {
        secs: u64,
    },
    Settle {
        pick: usize,
    },
    Fail {
        pick: usize,
    },
    Expire,
    ExpireMarket {
        market: usize,
    },
    Pause(bool),
    Phase(u8),
    HalfLife {
        secs: u32,
    },
    /// The chain shows `consumer`'s escrow (whole PAT) and every settlement not seen yet;
    /// with `ahead`, also an open fill's (the follower read it before clearing recorded it).
    Sync {
        consumer: u8,
        escrow_pat: u32,
        ahead: Option<usize>,
    },
    /// A mined payout of every provider owed at least `threshold_pat` (at most `max`);
    /// with `resend`, the same statement is mined again (a retry after a restart).
    Payout {
        threshold_pat: u32,
        max: usize,
        resend: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6, 0usize..MARKETS, 1u32..40, 0u64..2 * 86_400, 1usize..5)
            .prop_map(|(provider, market, units, age_secs, signals)| Op::Submit { provider, market, units, age_secs, signals }),
        4 => (0u8..12, 0usize..MARKETS, 1u64..5, 0u32..300)
            .prop_map(|(consumer, market, qty, slack_bps)| Op::Order { consumer, market, qty, slack_bps }),
        2 => Just(Op::Tick),
        2 => (1u64..20_000).prop_map(|secs| Op::Advance { secs }),
        2 => any::<usize>().prop_map(|pick| Op::Settle { pick }),
        1 => any::<usize>().prop_map(|pick| Op::Fail { pick }),
        1 => Just(Op::Expire),
        1 => (0usize..MARKETS).prop_map(|market| Op::ExpireMarket { market }),
        1 => prop_oneof![3 => Just(false), 1 => Just(true)].prop_map(Op::Pause),
        1 => (1u8..=5).prop_map(Op::Phase),
        1 => (60u32..20_000).prop_map(|secs| Op::HalfLife { secs }),
        2 => (0u8..12, prop_oneof![1 => Just(0u32), 2 => 1u32..20, 2 => 20u32..2_000], prop::option::of(any::<usize>()))
            .prop_map(|(consumer, escrow_pat, ahead)| Op::Sync { consumer, escrow_pat, ahead }),
        1 => (0u32..3, 1usize..6, any::<bool>()).prop_map(|(threshold_pat, max, resend)| Op::Payout { threshold_pat, max, resend }),
    ]
}

/// Runs a history; returns the exchange, every fill, every quote change,
/// every event the engine made (what the runtime journals) and how many
/// orders free escrow did not cover.
fn run(ops: &[Op]) -> (Exchange, Vec<Fill>, Vec<Quote>, Vec<Event>, usize) {
    let cfg = testing::shared_config();
    let keys = cfg.market_keys();
    let mut ex = Exchange::new(cfg);
    // Orders are held to escrow: every consumer starts funded, and syncs change that.
    ex.state.require_escrow(true);
    let funded = |c: u8| {
        (testing::signer(&testing::key(200 + c)).address(), EscrowAccount { escrow: 1_000 * ONE_PAT, withdrawing: 0 })
    };
    let mut events: Vec<Event> = ex
        .state
        .sync_escrow(EscrowSync { block: 0, accounts: (0..12).map(funded).collect(), ..EscrowSync::default() })
        .into_iter()
        .collect();
    let (mut now, mut nonce, mut fills, mut quotes, mut open) = (NOW, 0u64, Vec::new(), Vec::new(), Vec::<B256>::new());
    // Settled fills no sync has shown yet: they still hold their ask.
    let (mut unseen, mut block, mut refused) = (Vec::<B256>::new(), 0u64, 0usize);
    // Fills the chain showed settled before the engine recorded it.
    let mut early = Vec::<B256>::new();
    let mut changed = Vec::new();
    let mut seq = 0u64;
    for op in ops {
        match *op {
            Op::Submit { provider, market, units, age_secs, signals } => {
                let key = &keys[market];
                let conf = key.band.lo() + 1;
                let now_s = now / 1000;
                seq += 1;
                let payload = testing::payload_salted(signals, seq);
                let signed = signed_segment(
                    &testing::key(100 + provider),
                    key.segment_type.as_str(),
                    &key.window.to_string(),
                    conf,
                    now_s - age_secs,
                    now_s,
                    units,
                    &payload,
                );
                match ex.state.submit_segment(&signed, now) {
                    Ok((_, event)) => events.push(event),
                    Err(refusal) => {
                        assert_eq!(refusal.error.code(), Code::WindowEnded, "{refusal}");
                        events.push(refusal.event().expect("a validly signed refusal is journaled"));
                    }
                }
            }
            Op::Order { consumer, market, qty, slack_bps } => {
                // The runtime ticks every 100 ms: orders meet a fresh quote.
                changed.clear();
                ex.tick(now, &mut changed);
                quotes.extend(changed.iter().map(|&id| ex.quote(id)));
                nonce += 1;
                let quote = ex.quote(MarketId(market as u32));
                let max = quote.ask + quote.ask * slack_bps as u128 / 10_000;
                let signed =
                    signed_order(&testing::key(200 + consumer), &keys[market], qty, max, nonce, now / 1000 + 60);
                let before = ex.state.snapshot();
                match ex.submit_order(signed, now) {
                    Ok((fill, event)) => {
                        open.push(fill.fill_id);
                        events.push(event);
                        fills.push(fill);
                    }
                    Err(e) => {
                        refused += usize::from(e.code() == Code::InsufficientEscrow);
                        assert!(ex.state.snapshot() == before, "a refused order changes nothing: {e}");
                    }
                }
            }
            Op::Tick => {
                changed.clear();
                ex.tick(now, &mut changed);
                quotes.extend(changed.iter().map(|&id| ex.quote(id)));
            }
            Op::Advance { secs } => now += secs * 1000,
            Op::Settle { pick } if !open.is_empty() => {
                let id = open.swap_remove(pick % open.len());
                if pick % 2 == 0 {
                    events.push(ex.state.record_submission([id], alloy_primitives::keccak256(id)));
                }
                events.push(ex.state.settle(&id, now).unwrap());
                if !early.contains(&id) {
                    unseen.push(id);
                }
            }
            Op::Fail { pick } if !open.is_empty() => {
                let id = open.swap_remove(pick % open.len());
                events.push(ex.state.fail(&id, "rejected", now).unwrap());
            }
            Op::Settle { .. } | Op::Fail { .. } => {}
            Op::Expire => events.extend(ex.state.expire(now)),
            Op::ExpireMarket { market } => events.extend(ex.state.expire_market(MarketId(market as u32), now)),
            Op::Pause(paused) => events.push(ex.state.set_paused(paused)),
            // Backwards or past 4 is refused, with no event.
            Op::Phase(phase) => events.extend(ex.state.set_phase(phase).ok()),
            Op::HalfLife { secs } => {
                let mut cfg = ex.state.registry().config().clone();
                cfg.pricing.rate_half_life_secs = f64::from(secs);
                events.push(ex.state.reconfigure(Arc::new(cfg)).unwrap());
            }
            Op::Sync { consumer, escrow_pat, ahead } => {
                block += 1;
                let address = testing::signer(&testing::key(200 + consumer)).address();
                let account = EscrowAccount { escrow: u128::from(escrow_pat) * 10u128.pow(18), withdrawing: 0 };
                let mut settled = std::mem::take(&mut unseen);
                if let Some(pick) = ahead.filter(|_| !open.is_empty()) {
                    // Seen settled on chain while still open here: its hold goes now, and
                    // the engine records the settlement later.
                    let id = open[pick % open.len()];
                    settled.push(id);
                    early.push(id);
                }
                let sync = EscrowSync { block, accounts: vec![(address, account)], settled, cancelled: Vec::new() };
                events.extend(ex.state.sync_escrow(sync));
            }
            Op::Payout { threshold_pat, max, resend } => {
                let due = ex.state.registry().payouts().due(u128::from(threshold_pat) * ONE_PAT, max);
                if due.is_empty() {
                    continue;
                }
                let (settled, paid) = ex.state.registry().payouts().totals();
                let stated: Amount =
                    due.iter().map(|e| e.cumulative - ex.state.registry().payouts().account(&e.provider).paid).sum();
                let payout = Payout { tx_hash: B256::repeat_byte(block as u8), entries: due };
                events.push(ex.state.record_payout(payout.clone()).unwrap());
                assert_eq!(ex.state.registry().payouts().totals(), (settled, paid + stated), "paid what was owed");
                if resend {
                    let before = ex.state.snapshot();
                    events.push(ex.state.record_payout(payout.clone()).unwrap());
                    assert!(ex.state.snapshot() == before, "a statement mined twice pays nothing twice");
                }
                // A statement above a provider's settled credits is not the engine's: refused, nothing changed.
                let mut over = payout;
                over.entries[0].cumulative += 1;
                let before = ex.state.snapshot();
                assert!(ex.state.record_payout(over).is_err());
                assert!(ex.state.snapshot() == before, "a refused payout changes nothing");
            }
        }
        ex.state.check_invariants();
        // A fill holds its ask while open or settled unseen, and nothing once it failed or was seen.
        for f in &fills {
            let status = &ex.state.registry().fill(&f.fill_id).unwrap().status;
            let open = matches!(status, FillStatus::Accepted | FillStatus::Submitted { .. });
            let holds = !early.contains(&f.fill_id) && (open || unseen.contains(&f.fill_id));
            assert_eq!(ex.state.registry().escrow().hold_of(&f.fill_id).is_some(), holds, "{status:?}");
        }
    }
    (ex, fills, quotes, events, refused)
}

fn histories() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..120)
}

/// The generator reaches every path: fills, settlements, failures, expiry,
/// and every kind of event.
#[test]
fn random_histories_exercise_every_path() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut fills, mut refunds, mut settled, mut expired, mut uncovered) = (0, 0, 0, 0, 0);
    let mut kinds = std::collections::BTreeSet::new();
    for _ in 0..64 {
        let ops = histories().new_tree(&mut runner).unwrap().current();
        let (ex, f, _, events, refused) = run(&ops);
        uncovered += refused;

        kinds.extend(events.iter().map(Event::kind));
        fills += f.len();
        refunds += ex.state.registry().ledger().refunds;
        settled += f
            .iter()
            .filter(|f| matches!(ex.state.registry().fill(&f.fill_id).unwrap().status, FillStatus::Settled { .. }))
            .count();
        expired += ex.state.markets().iter().map(|m| m.counters().expired).sum::<u64>();
    }
    assert!(
        fills > 50 && refunds > 0 && settled > 10 && expired > 0 && uncovered > 5,
        "{fills} {refunds} {settled} {expired} {uncovered}"
    );
    assert_eq!(kinds.len(), Event::KINDS.len(), "{kinds:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Over any history: money is conserved, units are accounted for, and a
    /// replay gives the same quotes, fills and state.
    #[test]
    fn random_histories_conserve_and_replay(ops in histories()) {
        let (ex, fills, quotes, events, _) = run(&ops);
        let ledger = ex.state.registry().ledger();
        prop_assert_eq!(ledger.consumer_debits, ledger.provider_credits + ledger.broker_revenue + ledger.refunds);
        // Providers are owed exactly the credits of settled fills, less what payouts paid them.
        let settled_credits: Amount = fills
            .iter()
            .filter(|f| matches!(ex.state.registry().fill(&f.fill_id).unwrap().status, FillStatus::Settled { .. }))
            .map(|f| f.bid_credited)
            .sum();
        let (settled, paid) = ex.state.registry().payouts().totals();
        prop_assert_eq!(settled, settled_credits);
        prop_assert!(paid <= settled);
        let debits: Amount = fills.iter().map(|f| f.ask_paid).sum();
        prop_assert_eq!(debits, ledger.consumer_debits);
        for m in ex.state.markets() {
            let c = m.counters();
            prop_assert_eq!(c.listed, c.sold + c.expired + m.supply_units());
        }
        for q in &quotes {
            if q.halted.is_none() {
                prop_assert!(q.bid <= q.price && q.price <= q.ask);
            }
        }
        let (again, fills_again, quotes_again, _, _) = run(&ops);
        prop_assert_eq!(fills, fills_again);
        prop_assert_eq!(quotes, quotes_again);
        prop_assert!(ex == again);
        // Applying the recorded events to a fresh exchange (journal replay),
        // or to a snapshot taken at any point, rebuilds the same state.
        let state = ex.state.snapshot();
        let mut replayed = Exchange::new(testing::shared_config());
        let cut = events.len() / 2;
        for e in &events[..cut] {
            replayed.state.apply(e.clone()).unwrap();
        }
        let mut resumed = Exchange::from_snapshot(replayed.state.snapshot());
        for e in &events[cut..] {
            replayed.state.apply(e.clone()).unwrap();
            resumed.state.apply(e.clone()).unwrap();
        }
        prop_assert_eq!(&replayed.state.snapshot(), &state);
        prop_assert_eq!(&resumed.state.snapshot(), &state);
        resumed.state.check_invariants();
    }
}

#[test]
fn reconfigure_changes_prices_live_but_not_the_catalogue() {
    let mut ex = stocked(2, 50);
    let id = ex.state.catalogue().by_key(&purchase_7d()).unwrap();
    let before = ex.quote(id);
    let mut cfg = testing::config();
    cfg.spread.base_bps += 300;
    cfg.spread.min_bps += 300;
    ex.state.reconfigure(Arc::new(cfg)).unwrap();
    let mut changed = Vec::new();
    ex.tick(NOW + 100, &mut changed);
    assert!(changed.contains(&id));
    assert!(ex.quote(id).spread_bps >= before.spread_bps + 300);
    let mut fewer = testing::config();
    fewer.bands.pop();
    let snapshot = ex.clone();
    assert_eq!(ex.state.reconfigure(Arc::new(fewer)), Err(ReconfigureError::CatalogueChanged));
    let mut moved = testing::config();
    moved.marketplace = Address::repeat_byte(9);
    assert_eq!(ex.state.reconfigure(Arc::new(moved)), Err(ReconfigureError::DomainChanged));
    assert_eq!(ex, snapshot);
}
