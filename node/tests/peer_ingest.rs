//! What the node takes from peers: a transaction it asked for (sync, a missing parent) may
//! be old, never from the future.

use std::sync::Arc;

mod common;

use dag_core::store::MemStore;
use dag_core::{codec, pow, Address, Body, Keypair, Payload, SignedPayload, Transaction, TxId};
use node::runtime::now_ms;
use node::{Node, NodeSetup};
use node_proto::peering::PeerKey;
use node_proto::peering::Verdict;
use node_proto::ProtocolConfig;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solicited_transaction_may_be_old_but_not_from_the_future() {
    let n = common::network("peer-ingest", 2, 60_000);
    let node = Node::start(NodeSetup {
        genesis: n.genesis.clone(),
        store: Arc::new(MemStore::new()),
        protocol: ProtocolConfig::default(),
        max_batch: 64,
        queue_capacity: 64,
    })
    .await
    .unwrap();
    let h = node.handle();
    let nid = n.genesis.network_id();
    let tx_at = |seed: u8, timestamp: u64| {
        let k = Keypair::from_seed(&[seed; 32]);
        let mut tx = Transaction {
            version: dag_core::TX_VERSION,
            network_id: nid,
            parents: [TxId::GENESIS; 2],
            timestamp,
            payload: Payload::Signed(SignedPayload::sign(
                &k,
                nid,
                0,
                Body::Anchor {
                    tag: b"t".to_vec(),
                    digest: dag_core::Digest([seed; 32]),
                },
            )),
            nonce: 0,
        };
        pow::solve(&mut tx, 2);
        codec::encode(&tx)
    };
    let peer = PeerKey(Address([9; 32]).0);
    let ten_minutes = 600_000;
    let old = tx_at(1, now_ms() - ten_minutes);
    let future = tx_at(2, now_ms() + ten_minutes);
    let h2 = h.clone();
    let verdicts = tokio::task::spawn_blocking(move || {
        let (old_id, future_id) = (codec::id_of_encoding(&old), codec::id_of_encoding(&future));
        h2.ingest_from_peers(&[
            (old.clone(), old_id, false, peer),
            (future.clone(), future_id, false, peer),
            (future, future_id, true, peer),
            (old, old_id, true, peer),
        ])
        .verdicts
    })
    .await
    .unwrap();
    assert_eq!(
        verdicts,
        vec![
            Verdict::Refused, // old and not asked for
            Verdict::Refused, // from the future
            Verdict::Refused, // from the future, even when asked for
            Verdict::New,     // old, asked for
        ]
    );
    drop(h);
    node.shutdown().await;
}
