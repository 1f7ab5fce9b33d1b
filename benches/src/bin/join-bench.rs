//! join-bench: a fourth node joins a running three-node network (issuer with faucet and two
//! followers, in-process, peered over QUIC on 127.0.0.1) from the snapshot a peer serves,
//! and must report the same ledger digest as the others at the next milestone.
//!
//! `cargo run --release -p benches --bin join-bench -- --accounts 1000000`
//!
//! 1. The genesis funds `--funders` accounts (written into the three nodes' genesis files
//!    before they start); each funder pays `accounts / funders` fresh addresses with
//!    consecutive sequence numbers. The payments are signed in parallel before the clock
//!    starts and submitted in-process to the issuer (`NodeHandle::submit_payloads`) by
//!    `--callers` tasks, each owning a disjoint set of funders and sending its payments in
//!    sequence order (so a funder's payment n + 1 never reaches the node before n).
//! 2. Once the issuer's ledger holds every account, it makes a full snapshot (and with
//!    `--delta`, after more payments, a delta on it).
//! 3. A new node directory is initialised with the genesis, its key goes on the three
//!    allowlists, and `Assembled::start` runs with `fetch_from_peers`: download, verify,
//!    import, restore, start. Timed: `start` (t0 to the return of `Assembled::start`) and
//!    `synced` (t0 until all four nodes hold the same digest at the issuer's confirmed
//!    milestone + 1, read when `start` returned). The node's own log lines give the
//!    breakdown (download; read + verify + import; restore); `--detail` repeats the read,
//!    the state-root check and the import on the served file, each timed alone.
//!
//! Exits 1 if the digests differ (or nothing happens before `--timeout-secs`).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use dag_core::{Address, Allocation, Body, Keypair, SignedPayload};
use node::app::Assembled;
use node::config::NodeConfig;
use node::init::{files, init, read_genesis, read_key, InitOptions};
use node::net::local::{digests_at, local_configs, LocalNetwork, LocalNetworkOptions};
use node::net::PeerEntry;
use node::service::SubmitError;
use node::snapshots::Kind;
use node::{NodeHandle, NodeService};
use node_proto::peering::PeerKey;
use rayon::prelude::*;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Network directory (must not hold a network yet); default: a temporary directory,
    /// deleted at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Accounts funded in the genesis; they pay the new accounts.
    #[arg(long, default_value_t = 1_000)]
    funders: usize,
    /// New accounts paid (the ledger then holds these, the funders and the faucet).
    #[arg(long, default_value_t = 1_000_000)]
    accounts: usize,
    /// Milestone interval, ms.
    #[arg(long, default_value_t = 1_000)]
    milestone_interval_ms: u64,
    /// Retention of every node (`[pruning] keep_milestones`).
    #[arg(long, default_value_t = 60)]
    keep_milestones: u32,
    /// Payloads per submit call.
    #[arg(long, default_value_t = 2_048)]
    batch: usize,
    /// Concurrent submitting tasks (each owns a disjoint set of funders).
    #[arg(long, default_value_t = 4)]
    callers: usize,
    /// After the full snapshot: more payments over a few milestones, then a delta (the new
    /// node then starts from full + delta).
    #[arg(long)]
    delta: bool,
    /// Payments made between the full snapshot and the delta (half to new addresses).
    #[arg(long, default_value_t = 20_000)]
    delta_payments: usize,
    /// After the join: read, verify and import the served snapshot again, each step timed
    /// alone (in a temporary directory).
    #[arg(long)]
    detail: bool,
    /// Only the `--detail` steps, on this snapshot file (with `--genesis`): no network.
    #[arg(long, requires = "genesis")]
    detail_only: Option<PathBuf>,
    /// The genesis file of `--detail-only`'s snapshot.
    #[arg(long)]
    genesis: Option<PathBuf>,
    /// Keep the directory (with `--dir`, it is always kept).
    #[arg(long)]
    keep_data: bool,
    /// Give up (exit 1) when a wait takes longer than this.
    #[arg(long, default_value_t = 1_800)]
    timeout_secs: u64,
}

/// Log events of the node this bench times (captured whatever `RUST_LOG` says).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<LogEvent>>>);

/// When, the message, the other fields.
type LogEvent = (Instant, String, Vec<(String, String)>);

impl Captured {
    /// Events with `message` seen in `[from, to]`, with their time and fields.
    fn find(
        &self,
        message: &str,
        from: Instant,
        to: Instant,
    ) -> Vec<(Instant, Vec<(String, String)>)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, m, _)| m == message && *t >= from && *t <= to)
            .map(|(t, _, f)| (*t, f.clone()))
            .collect()
    }
}

struct Visitor<'a>(&'a mut String, &'a mut Vec<(String, String)>);

impl tracing::field::Visit for Visitor<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        } else {
            self.1
                .push((field.name().to_string(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            *self.0 = value.to_string();
        } else {
            self.1.push((field.name().to_string(), value.to_string()));
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Captured {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let (mut message, mut fields) = (String::new(), Vec::new());
        event.record(&mut Visitor(&mut message, &mut fields));
        self.0
            .lock()
            .unwrap()
            .push((Instant::now(), message, fields));
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Funder `i`'s key (deterministic).
fn funder(i: usize) -> Keypair {
    let mut seed = [0x5au8; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    Keypair::from_seed(&seed)
}

/// New account `i` (an address nobody holds the key of; the ledger does not care).
fn fresh(i: u64) -> Address {
    let mut a = [0u8; 32];
    let mut x = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    for part in a.chunks_mut(8) {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        part.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    Address(a)
}

fn account_count(h: &NodeHandle) -> usize {
    h.with_protocol(|p| p.ledger().accounts().count())
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Submits `payloads` in order, `batch` per call, retrying what the node could not take
/// (503) before going on. Returns the refusals that were not retried.
async fn submit_in_order(
    issuer: NodeHandle,
    payloads: Vec<SignedPayload>,
    batch: usize,
    acked: Arc<AtomicU64>,
) -> u64 {
    let mut refused = 0u64;
    for chunk in payloads.chunks(batch) {
        let mut todo: Vec<SignedPayload> = chunk.to_vec();
        let mut tries = 0;
        while !todo.is_empty() {
            let results = issuer.submit_payloads(todo.clone()).await;
            let mut again = Vec::new();
            for (p, r) in todo.into_iter().zip(results) {
                match r {
                    Ok(_) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(SubmitError::Unavailable(_)) if tries < 100 => again.push(p),
                    // A retry of one that did go through the first time.
                    Err(SubmitError::Conflict(_)) if tries > 0 => {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        if refused < 5 {
                            eprintln!("refused: {e}");
                        }
                        refused += 1;
                    }
                }
            }
            if !again.is_empty() {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            todo = again;
        }
    }
    refused
}

/// Pays: funder `f` (of `funders`) pays `counts[f]` payments with sequence numbers from
/// `first_seq[f]`; payment `j` of funder `f` goes to `to(f, j)`. Signed in parallel, then
/// submitted by `callers` tasks; returns (payments, refused, signing time, submit time).
async fn pay(
    args: &Args,
    issuer: &NodeHandle,
    keys: &[Keypair],
    counts: &[usize],
    first_seq: &[u64],
    to: impl Fn(usize, usize) -> Address + Sync,
    label: &str,
) -> anyhow::Result<(u64, u64, Duration, Duration)> {
    let network_id = issuer.info().network_id;
    let callers = args.callers.max(1);
    let signing = Instant::now();
    // Per caller: its funders' payments, sequence-major (every funder's first payment,
    // then every second one...), so one call carries few payments of one funder.
    let per_caller: Vec<Vec<SignedPayload>> = (0..callers)
        .into_par_iter()
        .map(|c| {
            let mine: Vec<usize> = (c..keys.len()).step_by(callers).collect();
            let rounds = mine.iter().map(|&f| counts[f]).max().unwrap_or(0);
            let order: Vec<(usize, usize)> = (0..rounds)
                .flat_map(|j| {
                    mine.iter()
                        .filter(move |&&f| j < counts[f])
                        .map(move |&f| (f, j))
                })
                .collect();
            order
                .into_par_iter()
                .map(|(f, j)| {
                    SignedPayload::sign(
                        &keys[f],
                        network_id,
                        first_seq[f] + j as u64,
                        Body::Pay {
                            to: to(f, j),
                            amount: 1,
                            memo: Vec::new(),
                        },
                    )
                })
                .collect()
        })
        .collect();
    let signing = signing.elapsed();
    let total: u64 = per_caller.iter().map(|v| v.len() as u64).sum();
    println!(
        "{label}: {total} payments signed in {} ({callers} callers, {} per call)",
        secs(signing),
        args.batch
    );
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for payloads in per_caller {
        tasks.spawn(submit_in_order(
            issuer.clone(),
            payloads,
            args.batch.max(1),
            acked.clone(),
        ));
    }
    let progress = {
        let (acked, issuer, label) = (acked.clone(), issuer.clone(), label.to_string());
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let n = acked.load(Ordering::Relaxed);
                let info = issuer.info();
                println!(
                    "{label}: {:>6.1} s  acknowledged {n}/{total} ({:.0}/s)  confirmed milestone {}  transactions held {}",
                    started.elapsed().as_secs_f64(),
                    (n - last) as f64 / 5.0,
                    info.confirmed_milestone,
                    info.transactions
                );
                last = n;
            }
        })
    };
    let mut refused = 0;
    while let Some(r) = tasks.join_next().await {
        refused += r.context("a submitting task failed")?;
    }
    progress.abort();
    let took = started.elapsed();
    println!(
        "{label}: {} acknowledged in {} ({:.0}/s), {refused} refused",
        acked.load(Ordering::Relaxed),
        secs(took),
        acked.load(Ordering::Relaxed) as f64 / took.as_secs_f64()
    );
    Ok((total, refused, signing, took))
}

/// Waits until `f` holds, checking every `every`; an error after `limit`.
async fn wait_for(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: impl FnMut() -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while !f() {
        if start.elapsed() > limit {
            bail!("no {what} after {limit:?}");
        }
        tokio::time::sleep(every).await;
    }
    Ok(start.elapsed())
}

fn dir_size(p: &std::path::Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else {
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

/// The start's steps on snapshot file `path`, each timed alone: read, state root, the
/// other checks, the import's steps into a new store in `scratch` (deleted after), then
/// `load_ledger` and the core's whole restore from that store.
fn detail(
    path: &std::path::Path,
    genesis: &dag_core::Genesis,
    scratch: &std::path::Path,
) -> anyhow::Result<String> {
    use dag_core::store::{PruneBatch, Store, TxEntry, TxMeta};
    let ms = |t: Instant| t.elapsed().as_millis();
    let t = Instant::now();
    let f = std::fs::File::open(path)?;
    let (snap, _) =
        node_proto::snapshot::read_with_digest(std::io::BufReader::with_capacity(1 << 20, f))?;
    let read = ms(t);
    let t = Instant::now();
    let root = dag_core::ledger::state_root_of(&snap.state);
    let state_root = ms(t);
    let t = Instant::now();
    snap.verify(genesis, |_| root)?;
    let checks = ms(t);
    let _ = std::fs::remove_dir_all(scratch);
    let store = node::store::SledStore::open(scratch)?;
    // What `node_proto::snapshot::import` does, step by step.
    let t = Instant::now();
    store.init_ledger(&snap.state)?;
    let init_ledger = ms(t);
    let t = Instant::now();
    let (tx, id) = dag_core::codec::decode_with_id(&snap.header.milestone_tx)?;
    store.put_transactions(&[TxEntry {
        id,
        bytes: &snap.header.milestone_tx,
        meta: TxMeta::new(tx.timestamp, true, None),
    }])?;
    let mut entry_points = snap.entry_points.clone();
    entry_points.push((id, snap.header.milestone));
    store.prune(&PruneBatch {
        milestone: snap.header.milestone,
        txs: Vec::new(),
        entry_points,
    })?;
    store.flush()?;
    let rest = ms(t);
    drop(snap);
    let t = Instant::now();
    let back = store.load_ledger()?.context("no ledger")?;
    let load = ms(t);
    drop(back);
    let t = Instant::now();
    let (core, _) = node_proto::restore_from_store(
        genesis.clone(),
        node_proto::ProtocolConfig::default(),
        &store,
        node::runtime::now_ms(),
    )?;
    let restore = ms(t);
    drop(core);
    drop(store);
    let _ = std::fs::remove_dir_all(scratch);
    Ok(format!(
        "read+decode {read} ms, state root {state_root} ms, other checks {checks} ms, \
         import: sled init_ledger {init_ledger} ms + milestone tx, prune state, flush {rest} ms; \
         restore: load_ledger alone {load} ms, restore_from_store (load_ledger + Ledger::from_parts + the rest) {restore} ms"
    ))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    match run().await {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("join-bench: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run() -> anyhow::Result<bool> {
    let args = Args::parse();
    let captured = Captured::default();
    let env = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(env))
        .with(captured.clone().with_filter(
            tracing_subscriber::filter::Targets::new().with_target("node", tracing::Level::INFO),
        ))
        .init();
    let limit = Duration::from_secs(args.timeout_secs);
    if let (Some(file), Some(g)) = (&args.detail_only, &args.genesis) {
        let genesis = read_genesis(g)?;
        let scratch = tempfile::Builder::new().prefix("join-bench-").tempdir()?;
        let (file, dir) = (file.clone(), scratch.path().join("db"));
        let out = tokio::task::spawn_blocking(move || detail(&file, &genesis, &dir)).await??;
        println!("each step alone: {out}");
        return Ok(true);
    }
    anyhow::ensure!(args.funders > 0, "--funders must be at least 1");

    let (root, _tmp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("join-bench-")
                .tempdir()
                .context("temp dir")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let net_dir = root.join("net");
    anyhow::ensure!(
        !net_dir.exists(),
        "{} exists: join-bench needs a new network",
        net_dir.display()
    );
    println!(
        "join-bench: {} accounts from {} funders; milestones every {} ms, keep_milestones {}; in {}",
        args.accounts,
        args.funders,
        args.milestone_interval_ms,
        args.keep_milestones,
        root.display()
    );

    // 1. The network: issuer (faucet) + 2 followers, the genesis funding the funders.
    let mut opts = LocalNetworkOptions::new(net_dir.clone());
    opts.followers = 2;
    opts.pow_difficulty = 0;
    opts.milestone_interval_ms = args.milestone_interval_ms;
    opts.network_name = "join-bench".into();
    let mut configs = local_configs(&opts)?;
    let genesis_path = configs[0].genesis.clone();
    let mut genesis = read_genesis(&genesis_path)?;
    let keys: Vec<Keypair> = (0..args.funders).map(funder).collect();
    genesis.allocations.extend(keys.iter().map(|k| Allocation {
        address: k.address(),
        amount: 1_000_000_000,
    }));
    genesis.validate()?;
    let text = format!(
        "# Genesis of network {:?} (join-bench).\n{}",
        genesis.network_name,
        toml::to_string(&genesis)?
    );
    let mut written = HashSet::new();
    for c in &mut configs {
        if written.insert(c.genesis.clone()) {
            std::fs::write(&c.genesis, &text)
                .with_context(|| format!("writing {}", c.genesis.display()))?;
        }
        c.pruning.keep_milestones = Some(args.keep_milestones);
    }
    let net = LocalNetwork::start(configs).await?;
    anyhow::ensure!(
        net.wait_connected(Duration::from_secs(60)).await,
        "the three nodes did not connect"
    );
    let issuer = net.handles()[0].clone();
    let base_accounts = account_count(&issuer);
    println!(
        "network of 3 up (network id {}), {base_accounts} accounts at genesis",
        issuer.info().network_id
    );

    // 2. The ledger: every funder pays its share of the new accounts.
    let n = args.funders;
    let counts: Vec<usize> = (0..n)
        .map(|f| args.accounts / n + usize::from(f < args.accounts % n))
        .collect();
    // Account index of funder f's payment j: funders' ranges one after the other.
    let starts: Vec<u64> = counts
        .iter()
        .scan(0u64, |s, &c| {
            let at = *s;
            *s += c as u64;
            Some(at)
        })
        .collect();
    let build = Instant::now();
    let (total, refused, _signing, submit_took) = pay(
        &args,
        &issuer,
        &keys,
        &counts,
        &vec![0; n],
        |f, j| fresh(starts[f] + j as u64),
        "ledger",
    )
    .await?;
    let want = base_accounts + args.accounts;
    let mut last_print = Instant::now();
    let confirm_wait = wait_for(
        "confirmation of every payment",
        limit,
        Duration::from_millis(500),
        || {
            let have = account_count(&issuer);
            if last_print.elapsed() >= Duration::from_secs(5) {
                last_print = Instant::now();
                println!(
                    "ledger: {have}/{want} accounts, confirmed milestone {}",
                    issuer.info().confirmed_milestone
                );
            }
            have >= want
        },
    )
    .await?;
    let build_took = build.elapsed();
    let accounts_now = account_count(&issuer);
    println!(
        "ledger: {accounts_now} accounts after {} ({total} payments, {refused} refused; submitting {}, then {} until all confirmed)",
        secs(build_took),
        secs(submit_took),
        secs(confirm_wait)
    );
    // A sample of the new accounts, on every node.
    let sample: Vec<Address> = (0..args.accounts as u64)
        .step_by((args.accounts / 50).max(1))
        .map(fresh)
        .collect();
    for a in &sample {
        let b = issuer.account(a)?.balance;
        anyhow::ensure!(b == 1, "account {a} holds {b}, not 1");
    }

    // 3. The issuer's full snapshot (and a delta).
    let snaps = net.nodes()[0].assembled.snapshots.clone();
    let make = |kind: Kind| {
        let (snaps, h) = (snaps.clone(), issuer.clone());
        tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            snaps.make(&h, kind).map(|r| (r, t.elapsed()))
        })
    };
    let ((served, made), make_took) = make(Kind::Full).await??;
    println!(
        "full snapshot of milestone {}: {} bytes ({:.1} MiB), {} accounts, {} entry points, made in {} (node says {} ms)",
        made.milestone,
        made.bytes,
        made.bytes as f64 / (1 << 20) as f64,
        made.accounts,
        made.entry_points,
        secs(make_took),
        made.took_ms
    );
    let mut delta_made = None;
    if args.delta {
        let extra = args.delta_payments;
        let counts2: Vec<usize> = (0..n)
            .map(|f| extra / n + usize::from(f < extra % n))
            .collect();
        let starts2: Vec<u64> = counts2
            .iter()
            .scan(0u64, |s, &c| {
                let at = *s;
                *s += c as u64;
                Some(at)
            })
            .collect();
        let accounts = args.accounts as u64;
        // Half to existing accounts, half to new ones.
        let (_, _, _, _) = pay(
            &args,
            &issuer,
            &keys,
            &counts2,
            &counts.iter().map(|&c| c as u64).collect::<Vec<_>>(),
            |f, j| {
                let k = starts2[f] + j as u64;
                if k % 2 == 0 {
                    fresh((k * 7919) % accounts)
                } else {
                    fresh(accounts + k)
                }
            },
            "delta",
        )
        .await?;
        let want2 = want + extra / 2;
        wait_for(
            "confirmation of the delta's payments",
            limit,
            Duration::from_millis(200),
            || account_count(&issuer) >= want2,
        )
        .await?;
        let m = issuer.info().confirmed_milestone;
        wait_for(
            "two more milestones",
            limit,
            Duration::from_millis(100),
            || issuer.info().confirmed_milestone >= m + 2,
        )
        .await?;
        let ((_, d), took) = make(Kind::Delta).await??;
        println!(
            "delta snapshot of milestone {}: {} bytes, {} accounts, made in {}",
            d.milestone,
            d.bytes,
            d.accounts,
            secs(took)
        );
        delta_made = Some(d);
    }

    // 4. The fourth node joins, exactly as node/tests/snapshot_join.rs does.
    let entries: Vec<PeerEntry> = net
        .nodes()
        .iter()
        .map(|n| n.peer_entry())
        .collect::<Result<_, _>>()?;
    let new_dir = root.join("joiner");
    init(&InitOptions {
        dir: new_dir.clone(),
        genesis: Some(genesis_path.clone()),
        network_name: String::new(),
        pow_difficulty: 0,
        dev: false,
        now_ms: node::runtime::now_ms(),
    })?;
    let mut cfg = NodeConfig::load(&new_dir.join(files::CONFIG))?;
    cfg.peers = entries;
    cfg.peering_addr = Some("127.0.0.1:0".parse()?);
    cfg.milestone_interval_ms = args.milestone_interval_ms;
    cfg.pruning.keep_milestones = Some(args.keep_milestones);
    cfg.snapshots.fetch_from_peers = true;
    let identity = read_key(&cfg.identity_key)?;
    let key = PeerKey(identity.address().0);
    let placeholder: SocketAddr = "127.0.0.1:9".parse()?;
    for n in net.nodes() {
        n.network().add_peer(PeerEntry {
            address: placeholder,
            public_key: key,
        });
    }
    let at_start = issuer.info().confirmed_milestone;
    println!(
        "joining: a new node with an empty database asks the three for a snapshot (issuer at milestone {at_start})"
    );
    let t0 = Instant::now();
    let joined = Assembled::start(&cfg, cfg.peering_addr).await?;
    let t_started = t0.elapsed();
    let handle = joined.node.handle();
    let target = issuer.info().confirmed_milestone + 1;
    let me = PeerEntry {
        address: joined
            .network
            .as_ref()
            .context("the new node peers")?
            .local_addr()?,
        public_key: key,
    };
    for n in net.nodes() {
        n.network().add_peer(me);
    }
    let start_info = handle.info();
    println!(
        "started in {}: at milestone {} (snapshot {:?}); target: milestone {target}",
        secs(t_started),
        start_info.confirmed_milestone,
        start_info.snapshot_milestone
    );
    let mut all = net.handles();
    all.push(handle.clone());
    let synced = wait_for(
        "digest of the target milestone on all four nodes",
        limit,
        Duration::from_millis(10),
        || digests_at(&all, target).iter().all(Option::is_some),
    )
    .await;
    let t_synced = t0.elapsed();
    let digests = digests_at(&all, target);
    let same = synced.is_ok() && digests.windows(2).all(|w| w[0] == w[1]);
    if let Err(e) = &synced {
        eprintln!("join-bench: {e}");
    }
    println!(
        "synced in {}: digests at milestone {target}: {}",
        secs(t_synced),
        digests
            .iter()
            .map(|d| d.map_or("none".to_string(), |d| d.to_string()[..16].to_string()))
            .collect::<Vec<_>>()
            .join(" ")
    );
    for a in &sample {
        let (mine, theirs) = (handle.account(a)?.balance, issuer.account(a)?.balance);
        anyhow::ensure!(
            mine == theirs,
            "account {a}: {mine} on the new node, {theirs} on the issuer"
        );
    }

    // The breakdown from the new node's log lines (events in [t0, t0 + started]).
    let end = t0 + t_started;
    let asked = captured.find("empty database: asking peers for a snapshot", t0, end);
    let offered = captured.find("peer offers a snapshot", t0, end);
    let downloaded = captured.find("snapshot downloaded; verifying it", t0, end);
    let imported = captured.find("started from the peer's snapshot", t0, end);
    let restored = captured.find("state restored", t0, end);
    let ms = |a: Instant, b: Instant| b.saturating_duration_since(a).as_millis() as u64;
    if let (Some((ta, _)), Some((td, df)), Some((ti, fi)), Some((tr, _))) = (
        asked.first(),
        downloaded.first(),
        imported.first(),
        restored.first(),
    ) {
        let offer_ms = offered.first().map(|(t, _)| ms(*ta, *t));
        let breakdown = format!(
            "open {} ms, offers {} ms, download {} ms (node: {} ms, {} bytes), read+verify+import {} ms (node: {} ms), restore {} ms, peering/rest {} ms",
            ms(t0, *ta),
            offer_ms.map_or("?".into(), |m| m.to_string()),
            ms(offered.first().map_or(*ta, |(t, _)| *t), *td),
            field(df, "took_ms").unwrap_or("?"),
            field(df, "bytes").unwrap_or("?"),
            ms(*td, *ti),
            field(fi, "took_ms").unwrap_or("?"),
            ms(*ti, *tr),
            ms(*tr, end)
        );
        println!("breakdown of the start: {breakdown}");
    } else {
        println!("breakdown: the node's log lines were not all seen");
    }

    // Each step again, alone, on the served file.
    if args.detail {
        let (path, genesis2) = (served.path.clone(), genesis.clone());
        let scratch = root.join("detail");
        let detail =
            tokio::task::spawn_blocking(move || detail(&path, &genesis2, &scratch)).await??;
        println!("each step alone: {detail}");
    }

    println!(
        "join-bench: accounts={} snapshot_bytes={} delta_bytes={} make_ms={} start_ms={} synced_ms={} target={target} digests_equal={} db_bytes={}",
        made.accounts,
        made.bytes,
        delta_made.as_ref().map_or(0, |d| d.bytes),
        make_took.as_millis(),
        t_started.as_millis(),
        t_synced.as_millis(),
        same,
        dir_size(&cfg.data_dir)
    );
    joined.shutdown().await;
    net.shutdown().await;
    if args.keep_data || args.dir.is_some() {
        if let Some(t) = _tmp {
            let kept = t.keep();
            println!("kept {}", kept.display());
        }
    }
    if !same {
        eprintln!("join-bench: the digests differ: {digests:?}");
    }
    Ok(same)
}
