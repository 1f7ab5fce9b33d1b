//! Node mode (`tangle-sim run --mode node`): the real node core instead of the idealised
//! model. Each simulated node is a [`node_proto::Protocol`] + [`node_proto::peering::Peering`]
//! pair in a [`node_proto::harness::Cluster`]: tip selection, the milestone issuer's tip
//! sweep, issuer chaining, reattachment, white-flag milestones and peering all run the
//! node's own code over the harness's in-memory network on a virtual clock, with real
//! Ed25519 signatures and real (low-difficulty) proof of work. For runs at scale,
//! [`NodeConfig::cheap_crypto`] skips the payments' signatures (not made, not verified)
//! and nothing else, and [`NodeConfig::keep_milestones`] lets nodes 1.. prune.
//!
//! ## Workload
//! `devices` device accounts are funded at genesis (`initial_balance` each, next to the
//! harness's faucet). Payments arrive as a Poisson stream of rate `lambda` per virtual
//! second; each picks a device uniformly, which pays a uniform `1..=max_payment` to another
//! device, signing the next sequence number of its account. Device `d` talks to node
//! `d % nodes` (its home node), so payments are spread over the nodes and each device's
//! payments go through one node, which chains them ([`node_proto::Protocol`]'s issuer
//! chaining). A node's arrivals of one window of `batch_ms` virtual milliseconds (default 1)
//! are submitted at the window's end in one call ([`Cluster::submit`]), as the node's API
//! hands a batch to its core. A refused submission is retried with the same payload at the
//! next batch of its node. The devices sign on a thread of their own, ahead of the
//! simulation (signatures are deterministic, so the run is too).
//!
//! After the last payment the cluster runs until every payment is decided (applied, or
//! conflicting for good) on every node and every node is at the same milestone with the
//! same ledger digest, or until `drain` virtual seconds have passed.
//!
//! ## Measures
//! Confirmation latency is virtual time from the submission to the home node's
//! [`node_proto::Event::Payload`] event that applied the payment. Tip counts, the Tangle size
//! and approvals are node 0's view (node 0 issues the milestones).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Instant;

use dag_core::store::PayloadStatus;
use dag_core::{Allocation, Body, Keypair, PayloadId, SignedPayload, TangleView, TxId};
use indicatif::ProgressBar;
use node_proto::harness::{Cluster, ClusterConfig, DevNetwork, HarnessError, Logged};
use node_proto::Event;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::report::{
    histogram, write_run_files, LatencySummary, LedgerReport, ReportError, RunOutput, SamplePoint,
    Summary, Throughput,
};
use crate::workload::WorkloadReport;
use crate::TipsKind;

/// Summary fields that node mode does not measure (left at 0 or empty); listed in
/// `node.not_measured` of `summary.json`.
pub const NOT_MEASURED: [&str; 4] = [
    "closed_form_tips",
    "ledger.late_confirmations",
    "selection_fallbacks",
    "attack",
];

/// Settings of a node-mode run. Times are in seconds of virtual time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Free-form name.
    pub name: String,
    /// Nodes (1 to 63), fully meshed; node 0 issues the milestones.
    pub nodes: usize,
    /// Payments to issue.
    pub transactions: u64,
    /// Payment arrival rate, per virtual second.
    pub lambda: f64,
    /// Seed of the workload and of the harness (network jitter, timers, tip selection).
    pub seed: u64,
    /// One-way delay of a frame between two nodes, seconds; each frame gets up to as much
    /// again of seeded jitter (so 0.005 is the harness's 5 ms + up to 5 ms).
    pub delay: f64,
    /// Milestone interval, seconds.
    pub milestone_interval: f64,
    /// Tip selection of every node.
    pub tips: TipsKind,
    /// Device accounts funded at genesis.
    pub devices: usize,
    /// Genesis balance of every device.
    pub initial_balance: u64,
    /// Largest payment (amounts are uniform in `1..=max_payment`).
    pub max_payment: u64,
    /// Proof-of-work difficulty of the network (leading zero bits of a transaction id).
    pub pow_difficulty: u8,
    /// Payments arriving at a node within one window of this many virtual ms are submitted
    /// together at the window's end, in one call (as a gateway would use the node's batch
    /// endpoint); 1 submits each millisecond's arrivals.
    pub batch_ms: u64,
    /// Longest virtual time to wait after the last payment for every payment to be decided
    /// on every node, seconds.
    pub drain: f64,
    /// Time between time-series samples, seconds; 0 picks about 1000 samples.
    pub sample_interval: f64,
    /// Share of the first payments left out of the tip-count average (warm-up).
    pub warmup: f64,
    /// Cheap crypto, for runs at scale: the devices do not sign (every payment carries one
    /// fixed signature, made once) and the nodes skip the Ed25519 verification of payment
    /// signatures ([`node_proto::ProtocolConfig::verify_payload_signatures`]). Everything
    /// else stays real: milestone signatures (signed and verified), proof of work, ids,
    /// encoding, validation's other checks, the ledger.
    pub cheap_crypto: bool,
    /// Nodes other than node 0 keep the cones of the last this many milestones (pruning,
    /// as a node run with a retention does; at least 2); 0: every node keeps everything.
    /// Node 0 always keeps everything (the approval figures are its view).
    pub keep_milestones: u32,
    /// Threads for the nodes' work ([`node_proto::harness::ClusterConfig::threads`]): at
    /// each instant of virtual time the nodes run in parallel and their outputs are merged
    /// in node order, so the result does not depend on it; 0: one per available core (at
    /// most one per node).
    pub threads: usize,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node".into(),
            nodes: 4,
            transactions: 10_000,
            lambda: 1_000.0,
            seed: 1,
            delay: 0.005,
            milestone_interval: 0.5,
            tips: TipsKind::Rurts,
            devices: 1_000,
            initial_balance: 1_000_000_000,
            max_payment: 100,
            pow_difficulty: 2,
            batch_ms: 1,
            drain: 120.0,
            sample_interval: 0.0,
            warmup: 0.1,
            cheap_crypto: false,
            keep_milestones: 0,
            threads: 0,
        }
    }
}

impl NodeConfig {
    /// The worker threads a run uses ([`NodeConfig::threads`], 0 resolved).
    pub fn worker_threads(&self) -> usize {
        let n = if self.threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            self.threads
        };
        n.clamp(1, self.nodes.max(1))
    }
}

/// Why a node-mode run could not run.
#[derive(Debug, thiserror::Error)]
pub enum NodeModeError {
    /// A setting is out of range; the message names it.
    #[error("invalid node-mode settings: {0}")]
    Invalid(String),
    /// The harness refused (building the nodes, a node down, no connection).
    #[error("harness: {0}")]
    Harness(#[from] HarnessError),
}

/// Seconds to whole milliseconds (rounded; negative and non-finite give 0).
fn ms(seconds: f64) -> u64 {
    if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round() as u64
    } else {
        0
    }
}

impl NodeConfig {
    /// Checks every value is in range.
    pub fn validate(&self) -> Result<(), NodeModeError> {
        let bad = |m: &str| Err(NodeModeError::Invalid(m.to_string()));
        if self.nodes == 0 || self.nodes > 63 {
            return bad("nodes must be between 1 and 63");
        }
        if self.transactions == 0 || self.transactions >= u64::from(u32::MAX / 2) {
            return bad("transactions must be between 1 and 2^31");
        }
        if !(self.lambda.is_finite() && self.lambda > 0.0) {
            return bad("lambda must be positive");
        }
        if !(self.delay.is_finite() && self.delay >= 0.0 && self.delay <= 60.0) {
            return bad("delay must be between 0 and 60 seconds");
        }
        if !(self.milestone_interval.is_finite() && ms(self.milestone_interval) >= 1) {
            return bad("milestone_interval must be at least 0.001 seconds");
        }
        if self.devices < 2 {
            return bad("devices must be at least 2");
        }
        if self.batch_ms == 0 || self.batch_ms > 60_000 {
            return bad("batch_ms must be between 1 and 60000");
        }
        if self.max_payment == 0 {
            return bad("max_payment must be >= 1");
        }
        let supply = (self.devices as u128) * u128::from(self.initial_balance)
            + u128::from(DevNetwork::FAUCET_SUPPLY);
        if supply > u128::from(u64::MAX) {
            return bad("devices * initial_balance overflows the supply");
        }
        if !(self.drain.is_finite() && self.drain > 0.0) {
            return bad("drain must be positive");
        }
        if !(self.sample_interval.is_finite() && self.sample_interval >= 0.0) {
            return bad("sample_interval must be >= 0");
        }
        if !(0.0..1.0).contains(&self.warmup) {
            return bad("warmup must be in [0, 1)");
        }
        Ok(())
    }

    /// The settings as TOML (a node-mode run directory stores them as `node.toml`).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot serialise: {e}\n"))
    }
}

/// Wall-clock seconds of a node-mode run by phase (not deterministic).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeWall {
    /// Building the genesis, the device keys and the cluster, and connecting it.
    pub setup: f64,
    /// Signing payments (the devices' work, not the nodes'), on a thread of its own,
    /// overlapping the rest.
    pub signing: f64,
    /// The simulation waiting for the signing thread.
    pub waiting_for_signatures: f64,
    /// [`Cluster::submit`]: tip selection, proof of work, validation (one signature check
    /// each), attachment at the home node, and the gossip going out.
    pub submit: f64,
    /// Running the virtual clock: frames, peer validation (one signature check per node
    /// and payment), solidification, milestones, timers; and reading the nodes' logs.
    pub network: f64,
    /// Final checks and the summary.
    pub report: f64,
}

/// Node-mode part of `summary.json` (absent in base mode).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    /// Always `"node"`.
    pub mode: String,
    /// Device accounts.
    pub devices: usize,
    /// One-way frame delay, ms (plus up to as much jitter).
    pub link_delay_ms: u64,
    /// Milestone interval, ms.
    pub milestone_interval_ms: u64,
    /// Proof-of-work difficulty.
    pub pow_difficulty: u8,
    /// Payment signatures were neither made nor verified ([`NodeConfig::cheap_crypto`]).
    pub cheap_crypto: bool,
    /// Retention of nodes 1.. in milestones (0: none; [`NodeConfig::keep_milestones`]).
    pub keep_milestones: u32,
    /// Payments accepted by their home node.
    pub accepted: u64,
    /// Submissions refused by the home node (each retried later).
    pub refused: u64,
    /// Payments applied on their home node.
    pub confirmed: u64,
    /// Payments applied on every node.
    pub confirmed_everywhere: u64,
    /// Every payment was decided on every node, and all nodes stood at one milestone with
    /// one digest, before the drain time ran out.
    pub drained: bool,
    /// Every node ended at the same milestone with the same ledger digest.
    pub digests_equal: bool,
    /// Every node had the same ledger digest for every milestone they all applied (as
    /// their milestone events reported it).
    pub histories_equal: bool,
    /// Final applied milestone per node.
    pub confirmed_index: Vec<u32>,
    /// Payloads reattached, all nodes together.
    pub reattachments: u64,
    /// Peer transactions validated, all nodes together (duplicates the peering layer
    /// recognised by id are dropped before validation and not counted).
    pub peer_transactions_validated: u64,
    /// Peer transactions that failed validation (never expected).
    pub invalid: u64,
    /// Frames delivered between nodes.
    pub frames_delivered: u64,
    /// Connections lost (never expected: no faults are injected).
    pub disconnections: u64,
    /// Nodes that halted, with why (never expected).
    pub halted: Vec<String>,
    /// Confirmation latency in virtual milliseconds (`confirmation_latency` in seconds).
    pub confirmation_latency_ms: LatencySummary,
    /// Summary fields node mode leaves at 0 or empty.
    pub not_measured: Vec<String>,
    /// Wall-clock seconds by phase (not deterministic).
    pub wall: NodeWall,
}

/// One payment, as tracked.
struct Payment {
    /// Home node.
    node: usize,
    /// Virtual submission time, ms.
    submitted: u64,
    /// Its first carrying transaction.
    tx: TxId,
    /// Nodes on which it was applied.
    confirmed: u64,
    /// Nodes on which it was decided (applied, or conflicting for good).
    decided: u64,
}

/// Reads the nodes' logs incrementally.
struct Tracker {
    cursors: Vec<usize>,
    index: HashMap<PayloadId, u32>,
    payments: Vec<Payment>,
    /// Per node: payments decided there.
    decided: Vec<u64>,
    /// Payments applied on their home node.
    confirmed_home: u64,
    /// Latencies at the home node, ms.
    latencies_ms: Vec<f32>,
    /// Node 0: conflicting carriers by reason.
    conflicting: BTreeMap<String, u64>,
    /// Node 0: payloads applied by its milestones.
    applied: u64,
    /// Per node: (index, ledger digest) of every milestone it applied, in order (from its
    /// events: a pruning node's store forgets old milestones).
    histories: Vec<Vec<(u32, dag_core::Digest)>>,
    /// All nodes: solid transactions carrying a payload (each validated once there).
    payload_solid: u64,
    reattachments: u64,
    halted: Vec<String>,
}

impl Tracker {
    fn new(nodes: usize, capacity: usize) -> Self {
        Tracker {
            cursors: vec![0; nodes],
            index: HashMap::with_capacity(capacity),
            payments: Vec::with_capacity(capacity),
            decided: vec![0; nodes],
            confirmed_home: 0,
            latencies_ms: Vec::with_capacity(capacity),
            conflicting: BTreeMap::new(),
            applied: 0,
            histories: vec![Vec::new(); nodes],
            payload_solid: 0,
            reattachments: 0,
            halted: Vec::new(),
        }
    }

    fn add(&mut self, payload: PayloadId, tx: TxId, node: usize, submitted: u64) {
        let k = self.payments.len() as u32;
        self.index.insert(payload, k);
        self.payments.push(Payment {
            node,
            submitted,
            tx,
            confirmed: 0,
            decided: 0,
        });
    }

    /// Reads what the nodes logged since the last call.
    fn update(&mut self, c: &Cluster) {
        for (i, n) in c.nodes().iter().enumerate() {
            let log = n.log();
            let bit = 1u64 << i;
            for (t, entry) in &log[self.cursors[i]..] {
                let Logged::Protocol(e) = entry else {
                    continue;
                };
                match e {
                    Event::Solid { payload, .. } => {
                        if payload.is_some() {
                            self.payload_solid += 1;
                        }
                    }
                    Event::Milestone(m) => {
                        if i == 0 {
                            self.applied += m.applied as u64;
                        }
                        self.histories[i].push((m.record.index, m.record.ledger_digest));
                    }
                    Event::Payload { payload, status } => {
                        if i == 0 {
                            if let PayloadStatus::Conflicting { reason, .. }
                            | PayloadStatus::Reattaching { reason, .. } = status
                            {
                                *self.conflicting.entry(format!("{reason:?}")).or_default() += 1;
                            }
                        }
                        let Some(&k) = self.index.get(payload) else {
                            continue;
                        };
                        let p = &mut self.payments[k as usize];
                        let (applied, decided) = match status {
                            PayloadStatus::Confirmed { .. } => (true, true),
                            PayloadStatus::Conflicting { .. } => (false, true),
                            _ => (false, false),
                        };
                        if applied && p.confirmed & bit == 0 {
                            p.confirmed |= bit;
                            if p.node == i {
                                self.confirmed_home += 1;
                                self.latencies_ms.push(t.saturating_sub(p.submitted) as f32);
                            }
                        }
                        if decided && p.decided & bit == 0 {
                            p.decided |= bit;
                            self.decided[i] += 1;
                        }
                    }
                    Event::Reattached { .. } => self.reattachments += 1,
                    Event::Halted(why) => self.halted.push(format!("node {i}: {why}")),
                }
            }
            self.cursors[i] = log.len();
        }
    }

    /// Every one of `total` payments is decided on every node.
    fn all_decided(&self, total: u64) -> bool {
        self.payments.len() as u64 == total && self.decided.iter().all(|&d| d == total)
    }
}

/// A device account.
struct Device {
    key: Keypair,
    next_seq: u64,
}

/// The key of device `d`: derived from its index (the same accounts in every run).
fn device_key(d: usize) -> Keypair {
    let mut seed = [0xd5; 32];
    seed[..8].copy_from_slice(&(d as u64).to_le_bytes());
    Keypair::from_seed(&seed)
}

/// A signed payment and when it arrives.
struct Arrival {
    /// Virtual time, ms.
    at: u64,
    /// Home node of its device.
    node: usize,
    payload: SignedPayload,
}

/// Payments in arrival order, in chunks: Poisson arrivals at `lambda` from `t0`, each from
/// a uniform device to another, signed with the device's next sequence number. Returns the
/// seconds spent signing. Stops early if the receiver hangs up.
fn workload(
    cfg: &NodeConfig,
    t0: u64,
    mut devices: Vec<Device>,
    network_id: u64,
    sender: std::sync::mpsc::SyncSender<Vec<Arrival>>,
) -> f64 {
    const CHUNK: u64 = 256;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x6e6f_6465_2d6d_6f64);
    let addresses: Vec<_> = devices.iter().map(|d| d.key.address()).collect();
    let mut signing = 0.0;
    // Cheap crypto: one real signature (so its R passes the validator's strict
    // pre-checks), carried by every payment; it verifies for none of them.
    let fixed = cfg
        .cheap_crypto
        .then(|| devices[0].key.sign(b"tangle-sim cheap crypto"));
    let mut t = t0 as f64;
    let mut left = cfg.transactions;
    while left > 0 {
        let n = left.min(CHUNK);
        left -= n;
        let mut chunk = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let u: f64 = rng.gen();
            t += -(1.0 - u).ln() / cfg.lambda * 1000.0;
            let d = rng.gen_range(0..cfg.devices);
            let mut to = rng.gen_range(0..cfg.devices - 1);
            if to >= d {
                to += 1;
            }
            let amount = rng.gen_range(1..=cfg.max_payment);
            let started = Instant::now();
            let dev = &mut devices[d];
            let body = Body::Pay {
                to: addresses[to],
                amount,
                memo: Vec::new(),
            };
            let payload = match fixed {
                Some(signature) => SignedPayload {
                    issuer: addresses[d],
                    seq: dev.next_seq,
                    body,
                    signature,
                },
                None => SignedPayload::sign(&dev.key, network_id, dev.next_seq, body),
            };
            dev.next_seq += 1;
            signing += started.elapsed().as_secs_f64();
            chunk.push(Arrival {
                at: (t as u64).max(t0),
                node: d % cfg.nodes,
                payload,
            });
        }
        if sender.send(chunk).is_err() {
            break;
        }
    }
    signing
}

/// The run in progress.
struct Run<'a> {
    cfg: &'a NodeConfig,
    cluster: Cluster,
    tracker: Tracker,
    t0: u64,
    next_sample: u64,
    sample_ms: u64,
    series: Vec<SamplePoint>,
    issued: u64,
    peak_len: u64,
    wall_network: f64,
}

impl Run<'_> {
    /// Runs the clock to `target` (ms), taking the time-series samples on the way.
    fn advance_to(&mut self, target: u64) {
        let started = Instant::now();
        while self.next_sample <= target {
            let now = self.cluster.now();
            self.cluster.advance(self.next_sample.saturating_sub(now));
            self.sample();
            self.next_sample += self.sample_ms;
        }
        let now = self.cluster.now();
        if target > now {
            self.cluster.advance(target - now);
        }
        self.wall_network += started.elapsed().as_secs_f64();
    }

    /// Reads what the nodes logged and empties their logs (they hold every event of every
    /// node: at 1,000,000 payments, over a GiB).
    fn read_logs(&mut self) {
        self.tracker.update(&self.cluster);
        self.cluster.clear_logs();
        self.tracker.cursors.fill(0);
    }

    fn sample(&mut self) {
        self.read_logs();
        let n0 = self.cluster.node(0);
        let tangle = n0.protocol().tangle();
        let held = TangleView::len(tangle) as u64;
        self.peak_len = self.peak_len.max(held);
        self.series.push(SamplePoint {
            time: (self.cluster.now() - self.t0) as f64 / 1000.0,
            tips: tangle.tips().len() as u64,
            unconfirmed: tangle.unconfirmed_len() as u64,
            held,
            milestone: n0.confirmed_index(),
            issued: self.issued,
            confirmed: self.tracker.confirmed_home,
        });
    }
}

/// Runs a node-mode simulation; `progress` counts payments issued.
pub fn run_node(cfg: &NodeConfig, progress: &ProgressBar) -> Result<RunOutput, NodeModeError> {
    cfg.validate()?;
    let started = Instant::now();
    let k = cfg.nodes;
    let total = cfg.transactions;

    // The network: the harness's dev network plus the devices' genesis allocations.
    let mut network = DevNetwork::new("tangle-sim", cfg.pow_difficulty);
    let devices: Vec<Device> = (0..cfg.devices)
        .map(|d| Device {
            key: device_key(d),
            next_seq: 0,
        })
        .collect();
    network
        .genesis
        .allocations
        .extend(devices.iter().map(|d| Allocation {
            address: d.key.address(),
            amount: cfg.initial_balance,
        }));
    let network_id = network.network_id();
    let supply = network.genesis.supply().unwrap_or(0);

    let interval_ms = ms(cfg.milestone_interval);
    let delay_ms = ms(cfg.delay);
    let mut cc = ClusterConfig::dev(k, cfg.seed);
    cc.network = network;
    cc.protocol.milestone_interval_ms = interval_ms;
    cc.protocol.selector = cfg.tips;
    cc.protocol.verify_payload_signatures = !cfg.cheap_crypto;
    cc.protocol_tick_ms = (interval_ms / 4).clamp(20, 250);
    cc.link_delay_ms = delay_ms;
    cc.jitter_ms = delay_ms;
    // Nothing reads the frame digest here (the summary is the run's record).
    cc.trace_frames = false;
    cc.threads = cfg.worker_threads();
    let mut cluster = Cluster::new(cc)?;
    if cfg.keep_milestones > 0 {
        for i in 1..k {
            cluster.set_retention_limit(i, Some(cfg.keep_milestones.max(2)))?;
        }
    }
    cluster.run_until(60_000, |c| c.all_connected())?;
    let t0 = cluster.now();

    let expected_span = total as f64 / cfg.lambda;
    let sample_ms = if cfg.sample_interval > 0.0 {
        ms(cfg.sample_interval).max(1)
    } else {
        ms(expected_span / 1000.0).max(1)
    };
    let mut run = Run {
        cfg,
        cluster,
        tracker: Tracker::new(k, total as usize),
        t0,
        next_sample: t0,
        sample_ms,
        series: Vec::new(),
        issued: 0,
        peak_len: 0,
        wall_network: 0.0,
    };
    let setup = started.elapsed().as_secs_f64();

    let warmup = (cfg.warmup * total as f64) as u64;
    let (mut tips_sum, mut tips_n) = (0u64, 0u64);
    let mut refused = 0u64;
    let (mut wall_submit, mut wall_waiting) = (0.0f64, 0.0f64);
    // Per node: payloads waiting for the next batch, and refused ones to retry.
    let mut batches: Vec<Vec<SignedPayload>> = vec![Vec::new(); k];
    let mut retries: Vec<Vec<SignedPayload>> = vec![Vec::new(); k];

    // Submits every node's batch (retries first) at `at`, after running the clock there.
    let mut flush = |run: &mut Run<'_>,
                     batches: &mut Vec<Vec<SignedPayload>>,
                     retries: &mut Vec<Vec<SignedPayload>>,
                     at: u64,
                     arrivals: u64|
     -> Result<(), NodeModeError> {
        run.advance_to(at);
        if arrivals > 0 && run.issued >= warmup {
            let tips = run.cluster.node(0).protocol().tangle().tips().len() as u64;
            tips_sum += tips * arrivals;
            tips_n += arrivals;
        }
        run.issued += arrivals;
        let submit_started = Instant::now();
        let mut sent: Vec<Vec<SignedPayload>> = Vec::with_capacity(run.cfg.nodes);
        for i in 0..run.cfg.nodes {
            let mut payloads = std::mem::take(&mut retries[i]);
            payloads.append(&mut batches[i]);
            sent.push(payloads);
        }
        if sent.iter().any(|b| !b.is_empty()) {
            // Every node's batch at once (in parallel with threads; the same run as one
            // node after the other).
            let results = run.cluster.submit_all(sent.clone())?;
            for (i, (payloads, results)) in sent.into_iter().zip(results).enumerate() {
                for (p, r) in payloads.into_iter().zip(results) {
                    match r {
                        Ok(s) => run.tracker.add(s.payload, s.tx, i, at),
                        Err(_) => {
                            refused += 1;
                            retries[i].push(p);
                        }
                    }
                }
            }
        }
        wall_submit += submit_started.elapsed().as_secs_f64();
        Ok(())
    };

    // The devices sign on a thread of their own (their work, not the nodes'), ahead of
    // the simulation; the payments come in arrival order, so the run stays deterministic.
    let batch_ms = cfg.batch_ms.max(1);
    let (wall_signing, issued) = std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Vec<Arrival>>(8);
        let producer = scope.spawn(move || workload(cfg, t0, devices, network_id, sender));
        let mut window: Option<u64> = None;
        let mut in_batch = 0u64;
        loop {
            let waiting = Instant::now();
            let Ok(chunk) = receiver.recv() else {
                break;
            };
            wall_waiting += waiting.elapsed().as_secs_f64();
            for a in chunk {
                // The end of the arrival's batch window: when its batch is submitted.
                let at = t0 + ((a.at - t0) / batch_ms + 1) * batch_ms - 1;
                if window.is_some_and(|w| w != at) && in_batch > 0 {
                    let w = window.unwrap_or(at);
                    flush(&mut run, &mut batches, &mut retries, w, in_batch)?;
                    progress.inc(in_batch);
                    in_batch = 0;
                }
                window = Some(at);
                batches[a.node].push(a.payload);
                in_batch += 1;
            }
        }
        if let Some(w) = window {
            flush(&mut run, &mut batches, &mut retries, w, in_batch)?;
            progress.inc(in_batch);
        }
        drop(receiver);
        let signing = producer.join().unwrap_or(0.0);
        Ok::<_, NodeModeError>((signing, run.issued))
    })?;
    debug_assert_eq!(issued, total);
    let last_submit = run.cluster.now();

    // Drain: until everything is decided everywhere and the nodes agree.
    let deadline = last_submit + ms(cfg.drain);
    let mut drained = false;
    while run.cluster.now() < deadline {
        if retries.iter().any(|r| !r.is_empty()) {
            let now = run.cluster.now();
            flush(&mut run, &mut batches, &mut retries, now, 0)?;
        }
        let chunk = (deadline - run.cluster.now()).min(50);
        let network_started = Instant::now();
        let tracker = &mut run.tracker;
        let r = run.cluster.run_until(chunk, |c| {
            tracker.update(c);
            tracker.all_decided(total) && c.converged_at_least(0)
        });
        run.wall_network += network_started.elapsed().as_secs_f64();
        run.read_logs();
        match r {
            Ok(_) => {
                drained = true;
                break;
            }
            Err(HarnessError::Timeout { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        if run.cluster.now() >= run.next_sample {
            run.sample();
            while run.next_sample <= run.cluster.now() {
                run.next_sample += run.sample_ms;
            }
        }
    }
    run.sample();
    let report_started = Instant::now();
    Ok(finish(
        run,
        Finish {
            supply,
            drained,
            refused,
            last_submit,
            mean_tips: if tips_n == 0 {
                0.0
            } else {
                tips_sum as f64 / tips_n as f64
            },
            wall: NodeWall {
                setup,
                signing: wall_signing,
                waiting_for_signatures: wall_waiting,
                submit: wall_submit,
                network: 0.0,
                report: 0.0,
            },
            started,
            report_started,
        },
    ))
}

/// What [`finish`] needs besides the run.
struct Finish {
    supply: u64,
    drained: bool,
    refused: u64,
    last_submit: u64,
    mean_tips: f64,
    wall: NodeWall,
    started: Instant,
    report_started: Instant,
}

/// The run's results.
fn finish(mut run: Run<'_>, f: Finish) -> RunOutput {
    let cfg = run.cfg;
    let c = &run.cluster;
    run.tracker.update(c);
    let tr = &mut run.tracker;
    let k = cfg.nodes;
    let issued = run.issued;
    let ratio = |x: u64, y: u64| if y == 0 { 0.0 } else { x as f64 / y as f64 };

    // Agreement.
    let n0 = c.node(0);
    let (index0, digest0) = (n0.confirmed_index(), n0.ledger_digest());
    let digests_equal = c
        .nodes()
        .iter()
        .all(|n| n.confirmed_index() == index0 && n.ledger_digest() == digest0);
    let histories = &tr.histories;
    let common = histories.iter().map(Vec::len).min().unwrap_or(0);
    let histories_equal = histories
        .iter()
        .all(|h| h[..common] == histories[0][..common]);
    let supply_conserved = c.nodes().iter().all(|n| {
        let l = n.protocol().ledger();
        l.check_invariants().is_ok() && l.supply() == f.supply
    });

    // Approvals of the payments' first carriers, as node 0 sees them.
    let tangle = n0.protocol().tangle();
    let mut approvers_histogram = Vec::new();
    let (mut unapproved, mut fa_sum, mut fa_n) = (0u64, 0.0f64, 0u64);
    for p in &tr.payments {
        let Some(r) = tangle.lookup(&p.tx) else {
            continue;
        };
        let approvers = tangle.approvers(r);
        let a = approvers.len();
        if approvers_histogram.len() <= a {
            approvers_histogram.resize(a + 1, 0);
        }
        approvers_histogram[a] += 1;
        match approvers.iter().map(|&x| tangle.arrival(x)).min() {
            Some(first) => {
                fa_sum += first.saturating_sub(tangle.arrival(r)) as f64 / 1000.0;
                fa_n += 1;
            }
            None => unapproved += 1,
        }
    }

    let all = if k >= 64 { u64::MAX } else { (1u64 << k) - 1 };
    let confirmed_everywhere = tr.payments.iter().filter(|p| p.confirmed == all).count() as u64;
    let mut seconds: Vec<f32> = tr.latencies_ms.iter().map(|v| v / 1000.0).collect();
    let latency_histogram = histogram(&seconds, 100);
    let confirmation_latency = LatencySummary::from_values(&mut seconds);
    let confirmation_latency_ms = LatencySummary::from_values(&mut tr.latencies_ms);
    let stats: Vec<_> = c.nodes().iter().map(|n| n.stats().clone()).collect();
    let span = ((f.last_submit - run.t0) as f64 / 1000.0).max(f64::MIN_POSITIVE);
    let sim_time = (c.now() - run.t0) as f64 / 1000.0;
    let confirmed = tr.confirmed_home;

    let mut wall = f.wall;
    wall.network = run.wall_network;
    wall.report = f.report_started.elapsed().as_secs_f64();
    let wall_seconds = f.started.elapsed().as_secs_f64();
    let node = NodeReport {
        mode: "node".into(),
        devices: cfg.devices,
        link_delay_ms: ms(cfg.delay),
        milestone_interval_ms: ms(cfg.milestone_interval),
        pow_difficulty: cfg.pow_difficulty,
        cheap_crypto: cfg.cheap_crypto,
        keep_milestones: cfg.keep_milestones,
        accepted: tr.payments.len() as u64,
        refused: f.refused,
        confirmed,
        confirmed_everywhere,
        drained: f.drained,
        digests_equal,
        histories_equal,
        confirmed_index: c.nodes().iter().map(|n| n.confirmed_index()).collect(),
        reattachments: tr.reattachments,
        peer_transactions_validated: stats
            .iter()
            .map(|s| s.new + s.duplicates + s.invalid + s.refused)
            .sum(),
        invalid: stats.iter().map(|s| s.invalid).sum(),
        frames_delivered: c.frames_delivered(),
        disconnections: stats.iter().map(|s| s.disconnections).sum(),
        halted: tr.halted.clone(),
        confirmation_latency_ms,
        not_measured: NOT_MEASURED.iter().map(|s| s.to_string()).collect(),
        wall,
    };
    let summary = Summary {
        name: cfg.name.clone(),
        transactions: issued,
        lambda: cfg.lambda,
        delay: cfg.delay,
        parents: 2,
        tips: cfg.tips.name().into(),
        alpha: tip_selection::WalkConfig::default().alpha,
        seed: cfg.seed,
        nodes: k,
        milestone_interval: cfg.milestone_interval,
        sim_time,
        // The Tangle is never pruned in node mode: all but the genesis root.
        total_transactions: (TangleView::len(tangle) as u64).saturating_sub(1),
        mean_tips: f.mean_tips,
        closed_form_tips: 0.0,
        mean_first_approval_delay: if fa_n == 0 { 0.0 } else { fa_sum / fa_n as f64 },
        approvers_histogram,
        settled_transactions: issued,
        orphan_rate: ratio(issued - confirmed.min(issued), issued),
        unapproved_rate: ratio(unapproved, issued),
        confirmation_latency,
        throughput: Throughput {
            issued_per_time: issued as f64 / span,
            confirmed_per_time: confirmed as f64 / span,
            confirmed_share: ratio(confirmed, issued),
        },
        ledger: LedgerReport {
            milestones: u64::from(index0),
            applied: tr.applied,
            conflicting: tr.conflicting.clone(),
            late_confirmations: 0,
            supply: f.supply,
            supply_conserved,
            nodes_consistent: digests_equal && histories_equal,
            digest: digest0.to_hex(),
        },
        workload: WorkloadReport {
            payments: issued,
            signatures_verified: tr.payload_solid,
            signature_failures: stats.iter().map(|s| s.invalid).sum(),
            ..WorkloadReport::default()
        },
        selection_fallbacks: 0,
        never_solid: c
            .nodes()
            .iter()
            .map(|n| n.protocol().pending_len() as u64)
            .sum(),
        peak_tangle_len: run.peak_len,
        attack: None,
        wall_seconds,
        sim_tx_per_second: issued as f64 / wall_seconds.max(1e-9),
        node: Some(node),
    };
    RunOutput {
        summary,
        series: std::mem::take(&mut run.series),
        latency_histogram,
    }
}

/// Writes a node-mode run directory: `node.toml` (the settings), `summary.json`,
/// `timeseries.csv`, `latency.csv`, `tips.svg`, `latency.svg`.
pub fn write_node_run_dir(
    dir: &Path,
    cfg: &NodeConfig,
    out: &RunOutput,
) -> Result<(), ReportError> {
    write_run_files(dir, "node.toml", &cfg.to_toml(), out)
}
