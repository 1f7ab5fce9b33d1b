//! The node's sans-I/O core: ingest, solidification, tip pool, milestone issuing, tracking and
//! white-flag application, and reattachment of lazy payloads.
//!
//! [`Protocol`] does no I/O and reads no clock: time comes in as `now` (ms since the Unix
//! epoch), and its effects come out as [`StoreWrite`]s and [`Event`]s for the driver to carry
//! out. Expensive stateless work stays outside: the driver validates incoming bytes with
//! [`Protocol::validator`] (rayon, batch Ed25519) and solves proof of work for the
//! transactions [`Protocol::prepare_payloads`] builds, without holding the protocol.
//!
//! ## Order of calls
//! 1. Incoming bytes: `validator().validate_batch(..)`, then
//!    [`Protocol::handle_transactions`] with the valid ones.
//! 2. Local payloads: [`Protocol::prepare_payloads`] (tips chosen, transaction built), PoW and
//!    validation by the driver, then [`Protocol::handle_transactions`] with
//!    [`Origin::Local`].
//! 3. Timer: [`Protocol::handle_tick`] issues a milestone when due (if this node holds a
//!    committee key) and reattaches lazy payloads.
//! 4. After each call: drain [`Protocol::poll_store_write`] (write in order; acknowledge a
//!    submission only after its write is flushed) and [`Protocol::poll_event`].

pub mod peering;
pub mod wire;

use peering::PeerKey;

use std::collections::{BTreeMap, VecDeque};

// hashbrown's seeded hasher: these maps are hit per transaction, where SipHash showed in
// profiles of milestone application.
use hashbrown::{HashMap, HashSet};
use std::sync::Arc;

use dag_core::codec;
use dag_core::ledger::{Ledger, PayloadOutcome};
use dag_core::store::{
    next_payload_status, ConfirmedTx, MilestoneBatch, MilestoneRecord, PayloadStatus, TxMeta,
};
use dag_core::tangle::{InsertError, InsertOutcome, Tangle, TangleConfig};
use dag_core::validate::{BatchValidator, ValidTransaction, ValidationParams};
use dag_core::whiteflag::{apply_cone, ConeOutcome};
use dag_core::{
    pow, Address, Body, Genesis, Keypair, Milestone, MilestoneIndex, Payload, PayloadId,
    SignedPayload, TangleView, Transaction, TxId, TxRef, TX_VERSION,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
pub use tip_selection::SelectorKind;
use tip_selection::{
    AnySelector, RestrictedUrts, RestrictedUrtsConfig, TipSelector, Urts, WalkConfig, WeightedWalk,
};

/// Settings of a [`Protocol`].
#[derive(Clone, Debug)]
pub struct ProtocolConfig {
    /// This node's committee key and its index in the genesis committee; with it the node
    /// issues milestones.
    pub milestone_signer: Option<(u8, Keypair)>,
    /// Milestone interval, ms.
    pub milestone_interval_ms: u64,
    /// Tip selector for local transactions.
    pub selector: SelectorKind,
    /// Dev faucet key.
    pub faucet: Option<Keypair>,
    /// A local payload still unconfirmed this many milestones after it was attached is
    /// reattached in a new transaction on fresh tips.
    pub reattach_after_milestones: u32,
    /// How many times a payload is reattached at most.
    pub max_reattachments: u32,
    /// Seed of the tip-selection RNG.
    pub seed: u64,
    /// Tangle settings.
    pub tangle: TangleConfig,
    /// Before a milestone, the issuer approves up to this many unconfirmed tips through a
    /// tree of empty "merge" transactions, so the milestone confirms everything attached
    /// so far instead of only the cones of two tips (0 disables it).
    pub max_sweep_tips: usize,
    /// Most transactions from one peer waiting for parents at once; more are refused until
    /// some become solid or expire (one peer cannot fill the solidification buffer).
    pub max_pending_per_peer: usize,
    /// A transaction still waiting for parents after this long is dropped, ms, and its
    /// sender is told through [`Protocol::poll_expired`] (the driver penalises it).
    pub pending_ttl_ms: u64,
}

impl Default for ProtocolConfig {
    fn default() -> Self {
        ProtocolConfig {
            milestone_signer: None,
            milestone_interval_ms: 1000,
            selector: SelectorKind::default(),
            faucet: None,
            reattach_after_milestones: 5,
            max_reattachments: 10,
            seed: 0x0074_616e_676c_6573,
            tangle: TangleConfig::default(),
            max_sweep_tips: 16_384,
            max_pending_per_peer: 50_000,
            pending_ttl_ms: 300_000,
        }
    }
}

/// Where a transaction came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Submitted complete through the API: parents must already be solid here.
    Api,
    /// Built by this node from a payload (see [`Protocol::prepare_payloads`]): tracked for
    /// reattachment.
    Local,
    /// Received from a peer: may wait for missing parents.
    Peer,
}

/// Why a transaction or payload was refused. Nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// Already known.
    #[error("transaction {0} is already known")]
    DuplicateTransaction(TxId),
    /// The payload was already submitted and is pending or confirmed.
    #[error("payload {0} was already submitted")]
    DuplicatePayload(PayloadId),
    /// Its sequence number was already applied: a replay.
    #[error("replay: sequence number {seq} of {issuer} is already applied (next is {next})")]
    Replay {
        /// Issuer.
        issuer: Address,
        /// The payload's seq.
        seq: u64,
        /// The ledger's next seq for the issuer.
        next: u64,
    },
    /// A parent is not known to this node (API submissions must reference solid parents).
    #[error("unknown parent {0}")]
    UnknownParent(TxId),
    /// The Tangle refused it (duplicate parents, full buffer, ...).
    #[error("{0}")]
    Tangle(InsertError),
    /// No tip could be selected.
    #[error("tip selection: {0}")]
    NoTips(String),
    /// Milestones must come from the committee through the milestone path.
    #[error("milestone {index} cannot be accepted: {why}")]
    Milestone {
        /// Index.
        index: MilestoneIndex,
        /// Why.
        why: String,
    },
    /// The node stopped confirming (ledger digest mismatch).
    #[error("node halted: {0}")]
    Halted(String),
    /// The sending peer already has [`ProtocolConfig::max_pending_per_peer`] transactions
    /// waiting for parents.
    #[error("too many transactions from this peer are waiting for parents")]
    PendingQuota,
}

impl RejectReason {
    /// Whether this is a conflict with existing state (HTTP 409) rather than invalid input.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            RejectReason::DuplicateTransaction(_)
                | RejectReason::DuplicatePayload(_)
                | RejectReason::Replay { .. }
        )
    }
}

/// A payload prepared by [`Protocol::prepare_payloads`].
#[derive(Clone, Debug)]
pub enum Prepared {
    /// Its transaction, still needing proof of work and validation.
    Ready(Transaction),
    /// It follows a payload of the same issuer in the same batch: prepare it again after
    /// that one is ingested, so it can approve it (keeping the issuer's sequence in
    /// white-flag order).
    Deferred(SignedPayload),
}

/// A transaction to persist.
#[derive(Clone, Debug)]
pub struct StoredTx {
    /// Id.
    pub id: TxId,
    /// Canonical bytes.
    pub bytes: Vec<u8>,
    /// Initial metadata.
    pub meta: TxMeta,
    /// It carries a payload this node signed (the faucet's): announce it to peers only once
    /// it is durable here, or a crash could let the node sign another payload with the same
    /// sequence number while a peer holds the first.
    pub node_signed: bool,
}

/// Something the driver must write to the store, in the order polled.
#[derive(Clone, Debug)]
pub enum StoreWrite {
    /// New transactions (one batch).
    Transactions(Vec<StoredTx>),
    /// Buffered transactions that became solid.
    MarkSolid(Vec<TxId>),
    /// Everything one milestone changed (one atomic batch).
    Milestone(MilestoneBatch),
}

/// Summary of an applied milestone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MilestoneSummary {
    /// The stored record.
    pub record: MilestoneRecord,
    /// Transactions it confirmed (its own included).
    pub confirmed: usize,
    /// Payloads applied.
    pub applied: usize,
    /// Payloads conflicting.
    pub conflicting: usize,
    /// For each confirmed transaction, ms from its local arrival to the milestone's
    /// timestamp.
    pub delays_ms: Vec<u64>,
}

/// What happened, for subscribers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A transaction became solid.
    Solid {
        /// Id.
        tx: TxId,
        /// Its signed payload, if any.
        payload: Option<PayloadId>,
    },
    /// A milestone was applied.
    Milestone(MilestoneSummary),
    /// A payload's carrying transaction was confirmed.
    Payload {
        /// Payload.
        payload: PayloadId,
        /// New status.
        status: PayloadStatus,
    },
    /// A local payload was reattached.
    Reattached {
        /// Payload.
        payload: PayloadId,
        /// New carrying transaction.
        tx: TxId,
    },
    /// Confirmation stopped.
    Halted(String),
}

/// A transaction waiting for its parents.
struct Buffered {
    tx: Transaction,
    /// Its bytes until it is stored (a peer's transaction is stored once solid); `None` for
    /// one restored from the store.
    bytes: Option<Vec<u8>>,
    payload: Option<PayloadId>,
    arrival: u64,
    /// The peer that sent it.
    from: Option<PeerKey>,
}

/// A payload this node attached and keeps alive until it is confirmed.
#[derive(Clone, Debug)]
struct OwnPayload {
    payload: SignedPayload,
    tx: TxId,
    attached_at_milestone: MilestoneIndex,
    reattachments: u32,
}

/// Errors building a [`Protocol`].
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The genesis cannot define a network.
    #[error("genesis: {0}")]
    Genesis(String),
    /// The committee key is not in the genesis committee.
    #[error("milestone key {0} is not a member of the genesis committee")]
    NotInCommittee(Address),
    /// Stored state is inconsistent with itself or the genesis.
    #[error("stored state: {0}")]
    Restore(String),
}

/// The sans-I/O node core. See the module documentation for the order of calls.
pub struct Protocol {
    genesis: Genesis,
    network_id: u64,
    config: ProtocolConfig,
    validator: Arc<BatchValidator>,
    tangle: Tangle,
    ledger: Ledger,
    selector: AnySelector,
    rng: ChaCha8Rng,
    /// Signed payloads of solid, unconfirmed transactions, for milestone application.
    unconfirmed_payloads: HashMap<TxRef, (PayloadId, SignedPayload)>,
    /// Unconfirmed payload ids (to refuse duplicate submissions) -> how many txs carry them.
    pending_payloads: HashMap<PayloadId, u32>,
    /// Per issuer, the newest unconfirmed local/known transaction carrying its payload and the
    /// payload's seq: the next payload with seq + 1 approves it, so white-flag order keeps
    /// one device's payloads in sequence.
    issuer_tail: HashMap<Address, (u64, TxRef)>,
    /// Milestones seen (solid), not yet applied.
    milestones: BTreeMap<MilestoneIndex, (TxRef, Milestone, [TxId; 2])>,
    latest_milestone: MilestoneIndex,
    last_issued_at: u64,
    own: HashMap<PayloadId, OwnPayload>,
    /// While restoring: the latest carrier of each payload not applied when the node
    /// stopped (unconfirmed, or conflicting for a sequence gap), to be kept alive again.
    restored: HashMap<PayloadId, (SignedPayload, TxId, bool)>,
    /// While restoring: payloads that one of their carriers applied or made conflicting for
    /// good.
    decided: HashSet<PayloadId>,
    /// Transactions waiting in the Tangle's solidification buffer (peer arrivals). They are
    /// neither stored nor gossiped before they are solid.
    buffered: HashMap<TxId, Buffered>,
    /// How many buffered transactions each peer sent.
    pending_by_peer: HashMap<PeerKey, usize>,
    /// Buffered transactions that expired, per sender, since the last poll.
    expired: BTreeMap<PeerKey, u64>,
    /// When the buffer was last swept for expired transactions.
    expired_at: u64,
    /// Next sequence number the faucet signs with.
    faucet_seq: u64,
    /// Faucet seqs at or above the ledger's next that a transaction in the Tangle carries.
    faucet_taken: std::collections::BTreeSet<u64>,
    /// Faucet seqs given back (refused before entering the Tangle), reused first.
    faucet_free: std::collections::BTreeSet<u64>,
    halted: Option<String>,
    writes: VecDeque<StoreWrite>,
    events: VecDeque<Event>,
    /// Parents of buffered transactions that are neither solid nor buffered (to request).
    missing: Vec<TxId>,
}

impl Protocol {
    /// A node core over `ledger` (from the genesis or restored from the store) and an empty
    /// Tangle; call [`Protocol::restore_transaction`] for stored transactions, then
    /// [`Protocol::finish_restore`].
    pub fn new(
        genesis: Genesis,
        config: ProtocolConfig,
        ledger: Ledger,
    ) -> Result<Self, ProtocolError> {
        genesis
            .validate()
            .map_err(|e| ProtocolError::Genesis(e.to_string()))?;
        let params =
            ValidationParams::new(&genesis).map_err(|e| ProtocolError::Genesis(e.to_string()))?;
        if let Some((idx, kp)) = &config.milestone_signer {
            if genesis.committee.get(usize::from(*idx)) != Some(&kp.address()) {
                return Err(ProtocolError::NotInCommittee(kp.address()));
            }
        }
        if ledger.network_id() != genesis.network_id() {
            return Err(ProtocolError::Restore(
                "stored ledger belongs to another network".into(),
            ));
        }
        let selector = match config.selector {
            SelectorKind::Urts => AnySelector::Urts(Urts::new()),
            SelectorKind::Rurts => {
                AnySelector::Restricted(RestrictedUrts::new(RestrictedUrtsConfig::default()))
            }
            SelectorKind::Walk => AnySelector::Walk(WeightedWalk::new(WalkConfig::default())),
        };
        let faucet_seq = config
            .faucet
            .as_ref()
            .map(|k| ledger.next_seq(&k.address()))
            .unwrap_or(0);
        Ok(Protocol {
            network_id: genesis.network_id(),
            validator: Arc::new(BatchValidator::new(params)),
            tangle: Tangle::new(config.tangle),
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            latest_milestone: ledger.confirmed_index(),
            ledger,
            selector,
            genesis,
            config,
            unconfirmed_payloads: HashMap::new(),
            pending_payloads: HashMap::new(),
            issuer_tail: HashMap::new(),
            milestones: BTreeMap::new(),
            last_issued_at: 0,
            own: HashMap::new(),
            restored: HashMap::new(),
            decided: HashSet::new(),
            buffered: HashMap::new(),
            pending_by_peer: HashMap::new(),
            expired: BTreeMap::new(),
            expired_at: 0,
            faucet_seq,
            faucet_taken: Default::default(),
            faucet_free: Default::default(),
            halted: None,
            writes: VecDeque::new(),
            events: VecDeque::new(),
            missing: Vec::new(),
        })
    }

    // ----- getters -----

    /// The shared stateless validator (use it outside any lock).
    pub fn validator(&self) -> Arc<BatchValidator> {
        self.validator.clone()
    }

    /// The genesis.
    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    /// Network id.
    pub fn network_id(&self) -> u64 {
        self.network_id
    }

    /// The Tangle.
    pub fn tangle(&self) -> &Tangle {
        &self.tangle
    }

    /// The ledger as of the last applied milestone.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Latest milestone index seen (applied or not).
    pub fn latest_milestone(&self) -> MilestoneIndex {
        self.latest_milestone.max(self.ledger.confirmed_index())
    }

    /// Whether this node issues milestones.
    pub fn is_milestone_issuer(&self) -> bool {
        self.config.milestone_signer.is_some()
    }

    /// Whether the dev faucet is enabled.
    pub fn has_faucet(&self) -> bool {
        self.config.faucet.is_some()
    }

    /// Set when confirmation stopped.
    pub fn halted(&self) -> Option<&str> {
        self.halted.as_deref()
    }

    /// Unconfirmed local payloads being kept alive.
    pub fn own_pending(&self) -> usize {
        self.own.len()
    }

    /// The next store write, in order.
    pub fn poll_store_write(&mut self) -> Option<StoreWrite> {
        self.writes.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Parents that transactions waiting for solidification lack (neither solid nor
    /// waiting themselves), reported once each since the last call: the driver requests
    /// them from peers.
    pub fn poll_missing(&mut self) -> Vec<TxId> {
        std::mem::take(&mut self.missing)
    }

    // ----- restore -----

    /// Re-inserts a stored transaction on start (in arrival order). Returns false if the
    /// bytes are not a transaction or it could not be attached.
    pub fn restore_transaction(&mut self, id: TxId, bytes: &[u8], meta: &TxMeta) -> bool {
        let Ok(tx) = codec::decode(bytes) else {
            return false;
        };
        if let Payload::Signed(p) = &tx.payload {
            let pid = meta.payload.unwrap_or_else(|| p.id());
            match meta.outcome {
                // Decided for good by one carrier: nothing to keep alive.
                Some(o) if o.is_final() => {
                    self.decided.insert(pid);
                }
                Some(_) => {
                    self.restored.insert(pid, (p.clone(), id, true));
                }
                None if meta.confirmed_by.is_none() => {
                    self.restored.insert(pid, (p.clone(), id, false));
                }
                None => {}
            }
            // A sequence number of the node's own key that a stored payload carries is
            // taken, whatever became of that payload: never sign another payload with it.
            let _ = self.note_faucet_seq(p);
        }
        let ms = tx.milestone().map(|m| m.index);
        match self.tangle.insert(id, tx.parents, ms, meta.arrival) {
            Ok(InsertOutcome::Solid(refs)) => {
                for (rid, r) in refs {
                    if rid == id {
                        self.after_solid(r, &tx, meta.confirmed_by.is_none(), false, meta.payload);
                    } else if let Some(b) = self.buffered.remove(&rid) {
                        self.after_solid(r, &b.tx, true, false, b.payload);
                    }
                }
                true
            }
            Ok(InsertOutcome::Pending { .. }) => {
                self.buffered.insert(
                    id,
                    Buffered {
                        tx,
                        bytes: None,
                        payload: meta.payload,
                        arrival: meta.arrival,
                        from: None,
                    },
                );
                true
            }
            Ok(InsertOutcome::Duplicate) => true,
            Err(_) => false,
        }
    }

    /// Replays confirmation marks of the milestones already applied to the stored ledger, so
    /// the Tangle knows what is confirmed. The ledger itself is not touched (it was
    /// restored). Then applies any milestone that is solid and not yet applied: drain
    /// [`Protocol::poll_store_write`] afterwards and write those batches first.
    pub fn finish_restore(&mut self, now: u64) -> Result<(), ProtocolError> {
        let confirmed = self.ledger.confirmed_index();
        for index in 1..=confirmed {
            self.milestones.remove(&index);
            let Some(ms_ref) = self.tangle.solid_milestone(index) else {
                return Err(ProtocolError::Restore(format!(
                    "milestone {index} is applied in the ledger but its transaction is missing"
                )));
            };
            let roots: Vec<TxRef> = self.tangle.parents(ms_ref).to_vec();
            let mut order = self.tangle.unconfirmed_cone(&roots);
            order.push(ms_ref);
            for r in &order {
                self.forget_unconfirmed(*r);
            }
            self.tangle
                .confirm(&order, index, ms_ref)
                .map_err(|e| ProtocolError::Restore(e.to_string()))?;
            self.selector.on_confirmed(&self.tangle, index);
        }
        self.last_issued_at = now;
        // Keep alive what was not applied when the node stopped: the set of payloads this
        // node attached is not stored, so every unapplied payload it holds is taken on
        // (reattaching a peer's payload is harmless: one copy applies, the others
        // conflict). A sequence-gap conflict is reattached at the next tick.
        // A payload whose seq was used meanwhile is taken on too: reattached, it becomes
        // `conflicting` on every node (see `reattach_lazy`).
        let decided = std::mem::take(&mut self.decided);
        for (pid, (payload, tx, gap)) in std::mem::take(&mut self.restored) {
            if decided.contains(&pid) {
                continue;
            }
            self.own.entry(pid).or_insert(OwnPayload {
                payload,
                tx,
                attached_at_milestone: if gap { 0 } else { confirmed },
                reattachments: 0,
            });
        }
        self.fill_faucet_gaps();
        // Milestones whose transactions were stored but whose batch was not (the node
        // stopped in between) are applied now: their batches wait in the write queue, and
        // the driver must write them before anything else. (Dropping them left the stored
        // ledger behind the protocol's for good: found by the crash campaign.)
        self.apply_ready_milestones();
        // Restoring announces nothing: nobody is subscribed yet.
        self.events.clear();
        // Parents still missing after a restart: request them (e.g. the node stopped
        // while solidifying).
        self.missing = self.buffered_missing();
        Ok(())
    }

    // ----- ingest -----

    /// Takes validated transactions; one verdict per input, in order. Accepted transactions
    /// are queued as a [`StoreWrite::Transactions`] batch; acknowledge them once it is
    /// flushed.
    pub fn handle_transactions(
        &mut self,
        txs: Vec<ValidTransaction>,
        origin: Origin,
        now: u64,
    ) -> Vec<Result<TxId, RejectReason>> {
        self.ingest_all(txs.into_iter().map(|vt| (vt, None)), origin, now)
    }

    /// [`Protocol::handle_transactions`] for transactions received from peers
    /// ([`Origin::Peer`]), each with its sender: a transaction whose parents are missing
    /// waits in the solidification buffer within its sender's quota
    /// ([`ProtocolConfig::max_pending_per_peer`]), and is stored and announced only once
    /// it is solid.
    pub fn handle_peer_transactions(
        &mut self,
        txs: Vec<(ValidTransaction, PeerKey)>,
        now: u64,
    ) -> Vec<Result<TxId, RejectReason>> {
        self.ingest_all(
            txs.into_iter().map(|(vt, peer)| (vt, Some(peer))),
            Origin::Peer,
            now,
        )
    }

    fn ingest_all(
        &mut self,
        txs: impl ExactSizeIterator<Item = (ValidTransaction, Option<PeerKey>)>,
        origin: Origin,
        now: u64,
    ) -> Vec<Result<TxId, RejectReason>> {
        let mut batch = Vec::new();
        let mut out = Vec::with_capacity(txs.len());
        for (vt, from) in txs {
            let r = self.ingest_one(vt, origin, from, now, &mut batch);
            out.push(r);
        }
        if !batch.is_empty() {
            self.writes.push_back(StoreWrite::Transactions(batch));
        }
        self.apply_ready_milestones();
        out
    }

    fn ingest_one(
        &mut self,
        vt: ValidTransaction,
        origin: Origin,
        from: Option<PeerKey>,
        now: u64,
        batch: &mut Vec<StoredTx>,
    ) -> Result<TxId, RejectReason> {
        let id = vt.id();
        if self.tangle.is_known(&id) {
            return Err(RejectReason::DuplicateTransaction(id));
        }
        let tx = vt.tx();
        if origin == Origin::Api {
            for p in &tx.parents {
                if !self.tangle.is_solid(p) {
                    return Err(RejectReason::UnknownParent(*p));
                }
            }
        }
        let payload_id = match &tx.payload {
            // Replays and stale milestones are refused only from clients. A peer's copy goes
            // into the Tangle all the same (white-flag marks a replayed payload conflicting,
            // and a stale milestone is never applied): refusing it would leave everything
            // that approves it unsolid forever.
            Payload::Signed(p) => {
                let next = self.ledger.next_seq(&p.issuer);
                if p.seq < next && origin != Origin::Peer {
                    return Err(RejectReason::Replay {
                        issuer: p.issuer,
                        seq: p.seq,
                        next,
                    });
                }
                let pid = p.id();
                if origin == Origin::Api && self.pending_payloads.contains_key(&pid) {
                    // A client re-sending the same payload in a new transaction while the
                    // first is pending is a duplicate; the node reattaches by itself.
                    return Err(RejectReason::DuplicatePayload(pid));
                }
                Some(pid)
            }
            Payload::Milestone(m) => {
                if m.index <= self.ledger.confirmed_index() && origin != Origin::Peer {
                    return Err(RejectReason::Milestone {
                        index: m.index,
                        why: "already applied".into(),
                    });
                }
                None
            }
            Payload::Empty => None,
        };
        if let Some(peer) = from {
            let waits = !tx.parents.iter().all(|p| self.tangle.is_solid(p));
            if waits
                && self.pending_by_peer.get(&peer).copied().unwrap_or(0)
                    >= self.config.max_pending_per_peer
            {
                return Err(RejectReason::PendingQuota);
            }
        }
        let ms = tx.milestone().map(|m| m.index);
        let outcome = self
            .tangle
            .insert(id, tx.parents, ms, now)
            .map_err(RejectReason::Tangle)?;
        let (tx, id, bytes) = vt.into_parts();
        let node_signed = match &tx.payload {
            Payload::Signed(p) => self.note_faucet_seq(p),
            _ => false,
        };
        // Stored now if solid; a waiting transaction is stored when it becomes solid.
        let bytes = if matches!(outcome, InsertOutcome::Solid(_)) {
            batch.push(StoredTx {
                id,
                bytes,
                meta: TxMeta::new(now, true, payload_id),
                node_signed,
            });
            None
        } else {
            Some(bytes)
        };
        match outcome {
            InsertOutcome::Solid(refs) => {
                let mut released = Vec::new();
                for (rid, r) in refs {
                    if rid == id {
                        self.after_solid(r, &tx, true, true, payload_id);
                        if origin == Origin::Local {
                            if let (Payload::Signed(p), Some(pid)) = (&tx.payload, payload_id) {
                                self.own.entry(pid).or_insert_with(|| OwnPayload {
                                    payload: p.clone(),
                                    tx: id,
                                    attached_at_milestone: self.ledger.confirmed_index(),
                                    reattachments: 0,
                                });
                            }
                        }
                    } else if let Some(b) = self.buffered.remove(&rid) {
                        // A buffered transaction became solid because of this one: store it
                        // now (or mark it solid, if it came from the store).
                        self.after_solid(r, &b.tx, true, true, b.payload);
                        self.release_quota(b.from);
                        match b.bytes {
                            Some(bytes) => batch.push(StoredTx {
                                id: rid,
                                bytes,
                                meta: TxMeta::new(b.arrival, true, b.payload),
                                node_signed: false,
                            }),
                            None => released.push(rid),
                        }
                    }
                }
                if !released.is_empty() {
                    self.writes.push_back(StoreWrite::MarkSolid(released));
                }
            }
            InsertOutcome::Pending { missing } => {
                self.missing.extend(missing);
                if let Some(peer) = from {
                    *self.pending_by_peer.entry(peer).or_insert(0) += 1;
                }
                self.buffered.insert(
                    id,
                    Buffered {
                        tx,
                        bytes,
                        payload: payload_id,
                        arrival: now,
                        from,
                    },
                );
            }
            InsertOutcome::Duplicate => {}
        }
        Ok(id)
    }

    fn release_quota(&mut self, from: Option<PeerKey>) {
        if let Some(peer) = from {
            if let Some(n) = self.pending_by_peer.get_mut(&peer) {
                *n -= 1;
                if *n == 0 {
                    self.pending_by_peer.remove(&peer);
                }
            }
        }
    }

    /// Drops transactions that waited for parents longer than
    /// [`ProtocolConfig::pending_ttl_ms`] (at most once a second); their senders are reported
    /// by [`Protocol::poll_expired`].
    fn expire_pending(&mut self, now: u64) {
        if now.saturating_sub(self.expired_at) < 1000 || self.buffered.is_empty() {
            return;
        }
        self.expired_at = now;
        let cutoff = now.saturating_sub(self.config.pending_ttl_ms);
        for id in self.tangle.evict_pending(cutoff) {
            if let Some(b) = self.buffered.remove(&id) {
                self.release_quota(b.from);
                if let Some(peer) = b.from {
                    *self.expired.entry(peer).or_insert(0) += 1;
                }
            }
        }
    }

    /// Peers whose transactions expired in the solidification buffer since the last call,
    /// with how many (ordered by peer): they sent transactions whose parents never came.
    pub fn poll_expired(&mut self) -> Vec<(PeerKey, u64)> {
        std::mem::take(&mut self.expired).into_iter().collect()
    }

    /// Transactions waiting for parents.
    pub fn pending_len(&self) -> usize {
        self.buffered.len()
    }

    /// Bookkeeping for a newly solid transaction.
    /// `pid` is the payload's id when the caller has it already (it is computed otherwise).
    fn after_solid(
        &mut self,
        r: TxRef,
        tx: &Transaction,
        unconfirmed: bool,
        emit: bool,
        pid: Option<PayloadId>,
    ) {
        self.selector.on_solid(&self.tangle, r);
        let mut payload_id = None;
        match &tx.payload {
            Payload::Signed(p) if unconfirmed => {
                let pid = pid.unwrap_or_else(|| p.id());
                payload_id = Some(pid);
                *self.pending_payloads.entry(pid).or_insert(0) += 1;
                self.unconfirmed_payloads.insert(r, (pid, p.clone()));
                let tail = self.issuer_tail.entry(p.issuer).or_insert((p.seq, r));
                if p.seq >= tail.0 {
                    *tail = (p.seq, r);
                }
            }
            Payload::Milestone(m) => {
                self.latest_milestone = self.latest_milestone.max(m.index);
                if m.index > self.ledger.confirmed_index() {
                    self.milestones.insert(m.index, (r, m.clone(), tx.parents));
                }
            }
            _ => {}
        }
        if emit {
            self.events.push_back(Event::Solid {
                tx: self.tangle.id(r),
                payload: payload_id,
            });
        }
    }

    fn forget_unconfirmed(&mut self, r: TxRef) -> Option<(PayloadId, SignedPayload)> {
        let (pid, p) = self.unconfirmed_payloads.remove(&r)?;
        if let Some(n) = self.pending_payloads.get_mut(&pid) {
            *n -= 1;
            if *n == 0 {
                self.pending_payloads.remove(&pid);
            }
        }
        if self.issuer_tail.get(&p.issuer).map(|t| t.1) == Some(r) {
            self.issuer_tail.remove(&p.issuer);
        }
        Some((pid, p))
    }

    /// Parents of buffered transactions that are not known at all.
    fn buffered_missing(&self) -> Vec<TxId> {
        let mut v: Vec<TxId> = self
            .buffered
            .values()
            .flat_map(|b| b.tx.parents)
            .filter(|p| !self.tangle.is_known(p))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn parent_refs(&self, parents: &[TxId; 2]) -> Vec<TxRef> {
        parents
            .iter()
            .filter_map(|p| self.tangle.lookup(p))
            .collect()
    }

    // ----- local payloads -----

    /// Builds a transaction for each payload: checks it is not a replay or duplicate, picks
    /// parents (the issuer's previous pending payload as trunk when this one follows it,
    /// so white-flag order keeps the device's sequence), stamps `now`. The returned
    /// transactions still need proof of work ([`dag_core::pow::solve`]) and validation.
    pub fn prepare_payloads(
        &mut self,
        payloads: Vec<SignedPayload>,
        now: u64,
    ) -> Vec<Result<Prepared, RejectReason>> {
        let mut in_batch: HashMap<Address, u64> = HashMap::new();
        // Tips already given to a payload of this batch: each payload should take tips of
        // its own, or a batch of B payloads would pile up B new tips while consuming far
        // fewer, and every milestone's sweep would have to merge them all.
        let mut taken = HashSet::new();
        payloads
            .into_iter()
            .map(|p| {
                if let Some(prev) = in_batch.get(&p.issuer) {
                    if p.seq > *prev {
                        in_batch.insert(p.issuer, p.seq);
                        return Ok(Prepared::Deferred(p));
                    }
                }
                in_batch.insert(p.issuer, p.seq);
                self.prepare_one(p, now, &mut taken).map(Prepared::Ready)
            })
            .collect()
    }

    fn prepare_one(
        &mut self,
        p: SignedPayload,
        now: u64,
        taken: &mut HashSet<TxRef>,
    ) -> Result<Transaction, RejectReason> {
        if let Some(h) = &self.halted {
            return Err(RejectReason::Halted(h.clone()));
        }
        let next = self.ledger.next_seq(&p.issuer);
        if p.seq < next {
            return Err(RejectReason::Replay {
                issuer: p.issuer,
                seq: p.seq,
                next,
            });
        }
        let pid = p.id();
        if self.pending_payloads.contains_key(&pid) || self.own.contains_key(&pid) {
            return Err(RejectReason::DuplicatePayload(pid));
        }
        let parents = self.parents_for(Some(&p), now, taken)?;
        Ok(self.build(parents, Payload::Signed(p), now))
    }

    /// Two tips, at least `fresh` of them not in `taken` if a few draws of the selector
    /// find them (the untaken ones come first).
    fn select_fresh(
        &mut self,
        now: u64,
        fresh: usize,
        taken: &HashSet<TxRef>,
    ) -> Result<[TxRef; 2], RejectReason> {
        const DRAWS: usize = 8;
        let mut first = None;
        let mut found: Vec<TxRef> = Vec::with_capacity(2);
        for _ in 0..DRAWS {
            // When no tip is eligible (a quiet network whose tips all expired or went lazy,
            // or the genesis root alone), approve any tips rather than stall: there is
            // nothing better to approve.
            let pair = match self.selector.select(&self.tangle, now, &mut self.rng) {
                Ok(p) => p,
                Err(_) => Urts::new()
                    .select(&self.tangle, now, &mut self.rng)
                    .map_err(|e| RejectReason::NoTips(e.to_string()))?,
            };
            first.get_or_insert(pair);
            for r in pair {
                if found.len() < 2 && !taken.contains(&r) && !found.contains(&r) {
                    found.push(r);
                }
            }
            if found.len() >= fresh {
                break;
            }
        }
        let Some(first) = first else {
            return Err(RejectReason::NoTips("no selection".into()));
        };
        Ok(match found[..] {
            [a, b] => [a, b],
            [a] => [a, if first[0] == a { first[1] } else { first[0] }],
            _ => first,
        })
    }

    fn parents_for(
        &mut self,
        p: Option<&SignedPayload>,
        now: u64,
        taken: &mut HashSet<TxRef>,
    ) -> Result<[TxId; 2], RejectReason> {
        // One issuer's payloads are chained: seq n + 1 approves seq n's transaction, and
        // then needs one tip of its own instead of two.
        let prev = p.and_then(|p| {
            self.issuer_tail
                .get(&p.issuer)
                .filter(|(seq, _)| p.seq == seq + 1)
                .map(|(_, r)| *r)
        });
        let [a, b] = self.select_fresh(now, if prev.is_some() { 1 } else { 2 }, taken)?;
        let mut parents = [self.tangle.id(a), self.tangle.id(b)];
        let mut used = [Some(a), Some(b)];
        if let Some(r) = prev {
            let prev = self.tangle.id(r);
            if parents[0] != prev {
                // Keep the freshest tip with the predecessor.
                parents = [prev, parents[0]];
                used = [None, Some(a)];
            } else {
                used = [None, Some(b)];
            }
        }
        taken.extend(used.into_iter().flatten());
        if parents[0] == parents[1] && parents[0] != TxId::GENESIS {
            // Single-tip tangle: approve the tip and its trunk.
            let r = self
                .tangle
                .lookup(&parents[0])
                .expect("selected tips are held");
            let trunk = self.tangle.parents(r)[0];
            parents[1] = self.tangle.id(trunk);
            if parents[0] == parents[1] {
                parents = [TxId::GENESIS, TxId::GENESIS];
            }
        }
        Ok(parents)
    }

    fn build(&self, parents: [TxId; 2], payload: Payload, now: u64) -> Transaction {
        Transaction {
            version: TX_VERSION,
            network_id: self.network_id,
            parents,
            timestamp: now,
            payload,
            nonce: 0,
        }
    }

    /// Dev faucet: a signed payment of `amount` to `to` from the faucet account, with the next
    /// free faucet sequence number (a seq given back by [`Protocol::release_faucet_seq`]
    /// first, so a refused payment never leaves a gap that would block every later one).
    /// Feed it to [`Protocol::prepare_payloads`].
    pub fn faucet_payload(&mut self, to: Address, amount: u64) -> Option<SignedPayload> {
        let kp = self.config.faucet.clone()?;
        let next = self.ledger.next_seq(&kp.address());
        // Seqs below the ledger's next are used; forget them.
        self.faucet_free = self.faucet_free.split_off(&next);
        self.faucet_taken = self.faucet_taken.split_off(&next);
        let seq = match self.faucet_free.pop_first() {
            Some(s) => s,
            None => {
                let s = self.faucet_seq.max(next);
                self.faucet_seq = s.saturating_add(1);
                s
            }
        };
        Some(SignedPayload::sign(
            &kp,
            self.network_id,
            seq,
            Body::Pay {
                to,
                amount,
                memo: b"faucet".to_vec(),
            },
        ))
    }

    /// Gives back a faucet sequence number whose payload was refused before it entered the
    /// Tangle; the next faucet payment takes it. A seq that a transaction in the Tangle
    /// carries (even one whose write failed: it may have been gossiped) is never given back.
    pub fn release_faucet_seq(&mut self, seq: u64) {
        if !self.faucet_taken.contains(&seq) && seq < self.faucet_seq {
            self.faucet_free.insert(seq);
        }
    }

    /// Notes a payload of the faucet's key entering the Tangle: its seq is taken for good.
    /// Returns whether it is the faucet's.
    fn note_faucet_seq(&mut self, p: &SignedPayload) -> bool {
        if self.config.faucet.as_ref().map(|k| k.address()) != Some(p.issuer) {
            return false;
        }
        self.faucet_seq = self.faucet_seq.max(p.seq.saturating_add(1));
        self.faucet_free.remove(&p.seq);
        if p.seq >= self.ledger.next_seq(&p.issuer) {
            self.faucet_taken.insert(p.seq);
        }
        true
    }

    /// After a restart: faucet seqs below the highest stored one that no stored payload
    /// carries were signed but lost before they were written; the next payments reuse them
    /// so that no gap blocks the faucet.
    fn fill_faucet_gaps(&mut self) {
        let Some(kp) = &self.config.faucet else {
            return;
        };
        let next = self.ledger.next_seq(&kp.address());
        for seq in next..self.faucet_seq {
            if !self.faucet_taken.contains(&seq) {
                self.faucet_free.insert(seq);
            }
        }
    }

    // ----- timer -----

    /// Periodic work: issues a milestone when due (committee nodes), reattaches lazy local
    /// payloads. Reattachment transactions need no separate PoW step: they are solved here
    /// (they are rare).
    pub fn handle_tick(&mut self, now: u64) {
        self.expire_pending(now);
        if self.halted.is_some() {
            return;
        }
        if self.config.milestone_signer.is_some()
            && now.saturating_sub(self.last_issued_at) >= self.config.milestone_interval_ms
        {
            self.last_issued_at = now;
            self.issue_milestone(now);
        }
        self.reattach_lazy(now);
    }

    fn issue_milestone(&mut self, now: u64) {
        let Some((signer, key)) = self.config.milestone_signer.clone() else {
            return;
        };
        let index = self.ledger.confirmed_index() + 1;
        if self.milestones.contains_key(&index) {
            // Another committee member's milestone is waiting to be applied.
            return;
        }
        let parents = match self.sweep_tips(now) {
            Some(p) => p,
            None => match self.parents_for(None, now, &mut HashSet::new()) {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let roots = self.parent_refs(&parents);
        let applied = apply_cone(
            &self.tangle,
            &mut self.ledger,
            index,
            &roots,
            payload_of(&self.unconfirmed_payloads),
        );
        let applied = match applied {
            Ok(o) => o,
            Err(e) => {
                self.halt(format!("cannot apply own milestone {index}: {e}"));
                return;
            }
        };
        let msg = dag_core::crypto::milestone_signing_message(
            self.network_id,
            &parents,
            index,
            now,
            &applied.outcome.ledger_digest,
        );
        let milestone = Milestone {
            index,
            timestamp: now,
            ledger_digest: applied.outcome.ledger_digest,
            signatures: vec![(signer, key.sign(&msg))],
        };
        let mut tx = self.build(parents, Payload::Milestone(milestone.clone()), now);
        let id = pow::solve(&mut tx, self.genesis.pow_difficulty);
        let bytes = codec::encode(&tx);
        let ms_ref = match self.tangle.insert(id, parents, Some(index), now) {
            Ok(InsertOutcome::Solid(refs)) => refs[0].1,
            other => {
                self.halt(format!(
                    "own milestone {index} could not be attached: {other:?}"
                ));
                return;
            }
        };
        self.selector.on_solid(&self.tangle, ms_ref);
        self.latest_milestone = self.latest_milestone.max(index);
        self.writes
            .push_back(StoreWrite::Transactions(vec![StoredTx {
                id,
                bytes,
                meta: TxMeta::new(now, true, None),
                node_signed: false,
            }]));
        self.events.push_back(Event::Solid {
            tx: id,
            payload: None,
        });
        self.finish_milestone(index, ms_ref, id, &milestone, applied);
    }

    /// Approves the unconfirmed tips (newest first, at most `max_sweep_tips`) through a
    /// binary tree of empty transactions and returns the two roots of that tree as the
    /// milestone's parents; `None` when there are fewer than three such tips (nothing to
    /// merge). PoW of each tree level runs in parallel on the rayon pool.
    fn sweep_tips(&mut self, now: u64) -> Option<[TxId; 2]> {
        use rayon::prelude::*;
        if self.config.max_sweep_tips < 3 {
            return None;
        }
        let mut level: Vec<TxRef> = self
            .tangle
            .tips()
            .iter()
            .copied()
            .filter(|r| self.tangle.confirmed_by(*r).is_none())
            .collect();
        if level.len() < 3 {
            return None;
        }
        level.sort_unstable_by(|a, b| b.cmp(a));
        level.truncate(self.config.max_sweep_tips);
        let difficulty = self.genesis.pow_difficulty;
        let mut stored = Vec::new();
        while level.len() > 2 {
            let mut txs: Vec<Transaction> = level
                .chunks(2)
                .filter(|pair| pair.len() == 2)
                .map(|pair| {
                    self.build(
                        [self.tangle.id(pair[0]), self.tangle.id(pair[1])],
                        Payload::Empty,
                        now,
                    )
                })
                .collect();
            let carry = (level.len() % 2 == 1).then(|| level[level.len() - 1]);
            let ids: Vec<TxId> = txs
                .par_iter_mut()
                .map(|tx| pow::solve(tx, difficulty))
                .collect();
            let mut next = Vec::with_capacity(txs.len() + 1);
            for (tx, id) in txs.into_iter().zip(ids) {
                match self.tangle.insert(id, tx.parents, None, now) {
                    Ok(InsertOutcome::Solid(refs)) => {
                        let r = refs[0].1;
                        self.selector.on_solid(&self.tangle, r);
                        next.push(r);
                        stored.push(StoredTx {
                            id,
                            bytes: codec::encode(&tx),
                            meta: TxMeta::new(now, true, None),
                            node_signed: false,
                        });
                    }
                    _ => return None,
                }
            }
            next.extend(carry);
            level = next;
        }
        let parents = [self.tangle.id(level[0]), self.tangle.id(level[1])];
        if !stored.is_empty() {
            self.writes.push_back(StoreWrite::Transactions(stored));
        }
        Some(parents)
    }

    /// Applies every solid milestone that is next in line.
    fn apply_ready_milestones(&mut self) {
        while self.halted.is_none() {
            let index = self.ledger.confirmed_index() + 1;
            let Some((ms_ref, milestone, parents)) = self.milestones.remove(&index) else {
                break;
            };
            let roots = self.parent_refs(&parents);
            // Apply to a copy: on a digest mismatch the ledger must stay as it was.
            let mut next = self.ledger.clone();
            let applied = apply_cone(
                &self.tangle,
                &mut next,
                index,
                &roots,
                payload_of(&self.unconfirmed_payloads),
            );
            let applied = match applied {
                Ok(o) => o,
                Err(e) => {
                    self.halt(format!("milestone {index}: {e}"));
                    break;
                }
            };
            if applied.outcome.ledger_digest != milestone.ledger_digest {
                self.halt(format!(
                    "ledger digest mismatch at milestone {index}: computed {}, milestone says {}",
                    applied.outcome.ledger_digest, milestone.ledger_digest
                ));
                break;
            }
            self.ledger = next;
            let id = self.tangle.id(ms_ref);
            self.finish_milestone(index, ms_ref, id, &milestone, applied);
        }
    }

    /// Marks the cone confirmed, queues the atomic store batch and events.
    fn finish_milestone(
        &mut self,
        index: MilestoneIndex,
        ms_ref: TxRef,
        ms_id: TxId,
        milestone: &Milestone,
        applied: ConeOutcome,
    ) {
        let ConeOutcome {
            mut cone,
            carriers,
            outcome,
        } = applied;
        // The payload ids of the carriers (before they are forgotten below).
        let payloads: Vec<(TxId, PayloadId)> = carriers
            .iter()
            .filter_map(|r| {
                let (pid, _) = self.unconfirmed_payloads.get(r)?;
                Some((self.tangle.id(*r), *pid))
            })
            .collect();
        debug_assert_eq!(payloads.len(), carriers.len());
        cone.push(ms_ref);
        if let Err(e) = self.tangle.confirm(&cone, index, ms_ref) {
            self.halt(format!("confirming milestone {index}: {e}"));
            return;
        }
        self.selector.on_confirmed(&self.tangle, index);
        // `payloads` and the outcomes both follow the cone's order (the ledger applied the
        // cone's payloads in it), so one cursor pairs them with the cone's transactions.
        debug_assert!(payloads
            .iter()
            .zip(&outcome.outcomes)
            .all(|((a, _), (b, _))| a == b));
        let mut carried = payloads
            .iter()
            .zip(&outcome.outcomes)
            .map(|((tx, pid), (_, o))| (*tx, *pid, *o))
            .peekable();
        let mut confirmed = Vec::with_capacity(cone.len());
        let delays_ms = cone
            .iter()
            .map(|r| milestone.timestamp.saturating_sub(self.tangle.arrival(*r)))
            .collect();
        let (mut applied, mut conflicting) = (0, 0);
        for r in &cone {
            let tx = self.tangle.id(*r);
            let payload = carried
                .next_if(|(t, _, _)| *t == tx)
                .map(|(_, pid, o)| (pid, o));
            if let Some((pid, o)) = payload {
                if o.is_applied() {
                    applied += 1;
                } else {
                    conflicting += 1;
                }
                // What this carrier's outcome makes of the payload (the store folds the
                // outcomes of all carriers the same way).
                let status = next_payload_status(PayloadStatus::Pending, index, tx, o);
                self.events.push_back(Event::Payload {
                    payload: pid,
                    status,
                });
                let latest_carrier = self.own.get(&pid).is_some_and(|own| own.tx == tx);
                match o {
                    PayloadOutcome::Conflicting(reason) if !reason.is_final() => {
                        // An earlier payload of the issuer was ordered after it (or is
                        // still missing): reattach the latest carrier at the next tick so
                        // it can apply once the gap is filled.
                        if latest_carrier {
                            if let Some(own) = self.own.get_mut(&pid) {
                                own.attached_at_milestone = 0;
                            }
                        }
                    }
                    // Applied, or conflicting for good: no copy can apply any more.
                    _ => {
                        self.own.remove(&pid);
                    }
                }
            }
            self.forget_unconfirmed(*r);
            confirmed.push(ConfirmedTx { tx, payload });
        }
        let record = MilestoneRecord {
            index,
            tx: ms_id,
            timestamp: milestone.timestamp,
            ledger_digest: outcome.ledger_digest,
        };
        let summary = MilestoneSummary {
            record,
            confirmed: confirmed.len(),
            applied,
            conflicting,
            delays_ms,
        };
        self.writes.push_back(StoreWrite::Milestone(MilestoneBatch {
            record,
            confirmed,
            diff: outcome.diff,
        }));
        self.events.push_back(Event::Milestone(summary));
    }

    fn halt(&mut self, reason: String) {
        tracing::error!(%reason, "confirmation halted");
        self.halted = Some(reason.clone());
        self.events.push_back(Event::Halted(reason));
    }

    /// Reattaches local payloads whose transaction stayed unconfirmed too long.
    fn reattach_lazy(&mut self, now: u64) {
        let confirmed = self.ledger.confirmed_index();
        let mut due: Vec<(Address, u64, PayloadId)> = self
            .own
            .iter()
            .filter(|(_, o)| {
                confirmed.saturating_sub(o.attached_at_milestone)
                    >= self.config.reattach_after_milestones
                    && o.reattachments < self.config.max_reattachments
            })
            .map(|(pid, o)| (o.payload.issuer, o.payload.seq, *pid))
            .collect();
        // In sequence order per issuer, so each reattachment approves its predecessor's
        // (the issuer chain): in map order, seq n + 1 could go out before seq n, land
        // ahead of it in white-flag order, conflict for the gap again and use up its
        // reattachments.
        due.sort_unstable();
        for (_, _, pid) in due {
            let Some(own) = self.own.get(&pid).cloned() else {
                continue;
            };
            // A payload whose seq another payload used (the losing side of a double spend)
            // is reattached too: its carrier may be unknown to the milestone issuer, and only
            // a confirmation makes it `conflicting` (final) on every node.
            let Ok(parents) = self.parents_for(Some(&own.payload), now, &mut HashSet::new()) else {
                continue;
            };
            let mut tx = self.build(parents, Payload::Signed(own.payload.clone()), now);
            pow::solve(&mut tx, self.genesis.pow_difficulty);
            let bytes = codec::encode(&tx);
            let Ok(vt) = self.validator.validate_one(&bytes, now) else {
                continue;
            };
            let mut batch = Vec::new();
            match self.ingest_one(vt, Origin::Peer, None, now, &mut batch) {
                Ok(id) => {
                    if let Some(o) = self.own.get_mut(&pid) {
                        o.tx = id;
                        o.attached_at_milestone = confirmed;
                        o.reattachments += 1;
                    }
                    self.events.push_back(Event::Reattached {
                        payload: pid,
                        tx: id,
                    });
                }
                Err(e) => tracing::warn!(payload = %pid, error = %e, "reattachment failed"),
            }
            if !batch.is_empty() {
                self.writes.push_back(StoreWrite::Transactions(batch));
            }
        }
    }
}

/// The payload lookup [`apply_cone`] needs: the signed payload of an unconfirmed
/// transaction, borrowed in place (milestone application copies no payload).
fn payload_of<'a>(
    unconfirmed: &'a HashMap<TxRef, (PayloadId, SignedPayload)>,
) -> impl FnMut(TxRef, &TxId) -> Option<&'a SignedPayload> {
    move |r, _| unconfirmed.get(&r).map(|(_, p)| p)
}

#[cfg(test)]
mod tests;
