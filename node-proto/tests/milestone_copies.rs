//! Re-nonced copies of a milestone (the open bug of RELIABILITY "A halt from a re-nonced
//! milestone"): the committee's signatures do not cover a transaction's nonce, so anyone
//! holding a milestone transaction can make other valid transactions carrying the same
//! milestone (another nonce, another id) with a little proof of work. Every node must end up
//! treating every copy alike (confirmed by that milestone), whatever order the copies and
//! the original reach it in, or a later milestone's cone holds a copy on one node and not on
//! another and a node halts on a confirmed-root mismatch. Hand-built scenarios on the
//! harness's virtual clock: deterministic.

use dag_core::{Address, MilestoneIndex, TxId};
use node_proto::harness::{Cluster, ClusterConfig};
use node_proto::wire::Message;

/// `count` copies of the milestone transaction `bytes` with other nonces (valid proof of
/// work at `difficulty`), each with another id.
fn renonced(bytes: &[u8], difficulty: u8, count: usize) -> Vec<Vec<u8>> {
    let original = dag_core::codec::decode(bytes).unwrap();
    let original_id = dag_core::codec::id_of_encoding(bytes);
    let mut tx = original.clone();
    let mut out = Vec::new();
    let mut seen = vec![original_id];
    while out.len() < count {
        tx.nonce = tx.nonce.wrapping_add(1);
        let id = dag_core::pow::solve(&mut tx, difficulty);
        if !seen.contains(&id) {
            seen.push(id);
            out.push(dag_core::codec::encode(&tx));
        }
    }
    out
}

/// Three nodes, node 0 the issuer; node 1 is cut off while node 0 issues milestone `m`;
/// then node 1 is connected to node 2 only, which hands it `copies` re-nonced copies of
/// milestone `m` before anything else (they wait for their parents together, so they all
/// become solid at one instant, before the milestone is applied there). Then every link
/// heals, payments go through node 1 (whose tip selection sees whatever it left
/// unconfirmed), and milestones must go on with one history and no halt. With `restart`,
/// node 1 is crashed and restarted from its store once it applied the milestone: the
/// copies come back from the store before the original, become solid together, and must be
/// confirmed when the milestone's confirmation is replayed.
fn copies_reach_a_syncing_node_first(seed: u64, copies: usize, restart: bool) {
    let mut config = ClusterConfig::dev(3, seed);
    config.protocol.milestone_interval_ms = 200;
    let difficulty = config.network.genesis.pow_difficulty;
    let mut c = Cluster::new(config).unwrap();
    c.run_until(5_000, |c| c.all_connected()).unwrap();
    c.run_until(10_000, |c| c.converged_at_least(2)).unwrap();
    let net = c.network().clone();
    let mut seq = 0u64;
    let mut pay = |c: &mut Cluster, at: usize| {
        let p = net.pay(&net.faucet, seq, Address([9; 32]), 1);
        seq += 1;
        let r = c.submit(at, vec![p]).unwrap();
        assert!(
            r[0].is_ok(),
            "payment at node {at}: {:?} (halted: {:?})",
            r[0],
            c.node(at).protocol().halted()
        );
    };

    c.partition(0, 1);
    c.partition(1, 2);
    for _ in 0..3 {
        pay(&mut c, 0);
        c.advance(150);
    }
    let m: MilestoneIndex = c.node(0).confirmed_index();
    assert!(m > c.node(1).confirmed_index(), "node 1 is behind");
    let id: TxId = c.node(0).protocol().milestone_tx_id(m).unwrap();
    let bytes = c.node(0).transaction(&id).unwrap();
    let forged = renonced(&bytes, difficulty, copies);

    // Node 1 meets node 2 again; the copies come first.
    c.heal(1, 2);
    c.run_until(20_000, |c| {
        c.all_connected() || c.is_cut(0, 1) && { c.node(1).peering().connected().len() == 1 }
    })
    .unwrap();
    for b in &forged {
        c.inject(2, 1, &Message::Transaction(b.clone())).unwrap();
    }
    c.run_until(20_000, |c| c.node(1).confirmed_index() >= m)
        .expect("node 1 applies the milestone");
    if restart {
        c.advance(500);
        assert_eq!(c.node(1).pending_writes(), 0, "node 1's writes are durable");
        c.crash(1).unwrap();
        c.restart(1).unwrap();
        assert!(c.node(1).confirmed_index() >= m);
        assert_eq!(c.node(1).protocol().halted(), None);
    }

    c.heal_all();
    c.run_until(20_000, |c| c.all_connected()).unwrap();
    for k in 0..30 {
        pay(&mut c, 1 + k % 2);
        c.advance(40);
        for n in c.nodes() {
            assert_eq!(n.protocol().halted(), None, "node {} halted", n.index());
        }
    }
    let target = c.node(0).confirmed_index() + 3;
    c.run_until(30_000, |c| {
        c.converged_at_least(target) || c.nodes().iter().any(|n| n.protocol().halted().is_some())
    })
    .unwrap();
    for n in c.nodes() {
        assert_eq!(n.protocol().halted(), None, "node {} halted", n.index());
    }
    assert!(c.converged_at_least(target), "milestones went on");
    for i in 1..=target {
        let ds: Vec<_> = c.digests_at(i).into_iter().flatten().collect();
        assert!(ds.iter().all(|d| *d == ds[0]), "fork at milestone {i}");
    }
}

/// One copy, as chaos seed 6670 made it (a bit flipped in the nonce).
#[test]
fn one_renonced_milestone_copy_first_at_a_syncing_node() {
    for seed in 1..=3 {
        copies_reach_a_syncing_node_first(seed, 1, false);
    }
}

/// More copies than a milestone has signatures (the core remembered at most
/// `MAX_MILESTONE_SIGNATURES` copies of an index): any peer can make them.
#[test]
fn many_renonced_milestone_copies_first_at_a_syncing_node() {
    for seed in 1..=3 {
        copies_reach_a_syncing_node_first(seed, 40, false);
    }
}

/// The same, node 1 restarted from its store after it applied the milestone: on restart
/// the copies, stored before the milestone's parents, become solid together before the
/// milestone's confirmation is replayed, and the replay must confirm them (it confirmed only
/// the copy the Tangle holds as the milestone: node 1 halted at a later milestone, as
/// committee chaos seed 255 and 17 others of 0-1999 did).
#[test]
fn renonced_milestone_copies_are_confirmed_again_after_a_restart() {
    for seed in 1..=3 {
        copies_reach_a_syncing_node_first(seed, 40, true);
    }
}
