//! Opening a store: replaying the log's frames into the index (tombstones included), then
//! the confirmations stored in sled, then the clean-up of a prune a crash interrupted.
//!
//! The stored prune state ([`layout::PRUNE_KEY`]) says where the last tombstone whose
//! clean-up was applied is. A tombstone after it is *pending*: its clean-up may not have
//! reached sled. Because a prune flushes everything before writing its tombstone and holds
//! the sled writer until its clean-up is applied, and sled recovers its batches in order,
//! sled then holds exactly the state of the moment the tombstone was written: every
//! confirmation in it predates the tombstone. So a confirmation naming a transaction a
//! pending tombstone pruned belongs to that pruned copy (even if the same transaction was
//! stored again later), and the clean-up can be worked out again as the prune did.

use std::collections::{BTreeMap, HashMap as StdHashMap};

use dag_core::store::{PruneState, Result, StoreError};
use dag_core::{Account, Address, MilestoneIndex, PayloadId, PayloadOutcome, TxId};
use hashbrown::HashMap;

use super::index::{derive_status, Index, PayloadBase, SLOT_PAYLOAD};
use super::prune::Cleanup;
use super::{backend, encode, PruneHeader, SledStore};
use crate::store::txlog::{LogPos, TxLog};
use node_proto::layout::{self, Frame, Tombstone, CONFIRMATIONS_PER_CHUNK};

/// A transaction pruned by a pending tombstone.
#[derive(Debug, Default)]
struct Dead {
    /// The payload of its entry, and the one it was confirmed as carrying.
    payloads: Vec<PayloadId>,
    /// Its confirmation: milestone, white-flag position, outcome.
    confirmation: Option<(MilestoneIndex, u32, Option<PayloadOutcome>)>,
}

/// The last pending tombstone.
#[derive(Debug)]
struct Pending {
    segment: u64,
    offset: u64,
    milestone: MilestoneIndex,
    entry_points: Vec<(TxId, MilestoneIndex)>,
}

/// State of the log replay on open.
#[derive(Debug)]
pub(super) struct Replay {
    /// Where the tombstone of the stored prune state is (segment, body offset).
    durable: Option<(u64, u64)>,
    /// That tombstone's entry points, once the scan has passed it (format 5 does not
    /// store them in sled).
    pub(super) durable_entry_points: Option<Vec<(TxId, MilestoneIndex)>>,
    dead: HashMap<TxId, Dead>,
    pending: Option<Pending>,
    /// The account checkpoint's milestone.
    checkpoint: Option<MilestoneIndex>,
    /// The accounts frames of milestones after the checkpoint (the last of each
    /// milestone's frames, with its size), for [`super::AccountTable::replay`].
    pub(super) accounts: BTreeMap<MilestoneIndex, (Vec<(Address, Account)>, u64)>,
}

/// A confirmation chunk the redone clean-up looks at.
#[derive(Debug)]
struct ChunkNote {
    milestone: MilestoneIndex,
    chunk: u32,
    /// Entries applied to live transactions.
    live: usize,
    /// Entries naming transactions of a pending tombstone.
    dead: Vec<usize>,
}

impl Replay {
    pub(super) fn new(durable: Option<(u64, u64)>, checkpoint: Option<MilestoneIndex>) -> Replay {
        Replay {
            durable,
            durable_entry_points: None,
            dead: HashMap::new(),
            pending: None,
            checkpoint,
            accounts: BTreeMap::new(),
        }
    }

    /// Takes one frame of the log scan (`segment`, body offset `at`).
    pub(super) fn frame(
        &mut self,
        index: &mut Index,
        log: &TxLog,
        segment: u64,
        at: u64,
        frame: Frame<'_>,
    ) -> Result<()> {
        match frame {
            Frame::Transactions(entries) => index.add_frame(LogPos::new(segment, at), &entries),
            Frame::Solid(ids) => index.mark_solid(&ids),
            Frame::Prune(t) => self.tombstone(index, log, segment, at, t)?,
            Frame::Accounts(a) => {
                index.note_accounts(LogPos::new(segment, at), a.milestone);
                if self.checkpoint.is_none_or(|c| a.milestone > c) {
                    let bytes = (layout::ACCOUNTS_BODY_HEADER_LEN
                        + a.accounts.len() * layout::ACCOUNT_RECORD_LEN)
                        as u64;
                    // A later frame of the same milestone replaces an earlier one, whose
                    // batch never committed.
                    self.accounts.insert(a.milestone, (a.accounts, bytes));
                }
            }
        }
        Ok(())
    }

    /// Takes the tombstone's transactions out of the index (reading each one's payload
    /// from its entry). A tombstone at or before the stored prune state needs nothing else
    /// (its clean-up is in sled); a later one's transactions are kept aside for the
    /// clean-up to redo.
    fn tombstone(
        &mut self,
        index: &mut Index,
        log: &TxLog,
        segment: u64,
        at: u64,
        t: Tombstone,
    ) -> Result<()> {
        let pending = self.durable.is_none_or(|d| (segment, at) > d);
        for id in &t.txs {
            let Some(slot) = index.txs.get(id).copied() else {
                continue;
            };
            let mut payloads = Vec::new();
            if slot.flags & SLOT_PAYLOAD != 0 {
                let seg = log.segment(slot.pos.tag()).ok_or_else(|| {
                    StoreError::Corrupt(format!("the log segment holding {id} is missing"))
                })?;
                payloads.extend(SledStore::entry_header(id, &slot, &seg)?.payload);
            }
            index.remove(id, &payloads);
            if pending {
                self.dead.entry(*id).or_insert(Dead {
                    payloads,
                    confirmation: None,
                });
            }
        }
        if self.durable == Some((segment, at)) {
            self.durable_entry_points = Some(t.entry_points);
        } else if pending {
            self.pending = Some(Pending {
                segment,
                offset: at,
                milestone: t.milestone,
                entry_points: t.entry_points,
            });
        }
        Ok(())
    }
}

impl SledStore {
    /// After the log scan: loads the confirmations into the index (skipping entries marked
    /// pruned, and setting aside those naming transactions of a pending tombstone), redoes
    /// a pending prune's clean-up, and deletes log segments left without live entries.
    pub(super) fn recover(&self, mut replay: Replay) -> Result<()> {
        let _s = self.sled_writer();
        let header = self.ledger_header()?;
        let confirmed = header.map_or(0, |h| h.confirmed_index);
        let mut bitmaps = StdHashMap::new();
        for item in self.tree.scan_prefix([layout::PRUNED]) {
            let (k, v) = item.map_err(backend)?;
            layout::check_pruned_bitmap(&v)?;
            bitmaps.insert(layout::decode_pruned_key(&k)?, v);
        }
        let durable_milestone = self.read_index().pruned.as_ref().map(|p| p.milestone);
        let redo = replay
            .pending
            .as_ref()
            .map(|p| p.milestone.max(durable_milestone.unwrap_or(0)));
        let mut notes = Vec::new();
        {
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
                let bitmap = bitmaps.get(&(milestone, chunk));
                let first = chunk.saturating_mul(CONFIRMATIONS_PER_CHUNK as u32);
                let mut note = ChunkNote {
                    milestone,
                    chunk,
                    live: 0,
                    dead: Vec::new(),
                };
                for (i, c) in layout::decode_confirmations(&v)?.iter().enumerate() {
                    if bitmap.is_some_and(|b| layout::pruned_bit(b, i)) {
                        continue;
                    }
                    let position = first.saturating_add(i as u32);
                    if let Some(d) = replay.dead.get_mut(&c.tx) {
                        d.confirmation
                            .get_or_insert((milestone, position, c.outcome));
                        if let Some(p) = c.payload.filter(|p| !d.payloads.contains(p)) {
                            d.payloads.push(p);
                        }
                        note.dead.push(i);
                        continue;
                    }
                    index
                        .confirm_one(milestone, position, c)
                        .map_err(|e| match e {
                            StoreError::UnknownTransaction(tx) => StoreError::Corrupt(format!(
                                "milestone {milestone} confirms {tx}, which is not in the \
                                 transaction log"
                            )),
                            e => e,
                        })?;
                    note.live += 1;
                }
                let newly_covered = redo.is_some_and(|m| {
                    milestone <= m && durable_milestone.is_none_or(|d| milestone > d)
                });
                if !note.dead.is_empty() || newly_covered {
                    notes.push(note);
                }
            }
        }
        if let (Some(pending), Some(milestone)) = (replay.pending.take(), redo) {
            self.redo_cleanup(pending, milestone, &replay.dead, notes, &bitmaps, confirmed)?;
        }
        let mut w = self.log_writer();
        self.delete_segments(&mut w)
    }

    /// The clean-up of the pending tombstone(s), as `plan` works it out at prune time.
    fn redo_cleanup(
        &self,
        pending: Pending,
        milestone: MilestoneIndex,
        dead: &HashMap<TxId, Dead>,
        notes: Vec<ChunkNote>,
        bitmaps: &StdHashMap<(MilestoneIndex, u32), sled::IVec>,
        confirmed: MilestoneIndex,
    ) -> Result<()> {
        let mut cleanup = Cleanup::default();
        for note in notes {
            if note.milestone <= milestone && note.live == 0 {
                cleanup.remove(&layout::confirmation_key(note.milestone, note.chunk));
                cleanup.remove(&layout::pruned_key(note.milestone, note.chunk));
            } else if !note.dead.is_empty() {
                let mut bitmap = bitmaps
                    .get(&(note.milestone, note.chunk))
                    .map(|b| b.to_vec())
                    .unwrap_or_default();
                for i in note.dead {
                    layout::set_pruned_bit(&mut bitmap, i);
                }
                cleanup.insert(&layout::pruned_key(note.milestone, note.chunk), bitmap);
            }
        }
        let range = layout::milestone_key(0)..=layout::milestone_key(milestone);
        for item in self.tree.range(range) {
            let (k, _) = item.map_err(backend)?;
            cleanup.remove(&k);
        }

        // Payloads that lost transactions: their status with those transactions' (stored)
        // confirmations becomes their base.
        let mut lost: StdHashMap<PayloadId, Vec<(MilestoneIndex, u32, TxId, PayloadOutcome)>> =
            StdHashMap::new();
        for (tx, d) in dead {
            for p in &d.payloads {
                let confirmations = lost.entry(*p).or_default();
                if let Some((m, position, Some(outcome))) = d.confirmation {
                    confirmations.push((m, position, *tx, outcome));
                }
            }
        }
        let mut index = self.write_index();
        for (p, mut confirmations) in lost {
            let key = layout::payload_base_key(&p);
            if !index.payloads.contains_key(&p) {
                cleanup.remove(&key);
                index.bases.remove(&p);
                continue;
            }
            confirmations.extend(
                index
                    .payload_txs(&p)
                    .iter()
                    .filter_map(|t| index.payload_confirmation(t)),
            );
            let base = PayloadBase {
                status: derive_status(index.bases.get(&p), confirmations),
                through: confirmed,
            };
            cleanup.insert(&key, encode(&base)?);
            index.bases.insert(p, base);
        }
        cleanup.insert(
            layout::PRUNE_KEY,
            encode(&PruneHeader {
                segment: pending.segment,
                offset: pending.offset,
                milestone,
                entry_points: Vec::new(),
            })?,
        );
        index.pruned = Some(PruneState {
            milestone,
            entry_points: pending.entry_points,
        });
        drop(index);
        self.apply(cleanup.batch())?;
        tracing::info!(
            milestone,
            transactions = dead.len(),
            "the clean-up of a prune interrupted by a crash was redone"
        );
        Ok(())
    }
}
