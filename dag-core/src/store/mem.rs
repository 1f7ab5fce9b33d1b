//! [`MemStore`]: the in-memory [`Store`], for tests, the simulator and embedded use.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use hashbrown::HashMap;

use super::{
    next_payload_status, MilestoneBatch, MilestoneRecord, PayloadRecord, PayloadStatus, PruneBatch,
    PruneState, Result, Store, StoreError, TxEntry, TxMeta,
};
use crate::ids::{Address, ChannelId, Digest, PayloadId, TxId};
use crate::ledger::{Account, Channel, LedgerState, PayloadOutcome};
use crate::types::{MilestoneIndex, NetworkId};

/// An in-memory [`Store`]: maps behind one `RwLock`, so every batch is atomic for readers.
///
/// Cloning gives another handle to the same data (like reopening a database); nothing
/// survives dropping the last handle. [`Store::flush`] does nothing.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    inner: Arc<RwLock<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Bytes, metadata, and the place in storing order.
    txs: HashMap<TxId, (Vec<u8>, TxMeta, u64)>,
    /// Storing order: place -> id (for `for_each_transaction`).
    order: BTreeMap<u64, TxId>,
    /// The place of the next transaction stored.
    next_place: u64,
    payloads: HashMap<PayloadId, PayloadRecord>,
    milestones: BTreeMap<MilestoneIndex, MilestoneRecord>,
    confirmations: BTreeMap<MilestoneIndex, Vec<(TxId, Option<PayloadOutcome>)>>,
    ledger: Option<LedgerMeta>,
    accounts: HashMap<Address, Account>,
    channels: HashMap<ChannelId, Channel>,
    pruned: Option<PruneState>,
}

#[derive(Debug, Clone)]
struct LedgerMeta {
    network_id: NetworkId,
    supply: u64,
    confirmed_index: MilestoneIndex,
    digest: Digest,
    rotations: Vec<crate::committee::Rotation>,
}

fn poisoned() -> StoreError {
    StoreError::Backend("lock poisoned by a panic in another thread".into())
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> Result<RwLockReadGuard<'_, Inner>> {
        self.inner.read().map_err(|_| poisoned())
    }

    fn write(&self) -> Result<RwLockWriteGuard<'_, Inner>> {
        self.inner.write().map_err(|_| poisoned())
    }
}

impl Store for MemStore {
    fn put_transactions(&self, txs: &[TxEntry<'_>]) -> Result<usize> {
        let mut inner = self.write()?;
        let mut new = 0;
        for e in txs {
            if inner.txs.contains_key(&e.id) {
                continue;
            }
            let place = inner.next_place;
            inner.next_place += 1;
            inner.order.insert(place, e.id);
            inner.txs.insert(e.id, (e.bytes.to_vec(), e.meta, place));
            if let Some(p) = e.meta.payload {
                inner
                    .payloads
                    .entry(p)
                    .or_insert_with(|| PayloadRecord {
                        txs: Vec::new(),
                        status: PayloadStatus::Pending,
                    })
                    .txs
                    .push(e.id);
            }
            new += 1;
        }
        Ok(new)
    }

    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>> {
        Ok(self.read()?.txs.get(id).map(|(b, _, _)| b.clone()))
    }

    fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>> {
        Ok(self.read()?.txs.get(id).map(|(_, m, _)| *m))
    }

    fn mark_solid(&self, ids: &[TxId]) -> Result<usize> {
        let mut inner = self.write()?;
        let mut changed = 0;
        for id in ids {
            if let Some((_, m, _)) = inner.txs.get_mut(id) {
                if !m.solid {
                    m.solid = true;
                    changed += 1;
                }
            }
        }
        Ok(changed)
    }

    fn transaction_count(&self) -> Result<usize> {
        Ok(self.read()?.txs.len())
    }

    fn for_each_transaction(&self, f: &mut dyn FnMut(&TxId, &[u8], &TxMeta)) -> Result<()> {
        let inner = self.read()?;
        for id in inner.order.values() {
            if let Some((bytes, meta, _)) = inner.txs.get(id) {
                f(id, bytes, meta);
            }
        }
        Ok(())
    }

    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadRecord>> {
        Ok(self.read()?.payloads.get(id).cloned())
    }

    fn milestone(&self, index: MilestoneIndex) -> Result<Option<MilestoneRecord>> {
        Ok(self.read()?.milestones.get(&index).copied())
    }

    fn confirmed_index(&self) -> Result<Option<MilestoneIndex>> {
        Ok(self.read()?.ledger.as_ref().map(|l| l.confirmed_index))
    }

    fn confirmations(&self, index: MilestoneIndex) -> Result<Option<super::Confirmations>> {
        Ok(self.read()?.confirmations.get(&index).cloned())
    }

    fn account(&self, address: &Address) -> Result<Option<Account>> {
        Ok(self.read()?.accounts.get(address).copied())
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<Channel>> {
        Ok(self.read()?.channels.get(id).copied())
    }

    fn init_ledger(&self, state: &LedgerState) -> Result<()> {
        let mut inner = self.write()?;
        if inner.ledger.is_some() {
            return Err(StoreError::AlreadyInitialised);
        }
        inner.ledger = Some(LedgerMeta {
            network_id: state.network_id,
            supply: state.supply,
            confirmed_index: state.confirmed_index,
            digest: state.digest,
            rotations: state.rotations.clone(),
        });
        inner.accounts = state.accounts.iter().copied().collect();
        inner.channels = state.channels.iter().copied().collect();
        Ok(())
    }

    fn load_ledger(&self) -> Result<Option<LedgerState>> {
        let inner = self.read()?;
        let Some(meta) = inner.ledger.as_ref() else {
            return Ok(None);
        };
        let mut accounts: Vec<_> = inner.accounts.iter().map(|(a, v)| (*a, *v)).collect();
        accounts.sort_unstable_by_key(|x| x.0);
        let mut channels: Vec<_> = inner.channels.iter().map(|(a, v)| (*a, *v)).collect();
        channels.sort_unstable_by_key(|x| x.0);
        Ok(Some(LedgerState {
            network_id: meta.network_id,
            supply: meta.supply,
            confirmed_index: meta.confirmed_index,
            digest: meta.digest,
            accounts,
            channels,
            rotations: meta.rotations.clone(),
        }))
    }

    fn apply_milestone(&self, batch: &MilestoneBatch) -> Result<()> {
        let mut guard = self.write()?;
        let inner = &mut *guard;
        // Check everything first: a rejected batch writes nothing.
        let meta = inner.ledger.as_mut().ok_or(StoreError::NotInitialised)?;
        let expected = meta
            .confirmed_index
            .checked_add(1)
            .ok_or_else(|| StoreError::Backend("milestone index space exhausted".into()))?;
        let index = batch.record.index;
        if index != expected {
            return Err(StoreError::NonConsecutiveMilestone {
                expected,
                got: index,
            });
        }
        if let Some(c) = batch
            .confirmed
            .iter()
            .find(|c| !inner.txs.contains_key(&c.tx))
        {
            return Err(StoreError::UnknownTransaction(c.tx));
        }

        meta.confirmed_index = index;
        meta.digest = batch.record.ledger_digest;
        meta.rotations
            .extend(batch.diff.rotation.as_deref().cloned());
        inner.milestones.insert(index, batch.record);
        inner.confirmations.insert(
            index,
            batch
                .confirmed
                .iter()
                .map(|c| (c.tx, c.payload.map(|(_, o)| o)))
                .collect(),
        );
        for c in &batch.confirmed {
            if let Some((_, m, _)) = inner.txs.get_mut(&c.tx) {
                m.confirmed_by = Some(index);
                m.outcome = c.payload.map(|(_, o)| o);
            }
            if let Some((pid, outcome)) = c.payload {
                let rec = inner.payloads.entry(pid).or_insert_with(|| PayloadRecord {
                    txs: vec![c.tx],
                    status: PayloadStatus::Pending,
                });
                rec.status = next_payload_status(rec.status, index, c.tx, outcome);
            }
        }
        for (a, acc) in &batch.diff.accounts {
            inner.accounts.insert(*a, *acc);
        }
        for (id, ch) in &batch.diff.channels {
            inner.channels.insert(*id, *ch);
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        // Nothing to make durable; still report a poisoned lock.
        self.read().map(|_| ())
    }

    fn prune(&self, batch: &PruneBatch) -> Result<()> {
        let mut inner = self.write()?;
        for id in &batch.txs {
            let Some((_, meta, place)) = inner.txs.remove(id) else {
                continue;
            };
            inner.order.remove(&place);
            if let Some(p) = meta.payload {
                if let Some(rec) = inner.payloads.get_mut(&p) {
                    rec.txs.retain(|t| t != id);
                    if rec.txs.is_empty() {
                        inner.payloads.remove(&p);
                    }
                }
            }
        }
        let milestone = inner
            .pruned
            .as_ref()
            .map_or(batch.milestone, |p| p.milestone.max(batch.milestone));
        inner.milestones = match milestone.checked_add(1) {
            Some(keep_from) => inner.milestones.split_off(&keep_from),
            None => BTreeMap::new(),
        };
        inner.confirmations = match milestone.checked_add(1) {
            Some(keep_from) => inner.confirmations.split_off(&keep_from),
            None => BTreeMap::new(),
        };
        inner.pruned = Some(PruneState {
            milestone,
            entry_points: batch.entry_points.clone(),
        });
        Ok(())
    }

    fn pruned(&self) -> Result<Option<PruneState>> {
        Ok(self.read()?.pruned.clone())
    }
}
