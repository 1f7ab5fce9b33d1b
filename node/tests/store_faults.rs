//! Storage that fails for a while (a full disk, no file descriptors left) does not stop the
//! node for good: it refuses data with 503 while writes fail, retries what failed in order,
//! and carries on once storage works again, with nothing acknowledged lost.

use std::sync::Arc;
use std::time::Duration;

mod common;

use dag_core::store::FaultyStore;
use dag_core::{Address, Body, SignedPayload};
use node::service::{PayloadState, SubmitError};
use node::{Node, NodeService, NodeSetup};
use node_proto::ProtocolConfig;

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    // Bounded only so that a bug fails instead of hanging; success never waits for it.
    for _ in 0..3000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_is_retried_and_the_node_recovers() {
    let n = common::network("store-faults", 2, 60_000);
    let store = Arc::new(FaultyStore::new());
    let node = Node::start(NodeSetup {
        genesis: n.genesis.clone(),
        store: store.clone(),
        protocol: ProtocolConfig {
            milestone_signer: Some((0, n.committee.clone())),
            milestone_interval_ms: 100,
            ..ProtocolConfig::default()
        },
        max_batch: 256,
        queue_capacity: 1024,
    })
    .await
    .unwrap();
    let h = node.handle();
    let nid = n.genesis.network_id();
    let pay = |seq: u64, to: u8| {
        SignedPayload::sign(
            &n.faucet,
            nid,
            seq,
            Body::Pay {
                to: Address([to; 32]),
                amount: 10,
                memo: Vec::new(),
            },
        )
    };
    let first = h.submit_payloads(vec![pay(0, 1)]).await.remove(0).unwrap();

    // Storage fails: the next submission is not acknowledged, and the node says why.
    store.set_failing(true);
    let r = h.submit_payloads(vec![pay(1, 2)]).await.remove(0);
    assert!(matches!(r, Err(SubmitError::Unavailable(_))), "{r:?}");
    let health = h.health();
    assert!(!health.healthy);
    assert!(
        health.reasons[0].contains("Too many open files"),
        "{health:?}"
    );
    let r = h.submit_payloads(vec![pay(2, 3)]).await.remove(0);
    assert!(matches!(r, Err(SubmitError::Unavailable(_))), "{r:?}");

    // Storage works again: the node recovers by itself, and goes on confirming.
    store.set_failing(false);
    until("the node is healthy again", || h.health().healthy).await;
    // The client sends again what got a 503. Seq 1 may have entered the node before its
    // write failed (then it is a duplicate: the node kept it); seq 2 was refused at once.
    let mut again = h
        .submit_payloads(vec![pay(1, 2), pay(2, 3), pay(3, 4)])
        .await;
    assert!(
        matches!(&again[0], Ok(_) | Err(SubmitError::Conflict(_))),
        "{:?}",
        again[0]
    );
    let after = again.remove(2).unwrap();
    again.remove(1).unwrap();
    until("every payload is confirmed", || {
        [first.payload_id, after.payload_id].iter().all(|id| {
            matches!(
                h.payload(id).unwrap().map(|p| p.state),
                Some(PayloadState::Confirmed { .. })
            )
        })
    })
    .await;
    // Nothing that entered the node was lost: every payment applies exactly once.
    for to in 1..=4u8 {
        until("each recipient is paid", || {
            h.account(&Address([to; 32])).unwrap().balance == 10
        })
        .await;
    }
    node.shutdown().await;
}
