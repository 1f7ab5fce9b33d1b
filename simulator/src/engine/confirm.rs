//! Milestones: the coordinator issuing them on node 0, and each node confirming the solid ones
//! in white-flag order against its ledger (node 0's confirmations feed the metrics, the
//! attack bookkeeping and the devices' wallets).

use dag_core::whiteflag::{apply_cone, ConeOutcome};
use dag_core::{Body, PayloadOutcome, TangleView};
use tip_selection::TipSelector;

use super::{tx_num, Event, Kind, Simulation, NO_DEVICE};
use crate::scenario::to_units;

impl Simulation {
    /// Applies every milestone that is solid and next in line on `node`.
    pub(super) fn confirm_ready(&mut self, node: usize) {
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

    /// The coordinator (node 0) issues the next milestone and schedules the one after.
    pub(super) fn on_milestone(&mut self) {
        if self.now > self.end_at {
            return;
        }
        let parents = self.select(0);
        let index = self.next_milestone;
        self.next_milestone += 1;
        self.issue(0, parents, Kind::Milestone, index, None);
        self.schedule(self.now + self.ms_ticks, Event::Milestone);
    }
}
