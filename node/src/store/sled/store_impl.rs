//! The [`Store`] operations of [`SledStore`]: transactions to the log and the index,
//! ledger, milestones and confirmations to sled.

use std::collections::HashSet;

use dag_core::store::{
    MilestoneBatch, MilestoneRecord, PayloadRecord, PruneBatch, PruneState, Result, Store,
    StoreError, TxEntry, TxMeta,
};
use dag_core::{
    Account, Address, Channel, ChannelId, LedgerState, MilestoneIndex, PayloadId, TxId,
};
use sled::Batch;

/// Records per sled batch when a ledger is written whole ([`Store::init_ledger`]).
const INIT_LEDGER_BATCH: usize = 4_096;

use super::index::SLOT_SOLID;
#[cfg(doc)]
use super::Durability;
use super::{backend, decode, encode, LedgerHeader, SledStore};
use crate::store::txlog::LogPos;
use node_proto::layout::{self, Confirmation, Frame, TxEntryHeader, TX_ENTRY_HEADER_LEN};

impl Store for SledStore {
    /// One log frame holding every new transaction; nothing in sled.
    fn put_transactions(&self, entries: &[TxEntry<'_>]) -> Result<usize> {
        if entries.is_empty() {
            return Ok(0);
        }
        let mut w = self.log_writer();
        let mut buf = vec![0u8; layout::FRAME_HEADER_LEN];
        buf.extend_from_slice(&layout::transactions_body_start(0));
        let mut added = Vec::with_capacity(entries.len());
        {
            let index = self.read_index();
            let mut in_batch = HashSet::with_capacity(entries.len());
            for e in entries {
                // Stored before, or a duplicate inside the batch: stored once.
                if index.txs.contains_key(&e.id) || !in_batch.insert(e.id) {
                    continue;
                }
                let len = u32::try_from(e.bytes.len())
                    .map_err(|_| StoreError::Backend("transaction too large".into()))?;
                let h = TxEntryHeader {
                    id: e.id,
                    arrival: e.meta.arrival,
                    solid: e.meta.solid,
                    payload: e.meta.payload,
                    len,
                };
                added.push((h, buf.len() - layout::FRAME_HEADER_LEN));
                layout::push_tx_entry(&mut buf, &h, e.bytes);
            }
        }
        if added.is_empty() {
            return Ok(0);
        }
        if buf.len() > layout::MAX_FRAME_LEN {
            return Err(StoreError::Backend("batch too large for one frame".into()));
        }
        let count = added.len() as u32;
        let at = layout::FRAME_HEADER_LEN + 1;
        buf[at..at + 4].copy_from_slice(&count.to_be_bytes());
        let body_at = self.append(&mut w, buf)?;
        let mut index = self.write_index();
        for (h, at) in &added {
            index.add(h, body_at.plus(*at as u64));
        }
        Ok(added.len())
    }

    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>> {
        let Some((slot, seg)) = self.locate(id)? else {
            return Ok(None);
        };
        Self::entry_header(id, &slot, &seg)?;
        let mut bytes = vec![0u8; slot.len as usize];
        seg.read_at(slot.pos.offset() + TX_ENTRY_HEADER_LEN as u64, &mut bytes)?;
        Ok(Some(bytes))
    }

    fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>> {
        let Some((slot, seg)) = self.locate(id)? else {
            return Ok(None);
        };
        let h = Self::entry_header(id, &slot, &seg)?;
        Ok(Some(Self::meta(&h, &slot)))
    }

    /// One log frame with the ids that changed.
    fn mark_solid(&self, ids: &[TxId]) -> Result<usize> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut w = self.log_writer();
        let changed: Vec<TxId> = {
            let index = self.read_index();
            let mut seen = HashSet::new();
            ids.iter()
                .filter(|id| {
                    index
                        .txs
                        .get(*id)
                        .is_some_and(|s| s.flags & SLOT_SOLID == 0)
                        && seen.insert(**id)
                })
                .copied()
                .collect()
        };
        if changed.is_empty() {
            return Ok(0);
        }
        let mut buf = vec![0u8; layout::FRAME_HEADER_LEN];
        buf.extend_from_slice(&layout::solid_body(&changed));
        self.append(&mut w, buf)?;
        self.write_index().mark_solid(&changed);
        Ok(changed.len())
    }

    fn transaction_count(&self) -> Result<usize> {
        Ok(self.read_index().txs.len())
    }

    /// One sequential read of the live log segments, in storing order, visiting the
    /// entries the index points at (not pruned ones, nor duplicates) with each
    /// transaction's current metadata from the index.
    fn for_each_transaction(&self, f: &mut dyn FnMut(&TxId, &[u8], &TxMeta)) -> Result<()> {
        let (segments, active, end) = {
            let w = self.log_writer();
            (self.log.snapshot(), w.segment, w.end)
        };
        let index = self.read_index();
        for seg in &segments {
            let limit = if seg.id == active { end } else { seg.len()? };
            seg.for_each_frame(limit, &mut |body_at, frame| {
                if let Frame::Transactions(entries) = frame {
                    let body_at = LogPos::new(seg.id, body_at);
                    for (h, at, bytes) in entries {
                        match index.txs.get(&h.id) {
                            Some(slot) if slot.pos == body_at.plus(at as u64) => {
                                f(&h.id, bytes, &Self::meta(&h, slot));
                            }
                            _ => {}
                        }
                    }
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// From the index alone: the payload's transactions and, from their confirmations
    /// (on top of its base if some of its transactions were pruned), its status.
    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadRecord>> {
        let index = self.read_index();
        if !index.payloads.contains_key(id) {
            return Ok(None);
        }
        Ok(Some(PayloadRecord {
            txs: index.payload_txs(id),
            status: index.payload_status(id),
        }))
    }

    /// Milestones up to the pruned one are gone, also while their sled records wait for a
    /// clean-up that failed.
    fn milestone(&self, index: MilestoneIndex) -> Result<Option<MilestoneRecord>> {
        if self
            .read_index()
            .pruned
            .as_ref()
            .is_some_and(|p| index <= p.milestone)
        {
            return Ok(None);
        }
        self.get("milestone record", &layout::milestone_key(index))
    }

    fn internal_sizes(&self) -> Vec<(&'static str, usize)> {
        let index = self.read_index();
        vec![
            ("store_index_txs", index.txs.len()),
            ("store_index_payloads", index.payloads.len()),
            ("store_index_reattached", index.more.len()),
            ("store_index_extra", index.extra.len()),
            ("store_index_payload_bases", index.bases.len()),
            ("store_log_segments", index.live.len()),
            ("store_accounts_changed", self.read_accounts().changed_len()),
        ]
    }

    fn confirmations(
        &self,
        index: MilestoneIndex,
    ) -> Result<Option<dag_core::store::Confirmations>> {
        if self.milestone(index)?.is_none() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for chunk in 0u32.. {
            match self.raw(&layout::confirmation_key(index, chunk))? {
                Some(v) => out.extend(
                    layout::decode_confirmations(&v)?
                        .into_iter()
                        .map(|c| (c.tx, c.outcome)),
                ),
                None => break,
            }
        }
        Ok(Some(out))
    }

    /// From the index, which takes a milestone's confirmations and its index in one step
    /// after its sled batch: whoever sees index `k` sees all of milestone `k`.
    fn confirmed_index(&self) -> Result<Option<MilestoneIndex>> {
        Ok(self.read_index().confirmed)
    }

    fn account(&self, address: &Address) -> Result<Option<Account>> {
        self.read_accounts().get(address)
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<Channel>> {
        self.get("channel", &layout::channel_key(id))
    }

    fn init_ledger(&self, ledger: &LedgerState) -> Result<()> {
        let _w = self.sled_writer();
        if self.raw(layout::LEDGER_KEY)?.is_some() {
            return Err(StoreError::AlreadyInitialised);
        }
        let header = LedgerHeader {
            network_id: ledger.network_id,
            supply: ledger.supply,
            confirmed_index: ledger.confirmed_index,
            digest: ledger.digest,
        };
        // Leftovers of an import cut short (a crash between two batches below): the
        // ledger header is written last, so without it any channel record is one of
        // those; they go first, or a different state imported now would keep them. (The
        // account checkpoint is replaced whole.)
        let mut stale = Batch::default();
        let mut any = false;
        for item in self.tree.scan_prefix([layout::CHANNEL]) {
            let (k, _) = item.map_err(backend)?;
            stale.remove(k);
            any = true;
        }
        if any {
            self.apply(stale)?;
        }
        // The accounts: one checkpoint file at the ledger's index, synced before the header
        // can be.
        self.write_accounts()
            .init(ledger.confirmed_index, &ledger.accounts)?;
        self.write_index().accounts_checkpoint = ledger.confirmed_index;
        // Bounded batches: sled holds every node version a batch replaces until the
        // batch ends, so one batch of a million records spent most of its time
        // allocating (17 s for 1M accounts, join-bench --detail-only). The ledger is
        // complete, and exists for `load_ledger`, once the header, written last, is.
        let mut batch = Batch::default();
        let mut n = 0;
        let records = ledger
            .channels
            .iter()
            .map(|(id, ch)| Ok((layout::channel_key(id).to_vec(), encode(ch)?)));
        for record in records {
            let (k, v): (Vec<u8>, Vec<u8>) = record?;
            batch.insert(k, v);
            n += 1;
            if n == INIT_LEDGER_BATCH {
                self.apply(std::mem::take(&mut batch))?;
                n = 0;
            }
        }
        if !ledger.rotations.is_empty() {
            batch.insert(layout::ROTATIONS_KEY, encode(&ledger.rotations)?);
        }
        batch.insert(layout::LEDGER_KEY, encode(&header)?);
        self.apply(batch)?;
        self.write_index().confirmed = Some(ledger.confirmed_index);
        Ok(())
    }

    fn load_ledger(&self) -> Result<Option<LedgerState>> {
        // Holding the sled writer lock keeps milestones out while the scans run.
        let _w = self.sled_writer();
        let Some(header) = self.ledger_header()? else {
            return Ok(None);
        };
        let accounts = self.read_accounts().all()?;
        // Keys are the prefix and the raw 32-byte ids, so sled's byte order is the ids'.
        let mut channels = Vec::new();
        for item in self.tree.scan_prefix([layout::CHANNEL]) {
            let (k, v) = item.map_err(backend)?;
            channels.push((
                ChannelId(layout::key_id("channel", &k)?),
                decode("channel", &v)?,
            ));
        }
        let rotations = self
            .get("committee rotations", layout::ROTATIONS_KEY)?
            .unwrap_or_default();
        Ok(Some(LedgerState {
            network_id: header.network_id,
            supply: header.supply,
            confirmed_index: header.confirmed_index,
            digest: header.digest,
            accounts,
            channels,
            rotations,
        }))
    }

    /// One sled batch: the confirmations in chunks of
    /// [`layout::CONFIRMATIONS_PER_CHUNK`], the milestone record, the changed accounts and
    /// channels, and the ledger header. Then the index takes the confirmations and the new
    /// confirmed index in one step.
    fn apply_milestone(&self, batch: &MilestoneBatch) -> Result<()> {
        let _w = self.sled_writer();
        // Checks come first: a rejected batch writes nothing.
        let Some(mut header) = self.ledger_header()? else {
            return Err(StoreError::NotInitialised);
        };
        let index = batch.record.index;
        let Some(expected) = header.confirmed_index.checked_add(1) else {
            return Err(StoreError::Backend(
                "milestone index space exhausted".into(),
            ));
        };
        if index != expected {
            return Err(StoreError::NonConsecutiveMilestone {
                expected,
                got: index,
            });
        }
        if batch.confirmed.len() > u32::MAX as usize {
            return Err(StoreError::Backend("milestone confirms too many".into()));
        }
        let confirmations: Vec<Confirmation> = {
            let ix = self.read_index();
            let mut out = Vec::with_capacity(batch.confirmed.len());
            for c in &batch.confirmed {
                if !ix.txs.contains_key(&c.tx) {
                    return Err(StoreError::UnknownTransaction(c.tx));
                }
                out.push(Confirmation {
                    tx: c.tx,
                    outcome: c.payload.map(|(_, o)| o),
                    // Confirmed as carrying a payload it is not indexed under: record it,
                    // so the payload's status sees this transaction after a reopen too.
                    payload: c
                        .payload
                        .map(|(p, _)| p)
                        .filter(|p| !ix.payload_has(p, &c.tx)),
                });
            }
            out
        };
        // The accounts it changes go to the log as one frame, before the batch that commits
        // the milestone (see `accounts.rs`).
        // A milestone that changes none writes no frame.
        let body = layout::accounts_body(index, &batch.diff.accounts);
        let frame_bytes = body.len() as u64;
        if !batch.diff.accounts.is_empty() {
            let mut buf = Vec::with_capacity(layout::FRAME_HEADER_LEN + body.len());
            buf.resize(layout::FRAME_HEADER_LEN, 0);
            buf.extend_from_slice(&body);
            let mut w = self.log_writer();
            let pos = self.append(&mut w, buf)?;
            self.write_index().note_accounts(pos, index);
        }
        // The confirmed transactions and the accounts frame are in the log; make sure they
        // are durable before this batch can be (sled may write it out in the background at
        // any time).
        self.sync_log()?;
        let mut out = Batch::default();
        for (chunk, list) in confirmations
            .chunks(layout::CONFIRMATIONS_PER_CHUNK)
            .enumerate()
        {
            let mut v = Vec::with_capacity(list.len() * layout::CONFIRMATION_LEN);
            for c in list {
                layout::push_confirmation(&mut v, c);
            }
            out.insert(&layout::confirmation_key(index, chunk as u32)[..], v);
        }
        out.insert(&layout::milestone_key(index)[..], encode(&batch.record)?);
        for (id, ch) in &batch.diff.channels {
            out.insert(&layout::channel_key(id)[..], encode(ch)?);
        }
        if let Some(r) = &batch.diff.rotation {
            // Rare (a committee change): the whole list is rewritten in this batch.
            let mut rotations: Vec<dag_core::Rotation> = self
                .get("committee rotations", layout::ROTATIONS_KEY)?
                .unwrap_or_default();
            rotations.push((**r).clone());
            out.insert(layout::ROTATIONS_KEY, encode(&rotations)?);
        }
        header.confirmed_index = index;
        header.digest = batch.record.ledger_digest;
        out.insert(layout::LEDGER_KEY, encode(&header)?);
        self.apply(out)?;
        // The accounts first: whoever sees the confirmed index `k` sees milestone `k`'s
        // balances.
        let due = {
            let mut accounts = self.write_accounts();
            accounts.apply(&batch.diff.accounts, frame_bytes);
            accounts.checkpoint_due()
        };
        {
            let mut ix = self.write_index();
            ix.confirm(index, 0, &confirmations)?;
            ix.confirmed = Some(index);
        }
        if due {
            // The milestone is committed whatever happens here: a checkpoint that fails is
            // tried again after the next milestone.
            if let Err(e) = self.checkpoint_accounts(index) {
                tracing::warn!(error = %e, milestone = index, "writing the account checkpoint failed");
            }
        }
        Ok(())
    }

    /// Makes every earlier write durable as the store's [`Durability`] says, sharing the
    /// physical flush with concurrent callers (group commit).
    fn flush(&self) -> Result<()> {
        self.group.commit(|| self.physical_flush())
    }

    /// Syncs the log only, so storing transactions never waits for sled's flush of a
    /// milestone.
    fn flush_transactions(&self) -> Result<()> {
        self.sync_log()
    }

    /// A tombstone frame in the log (synced: the commit point), the index, then one sled
    /// batch of clean-up; log segments left without live entries are deleted. See
    /// `sled/prune.rs` and the [module](crate::store) docs.
    fn prune(&self, batch: &PruneBatch) -> Result<()> {
        self.prune_batch(batch)
    }

    fn pruned(&self) -> Result<Option<PruneState>> {
        Ok(self.read_index().pruned.clone())
    }
}
