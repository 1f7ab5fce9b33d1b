//! net-bench: in-process nodes (three by default, `--nodes`) peered over QUIC on 127.0.0.1
//! (one milestone issuer, or with `--committee K` a committee of all of them, k of n),
//! payments submitted to node 0; reports payments/s confirmed on every node and
//! the p50/p99 propagation latency (from the submitting node's durable acknowledgement to
//! the transaction becoming solid on each other node).
//!
//! `cargo run --release -p benches --bin net-bench -- --devices 2000 --rounds 5`
//!
//! Payments are signed before the clock starts; the network's PoW difficulty is 0 unless
//! `--pow-difficulty` says otherwise (the submitting node then solves it for each payment).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use dag_core::store::{MemStore, Store};
use dag_core::{Address, Allocation, Body, Genesis, Keypair, PayloadId, SignedPayload, TxId};
use node::net::{NetConfig, Network, PeerEntry};
use node::service::{NodeEvent, PayloadState};
use node::{Node, NodeService, NodeSetup};
use node_proto::peering::PeerKey;
use node_proto::ProtocolConfig;

#[derive(Parser)]
struct Args {
    /// Funded device accounts (each pays once per round).
    #[arg(long, default_value_t = 2000)]
    devices: usize,
    /// Rounds (payments = devices x rounds).
    #[arg(long, default_value_t = 5)]
    rounds: u64,
    /// Payloads per submit call.
    #[arg(long, default_value_t = 500)]
    chunk: usize,
    /// Store: "mem", or "sled" (in a temporary directory, with power-loss durability).
    #[arg(long, default_value = "sled")]
    store: String,
    /// Milestone interval, ms.
    #[arg(long, default_value_t = 500)]
    milestone_interval_ms: u64,
    /// Offered load, payments per second (0: as fast as the issuer acknowledges).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Nodes, fully meshed.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Milestones from a committee of every node with this threshold (k of `--nodes`);
    /// 0: node 0 issues alone (a committee of one).
    #[arg(long, default_value_t = 0)]
    committee: u8,
    /// PoW difficulty of the network (leading zero bits); the submitting node does the work
    /// for every payment.
    #[arg(long, default_value_t = 0)]
    pow_difficulty: u8,
}

#[derive(Default)]
struct Seen {
    solid: HashMap<TxId, Instant>,
    confirmed: HashMap<PayloadId, Instant>,
    lagged: u64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let n_nodes = args.nodes.clamp(2, 32);
    // Member i's key: seed [1 + i; 32] (a committee of one: node 0's).
    let members: Vec<Keypair> = (0..if args.committee > 0 { n_nodes } else { 1 })
        .map(|i| Keypair::from_seed(&[1 + i as u8; 32]))
        .collect();
    let devices: Vec<Keypair> = (0..args.devices)
        .map(|i| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&(i as u64 + 1000).to_le_bytes());
            Keypair::from_seed(&s)
        })
        .collect();
    let genesis = Genesis {
        network_name: "net-bench".into(),
        timestamp: node::runtime::now_ms(),
        pow_difficulty: args.pow_difficulty,
        timestamp_window_ms: dag_core::genesis::DEFAULT_TIMESTAMP_WINDOW_MS,
        committee: members.iter().map(|k| k.address()).collect(),
        threshold: args.committee.max(1),
        allocations: devices
            .iter()
            .map(|d| Allocation {
                address: d.address(),
                amount: 1_000_000,
            })
            .collect(),
    };
    let mut nodes = Vec::new();
    let mut nets = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..n_nodes as u8 {
        let store: Arc<dyn Store> = match args.store.as_str() {
            "mem" => Arc::new(MemStore::new()),
            _ => {
                // On disk with power-loss durability, as a node runs (fdatasync included).
                let dir = tempfile::tempdir().context("temp dir")?;
                let s = node::store::SledStore::open(dir.path()).context("sled")?;
                dirs.push(dir);
                Arc::new(s)
            }
        };
        let node = Node::start(NodeSetup {
            genesis: genesis.clone(),
            store,
            protocol: ProtocolConfig {
                milestone_signer: members.get(usize::from(i)).map(|k| (i, k.clone())),
                milestone_interval_ms: args.milestone_interval_ms,
                ..ProtocolConfig::default()
            },
            max_batch: 2048,
            queue_capacity: 100_000,
        })
        .await?;
        let id = Keypair::from_seed(&[50 + i; 32]);
        let net = Network::start(
            NetConfig::new("127.0.0.1:0".parse()?, id.clone()),
            node.handle(),
        )
        .await?;
        nodes.push(node);
        nets.push((net, id));
    }
    for (a, ka) in &nets {
        for (b, kb) in &nets {
            if ka.address() != kb.address() {
                a.add_peer(PeerEntry {
                    address: b.local_addr()?,
                    public_key: PeerKey(kb.address().0),
                });
            }
        }
    }
    while !nets.iter().all(|(n, _)| n.connected().len() == n_nodes - 1) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Event recorders.
    let seen: Vec<Arc<Mutex<Seen>>> = (0..n_nodes).map(|_| Arc::default()).collect();
    for (node, s) in nodes.iter().zip(&seen) {
        let mut rx = node.handle().subscribe();
        let s = s.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(NodeEvent::Transaction { transaction_id, .. }) => {
                        s.lock()
                            .unwrap()
                            .solid
                            .insert(transaction_id, Instant::now());
                    }
                    Ok(NodeEvent::Payload {
                        payload_id,
                        state: PayloadState::Confirmed { .. },
                    }) => {
                        s.lock()
                            .unwrap()
                            .confirmed
                            .insert(payload_id, Instant::now());
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        s.lock().unwrap().lagged += n;
                    }
                    Err(_) => return,
                }
            }
        });
    }
    let network_id = genesis.network_id();
    let to = Address([7; 32]);
    let total = args.devices * args.rounds as usize;
    let mut acks: Vec<(TxId, PayloadId, Instant)> = Vec::with_capacity(total);
    let issuer = nodes[0].handle();
    // Pre-signed, as devices would send them: signing is the devices' work, not the network's.
    let rounds: Vec<Vec<SignedPayload>> = (0..args.rounds)
        .map(|round| {
            devices
                .iter()
                .map(|d| {
                    SignedPayload::sign(
                        d,
                        network_id,
                        round,
                        Body::Pay {
                            to,
                            amount: 1,
                            memo: Vec::new(),
                        },
                    )
                })
                .collect()
        })
        .collect();
    let start = Instant::now();
    // A device's payments carry consecutive sequence numbers: round r + 1 goes out once
    // round r is acknowledged.
    let mut sent = 0usize;
    for payloads in rounds {
        let mut calls = Vec::new();
        for chunk in payloads.chunks(args.chunk) {
            if args.rate > 0 {
                // Offered load: chunk k leaves at start + k * chunk / rate.
                let at = start + Duration::from_secs_f64(sent as f64 / args.rate as f64);
                tokio::time::sleep_until(at.into()).await;
            }
            sent += chunk.len();
            let h = issuer.clone();
            let chunk = chunk.to_vec();
            calls.push(tokio::spawn(async move {
                let r = h.submit_payloads(chunk).await;
                (r, Instant::now())
            }));
        }
        for c in calls {
            let (results, acked) = c.await?;
            for r in results {
                let r = r.map_err(|e| anyhow::anyhow!("submit: {e}"))?;
                acks.push((r.transaction_id, r.payload_id, acked));
            }
        }
    }
    let submitted = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let done = seen
            .iter()
            .all(|s| s.lock().unwrap().confirmed.len() >= acks.len());
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut last = start;
    let mut confirmed_all = 0;
    for (_, pid, _) in &acks {
        let ts: Vec<Option<Instant>> = seen
            .iter()
            .map(|s| s.lock().unwrap().confirmed.get(pid).copied())
            .collect();
        if ts.iter().all(Option::is_some) {
            confirmed_all += 1;
            last = last.max(ts.into_iter().flatten().max().unwrap_or(start));
        }
    }
    let mut lat: Vec<f64> = Vec::new();
    for s in &seen[1..] {
        let s = s.lock().unwrap();
        for (tx, _, acked) in &acks {
            if let Some(t) = s.solid.get(tx) {
                lat.push(t.saturating_duration_since(*acked).as_secs_f64() * 1000.0);
            }
        }
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let elapsed = last.duration_since(start).as_secs_f64();
    println!(
        "net-bench: {n_nodes} nodes on loopback (QUIC), {}, store={}, {} payments ({} devices x {} rounds), milestone interval {} ms, pow difficulty {}, offered load {}",
        if args.committee > 0 {
            format!("a committee of all {n_nodes}, threshold {}", args.committee)
        } else {
            "node 0 issues milestones".to_string()
        },
        args.store, total, args.devices, args.rounds, args.milestone_interval_ms, args.pow_difficulty,
        if args.rate == 0 { "unpaced".to_string() } else { format!("{}/s", args.rate) }
    );
    println!(
        "submitted in {:.2} s; confirmed on all {n_nodes}: {confirmed_all}/{total} in {elapsed:.2} s = {:.0} payments/s",
        submitted.as_secs_f64(),
        confirmed_all as f64 / elapsed
    );
    println!(
        "propagation (ack on node 0 -> solid on the others): n={} p50={:.2} ms p90={:.2} ms p99={:.2} ms max={:.2} ms; events lagged: {}",
        lat.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        seen.iter().map(|s| s.lock().unwrap().lagged).sum::<u64>()
    );
    let digests: Vec<_> = nodes.iter().map(|n| n.handle().info()).collect();
    println!(
        "transactions held on node 0: {} for {total} payments (the rest: milestones and the merge transactions of their tip sweeps)",
        digests[0].transactions
    );
    let at = digests
        .iter()
        .map(|i| i.confirmed_milestone)
        .min()
        .unwrap_or(0);
    for (i, info) in digests.iter().enumerate() {
        if info.confirmed_milestone != digests[0].confirmed_milestone || info.halted.is_some() {
            println!(
                "node {i}: confirmed milestone {} (latest seen {}), halted: {:?}",
                info.confirmed_milestone, info.latest_milestone, info.halted
            );
        }
    }
    let same = nodes
        .iter()
        .map(|n| {
            n.handle()
                .milestone(Some(at))
                .ok()
                .flatten()
                .map(|m| m.ledger_digest)
        })
        .collect::<Vec<_>>();
    println!(
        "digest at milestone {at} identical on all {n_nodes}: {}",
        same.iter().all(|d| *d == same[0] && d.is_some())
    );
    if args.committee > 0 {
        // Proposal-to-publication latency of the milestones each member published, from
        // the members' histograms (bucket upper bounds) and their sums.
        let mut buckets = [0u64; node_proto::LATENCY_BUCKETS_MS.len() + 1];
        let (mut published, mut sum, mut view_changes) = (0u64, 0u64, 0u64);
        for n in &nodes {
            if let Some(s) = n.handle().with_protocol(|p| p.committee_stats()) {
                for (b, c) in buckets.iter_mut().zip(s.latency_buckets) {
                    *b += c;
                }
                published += s.published;
                sum += s.latency_sum_ms;
                view_changes += s.view_changes;
            }
        }
        let bound = |q: f64| {
            let want = (published as f64 * q).ceil() as u64;
            let mut acc = 0;
            for (i, c) in buckets.iter().enumerate() {
                acc += c;
                if acc >= want.max(1) {
                    return node_proto::LATENCY_BUCKETS_MS
                        .get(i)
                        .map_or("more".to_string(), |b| format!("<= {b} ms"));
                }
            }
            "n/a".to_string()
        };
        println!(
            "committee: {published} milestones published, proposal-to-publication mean {:.0} ms, p50 {}, p99 {}; view changes {view_changes}",
            sum as f64 / published.max(1) as f64,
            bound(0.5),
            bound(0.99)
        );
    }
    for (n, _) in nets {
        n.shutdown().await;
    }
    for n in nodes {
        n.shutdown().await;
    }
    Ok(())
}
