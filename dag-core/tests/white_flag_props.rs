//! Tangle + ledger together: the same set of transactions, delivered in any order, yields the
//! same solid set and, after the same milestones, the identical ledger digest.

use dag_core::ledger::Ledger;
use dag_core::tangle::{InsertOutcome, Tangle, TangleConfig};
use dag_core::{
    Allocation, Body, Genesis, Keypair, MilestoneIndex, SignedPayload, TangleView, TxId,
};
use proptest::prelude::*;

/// One generated transaction: parents (indices into earlier txs, or genesis), and an
/// optional payment (issuer index, seq, recipient index, amount).
#[derive(Clone, Debug)]
struct GenTx {
    parents: [Option<usize>; 2],
    pay: Option<(usize, u64, usize, u64)>,
    /// This transaction carries milestone `n` (milestones are numbered in creation order).
    milestone: bool,
}

fn keys() -> Vec<Keypair> {
    (0..4u8).map(|i| Keypair::from_seed(&[i + 1; 32])).collect()
}

fn genesis(keys: &[Keypair]) -> Genesis {
    Genesis {
        network_name: "wf".into(),
        timestamp: 0,
        pow_difficulty: 0,
        timestamp_window_ms: 1,
        committee: vec![keys[0].address()],
        threshold: 1,
        allocations: keys
            .iter()
            .map(|k| Allocation {
                address: k.address(),
                amount: 100,
            })
            .collect(),
    }
}

fn arb_dag() -> impl Strategy<Value = Vec<GenTx>> {
    (4usize..40).prop_flat_map(|n| {
        proptest::collection::vec(
            (
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
                proptest::option::of((0usize..4, 0u64..4, 0usize..4, 1u64..80)),
                proptest::bool::weighted(0.15),
            ),
            n,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .enumerate()
                .map(|(i, (a, b, pay, ms))| {
                    let pick = |ix: &prop::sample::Index| {
                        // Genesis (None) or one of the earlier transactions.
                        let k = ix.index(i + 1);
                        (k > 0).then(|| k - 1)
                    };
                    let (mut pa, pb) = (pick(&a), pick(&b));
                    if pa == pb && pa.is_some() {
                        pa = None;
                    }
                    GenTx {
                        parents: [pa, pb],
                        pay,
                        milestone: ms,
                    }
                })
                .collect()
        })
    })
}

/// Deterministic ids: each id hashes its parents' ids and its index.
fn ids_of(dag: &[GenTx]) -> Vec<TxId> {
    let mut ids: Vec<TxId> = Vec::with_capacity(dag.len());
    for (i, t) in dag.iter().enumerate() {
        let p = t
            .parents
            .map(|p| p.map(|k| ids[k]).unwrap_or(TxId::GENESIS));
        let mut buf = Vec::new();
        buf.extend_from_slice(&p[0].0);
        buf.extend_from_slice(&p[1].0);
        buf.extend_from_slice(&(i as u64).to_le_bytes());
        ids.push(TxId(dag_core::crypto::blake2b256(&buf)));
    }
    ids
}

/// Inserts `dag` in `order`, then applies its milestones in index order once each is solid.
/// Returns (sorted solid ids, digest after every milestone).
fn run(dag: &[GenTx], order: &[usize]) -> (Vec<TxId>, Vec<(MilestoneIndex, [u8; 32])>) {
    let keys = keys();
    let g = genesis(&keys);
    let net = g.network_id();
    let ids = ids_of(dag);
    let payloads: Vec<Option<SignedPayload>> = dag
        .iter()
        .map(|t| {
            t.pay.map(|(from, seq, to, amount)| {
                SignedPayload::sign(
                    &keys[from],
                    net,
                    seq,
                    Body::Pay {
                        to: keys[to].address(),
                        amount,
                        memo: vec![],
                    },
                )
            })
        })
        .collect();
    let mut ms_index = vec![None; dag.len()];
    let mut n = 0;
    for (i, t) in dag.iter().enumerate() {
        if t.milestone {
            n += 1;
            ms_index[i] = Some(n);
        }
    }
    let mut tangle = Tangle::new(TangleConfig::default());
    for &i in order {
        let p = dag[i]
            .parents
            .map(|p| p.map(|k| ids[k]).unwrap_or(TxId::GENESIS));
        let r = tangle.insert(ids[i], p, ms_index[i], i as u64).unwrap();
        assert!(!matches!(r, InsertOutcome::Duplicate));
    }
    let mut ledger = Ledger::from_genesis(&g).unwrap();
    let mut digests = Vec::new();
    for (i, ms) in ms_index.iter().enumerate() {
        let Some(index) = *ms else { continue };
        let r = tangle
            .lookup(&ids[i])
            .expect("everything arrived, so all is solid");
        let roots = tangle.parents(r);
        let mut cone = tangle.unconfirmed_cone(&roots);
        let applied: Vec<(TxId, &SignedPayload)> = cone
            .iter()
            .filter_map(|c| {
                let id = tangle.id(*c);
                let k = ids.iter().position(|x| *x == id)?;
                payloads[k].as_ref().map(|p| (id, p))
            })
            .collect();
        let out = ledger.apply_milestone(index, applied).unwrap();
        cone.push(r);
        tangle.confirm(&cone, index, r).unwrap();
        ledger.check_invariants().unwrap();
        digests.push((index, out.ledger_digest.0));
    }
    let mut solid: Vec<TxId> = ids
        .iter()
        .copied()
        .filter(|id| tangle.is_solid(id))
        .collect();
    solid.sort();
    (solid, digests)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn any_arrival_order_gives_the_same_ledger_digests(
        dag in arb_dag(),
        seed in any::<u64>(),
    ) {
        let in_order: Vec<usize> = (0..dag.len()).collect();
        let mut shuffled = in_order.clone();
        // Fisher-Yates with a tiny LCG, so the permutation depends only on `seed`.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let reversed: Vec<usize> = in_order.iter().rev().copied().collect();
        let a = run(&dag, &in_order);
        prop_assert_eq!(a.0.len(), dag.len(), "every transaction is solid");
        let b = run(&dag, &shuffled);
        let c = run(&dag, &reversed);
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(&a, &c);
    }
}
