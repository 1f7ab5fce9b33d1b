//! Property tests of the in-memory `Tangle`: arrival-order independence, solidification,
//! the buffer bound, white-flag order and referenced milestones against naive recomputation.

use std::collections::{BTreeSet, HashSet};

use dag_core::{
    InsertError, InsertOutcome, ReferencedMilestones, Tangle, TangleConfig, TangleView, TxId, TxRef,
};
use proptest::prelude::*;

const G: TxId = TxId::GENESIS;

/// A random DAG: `dag[i]` are the parents of transaction `i` as indices where 0 is the genesis
/// and `k > 0` is transaction `k - 1`. Parents are distinct unless both are the genesis.
fn dag(max: usize) -> impl Strategy<Value = Vec<[usize; 2]>> {
    prop::collection::vec((any::<u32>(), any::<u32>()), 1..max).prop_map(|raw| {
        raw.iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                let span = i + 1; // genesis plus the i earlier transactions
                let a = a as usize % span;
                let mut b = b as usize % span;
                if a == b && a != 0 {
                    b = (a + 1) % span;
                }
                [a, b]
            })
            .collect()
    })
}

/// A random DAG and a permutation of its transactions.
fn dag_and_order(max: usize) -> impl Strategy<Value = (Vec<[usize; 2]>, Vec<usize>)> {
    dag(max).prop_flat_map(|d| {
        let order: Vec<usize> = (0..d.len()).collect();
        (Just(d), Just(order).prop_shuffle())
    })
}

fn tid(i: usize) -> TxId {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(
        &(i as u64 + 1)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .to_le_bytes(),
    );
    b[8..16].copy_from_slice(&(i as u64).to_le_bytes());
    b[31] = 1;
    TxId(b)
}

/// Id of DAG node `k` (0 = genesis).
fn node_id(k: usize) -> TxId {
    if k == 0 {
        G
    } else {
        tid(k - 1)
    }
}

fn insert_all(d: &[[usize; 2]], order: &[usize], capacity: usize) -> Tangle {
    let mut t = Tangle::new(TangleConfig {
        pending_capacity: capacity,
        initial_capacity: 0,
    });
    for &i in order {
        let p = d[i];
        t.insert(tid(i), [node_id(p[0]), node_id(p[1])], None, i as u64)
            .expect("insert");
    }
    t
}

fn ids(t: &Tangle, refs: &[TxRef]) -> Vec<TxId> {
    refs.iter().map(|r| t.id(*r)).collect()
}

fn solid_set(t: &Tangle) -> BTreeSet<TxId> {
    t.refs().map(|r| t.id(r)).collect()
}

fn tip_set(t: &Tangle) -> BTreeSet<TxId> {
    t.tips().iter().map(|r| t.id(*r)).collect()
}

/// Transactions of `d` whose whole past cone is in `inserted`.
fn naive_solid(d: &[[usize; 2]], inserted: &HashSet<usize>) -> HashSet<usize> {
    let mut solid = HashSet::new();
    // Parents have smaller indices, so one pass in index order suffices.
    for (i, p) in d.iter().enumerate() {
        let ok = |k: usize| k == 0 || solid.contains(&(k - 1));
        if inserted.contains(&i) && ok(p[0]) && ok(p[1]) {
            solid.insert(i);
        }
    }
    solid
}

/// Naive white-flag order over ids: recursive post-order, trunk first, stop at `confirmed`.
fn naive_cone(d: &[[usize; 2]], roots: &[usize], confirmed: &HashSet<usize>) -> Vec<TxId> {
    fn visit(
        d: &[[usize; 2]],
        k: usize,
        confirmed: &HashSet<usize>,
        seen: &mut HashSet<usize>,
        out: &mut Vec<TxId>,
    ) {
        if k == 0 || confirmed.contains(&(k - 1)) || !seen.insert(k) {
            return;
        }
        let p = d[k - 1];
        visit(d, p[0], confirmed, seen, out);
        visit(d, p[1], confirmed, seen, out);
        out.push(node_id(k));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &r in roots {
        visit(d, r + 1, confirmed, &mut seen, &mut out);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Any arrival order gives the same solid set, tips, parent links and white-flag order.
    #[test]
    fn arrival_order_does_not_matter((d, order) in dag_and_order(60), roots in prop::collection::vec(any::<usize>(), 1..4)) {
        let topo: Vec<usize> = (0..d.len()).collect();
        let a = insert_all(&d, &topo, 1_000);
        let b = insert_all(&d, &order, 1_000);
        prop_assert_eq!(b.pending_len(), 0);
        prop_assert_eq!(solid_set(&a), solid_set(&b));
        prop_assert_eq!(solid_set(&a).len(), d.len() + 1);
        prop_assert_eq!(tip_set(&a), tip_set(&b));
        for i in 0..d.len() {
            let (ra, rb) = (a.lookup(&tid(i)).unwrap(), b.lookup(&tid(i)).unwrap());
            prop_assert_eq!(ids(&a, &a.parents(ra)), ids(&b, &b.parents(rb)));
            let appr_a: BTreeSet<TxId> = ids(&a, a.approvers(ra)).into_iter().collect();
            let appr_b: BTreeSet<TxId> = ids(&b, b.approvers(rb)).into_iter().collect();
            prop_assert_eq!(appr_a, appr_b);
            for p in a.parents(ra) {
                prop_assert!(p < ra, "parents have smaller refs");
            }
        }
        let roots: Vec<usize> = roots.iter().map(|r| r % d.len()).collect();
        let cone_a = a.unconfirmed_cone(&roots.iter().map(|i| a.lookup(&tid(*i)).unwrap()).collect::<Vec<_>>());
        let cone_b = b.unconfirmed_cone(&roots.iter().map(|i| b.lookup(&tid(*i)).unwrap()).collect::<Vec<_>>());
        prop_assert_eq!(ids(&a, &cone_a), ids(&b, &cone_b));
        prop_assert_eq!(ids(&a, &cone_a), naive_cone(&d, &roots, &HashSet::new()));
    }

    /// After every arrival, exactly the transactions whose whole past cone has arrived are
    /// solid; the others wait, and `Solid` lists parents first.
    #[test]
    fn buffered_arrivals_become_solid_when_parents_arrive((d, order) in dag_and_order(40)) {
        let mut t = Tangle::default();
        let mut inserted = HashSet::new();
        for &i in &order {
            let p = d[i];
            let out = t.insert(tid(i), [node_id(p[0]), node_id(p[1])], None, 0).unwrap();
            inserted.insert(i);
            let expect = naive_solid(&d, &inserted);
            for j in 0..d.len() {
                prop_assert_eq!(t.is_solid(&tid(j)), expect.contains(&j));
                prop_assert_eq!(t.is_pending(&tid(j)), inserted.contains(&j) && !expect.contains(&j));
            }
            match out {
                InsertOutcome::Solid(v) => {
                    prop_assert_eq!(v[0].0, tid(i));
                    let mut seen = HashSet::new();
                    for (id, r) in v {
                        for p in t.parents(r) {
                            let older = seen.contains(&p) || p < r;
                            prop_assert!(older);
                        }
                        prop_assert_eq!(t.lookup(&id), Some(r));
                        seen.insert(r);
                    }
                }
                InsertOutcome::Pending { missing } => {
                    prop_assert!(!expect.contains(&i));
                    for m in missing {
                        prop_assert!(!t.is_known(&m), "reported parents are the unknown ones");
                    }
                }
                InsertOutcome::Duplicate => prop_assert!(false, "no duplicates inserted"),
            }
        }
        prop_assert_eq!(t.pending_len(), 0);
    }

    /// The buffer never holds more than its capacity; refused arrivals leave no trace and the
    /// solid set is the closure of what was accepted.
    #[test]
    fn buffer_bound_is_respected((d, order) in dag_and_order(40), capacity in 0usize..6) {
        let mut t = Tangle::new(TangleConfig { pending_capacity: capacity, initial_capacity: 0 });
        let mut accepted = HashSet::new();
        for &i in &order {
            let p = d[i];
            match t.insert(tid(i), [node_id(p[0]), node_id(p[1])], None, 0) {
                Ok(_) => { accepted.insert(i); }
                Err(InsertError::BufferFull { capacity: c }) => {
                    prop_assert_eq!(c, capacity);
                    prop_assert_eq!(t.pending_len(), capacity);
                    prop_assert!(!t.is_known(&tid(i)));
                }
                Err(e) => prop_assert!(false, "unexpected {e:?}"),
            }
            prop_assert!(t.pending_len() <= capacity);
        }
        let expect = naive_solid(&d, &accepted);
        for j in 0..d.len() {
            prop_assert_eq!(t.is_solid(&tid(j)), expect.contains(&j));
        }
    }

    /// Referenced milestones match a naive walk of each past cone after a random sequence of
    /// arrivals and milestones; white-flag order matches the naive recursive one.
    #[test]
    fn referenced_milestones_match_naive(d in dag(60), picks in prop::collection::vec((any::<usize>(), any::<usize>()), 1..8)) {
        let mut t = Tangle::default();
        let mut confirmed: HashSet<usize> = HashSet::new();
        let mut confirmed_by: Vec<Option<u32>> = vec![None; d.len()];
        let mut next = 0usize;
        let mut index = 0u32;
        for (grow, pick) in picks {
            // Insert a few more, then confirm the cone of a random held transaction.
            let upto = (next + 1 + grow % 10).min(d.len());
            while next < upto {
                let p = d[next];
                t.insert(tid(next), [node_id(p[0]), node_id(p[1])], None, 0).unwrap();
                next += 1;
            }
            let m = pick % next;
            let mr = t.lookup(&tid(m)).unwrap();
            let cone = t.unconfirmed_cone(&[mr]);
            prop_assert_eq!(ids(&t, &cone), naive_cone(&d, &[m], &confirmed));
            if cone.is_empty() {
                continue;
            }
            index += 1;
            t.confirm(&cone, index, mr).unwrap();
            for id in ids(&t, &cone) {
                let k = (0..d.len()).find(|k| tid(*k) == id).unwrap();
                confirmed.insert(k);
                confirmed_by[k] = Some(index);
            }
            prop_assert_eq!(t.confirmed_milestone(), index);
            prop_assert_eq!(t.milestone(index), Some(mr));
        }
        for i in 0..next {
            let r = t.lookup(&tid(i)).unwrap();
            prop_assert_eq!(t.confirmed_by(r), confirmed_by[i]);
            // Naive: the confirming indices at the border of the past cone.
            let expect = match confirmed_by[i] {
                Some(c) => (c, c),
                None => {
                    let mut border = Vec::new();
                    let mut stack = vec![i + 1];
                    let mut seen = HashSet::new();
                    while let Some(k) = stack.pop() {
                        if !seen.insert(k) { continue; }
                        if k == 0 { border.push(0); continue; }
                        match confirmed_by[k - 1] {
                            Some(c) if k != i + 1 => border.push(c),
                            _ => stack.extend(d[k - 1]),
                        }
                    }
                    (*border.iter().min().unwrap(), *border.iter().max().unwrap())
                }
            };
            prop_assert_eq!(
                t.referenced_milestones(r),
                ReferencedMilestones { oldest: expect.0, youngest: expect.1 }
            );
        }
        let unconfirmed: Vec<TxId> = t.unconfirmed().map(|r| t.id(r)).collect();
        let expect: Vec<TxId> = (0..next).filter(|k| confirmed_by[*k].is_none()).map(tid).collect();
        prop_assert_eq!(unconfirmed, expect);
    }

    /// Pruning a confirmed prefix keeps every held transaction's view unchanged.
    #[test]
    fn prune_keeps_the_held_view((d, _order) in dag_and_order(60), pick in any::<usize>()) {
        let mut t = insert_all(&d, &(0..d.len()).collect::<Vec<_>>(), 10);
        let m = t.lookup(&tid(pick % d.len())).unwrap();
        let cone = t.unconfirmed_cone(&[m]);
        t.confirm(&cone, 1, m).unwrap();
        let before = t.clone();
        // Prune as far as allowed: the first unconfirmed tx that something approves.
        let mut keep = t.newest();
        for r in t.unconfirmed() {
            if !t.approvers(r).is_empty() { keep = keep.min(r); break; }
        }
        keep = keep.min(m);
        let dropped = t.prune_before(keep).unwrap();
        prop_assert_eq!(dropped, keep.index());
        prop_assert_eq!(t.root(), keep);
        for r in t.refs() {
            prop_assert_eq!(t.id(r), before.id(r));
            prop_assert_eq!(t.approvers(r), before.approvers(r));
            prop_assert_eq!(t.confirmed_by(r), before.confirmed_by(r));
            prop_assert_eq!(t.referenced_milestones(r), before.referenced_milestones(r));
            for p in t.parents(r) {
                prop_assert_eq!(t.lookup(&before.id(p)), Some(p), "approved parents stay known");
                prop_assert!(t.confirmed_by(p).is_some() || p >= keep);
            }
        }
        let tips: BTreeSet<TxRef> = t.tips().iter().copied().collect();
        let expect: BTreeSet<TxRef> = before.tips().iter().copied().filter(|r| *r >= keep).collect();
        prop_assert_eq!(tips, expect);
        prop_assert_eq!(t.unconfirmed_cone(&[t.newest()]), before.unconfirmed_cone(&[before.newest()]));
    }
}
