//! Crash campaign: SIGKILL a spawned `tangle-node dev` under mixed load at random moments,
//! restart it on the same data directory, and check what must survive a crash.
//!
//! ```text
//! cargo build --release -p node --bin tangle-node -p benches --bin crash-campaign
//! target/release/crash-campaign --cycles 20 [--seed N]      # or scripts/crash-campaign.sh 20
//! ```
//!
//! Load: several wallets (funded by the dev faucet) pay each other, anchor data, open
//! payment channels and later claim or refund them, send deliberate double spends (two
//! payloads with the same issuer and `seq`) and replay payloads already acknowledged; the
//! faucet tops wallets up. After a random (seeded) time the node is killed with SIGKILL and
//! restarted. After every restart the campaign checks:
//!
//! - **lost**: a payload acknowledged with a 2xx is unknown to the node (404);
//! - **undecided**: an acknowledged payload still not `confirmed` or `conflicting` after
//!   `--settle-milestones` milestones past the restart (any other status, e.g. `pending` or a
//!   reattachment status, is not final);
//! - **status changes**: a payload once reported `confirmed` or `conflicting` later reported
//!   differently (every final status is recorded and re-checked after every restart);
//! - **double spends applied twice**: both payloads of a pair confirmed;
//! - **supply**: `total_supply` in `/api/v1/info` differs from the genesis total;
//! - **stalls**: the confirmed milestone does not pass the last index seen before the kill;
//! - **panics**: a `panicked` line in the node's log.
//!
//! The seed is printed; `--seed` replays the same choices of operations and kill moments
//! (the node's own scheduling still varies). Exits 1 on any violation.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use dag_core::{crypto, Address, Body, ChannelId, Keypair, NetworkId, SignedPayload};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "SIGKILL a tangle-node dev under mixed load, restart, check what survives")]
struct Args {
    /// Kill/restart cycles.
    #[arg(long, default_value_t = 20)]
    cycles: u32,
    /// Seed of every random choice (printed; default: from the OS).
    #[arg(long)]
    seed: Option<u64>,
    /// The tangle-node binary (default: next to this one).
    #[arg(long)]
    node_bin: Option<PathBuf>,
    /// Node directory (default: a fresh one in the temp dir, removed after a clean run).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Wallets generating load.
    #[arg(long, default_value_t = 6)]
    wallets: usize,
    /// Milestone interval of the node, ms.
    #[arg(long, default_value_t = 250)]
    milestone_interval_ms: u64,
    /// PoW difficulty of the dev network.
    #[arg(long, default_value_t = 4)]
    pow_difficulty: u8,
    /// Load before the kill: at least this many ms...
    #[arg(long, default_value_t = 300)]
    min_load_ms: u64,
    /// ... and at most this many.
    #[arg(long, default_value_t = 3000)]
    max_load_ms: u64,
    /// Milestones after a restart within which every acknowledged payload must be final.
    #[arg(long, default_value_t = 40)]
    settle_milestones: u64,
    /// Payloads in flight (acknowledged, not yet final) per wallet.
    #[arg(long, default_value_t = 4)]
    depth: usize,
    /// Keep the node directory even after a clean run.
    #[arg(long)]
    keep: bool,
}

/// A bound on waits that only a hung node reaches (node start, milestones resuming).
const HANG_GUARD: Duration = Duration::from_secs(120);

/// Statuses the node reports that are final.
fn is_final(status: &str) -> bool {
    status == "confirmed" || status == "conflicting"
}

/// What the campaign knows about one payload.
#[derive(Clone, Debug, Default)]
struct Tracked {
    kind: &'static str,
    /// Acknowledged with a 2xx (otherwise: found on the node after a crash cut the answer).
    acked: bool,
    /// The first final status seen: `(status, milestone, reason)`.
    fin: Option<(String, Option<u64>, Option<String>)>,
    lost: bool,
    undecided: bool,
}

#[derive(Default)]
struct Violations {
    lost: u64,
    undecided: u64,
    status_changes: u64,
    double_applied: u64,
    supply: u64,
    stalls: u64,
    panics: u64,
}

impl Violations {
    fn total(&self) -> u64 {
        self.lost
            + self.undecided
            + self.status_changes
            + self.double_applied
            + self.supply
            + self.stalls
            + self.panics
    }
}

#[derive(Default)]
struct Stats {
    /// Responses to submissions by HTTP status (0: no answer).
    responses: HashMap<u16, u64>,
    ops: HashMap<&'static str, u64>,
    replays: u64,
    resyncs: u64,
}

/// State shared by the wallets and the checks.
#[derive(Default)]
struct Ledger {
    tracked: HashMap<String, Tracked>,
    /// Double-spend pairs (payload ids).
    pairs: Vec<(String, String)>,
    channels: Vec<ChannelRec>,
    violations: Violations,
    stats: Stats,
    /// First examples of each violation, printed at the end.
    examples: Vec<String>,
}

#[derive(Clone, Debug)]
struct ChannelRec {
    id: ChannelId,
    payer: usize,
    payee: usize,
    deposit: u64,
    expires_at: u64,
    open_id: String,
    closing: bool,
}

impl Ledger {
    fn example(&mut self, s: String) {
        if self.examples.len() < 20 {
            self.examples.push(s);
        }
    }

    /// Records a status report for `id`; counts a change of a final status.
    fn observe(&mut self, id: &str, v: &Value) {
        let status = v["status"].as_str().unwrap_or("?").to_owned();
        let milestone = v["milestone"].as_u64();
        let reason = v["reason"].as_str().map(str::to_owned);
        let Some(t) = self.tracked.get_mut(id) else {
            return;
        };
        match &t.fin {
            Some((s, m, _)) if *s != status || *m != milestone => {
                let msg = format!(
                    "status change: {} payload {id} was {s} at {m:?}, now {status} at {milestone:?} {reason:?}",
                    t.kind
                );
                self.violations.status_changes += 1;
                // Count each change once: remember the new status (a non-final one too, so
                // the payload is not reported as undecided on top).
                t.fin = Some((status, milestone, reason));
                self.example(msg);
            }
            Some(_) => {}
            None if is_final(&status) => t.fin = Some((status, milestone, reason)),
            None => {}
        }
    }

    fn final_status(&self, id: &str) -> Option<&str> {
        self.tracked
            .get(id)
            .and_then(|t| t.fin.as_ref())
            .map(|f| f.0.as_str())
    }
}

type Shared = Arc<Mutex<Ledger>>;

/// The node process; SIGKILLed on drop.
struct NodeProc {
    child: Child,
    base: String,
}

impl NodeProc {
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tangle-node dev` on `dir`; the API binds port 0 and the node reports the address.
fn spawn(bin: &Path, dir: &Path, args: &Args, log: &Path) -> anyhow::Result<NodeProc> {
    let log = std::fs::File::create(log)?;
    let mut child = Command::new(bin)
        .args([
            "dev",
            "--api-addr",
            "127.0.0.1:0",
            "--no-mqtt",
            "--data-dir",
        ])
        .arg(dir)
        .arg("--milestone-interval-ms")
        .arg(args.milestone_interval_ms.to_string())
        .arg("--pow-difficulty")
        .arg(args.pow_difficulty.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("API listening on ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        }
    });
    let base = match rx.recv_timeout(HANG_GUARD) {
        Ok(b) => b,
        Err(_) => {
            let _ = child.kill();
            bail!("tangle-node did not report its API address");
        }
    };
    Ok(NodeProc { child, base })
}

#[derive(Clone)]
struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }

    async fn info(&self) -> anyhow::Result<Value> {
        Ok(self
            .http
            .get(self.url("/info"))
            .send()
            .await?
            .json()
            .await?)
    }

    async fn confirmed(&self) -> anyhow::Result<u64> {
        self.info().await?["confirmed_milestone"]
            .as_u64()
            .context("info without confirmed_milestone")
    }

    /// `Ok(None)`: 404.
    async fn payload(&self, id: &str) -> anyhow::Result<Option<Value>> {
        let r = self
            .http
            .get(self.url(&format!("/payloads/{id}")))
            .send()
            .await?;
        if r.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        anyhow::ensure!(r.status().is_success(), "GET payload {id}: {}", r.status());
        Ok(Some(r.json().await?))
    }

    async fn next_seq(&self, a: &Address) -> anyhow::Result<u64> {
        let v: Value = self
            .http
            .get(self.url(&format!("/accounts/{a}")))
            .send()
            .await?
            .json()
            .await?;
        v["next_seq"].as_u64().context("account without next_seq")
    }
}

/// Result of one submission.
enum Sent {
    /// 2xx: the payload id.
    Acked(String),
    /// Refused with this status (4xx, 5xx).
    Refused(u16),
    /// No answer (the node died, or the connection broke): outcome unknown.
    NoAnswer,
}

async fn post(api: &Api, shared: &Shared, path: &str, body: &Value) -> Sent {
    let r = api.http.post(api.url(path)).json(body).send().await;
    let sent = match r {
        Ok(r) if r.status().is_success() => match r.json::<Value>().await {
            Ok(v) => match v["payload_id"].as_str() {
                Some(id) => Sent::Acked(id.to_owned()),
                None => Sent::NoAnswer,
            },
            Err(_) => Sent::NoAnswer,
        },
        Ok(r) => Sent::Refused(r.status().as_u16()),
        Err(_) => Sent::NoAnswer,
    };
    let code = match &sent {
        Sent::Acked(_) => 200,
        Sent::Refused(c) => *c,
        Sent::NoAnswer => 0,
    };
    *shared
        .lock()
        .unwrap()
        .stats
        .responses
        .entry(code)
        .or_default() += 1;
    sent
}

struct Wallet {
    index: usize,
    key: Keypair,
    next_seq: u64,
    /// Acknowledged (or found after a crash), not yet seen final: (seq, id).
    inflight: Vec<(u64, String)>,
    /// Sent without an answer: (seq, id, kind); resolved after the restart.
    unanswered: Vec<(u64, String, &'static str)>,
    /// Payloads acknowledged before, for replays.
    history: Vec<SignedPayload>,
    needs_resync: bool,
}

struct Ctx {
    api: Api,
    shared: Shared,
    network_id: NetworkId,
    keys: Vec<Keypair>,
    depth: usize,
    stop: Arc<AtomicBool>,
}

impl Wallet {
    fn track(&self, ctx: &Ctx, id: &str, kind: &'static str, acked: bool) {
        let mut l = ctx.shared.lock().unwrap();
        let t = l.tracked.entry(id.to_owned()).or_default();
        t.kind = kind;
        t.acked |= acked;
    }

    /// Submits `p`; `true` while the node answers.
    async fn submit(&mut self, ctx: &Ctx, p: SignedPayload, kind: &'static str) -> bool {
        let id = p.id().to_hex();
        let body = serde_json::to_value(&p).expect("payload to JSON");
        match post(&ctx.api, &ctx.shared, "/payloads", &body).await {
            Sent::Acked(got) => {
                if got != id {
                    ctx.shared
                        .lock()
                        .unwrap()
                        .example(format!("receipt id {got} for payload {id}"));
                }
                self.track(ctx, &id, kind, true);
                self.inflight.push((p.seq, id));
                self.history.push(p);
                true
            }
            Sent::Refused(_) => {
                // A fresh payload refused: the wallet's view of its sequence may be off.
                self.needs_resync = true;
                true
            }
            Sent::NoAnswer => {
                self.unanswered.push((p.seq, id, kind));
                false
            }
        }
    }

    /// Waits until the oldest in-flight payload is final; `false` if the node went away.
    async fn drain_one(&mut self, ctx: &Ctx) -> bool {
        let Some((_, id)) = self.inflight.first().cloned() else {
            return true;
        };
        loop {
            if ctx.stop.load(Ordering::SeqCst) {
                return false;
            }
            match ctx.api.payload(&id).await {
                Ok(Some(v)) => {
                    ctx.shared.lock().unwrap().observe(&id, &v);
                    let status = v["status"].as_str().unwrap_or("?");
                    if is_final(status) {
                        if status == "conflicting" {
                            // Expected for double spends and late claims: the ledger, not
                            // the wallet, knows the sequence now.
                            self.needs_resync = true;
                        }
                        self.inflight.remove(0);
                        return true;
                    }
                }
                Ok(None) => {
                    // Acknowledged and unknown: counted by the checks; stop waiting for it.
                    self.inflight.remove(0);
                    self.needs_resync = true;
                    return true;
                }
                Err(_) => return false,
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }

    /// Waits for every in-flight payload to be final, then takes the sequence from the
    /// ledger. `false` if the node went away.
    async fn resync(&mut self, ctx: &Ctx) -> bool {
        while !self.inflight.is_empty() {
            if !self.drain_one(ctx).await {
                return false;
            }
        }
        match ctx.api.next_seq(&self.key.address()).await {
            Ok(s) => {
                self.next_seq = s;
                self.needs_resync = false;
                ctx.shared.lock().unwrap().stats.resyncs += 1;
                true
            }
            Err(_) => false,
        }
    }

    /// After a restart: payloads sent without an answer are either known (then tracked) or
    /// void; then the sequence comes from the ledger once everything in flight is final.
    async fn after_restart(&mut self, ctx: &Ctx) {
        for (seq, id, kind) in std::mem::take(&mut self.unanswered) {
            if let Ok(Some(_)) = ctx.api.payload(&id).await {
                self.track(ctx, &id, kind, false);
                self.inflight.push((seq, id));
            }
        }
        self.needs_resync = true;
    }

    fn sign(&self, ctx: &Ctx, seq: u64, body: Body) -> SignedPayload {
        SignedPayload::sign(&self.key, ctx.network_id, seq, body)
    }

    /// One random operation; `false` if the node went away.
    async fn step(&mut self, ctx: &Ctx, rng: &mut ChaCha8Rng) -> bool {
        if self.needs_resync && !self.resync(ctx).await {
            return false;
        }
        if self.inflight.len() >= ctx.depth && !self.drain_one(ctx).await {
            return false;
        }
        let n = ctx.keys.len();
        let other = (self.index + rng.gen_range(1..n)) % n;
        let to = ctx.keys[other].address();
        let roll = rng.gen_range(0..100);
        let op: &'static str = match roll {
            0..=49 => "pay",
            50..=61 => "anchor",
            62..=69 => "double-spend",
            70..=76 => "replay",
            77..=84 => "channel-open",
            85..=92 => "channel-close",
            _ => "faucet",
        };
        *ctx.shared.lock().unwrap().stats.ops.entry(op).or_default() += 1;
        let seq = self.next_seq;
        match op {
            "pay" => {
                let p = self.sign(
                    ctx,
                    seq,
                    Body::Pay {
                        to,
                        amount: rng.gen_range(1..=20),
                        memo: Vec::new(),
                    },
                );
                self.next_seq += 1;
                self.submit(ctx, p, "pay").await
            }
            "anchor" => {
                let mut digest = [0u8; 32];
                rng.fill(&mut digest);
                let p = self.sign(
                    ctx,
                    seq,
                    Body::Anchor {
                        tag: b"crash".to_vec(),
                        digest: dag_core::Digest(digest),
                    },
                );
                self.next_seq += 1;
                self.submit(ctx, p, "anchor").await
            }
            "double-spend" => {
                let a = self.sign(
                    ctx,
                    seq,
                    Body::Pay {
                        to,
                        amount: 3,
                        memo: b"a".to_vec(),
                    },
                );
                let third = ctx.keys[(other + 1) % n].address();
                let b = self.sign(
                    ctx,
                    seq,
                    Body::Pay {
                        to: third,
                        amount: 4,
                        memo: b"b".to_vec(),
                    },
                );
                let (ia, ib) = (a.id().to_hex(), b.id().to_hex());
                ctx.shared.lock().unwrap().pairs.push((ia, ib));
                self.next_seq += 1;
                // One is applied, the other conflicts: the wallet resyncs after both.
                self.needs_resync = true;
                let ok_a = self.submit(ctx, a, "double-spend").await;
                ok_a && self.submit(ctx, b, "double-spend").await
            }
            "replay" => {
                if self.history.is_empty() {
                    return true;
                }
                let p = self.history[rng.gen_range(0..self.history.len())].clone();
                let body = serde_json::to_value(&p).expect("payload to JSON");
                ctx.shared.lock().unwrap().stats.replays += 1;
                match post(&ctx.api, &ctx.shared, "/payloads", &body).await {
                    Sent::Acked(got) if got != p.id().to_hex() => {
                        ctx.shared.lock().unwrap().example(format!(
                            "replay of {} acknowledged as {got}",
                            p.id().to_hex()
                        ));
                        true
                    }
                    Sent::NoAnswer => false,
                    _ => true,
                }
            }
            "channel-open" => {
                let confirmed = match ctx.api.confirmed().await {
                    Ok(c) => c,
                    Err(_) => return false,
                };
                let expires_at = confirmed + rng.gen_range(4..40);
                let deposit = rng.gen_range(5..=50);
                let p = self.sign(
                    ctx,
                    seq,
                    Body::Open {
                        payee: to,
                        deposit,
                        expires_at: expires_at as dag_core::MilestoneIndex,
                    },
                );
                let open_id = p.id().to_hex();
                self.next_seq += 1;
                let ok = self.submit(ctx, p, "channel-open").await;
                if ctx.shared.lock().unwrap().tracked.contains_key(&open_id) {
                    ctx.shared.lock().unwrap().channels.push(ChannelRec {
                        id: crypto::channel_id(&self.key.address(), seq),
                        payer: self.index,
                        payee: other,
                        deposit,
                        expires_at,
                        open_id,
                        closing: false,
                    });
                }
                ok
            }
            "channel-close" => self.close_channel(ctx, rng, seq).await,
            _ => {
                let body = json!({"address": to.to_string(), "amount": rng.gen_range(100..1000)});
                match post(&ctx.api, &ctx.shared, "/faucet", &body).await {
                    Sent::Acked(id) => {
                        self.track(ctx, &id, "faucet", true);
                        true
                    }
                    Sent::Refused(_) => true,
                    Sent::NoAnswer => false,
                }
            }
        }
    }

    /// Claims a channel paid to this wallet (before expiry) or refunds one it opened (after
    /// expiry), whose opening is confirmed.
    async fn close_channel(&mut self, ctx: &Ctx, rng: &mut ChaCha8Rng, seq: u64) -> bool {
        let confirmed = match ctx.api.confirmed().await {
            Ok(c) => c,
            Err(_) => return false,
        };
        let pick = {
            let mut l = ctx.shared.lock().unwrap();
            let candidates: Vec<usize> = (0..l.channels.len())
                .filter(|&i| {
                    let c = &l.channels[i];
                    !c.closing
                        && l.final_status(&c.open_id) == Some("confirmed")
                        && ((c.payee == self.index && confirmed + 3 < c.expires_at)
                            || (c.payer == self.index && confirmed > c.expires_at))
                })
                .collect();
            if candidates.is_empty() {
                return true;
            }
            let i = candidates[rng.gen_range(0..candidates.len())];
            l.channels[i].closing = true;
            l.channels[i].clone()
        };
        let body = if pick.payee == self.index {
            let amount = rng.gen_range(0..=pick.deposit);
            let voucher = ctx.keys[pick.payer].sign(&crypto::voucher_signing_message(
                ctx.network_id,
                &pick.id,
                amount,
            ));
            Body::Claim {
                channel: pick.id,
                amount,
                voucher,
            }
        } else {
            Body::Refund { channel: pick.id }
        };
        let p = self.sign(ctx, seq, body);
        self.next_seq += 1;
        self.submit(ctx, p, "channel-close").await
    }
}

/// Runs every wallet until the node dies (or `stop`).
async fn load(ctx: Arc<Ctx>, wallets: Vec<Wallet>, seed: u64, cycle: u32) -> Vec<Wallet> {
    let tasks: Vec<_> = wallets
        .into_iter()
        .map(|mut w| {
            let ctx = ctx.clone();
            let mut rng = ChaCha8Rng::seed_from_u64(
                seed ^ (u64::from(cycle) << 32) ^ (w.index as u64).wrapping_mul(0x9e37_79b9),
            );
            tokio::spawn(async move {
                while !ctx.stop.load(Ordering::SeqCst) {
                    if !w.step(&ctx, &mut rng).await {
                        break;
                    }
                }
                w
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("wallet task"));
    }
    out.sort_by_key(|w| w.index);
    out
}

/// Polls until the confirmed milestone passes `index`; `None` if it does not within the
/// hang guard.
async fn milestone_past(api: &Api, index: u64) -> Option<u64> {
    let start = Instant::now();
    while start.elapsed() < HANG_GUARD {
        if let Ok(c) = api.confirmed().await {
            if c > index {
                return Some(c);
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Status of many payloads, 32 requests at a time.
async fn statuses(api: &Api, ids: Vec<String>) -> Vec<(String, anyhow::Result<Option<Value>>)> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(32) {
        let mut set = tokio::task::JoinSet::new();
        for id in chunk {
            let (api, id) = (api.clone(), id.clone());
            set.spawn(async move {
                let r = api.payload(&id).await;
                (id, r)
            });
        }
        while let Some(r) = set.join_next().await {
            out.push(r.expect("status task"));
        }
    }
    out
}

/// The checks after a restart. Returns the number of acknowledged payloads checked.
async fn check(api: &Api, shared: &Shared, args: &Args, supply: u64, cycle: u32) -> usize {
    // Supply.
    if let Ok(info) = api.info().await {
        let total = info["total_supply"].as_u64();
        if total != Some(supply) {
            let mut l = shared.lock().unwrap();
            l.violations.supply += 1;
            l.example(format!(
                "cycle {cycle}: total_supply {total:?}, genesis {supply}"
            ));
        }
    }
    // Re-check every final status; wait (bounded by milestones) for the undecided ones.
    let start = api.confirmed().await.unwrap_or(0);
    let all: Vec<String> = shared.lock().unwrap().tracked.keys().cloned().collect();
    let checked = {
        let l = shared.lock().unwrap();
        l.tracked.values().filter(|t| t.acked).count()
    };
    let mut open: Vec<String> = Vec::new();
    for (id, r) in statuses(api, all).await {
        let mut l = shared.lock().unwrap();
        match r {
            Ok(Some(v)) => {
                l.observe(&id, &v);
                if l.final_status(&id).is_none() {
                    open.push(id);
                }
            }
            Ok(None) => {
                let t = l.tracked.get_mut(&id).unwrap();
                if !t.lost && t.acked {
                    t.lost = true;
                    let kind = t.kind;
                    l.violations.lost += 1;
                    l.example(format!(
                        "cycle {cycle}: acknowledged {kind} payload {id} lost (404)"
                    ));
                }
            }
            Err(_) => open.push(id),
        }
    }
    let waiting = Instant::now();
    loop {
        if open.is_empty() {
            break;
        }
        let now = api.confirmed().await.unwrap_or(start);
        // Bounded by milestones (and, should milestones stop, by the hang guard).
        if now >= start + args.settle_milestones || waiting.elapsed() > HANG_GUARD {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut still = Vec::new();
        for (id, r) in statuses(api, std::mem::take(&mut open)).await {
            let mut l = shared.lock().unwrap();
            match r {
                Ok(Some(v)) => {
                    l.observe(&id, &v);
                    if l.final_status(&id).is_none() {
                        still.push(id);
                    }
                }
                Ok(None) => {
                    let t = l.tracked.get_mut(&id).unwrap();
                    if !t.lost && t.acked {
                        t.lost = true;
                        l.violations.lost += 1;
                        l.example(format!(
                            "cycle {cycle}: acknowledged payload {id} lost (404)"
                        ));
                    }
                }
                Err(_) => still.push(id),
            }
        }
        open = still;
    }
    let mut l = shared.lock().unwrap();
    for id in open {
        let t = l.tracked.get_mut(&id).unwrap();
        if !t.undecided {
            t.undecided = true;
            let kind = t.kind;
            l.violations.undecided += 1;
            l.example(format!(
                "cycle {cycle}: {kind} payload {id} not final {} milestones after the restart",
                args.settle_milestones
            ));
        }
    }
    // Double spends: never both applied.
    let pairs = l.pairs.clone();
    for (a, b) in pairs {
        if l.final_status(&a) == Some("confirmed") && l.final_status(&b) == Some("confirmed") {
            l.violations.double_applied += 1;
            l.example(format!("double spend applied twice: {a} and {b}"));
            // Count each pair once.
            l.pairs.retain(|(x, _)| *x != a);
        }
    }
    checked
}

fn count_panics(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .map(|s| s.lines().filter(|l| l.contains("panicked")).count() as u64)
        .unwrap_or(0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.wallets >= 3, "--wallets must be at least 3");
    anyhow::ensure!(
        args.min_load_ms <= args.max_load_ms,
        "--min-load-ms > --max-load-ms"
    );
    let seed = args.seed.unwrap_or_else(rand::random);
    println!(
        "crash campaign: seed {seed} (replay with --seed {seed}), {} cycles",
        args.cycles
    );
    let bin = match &args.node_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no parent dir")?
            .join("tangle-node"),
    };
    anyhow::ensure!(
        bin.exists(),
        "no node binary at {} (--node-bin)",
        bin.display()
    );
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("crash-campaign-{seed}")));
    if args.dir.is_none() && dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let node_dir = dir.join("node");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);

    let log = |i: u32| dir.join(format!("node-{i}.log"));
    let mut node = spawn(&bin, &node_dir, &args, &log(0))?;
    let genesis = node::init::read_genesis(&node_dir.join(node::init::files::GENESIS))?;
    let supply = genesis.supply().context("genesis supply overflows")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let shared: Shared = Arc::default();
    let keys: Vec<Keypair> = (0..args.wallets)
        .map(|i| {
            let mut s = [0u8; 32];
            s[..8].copy_from_slice(&seed.to_le_bytes());
            s[8] = i as u8;
            Keypair::from_seed(&s)
        })
        .collect();
    let mut api = Api {
        http: http.clone(),
        base: node.base.clone(),
    };
    // Fund every wallet; wait until the funding is final.
    for k in &keys {
        let body = json!({"address": k.address().to_string(), "amount": 1_000_000});
        match post(&api, &shared, "/faucet", &body).await {
            Sent::Acked(id) => {
                let mut l = shared.lock().unwrap();
                let t = l.tracked.entry(id).or_default();
                t.kind = "faucet";
                t.acked = true;
            }
            _ => bail!("funding a wallet failed"),
        }
    }
    check(&api, &shared, &args, supply, 0).await;
    let mut wallets: Vec<Wallet> = keys
        .iter()
        .enumerate()
        .map(|(index, key)| Wallet {
            index,
            key: key.clone(),
            next_seq: 0,
            inflight: Vec::new(),
            unanswered: Vec::new(),
            history: Vec::new(),
            needs_resync: true,
        })
        .collect();
    let mut checked_total = 0usize;
    let started = Instant::now();
    for cycle in 1..=args.cycles {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Arc::new(Ctx {
            api: api.clone(),
            shared: shared.clone(),
            network_id: genesis.network_id(),
            keys: keys.clone(),
            depth: args.depth,
            stop: stop.clone(),
        });
        let load_ms = rng.gen_range(args.min_load_ms..=args.max_load_ms);
        let running = tokio::spawn(load(ctx, std::mem::take(&mut wallets), seed, cycle));
        tokio::time::sleep(Duration::from_millis(load_ms)).await;
        let before = api.confirmed().await.unwrap_or(0);
        // SIGKILL at a random moment of the load: no shutdown, no final flush.
        node.kill();
        stop.store(true, Ordering::SeqCst);
        wallets = running.await?;
        let panics = count_panics(&log(cycle - 1));
        node = spawn(&bin, &node_dir, &args, &log(cycle))?;
        api.base = node.base.clone();
        let after = milestone_past(&api, before).await;
        {
            let mut l = shared.lock().unwrap();
            l.violations.panics += panics;
            if after.is_none() {
                l.violations.stalls += 1;
                l.example(format!(
                    "cycle {cycle}: no milestone past {before} after the restart"
                ));
            }
        }
        let ctx = Ctx {
            api: api.clone(),
            shared: shared.clone(),
            network_id: genesis.network_id(),
            keys: keys.clone(),
            depth: args.depth,
            stop: Arc::new(AtomicBool::new(false)),
        };
        for w in &mut wallets {
            w.after_restart(&ctx).await;
        }
        checked_total = check(&api, &shared, &args, supply, cycle).await;
        let l = shared.lock().unwrap();
        let v = &l.violations;
        println!(
            "cycle {cycle:>4}: load {load_ms:>4} ms, killed at milestone {before}, resumed {} | \
             payloads {} | lost {} undecided {} changed {} double {} supply {} stalls {} panics {}",
            after.map_or("NO".to_string(), |a| a.to_string()),
            l.tracked.len(),
            v.lost,
            v.undecided,
            v.status_changes,
            v.double_applied,
            v.supply,
            v.stalls,
            v.panics,
        );
    }
    node.kill();
    let panics = count_panics(&log(args.cycles));
    let mut l = shared.lock().unwrap();
    l.violations.panics += panics;
    let acked = l.tracked.values().filter(|t| t.acked).count();
    let confirmed = l
        .tracked
        .values()
        .filter(|t| matches!(&t.fin, Some((s, _, _)) if s == "confirmed"))
        .count();
    let conflicting = l
        .tracked
        .values()
        .filter(|t| matches!(&t.fin, Some((s, _, _)) if s == "conflicting"))
        .count();
    let mut reasons: HashMap<&str, u64> = HashMap::new();
    for t in l.tracked.values() {
        if let Some((s, _, r)) = &t.fin {
            if s == "conflicting" {
                *reasons.entry(r.as_deref().unwrap_or("?")).or_default() += 1;
            }
        }
    }
    let mut reasons: Vec<_> = reasons.into_iter().collect();
    reasons.sort();
    let v = &l.violations;
    println!("\n== crash campaign summary (seed {seed})");
    println!("cycles                      {}", args.cycles);
    println!(
        "wall time                   {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("payloads tracked            {}", l.tracked.len());
    println!(
        "acknowledged (2xx)          {acked} (all re-checked in the last cycle: {checked_total})"
    );
    println!("final: confirmed            {confirmed}");
    println!("final: conflicting          {conflicting}");
    println!("conflict reasons            {reasons:?}");
    println!("double-spend pairs          {}", l.pairs.len());
    println!("replays sent                {}", l.stats.replays);
    println!("wallet resyncs              {}", l.stats.resyncs);
    let mut ops: Vec<_> = l.stats.ops.iter().collect();
    ops.sort();
    println!("operations                  {ops:?}");
    let mut codes: Vec<_> = l.stats.responses.iter().collect();
    codes.sort();
    println!("submission answers          {codes:?} (0 = no answer: killed in flight)");
    println!("-- violations");
    println!("lost (acked, then 404)      {}", v.lost);
    println!("undecided                   {}", v.undecided);
    println!("final status changed        {}", v.status_changes);
    println!("double spend applied twice  {}", v.double_applied);
    println!("supply violations           {}", v.supply);
    println!("milestone stalls            {}", v.stalls);
    println!("node panics                 {}", v.panics);
    for e in &l.examples {
        println!("  e.g. {e}");
    }
    let total = v.total();
    if total == 0 && !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        println!("node directory and logs kept in {}", dir.display());
    }
    if total > 0 {
        println!("FAILED: {total} violations");
        std::process::exit(1);
    }
    println!("OK: no violations");
    Ok(())
}
