//! The generic [`Store`](dag_core::store::Store) conformance suite, run on [`MemStore`].

use dag_core::store::{conformance, MemStore};

#[test]
fn mem_store_conforms() {
    conformance::run_all(MemStore::new);
}

#[test]
fn mem_store_clone_sees_everything_written() {
    // A MemStore "reopens" as another handle to the same data.
    let store = MemStore::new();
    conformance::reopen_persistence(|| store.clone());
}

/// The suite has teeth: backends that break a rule fail it.
mod broken_backends {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use dag_core::store::{
        conformance, MemStore, MilestoneBatch, MilestoneRecord, PayloadRecord, Result, Store,
        TxEntry, TxMeta,
    };
    use dag_core::{
        Account, Address, Channel, ChannelId, LedgerDiff, LedgerState, PayloadId, TxId,
    };

    /// Wraps a MemStore; `forgets_solid` reports every transaction as not solid,
    /// `drop_diff` forgets the ledger diff of milestone batches.
    struct Broken {
        inner: MemStore,
        forgets_solid: bool,
        drop_diff: bool,
    }

    impl Store for Broken {
        fn put_transactions(&self, txs: &[TxEntry<'_>]) -> Result<usize> {
            self.inner.put_transactions(txs)
        }
        fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>> {
            self.inner.transaction(id)
        }
        fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>> {
            let m = self.inner.metadata(id)?;
            Ok(m.map(|m| {
                if self.forgets_solid {
                    TxMeta { solid: false, ..m }
                } else {
                    m
                }
            }))
        }
        fn mark_solid(&self, ids: &[TxId]) -> Result<usize> {
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
        fn milestone(&self, index: u32) -> Result<Option<MilestoneRecord>> {
            self.inner.milestone(index)
        }
        fn confirmed_index(&self) -> Result<Option<u32>> {
            self.inner.confirmed_index()
        }
        fn account(&self, address: &Address) -> Result<Option<Account>> {
            self.inner.account(address)
        }
        fn channel(&self, id: &ChannelId) -> Result<Option<Channel>> {
            self.inner.channel(id)
        }
        fn init_ledger(&self, state: &LedgerState) -> Result<()> {
            self.inner.init_ledger(state)
        }
        fn load_ledger(&self) -> Result<Option<LedgerState>> {
            self.inner.load_ledger()
        }
        fn apply_milestone(&self, batch: &MilestoneBatch) -> Result<()> {
            if self.drop_diff {
                let mut b = batch.clone();
                b.diff = LedgerDiff::default();
                return self.inner.apply_milestone(&b);
            }
            self.inner.apply_milestone(batch)
        }
        fn flush(&self) -> Result<()> {
            self.inner.flush()
        }
    }

    fn fails(check: impl FnOnce()) -> bool {
        catch_unwind(AssertUnwindSafe(check)).is_err()
    }

    #[test]
    fn a_store_losing_the_solid_flag_fails() {
        let s = Broken {
            inner: MemStore::new(),
            forgets_solid: true,
            drop_diff: false,
        };
        assert!(fails(|| conformance::mark_solid(&s)));
        let s = Broken {
            inner: MemStore::new(),
            forgets_solid: true,
            drop_diff: false,
        };
        assert!(fails(|| conformance::idempotent_reput(&s)));
    }

    #[test]
    fn a_store_dropping_ledger_diffs_fails_the_round_trip() {
        let s = Broken {
            inner: MemStore::new(),
            forgets_solid: false,
            drop_diff: true,
        };
        assert!(fails(|| conformance::ledger_round_trip(&s)));
        let ok = Broken {
            inner: MemStore::new(),
            forgets_solid: false,
            drop_diff: false,
        };
        conformance::ledger_round_trip(&ok);
    }
}
