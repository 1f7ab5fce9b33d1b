//! The timer, and milestones: issuing them (tip sweep, milestone transaction; their proof of
//! work is the driver's), applying received ones white-flag, confirming their cones.

use hashbrown::{HashMap, HashSet};

use dag_core::ledger::{ApplyError, Ledger, PayloadOutcome};
use dag_core::store::{
    next_payload_status, ConfirmedTx, MilestoneBatch, MilestoneRecord, PayloadStatus, PruneBatch,
};
use dag_core::tangle::Tangle;
use dag_core::validate::{ValidTransaction, ValidationError};
use dag_core::whiteflag::{apply_cone, ConeOutcome};
use dag_core::{
    Milestone, MilestoneIndex, Payload, PayloadId, SignedPayload, TangleView, TxId, TxRef,
};
use tip_selection::TipSelector;

use super::work::{Job, Step, Work};
use super::{payload_of, Protocol};
use crate::types::{Event, MilestoneSummary, StoreWrite};

/// Reattachments for a sequence gap that go out at the next tick; later ones wait
/// [`crate::ProtocolConfig::reattach_after_milestones`].
const GAP_FAST_RETRIES: u32 = 3;

/// White-flag application of the unconfirmed cone of `parents` to `ledger` as milestone
/// `index` (the issuing and the receiving path share it).
fn apply_parents(
    tangle: &Tangle,
    unconfirmed: &HashMap<TxRef, (PayloadId, SignedPayload)>,
    ledger: &mut Ledger,
    index: MilestoneIndex,
    parents: &[TxId; 2],
) -> Result<ConeOutcome, ApplyError> {
    let roots: Vec<TxRef> = parents.iter().filter_map(|p| tangle.lookup(p)).collect();
    apply_cone(tangle, ledger, index, &roots, payload_of(unconfirmed))
}

impl Protocol {
    /// Periodic work: drops transactions that waited too long for parents, starts issuing a
    /// milestone when one is due (committee nodes), starts reattaching lazy local payloads.
    /// The proof of work both need is queued for the driver: drain
    /// [`Protocol::poll_work`].
    pub fn handle_tick(&mut self, now: u64) {
        self.expire_pending(now);
        if self.halted.is_some() {
            return;
        }
        if self.config.milestone_signer.is_some()
            && !self.issuing
            && now.saturating_sub(self.last_issued_at) >= self.config.milestone_interval_ms
        {
            self.last_issued_at = now;
            self.issue_milestone(now);
        }
        self.reattach_failed.clear();
        self.reattach_lazy(now);
    }

    /// Starts issuing the next milestone: the tip sweep's first level, or (nothing to
    /// sweep) the milestone itself on two selected tips.
    pub(super) fn issue_milestone(&mut self, now: u64) {
        let index = self.ledger.confirmed_index() + 1;
        if self.milestones.contains_key(&index) {
            // Another committee member's milestone is waiting to be applied.
            return;
        }
        self.issuing = true;
        let work = match self.sweep_level(now) {
            Some(level) => self.sweep_work(index, level, now),
            None => self.milestone_on_tips(index, now),
        };
        self.queue_issuing(work);
    }

    pub(super) fn queue_issuing(&mut self, work: Option<Work>) {
        match work {
            Some(w) => self.work.push_back(w),
            None => self.issuing = false,
        }
    }

    /// The unconfirmed tips the sweep approves (newest first, at most `max_sweep_tips`);
    /// `None` when there are fewer than three (nothing to merge).
    pub(super) fn sweep_level(&self, _now: u64) -> Option<Vec<TxRef>> {
        if self.config.max_sweep_tips < 3 {
            return None;
        }
        let mut level: Vec<TxRef> = self
            .tangle
            .tips()
            .iter()
            .copied()
            .filter(|r| self.tangle.confirmed_by(*r).is_none())
            .collect();
        if level.len() < 3 {
            return None;
        }
        level.sort_unstable_by(|a, b| b.cmp(a));
        level.truncate(self.config.max_sweep_tips);
        Some(level)
    }

    /// One level of the sweep's binary merge tree: an empty transaction approving each pair
    /// of `level` (an odd last one is carried up). The driver solves the level's proof of
    /// work in parallel.
    pub(super) fn sweep_work(
        &mut self,
        index: MilestoneIndex,
        level: Vec<TxRef>,
        now: u64,
    ) -> Option<Work> {
        let txs: Vec<_> = level
            .chunks(2)
            .filter(|pair| pair.len() == 2)
            .map(|pair| {
                self.build(
                    [self.tangle.id(pair[0]), self.tangle.id(pair[1])],
                    Payload::Empty,
                    now,
                )
            })
            .collect();
        let carry = (level.len() % 2 == 1).then(|| level[level.len() - 1]);
        Some(Work::new(
            txs,
            self.genesis.pow_difficulty,
            now,
            Job::Sweep { index, carry },
        ))
    }

    /// A level of the sweep came back: attach it, then the next level or the milestone.
    pub(super) fn sweep_done(
        &mut self,
        index: MilestoneIndex,
        carry: Option<TxRef>,
        verdicts: Vec<Result<ValidTransaction, ValidationError>>,
        now: u64,
    ) -> Step {
        if !self.still_issuing(index) {
            return Step::Idle;
        }
        let mut batch = Vec::new();
        let mut next = Vec::with_capacity(verdicts.len() + 1);
        let mut failed = false;
        for v in verdicts {
            match v
                .ok()
                .and_then(|vt| self.attach_own(vt, None, now, &mut batch))
            {
                Some((_, r)) => next.push(r),
                None => failed = true,
            }
        }
        self.queue_batch(batch);
        next.extend(carry);
        let work = if failed || next.len() < 2 {
            // As if there had been nothing to sweep.
            self.milestone_on_tips(index, now)
        } else if next.len() > 2 {
            self.sweep_work(index, next, now)
        } else {
            let parents = [self.tangle.id(next[0]), self.tangle.id(next[1])];
            self.milestone_work(index, parents, now)
        };
        self.issuing_step(work)
    }

    pub(super) fn issuing_step(&mut self, work: Option<Work>) -> Step {
        match work {
            Some(w) => Step::Work(w),
            None => {
                self.issuing = false;
                Step::Idle
            }
        }
    }

    /// Whether the issuance of `index` can go on: not halted, and no milestone of that
    /// index was applied or received meanwhile.
    pub(super) fn still_issuing(&mut self, index: MilestoneIndex) -> bool {
        let ok = self.halted.is_none()
            && self.ledger.confirmed_index() + 1 == index
            && !self.milestones.contains_key(&index);
        if !ok {
            self.issuing = false;
        }
        ok
    }

    pub(super) fn milestone_on_tips(&mut self, index: MilestoneIndex, now: u64) -> Option<Work> {
        let parents = self.parents_for(None, now, &mut HashSet::new()).ok()?;
        self.milestone_work(index, parents, now)
    }

    /// Applies the cone of `parents` to the ledger white-flag, signs the milestone with the
    /// resulting digest and hands its transaction to the driver for proof of work.
    pub(super) fn milestone_work(
        &mut self,
        index: MilestoneIndex,
        parents: [TxId; 2],
        now: u64,
    ) -> Option<Work> {
        let (signer, key) = self.config.milestone_signer.clone()?;
        let applied = apply_parents(
            &self.tangle,
            &self.unconfirmed_payloads,
            &mut self.ledger,
            index,
            &parents,
        );
        let applied = match applied {
            Ok(o) => o,
            Err(e) => {
                self.halt(format!("cannot apply own milestone {index}: {e}"));
                return None;
            }
        };
        let Some(previous) = self.milestone_tx(index - 1) else {
            self.halt(format!(
                "cannot issue milestone {index}: the transaction of milestone {} is unknown",
                index - 1
            ));
            return None;
        };
        let (confirmed_root, applied_root) = applied.roots(&self.tangle);
        let mut milestone = Milestone {
            index,
            timestamp: now,
            previous,
            confirmed_root,
            applied_root,
            state_root: self.ledger.state_root(),
            ledger_digest: applied.outcome.ledger_digest,
            signatures: Vec::new(),
        };
        let msg =
            dag_core::crypto::milestone_signing_message(self.network_id, &parents, &milestone);
        milestone.signatures.push((signer, key.sign(&msg)));
        let tx = self.build(parents, Payload::Milestone(milestone.clone()), now);
        Some(Work::new(
            vec![tx],
            self.genesis.pow_difficulty,
            now,
            Job::Milestone {
                index,
                milestone: Box::new(milestone),
                applied: Box::new(applied),
            },
        ))
    }

    /// The milestone transaction came back: attach it and confirm its cone. (The ledger
    /// already holds the cone's effects: a failure here halts.)
    pub(super) fn milestone_done(
        &mut self,
        index: MilestoneIndex,
        milestone: Milestone,
        applied: ConeOutcome,
        verdicts: Vec<Result<ValidTransaction, ValidationError>>,
        now: u64,
    ) -> Step {
        self.issuing = false;
        let vt = match verdicts.into_iter().next() {
            Some(Ok(vt)) => vt,
            Some(Err(e)) => {
                self.halt(format!("own milestone {index} is invalid: {e}"));
                return Step::Idle;
            }
            None => {
                self.halt(format!(
                    "own milestone {index} came back without its transaction"
                ));
                return Step::Idle;
            }
        };
        let mut batch = Vec::new();
        let Some((id, ms_ref)) = self.attach_own(vt, Some(index), now, &mut batch) else {
            self.halt(format!("own milestone {index} could not be attached"));
            return Step::Idle;
        };
        self.latest_milestone = self.latest_milestone.max(index);
        self.queue_batch(batch);
        self.emit_solid(id);
        self.finish_milestone(index, ms_ref, id, &milestone, applied);
        Step::Idle
    }

    /// Applies every solid milestone that is next in line.
    pub(super) fn apply_ready_milestones(&mut self) {
        while self.halted.is_none() {
            let index = self.ledger.confirmed_index() + 1;
            let Some((ms_ref, milestone, parents)) = self.milestones.remove(&index) else {
                break;
            };
            // Apply to a copy: on a digest mismatch the ledger must stay as it was.
            let mut next = self.ledger.clone();
            let applied = apply_parents(
                &self.tangle,
                &self.unconfirmed_payloads,
                &mut next,
                index,
                &parents,
            );
            let applied = match applied {
                Ok(o) => o,
                Err(e) => {
                    self.halt(format!("milestone {index}: {e}"));
                    break;
                }
            };
            if let Some(why) = self.commitment_mismatch(&milestone, &applied, &next) {
                self.halt(format!("milestone {index}: {why}"));
                break;
            }
            self.ledger = next;
            let id = self.tangle.id(ms_ref);
            self.finish_milestone(index, ms_ref, id, &milestone, applied);
        }
    }

    /// The transaction carrying applied milestone `index` ([`TxId::GENESIS`] for 0), if held.
    pub(super) fn milestone_tx(&self, index: MilestoneIndex) -> Option<TxId> {
        if index == 0 {
            return Some(TxId::GENESIS);
        }
        if let Some((i, id)) = self.last_milestone {
            if i == index {
                return Some(id);
            }
        }
        let r = self.tangle.milestone(index)?;
        let id = self.tangle.id(r);
        (id != TxId::GENESIS).then_some(id)
    }

    /// What a received milestone claims and its cone, applied to `ledger`, does not give:
    /// the chain, the Merkle roots of what it confirms and applies, the state root, the
    /// ledger digest. `None` if everything matches.
    fn commitment_mismatch(
        &self,
        m: &Milestone,
        applied: &ConeOutcome,
        ledger: &dag_core::ledger::Ledger,
    ) -> Option<String> {
        let previous = self.milestone_tx(m.index - 1);
        if previous != Some(m.previous) {
            return Some(format!(
                "it follows {}, but milestone {} is {}",
                m.previous,
                m.index - 1,
                previous.map_or("unknown".to_string(), |p| p.to_string())
            ));
        }
        let (confirmed_root, applied_root) = applied.roots(&self.tangle);
        let checks = [
            (
                "ledger digest",
                applied.outcome.ledger_digest,
                m.ledger_digest,
            ),
            ("confirmed root", confirmed_root, m.confirmed_root),
            ("applied root", applied_root, m.applied_root),
            ("state root", ledger.state_root(), m.state_root),
        ];
        checks
            .iter()
            .find(|(_, got, claimed)| got != claimed)
            .map(|(what, got, claimed)| {
                format!("{what} mismatch: computed {got}, milestone says {claimed}")
            })
    }

    /// Marks the cone confirmed, queues the atomic store batch and events.
    pub(super) fn finish_milestone(
        &mut self,
        index: MilestoneIndex,
        ms_ref: TxRef,
        ms_id: TxId,
        milestone: &Milestone,
        applied: ConeOutcome,
    ) {
        let ConeOutcome {
            mut cone,
            carriers,
            outcome,
        } = applied;
        // The payload ids of the carriers (before they are forgotten below).
        let payloads: Vec<(TxId, PayloadId)> = carriers
            .iter()
            .filter_map(|r| {
                let (pid, _) = self.unconfirmed_payloads.get(r)?;
                Some((self.tangle.id(*r), *pid))
            })
            .collect();
        debug_assert_eq!(payloads.len(), carriers.len());
        cone.push(ms_ref);
        if let Err(e) = self.tangle.confirm(&cone, index, ms_ref) {
            self.halt(format!("confirming milestone {index}: {e}"));
            return;
        }
        self.selector.on_confirmed(&self.tangle, index);
        // `payloads` and the outcomes both follow the cone's order (the ledger applied the
        // cone's payloads in it), so one cursor pairs them with the cone's transactions.
        debug_assert!(payloads
            .iter()
            .zip(&outcome.outcomes)
            .all(|((a, _), (b, _))| a == b));
        let mut carried = payloads
            .iter()
            .zip(&outcome.outcomes)
            .map(|((tx, pid), (_, o))| (*tx, *pid, *o))
            .peekable();
        let mut confirmed = Vec::with_capacity(cone.len());
        let delays_ms = cone
            .iter()
            .map(|r| milestone.timestamp.saturating_sub(self.tangle.arrival(*r)))
            .collect();
        let (mut applied, mut conflicting) = (0, 0);
        for r in &cone {
            let tx = self.tangle.id(*r);
            let payload = carried
                .next_if(|(t, _, _)| *t == tx)
                .map(|(_, pid, o)| (pid, o));
            if let Some((pid, o)) = payload {
                if o.is_applied() {
                    applied += 1;
                } else {
                    conflicting += 1;
                }
                // What this carrier's outcome makes of the payload (the store folds the
                // outcomes of all carriers the same way).
                let status = next_payload_status(PayloadStatus::Pending, index, tx, o);
                self.events.push_back(Event::Payload {
                    payload: pid,
                    status,
                });
                let latest_carrier = self.own.get(&pid).is_some_and(|own| own.tx == tx);
                match o {
                    PayloadOutcome::Conflicting(reason) if !reason.is_final() => {
                        // An earlier payload of the issuer was ordered after it (or is
                        // still missing): reattach the latest carrier so it can apply
                        // once the gap is filled: at the next tick the first times, then
                        // every `reattach_after_milestones` (a gap can last long, e.g. a
                        // partition; the payload is never given up).
                        if latest_carrier {
                            if let Some(own) = self.own.get_mut(&pid) {
                                own.gap = true;
                                if own.gap_reattachments < GAP_FAST_RETRIES {
                                    own.attached_at_milestone = 0;
                                } else {
                                    own.attached_at_milestone = index;
                                }
                            }
                        }
                    }
                    // Applied, or conflicting for good: no copy can apply any more.
                    _ => {
                        self.own.remove(&pid);
                    }
                }
            }
            self.forget_unconfirmed(*r);
            confirmed.push(ConfirmedTx { tx, payload });
        }
        let record = MilestoneRecord {
            index,
            tx: ms_id,
            timestamp: milestone.timestamp,
            ledger_digest: outcome.ledger_digest,
        };
        let summary = MilestoneSummary {
            record,
            confirmed: confirmed.len(),
            applied,
            conflicting,
            delays_ms,
        };
        self.writes.push_back(StoreWrite::Milestone(MilestoneBatch {
            record,
            confirmed,
            diff: outcome.diff,
        }));
        self.events.push_back(Event::Milestone(summary));
        self.prune_history();
    }

    /// Retention ([`ProtocolConfig::keep_milestones`]): drops the Tangle below the cones of
    /// the kept milestones. The cut never passes the oldest unconfirmed transaction, so
    /// nothing unconfirmed (a pending payload, a reattachment, a tip) and nothing it
    /// approves is dropped; the confirmed transactions kept ones approve stay known as solid
    /// entry points.
    pub(super) fn prune_history(&mut self) {
        let Some(keep) = self.config.keep_milestones else {
            return;
        };
        // At least two: the last applied milestone's transaction stays held (the next
        // milestone names it as its previous one).
        let target = self.ledger.confirmed_index().saturating_sub(keep.max(2));
        if target <= self.pruned_index {
            return;
        }
        let Some(ms) = self.tangle.solid_milestone(target) else {
            return;
        };
        let mut cut = TxRef(ms.0 + 1);
        if let Some(u) = self.tangle.unconfirmed().next() {
            cut = cut.min(u);
        }
        if cut <= self.tangle.root() {
            return;
        }
        let root = self.tangle.root();
        let txs: Vec<TxId> = (root.0..cut.0).map(|r| self.tangle.id(TxRef(r))).collect();
        match self.tangle.prune_before(cut) {
            Ok(_) => {
                // Every milestone after the newest one that confirmed a dropped transaction
                // still has its whole cone.
                self.pruned_index = self.pruned_index.max(self.tangle.pruned_index());
                self.writes.push_back(StoreWrite::Pruned(PruneBatch {
                    milestone: self.pruned_index,
                    txs,
                    entry_points: self.tangle.entry_points(),
                }));
            }
            Err(e) => tracing::warn!(error = %e, "pruning skipped"),
        }
    }

    pub(super) fn halt(&mut self, reason: String) {
        tracing::error!(%reason, "confirmation halted");
        self.halted = Some(reason.clone());
        self.events.push_back(Event::Halted(reason));
    }
}
