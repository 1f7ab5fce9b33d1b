//! Deterministic chaos (`tangle-sim chaos`): several real protocol cores
//! (`node_proto::harness::Cluster`) on a virtual clock under seeded faults and a client
//! workload, with invariants checked after every instant of virtual time.
//!
//! One seed fixes everything: the faults' rates, the clock skews, the schedule of client
//! actions and faults, and every random choice of the harness and of the nodes. So a seed
//! replays bit for bit ([`ChaosOutcome::trace_hash`]), and a failing seed is a complete
//! bug report.
//!
//! **Faults** (drawn per seed): frame loss (0-10%, changed during the run), duplication
//! (0-5%), reordering (0-5%, up to 50 ms), delay spikes (0-2% of frames, up to 3 s, later
//! frames held behind), partitions into two random sides and heals, crashes and restarts
//! where only durable store writes survive plus a torn prefix of the rest (writes durable
//! after 5-50 ms; a node isolated just before a submission and crashed within that lag is
//! one scripted pattern), clock skew of each node within +-15 s (the genesis window is
//! 60 s), and junk from peers (random bytes, and real transactions with one byte changed).
//!
//! **Client workload**: payments from devices funded at genesis through random nodes,
//! replays of acknowledged payloads at other nodes, and double spends (two payloads with
//! one sequence number) at nodes on different sides of a partition when there is one.
//! A payload is *acknowledged* when its submission returned `Ok` (the harness answers
//! once the writes are durable, as the node does).
//!
//! **Invariants**, checked after every instant: for each milestone index the same ledger
//! digest on every node that applied it; no node halted; balances plus open deposits equal
//! the supply on every node (checked when its milestone changes); no (issuer, seq) has two
//! payloads confirmed on one node. After the final heal (every link healed, crashed nodes
//! restarted, faults off) within [`SETTLE_MS`] of virtual time: milestones resume (every
//! node applies a milestone newer than the newest at the heal, all with one digest), and
//! every acknowledged payload is `confirmed` or `conflicting` (with its reason) on every
//! node.

use std::collections::BTreeMap;

use dag_core::store::PayloadStatus;
use dag_core::{
    Address, Allocation, Body, Digest, Keypair, PayloadId, SignedPayload, TangleView, TxId,
};
use node_proto::harness::{Cluster, ClusterConfig, DevNetwork, Faults, HarnessError, SimNode};
use node_proto::wire::{CommitteeMessage, Message};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Virtual time of the chaos phase, ms.
pub const CHAOS_MS: u64 = 15_000;
/// Bound on the virtual time from the final heal until every acknowledged payload is
/// decided everywhere and milestones resumed, ms.
pub const SETTLE_MS: u64 = 90_000;
/// Devices funded at genesis.
const DEVICES: usize = 4;
/// Each device's genesis balance.
const DEVICE_FUNDS: u64 = 500;

/// A committee issuing the milestones of a chaos run (k of n).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitteeSetting {
    /// Members (2 to 16): node `i` holds member key `i` (the cluster has at least this many
    /// nodes).
    pub members: usize,
    /// Signatures a milestone needs (`2k > n` for safety; 1 to `members`).
    pub threshold: u8,
}

impl CommitteeSetting {
    /// Members that may be Byzantine with safety kept: `2k - n - 1` (never negative).
    pub fn byzantine_bound(&self) -> usize {
        (2 * usize::from(self.threshold)).saturating_sub(self.members + 1)
    }
}

/// Settings of one chaos run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChaosConfig {
    /// The seed.
    pub seed: u64,
    /// Nodes (2 to 16); node 0 issues milestones (without a committee).
    pub nodes: usize,
    /// Milestones by a committee of several members instead of node 0 alone, with
    /// committee faults on top of the others: the next proposer crashed on purpose, and,
    /// when the bound allows one ([`CommitteeSetting::byzantine_bound`]), a member taken
    /// over by the harness that proposes two different milestones in its rounds.
    pub committee: Option<CommitteeSetting>,
    /// Test-only: inject the harness's deliberate bug (submissions answered before their
    /// writes are durable), to show the invariants catch it.
    pub inject_bug: bool,
}

impl ChaosConfig {
    /// `nodes` nodes, seed `seed`, no injected bug.
    pub fn new(seed: u64, nodes: usize) -> Self {
        ChaosConfig {
            seed,
            nodes,
            committee: None,
            inject_bug: false,
        }
    }
}

/// Counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// Payloads acknowledged.
    pub acknowledged: usize,
    /// Submissions refused.
    pub refused: usize,
    /// Crashes.
    pub crashes: usize,
    /// Partitions.
    pub partitions: usize,
    /// Junk frames injected.
    pub junk: usize,
    /// Double spends attempted.
    pub double_spends: usize,
    /// Committee runs: proposers crashed on purpose (on top of `crashes`' count).
    pub proposer_crashes: usize,
    /// Committee runs: pairs of conflicting proposals sent by the Byzantine member.
    pub equivocations: usize,
    /// Highest milestone applied on every node at the end.
    pub milestone: u32,
    /// Frames delivered.
    pub frames: u64,
}

/// The result of one seed.
#[derive(Clone, Debug)]
pub struct ChaosOutcome {
    /// The seed.
    pub seed: u64,
    /// The first invariant broken, with the virtual time; `None`: the seed passed.
    pub failure: Option<String>,
    /// Hash of the run: every delivered frame (time, ends, bytes), every client and fault
    /// action, and each node's final ledger digest. Equal for equal seeds.
    pub trace_hash: Digest,
    /// Counters.
    pub stats: ChaosStats,
    /// The event trace (client and fault actions, every node's log), when asked for.
    pub trace: Vec<String>,
}

/// A device: its key and the next sequence number to sign.
struct Device {
    key: Keypair,
    next_seq: u64,
}

/// The checks run after every instant.
#[derive(Default)]
struct Checker {
    /// Ledger digest of each milestone index, as the first node to apply it had it.
    digests: BTreeMap<u32, (usize, Digest)>,
    /// What the signatures of each milestone index sign (parents and milestone, without
    /// the signatures: [`node_proto::proposal_digest`]), as the first node to apply it had
    /// it: one milestone per index, never two with k signatures.
    contents: BTreeMap<u32, (usize, Digest)>,
    /// The network id (for the contents).
    network: u64,
    /// Last milestone seen on each node.
    last: Vec<u32>,
    /// Highest milestone whose stored digest was checked, per node.
    durable: Vec<u32>,
    /// Every payload the workload signed, by (issuer, seq).
    by_seq: BTreeMap<(Address, u64), Vec<PayloadId>>,
    supply: u128,
    failure: Option<String>,
}

impl Checker {
    fn fail(&mut self, now: u64, what: String) {
        if self.failure.is_none() {
            self.failure = Some(format!("{what} (virtual ms {now})"));
        }
    }

    /// Every invariant that must hold at every instant. Returns whether one broke.
    fn check(&mut self, c: &Cluster) -> bool {
        let now = c.now();
        for n in c.nodes() {
            if !n.is_up() {
                continue;
            }
            let i = n.index();
            if let Some(why) = n.protocol().halted() {
                self.fail(now, format!("node {i} halted: {why}"));
                return true;
            }
            let ci = n.confirmed_index();
            if ci == self.last[i] {
                continue;
            }
            // The digests of the milestones this node has durably applied (its store's
            // records; an issuer's ledger runs ahead of them while it issues, and what a
            // crash takes back never existed for anyone else).
            let mut m = self.durable[i] + 1;
            while let Some(d) = n.digest_at(m) {
                match self.digests.get(&m) {
                    Some(&(j, e)) if e != d => {
                        self.fail(
                            now,
                            format!(
                                "milestone {m}: ledger digest {} on node {i}, {} on node {j}",
                                d.to_hex(),
                                e.to_hex()
                            ),
                        );
                        return true;
                    }
                    Some(_) => {}
                    None => {
                        self.digests.insert(m, (i, d));
                    }
                }
                if let Some(content) = milestone_content(n, m, self.network) {
                    match self.contents.get(&m) {
                        Some(&(j, e)) if e != content => {
                            self.fail(
                                now,
                                format!(
                                    "milestone {m}: two milestones, {} on node {i} and {} on node {j}",
                                    content.to_hex(),
                                    e.to_hex()
                                ),
                            );
                            return true;
                        }
                        Some(_) => {}
                        None => {
                            self.contents.insert(m, (i, content));
                        }
                    }
                }
                self.durable[i] = m;
                m += 1;
            }
            self.last[i] = ci;
            let l = n.protocol().ledger();
            let total = l.total_balances() + l.open_deposits();
            if total != self.supply {
                self.fail(
                    now,
                    format!(
                        "node {i} milestone {ci}: balances and deposits {total}, supply {}",
                        self.supply
                    ),
                );
                return true;
            }
            for ((issuer, seq), ids) in &self.by_seq {
                let applied = ids.iter().filter(|p| n.is_confirmed(p)).count();
                if applied > 1 {
                    let what = format!(
                        "node {i}: {applied} payloads of issuer {} seq {seq} applied",
                        hex::encode(issuer.0)
                    );
                    self.fail(now, what);
                    return true;
                }
            }
        }
        false
    }
}

/// What the signatures of the milestone `index` that node `n` applied sign (its
/// transaction's parents and milestone, without signatures), if it still holds it.
fn milestone_content(n: &SimNode, index: u32, network: u64) -> Option<Digest> {
    let id = n.protocol().milestone_tx_id(index)?;
    let tx = dag_core::codec::decode(&n.transaction(&id)?).ok()?;
    Some(node_proto::proposal_digest(
        network,
        &tx.parents,
        tx.milestone()?,
    ))
}

/// Runs the cluster `ms` forward, checking after every instant; false once an invariant
/// broke.
fn run_checked(c: &mut Cluster, chk: &mut Checker, ms: u64) -> bool {
    let _ = c.run_until(ms, |c| chk.check(c));
    chk.failure.is_none()
}

/// What the run does, recorded for the trace and its hash.
struct Log {
    lines: Vec<String>,
    hash: [u8; 32],
}

impl Log {
    fn note(&mut self, now: u64, line: String) {
        self.hash =
            dag_core::crypto::blake2b256_parts(&[&self.hash, &now.to_le_bytes(), line.as_bytes()]);
        self.lines.push(format!("{now} chaos {line}"));
    }
}

fn fresh_address(rng: &mut ChaCha8Rng) -> Address {
    let mut a = [0u8; 32];
    rng.fill(&mut a);
    Address(a)
}

fn pay(net: u64, from: &Keypair, seq: u64, to: Address, amount: u64) -> SignedPayload {
    SignedPayload::sign(
        from,
        net,
        seq,
        Body::Pay {
            to,
            amount,
            memo: Vec::new(),
        },
    )
}

/// Runs one seed.
pub fn run_seed(cfg: ChaosConfig, want_trace: bool) -> ChaosOutcome {
    let mut log = Log {
        lines: Vec::new(),
        hash: [0; 32],
    };
    let mut chk = Checker::default();
    let mut stats = ChaosStats::default();
    let result = run_inner(cfg, &mut log, &mut chk, &mut stats, want_trace);
    let (failure, frames_hash, mut trace) = match result {
        Ok((h, t)) => (chk.failure.take(), h, t),
        Err(e) => (Some(format!("harness: {e}")), [0; 32], Vec::new()),
    };
    let trace_hash = Digest(dag_core::crypto::blake2b256_parts(&[
        &frames_hash,
        &log.hash,
    ]));
    if want_trace {
        trace.splice(0..0, std::mem::take(&mut log.lines));
        trace.sort_by_key(|l| {
            l.split(' ')
                .next()
                .and_then(|t| t.parse::<u64>().ok())
                .unwrap_or(0)
        });
        if let Some(f) = &failure {
            trace.push(format!("FAILED {f}"));
        }
        trace.push(format!("trace hash {}", trace_hash.to_hex()));
    }
    ChaosOutcome {
        seed: cfg.seed,
        failure,
        trace_hash,
        stats,
        trace,
    }
}

/// The run; returns the harness's trace digest mixed with the final digests, and the
/// nodes' logs as trace lines (if wanted).
fn run_inner(
    cfg: ChaosConfig,
    log: &mut Log,
    chk: &mut Checker,
    stats: &mut ChaosStats,
    want_trace: bool,
) -> Result<([u8; 32], Vec<String>), HarnessError> {
    let members = cfg.committee.map_or(1, |m| m.members.clamp(2, 16));
    let k = cfg.nodes.clamp(2, 16).max(members);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0xc4a0_5c4a_05c4_a05c);
    // The committee's own draws, from a stream of their own: a run without a committee
    // draws exactly what it drew before committees existed (same seeds, same courses).
    let mut crng = ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x636f_6d6d_6974_7465);

    // The network: devices funded at genesis.
    let mut network = match cfg.committee {
        Some(m) => DevNetwork::with_committee("chaos", 2, members, m.threshold),
        None => DevNetwork::new("chaos", 2),
    };
    let mut devices: Vec<Device> = (0..DEVICES)
        .map(|d| {
            let mut seed = [0xd0; 32];
            seed[..8].copy_from_slice(&(d as u64).to_le_bytes());
            Device {
                key: Keypair::from_seed(&seed),
                next_seq: 0,
            }
        })
        .collect();
    network
        .genesis
        .allocations
        .extend(devices.iter().map(|d| Allocation {
            address: d.key.address(),
            amount: DEVICE_FUNDS,
        }));
    chk.supply = network.genesis.supply().map(u128::from).unwrap_or(0);
    let net = network.network_id();
    chk.network = net;
    let member_keys = network.members.clone();

    let mut cc = ClusterConfig::dev(k, cfg.seed);
    cc.network = network;
    cc.loss = [0.0, 0.02, 0.1][rng.gen_range(0..3)];
    cc.faults = Faults {
        duplicate: rng.gen_range(0.0..0.05),
        reorder: rng.gen_range(0.0..0.05),
        reorder_ms: 50,
        spike: rng.gen_range(0.0..0.02),
        spike_ms: 3_000,
        durable_lag_ms: rng.gen_range(5..=50),
        bug_ack_before_durable: cfg.inject_bug,
    };
    log.note(0, format!("nodes {k} loss {} {:?}", cc.loss, cc.faults));
    let lag = cc.faults.durable_lag_ms;
    let mut c = Cluster::new(cc)?;
    chk.last = vec![0; k];
    chk.durable = vec![0; k];
    for i in 0..k {
        let skew = rng.gen_range(-15_000i64..=15_000);
        c.set_clock_skew(i, skew);
        log.note(c.now(), format!("node {i} clock skew {skew} ms"));
    }
    // A Byzantine member (when the bound allows one and the seed wants one): the harness
    // takes its key; its node runs on without it, and the harness proposes for it.
    let byzantine = match cfg.committee {
        Some(m) if m.byzantine_bound() >= 1 && crng.gen_bool(0.5) => {
            let b = crng.gen_range(0..members);
            c.crash(b)?;
            c.set_milestone_signer(b, None)?;
            c.restart(b)?;
            log.note(
                c.now(),
                format!("member {b} is Byzantine (its key is the harness's)"),
            );
            Some(b)
        }
        _ => None,
    };
    if let Some(m) = cfg.committee {
        log.note(
            c.now(),
            format!("committee of {members}, threshold {}", m.threshold),
        );
    }
    if c.run_until(10_000, |c| c.all_connected()).is_err() {
        chk.fail(c.now(), "the nodes did not connect".into());
    }

    let start = c.now();
    let end = start + CHAOS_MS;
    let mut acked: Vec<SignedPayload> = Vec::new();
    let mut restarts: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    // The current partition: side of each node (all 0: none).
    let mut side = vec![0u8; k];

    while chk.failure.is_none() && c.now() < end {
        let wait = 1 + (-(1.0 - rng.gen::<f64>()).ln() * 250.0) as u64;
        // Restarts due before the next action.
        let next = (c.now() + wait).min(end);
        while let Some((&t, _)) = restarts.first_key_value() {
            if t > next {
                break;
            }
            let nodes = restarts.remove(&t).unwrap_or_default();
            let ms = t.saturating_sub(c.now());
            if !run_checked(&mut c, chk, ms) {
                break;
            }
            for i in nodes {
                if !c.node(i).is_up() {
                    c.restart(i)?;
                    log.note(c.now(), format!("restart {i}"));
                }
            }
        }
        let ms = next.saturating_sub(c.now());
        if !run_checked(&mut c, chk, ms) {
            break;
        }
        let now = c.now();
        let up: Vec<usize> = (0..k).filter(|&i| c.node(i).is_up()).collect();
        if up.is_empty() {
            continue;
        }
        let at = up[rng.gen_range(0..up.len())];
        let roll = rng.gen_range(0..100);
        match roll {
            // A payment.
            0..=39 => {
                let d = rng.gen_range(0..DEVICES);
                let to = if rng.gen_bool(0.5) {
                    devices[rng.gen_range(0..DEVICES)].key.address()
                } else {
                    fresh_address(&mut rng)
                };
                let amount = rng.gen_range(1..=20);
                let p = pay(net, &devices[d].key, devices[d].next_seq, to, amount);
                if submit(&mut c, log, chk, stats, at, &p, &mut acked)? {
                    devices[d].next_seq += 1;
                }
            }
            // A replay of an acknowledged payload at another node.
            40..=49 => {
                if !acked.is_empty() {
                    let p = acked[rng.gen_range(0..acked.len())].clone();
                    log.note(now, format!("replay {} at {at}", p.id().to_hex()));
                    let _ = c.submit(at, vec![p])?;
                }
            }
            // A double spend: one seq, two payloads, two nodes (on different sides of the
            // partition when there is one).
            50..=59 => {
                let d = rng.gen_range(0..DEVICES);
                let seq = devices[d].next_seq;
                let other: Vec<usize> = up
                    .iter()
                    .copied()
                    .filter(|&j| j != at && side[j] != side[at])
                    .collect();
                let pool = if other.is_empty() {
                    up.iter().copied().filter(|&j| j != at).collect()
                } else {
                    other
                };
                if let Some(&b) = pool.get(rng.gen_range(0..pool.len().max(1))) {
                    stats.double_spends += 1;
                    let p1 = pay(net, &devices[d].key, seq, fresh_address(&mut rng), 3);
                    let p2 = pay(net, &devices[d].key, seq, fresh_address(&mut rng), 4);
                    log.note(
                        now,
                        format!("double spend device {d} seq {seq} at {at} and {b}"),
                    );
                    let a1 = submit(&mut c, log, chk, stats, at, &p1, &mut acked)?;
                    let a2 = submit(&mut c, log, chk, stats, b, &p2, &mut acked)?;
                    if a1 || a2 {
                        devices[d].next_seq += 1;
                    }
                }
            }
            // A partition into two random sides.
            60..=67 => {
                c.heal_all();
                for s in side.iter_mut() {
                    *s = rng.gen_range(0..2);
                }
                stats.partitions += 1;
                for a in 0..k {
                    for b in a + 1..k {
                        if side[a] != side[b] {
                            c.partition(a, b);
                        }
                    }
                }
                log.note(now, format!("partition {side:?}"));
            }
            68..=75 => {
                c.heal_all();
                side.iter_mut().for_each(|s| *s = 0);
                log.note(now, "heal".into());
            }
            // A crash, restarted 0.2-3 s later.
            76..=81 => {
                c.crash(at)?;
                stats.crashes += 1;
                let back = now + rng.gen_range(200..=3_000);
                restarts.entry(back).or_default().push(at);
                log.note(now, format!("crash {at} until {back}"));
            }
            // Cut off, take a payment, crash before the writes are durable.
            82..=85 => {
                c.isolate(at);
                side.iter_mut().for_each(|s| *s = 0);
                side[at] = 1;
                let d = rng.gen_range(0..DEVICES);
                let p = pay(
                    net,
                    &devices[d].key,
                    devices[d].next_seq,
                    fresh_address(&mut rng),
                    5,
                );
                log.note(now, format!("isolate {at}"));
                if submit(&mut c, log, chk, stats, at, &p, &mut acked)? {
                    devices[d].next_seq += 1;
                }
                if !run_checked(&mut c, chk, rng.gen_range(0..lag)) {
                    break;
                }
                if c.node(at).is_up() {
                    c.crash(at)?;
                    stats.crashes += 1;
                    let back = c.now() + rng.gen_range(200..=3_000);
                    restarts.entry(back).or_default().push(at);
                    log.note(c.now(), format!("crash {at} until {back}"));
                }
            }
            // Junk from a peer.
            86..=93 => {
                let to = up[rng.gen_range(0..up.len())];
                if to != at {
                    let sent = if rng.gen_bool(0.5) {
                        let mut bytes = vec![0u8; rng.gen_range(1..64)];
                        rng.fill(&mut bytes[..]);
                        log.note(now, format!("junk bytes {at} -> {to}"));
                        c.inject_bytes(at, to, bytes)
                    } else {
                        // A real transaction with one byte changed.
                        let tx = c.node(at).protocol().tangle().tips().first().copied();
                        let bytes = tx
                            .map(|t| c.node(at).protocol().tangle().id(t))
                            .and_then(|id| c.node(at).transaction(&id));
                        match bytes {
                            Some(mut b) if !b.is_empty() => {
                                let i = rng.gen_range(0..b.len());
                                b[i] ^= 1 << rng.gen_range(0..8);
                                log.note(now, format!("corrupt transaction {at} -> {to}"));
                                c.inject(at, to, &Message::Transaction(b))
                            }
                            _ => Ok(()),
                        }
                    };
                    if sent.is_ok() {
                        stats.junk += 1;
                    }
                }
            }
            // The loss rate changes.
            _ => {
                let loss = [0.0, 0.05, 0.2][rng.gen_range(0..3)];
                c.set_loss(loss);
                log.note(now, format!("loss {loss}"));
            }
        }
        // Committee faults, drawn from their own stream.
        if cfg.committee.is_some() && chk.failure.is_none() {
            committee_faults(
                &mut c,
                &mut crng,
                log,
                stats,
                &mut restarts,
                byzantine,
                &member_keys,
                net,
            )?;
        }
        if chk.failure.is_none() {
            chk.check(&c);
        }
    }

    // The final heal: every link, every node back, no more faults.
    if chk.failure.is_none() {
        c.heal_all();
        c.set_loss(0.0);
        c.set_faults(Faults {
            durable_lag_ms: lag,
            bug_ack_before_durable: cfg.inject_bug,
            ..Faults::default()
        });
        for i in 0..k {
            if !c.node(i).is_up() {
                c.restart(i)?;
            }
        }
        let healed_at = c.now();
        let newest = (0..k)
            .map(|i| c.node(i).confirmed_index())
            .max()
            .unwrap_or(0);
        log.note(healed_at, format!("final heal at milestone {newest}"));
        let ids: Vec<PayloadId> = acked.iter().map(|p| p.id()).collect();
        let done = |c: &Cluster| {
            c.converged_at_least(newest + 1)
                && ids.iter().all(|id| {
                    c.nodes().iter().all(|n| {
                        matches!(
                            n.payload_status(id),
                            Some(
                                PayloadStatus::Confirmed { .. } | PayloadStatus::Conflicting { .. }
                            )
                        )
                    })
                })
        };
        let r = c.run_until(SETTLE_MS, |c| chk.check(c) || done(c));
        if chk.failure.is_none() && (r.is_err() || !done(&c)) {
            let mut what =
                format!(
                "not settled {} ms after the final heal (milestones {:?}, newest at heal {newest})",
                SETTLE_MS,
                (0..k).map(|i| c.node(i).confirmed_index()).collect::<Vec<_>>()
            );
            if cfg.committee.is_some() {
                what.push_str(&format!("; {}", committee_votes(&c, members)));
            }
            for n in c.nodes() {
                if let Some(cs) = n.protocol().committee_stats() {
                    what.push_str(&format!(
                        "; member {}: index {} round {} proposals {} votes {} view changes {} rejected {} equivocations {}",
                        cs.member,
                        cs.index,
                        cs.round,
                        cs.proposals,
                        cs.votes,
                        cs.view_changes,
                        cs.rejected,
                        cs.equivocations
                    ));
                }
            }
            'find: for id in &ids {
                for n in c.nodes() {
                    let st = n.payload_status(id);
                    if !matches!(
                        st,
                        Some(PayloadStatus::Confirmed { .. } | PayloadStatus::Conflicting { .. })
                    ) {
                        what.push_str(&format!(
                            "; acknowledged payload {} is {st:?} on node {}",
                            id.to_hex(),
                            n.index()
                        ));
                        break 'find;
                    }
                }
            }
            chk.fail(c.now(), what);
        }
    }
    stats.milestone = (0..k)
        .map(|i| c.node(i).confirmed_index())
        .min()
        .unwrap_or(0);
    stats.frames = c.frames_delivered();
    stats.acknowledged = acked.len();

    let mut parts: Vec<Vec<u8>> = vec![c.trace_digest().0.to_vec()];
    for n in c.nodes() {
        parts.push(n.ledger_digest().0.to_vec());
        parts.push(n.confirmed_index().to_le_bytes().to_vec());
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    let hash = dag_core::crypto::blake2b256_parts(&refs);
    let mut lines = Vec::new();
    if want_trace {
        for n in c.nodes() {
            for (t, what) in n.log() {
                lines.push(format!("{t} node {} {what:?}", n.index()));
            }
        }
    }
    Ok((hash, lines))
}

/// The committee's votes at the index it is deciding (each member's durable record:
/// highest prevote, lock, signed milestone), for the report of a stall: `committee at index
/// I: member 0 prevote r2 1a2b3c4d lock r1 1a2b3c4d signed -, ...`.
fn committee_votes(c: &Cluster, members: usize) -> String {
    let index = (0..members)
        .map(|i| c.node(i).confirmed_index())
        .max()
        .unwrap_or(0)
        + 1;
    let short = |v: Option<(u32, Digest)>| match v {
        Some((r, d)) => format!("r{r} {}", &d.to_hex()[..8]),
        None => "-".into(),
    };
    let list: Vec<String> = (0..members)
        .map(|i| match c.node(i).vote().filter(|v| v.index == index) {
            Some(v) => format!(
                "member {i} prevote {} lock {} signed {}",
                short(v.prevote),
                short(v.lock),
                v.signed.map_or("-".into(), |d| d.to_hex()[..8].to_string())
            ),
            None => format!("member {i} no vote"),
        })
        .collect();
    format!("committee at index {index}: {}", list.join(", "))
}

/// One step of committee faults: now and then the next proposer (round 0 of the next
/// index, as the most advanced running node sees it) crashes, restarted 0.2-3 s later; and
/// the Byzantine member, when it is the next proposer, sends two different proposals for
/// that round (the same tips in two orders, each signed with its key) to two halves of
/// the other nodes.
#[allow(clippy::too_many_arguments)]
fn committee_faults(
    c: &mut Cluster,
    crng: &mut ChaCha8Rng,
    log: &mut Log,
    stats: &mut ChaosStats,
    restarts: &mut BTreeMap<u64, Vec<usize>>,
    byzantine: Option<usize>,
    keys: &[Keypair],
    net: u64,
) -> Result<(), HarnessError> {
    let n = keys.len();
    let now = c.now();
    let top = (0..c.len())
        .filter(|&i| c.node(i).is_up())
        .map(|i| c.node(i).confirmed_index())
        .max()
        .unwrap_or(0);
    let proposer = ((u64::from(top) + 1) % n as u64) as usize;
    if crng.gen_bool(0.04) && Some(proposer) != byzantine && c.node(proposer).is_up() {
        c.crash(proposer)?;
        stats.crashes += 1;
        stats.proposer_crashes += 1;
        let back = now + crng.gen_range(200..=3_000);
        restarts.entry(back).or_default().push(proposer);
        log.note(now, format!("crash proposer {proposer} until {back}"));
    }
    let Some(b) = byzantine else {
        return Ok(());
    };
    if !c.node(b).is_up() || !crng.gen_bool(0.5) {
        return Ok(());
    }
    let core = c.node(b).protocol();
    let index = core.ledger().confirmed_index() + 1;
    if index % n as u32 != b as u32 {
        return Ok(());
    }
    let Some(tip) = core.milestone_tx_id(index - 1) else {
        return Ok(());
    };
    let Some(other) = core.tangle().lookup(&tip).map(|r| {
        let t = core.tangle();
        t.id(t.parents(r)[0])
    }) else {
        return Ok(());
    };
    if other == tip {
        return Ok(());
    }
    // Each prevoted, precommitted (round 0) and signed by the Byzantine member.
    let make = |parents: [TxId; 2]| -> Option<Message> {
        let local = now.saturating_add_signed(c.node(b).clock_skew_ms());
        let mut m = core.proposal_on(parents, local).ok()?;
        let msg = dag_core::crypto::milestone_signing_message(net, &parents, &m);
        let d = node_proto::proposal_digest(net, &parents, &m);
        m.signatures = vec![(b as u8, keys[b].sign(&msg))];
        let votes = [false, true]
            .iter()
            .map(|pc| node_proto::sign_round_vote(&keys[b], b as u8, net, index, *pc, 0, &d))
            .collect();
        Some(Message::Committee(Box::new(CommitteeMessage {
            round: 0,
            proposer: b as u8,
            parents,
            milestone: m,
            votes,
        })))
    };
    let (Some(x), Some(y)) = (make([tip, other]), make([other, tip])) else {
        return Ok(());
    };
    stats.equivocations += 1;
    log.note(now, format!("member {b} proposes two milestones {index}"));
    for j in (0..c.len()).filter(|&j| j != b) {
        let m = if crng.gen_bool(0.5) { &x } else { &y };
        // A cut link or a node down: that one gets nothing.
        let _ = c.inject(b, j, m);
    }
    Ok(())
}

/// Submits `p` at node `at`; an acknowledged payload is remembered. Returns whether it was
/// acknowledged.
fn submit(
    c: &mut Cluster,
    log: &mut Log,
    chk: &mut Checker,
    stats: &mut ChaosStats,
    at: usize,
    p: &SignedPayload,
    acked: &mut Vec<SignedPayload>,
) -> Result<bool, HarnessError> {
    chk.by_seq
        .entry((p.issuer, p.seq))
        .or_default()
        .push(p.id());
    let r = c.submit(at, vec![p.clone()])?;
    let ok = matches!(r.first(), Some(Ok(_)));
    log.note(
        c.now(),
        format!(
            "submit {} issuer {} seq {} at {at}: {}",
            p.id().to_hex(),
            &hex::encode(p.issuer.0)[..8],
            p.seq,
            if ok { "acknowledged" } else { "refused" }
        ),
    );
    if ok {
        acked.push(p.clone());
    } else {
        stats.refused += 1;
    }
    Ok(ok)
}

/// What `tangle-sim chaos --seeds` prints: one line per failing seed (`seed S: why`), in
/// seed order, then `chaos: N seeds, F failed, trace hash of seed S: <hex>` (S the first
/// seed run).
pub fn report(outcomes: &[ChaosOutcome]) -> Vec<String> {
    let mut lines: Vec<String> = outcomes
        .iter()
        .filter_map(|o| o.failure.as_ref().map(|f| format!("seed {}: {f}", o.seed)))
        .collect();
    let failed = lines.len();
    let (first, hash) = outcomes
        .first()
        .map(|o| (o.seed, o.trace_hash.to_hex()))
        .unwrap_or_default();
    lines.push(format!(
        "chaos: {} seeds, {failed} failed, trace hash of seed {first}: {hash}",
        outcomes.len()
    ));
    lines
}

/// Runs seeds `start..start + count` (on `jobs` threads) and returns their outcomes in seed
/// order.
pub fn run_seeds(start: u64, count: u64, nodes: usize, jobs: usize) -> Vec<ChaosOutcome> {
    run_seeds_with(start, count, jobs, |s| ChaosConfig::new(s, nodes))
}

/// [`run_seeds`] with the configuration of each seed from `config`.
pub fn run_seeds_with(
    start: u64,
    count: u64,
    jobs: usize,
    config: impl Fn(u64) -> ChaosConfig + Sync,
) -> Vec<ChaosOutcome> {
    use rayon::prelude::*;
    let seeds: Vec<u64> = (0..count).map(|i| start.wrapping_add(i)).collect();
    let run = || {
        seeds
            .par_iter()
            .map(|&s| run_seed(config(s), false))
            .collect::<Vec<_>>()
    };
    match rayon::ThreadPoolBuilder::new()
        .num_threads(jobs.max(1))
        .build()
    {
        Ok(pool) => pool.install(run),
        Err(_) => seeds.iter().map(|&s| run_seed(config(s), false)).collect(),
    }
}
