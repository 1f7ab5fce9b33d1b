//! Payloads this node attaches: submission (parents, issuer chaining, distinct tips per
//! batch), transaction building, and the dev faucet's sequence numbers.

use hashbrown::{HashMap, HashSet};

use dag_core::validate::{ValidTransaction, ValidationError};
use dag_core::{
    Address, Body, Payload, PayloadId, SignedPayload, TangleView, Transaction, TxId, TxRef,
    TX_VERSION,
};
use tip_selection::{TipSelector, Urts};

use super::work::{Job, Step, Submission, Work};
use super::Protocol;
use crate::types::{Origin, Refusal, RejectReason, Submitted};

/// A payload prepared for attachment.
enum Prepared {
    /// Its payload id and transaction, still needing proof of work and validation.
    Ready(PayloadId, Transaction),
    /// It follows a payload of the same issuer in the same batch: prepared again after that
    /// one is ingested, so it can approve it.
    Deferred(SignedPayload),
}

impl Protocol {
    // ----- local payloads -----

    /// Attaches local payloads (submitted by clients, or the faucet's): checks each is not a
    /// replay or duplicate, picks its parents (the issuer's previous pending payload as
    /// trunk when this one follows it, so white-flag order keeps the device's sequence),
    /// builds its transaction stamped `now`, and hands the transactions to the driver for
    /// proof of work and validation. A payload that follows another of the same issuer in
    /// the batch waits for a later round, so it can approve that one. The returned step
    /// ends in [`Step::Submitted`] with one result per payload, in order.
    pub fn submit_payloads(&mut self, payloads: Vec<SignedPayload>, now: u64) -> Step {
        let n = payloads.len();
        self.submit_round(Submission {
            todo: payloads.into_iter().enumerate().collect(),
            slots: Vec::new(),
            out: vec![None; n],
            now,
        })
    }

    /// Prepares the next round of a submission: its work, or its results when nothing is
    /// left.
    pub(super) fn submit_round(&mut self, mut s: Submission) -> Step {
        while !s.todo.is_empty() {
            let (slots, batch): (Vec<usize>, Vec<SignedPayload>) = s.todo.drain(..).unzip();
            let mut txs = Vec::new();
            for (slot, r) in slots.into_iter().zip(self.prepare_payloads(batch, s.now)) {
                match r {
                    Ok(Prepared::Ready(pid, tx)) => {
                        s.slots.push((slot, pid));
                        txs.push(tx);
                    }
                    Ok(Prepared::Deferred(p)) => s.todo.push((slot, p)),
                    Err(e) => s.out[slot] = Some(Err(Refusal::Rejected(e))),
                }
            }
            if !txs.is_empty() {
                let (difficulty, now) = (self.genesis.pow_difficulty, s.now);
                return Step::Work(Work::new(txs, difficulty, now, Job::Submit(s)));
            }
        }
        Step::Submitted(
            s.out
                .into_iter()
                .map(|r| {
                    r.unwrap_or(Err(Refusal::Rejected(RejectReason::NoTips(
                        "not attached".into(),
                    ))))
                })
                .collect(),
        )
    }

    /// A round of a submission came back: ingest its valid transactions, then the next
    /// round.
    pub(super) fn submission_done(
        &mut self,
        mut s: Submission,
        verdicts: Vec<Result<ValidTransaction, ValidationError>>,
    ) -> Step {
        let mut valid = Vec::new();
        let mut valid_slots = Vec::new();
        for ((slot, pid), v) in s.slots.drain(..).zip(verdicts) {
            match v {
                Ok(vt) => {
                    valid.push(vt);
                    valid_slots.push((slot, pid));
                }
                Err(e) => s.out[slot] = Some(Err(Refusal::Invalid(e))),
            }
        }
        let results = self.handle_transactions(valid, Origin::Local, s.now);
        for ((slot, payload), r) in valid_slots.into_iter().zip(results) {
            s.out[slot] = Some(
                r.map(|tx| Submitted { payload, tx })
                    .map_err(Refusal::Rejected),
            );
        }
        self.submit_round(s)
    }

    /// Builds a transaction for each payload (see [`Protocol::submit_payloads`]).
    fn prepare_payloads(
        &mut self,
        payloads: Vec<SignedPayload>,
        now: u64,
    ) -> Vec<Result<Prepared, RejectReason>> {
        let mut in_batch: HashMap<Address, u64> = HashMap::new();
        // Tips already given to a payload of this batch: each payload should take tips of
        // its own, or a batch of B payloads would pile up B new tips while consuming far
        // fewer, and every milestone's sweep would have to merge them all.
        let mut taken = HashSet::new();
        payloads
            .into_iter()
            .map(|p| {
                if let Some(prev) = in_batch.get(&p.issuer) {
                    if p.seq > *prev {
                        in_batch.insert(p.issuer, p.seq);
                        return Ok(Prepared::Deferred(p));
                    }
                }
                in_batch.insert(p.issuer, p.seq);
                let pid = p.id();
                self.prepare_one(p, now, &mut taken)
                    .map(|tx| Prepared::Ready(pid, tx))
            })
            .collect()
    }

    pub(super) fn prepare_one(
        &mut self,
        p: SignedPayload,
        now: u64,
        taken: &mut HashSet<TxRef>,
    ) -> Result<Transaction, RejectReason> {
        if let Some(h) = &self.halted {
            return Err(RejectReason::Halted(h.clone()));
        }
        let next = self.ledger.next_seq(&p.issuer);
        if p.seq < next {
            return Err(RejectReason::Replay {
                issuer: p.issuer,
                seq: p.seq,
                next,
            });
        }
        let pid = p.id();
        if self.pending_payloads.contains_key(&pid) || self.own.contains_key(&pid) {
            return Err(RejectReason::DuplicatePayload(pid));
        }
        let parents = self.parents_for(Some(&p), now, taken)?;
        Ok(self.build(parents, Payload::Signed(p), now))
    }

    /// Two tips, at least `fresh` of them not in `taken` if a few draws of the selector
    /// find them (the untaken ones come first).
    pub(super) fn select_fresh(
        &mut self,
        now: u64,
        fresh: usize,
        taken: &HashSet<TxRef>,
    ) -> Result<[TxRef; 2], RejectReason> {
        const DRAWS: usize = 8;
        let mut first = None;
        let mut found: Vec<TxRef> = Vec::with_capacity(2);
        for _ in 0..DRAWS {
            // When no tip is eligible (a quiet network whose tips all expired or went lazy,
            // or the genesis root alone), approve any tips rather than stall: there is
            // nothing better to approve.
            let pair = match self.selector.select(&self.tangle, now, &mut self.rng) {
                Ok(p) => p,
                Err(_) => Urts::new()
                    .select(&self.tangle, now, &mut self.rng)
                    .map_err(|e| RejectReason::NoTips(e.to_string()))?,
            };
            first.get_or_insert(pair);
            for r in pair {
                if found.len() < 2 && !taken.contains(&r) && !found.contains(&r) {
                    found.push(r);
                }
            }
            if found.len() >= fresh {
                break;
            }
        }
        let Some(first) = first else {
            return Err(RejectReason::NoTips("no selection".into()));
        };
        Ok(match found[..] {
            [a, b] => [a, b],
            [a] => [a, if first[0] == a { first[1] } else { first[0] }],
            _ => first,
        })
    }

    pub(super) fn parents_for(
        &mut self,
        p: Option<&SignedPayload>,
        now: u64,
        taken: &mut HashSet<TxRef>,
    ) -> Result<[TxId; 2], RejectReason> {
        // One issuer's payloads are chained: seq n + 1 approves seq n's transaction, and
        // then needs one tip of its own instead of two.
        let prev = p.and_then(|p| {
            self.issuer_tail
                .get(&p.issuer)
                .filter(|(seq, _)| p.seq == seq + 1)
                .map(|(_, r)| *r)
        });
        let [a, b] = self.select_fresh(now, if prev.is_some() { 1 } else { 2 }, taken)?;
        let mut parents = [self.tangle.id(a), self.tangle.id(b)];
        let mut used = [Some(a), Some(b)];
        if let Some(r) = prev {
            let prev = self.tangle.id(r);
            if parents[0] != prev {
                // Keep the freshest tip with the predecessor.
                parents = [prev, parents[0]];
                used = [None, Some(a)];
            } else {
                used = [None, Some(b)];
            }
        }
        taken.extend(used.into_iter().flatten());
        if parents[0] == parents[1] && parents[0] != TxId::GENESIS {
            // Single-tip tangle: approve the tip and its trunk.
            let r = self
                .tangle
                .lookup(&parents[0])
                .expect("selected tips are held");
            let trunk = self.tangle.parents(r)[0];
            parents[1] = self.tangle.id(trunk);
            if parents[0] == parents[1] {
                parents = [TxId::GENESIS, TxId::GENESIS];
            }
        }
        Ok(parents)
    }

    pub(super) fn build(&self, parents: [TxId; 2], payload: Payload, now: u64) -> Transaction {
        Transaction {
            version: TX_VERSION,
            network_id: self.network_id,
            parents,
            timestamp: now,
            payload,
            nonce: 0,
        }
    }

    /// Dev faucet: a signed payment of `amount` to `to` from the faucet account, with the next
    /// free faucet sequence number (a seq given back by [`Protocol::release_faucet_seq`]
    /// first, so a refused payment never leaves a gap that would block every later one).
    /// Feed it to [`Protocol::submit_payloads`].
    pub fn faucet_payload(&mut self, to: Address, amount: u64) -> Option<SignedPayload> {
        let kp = self.config.faucet.clone()?;
        let next = self.ledger.next_seq(&kp.address());
        // Seqs below the ledger's next are used; forget them.
        self.faucet_free = self.faucet_free.split_off(&next);
        self.faucet_taken = self.faucet_taken.split_off(&next);
        let seq = match self.faucet_free.pop_first() {
            Some(s) => s,
            None => {
                let s = self.faucet_seq.max(next);
                self.faucet_seq = s.saturating_add(1);
                s
            }
        };
        Some(SignedPayload::sign(
            &kp,
            self.network_id,
            seq,
            Body::Pay {
                to,
                amount,
                memo: b"faucet".to_vec(),
            },
        ))
    }

    /// Gives back a faucet sequence number whose payload was refused before it entered the
    /// Tangle; the next faucet payment takes it. A seq that a transaction in the Tangle
    /// carries (even one whose write failed: it may have been gossiped) is never given back.
    pub fn release_faucet_seq(&mut self, seq: u64) {
        if !self.faucet_taken.contains(&seq) && seq < self.faucet_seq {
            self.faucet_free.insert(seq);
        }
    }

    /// Notes a payload of the faucet's key entering the Tangle: its seq is taken for good.
    /// Returns whether it is the faucet's.
    pub(super) fn note_faucet_seq(&mut self, p: &SignedPayload) -> bool {
        if self.config.faucet.as_ref().map(|k| k.address()) != Some(p.issuer) {
            return false;
        }
        self.faucet_seq = self.faucet_seq.max(p.seq.saturating_add(1));
        self.faucet_free.remove(&p.seq);
        if p.seq >= self.ledger.next_seq(&p.issuer) {
            self.faucet_taken.insert(p.seq);
        }
        true
    }

    /// After a restart: faucet seqs below the highest stored one that no stored payload
    /// carries were signed but lost before they were written; the next payments reuse them
    /// so that no gap blocks the faucet.
    pub(super) fn fill_faucet_gaps(&mut self) {
        let Some(kp) = &self.config.faucet else {
            return;
        };
        let next = self.ledger.next_seq(&kp.address());
        for seq in next..self.faucet_seq {
            if !self.faucet_taken.contains(&seq) {
                self.faucet_free.insert(seq);
            }
        }
    }
}
