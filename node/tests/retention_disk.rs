//! `[pruning] max_disk_mb`: with a disk target no store can meet (64 KiB here; the config
//! takes whole MiB, 1 is the same case), an archive node prunes down to the floor of two
//! milestones, keeps confirming payments with exact balances, and its store restarts.

use std::sync::Arc;
use std::time::Duration;

mod common;

use dag_core::{Address, Body, SignedPayload};
use node::runtime::DiskTarget;
use node::store::SledStore;
use node::{Node, NodeService, NodeSetup};
use node_proto::ProtocolConfig;

/// Polls `f` until it holds. No deadline: a hang is caught by the test runner's timeout,
/// never decided by a clock here.
async fn until(mut f: impl FnMut() -> bool) {
    while !f() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn setup(n: &common::Net, dir: &std::path::Path) -> NodeSetup {
    NodeSetup {
        genesis: n.genesis.clone(),
        store: Arc::new(SledStore::open(dir).unwrap()),
        protocol: ProtocolConfig {
            milestone_signer: Some((0, n.committee.clone())),
            milestone_interval_ms: 50,
            // An archive node: only the disk target prunes.
            keep_milestones: None,
            ..ProtocolConfig::default()
        },
        max_batch: 256,
        queue_capacity: 1024,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_disk_target_prunes_to_two_milestones_and_the_node_carries_on() {
    let n = common::network("retention-disk", 2, 60_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let node = Node::start(setup(&n, &dir)).await.unwrap();
    node.limit_disk(DiskTarget {
        dir: dir.clone(),
        max_bytes: 64 << 10,
        period: Duration::from_millis(50),
    });
    let h = node.handle();
    let nid = n.genesis.network_id();
    let pay = |seq: u64| {
        SignedPayload::sign(
            &n.faucet,
            nid,
            seq,
            Body::Pay {
                to: Address([7; 32]),
                amount: 3,
                memo: Vec::new(),
            },
        )
    };
    // Payments while milestones go by, until the node holds only two milestones (the
    // durable confirmed index may trail the core's by one) well after the start.
    let mut seq = 0;
    loop {
        let r = h.submit_payloads(vec![pay(seq), pay(seq + 1)]).await;
        for x in r {
            x.unwrap();
        }
        seq += 2;
        let info = h.info();
        if info.confirmed_milestone >= 20 && info.oldest_milestone + 1 >= info.confirmed_milestone {
            break;
        }
        assert!(
            info.confirmed_milestone < 5_000,
            "never pruned to the floor: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // It carries on: a new payment confirms (it may be pruned again soon after, so the
    // balance tells), every payment applied once.
    h.submit_payloads(vec![pay(seq)]).await.remove(0).unwrap();
    seq += 1;
    until(|| h.account(&Address([7; 32])).unwrap().balance == 3 * seq).await;
    assert!(h.health().healthy, "{:?}", h.health());
    // The latest milestone is served. (The floor of two is checked exactly in node-proto's
    // retention tests; here the core may be a milestone or two ahead of the durable index
    // `info` reports, so that one may already be pruned.)
    assert!(h.milestone(None).unwrap().is_some());
    let info = h.info();
    let (confirmed, digest) = (info.confirmed_milestone, info.ledger_digest);
    drop(h);
    node.shutdown().await;

    // The pruned store restarts with the same ledger.
    let node = Node::start(setup(&n, &dir)).await.unwrap();
    let info = node.handle().info();
    assert!(info.confirmed_milestone >= confirmed);
    if info.confirmed_milestone == confirmed {
        assert_eq!(info.ledger_digest, digest);
    }
    assert!(info.oldest_milestone > 1, "{info:?}");
    assert_eq!(
        node.handle().account(&Address([7; 32])).unwrap().balance,
        3 * seq
    );
    node.shutdown().await;
}
