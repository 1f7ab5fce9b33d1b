//! The async driver around [`Protocol`]: a batching ingest task with group commit, a
//! milestone/reattachment ticker, and [`NodeHandle`], the [`NodeService`] the API serves.
//!
//! ## Why batches
//! Submissions queue on a bounded channel (a full queue answers 503 at once, so a flood
//! cannot grow memory). The ingest task takes everything queued (up to
//! [`NodeSetup::max_batch`] requests), validates it in parallel on the rayon pool (batch
//! Ed25519), solves proof of work for payloads in parallel, ingests under one short lock,
//! writes the whole batch and flushes the store once, and only then answers every request
//! of the batch. So each answer means "durable", and many concurrent submissions share one
//! flush (group commit).
//!
//! ## Write order
//! Store writes come out of the protocol in order ([`Protocol::poll_store_write`]); the ingest
//! task and the ticker both persist through [`Shared::persist`], which drains them under one
//! lock and writes the transactions at once. Milestone batches go, in order, to the
//! **milestone writer**, a thread of their own: applying one writes an account value per
//! payer (tens of milliseconds for thousands of payments), and ingest rounds must not wait
//! for that. The transactions a milestone confirms were written before its batch was queued,
//! so a milestone batch is never written before them. The events a milestone produces
//! (confirmations, the milestone itself) are published by the writer once its batch is
//! durable, so a client that sees a confirmation can read it back from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dag_core::codec;
use dag_core::ledger::{ConflictReason, Ledger, PayloadOutcome};
use dag_core::store::{MilestoneBatch, PayloadStatus, Store, StoreError, TxEntry};
use dag_core::tangle::InsertError;
use dag_core::validate::{BatchValidator, ValidationError};
use dag_core::{
    Address, ChannelId, DecodeError, Genesis, MilestoneIndex, PayloadId, SignedPayload, TangleView,
    TxId,
};
use rayon::prelude::*;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::metrics::Metrics;
use crate::service::{
    AccountView, ChannelView, Health, MilestoneView, NodeEvent, NodeInfo, NodeService,
    PayloadReceipt, PayloadState, PayloadView, ServiceError, SubmitError, TxMetadataView,
};
use node_proto::peering::{PeerKey, Verdict};
use node_proto::{
    validate_from_peers, Event, MilestoneSummary, Origin, Protocol, ProtocolConfig, ProtocolError,
    Refusal, RejectReason, Step, StoreWrite, Submitted, Work,
};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a node is built from.
pub struct NodeSetup {
    /// The network.
    pub genesis: Genesis,
    /// Storage (sled in production, `MemStore` in tests).
    pub store: Arc<dyn Store>,
    /// Protocol settings (committee key, faucet, selector...).
    pub protocol: ProtocolConfig,
    /// Most transactions and payloads ingested in one round (a round stops taking requests
    /// once it reaches this many items).
    pub max_batch: usize,
    /// Most requests waiting; beyond it submissions get 503.
    pub queue_capacity: usize,
}

/// Starting a node failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Storage failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Stored or configured state is unusable.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The stored ledger does not belong to this genesis or is inconsistent.
    #[error("ledger: {0}")]
    Ledger(String),
}

enum Request {
    Transactions(
        Vec<Vec<u8>>,
        oneshot::Sender<Vec<Result<TxId, SubmitError>>>,
    ),
    Payloads(
        Vec<SignedPayload>,
        oneshot::Sender<Vec<Result<PayloadReceipt, SubmitError>>>,
    ),
}

/// Receives each batch of newly accepted transactions (see [`NodeHandle::set_accepted_hook`]).
pub type AcceptedHook = Arc<dyn Fn(&[node_proto::StoredTx]) + Send + Sync>;

/// Result of [`NodeHandle::ingest_from_peers`].
#[derive(Clone, Debug)]
pub struct PeerIngest {
    /// One verdict per input, in order.
    pub verdicts: Vec<Verdict>,
    /// Parents that waiting transactions lack: request them.
    pub missing: Vec<TxId>,
}

/// State shared by the tasks and the handle.
pub struct Shared {
    core: Mutex<Protocol>,
    store: Arc<dyn Store>,
    validator: Arc<BatchValidator>,
    /// Serialises draining protocol writes and writing them (see module docs).
    write_order: Mutex<()>,
    /// The last milestone whose batch is durable and whose events are out, with its ledger
    /// digest: what `info` reports as confirmed (the protocol's ledger may be a milestone
    /// ahead while the milestone writer works).
    durable_milestone: Mutex<(MilestoneIndex, dag_core::Digest)>,
    /// Queue of the milestone writer; taken out at shutdown to stop it.
    milestone_jobs: Mutex<Option<std::sync::mpsc::Sender<MilestoneJob>>>,
    events: broadcast::Sender<NodeEvent>,
    metrics: Metrics,
    /// Views of the milestones applied since start (the store's records lack the counts).
    milestones: Mutex<HashMap<MilestoneIndex, MilestoneView>>,
    /// Set while writes fail; they are retried (see [`Shared::persist`]) and the node
    /// accepts no data until they succeed.
    store_failing: AtomicBool,
    /// Set while the milestone writer retries a failed batch.
    milestone_failing: AtomicBool,
    /// The last storage error, for `/health`.
    store_error: Mutex<Option<String>>,
    /// Writes not yet durable because storage failed: retried in order, first of all.
    backlog: Mutex<Backlog>,
    /// Set by shutdown: the milestone writer stops retrying.
    stopping: AtomicBool,
    /// Called with every batch of newly accepted transactions (peer gossip).
    on_accepted: std::sync::RwLock<Option<AcceptedHook>>,
    network_name: String,
    pow_difficulty: u8,
}

/// A running node. Drop or [`Node::shutdown`] to stop it.
pub struct Node {
    handle: NodeHandle,
    milestone_writer: std::thread::JoinHandle<()>,
    ingest: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Cheap-to-clone access to a running node; implements [`NodeService`].
#[derive(Clone)]
pub struct NodeHandle {
    shared: Arc<Shared>,
    ingest: mpsc::Sender<Request>,
}

impl Node {
    /// Loads (or initialises) the ledger in the store, rebuilds the Tangle from the stored
    /// transactions, and starts the ingest and ticker tasks. Must run inside a tokio runtime.
    pub async fn start(setup: NodeSetup) -> Result<Node, NodeError> {
        let NodeSetup {
            genesis,
            store,
            protocol,
            max_batch,
            queue_capacity,
        } = setup;
        let interval = protocol.milestone_interval_ms;
        let s2 = store.clone();
        let g2 = genesis.clone();
        let core = tokio::task::spawn_blocking(move || restore(g2, protocol, &*s2))
            .await
            .expect("restore task panicked")?;
        let (events, _) = broadcast::channel(1 << 16);
        let (jobs_tx, jobs_rx) = std::sync::mpsc::channel();
        let durable = (core.ledger().confirmed_index(), core.ledger().digest());
        let shared = Arc::new(Shared {
            validator: core.validator(),
            network_name: genesis.network_name.clone(),
            pow_difficulty: genesis.pow_difficulty,
            core: Mutex::new(core),
            store,
            write_order: Mutex::new(()),
            durable_milestone: Mutex::new(durable),
            milestone_jobs: Mutex::new(Some(jobs_tx)),
            events,
            metrics: Metrics::new(),
            milestones: Mutex::new(HashMap::new()),
            store_failing: AtomicBool::new(false),
            milestone_failing: AtomicBool::new(false),
            store_error: Mutex::new(None),
            backlog: Mutex::new(Backlog::default()),
            stopping: AtomicBool::new(false),
            on_accepted: std::sync::RwLock::new(None),
        });
        shared.refresh_gauges();
        let stored = shared.store.transaction_count()?;
        shared.metrics.store_transactions.set(stored as i64);
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let ingest = tokio::spawn(ingest_loop(shared.clone(), rx, max_batch.max(1)));
        let period = Duration::from_millis((interval / 4).clamp(20, 250));
        let ticker = tokio::spawn(tick_loop(shared.clone(), period, stop_rx));
        let weak = Arc::downgrade(&shared);
        let milestone_writer = std::thread::Builder::new()
            .name("milestone-writer".into())
            .spawn(move || milestone_writer(weak, jobs_rx))
            .map_err(|e| {
                NodeError::Store(StoreError::Backend(format!("spawning a thread: {e}")))
            })?;
        Ok(Node {
            handle: NodeHandle { shared, ingest: tx },
            milestone_writer,
            ingest,
            ticker,
            stop,
        })
    }

    /// A handle for the API.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Stops the tasks after the batch in flight, then flushes the store.
    pub async fn shutdown(self) {
        let Node {
            handle,
            milestone_writer,
            ingest,
            ticker,
            stop,
        } = self;
        let _ = stop.send(true);
        handle.shared.stopping.store(true, Ordering::SeqCst);
        let _ = ticker.await;
        let shared = handle.shared.clone();
        drop(handle);
        // The ingest task ends when every handle (sender) is gone; API handles may still be
        // alive in a server that is shutting down, so don't wait forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), ingest).await;
        let _ = tokio::task::spawn_blocking(move || {
            let _ = shared.persist();
            // Let the milestone writer finish what is queued, then stop it.
            drop(
                shared
                    .milestone_jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take(),
            );
            let _ = milestone_writer.join();
            let _ = shared.store.flush();
        })
        .await;
    }
}

/// Writes that failed, kept to be retried in order (see [`Shared::persist`]).
#[derive(Default)]
struct Backlog {
    /// Transaction writes, retried as a whole (they are idempotent: stored ids are skipped).
    direct: Vec<StoreWrite>,
    /// Milestone jobs that wait for `direct` (a batch never goes before its transactions).
    jobs: Vec<MilestoneJob>,
}

/// A milestone's store batches and the events that wait for them to be durable.
struct MilestoneJob {
    batches: Vec<MilestoneBatch>,
    events: Vec<Event>,
}

/// The milestone writer thread: applies each job's batches in order, flushes, then
/// publishes its events. Ends when the queue closes (shutdown, or the node is gone).
fn milestone_writer(
    shared: std::sync::Weak<Shared>,
    jobs: std::sync::mpsc::Receiver<MilestoneJob>,
) {
    while let Ok(job) = jobs.recv() {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        // A failed write is retried (with backoff) until it succeeds: a transient failure
        // (a full disk freed, file descriptors released) must not stop the node for good.
        let mut wait = Duration::from_millis(50);
        loop {
            let written = job
                .batches
                .iter()
                .try_for_each(|b| shared.store.apply_milestone(b))
                .and_then(|()| shared.store.flush());
            match written {
                Ok(()) => {
                    if shared.milestone_failing.swap(false, Ordering::SeqCst) {
                        tracing::info!("milestone write succeeded again; storage recovered");
                    }
                    break;
                }
                Err(e) => {
                    shared.storage_failed(&e, &shared.milestone_failing);
                    if shared.stopping.load(Ordering::SeqCst) {
                        tracing::error!(error = %e, "shutting down with a milestone batch unwritten; it is applied again from its transactions on restart");
                        return;
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        }
        shared.metrics.store_flushes.inc();
        shared.publish(job.events);
        if let Some(last) = job.batches.last() {
            *shared
                .durable_milestone
                .lock()
                .unwrap_or_else(|p| p.into_inner()) =
                (last.record.index, last.record.ledger_digest);
        }
    }
}

/// Carries out one protocol write (no flush); returns how many transactions were new.
fn write_one(store: &dyn Store, w: &StoreWrite) -> Result<usize, StoreError> {
    match w {
        StoreWrite::Transactions(txs) => {
            let entries: Vec<TxEntry<'_>> = txs
                .iter()
                .map(|t| TxEntry {
                    id: t.id,
                    bytes: &t.bytes,
                    meta: t.meta,
                })
                .collect();
            store.put_transactions(&entries)
        }
        StoreWrite::MarkSolid(ids) => store.mark_solid(ids).map(|_| 0),
        StoreWrite::Milestone(batch) => store.apply_milestone(batch).map(|()| 0),
    }
}

/// Builds the protocol from the store: ledger (or genesis), then transactions in arrival
/// order, then confirmation marks.
fn restore(
    genesis: Genesis,
    config: ProtocolConfig,
    store: &dyn Store,
) -> Result<Protocol, NodeError> {
    let ledger = match store.load_ledger()? {
        Some(state) => Ledger::from_parts(state).map_err(|e| NodeError::Ledger(e.to_string()))?,
        None => {
            let l = Ledger::from_genesis(&genesis).map_err(|e| NodeError::Ledger(e.to_string()))?;
            store.init_ledger(&l.to_state())?;
            store.flush()?;
            l
        }
    };
    if ledger.network_id() != genesis.network_id() {
        return Err(NodeError::Ledger(format!(
            "the database belongs to network {}, the genesis defines {}",
            ledger.network_id(),
            genesis.network_id()
        )));
    }
    let mut core = Protocol::new(genesis, config, ledger)?;
    let mut txs = Vec::new();
    store.for_each_transaction(&mut |id, bytes, meta| {
        txs.push((meta.arrival, *id, bytes.to_vec(), *meta));
    })?;
    // Arrival order, so parents come first and the solidification buffer stays small.
    txs.sort_by_key(|t| (t.0, t.1));
    let mut bad = 0usize;
    for (_, id, bytes, meta) in &txs {
        if !core.restore_transaction(*id, bytes, meta) {
            bad += 1;
        }
    }
    if bad > 0 {
        tracing::warn!(bad, "stored transactions could not be re-attached");
    }
    core.finish_restore(now_ms())?;
    // Milestones applied again (their batches were lost in a crash): store them before the
    // node starts, so the stored ledger never lags the one in memory.
    let mut milestones = 0;
    while let Some(w) = core.poll_store_write() {
        milestones += usize::from(matches!(w, StoreWrite::Milestone(_)));
        write_one(store, &w)?;
    }
    if milestones > 0 {
        store.flush()?;
        tracing::info!(
            milestones,
            "milestones whose batches were lost in a crash applied again"
        );
    }
    tracing::info!(
        transactions = txs.len(),
        confirmed_milestone = core.ledger().confirmed_index(),
        "state restored"
    );
    Ok(core)
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Protocol> {
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drains the protocol's writes and events; writes the transactions and flushes once,
    /// publishes the events that do not wait for a milestone, and queues milestone batches
    /// with their events for the milestone writer (see the module docs).
    fn persist(&self) -> Result<(), StoreError> {
        let _order = self.write_order.lock().unwrap_or_else(|p| p.into_inner());
        let (writes, events) = {
            let mut core = self.lock();
            let mut w = Vec::new();
            while let Some(x) = core.poll_store_write() {
                w.push(x);
            }
            let mut e = Vec::new();
            while let Some(x) = core.poll_event() {
                e.push(x);
            }
            (w, e)
        };
        let mut direct = Vec::with_capacity(writes.len());
        let mut batches = Vec::new();
        for w in writes {
            match w {
                StoreWrite::Milestone(b) => batches.push(b),
                other => direct.push(other),
            }
        }
        let (now, later): (Vec<Event>, Vec<Event>) = if batches.is_empty() {
            (events, Vec::new())
        } else {
            events
                .into_iter()
                .partition(|e| !matches!(e, Event::Milestone(_) | Event::Payload { .. }))
        };
        // Gossip on acceptance, before the flush, except what this node signed itself (see
        // `StoredTx::node_signed`), which goes out once durable.
        self.notify_accepted(&direct, false);
        // Earlier writes that failed go first; the whole backlog is written again (stored
        // transactions are skipped), so nothing is lost or reordered by a failure.
        let mut backlog = self.backlog.lock().unwrap_or_else(|p| p.into_inner());
        backlog.direct.extend(direct);
        if !batches.is_empty() {
            backlog.jobs.push(MilestoneJob {
                batches,
                events: later,
            });
        }
        let result = self.write_all(&backlog.direct);
        self.publish(now);
        match &result {
            Ok(()) => {
                self.notify_accepted(&backlog.direct, true);
                backlog.direct.clear();
                if self.store_failing.swap(false, Ordering::SeqCst) {
                    tracing::info!("store writes succeed again; the node accepts data");
                }
                let jobs = self
                    .milestone_jobs
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                for job in backlog.jobs.drain(..) {
                    if let Some(jobs) = jobs.as_ref() {
                        let _ = jobs.send(job);
                    }
                }
            }
            Err(e) => self.storage_failed(e, &self.store_failing),
        }
        drop(backlog);
        self.refresh_gauges();
        result
    }

    /// Records a failed write: the node refuses data while `flag` is set, and says why.
    fn storage_failed(&self, e: &StoreError, flag: &AtomicBool) {
        if !flag.swap(true, Ordering::SeqCst) {
            tracing::error!(error = %e, "store write failed; the node accepts no data and retries");
        }
        self.metrics.store_errors.inc();
        *self.store_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Whether a storage failure is being retried.
    fn storage_failing(&self) -> bool {
        self.store_failing.load(Ordering::SeqCst) || self.milestone_failing.load(Ordering::SeqCst)
    }

    /// Hands new transactions to the accepted hook: those signed by others (`node_signed`
    /// false) or by this node (true).
    fn notify_accepted(&self, writes: &[StoreWrite], node_signed: bool) {
        let hook = self.on_accepted.read().unwrap_or_else(|p| p.into_inner());
        if let Some(hook) = hook.as_ref() {
            for w in writes {
                if let StoreWrite::Transactions(txs) = w {
                    if txs.iter().all(|t| t.node_signed == node_signed) {
                        hook(txs);
                    } else {
                        let some: Vec<_> = txs
                            .iter()
                            .filter(|t| t.node_signed == node_signed)
                            .cloned()
                            .collect();
                        if !some.is_empty() {
                            hook(&some);
                        }
                    }
                }
            }
        }
    }

    fn write_all(&self, writes: &[StoreWrite]) -> Result<(), StoreError> {
        for w in writes {
            let new = write_one(&*self.store, w)?;
            self.metrics.store_transactions.inc_by(new as i64);
        }
        if writes.iter().any(|w| matches!(w, StoreWrite::Milestone(_))) {
            self.store.flush()?;
            self.metrics.store_flushes.inc();
        } else if !writes.is_empty() {
            self.store.flush_transactions()?;
            self.metrics.store_flushes.inc();
        }
        Ok(())
    }

    fn publish(&self, events: Vec<Event>) {
        for e in events {
            let ev = match e {
                Event::Solid { tx, payload } => NodeEvent::Transaction {
                    transaction_id: tx,
                    payload_id: payload,
                },
                Event::Milestone(s) => {
                    self.metrics
                        .transactions_confirmed
                        .inc_by(s.confirmed as u64);
                    self.metrics.payloads_applied.inc_by(s.applied as u64);
                    self.metrics
                        .payloads_conflicting
                        .inc_by(s.conflicting as u64);
                    for d in &s.delays_ms {
                        self.metrics
                            .confirmation_latency
                            .observe(*d as f64 / 1000.0);
                    }
                    let view = milestone_view(&s);
                    self.milestones
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(s.record.index, view.clone());
                    NodeEvent::Milestone(view)
                }
                Event::Payload { payload, status } => {
                    // A copy of a payload that another copy already decided conflicts for
                    // its used seq: announce the payload's own (stored) status, once.
                    let status = match status {
                        PayloadStatus::Conflicting {
                            reason: ConflictReason::SeqAlreadyUsed,
                            ..
                        } => match self.store.payload(&payload) {
                            Ok(Some(rec)) if rec.status != status => continue,
                            _ => status,
                        },
                        other => other,
                    };
                    NodeEvent::Payload {
                        payload_id: payload,
                        state: payload_state(status),
                    }
                }
                Event::Reattached { payload, tx } => NodeEvent::Reattached {
                    payload_id: payload,
                    transaction_id: tx,
                },
                Event::Halted(_) => continue,
            };
            // No subscriber is fine.
            let _ = self.events.send(ev);
        }
    }

    fn refresh_gauges(&self) {
        let core = self.lock();
        let t = core.tangle();
        self.metrics.tips.set(t.tips().len() as i64);
        self.metrics.tangle_size.set(t.len() as i64);
        self.metrics
            .pending_transactions
            .set(core.pending_len() as i64);
        self.metrics
            .confirmed_milestone
            .set(i64::from(core.ledger().confirmed_index()));
        self.metrics
            .latest_milestone
            .set(i64::from(core.latest_milestone()));
    }

    fn unavailable(&self) -> Option<SubmitError> {
        if self.storage_failing() {
            return Some(SubmitError::Unavailable(
                "storage is failing; the node retries and accepts no data until it recovers".into(),
            ));
        }
        None
    }

    /// One ingest batch (runs on a blocking thread).
    fn process(&self, requests: Vec<Request>) {
        let now = now_ms();
        // Move the data out of the requests; keep each reply with how many verdicts it gets.
        let mut tx_bytes: Vec<Vec<u8>> = Vec::new();
        let mut payloads: Vec<SignedPayload> = Vec::new();
        let mut tx_replies = Vec::new();
        let mut payload_replies = Vec::new();
        for r in requests {
            match r {
                Request::Transactions(t, reply) => {
                    tx_replies.push((t.len(), reply));
                    tx_bytes.extend(t);
                }
                Request::Payloads(p, reply) => {
                    payload_replies.push((p.len(), reply));
                    payloads.extend(p);
                }
            }
        }
        let tx_results = self.ingest_transactions(tx_bytes, now);
        let payload_results = self.ingest_payloads(payloads, now);
        // Nothing is acknowledged unless the round's writes were flushed.
        let store_err = self
            .persist()
            .err()
            .map(|e| SubmitError::Unavailable(format!("storage: {e}")));
        answer(tx_results, tx_replies, &store_err);
        answer(payload_results, payload_replies, &store_err);
    }

    fn count(&self, ok: bool) {
        if ok {
            self.metrics.transactions_accepted.inc();
        } else {
            self.metrics.transactions_rejected.inc();
        }
    }

    fn ingest_transactions(&self, bytes: Vec<Vec<u8>>, now: u64) -> Vec<Result<TxId, SubmitError>> {
        if bytes.is_empty() {
            return Vec::new();
        }
        if let Some(e) = self.unavailable() {
            return bytes.iter().map(|_| Err(e.clone())).collect();
        }
        let verdicts = self.validator.validate_batch(&bytes, now);
        let mut out: Vec<Option<Result<TxId, SubmitError>>> = Vec::with_capacity(bytes.len());
        let mut valid = Vec::new();
        let mut slots = Vec::new();
        for (i, v) in verdicts.into_iter().enumerate() {
            match v {
                Ok(vt) => {
                    valid.push(vt);
                    slots.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(validation_error(e)))),
            }
        }
        let results = self.lock().handle_transactions(valid, Origin::Api, now);
        for (slot, r) in slots.into_iter().zip(results) {
            out[slot] = Some(r.map_err(reject_error));
        }
        out.into_iter()
            .map(|r| {
                let r = r.expect("every slot filled");
                self.count(r.is_ok());
                r
            })
            .collect()
    }

    fn ingest_payloads(
        &self,
        payloads: Vec<SignedPayload>,
        now: u64,
    ) -> Vec<Result<PayloadReceipt, SubmitError>> {
        if payloads.is_empty() {
            return Vec::new();
        }
        if let Some(e) = self.unavailable() {
            return payloads.iter().map(|_| Err(e.clone())).collect();
        }
        let step = self.lock().submit_payloads(payloads, now);
        let results = self.drive(step).unwrap_or_default();
        results
            .into_iter()
            .map(|r| {
                let r = r
                    .map(|s| PayloadReceipt {
                        payload_id: s.payload,
                        transaction_id: s.tx,
                    })
                    .map_err(|e| match e {
                        Refusal::Invalid(e) => validation_error(e),
                        Refusal::Rejected(e) => reject_error(e),
                    });
                self.count(r.is_ok());
                r
            })
            .collect()
    }

    /// Runs the core's work and every step it leads to: proof of work on the rayon pool,
    /// validation (batch, parallel), the core locked only to hand each result back.
    /// Returns a submission's results when the job was one.
    fn drive(&self, mut step: Step) -> Option<Vec<Result<Submitted, Refusal>>> {
        loop {
            match step {
                Step::Work(mut work) => {
                    let difficulty = work.difficulty;
                    let encoded: Vec<Vec<u8>> = work
                        .txs
                        .par_iter_mut()
                        .map(|tx| Work::solve(tx, difficulty))
                        .collect();
                    let done = work.done(encoded, &self.validator);
                    step = self.lock().handle_work_done(done);
                }
                Step::Submitted(r) => return Some(r),
                Step::Idle => return None,
            }
        }
    }

    /// The timer: ticks the core, then does the work the tick started (milestone issuing,
    /// reattachment) outside the lock.
    fn tick(&self, now: u64) {
        self.lock().handle_tick(now);
        loop {
            // (Not `while let`: its scrutinee's guard would be held through the body.)
            let work = self.lock().poll_work();
            let Some(work) = work else { break };
            let _ = self.drive(Step::Work(work));
        }
    }
}
/// A request's reply channel: one verdict per item it carried.
type Reply<T> = oneshot::Sender<Vec<Result<T, SubmitError>>>;

/// Sends each request its slice of `results`, in order; a failed flush turns successes into
/// `store_err`.
fn answer<T>(
    results: Vec<Result<T, SubmitError>>,
    replies: Vec<(usize, Reply<T>)>,
    store_err: &Option<SubmitError>,
) {
    let mut results = results.into_iter();
    for (n, reply) in replies {
        let v: Vec<_> = results
            .by_ref()
            .take(n)
            .map(|r| match (store_err, r) {
                (Some(e), Ok(_)) => Err(e.clone()),
                (_, r) => r,
            })
            .collect();
        let _ = reply.send(v);
    }
}

fn validation_error(e: ValidationError) -> SubmitError {
    match e {
        ValidationError::Decode(DecodeError::TooLarge { .. }) => {
            SubmitError::TooLarge(e.to_string())
        }
        ValidationError::Decode(_) => SubmitError::Malformed(e.to_string()),
        other => SubmitError::Invalid(other.to_string()),
    }
}

fn reject_error(e: RejectReason) -> SubmitError {
    if e.is_conflict() {
        return SubmitError::Conflict(e.to_string());
    }
    match e {
        RejectReason::NoTips(_) | RejectReason::Halted(_) => {
            SubmitError::Unavailable(e.to_string())
        }
        RejectReason::Tangle(InsertError::BufferFull { .. }) | RejectReason::PendingQuota => {
            SubmitError::Unavailable(e.to_string())
        }
        other => SubmitError::Invalid(other.to_string()),
    }
}

fn payload_state(s: PayloadStatus) -> PayloadState {
    match s {
        PayloadStatus::Pending => PayloadState::Pending,
        PayloadStatus::Confirmed { milestone, tx } => PayloadState::Confirmed {
            milestone,
            transaction_id: tx,
        },
        PayloadStatus::Reattaching {
            milestone,
            tx,
            reason,
        } => PayloadState::Reattaching {
            milestone,
            transaction_id: tx,
            reason: reason.to_string(),
        },
        PayloadStatus::Conflicting {
            milestone,
            tx,
            reason,
        } => PayloadState::Conflicting {
            milestone,
            transaction_id: tx,
            reason: reason.to_string(),
        },
    }
}

fn milestone_view(s: &MilestoneSummary) -> MilestoneView {
    MilestoneView {
        index: s.record.index,
        transaction_id: s.record.tx,
        timestamp: s.record.timestamp,
        ledger_digest: s.record.ledger_digest,
        confirmed_transactions: Some(s.confirmed),
        applied: Some(s.applied),
        conflicting: Some(s.conflicting),
    }
}

impl Request {
    fn items(&self) -> usize {
        match self {
            Request::Transactions(t, _) => t.len(),
            Request::Payloads(p, _) => p.len(),
        }
    }
}

async fn ingest_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<Request>, max_batch: usize) {
    while let Some(first) = rx.recv().await {
        // Bounded by items, not requests: a round's transactions all see the same tips, so
        // a huge round would make the Tangle wide.
        let mut items = first.items();
        let mut batch = vec![first];
        while items < max_batch {
            match rx.try_recv() {
                Ok(r) => {
                    items += r.items();
                    batch.push(r);
                }
                Err(_) => break,
            }
        }
        let s = shared.clone();
        if tokio::task::spawn_blocking(move || s.process(batch))
            .await
            .is_err()
        {
            tracing::error!("ingest batch panicked");
        }
    }
}

async fn tick_loop(
    shared: Arc<Shared>,
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let s = shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if s.storage_failing() {
                // Retry what failed (the backlog); no new work until it is written.
                let _ = s.persist();
                return;
            }
            s.tick(now_ms());
            let _ = s.persist();
        })
        .await;
    }
}

impl NodeHandle {
    /// The node's Prometheus metrics (the peering layer adds its per-peer series).
    pub fn metrics_registry(&self) -> &Metrics {
        &self.shared.metrics
    }

    async fn request<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, SubmitError> {
        let (tx, rx) = oneshot::channel();
        self.ingest.try_send(make(tx)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                SubmitError::Unavailable("ingest queue full; retry later".into())
            }
            mpsc::error::TrySendError::Closed(_) => {
                SubmitError::Unavailable("node is shutting down".into())
            }
        })?;
        rx.await
            .map_err(|_| SubmitError::Unavailable("node is shutting down".into()))
    }

    /// Registers the function called (on a blocking thread, in write order) with every batch
    /// of newly accepted transactions, just before they are written and flushed: the
    /// peering layer gossips them. Gossip does not wait for the local flush (a peer may
    /// hold a transaction this node loses in a crash, which is harmless; the submitter got
    /// no acknowledgement for it). Replaces any earlier hook.
    pub fn set_accepted_hook(&self, hook: Option<AcceptedHook>) {
        *self
            .shared
            .on_accepted
            .write()
            .unwrap_or_else(|p| p.into_inner()) = hook;
    }

    /// Validates, ingests ([`Origin::Peer`]) and stores transactions received from peers, as
    /// one group-committed batch; each comes with its sender (quotas of the solidification
    /// buffer are per sender). Blocking: call it from a blocking thread. A transaction
    /// marked `solicited` (we asked for it) is not refused for its age, only for the rest.
    /// Returns one verdict per input and the parents now missing.
    pub fn ingest_from_peers(&self, txs: &[(Vec<u8>, bool, PeerKey)]) -> PeerIngest {
        let now = now_ms();
        let mut out = PeerIngest {
            verdicts: vec![Verdict::Refused; txs.len()],
            missing: Vec::new(),
        };
        if txs.is_empty() || self.shared.unavailable().is_some() {
            return out;
        }
        let items: Vec<(&[u8], bool)> = txs.iter().map(|(b, s, _)| (b.as_slice(), *s)).collect();
        let checked = validate_from_peers(&self.shared.validator, &items, now);
        let checked = checked
            .into_iter()
            .zip(txs)
            .map(|(v, t)| (v, t.2))
            .collect();
        {
            let mut core = self.shared.lock();
            out.verdicts = core.handle_peer_transactions(checked, now);
            out.missing = core.poll_missing();
        }
        let _ = self.shared.persist();
        out
    }

    /// Peers whose transactions expired waiting for parents, with how many (see
    /// [`Protocol::poll_expired`]): the peering layer penalises them.
    pub fn take_expired_senders(&self) -> Vec<(PeerKey, u64)> {
        self.shared.lock().poll_expired()
    }

    /// Parents still missing (see [`Protocol::poll_missing`]), e.g. right after a restart.
    pub fn take_missing_parents(&self) -> Vec<TxId> {
        self.shared.lock().poll_missing()
    }

    /// Direct access to the protocol, for tests and tools (hold it briefly).
    pub fn with_protocol<R>(&self, f: impl FnOnce(&Protocol) -> R) -> R {
        f(&self.shared.lock())
    }

    fn storage<T>(r: Result<T, StoreError>) -> Result<T, ServiceError> {
        r.map_err(|e| ServiceError::Storage(e.to_string()))
    }
}

impl NodeService for NodeHandle {
    fn info(&self) -> NodeInfo {
        let durable = *self
            .shared
            .durable_milestone
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let core = self.shared.lock();
        let (total_supply, open_deposits) = NodeInfo::supply_of(core.ledger());
        NodeInfo {
            version: env!("CARGO_PKG_VERSION").to_string(),
            network_name: self.shared.network_name.clone(),
            network_id: core.network_id(),
            pow_difficulty: self.shared.pow_difficulty,
            latest_milestone: core.latest_milestone(),
            confirmed_milestone: durable.0,
            tips: core.tangle().tips().len(),
            ledger_digest: durable.1,
            transactions: core.tangle().len(),
            milestone_issuer: core.is_milestone_issuer(),
            faucet: core.has_faucet(),
            halted: core.halted().map(str::to_owned),
            total_supply,
            open_deposits,
        }
    }

    fn health(&self) -> Health {
        let mut reasons = Vec::new();
        if let Some(h) = self.shared.lock().halted() {
            reasons.push(format!("confirmation halted: {h}"));
        }
        if self.shared.storage_failing() {
            let last = self
                .shared
                .store_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .unwrap_or_default();
            reasons.push(format!("storage failing, retrying: {last}"));
        }
        Health {
            healthy: reasons.is_empty(),
            reasons,
        }
    }

    fn tips(&self) -> Vec<TxId> {
        let core = self.shared.lock();
        let t = core.tangle();
        t.tips().iter().map(|r| t.id(*r)).collect()
    }

    async fn submit_transactions(&self, txs: Vec<Vec<u8>>) -> Vec<Result<TxId, SubmitError>> {
        let n = txs.len();
        match self.request(|tx| Request::Transactions(txs, tx)).await {
            Ok(v) => v,
            Err(e) => vec![Err(e); n],
        }
    }

    async fn submit_payloads(
        &self,
        payloads: Vec<SignedPayload>,
    ) -> Vec<Result<PayloadReceipt, SubmitError>> {
        let n = payloads.len();
        match self.request(|tx| Request::Payloads(payloads, tx)).await {
            Ok(v) => v,
            Err(e) => vec![Err(e); n],
        }
    }

    async fn faucet(&self, to: Address, amount: u64) -> Result<PayloadReceipt, SubmitError> {
        if amount == 0 {
            return Err(SubmitError::Invalid("amount must be positive".into()));
        }
        let payload = self
            .shared
            .lock()
            .faucet_payload(to, amount)
            .ok_or_else(|| SubmitError::NotEnabled("the faucet runs only in dev mode".into()))?;
        let seq = payload.seq;
        let r = self
            .submit_payloads(vec![payload])
            .await
            .pop()
            .unwrap_or_else(|| Err(SubmitError::Unavailable("no verdict".into())));
        if r.is_err() {
            self.shared.lock().release_faucet_seq(seq);
        }
        r
    }

    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>, ServiceError> {
        Self::storage(self.shared.store.transaction(id))
    }

    fn transaction_metadata(&self, id: &TxId) -> Result<Option<TxMetadataView>, ServiceError> {
        let Some(meta) = Self::storage(self.shared.store.metadata(id))? else {
            return Ok(None);
        };
        let core = self.shared.lock();
        let t = core.tangle();
        let r = t.lookup(id);
        let confirmed_by = r.and_then(|r| t.confirmed_by(r)).or(meta.confirmed_by);
        Ok(Some(TxMetadataView {
            transaction_id: *id,
            solid: r.is_some() || meta.solid,
            arrival_ms: meta.arrival,
            confirmed_by,
            outcome: meta.outcome.map(|o| match o {
                PayloadOutcome::Applied => "applied".to_string(),
                PayloadOutcome::Conflicting(r) => format!("conflicting: {r}"),
            }),
            approvers: r.map(|r| t.approvers(r).len()).unwrap_or(0),
            is_tip: r.is_some_and(|r| t.approvers(r).is_empty()),
        }))
    }

    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadView>, ServiceError> {
        let Some(rec) = Self::storage(self.shared.store.payload(id))? else {
            return Ok(None);
        };
        let first = rec
            .txs
            .first()
            .ok_or_else(|| ServiceError::Storage(format!("payload {id} has no transaction")))?;
        let bytes = Self::storage(self.shared.store.transaction(first))?
            .ok_or_else(|| ServiceError::Storage(format!("transaction {first} missing")))?;
        let tx = codec::decode(&bytes).map_err(|e| ServiceError::Storage(e.to_string()))?;
        let p = tx
            .signed()
            .ok_or_else(|| ServiceError::Storage(format!("{first} carries no payload")))?;
        Ok(Some(PayloadView {
            payload_id: *id,
            issuer: p.issuer,
            seq: p.seq,
            kind: p.body.kind().to_string(),
            transactions: rec.txs.clone(),
            state: payload_state(rec.status),
        }))
    }

    fn account(&self, address: &Address) -> Result<AccountView, ServiceError> {
        let core = self.shared.lock();
        let l = core.ledger();
        Ok(AccountView {
            address: *address,
            did: address.to_did_key(),
            balance: l.balance(address),
            next_seq: l.next_seq(address),
        })
    }

    fn channel(&self, id: &ChannelId) -> Result<Option<ChannelView>, ServiceError> {
        let core = self.shared.lock();
        Ok(core.ledger().channel(id).map(|c| ChannelView {
            channel_id: *id,
            payer: c.payer,
            payee: c.payee,
            deposit: c.deposit,
            expires_at: c.expires_at,
            closed: c.closed,
            claimed: (c.closed && c.claimed > 0).then_some(c.claimed),
        }))
    }

    fn milestone(
        &self,
        index: Option<MilestoneIndex>,
    ) -> Result<Option<MilestoneView>, ServiceError> {
        let index = match index {
            Some(i) => i,
            None => {
                self.shared
                    .durable_milestone
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .0
            }
        };
        if index == 0 {
            return Ok(None);
        }
        if let Some(s) = self
            .shared
            .milestones
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&index)
        {
            return Ok(Some(s.clone()));
        }
        // Applied before this process started: the store has the record, not the counts.
        Ok(
            Self::storage(self.shared.store.milestone(index))?.map(|r| MilestoneView {
                index: r.index,
                transaction_id: r.tx,
                timestamp: r.timestamp,
                ledger_digest: r.ledger_digest,
                confirmed_transactions: None,
                applied: None,
                conflicting: None,
            }),
        )
    }

    fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.shared.events.subscribe()
    }

    fn metrics(&self) -> String {
        self.shared.refresh_gauges();
        self.shared.metrics.render()
    }
}
