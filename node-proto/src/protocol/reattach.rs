//! Keeping local payloads alive: a payload whose transaction stayed unconfirmed too long is
//! reattached in a new transaction on fresh tips.

use hashbrown::HashSet;

use dag_core::validate::{ValidTransaction, ValidationError};
use dag_core::{Address, Payload, PayloadId};

use super::work::{Job, Step, Work};
use super::Protocol;
use crate::types::{Event, Origin};

impl Protocol {
    /// Starts reattaching the local payloads that are due (not while an earlier round is
    /// out with the driver). One payload per issuer per round, the lowest sequence number
    /// first: the next round's payload of that issuer then approves this one's new
    /// transaction (the issuer chain), instead of possibly going out ahead of it, landing
    /// before it in white-flag order and conflicting for the gap again.
    pub(super) fn reattach_lazy(&mut self, now: u64) {
        if let Some(w) = self.reattach_work(now) {
            self.reattaching = true;
            self.work.push_back(w);
        }
    }

    fn reattach_work(&mut self, now: u64) -> Option<Work> {
        if self.reattaching {
            return None;
        }
        let confirmed = self.ledger.confirmed_index();
        let mut due: Vec<(Address, u64, PayloadId)> = self
            .own
            .iter()
            .filter(|(pid, o)| {
                confirmed.saturating_sub(o.attached_at_milestone)
                    >= self.config.reattach_after_milestones
                    && (o.gap || o.reattachments < self.config.max_reattachments)
                    && !self.reattach_failed.contains(*pid)
            })
            .map(|(pid, o)| (o.payload.issuer, o.payload.seq, *pid))
            .collect();
        // Sorted: the result does not depend on the map's order.
        due.sort_unstable();
        due.dedup_by_key(|(issuer, _, _)| *issuer);
        let mut taken = HashSet::new();
        let mut txs = Vec::new();
        let mut payloads = Vec::new();
        for (_, _, pid) in due {
            let Some(payload) = self.own.get(&pid).map(|o| o.payload.clone()) else {
                continue;
            };
            // A payload whose seq another payload used (the losing side of a double spend)
            // is reattached too: its carrier may be unknown to the milestone issuer, and only
            // a confirmation makes it `conflicting` (final) on every node.
            let Ok(parents) = self.parents_for(Some(&payload), now, &mut taken) else {
                self.reattach_failed.insert(pid);
                continue;
            };
            txs.push(self.build(parents, Payload::Signed(payload), now));
            payloads.push(pid);
        }
        if txs.is_empty() {
            return None;
        }
        Some(Work::new(
            txs,
            self.genesis.pow_difficulty,
            now,
            Job::Reattach { payloads },
        ))
    }

    /// A round of reattachments came back: ingest them, then the next round (if this one
    /// attached anything).
    pub(super) fn reattach_done(
        &mut self,
        payloads: Vec<PayloadId>,
        verdicts: Vec<Result<ValidTransaction, ValidationError>>,
        now: u64,
    ) -> Step {
        self.reattaching = false;
        let confirmed = self.ledger.confirmed_index();
        let mut batch = Vec::new();
        let mut progress = false;
        for (pid, v) in payloads.into_iter().zip(verdicts) {
            let r = match v {
                Ok(vt) => self
                    .ingest_one(vt, Origin::Peer, None, now, &mut batch)
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match r {
                Ok(id) => {
                    progress = true;
                    if let Some(o) = self.own.get_mut(&pid) {
                        o.tx = id;
                        o.attached_at_milestone = confirmed;
                        if o.gap {
                            o.gap = false;
                            o.gap_reattachments += 1;
                        } else {
                            o.reattachments += 1;
                        }
                    }
                    self.events.push_back(Event::Reattached {
                        payload: pid,
                        tx: id,
                    });
                }
                Err(e) => {
                    tracing::warn!(payload = %pid, error = %e, "reattachment failed");
                    self.reattach_failed.insert(pid);
                }
            }
        }
        self.queue_batch(batch);
        if !progress || self.halted.is_some() {
            return Step::Idle;
        }
        match self.reattach_work(now) {
            Some(w) => {
                self.reattaching = true;
                Step::Work(w)
            }
            None => Step::Idle,
        }
    }
}
