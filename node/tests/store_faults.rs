//! Storage that fails for a while (a full disk, no file descriptors left) does not stop the
//! node for good: it refuses data with 503 while writes fail, retries what failed in order,
//! and carries on once storage works again, with nothing acknowledged lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;

use dag_core::ledger::LedgerState;
use dag_core::store::{
    MemStore, MilestoneBatch, MilestoneRecord, PayloadRecord, Result, Store, StoreError, TxEntry,
    TxMeta,
};
use dag_core::{
    Account, Address, Body, Channel, ChannelId, MilestoneIndex, PayloadId, SignedPayload, TxId,
};
use node::protocol::ProtocolConfig;
use node::service::{PayloadState, SubmitError};
use node::{Node, NodeService, NodeSetup};

/// A [`MemStore`] whose writes and flushes fail while `failing` is set.
struct FlakyStore {
    inner: MemStore,
    failing: AtomicBool,
}

impl FlakyStore {
    fn check(&self) -> Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(StoreError::Backend(
                "Too many open files (os error 24)".into(),
            ));
        }
        Ok(())
    }
}

impl Store for FlakyStore {
    fn put_transactions(&self, txs: &[TxEntry<'_>]) -> Result<usize> {
        self.check()?;
        self.inner.put_transactions(txs)
    }
    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>> {
        self.inner.transaction(id)
    }
    fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>> {
        self.inner.metadata(id)
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
        self.check()?;
        self.inner.apply_milestone(batch)
    }
    fn flush(&self) -> Result<()> {
        self.check()?;
        self.inner.flush()
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    // Bounded only so that a bug fails instead of hanging; success never waits for it.
    for _ in 0..3000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_failure_is_retried_and_the_node_recovers() {
    let n = common::network("store-faults", 2, 60_000);
    let store = Arc::new(FlakyStore {
        inner: MemStore::new(),
        failing: AtomicBool::new(false),
    });
    let node = Node::start(NodeSetup {
        genesis: n.genesis.clone(),
        store: store.clone(),
        protocol: ProtocolConfig {
            milestone_signer: Some((0, n.committee.clone())),
            milestone_interval_ms: 100,
            ..ProtocolConfig::default()
        },
        max_batch: 256,
        queue_capacity: 1024,
    })
    .await
    .unwrap();
    let h = node.handle();
    let nid = n.genesis.network_id();
    let pay = |seq: u64, to: u8| {
        SignedPayload::sign(
            &n.faucet,
            nid,
            seq,
            Body::Pay {
                to: Address([to; 32]),
                amount: 10,
                memo: Vec::new(),
            },
        )
    };
    let first = h.submit_payloads(vec![pay(0, 1)]).await.remove(0).unwrap();

    // Storage fails: the next submission is not acknowledged, and the node says why.
    store.failing.store(true, Ordering::SeqCst);
    let r = h.submit_payloads(vec![pay(1, 2)]).await.remove(0);
    assert!(matches!(r, Err(SubmitError::Unavailable(_))), "{r:?}");
    let health = h.health();
    assert!(!health.healthy);
    assert!(
        health.reasons[0].contains("Too many open files"),
        "{health:?}"
    );
    let r = h.submit_payloads(vec![pay(2, 3)]).await.remove(0);
    assert!(matches!(r, Err(SubmitError::Unavailable(_))), "{r:?}");

    // Storage works again: the node recovers by itself, and goes on confirming.
    store.failing.store(false, Ordering::SeqCst);
    until("the node is healthy again", || h.health().healthy).await;
    // The client sends again what got a 503. Seq 1 may have entered the node before its
    // write failed (then it is a duplicate: the node kept it); seq 2 was refused at once.
    let mut again = h
        .submit_payloads(vec![pay(1, 2), pay(2, 3), pay(3, 4)])
        .await;
    assert!(
        matches!(&again[0], Ok(_) | Err(SubmitError::Conflict(_))),
        "{:?}",
        again[0]
    );
    let after = again.remove(2).unwrap();
    again.remove(1).unwrap();
    until("every payload is confirmed", || {
        [first.payload_id, after.payload_id].iter().all(|id| {
            matches!(
                h.payload(id).unwrap().map(|p| p.state),
                Some(PayloadState::Confirmed { .. })
            )
        })
    })
    .await;
    // Nothing that entered the node was lost: every payment applies exactly once.
    for to in 1..=4u8 {
        until("each recipient is paid", || {
            h.account(&Address([to; 32])).unwrap().balance == 10
        })
        .await;
    }
    node.shutdown().await;
}
