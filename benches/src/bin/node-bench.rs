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
//!
//! # Soak mode
//!
//! `--rate R` offers R payments per second, open loop: payment `i` is due `i / R` s after
//! the start whatever the node answers. A client takes the next request, waits for its
//! time and sends it; when all `--clients` are busy the schedule runs ahead of the sends,
//! and that backlog is counted (and included in the offer-to-confirm latency) instead of the
//! offered rate silently dropping. `--duration SECS` offers `R x SECS` payments (otherwise
//! `--payments`). They are signed on the fly: a generator thread signs rounds of ~4,096 on
//! the rayon pool and keeps about a second of requests ready in a bounded channel, so
//! memory does not grow with the run. The payers are `max(10 R, 2 x clients x batch)`
//! genesis-funded accounts taking turns: each pays consecutive sequence numbers, one
//! payment every ~10 s (confirmed before its next one is offered, and never two in flight
//! at once), and holds more than it can spend in the run. `--per-account` does not apply.
//!
//! `--keep-data DIR` keeps the node's directory (database, and with `--spawn` its
//! `node.toml`) after the run, for restart measurements.
//!
//! `--keep-milestones N` sets the node's retention (`[pruning] keep_milestones`; for
//! `--spawn` also passed as `tangle-node run --keep-milestones N`); it applies to the
//! fixed-count mode too. `--csv FILE` writes one row per second,
//! `seconds,rss_bytes,disk_bytes,confirmed`: the node's RSS (the child's with `--spawn`,
//! otherwise this whole process's), the bytes of all files under the node's data dir, and the
//! payments confirmed so far. The summary gives offered, accepted and confirmed rates,
//! submit- and offer-to-confirm latency percentiles, and RSS and disk at minute 5 (or at
//! the first sixth of shorter runs) against the end of the offered period, with their ratio
//! (the acceptance target: within 10%). `scripts/plot-soak.py soak.csv` draws the CSV as an
//! SVG.
//!
//! ```text
//! ./target/release/node-bench --spawn target/release/tangle-node --rate 10000 --duration 1800 --keep-milestones 60 --clients 32 --batch 64 --csv soak.csv
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use dag_core::{Allocation, Body, Genesis, Keypair, NetworkId, PayloadId, SignedPayload};
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
    /// Soak mode: offer this many payments per second, paced by a timer (open loop), with
    /// payments signed on the fly; `--per-account` does not apply.
    #[arg(long)]
    rate: Option<f64>,
    /// Soak mode: offer payments for this many seconds instead of `--payments` in all.
    #[arg(long, requires = "rate")]
    duration: Option<u64>,
    /// Retention of the node: keep the last N milestones' history (`[pruning]
    /// keep_milestones`); default: keep everything.
    #[arg(long)]
    keep_milestones: Option<u32>,
    /// Soak mode: write one row per second to this CSV file
    /// (`seconds,rss_bytes,disk_bytes,confirmed`).
    #[arg(long, requires = "rate")]
    csv: Option<std::path::PathBuf>,
    /// Put the node's directory here (created; must not exist or be empty) and keep it
    /// after the run instead of a temporary one that is deleted: with `--spawn` it holds a
    /// `node.toml` that `tangle-node run --config DIR/node.toml` starts again on the same
    /// database (`scripts/restart-bench.sh`).
    #[arg(long)]
    keep_data: Option<std::path::PathBuf>,
    /// Keep this many dashboards open during the run, as a browser tab of `GET /` loads the
    /// node: the page once, its event stream (`/api/v1/events/sampled`) read to the end, and
    /// `/api/v1/info`, `/health` and `/metrics` every 2 s (the page's drawing happens in the
    /// browser, not here).
    #[arg(long, default_value_t = 0)]
    dashboards: usize,
}

/// One emulated dashboard against `addr` until `stop` turns true; returns the bytes read.
async fn dashboard(
    addr: std::net::SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> u64 {
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let mut bytes = 0u64;
    if let Ok(r) = client.get(format!("{base}/")).send().await {
        bytes += r.bytes().await.map_or(0, |b| b.len() as u64);
    }
    let Ok(mut events) = client
        .get(format!("{base}/api/v1/events/sampled"))
        .send()
        .await
    else {
        return bytes;
    };
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            chunk = events.chunk() => match chunk {
                Ok(Some(c)) => bytes += c.len() as u64,
                _ => return bytes,
            },
            _ = poll.tick() => {
                for path in ["/api/v1/info", "/health", "/metrics"] {
                    if let Ok(r) = client.get(format!("{base}{path}")).send().await {
                        bytes += r.bytes().await.map_or(0, |b| b.len() as u64);
                    }
                }
            }
            _ = stop.changed() => return bytes,
        }
    }
}

/// The node's directory: a temporary one deleted on drop, or `--keep-data DIR`.
struct NodeDir {
    _tmp: Option<tempfile::TempDir>,
    path: std::path::PathBuf,
}

impl NodeDir {
    fn new(keep: Option<&std::path::Path>) -> anyhow::Result<Self> {
        match keep {
            None => {
                let tmp = tempfile::tempdir()?;
                Ok(NodeDir {
                    path: tmp.path().to_owned(),
                    _tmp: Some(tmp),
                })
            }
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
                anyhow::ensure!(
                    std::fs::read_dir(dir)?.next().is_none(),
                    "--keep-data {} is not empty",
                    dir.display()
                );
                Ok(NodeDir {
                    _tmp: None,
                    path: dir.to_owned(),
                })
            }
        }
    }

    fn path(&self) -> &std::path::Path {
        &self.path
    }
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

    /// The process whose RSS is the node's, for [`rss_bytes`].
    fn pid(&self) -> String {
        match self {
            Target::InProcess { .. } => "self".into(),
            Target::Child { child, .. } => child.id().to_string(),
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

/// Where the watcher reports final payload statuses: the fixed-count mode keeps every
/// payload's status; soak mode tracks only the payloads in flight (bounded memory).
#[derive(Clone)]
enum Sink {
    All(Confirmations),
    Soak(Arc<Soak>),
}

impl Sink {
    async fn record(&self, payload_id: PayloadId, ok: bool) {
        match self {
            Sink::All(confirmed_at) => record(confirmed_at, payload_id, ok).await,
            Sink::Soak(soak) => soak.record(payload_id, ok),
        }
    }
}

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
    sink: &Sink,
    lagged: &Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Target> {
    let store = SledStore::open(dir.join("db")).context("opening sled")?;
    let node = Node::start(NodeSetup {
        genesis,
        store: Arc::new(store),
        protocol: ProtocolConfig {
            milestone_signer: Some((0, committee)),
            milestone_interval_ms: args.milestone_interval_ms,
            keep_milestones: args.keep_milestones,
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
    let (sink, lagged) = (sink.clone(), lagged.clone());
    let watcher = tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Payload { payload_id, state }) => {
                    let ok = matches!(state, PayloadState::Confirmed { .. });
                    sink.record(payload_id, ok).await;
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
    sink: &Sink,
    lagged: &Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<Target> {
    let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    std::fs::write(dir.join("genesis.toml"), toml::to_string(genesis)?)?;
    std::fs::write(dir.join("committee.key"), hex::encode(committee.seed()))?;
    let mut cfg = node::config::NodeConfig::new("db".into(), "genesis.toml".into());
    cfg.api_addr = addr;
    cfg.milestone_key = Some("committee.key".into());
    cfg.milestone_interval_ms = args.milestone_interval_ms;
    cfg.rate_limit_per_sec = 0;
    cfg.pruning.keep_milestones = args.keep_milestones;
    std::fs::write(dir.join("node.toml"), cfg.to_documented_toml())?;
    let mut cmd = std::process::Command::new(bin);
    cmd.args(["run", "--config"]).arg(dir.join("node.toml"));
    if let Some(n) = args.keep_milestones {
        // The documented TOML may not carry `[pruning]`; the flag wins over file and env.
        cmd.arg("--keep-milestones").arg(n.to_string());
    }
    let child = cmd
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
    let sink = sink.clone();
    let lagged = lagged.clone();
    let watcher = tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.extend_from_slice(&chunk);
            while let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                // A `lagged` notice: the node's stream lost events (this client or the
                // API's own subscription fell behind); count what it says was missed.
                let notice = event.split(|b| *b == b'\n').any(|l| l == b"event: lagged");
                for line in event.split(|b| *b == b'\n') {
                    let Some(data) = line.strip_prefix(b"data: ") else {
                        continue;
                    };
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
                        continue;
                    };
                    if notice {
                        let missed = v["missed"].as_u64().unwrap_or(1);
                        lagged.fetch_add(missed, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    if v["type"] != "payload" {
                        continue;
                    }
                    let Some(id) = v["payload_id"].as_str().and_then(|s| s.parse().ok()) else {
                        continue;
                    };
                    sink.record(id, v["status"] == "confirmed").await;
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
    if let Some(rate) = args.rate {
        return soak(args, rate).await;
    }
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

    let dir = NodeDir::new(args.keep_data.as_deref())?;
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
                &Sink::All(confirmed_at.clone()),
                &lagged,
            )
            .await?
        }
        Some(bin) => {
            let sink = Sink::All(confirmed_at.clone());
            spawn_node(bin, &args, &genesis, &committee, dir.path(), &sink, &lagged).await?
        }
    };
    let addr = target.addr();
    let (dash_stop, dash_rx) = tokio::sync::watch::channel(false);
    let dashboards: Vec<_> = (0..args.dashboards)
        .map(|_| tokio::spawn(dashboard(addr, dash_rx.clone())))
        .collect();

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
    let _ = dash_stop.send(true);
    let mut dash_bytes = 0;
    for d in dashboards {
        dash_bytes += d.await.unwrap_or(0);
    }
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
    if args.dashboards > 0 {
        println!(
            "  dashboards open     : {} (read {:.1} MiB in all)",
            args.dashboards,
            dash_bytes as f64 / 1048576.0
        );
    }
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

/// Latencies in ms with bounded memory: 1 ms buckets below 1 s, 10 ms below 10 s, 100 ms
/// below 100 s, 1 s below 1,000 s, then one bucket; the maximum is kept exactly.
struct Hist {
    counts: Vec<u64>,
    n: u64,
    max: f64,
}

impl Hist {
    const BUCKETS: usize = 3701;

    fn new() -> Self {
        Hist {
            counts: vec![0; Self::BUCKETS],
            n: 0,
            max: f64::NAN,
        }
    }

    fn bucket(ms: f64) -> usize {
        let ms = ms.max(0.0);
        if ms < 1_000.0 {
            ms as usize
        } else if ms < 10_000.0 {
            1_000 + ((ms - 1_000.0) / 10.0) as usize
        } else if ms < 100_000.0 {
            1_900 + ((ms - 10_000.0) / 100.0) as usize
        } else if ms < 1_000_000.0 {
            2_800 + ((ms - 100_000.0) / 1_000.0) as usize
        } else {
            Self::BUCKETS - 1
        }
    }

    /// Lower bound and width of a bucket, ms.
    fn range(b: usize) -> (f64, f64) {
        match b {
            0..=999 => (b as f64, 1.0),
            1_000..=1_899 => (1_000.0 + (b - 1_000) as f64 * 10.0, 10.0),
            1_900..=2_799 => (10_000.0 + (b - 1_900) as f64 * 100.0, 100.0),
            2_800..=3_699 => (100_000.0 + (b - 2_800) as f64 * 1_000.0, 1_000.0),
            _ => (1_000_000.0, 0.0),
        }
    }

    fn add(&mut self, ms: f64) {
        self.counts[Self::bucket(ms)] += 1;
        self.n += 1;
        self.max = self.max.max(ms);
    }

    /// The sample of the same rank as [`percentile`] picks, to within its bucket (midpoint).
    fn percentile(&self, p: f64) -> f64 {
        if self.n == 0 {
            return f64::NAN;
        }
        let rank = ((self.n as f64 - 1.0) * p).round() as u64;
        let mut seen = 0;
        for (b, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                let (lo, w) = Self::range(b);
                return (lo + w / 2.0).min(self.max);
            }
        }
        self.max
    }
}

/// A payment sent and not yet confirmed.
struct Flight {
    /// When the schedule offered it.
    offered: Instant,
    /// When its request left.
    sent: Instant,
    /// A conflicting status arrived (final unless a later copy confirms it).
    conflicting: bool,
}

struct Tracker {
    in_flight: HashMap<PayloadId, Flight>,
    /// Entries of `in_flight` marked conflicting.
    conflicting: u64,
    submit_to_confirm: Hist,
    offer_to_confirm: Hist,
    last_confirm: Option<Instant>,
    refusals: HashMap<String, u64>,
}

/// Soak-mode bookkeeping, bounded: only payments in flight are remembered.
/// The sum of the `next_seq` of `payers` as the node at `addr` reports them, asked over
/// `clients` concurrent connections.
async fn ledger_count(
    addr: &std::net::SocketAddr,
    payers: &[dag_core::Address],
    clients: usize,
) -> anyhow::Result<u64> {
    let client = reqwest::Client::new();
    let chunk = payers.len().div_ceil(clients.max(1)).max(1);
    let mut tasks = Vec::new();
    for part in payers.chunks(chunk) {
        let (client, part, addr) = (client.clone(), part.to_vec(), *addr);
        tasks.push(tokio::spawn(async move {
            let mut sum = 0u64;
            for a in part {
                let url = format!("http://{addr}/api/v1/accounts/{}", a.to_bech32());
                let v: serde_json::Value = client.get(&url).send().await?.json().await?;
                sum += v["next_seq"]
                    .as_u64()
                    .ok_or_else(|| anyhow::anyhow!("{url}: no next_seq in {v}"))?;
            }
            anyhow::Ok(sum)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok(total)
}

/// Payments without a final status at the end whose status `--rate` mode asks the node.
const STRAGGLER_SAMPLE: usize = 50;

struct Soak {
    tracker: std::sync::Mutex<Tracker>,
    /// Payments signed and handed to the senders.
    generated: AtomicU64,
    /// Payments whose request left.
    sent: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Payments confirmed and applied.
    confirmed: AtomicU64,
    /// Most a request left behind its scheduled time, µs.
    max_late_us: AtomicU64,
}

impl Soak {
    fn new() -> Self {
        Soak {
            tracker: std::sync::Mutex::new(Tracker {
                in_flight: HashMap::new(),
                conflicting: 0,
                submit_to_confirm: Hist::new(),
                offer_to_confirm: Hist::new(),
                last_confirm: None,
                refusals: HashMap::new(),
            }),
            generated: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            max_late_us: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tracker> {
        self.tracker.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A final status from the node: the first counts, unless a later one confirms it (as
    /// in [`record`]).
    fn record(&self, payload_id: PayloadId, ok: bool) {
        let now = Instant::now();
        let mut guard = self.lock();
        let t = &mut *guard;
        if ok {
            if let Some(f) = t.in_flight.remove(&payload_id) {
                if f.conflicting {
                    t.conflicting -= 1;
                }
                t.submit_to_confirm
                    .add(now.duration_since(f.sent).as_secs_f64() * 1000.0);
                t.offer_to_confirm
                    .add(now.duration_since(f.offered).as_secs_f64() * 1000.0);
                t.last_confirm = Some(now);
                self.confirmed.fetch_add(1, Relaxed);
            }
        } else if let Some(f) = t.in_flight.get_mut(&payload_id) {
            if !f.conflicting {
                f.conflicting = true;
                t.conflicting += 1;
            }
        }
    }

    /// A request is about to leave (before it is sent, so no event can precede this).
    fn dispatch(&self, ids: &[PayloadId], offered: Instant, sent: Instant) {
        let late = sent.saturating_duration_since(offered).as_micros() as u64;
        self.max_late_us.fetch_max(late, Relaxed);
        let mut t = self.lock();
        for id in ids {
            t.in_flight.insert(
                *id,
                Flight {
                    offered,
                    sent,
                    conflicting: false,
                },
            );
        }
        self.sent.fetch_add(ids.len() as u64, Relaxed);
    }

    /// The node's verdicts on a request (`Err` carries the refusal's code).
    fn settle(&self, ids: &[PayloadId], verdicts: &[Result<(), String>]) {
        let mut guard = self.lock();
        let t = &mut *guard;
        for (id, v) in ids.iter().zip(verdicts) {
            match v {
                Ok(()) => {
                    self.accepted.fetch_add(1, Relaxed);
                }
                Err(code) => {
                    self.refused.fetch_add(1, Relaxed);
                    if t.in_flight.remove(id).is_some_and(|f| f.conflicting) {
                        t.conflicting -= 1;
                    }
                    *t.refusals.entry(code.clone()).or_default() += 1;
                }
            }
        }
    }

    /// Accepted payments still waiting for a final status.
    fn pending(&self) -> u64 {
        let t = self.lock();
        t.in_flight.len() as u64 - t.conflicting
    }
}

/// One request's worth of signed payments: the first one's index in the schedule, their
/// ids and the MessagePack body.
struct Request {
    first: u64,
    ids: Vec<PayloadId>,
    body: Vec<u8>,
}

/// Payment `i` of the soak schedule: accounts take turns, so account `i % n` pays its
/// sequence number `i / n`, to another account.
fn soak_payment(keys: &[Keypair], net: NetworkId, i: u64) -> SignedPayload {
    let n = keys.len() as u64;
    let from = (i % n) as usize;
    let to = keys[((from as u64 * 7 + 1) % n) as usize].address();
    SignedPayload::sign(
        &keys[from],
        net,
        i / n,
        Body::Pay {
            to,
            amount: 1,
            memo: Vec::new(),
        },
    )
}

/// Signs payments `0..total` in rounds of ~4,096 on the rayon pool and hands them over in
/// requests of `batch`; `tx` is bounded, so this runs at most its capacity ahead of the
/// senders.
fn generate(
    keys: &[Keypair],
    net: NetworkId,
    total: u64,
    batch: usize,
    tx: &tokio::sync::mpsc::Sender<Request>,
    soak: &Soak,
) {
    let round = ((4096 / batch).max(1) * batch) as u64;
    let mut k = 0;
    while k < total {
        let end = (k + round).min(total);
        let signed: Vec<SignedPayload> = (k..end)
            .into_par_iter()
            .map(|i| soak_payment(keys, net, i))
            .collect();
        let requests: Vec<Request> = signed
            .par_chunks(batch)
            .enumerate()
            .map(|(j, c)| Request {
                first: k + (j * batch) as u64,
                ids: c.iter().map(|p| p.id()).collect(),
                body: if batch <= 1 {
                    rmp_serde::to_vec_named(&c[0]).expect("encodes")
                } else {
                    rmp_serde::to_vec_named(c).expect("encodes")
                },
            })
            .collect();
        for r in requests {
            let n = r.ids.len() as u64;
            if tx.blocking_send(r).is_err() {
                return;
            }
            soak.generated.fetch_add(n, Relaxed);
        }
        k = end;
    }
}

/// One CSV row.
#[derive(Clone, Copy)]
struct Sample {
    seconds: u64,
    rss: u64,
    disk: u64,
}

/// What the sampler saw.
struct Sampled {
    samples: Vec<Sample>,
    /// Most payments due by the schedule and not yet sent, at a sample.
    max_backlog: u64,
    /// Most payments due and not yet signed by the generator, at a sample.
    max_generator_behind: u64,
    health_checks: u64,
    unhealthy: u64,
}

/// Every second: the node's RSS, its data dir's size and the confirmed count (CSV row);
/// every 10 s a progress line with the backlog and `/health` (unhealthy: not 2xx, an
/// error, or no answer in 5 s).
#[allow(clippy::too_many_arguments)]
async fn sample(
    soak: Arc<Soak>,
    pid: String,
    data_dir: std::path::PathBuf,
    addr: std::net::SocketAddr,
    mut csv: Option<std::io::BufWriter<std::fs::File>>,
    start: Instant,
    rate: f64,
    total: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Sampled> {
    use std::io::Write;
    let mut out = Sampled {
        samples: Vec::new(),
        max_backlog: 0,
        max_generator_behind: 0,
        health_checks: 0,
        unhealthy: 0,
    };
    // A check every 10 s on a kept-alive connection raced the API's 10 s idle timeout:
    // the node closed the connection as the next check was sent on it, and the check
    // failed at once (4 of 180 in each 30-minute soak, reported as unanswered). Idle
    // connections are dropped after 2 s instead, so each check opens its own.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()?;
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return Ok(out),
        }
        let elapsed = start.elapsed().as_secs_f64();
        let seconds = elapsed.round() as u64;
        let rss = rss_bytes(&pid);
        let disk = dir_size(&data_dir);
        let confirmed = soak.confirmed.load(Relaxed);
        if let Some(w) = csv.as_mut() {
            writeln!(w, "{seconds},{rss},{disk},{confirmed}")?;
            w.flush()?;
        }
        out.samples.push(Sample { seconds, rss, disk });
        let due = ((elapsed * rate) as u64).min(total);
        let sent = soak.sent.load(Relaxed);
        let backlog = due.saturating_sub(sent);
        out.max_backlog = out.max_backlog.max(backlog);
        out.max_generator_behind = out
            .max_generator_behind
            .max(due.saturating_sub(soak.generated.load(Relaxed)));
        if seconds % 10 == 0 {
            out.health_checks += 1;
            let health = match client.get(format!("http://{addr}/health")).send().await {
                Ok(r) if r.status().is_success() => "ok".to_string(),
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) if e.is_timeout() => "no answer in 5 s".to_string(),
                Err(e) => format!("error: {e}"),
            };
            if health != "ok" {
                out.unhealthy += 1;
            }
            eprintln!(
                "  [{seconds:>5} s] offered {due}  sent {sent}  accepted {}  refused {}  \
                 confirmed {confirmed}  backlog {backlog}  RSS {:.1} MiB  disk {:.1} MiB  \
                 health {health}",
                soak.accepted.load(Relaxed),
                soak.refused.load(Relaxed),
                rss as f64 / 1048576.0,
                disk as f64 / 1048576.0,
            );
        }
    }
}

/// Soak mode (`--rate`): an open-loop schedule of payments signed on the fly, with the
/// node's RSS and disk sampled every second.
async fn soak(args: Args, rate: f64) -> anyhow::Result<()> {
    anyhow::ensure!(rate.is_finite() && rate > 0.0, "--rate must be positive");
    let batch = args.batch.max(1);
    let clients = args.clients.max(1);
    let total = match args.duration {
        Some(d) => (rate * d as f64).round() as u64,
        None => args.payments as u64,
    };
    anyhow::ensure!(total > 0, "nothing to offer");
    let offer_secs = total as f64 / rate;
    // Enough accounts that an account's next payment is offered ~10 s after its previous
    // one (it has normally confirmed by then, so sequence numbers arrive in order), and
    // that the requests in flight at once never hold two payments of one account.
    let accounts = ((rate * 10.0).ceil() as u64)
        .max((clients * batch * 2) as u64)
        .min(total)
        .max(1);
    let per_account = total.div_ceil(accounts);
    // Each payment moves 1 unit, so this balance cannot run out whatever it receives.
    let balance = per_account.saturating_add(1).max(1_000_000);
    eprintln!(
        "soak: {total} payments offered at {rate}/s over {offer_secs:.0} s, from {accounts} \
         accounts ({per_account} payments each at most), signed on the fly..."
    );
    let keys: Vec<Keypair> = (0..accounts)
        .into_par_iter()
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i + 1).to_le_bytes());
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
                amount: balance,
            })
            .collect(),
    };
    let net = genesis.network_id();

    let dir = NodeDir::new(args.keep_data.as_deref())?;
    let soak = Arc::new(Soak::new());
    let sink = Sink::Soak(soak.clone());
    let lagged = Arc::new(AtomicU64::new(0));
    let target = match &args.spawn {
        None => start_in_process(&args, genesis, committee, dir.path(), &sink, &lagged).await?,
        Some(bin) => {
            spawn_node(bin, &args, &genesis, &committee, dir.path(), &sink, &lagged).await?
        }
    };
    let addr = target.addr();
    let data_dir = dir.path().join("db");

    let payers: Vec<dag_core::Address> = keys.iter().map(Keypair::address).collect();
    // About a second of requests signed ahead (at least two per client).
    let capacity = ((rate / batch as f64).ceil() as usize).max(2 * clients);
    let (tx, rx) = tokio::sync::mpsc::channel::<Request>(capacity);
    let generator = {
        let soak = soak.clone();
        std::thread::Builder::new()
            .name("generator".into())
            .spawn(move || generate(&keys, net, total, batch, &tx, &soak))?
    };
    // Head start: half the channel signed before the clock starts.
    let head = (capacity as u64 * batch as u64 / 2).min(total);
    while soak.generated.load(Relaxed) < head && !generator.is_finished() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let csv = match &args.csv {
        Some(path) => {
            use std::io::Write;
            let mut w = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            writeln!(w, "seconds,rss_bytes,disk_bytes,confirmed")?;
            w.flush()?;
            Some(w)
        }
        None => None,
    };
    let url = if batch <= 1 {
        format!("http://{addr}/api/v1/payloads")
    } else {
        format!("http://{addr}/api/v1/payloads/batch")
    };
    eprintln!(
        "offering {rate} payments/s from {clients} clients, {batch} per request, pow \
         difficulty {}, keep milestones {}...",
        args.pow_difficulty,
        args.keep_milestones
            .map_or("all".to_string(), |n| n.to_string())
    );
    let start = Instant::now();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample(
        soak.clone(),
        target.pid(),
        data_dir.clone(),
        addr,
        csv,
        start,
        rate,
        total,
        stop_rx,
    ));

    // Open loop: request j leaves at its scheduled time, whenever responses come. A client
    // takes the next request, waits for its time, sends it; when every client is busy the
    // schedule runs ahead of the sends (the backlog) and the latency from the scheduled
    // time grows, rather than the offered rate silently dropping.
    let rx = Arc::new(Mutex::new(rx));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (rx, url, soak) = (rx.clone(), url.clone(), soak.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let next = rx.lock().await.recv().await;
                let Some(req) = next else { break };
                let offered = start + Duration::from_secs_f64(req.first as f64 / rate);
                tokio::time::sleep_until(offered.into()).await;
                soak.dispatch(&req.ids, offered, Instant::now());
                let n = req.ids.len();
                let resp = client
                    .post(&url)
                    .header("content-type", "application/msgpack")
                    .body(req.body)
                    .send()
                    .await;
                let verdicts: Vec<Result<(), String>> = match resp {
                    Ok(r) if r.status().is_success() => {
                        if batch > 1 {
                            let text = r.bytes().await.unwrap_or_default();
                            let v: serde_json::Value =
                                serde_json::from_slice(&text).unwrap_or_default();
                            (0..n)
                                .map(|i| match v.get(i) {
                                    Some(x) if x.get("ok").is_some() => Ok(()),
                                    Some(x) => Err(x["error"]["code"]
                                        .as_str()
                                        .unwrap_or("unknown")
                                        .to_string()),
                                    None => Err("no verdict".to_string()),
                                })
                                .collect()
                        } else {
                            vec![Ok(())]
                        }
                    }
                    Ok(r) => {
                        let status = r.status().as_u16();
                        let v: serde_json::Value = r.json().await.unwrap_or_default();
                        let code = v["code"].as_str().unwrap_or("").to_string();
                        vec![Err(format!("HTTP {status} {code}")); n]
                    }
                    Err(e) => vec![Err(format!("transport: {e}")); n],
                };
                soak.settle(&req.ids, &verdicts);
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let send_secs = start.elapsed().as_secs_f64();
    generator
        .join()
        .map_err(|_| anyhow::anyhow!("the generator panicked"))?;
    eprintln!("all offered; waiting for confirmations...");
    let deadline = Instant::now() + Duration::from_secs(args.timeout_s);
    while soak.pending() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total_secs = start.elapsed().as_secs_f64();
    // What the node says of a sample of the payments still without a final status
    // here: pending, reattaching, or confirmed with the event missed (or unknown: lost).
    let stragglers: Vec<PayloadId> = soak
        .lock()
        .in_flight
        .iter()
        .filter(|(_, f)| !f.conflicting)
        .map(|(id, _)| *id)
        .take(STRAGGLER_SAMPLE)
        .collect();
    // The ledger's own count: each applied payment advanced its payer's sequence number, so
    // the payers' sequence numbers add up to the payments applied (a conflicting one
    // advances it too; refused ones do not), whatever the event stream delivered.
    let applied_by_ledger = ledger_count(&addr, &payers, clients).await;
    let mut straggler_states: std::collections::BTreeMap<String, u64> = Default::default();
    for id in &stragglers {
        let state = match reqwest::get(format!("http://{addr}/api/v1/payloads/{id}")).await {
            Ok(r) if r.status().is_success() => r
                .json::<serde_json::Value>()
                .await
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_string))
                .unwrap_or_else(|| "unreadable".into()),
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            Err(e) => format!("transport error {e}"),
        };
        *straggler_states.entry(state).or_default() += 1;
    }
    let _ = stop_tx.send(true);
    let sampled = sampler.await??;
    let info: serde_json::Value = match reqwest::get(format!("http://{addr}/api/v1/info")).await {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    };
    let node_what = match target {
        Target::InProcess { .. } => "this process: node + generator + clients",
        Target::Child { .. } => "the tangle-node process alone",
    };
    target.finish().await;
    let lagged = lagged.load(Relaxed);

    let t = soak.lock();
    let (accepted, refused) = (soak.accepted.load(Relaxed), soak.refused.load(Relaxed));
    let confirmed = soak.confirmed.load(Relaxed);
    let confirm_secs = t
        .last_confirm
        .map_or(0.0, |c| c.duration_since(start).as_secs_f64());
    println!(
        "node-bench soak: {rate} payments/s for {offer_secs:.0} s, {accounts} accounts, {clients} \
         clients, {batch} per request, pow difficulty {}, milestone every {} ms, keep {} \
         milestones",
        args.pow_difficulty,
        args.milestone_interval_ms,
        args.keep_milestones
            .map_or("all".to_string(), |n| n.to_string())
    );
    println!(
        "  offered             : {total} in {offer_secs:.2} s = {:.0} tx/s",
        total as f64 / offer_secs
    );
    println!(
        "  accepted (durable)  : {accepted} in {send_secs:.2} s = {:.0} tx/s",
        accepted as f64 / send_secs
    );
    let mut reasons: Vec<(&String, &u64)> = t.refusals.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1));
    let reasons: Vec<String> = reasons
        .iter()
        .take(5)
        .map(|(r, n)| format!("{n} {r}"))
        .collect();
    if reasons.is_empty() {
        println!("  refused             : {refused}");
    } else {
        println!("  refused             : {refused} ({})", reasons.join("; "));
    }
    println!(
        "  confirmed (applied) : {confirmed} in {confirm_secs:.2} s = {:.0} tx/s; {} \
         conflicting, {} unconfirmed",
        confirmed as f64 / confirm_secs.max(1e-9),
        t.conflicting,
        t.in_flight.len() as u64 - t.conflicting
    );
    match applied_by_ledger {
        Ok(n) => println!(
            "  ledger check        : the payers' sequence numbers add up to {n} payments \
             applied or conflicting, of {accepted} accepted ({} not applied)",
            accepted.saturating_sub(n)
        ),
        Err(e) => println!("  ledger check        : failed: {e}"),
    }
    if !stragglers.is_empty() {
        let states: Vec<String> = straggler_states
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect();
        println!(
            "  unconfirmed, asked  : {} of them: {}",
            stragglers.len(),
            states.join(", ")
        );
    }
    println!(
        "  backlog             : at most {} payments due and not sent (generator behind by \
         at most {}); sends at most {:.0} ms behind schedule",
        sampled.max_backlog,
        sampled.max_generator_behind,
        soak.max_late_us.load(Relaxed) as f64 / 1000.0
    );
    for (what, h) in [
        ("submit->confirm ms  ", &t.submit_to_confirm),
        ("offer->confirm ms   ", &t.offer_to_confirm),
    ] {
        println!(
            "  {what}: p50 {:.0}  p99 {:.0}  max {:.0}",
            h.percentile(0.5),
            h.percentile(0.99),
            h.max
        );
    }
    println!(
        "  milestones          : {} confirmed, oldest kept {}, {} transactions held  \
         (ledger digest {})",
        info["confirmed_milestone"],
        info["oldest_milestone"],
        info["transactions"],
        info["ledger_digest"]
    );
    println!("  events lost (lagged): {lagged}");
    println!(
        "  health              : {} of {} checks unhealthy",
        sampled.unhealthy, sampled.health_checks
    );
    // The acceptance target compares minute 30 with minute 5: the end of the offered
    // period with its first sixth (at most 5 minutes in).
    let at = |s: f64| -> Option<Sample> {
        sampled
            .samples
            .iter()
            .min_by(|a, b| {
                (a.seconds as f64 - s)
                    .abs()
                    .total_cmp(&(b.seconds as f64 - s).abs())
            })
            .copied()
    };
    let reference = (offer_secs / 6.0).min(300.0);
    match (at(reference), at(offer_secs)) {
        (Some(a), Some(b)) => {
            let mib = |x: u64| x as f64 / 1048576.0;
            for (what, x, y, note) in [
                ("RSS                 ", a.rss, b.rss, node_what),
                (
                    "disk                ",
                    a.disk,
                    b.disk,
                    "the node's data dir",
                ),
            ] {
                let ratio = y as f64 / (x as f64).max(1.0);
                println!(
                    "  {what}: {:.1} MiB at {} s, {:.1} MiB at {} s: ratio {ratio:.3} ({}within \
                     10%) ({note})",
                    mib(x),
                    a.seconds,
                    mib(y),
                    b.seconds,
                    if (ratio - 1.0).abs() <= 0.10 {
                        ""
                    } else {
                        "NOT "
                    }
                );
            }
        }
        _ => println!("  RSS, disk           : no samples (run shorter than a second)"),
    }
    if let Some(path) = &args.csv {
        println!(
            "  samples             : {} rows in {}",
            sampled.samples.len(),
            path.display()
        );
    }
    println!("  wall total          : {total_secs:.2} s");
    Ok(())
}
