//! The discrete-event engine: virtual clock in integer ticks, a binary-heap event queue
//! ordered by (time, insertion number), one seeded ChaCha8 RNG. Everything that happens is an
//! event processed in that order, so a run is a pure function of the scenario and seed.
//!
//! Each node holds a real [`dag_core::Tangle`], a real [`tip_selection::AnySelector`] and a
//! real [`dag_core::Ledger`]. A transaction issued through node `i` becomes visible on node
//! `i` after the visibility delay `h` and on node `j` after `h + latency(i, j)` (direct
//! delivery, full mesh). A coordinator on node 0 issues a milestone every interval; when a
//! milestone becomes solid on a node, that node walks its unconfirmed cone in white-flag
//! order ([`dag_core::Tangle::unconfirmed_cone`]), applies the signed payloads to its ledger
//! and marks the cone confirmed. Node 0 is the observer: metrics and the devices' wallets
//! follow its view.
//!
//! Transaction ids are synthetic (a bijective mix of the transaction number in the first 8
//! bytes, the number itself in the next 4): building and hashing a full `Transaction` per
//! arrival would cost more than the rest of the simulation, and the Tangle, the selectors and
//! the ledger only need unique, hash-like ids.
//!
//! ## Layout
//! This file holds the engine loop, the public [`Simulation`] and the per-transaction state;
//! `queue` the event queue, `attacks` the adversaries and their bookkeeping, `confirm` the
//! milestones (coordinator and white-flag confirmation), `metrics` the running totals and the
//! final summary, `prune` the pruning of the Tangles and settling of old records.

mod attacks;
mod confirm;
mod metrics;
mod prune;
mod queue;

use std::collections::{BinaryHeap, VecDeque};
use std::time::Instant;

use dag_core::{
    InsertOutcome, Ledger, MilestoneIndex, SignedPayload, Tangle, TangleConfig, TangleView, TxId,
    TxRef,
};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tip_selection::{AnySelector, RestrictedUrtsConfig, TipSelector, Urts, WalkConfig};

use crate::report::RunOutput;
use crate::scenario::{to_ticks, AttackConfig, Scenario, ScenarioError};
use crate::workload::{WorkloadKind, Workloads};

use attacks::AttackState;
use metrics::Metrics;
use queue::{Event, Scheduled};

/// Number used for the genesis in parent lists.
const GENESIS_NUM: u32 = u32::MAX;
/// "Not yet" for tick fields.
const NEVER: u64 = u64::MAX;
/// "No device" for `aux`.
const NO_DEVICE: u32 = u32::MAX;

/// The synthetic id of transaction number `n`.
pub(crate) fn tx_id(n: u32) -> TxId {
    if n == GENESIS_NUM {
        return TxId::GENESIS;
    }
    let mut z = u64::from(n).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&z.to_le_bytes());
    b[8..12].copy_from_slice(&n.to_le_bytes());
    b[12] = 1; // never all-zero, so never the genesis
    TxId(b)
}

/// The transaction number of a synthetic id.
pub(crate) fn tx_num(id: &TxId) -> u32 {
    if *id == TxId::GENESIS {
        return GENESIS_NUM;
    }
    u32::from_le_bytes([id.0[8], id.0[9], id.0[10], id.0[11]])
}

/// Who issued a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Honest,
    Milestone,
    Parasite,
    Lazy,
    Spam,
    DoubleSpend,
}

/// What the simulator remembers of a transaction until it settles.
#[derive(Debug)]
struct TxRecord {
    issued: u64,
    parents: [u32; 2],
    /// Issue tick of the first approver, or `NEVER`.
    first_approval: u64,
    /// Tick at which node 0 confirmed it, or `NEVER`.
    confirmed: u64,
    approvers: u32,
    kind: Kind,
    /// Issuing device (payload transactions) or milestone index (milestones).
    aux: u32,
    payload: Option<Box<SignedPayload>>,
}

/// Records of the transactions not settled yet, indexed by number.
#[derive(Debug, Default)]
struct Records {
    base: u32,
    items: VecDeque<TxRecord>,
}

impl Records {
    fn get(&self, n: u32) -> Option<&TxRecord> {
        self.items.get(n.checked_sub(self.base)? as usize)
    }

    fn get_mut(&mut self, n: u32) -> Option<&mut TxRecord> {
        self.items.get_mut(n.checked_sub(self.base)? as usize)
    }

    fn next(&self) -> u32 {
        self.base + self.items.len() as u32
    }
}
/// One node's view and state.
struct NodeState {
    tangle: Tangle,
    selector: AnySelector,
    ledger: Ledger,
    digests: Vec<dag_core::Digest>,
}
/// A prepared run. [`Simulation::run`] consumes it.
pub struct Simulation {
    sc: Scenario,
    rng: ChaCha8Rng,
    now: u64,
    queue: BinaryHeap<Scheduled>,
    /// Single-node runs: deliveries all have the same delay, so they leave in issue order;
    /// a FIFO (at, seq, tx) replaces half of the heap traffic.
    fifo: VecDeque<(u64, u64, u32)>,
    seq: u64,
    nodes: Vec<NodeState>,
    /// Delivery delay from node i to node j (includes h).
    delay: Vec<Vec<u64>>,
    records: Records,
    work: Workloads,
    m: Metrics,
    atk: AttackState,
    issued: u64,
    next_milestone: MilestoneIndex,
    last_arrival: u64,
    end_at: u64,
    settle: u64,
    warmup: u64,
    ms_ticks: u64,
    sample_ticks: u64,
    prune_ticks: u64,
    mean_gap: f64,
}

fn make_selector(sc: &Scenario) -> AnySelector {
    let t = &sc.tips;
    AnySelector::new(
        t.kind,
        RestrictedUrtsConfig {
            max_approvers: t.max_approvers.max(1),
            max_referenced_age: Some(to_ticks(t.max_referenced_age)),
            max_tip_age: Some(to_ticks(t.max_tip_age)),
            ..RestrictedUrtsConfig::default()
        },
        WalkConfig {
            alpha: t.alpha,
            depth: to_ticks(t.depth),
            max_window: t.max_window,
            ..WalkConfig::default()
        },
    )
}

/// Exponential variate with mean `mean` ticks (at least 1 tick).
fn exp_ticks(rng: &mut ChaCha8Rng, mean: f64) -> u64 {
    let u: f64 = rng.gen();
    ((-(1.0 - u).ln()) * mean).round().max(1.0) as u64
}
impl Simulation {
    /// Prepares a run of `sc` (protocol mode, `parents == 2`).
    pub fn new(sc: Scenario) -> Result<Simulation, ScenarioError> {
        sc.validate()?;
        if sc.parents != 2 {
            return Err(ScenarioError::Invalid(
                "the protocol engine needs parents = 2 (use crate::run for research mode)".into(),
            ));
        }
        let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
        let work = Workloads::new(&sc, &mut rng);
        let n = sc.network.nodes;
        let h = to_ticks(sc.delay);
        let mut delay = vec![vec![h + to_ticks(sc.network.latency); n]; n];
        for (i, row) in delay.iter_mut().enumerate() {
            row[i] = h;
        }
        for l in &sc.network.links {
            if l.a != l.b {
                delay[l.a][l.b] = h + to_ticks(l.latency);
                delay[l.b][l.a] = h + to_ticks(l.latency);
            }
        }
        let nodes = (0..n)
            .map(|_| NodeState {
                tangle: Tangle::new(TangleConfig {
                    pending_capacity: 1_000_000,
                    initial_capacity: 0,
                }),
                selector: make_selector(&sc),
                ledger: work.ledger(),
                digests: Vec::new(),
            })
            .collect();
        let settle = to_ticks(sc.effective_settle_time());
        let duration = sc.transactions as f64 / sc.lambda;
        let sample = if sc.sample_interval > 0.0 {
            sc.sample_interval
        } else {
            duration / 1000.0
        };
        let mut atk = AttackState::default();
        if let Some(AttackConfig::DoubleSpend { attempts, .. }) = &sc.attack {
            atk.ds = vec![(false, false); *attempts];
        }
        Ok(Simulation {
            warmup: (sc.transactions as f64 * sc.warmup) as u64,
            ms_ticks: to_ticks(sc.milestone_interval),
            sample_ticks: to_ticks(sample).max(1),
            prune_ticks: (settle / 4).max(1),
            mean_gap: to_ticks(1.0) as f64 / sc.lambda,
            settle,
            sc,
            rng,
            now: 0,
            queue: BinaryHeap::new(),
            fifo: VecDeque::new(),
            seq: 0,
            nodes,
            delay,
            records: Records::default(),
            work,
            m: Metrics::default(),
            atk,
            issued: 0,
            next_milestone: 1,
            last_arrival: 0,
            end_at: NEVER,
        })
    }

    /// Runs to the end and returns the results. `progress` counts honest arrivals.
    pub fn run(mut self, progress: &ProgressBar) -> RunOutput {
        let started = Instant::now();
        progress.set_length(self.sc.transactions);
        let first = exp_ticks(&mut self.rng, self.mean_gap);
        self.schedule(first, Event::Arrival);
        if self.ms_ticks > 0 {
            self.schedule(self.ms_ticks, Event::Milestone);
        }
        self.schedule(0, Event::Sample);
        self.schedule(self.prune_ticks, Event::Prune);
        match self.sc.attack.clone() {
            Some(AttackConfig::Parasite { start, .. }) => {
                self.schedule(to_ticks(start), Event::ParasiteRelease);
            }
            Some(AttackConfig::SpamFlood {
                start, duration, ..
            }) => {
                self.atk.flood_from = to_ticks(start);
                self.atk.flood_to = to_ticks(start + duration);
                self.schedule(to_ticks(start), Event::Spam);
            }
            Some(AttackConfig::DoubleSpend {
                start,
                every,
                attempts,
                ..
            }) => {
                for i in 0..attempts {
                    self.schedule(
                        to_ticks(start + every * i as f64),
                        Event::DoubleSpendFirst(i as u32),
                    );
                }
            }
            _ => {}
        }
        while let Some((at, event)) = self.pop_next() {
            self.now = at;
            match event {
                Event::Arrival => {
                    self.on_arrival();
                    if self.issued & 0x3fff == 0 {
                        progress.set_position(self.issued);
                    }
                }
                Event::Deliver { node, tx } => self.on_deliver(node as usize, tx),
                Event::Milestone => self.on_milestone(),
                Event::Sample => {
                    self.sample();
                    if self.now < self.end_at {
                        self.schedule(self.now + self.sample_ticks, Event::Sample);
                    }
                }
                Event::Prune => {
                    self.prune();
                    if self.now < self.end_at {
                        self.schedule(self.now + self.prune_ticks, Event::Prune);
                    }
                }
                Event::ParasiteRelease => self.on_parasite(),
                Event::Spam => self.on_spam(),
                Event::DoubleSpendFirst(i) => self.on_double_spend(i, true),
                Event::DoubleSpendSecond(i) => self.on_double_spend(i, false),
            }
        }
        progress.set_position(self.issued);
        self.sample();
        self.finish(started.elapsed().as_secs_f64())
    }

    /// Records a transaction and delivers it to every node.
    fn issue(
        &mut self,
        node: usize,
        parents: [u32; 2],
        kind: Kind,
        aux: u32,
        payload: Option<Box<SignedPayload>>,
    ) -> u32 {
        let n = self.records.next();
        let now = self.now;
        // Approvals happen at issue: the approver chose its parents now.
        let distinct = if parents[0] == parents[1] { 1 } else { 2 };
        for &p in &parents[..distinct] {
            if let Some(r) = self.records.get_mut(p) {
                r.approvers += 1;
                if r.first_approval == NEVER {
                    r.first_approval = now;
                }
            }
        }
        self.records.items.push_back(TxRecord {
            issued: now,
            parents,
            first_approval: NEVER,
            confirmed: NEVER,
            approvers: 0,
            kind,
            aux,
            payload,
        });
        if self.nodes.len() == 1 {
            self.seq += 1;
            self.fifo.push_back((now + self.delay[0][0], self.seq, n));
            return n;
        }
        for j in 0..self.nodes.len() {
            let at = now + self.delay[node][j];
            self.schedule(
                at,
                Event::Deliver {
                    node: j as u16,
                    tx: n,
                },
            );
        }
        n
    }

    /// Parents from node `node`'s selector, as transaction numbers.
    fn select(&mut self, node: usize) -> [u32; 2] {
        let st = &mut self.nodes[node];
        let refs = match st.selector.select(&st.tangle, self.now, &mut self.rng) {
            Ok(p) => p,
            Err(_) => {
                self.m.fallbacks += 1;
                Urts::new()
                    .select(&st.tangle, self.now, &mut self.rng)
                    .unwrap_or([st.tangle.root(); 2])
            }
        };
        [
            tx_num(&st.tangle.id(refs[0])),
            tx_num(&st.tangle.id(refs[1])),
        ]
    }

    fn kind_of(&self, n: u32) -> Option<Kind> {
        self.records.get(n).map(|r| r.kind)
    }

    fn on_arrival(&mut self) {
        self.issued += 1;
        self.last_arrival = self.now;
        if self.issued < self.sc.transactions {
            let gap = exp_ticks(&mut self.rng, self.mean_gap);
            self.schedule(self.now + gap, Event::Arrival);
        } else {
            // Let the last transactions reach every node and a few milestones pass.
            let max_delay = self.delay.iter().flatten().copied().max().unwrap_or(0);
            self.end_at = self.now + max_delay + 2 * self.ms_ticks + 1;
        }
        let lazy = match self.sc.attack {
            Some(AttackConfig::LazyTips { share, start, .. }) if self.now >= to_ticks(start) => {
                self.rng.gen_bool(share)
            }
            _ => false,
        };
        let (device, payload) = if lazy {
            (None, None)
        } else {
            let kind = self.work.pick_kind(&mut self.rng);
            let cmi = self.nodes[0].tangle.confirmed_milestone();
            match kind {
                WorkloadKind::Empty => (None, None),
                k => match self.work.generate(k, self.now, cmi, &mut self.rng) {
                    Some((d, p)) => (Some(d), Some(p)),
                    None => (None, None),
                },
            }
        };
        let nodes = self.nodes.len();
        let node = match device {
            Some(d) => d as usize % nodes,
            None if nodes == 1 => 0,
            None => self.rng.gen_range(0..nodes),
        };
        if self.issued > self.warmup {
            self.m.tips_sum += self.nodes[node].tangle.tips().len() as u128;
            self.m.tips_samples += 1;
        }
        if lazy {
            let parents = self.lazy_parents(node);
            self.atk.lazy_issued += 1;
            self.issue(node, parents, Kind::Lazy, NO_DEVICE, None);
            return;
        }
        let parents = self.select(node);
        self.observe_selection(parents);
        self.issue(
            node,
            parents,
            Kind::Honest,
            device.unwrap_or(NO_DEVICE),
            payload,
        );
    }

    fn on_deliver(&mut self, node: usize, n: u32) {
        let Some(rec) = self.records.get(n) else {
            return;
        };
        if self.sc.sign {
            if let Some(p) = &rec.payload {
                if p.verify(self.work.network_id).is_ok() {
                    self.work.report.signatures_verified += 1;
                } else {
                    self.work.report.signature_failures += 1;
                }
            }
        }
        let parents = [tx_id(rec.parents[0]), tx_id(rec.parents[1])];
        let ms = (rec.kind == Kind::Milestone).then_some(rec.aux);
        let st = &mut self.nodes[node];
        match st.tangle.insert(tx_id(n), parents, ms, self.now) {
            Ok(InsertOutcome::Solid(list)) => {
                if let Some(&(_, last)) = list.last() {
                    st.selector.on_solid(&st.tangle, last);
                }
            }
            Ok(InsertOutcome::Pending { .. }) | Ok(InsertOutcome::Duplicate) => {}
            Err(_) => self.m.never_solid += 1,
        }
        self.confirm_ready(node);
    }
}

/// First held ref whose arrival is at or after `t` (the newest if none).
fn first_at_or_after(t: &Tangle, at: u64) -> TxRef {
    let (mut a, mut b) = (t.root().0, t.newest().0);
    while a < b {
        let mid = a + (b - a) / 2;
        if t.arrival(TxRef(mid)) >= at {
            b = mid;
        } else {
            a = mid + 1;
        }
    }
    TxRef(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_ids_round_trip_and_differ() {
        for n in [0u32, 1, 7, 1 << 20, u32::MAX - 1] {
            assert_eq!(tx_num(&tx_id(n)), n);
            assert_ne!(tx_id(n), TxId::GENESIS);
        }
        assert_eq!(tx_num(&TxId::GENESIS), GENESIS_NUM);
        assert_ne!(tx_id(1).0[..8], tx_id(2).0[..8]);
    }
}
