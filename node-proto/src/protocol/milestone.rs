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

/// Committee messages kept for a driver that does not poll them (a node without peering).
const MAX_COMMITTEE_OUTPUT: usize = 256;

/// White-flag application of the unconfirmed cone of `parents` to `ledger` as milestone
/// `index` (the issuing and the receiving path share it).
pub(super) fn apply_parents(
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
        if self.committee.is_some() {
            self.committee_tick(now);
            if let Some(c) = self.committee.as_mut() {
                c.trim_output(MAX_COMMITTEE_OUTPUT);
            }
        } else if self.sole_signer.is_some()
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
        if self.committee.is_some() {
            // A member of a committee of several proposes; the milestone is published
            // once k members signed it.
            self.propose(index, parents, now);
            return None;
        }
        let signer = self.sole_signer?;
        let (_, key) = self.config.milestone_signer.clone()?;
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
            committee_update: self.update_to_carry(index),
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
        let parents = vt.tx().parents;
        let mut batch = Vec::new();
        let Some((id, ms_ref)) = self.attach_own(vt, Some(index), now, &mut batch) else {
            self.halt(format!("own milestone {index} could not be attached"));
            return Step::Idle;
        };
        self.latest_milestone = self.latest_milestone.max(index);
        self.queue_batch(batch);
        self.emit_solid(id, parents);
        self.finish_milestone(index, ms_ref, id, parents, &milestone, applied);
        Step::Idle
    }

    /// Applies every solid milestone that is next in line.
    pub(super) fn apply_ready_milestones(&mut self) {
        while self.halted.is_none() {
            let index = self.ledger.confirmed_index() + 1;
            let Some((ms_ref, milestone, parents)) = self.milestones.remove(&index) else {
                break;
            };
            if self.previous_not_seen_yet(&milestone) {
                // It follows another copy of the previous milestone (a committee may publish
                // one milestone twice), which this node has not received: fetch it first.
                self.missing.push(milestone.previous);
                self.milestones.insert(index, (ms_ref, milestone, parents));
                break;
            }
            if let Some(why) = self.rotation_refusal(&milestone, &parents) {
                self.halt(format!("milestone {index}: {why}"));
                break;
            }
            // Applied with the ledger's undo log: on a mismatch the ledger goes back to
            // what it was (O(touched entries), where a clone cost O(accounts)).
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
                    self.halt(format!("milestone {index}: {e}"));
                    break;
                }
            };
            let undo = self.ledger.take_undo();
            if let Some(why) = self.commitment_mismatch(&milestone, &applied, &self.ledger) {
                if let Err(e) = self.ledger.revert_last(undo) {
                    self.halt(format!("milestone {index}: {why}; and {e}"));
                } else {
                    self.halt(format!("milestone {index}: {why}"));
                }
                break;
            }
            let id = self.tangle.id(ms_ref);
            self.finish_milestone(index, ms_ref, id, parents, &milestone, applied);
        }
    }

    /// Whether `m` names as its previous milestone a transaction this node does not know,
    /// while it applied another one at that index (a copy it has not received yet).
    pub(super) fn previous_not_seen_yet(&self, m: &Milestone) -> bool {
        m.index > 1
            && self
                .milestone_tx(m.index - 1)
                .is_some_and(|t| t != m.previous)
            && !self.tangle.is_known(&m.previous)
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
    pub(super) fn commitment_mismatch(
        &self,
        m: &Milestone,
        applied: &ConeOutcome,
        ledger: &dag_core::ledger::Ledger,
    ) -> Option<String> {
        let previous = self.milestone_tx(m.index - 1);
        if previous != Some(m.previous) && !self.is_copy_of_applied(m.index - 1, &m.previous) {
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
                let applied_n = applied
                    .outcome
                    .outcomes
                    .iter()
                    .filter(|(_, o)| o.is_applied());
                let first: Vec<String> = applied
                    .cone
                    .iter()
                    .take(4)
                    .map(|r| self.tangle.id(*r).to_hex())
                    .collect();
                format!(
                    "{what} mismatch: computed {got}, milestone says {claimed} (this node's \
                     cone: {} transactions, {} payloads, {} applied; first {})",
                    applied.cone.len(),
                    applied.outcome.outcomes.len(),
                    applied_n.count(),
                    first.join(" ")
                )
            })
    }

    /// Marks the cone confirmed, queues the atomic store batch and events.
    pub(super) fn finish_milestone(
        &mut self,
        index: MilestoneIndex,
        ms_ref: TxRef,
        ms_id: TxId,
        parents: [TxId; 2],
        milestone: &Milestone,
        applied: ConeOutcome,
    ) {
        let ConeOutcome {
            mut cone,
            carriers,
            mut outcome,
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
        self.confirm_copies(index, ms_id);
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
            signers: milestone.signatures.iter().map(|(s, _)| *s).collect(),
        };
        match self.after_milestone_applied(milestone, parents) {
            Ok(rotation) => outcome.diff.rotation = rotation.map(Box::new),
            // The committee signed an update the rules refuse (checked before applying,
            // so only a bug gets here): stop before the store records it.
            Err(why) => {
                self.halt(why);
                return;
            }
        }
        self.writes.push_back(StoreWrite::Milestone(MilestoneBatch {
            record,
            confirmed,
            diff: outcome.diff,
        }));
        self.events.push_back(Event::Milestone(summary));
        self.committee_applied(milestone);
        while self
            .milestone_copies
            .first_key_value()
            .is_some_and(|(i, _)| i + 2 < index)
        {
            self.milestone_copies.pop_first();
        }
        self.prune_history();
    }

    /// Retention ([`ProtocolConfig::keep_milestones`], tightened by
    /// [`Protocol::set_retention_limit`]): drops the Tangle below the cones of the kept
    /// milestones. The cut never passes the oldest unconfirmed transaction, so nothing
    /// unconfirmed (a pending payload, a reattachment, a tip) and nothing it approves is
    /// dropped; the confirmed transactions kept ones approve stay known as solid entry
    /// points.
    pub(super) fn prune_history(&mut self) {
        // At least two (`effective_retention`): the last applied milestone's transaction
        // stays held (the next milestone names it as its previous one).
        let Some(keep) = self.effective_retention() else {
            return;
        };
        let target = self.ledger.confirmed_index().saturating_sub(keep);
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

#[cfg(test)]
mod retention_tests {
    //! [`Protocol::set_retention_limit`]: the driver's tighter retention (the disk target).

    use super::*;
    use crate::types::{Origin, ProtocolConfig};
    use dag_core::{
        codec, pow, Address, Allocation, Body, Genesis, Keypair, Transaction, TX_VERSION,
    };
    use tip_selection::SelectorKind;

    const T0: u64 = 1_700_000_000_000;

    fn genesis(committee: &Keypair, faucet: &Keypair) -> Genesis {
        Genesis {
            network_name: "retention-test".into(),
            timestamp: T0,
            pow_difficulty: 2,
            timestamp_window_ms: 60_000,
            committee: vec![committee.address()],
            threshold: 1,
            allocations: vec![Allocation {
                address: faucet.address(),
                amount: 1_000_000,
            }],
        }
    }

    fn node(config: impl FnOnce(&mut ProtocolConfig)) -> (Protocol, Keypair) {
        let committee = Keypair::from_seed(&[1; 32]);
        let faucet = Keypair::from_seed(&[2; 32]);
        let g = genesis(&committee, &faucet);
        let mut c = ProtocolConfig {
            milestone_signer: Some((0, committee)),
            faucet: Some(faucet.clone()),
            selector: SelectorKind::Urts,
            ..ProtocolConfig::default()
        };
        config(&mut c);
        let ledger = Ledger::from_genesis(&g).unwrap();
        (Protocol::new(g, c, ledger).unwrap(), faucet)
    }

    fn pay(from: &Keypair, net: u64, seq: u64, to: Address) -> SignedPayload {
        let body = Body::Pay {
            to,
            amount: 1,
            memo: vec![],
        };
        SignedPayload::sign(from, net, seq, body)
    }

    /// What the driver does: submit, tick, run the work, drain the writes.
    fn submit(p: &mut Protocol, payloads: Vec<SignedPayload>, now: u64) {
        for r in p.submit_payloads_inline(payloads, now) {
            r.unwrap();
        }
    }

    fn tick(p: &mut Protocol, now: u64) {
        p.handle_tick(now);
        p.run_work_inline();
    }

    fn drain(p: &mut Protocol) -> Vec<StoreWrite> {
        while p.poll_event().is_some() {}
        std::iter::from_fn(|| p.poll_store_write()).collect()
    }

    /// Four payments before each milestone and one after it (unconfirmed across it).
    fn run(p: &mut Protocol, faucet: &Keypair, from: u64, to: u64) {
        let net = p.network_id();
        for m in from..to {
            let now = T0 + (m + 1) * 1000;
            let ps: Vec<_> = (0..5)
                .map(|k| pay(faucet, net, m * 5 + k, Address([3; 32])))
                .collect();
            submit(p, ps[..4].to_vec(), now - 500);
            tick(p, now);
            submit(p, ps[4..].to_vec(), now + 1);
            drain(p);
        }
    }

    /// Every unconfirmed transaction is solid and its parents are known.
    fn assert_unconfirmed_solid(p: &Protocol) {
        let t = p.tangle();
        for r in t.unconfirmed() {
            let id = t.id(r);
            assert!(t.is_solid(&id), "unconfirmed {id} lost its solidity");
            for parent in t.parents(r) {
                assert!(t.is_known(&t.id(parent)), "a parent of {id} was dropped");
            }
        }
    }

    #[test]
    fn a_limit_prunes_an_archive_down_to_it_and_never_below_two() {
        let (mut p, faucet) = node(|_| {});
        let (mut archive, _) = node(|_| {});
        run(&mut p, &faucet, 0, 20);
        run(&mut archive, &faucet, 0, 20);
        assert_eq!((p.oldest_milestone(), p.effective_retention()), (1, None));
        let before = p.tangle().len();

        // Tighter than what is held: pruned at once, the prune handed to the store.
        p.set_retention_limit(Some(5));
        let writes = drain(&mut p);
        let prune = writes
            .iter()
            .find_map(|w| match w {
                StoreWrite::Pruned(b) => Some(b),
                _ => None,
            })
            .expect("the prune goes to the store");
        assert_eq!(prune.milestone, 15);
        assert_eq!((p.held_milestones(), p.oldest_milestone()), (5, 16));
        assert!(p.tangle().len() < before);
        assert_unconfirmed_solid(&p);

        // Below the floor: two milestones stay.
        for limit in [1, 0] {
            p.set_retention_limit(Some(limit));
            drain(&mut p);
            assert_eq!(p.effective_retention(), Some(2));
            assert_eq!((p.held_milestones(), p.oldest_milestone()), (2, 19));
            assert_unconfirmed_solid(&p);
        }
        // It keeps pruning to the limit as milestones come, with the archive's results.
        run(&mut p, &faucet, 20, 30);
        run(&mut archive, &faucet, 20, 30);
        assert_eq!(p.held_milestones(), 2);
        assert_eq!(p.ledger().digest(), archive.ledger().digest());
        assert_eq!(p.ledger().balance(&Address([3; 32])), 150 - 1);

        // Lifted: nothing more is pruned.
        p.set_retention_limit(None);
        run(&mut p, &faucet, 30, 35);
        assert_eq!((p.held_milestones(), p.oldest_milestone()), (7, 29));
    }

    #[test]
    fn the_stricter_of_the_limit_and_keep_milestones_applies() {
        let (mut p, faucet) = node(|c| c.keep_milestones = Some(8));
        run(&mut p, &faucet, 0, 20);
        assert_eq!(p.held_milestones(), 8);
        p.set_retention_limit(Some(50));
        assert_eq!(p.effective_retention(), Some(8));
        run(&mut p, &faucet, 20, 25);
        assert_eq!(p.held_milestones(), 8);
        p.set_retention_limit(Some(3));
        assert_eq!(p.effective_retention(), Some(3));
        assert_eq!(p.held_milestones(), 3);
        p.set_retention_limit(None);
        assert_eq!(p.effective_retention(), Some(8));
        run(&mut p, &faucet, 25, 40);
        assert_eq!(p.held_milestones(), 8);
    }

    /// An old unconfirmed transaction holds the cut: the tightest limit does not drop it or
    /// anything it approves, and it is confirmed later with the right outcome.
    #[test]
    fn a_limit_never_cuts_what_an_unconfirmed_transaction_needs() {
        let (mut p, faucet) = node(|c| {
            // Tips older than max depth are not swept, so a lazy transaction stays
            // unconfirmed; no reattachment of it during the test.
            c.selector = SelectorKind::Rurts;
            c.max_sweep_tips = 0;
            c.reattach_after_milestones = 1_000;
        });
        run(&mut p, &faucet, 0, 20);
        let net = p.network_id();
        // A payment of another device attached to milestone 1's and 2's transactions, far
        // below max depth: restricted URTS never picks it.
        let device = Keypair::from_seed(&[9; 32]);
        let parent = p.milestone_tx(2).unwrap();
        let other = p.milestone_tx(1).unwrap();
        let now = T0 + 20_600;
        let mut tx = Transaction {
            version: TX_VERSION,
            network_id: net,
            parents: [parent, other],
            timestamp: now,
            payload: Payload::Signed(pay(&device, net, 0, Address([4; 32]))),
            nonce: 0,
        };
        pow::solve(&mut tx, 2);
        let vt = p
            .validator()
            .validate_one(&codec::encode(&tx), now)
            .unwrap();
        let lazy = p.handle_transactions(vec![vt], Origin::Local, now)[0]
            .clone()
            .unwrap();
        run(&mut p, &faucet, 20, 30);
        let r = p.tangle().lookup(&lazy).expect("held");
        assert!(
            p.tangle().unconfirmed().any(|u| u == r),
            "the lazy transaction was swept"
        );

        p.set_retention_limit(Some(2));
        drain(&mut p);
        assert_eq!(p.effective_retention(), Some(2));
        // The cut stopped at the lazy transaction (entered after milestone 20, so what
        // milestone 21 confirmed may go), short of the two-milestone target (29); the old
        // transactions it approves stay known (as solid entry points).
        assert!(
            p.tangle().unconfirmed().any(|u| u == r),
            "still unconfirmed"
        );
        assert!(p.tangle().is_solid(&lazy));
        assert!(p.tangle().is_known(&parent) && p.tangle().is_known(&other));
        assert!(
            (2..=22).contains(&p.oldest_milestone()),
            "cut at {}",
            p.oldest_milestone()
        );
        assert!(p.held_milestones() > 2);
        assert_unconfirmed_solid(&p);
        // A node started from a snapshot of this one must know the lazy transaction's
        // confirmed parents, held or pruned, however old: the milestone that sweeps it
        // reaches them.
        let capture = p.capture_snapshot().expect("a milestone was applied");
        for old in [parent, other] {
            assert!(
                capture.entry_points.iter().any(|(id, _)| *id == old),
                "{old} is not an entry point of the snapshot"
            );
        }
    }
}
