//! A committee of four with threshold three over real QUIC on 127.0.0.1 (in-process nodes,
//! each with its own store, endpoint and vote file): milestones carry three signers or
//! more, the API lists them, /metrics counts proposals and votes; with the next proposer
//! stopped the other three go on; restarted, it catches up on the same ledger.

use std::sync::Arc;
use std::time::Duration;

use dag_core::store::{MemStore, Store};
use dag_core::{Address, Allocation, Body, Genesis, Keypair, MilestoneIndex, SignedPayload};
use node::committee::VoteFile;
use node::net::{NetConfig, Network, PeerEntry};
use node::service::PayloadState;
use node::{Node, NodeHandle, NodeService, NodeSetup};
use node_proto::peering::PeerKey;
use node_proto::ProtocolConfig;

const MEMBERS: usize = 4;

struct Net {
    genesis: Genesis,
    members: Vec<Keypair>,
    faucet: Keypair,
}

fn network() -> Net {
    let members: Vec<Keypair> = (0..MEMBERS as u8)
        .map(|i| Keypair::from_seed(&[40 + i; 32]))
        .collect();
    let faucet = Keypair::from_seed(&[2; 32]);
    let genesis = Genesis {
        network_name: "committee-net".into(),
        timestamp: node::runtime::now_ms(),
        pow_difficulty: 2,
        timestamp_window_ms: 60_000,
        committee: members.iter().map(|k| k.address()).collect(),
        threshold: 3,
        allocations: vec![Allocation {
            address: faucet.address(),
            amount: 1_000_000_000,
        }],
    };
    Net {
        genesis,
        members,
        faucet,
    }
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

    async fn stop(self) -> Arc<dyn Store> {
        self.net.shutdown().await;
        self.node.shutdown().await;
        self.store
    }
}

async fn start(n: &Net, i: usize, store: Arc<dyn Store>, votes: &std::path::Path) -> Member {
    let node = Node::start(NodeSetup {
        genesis: n.genesis.clone(),
        store: store.clone(),
        protocol: ProtocolConfig {
            milestone_signer: Some((i as u8, n.members[i].clone())),
            milestone_interval_ms: 300,
            proposer_timeout_ms: 600,
            ..ProtocolConfig::default()
        },
        max_batch: 1024,
        queue_capacity: 10_000,
    })
    .await
    .unwrap();
    let identity = Keypair::from_seed(&[60 + i as u8; 32]);
    let mut cfg = NetConfig::new("127.0.0.1:0".parse().unwrap(), identity.clone());
    cfg.vote_file = Some(VoteFile::in_dir(votes));
    let net = Network::start(cfg, node.handle()).await.unwrap();
    Member {
        node,
        net,
        identity,
        store,
    }
}

fn mesh(members: &[&Member]) {
    for a in members {
        for b in members {
            if a.identity.address() != b.identity.address() {
                a.net.add_peer(b.entry());
            }
        }
    }
}

/// A hang guard, not a timing assertion: it only turns a hang into a failure.
const HANG_GUARD: Duration = Duration::from_secs(180);

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

fn confirmed(h: &NodeHandle) -> MilestoneIndex {
    h.info().confirmed_milestone
}

fn pay(n: &Net, seq: u64) -> SignedPayload {
    SignedPayload::sign(
        &n.faucet,
        n.genesis.network_id(),
        seq,
        Body::Pay {
            to: Address([9; 32]),
            amount: 5,
            memo: Vec::new(),
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_members_over_quic_survive_a_stopped_proposer() {
    let n = network();
    let dirs: Vec<tempfile::TempDir> = (0..MEMBERS).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut members = Vec::new();
    for (i, d) in dirs.iter().enumerate() {
        members.push(Some(
            start(&n, i, Arc::new(MemStore::new()), d.path()).await,
        ));
    }
    {
        let all: Vec<&Member> = members.iter().flatten().collect();
        mesh(&all);
    }
    let hs: Vec<NodeHandle> = members.iter().flatten().map(Member::handle).collect();
    until("three milestones on every member", || {
        hs.iter().all(|h| confirmed(h) >= 3)
    })
    .await;
    let r = hs[1].submit_payloads(vec![pay(&n, 0)]).await;
    let first = r[0].as_ref().unwrap().payload_id;
    until("the payment confirmed everywhere", || {
        hs.iter().all(|h| {
            matches!(
                h.payload(&first).ok().flatten().map(|v| v.state),
                Some(PayloadState::Confirmed { .. })
            )
        })
    })
    .await;
    // Every milestone names at least three signers, ascending, each a member.
    let at = hs.iter().map(confirmed).min().unwrap();
    for i in 1..=at {
        let v = hs[0].milestone(Some(i)).unwrap().unwrap();
        assert!(
            v.signers.len() >= 3,
            "milestone {i}: signers {:?}",
            v.signers
        );
        assert!(v.signers.windows(2).all(|w| w[0] < w[1]));
        assert!(v.signers.iter().all(|s| usize::from(*s) < MEMBERS));
    }
    until("committee counters in /metrics", || {
        let text = hs[2].metrics();
        text.lines()
            .any(|l| l.starts_with("tangle_committee_votes_total ") && !l.ends_with(" 0"))
            && ["prevotes", "precommits"].iter().all(|k| {
                text.lines().any(|l| {
                    l.starts_with(&format!("tangle_committee_{k}_total ")) && !l.ends_with(" 0")
                })
            })
            && text.contains("tangle_committee_publication_latency_seconds_bucket")
    })
    .await;

    // Stop the member that proposes next; the three others go on.
    let stopped = ((confirmed(&hs[0]) + 1) as usize) % MEMBERS;
    drop(hs);
    let store = members[stopped].take().unwrap().stop().await;
    let live: Vec<NodeHandle> = members.iter().flatten().map(Member::handle).collect();
    let from = live.iter().map(confirmed).max().unwrap();
    let r = live[0].submit_payloads(vec![pay(&n, 1)]).await;
    let second = r[0].as_ref().unwrap().payload_id;
    until("four more milestones without the proposer", || {
        live.iter().all(|h| confirmed(h) >= from + 4)
    })
    .await;
    until("the second payment confirmed", || {
        live.iter().all(|h| {
            matches!(
                h.payload(&second).ok().flatten().map(|v| v.state),
                Some(PayloadState::Confirmed { .. })
            )
        })
    })
    .await;

    // Restarted (same store, same vote file), it catches up.
    let again = start(&n, stopped, store, dirs[stopped].path()).await;
    members[stopped] = Some(again);
    {
        let all: Vec<&Member> = members.iter().flatten().collect();
        mesh(&all);
    }
    let hs: Vec<NodeHandle> = members.iter().flatten().map(Member::handle).collect();
    let goal = hs.iter().map(confirmed).max().unwrap() + 2;
    until("all four on one ledger", || {
        hs.iter().all(|h| confirmed(h) >= goal)
    })
    .await;
    let at = hs.iter().map(confirmed).min().unwrap();
    let digests: Vec<_> = hs
        .iter()
        .map(|h| h.milestone(Some(at)).unwrap().unwrap().ledger_digest)
        .collect();
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
    for h in &hs {
        assert_eq!(h.account(&Address([9; 32])).unwrap().balance, 10);
        assert_eq!(h.info().halted, None);
    }
    drop(hs);
    for m in members.into_iter().flatten() {
        m.stop().await;
    }
}
