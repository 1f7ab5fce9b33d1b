//! [`FaultyStore`]: a [`MemStore`] with faults switched on by tests (feature `test-utils`).
//!
//! Used to show that the conformance suite has teeth (a backend that breaks a rule fails it)
//! and that a node survives storage that fails for a while.

use std::sync::atomic::{AtomicBool, Ordering};

use super::{
    MemStore, MilestoneBatch, MilestoneRecord, PayloadRecord, PruneBatch, PruneState, Result,
    Store, StoreError, TxEntry, TxMeta,
};
use crate::ids::{Address, ChannelId, PayloadId, TxId};
use crate::ledger::{Account, Channel, LedgerDiff, LedgerState};
use crate::types::MilestoneIndex;

/// A [`MemStore`] with switchable faults. All off by default.
#[derive(Default)]
pub struct FaultyStore {
    inner: MemStore,
    /// While set, every write and flush fails with [`FaultyStore::WRITE_ERROR`].
    fail_writes: AtomicBool,
    /// Report every transaction as not solid (breaks the solid rule).
    forget_solid: bool,
    /// Forget the ledger diff of milestone batches (breaks the ledger rule).
    drop_diff: bool,
}

impl FaultyStore {
    /// The message of an injected write failure.
    pub const WRITE_ERROR: &'static str = "Too many open files (os error 24)";

    /// A store with no fault on.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store that reports every transaction as not solid.
    pub fn forgetting_solid() -> Self {
        FaultyStore {
            forget_solid: true,
            ..Self::default()
        }
    }

    /// A store that forgets the ledger diff of milestone batches.
    pub fn dropping_diffs() -> Self {
        FaultyStore {
            drop_diff: true,
            ..Self::default()
        }
    }

    /// Makes writes fail (`true`) or work again.
    pub fn set_failing(&self, on: bool) {
        self.fail_writes.store(on, Ordering::SeqCst);
    }

    fn check(&self) -> Result<()> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(Self::WRITE_ERROR.into()));
        }
        Ok(())
    }
}

impl Store for FaultyStore {
    fn put_transactions(&self, txs: &[TxEntry<'_>]) -> Result<usize> {
        self.check()?;
        self.inner.put_transactions(txs)
    }
    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>> {
        self.inner.transaction(id)
    }
    fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>> {
        let m = self.inner.metadata(id)?;
        Ok(m.map(|m| TxMeta {
            solid: m.solid && !self.forget_solid,
            ..m
        }))
    }
    fn mark_solid(&self, ids: &[TxId]) -> Result<usize> {
        self.check()?;
        self.inner.mark_solid(ids)
    }
    fn transaction_count(&self) -> Result<usize> {
        self.inner.transaction_count()
    }
    fn for_each_transaction(&self, f: &mut dyn FnMut(&TxId, &[u8], &TxMeta)) -> Result<()> {
        self.inner.for_each_transaction(f)
    }
    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadRecord>> {
        self.inner.payload(id)
    }
    fn milestone(&self, index: MilestoneIndex) -> Result<Option<MilestoneRecord>> {
        self.inner.milestone(index)
    }
    fn confirmed_index(&self) -> Result<Option<MilestoneIndex>> {
        self.inner.confirmed_index()
    }
    fn confirmations(&self, index: MilestoneIndex) -> Result<Option<super::Confirmations>> {
        self.inner.confirmations(index)
    }
    fn account(&self, address: &Address) -> Result<Option<Account>> {
        self.inner.account(address)
    }
    fn channel(&self, id: &ChannelId) -> Result<Option<Channel>> {
        self.inner.channel(id)
    }
    fn init_ledger(&self, state: &LedgerState) -> Result<()> {
        self.check()?;
        self.inner.init_ledger(state)
    }
    fn load_ledger(&self) -> Result<Option<LedgerState>> {
        self.inner.load_ledger()
    }
    fn apply_milestone(&self, batch: &MilestoneBatch) -> Result<()> {
        self.check()?;
        if self.drop_diff {
            let mut b = batch.clone();
            b.diff = LedgerDiff::default();
            return self.inner.apply_milestone(&b);
        }
        self.inner.apply_milestone(batch)
    }
    fn flush(&self) -> Result<()> {
        self.check()?;
        self.inner.flush()
    }
    fn prune(&self, batch: &PruneBatch) -> Result<()> {
        self.check()?;
        self.inner.prune(batch)
    }
    fn pruned(&self) -> Result<Option<PruneState>> {
        self.inner.pruned()
    }
}
