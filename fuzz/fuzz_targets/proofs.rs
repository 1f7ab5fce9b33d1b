//! Proofs as a device receives them from a node it does not trust: `TransactionProof` and
//! `StateProof` decoded from arbitrary MessagePack and JSON, and valid proofs with edits,
//! verified against a real committee, cold and with a warm milestone cache.
//!
//! Checked, besides "no panic":
//! - a cold and a warm verification give the same verdict;
//! - a transaction proof that verifies is about a transaction of the fixture's milestone
//!   and says applied only for the payments the milestone applied;
//! - a state proof that verifies states the truth: the entry it proves is the fixture
//!   ledger's (a present account with its exact balance, or an absent one).
//!
//! Input: one mode byte (0: raw transaction proof, 1: raw state proof, 2: edited transaction
//! proof, 3: edited state proof; odd/even halves pick MessagePack or JSON), then bytes (raw)
//! or edits (offset u16, xor byte) applied to the MessagePack of a valid proof.
//!
//! `cargo +nightly fuzz run proofs`
#![no_main]

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use dag_core::ledger::{account_entry, Account};
use dag_core::proof::{StateEntry, StateProof, TransactionProof, VerifiedMilestones};
use dag_core::state_tree::StateTree;
use dag_core::{
    codec, crypto, merkle, Address, Allocation, Body, Digest, Genesis, Keypair, Milestone, Payload,
    SignedPayload, Transaction, TxId, ValidationParams, TX_VERSION,
};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000_000;

struct Fixture {
    params: ValidationParams,
    tx_proofs: Vec<TransactionProof>,
    state_proofs: Vec<StateProof>,
    /// Transaction id -> applied, for every transaction the milestone confirmed.
    confirmed: HashMap<TxId, bool>,
    accounts: BTreeMap<Address, Account>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let members: Vec<Keypair> = (0..4u8)
        .map(|i| Keypair::from_seed(&[0x40 + i; 32]))
        .collect();
    let genesis = Genesis {
        network_name: "fuzz-proofs".into(),
        timestamp: NOW - 1,
        pow_difficulty: 0,
        timestamp_window_ms: 60_000,
        committee: members.iter().map(Keypair::address).collect(),
        threshold: 3,
        allocations: vec![Allocation {
            address: Address([1; 32]),
            amount: 1_000,
        }],
    };
    let net = genesis.network_id();
    let payer = Keypair::from_seed(&[9; 32]);
    let txs: Vec<Vec<u8>> = (0..5u64)
        .map(|seq| {
            let p = SignedPayload::sign(
                &payer,
                net,
                seq,
                Body::Pay {
                    to: Address([2; 32]),
                    amount: seq + 1,
                    memo: Vec::new(),
                },
            );
            codec::encode(&Transaction {
                version: TX_VERSION,
                network_id: net,
                parents: [TxId([3; 32]), TxId([4; 32])],
                timestamp: NOW,
                payload: Payload::Signed(p),
                nonce: seq,
            })
        })
        .collect();
    let list: Vec<(TxId, bool)> = txs
        .iter()
        .enumerate()
        .map(|(i, b)| (codec::id_of_encoding(b), i % 2 == 0))
        .collect();
    let accounts: BTreeMap<Address, Account> = (0..6u8)
        .map(|i| {
            let a = Address(crypto::blake2b256(&[i]));
            (
                a,
                Account {
                    balance: u64::from(i) * 10,
                    next_seq: u64::from(i),
                },
            )
        })
        .collect();
    let mut updates: Vec<_> = accounts
        .iter()
        .map(|(a, acc)| account_entry(a, Some(acc)))
        .collect();
    let mut tree = StateTree::new();
    tree.apply(&mut updates);
    let ids: Vec<[u8; 32]> = list.iter().map(|(t, _)| t.0).collect();
    let applied: Vec<[u8; 32]> = list.iter().filter(|c| c.1).map(|c| c.0 .0).collect();
    let mut m = Milestone {
        index: 7,
        timestamp: NOW,
        previous: TxId([5; 32]),
        confirmed_root: merkle::root(&ids),
        applied_root: merkle::root(&applied),
        state_root: Digest(tree.root()),
        ledger_digest: Digest([6; 32]),
        signatures: Vec::new(),
        committee_update: None,
    };
    let parents = [TxId([7; 32]), TxId([8; 32])];
    let msg = crypto::milestone_signing_message(net, &parents, &m);
    m.signatures = (0..3u8)
        .map(|i| (i, members[usize::from(i)].sign(&msg)))
        .collect();
    let milestone = codec::encode(&Transaction {
        version: TX_VERSION,
        network_id: net,
        parents,
        timestamp: NOW,
        payload: Payload::Milestone(m),
        nonce: 0,
    });
    let tx_proofs = (0..txs.len())
        .map(|i| TransactionProof::build(txs[i].clone(), milestone.clone(), &list, i).unwrap())
        .collect();
    let milestone_id = codec::id_of_encoding(&milestone);
    let state_proofs = accounts
        .keys()
        .copied()
        .chain([Address([0xee; 32])])
        .map(|address| {
            let account = accounts.get(&address).copied();
            let (key, _) = account_entry(&address, None);
            StateProof {
                milestone: milestone.clone(),
                milestone_id,
                entry: StateEntry::Account { address, account },
                path: tree.prove(&key),
            }
        })
        .collect();
    Fixture {
        params: ValidationParams::new(&genesis).unwrap(),
        tx_proofs,
        state_proofs,
        confirmed: list.into_iter().collect(),
        accounts,
    }
});

fn check_tx(f: &Fixture, p: &TransactionProof) {
    let cold = p.verify(&f.params);
    let mut known = VerifiedMilestones::new(2);
    let _ = f.tx_proofs[0].verify_with(&f.params, &mut known);
    assert_eq!(cold, p.verify_with(&f.params, &mut known));
    if let Ok(proven) = cold {
        // Applied only if it was; a proof without its applied path proves confirmation only
        // (a node can withhold the path, making a device refuse, never accept).
        let applied = f.confirmed.get(&proven.transaction_id);
        assert!(applied.is_some(), "not confirmed: {proven:?}");
        assert!(!proven.applied || applied == Some(&true), "{proven:?}");
    }
}

fn check_state(f: &Fixture, p: &StateProof) {
    let cold = p.verify(&f.params);
    let mut known = VerifiedMilestones::new(2);
    let _ = f.state_proofs[0].verify_with(&f.params, &mut known);
    assert_eq!(cold, p.verify_with(&f.params, &mut known));
    if let Ok(proven) = cold {
        match proven.entry {
            StateEntry::Account { address, account } => {
                assert_eq!(
                    f.accounts.get(&address),
                    account.as_ref(),
                    "a lie: {proven:?}"
                )
            }
            StateEntry::Channel { channel, .. } => assert!(channel.is_none(), "{proven:?}"),
        }
    }
}

fn edited(mut bytes: Vec<u8>, edits: &[u8]) -> Vec<u8> {
    for e in edits.chunks_exact(3) {
        if !bytes.is_empty() {
            let at = usize::from(u16::from_le_bytes([e[0], e[1]])) % bytes.len();
            bytes[at] ^= e[2];
        }
    }
    bytes
}

fuzz_target!(|data: &[u8]| {
    let f = &*FIXTURE;
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let json = mode & 0x80 != 0;
    match mode % 4 {
        0 | 1 => {
            let decoded_tx: Option<TransactionProof> = if json {
                serde_json::from_slice(rest).ok()
            } else {
                rmp_serde::from_slice(rest).ok()
            };
            if let Some(p) = decoded_tx {
                check_tx(f, &p);
            }
            let decoded_state: Option<StateProof> = if json {
                serde_json::from_slice(rest).ok()
            } else {
                rmp_serde::from_slice(rest).ok()
            };
            if let Some(p) = decoded_state {
                check_state(f, &p);
            }
        }
        2 => {
            let Some((&pick, edits)) = rest.split_first() else {
                return;
            };
            let p = &f.tx_proofs[usize::from(pick) % f.tx_proofs.len()];
            let bytes = edited(rmp_serde::to_vec(p).unwrap(), edits);
            if let Ok(p) = rmp_serde::from_slice::<TransactionProof>(&bytes) {
                check_tx(f, &p);
            }
        }
        _ => {
            let Some((&pick, edits)) = rest.split_first() else {
                return;
            };
            let p = &f.state_proofs[usize::from(pick) % f.state_proofs.len()];
            let bytes = edited(rmp_serde::to_vec(p).unwrap(), edits);
            if let Ok(p) = rmp_serde::from_slice::<StateProof>(&bytes) {
                check_state(f, &p);
            }
        }
    }
});
