//! [`Protocol`]: the node's state machine. Its `impl` is spread over the submodules by
//! concern: [`restore`] (start from the store), [`ingest`] (transactions in, the
//! solidification buffer), [`local`] (payloads this node attaches, the dev faucet),
//! [`milestone`] (the timer, issuing, applying and confirming milestones), [`reattach`]
//! (keeping lazy local payloads alive) and [`work`] (the stateless work handed to the
//! driver).

mod capture;
pub(crate) mod committee;
pub(crate) mod ingest;
mod local;
mod milestone;
mod reattach;
pub(crate) mod restore;
mod rotation;
pub mod work;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

// hashbrown's seeded hasher: these maps are hit per transaction, where SipHash showed in
// profiles of milestone application. No output of the core depends on their iteration
// order: where one is iterated to produce output, the result is sorted first.
use hashbrown::{HashMap, HashSet};

use dag_core::ledger::Ledger;
use dag_core::tangle::Tangle;
use dag_core::validate::{BatchValidator, ParamsError, ValidationParams};
use dag_core::{
    Address, Genesis, Milestone, MilestoneIndex, PayloadId, SignedPayload, Transaction, TxId, TxRef,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tip_selection::{AnySelector, RestrictedUrtsConfig, WalkConfig};

use crate::peering::PeerKey;
use crate::types::{Event, ProtocolConfig, ProtocolError, StoreWrite};
use work::Work;

/// A transaction waiting for its parents.
pub(super) struct Buffered {
    pub(super) tx: Transaction,
    /// Its bytes until it is stored (a peer's transaction is stored once solid); `None` for
    /// one restored from the store.
    pub(super) bytes: Option<Vec<u8>>,
    pub(super) payload: Option<PayloadId>,
    pub(super) arrival: u64,
    /// The peer that sent it.
    pub(super) from: Option<PeerKey>,
}

/// A payload this node attached and keeps alive until it is confirmed.
#[derive(Clone, Debug)]
pub(super) struct OwnPayload {
    pub(super) payload: SignedPayload,
    pub(super) tx: TxId,
    pub(super) attached_at_milestone: MilestoneIndex,
    /// Reattachments because it stayed unconfirmed ([`ProtocolConfig::max_reattachments`]
    /// at most).
    pub(super) reattachments: u32,
    /// Its latest carrier was confirmed conflicting for a sequence gap: the next
    /// reattachment is for the gap, and does not count against the budget above (the gap
    /// is not this payload's fault, and it applies once the gap is filled, however late).
    pub(super) gap: bool,
    /// Reattachments for a gap so far: the first ones go at the next tick, later ones every
    /// [`ProtocolConfig::reattach_after_milestones`].
    pub(super) gap_reattachments: u32,
}

/// The sans-I/O node core. See the crate documentation for the order of calls.
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
    /// Work for the driver started by the core itself (milestone issuing, reattachment).
    work: VecDeque<Work>,
    /// A milestone is being issued (its work is out with the driver).
    issuing: bool,
    /// Reattachments are out with the driver.
    reattaching: bool,
    /// Payloads whose reattachment failed since the last tick (not retried before the next).
    reattach_failed: HashSet<PayloadId>,
    /// The cones of the milestones up to this index are no longer held (0: none pruned).
    pruned_index: MilestoneIndex,
    /// The last applied milestone and its transaction, when the Tangle no longer holds it
    /// (a node started from a snapshot).
    last_milestone: Option<(MilestoneIndex, TxId)>,
    /// A tighter retention the driver set (a disk-size target): the core keeps the stricter
    /// of this and [`ProtocolConfig::keep_milestones`] (see [`Protocol::set_retention_limit`]).
    retention_limit: Option<u32>,
    /// This node's committee state, when it is a member of a committee of several at the
    /// index being decided (`committee.rs`); set by `rotation.rs` from the committee in
    /// office there.
    committee: Option<committee::Committee>,
    /// This node's signer index when it is the committee of one at the index being decided
    /// (it issues alone, `milestone.rs`).
    sole_signer: Option<u8>,
    /// The committee update this node's operator approved (`rotation.rs`).
    approved_update: Option<dag_core::CommitteeUpdate>,
    /// Transactions carrying milestones from 2 below the confirmed one on, with the digest
    /// of what their signatures sign: another copy of an applied milestone is accepted as
    /// a next milestone's previous one, and every copy held is confirmed with the milestone
    /// (`committee.rs`).
    milestone_copies: BTreeMap<MilestoneIndex, BTreeMap<TxId, dag_core::Digest>>,
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
        // The committees of every index from the genesis and the rotations the ledger
        // applied, each checked against the committee before it.
        let params = ValidationParams::with_rotations(&genesis, ledger.rotations()).map_err(
            |e| match e {
                ParamsError::Rotation(e) => {
                    ProtocolError::Restore(format!("stored committee rotations: {e}"))
                }
                e => ProtocolError::Genesis(e.to_string()),
            },
        )?;
        if let Some((idx, kp)) = &config.milestone_signer {
            // A key of the genesis committee must be named by its index there; a key in no
            // known committee may be a member-to-be (a rotation may add it later).
            let at = genesis.committee.iter().position(|a| *a == kp.address());
            if at.is_some_and(|at| at != usize::from(*idx)) {
                return Err(ProtocolError::NotInCommittee(kp.address()));
            }
        }
        if ledger.network_id() != genesis.network_id() {
            return Err(ProtocolError::Restore(
                "stored ledger belongs to another network".into(),
            ));
        }
        let selector = AnySelector::new(
            config.selector,
            RestrictedUrtsConfig::default(),
            WalkConfig::default(),
        );
        let faucet_seq = config
            .faucet
            .as_ref()
            .map(|k| ledger.next_seq(&k.address()))
            .unwrap_or(0);
        let mut p = Protocol {
            network_id: genesis.network_id(),
            validator: Arc::new(if config.verify_payload_signatures {
                BatchValidator::new(params)
            } else {
                BatchValidator::skipping_payload_signatures(params)
            }),
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
            work: VecDeque::new(),
            issuing: false,
            reattaching: false,
            reattach_failed: HashSet::new(),
            pruned_index: 0,
            last_milestone: None,
            retention_limit: None,
            committee: None,
            sole_signer: None,
            approved_update: None,
            milestone_copies: BTreeMap::new(),
        };
        p.refresh_role();
        Ok(p)
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

    /// The last applied milestone and its transaction (the transaction is `None` for the
    /// genesis, index 0, or when the core no longer holds it).
    pub fn applied_milestone(&self) -> (MilestoneIndex, Option<TxId>) {
        let index = self.ledger.confirmed_index();
        let tx = if index == 0 {
            None
        } else {
            self.milestone_tx(index)
        };
        (index, tx)
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

    /// The oldest milestone whose cone the core still holds (1 when nothing was pruned).
    pub fn oldest_milestone(&self) -> MilestoneIndex {
        self.pruned_index + 1
    }

    /// The newest milestone part of whose cone was pruned (0: none): the pruning point
    /// peers are told about (they can sync from the milestone after it).
    pub fn pruned_milestone(&self) -> MilestoneIndex {
        self.pruned_index
    }

    /// Retention the driver asks for on top of [`ProtocolConfig::keep_milestones`] (the
    /// node's disk-size target): keep the cones of at most `limit` milestones (at least 2);
    /// `None` lifts it. The stricter of the two applies, with the same cut rules (nothing
    /// an unconfirmed transaction needs is dropped). Prunes at once when it is tighter than
    /// what is held: drain [`Protocol::poll_store_write`] afterwards.
    pub fn set_retention_limit(&mut self, limit: Option<u32>) {
        self.retention_limit = limit.map(|n| n.max(2));
        self.prune_history();
    }

    /// The configured retention, [`ProtocolConfig::keep_milestones`] (`None`: archive).
    pub fn keep_milestones(&self) -> Option<u32> {
        self.config.keep_milestones
    }

    /// The limit set by [`Protocol::set_retention_limit`].
    pub fn retention_limit(&self) -> Option<u32> {
        self.retention_limit
    }

    /// How many milestones' cones the core keeps: the stricter of
    /// [`ProtocolConfig::keep_milestones`] and [`Protocol::retention_limit`], at least 2
    /// (`None`: everything, an archive).
    pub fn effective_retention(&self) -> Option<u32> {
        let keep = match (self.keep_milestones(), self.retention_limit) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        keep.map(|n| n.max(2))
    }

    /// Milestones whose cones the core holds now: from the oldest kept one to the last
    /// applied one.
    pub fn held_milestones(&self) -> u32 {
        self.ledger
            .confirmed_index()
            .saturating_sub(self.pruned_index)
    }

    /// Entries of the core's in-memory structures, by name (monitoring: what grows).
    pub fn internal_sizes(&self) -> Vec<(&'static str, usize)> {
        vec![
            ("core_tangle", dag_core::TangleView::len(&self.tangle)),
            ("core_tangle_unconfirmed", self.tangle.unconfirmed_len()),
            ("core_tangle_pending", self.tangle.pending_len()),
            ("core_state_tree", self.ledger.state_tree().len()),
            ("core_unconfirmed_payloads", self.unconfirmed_payloads.len()),
            ("core_pending_payloads", self.pending_payloads.len()),
            ("core_issuer_tails", self.issuer_tail.len()),
            ("core_milestones_waiting", self.milestones.len()),
            ("core_own_payloads", self.own.len()),
            ("core_buffered", self.buffered.len()),
            ("core_faucet_taken", self.faucet_taken.len()),
            ("core_writes_queued", self.writes.len()),
            ("core_events_queued", self.events.len()),
        ]
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
}

/// The payload lookup [`apply_cone`] needs: the signed payload of an unconfirmed
/// transaction, borrowed in place (milestone application copies no payload).
pub(super) fn payload_of<'a>(
    unconfirmed: &'a HashMap<TxRef, (PayloadId, SignedPayload)>,
) -> impl FnMut(TxRef, &TxId) -> Option<&'a SignedPayload> {
    move |r, _| unconfirmed.get(&r).map(|(_, p)| p)
}
