//! The adversaries: parasite chains, lazy tips, spam floods and double spends, their
//! bookkeeping, and the attack report.

use std::collections::BTreeMap;

use dag_core::{Body, TangleView, TxRef};
use rand::Rng;

use super::{
    exp_ticks, first_at_or_after, tx_num, Event, Kind, Simulation, GENESIS_NUM, NO_DEVICE,
};
use crate::report::{AttackReport, LatencySummary};
use crate::scenario::{to_ticks, AttackConfig};

/// Attack bookkeeping.
#[derive(Debug, Default)]
pub(super) struct AttackState {
    // parasite
    pub(super) watch_from: u64,
    pub(super) watch_to: u64,
    pub(super) watched: u64,
    pub(super) picked_parasite: u64,
    pub(super) parasite_issued: u64,
    pub(super) parasite_confirmed: u64,
    // lazy
    pub(super) lazy_issued: u64,
    pub(super) lazy_confirmed: u64,
    pub(super) picked_lazy: u64,
    pub(super) honest_selections: u64,
    // spam
    pub(super) flood_from: u64,
    pub(super) flood_to: u64,
    pub(super) spam_issued: u64,
    pub(super) spam_confirmed: u64,
    pub(super) flood_settled: u64,
    pub(super) flood_orphans: u64,
    pub(super) before_latencies: Vec<f32>,
    pub(super) during_latencies: Vec<f32>,
    // double spend: per attempt, (first applied, second applied)
    pub(super) ds: Vec<(bool, bool)>,
}

impl Simulation {
    /// Attack statistics about an honest selection.
    pub(super) fn observe_selection(&mut self, parents: [u32; 2]) {
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
    pub(super) fn lazy_parents(&mut self, node: usize) -> [u32; 2] {
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

    /// Releases the parasite chain, attached `attach_age` in the past.
    pub(super) fn on_parasite(&mut self) {
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

    /// Issues one spam transaction and schedules the next while the flood lasts.
    pub(super) fn on_spam(&mut self) {
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

    /// Issues one payment of a double-spend attempt: to the merchant (`first`) or the accomplice.
    pub(super) fn on_double_spend(&mut self, attempt: u32, first: bool) {
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

    /// The attack's report, if the scenario has an attack.
    pub(super) fn attack_report(&mut self) -> Option<AttackReport> {
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
}
