//! Pruning ([`Store::prune`](dag_core::store::Store::prune)): the tombstone frame, the
//! index, the sled clean-up, and deleting log segments left without live entries.
//!
//! Order, under the sled writer lock and then the log writer lock:
//!
//! 1. a clean-up left unapplied by an earlier failure is applied (after a log sync);
//! 2. a flush: everything written before the prune (milestones above all) is durable
//!    before the prune can be, so no crash keeps a prune and loses what it followed;
//! 3. the plan: which stored transactions go, and the sled clean-up (read from the index
//!    and sled, nothing written yet);
//! 4. the tombstone frame is appended and the log synced: **the commit point**;
//! 5. the index forgets the transactions (in one step under its lock);
//! 6. the clean-up, one sled batch: milestone records up to the pruned milestone,
//!    confirmation chunks up to it that name no live transaction any more, pruned-entry
//!    bitmaps for the chunks that stay, payload bases, and the prune state;
//! 7. segments whose entries are all gone (and all older ones) are deleted, oldest first,
//!    after a flush that makes the clean-ups durable.
//!
//! A crash before 4 is durable loses the prune; after, opening replays the tombstone and
//! redoes 6 and 7 (see `recovery.rs`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use dag_core::store::{PruneBatch, PruneState, Result, Store, StoreError};
use dag_core::{MilestoneIndex, PayloadId, TxId};
use sled::Batch;

use super::index::{PayloadBase, SLOT_PAYLOAD};
use super::{backend, encode, PruneHeader, SledStore, Writer};
use node_proto::layout::{self, CONFIRMATIONS_PER_CHUNK, FRAME_HEADER_LEN, MAX_FRAME_LEN};

/// Where a simulated crash stops a prune (tests).
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CrashPoint {
    /// The tombstone is appended (a process crash keeps it; a power loss may tear it).
    BeforeTombstoneSync,
    /// The tombstone is durable; the index and sled are untouched.
    AfterTombstoneSync,
    /// The clean-up is applied; no segment is deleted yet.
    AfterCleanup,
}

/// Sled writes of a prune's clean-up, kept so a failed batch can be applied again.
#[derive(Clone, Debug, Default)]
pub(super) struct Cleanup {
    ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl Cleanup {
    pub(super) fn insert(&mut self, key: &[u8], value: Vec<u8>) {
        self.ops.push((key.to_vec(), Some(value)));
    }

    pub(super) fn remove(&mut self, key: &[u8]) {
        self.ops.push((key.to_vec(), None));
    }

    pub(super) fn batch(&self) -> Batch {
        let mut b = Batch::default();
        for (k, v) in &self.ops {
            match v {
                Some(v) => b.insert(&k[..], &v[..]),
                None => b.remove(&k[..]),
            }
        }
        b
    }
}

/// What one prune does, worked out before anything is written.
struct Plan {
    /// The pruned milestone after it (never lower than before).
    milestone: MilestoneIndex,
    /// The stored transactions it forgets, each with the payload of its log entry.
    removed: Vec<(TxId, Option<PayloadId>)>,
    /// Payloads that lose transactions: their base from now on (`None`: none left).
    bases: Vec<(PayloadId, Option<PayloadBase>)>,
    /// The sled clean-up, but for the prune state (which needs the tombstone's place).
    cleanup: Cleanup,
}

impl SledStore {
    /// [`Store::prune`](dag_core::store::Store::prune): see the module docs for the steps.
    pub(super) fn prune_batch(&self, batch: &PruneBatch) -> Result<()> {
        let _s = self.sled_writer();
        self.apply_unapplied()?;
        self.flush()?;
        let mut w = self.log_writer();
        let plan = self.plan(batch)?;
        let unchanged = {
            let index = self.read_index();
            plan.removed.is_empty()
                && index.pruned.as_ref().is_some_and(|p| {
                    p.milestone == plan.milestone && p.entry_points == batch.entry_points
                })
        };
        if unchanged {
            return Ok(());
        }
        let ids: Vec<TxId> = plan.removed.iter().map(|r| r.0).collect();
        let mut buf = vec![0u8; FRAME_HEADER_LEN];
        buf.extend_from_slice(&layout::tombstone_body(
            plan.milestone,
            &ids,
            &batch.entry_points,
        ));
        if buf.len() - FRAME_HEADER_LEN > MAX_FRAME_LEN {
            return Err(StoreError::Backend(
                "prune batch too large for one frame".into(),
            ));
        }
        let at = self.append(&mut w, buf)?;
        self.crash_point(CrashPoint::BeforeTombstoneSync)?;
        // The tombstone is in the log: the prune is committed (a sync failure is reported
        // after the index has taken it; a retry is harmless).
        let synced = self.sync_log();
        self.crash_point(CrashPoint::AfterTombstoneSync)?;
        {
            let mut index = self.write_index();
            for (id, payload) in &plan.removed {
                index.remove(id, payload.as_slice());
            }
            for (p, base) in &plan.bases {
                match base {
                    Some(b) => index.bases.insert(*p, *b),
                    None => index.bases.remove(p),
                };
            }
            index.pruned = Some(PruneState {
                milestone: plan.milestone,
                entry_points: batch.entry_points.clone(),
            });
            index.pruned_once_more();
        }
        let mut cleanup = plan.cleanup;
        cleanup.insert(
            layout::PRUNE_KEY,
            encode(&PruneHeader {
                segment: w.segment,
                offset: at.offset(),
                milestone: plan.milestone,
                // In the tombstone (format 5).
                entry_points: Vec::new(),
            })?,
        );
        // The clean-up may reach the disk whenever sled writes in the background, so only
        // after the tombstone is durable.
        let applied = synced.and_then(|()| self.apply(cleanup.batch()));
        if let Err(e) = applied {
            *self.unapplied.lock().unwrap_or_else(|e| e.into_inner()) = Some(cleanup);
            return Err(e);
        }
        self.crash_point(CrashPoint::AfterCleanup)?;
        self.delete_segments(&mut w)
    }

    /// Applies the clean-up of a prune that failed after its tombstone was written.
    fn apply_unapplied(&self) -> Result<()> {
        let mut unapplied = self.unapplied.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cleanup) = unapplied.as_ref() {
            self.sync_log()?;
            self.apply(cleanup.batch())?;
            *unapplied = None;
        }
        Ok(())
    }

    /// Works out a prune. Called with both writer locks held, so neither the index's
    /// transactions nor sled change meanwhile.
    fn plan(&self, batch: &PruneBatch) -> Result<Plan> {
        let index = self.read_index();
        let prev = index.pruned.as_ref().map(|p| p.milestone);
        let milestone = prev.map_or(batch.milestone, |p| p.max(batch.milestone));
        let mut gone = HashSet::new();
        let mut removed = Vec::new();
        let mut touched = BTreeSet::new();
        // Confirmation chunk -> entries of it that name a transaction pruned now.
        let mut hit: BTreeMap<(MilestoneIndex, u32), Vec<usize>> = BTreeMap::new();
        for id in &batch.txs {
            let Some(slot) = index.txs.get(id) else {
                continue;
            };
            if !gone.insert(*id) {
                continue;
            }
            let mut payload = None;
            if slot.flags & SLOT_PAYLOAD != 0 {
                let seg = self.log.segment(slot.pos.tag()).ok_or_else(|| {
                    StoreError::Corrupt(format!("the log segment holding {id} is missing"))
                })?;
                payload = Self::entry_header(id, slot, &seg)?.payload;
            }
            touched.extend(payload);
            touched.extend(index.extra.get(id).copied());
            if let Some((m, position, _)) = slot.confirmation() {
                let chunk = position / CONFIRMATIONS_PER_CHUNK as u32;
                hit.entry((m, chunk))
                    .or_default()
                    .push(position as usize % CONFIRMATIONS_PER_CHUNK);
            }
            removed.push((*id, payload));
        }

        let mut cleanup = Cleanup::default();
        // The chunks to look at: those naming a transaction pruned now, and every chunk of
        // the milestones this prune newly covers.
        let mut chunks: BTreeSet<(MilestoneIndex, u32)> = hit.keys().copied().collect();
        let from = prev.map_or(Some(0), |p| p.checked_add(1));
        if let Some(from) = from.filter(|f| *f <= milestone) {
            let range =
                layout::confirmation_key(from, 0)..=layout::confirmation_key(milestone, u32::MAX);
            for item in self.tree.range(range) {
                let (k, _) = item.map_err(backend)?;
                chunks.insert(layout::decode_confirmation_key(&k)?);
            }
        }
        for (m, chunk) in chunks {
            let Some(v) = self.raw(&layout::confirmation_key(m, chunk))? else {
                continue;
            };
            let first = chunk.saturating_mul(CONFIRMATIONS_PER_CHUNK as u32);
            let live = layout::decode_confirmations(&v)?
                .iter()
                .enumerate()
                .filter(|(i, c)| {
                    !gone.contains(&c.tx)
                        && index
                            .txs
                            .get(&c.tx)
                            .and_then(|s| s.confirmation())
                            .is_some_and(|(cm, cp, _)| {
                                cm == m && cp == first.saturating_add(*i as u32)
                            })
                })
                .count();
            if m <= milestone && live == 0 {
                cleanup.remove(&layout::confirmation_key(m, chunk));
                cleanup.remove(&layout::pruned_key(m, chunk));
            } else if let Some(bits) = hit.get(&(m, chunk)) {
                let key = layout::pruned_key(m, chunk);
                let mut bitmap = self.raw(&key)?.map(|b| b.to_vec()).unwrap_or_default();
                layout::check_pruned_bitmap(&bitmap)?;
                for i in bits {
                    layout::set_pruned_bit(&mut bitmap, *i);
                }
                cleanup.insert(&key, bitmap);
            }
        }
        let range = layout::milestone_key(0)..=layout::milestone_key(milestone);
        for item in self.tree.range(range) {
            let (k, _) = item.map_err(backend)?;
            cleanup.remove(&k);
        }

        // Payloads losing transactions keep their status: it becomes their base.
        let confirmed = index.confirmed.unwrap_or(0);
        let mut bases = Vec::with_capacity(touched.len());
        for p in touched {
            let key = layout::payload_base_key(&p);
            if index.payload_txs(&p).iter().any(|t| !gone.contains(t)) {
                let base = PayloadBase {
                    status: index.payload_status(&p),
                    through: confirmed,
                };
                cleanup.insert(&key, encode(&base)?);
                bases.push((p, Some(base)));
            } else {
                cleanup.remove(&key);
                bases.push((p, None));
            }
        }
        Ok(Plan {
            milestone,
            removed,
            bases,
            cleanup,
        })
    }

    /// Deletes the oldest segments with no live entry (nor any older one), never the
    /// active one, oldest first. The tombstones in them are never needed again: the
    /// transactions they name lived in them or in older segments, deleted already. Before
    /// the first goes, a flush makes the prunes' clean-ups durable, since they are then all
    /// that is left of those tombstones; nothing goes while a clean-up is unapplied.
    pub(super) fn delete_segments(&self, _w: &mut Writer) -> Result<()> {
        let n = self.read_index().deletable_segments();
        if n == 0
            || self
                .unapplied
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
        {
            return Ok(());
        }
        self.flush()?;
        for _ in 0..n {
            self.log.remove_oldest_file()?;
            let mut index = self.write_index();
            self.log.pop_oldest();
            index.pop_segment();
        }
        tracing::debug!(segments = n, "pruned log segments deleted");
        Ok(())
    }

    fn crash_point(&self, _at: CrashPoint) -> Result<()> {
        #[cfg(test)]
        if *self.crash_at.lock().unwrap_or_else(|e| e.into_inner()) == Some(_at) {
            return Err(StoreError::Backend(format!("simulated crash {_at:?}")));
        }
        Ok(())
    }
}
