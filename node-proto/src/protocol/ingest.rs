//! Transactions in: from clients, from peers (with the solidification buffer, its per-peer
//! quotas and expiry) and the core's own; bookkeeping of solid, unconfirmed transactions.

use dag_core::store::TxMeta;
use dag_core::tangle::InsertOutcome;
use dag_core::validate::{BatchValidator, ValidTransaction, ValidationError};
use dag_core::{Payload, PayloadId, SignedPayload, TangleView, Transaction, TxId, TxRef};
use tip_selection::TipSelector;

use super::{Buffered, OwnPayload, Protocol};
use crate::peering::{PeerKey, Verdict};
use crate::types::{Event, Origin, RejectReason, StoreWrite, StoredTx};

#[allow(unused_imports)] // doc links
use crate::types::ProtocolConfig;

/// Stage-1 validation of transactions received from peers, each with the id the peering
/// layer computed for it ([`crate::peering::Inbound::Transaction`]'s `id`, the hash of those
/// bytes: validation does not hash them again) and whether this node asked for it
/// (`solicited`). A transaction outside the timestamp window is refused, except
/// one this node asked for (a missing parent, a sync) from the past: that one is checked as
/// of its own timestamp. Never as of a time after ours: a future timestamp stays out of the
/// window, asked for or not. Stateless and expensive (signatures): the driver runs it on its
/// own threads, outside the core, and passes the verdicts to
/// [`Protocol::handle_peer_transactions`].
pub fn validate_from_peers(
    validator: &BatchValidator,
    txs: &[(&[u8], TxId, bool)],
    now: u64,
) -> Vec<Result<ValidTransaction, ValidationError>> {
    let bytes: Vec<&[u8]> = txs.iter().map(|(b, _, _)| *b).collect();
    let ids: Vec<TxId> = txs.iter().map(|(_, id, _)| *id).collect();
    validator
        .validate_batch_with_ids(&bytes, &ids, now)
        .into_iter()
        .zip(txs)
        .map(|(v, (bytes, id, solicited))| match v {
            Err(ValidationError::TimestampOutOfWindow { timestamp, .. })
                if *solicited && timestamp < now =>
            {
                validator.validate_one_known(bytes, Some(*id), timestamp)
            }
            v => v,
        })
        .collect()
}

impl Protocol {
    // ----- ingest -----

    /// Takes validated transactions; one verdict per input, in order. Accepted transactions
    /// are queued as a [`StoreWrite::Transactions`] batch; acknowledge them once it is
    /// flushed.
    pub fn handle_transactions(
        &mut self,
        txs: Vec<ValidTransaction>,
        origin: Origin,
        now: u64,
    ) -> Vec<Result<TxId, RejectReason>> {
        self.ingest_all(txs.into_iter().map(|vt| (vt, None)), origin, now)
    }

    /// [`Protocol::handle_transactions`] for transactions received from peers
    /// ([`Origin::Peer`]), checked by [`validate_from_peers`], each with its sender: one
    /// verdict per input for the peering layer (a transaction that failed validation counts
    /// against its sender; one refused for its time or by the node does not). A transaction
    /// whose parents are missing waits in the solidification buffer within its sender's
    /// quota ([`ProtocolConfig::max_pending_per_peer`]), and is stored and announced only
    /// once it is solid.
    pub fn handle_peer_transactions(
        &mut self,
        txs: Vec<(Result<ValidTransaction, ValidationError>, PeerKey)>,
        now: u64,
    ) -> Vec<Verdict> {
        let mut verdicts = vec![Verdict::Refused; txs.len()];
        let mut valid = Vec::with_capacity(txs.len());
        let mut slots = Vec::with_capacity(txs.len());
        for (i, (v, peer)) in txs.into_iter().enumerate() {
            match v {
                Ok(vt) => {
                    valid.push((vt, Some(peer)));
                    slots.push(i);
                }
                // Not the sender's fault: out of our time window, or a milestone signed by
                // a committee this node does not know yet (a rotation it has not applied).
                Err(ValidationError::TimestampOutOfWindow { .. })
                | Err(ValidationError::MilestoneCommitteeNotKnown { .. }) => {}
                Err(_) => verdicts[i] = Verdict::Invalid,
            }
        }
        let results = self.ingest_all(valid.into_iter(), Origin::Peer, now);
        for (slot, r) in slots.into_iter().zip(results) {
            verdicts[slot] = match r {
                Ok(_) => Verdict::New,
                Err(RejectReason::DuplicateTransaction(_)) => Verdict::Duplicate,
                Err(_) => Verdict::Refused,
            };
        }
        verdicts
    }

    pub(super) fn ingest_all(
        &mut self,
        txs: impl ExactSizeIterator<Item = (ValidTransaction, Option<PeerKey>)>,
        origin: Origin,
        now: u64,
    ) -> Vec<Result<TxId, RejectReason>> {
        let mut batch = Vec::new();
        let mut out = Vec::with_capacity(txs.len());
        for (vt, from) in txs {
            let r = self.ingest_one(vt, origin, from, now, &mut batch);
            out.push(r);
        }
        if !batch.is_empty() {
            self.writes.push_back(StoreWrite::Transactions(batch));
        }
        self.apply_ready_milestones();
        out
    }

    pub(super) fn ingest_one(
        &mut self,
        vt: ValidTransaction,
        origin: Origin,
        from: Option<PeerKey>,
        now: u64,
        batch: &mut Vec<StoredTx>,
    ) -> Result<TxId, RejectReason> {
        let id = vt.id();
        if self.tangle.is_known(&id) {
            return Err(RejectReason::DuplicateTransaction(id));
        }
        let tx = vt.tx();
        if origin == Origin::Api {
            for p in &tx.parents {
                if !self.tangle.is_solid(p) {
                    return Err(RejectReason::UnknownParent(*p));
                }
            }
        }
        let payload_id = match &tx.payload {
            // Replays and stale milestones are refused only from clients. A peer's copy goes
            // into the Tangle all the same (white-flag marks a replayed payload conflicting,
            // and a stale milestone is never applied): refusing it would leave everything
            // that approves it unsolid forever.
            Payload::Signed(p) => {
                let next = self.ledger.next_seq(&p.issuer);
                if p.seq < next && origin != Origin::Peer {
                    return Err(RejectReason::Replay {
                        issuer: p.issuer,
                        seq: p.seq,
                        next,
                    });
                }
                let pid = p.id();
                if origin == Origin::Api && self.pending_payloads.contains_key(&pid) {
                    // A client re-sending the same payload in a new transaction while the
                    // first is pending is a duplicate; the node reattaches by itself.
                    return Err(RejectReason::DuplicatePayload(pid));
                }
                Some(pid)
            }
            Payload::Milestone(m) => {
                if m.index <= self.ledger.confirmed_index() && origin != Origin::Peer {
                    return Err(RejectReason::Milestone {
                        index: m.index,
                        why: "already applied".into(),
                    });
                }
                None
            }
            Payload::Empty => None,
        };
        if let Some(peer) = from {
            let waits = !tx.parents.iter().all(|p| self.tangle.is_solid(p));
            if waits
                && self.pending_by_peer.get(&peer).copied().unwrap_or(0)
                    >= self.config.max_pending_per_peer
            {
                return Err(RejectReason::PendingQuota);
            }
        }
        let ms = tx.milestone().map(|m| m.index);
        let outcome = self
            .tangle
            .insert(id, tx.parents, ms, now)
            .map_err(RejectReason::Tangle)?;
        let (tx, id, bytes) = vt.into_parts();
        let node_signed = match &tx.payload {
            Payload::Signed(p) => self.note_faucet_seq(p),
            _ => false,
        };
        // Stored now if solid; a waiting transaction is stored when it becomes solid.
        let bytes = if matches!(outcome, InsertOutcome::Solid(_)) {
            batch.push(StoredTx {
                id,
                bytes,
                meta: TxMeta::new(now, true, payload_id),
                node_signed,
            });
            None
        } else {
            Some(bytes)
        };
        match outcome {
            InsertOutcome::Solid(refs) => {
                let mut released = Vec::new();
                for (rid, r) in refs {
                    if rid == id {
                        self.after_solid(r, &tx, true, true, payload_id);
                        if origin == Origin::Local {
                            if let (Payload::Signed(p), Some(pid)) = (&tx.payload, payload_id) {
                                self.own.entry(pid).or_insert_with(|| OwnPayload {
                                    payload: p.clone(),
                                    tx: id,
                                    attached_at_milestone: self.ledger.confirmed_index(),
                                    reattachments: 0,
                                    gap: false,
                                    gap_reattachments: 0,
                                });
                            }
                        }
                    } else if let Some(b) = self.buffered.remove(&rid) {
                        // A buffered transaction became solid because of this one: store it
                        // now (or mark it solid, if it came from the store).
                        self.after_solid(r, &b.tx, true, true, b.payload);
                        self.release_quota(b.from);
                        match b.bytes {
                            Some(bytes) => batch.push(StoredTx {
                                id: rid,
                                bytes,
                                meta: TxMeta::new(b.arrival, true, b.payload),
                                node_signed: false,
                            }),
                            None => released.push(rid),
                        }
                    }
                }
                if !released.is_empty() {
                    self.writes.push_back(StoreWrite::MarkSolid(released));
                }
            }
            InsertOutcome::Pending { missing } => {
                self.missing.extend(missing);
                if let Some(peer) = from {
                    *self.pending_by_peer.entry(peer).or_insert(0) += 1;
                }
                self.buffered.insert(
                    id,
                    Buffered {
                        tx,
                        bytes,
                        payload: payload_id,
                        arrival: now,
                        from,
                    },
                );
            }
            InsertOutcome::Duplicate => {}
        }
        Ok(id)
    }

    pub(super) fn release_quota(&mut self, from: Option<PeerKey>) {
        if let Some(peer) = from {
            if let Some(n) = self.pending_by_peer.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    self.pending_by_peer.remove(&peer);
                }
            }
        }
    }

    /// Drops transactions that waited for parents longer than
    /// [`ProtocolConfig::pending_ttl_ms`] (at most once a second); their senders are reported
    /// by [`Protocol::poll_expired`].
    pub(super) fn expire_pending(&mut self, now: u64) {
        if now.saturating_sub(self.expired_at) < 1000 || self.buffered.is_empty() {
            return;
        }
        self.expired_at = now;
        let cutoff = now.saturating_sub(self.config.pending_ttl_ms);
        for id in self.tangle.evict_pending(cutoff) {
            if let Some(b) = self.buffered.remove(&id) {
                self.release_quota(b.from);
                if let Some(peer) = b.from {
                    *self.expired.entry(peer).or_insert(0) += 1;
                }
            }
        }
    }

    /// Peers whose transactions expired in the solidification buffer since the last call,
    /// with how many (ordered by peer): they sent transactions whose parents never came.
    pub fn poll_expired(&mut self) -> Vec<(PeerKey, u64)> {
        std::mem::take(&mut self.expired).into_iter().collect()
    }

    /// Transactions waiting for parents.
    pub fn pending_len(&self) -> usize {
        self.buffered.len()
    }

    /// Bookkeeping for a newly solid transaction.
    /// `pid` is the payload's id when the caller has it already (it is computed otherwise).
    pub(super) fn after_solid(
        &mut self,
        r: TxRef,
        tx: &Transaction,
        unconfirmed: bool,
        emit: bool,
        pid: Option<PayloadId>,
    ) {
        self.selector.on_solid(&self.tangle, r);
        let mut payload_id = None;
        match &tx.payload {
            Payload::Signed(p) if unconfirmed => {
                let pid = pid.unwrap_or_else(|| p.id());
                payload_id = Some(pid);
                *self.pending_payloads.entry(pid).or_insert(0) += 1;
                self.unconfirmed_payloads.insert(r, (pid, p.clone()));
                let tail = self.issuer_tail.entry(p.issuer).or_insert((p.seq, r));
                if p.seq >= tail.0 {
                    *tail = (p.seq, r);
                }
            }
            Payload::Milestone(m) => {
                self.latest_milestone = self.latest_milestone.max(m.index);
                self.note_milestone_copy(m.index, self.tangle.id(r), &tx.parents, m);
                self.confirm_if_copy(r, m.index);
                if m.index > self.ledger.confirmed_index() {
                    // The first copy seen is the one applied (as the Tangle keeps it).
                    self.milestones
                        .entry(m.index)
                        .or_insert_with(|| (r, m.clone(), tx.parents));
                }
            }
            _ => {}
        }
        if emit {
            self.events.push_back(Event::Solid {
                tx: self.tangle.id(r),
                payload: payload_id,
                parents: tx.parents,
            });
        }
    }

    pub(super) fn forget_unconfirmed(&mut self, r: TxRef) -> Option<(PayloadId, SignedPayload)> {
        let (pid, p) = self.unconfirmed_payloads.remove(&r)?;
        if let Some(n) = self.pending_payloads.get_mut(&pid) {
            *n -= 1;
            if *n == 0 {
                self.pending_payloads.remove(&pid);
            }
        }
        if self.issuer_tail.get(&p.issuer).map(|t| t.1) == Some(r) {
            self.issuer_tail.remove(&p.issuer);
        }
        Some((pid, p))
    }

    /// Parents of buffered transactions that are not known at all.
    pub(super) fn buffered_missing(&self) -> Vec<TxId> {
        let mut v: Vec<TxId> = self
            .buffered
            .values()
            .flat_map(|b| b.tx.parents)
            .filter(|p| !self.tangle.is_known(p))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
