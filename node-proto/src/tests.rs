use super::*;
use crate::peering::{PeerKey, Verdict};
use dag_core::codec;
use dag_core::ledger::ConflictReason;
use dag_core::ledger::Ledger;
use dag_core::store::PayloadStatus;
use dag_core::{
    pow, Address, Body, Genesis, Keypair, Payload, PayloadId, SignedPayload, TangleView,
    Transaction, TxId, TX_VERSION,
};
use dag_core::{Allocation, Digest};
use hashbrown::{HashMap, HashSet};

const T0: u64 = 1_700_000_000_000;

struct Net {
    genesis: Genesis,
    committee: Keypair,
    faucet: Keypair,
}

fn net() -> Net {
    let committee = Keypair::from_seed(&[1; 32]);
    let faucet = Keypair::from_seed(&[2; 32]);
    let genesis = Genesis {
        network_name: "proto-test".into(),
        timestamp: T0,
        pow_difficulty: 2,
        timestamp_window_ms: 60_000,
        committee: vec![committee.address()],
        threshold: 1,
        allocations: vec![Allocation {
            address: faucet.address(),
            amount: 1_000_000,
        }],
    };
    Net {
        genesis,
        committee,
        faucet,
    }
}

fn node(n: &Net, issuer: bool) -> Protocol {
    let config = ProtocolConfig {
        milestone_signer: issuer.then(|| (0, n.committee.clone())),
        faucet: Some(n.faucet.clone()),
        ..ProtocolConfig::default()
    };
    Protocol::new(
        n.genesis.clone(),
        config,
        Ledger::from_genesis(&n.genesis).unwrap(),
    )
    .unwrap()
}

/// What the driver does for local payloads, on the calling thread.
fn submit(p: &mut Protocol, payloads: Vec<SignedPayload>, now: u64) -> Vec<Result<TxId, String>> {
    p.submit_payloads_inline(payloads, now)
        .into_iter()
        .map(|r| r.map(|s| s.tx).map_err(|e| e.to_string()))
        .collect()
}

/// What the driver's timer does: tick, then the work the tick started.
fn tick(p: &mut Protocol, now: u64) {
    p.handle_tick(now);
    p.run_work_inline();
}

fn drain(p: &mut Protocol) -> (Vec<StoreWrite>, Vec<Event>) {
    let mut w = Vec::new();
    while let Some(x) = p.poll_store_write() {
        w.push(x);
    }
    let mut e = Vec::new();
    while let Some(x) = p.poll_event() {
        e.push(x);
    }
    (w, e)
}

fn pay(from: &Keypair, net_id: u64, seq: u64, to: Address, amount: u64) -> SignedPayload {
    SignedPayload::sign(
        from,
        net_id,
        seq,
        Body::Pay {
            to,
            amount,
            memo: vec![],
        },
    )
}

#[test]
fn payments_confirm_with_exact_balances_and_sequence_kept() {
    let n = net();
    let mut p = node(&n, true);
    let id = p.network_id();
    let alice = Keypair::from_seed(&[10; 32]).address();
    // Ten sequential payments from the faucet in one milestone: chaining each to the
    // previous keeps them in seq order in the white-flag walk, so all apply.
    let payloads: Vec<_> = (0..10)
        .map(|s| pay(&n.faucet, id, s, alice, 100 + s))
        .collect();
    for r in submit(&mut p, payloads, T0 + 10) {
        r.unwrap();
    }
    tick(&mut p, T0 + 2000);
    let (writes, events) = drain(&mut p);
    assert_eq!(p.ledger().confirmed_index(), 1);
    let expected: u64 = (0..10).map(|s| 100 + s).sum();
    assert_eq!(p.ledger().balance(&alice), expected);
    assert_eq!(
        p.ledger().balance(&n.faucet.address()),
        1_000_000 - expected
    );
    assert_eq!(p.ledger().next_seq(&n.faucet.address()), 10);
    let batch = writes
        .iter()
        .find_map(|w| match w {
            StoreWrite::Milestone(b) => Some(b),
            _ => None,
        })
        .expect("a milestone batch");
    assert_eq!(batch.record.index, 1);
    assert_eq!(batch.record.ledger_digest, p.ledger().digest());
    // 10 payments + the milestone transaction itself.
    assert_eq!(batch.confirmed.len(), 11);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Milestone(s) if s.applied == 10)));
    assert_eq!(
        p.own_pending(),
        0,
        "confirmed payloads are no longer kept alive"
    );
}

#[test]
fn double_spend_confirms_once_and_replay_is_refused() {
    let n = net();
    let mut p = node(&n, true);
    let id = p.network_id();
    let a = Keypair::from_seed(&[11; 32]).address();
    let b = Keypair::from_seed(&[12; 32]).address();
    let first = pay(&n.faucet, id, 0, a, 600_000);
    let second = pay(&n.faucet, id, 0, b, 600_000);
    let r = submit(&mut p, vec![first.clone(), second.clone()], T0 + 1);
    assert!(r.iter().all(|r| r.is_ok()), "{r:?}");
    tick(&mut p, T0 + 1000);
    let (_, events) = drain(&mut p);
    let statuses: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Payload { payload, status } => Some((*payload, *status)),
            _ => None,
        })
        .collect();
    assert_eq!(statuses.len(), 2);
    let applied = statuses
        .iter()
        .filter(|(_, s)| matches!(s, PayloadStatus::Confirmed { .. }))
        .count();
    assert_eq!(applied, 1);
    assert!(statuses.iter().any(|(_, s)| matches!(
        s,
        PayloadStatus::Conflicting {
            reason: ConflictReason::SeqAlreadyUsed,
            ..
        }
    )));
    assert_eq!(p.ledger().balance(&a) + p.ledger().balance(&b), 600_000);
    // Replaying either after confirmation is refused up front, changing nothing.
    let digest = p.ledger().digest();
    let r = submit(&mut p, vec![first], T0 + 1500);
    assert!(r[0].as_ref().unwrap_err().contains("replay"), "{r:?}");
    assert!(p.poll_store_write().is_none());
    assert_eq!(p.ledger().digest(), digest);
}

#[test]
fn duplicate_pending_payload_and_unknown_parent_are_refused() {
    let n = net();
    let mut p = node(&n, false);
    let id = p.network_id();
    let x = pay(&n.faucet, id, 0, Address([5; 32]), 1);
    submit(&mut p, vec![x.clone()], T0)[0].as_ref().unwrap();
    let r = submit(&mut p, vec![x], T0 + 1);
    assert!(r[0].as_ref().unwrap_err().contains("already submitted"));

    let mut tx = Transaction {
        version: TX_VERSION,
        network_id: id,
        parents: [TxId([9; 32]), TxId::GENESIS],
        timestamp: T0,
        payload: Payload::Empty,
        nonce: 0,
    };
    pow::solve(&mut tx, 2);
    let vt = p.validator().validate_one(&codec::encode(&tx), T0).unwrap();
    let r = p.handle_transactions(vec![vt], Origin::Api, T0);
    assert_eq!(r[0], Err(RejectReason::UnknownParent(TxId([9; 32]))));
    assert_eq!(p.tangle().len(), 2, "root + the one payment, nothing else");
}

/// Feeds every transaction the issuer stored to a follower, in order.
fn replicate(from: &[StoreWrite], to: &mut Protocol, now: u64) {
    for w in from {
        if let StoreWrite::Transactions(txs) = w {
            let vts: Vec<_> = txs
                .iter()
                .map(|t| to.validator().validate_one(&t.bytes, now).unwrap())
                .collect();
            for r in to.handle_transactions(vts, Origin::Peer, now) {
                r.unwrap();
            }
        }
    }
}

#[test]
fn follower_applies_issuer_milestones_to_the_same_digest() {
    let n = net();
    let mut issuer = node(&n, true);
    let mut follower = node(&n, false);
    let id = issuer.network_id();
    let mut all = Vec::new();
    for round in 0..3u64 {
        let payloads: Vec<_> = (0..5)
            .map(|i| pay(&n.faucet, id, round * 5 + i, Address([i as u8 + 1; 32]), 10))
            .collect();
        submit(&mut issuer, payloads, T0 + round * 1000 + 1);
        tick(&mut issuer, T0 + (round + 1) * 1000);
        all.extend(drain(&mut issuer).0);
    }
    assert_eq!(issuer.ledger().confirmed_index(), 3);
    replicate(&all, &mut follower, T0 + 5000);
    assert_eq!(follower.halted(), None);
    assert_eq!(follower.ledger().confirmed_index(), 3);
    assert_eq!(follower.ledger().digest(), issuer.ledger().digest());
    assert_eq!(
        follower.ledger().balance(&Address([1; 32])),
        issuer.ledger().balance(&Address([1; 32]))
    );
}

/// A committee-signed milestone whose chain link, Merkle roots, state root or ledger digest
/// is not what its cone gives halts the node, and leaves its ledger as it was.
#[test]
fn a_wrong_commitment_halts_and_leaves_the_ledger_untouched() {
    let fields = [
        "follows",
        "confirmed root",
        "applied root",
        "state root",
        "ledger digest",
    ];
    for (field, expected) in fields.iter().enumerate() {
        let n = net();
        let mut issuer = node(&n, true);
        let mut follower = node(&n, false);
        let id = issuer.network_id();
        let x = pay(&n.faucet, id, 0, Address([7; 32]), 50);
        submit(&mut issuer, vec![x], T0).remove(0).unwrap();
        let (writes, _) = drain(&mut issuer);
        replicate(&writes, &mut follower, T0 + 1);
        drain(&mut follower);
        tick(&mut issuer, T0 + 1000);
        let (writes, _) = drain(&mut issuer);
        // The issuer's milestone transaction, tampered with and signed again.
        let mut tx = writes
            .iter()
            .flat_map(|w| match w {
                StoreWrite::Transactions(t) => t.clone(),
                _ => Vec::new(),
            })
            .map(|t| codec::decode(&t.bytes).unwrap())
            .find(|t| t.milestone().is_some())
            .expect("the issuer's milestone");
        // Its sweep transactions go to the follower first (they are fine).
        let sweep: Vec<StoreWrite> = writes
            .iter()
            .filter_map(|w| match w {
                StoreWrite::Transactions(t) => Some(StoreWrite::Transactions(
                    t.iter()
                        .filter(|s| codec::decode(&s.bytes).unwrap().milestone().is_none())
                        .cloned()
                        .collect(),
                )),
                _ => None,
            })
            .collect();
        replicate(&sweep, &mut follower, T0 + 1001);
        let before = follower.ledger().digest();
        let Payload::Milestone(m) = &mut tx.payload else {
            unreachable!()
        };
        let bad = Digest([0xee; 32]);
        match field {
            0 => m.previous = TxId([0xee; 32]),
            1 => m.confirmed_root = bad,
            2 => m.applied_root = bad,
            3 => m.state_root = bad,
            _ => m.ledger_digest = bad,
        }
        m.signatures.clear();
        let msg = dag_core::crypto::milestone_signing_message(id, &tx.parents, m);
        m.signatures.push((0, n.committee.sign(&msg)));
        tx.nonce = 0;
        pow::solve(&mut tx, 2);
        let vt = follower
            .validator()
            .validate_one(&codec::encode(&tx), T0 + 1001)
            .unwrap();
        follower.handle_transactions(vec![vt], Origin::Peer, T0 + 1001)[0]
            .as_ref()
            .unwrap();
        let halted = follower.halted().expect("halted").to_string();
        assert!(halted.contains(expected), "{expected}: {halted}");
        assert_eq!(follower.ledger().confirmed_index(), 0);
        assert_eq!(follower.ledger().digest(), before);
        assert_eq!(follower.ledger().balance(&Address([7; 32])), 0);
        // Halted nodes refuse new payloads with a clear reason.
        let y = pay(&n.faucet, id, 1, Address([7; 32]), 1);
        assert!(submit(&mut follower, vec![y], T0 + 1002)[0]
            .as_ref()
            .unwrap_err()
            .contains("halted"));
    }
}

#[test]
fn restore_rebuilds_confirmation_state_and_carries_on() {
    let n = net();
    let mut p = node(&n, true);
    let id = p.network_id();
    let mut stored: Vec<StoredTx> = Vec::new();
    for round in 0..2u64 {
        submit(
            &mut p,
            vec![pay(&n.faucet, id, round, Address([3; 32]), 5)],
            T0 + round * 1000 + 1,
        );
        tick(&mut p, T0 + (round + 1) * 1000);
        for w in drain(&mut p).0 {
            if let StoreWrite::Transactions(t) = w {
                stored.extend(t);
            }
        }
    }
    // One more payment, not yet confirmed when the node stops.
    submit(
        &mut p,
        vec![pay(&n.faucet, id, 2, Address([3; 32]), 5)],
        T0 + 2500,
    );
    for w in drain(&mut p).0 {
        if let StoreWrite::Transactions(t) = w {
            stored.extend(t);
        }
    }
    let state = p.ledger().to_state();
    let mut q = Protocol::new(
        n.genesis.clone(),
        ProtocolConfig {
            milestone_signer: Some((0, n.committee.clone())),
            ..ProtocolConfig::default()
        },
        Ledger::from_parts(state).unwrap(),
    )
    .unwrap();
    for t in &stored {
        assert!(q.restore_transaction(t.id, &t.bytes, &t.meta));
    }
    q.finish_restore(T0 + 2600).unwrap();
    assert_eq!(q.tangle().confirmed_milestone(), 2);
    assert_eq!(q.tangle().len(), p.tangle().len());
    tick(&mut q, T0 + 4000);
    assert_eq!(q.ledger().confirmed_index(), 3);
    assert_eq!(q.ledger().balance(&Address([3; 32])), 15);
}

/// The node stopped after storing a milestone's transactions but before its ledger batch was
/// written: on restore the milestone is applied again and its batch is handed to the driver,
/// so the stored ledger catches up (found by the crash campaign: it stayed behind for good).
#[test]
fn restore_hands_back_the_batches_of_milestones_applied_again() {
    let n = net();
    let mut p = node(&n, true);
    let id = p.network_id();
    let mut stored: Vec<StoredTx> = Vec::new();
    submit(
        &mut p,
        vec![pay(&n.faucet, id, 0, Address([3; 32]), 5)],
        T0 + 1,
    );
    tick(&mut p, T0 + 1000);
    let mut batches = 0;
    for w in drain(&mut p).0 {
        match w {
            StoreWrite::Transactions(t) => stored.extend(t),
            // The batch of milestone 1 is lost.
            StoreWrite::Milestone(_) => batches += 1,
            StoreWrite::MarkSolid(_) | StoreWrite::Pruned(_) => {}
        }
    }
    assert_eq!(batches, 1);
    // The stored ledger is the genesis one.
    let mut q = node(&n, true);
    for t in &stored {
        assert!(q.restore_transaction(t.id, &t.bytes, &t.meta));
    }
    q.finish_restore(T0 + 1100).unwrap();
    assert_eq!(q.ledger().confirmed_index(), 1);
    let (writes, events) = drain(&mut q);
    assert!(events.is_empty());
    let batch = writes
        .iter()
        .find_map(|w| match w {
            StoreWrite::Milestone(b) => Some(b),
            _ => None,
        })
        .expect("the batch of milestone 1 is handed back");
    assert_eq!(batch.record.index, 1);
    assert_eq!(batch.record.ledger_digest, p.ledger().digest());
}

#[test]
fn lazy_payload_is_reattached_and_confirmed() {
    let n = net();
    let mut p = Protocol::new(
        n.genesis.clone(),
        ProtocolConfig {
            milestone_signer: Some((0, n.committee.clone())),
            faucet: Some(n.faucet.clone()),
            max_sweep_tips: 0,
            reattach_after_milestones: 3,
            ..ProtocolConfig::default()
        },
        Ledger::from_genesis(&n.genesis).unwrap(),
    )
    .unwrap();
    let id = p.network_id();
    // Twenty empty milestones: the genesis is now far below max depth.
    for i in 1..=20u64 {
        tick(&mut p, T0 + i * 1000);
    }
    drain(&mut p);
    assert_eq!(p.ledger().confirmed_index(), 20);
    // A payment attached directly on the genesis: lazy, so restricted URTS never approves it.
    let to = Address([8; 32]);
    let mut tx = Transaction {
        version: TX_VERSION,
        network_id: id,
        parents: [TxId::GENESIS, TxId::GENESIS],
        timestamp: T0 + 20_500,
        payload: Payload::Signed(pay(&n.faucet, id, 0, to, 42)),
        nonce: 0,
    };
    pow::solve(&mut tx, 2);
    let vt = p
        .validator()
        .validate_one(&codec::encode(&tx), T0 + 20_500)
        .unwrap();
    let first = p.handle_transactions(vec![vt], Origin::Local, T0 + 20_500)[0]
        .clone()
        .unwrap();
    let mut reattached = None;
    for i in 21..=30u64 {
        tick(&mut p, T0 + i * 1000);
        for e in drain(&mut p).1 {
            if let Event::Reattached { tx, .. } = e {
                reattached = Some(tx);
            }
        }
        if p.ledger().balance(&to) == 42 {
            break;
        }
    }
    let new = reattached.expect("the node reattached the lazy payload");
    assert_ne!(new, first);
    assert_eq!(
        p.ledger().balance(&to),
        42,
        "the reattached copy was applied"
    );
    assert_eq!(p.own_pending(), 0);
}

#[test]
fn a_peer_replay_enters_the_tangle_and_conflicts_instead_of_stalling_its_approvers() {
    let n = net();
    let mut issuer = node(&n, true);
    let id = issuer.network_id();
    let x = pay(&n.faucet, id, 0, Address([4; 32]), 10);
    submit(&mut issuer, vec![x.clone()], T0 + 1);
    tick(&mut issuer, T0 + 1000);
    drain(&mut issuer);
    assert_eq!(issuer.ledger().next_seq(&n.faucet.address()), 1);
    // A peer reattached the same, already applied payload in a new transaction.
    let tip = issuer.tangle().id(issuer.tangle().tips()[0]);
    let mut tx = Transaction {
        version: TX_VERSION,
        network_id: id,
        parents: [tip, TxId::GENESIS],
        timestamp: T0 + 1100,
        payload: Payload::Signed(x),
        nonce: 0,
    };
    pow::solve(&mut tx, 2);
    let bytes = codec::encode(&tx);
    let vt = issuer.validator().validate_one(&bytes, T0 + 1100).unwrap();
    // From a client it is a replay...
    let r = issuer.handle_transactions(vec![vt.clone()], Origin::Api, T0 + 1100);
    assert!(matches!(r[0], Err(RejectReason::Replay { .. })));
    // ...from a peer it is stored, confirmed as conflicting, and changes no balance.
    let r = issuer.handle_transactions(vec![vt], Origin::Peer, T0 + 1100);
    let replay = r[0].clone().unwrap();
    tick(&mut issuer, T0 + 2000);
    let (_, events) = drain(&mut issuer);
    assert!(events.iter().any(|e| matches!(e,
        Event::Payload { status: PayloadStatus::Conflicting { tx, reason: ConflictReason::SeqAlreadyUsed, .. }, .. } if *tx == replay)));
    assert_eq!(issuer.ledger().balance(&Address([4; 32])), 10);
}

/// The payloads of one batch take distinct tips while there are untaken ones: a batch of
/// B payloads then consumes about 2B tips instead of piling up new ones for the
/// milestone sweep to merge.
#[test]
fn a_batch_of_payloads_takes_distinct_tips() {
    let n = net();
    let mut p = node(&n, false);
    let nid = n.genesis.network_id();
    let keys: Vec<Keypair> = (0..48u8)
        .map(|i| Keypair::from_seed(&[100 + i; 32]))
        .collect();
    // 32 payloads approving the genesis: 32 tips.
    let first: Vec<SignedPayload> = keys[..32]
        .iter()
        .map(|k| pay(k, nid, 0, Address([9; 32]), 1))
        .collect();
    assert!(submit(&mut p, first, T0).iter().all(Result::is_ok));
    assert_eq!(p.tangle().tips().len(), 32);
    // One batch of 16 more: 32 parents, all distinct.
    let second: Vec<SignedPayload> = keys[32..]
        .iter()
        .map(|k| pay(k, nid, 0, Address([9; 32]), 1))
        .collect();
    let mut parents = HashSet::new();
    let Step::Work(w) = p.submit_payloads(second, T0 + 10) else {
        panic!("no work");
    };
    assert_eq!(w.txs.len(), 16);
    for tx in &w.txs {
        parents.extend(tx.parents);
    }
    assert!(
        parents.len() >= 30,
        "16 payloads took only {} distinct tips out of 32",
        parents.len()
    );
}

/// Ticks the node one milestone interval at a time until `done` holds (at most `max`
/// milestones); returns every event seen.
fn run_until(
    p: &mut Protocol,
    from: u64,
    max: u64,
    mut done: impl FnMut(&Protocol) -> bool,
) -> Vec<Event> {
    let mut events = Vec::new();
    for i in 1..=max {
        tick(p, from + i * 1000);
        events.extend(drain(p).1);
        if done(p) {
            break;
        }
    }
    events
}

fn statuses(events: &[Event], pid: PayloadId) -> Vec<PayloadStatus> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Payload { payload, status } if *payload == pid => Some(*status),
            _ => None,
        })
        .collect()
}

/// A payment that conflicts for its content uses its seq: it is `conflicting` for good
/// (no copy applies later, even once the issuer could pay), and the issuer's next payment
/// is not blocked behind it.
#[test]
fn a_content_conflict_is_final_and_does_not_block_the_issuer() {
    let n = net();
    let mut p = node(&n, true);
    let id = p.network_id();
    let dev = Keypair::from_seed(&[20; 32]);
    let to = Address([21; 32]);
    // Too much: dev has nothing yet.
    let big = pay(&dev, id, 0, to, 500);
    assert!(submit(&mut p, vec![big.clone()], T0 + 10)[0].is_ok());
    let ev = run_until(&mut p, T0, 3, |p| p.ledger().next_seq(&dev.address()) == 1);
    assert!(matches!(
        statuses(&ev, big.id())[..],
        [PayloadStatus::Conflicting {
            reason: ConflictReason::InsufficientBalance,
            ..
        }]
    ));
    assert_eq!(p.own_pending(), 0, "a final conflict is not reattached");
    // Fund dev; the same payload again is a replay, and seq 1 applies.
    submit(
        &mut p,
        vec![pay(&n.faucet, id, 0, dev.address(), 1000)],
        T0 + 4000,
    );
    run_until(&mut p, T0 + 4000, 3, |p| {
        p.ledger().balance(&dev.address()) == 1000
    });
    assert!(submit(&mut p, vec![big], T0 + 8000)[0]
        .as_ref()
        .is_err_and(|e| e.contains("replay")));
    let next = pay(&dev, id, 1, to, 500);
    submit(&mut p, vec![next.clone()], T0 + 8000);
    let ev = run_until(&mut p, T0 + 8000, 3, |p| p.ledger().balance(&to) == 500);
    assert!(matches!(
        statuses(&ev, next.id())[..],
        [PayloadStatus::Confirmed { .. }]
    ));
}

/// A payload confirmed before its predecessor is `reattaching` (not final), is reattached
/// by the node, and applies once the gap is filled.
#[test]
fn a_sequence_gap_is_reattaching_then_confirmed() {
    let n = net();
    let mut p = node(&n, true);
    let id = p.network_id();
    let to = Address([22; 32]);
    let second = pay(&n.faucet, id, 1, to, 2);
    assert!(submit(&mut p, vec![second.clone()], T0 + 10)[0].is_ok());
    let ev = run_until(&mut p, T0, 2, |p| p.ledger().confirmed_index() >= 1);
    assert!(matches!(
        statuses(&ev, second.id())[..],
        [PayloadStatus::Reattaching {
            reason: ConflictReason::SeqGap,
            ..
        }]
    ));
    assert_eq!(p.own_pending(), 1, "kept alive for a reattachment");
    submit(&mut p, vec![pay(&n.faucet, id, 0, to, 1)], T0 + 3000);
    let ev = run_until(&mut p, T0 + 3000, 20, |p| p.ledger().balance(&to) == 3);
    assert_eq!(p.ledger().balance(&to), 3);
    assert!(statuses(&ev, second.id())
        .iter()
        .any(|s| matches!(s, PayloadStatus::Confirmed { .. })));
}

/// The losing side of a double spend that the milestone issuer never saw is reattached by
/// the node that took it, so it is confirmed `conflicting` (seq already used).
#[test]
fn the_losing_side_of_a_double_spend_is_decided() {
    let n = net();
    let mut issuer = node(&n, true);
    let mut follower = node(&n, false);
    let id = issuer.network_id();
    let a = pay(&n.faucet, id, 0, Address([30; 32]), 5);
    let b = pay(&n.faucet, id, 0, Address([31; 32]), 6);
    // A goes to the issuer; B to the follower, and B's transaction is lost on its way to
    // the issuer: the issuer only fetches it when something it receives approves it.
    submit(&mut issuer, vec![a], T0 + 10);
    submit(&mut follower, vec![b.clone()], T0 + 10);
    let mut held: HashMap<TxId, Vec<u8>> = HashMap::new();
    let keep = |w: &[StoreWrite], held: &mut HashMap<TxId, Vec<u8>>| {
        for w in w {
            if let StoreWrite::Transactions(txs) = w {
                for t in txs {
                    held.insert(t.id, t.bytes.clone());
                }
            }
        }
    };
    keep(&drain(&mut follower).0, &mut held);
    let mut b_status = Vec::new();
    for i in 1..=20u64 {
        let now = T0 + i * 1000;
        tick(&mut issuer, now);
        let (w, _) = drain(&mut issuer);
        // (Some of it came from the follower: duplicates there.)
        for w in &w {
            if let StoreWrite::Transactions(txs) = w {
                let vts: Vec<_> = txs
                    .iter()
                    .map(|t| follower.validator().validate_one(&t.bytes, now).unwrap())
                    .collect();
                for r in follower.handle_transactions(vts, Origin::Peer, now) {
                    assert!(matches!(
                        r,
                        Ok(_) | Err(RejectReason::DuplicateTransaction(_))
                    ));
                }
            }
        }
        tick(&mut follower, now);
        let (fw, fe) = drain(&mut follower);
        b_status.extend(statuses(&fe, b.id()));
        keep(&fw, &mut held);
        // What the follower attaches now (reattachments) reaches the issuer, and the
        // issuer fetches the parents it lacks.
        let mut deliver: Vec<Vec<u8>> = fw
            .iter()
            .flat_map(|w| match w {
                StoreWrite::Transactions(txs) => txs.iter().map(|t| t.bytes.clone()).collect(),
                _ => Vec::new(),
            })
            .collect();
        while !deliver.is_empty() {
            let vts: Vec<_> = deliver
                .drain(..)
                .filter_map(|b| issuer.validator().validate_one(&b, now).ok())
                .collect();
            issuer.handle_transactions(vts, Origin::Peer, now);
            deliver = issuer
                .poll_missing()
                .iter()
                .filter_map(|id| held.get(id).cloned())
                .collect();
        }
        if !b_status.is_empty() {
            break;
        }
    }
    // Each carrier (the original and the reattachment) is confirmed conflicting.
    assert!(!b_status.is_empty());
    assert!(
        b_status.iter().all(|s| matches!(
            s,
            PayloadStatus::Conflicting {
                reason: ConflictReason::SeqAlreadyUsed,
                ..
            }
        )),
        "{b_status:?}"
    );
    assert_eq!(follower.own_pending(), 0);
}

/// The faucet never signs two payloads with one seq: a seq whose payload entered the
/// Tangle is not given back, a refused one is reused, and after a restart the stored
/// payloads' seqs are skipped.
#[test]
fn faucet_seqs_are_never_reused() {
    let n = net();
    let mut p = node(&n, true);
    let to = Address([40; 32]);
    let a = p.faucet_payload(to, 1).unwrap();
    assert_eq!(a.seq, 0);
    assert!(submit(&mut p, vec![a], T0 + 10)[0].is_ok());
    p.release_faucet_seq(0);
    let b = p.faucet_payload(to, 2).unwrap();
    assert_eq!(b.seq, 1, "seq 0 is in the Tangle: not reused");
    p.release_faucet_seq(1);
    let c = p.faucet_payload(to, 3).unwrap();
    assert_eq!(c.seq, 1, "seq 1 was refused before the Tangle: reused");
    let d = p.faucet_payload(to, 4).unwrap();
    assert_eq!(d.seq, 2);
    assert!(submit(&mut p, vec![d.clone()], T0 + 20)[0].is_ok());
    // Restart from the "store" (what was written): seqs 0 and 2 are stored, 1 is not.
    let (writes, _) = drain(&mut p);
    let mut r = node(&n, true);
    for w in &writes {
        if let StoreWrite::Transactions(txs) = w {
            for t in txs {
                assert!(r.restore_transaction(t.id, &t.bytes, &t.meta));
            }
        }
    }
    r.finish_restore(T0 + 30).unwrap();
    assert_eq!(
        r.faucet_payload(to, 5).unwrap().seq,
        1,
        "the lost seq 1 fills the gap"
    );
    assert_eq!(r.faucet_payload(to, 6).unwrap().seq, 3);
}

/// A valid transaction (PoW and all) approving `parents`, from a throwaway key.
fn orphan(nid: u64, parents: [TxId; 2], seed: u8, now: u64) -> (Transaction, Vec<u8>) {
    let k = Keypair::from_seed(&[seed; 32]);
    let mut tx = Transaction {
        version: TX_VERSION,
        network_id: nid,
        parents,
        timestamp: now,
        payload: Payload::Signed(pay(&k, nid, 0, Address([1; 32]), 1)),
        nonce: 0,
    };
    pow::solve(&mut tx, 2);
    let bytes = codec::encode(&tx);
    (tx, bytes)
}

fn stored_ids(writes: &[StoreWrite]) -> Vec<TxId> {
    writes
        .iter()
        .flat_map(|w| match w {
            StoreWrite::Transactions(t) => t.iter().map(|t| t.id).collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// Transactions with unknown parents wait unstored and unannounced, within their sender's
/// quota; they are stored once solid, and dropped (with their sender reported) when they
/// wait too long.
#[test]
fn unsolid_peer_transactions_are_bounded_per_peer_stored_once_solid_and_expire() {
    let n = net();
    let mut p = Protocol::new(
        n.genesis.clone(),
        ProtocolConfig {
            max_pending_per_peer: 3,
            pending_ttl_ms: 10_000,
            ..ProtocolConfig::default()
        },
        Ledger::from_genesis(&n.genesis).unwrap(),
    )
    .unwrap();
    let nid = p.network_id();
    let (mallory, alice) = (PeerKey([1; 32]), PeerKey([2; 32]));
    let now = T0 + 100;
    let vt = |p: &Protocol, b: &[u8]| Ok(p.validator().validate_one(b, now).unwrap());
    // Mallory: five orphans with made-up parents; three fit her quota.
    let junk: Vec<_> = (0..5u8)
        .map(|i| orphan(nid, [TxId([200 + i; 32]), TxId::GENESIS], 50 + i, now).1)
        .collect();
    let r = p.handle_peer_transactions(junk.iter().map(|b| (vt(&p, b), mallory)).collect(), now);
    assert_eq!(r.iter().filter(|r| **r == Verdict::New).count(), 3);
    // Over quota: refused, not counted against her as invalid.
    assert!(r[3..].iter().all(|r| *r == Verdict::Refused));
    // Alice's own quota is untouched: a child arrives before its parent.
    let (_, parent_bytes) = orphan(nid, [TxId::GENESIS; 2], 60, now);
    let pid = codec::id_of_encoding(&parent_bytes);
    let (_, child_bytes) = orphan(nid, [pid, TxId::GENESIS], 61, now);
    assert_eq!(
        p.handle_peer_transactions(vec![(vt(&p, &child_bytes), alice)], now)[0],
        Verdict::New
    );
    let (w, e) = drain(&mut p);
    assert!(stored_ids(&w).is_empty(), "nothing unsolid is stored");
    assert!(e.is_empty(), "nor announced");
    assert_eq!(p.pending_len(), 4);
    assert!(p.poll_missing().contains(&pid));
    // The parent arrives: both are stored, child included, and announced.
    p.handle_peer_transactions(vec![(vt(&p, &parent_bytes), alice)], now);
    let (w, e) = drain(&mut p);
    let ids = stored_ids(&w);
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&pid) && ids.contains(&codec::id_of_encoding(&child_bytes)));
    assert_eq!(
        e.iter()
            .filter(|e| matches!(e, Event::Solid { .. }))
            .count(),
        2
    );
    assert_eq!(p.pending_len(), 3);
    // Mallory's orphans expire; she is reported, Alice is not.
    tick(&mut p, now + 5_000);
    assert!(p.poll_expired().is_empty(), "not yet");
    tick(&mut p, now + 10_001);
    assert_eq!(p.poll_expired(), vec![(mallory, 3)]);
    assert_eq!(p.pending_len(), 0);
    // Her quota is free again.
    let r = p.handle_peer_transactions(vec![(vt(&p, &junk[4]), mallory)], now + 10_002);
    assert_eq!(r[0], Verdict::New);
}

fn pruning_node(n: &Net, keep: u32) -> Protocol {
    let config = ProtocolConfig {
        milestone_signer: Some((0, n.committee.clone())),
        faucet: Some(n.faucet.clone()),
        keep_milestones: Some(keep),
        selector: SelectorKind::Urts,
        ..ProtocolConfig::default()
    };
    Protocol::new(
        n.genesis.clone(),
        config,
        Ledger::from_genesis(&n.genesis).unwrap(),
    )
    .unwrap()
}

/// Every unconfirmed transaction held is solid and each of its parents is known (held or
/// a solid entry point): what pruning must never break.
fn assert_unconfirmed_solid(p: &Protocol) {
    let t = p.tangle();
    for r in t.unconfirmed() {
        let id = t.id(r);
        assert!(t.is_solid(&id), "unconfirmed {id} lost its solidity");
        for parent in t.parents(r) {
            let pid = t.id(parent);
            assert!(
                t.is_known(&pid),
                "parent {pid} of unconfirmed {id} was dropped"
            );
        }
    }
}

/// With `keep_milestones`, the Tangle stays bounded while payments keep confirming with
/// exact balances, and a node keeping everything reaches the same ledger digest.
#[test]
fn pruning_bounds_the_tangle_and_changes_no_result() {
    let n = net();
    let mut pruned = pruning_node(&n, 3);
    // The same node keeping everything. (Same selector: URTS picks among the tips alone,
    // which pruning never drops; restricted URTS also reads how old the tips' references
    // are, and a pruned Tangle reports its entry points as confirmed by the newest pruned
    // milestone, so its picks, and then the white-flag order, may differ.)
    let mut archive = pruning_node(&n, u32::MAX);
    let nid = pruned.network_id();
    let alice = Keypair::from_seed(&[10; 32]).address();
    let mut held = Vec::new();
    for m in 0..30u64 {
        let now = T0 + (m + 1) * 1000;
        // Five payments per milestone; the last one of each round stays unconfirmed over
        // the next milestone (submitted after it), so the cut must stop below it.
        let payloads: Vec<_> = (0..5)
            .map(|s| pay(&n.faucet, nid, m * 5 + s, alice, 1))
            .collect();
        for p in [&mut pruned, &mut archive] {
            for r in submit(p, payloads[..4].to_vec(), now - 500) {
                r.unwrap();
            }
            tick(p, now);
            submit(p, payloads[4..].to_vec(), now + 1)[0]
                .clone()
                .unwrap();
            drain(p);
        }
        assert_unconfirmed_solid(&pruned);
        held.push(pruned.tangle().len());
    }
    assert_eq!(pruned.ledger().confirmed_index(), 30);
    assert_eq!(pruned.ledger().digest(), archive.ledger().digest());
    assert_eq!(pruned.ledger().balance(&alice), 150 - 1);
    // Three milestones of about 5 payments, the sweep and the milestones: a few dozen
    // transactions, not the whole history.
    assert!(
        held[29] < archive.tangle().len() / 3,
        "held {} of {}",
        held[29],
        archive.tangle().len()
    );
    assert!(held[29] <= held[10] + 10, "not bounded: {held:?}");
    assert_eq!(pruned.oldest_milestone(), 30 - 3 + 1);
    // New payments still attach and confirm on the pruned Tangle.
    let late = pay(&n.faucet, nid, 150, alice, 1);
    submit(&mut pruned, vec![late], T0 + 40_000)[0]
        .clone()
        .unwrap();
    tick(&mut pruned, T0 + 41_000);
    assert_eq!(pruned.ledger().balance(&alice), 151);
}

mod pruning_props {
    use super::*;
    use proptest::prelude::*;

    /// One step of a random workload: payments submitted (some replaying a seq: double
    /// spends), then maybe a milestone.
    #[derive(Clone, Debug)]
    struct Op {
        payments: u8,
        double_spend: bool,
        tick: bool,
    }

    fn op() -> impl Strategy<Value = Op> {
        (0u8..6, any::<bool>(), any::<bool>()).prop_map(|(payments, double_spend, tick)| Op {
            payments,
            double_spend,
            tick,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        /// Pruning at any retention after any workload keeps every unconfirmed transaction
        /// solid, and the ledger matches an archive node's fed the same workload.
        #[test]
        fn pruning_keeps_unconfirmed_solid_and_the_ledger_exact(
            keep in 1u32..5,
            ops in proptest::collection::vec(op(), 1..40),
        ) {
            let n = net();
            let mut pruned = pruning_node(&n, keep);
            let mut archive = pruning_node(&n, u32::MAX);
            let nid = pruned.network_id();
            let (mut seq, mut now) = (0u64, T0);
            for (i, o) in ops.iter().enumerate() {
                now += 300;
                let mut payloads: Vec<_> = (0..o.payments)
                    .map(|k| pay(&n.faucet, nid, seq + u64::from(k), Address([k; 32]), 1))
                    .collect();
                if o.double_spend && seq > 0 {
                    payloads.push(pay(&n.faucet, nid, seq - 1, Address([99; 32]), i as u64 + 2));
                }
                seq += u64::from(o.payments);
                for p in [&mut pruned, &mut archive] {
                    submit(p, payloads.clone(), now);
                    if o.tick {
                        tick(p, now + 1000);
                    }
                    drain(p);
                }
                if o.tick {
                    now += 1000;
                }
                assert_unconfirmed_solid(&pruned);
                prop_assert_eq!(pruned.ledger().digest(), archive.ledger().digest());
            }
            prop_assert!(pruned.tangle().len() <= archive.tangle().len());
        }
    }
}

/// Carries out store writes as the node's driver does.
fn write_to(store: &dyn dag_core::store::Store, writes: &[StoreWrite]) {
    for w in writes {
        w.apply_to(store).unwrap();
    }
}

/// A pruning node restarts from its pruned store: it loads only what was kept, rebuilds its
/// Tangle on the stored entry points, and carries on confirming with the same ledger.
#[test]
fn a_pruned_store_restarts_with_only_what_it_kept() {
    use dag_core::store::{MemStore, Store};
    let n = net();
    let store = MemStore::new();
    let config = |keep| ProtocolConfig {
        milestone_signer: Some((0, n.committee.clone())),
        faucet: Some(n.faucet.clone()),
        keep_milestones: Some(keep),
        selector: SelectorKind::Urts,
        ..ProtocolConfig::default()
    };
    let (mut p, _) = crate::restore_from_store(n.genesis.clone(), config(2), &store, T0).unwrap();
    let nid = p.network_id();
    let alice = Address([7; 32]);
    let mut seq = 0;
    for m in 0..12u64 {
        let now = T0 + (m + 1) * 1000;
        let payloads: Vec<_> = (0..4)
            .map(|k| pay(&n.faucet, nid, seq + k, alice, 1))
            .collect();
        seq += 4;
        for r in submit(&mut p, payloads, now - 400) {
            r.unwrap();
        }
        tick(&mut p, now);
        write_to(&store, &drain(&mut p).0);
    }
    // Two payments left unconfirmed when the node stops.
    let late: Vec<_> = (0..2)
        .map(|k| pay(&n.faucet, nid, seq + k, alice, 1))
        .collect();
    for r in submit(&mut p, late, T0 + 12_500) {
        r.unwrap();
    }
    write_to(&store, &drain(&mut p).0);
    let pruned = store.pruned().unwrap().expect("the store was pruned");
    assert!(pruned.milestone >= 9, "pruned up to {}", pruned.milestone);
    assert!(
        store.milestone(1).unwrap().is_none(),
        "old milestone records are gone"
    );
    assert!(store.milestone(12).unwrap().is_some());
    let kept = store.transaction_count().unwrap();
    assert!(kept < 40, "the store keeps {kept} transactions");

    let (mut q, report) =
        crate::restore_from_store(n.genesis.clone(), config(2), &store, T0 + 13_000).unwrap();
    assert_eq!(report.bad, 0);
    assert_eq!(report.transactions, kept);
    assert_eq!(report.pruned_milestone, pruned.milestone);
    assert_eq!(q.ledger().digest(), p.ledger().digest());
    assert_eq!(q.ledger().confirmed_index(), 12);
    assert_eq!(q.pending_len(), 0, "nothing waits for a parent");
    assert_unconfirmed_solid(&q);
    assert_eq!(q.tangle().unconfirmed_len(), p.tangle().unconfirmed_len());
    // It carries on: the two late payments confirm at the next milestone.
    tick(&mut q, T0 + 14_000);
    write_to(&store, &drain(&mut q).0);
    assert_eq!(q.ledger().confirmed_index(), 13);
    assert_eq!(q.ledger().balance(&alice), 50);
}
