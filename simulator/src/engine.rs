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

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::time::Instant;

use dag_core::whiteflag::{apply_cone, ConeOutcome};
use dag_core::{
    Body, InsertOutcome, Ledger, MilestoneIndex, PayloadOutcome, SignedPayload, Tangle,
    TangleConfig, TangleView, TxId, TxRef,
};
use indicatif::ProgressBar;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tip_selection::{
    AnySelector, RestrictedUrts, RestrictedUrtsConfig, TipSelector, Urts, WalkConfig, WeightedWalk,
};

use crate::report::{
    histogram, AttackReport, LatencySummary, LedgerReport, RunOutput, SamplePoint, Summary,
    Throughput,
};
use crate::scenario::{to_ticks, to_units, AttackConfig, Scenario, ScenarioError, TipsKind};
use crate::workload::{WorkloadKind, Workloads};

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Event {
    Arrival,
    Deliver { node: u16, tx: u32 },
    Milestone,
    Sample,
    Prune,
    ParasiteRelease,
    Spam,
    DoubleSpendFirst(u32),
    DoubleSpendSecond(u32),
}

#[derive(Debug, PartialEq, Eq)]
struct Scheduled {
    at: u64,
    seq: u64,
    event: Event,
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> Ordering {
        // Min-heap on (time, insertion order).
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One node's view and state.
struct NodeState {
    tangle: Tangle,
    selector: AnySelector,
    ledger: Ledger,
    digests: Vec<dag_core::Digest>,
}

/// Running totals.
#[derive(Debug, Default)]
struct Metrics {
    tips_sum: u128,
    tips_samples: u64,
    settled: u64,
    orphans: u64,
    unapproved: u64,
    first_approval_sum: f64,
    first_approval_n: u64,
    approvers_hist: Vec<u64>,
    latencies: Vec<f32>,
    confirmed_honest: u64,
    applied: u64,
    conflicts: BTreeMap<String, u64>,
    late: u64,
    fallbacks: u64,
    never_solid: u64,
    peak_len: u64,
    milestones: u64,
    series: Vec<SamplePoint>,
}

/// Attack bookkeeping.
#[derive(Debug, Default)]
struct AttackState {
    // parasite
    watch_from: u64,
    watch_to: u64,
    watched: u64,
    picked_parasite: u64,
    parasite_issued: u64,
    parasite_confirmed: u64,
    // lazy
    lazy_issued: u64,
    lazy_confirmed: u64,
    picked_lazy: u64,
    honest_selections: u64,
    // spam
    flood_from: u64,
    flood_to: u64,
    spam_issued: u64,
    spam_confirmed: u64,
    flood_settled: u64,
    flood_orphans: u64,
    before_latencies: Vec<f32>,
    during_latencies: Vec<f32>,
    // double spend: per attempt, (first applied, second applied)
    ds: Vec<(bool, bool)>,
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
    match t.kind {
        TipsKind::Urts => AnySelector::Urts(Urts::new()),
        TipsKind::Rurts => AnySelector::Restricted(RestrictedUrts::new(RestrictedUrtsConfig {
            max_approvers: t.max_approvers.max(1),
            max_referenced_age: Some(to_ticks(t.max_referenced_age)),
            max_tip_age: Some(to_ticks(t.max_tip_age)),
            ..RestrictedUrtsConfig::default()
        })),
        TipsKind::Walk => AnySelector::Walk(WeightedWalk::new(WalkConfig {
            alpha: t.alpha,
            depth: to_ticks(t.depth),
            max_window: t.max_window,
            ..WalkConfig::default()
        })),
    }
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

    fn schedule(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            event,
        });
    }

    /// The next event: the earliest of the heap top and the FIFO front, by (time, seq).
    fn pop_next(&mut self) -> Option<(u64, Event)> {
        let heap = self.queue.peek().map(|s| (s.at, s.seq));
        let fifo = self.fifo.front().map(|&(at, seq, _)| (at, seq));
        match (heap, fifo) {
            (Some(h), Some(f)) if f < h => self
                .fifo
                .pop_front()
                .map(|(at, _, tx)| (at, Event::Deliver { node: 0, tx })),
            (None, Some(_)) => self
                .fifo
                .pop_front()
                .map(|(at, _, tx)| (at, Event::Deliver { node: 0, tx })),
            _ => self.queue.pop().map(|s| (s.at, s.event)),
        }
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

    /// Attack statistics about an honest selection.
    fn observe_selection(&mut self, parents: [u32; 2]) {
        if self.sc.attack.is_none() {
            return;
        }
        self.atk.honest_selections += 1;
        let kinds = [self.kind_of(parents[0]), self.kind_of(parents[1])];
        if kinds.contains(&Some(Kind::Lazy)) {
            self.atk.picked_lazy += 1;
        }
        if self.now >= self.atk.watch_from && self.now < self.atk.watch_to {
            self.atk.watched += 1;
            if kinds.contains(&Some(Kind::Parasite)) {
                self.atk.picked_parasite += 1;
            }
        }
    }

    /// Two old transactions, `age` before now, in `node`'s view.
    fn lazy_parents(&mut self, node: usize) -> [u32; 2] {
        let age = match self.sc.attack {
            Some(AttackConfig::LazyTips { age, .. }) => to_ticks(age),
            _ => 0,
        };
        let t = &self.nodes[node].tangle;
        let r0 = first_at_or_after(t, self.now.saturating_sub(age));
        let r1 = if r0 < t.newest() {
            TxRef(r0.0 + 1)
        } else {
            t.parents(r0)[0]
        };
        [tx_num(&t.id(r0)), tx_num(&t.id(r1))]
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

    /// Applies every milestone that is solid and next in line on `node`.
    fn confirm_ready(&mut self, node: usize) {
        loop {
            let st = &mut self.nodes[node];
            let index = st.tangle.confirmed_milestone() + 1;
            let Some(ms_ref) = st.tangle.solid_milestone(index) else {
                return;
            };
            let mut late = 0;
            let records = &self.records;
            // The milestone transaction carries no payload: its cone is the cone of itself.
            let applied =
                apply_cone(
                    &st.tangle,
                    &mut st.ledger,
                    index,
                    &[ms_ref],
                    |_, id| match records.get(tx_num(id)) {
                        Some(rec) => rec.payload.as_deref(),
                        None => {
                            late += 1;
                            None
                        }
                    },
                );
            let ConeOutcome {
                cone: order,
                outcome,
                ..
            } = match applied {
                Ok(o) => o,
                Err(_) => return, // ledger and Tangle out of step: cannot happen here
            };
            if st.tangle.confirm(&order, index, ms_ref).is_err() {
                return;
            }
            st.selector.on_confirmed(&st.tangle, index);
            st.digests.push(outcome.ledger_digest);
            if node != 0 {
                continue;
            }
            self.m.milestones += 1;
            self.m.late += late;
            let now = self.now;
            for &r in &order {
                let n = tx_num(&self.nodes[0].tangle.id(r));
                let Some(rec) = self.records.get_mut(n) else {
                    continue;
                };
                rec.confirmed = now;
                let latency = to_units(now - rec.issued) as f32;
                match rec.kind {
                    Kind::Honest => {
                        self.m.confirmed_honest += 1;
                        self.m.latencies.push(latency);
                        if self.atk.flood_to > 0 {
                            if rec.issued < self.atk.flood_from {
                                self.atk.before_latencies.push(latency);
                            } else if rec.issued < self.atk.flood_to {
                                self.atk.during_latencies.push(latency);
                            }
                        }
                    }
                    Kind::Lazy => self.atk.lazy_confirmed += 1,
                    Kind::Parasite => self.atk.parasite_confirmed += 1,
                    Kind::Spam => self.atk.spam_confirmed += 1,
                    Kind::Milestone | Kind::DoubleSpend => {}
                }
            }
            for (id, o) in &outcome.outcomes {
                match o {
                    PayloadOutcome::Applied => self.m.applied += 1,
                    PayloadOutcome::Conflicting(r) => {
                        *self.m.conflicts.entry(format!("{r:?}")).or_default() += 1;
                    }
                }
                let n = tx_num(id);
                let Some(rec) = self.records.get(n) else {
                    continue;
                };
                let (Some(p), device) = (&rec.payload, rec.aux) else {
                    continue;
                };
                match rec.kind {
                    Kind::DoubleSpend => {
                        let attempt = self
                            .work
                            .attackers
                            .iter()
                            .position(|&a| a == device)
                            .unwrap_or(0);
                        let first = matches!(&p.body, Body::Pay { to, .. }
                            if *to == self.work.devices[self.work.merchant as usize].addr);
                        if let Some(slot) = self.atk.ds.get_mut(attempt) {
                            if o.is_applied() {
                                if first {
                                    slot.0 = true;
                                } else {
                                    slot.1 = true;
                                }
                            }
                        }
                    }
                    Kind::Honest if device != NO_DEVICE => {
                        self.work
                            .on_outcome(device, p, *o, now, &self.nodes[0].ledger);
                    }
                    _ => {}
                }
            }
        }
    }

    fn on_milestone(&mut self) {
        if self.now > self.end_at {
            return;
        }
        let parents = self.select(0);
        let index = self.next_milestone;
        self.next_milestone += 1;
        self.issue(0, parents, Kind::Milestone, index, None);
        self.schedule(self.now + self.ms_ticks, Event::Milestone);
    }

    fn sample(&mut self) {
        let t = &self.nodes[0].tangle;
        let p = SamplePoint {
            time: to_units(self.now),
            tips: t.tips().len() as u64,
            unconfirmed: t.unconfirmed_len() as u64,
            held: t.len() as u64,
            milestone: t.confirmed_milestone(),
            issued: self.issued,
            confirmed: self.m.confirmed_honest,
        };
        self.m.peak_len = self.m.peak_len.max(p.held);
        self.m.series.push(p);
    }

    /// Prunes every node's Tangle below the settle horizon and settles old records.
    fn prune(&mut self) {
        let cutoff = self.now.saturating_sub(self.settle);
        for st in &mut self.nodes {
            let t = &mut st.tangle;
            let keep = safe_prune_point(t, first_at_or_after(t, cutoff));
            if keep > t.root() {
                // Cannot fail: the point leaves no approved unconfirmed transaction behind.
                let _ = t.prune_before(keep);
            }
        }
        // Records settle a quarter horizon after the Tangle may drop them.
        let settle_before = self.now.saturating_sub(self.settle + self.settle / 4);
        while let Some(front) = self.records.items.front() {
            if front.issued >= settle_before {
                break;
            }
            let rec = self.records.items.pop_front().expect("front exists");
            self.records.base += 1;
            self.settle_record(rec);
        }
    }

    fn settle_record(&mut self, rec: TxRecord) {
        if rec.kind != Kind::Honest {
            return;
        }
        let m = &mut self.m;
        m.settled += 1;
        let a = rec.approvers as usize;
        if m.approvers_hist.len() <= a {
            m.approvers_hist.resize(a + 1, 0);
        }
        m.approvers_hist[a] += 1;
        let h = to_ticks(self.sc.delay);
        if rec.first_approval == NEVER {
            m.unapproved += 1;
        } else {
            m.first_approval_n += 1;
            m.first_approval_sum += to_units(rec.first_approval.saturating_sub(rec.issued + h));
        }
        let orphan = if self.ms_ticks > 0 {
            rec.confirmed == NEVER
        } else {
            rec.first_approval == NEVER
        };
        if orphan {
            m.orphans += 1;
        }
        if self.atk.flood_to > 0
            && rec.issued >= self.atk.flood_from
            && rec.issued < self.atk.flood_to
        {
            self.atk.flood_settled += 1;
            if orphan {
                self.atk.flood_orphans += 1;
            }
        }
        if rec.confirmed == NEVER && rec.aux != NO_DEVICE {
            if let Some(p) = &rec.payload {
                self.work.on_orphan(rec.aux, p, self.now);
            }
        }
    }

    fn on_parasite(&mut self) {
        let Some(AttackConfig::Parasite {
            attach_age,
            chain,
            tips,
            measure,
            ..
        }) = self.sc.attack.clone()
        else {
            return;
        };
        let t = &self.nodes[0].tangle;
        let target = first_at_or_after(t, self.now.saturating_sub(to_ticks(attach_age)));
        let trunk = t.parents(target)[0];
        let target_n = tx_num(&t.id(target));
        let mut other = tx_num(&t.id(trunk));
        if other == target_n {
            other = GENESIS_NUM;
        }
        let mut links = Vec::with_capacity(chain);
        let first = self.issue(0, [target_n, other], Kind::Parasite, NO_DEVICE, None);
        links.push(first);
        for i in 1..chain {
            let prev2 = if i >= 2 { links[i - 2] } else { target_n };
            let n = self.issue(0, [links[i - 1], prev2], Kind::Parasite, NO_DEVICE, None);
            links.push(n);
        }
        let head = links[chain - 1];
        for _ in 0..tips {
            let j = self.rng.gen_range(0..chain - 1);
            self.issue(0, [head, links[j]], Kind::Parasite, NO_DEVICE, None);
        }
        self.atk.parasite_issued = (chain + tips) as u64;
        let visible = self.delay.iter().flatten().copied().max().unwrap_or(0);
        self.atk.watch_from = self.now + visible;
        self.atk.watch_to = self.now + visible + to_ticks(measure);
    }

    fn on_spam(&mut self) {
        if self.now >= self.atk.flood_to {
            return;
        }
        let rate = match self.sc.attack {
            Some(AttackConfig::SpamFlood { rate, .. }) => rate,
            _ => return,
        };
        let spammer = self.work.spammer;
        let d = &mut self.work.devices[spammer as usize];
        let seq = d.next_seq;
        d.next_seq += 1;
        let body = Body::Anchor {
            tag: b"spam".to_vec(),
            digest: dag_core::Digest([0xaa; 32]),
        };
        let payload = self.work.payload(spammer, seq, body);
        let parents = self.select(0);
        self.issue(0, parents, Kind::Spam, spammer, Some(payload));
        self.atk.spam_issued += 1;
        let gap = exp_ticks(&mut self.rng, to_ticks(1.0) as f64 / rate);
        self.schedule(self.now + gap, Event::Spam);
    }

    fn on_double_spend(&mut self, attempt: u32, first: bool) {
        let Some(AttackConfig::DoubleSpend { gap, .. }) = self.sc.attack else {
            return;
        };
        let Some(&attacker) = self.work.attackers.get(attempt as usize) else {
            return;
        };
        let to = if first {
            self.work.devices[self.work.merchant as usize].addr
        } else {
            self.work.devices[self.work.accomplice as usize].addr
        };
        let body = Body::Pay {
            to,
            amount: self.work.ds_amount,
            memo: Vec::new(),
        };
        // Both payments carry seq 0: at most one can ever apply.
        let payload = self.work.payload(attacker, 0, body);
        let node = attacker as usize % self.nodes.len();
        let parents = self.select(node);
        self.issue(node, parents, Kind::DoubleSpend, attacker, Some(payload));
        if first {
            self.schedule(self.now + to_ticks(gap), Event::DoubleSpendSecond(attempt));
        }
    }

    fn attack_report(&mut self) -> Option<AttackReport> {
        let attack = self.sc.attack.clone()?;
        let a = &mut self.atk;
        let mut metrics = BTreeMap::new();
        let ratio = |x: u64, y: u64| if y == 0 { 0.0 } else { x as f64 / y as f64 };
        let success_rate = match attack {
            AttackConfig::Parasite { .. } => {
                metrics.insert("parasite_transactions".into(), a.parasite_issued as f64);
                metrics.insert("parasite_confirmed".into(), a.parasite_confirmed as f64);
                metrics.insert("watched_selections".into(), a.watched as f64);
                metrics.insert("selections_with_parasite".into(), a.picked_parasite as f64);
                ratio(a.picked_parasite, a.watched)
            }
            AttackConfig::LazyTips { .. } => {
                metrics.insert("lazy_issued".into(), a.lazy_issued as f64);
                metrics.insert("lazy_confirmed".into(), a.lazy_confirmed as f64);
                metrics.insert(
                    "honest_selections_with_lazy".into(),
                    ratio(a.picked_lazy, a.honest_selections),
                );
                ratio(a.lazy_confirmed, a.lazy_issued)
            }
            AttackConfig::SpamFlood { .. } => {
                let before = LatencySummary::from_values(&mut a.before_latencies);
                let during = LatencySummary::from_values(&mut a.during_latencies);
                metrics.insert("spam_issued".into(), a.spam_issued as f64);
                metrics.insert("spam_confirmed".into(), a.spam_confirmed as f64);
                metrics.insert("honest_p50_before".into(), before.p50);
                metrics.insert("honest_p50_during".into(), during.p50);
                metrics.insert("honest_settled_during".into(), a.flood_settled as f64);
                metrics.insert("honest_orphans_during".into(), a.flood_orphans as f64);
                ratio(a.flood_orphans, a.flood_settled)
            }
            AttackConfig::DoubleSpend { .. } => {
                let n = a.ds.len() as u64;
                let merchant = a.ds.iter().filter(|x| x.0).count() as u64;
                let second = a.ds.iter().filter(|x| x.1).count() as u64;
                let both = a.ds.iter().filter(|x| x.0 && x.1).count() as u64;
                let neither = a.ds.iter().filter(|x| !x.0 && !x.1).count() as u64;
                metrics.insert("attempts".into(), n as f64);
                metrics.insert("merchant_paid".into(), merchant as f64);
                metrics.insert("second_applied".into(), second as f64);
                metrics.insert("both_applied".into(), both as f64);
                metrics.insert("neither_confirmed".into(), neither as f64);
                ratio(second, n)
            }
        };
        Some(AttackReport {
            kind: attack.name().into(),
            success_rate,
            succeeded: success_rate > 0.0,
            metrics,
        })
    }

    fn finish(mut self, wall: f64) -> RunOutput {
        let attack = self.attack_report();
        let sc = &self.sc;
        let m = &mut self.m;
        let ratio = |x: u64, y: u64| if y == 0 { 0.0 } else { x as f64 / y as f64 };
        let supply = self.nodes[0].ledger.supply();
        let supply_conserved = self
            .nodes
            .iter()
            .all(|n| n.ledger.check_invariants().is_ok() && n.ledger.supply() == supply);
        let common = self
            .nodes
            .iter()
            .map(|n| n.digests.len())
            .min()
            .unwrap_or(0);
        let nodes_consistent = self
            .nodes
            .iter()
            .all(|n| n.digests[..common] == self.nodes[0].digests[..common]);
        let sim_time = to_units(self.now);
        let span = to_units(self.last_arrival).max(f64::MIN_POSITIVE);
        let latency_histogram = histogram(&m.latencies, 100);
        let total = u64::from(self.records.next());
        let summary = Summary {
            name: sc.name.clone(),
            transactions: self.issued,
            lambda: sc.lambda,
            delay: sc.delay,
            parents: sc.parents,
            tips: sc.tips.kind.name().into(),
            alpha: sc.tips.alpha,
            seed: sc.seed,
            nodes: sc.network.nodes,
            milestone_interval: sc.milestone_interval,
            sim_time,
            total_transactions: total,
            mean_tips: if m.tips_samples == 0 {
                0.0
            } else {
                m.tips_sum as f64 / m.tips_samples as f64
            },
            closed_form_tips: 2.0 * sc.lambda * sc.delay,
            mean_first_approval_delay: if m.first_approval_n == 0 {
                0.0
            } else {
                m.first_approval_sum / m.first_approval_n as f64
            },
            approvers_histogram: m.approvers_hist.clone(),
            settled_transactions: m.settled,
            orphan_rate: ratio(m.orphans, m.settled),
            unapproved_rate: ratio(m.unapproved, m.settled),
            confirmation_latency: LatencySummary::from_values(&mut m.latencies),
            throughput: Throughput {
                issued_per_time: self.issued as f64 / span,
                confirmed_per_time: m.confirmed_honest as f64 / span,
                confirmed_share: ratio(m.confirmed_honest, self.issued),
            },
            ledger: LedgerReport {
                milestones: m.milestones,
                applied: m.applied,
                conflicting: m.conflicts.clone(),
                late_confirmations: m.late,
                supply,
                supply_conserved,
                nodes_consistent,
                digest: self.nodes[0].ledger.digest().to_hex(),
            },
            workload: self.work.report.clone(),
            selection_fallbacks: m.fallbacks,
            never_solid: m.never_solid
                + self
                    .nodes
                    .iter()
                    .map(|n| n.tangle.pending_len() as u64)
                    .sum::<u64>(),
            peak_tangle_len: m.peak_len,
            attack,
            wall_seconds: wall,
            sim_tx_per_second: total as f64 / wall.max(1e-9),
        };
        RunOutput {
            summary,
            series: std::mem::take(&mut m.series),
            latency_histogram,
        }
    }
}

/// The largest prune point at or below `limit` that drops no unconfirmed transaction still
/// approved from above the point (what [`Tangle::prune_before`] requires), in one pass over
/// the unconfirmed transactions below `limit`. Unconfirmed transactions without approvers
/// (orphaned tips) never block pruning.
fn safe_prune_point(t: &Tangle, limit: TxRef) -> TxRef {
    let mut best = t.root();
    // Largest approver of the unconfirmed transactions seen so far.
    let mut reach = TxRef(0);
    for u in t.unconfirmed() {
        if u >= limit {
            break;
        }
        if reach < u {
            best = u; // every unconfirmed one below u is approved only from below u
        }
        if let Some(&last) = t.approvers(u).last() {
            reach = reach.max(last);
        }
    }
    if reach < limit {
        limit
    } else {
        best
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

    #[test]
    fn events_pop_in_time_then_insertion_order() {
        let mut q = BinaryHeap::new();
        for (seq, at) in [(1, 5), (2, 3), (3, 5), (4, 1)] {
            q.push(Scheduled {
                at,
                seq,
                event: Event::Sample,
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.pop().map(|s| s.seq)).collect();
        assert_eq!(order, vec![4, 2, 1, 3]);
    }
}
