//! An in-memory, deterministic multi-node harness: several [`Protocol`] + [`Peering`]
//! instances driven against each other on a **virtual clock**, as quinn-proto's and
//! raft-rs's tests drive their state machines. No sockets, no real time, and no threads
//! unless asked for ([`ClusterConfig::threads`]; the run is the same with any number).
//!
//! A [`Cluster`] mirrors what the real driver (`node/src/net/mod.rs` and
//! `node/src/runtime/`) does around the core, without tokio or quinn:
//!
//! - **Links**: every pair of nodes has a link. A connection over it starts with a
//!   [`Message::Handshake`] in each direction (wire version and network id checked, then
//!   [`Peering::handle_connected`]). Every message is encoded with the wire codec into a
//!   frame, queued with a delivery time of now + [`ClusterConfig::link_delay_ms`] + a
//!   seeded jitter, and decoded at the other end by a [`FrameDecoder`]. Frames stay in order
//!   per direction (one ordered stream per connection, as QUIC gives the node).
//! - **Faults**: [`Cluster::partition`] cuts a link (its frames are dropped, in flight or
//!   not); a link cut longer than [`ClusterConfig::idle_timeout_ms`] loses its connection,
//!   and a cut link cannot be re-dialled until [`Cluster::heal`]. A seeded share
//!   [`ClusterConfig::loss`] of the frames is dropped (handshakes excepted).
//!   [`Cluster::crash`] stops a node (its peers see the connection close),
//!   [`Cluster::restart`] rebuilds its [`Protocol`] from its store with
//!   [`restore_from_store`], as the node does, and re-dials its peers. A decoding error or
//!   a protocol violation closes the connection; dropped connections are re-dialled with
//!   exponential backoff (100 ms doubling to 5 s, like the node's dial loop).
//! - **Chaos faults** ([`Faults`], off by default): duplicated frames, frames that overtake
//!   others, delay spikes, store writes that become durable only after a lag (a crash keeps
//!   the durable ones and a seeded prefix of the rest), and per-node clock skew
//!   ([`Cluster::set_clock_skew`]). `tangle-sim chaos` drives them.
//! - **Per node**: a [`MemStore`] fed from [`Protocol::poll_store_write`] (transaction and
//!   milestone lookups for peers' requests are answered from it, restarts read it), the
//!   peer ingest path ([`validate_from_peers`], [`Protocol::handle_peer_transactions`],
//!   [`Peering::handle_verdict`], [`Peering::handle_missing`]), gossip of every stored
//!   transaction ([`StoredTx::node_signed`](crate::StoredTx::node_signed) ones once written: at once, here), the protocol
//!   timer ([`Protocol::handle_tick`] + [`Protocol::run_work_inline`]) and the peering timer
//!   ([`Peering::handle_tick`] with the node's [`LocalStatus`], expired senders penalised).
//! - **Events**: one queue ordered by (time, sequence number). Everything at one instant is
//!   handled in order (frames are decoded and handshakes checked as they arrive; the other
//!   messages wait for their node, as the node's connection readers hand them to its
//!   peering layer), then every node does its own work: its peering layer takes the
//!   messages received, then its outputs are drained (ingest batch, store writes, events,
//!   peering events, outbound queues). That work touches the node only, so with
//!   [`ClusterConfig::threads`] > 1 the nodes do it in parallel; what it asks of the
//!   cluster (frames, whose delays are drawn from the RNG; durability timers; disconnects)
//!   is carried out afterwards in node order. Every random choice comes from one
//!   [`ChaCha8Rng`] seeded by [`ClusterConfig::seed`], and no output depends on a hash
//!   map's iteration order: two clusters with the same config and the same calls behave
//!   identically (compare [`Cluster::trace_digest`]).
//!
//! ```
//! use node_proto::harness::{Cluster, ClusterConfig};
//! # fn main() -> Result<(), node_proto::harness::HarnessError> {
//! let mut c = Cluster::new(ClusterConfig::dev(3, 42))?;
//! c.run_until(5_000, |c| c.all_connected())?;
//! let net = c.network().clone();
//! let pay = net.pay(&net.faucet, 0, dag_core::Address([7; 32]), 10);
//! let r = c.submit(1, vec![pay])?;
//! assert!(r[0].is_ok());
//! c.run_until(10_000, |c| c.converged_at_least(2))?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use dag_core::store::{MemStore, PayloadStatus, Store, StoreError};
use dag_core::{
    Address, Allocation, Body, Digest, Genesis, Keypair, MilestoneIndex, PayloadId, SignedPayload,
    TxId,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::peering::{
    Inbound, LocalStatus, Outbound, PeerEvent, PeerKey, Peering, PeeringConfig, Verdict,
};
use crate::wire::{encode_transaction, FrameDecoder, Message, PROTOCOL_VERSION};
use crate::{
    restore_from_store, validate_from_peers, Event, Protocol, ProtocolConfig, ProtocolError,
    Refusal, RestoreReport, StoreWrite, Submitted,
};

/// First re-dial delay after a connection is lost, ms (doubled per failure).
const INITIAL_BACKOFF_MS: u64 = 100;
/// Longest re-dial delay, ms.
const MAX_BACKOFF_MS: u64 = 5_000;

// ----- configuration -----

/// A development network: a genesis with a one-member committee and a funded faucet key.
#[derive(Clone, Debug)]
pub struct DevNetwork {
    /// The genesis.
    pub genesis: Genesis,
    /// The committee's only key (the milestone issuer's).
    pub committee: Keypair,
    /// The funded faucet key.
    pub faucet: Keypair,
    /// Every committee key, in committee order (the first is [`DevNetwork::committee`]).
    /// With more than one, node `i` of a [`Cluster`] holds key `i` and the members issue
    /// milestones together (k of n).
    pub members: Vec<Keypair>,
}

impl DevNetwork {
    /// Genesis timestamp of [`DevNetwork::new`], ms since the Unix epoch.
    pub const GENESIS_TIME_MS: u64 = 1_700_000_000_000;

    /// Supply allocated to the faucet.
    pub const FAUCET_SUPPLY: u64 = 1_000_000_000;

    /// A network named `name` with the given PoW difficulty (keep it low in tests, e.g. 2), a
    /// 60 s timestamp window, committee key seed `[1; 32]` and faucet key seed `[2; 32]`.
    pub fn new(name: &str, pow_difficulty: u8) -> Self {
        let committee = Keypair::from_seed(&[1; 32]);
        let faucet = Keypair::from_seed(&[2; 32]);
        let genesis = Genesis {
            network_name: name.into(),
            timestamp: Self::GENESIS_TIME_MS,
            pow_difficulty,
            timestamp_window_ms: 60_000,
            committee: vec![committee.address()],
            threshold: 1,
            allocations: vec![Allocation {
                address: faucet.address(),
                amount: Self::FAUCET_SUPPLY,
            }],
        };
        DevNetwork {
            genesis,
            members: vec![committee.clone()],
            committee,
            faucet,
        }
    }

    /// [`DevNetwork::new`] with a committee of `members` keys (seeds `[1; 32]`, then
    /// `[101; 32]`, `[102; 32]`, ...) and threshold `threshold`.
    pub fn with_committee(name: &str, pow_difficulty: u8, members: usize, threshold: u8) -> Self {
        let mut net = Self::new(name, pow_difficulty);
        net.members = (0..members.max(1))
            .map(|i| match i {
                0 => net.committee.clone(),
                _ => Keypair::from_seed(&[100u8.wrapping_add(i as u8); 32]),
            })
            .collect();
        net.genesis.committee = net.members.iter().map(|k| k.address()).collect();
        net.genesis.threshold = threshold;
        net
    }

    /// The network id.
    pub fn network_id(&self) -> u64 {
        self.genesis.network_id()
    }

    /// One milestone round on an issuing core `p` over `store`: submits `payloads` at
    /// `now`, issues the milestone at `now + 990` and writes everything to `store`. Returns
    /// the time after the round (for the next one).
    pub fn milestone_round(
        p: &mut crate::Protocol,
        store: &dyn dag_core::store::Store,
        payloads: Vec<SignedPayload>,
        now: u64,
    ) -> u64 {
        for r in p.submit_payloads_inline(payloads, now) {
            r.expect("a valid payload");
        }
        p.handle_tick(now + 990);
        p.run_work_inline();
        while let Some(w) = p.poll_store_write() {
            w.apply_to(store).expect("the store takes the write");
        }
        now + 1000
    }

    /// A payment of `amount` from `from` (sequence number `seq`) to `to`.
    pub fn pay(&self, from: &Keypair, seq: u64, to: Address, amount: u64) -> SignedPayload {
        SignedPayload::sign(
            from,
            self.network_id(),
            seq,
            Body::Pay {
                to,
                amount,
                memo: Vec::new(),
            },
        )
    }
}

/// Settings of a [`Cluster`].
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Number of nodes (1 to 63), fully meshed.
    pub nodes: usize,
    /// Seed of every random choice of the harness (jitter, loss, timer phases) and, mixed
    /// with the node index, of each node's tip-selection RNG.
    pub seed: u64,
    /// The network.
    pub network: DevNetwork,
    /// The node that holds the committee key (issues milestones) and the dev faucet.
    pub issuer: Option<usize>,
    /// Protocol settings of every node; `milestone_signer`, `faucet` and `seed` are set per
    /// node by the harness.
    pub protocol: ProtocolConfig,
    /// Peering settings of every node.
    pub peering: PeeringConfig,
    /// One-way delay of every frame, ms.
    pub link_delay_ms: u64,
    /// Up to this much more delay per frame, drawn from the seeded RNG, ms (frames of one
    /// direction of a connection still arrive in order).
    pub jitter_ms: u64,
    /// Probability that a frame is lost (0 to 1; handshakes are never lost at random).
    pub loss: f64,
    /// Period of each node's protocol timer ([`Protocol::handle_tick`]), ms.
    pub protocol_tick_ms: u64,
    /// Period of each node's peering timer ([`Peering::handle_tick`]), ms.
    pub peering_tick_ms: u64,
    /// A connection over a link cut this long is closed (QUIC's idle timeout), ms.
    pub idle_timeout_ms: u64,
    /// Virtual time at start, ms since the Unix epoch.
    pub start_ms: u64,
    /// Faults beyond loss and cuts, for chaos runs (none by default).
    pub faults: Faults,
    /// Hash every delivered frame into [`Cluster::trace_digest`] (on by default). A run
    /// that does not read the digest can turn it off: BLAKE2b over every frame was a tenth
    /// of a node-mode simulation's time. Nothing else changes.
    pub trace_frames: bool,
    /// Worker threads for the nodes' own work at each instant (1: on the calling thread).
    /// Every node's ingest, protocol outputs and outbound queues at an instant touch that
    /// node only, so they run in parallel (with the `parallel` feature; without it, on the
    /// calling thread) and their outputs (frames, whose delays draw from the seeded RNG;
    /// durability timers; disconnects) are applied afterwards in node order: the same seed
    /// gives the same run, frame for frame, with any number of threads.
    pub threads: usize,
}

/// Faults of a chaos run beyond [`ClusterConfig::loss`] and [`Cluster::partition`]
/// (every probability 0 to 1; all off by default, and then the harness draws nothing
/// for them, so runs without faults are unchanged).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Probability that a frame is delivered twice (the copy up to `jitter_ms` + 1 later).
    pub duplicate: f64,
    /// Probability that a frame gets up to `reorder_ms` more delay and is not held behind
    /// the frames sent before it, so it may overtake them or be overtaken. Stronger than
    /// QUIC's ordered stream (only the handshake stays first): the protocol must not rely
    /// on the order of messages.
    pub reorder: f64,
    /// See `reorder`, ms.
    pub reorder_ms: u64,
    /// Probability of a delay spike: the frame gets up to `spike_ms` more delay and the
    /// later frames of its direction wait behind it (head-of-line blocking).
    pub spike: f64,
    /// See `spike`, ms.
    pub spike_ms: u64,
    /// Store writes become durable (flushed) this long after they are made; 0: at once. A
    /// crash keeps the durable writes and a seeded prefix of the others (a torn tail),
    /// never more. As the node's driver does: local submissions are answered only once
    /// their writes are durable (group commit), transactions are gossiped on acceptance
    /// and node-signed ones only once durable.
    pub durable_lag_ms: u64,
    /// Test-only, a deliberately injected bug for the chaos harness's own test: local
    /// submissions are answered before their writes are durable (with `durable_lag_ms`).
    #[doc(hidden)]
    pub bug_ack_before_durable: bool,
}

impl ClusterConfig {
    /// `nodes` nodes on a fresh [`DevNetwork`] (PoW difficulty 2), node 0 issuing a milestone
    /// every 500 ms and holding the faucet, 5 ms links with up to 5 ms jitter, no loss,
    /// timers as the node runs them (protocol: interval / 4, peering: 100 ms), a 10 s idle
    /// timeout.
    pub fn dev(nodes: usize, seed: u64) -> Self {
        let network = DevNetwork::new("harness", 2);
        let protocol = ProtocolConfig {
            milestone_interval_ms: 500,
            ..ProtocolConfig::default()
        };
        ClusterConfig {
            nodes,
            seed,
            start_ms: network.genesis.timestamp + 1_000,
            network,
            issuer: Some(0),
            protocol_tick_ms: (protocol.milestone_interval_ms / 4).clamp(20, 250),
            protocol,
            peering: PeeringConfig::default(),
            link_delay_ms: 5,
            jitter_ms: 5,
            loss: 0.0,
            peering_tick_ms: 100,
            idle_timeout_ms: 10_000,
            faults: Faults::default(),
            trace_frames: true,
            threads: 1,
        }
    }
}

/// What the harness can refuse.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Building a node's protocol failed.
    #[error("protocol: {0}")]
    Protocol(#[from] ProtocolError),
    /// A node's store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The configuration is unusable.
    #[error("config: {0}")]
    Config(String),
    /// No node with this index.
    #[error("node {0} does not exist")]
    NoSuchNode(usize),
    /// The node is crashed.
    #[error("node {0} is down")]
    NodeDown(usize),
    /// The node is running (it cannot be restarted).
    #[error("node {0} is running")]
    NodeUp(usize),
    /// No connection between the two nodes.
    #[error("nodes {0} and {1} have no connection")]
    NotConnected(usize, usize),
    /// The node has no faucet.
    #[error("node {0} has no faucet")]
    NoFaucet(usize),
    /// [`Cluster::run_until`] ran out of virtual time.
    #[error("condition not met after {waited_ms} ms of virtual time")]
    Timeout {
        /// Virtual time waited, ms.
        waited_ms: u64,
    },
}

// ----- per-node observation -----

/// Something that happened at a node, as recorded in its log ([`SimNode::log`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Logged {
    /// An event of the node's [`Protocol`].
    Protocol(Event),
    /// The handshake of `peer` was accepted ([`Peering::handle_connected`]).
    Connected {
        /// Peer index.
        peer: usize,
    },
    /// The connection to `peer` ended.
    Disconnected {
        /// Peer index.
        peer: usize,
        /// Why.
        reason: String,
    },
    /// A [`Message::TransactionRequest`] went out to `peer`.
    Requested {
        /// Peer index.
        peer: usize,
        /// Requested ids.
        ids: Vec<TxId>,
    },
    /// A [`Message::MilestoneRequest`] went out to `peer`.
    SyncRequested {
        /// Peer index.
        peer: usize,
        /// First index.
        from: MilestoneIndex,
        /// Last index.
        to: MilestoneIndex,
    },
    /// A transaction from `peer` failed validation ([`Verdict::Invalid`]) or was refused
    /// ([`Verdict::Refused`]).
    Rejected {
        /// Peer index.
        peer: usize,
        /// The transaction.
        id: TxId,
        /// The verdict.
        verdict: Verdict,
    },
    /// The node crashed.
    Crashed,
    /// The node restarted from its store.
    Restarted {
        /// Stored transactions read back.
        transactions: usize,
        /// Of those, how many could not be re-attached.
        skipped: usize,
        /// The store had been pruned up to this milestone (0: never).
        pruned_milestone: MilestoneIndex,
    },
    /// A store write failed.
    StoreFailed(String),
}

/// Counters of one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Frames this node sent (handshakes included).
    pub frames_sent: u64,
    /// Frames this node sent that were lost (cut link, random loss, closed connection).
    pub frames_lost: u64,
    /// Frames this node received.
    pub frames_received: u64,
    /// Transactions sent (gossip and answers).
    pub transactions_sent: u64,
    /// Transaction requests sent.
    pub transaction_requests: u64,
    /// Transaction ids requested.
    pub ids_requested: u64,
    /// Milestone (sync) requests sent.
    pub milestone_requests: u64,
    /// Heartbeats sent.
    pub heartbeats_sent: u64,
    /// Peer transactions ingested as new.
    pub new: u64,
    /// Peer transactions ingested that were known.
    pub duplicates: u64,
    /// Peer transactions that failed validation.
    pub invalid: u64,
    /// Peer transactions refused (not the sender's fault).
    pub refused: u64,
    /// Protocol events.
    pub events: u64,
    /// Connections established.
    pub connections: u64,
    /// Connections lost.
    pub disconnections: u64,
}

/// A peer transaction waiting for the node's next ingest batch.
struct InboundTx {
    peer: PeerKey,
    id: TxId,
    bytes: Vec<u8>,
    solicited: bool,
}

/// One node of a [`Cluster`].
pub struct SimNode {
    index: usize,
    key: PeerKey,
    config: ProtocolConfig,
    protocol: Protocol,
    peering: Peering,
    store: MemStore,
    up: bool,
    /// Bumped on crash and restart: timers of an earlier life are ignored.
    incarnation: u64,
    inbox: Vec<InboundTx>,
    /// Messages received since its last drain (after their connection's handshake), with
    /// the sender: handled by its peering layer in the node's own work of the instant, as
    /// the node's connection readers hand them over.
    received: Vec<(PeerKey, Message)>,
    log: Vec<(u64, Logged)>,
    stats: NodeStats,
    /// The committee member's last vote, durable like the store (written before the vote
    /// is sent).
    vote: Option<crate::VoteRecord>,
    /// Store writes not durable yet ([`Faults::durable_lag_ms`]), oldest first, with the
    /// time they become durable.
    pending: std::collections::VecDeque<(u64, StoreWrite)>,
    /// This node's clock minus the virtual clock, ms (what its protocol core reads).
    skew_ms: i64,
}

impl SimNode {
    /// Its index in the cluster.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Its peering key.
    pub fn key(&self) -> PeerKey {
        self.key
    }

    /// Whether it runs (not crashed).
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Its protocol core (while crashed: as it was when it crashed).
    pub fn protocol(&self) -> &Protocol {
        &self.protocol
    }

    /// Its peering state machine.
    pub fn peering(&self) -> &Peering {
        &self.peering
    }

    /// Its store (survives crashes).
    pub fn store(&self) -> &MemStore {
        &self.store
    }

    /// Everything it logged, with the virtual time, oldest first.
    pub fn log(&self) -> &[(u64, Logged)] {
        &self.log
    }

    /// The committee member's last durable vote.
    pub fn vote(&self) -> Option<&crate::VoteRecord> {
        self.vote.as_ref()
    }

    /// Its counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Highest applied milestone.
    pub fn confirmed_index(&self) -> MilestoneIndex {
        self.protocol.ledger().confirmed_index()
    }

    /// Ledger digest as of the highest applied milestone.
    pub fn ledger_digest(&self) -> Digest {
        self.protocol.ledger().digest()
    }

    /// Balance of `address` in its ledger.
    pub fn balance(&self, address: &Address) -> u64 {
        self.protocol.ledger().balance(address)
    }

    /// The stored milestones, in index order, with their ledger digests.
    pub fn milestone_digests(&self) -> Vec<(MilestoneIndex, Digest)> {
        (1..)
            .map_while(|i| self.store.milestone(i).ok().flatten())
            .map(|r| (r.index, r.ledger_digest))
            .collect()
    }

    /// The ledger digest stored for milestone `index`.
    pub fn digest_at(&self, index: MilestoneIndex) -> Option<Digest> {
        self.store
            .milestone(index)
            .ok()
            .flatten()
            .map(|r| r.ledger_digest)
    }

    /// The stored status of a payload.
    pub fn payload_status(&self, id: &PayloadId) -> Option<PayloadStatus> {
        self.store.payload(id).ok().flatten().map(|r| r.status)
    }

    /// Whether a payload is confirmed (applied) here.
    pub fn is_confirmed(&self, id: &PayloadId) -> bool {
        matches!(
            self.payload_status(id),
            Some(PayloadStatus::Confirmed { .. })
        )
    }

    /// A stored transaction's bytes.
    pub fn transaction(&self, id: &TxId) -> Option<Vec<u8>> {
        self.store.transaction(id).ok().flatten()
    }

    /// Whether the transaction is solid in its Tangle.
    pub fn is_solid(&self, id: &TxId) -> bool {
        self.protocol.tangle().is_solid(id)
    }

    /// Whether the transaction is known to its Tangle (solid or waiting for parents).
    pub fn is_known(&self, id: &TxId) -> bool {
        self.protocol.tangle().is_known(id)
    }

    /// This node's clock at virtual time `now` (see [`Cluster::set_clock_skew`]).
    fn clock(&self, now: u64) -> u64 {
        now.saturating_add_signed(self.skew_ms)
    }

    /// Its clock minus the virtual clock, ms.
    pub fn clock_skew_ms(&self) -> i64 {
        self.skew_ms
    }

    /// Store writes made but not durable yet ([`Faults::durable_lag_ms`]).
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    fn note(&mut self, now: u64, what: Logged) {
        self.log.push((now, what));
    }

    /// Where the node is, for heartbeats and sync (as the node's driver reports it).
    fn local_status(&self) -> LocalStatus {
        LocalStatus {
            solid_milestone: self.protocol.ledger().confirmed_index(),
            latest_milestone: self.protocol.latest_milestone(),
            pruning_point: self.protocol.pruned_milestone(),
        }
    }
}

// ----- links -----

/// A live connection: one ordered stream each way.
struct Conn {
    id: u64,
    /// Per side (0: the lower node index, 1: the higher): the peer's handshake was accepted.
    up: [bool; 2],
    /// Per receiving side: its stream decoder.
    decoders: [FrameDecoder; 2],
    /// Per receiving side: delivery time of the last frame queued to it (order is kept).
    last_at: [u64; 2],
    /// Per receiving side: delivery time of the handshake (nothing arrives before it).
    hello_at: [u64; 2],
}

/// The link between two nodes.
struct Link {
    cut: bool,
    /// Bumped on every cut (idle checks of an earlier cut are ignored).
    cut_gen: u64,
    conn: Option<Conn>,
    /// Bumped on every dial scheduled (earlier ones are ignored).
    dial_gen: u64,
    backoff_ms: u64,
}

impl Link {
    fn new() -> Self {
        Link {
            cut: false,
            cut_gen: 0,
            conn: None,
            dial_gen: 0,
            backoff_ms: INITIAL_BACKOFF_MS,
        }
    }
}

/// The key of the link between `a` and `b`.
fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

/// The side of `node` on link `link`.
fn side(link: (usize, usize), node: usize) -> usize {
    usize::from(node != link.0)
}

/// Something scheduled on the virtual clock.
enum Action {
    Deliver {
        conn: u64,
        from: usize,
        to: usize,
        frame: Vec<u8>,
    },
    ProtocolTick {
        node: usize,
        incarnation: u64,
    },
    PeeringTick {
        node: usize,
        incarnation: u64,
    },
    Dial {
        link: (usize, usize),
        gen: u64,
    },
    IdleCheck {
        link: (usize, usize),
        cut_gen: u64,
    },
    /// Node `node`'s writes due by now become durable ([`Faults::durable_lag_ms`]).
    Durable {
        node: usize,
        incarnation: u64,
    },
}

// ----- the cluster -----

/// Several nodes driven against each other in memory on a virtual clock. See the module
/// documentation.
pub struct Cluster {
    config: ClusterConfig,
    now: u64,
    seq: u64,
    queue: BTreeMap<(u64, u64), Action>,
    nodes: Vec<SimNode>,
    keys: BTreeMap<PeerKey, usize>,
    links: BTreeMap<(usize, usize), Link>,
    rng: ChaCha8Rng,
    next_conn: u64,
    trace: [u8; 32],
    delivered: u64,
    /// Workers of [`ClusterConfig::threads`] (none for 1, or without the `parallel`
    /// feature).
    pool: Option<Pool>,
}

#[cfg(feature = "parallel")]
type Pool = rayon::ThreadPool;
#[cfg(not(feature = "parallel"))]
type Pool = ();

/// What one node's work at an instant asks of the cluster (applied in node order).
#[derive(Default)]
struct NodeOutput {
    /// Frames to send, with the receiving node.
    frames: Vec<(usize, Vec<u8>)>,
    /// Connections its peering layer closes.
    closes: Vec<(PeerKey, String)>,
    /// When its new writes become durable (time, incarnation).
    durable_at: Option<(u64, u64)>,
}

/// The peering key of node `i`: the address of a key pair derived from its index.
fn node_key(i: usize) -> PeerKey {
    let mut seed = [0x5e; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    PeerKey(Keypair::from_seed(&seed).address().0)
}

/// Builds a node's protocol from its store with [`restore_from_store`], as the node does,
/// and writes the milestone batches it re-applied at once.
fn restore(
    genesis: &Genesis,
    config: ProtocolConfig,
    store: &MemStore,
    now: u64,
) -> Result<(Protocol, RestoreReport), HarnessError> {
    let (mut core, report) = restore_from_store(genesis.clone(), config, store, now)?;
    while let Some(w) = core.poll_store_write() {
        write_one(store, &w)?;
    }
    Ok((core, report))
}

/// Carries out one protocol write, as the node's store writer does.
fn write_one(store: &MemStore, w: &StoreWrite) -> Result<(), StoreError> {
    w.apply_to(store).map(|_| ())
}

/// The frame carrying `o`.
fn frame_of(o: &Outbound) -> Vec<u8> {
    let mut frame = Vec::new();
    match o {
        Outbound::Transaction(b) => encode_transaction(b, &mut frame),
        Outbound::Message(m) => m.encode_into(&mut frame),
    }
    frame
}

impl Cluster {
    /// Builds the nodes (each from an empty store) and schedules their timers and the first
    /// dial of every link, at [`ClusterConfig::start_ms`].
    pub fn new(config: ClusterConfig) -> Result<Cluster, HarnessError> {
        let n = config.nodes;
        if n == 0 || n > 63 {
            return Err(HarnessError::Config(format!(
                "{n} nodes: 1 to 63 are supported"
            )));
        }
        if config.issuer.is_some_and(|i| i >= n) {
            return Err(HarnessError::Config("the issuer is not a node".into()));
        }
        if config.protocol_tick_ms == 0 || config.peering_tick_ms == 0 {
            return Err(HarnessError::Config(
                "timer periods must be positive".into(),
            ));
        }
        if !(0.0..=1.0).contains(&config.loss) {
            return Err(HarnessError::Config("loss is a probability".into()));
        }
        let f = &config.faults;
        if ![f.duplicate, f.reorder, f.spike]
            .iter()
            .all(|p| (0.0..=1.0).contains(p))
        {
            return Err(HarnessError::Config("fault rates are probabilities".into()));
        }
        let now = config.start_ms;
        let mut nodes = Vec::with_capacity(n);
        let mut keys = BTreeMap::new();
        for i in 0..n {
            let key = node_key(i);
            keys.insert(key, i);
            let pc = Self::node_protocol_config(&config, i);
            let store = MemStore::new();
            let (protocol, _) = restore(&config.network.genesis, pc.clone(), &store, now)?;
            nodes.push(SimNode {
                index: i,
                key,
                config: pc,
                protocol,
                peering: Peering::new(config.peering.clone()),
                store,
                up: true,
                incarnation: 0,
                inbox: Vec::new(),
                received: Vec::new(),
                log: Vec::new(),
                stats: NodeStats::default(),
                vote: None,
                pending: std::collections::VecDeque::new(),
                skew_ms: 0,
            });
        }
        let mut links = BTreeMap::new();
        for a in 0..n {
            for b in a + 1..n {
                links.insert((a, b), Link::new());
            }
        }
        let mut c = Cluster {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            now,
            seq: 0,
            queue: BTreeMap::new(),
            nodes,
            keys,
            links,
            next_conn: 0,
            trace: [0; 32],
            delivered: 0,
            pool: None,
        };
        #[cfg(feature = "parallel")]
        if c.config.threads > 1 {
            c.pool = Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(c.config.threads)
                    .thread_name(|i| format!("harness-{i}"))
                    .build()
                    .map_err(|e| HarnessError::Config(format!("thread pool: {e}")))?,
            );
        }
        for i in 0..n {
            c.start_node(i);
        }
        let all: Vec<(usize, usize)> = c.links.keys().copied().collect();
        for l in all {
            c.schedule_dial(l, now);
        }
        Ok(c)
    }

    fn node_protocol_config(config: &ClusterConfig, i: usize) -> ProtocolConfig {
        let mut pc = config.protocol.clone();
        let issuer = config.issuer == Some(i);
        let members = &config.network.members;
        pc.milestone_signer = if members.len() > 1 {
            members.get(i).map(|k| (i as u8, k.clone()))
        } else {
            issuer.then(|| (0, config.network.committee.clone()))
        };
        pc.faucet = issuer.then(|| config.network.faucet.clone());
        pc.seed = config.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        pc
    }

    // ----- accessors -----

    /// Virtual time now, ms since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The configuration.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// The network (genesis and keys).
    pub fn network(&self) -> &DevNetwork {
        &self.config.network
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the cluster has no node (never: [`Cluster::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`. Panics if there is no such node.
    pub fn node(&self, i: usize) -> &SimNode {
        &self.nodes[i]
    }

    /// Every node, in index order.
    pub fn nodes(&self) -> &[SimNode] {
        &self.nodes
    }

    /// The index of the node with peering key `key`.
    pub fn index_of(&self, key: &PeerKey) -> Option<usize> {
        self.keys.get(key).copied()
    }

    /// A digest of every frame delivered so far (time, sender, receiver, bytes), in order:
    /// equal for two runs that behaved identically (all zeros with
    /// [`ClusterConfig::trace_frames`] off).
    pub fn trace_digest(&self) -> Digest {
        Digest(self.trace)
    }

    /// Empties every node's log ([`SimNode::log`]), for a long run that has read it: the
    /// logs hold every event of every node.
    pub fn clear_logs(&mut self) {
        for n in &mut self.nodes {
            n.log.clear();
        }
    }

    /// Frames delivered so far.
    pub fn frames_delivered(&self) -> u64 {
        self.delivered
    }

    /// Whether every pair of running nodes whose link is not cut is connected (both
    /// handshakes accepted).
    pub fn all_connected(&self) -> bool {
        self.links.iter().all(|(&(a, b), l)| {
            l.cut
                || !self.nodes[a].up
                || !self.nodes[b].up
                || l.conn.as_ref().is_some_and(|c| c.up == [true, true])
        })
    }

    /// Whether every running node has applied the same milestone, at least `index`, with the
    /// same ledger digest.
    pub fn converged_at_least(&self, index: MilestoneIndex) -> bool {
        let mut up = self.nodes.iter().filter(|n| n.up);
        let Some(first) = up.next() else {
            return false;
        };
        let (i, d) = (first.confirmed_index(), first.ledger_digest());
        i >= index && up.all(|n| n.confirmed_index() == i && n.ledger_digest() == d)
    }

    /// Whether a payload is confirmed on every running node.
    pub fn confirmed_everywhere(&self, id: &PayloadId) -> bool {
        self.nodes
            .iter()
            .filter(|n| n.up)
            .all(|n| n.is_confirmed(id))
    }

    /// The stored ledger digest of milestone `index` on each node.
    pub fn digests_at(&self, index: MilestoneIndex) -> Vec<Option<Digest>> {
        self.nodes.iter().map(|n| n.digest_at(index)).collect()
    }

    // ----- running -----

    /// Runs the virtual clock `ms` forward.
    pub fn advance(&mut self, ms: u64) {
        let target = self.now.saturating_add(ms);
        while self
            .queue
            .first_key_value()
            .is_some_and(|(k, _)| k.0 <= target)
        {
            self.step();
        }
        self.now = target;
    }

    /// Runs until `done` holds (checked before the first step and after every instant), at
    /// most `max_ms` of virtual time. Returns the virtual time it took.
    pub fn run_until(
        &mut self,
        max_ms: u64,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> Result<u64, HarnessError> {
        let start = self.now;
        let deadline = start.saturating_add(max_ms);
        loop {
            if done(self) {
                return Ok(self.now - start);
            }
            match self.queue.first_key_value() {
                Some((k, _)) if k.0 <= deadline => {
                    self.step();
                }
                _ => {
                    self.now = deadline;
                    return if done(self) {
                        Ok(max_ms)
                    } else {
                        Err(HarnessError::Timeout { waited_ms: max_ms })
                    };
                }
            }
        }
    }

    /// Handles everything scheduled at the earliest pending instant, then drains every
    /// node's outputs. Returns false if nothing is scheduled.
    pub fn step(&mut self) -> bool {
        let Some((&(t, _), _)) = self.queue.first_key_value() else {
            return false;
        };
        self.now = self.now.max(t);
        let rest = self.queue.split_off(&(t + 1, 0));
        let batch = std::mem::replace(&mut self.queue, rest);
        for (_, action) in batch {
            self.handle(action);
        }
        self.flush_all();
        true
    }

    fn schedule(&mut self, at: u64, action: Action) {
        self.seq += 1;
        self.queue.insert((at, self.seq), action);
    }

    fn handle(&mut self, action: Action) {
        match action {
            Action::Deliver {
                conn,
                from,
                to,
                frame,
            } => self.deliver(conn, from, to, frame),
            Action::ProtocolTick { node, incarnation } => {
                let n = &mut self.nodes[node];
                if !n.up || n.incarnation != incarnation {
                    return;
                }
                let local = n.clock(self.now);
                n.protocol.handle_tick(local);
                n.protocol.run_work_inline();
                let at = self.now + self.config.protocol_tick_ms;
                self.schedule(at, Action::ProtocolTick { node, incarnation });
            }
            Action::PeeringTick { node, incarnation } => {
                let now = self.now;
                let n = &mut self.nodes[node];
                if !n.up || n.incarnation != incarnation {
                    return;
                }
                for (peer, count) in n.protocol.poll_expired() {
                    n.peering.handle_expired(&peer, count, now);
                }
                let status = n.local_status();
                n.peering.handle_tick(now, status);
                let at = now + self.config.peering_tick_ms;
                self.schedule(at, Action::PeeringTick { node, incarnation });
            }
            Action::Dial { link, gen } => self.dial(link, gen),
            Action::Durable { node, incarnation } => {
                let now = self.now;
                let n = &mut self.nodes[node];
                if n.up && n.incarnation == incarnation {
                    make_durable(n, Some(now), now);
                }
            }
            Action::IdleCheck { link, cut_gen } => {
                let idle = self
                    .links
                    .get(&link)
                    .is_some_and(|l| l.cut && l.cut_gen == cut_gen && l.conn.is_some());
                if idle {
                    self.close_conn(link, "idle timeout (link cut)");
                }
            }
        }
    }

    /// Starts node `i`'s timers (first ticks at seeded phases) and asks for the parents it
    /// lacks since before a restart.
    fn start_node(&mut self, i: usize) {
        let now = self.now;
        let incarnation = self.nodes[i].incarnation;
        let p = self.rng.next_u64() % self.config.protocol_tick_ms;
        let q = self.rng.next_u64() % self.config.peering_tick_ms;
        self.schedule(
            now + p,
            Action::ProtocolTick {
                node: i,
                incarnation,
            },
        );
        self.schedule(
            now + q,
            Action::PeeringTick {
                node: i,
                incarnation,
            },
        );
        let n = &mut self.nodes[i];
        let missing = n.protocol.poll_missing();
        n.peering.handle_missing(missing, now);
    }

    // ----- connections -----

    fn schedule_dial(&mut self, link: (usize, usize), at: u64) {
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        l.dial_gen += 1;
        let gen = l.dial_gen;
        self.schedule(at, Action::Dial { link, gen });
    }

    /// A dial attempt: fails (and is retried with backoff) while the link is cut; opens a
    /// connection and sends both handshakes otherwise.
    fn dial(&mut self, link: (usize, usize), gen: u64) {
        let (a, b) = link;
        if !self.nodes[a].up || !self.nodes[b].up {
            return;
        }
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.dial_gen != gen || l.conn.is_some() {
            return;
        }
        if l.cut {
            let wait = l.backoff_ms;
            l.backoff_ms = (wait * 2).min(MAX_BACKOFF_MS);
            let at = self.now + wait;
            self.schedule_dial(link, at);
            return;
        }
        self.next_conn += 1;
        l.conn = Some(Conn {
            id: self.next_conn,
            up: [false, false],
            decoders: [FrameDecoder::new(), FrameDecoder::new()],
            last_at: [0, 0],
            hello_at: [0, 0],
        });
        let network_id = self.config.network.network_id();
        let mut hello = Vec::new();
        Message::Handshake {
            version: PROTOCOL_VERSION,
            network_id,
        }
        .encode_into(&mut hello);
        self.send_frame(a, b, hello.clone(), true);
        self.send_frame(b, a, hello, true);
    }

    /// Closes the connection over `link` (if any): both ends see it end; a re-dial follows
    /// after the link's backoff.
    fn close_conn(&mut self, link: (usize, usize), reason: &str) {
        let now = self.now;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let Some(conn) = l.conn.take() else {
            return;
        };
        let wait = l.backoff_ms;
        l.backoff_ms = (wait * 2).min(MAX_BACKOFF_MS);
        let (a, b) = link;
        for (me, other, s) in [(a, b, 0), (b, a, 1)] {
            if conn.up[s] {
                let key = self.nodes[other].key;
                let n = &mut self.nodes[me];
                n.peering.handle_disconnected(&key);
                n.stats.disconnections += 1;
                n.note(
                    now,
                    Logged::Disconnected {
                        peer: other,
                        reason: reason.to_string(),
                    },
                );
            }
        }
        self.schedule_dial(link, now + wait);
    }

    /// Queues a frame from `from` to `to` on their connection (lost if there is none, the
    /// link is cut, or the seeded loss says so).
    fn send_frame(&mut self, from: usize, to: usize, frame: Vec<u8>, handshake: bool) {
        let link = pair(from, to);
        let jitter = if self.config.jitter_ms > 0 {
            self.rng.next_u64() % (self.config.jitter_ms + 1)
        } else {
            0
        };
        let lost_at_random = !handshake
            && self.config.loss > 0.0
            && ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < self.config.loss;
        self.nodes[from].stats.frames_sent += 1;
        let mut at = self.now + self.config.link_delay_ms + jitter;
        // Chaos faults (no draw at all when off).
        let f = &self.config.faults;
        let (spike, reorder, duplicate) = (f.spike, f.reorder, f.duplicate);
        let (spike_ms, reorder_ms) = (f.spike_ms, f.reorder_ms);
        let mut reordered = false;
        let mut copy_at = None;
        if !handshake {
            if spike > 0.0 && self.chance(spike) {
                at += self.rng.next_u64() % (spike_ms + 1);
            }
            if reorder > 0.0 && self.chance(reorder) {
                reordered = true;
                at += self.rng.next_u64() % (reorder_ms + 1);
            }
            if duplicate > 0.0 && self.chance(duplicate) {
                copy_at = Some(1 + self.rng.next_u64() % (self.config.jitter_ms + 1));
            }
        }
        let conn_id = match self.links.get_mut(&link) {
            Some(l) if !l.cut && !lost_at_random => match l.conn.as_mut() {
                Some(c) => {
                    let s = side(link, to);
                    let at = if handshake {
                        c.hello_at[s] = at;
                        at.max(c.last_at[s])
                    } else if reordered {
                        // Not held behind earlier frames, nor holding later ones back;
                        // never ahead of the handshake.
                        at.max(c.hello_at[s])
                    } else {
                        at.max(c.last_at[s])
                    };
                    if !reordered {
                        c.last_at[s] = at;
                    }
                    Some((c.id, at))
                }
                None => None,
            },
            _ => None,
        };
        match conn_id {
            Some((conn, at)) => {
                if let Some(d) = copy_at {
                    self.schedule(
                        at + d,
                        Action::Deliver {
                            conn,
                            from,
                            to,
                            frame: frame.clone(),
                        },
                    );
                }
                self.schedule(
                    at,
                    Action::Deliver {
                        conn,
                        from,
                        to,
                        frame,
                    },
                )
            }
            None => self.nodes[from].stats.frames_lost += 1,
        }
    }

    /// A seeded coin with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        ((self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A frame arrives: decoded by the receiver's stream decoder, each message handled as
    /// the node's read loop does.
    fn deliver(&mut self, conn_id: u64, from: usize, to: usize, frame: Vec<u8>) {
        let link = pair(from, to);
        let s = side(link, to);
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        let live = !l.cut && self.nodes[to].up && self.nodes[from].up;
        let Some(conn) = l.conn.as_mut().filter(|c| c.id == conn_id && live) else {
            self.nodes[from].stats.frames_lost += 1;
            return;
        };
        if self.config.trace_frames {
            self.trace = dag_core::crypto::blake2b256_parts(&[
                &self.trace,
                &self.now.to_le_bytes(),
                &(from as u64).to_le_bytes(),
                &(to as u64).to_le_bytes(),
                &frame,
            ]);
        }
        self.delivered += 1;
        self.nodes[to].stats.frames_received += 1;
        let decoder = &mut conn.decoders[s];
        decoder.push(&frame);
        let mut messages = Vec::new();
        let mut violation = None;
        loop {
            match decoder.next_message() {
                Ok(Some(m)) => messages.push(m),
                Ok(None) => break,
                Err(e) => {
                    violation = Some(format!("protocol violation: {e}"));
                    break;
                }
            }
        }
        for m in messages {
            if let Err(why) = self.receive(link, from, to, m) {
                violation = Some(why);
                break;
            }
        }
        if let Some(why) = violation {
            self.close_conn(link, &why);
        }
    }

    /// One decoded message from `from` at `to`. Err: close the connection.
    fn receive(
        &mut self,
        link: (usize, usize),
        from: usize,
        to: usize,
        m: Message,
    ) -> Result<(), String> {
        let now = self.now;
        let s = side(link, to);
        let peer = self.nodes[from].key;
        let Some(conn) = self.links.get(&link).and_then(|l| l.conn.as_ref()) else {
            // Closed by an earlier message of the same frame: the rest is gone.
            return Ok(());
        };
        let shaken = conn.up[s];
        let n = &mut self.nodes[to];
        if !shaken {
            // Their handshake first.
            match m {
                Message::Handshake {
                    version,
                    network_id,
                } if version == PROTOCOL_VERSION && network_id == n.protocol.network_id() => {}
                _ => return Err("bad handshake".into()),
            }
            n.peering
                .handle_connected(peer, now)
                .map_err(|e| e.to_string())?;
            n.stats.connections += 1;
            n.note(now, Logged::Connected { peer: from });
            if let Some(c) = self.links.get_mut(&link).and_then(|l| l.conn.as_mut()) {
                c.up[s] = true;
                if c.up == [true, true] {
                    if let Some(l) = self.links.get_mut(&link) {
                        l.backoff_ms = INITIAL_BACKOFF_MS;
                    }
                }
            }
            return Ok(());
        }
        // The rest is the node's own work (its peering layer, its core): done in its drain
        // at the end of the instant, in parallel with the other nodes'.
        n.received.push((peer, m));
        Ok(())
    }

    /// Drains node `i`: its ingest batch, store writes (and gossip), events, peering events
    /// and outbound queues; then sends its frames.
    fn flush_node(&mut self, i: usize) {
        if !self.nodes[i].up {
            return;
        }
        let lag = self.config.faults.durable_lag_ms;
        let out = drain_node(&mut self.nodes[i], &self.keys, lag, self.now);
        self.apply_output(i, out);
    }

    /// [`Cluster::flush_node`] for every node: the nodes' work first (in parallel with
    /// [`ClusterConfig::threads`] > 1; each touches its own node only), then their outputs
    /// in node order, so the result does not depend on the number of threads.
    fn flush_all(&mut self) {
        let lag = self.config.faults.durable_lag_ms;
        let now = self.now;
        let keys = &self.keys;
        let work = |n: &mut SimNode, (): ()| {
            if n.up {
                drain_node(n, keys, lag, now)
            } else {
                NodeOutput::default()
            }
        };
        let inputs = vec![(); self.nodes.len()];
        let outputs = par_map_nodes(&mut self.nodes, self.pool.as_ref(), inputs, work);
        for (i, out) in outputs.into_iter().enumerate() {
            self.apply_output(i, out);
        }
    }

    /// Carries out what node `i`'s work asked for: its durability timer, its frames (each
    /// draws its delay from the seeded RNG, so this runs in node order) and its disconnects.
    fn apply_output(&mut self, i: usize, out: NodeOutput) {
        if let Some((at, incarnation)) = out.durable_at {
            self.schedule(
                at,
                Action::Durable {
                    node: i,
                    incarnation,
                },
            );
        }
        for (j, frame) in out.frames {
            self.send_frame(i, j, frame, false);
        }
        for (peer, reason) in out.closes {
            if let Some(&j) = self.keys.get(&peer) {
                self.close_conn(pair(i, j), &reason);
            }
        }
    }

    // ----- the test's controls -----

    fn check(&self, i: usize) -> Result<(), HarnessError> {
        match self.nodes.get(i) {
            None => Err(HarnessError::NoSuchNode(i)),
            Some(n) if !n.up => Err(HarnessError::NodeDown(i)),
            Some(_) => Ok(()),
        }
    }

    /// Submits local payloads at node `i` (as its API would), proof of work done inline;
    /// one result per payload. The node's outputs are drained at once (gossip goes out).
    pub fn submit(
        &mut self,
        i: usize,
        payloads: Vec<SignedPayload>,
    ) -> Result<Vec<Result<Submitted, Refusal>>, HarnessError> {
        self.check(i)?;
        let now = self.now;
        let local = self.nodes[i].clock(now);
        let r = self.nodes[i]
            .protocol
            .submit_payloads_inline(payloads, local);
        self.flush_node(i);
        if !self.config.faults.bug_ack_before_durable {
            // The answer waits for the round's writes to be durable (group commit).
            make_durable(&mut self.nodes[i], None, now);
            self.flush_node(i);
        }
        Ok(r)
    }

    /// [`Cluster::submit`] at every node at once: `batches[i]` goes to node `i` (an empty
    /// batch is skipped and gets no results). The nodes' work runs in parallel with
    /// [`ClusterConfig::threads`] > 1; their frames are then sent in node order, so the
    /// run is the one that calling [`Cluster::submit`] for each node in order gives (but
    /// for disconnects a node's peering asks for meanwhile, applied after every node's
    /// work), with any number of threads.
    pub fn submit_all(
        &mut self,
        batches: Vec<Vec<SignedPayload>>,
    ) -> Result<Vec<Vec<Result<Submitted, Refusal>>>, HarnessError> {
        if batches.len() != self.nodes.len() {
            return Err(HarnessError::Config(format!(
                "{} batches for {} nodes",
                batches.len(),
                self.nodes.len()
            )));
        }
        for (i, b) in batches.iter().enumerate() {
            if !b.is_empty() {
                self.check(i)?;
            }
        }
        let now = self.now;
        let lag = self.config.faults.durable_lag_ms;
        let wait_durable = !self.config.faults.bug_ack_before_durable;
        let keys = &self.keys;
        let work = |n: &mut SimNode, payloads: Vec<SignedPayload>| {
            if payloads.is_empty() {
                return (Vec::new(), Vec::new());
            }
            let local = n.clock(now);
            let r = n.protocol.submit_payloads_inline(payloads, local);
            let mut outs = vec![drain_node(n, keys, lag, now)];
            if wait_durable {
                // The answer waits for the round's writes to be durable (group commit).
                make_durable(n, None, now);
                outs.push(drain_node(n, keys, lag, now));
            }
            (r, outs)
        };
        let done = par_map_nodes(&mut self.nodes, self.pool.as_ref(), batches, work);
        let mut results = Vec::with_capacity(done.len());
        for (i, (r, outs)) in done.into_iter().enumerate() {
            for out in outs {
                self.apply_output(i, out);
            }
            results.push(r);
        }
        Ok(results)
    }

    /// A dev-faucet payment of `amount` to `to` at node `i` (which must hold the faucet);
    /// a refused payment gives its sequence number back.
    pub fn faucet(
        &mut self,
        i: usize,
        to: Address,
        amount: u64,
    ) -> Result<Result<Submitted, Refusal>, HarnessError> {
        self.check(i)?;
        let Some(p) = self.nodes[i].protocol.faucet_payload(to, amount) else {
            return Err(HarnessError::NoFaucet(i));
        };
        let seq = p.seq;
        let r = self
            .submit(i, vec![p])?
            .pop()
            .unwrap_or(Err(Refusal::Rejected(crate::RejectReason::NoTips(
                "no result".into(),
            ))));
        if r.is_err() {
            self.nodes[i].protocol.release_faucet_seq(seq);
        }
        Ok(r)
    }

    /// Sends `message` from node `from` to node `to` over their connection, as if `from`'s
    /// peering layer had queued it (subject to cuts, loss and order like any frame).
    pub fn inject(
        &mut self,
        from: usize,
        to: usize,
        message: &Message,
    ) -> Result<(), HarnessError> {
        let mut frame = Vec::new();
        message.encode_into(&mut frame);
        self.inject_bytes(from, to, frame)
    }

    /// Writes raw `bytes` into the stream from node `from` to node `to` (a misbehaving
    /// peer): what the receiver cannot decode closes the connection.
    pub fn inject_bytes(
        &mut self,
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    ) -> Result<(), HarnessError> {
        self.check(from)?;
        self.check(to)?;
        let connected = from != to
            && self
                .links
                .get(&pair(from, to))
                .is_some_and(|l| l.conn.is_some());
        if !connected {
            return Err(HarnessError::NotConnected(from, to));
        }
        self.send_frame(from, to, bytes, false);
        Ok(())
    }

    /// Cuts the link between `a` and `b`: its frames are lost, in flight or not, and its
    /// connection closes after [`ClusterConfig::idle_timeout_ms`]. No effect if `a == b` or
    /// either is not a node.
    pub fn partition(&mut self, a: usize, b: usize) {
        let link = pair(a, b);
        let at = self.now + self.config.idle_timeout_ms;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if l.cut {
            return;
        }
        l.cut = true;
        l.cut_gen += 1;
        let cut_gen = l.cut_gen;
        self.schedule(at, Action::IdleCheck { link, cut_gen });
    }

    /// Restores the link between `a` and `b`; if its connection was lost, it is re-dialled
    /// at once.
    pub fn heal(&mut self, a: usize, b: usize) {
        let link = pair(a, b);
        let now = self.now;
        let Some(l) = self.links.get_mut(&link) else {
            return;
        };
        if !l.cut {
            return;
        }
        l.cut = false;
        l.backoff_ms = INITIAL_BACKOFF_MS;
        if l.conn.is_none() {
            self.schedule_dial(link, now);
        }
    }

    /// Cuts every link of node `i`.
    pub fn isolate(&mut self, i: usize) {
        for j in 0..self.nodes.len() {
            self.partition(i, j);
        }
    }

    /// Heals every link.
    pub fn heal_all(&mut self) {
        let all: Vec<(usize, usize)> = self.links.keys().copied().collect();
        for (a, b) in all {
            self.heal(a, b);
        }
    }

    /// Whether the link between `a` and `b` is cut.
    pub fn is_cut(&self, a: usize, b: usize) -> bool {
        self.links.get(&pair(a, b)).is_some_and(|l| l.cut)
    }

    /// Sets node `i`'s clock to the virtual clock plus `skew_ms` (negative: behind): its
    /// protocol core reads that time (timestamps, the timestamp window, timers). Peering
    /// timers keep the virtual clock. No effect if there is no such node.
    pub fn set_clock_skew(&mut self, i: usize, skew_ms: i64) {
        if let Some(n) = self.nodes.get_mut(i) {
            n.skew_ms = skew_ms;
        }
    }

    /// Replaces the chaos faults (probabilities clamped to 0..=1, NaN as 0).
    pub fn set_faults(&mut self, faults: Faults) {
        let p = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
        self.config.faults = Faults {
            duplicate: p(faults.duplicate),
            reorder: p(faults.reorder),
            spike: p(faults.spike),
            ..faults
        };
    }

    /// Sets the probability that a frame is lost (clamped to 0..=1).
    pub fn set_loss(&mut self, loss: f64) {
        self.config.loss = if loss.is_nan() {
            0.0
        } else {
            loss.clamp(0.0, 1.0)
        };
    }

    /// Crashes node `i`: it stops, its connections close (its peers notice at once), frames
    /// to and from it are lost, and its peer transactions not yet ingested are gone. Its
    /// store survives: every durable write, and of those not durable yet
    /// ([`Faults::durable_lag_ms`]) a seeded prefix (none to all), as a torn log tail.
    pub fn crash(&mut self, i: usize) -> Result<(), HarnessError> {
        self.check(i)?;
        let now = self.now;
        let links: Vec<(usize, usize)> = (0..self.nodes.len())
            .filter(|j| *j != i)
            .map(|j| pair(i, j))
            .collect();
        for l in links {
            self.close_conn(l, "peer crashed");
        }
        let waiting = self.nodes[i].pending.len() as u64;
        let keep = if waiting > 0 {
            self.rng.next_u64() % (waiting + 1)
        } else {
            0
        };
        let n = &mut self.nodes[i];
        for (_, w) in n.pending.drain(..).take(keep as usize) {
            if let Err(e) = write_one(&n.store, &w) {
                n.log.push((now, Logged::StoreFailed(e.to_string())));
            }
        }
        n.up = false;
        n.incarnation += 1;
        n.inbox.clear();
        n.received.clear();
        n.note(now, Logged::Crashed);
        Ok(())
    }

    /// Sets node `i`'s retention limit ([`Protocol::set_retention_limit`]: keep the cones of
    /// at most `limit` milestones; `None`: everything) until it restarts.
    pub fn set_retention_limit(
        &mut self,
        i: usize,
        limit: Option<u32>,
    ) -> Result<(), HarnessError> {
        self.check(i)?;
        self.nodes[i].protocol.set_retention_limit(limit);
        self.flush_node(i);
        Ok(())
    }

    /// Sets the committee key node `i` holds from its next restart (`None`: none; a test
    /// holding the key can then act as that member, e.g. equivocate).
    pub fn set_milestone_signer(
        &mut self,
        i: usize,
        signer: Option<(u8, Keypair)>,
    ) -> Result<(), HarnessError> {
        let n = self.nodes.get_mut(i).ok_or(HarnessError::NoSuchNode(i))?;
        n.config.milestone_signer = signer;
        Ok(())
    }

    /// Node `i`'s operator approves a committee update
    /// ([`Protocol::approve_committee_update`]); `None` withdraws it.
    pub fn approve_committee_update(
        &mut self,
        i: usize,
        update: Option<dag_core::CommitteeUpdate>,
    ) -> Result<(), HarnessError> {
        self.check(i)?;
        self.nodes[i]
            .protocol
            .approve_committee_update(update)
            .map_err(HarnessError::Config)
    }

    /// Restarts crashed node `i` from its store ([`restore_from_store`]): a new
    /// [`Protocol`] and a new [`Peering`]; it re-dials its peers at once.
    pub fn restart(&mut self, i: usize) -> Result<(), HarnessError> {
        match self.nodes.get(i) {
            None => return Err(HarnessError::NoSuchNode(i)),
            Some(n) if n.up => return Err(HarnessError::NodeUp(i)),
            Some(_) => {}
        }
        let now = self.now;
        let genesis = self.config.network.genesis.clone();
        let n = &mut self.nodes[i];
        let local = n.clock(now);
        let (mut protocol, report) = restore(&genesis, n.config.clone(), &n.store, local)?;
        if let Some(v) = n.vote.clone() {
            protocol.restore_vote(v);
        }
        n.protocol = protocol;
        n.peering = Peering::new(self.config.peering.clone());
        n.up = true;
        n.incarnation += 1;
        n.note(
            now,
            Logged::Restarted {
                transactions: report.transactions,
                skipped: report.bad,
                pruned_milestone: report.pruned_milestone,
            },
        );
        self.start_node(i);
        let links: Vec<(usize, usize)> = (0..self.nodes.len())
            .filter(|j| *j != i)
            .map(|j| pair(i, j))
            .collect();
        for l in links {
            if let Some(link) = self.links.get_mut(&l) {
                link.backoff_ms = INITIAL_BACKOFF_MS;
            }
            self.schedule_dial(l, now);
        }
        self.flush_node(i);
        Ok(())
    }
}

/// `f` on every node with its input (one per node), in parallel on `pool` if there is one;
/// the results in node order.
fn par_map_nodes<I: Send, T: Send>(
    nodes: &mut [SimNode],
    pool: Option<&Pool>,
    inputs: Vec<I>,
    f: impl Fn(&mut SimNode, I) -> T + Sync,
) -> Vec<T> {
    debug_assert_eq!(inputs.len(), nodes.len());
    #[cfg(feature = "parallel")]
    if let Some(pool) = pool {
        use rayon::prelude::*;
        return pool.install(|| {
            nodes
                .par_iter_mut()
                .zip(inputs)
                .with_max_len(1)
                .map(|(n, x)| f(n, x))
                .collect()
        });
    }
    #[cfg(not(feature = "parallel"))]
    let _ = pool;
    nodes.iter_mut().zip(inputs).map(|(n, x)| f(n, x)).collect()
}

/// Node `n`'s work at `now`: its ingest batch, store writes (and gossip), committee
/// messages, events, peering events and outbound queues (encoded into frames). Touches `n`
/// only, so the nodes of an instant can run it in parallel.
fn drain_node(n: &mut SimNode, keys: &BTreeMap<PeerKey, usize>, lag: u64, now: u64) -> NodeOutput {
    let mut out = NodeOutput::default();
    handle_received(n, now, &mut out);
    ingest(n, keys, now);
    let missing = n.protocol.poll_missing();
    n.peering.handle_missing(missing, now);
    let had = n.pending.len();
    while let Some(w) = n.protocol.poll_store_write() {
        persist(n, w, now, lag);
    }
    if n.pending.len() > had {
        out.durable_at = Some((now + lag, n.incarnation));
    }
    while let Some(c) = n.protocol.poll_committee() {
        // The vote is durable before its signature leaves.
        if let Some(v) = c.vote {
            n.vote = Some(v);
        }
        let msg = Message::Committee(Box::new(c.message));
        for peer in n.peering.connected() {
            n.peering.send_message(&peer, msg.clone());
        }
    }
    while let Some(e) = n.protocol.poll_event() {
        n.stats.events += 1;
        n.note(now, Logged::Protocol(e));
    }
    while let Some(e) = n.peering.poll_event() {
        match e {
            PeerEvent::Disconnect { peer, reason } => out.closes.push((peer, reason)),
        }
    }
    for peer in n.peering.connected() {
        let Some(&j) = keys.get(&peer) else {
            continue;
        };
        for o in n.peering.poll_outbound(&peer, usize::MAX) {
            match &o {
                Outbound::Transaction(_) => n.stats.transactions_sent += 1,
                Outbound::Message(Message::TransactionRequest(ids)) => {
                    n.stats.transaction_requests += 1;
                    n.stats.ids_requested += ids.len() as u64;
                    n.log.push((
                        now,
                        Logged::Requested {
                            peer: j,
                            ids: ids.clone(),
                        },
                    ));
                }
                Outbound::Message(Message::MilestoneRequest { from, to }) => {
                    n.stats.milestone_requests += 1;
                    n.log.push((
                        now,
                        Logged::SyncRequested {
                            peer: j,
                            from: *from,
                            to: *to,
                        },
                    ));
                }
                Outbound::Message(Message::Heartbeat(_)) => n.stats.heartbeats_sent += 1,
                Outbound::Message(_) => {}
            }
            out.frames.push((j, frame_of(&o)));
        }
    }
    out
}

/// Node `n`'s peering layer takes the messages received since its last drain, in order of
/// arrival, as the node's read loop does. A message that breaks the protocol closes its
/// connection (after the node's work; see [`NodeOutput::closes`]) and the sender's later
/// messages of this drain are dropped with it.
fn handle_received(n: &mut SimNode, now: u64, out: &mut NodeOutput) {
    if n.received.is_empty() {
        return;
    }
    let received = std::mem::take(&mut n.received);
    let mut closing: Vec<PeerKey> = Vec::new();
    for (peer, m) in received {
        if closing.contains(&peer) {
            continue;
        }
        match n.peering.handle_message(&peer, m, now) {
            Inbound::Nothing => {}
            Inbound::Disconnect(why) => {
                closing.push(peer);
                out.closes.push((peer, why));
            }
            Inbound::Transaction {
                id,
                bytes,
                solicited,
            } => {
                let syncing = n.peering.syncing_from() == Some(peer);
                n.inbox.push(InboundTx {
                    peer,
                    id,
                    bytes,
                    solicited: solicited || syncing,
                });
            }
            Inbound::SendTransactions(ids) => answer_transactions(n, &peer, ids),
            Inbound::SendMilestones { from: f, to: t } => {
                let ids: Vec<TxId> = (f..=t)
                    .map_while(|i| n.store.milestone(i).ok().flatten())
                    .map(|r| r.tx)
                    .collect();
                answer_transactions(n, &peer, ids);
            }
            Inbound::Committee(c) => {
                let local = n.clock(now);
                n.protocol.handle_committee_message(*c, local)
            }
            // Harness nodes serve no snapshot files.
            Inbound::SnapshotQuery | Inbound::SendSnapshot { .. } => {
                n.peering
                    .send_message(&peer, crate::wire::Message::SnapshotOffer(Vec::new()));
            }
        }
    }
}

/// Queues the stored transactions among `ids` for `peer` (an answer to its request).
fn answer_transactions(n: &mut SimNode, peer: &PeerKey, ids: Vec<TxId>) {
    for id in ids {
        if let Ok(Some(bytes)) = n.store.transaction(&id) {
            n.peering.send_transaction(peer, id, Arc::from(bytes));
        }
    }
}

/// The node's peer ingest batch: validation, the protocol, verdicts back to peering.
fn ingest(n: &mut SimNode, keys: &BTreeMap<PeerKey, usize>, now: u64) {
    if n.inbox.is_empty() {
        return;
    }
    let batch = std::mem::take(&mut n.inbox);
    let validator = n.protocol.validator();
    let local = n.clock(now);
    let items: Vec<(&[u8], TxId, bool)> = batch
        .iter()
        .map(|t| (t.bytes.as_slice(), t.id, t.solicited))
        .collect();
    let checked = validate_from_peers(&validator, &items, local);
    let checked = checked.into_iter().zip(&batch).map(|(v, t)| (v, t.peer));
    let verdicts = n
        .protocol
        .handle_peer_transactions(checked.collect(), local);
    for (t, v) in batch.iter().zip(verdicts) {
        match v {
            Verdict::New => n.stats.new += 1,
            Verdict::Duplicate => n.stats.duplicates += 1,
            Verdict::Invalid => n.stats.invalid += 1,
            Verdict::Refused => n.stats.refused += 1,
        }
        if matches!(v, Verdict::Invalid | Verdict::Refused) {
            if let Some(&peer) = keys.get(&t.peer) {
                n.note(
                    now,
                    Logged::Rejected {
                        peer,
                        id: t.id,
                        verdict: v,
                    },
                );
            }
        }
        n.peering.handle_verdict(&t.peer, t.id, v, now);
    }
}

/// Takes one protocol write: new transactions are gossiped at once, the write goes to the
/// store now (`lag` 0, nothing waiting) or once durable ([`Faults::durable_lag_ms`]), and
/// transactions the node signed are gossiped only then (as the node does).
fn persist(n: &mut SimNode, w: StoreWrite, now: u64, lag: u64) {
    if let StoreWrite::Transactions(txs) = &w {
        for t in txs.iter().filter(|t| !t.node_signed) {
            n.peering.gossip(t.id, Arc::from(t.bytes.as_slice()));
        }
    }
    if lag == 0 && n.pending.is_empty() {
        write_durable(n, w, now);
    } else {
        n.pending.push_back((now + lag, w));
    }
}

/// Writes `w` to the store (durable); gossips the node-signed transactions it holds.
fn write_durable(n: &mut SimNode, w: StoreWrite, now: u64) {
    if let Err(e) = write_one(&n.store, &w) {
        n.note(now, Logged::StoreFailed(e.to_string()));
        return;
    }
    if let StoreWrite::Transactions(txs) = &w {
        for t in txs.iter().filter(|t| t.node_signed) {
            n.peering.gossip(t.id, Arc::from(t.bytes.as_slice()));
        }
    }
}

/// Makes the node's waiting writes durable, in order: those due by `until`, or all.
fn make_durable(n: &mut SimNode, until: Option<u64>, now: u64) {
    while n
        .pending
        .front()
        .is_some_and(|(due, _)| until.is_none_or(|u| *due <= u))
    {
        if let Some((_, w)) = n.pending.pop_front() {
            write_durable(n, w, now);
        }
    }
}
