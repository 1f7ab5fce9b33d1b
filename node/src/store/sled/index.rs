//! The in-memory index over the transaction log: per transaction its log entry and
//! confirmation, per payload the transactions carrying it, per log segment how many of its
//! entries are live; rebuilt when the store opens.

use std::collections::VecDeque;
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};

#[cfg(doc)]
use dag_core::store::Store;
use dag_core::store::{next_payload_status, PayloadStatus, PruneState, Result, StoreError, TxMeta};
use dag_core::{capacity, MilestoneIndex, PayloadId, PayloadOutcome, TxId};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use super::SledStore;
use crate::store::txlog::{segment_index, LogPos, Segment};
use node_proto::layout::{self, Confirmation, TxEntryHeader};

pub(super) const SLOT_SOLID: u8 = 1;
const SLOT_CONFIRMED: u8 = 2;
const SLOT_OUTCOME: u8 = 4;
/// The entry carries a payload id (read from the log when the transaction is pruned).
pub(super) const SLOT_PAYLOAD: u8 = 8;

/// What the index holds per transaction: where its entry is in the log, and what changed
/// since it was written (24 bytes).
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    /// Segment and offset of the entry (its header) in the log.
    pub(super) pos: LogPos,
    /// Length of the transaction's bytes.
    pub(super) len: u32,
    /// Confirming milestone (with `SLOT_CONFIRMED`).
    confirmed_by: MilestoneIndex,
    /// Position in that milestone's white-flag order.
    position: u32,
    pub(super) flags: u8,
    /// Outcome code (with `SLOT_OUTCOME`).
    outcome: u8,
}

impl Slot {
    pub(super) fn confirmation(&self) -> Option<(MilestoneIndex, u32, Option<PayloadOutcome>)> {
        (self.flags & SLOT_CONFIRMED != 0).then(|| {
            let outcome = (self.flags & SLOT_OUTCOME != 0)
                .then(|| layout::decode_outcome(self.outcome))
                .flatten();
            (self.confirmed_by, self.position, outcome)
        })
    }

    fn confirm(&mut self, index: MilestoneIndex, position: u32, outcome: Option<PayloadOutcome>) {
        self.confirmed_by = index;
        self.position = position;
        self.flags |= SLOT_CONFIRMED;
        match outcome {
            Some(o) => {
                self.flags |= SLOT_OUTCOME;
                self.outcome = o.code();
            }
            None => {
                self.flags &= !SLOT_OUTCOME;
                self.outcome = 0;
            }
        }
    }
}

/// A payload's status as it stood when some (not all) of its transactions were pruned:
/// later confirmations (of milestones after `through`) of its remaining transactions apply
/// on top of it, so pruning never changes a payload's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PayloadBase {
    pub(super) status: PayloadStatus,
    /// The confirmed index when it was taken: confirmations up to it are in `status`.
    pub(super) through: MilestoneIndex,
}

/// The in-memory index over the log, rebuilt when the store opens.
#[derive(Debug, Default)]
pub(super) struct Index {
    /// The ledger's confirmed index (`None` before `init_ledger`), set in the same step as
    /// the confirmations of the milestone that raised it.
    pub(super) confirmed: Option<MilestoneIndex>,
    pub(super) txs: HashMap<TxId, Slot>,
    /// Payload -> the first transaction stored carrying it.
    pub(super) payloads: HashMap<PayloadId, TxId>,
    /// Payload -> further transactions carrying it (reattachments), in storing order.
    pub(super) more: HashMap<PayloadId, Vec<TxId>>,
    /// Transaction -> the payload it was confirmed as carrying, where that is not the one
    /// it was stored with (so pruning it can take it out of that payload's list too).
    pub(super) extra: HashMap<TxId, PayloadId>,
    /// Payloads some of whose transactions were pruned: their status then.
    pub(super) bases: HashMap<PayloadId, PayloadBase>,
    /// The last prune.
    pub(super) pruned: Option<PruneState>,
    /// Id of the oldest live log segment.
    pub(super) seg_first: u64,
    /// Per live segment from `seg_first`: its entries that are indexed (not pruned, not a
    /// duplicate). Tombstone and solid frames do not count.
    pub(super) live: VecDeque<u64>,
    /// Per live segment from `seg_first`: the highest milestone of an accounts frame in it
    /// (0 if none). A segment holding the frame of a milestone after the account
    /// checkpoint is needed to rebuild the table, so it stays.
    pub(super) accounts_in: VecDeque<MilestoneIndex>,
    /// The milestone of the account checkpoint.
    pub(super) accounts_checkpoint: MilestoneIndex,
    /// Prunes taken so far (every [`capacity::SHRINK_EVERY`]th gives spare capacity back).
    pub(super) prunes: u32,
}

impl Index {
    /// An empty index over the live segments `first ..= first + segments - 1`.
    pub(super) fn new(first: u64, segments: usize) -> Index {
        Index {
            seg_first: first,
            live: std::iter::repeat_n(0, segments).collect(),
            accounts_in: std::iter::repeat_n(0, segments).collect(),
            ..Index::default()
        }
    }

    fn live_mut(&mut self, pos: LogPos) -> Option<&mut u64> {
        let i = segment_index(self.seg_first, pos.tag());
        self.live.get_mut(i)
    }

    /// After a prune: every [`capacity::SHRINK_EVERY`]th one gives back the capacity a
    /// larger window left behind, so the index follows the window it holds, not the
    /// largest it ever held.
    pub(super) fn pruned_once_more(&mut self) {
        self.prunes = self.prunes.wrapping_add(1);
        if self.prunes % capacity::SHRINK_EVERY == 0 {
            capacity::shrink_sparse(&mut self.txs);
            capacity::shrink_sparse(&mut self.payloads);
            capacity::shrink_sparse(&mut self.more);
            capacity::shrink_sparse(&mut self.extra);
            capacity::shrink_sparse(&mut self.bases);
        }
    }

    /// How many of the oldest segments may be deleted: each has no live entry and no
    /// accounts frame after the account checkpoint, nor has any older one, and the newest
    /// (active) segment never goes.
    pub(super) fn deletable_segments(&self) -> usize {
        let older = self.live.len().saturating_sub(1);
        self.live
            .iter()
            .zip(&self.accounts_in)
            .take(older)
            .take_while(|(n, m)| **n == 0 && **m <= self.accounts_checkpoint)
            .count()
    }

    /// Room for about `n` transactions (most carrying a payload), so rebuilding the index
    /// on open does not grow its tables by doubling (each doubling copies the table into
    /// fresh memory: a fifth of a restart's CPU went to page faults of those copies).
    pub(super) fn reserve(&mut self, n: usize) {
        self.txs.reserve(n);
        self.payloads.reserve(n);
    }

    /// Notes an accounts frame of `milestone` at `pos`.
    pub(super) fn note_accounts(&mut self, pos: LogPos, milestone: MilestoneIndex) {
        let i = segment_index(self.seg_first, pos.tag());
        if let Some(m) = self.accounts_in.get_mut(i) {
            *m = (*m).max(milestone);
        }
    }

    /// A new active segment.
    pub(super) fn push_segment(&mut self) {
        self.live.push_back(0);
        self.accounts_in.push_back(0);
    }

    /// The oldest segment was deleted.
    pub(super) fn pop_segment(&mut self) {
        self.live.pop_front();
        self.accounts_in.pop_front();
        self.seg_first += 1;
    }

    /// The transactions carrying `payload`, in storing order.
    pub(super) fn payload_txs(&self, payload: &PayloadId) -> Vec<TxId> {
        self.payloads
            .get(payload)
            .into_iter()
            .chain(self.more.get(payload).into_iter().flatten())
            .copied()
            .collect()
    }

    /// The confirmation of `tx` with a payload outcome, as [`derive_status`] takes it.
    pub(super) fn payload_confirmation(
        &self,
        tx: &TxId,
    ) -> Option<(MilestoneIndex, u32, TxId, PayloadOutcome)> {
        let (milestone, position, outcome) = self.txs.get(tx)?.confirmation()?;
        Some((milestone, position, *tx, outcome?))
    }

    /// A payload's status: its base (if some of its transactions were pruned) and the
    /// confirmations of the transactions it has.
    pub(super) fn payload_status(&self, payload: &PayloadId) -> PayloadStatus {
        let confirmations = self
            .payload_txs(payload)
            .iter()
            .filter_map(|tx| self.payload_confirmation(tx))
            .collect();
        derive_status(self.bases.get(payload), confirmations)
    }

    /// Takes `tx` out of `payload`'s list; a payload left without transactions goes.
    fn remove_payload_tx(&mut self, payload: &PayloadId, tx: &TxId) {
        if self.payloads.get(payload) == Some(tx) {
            match self.more.get_mut(payload) {
                Some(more) if !more.is_empty() => {
                    let next = more.remove(0);
                    if more.is_empty() {
                        self.more.remove(payload);
                    }
                    self.payloads.insert(*payload, next);
                }
                _ => {
                    self.more.remove(payload);
                    self.payloads.remove(payload);
                }
            }
        } else if let Some(more) = self.more.get_mut(payload) {
            more.retain(|t| t != tx);
            if more.is_empty() {
                self.more.remove(payload);
            }
        }
    }

    /// Forgets a transaction: its slot, its place in the lists of `payloads` (the payload
    /// of its entry) and of the payload it was confirmed as carrying, and its count in its
    /// segment. Bases are the caller's business. Returns the slot it had.
    pub(super) fn remove(&mut self, id: &TxId, payloads: &[PayloadId]) -> Option<Slot> {
        let slot = self.txs.remove(id)?;
        if let Some(n) = self.live_mut(slot.pos) {
            *n = n.saturating_sub(1);
        }
        for p in payloads {
            self.remove_payload_tx(p, id);
        }
        if let Some(p) = self.extra.remove(id) {
            self.remove_payload_tx(&p, id);
        }
        Some(slot)
    }

    fn add_payload_tx(&mut self, payload: PayloadId, tx: TxId) {
        match self.payloads.entry(payload) {
            Entry::Vacant(v) => {
                v.insert(tx);
            }
            Entry::Occupied(_) => self.more.entry(payload).or_default().push(tx),
        }
    }

    pub(super) fn payload_has(&self, payload: &PayloadId, tx: &TxId) -> bool {
        self.payloads.get(payload) == Some(tx)
            || self.more.get(payload).is_some_and(|m| m.contains(tx))
    }

    /// Adds a transactions frame whose body starts at `body_at` in the log; entries already
    /// indexed are skipped.
    pub(super) fn add_frame(&mut self, body_at: LogPos, entries: &[(TxEntryHeader, usize, &[u8])]) {
        for (h, at, _) in entries {
            self.add(h, body_at.plus(*at as u64));
        }
    }

    /// Indexes one log entry at `pos`, unless its id is indexed already.
    pub(super) fn add(&mut self, h: &TxEntryHeader, pos: LogPos) {
        if let Entry::Vacant(v) = self.txs.entry(h.id) {
            let mut flags = if h.solid { SLOT_SOLID } else { 0 };
            if h.payload.is_some() {
                flags |= SLOT_PAYLOAD;
            }
            v.insert(Slot {
                pos,
                len: h.len,
                confirmed_by: 0,
                position: 0,
                flags,
                outcome: 0,
            });
            if let Some(n) = self.live_mut(pos) {
                *n += 1;
            }
            if let Some(p) = h.payload {
                self.add_payload_tx(p, h.id);
            }
        }
    }

    pub(super) fn mark_solid(&mut self, ids: &[TxId]) {
        for id in ids {
            if let Some(s) = self.txs.get_mut(id) {
                s.flags |= SLOT_SOLID;
            }
        }
    }

    /// Applies milestone `index`'s confirmations, the first of which has white-flag
    /// position `first`. Fails, changing nothing, if one names an unknown transaction.
    pub(super) fn confirm(
        &mut self,
        index: MilestoneIndex,
        first: u32,
        confirmations: &[Confirmation],
    ) -> Result<()> {
        if let Some(c) = confirmations.iter().find(|c| !self.txs.contains_key(&c.tx)) {
            return Err(StoreError::UnknownTransaction(c.tx));
        }
        for (i, c) in confirmations.iter().enumerate() {
            self.confirm_one(index, first.saturating_add(i as u32), c)?;
        }
        Ok(())
    }

    /// Applies one confirmation at white-flag `position` of milestone `index`. Fails,
    /// changing nothing, if it names an unknown transaction.
    pub(super) fn confirm_one(
        &mut self,
        index: MilestoneIndex,
        position: u32,
        c: &Confirmation,
    ) -> Result<()> {
        let Some(s) = self.txs.get_mut(&c.tx) else {
            return Err(StoreError::UnknownTransaction(c.tx));
        };
        s.confirm(index, position, c.outcome);
        if let Some(p) = c.payload {
            if !self.payload_has(&p, &c.tx) {
                self.add_payload_tx(p, c.tx);
                self.extra.insert(c.tx, p);
            }
        }
        Ok(())
    }
}

/// A payload's status from the confirmations of the transactions carrying it: the rule of
/// [`Store::apply_milestone`] replayed in confirmation order (milestone, then white-flag
/// position), which is the order `apply_milestone` saw them in, from `base` (confirmations
/// it already covers are skipped) or else from pending.
pub(super) fn derive_status(
    base: Option<&PayloadBase>,
    mut confirmations: Vec<(MilestoneIndex, u32, TxId, PayloadOutcome)>,
) -> PayloadStatus {
    let (start, through) = base.map_or((PayloadStatus::Pending, None), |b| {
        (b.status, Some(b.through))
    });
    confirmations.retain(|c| through.is_none_or(|t| c.0 > t));
    confirmations.sort_unstable_by_key(|c| (c.0, c.1));
    confirmations
        .into_iter()
        .fold(start, |status, (milestone, _, tx, outcome)| {
            next_payload_status(status, milestone, tx, outcome)
        })
}

impl SledStore {
    pub(super) fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        // Index changes cannot panic halfway.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A transaction's slot and the segment holding its entry, taken together under the
    /// index lock: a segment is deleted only after its entries left the index, and the
    /// handle keeps a deleted segment readable.
    pub(super) fn locate(&self, id: &TxId) -> Result<Option<(Slot, Arc<Segment>)>> {
        let index = self.read_index();
        let Some(slot) = index.txs.get(id).copied() else {
            return Ok(None);
        };
        let seg = self.log.segment(slot.pos.tag()).ok_or_else(|| {
            StoreError::Corrupt(format!("the log segment holding {id} is missing"))
        })?;
        Ok(Some((slot, seg)))
    }

    /// The metadata of a transaction from its log entry and its slot.
    pub(super) fn meta(h: &TxEntryHeader, slot: &Slot) -> TxMeta {
        let confirmation = slot.confirmation();
        TxMeta {
            arrival: h.arrival,
            solid: slot.flags & SLOT_SOLID != 0,
            payload: h.payload,
            confirmed_by: confirmation.map(|c| c.0),
            outcome: confirmation.and_then(|c| c.2),
        }
    }
}
