//! The core's inputs and outputs: settings, verdicts, store writes and events.

use dag_core::store::{
    MilestoneBatch, MilestoneRecord, PayloadStatus, PruneBatch, Store, StoreError, TxEntry, TxMeta,
};
use dag_core::tangle::{InsertError, TangleConfig};
use dag_core::validate::ValidationError;
use dag_core::{Address, Keypair, MilestoneIndex, PayloadId, TxId};
pub use tip_selection::SelectorKind;

#[allow(unused_imports)] // doc links
use crate::Protocol;

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
    /// Retention: keep the cones of the last this many milestones (at least 2) in memory and
    /// drop older history from the Tangle after each milestone, telling the store
    /// ([`StoreWrite::Pruned`]); `None`: keep everything, an archive node. Never dropped:
    /// unconfirmed transactions and what they approve.
    pub keep_milestones: Option<u32>,
    /// A member of a committee of several waits this long in each round for a milestone
    /// before the next member proposes, ms (0: twice the milestone interval, at least
    /// 200 ms).
    pub proposer_timeout_ms: u64,
    /// Simulations at scale only (`tangle-sim run --mode node --cheap-crypto`); never false
    /// on a node: when false, the validator skips the Ed25519 verification of payload
    /// signatures ([`dag_core::validate::BatchValidator::skipping_payload_signatures`]),
    /// every other check stays.
    pub verify_payload_signatures: bool,
}

impl ProtocolConfig {
    /// [`ProtocolConfig::proposer_timeout_ms`], or its default.
    pub fn proposer_timeout(&self) -> u64 {
        if self.proposer_timeout_ms > 0 {
            self.proposer_timeout_ms
        } else {
            self.milestone_interval_ms.saturating_mul(2).max(200)
        }
    }
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
            keep_milestones: None,
            proposer_timeout_ms: 0,
            verify_payload_signatures: true,
        }
    }
}

/// Where a transaction came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Submitted complete through the API: parents must already be solid here.
    Api,
    /// Built by this node from a payload (see [`Protocol::submit_payloads`]): tracked for
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
    /// The core dropped old history from memory ([`ProtocolConfig::keep_milestones`]): the
    /// store forgets the same transactions. Write it after the milestone batches polled
    /// before it (it drops what they confirmed).
    Pruned(PruneBatch),
}

impl StoreWrite {
    /// Carries this write out on `store` (no flush); returns how many transactions were new.
    /// Drivers write in the order the core polled the writes.
    pub fn apply_to(&self, store: &dyn Store) -> Result<usize, StoreError> {
        match self {
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
            StoreWrite::Pruned(batch) => store.prune(batch).map(|()| 0),
        }
    }
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
    /// The committee members (indices in the genesis committee) whose signatures the
    /// milestone carries, ascending.
    pub signers: Vec<u8>,
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
        /// The two transactions it approves.
        parents: [TxId; 2],
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

/// Why a local payload was not attached (see [`Protocol::submit_payloads`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Its transaction failed validation (e.g. a bad payload signature).
    #[error("{0}")]
    Invalid(ValidationError),
    /// The core refused it (replay, duplicate, halted, ...).
    #[error("{0}")]
    Rejected(RejectReason),
}

/// A local payload attached by [`Protocol::submit_payloads`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The payload.
    pub payload: PayloadId,
    /// The transaction carrying it.
    pub tx: TxId,
}
