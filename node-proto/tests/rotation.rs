//! Committee rotation (issue #15) on the in-memory harness, virtual time: a committee of four
//! (threshold three) hands over to a new set that drops member 0 and adds a fifth node's
//! key; a member that approved another update does not get it in; a node that was down
//! through the rotation syncs across it; restarts keep the schedule.

use dag_core::{CommitteeUpdate, Digest, Keypair, MilestoneIndex};
use node_proto::harness::{Cluster, ClusterConfig, DevNetwork};

const INTERVAL: u64 = 500;
const TIMEOUT: u64 = 1_000;

/// Five nodes: 0-3 hold the genesis committee's keys (threshold 3), node 4 holds a key in
/// no committee yet. The faucet is on node 0.
fn cluster(seed: u64, newcomer: &Keypair) -> Cluster {
    let mut config = ClusterConfig::dev(5, seed);
    config.network = DevNetwork::with_committee("rotation", 2, 4, 3);
    config.protocol.milestone_interval_ms = INTERVAL;
    config.protocol.proposer_timeout_ms = TIMEOUT;
    let mut c = Cluster::new(config).unwrap();
    // Node 4 gets its key: not in the genesis committee, accepted as a member-to-be.
    c.crash(4).unwrap();
    c.set_milestone_signer(4, Some((4, newcomer.clone())))
        .unwrap();
    c.restart(4).unwrap();
    c.run_until(5_000, |c| c.all_connected())
        .expect("a full mesh");
    c
}

fn max_index(c: &Cluster) -> MilestoneIndex {
    c.nodes()
        .iter()
        .filter(|n| n.is_up())
        .map(|n| n.confirmed_index())
        .max()
        .unwrap()
}

fn assert_no_fork(c: &Cluster) {
    let top = c.nodes().iter().map(|n| n.confirmed_index()).max().unwrap();
    for i in 1..=top {
        let ds: Vec<Digest> = c.digests_at(i).into_iter().flatten().collect();
        assert!(
            ds.iter().all(|d| *d == ds[0]),
            "fork at milestone {i}: {ds:?}"
        );
    }
    for n in c.nodes() {
        assert_eq!(n.protocol().halted(), None, "node {} halted", n.index());
    }
}

#[test]
fn a_committee_hands_over_to_a_new_key_set_and_every_node_follows() {
    let newcomer = Keypair::from_seed(&[77; 32]);
    let mut c = cluster(5, &newcomer);
    c.run_until(20_000, |c| c.converged_at_least(3))
        .expect("the genesis committee issues");
    let old = c.network().genesis.committee.clone();
    let from = max_index(&c) + 6;
    let update = CommitteeUpdate {
        effective_from: from,
        committee: vec![old[1], old[2], old[3], newcomer.address()],
        threshold: 3,
    };
    // Node 3 was down from before the rotation was approved until well after it took
    // effect: it must sync across it.
    c.crash(3).unwrap();
    // Members 0-2 approve it; member 3 is down (three signatures suffice).
    for i in 0..3 {
        c.approve_committee_update(i, Some(update.clone())).unwrap();
    }
    c.run_until(60_000, |c| {
        (0..3).all(|i| c.node(i).protocol().committee_schedule().epochs().len() == 2)
    })
    .expect("a milestone carries the update");
    let goal = from + 4;
    c.run_until(60_000, |c| {
        [0usize, 1, 2, 4]
            .iter()
            .all(|i| c.node(*i).confirmed_index() >= goal)
    })
    .expect("the new committee issues after the handover");

    // Every up node runs the same schedule: the genesis committee, then the new one.
    for i in [0usize, 1, 2, 4] {
        let s = c.node(i).protocol().committee_schedule();
        let e = s.epochs();
        assert_eq!(e.len(), 2, "node {i}");
        assert_eq!(e[1].from, from);
        assert_eq!(e[1].committee, update.committee);
        assert_eq!(s.at(from - 1).committee, old);
        assert_eq!(s.rotations().len(), 1);
        // The operators' approval is used up.
        assert!(c.node(i).protocol().approved_committee_update().is_none());
    }
    // The newcomer is a member now and signs; member 0 is out.
    let stats = c
        .node(4)
        .protocol()
        .committee_stats()
        .expect("node 4 is a member");
    assert!(stats.votes > 0, "the newcomer signed milestones: {stats:?}");
    assert_eq!(stats.member, 3);
    assert!(c.node(0).protocol().committee_stats().is_none());
    assert!(
        c.node(0).confirmed_index() >= goal,
        "a former member follows"
    );

    // Node 3 comes back: it syncs the old committee's milestones, the rotation, then the
    // new committee's (which it could not check before it applied the rotation).
    c.restart(3).unwrap();
    let goal = max_index(&c) + 3;
    c.run_until(90_000, |c| c.converged_at_least(goal))
        .expect("the node down through the rotation catches up");
    assert_eq!(
        c.node(3).protocol().committee_schedule().epochs(),
        c.node(1).protocol().committee_schedule().epochs()
    );

    // A snapshot taken after the rotation carries it, and verifies from the genesis alone;
    // without its rotations (or with a forged one) it is refused.
    let genesis = c.network().genesis.clone();
    let snap = node_proto::snapshot::from_store(c.node(1).store(), &genesis, c.now()).unwrap();
    assert!(snap.header.milestone >= from);
    assert_eq!(snap.header.rotations.len(), 1);
    assert_eq!(snap.header.committee, update.committee);
    snap.verify(&genesis, dag_core::ledger::state_root_of)
        .unwrap();
    let mut stripped = snap.clone();
    stripped.header.rotations.clear();
    stripped.state.rotations.clear();
    stripped.header.committee = old.clone();
    assert!(
        stripped
            .verify(&genesis, dag_core::ledger::state_root_of)
            .is_err(),
        "the old committee did not sign it"
    );
    let mut forged = snap.clone();
    for r in [
        &mut forged.header.rotations[0],
        &mut forged.state.rotations[0],
    ] {
        r.milestone.committee_update.as_mut().unwrap().threshold = 1;
    }
    forged.header.threshold = 1;
    assert!(
        forged
            .verify(&genesis, dag_core::ledger::state_root_of)
            .is_err(),
        "a rotation the committee did not sign"
    );

    // A restart keeps the schedule (from the store) and the node keeps applying.
    c.crash(2).unwrap();
    c.restart(2).unwrap();
    assert_eq!(
        c.node(2).protocol().committee_schedule().epochs(),
        c.node(1).protocol().committee_schedule().epochs()
    );
    let goal = max_index(&c) + 3;
    c.run_until(60_000, |c| c.converged_at_least(goal))
        .expect("milestones continue after the restart");
    assert_no_fork(&c);
}

#[test]
fn an_update_only_one_member_approved_never_takes_effect() {
    let newcomer = Keypair::from_seed(&[78; 32]);
    let mut c = cluster(9, &newcomer);
    c.run_until(20_000, |c| c.converged_at_least(2))
        .expect("the genesis committee issues");
    let old = c.network().genesis.committee.clone();
    let from = max_index(&c) + 4;
    let wanted = CommitteeUpdate {
        effective_from: from,
        committee: vec![old[0], old[1], old[2], newcomer.address()],
        threshold: 3,
    };
    // Member 3's operator wants itself alone in charge: the others refuse to sign it.
    let rogue = CommitteeUpdate {
        effective_from: from,
        committee: vec![old[3]],
        threshold: 1,
    };
    for i in 0..3 {
        c.approve_committee_update(i, Some(wanted.clone())).unwrap();
    }
    c.approve_committee_update(3, Some(rogue)).unwrap();
    let goal = from + 3;
    c.run_until(90_000, |c| c.converged_at_least(goal))
        .expect("milestones continue");
    for n in c.nodes() {
        let s = n.protocol().committee_schedule();
        assert_eq!(s.epochs().len(), 2, "node {}", n.index());
        assert_eq!(s.epochs()[1].committee, wanted.committee);
    }
    assert_no_fork(&c);
}

#[test]
fn unusable_updates_are_refused_at_approval() {
    let newcomer = Keypair::from_seed(&[79; 32]);
    let mut c = cluster(3, &newcomer);
    c.run_until(20_000, |c| c.converged_at_least(2)).unwrap();
    let next = max_index(&c) + 1;
    let old = c.network().genesis.committee.clone();
    let too_soon = CommitteeUpdate {
        effective_from: next - 1,
        committee: old.clone(),
        threshold: 2,
    };
    assert!(c.approve_committee_update(0, Some(too_soon)).is_err());
    let bad_threshold = CommitteeUpdate {
        effective_from: next + 5,
        committee: old.clone(),
        threshold: 5,
    };
    assert!(c.approve_committee_update(0, Some(bad_threshold)).is_err());
    assert!(c.node(0).protocol().approved_committee_update().is_none());
}
