//! Proofs of confirmation (`dag_core::proof`): the size of a proof for a milestone that
//! confirmed 100,000 transactions, verifications per second on one core with a 3-of-4
//! committee, and the cost of the two Merkle roots a milestone commits to; and the proof of
//! one account's balance in a ledger of a million accounts.
//!
//! `cargo bench -p benches --bench proof -- --warm-up-time 1 --measurement-time 3`
//!
//! Targets (issue #16): a proof at most 2 KiB plus the milestone's transaction; at least
//! 10,000 verifications/s on one core.

#![allow(missing_docs)] // `criterion_group!` generates an undocumented pub fn.

use benches::{signed_pay_transactions, BENCH_NOW_MS};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dag_core::ledger::{account_entry, Account};
use dag_core::proof::{StateEntry, StateProof, TransactionProof};
use dag_core::state_tree::StateTree;
use dag_core::{
    codec, crypto, merkle, Allocation, Digest, Genesis, Keypair, Milestone, Payload, Transaction,
    TxId, ValidationParams, TX_VERSION,
};

const CONFIRMED: usize = 100_000;

struct Fixture {
    params: ValidationParams,
    proof: TransactionProof,
    ids: Vec<[u8; 32]>,
    /// The proof of one account's balance in a ledger of `ACCOUNTS`, against a milestone
    /// signed by the same committee.
    state: StateProof,
}

/// Accounts in the state proof's ledger.
const ACCOUNTS: u64 = 1_000_000;

/// A 3-of-4 committee network, a milestone confirming `CONFIRMED` transactions (every
/// other one applied) signed by three members, and the proof of one payment in it.
fn fixture() -> Fixture {
    let members: Vec<Keypair> = (0..4u8)
        .map(|i| Keypair::from_seed(&[0xd0 + i; 32]))
        .collect();
    let genesis = Genesis {
        network_name: "proof-bench".into(),
        timestamp: BENCH_NOW_MS - 1,
        pow_difficulty: 0,
        timestamp_window_ms: 60_000,
        committee: members.iter().map(Keypair::address).collect(),
        threshold: 3,
        allocations: vec![Allocation {
            address: dag_core::Address([1; 32]),
            amount: 1_000_000,
        }],
    };
    let net = genesis.network_id();
    let paid = signed_pay_transactions(1, 1, net, 7).remove(0);
    let paid_bytes = codec::encode(&paid);
    let paid_id = codec::id_of_encoding(&paid_bytes);
    let at = 54_321;
    let mut ids: Vec<[u8; 32]> = (0..CONFIRMED as u64)
        .map(|i| crypto::blake2b256(&i.to_le_bytes()))
        .collect();
    ids[at] = paid_id.0;
    let confirmed: Vec<(TxId, bool)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (TxId(*id), i % 2 == 1))
        .collect();
    let applied: Vec<[u8; 32]> = confirmed.iter().filter(|c| c.1).map(|c| c.0 .0).collect();
    // A ledger of a million accounts; the proven one in the middle.
    let account = |i: u64| {
        let address = dag_core::Address(crypto::blake2b256(&(i | 1 << 63).to_le_bytes()));
        let state = Account {
            balance: i,
            next_seq: i % 7,
        };
        (address, state)
    };
    let mut updates: Vec<_> = (0..ACCOUNTS)
        .map(|i| {
            let (a, acc) = account(i);
            account_entry(&a, Some(&acc))
        })
        .collect();
    let mut tree = StateTree::new();
    tree.apply(&mut updates);
    let (proven_address, proven_account) = account(ACCOUNTS / 2);
    let mut m = Milestone {
        index: 42,
        timestamp: BENCH_NOW_MS,
        previous: TxId([3; 32]),
        confirmed_root: merkle::root(&ids),
        applied_root: merkle::root(&applied),
        state_root: Digest(tree.root()),
        ledger_digest: Digest([5; 32]),
        signatures: Vec::new(),
        committee_update: None,
    };
    let parents = [TxId([6; 32]), TxId([7; 32])];
    let msg = crypto::milestone_signing_message(net, &parents, &m);
    m.signatures = (0..3u8)
        .map(|i| (i, members[usize::from(i)].sign(&msg)))
        .collect();
    let ms = Transaction {
        version: TX_VERSION,
        network_id: net,
        parents,
        timestamp: BENCH_NOW_MS,
        payload: Payload::Milestone(m),
        nonce: 0,
    };
    let proof = TransactionProof::build(paid_bytes, codec::encode(&ms), &confirmed, at)
        .expect("the payment is in the list");
    let params = ValidationParams::new(&genesis).expect("valid genesis");
    let proven = proof.verify(&params).expect("the proof verifies");
    assert!(proven.applied);
    let (key, _) = account_entry(&proven_address, None);
    let state = StateProof {
        milestone: proof.milestone.clone(),
        milestone_id: proof.milestone_id,
        entry: StateEntry::Account {
            address: proven_address,
            account: Some(proven_account),
        },
        path: tree.prove(&key),
    };
    state.verify(&params).expect("the state proof verifies");
    Fixture {
        params,
        proof,
        ids,
        state,
    }
}

fn proofs(c: &mut Criterion) {
    let f = fixture();
    let bin = rmp_serde::to_vec(&f.proof).unwrap();
    let json = serde_json::to_vec(&f.proof).unwrap();
    println!(
        "proof of 1 of {CONFIRMED} confirmed: {} B MessagePack ({} B of it the milestone's \
         transaction, {} B the rest), {} B JSON; {} + {} path steps",
        bin.len(),
        f.proof.milestone.len(),
        bin.len() - f.proof.milestone.len(),
        json.len(),
        f.proof.confirmed.len(),
        f.proof.applied.as_ref().map_or(0, Vec::len),
    );
    let mut g = c.benchmark_group("proof");
    g.throughput(Throughput::Elements(1));
    g.bench_function("verify_3_of_4", |b| {
        b.iter(|| black_box(f.proof.verify(&f.params).unwrap()))
    });
    // A verifier that already checked this milestone (proofs of many payments confirmed by
    // one milestone: a charger's or a gateway's case): the signatures are checked once.
    let mut known = dag_core::proof::VerifiedMilestones::new(64);
    f.proof.verify_with(&f.params, &mut known).unwrap();
    g.bench_function("verify_3_of_4_milestone_known", |b| {
        b.iter(|| black_box(f.proof.verify_with(&f.params, &mut known).unwrap()))
    });
    let state_bin = rmp_serde::to_vec(&f.state).unwrap();
    println!(
        "state proof of 1 of {ACCOUNTS} accounts: {} B MessagePack ({} B of it the \
         milestone's transaction), {} siblings",
        state_bin.len(),
        f.state.milestone.len(),
        f.state.path.siblings().len(),
    );
    g.bench_function("verify_account_3_of_4", |b| {
        b.iter(|| black_box(f.state.verify(&f.params).unwrap()))
    });
    g.bench_function("decode_and_verify_msgpack", |b| {
        b.iter(|| {
            let p: TransactionProof = rmp_serde::from_slice(black_box(&bin)).unwrap();
            black_box(p.verify(&f.params).unwrap())
        })
    });
    g.finish();
    // The milestone's three signatures alone, checked as a node does (strict, one by one:
    // `validate`) and as a proof does (`validate_milestone_batched`, one batch).
    let mut g = c.benchmark_group("milestone_check");
    g.throughput(Throughput::Elements(1));
    let (ms_tx, ms_id) = codec::decode_with_id(&f.proof.milestone).unwrap();
    g.bench_function("strict_3_of_4", |b| {
        b.iter(|| {
            black_box(
                dag_core::validate::validate(&f.proof.milestone, ms_tx.timestamp, &f.params)
                    .unwrap(),
            )
        })
    });
    g.bench_function("batched_3_of_4", |b| {
        b.iter(|| {
            dag_core::validate::validate_milestone_batched(
                &ms_tx,
                &ms_id,
                ms_tx.timestamp,
                &f.params,
            )
            .unwrap();
        })
    });
    g.finish();
    let mut g = c.benchmark_group("milestone_roots");
    g.throughput(Throughput::Elements(CONFIRMED as u64));
    g.bench_function("merkle_root_100k", |b| {
        b.iter_batched(
            || f.ids.clone(),
            |ids| black_box(merkle::root(&ids)),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, proofs);
criterion_main!(benches);
