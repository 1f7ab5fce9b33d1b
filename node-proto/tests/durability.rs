//! Harness scenarios with store writes that become durable only after a lag
//! (`harness::Faults::durable_lag_ms`), as on a real disk: what a crash may take back must
//! never have reached a peer.

use node_proto::harness::{Cluster, ClusterConfig, Faults};

fn cluster(lag_ms: u64) -> Cluster {
    let mut config = ClusterConfig::dev(3, 7);
    config.faults = Faults {
        durable_lag_ms: lag_ms,
        ..Faults::default()
    };
    let mut c = Cluster::new(config).unwrap();
    c.run_until(5_000, |c| c.all_connected()).unwrap();
    c
}

/// Found by `tangle-sim chaos` (seed 344): the issuer gossiped its milestone transaction
/// on acceptance, before its write was durable; a crash then lost it at the issuer while
/// peers held it, and the restarted issuer signed another milestone of that index (peers
/// halted). A milestone now reaches peers only once durable at its issuer.
#[test]
fn a_milestone_reaches_peers_only_once_durable_at_its_issuer() {
    let lag = 200;
    let mut c = cluster(lag);
    let net = c.network().clone();
    for round in 0..3u64 {
        let p = net.pay(&net.faucet, round, dag_core::Address([9; 32]), 1);
        assert!(c.submit(0, vec![p]).unwrap()[0].is_ok());
        let m = c.node(0).confirmed_index() + 1;
        c.run_until(5_000, |c| c.node(0).confirmed_index() >= m)
            .unwrap();
        let issued = c.now();
        c.run_until(5_000, |c| c.node(1).confirmed_index() >= m)
            .unwrap();
        assert!(
            c.now() >= issued + lag,
            "milestone {m} applied by a peer {} ms after it was issued, before it was durable",
            c.now() - issued
        );
    }
    // Crash the issuer the moment it issues: the milestone it had not made durable is
    // gone for everyone, and the one it issues after the restart is the only one.
    let m = c.node(0).confirmed_index() + 1;
    c.run_until(5_000, |c| c.node(0).confirmed_index() >= m)
        .unwrap();
    c.crash(0).unwrap();
    c.advance(100);
    c.restart(0).unwrap();
    c.run_until(20_000, |c| c.converged_at_least(m + 2))
        .unwrap();
    for n in c.nodes() {
        assert_eq!(n.protocol().halted(), None, "node {}", n.index());
    }
    let histories: Vec<_> = c.nodes().iter().map(|n| n.milestone_digests()).collect();
    let common = histories.iter().map(Vec::len).min().unwrap();
    for h in &histories {
        assert_eq!(h[..common], histories[0][..common]);
    }
}
