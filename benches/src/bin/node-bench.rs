//! `node-bench`: load generator for a node's HTTP API.
//!
//! Starts an in-process node (sled store in a temp dir, milestone issuer) whose genesis funds
//! many device accounts, pre-signs payments (each account pays `--per-account` times), then
//! drives `POST /api/v1/payloads` (or `/payloads/batch`) from `--clients` concurrent HTTP
//! clients in MessagePack. Every 2xx is durable (flushed with group commit and an fsync
//! before the answer). Confirmations are observed through the node's event stream.
//!
//! Prints accepted tx/s, confirmed tx/s and submit-to-confirm latency percentiles.
//!
//! ```text
//! cargo run --release -p benches --bin node-bench -- --payments 100000 --clients 64 --batch 64
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use dag_core::{Allocation, Body, Genesis, Keypair, PayloadId, SignedPayload};
use node::protocol::ProtocolConfig;
use node::service::{NodeEvent, NodeService, PayloadState};
use node::store::SledStore;
use node::{Node, NodeSetup};
use rayon::prelude::*;
use tokio::sync::Mutex;

// mimalloc, as in `tangle-node`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident set size of this process, in bytes (Linux).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

#[derive(Parser, Debug)]
#[command(about = "Drive a node's HTTP API with pre-signed payments and measure throughput")]
struct Args {
    /// Payments to submit.
    #[arg(long, default_value_t = 100_000)]
    payments: usize,
    /// Payments per account (they carry consecutive sequence numbers).
    #[arg(long, default_value_t = 1)]
    per_account: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Payloads per request (1 = `POST /api/v1/payloads`, more = `/payloads/batch`).
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// PoW difficulty of the network (leading zero bits).
    #[arg(long, default_value_t = 0)]
    pow_difficulty: u8,
    /// Milestone interval, ms.
    #[arg(long, default_value_t = 1000)]
    milestone_interval_ms: u64,
    /// Stop waiting for confirmations after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
}

/// Bytes of all files under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let accounts = args.payments.div_ceil(args.per_account.max(1));
    eprintln!(
        "generating {accounts} accounts and {} payments...",
        args.payments
    );
    let keys: Vec<Keypair> = (0..accounts)
        .into_par_iter()
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_le_bytes());
            Keypair::from_seed(&seed)
        })
        .collect();
    let committee = Keypair::from_seed(&[0xc0; 32]);
    let genesis = Genesis {
        network_name: "node-bench".into(),
        timestamp: node::runtime::now_ms(),
        pow_difficulty: args.pow_difficulty,
        timestamp_window_ms: 600_000,
        committee: vec![committee.address()],
        threshold: 1,
        allocations: keys
            .iter()
            .map(|k| Allocation {
                address: k.address(),
                amount: 1_000_000,
            })
            .collect(),
    };
    let net = genesis.network_id();
    let payloads: Vec<SignedPayload> = (0..args.payments)
        .into_par_iter()
        .map(|i| {
            let from = &keys[i % accounts];
            let seq = (i / accounts) as u64;
            let to = keys[(i * 7 + 1) % accounts].address();
            SignedPayload::sign(
                from,
                net,
                seq,
                Body::Pay {
                    to,
                    amount: 1,
                    memo: Vec::new(),
                },
            )
        })
        .collect();
    let ids: Vec<PayloadId> = payloads.par_iter().map(|p| p.id()).collect();

    let dir = tempfile::tempdir()?;
    let store = SledStore::open(dir.path().join("db")).context("opening sled")?;
    let node = Node::start(NodeSetup {
        genesis,
        store: Arc::new(store),
        protocol: ProtocolConfig {
            milestone_signer: Some((0, committee)),
            milestone_interval_ms: args.milestone_interval_ms,
            ..ProtocolConfig::default()
        },
        max_batch: 2048,
        queue_capacity: 100_000,
    })
    .await?;
    let handle = node.handle();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(node::api::serve(
        listener,
        handle.clone(),
        node::api::ApiOptions {
            rate_limit_per_sec: 0,
            max_batch_len: 100_000,
            ..Default::default()
        },
        async move {
            let _ = stop_rx.await;
        },
    ));

    // Confirmation watcher.
    let mut events = handle.subscribe();
    // Pre-sized so the bench's own bookkeeping is allocated before the heap baseline.
    let confirmed_at: Arc<Mutex<HashMap<PayloadId, (Instant, bool)>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(args.payments * 2)));
    let lagged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let watcher = {
        let confirmed_at = confirmed_at.clone();
        let lagged = lagged.clone();
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(NodeEvent::Payload { payload_id, state }) => {
                        // The first final status counts, unless a later one confirms it
                        // (a payload's reattached copy can conflict after it applied).
                        let ok = matches!(state, PayloadState::Confirmed { .. });
                        let mut m = confirmed_at.lock().await;
                        let e = m.entry(payload_id).or_insert((Instant::now(), ok));
                        if ok && !e.1 {
                            *e = (Instant::now(), true);
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        lagged.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    Err(_) => return,
                }
            }
        })
    };

    // Split the payloads into requests, and the requests among clients. A client sends an
    // account's payments in order, one request at a time.
    let body_chunks: Vec<(Vec<usize>, Vec<u8>)> = (0..args.payments)
        .collect::<Vec<_>>()
        .chunks(args.batch.max(1))
        .map(|idx| {
            let body = if args.batch <= 1 {
                rmp_serde::to_vec_named(&payloads[idx[0]]).expect("encodes")
            } else {
                let v: Vec<&SignedPayload> = idx.iter().map(|i| &payloads[*i]).collect();
                rmp_serde::to_vec_named(&v).expect("encodes")
            };
            (idx.to_vec(), body)
        })
        .collect();
    let url = if args.batch <= 1 {
        format!("http://{addr}/api/v1/payloads")
    } else {
        format!("http://{addr}/api/v1/payloads/batch")
    };
    let queue = Arc::new(std::sync::Mutex::new(body_chunks.into_iter()));
    let submitted_at: Arc<Mutex<Vec<Option<Instant>>>> =
        Arc::new(Mutex::new(vec![None; args.payments]));
    eprintln!(
        "submitting {} payments from {} clients, {} per request, pow difficulty {}...",
        args.payments, args.clients, args.batch, args.pow_difficulty
    );
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let queue = queue.clone();
        let url = url.clone();
        let submitted_at = submitted_at.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let (mut ok, mut refused) = (0usize, 0usize);
            loop {
                let next = queue.lock().expect("queue").next();
                let Some((idx, body)) = next else { break };
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/msgpack")
                    .body(body)
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status().is_success() => {
                        if idx.len() > 1 {
                            let text = r.bytes().await.unwrap_or_default();
                            let v: serde_json::Value =
                                serde_json::from_slice(&text).unwrap_or_default();
                            let n_ok = v
                                .as_array()
                                .map(|a| a.iter().filter(|x| x.get("ok").is_some()).count())
                                .unwrap_or(0);
                            ok += n_ok;
                            refused += idx.len() - n_ok;
                        } else {
                            ok += 1;
                        }
                        let mut s = submitted_at.lock().await;
                        for i in idx {
                            s[i] = Some(t);
                        }
                    }
                    _ => refused += idx.len(),
                }
            }
            (ok, refused)
        }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for t in tasks {
        let (a, r) = t.await?;
        accepted += a;
        refused += r;
    }
    let submit_secs = start.elapsed().as_secs_f64();
    eprintln!("all submitted; waiting for confirmations...");
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    loop {
        let n = confirmed_at.lock().await.len();
        if n >= accepted || Instant::now() > deadline {
            break;
        }
        if n > 0 && n % 10 == 0 {
            eprint!("\r  {n} confirmed");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total_secs = start.elapsed().as_secs_f64();
    let conf = confirmed_at.lock().await.clone();
    let sub = submitted_at.lock().await.clone();
    let mut lat: Vec<f64> = Vec::new();
    let mut applied = 0usize;
    let mut last_confirm = start;
    for (i, id) in ids.iter().enumerate() {
        if let (Some(s), Some((c, ok))) = (sub[i], conf.get(id)) {
            lat.push(c.duration_since(s).as_secs_f64() * 1000.0);
            applied += usize::from(*ok);
            last_confirm = last_confirm.max(*c);
        }
    }
    lat.sort_by(f64::total_cmp);
    let confirm_secs = last_confirm.duration_since(start).as_secs_f64();
    let info = handle.info();
    let rss_end = rss_bytes();
    watcher.abort();
    drop(handle);
    let _ = stop_tx.send(());
    let _ = server.await;
    node.shutdown().await;
    let lagged = lagged.load(std::sync::atomic::Ordering::Relaxed);
    println!("node-bench: {} payments, {} clients, {} per request, pow difficulty {}, milestone every {} ms",
        args.payments, args.clients, args.batch, args.pow_difficulty, args.milestone_interval_ms);
    println!(
        "  accepted (durable)  : {accepted} in {submit_secs:.2} s = {:.0} tx/s",
        accepted as f64 / submit_secs
    );
    println!("  refused             : {refused}");
    println!(
        "  confirmed           : {} ({applied} applied) in {confirm_secs:.2} s = {:.0} tx/s",
        lat.len(),
        lat.len() as f64 / confirm_secs.max(1e-9)
    );
    println!(
        "  submit->confirm ms  : p50 {:.0}  p99 {:.0}  max {:.0}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  milestones          : {}  (ledger digest {})",
        info.confirmed_milestone, info.ledger_digest
    );
    println!("  events lost (lagged): {lagged}");
    let txs = info.transactions.max(1) as f64;
    println!(
        "  memory              : process RSS {:.1} MiB with {} transactions held = {:.0} B/tx, an upper bound (node + the bench's pre-signed payloads and bookkeeping)",
        rss_end as f64 / 1048576.0,
        info.transactions,
        rss_end as f64 / txs
    );
    let disk = dir_size(dir.path());
    println!(
        "  disk                : {:.1} MiB = {:.0} B/tx stored",
        disk as f64 / 1048576.0,
        disk as f64 / txs
    );
    println!("  wall total          : {total_secs:.2} s");
    Ok(())
}
