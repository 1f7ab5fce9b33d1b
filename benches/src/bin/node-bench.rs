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
use node::service::{NodeEvent, NodeService, PayloadState};
use node::store::SledStore;
use node::{Node, NodeSetup};
use node_proto::ProtocolConfig;
use rayon::prelude::*;
use tokio::sync::Mutex;

// mimalloc, as in `tangle-node`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Resident set size of a process (`"self"` or a pid), in bytes (Linux).
fn rss_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
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
    /// Run the node as a separate `tangle-node run` process (this binary's path), so its
    /// memory can be measured alone; confirmations are then watched over SSE.
    #[arg(long)]
    spawn: Option<std::path::PathBuf>,
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

/// Where the load goes: a node in this process, or a `tangle-node` child process.
enum Target {
    InProcess {
        node: Node,
        addr: std::net::SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
        watcher: tokio::task::JoinHandle<()>,
    },
    Child {
        child: std::process::Child,
        addr: std::net::SocketAddr,
        watcher: tokio::task::JoinHandle<()>,
    },
}

impl Target {
    fn addr(&self) -> std::net::SocketAddr {
        match self {
            Target::InProcess { addr, .. } | Target::Child { addr, .. } => *addr,
        }
    }

    /// Stops the node; returns the RSS to report and what it covers.
    async fn finish(self) -> (u64, &'static str) {
        match self {
            Target::InProcess {
                node,
                stop,
                server,
                watcher,
                ..
            } => {
                let rss = rss_bytes("self");
                watcher.abort();
                let _ = stop.send(());
                let _ = server.await;
                node.shutdown().await;
                (
                    rss,
                    "whole bench process: node + pre-signed payloads + clients, an upper bound",
                )
            }
            Target::Child {
                mut child, watcher, ..
            } => {
                let rss = rss_bytes(&child.id().to_string());
                watcher.abort();
                let _ = std::process::Command::new("kill")
                    .args(["-INT", &child.id().to_string()])
                    .status();
                let _ = child.wait();
                (rss, "the tangle-node process alone")
            }
        }
    }
}

type Confirmations = Arc<Mutex<HashMap<PayloadId, (Instant, bool)>>>;

/// Records a payload's final status: the first one counts, unless a later one confirms it
/// (a reattached copy can conflict after the payload applied).
async fn record(confirmed_at: &Confirmations, payload_id: PayloadId, ok: bool) {
    let mut m = confirmed_at.lock().await;
    let e = m.entry(payload_id).or_insert((Instant::now(), ok));
    if ok && !e.1 {
        *e = (Instant::now(), true);
    }
}

async fn start_in_process(
    args: &Args,
    genesis: Genesis,
    committee: Keypair,
    dir: &std::path::Path,
    confirmed_at: &Confirmations,
    lagged: &Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Target> {
    let store = SledStore::open(dir.join("db")).context("opening sled")?;
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
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
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
    let mut events = handle.subscribe();
    let (confirmed_at, lagged) = (confirmed_at.clone(), lagged.clone());
    let watcher = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Payload { payload_id, state }) => {
                    let ok = matches!(state, PayloadState::Confirmed { .. });
                    record(&confirmed_at, payload_id, ok).await;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    lagged.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                }
                Err(_) => return,
            }
        }
    });
    Ok(Target::InProcess {
        node,
        addr,
        stop,
        server,
        watcher,
    })
}

/// Writes a node directory for `genesis`, starts `bin run --config` on it and follows its
/// event stream.
async fn spawn_node(
    bin: &std::path::Path,
    args: &Args,
    genesis: &Genesis,
    committee: &Keypair,
    dir: &std::path::Path,
    confirmed_at: &Confirmations,
) -> anyhow::Result<Target> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    std::fs::write(dir.join("genesis.toml"), toml::to_string(genesis)?)?;
    std::fs::write(dir.join("committee.key"), hex::encode(committee.seed()))?;
    let mut cfg = node::config::NodeConfig::new("db".into(), "genesis.toml".into());
    cfg.api_addr = addr;
    cfg.milestone_key = Some("committee.key".into());
    cfg.milestone_interval_ms = args.milestone_interval_ms;
    cfg.rate_limit_per_sec = 0;
    std::fs::write(dir.join("node.toml"), cfg.to_documented_toml())?;
    let child = std::process::Command::new(bin)
        .args(["run", "--config"])
        .arg(dir.join("node.toml"))
        .env("RUST_LOG", "warn")
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..600 {
        if client
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(up, "tangle-node did not answer on {addr}");
    eprintln!(
        "tangle-node started: RSS {:.1} MiB before any load",
        rss_bytes(&child.id().to_string()) as f64 / 1048576.0
    );
    let mut resp = client
        .get(format!("http://{addr}/api/v1/events"))
        .send()
        .await?;
    let confirmed_at = confirmed_at.clone();
    let watcher = tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                for line in event.split(|b| *b == b'\n') {
                    let Some(data) = line.strip_prefix(b"data: ") else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
                        continue;
                    };
                    if v["type"] != "payload" {
                        continue;
                    }
                    let Some(id) = v["payload_id"].as_str().and_then(|s| s.parse().ok()) else {
                        continue;
                    };
                    record(&confirmed_at, id, v["status"] == "confirmed").await;
                }
            }
        }
    });
    Ok(Target::Child {
        child,
        addr,
        watcher,
    })
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
    // Pre-sized so the bench's bookkeeping does not grow during the run.
    let confirmed_at: Arc<Mutex<HashMap<PayloadId, (Instant, bool)>>> =
        Arc::new(Mutex::new(HashMap::with_capacity(args.payments * 2)));
    let lagged = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let target = match &args.spawn {
        None => {
            start_in_process(
                &args,
                genesis,
                committee,
                dir.path(),
                &confirmed_at,
                &lagged,
            )
            .await?
        }
        Some(bin) => {
            spawn_node(bin, &args, &genesis, &committee, dir.path(), &confirmed_at).await?
        }
    };
    let addr = target.addr();

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
    let info: serde_json::Value = reqwest::get(format!("http://{addr}/api/v1/info"))
        .await?
        .json()
        .await?;
    let transactions = info["transactions"].as_u64().unwrap_or(0);
    let (rss_end, rss_what) = target.finish().await;
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
        info["confirmed_milestone"], info["ledger_digest"]
    );
    println!("  events lost (lagged): {lagged}");
    let txs = transactions.max(1) as f64;
    println!(
        "  memory              : RSS {:.1} MiB with {} transactions held = {:.0} B/tx ({rss_what})",
        rss_end as f64 / 1048576.0,
        transactions,
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
