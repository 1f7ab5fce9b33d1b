//! Proofs of confirmation built from a node's store after real milestones: they verify with
//! the genesis alone, say applied or not as the ledger decided, and fail under any single
//! bit changed in their binary encoding, under another network's committee, and with a
//! milestone signed by a key outside the committee.

use dag_core::proof::{
    Lookup, ProofError, StateEntry, StateProof, TransactionProof, VerifiedMilestones,
};
use dag_core::store::{MemStore, PayloadStatus, Store};
use dag_core::validate::ValidationParams;
use dag_core::{codec, crypto, Keypair, Payload, PayloadId, TxId};
use node_proto::harness::DevNetwork;
use node_proto::{restore_from_store, Protocol, ProtocolConfig};

struct History {
    net: DevNetwork,
    store: MemStore,
    applied: Vec<PayloadId>,
    conflicting: PayloadId,
    /// The issuing core after the two milestones.
    core: Protocol,
    /// The channel bob opened to carol in the second milestone.
    channel: dag_core::ChannelId,
}

/// Two milestones: the faucet pays alice and bob, then alice overspends (conflicting) and
/// the faucet pays carol.
fn history() -> History {
    let net = DevNetwork::new("proofs", 0);
    let store = MemStore::new();
    let config = ProtocolConfig {
        milestone_signer: Some((0, net.committee.clone())),
        ..ProtocolConfig::default()
    };
    let t0 = DevNetwork::GENESIS_TIME_MS;
    let (mut p, _) = restore_from_store(net.genesis.clone(), config, &store, t0).unwrap();
    let alice = Keypair::from_seed(&[10; 32]);
    let (bob, carol) = (Keypair::from_seed(&[11; 32]), Keypair::from_seed(&[12; 32]));
    let rounds = [
        vec![
            net.pay(&net.faucet, 0, alice.address(), 10),
            net.pay(&net.faucet, 1, bob.address(), 5),
        ],
        vec![
            net.pay(&alice, 0, bob.address(), 1_000),
            net.pay(&net.faucet, 2, carol.address(), 3),
            dag_core::SignedPayload::sign(
                &bob,
                net.network_id(),
                0,
                dag_core::Body::Open {
                    payee: carol.address(),
                    deposit: 4,
                    expires_at: 100,
                },
            ),
        ],
    ];
    let conflicting = rounds[1][0].id();
    let mut applied = Vec::new();
    let mut now = t0 + 10;
    for pay in rounds {
        applied.extend(pay.iter().map(|p| p.id()).filter(|id| *id != conflicting));
        now = DevNetwork::milestone_round(&mut p, &store, pay, now);
    }
    assert_eq!(p.ledger().confirmed_index(), 2);
    History {
        net,
        store,
        applied,
        conflicting,
        core: p,
        channel: crypto::channel_id(&bob.address(), 0),
    }
}

fn proof_of(h: &History, payload: &PayloadId) -> TransactionProof {
    let tx = match h.store.payload(payload).unwrap().unwrap().status {
        PayloadStatus::Confirmed { tx, .. } | PayloadStatus::Conflicting { tx, .. } => tx,
        other => panic!("undecided: {other:?}"),
    };
    match TransactionProof::from_store(&h.store, &tx).unwrap() {
        Lookup::Found(p) => p,
        other => panic!("no proof: {other:?}"),
    }
}

#[test]
fn proofs_verify_and_say_what_the_ledger_did() {
    let h = history();
    let params = ValidationParams::new(&h.net.genesis).unwrap();
    for id in &h.applied {
        let proven = proof_of(&h, id).verify(&params).unwrap();
        assert!(proven.applied);
        assert_eq!(proven.payload_id, Some(*id));
        assert!(proven.milestone >= 1);
    }
    let proven = proof_of(&h, &h.conflicting).verify(&params).unwrap();
    assert!(
        !proven.applied,
        "a conflicting payload is confirmed, not applied"
    );
    assert_eq!(proven.payload_id, Some(h.conflicting));
    // Claiming it applied with another payload's path fails.
    let mut forged = proof_of(&h, &h.conflicting);
    forged.applied = proof_of(&h, &h.applied[2]).applied;
    assert_eq!(forged.verify(&params), Err(ProofError::Path("applied")));
    // Unknown transactions have no proof.
    assert_eq!(
        TransactionProof::from_store(&h.store, &TxId([9; 32])).unwrap(),
        Lookup::None
    );
    // Through the binary and the JSON encodings.
    let p = proof_of(&h, &h.applied[0]);
    let bin: TransactionProof = rmp_serde::from_slice(&rmp_serde::to_vec(&p).unwrap()).unwrap();
    let json: TransactionProof = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!(bin, p);
    assert_eq!(json, p);
}

#[test]
fn every_single_bit_change_of_a_proof_makes_it_fail() {
    let h = history();
    let params = ValidationParams::new(&h.net.genesis).unwrap();
    for id in [h.applied[1], h.conflicting] {
        let proof = proof_of(&h, &id);
        let good = proof.verify(&params).unwrap();
        let bytes = rmp_serde::to_vec(&proof).unwrap();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(changed) = rmp_serde::from_slice::<TransactionProof>(&b) {
                match changed.verify(&params) {
                    Err(_) => {}
                    Ok(p) => panic!("bit {i} changed, still proves {p:?} (was {good:?})"),
                }
            }
        }
    }
}

#[test]
fn a_warm_milestone_cache_changes_no_verdict() {
    // Milestones validated once are remembered by id (the hash of their whole encoding):
    // every proof still verifies the same, and every single bit change still fails.
    let h = history();
    let params = ValidationParams::new(&h.net.genesis).unwrap();
    let mut known = VerifiedMilestones::new(8);
    for id in h.applied.iter().chain([&h.conflicting]) {
        let proof = proof_of(&h, id);
        assert_eq!(
            proof.verify_with(&params, &mut known),
            proof.verify(&params)
        );
    }
    assert_eq!(known.len(), 2, "two milestones, each validated once");
    let proof = proof_of(&h, &h.applied[1]);
    let good = proof.verify_with(&params, &mut known).unwrap();
    let bytes = rmp_serde::to_vec(&proof).unwrap();
    for i in 0..bytes.len() * 8 {
        let mut b = bytes.clone();
        b[i / 8] ^= 1 << (i % 8);
        if let Ok(changed) = rmp_serde::from_slice::<TransactionProof>(&b) {
            if let Ok(p) = changed.verify_with(&params, &mut known) {
                panic!("bit {i} changed, still proves {p:?} (was {good:?})");
            }
        }
    }
    // It keeps only the newest milestones.
    let mut one = VerifiedMilestones::new(1);
    proof.verify_with(&params, &mut one).unwrap();
    proof_of(&h, &h.applied[0])
        .verify_with(&params, &mut one)
        .unwrap();
    assert_eq!(one.len(), 1, "bounded");
}

#[test]
fn a_milestone_outside_the_committee_fails() {
    let h = history();
    let proof = proof_of(&h, &h.applied[0]);
    // Another network (its own committee): refused.
    let other = DevNetwork::new("elsewhere", 0);
    let params = ValidationParams::new(&other.genesis).unwrap();
    assert!(matches!(
        proof.verify(&params),
        Err(ProofError::Milestone(_) | ProofError::Transaction(_))
    ));
    // The same milestone re-signed by a key that is not the committee's: refused.
    let (mut tx, _) = codec::decode_with_id(&proof.milestone).unwrap();
    let Payload::Milestone(m) = &mut tx.payload else {
        panic!("not a milestone")
    };
    let intruder = Keypair::from_seed(&[66; 32]);
    m.signatures.clear();
    let msg = crypto::milestone_signing_message(h.net.network_id(), &tx.parents, m);
    m.signatures.push((0, intruder.sign(&msg)));
    let mut forged = proof.clone();
    forged.milestone = codec::encode(&tx);
    forged.milestone_id = codec::id_of_encoding(&forged.milestone);
    let params = ValidationParams::new(&h.net.genesis).unwrap();
    assert!(matches!(
        forged.verify(&params),
        Err(ProofError::Milestone(_))
    ));
    proof.verify(&params).unwrap();
}

/// The bytes of applied milestone `index`'s transaction, from the store.
fn milestone_bytes(h: &History, index: u32) -> Vec<u8> {
    let record = h.store.milestone(index).unwrap().unwrap();
    h.store.transaction(&record.tx).unwrap().unwrap()
}

fn account_proof(h: &History, address: dag_core::Address) -> StateProof {
    let entry = StateEntry::Account {
        address,
        account: None,
    };
    StateProof::build(h.core.ledger(), milestone_bytes(h, 2), entry).expect("at milestone 2")
}

#[test]
fn state_proofs_show_what_the_ledger_holds_and_what_it_does_not() {
    let h = history();
    let params = ValidationParams::new(&h.net.genesis).unwrap();
    let ledger = h.core.ledger();
    let (alice, carol) = (Keypair::from_seed(&[10; 32]), Keypair::from_seed(&[12; 32]));
    for who in [alice.address(), carol.address(), h.net.faucet.address()] {
        let proven = account_proof(&h, who).verify(&params).unwrap();
        assert_eq!(proven.milestone, 2);
        assert_eq!(
            proven.entry,
            StateEntry::Account {
                address: who,
                account: ledger.account(&who).copied(),
            }
        );
        assert!(ledger.account(&who).is_some());
    }
    // An account the ledger never saw: proven absent (a zero balance).
    let stranger = dag_core::Address([0x5a; 32]);
    let proven = account_proof(&h, stranger).verify(&params).unwrap();
    assert!(matches!(
        proven.entry,
        StateEntry::Account { account: None, .. }
    ));
    // The channel bob opened, and one that does not exist.
    let entry = StateEntry::Channel {
        channel_id: h.channel,
        channel: None,
    };
    let proof = StateProof::build(ledger, milestone_bytes(&h, 2), entry).unwrap();
    let StateEntry::Channel {
        channel: Some(ch), ..
    } = proof.verify(&params).unwrap().entry
    else {
        panic!("the channel is open")
    };
    assert_eq!((ch.deposit, ch.payee), (4, carol.address()));
    // Lies fail: another balance, a stranger claimed to hold funds, a present account
    // claimed absent.
    let mut forged = account_proof(&h, alice.address());
    if let StateEntry::Account {
        account: Some(a), ..
    } = &mut forged.entry
    {
        a.balance += 1;
    }
    assert_eq!(forged.verify(&params), Err(ProofError::Path("state")));
    let mut forged = account_proof(&h, stranger);
    forged.entry = StateEntry::Account {
        address: stranger,
        account: Some(dag_core::ledger::Account {
            balance: 1,
            next_seq: 0,
        }),
    };
    assert_eq!(forged.verify(&params), Err(ProofError::Path("state")));
    let mut forged = account_proof(&h, alice.address());
    forged.entry = StateEntry::Account {
        address: alice.address(),
        account: None,
    };
    assert_eq!(forged.verify(&params), Err(ProofError::Path("state")));
    // Alice's path does not prove carol's account.
    let mut forged = account_proof(&h, alice.address());
    forged.entry = account_proof(&h, carol.address()).entry;
    assert!(forged.verify(&params).is_err());
    // Only at the milestone the ledger stands at (the tree is not versioned).
    assert!(StateProof::build(
        ledger,
        milestone_bytes(&h, 1),
        StateEntry::Account {
            address: stranger,
            account: None
        }
    )
    .is_none());
    // Both encodings round-trip.
    let p = account_proof(&h, alice.address());
    let bin: StateProof = rmp_serde::from_slice(&rmp_serde::to_vec(&p).unwrap()).unwrap();
    let json: StateProof = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
    assert_eq!((bin.clone(), json), (p.clone(), p));
    // Another committee: refused.
    let other = ValidationParams::new(&DevNetwork::new("elsewhere", 0).genesis).unwrap();
    assert!(matches!(bin.verify(&other), Err(ProofError::Milestone(_))));
}

#[test]
fn no_single_bit_change_of_a_state_proof_proves_a_lie() {
    // A changed proof either fails or states the truth: a non-inclusion path also proves the
    // absence of other keys on the same walk, so a flipped bit of an absent address can
    // prove that address absent too, which it is. For a present account every change fails.
    let h = history();
    let params = ValidationParams::new(&h.net.genesis).unwrap();
    let ledger = h.core.ledger();
    let truth = |entry: &StateEntry| match entry {
        StateEntry::Account { address, account } => ledger.account(address) == account.as_ref(),
        StateEntry::Channel {
            channel_id,
            channel,
        } => ledger.channel(channel_id) == channel.as_ref(),
    };
    let present = account_proof(&h, Keypair::from_seed(&[11; 32]).address());
    let absent = account_proof(&h, dag_core::Address([0x5a; 32]));
    let mut known = VerifiedMilestones::new(4);
    let mut true_variants = [0usize; 2];
    for (n, proof) in [present, absent].into_iter().enumerate() {
        let good = proof.verify_with(&params, &mut known).unwrap();
        let bytes = rmp_serde::to_vec(&proof).unwrap();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(changed) = rmp_serde::from_slice::<StateProof>(&b) {
                // Cold and with the milestone remembered: the same verdict.
                let cold = changed.verify(&params);
                assert_eq!(cold, changed.verify_with(&params, &mut known));
                if let Ok(p) = cold {
                    assert!(
                        truth(&p.entry),
                        "bit {i} changed, proves a lie {p:?} (was {good:?})"
                    );
                    true_variants[n] += 1;
                }
            }
        }
    }
    assert_eq!(
        true_variants[0], 0,
        "every change of an inclusion proof fails"
    );
}
