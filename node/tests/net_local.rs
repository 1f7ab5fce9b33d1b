//! Real-socket peering on 127.0.0.1: nodes (in-process, each with its own store and QUIC
//! endpoint) gossip, solidify, sync and confirm the same ledger.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

mod common;

use common::Net;
use dag_core::store::{MemStore, Store};
use dag_core::{Address, Body, Keypair, MilestoneIndex, SignedPayload};
use node::net::{tls, NetConfig, Network, PeerEntry};
use node::service::PayloadState;
use node::{Node, NodeHandle, NodeService, NodeSetup};
use node_proto::peering::PeerKey;
use node_proto::ProtocolConfig;

fn network() -> Net {
    common::network("net-test", 2, 60000)
}

struct Member {
    node: Node,
    net: Network,
    identity: Keypair,
    store: Arc<dyn Store>,
}

impl Member {
    fn handle(&self) -> NodeHandle {
        self.node.handle()
    }

    fn entry(&self) -> PeerEntry {
        PeerEntry {
            address: self.net.local_addr().unwrap(),
            public_key: PeerKey(self.identity.address().0),
        }
    }

    async fn stop(self) -> (Keypair, Arc<dyn Store>) {
        self.net.shutdown().await;
        self.node.shutdown().await;
        (self.identity, self.store)
    }
}

async fn start(n: &Net, issuer: bool, identity: Keypair, store: Arc<dyn Store>) -> Member {
    let node = Node::start(NodeSetup {
        genesis: n.genesis.clone(),
        store: store.clone(),
        protocol: ProtocolConfig {
            milestone_signer: issuer.then(|| (0, n.committee.clone())),
            milestone_interval_ms: 200,
            ..ProtocolConfig::default()
        },
        max_batch: 1024,
        queue_capacity: 10_000,
    })
    .await
    .unwrap();
    let cfg = NetConfig::new("127.0.0.1:0".parse().unwrap(), identity.clone());
    let net = Network::start(cfg, node.handle()).await.unwrap();
    Member {
        node,
        net,
        identity,
        store,
    }
}

/// Everyone allows everyone (with current addresses).
fn mesh(members: &[&Member]) {
    for a in members {
        for b in members {
            if a.identity.address() != b.identity.address() {
                a.net.add_peer(b.entry());
            }
        }
    }
}

fn pay(n: &Net, seq: u64, to: Address, amount: u64) -> SignedPayload {
    SignedPayload::sign(
        &n.faucet,
        n.genesis.network_id(),
        seq,
        Body::Pay {
            to,
            amount,
            memo: Vec::new(),
        },
    )
}

/// A hang guard, not a timing assertion: every condition waited for here holds within a
/// few seconds even on a loaded machine; this only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(180);

/// Polls `f` until it holds (or [`HANG_GUARD`] passed, a failure).
async fn until<F: Fn() -> bool>(what: &str, f: F) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < HANG_GUARD,
            "no {what} after {HANG_GUARD:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A QUIC client endpoint presenting `me`'s certificate, expecting the server key `server`
/// at `addr`.
fn dial(me: &Keypair, server: PeerKey, addr: SocketAddr) -> quinn::Endpoint {
    let allow: tls::Allowlist = Arc::default();
    allow.write().unwrap().insert(server, addr);
    let (_, client) = tls::quic_configs(me, allow).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(client);
    ep
}

/// Whether the node at `addr` refuses a connection from `ep`: the handshake fails, or (TLS
/// 1.3: the client may finish before the server's verdict arrives) the server closes the
/// connection. Waits for that outcome (a refused connection is closed within milliseconds;
/// the guard only turns a hang into a failure).
async fn refused(ep: &quinn::Endpoint, addr: SocketAddr) -> bool {
    match ep.connect(addr, "tangle-node").unwrap().await {
        Err(_) => true,
        Ok(conn) => tokio::time::timeout(HANG_GUARD, conn.closed())
            .await
            .is_ok(),
    }
}

fn confirmed(h: &NodeHandle) -> MilestoneIndex {
    h.info().confirmed_milestone
}

/// The ledger digest each node recorded at milestone `index`.
fn digests_at(hs: &[NodeHandle], index: MilestoneIndex) -> Vec<dag_core::Digest> {
    hs.iter()
        .map(|h| h.milestone(Some(index)).unwrap().unwrap().ledger_digest)
        .collect()
}

fn key(seed: u8) -> Keypair {
    Keypair::from_seed(&[seed; 32])
}

fn mem() -> Arc<dyn Store> {
    Arc::new(MemStore::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_submitted_to_one_node_is_confirmed_on_all_three_with_identical_digests() {
    let n = network();
    let a = start(&n, true, key(10), mem()).await;
    let b = start(&n, false, key(11), mem()).await;
    let c = start(&n, false, key(12), mem()).await;
    mesh(&[&a, &b, &c]);
    until("a full mesh", || {
        [&a, &b, &c].iter().all(|m| m.net.connected().len() == 2)
    })
    .await;
    // Submitted to a follower: it must travel to the issuer to be confirmed at all.
    let to = Address([9; 32]);
    let receipts = b.handle().submit_payloads(vec![pay(&n, 0, to, 777)]).await;
    let pid = receipts[0].as_ref().unwrap().payload_id;
    let hs = [a.handle(), b.handle(), c.handle()];
    until("the payment confirmed on all three nodes", || {
        hs.iter().all(|h| {
            matches!(
                h.payload(&pid).ok().flatten().map(|v| v.state),
                Some(PayloadState::Confirmed { .. })
            )
        })
    })
    .await;
    let at = hs.iter().map(confirmed).min().unwrap();
    let d = digests_at(&hs, at);
    assert!(d.iter().all(|x| *x == d[0]), "digests differ: {d:?}");
    for h in &hs {
        assert_eq!(h.account(&to).unwrap().balance, 777);
    }
    // Per-peer metrics show traffic both ways.
    for m in [&a, &b, &c] {
        for p in m.net.peers() {
            assert!(p.metrics.connected && p.metrics.messages_in > 0 && p.metrics.bytes_out > 0);
        }
    }
    // ... and in Prometheus, one series per peer (updated every network tick).
    until("per-peer series in /metrics", || {
        let text = b.handle().metrics();
        [&a, &c].iter().all(|m| {
            let peer = m.net.public_key().to_string();
            text.lines().any(|l| {
                l.starts_with(&format!(
                    "tangle_peer_messages_received_total{{peer=\"{peer}\"}}"
                )) && !l.ends_with(" 0")
            }) && text.contains(&format!("tangle_peer_connected{{peer=\"{peer}\"}} 1"))
        })
    })
    .await;
    // Node::shutdown waits (up to 5 s) for every handle to be gone before it persists.
    drop(hs);
    for m in [a, b, c] {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_key_not_on_the_allowlist_is_refused_at_the_handshake() {
    let n = network();
    let a = start(&n, true, key(20), mem()).await;
    let allowed = key(21);
    let intruder = key(22);
    a.net.add_peer(PeerEntry {
        address: "127.0.0.1:9".parse().unwrap(),
        public_key: PeerKey(allowed.address().0),
    });
    let a_addr: SocketAddr = a.net.local_addr().unwrap();
    let a_key = PeerKey(key(20).address().0);
    // The intruder presents its own (valid, self-signed) certificate: refused.
    let ep = dial(&intruder, a_key, a_addr);
    assert!(
        refused(&ep, a_addr).await,
        "an unlisted key must not get a connection"
    );
    // The listed key gets through the handshake.
    let ep2 = dial(&allowed, a_key, a_addr);
    let conn = ep2.connect(a_addr, "tangle-node").unwrap().await.unwrap();
    assert_eq!(
        tls::peer_key(&conn),
        Some(PeerKey(key(20).address().0)),
        "the server proved the key on its certificate"
    );
    assert!(
        a.net.connected().is_empty() || a.net.connected() == vec![PeerKey(allowed.address().0)]
    );
    assert!(!a.net.connected().contains(&PeerKey(intruder.address().0)));
    conn.close(0u32.into(), b"done");
    a.stop().await;
}

/// A listed peer that sends transactions too short to hash (8-10 bytes) is penalised, not
/// a panic of its connection task, and the same key can connect again afterwards (nothing
/// is left registered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sending_truncated_transactions_is_penalised_and_can_reconnect() {
    use node_proto::wire::{FrameDecoder, Message, PROTOCOL_VERSION};
    let n = network();
    let a = start(&n, true, key(23), mem()).await;
    let peer = key(24);
    let peer_key = PeerKey(peer.address().0);
    a.net.add_peer(PeerEntry {
        address: "127.0.0.1:9".parse().unwrap(),
        public_key: peer_key,
    });
    let a_addr: SocketAddr = a.net.local_addr().unwrap();
    let allow: tls::Allowlist = Arc::default();
    allow
        .write()
        .unwrap()
        .insert(PeerKey(key(23).address().0), a_addr);
    let (_, client) = tls::quic_configs(&peer, allow).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(client);
    for round in 0..3 {
        let conn = ep.connect(a_addr, "tangle-node").unwrap().await.unwrap();
        let (mut send, mut recv) = conn.open_bi().await.unwrap();
        let mut out = Vec::new();
        Message::Handshake {
            version: PROTOCOL_VERSION,
            network_id: n.genesis.network_id(),
        }
        .encode_into(&mut out);
        for len in [8usize, 9, 10] {
            Message::Transaction(vec![0xc4; len]).encode_into(&mut out);
        }
        send.write_all(&out).await.unwrap();
        // The node answers with its handshake (and a heartbeat): it is serving us.
        let mut dec = FrameDecoder::new();
        let mut buf = vec![0u8; 4096];
        let first = loop {
            if let Some(m) = dec.next_message().unwrap() {
                break m;
            }
            let k = recv.read(&mut buf).await.unwrap().expect("stream open");
            dec.push(&buf[..k]);
        };
        assert!(matches!(first, Message::Handshake { .. }), "round {round}");
        until("the node registered the peer", || {
            a.net.connected().contains(&peer_key)
        })
        .await;
        until("the short transactions were counted as invalid", || {
            a.net
                .peers()
                .iter()
                .any(|p| p.public_key == peer_key && p.metrics.invalid >= 3 * (round + 1))
        })
        .await;
        conn.close(0u32.into(), b"bye");
        until("the node unregistered the peer", || {
            !a.net.connected().contains(&peer_key)
        })
        .await;
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_and_a_restarted_node_catch_up_to_the_same_digest() {
    let n = network();
    let a = start(&n, true, key(30), mem()).await;
    let b = start(&n, false, key(31), mem()).await;
    mesh(&[&a, &b]);
    until("a and b connected", || a.net.connected().len() == 1).await;
    for seq in 0..5 {
        let r = a
            .handle()
            .submit_payloads(vec![pay(&n, seq, Address([seq as u8 + 1; 32]), 10)])
            .await;
        r[0].as_ref().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until("a few milestones on b", || confirmed(&b.handle()) >= 5).await;
    // b goes down; the network moves on.
    let (b_id, b_store) = b.stop().await;
    for seq in 5..10 {
        let r = a
            .handle()
            .submit_payloads(vec![pay(&n, seq, Address([seq as u8 + 1; 32]), 10)])
            .await;
        r[0].as_ref().unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Every payment confirmed on a (so the sync goal below covers all ten).
    until("all ten payments confirmed on a", || {
        (0..10u64).all(|seq| {
            let id = pay(&n, seq, Address([seq as u8 + 1; 32]), 10).id();
            matches!(
                a.handle().payload(&id).ok().flatten().map(|v| v.state),
                Some(PayloadState::Confirmed { .. })
            )
        })
    })
    .await;
    // A brand-new node joins from genesis, and b restarts from its store.
    let c = start(&n, false, key(32), mem()).await;
    let b = start(&n, false, b_id, b_store).await;
    mesh(&[&a, &b, &c]);
    let goal = confirmed(&a.handle());
    until("b and c synced", || {
        confirmed(&b.handle()) >= goal && confirmed(&c.handle()) >= goal
    })
    .await;
    let hs = [a.handle(), b.handle(), c.handle()];
    let d = digests_at(&hs, goal);
    assert!(d.iter().all(|x| *x == d[0]), "digests differ: {d:?}");
    for h in &hs[1..] {
        assert_eq!(h.account(&Address([10; 32])).unwrap().balance, 10);
        assert_eq!(h.info().halted, None);
    }
    drop(hs);
    for m in [a, b, c] {
        m.stop().await;
    }
}

/// The admin peer routes over HTTP, as an operator uses them: a bearer token is required
/// (none: 401, a wrong one: 403); `POST /peers` adds a peer to the allowlist and the nodes
/// connect; `GET /peers` lists it; `DELETE /peers/{key}` removes it and drops the
/// connection, which stays down; a malformed key is 400, an unknown one 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_peer_routes_over_http() {
    let n = network();
    let a = start(&n, true, key(61), mem()).await;
    let b = start(&n, false, key(62), mem()).await;
    // b allows a from the start; a learns about b through its admin API.
    b.net.add_peer(a.entry());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = node::api::ApiOptions {
        admin_token: Some("op-token".into()),
        ..node::api::ApiOptions::default()
    };
    let server = tokio::spawn(node::api::serve_with_admin(
        listener,
        a.handle(),
        options,
        a.net.admin_router(),
        async {
            let _ = stopped.await;
        },
    ));
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{addr}/api/v1/admin{p}");
    let status = |r: reqwest::Response| r.status().as_u16();

    assert_eq!(status(http.get(url("/peers")).send().await.unwrap()), 401);
    let wrong = http.get(url("/peers")).bearer_auth("guess").send().await;
    assert_eq!(status(wrong.unwrap()), 403);
    let unauthorised_add = http.post(url("/peers")).json(&b.entry()).send().await;
    assert_eq!(status(unauthorised_add.unwrap()), 401);
    assert!(
        a.net.peers().is_empty(),
        "nothing was added without the token"
    );

    let added = http
        .post(url("/peers"))
        .bearer_auth("op-token")
        .json(&b.entry())
        .send()
        .await
        .unwrap();
    assert_eq!(status(added), 201);
    until("a and b connected", || a.net.connected().len() == 1).await;
    let listed: serde_json::Value = http
        .get(url("/peers"))
        .bearer_auth("op-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_key = b.entry().public_key.to_string();
    assert_eq!(listed[0]["public_key"], b_key);
    assert_eq!(listed[0]["address"], b.entry().address.to_string());

    let bad = http
        .delete(url("/peers/not-a-key"))
        .bearer_auth("op-token")
        .send()
        .await;
    assert_eq!(status(bad.unwrap()), 400);
    let unknown = http
        .delete(url(&format!("/peers/{}", "ab".repeat(32))))
        .bearer_auth("op-token")
        .send()
        .await;
    assert_eq!(status(unknown.unwrap()), 404);
    let removed = http
        .delete(url(&format!("/peers/{b_key}")))
        .bearer_auth("op-token")
        .send()
        .await;
    assert_eq!(status(removed.unwrap()), 204);
    until("the connection dropped", || a.net.connected().is_empty()).await;
    // b keeps dialling a, which no longer allows it: a connection with b's key is refused
    // (shown with b's own certificate, so the outcome is observed rather than waited for).
    let a_addr = a.net.local_addr().unwrap();
    let as_b = dial(&key(62), a.entry().public_key, a_addr);
    assert!(
        refused(&as_b, a_addr).await,
        "a refused b's key after the removal"
    );
    assert!(
        !a.net.connected().contains(&b.entry().public_key),
        "b is not connected to a"
    );

    let _ = stop.send(());
    let _ = server.await;
    a.stop().await;
    b.stop().await;
}
