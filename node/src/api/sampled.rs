//! `GET /api/v1/events/sampled`: the event stream for dashboards, whose size does not grow
//! with the node's throughput.
//!
//! `GET /api/v1/events` carries every event, about 580 bytes per payment; a dashboard that
//! reads it at saturation reads megabytes a second, and ten of them cost the node about a
//! quarter of its throughput (BENCHMARKS.md, "Dashboards and MQTT"). A page that draws a
//! few thousand transactions needs far less. One pump per API (started by the first
//! request) reads the node's events, keeps some and counts all, and numbers what it keeps
//! into its own ring ([`EventHub`]): every client stream reads that ring as on
//! `/api/v1/events` (ids, `Last-Event-ID`, `lagged`), so the JSON is made once for all.
//!
//! What is kept (each NodeEvent's JSON as on `/api/v1/events`):
//! - every `milestone`;
//! - `transaction`s, at most [`TX_PER_SEC`] a second on average (bursts of [`TX_BURST`]):
//!   the first to arrive whenever the allowance has room, so below that rate all of them;
//! - the final `payload` verdict (confirmed or conflicting) of every kept transaction's
//!   payload;
//! - besides those, `conflicting` verdicts and `reattached` events up to [`OTHER_PER_SEC`] a
//!   second (bursts of [`OTHER_BURST`]), so the page can list conflicts with their reasons
//!   even for transactions it does not draw.
//!
//! A kept `transaction` (and a `milestone`) carries one more field, `sampled_parents`: the
//! nearest transactions this stream sent that it approves, directly or through transactions
//! the stream left out (at most two). Kept at one in a few hundred, a transaction would
//! almost never have a kept parent, and a page drawing `parents` would draw dots without
//! edges; through `sampled_parents` it draws the sample's own Tangle, each edge standing for
//! a real path of approvals. Below the allowance they are the kept `parents`. To know them,
//! the pump remembers for the newest [`FRONTIER`] transactions their nearest kept ancestors.
//!
//! Every second a `summary` ([`SampledSummary`]) counts what happened in it, kept or not:
//! transactions, payloads confirmed and conflicting, transactions the milestones confirmed.
//! Below about [`TX_PER_SEC`] payments a second a client therefore sees every event, as on
//! `/api/v1/events`; above, at most a few hundred events a second whatever the load.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dag_core::tangle::IdBuildHasher;
use dag_core::TxId;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::events::EventHub;
use crate::service::{NodeEvent, PayloadState};

/// Transactions kept per second, on average.
pub(crate) const TX_PER_SEC: f64 = 50.0;
/// Most transactions kept in a burst.
pub(crate) const TX_BURST: f64 = 50.0;
/// Conflicting verdicts and reattachments of transactions not kept, per second.
pub(crate) const OTHER_PER_SEC: f64 = 20.0;
/// Most of those in a burst.
pub(crate) const OTHER_BURST: f64 = 20.0;
/// Kept transaction ids remembered (to keep their verdicts): at the kept rate, a few
/// minutes, far longer than a confirmation takes.
const REMEMBERED: usize = 8192;
/// Transactions whose nearest kept ancestors are remembered: at 16,000 transactions a
/// second about 4 s, far longer than a tip waits for its first approval.
pub(crate) const FRONTIER: usize = 65_536;
/// How often a summary is sent.
pub(crate) const SUMMARY_INTERVAL: Duration = Duration::from_secs(1);

/// A token bucket on an explicit clock.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Bucket {
            rate,
            burst: burst.max(1.0),
            tokens: burst.max(1.0),
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        self.at = now;
    }

    fn take(&mut self) -> bool {
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A set of the newest `cap` ids.
#[derive(Debug)]
struct Recent {
    set: HashSet<TxId, IdBuildHasher>,
    order: VecDeque<TxId>,
    cap: usize,
}

impl Recent {
    fn new(cap: usize) -> Self {
        Recent {
            set: HashSet::with_capacity_and_hasher(cap, IdBuildHasher::default()),
            order: VecDeque::with_capacity(cap),
            cap: cap.max(1),
        }
    }

    fn insert(&mut self, id: TxId) {
        if self.set.insert(id) {
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn contains(&self, id: &TxId) -> bool {
        self.set.contains(id)
    }
}

/// Up to two transaction ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ancestors {
    ids: [TxId; 2],
    len: u8,
}

impl Ancestors {
    const NONE: Ancestors = Ancestors {
        ids: [TxId([0; 32]); 2],
        len: 0,
    };

    fn one(id: TxId) -> Self {
        Ancestors {
            ids: [id, id],
            len: 1,
        }
    }

    fn as_slice(&self) -> &[TxId] {
        &self.ids[..usize::from(self.len)]
    }

    /// Adds `id` unless present or full.
    fn add(&mut self, id: TxId) {
        if self.len < 2 && !self.as_slice().contains(&id) {
            self.ids[usize::from(self.len)] = id;
            self.len += 1;
        }
    }
}

/// For the newest transactions, their nearest kept ancestors (a kept one: itself).
#[derive(Debug)]
struct Frontier {
    /// Keyed by ids that are hashes, as the Tangle's own index is.
    map: HashMap<TxId, Ancestors, IdBuildHasher>,
    order: VecDeque<TxId>,
    cap: usize,
}

impl Frontier {
    fn new(cap: usize) -> Self {
        Frontier {
            map: HashMap::with_capacity_and_hasher(cap.min(1 << 16), IdBuildHasher::default()),
            order: VecDeque::with_capacity(cap.min(1 << 16)),
            cap: cap.max(1),
        }
    }

    /// The nearest kept ancestors of a transaction approving `parents`.
    fn through(&self, parents: &[TxId]) -> Ancestors {
        let mut out = Ancestors::NONE;
        for p in parents {
            if let Some(a) = self.map.get(p) {
                for id in a.as_slice() {
                    out.add(*id);
                }
            }
        }
        out
    }

    fn insert(&mut self, id: TxId, ancestors: Ancestors) {
        if self.map.insert(id, ancestors).is_none() {
            self.order.push_back(id);
            while self.order.len() > self.cap {
                if let Some(old) = self.order.pop_front() {
                    self.map.remove(&old);
                }
            }
        }
    }

    fn get(&self, id: &TxId) -> Option<&Ancestors> {
        self.map.get(id)
    }
}

/// What the sampled stream does with an event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Leave it out (it is counted).
    Skip,
    /// Send it as it is.
    Send,
    /// Send it with `sampled_parents` added.
    SendWithParents(Vec<TxId>),
}

/// The `summary` event of `GET /api/v1/events/sampled`: what happened in the last
/// `interval_ms`, counting the events the stream left out too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SampledSummary {
    /// Always `"summary"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The span counted, ms.
    pub interval_ms: u64,
    /// Transactions that became solid.
    pub transactions: u64,
    /// Of which sent on this stream.
    pub transactions_sent: u64,
    /// Payloads confirmed and applied.
    pub payloads_confirmed: u64,
    /// Payloads confirmed as conflicting.
    pub payloads_conflicting: u64,
    /// Payload verdicts (confirmed or conflicting) sent on this stream.
    pub payloads_sent: u64,
    /// Payloads reattached.
    pub reattached: u64,
    /// Milestones applied.
    pub milestones: u64,
    /// Transactions those milestones confirmed (as far as known).
    pub confirmed_transactions: u64,
    /// Node events the stream's own subscription missed (it fell behind the node).
    pub missed: u64,
}

/// Decides which events the sampled stream keeps, and counts all of them.
#[derive(Debug)]
pub(crate) struct Sampler {
    tx: Bucket,
    other: Bucket,
    kept: Recent,
    frontier: Frontier,
    counts: SampledSummary,
}

impl Sampler {
    pub(crate) fn new(now: Instant) -> Self {
        Self::with_rates(TX_PER_SEC, TX_BURST, OTHER_PER_SEC, OTHER_BURST, now)
    }

    fn with_rates(tx: f64, tx_burst: f64, other: f64, other_burst: f64, now: Instant) -> Self {
        Sampler {
            tx: Bucket::new(tx, tx_burst, now),
            other: Bucket::new(other, other_burst, now),
            kept: Recent::new(REMEMBERED),
            frontier: Frontier::new(FRONTIER),
            counts: SampledSummary::default(),
        }
    }

    /// Counts `event` and says whether (and how) the stream sends it.
    pub(crate) fn offer(&mut self, event: &NodeEvent, now: Instant) -> Decision {
        match event {
            NodeEvent::Milestone(m) => {
                self.counts.milestones += 1;
                self.counts.confirmed_transactions += m.confirmed_transactions.unwrap_or(0) as u64;
                // Its transaction, if left out, still leads the page to what it confirms.
                match self.frontier.get(&m.transaction_id) {
                    Some(a) if !self.kept.contains(&m.transaction_id) && a.len > 0 => {
                        Decision::SendWithParents(a.as_slice().to_vec())
                    }
                    _ => Decision::Send,
                }
            }
            NodeEvent::Transaction {
                transaction_id,
                parents,
                ..
            } => {
                self.counts.transactions += 1;
                self.tx.refill(now);
                let ancestors = self.frontier.through(parents);
                if self.tx.take() {
                    self.frontier
                        .insert(*transaction_id, Ancestors::one(*transaction_id));
                    self.kept.insert(*transaction_id);
                    self.counts.transactions_sent += 1;
                    Decision::SendWithParents(ancestors.as_slice().to_vec())
                } else {
                    if ancestors.len > 0 {
                        self.frontier.insert(*transaction_id, ancestors);
                    }
                    Decision::Skip
                }
            }
            NodeEvent::Payload { state, .. } => {
                let (transaction_id, conflicting) = match state {
                    PayloadState::Confirmed { transaction_id, .. } => {
                        self.counts.payloads_confirmed += 1;
                        (transaction_id, false)
                    }
                    PayloadState::Conflicting { transaction_id, .. } => {
                        self.counts.payloads_conflicting += 1;
                        (transaction_id, true)
                    }
                    // Not final: the page has nothing to show for them.
                    PayloadState::Pending | PayloadState::Reattaching { .. } => {
                        return Decision::Skip
                    }
                };
                if self.kept.contains(transaction_id) || (conflicting && self.take_other(now)) {
                    self.counts.payloads_sent += 1;
                    Decision::Send
                } else {
                    Decision::Skip
                }
            }
            NodeEvent::Reattached { .. } => {
                self.counts.reattached += 1;
                if self.take_other(now) {
                    Decision::Send
                } else {
                    Decision::Skip
                }
            }
        }
    }

    fn take_other(&mut self, now: Instant) -> bool {
        self.other.refill(now);
        self.other.take()
    }

    /// Records `n` node events that never arrived.
    pub(crate) fn missed(&mut self, n: u64) {
        self.counts.missed += n;
    }

    /// The counts since the previous summary (which it resets).
    pub(crate) fn summary(&mut self, interval: Duration) -> SampledSummary {
        let mut s = std::mem::take(&mut self.counts);
        s.kind = "summary".to_owned();
        s.interval_ms = interval.as_millis() as u64;
        s
    }
}

/// Starts the sampled stream's pump on `hub` unless it runs already: reads `events` and
/// numbers what [`Sampler`] keeps, and a summary every [`SUMMARY_INTERVAL`], into the
/// ring, until the channel closes or `shutdown` turns true.
pub(crate) fn ensure_pump(
    hub: &Arc<EventHub>,
    subscribe: impl FnOnce() -> broadcast::Receiver<NodeEvent>,
    mut shutdown: watch::Receiver<bool>,
    on_missed: impl Fn(u64) + Send + 'static,
) {
    if !hub.claim_pump() {
        return;
    }
    let mut events = subscribe();
    let hub = hub.clone();
    tokio::spawn(async move {
        let mut sampler = Sampler::new(Instant::now());
        let mut tick = tokio::time::interval(SUMMARY_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut last = Instant::now();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stopping| *stopping) => break,
                _ = tick.tick() => {
                    let now = Instant::now();
                    let summary = sampler.summary(now - last);
                    last = now;
                    if let Ok(json) = serde_json::to_string(&summary) {
                        hub.push_event(json.into());
                    }
                }
                received = events.recv() => match received {
                    Ok(event) => {
                        if let Some(json) = encode(&event, sampler.offer(&event, Instant::now())) {
                            hub.push_event(json.into());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        sampler.missed(n);
                        on_missed(n);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
}

/// The JSON the stream sends for `event`, if any.
fn encode(event: &NodeEvent, decision: Decision) -> Option<String> {
    // Serialising these plain structs cannot fail.
    match decision {
        Decision::Skip => None,
        Decision::Send => serde_json::to_string(event).ok(),
        Decision::SendWithParents(parents) => {
            let mut v = serde_json::to_value(event).ok()?;
            if let serde_json::Value::Object(fields) = &mut v {
                let parents = parents.iter().map(|p| p.to_string().into()).collect();
                fields.insert("sampled_parents".into(), serde_json::Value::Array(parents));
            }
            serde_json::to_string(&v).ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::MilestoneView;
    use dag_core::{Digest, PayloadId};

    fn id(n: u64) -> TxId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        TxId(b)
    }

    fn pid(n: u64) -> PayloadId {
        let mut b = [0u8; 32];
        b[..8].copy_from_slice(&n.to_le_bytes());
        b[31] = 1;
        PayloadId(b)
    }

    fn tx(n: u64, parents: [u64; 2]) -> NodeEvent {
        NodeEvent::Transaction {
            transaction_id: id(n),
            payload_id: Some(pid(n)),
            parents: parents.iter().map(|p| id(*p)).collect(),
        }
    }

    fn verdict(n: u64, conflicting: bool) -> NodeEvent {
        NodeEvent::Payload {
            payload_id: pid(n),
            state: if conflicting {
                PayloadState::Conflicting {
                    milestone: 1,
                    transaction_id: id(n),
                    reason: "insufficient balance".into(),
                }
            } else {
                PayloadState::Confirmed {
                    milestone: 1,
                    transaction_id: id(n),
                }
            },
        }
    }

    fn milestone(confirmed: usize) -> NodeEvent {
        NodeEvent::Milestone(MilestoneView {
            index: 1,
            transaction_id: id(u64::MAX),
            timestamp: 0,
            ledger_digest: Digest([0u8; 32]),
            confirmed_transactions: Some(confirmed),
            applied: Some(confirmed),
            conflicting: Some(0),
            signers: vec![0],
        })
    }

    fn sent(d: &Decision) -> bool {
        *d != Decision::Skip
    }

    /// Below the allowance every event passes, as on `/api/v1/events`, and a transaction's
    /// sampled parents are its parents.
    #[test]
    fn a_slow_node_is_streamed_whole() {
        let t0 = Instant::now();
        let mut s = Sampler::with_rates(10.0, 10.0, 2.0, 2.0, t0);
        for n in 2..=50u64 {
            // Five a second: half the allowance.
            let now = t0 + Duration::from_millis(200 * n);
            let d = s.offer(&tx(n, [n - 1, n - 2]), now);
            let expect = if n == 2 {
                vec![]
            } else if n == 3 {
                vec![id(2)]
            } else {
                vec![id(n - 1), id(n - 2)]
            };
            assert_eq!(d, Decision::SendWithParents(expect), "tx {n}");
            assert_eq!(s.offer(&verdict(n, n % 7 == 0), now), Decision::Send);
        }
        assert_eq!(
            s.offer(&milestone(49), t0 + Duration::from_secs(11)),
            Decision::Send
        );
        let sum = s.summary(Duration::from_secs(11));
        assert_eq!(sum.kind, "summary");
        assert_eq!((sum.transactions, sum.transactions_sent), (49, 49));
        assert_eq!(sum.payloads_conflicting, 7);
        assert_eq!(sum.payloads_confirmed, 42);
        assert_eq!(sum.payloads_sent, 49);
        assert_eq!((sum.milestones, sum.confirmed_transactions), (1, 49));
        assert_eq!(s.summary(Duration::from_secs(1)).transactions, 0, "reset");
    }

    /// At a thousand times the allowance, what is kept stays within it and is spread over
    /// the run; every kept transaction (after the first burst) names kept transactions it
    /// descends from; their verdicts are kept, other conflicting verdicts up to their own
    /// allowance; a milestone left out names its kept ancestors; every event is counted.
    #[test]
    fn a_saturated_node_is_sampled_within_the_allowance_and_stays_connected() {
        let t0 = Instant::now();
        let (rate, burst, other) = (10.0, 10.0, 2.0);
        let mut s = Sampler::with_rates(rate, burst, other, other, t0);
        let per_sec = 10_000u64;
        let secs = 10u64;
        let last = per_sec * secs;
        // Each transaction approves two of the ~100 before it (a tip pool).
        let parents_of = |n: u64| {
            [
                n.saturating_sub(1 + n % 97),
                n.saturating_sub(1 + (n * 31) % 89),
            ]
        };
        let mut kept: Vec<(u64, Vec<TxId>)> = Vec::new();
        let mut verdicts_kept = 0u64;
        let mut conflicts_kept = 0u64;
        for n in 1..=last {
            let now = t0 + Duration::from_micros(n * 1_000_000 / per_sec);
            match s.offer(&tx(n, parents_of(n)), now) {
                Decision::SendWithParents(p) => kept.push((n, p)),
                d => assert_eq!(d, Decision::Skip),
            }
            // Verdicts of earlier transactions: one in ten conflicts.
            if n > 200 {
                let v = n - 200;
                let conflicting = v % 10 == 0;
                if sent(&s.offer(&verdict(v, conflicting), now)) {
                    verdicts_kept += 1;
                    if conflicting {
                        conflicts_kept += 1;
                    }
                }
            }
        }
        let budget = (burst + rate * secs as f64) as usize;
        assert!(kept.len() <= budget, "{} kept", kept.len());
        assert!(kept.len() >= budget * 9 / 10, "{} kept", kept.len());
        let late = kept.iter().filter(|(n, _)| *n > last / 2).count();
        assert!(
            late >= kept.len() / 3,
            "spread over the run: {late} in the second half"
        );
        // Connected: every kept transaction after the first burst (whose parents precede
        // everything) names earlier kept ones.
        let kept_ids: HashSet<TxId> = kept.iter().map(|(n, _)| id(*n)).collect();
        for (i, (n, p)) in kept.iter().enumerate().skip(burst as usize) {
            assert!(!p.is_empty(), "kept tx {n} (#{i}) names no kept ancestor");
            for a in p {
                assert!(kept_ids.contains(a) && *a != id(*n), "tx {n}: {a}");
            }
        }
        // Verdicts: those of kept transactions (all but the last 200's) and conflicts up to
        // their allowance.
        let kept_with_verdict = kept.iter().filter(|(n, _)| *n <= last - 200).count() as u64;
        let other_budget = (other + other * secs as f64) as u64;
        assert!(verdicts_kept >= kept_with_verdict);
        assert!(verdicts_kept <= kept_with_verdict + other_budget);
        assert!(conflicts_kept >= other_budget / 2, "{conflicts_kept}");
        // A milestone whose transaction was left out names its kept ancestors.
        let ms_tx = last + 1;
        let now = t0 + Duration::from_secs(secs);
        assert_eq!(s.offer(&tx(ms_tx, parents_of(ms_tx)), now), Decision::Skip);
        let mut ms = milestone(5);
        if let NodeEvent::Milestone(m) = &mut ms {
            m.transaction_id = id(ms_tx);
        }
        match s.offer(&ms, now) {
            Decision::SendWithParents(p) => {
                assert!(!p.is_empty() && p.iter().all(|a| kept_ids.contains(a)))
            }
            d => panic!("{d:?}"),
        }
        let sum = s.summary(Duration::from_secs(secs));
        assert_eq!(sum.transactions, last + 1);
        assert_eq!(sum.transactions_sent, kept.len() as u64);
        assert_eq!(
            sum.payloads_confirmed + sum.payloads_conflicting,
            last - 200
        );
        assert_eq!(sum.payloads_sent, verdicts_kept);
    }

    #[test]
    fn milestones_always_pass_and_memory_is_bounded() {
        let t0 = Instant::now();
        let mut s = Sampler::with_rates(1.0, 1.0, 1.0, 1.0, t0);
        for _ in 0..100 {
            assert_eq!(s.offer(&milestone(3), t0), Decision::Send);
        }
        let mut r = Recent::new(3);
        for n in 0..10 {
            r.insert(id(n));
        }
        assert_eq!((r.set.len(), r.order.len()), (3, 3));
        assert!(r.contains(&id(9)) && !r.contains(&id(6)));
        let mut f = Frontier::new(3);
        for n in 0..10 {
            f.insert(id(n), Ancestors::one(id(n)));
        }
        assert_eq!((f.map.len(), f.order.len()), (3, 3));
        assert!(f.get(&id(9)).is_some() && f.get(&id(6)).is_none());
    }

    /// The JSON of a kept transaction is the plain event's plus `sampled_parents`.
    #[test]
    fn sampled_parents_are_added_to_the_plain_json() {
        let e = tx(5, [4, 3]);
        assert_eq!(encode(&e, Decision::Skip), None);
        let plain: serde_json::Value =
            serde_json::from_str(&encode(&e, Decision::Send).unwrap()).unwrap();
        assert_eq!(plain, serde_json::to_value(&e).unwrap());
        let with: serde_json::Value =
            serde_json::from_str(&encode(&e, Decision::SendWithParents(vec![id(4)])).unwrap())
                .unwrap();
        assert_eq!(
            with["sampled_parents"],
            serde_json::json!([id(4).to_string()])
        );
        assert_eq!(with["parents"], plain["parents"]);
    }
}
