//! The async driver around [`Protocol`]: a batching ingest task with group commit, a
//! milestone/reattachment ticker, and [`NodeHandle`], the [`NodeService`] the API serves.
//! Submodules: `ingest` (ingest rounds, the core's work on the rayon pool, the timer),
//! `persist` (ordered writes, the retry backlog, the milestone writer, restore), `handle`
//! (peer ingest and the service).
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

mod handle;
mod ingest;
mod persist;
mod pruned;
mod retention;

use handle::{milestone_view, payload_state};
use persist::{milestone_writer, restore, Backlog, MilestoneJob};
pub use retention::{dir_bytes, DiskTarget, DISK_CHECK_PERIOD};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dag_core::codec;
use dag_core::ledger::{ConflictReason, PayloadOutcome};
use dag_core::store::{PayloadStatus, Store, StoreError};
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
    restore_from_store, validate_from_peers, Event, MilestoneSummary, Origin, Protocol,
    ProtocolConfig, ProtocolError, Refusal, RejectReason, Step, StoreWrite, Submitted, Work,
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

/// Reasons another layer (peering) gives for the node not being healthy (see
/// [`NodeHandle::set_health_probe`]).
pub type HealthProbe = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

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
    /// Asked by `/health` for the peering layer's reasons.
    health_probe: std::sync::RwLock<Option<HealthProbe>>,
    network_name: String,
    /// What was pruned: the milestone, and recently pruned ids (answered 410).
    pruned: pruned::Pruned,
    pow_difficulty: u8,
    /// The newest snapshot file's milestone (0: none).
    snapshot_milestone: std::sync::atomic::AtomicU32,
    /// `info`'s supply figures and the ledger state (confirmed index, digest) they were
    /// added up for: the sum is O(accounts) under the core's lock, so however often
    /// clients ask, it is computed at most once per ledger state.
    supply: Mutex<Option<SupplyFigures>>,
}

/// `(total_supply, open_deposits)` of the ledger at `(confirmed index, digest)`.
#[derive(Clone, Copy)]
struct SupplyFigures {
    at: (MilestoneIndex, dag_core::Digest),
    total: u64,
    open: u64,
}

/// A running node. Drop or [`Node::shutdown`] to stop it.
pub struct Node {
    handle: NodeHandle,
    milestone_writer: std::thread::JoinHandle<()>,
    ingest: tokio::task::JoinHandle<()>,
    ticker: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    /// The disk-target task ([`Node::limit_disk`]), awaited at shutdown.
    retention: Mutex<Option<tokio::task::JoinHandle<()>>>,
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
        let pruned_milestone = core.oldest_milestone() - 1;
        let shared = Arc::new(Shared {
            validator: core.validator(),
            network_name: genesis.network_name.clone(),
            pruned: pruned::Pruned::new(pruned_milestone),
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
            health_probe: std::sync::RwLock::new(None),
            snapshot_milestone: Default::default(),
            supply: Mutex::new(None),
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
            retention: Mutex::new(None),
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
            retention,
        } = self;
        let _ = stop.send(true);
        handle.shared.stopping.store(true, Ordering::SeqCst);
        let _ = ticker.await;
        if let Some(task) = retention.into_inner().unwrap_or_else(|p| p.into_inner()) {
            let _ = task.await;
        }
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
