//! The in-memory index over the transaction log: per transaction its log entry and
//! confirmation, per payload the transactions carrying it; rebuilt when the store opens.

use std::sync::{RwLockReadGuard, RwLockWriteGuard};

#[cfg(doc)]
use dag_core::store::Store;
use dag_core::store::{next_payload_status, PayloadStatus, Result, StoreError, TxMeta};
use dag_core::{MilestoneIndex, PayloadId, PayloadOutcome, TxId};
use hashbrown::hash_map::Entry;
use hashbrown::HashMap;

use super::{backend, SledStore};
use node_proto::layout::{self, Confirmation, TxEntryHeader};

pub(super) const SLOT_SOLID: u8 = 1;
const SLOT_CONFIRMED: u8 = 2;
const SLOT_OUTCOME: u8 = 4;

/// What the index holds per transaction: where its entry is in the log, and what changed
/// since it was written (24 bytes).
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    /// Offset of the entry (its header) in the log.
    pub(super) offset: u64,
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
}

impl Index {
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
    pub(super) fn add_frame(&mut self, body_at: u64, entries: &[(TxEntryHeader, usize, &[u8])]) {
        for (h, at, _) in entries {
            self.add(h, body_at + *at as u64);
        }
    }

    /// Indexes one log entry at `offset`, unless its id is indexed already.
    pub(super) fn add(&mut self, h: &TxEntryHeader, offset: u64) {
        if let Entry::Vacant(v) = self.txs.entry(h.id) {
            v.insert(Slot {
                offset,
                len: h.len,
                confirmed_by: 0,
                position: 0,
                flags: if h.solid { SLOT_SOLID } else { 0 },
                outcome: 0,
            });
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
            let position = first.saturating_add(i as u32);
            if let Some(s) = self.txs.get_mut(&c.tx) {
                s.confirm(index, position, c.outcome);
            }
            if let Some(p) = c.payload {
                if !self.payload_has(&p, &c.tx) {
                    self.add_payload_tx(p, c.tx);
                }
            }
        }
        Ok(())
    }
}

/// A payload's status from the confirmations of the transactions carrying it: the rule of
/// [`Store::apply_milestone`] replayed in confirmation order (milestone, then white-flag
/// position), which is the order `apply_milestone` saw them in.
pub(super) fn derive_status(
    mut confirmations: Vec<(MilestoneIndex, u32, TxId, PayloadOutcome)>,
) -> PayloadStatus {
    confirmations.sort_unstable_by_key(|c| (c.0, c.1));
    confirmations.into_iter().fold(
        PayloadStatus::Pending,
        |status, (milestone, _, tx, outcome)| next_payload_status(status, milestone, tx, outcome),
    )
}

impl SledStore {
    pub(super) fn read_index(&self) -> RwLockReadGuard<'_, Index> {
        // Index changes cannot panic halfway.
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn write_index(&self) -> RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Fills the index with the confirmations stored in sled, on open.
    pub(super) fn load_confirmations(&self) -> Result<()> {
        let header = self.ledger_header()?;
        let confirmed = header.map_or(0, |h| h.confirmed_index);
        let mut index = self.write_index();
        index.confirmed = header.map(|h| h.confirmed_index);
        for item in self.tree.scan_prefix([layout::CONFIRMATION]) {
            let (k, v) = item.map_err(backend)?;
            let (milestone, chunk) = layout::decode_confirmation_key(&k)?;
            if milestone > confirmed {
                return Err(StoreError::Corrupt(format!(
                    "confirmations of milestone {milestone} beyond the confirmed {confirmed}"
                )));
            }
            let list = layout::decode_confirmations(&v)?;
            let first = chunk.saturating_mul(layout::CONFIRMATIONS_PER_CHUNK as u32);
            index
                .confirm(milestone, first, &list)
                .map_err(|e| match e {
                    StoreError::UnknownTransaction(tx) => StoreError::Corrupt(format!(
                        "milestone {milestone} confirms {tx}, which is not in the transaction log"
                    )),
                    e => e,
                })?;
        }
        Ok(())
    }

    pub(super) fn slot(&self, id: &TxId) -> Option<Slot> {
        self.read_index().txs.get(id).copied()
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
