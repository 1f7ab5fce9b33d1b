//! A node joins a running, pruning network from a snapshot its peers serve over QUIC:
//! made on demand through `POST /api/v1/admin/snapshot`, downloaded in chunks (resuming
//! from a partial file), verified, imported; then the new node follows the network to the
//! same ledger. A damaged file is refused and leaves the new node's database empty.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use dag_core::store::Store;
use dag_core::{Address, Keypair};
use node::app::Assembled;
use node::config::NodeConfig;
use node::init::{files, init, read_key, InitOptions};
use node::net::fetch::{fetch_snapshot, FetchConfig};
use node::net::local::{local_configs, LocalNetwork, LocalNetworkOptions};
use node::net::PeerEntry;
use node::NodeService;
use node_proto::peering::PeerKey;
use serde_json::Value;

/// A hang guard, not a timing assertion: every condition waited for holds within seconds
/// on a loaded machine; this only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(300);

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < HANG_GUARD,
            "no {what} after {HANG_GUARD:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A new node directory joining the network of `genesis`, peering with `peers`.
fn new_member(dir: &Path, genesis: &Path, peers: Vec<PeerEntry>) -> (NodeConfig, Keypair) {
    init(&InitOptions {
        dir: dir.to_owned(),
        genesis: Some(genesis.to_owned()),
        network_name: String::new(),
        pow_difficulty: 0,
        dev: false,
        now_ms: node::runtime::now_ms(),
    })
    .unwrap();
    let mut cfg = NodeConfig::load(&dir.join(files::CONFIG)).unwrap();
    cfg.peers = peers;
    cfg.peering_addr = Some("127.0.0.1:0".parse().unwrap());
    cfg.milestone_interval_ms = 100;
    // Long history, as the followers: the digests are compared at one milestone, which a
    // node keeping 5 of 100 ms holds for only half a second (on a loaded machine the check
    // could miss that window for good).
    cfg.pruning.keep_milestones = Some(100_000);
    let identity = read_key(&cfg.identity_key).unwrap();
    (cfg, identity)
}

fn key_of(k: &Keypair) -> PeerKey {
    PeerKey(k.address().0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_joins_from_a_peer_served_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = LocalNetworkOptions::new(tmp.path().join("net"));
    opts.followers = 1;
    opts.pow_difficulty = 0;
    opts.milestone_interval_ms = 100;
    let mut configs = local_configs(&opts).unwrap();
    // The issuer prunes hard (5 milestones of 100 ms); the follower keeps enough for a
    // joining node to sync from the snapshot's milestone on however slow the machine (a
    // node cannot follow from a snapshot older than every peer's pruning point).
    for (i, c) in configs.iter_mut().enumerate() {
        c.pruning.keep_milestones = Some(if i == 0 { 5 } else { 100_000 });
        c.admin_token = Some("secret".into());
    }
    let genesis_path = configs[0].genesis.clone();
    let net = LocalNetwork::start(configs).await.unwrap();
    assert!(net.wait_connected(HANG_GUARD).await);
    let issuer = net.handles()[0].clone();

    // Enough accounts for a snapshot of many chunks.
    let paid: Vec<Address> = (0..2000)
        .map(|_| Keypair::generate(&mut rand::thread_rng()).address())
        .collect();
    for (i, a) in paid.iter().enumerate() {
        issuer.faucet(*a, 1_000 + i as u64).await.unwrap();
    }
    until("confirmation of the payments", || {
        issuer
            .account(paid.last().unwrap())
            .is_ok_and(|a| a.balance > 0)
    })
    .await;
    // Pruned past the start: a new node could not sync from the genesis.
    until("pruning", || issuer.info().oldest_milestone > 3).await;

    // On demand, through the admin API.
    let api = net.nodes()[0].api_addr;
    let client = reqwest::Client::new();
    let make = |kind: &'static str| {
        let r = client
            .post(format!("http://{api}/api/v1/admin/snapshot?kind={kind}"))
            .bearer_auth("secret")
            .send();
        async move {
            let r = r.await.unwrap();
            assert_eq!(r.status(), 201);
            r.json::<Value>().await.unwrap()
        }
    };
    let made = make("full").await;
    let milestone = made["milestone"].as_u64().unwrap() as u32;
    assert!(made["accounts"].as_u64().unwrap() as usize > paid.len());
    assert_eq!(issuer.info().snapshot_milestone, Some(milestone));
    let served = net.nodes()[0].assembled.snapshots.latest().unwrap();
    assert_eq!(served.file.milestone, milestone);
    let original = std::fs::read(&served.path).unwrap();
    assert!(original.len() > 4 * node_proto::wire::SNAPSHOT_CHUNK_LEN);
    // Without the token: 401, and nothing made.
    let r = client
        .post(format!("http://{api}/api/v1/admin/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // More payments (some to the same accounts), then a delta on the full snapshot.
    let more: Vec<Address> = (0..50)
        .map(|_| Keypair::generate(&mut rand::thread_rng()).address())
        .collect();
    for (i, a) in more.iter().chain(paid.iter().take(50)).enumerate() {
        issuer.faucet(*a, 7 + i as u64).await.unwrap();
    }
    until("confirmation of the second payments", || {
        issuer
            .account(&paid[49])
            .is_ok_and(|a| a.balance == 1_049 + 7 + 99)
    })
    .await;
    let delta = make("delta").await;
    let delta_milestone = delta["milestone"].as_u64().unwrap() as u32;
    assert!(delta_milestone > milestone);
    assert_eq!(delta["base"], made["digest"]);
    // The faucet, the 50 new accounts and the 50 paid again: far fewer than the full one.
    assert_eq!(delta["accounts"].as_u64().unwrap(), 101, "{delta}");
    let r = client
        .post(format!("http://{api}/api/v1/admin/snapshot?kind=sideways"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let entries: Vec<PeerEntry> = net
        .nodes()
        .iter()
        .map(|n| n.peer_entry().unwrap())
        .collect();
    // A node without a place on the allowlists can't even ask.
    let stranger = FetchConfig {
        query_timeout: Duration::from_secs(2),
        ..FetchConfig::new(
            Keypair::generate(&mut rand::thread_rng()),
            entries.clone(),
            issuer.info().network_id,
            tmp.path().join("stranger"),
        )
    };
    assert!(fetch_snapshot(&stranger).await.unwrap().is_none());

    // The joining node: allowed by both (its address is not known yet: the peers only
    // need its key to accept it; it dials them).
    let (mut cfg, identity) = new_member(&tmp.path().join("new"), &genesis_path, entries.clone());
    let placeholder: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for n in net.nodes() {
        n.network().add_peer(PeerEntry {
            address: placeholder,
            public_key: key_of(&identity),
        });
    }

    // A download interrupted after three chunks resumes from them (here: fetched
    // directly into the new node's snapshot directory, as its start would).
    let snap_dir = cfg.snapshots.dir_for(&cfg.data_dir);
    std::fs::create_dir_all(&snap_dir).unwrap();
    let kept = 3 * node_proto::wire::SNAPSHOT_CHUNK_LEN + 100;
    std::fs::write(
        snap_dir.join(format!("{}.part", served.file.digest.to_hex())),
        &original[..kept],
    )
    .unwrap();
    let fc = FetchConfig::new(
        identity.clone(),
        entries.clone(),
        issuer.info().network_id,
        snap_dir.clone(),
    );
    let fetched = fetch_snapshot(&fc).await.unwrap().expect("a snapshot");
    assert_eq!(fetched.resumed_from, kept as u64);
    assert_eq!(fetched.file, served.file);
    assert_eq!(std::fs::read(&fetched.path).unwrap(), original);
    let (delta_path, delta_file) = fetched.delta.clone().expect("the delta too");
    assert_eq!(delta_file.milestone, delta_milestone);
    std::fs::remove_file(&fetched.path).unwrap();
    std::fs::remove_file(&delta_path).unwrap();

    // Now the real start: empty database, so it fetches, verifies and imports.
    cfg.snapshots.fetch_from_peers = true;
    let joined = Assembled::start(&cfg, cfg.peering_addr).await.unwrap();
    let handle = joined.node.handle();
    let info = handle.info();
    assert_eq!(
        info.snapshot_milestone,
        Some(delta_milestone),
        "it serves the files it got"
    );
    assert!(info.confirmed_milestone >= delta_milestone);
    assert_eq!(
        info.oldest_milestone,
        delta_milestone + 1,
        "it started at the delta"
    );
    let me = PeerEntry {
        address: joined.network.as_ref().unwrap().local_addr().unwrap(),
        public_key: key_of(&identity),
    };
    for n in net.nodes() {
        n.network().add_peer(me);
    }
    // It follows: the same ledger digest as the followers at a later milestone (not the
    // issuer's: it keeps 5 milestones of 100 ms, so it holds that one's record for half a
    // second; the followers apply its milestones and would halt on another digest).
    let target = issuer.info().confirmed_milestone + 3;
    let mut all: Vec<_> = net.handles().into_iter().skip(1).collect();
    all.push(handle.clone());
    until("the new node at the network's milestone", || {
        node::net::local::digests_at(&all, target)
            .iter()
            .all(Option::is_some)
    })
    .await;
    let digests = node::net::local::digests_at(&all, target);
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    for a in paid.iter().step_by(97).chain(&more) {
        assert_eq!(
            handle.account(a).unwrap().balance,
            issuer.account(a).unwrap().balance
        );
    }

    // A damaged file is refused: one byte changed in the middle of the served file.
    let mut damaged = original.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x20;
    std::fs::write(&served.path, &damaged).unwrap();
    let (cfg2, identity2) = new_member(&tmp.path().join("new2"), &genesis_path, entries);
    for n in net.nodes() {
        n.network().add_peer(PeerEntry {
            address: placeholder,
            public_key: key_of(&identity2),
        });
    }
    let err = match Assembled::start(&cfg2, cfg2.peering_addr).await {
        Ok(_) => panic!("a damaged snapshot was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("refused"), "{err}");
    let store = node::store::SledStore::open(&cfg2.data_dir).unwrap();
    assert_eq!(store.confirmed_index().unwrap(), None, "nothing imported");
    drop(store);
    let leftovers: Vec<_> = std::fs::read_dir(cfg2.snapshots.dir_for(&cfg2.data_dir))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "the refused file is removed: {leftovers:?}"
    );

    joined.shutdown().await;
    net.shutdown().await;
}

/// A node started from a snapshot older than every peer's pruning point cannot sync (no one
/// can serve the next milestone): its `/health` says so and what to do, instead of the node
/// waiting silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_behind_every_peers_history_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = LocalNetworkOptions::new(tmp.path().join("net"));
    opts.followers = 1;
    opts.pow_difficulty = 0;
    opts.milestone_interval_ms = 100;
    let mut configs = local_configs(&opts).unwrap();
    for c in configs.iter_mut() {
        c.pruning.keep_milestones = Some(5);
        c.admin_token = Some("secret".into());
    }
    let genesis_path = configs[0].genesis.clone();
    let net = LocalNetwork::start(configs).await.unwrap();
    assert!(net.wait_connected(HANG_GUARD).await);
    let issuer = net.handles()[0].clone();
    until("a few milestones", || {
        issuer.info().confirmed_milestone >= 3
    })
    .await;
    let api = net.nodes()[0].api_addr;
    let r = reqwest::Client::new()
        .post(format!("http://{api}/api/v1/admin/snapshot?kind=full"))
        .bearer_auth("secret")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let served = net.nodes()[0].assembled.snapshots.latest().unwrap();
    let milestone = served.file.milestone;
    // Both peers prune well past it.
    until("pruning past the snapshot", || {
        net.handles()
            .iter()
            .all(|h| h.info().oldest_milestone > milestone + 2)
    })
    .await;

    // The new node starts from that file, as `tangle-node init --snapshot` does.
    let entries: Vec<PeerEntry> = net
        .nodes()
        .iter()
        .map(|n| n.peer_entry().unwrap())
        .collect();
    let (mut cfg, identity) = new_member(&tmp.path().join("late"), &genesis_path, entries);
    cfg.snapshots.fetch_from_peers = false;
    let genesis = node::init::read_genesis(&genesis_path).unwrap();
    let file = std::fs::File::open(&served.path).unwrap();
    let snap = node_proto::snapshot::read(std::io::BufReader::new(file)).unwrap();
    snap.verify(&genesis, dag_core::ledger::state_root_of)
        .unwrap();
    {
        let store = node::store::SledStore::open(&cfg.data_dir).unwrap();
        node_proto::snapshot::import(&store, &snap).unwrap();
    }
    let placeholder: SocketAddr = "127.0.0.1:9".parse().unwrap();
    for n in net.nodes() {
        n.network().add_peer(PeerEntry {
            address: placeholder,
            public_key: key_of(&identity),
        });
    }
    let late = Assembled::start(&cfg, cfg.peering_addr).await.unwrap();
    let handle = late.node.handle();
    // The peers dial it at its real address.
    let me = PeerEntry {
        address: late.network.as_ref().unwrap().local_addr().unwrap(),
        public_key: key_of(&identity),
    };
    for n in net.nodes() {
        n.network().add_peer(me);
    }
    until("the health reason", || {
        handle
            .health()
            .reasons
            .iter()
            .any(|r| r.contains("is pruned on every peer"))
    })
    .await;
    let health = handle.health();
    assert!(!health.healthy, "{health:?}");
    assert!(
        health.reasons.iter().any(|r| r.contains("newer snapshot")),
        "{health:?}"
    );
    assert_eq!(handle.info().confirmed_milestone, milestone);
    late.shutdown().await;
    net.shutdown().await;
}
