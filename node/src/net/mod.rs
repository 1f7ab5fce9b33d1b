//! Peering over QUIC: a thin quinn driver around [`Peering`] (the sans-I/O gossip, request
//! and sync state machine) and the node's peer ingest path.
//!
//! ## Tasks
//! - **accept**: incoming connections; TLS (see [`tls`]) already refused any peer whose key
//!   is not on the allowlist.
//! - **dial**: keeps a connection to every allowlisted peer whose key is greater than ours
//!   (the smaller key dials, so two peers never hold two connections), retrying with
//!   exponential backoff (100 ms doubling up to 5 s).
//! - **per connection**: one long-lived bidirectional stream. Both ends first send a
//!   [`Message::Handshake`] (wire version, network id); then a reader decodes frames into
//!   [`Peering::handle_message`] and a writer drains [`Peering::poll_outbound`].
//! - **ingest**: transactions from all peers are batched into
//!   [`NodeHandle::ingest_from_peers`] (batch validation, one store flush per batch); the
//!   verdicts go back to [`Peering`] (scores), the missing parents become requests.
//! - **gossip**: the node's accepted-transactions hook hands every newly accepted
//!   transaction (from the API, local payloads, milestones, peers) to [`Peering::gossip`]
//!   as soon as the protocol took it, before the local store's flush.
//! - **tick**: heartbeats, request retries and sync, every [`NetConfig::tick_ms`].
//!
//! [`Network::shutdown`] closes every connection with a reason, stops the tasks and waits
//! for the endpoint to go idle.

pub mod fetch;
pub mod local;
pub mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use dag_core::{Keypair, TxId};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch, Notify};

use crate::runtime::now_ms;
use crate::NodeHandle;
use node_proto::peering::{
    Inbound, LocalStatus, Outbound, PeerEvent, PeerKey, PeerMetrics, Peering, PeeringConfig,
};
use node_proto::wire::{encode_transaction, FrameDecoder, Message, PROTOCOL_VERSION};
use tls::Allowlist;

/// A static peer: where to reach it and the key it must present.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// Its QUIC address.
    pub address: SocketAddr,
    /// Its Ed25519 identity key (hex).
    pub public_key: PeerKey,
}

/// Settings of the network driver.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// UDP address to listen on (port 0: any).
    pub listen: SocketAddr,
    /// This node's identity.
    pub identity: Keypair,
    /// Static peers (the initial allowlist).
    pub peers: Vec<PeerEntry>,
    /// Gossip, request and sync settings.
    pub peering: PeeringConfig,
    /// Timer period, ms.
    pub tick_ms: u64,
    /// Most peer transactions ingested per batch.
    pub ingest_batch: usize,
    /// Snapshot files served to peers (none: every query is answered "none").
    pub snapshots: Option<Arc<crate::snapshots::Snapshots>>,
    /// Where a committee member makes its vote durable before sending it (none: votes are
    /// not kept across restarts; tests only).
    pub vote_file: Option<crate::committee::VoteFile>,
}

impl NetConfig {
    /// Defaults for everything but the address and identity.
    pub fn new(listen: SocketAddr, identity: Keypair) -> Self {
        NetConfig {
            listen,
            identity,
            peers: Vec::new(),
            peering: PeeringConfig::default(),
            tick_ms: 100,
            ingest_batch: 4096,
            snapshots: None,
            vote_file: None,
        }
    }
}

/// Starting the network failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// TLS configuration.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Binding the UDP socket.
    #[error("binding {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// The committee vote file.
    #[error(transparent)]
    Vote(#[from] crate::committee::VoteFileError),
}

/// One peer as the admin API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// Its key.
    pub public_key: PeerKey,
    /// Address dialled (if on the allowlist).
    pub address: Option<SocketAddr>,
    /// Counters.
    pub metrics: PeerMetrics,
}

struct ConnEntry {
    conn: quinn::Connection,
    notify: Arc<Notify>,
}

struct InboundTx {
    peer: PeerKey,
    id: TxId,
    bytes: Vec<u8>,
    solicited: bool,
}

struct Inner {
    node: NodeHandle,
    key: PeerKey,
    network_id: u64,
    endpoint: quinn::Endpoint,
    client: quinn::ClientConfig,
    allow: Allowlist,
    peering: Mutex<Peering>,
    conns: Mutex<HashMap<PeerKey, ConnEntry>>,
    ingest: mpsc::Sender<InboundTx>,
    stop: watch::Receiver<bool>,
    snapshots: Option<Arc<crate::snapshots::Snapshots>>,
    vote_file: Option<crate::committee::VoteFile>,
}

/// The running peer-to-peer layer of a node.
pub struct Network {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// QUIC error code for closes: 0 shutdown/removed, 1 protocol violation, 2 refused.
const CLOSE_OK: u32 = 0;
const CLOSE_PROTOCOL: u32 = 1;
const CLOSE_REFUSED: u32 = 2;

impl Network {
    /// Binds the endpoint on `config.listen` and starts the tasks. Must run inside a tokio
    /// runtime.
    pub async fn start(config: NetConfig, node: NodeHandle) -> Result<Network, NetError> {
        let bind_err = |source| NetError::Bind {
            addr: config.listen,
            source,
        };
        let socket = std::net::UdpSocket::bind(config.listen).map_err(bind_err)?;
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let socket = runtime.wrap_udp_socket(socket).map_err(bind_err)?;
        Self::start_with_socket(config, node, socket, runtime).await
    }

    /// Like [`Network::start`], but on a socket and runtime the caller provides instead of a
    /// UDP socket bound to `config.listen` (which is then ignored). This is the seam for
    /// simulated networks: quinn runs over any [`quinn::AsyncUdpSocket`], for example one
    /// backed by turmoil's simulated UDP (see `node/tests/net_sim.rs`).
    pub async fn start_with_socket(
        config: NetConfig,
        node: NodeHandle,
        socket: Arc<dyn quinn::AsyncUdpSocket>,
        runtime: Arc<dyn quinn::Runtime>,
    ) -> Result<Network, NetError> {
        let allow: Allowlist = Arc::new(std::sync::RwLock::new(
            config
                .peers
                .iter()
                .map(|p| (p.public_key, p.address))
                .collect(),
        ));
        let (server, client) = tls::quic_configs(&config.identity, allow.clone())?;
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            Some(server),
            socket,
            runtime,
        )
        .map_err(|source| NetError::Bind {
            addr: config.listen,
            source,
        })?;
        let (stop, stop_rx) = watch::channel(false);
        let (itx, irx) = mpsc::channel(1 << 16);
        let network_id = node.with_protocol(|p| p.network_id());
        let inner = Arc::new(Inner {
            node: node.clone(),
            key: PeerKey(config.identity.address().0),
            network_id,
            endpoint,
            client,
            allow,
            peering: Mutex::new(Peering::new(config.peering.clone())),
            conns: Mutex::new(HashMap::new()),
            ingest: itx,
            stop: stop_rx,
            snapshots: config.snapshots.clone(),
            vote_file: config.vote_file.clone(),
        });
        if let Some(vote) = match &config.vote_file {
            Some(f) => f.read()?,
            None => None,
        } {
            tracing::info!(index = vote.index, "committee: restored the last vote");
            node.with_protocol_mut(|p| p.restore_vote(vote));
        }
        let probe_inner = Arc::downgrade(&inner);
        node.set_health_probe(Some(Arc::new(move || {
            let gap = probe_inner.upgrade().and_then(|i| i.lock().history_gap());
            gap.map(|(needed, oldest)| {
                format!(
                    "cannot sync: the next milestone needed, {needed}, is pruned on every peer \
                     that has it (the oldest they keep is {oldest}); start from a newer \
                     snapshot (`tangle-node init --snapshot`, or an empty database to fetch \
                     one from a peer)"
                )
            })
            .into_iter()
            .collect()
        })));
        let hook_inner = Arc::downgrade(&inner);
        node.set_accepted_hook(Some(Arc::new(move |txs| {
            if let Some(inner) = hook_inner.upgrade() {
                {
                    let mut p = inner.lock();
                    for t in txs {
                        p.gossip(t.id, Arc::from(t.bytes.as_slice()));
                    }
                }
                inner.wake_all();
            }
        })));
        let tasks = vec![
            tokio::spawn(accept_loop(inner.clone(), max_incoming(&config.peering))),
            tokio::spawn(dial_loop(inner.clone())),
            tokio::spawn(ingest_loop(inner.clone(), irx, config.ingest_batch.max(1))),
            tokio::spawn(tick_loop(inner.clone(), config.tick_ms.max(10))),
        ];
        Ok(Network { inner, stop, tasks })
    }

    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.endpoint.local_addr()
    }

    /// This node's peering key.
    pub fn public_key(&self) -> PeerKey {
        self.inner.key
    }

    /// Adds (or re-addresses) an allowed peer; it is dialled within a tick.
    pub fn add_peer(&self, entry: PeerEntry) {
        self.inner.add_peer(entry);
    }

    /// Removes a peer from the allowlist and closes its connection.
    pub fn remove_peer(&self, key: &PeerKey) -> bool {
        self.inner.remove_peer(key)
    }

    /// Connected peers.
    pub fn connected(&self) -> Vec<PeerKey> {
        self.inner.lock().connected()
    }

    /// Every known peer with its counters.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.inner.peers()
    }

    /// Admin routes (mount under the admin prefix, behind the bearer token):
    /// `GET /peers`, `POST /peers` (`{address, public_key}`), `DELETE /peers/{key}`.
    pub fn admin_router(&self) -> Router {
        Router::new()
            .route("/peers", get(list_peers).post(add_peer))
            .route("/peers/{key}", delete(remove_peer))
            .with_state(self.inner.clone())
    }

    /// Closes every connection, stops the tasks and waits (at most 2 s) for the endpoint to
    /// finish closing.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        self.inner.node.set_accepted_hook(None);
        self.inner.node.set_health_probe(None);
        self.inner
            .endpoint
            .close(CLOSE_OK.into(), b"node shutting down");
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.inner.endpoint.wait_idle()).await;
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Peering> {
        self.peering.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<PeerKey, ConnEntry>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake_all(&self) {
        for c in self.conns().values() {
            c.notify.notify_one();
        }
    }

    fn wake(&self, peer: &PeerKey) {
        if let Some(c) = self.conns().get(peer) {
            c.notify.notify_one();
        }
    }

    /// Carries out Peering's events (abuse disconnects).
    fn handle_events(&self) {
        let events: Vec<PeerEvent> = {
            let mut p = self.lock();
            std::iter::from_fn(|| p.poll_event()).collect()
        };
        for e in events {
            match e {
                PeerEvent::Disconnect { peer, reason } => {
                    tracing::warn!(%peer, %reason, "disconnecting peer");
                    if let Some(c) = self.conns().remove(&peer) {
                        c.conn.close(CLOSE_REFUSED.into(), reason.as_bytes());
                    }
                }
            }
        }
    }

    fn add_peer(&self, entry: PeerEntry) {
        self.allow
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(entry.public_key, entry.address);
    }

    fn remove_peer(&self, key: &PeerKey) -> bool {
        let had = self
            .allow
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key)
            .is_some();
        if let Some(c) = self.conns().remove(key) {
            c.conn.close(CLOSE_OK.into(), b"removed from the allowlist");
        }
        self.lock().forget(key);
        had
    }

    fn peers(&self) -> Vec<PeerInfo> {
        let allow = self.allow.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut metrics: HashMap<PeerKey, PeerMetrics> =
            self.lock().metrics().into_iter().collect();
        let mut keys: Vec<PeerKey> = allow.keys().chain(metrics.keys()).copied().collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|k| PeerInfo {
                public_key: k,
                address: allow.get(&k).copied(),
                metrics: metrics.remove(&k).unwrap_or_default(),
            })
            .collect()
    }

    fn local_status(&self) -> LocalStatus {
        self.node.with_protocol(|p| LocalStatus {
            solid_milestone: p.ledger().confirmed_index(),
            latest_milestone: p.latest_milestone(),
            pruning_point: p.pruned_milestone(),
        })
    }
}

/// Most incoming connections (handshaking or established) handled at once; more are
/// refused at once, before any TLS work. Allowlisted peers need at most `max_peers` of them;
/// the rest is room for handshakes of strangers, which the allowlist then refuses.
fn max_incoming(config: &PeeringConfig) -> usize {
    config.max_peers.min(63) + 64
}

async fn accept_loop(inner: Arc<Inner>, limit: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(limit));
    while let Some(incoming) = inner.endpoint.accept().await {
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(remote = %incoming.remote_address(), "incoming connection refused: limit reached");
            incoming.refuse();
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match incoming.await {
                Ok(conn) => run_connection(inner, conn, false).await,
                Err(e) => tracing::debug!(error = %e, "incoming peer refused"),
            }
        });
    }
}

async fn dial_loop(inner: Arc<Inner>) {
    // Per peer: (next attempt at, current backoff).
    let mut backoff: HashMap<PeerKey, (tokio::time::Instant, Duration)> = HashMap::new();
    let dialing: Arc<Mutex<std::collections::HashSet<PeerKey>>> = Arc::default();
    let mut stop = inner.stop.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.changed() => return,
        }
        let targets: Vec<(PeerKey, SocketAddr)> = inner
            .allow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(k, _)| **k > inner.key)
            .map(|(k, a)| (*k, *a))
            .collect();
        let now = tokio::time::Instant::now();
        for (peer, addr) in targets {
            if inner.conns().contains_key(&peer)
                || dialing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .contains(&peer)
            {
                continue;
            }
            let (at, wait) = backoff
                .get(&peer)
                .copied()
                .unwrap_or((now, Duration::from_millis(100)));
            if at > now {
                continue;
            }
            backoff.insert(peer, (now + wait, (wait * 2).min(Duration::from_secs(5))));
            dialing
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(peer);
            let inner2 = inner.clone();
            let dialing2 = dialing.clone();
            tokio::spawn(async move {
                let connecting =
                    inner2
                        .endpoint
                        .connect_with(inner2.client.clone(), addr, "tangle-node");
                let result = match connecting {
                    Ok(c) => c.await.map_err(|e| e.to_string()),
                    Err(e) => Err(e.to_string()),
                };
                dialing2
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&peer);
                match result {
                    Ok(conn) => run_connection(inner2, conn, true).await,
                    Err(e) => tracing::debug!(%peer, %addr, error = %e, "dial failed"),
                }
            });
        }
        // A connected peer's backoff starts over.
        let connected: Vec<PeerKey> = inner.conns().keys().copied().collect();
        for k in connected {
            backoff.remove(&k);
        }
    }
}

/// Handshake, then reader (here) and writer (spawned) until the connection ends.
async fn run_connection(inner: Arc<Inner>, conn: quinn::Connection, dialer: bool) {
    let Some(peer) = tls::peer_key(&conn) else {
        conn.close(CLOSE_REFUSED.into(), b"no identity");
        return;
    };
    if dialer && inner.key >= peer {
        // Only the smaller key dials; keep it symmetric even if misconfigured.
        conn.close(CLOSE_REFUSED.into(), b"dial direction");
        return;
    }
    let streams = if dialer {
        conn.open_bi().await
    } else {
        match tokio::time::timeout(Duration::from_secs(5), conn.accept_bi()).await {
            Ok(r) => r,
            Err(_) => {
                conn.close(CLOSE_PROTOCOL.into(), b"no stream");
                return;
            }
        }
    };
    let Ok((mut send, mut recv)) = streams else {
        return;
    };
    let mut hello = Vec::new();
    Message::Handshake {
        version: PROTOCOL_VERSION,
        network_id: inner.network_id,
    }
    .encode_into(&mut hello);
    if send.write_all(&hello).await.is_err() {
        return;
    }
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Their handshake first.
    let theirs = loop {
        match decoder.next_message() {
            Ok(Some(m)) => break Some(m),
            Ok(None) => {}
            Err(_) => break None,
        }
        match tokio::time::timeout(Duration::from_secs(5), recv.read(&mut buf)).await {
            Ok(Ok(Some(n))) => decoder.push(&buf[..n]),
            _ => break None,
        }
    };
    match theirs {
        Some(Message::Handshake {
            version,
            network_id,
        }) if version == PROTOCOL_VERSION && network_id == inner.network_id => {}
        _ => {
            conn.close(CLOSE_PROTOCOL.into(), b"bad handshake");
            return;
        }
    }
    if let Err(e) = inner.lock().handle_connected(peer, now_ms()) {
        conn.close(CLOSE_REFUSED.into(), e.to_string().as_bytes());
        return;
    }
    let notify = Arc::new(Notify::new());
    {
        let mut conns = inner.conns();
        if let Some(old) = conns.insert(
            peer,
            ConnEntry {
                conn: conn.clone(),
                notify: notify.clone(),
            },
        ) {
            old.conn.close(CLOSE_OK.into(), b"replaced");
        }
    }
    tracing::info!(%peer, remote = %conn.remote_address(), "peer connected");
    notify.notify_one();
    // From here on the peer is registered: the guard unregisters it however this task ends,
    // a panic included, so a failed connection never leaves it "already connected".
    let mut guard = Registered {
        inner: inner.clone(),
        peer,
        conn: conn.clone(),
        writer: None,
    };
    guard.writer = Some(tokio::spawn(write_loop(inner.clone(), peer, send, notify)));
    read_loop(&inner, peer, &mut recv, decoder, &mut buf, &conn).await;
    drop(guard);
    tracing::info!(%peer, reason = ?conn.close_reason(), "peer disconnected");
}

/// A registered connection; dropping it (normal end or unwinding) closes the connection,
/// stops its writer and removes the peer from the connection table and the peering state.
struct Registered {
    inner: Arc<Inner>,
    peer: PeerKey,
    conn: quinn::Connection,
    writer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.abort();
        }
        if std::thread::panicking() {
            tracing::error!(peer = %self.peer, "peer connection task panicked; connection closed");
            self.conn.close(CLOSE_PROTOCOL.into(), b"internal error");
        }
        {
            let mut conns = self.inner.conns();
            if conns
                .get(&self.peer)
                .is_some_and(|c| c.conn.stable_id() == self.conn.stable_id())
            {
                conns.remove(&self.peer);
            }
        }
        self.inner.lock().handle_disconnected(&self.peer);
    }
}

async fn write_loop(
    inner: Arc<Inner>,
    peer: PeerKey,
    mut send: quinn::SendStream,
    notify: Arc<Notify>,
) {
    let mut buf = Vec::with_capacity(256 * 1024);
    loop {
        notify.notified().await;
        loop {
            let batch = inner.lock().poll_outbound(&peer, 2048);
            if batch.is_empty() {
                break;
            }
            buf.clear();
            for o in &batch {
                match o {
                    Outbound::Transaction(b) => encode_transaction(b, &mut buf),
                    Outbound::Message(m) => m.encode_into(&mut buf),
                }
            }
            if send.write_all(&buf).await.is_err() {
                return;
            }
            inner.lock().record_bytes(&peer, 0, buf.len() as u64);
        }
    }
}

async fn read_loop(
    inner: &Arc<Inner>,
    peer: PeerKey,
    recv: &mut quinn::RecvStream,
    mut decoder: FrameDecoder,
    buf: &mut [u8],
    conn: &quinn::Connection,
) {
    let mut stop = inner.stop.clone();
    loop {
        // Everything decodable now, under one lock.
        let mut actions = Vec::new();
        let mut violation = None;
        {
            let now = now_ms();
            let mut p = inner.lock();
            loop {
                match decoder.next_message() {
                    Ok(Some(m)) => match p.handle_message(&peer, m, now) {
                        Inbound::Nothing => {}
                        Inbound::Disconnect(why) => {
                            violation = Some(why);
                            break;
                        }
                        other => actions.push(other),
                    },
                    Ok(None) => break,
                    Err(e) => {
                        violation = Some(e.to_string());
                        break;
                    }
                }
            }
        }
        inner.handle_events();
        if let Some(why) = violation {
            tracing::warn!(%peer, %why, "protocol violation");
            conn.close(CLOSE_PROTOCOL.into(), why.as_bytes());
            return;
        }
        for a in actions {
            match a {
                Inbound::Transaction {
                    id,
                    bytes,
                    solicited,
                } => {
                    let syncing = inner.lock().syncing_from() == Some(peer);
                    let item = InboundTx {
                        peer,
                        id,
                        bytes,
                        solicited: solicited || syncing,
                    };
                    if inner.ingest.send(item).await.is_err() {
                        return;
                    }
                }
                Inbound::SendTransactions(ids) => answer_transactions(inner, &peer, ids),
                Inbound::SendMilestones { from, to } => answer_milestones(inner, &peer, from, to),
                Inbound::SnapshotQuery => {
                    let offer = inner
                        .snapshots
                        .as_ref()
                        .map(|s| s.offer())
                        .unwrap_or_default();
                    inner
                        .lock()
                        .send_message(&peer, Message::SnapshotOffer(offer));
                    inner.wake(&peer);
                }
                Inbound::SendSnapshot {
                    digest,
                    offset,
                    count,
                } => answer_snapshot(inner, &peer, digest, offset, count).await,
                Inbound::Committee(c) => {
                    let i = inner.clone();
                    // Signature checks and, for a proposal, its cone applied and taken back:
                    // not on the async runtime.
                    let _ = tokio::task::spawn_blocking(move || {
                        i.node
                            .with_protocol_mut(|p| p.handle_committee_message(*c, now_ms()));
                        drain_committee(&i);
                    })
                    .await;
                }
                Inbound::Nothing | Inbound::Disconnect(_) => {}
            }
        }
        let n = tokio::select! {
            r = recv.read(buf) => match r {
                Ok(Some(n)) => n,
                _ => return,
            },
            _ = stop.changed() => return,
        };
        decoder.push(&buf[..n]);
        inner.lock().record_bytes(&peer, n as u64, 0);
    }
}

fn answer_transactions(inner: &Inner, peer: &PeerKey, ids: Vec<TxId>) {
    use crate::NodeService;
    let found: Vec<(TxId, Vec<u8>)> = ids
        .into_iter()
        .filter_map(|id| inner.node.transaction(&id).ok().flatten().map(|b| (id, b)))
        .collect();
    if found.is_empty() {
        return;
    }
    {
        let mut p = inner.lock();
        for (id, b) in found {
            p.send_transaction(peer, id, Arc::from(b));
        }
    }
    inner.wake(peer);
}

fn answer_milestones(inner: &Inner, peer: &PeerKey, from: u32, to: u32) {
    use crate::NodeService;
    let ids: Vec<TxId> = (from..=to)
        .map_while(|i| inner.node.milestone(Some(i)).ok().flatten())
        .map(|m| m.transaction_id)
        .collect();
    answer_transactions(inner, peer, ids);
}

/// Most messages waiting for a peer for its snapshot request to be served: beyond it the
/// request is dropped and the peer asks again (it stalls). Bounds what snapshot requests
/// make us buffer to about this many chunks plus one request's.
const SNAPSHOT_QUEUE_LIMIT: usize = 256;

async fn answer_snapshot(
    inner: &Arc<Inner>,
    peer: &PeerKey,
    digest: dag_core::Digest,
    offset: u64,
    count: u16,
) {
    let Some(snapshots) = inner.snapshots.clone() else {
        inner
            .lock()
            .send_message(peer, Message::SnapshotOffer(Vec::new()));
        inner.wake(peer);
        return;
    };
    if inner.lock().queue_len(peer) > SNAPSHOT_QUEUE_LIMIT {
        return;
    }
    let read =
        tokio::task::spawn_blocking(
            move || match snapshots.read_chunks(&digest, offset, count) {
                Some(r) => Ok(r),
                None => Err(snapshots.offer()),
            },
        )
        .await;
    let mut p = inner.lock();
    match read {
        Ok(Ok(Ok(chunks))) => {
            for (offset, bytes) in chunks {
                p.send_message(
                    peer,
                    Message::SnapshotChunk {
                        digest,
                        offset,
                        bytes,
                    },
                );
            }
        }
        // No longer kept: tell it what is.
        Ok(Err(offer)) => p.send_message(peer, Message::SnapshotOffer(offer)),
        Ok(Ok(Err(e))) => tracing::warn!(%peer, error = %e, "reading a snapshot file"),
        Err(_) => tracing::error!("snapshot read task failed"),
    }
    drop(p);
    inner.wake(peer);
}

async fn ingest_loop(inner: Arc<Inner>, mut rx: mpsc::Receiver<InboundTx>, max: usize) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(x) => batch.push(x),
                Err(_) => break,
            }
        }
        let node = inner.node.clone();
        let items: Vec<(Vec<u8>, TxId, bool, PeerKey)> = batch
            .iter_mut()
            .map(|t| (std::mem::take(&mut t.bytes), t.id, t.solicited, t.peer))
            .collect();
        let Ok(result) = tokio::task::spawn_blocking(move || node.ingest_from_peers(&items)).await
        else {
            tracing::error!("peer ingest batch panicked");
            continue;
        };
        {
            let now = now_ms();
            let mut p = inner.lock();
            for (t, v) in batch.iter().zip(&result.verdicts) {
                p.handle_verdict(&t.peer, t.id, *v, now);
            }
            p.handle_missing(result.missing, now);
        }
        inner.handle_events();
        inner.wake_all();
    }
}

/// Sends what the committee member queued (proposals, votes) to every connected peer, each
/// vote only once it is durable in the vote file (a vote that cannot be written is not
/// sent). Blocking (file sync): call it off the async runtime.
fn drain_committee(inner: &Inner) {
    let (outputs, missing) = inner.node.with_protocol_mut(|p| {
        let out: Vec<_> = std::iter::from_fn(|| p.poll_committee()).collect();
        let missing = if out.is_empty() {
            Vec::new()
        } else {
            p.poll_missing()
        };
        (out, missing)
    });
    let now = now_ms();
    let mut sent = false;
    {
        let mut p = inner.lock();
        p.handle_missing(missing, now);
    }
    let mut refused = false;
    for out in outputs {
        if let (Some(vote), Some(file)) = (&out.vote, &inner.vote_file) {
            if refused {
                // Made after a refused vote, from the state the core had then.
                continue;
            }
            match file.record(vote) {
                Ok(None) => {}
                Ok(Some(held)) => {
                    // The core voted what the file says this member must not (it voted
                    // otherwise before a restart): not sent, and the core is told.
                    tracing::error!(
                        index = vote.index,
                        "committee: a vote contradicting the stored one was not sent"
                    );
                    inner.node.with_protocol_mut(|p| p.restore_vote(held));
                    refused = true;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, index = vote.index, "committee: vote not durable, not sent");
                    continue;
                }
            }
        }
        let msg = Message::Committee(Box::new(out.message));
        let mut p = inner.lock();
        for peer in p.connected() {
            p.send_message(&peer, msg.clone());
        }
        sent = true;
    }
    if sent {
        inner.wake_all();
    }
}

async fn tick_loop(inner: Arc<Inner>, period_ms: u64) {
    let mut interval = tokio::time::interval(Duration::from_millis(period_ms));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stop = inner.stop.clone();
    // Parents missing since before a restart.
    let missing = inner.node.take_missing_parents();
    inner.lock().handle_missing(missing, now_ms());
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = stop.changed() => return,
        }
        let status = inner.local_status();
        let expired = inner.node.take_expired_senders();
        let peer_metrics = {
            let mut p = inner.lock();
            let now = now_ms();
            for (peer, n) in expired {
                p.handle_expired(&peer, n, now);
            }
            p.handle_tick(now, status);
            p.metrics()
        };
        inner.node.metrics_registry().observe_peers(&peer_metrics);
        if let Some((stats, latencies)) = inner.node.with_protocol_mut(|p| {
            p.committee_stats()
                .map(|s| (s, p.take_committee_latencies()))
        }) {
            inner
                .node
                .metrics_registry()
                .observe_committee(&stats, &latencies);
            let i = inner.clone();
            let _ = tokio::task::spawn_blocking(move || drain_committee(&i)).await;
        }
        inner.handle_events();
        inner.wake_all();
    }
}

// ----- admin routes -----

async fn list_peers(State(inner): State<Arc<Inner>>) -> Json<Vec<PeerInfo>> {
    Json(inner.peers())
}

async fn add_peer(State(inner): State<Arc<Inner>>, Json(entry): Json<PeerEntry>) -> StatusCode {
    inner.add_peer(entry);
    StatusCode::CREATED
}

async fn remove_peer(State(inner): State<Arc<Inner>>, Path(key): Path<String>) -> StatusCode {
    match key.parse::<PeerKey>() {
        Ok(k) if inner.remove_peer(&k) => StatusCode::NO_CONTENT,
        Ok(_) => StatusCode::NOT_FOUND,
        Err(_) => StatusCode::BAD_REQUEST,
    }
}
