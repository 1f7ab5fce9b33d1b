//! The running totals, the time-series samples, the settling of old records into the totals,
//! and the final summary of a run.

use std::collections::BTreeMap;

use dag_core::TangleView;

use super::{Kind, Simulation, TxRecord, NEVER, NO_DEVICE};
use crate::report::{
    histogram, LatencySummary, LedgerReport, RunOutput, SamplePoint, Summary, Throughput,
};
use crate::scenario::{to_ticks, to_units};

/// Running totals.
#[derive(Debug, Default)]
pub(super) struct Metrics {
    pub(super) tips_sum: u128,
    pub(super) tips_samples: u64,
    pub(super) settled: u64,
    pub(super) orphans: u64,
    pub(super) unapproved: u64,
    pub(super) first_approval_sum: f64,
    pub(super) first_approval_n: u64,
    pub(super) approvers_hist: Vec<u64>,
    pub(super) latencies: Vec<f32>,
    pub(super) confirmed_honest: u64,
    pub(super) applied: u64,
    pub(super) conflicts: BTreeMap<String, u64>,
    pub(super) late: u64,
    pub(super) fallbacks: u64,
    pub(super) never_solid: u64,
    pub(super) peak_len: u64,
    pub(super) milestones: u64,
    pub(super) series: Vec<SamplePoint>,
}

impl Simulation {
    /// Appends a time-series point of node 0's view.
    pub(super) fn sample(&mut self) {
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

    /// Counts a record that left the window into the totals (honest transactions only).
    pub(super) fn settle_record(&mut self, rec: TxRecord) {
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

    /// The run's results, from the totals and the nodes' final state; `wall` is the run's
    /// wall-clock seconds.
    pub(super) fn finish(mut self, wall: f64) -> RunOutput {
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
            node: None,
        };
        RunOutput {
            summary,
            series: std::mem::take(&mut m.series),
            latency_histogram,
        }
    }
}
