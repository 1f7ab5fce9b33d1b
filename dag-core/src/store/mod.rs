//! Storage behind a trait: [`Store`], with the in-memory [`MemStore`] here and a sled backend
//! in the node (raft-rs style: the core defines what it needs, backends implement it).
//!
//! A store holds
//! - **transactions**: their canonical bytes and [`TxMeta`] (arrival, solidity, payload,
//!   confirming milestone, outcome);
//! - **the payload index**: [`PayloadId`] -> the transactions carrying that signed payload and
//!   its [`PayloadStatus`], because the same payload may be reattached in several
//!   transactions;
//! - **milestones**: index -> [`MilestoneRecord`];
//! - **the ledger**: accounts, channels, the confirmed index and digest.
//!
//! Everything one milestone changes goes in one atomic [`MilestoneBatch`]
//! ([`Store::apply_milestone`]): a reader sees all of it or none of it, and so does a node
//! restarting after a crash. Every method takes `&self`, so one store can be shared between
//! tasks (`Arc<dyn Store>`).
//!
//! # Errors
//! Every method returns [`StoreError`]; what each variant means for the caller is documented
//! there. `Ok(None)` always means "not stored", never a failure.
//!
//! # Conformance
//! With the `test-utils` feature, [`conformance`] is a suite of checks any backend must pass:
//! `dag_core::store::conformance::run_all(|| MyStore::new())`.

use serde::{Deserialize, Serialize};

use crate::ids::{Address, ChannelId, Digest, PayloadId, TxId};
use crate::ledger::{Account, Channel, ConflictReason, LedgerDiff, LedgerState, PayloadOutcome};
use crate::types::MilestoneIndex;

mod mem;

#[cfg(feature = "test-utils")]
pub mod conformance;
#[cfg(feature = "test-utils")]
mod faulty;
#[cfg(feature = "test-utils")]
pub use faulty::FaultyStore;

pub use mem::MemStore;

/// What a store knows about a transaction besides its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxMeta {
    /// Local arrival time, ms since the Unix epoch.
    pub arrival: u64,
    /// Whether its whole past cone is known.
    pub solid: bool,
    /// The id of the signed payload it carries, if any.
    pub payload: Option<PayloadId>,
    /// Index of the milestone that confirmed it.
    pub confirmed_by: Option<MilestoneIndex>,
    /// For a confirmed transaction carrying a signed payload: what the ledger did with it.
    pub outcome: Option<PayloadOutcome>,
}

impl TxMeta {
    /// Metadata of a newly arrived, unconfirmed transaction.
    pub fn new(arrival: u64, solid: bool, payload: Option<PayloadId>) -> Self {
        TxMeta {
            arrival,
            solid,
            payload,
            confirmed_by: None,
            outcome: None,
        }
    }
}

/// A transaction to store: its id, canonical bytes and initial metadata.
#[derive(Clone, Copy, Debug)]
pub struct TxEntry<'a> {
    /// The id (BLAKE2b-256 as computed by [`crate::codec`]); the store does not recompute it.
    pub id: TxId,
    /// Canonical encoding.
    pub bytes: &'a [u8],
    /// Initial metadata (normally unconfirmed).
    pub meta: TxMeta,
}

/// Where a signed payload stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayloadStatus {
    /// Seen in at least one transaction, none of them confirmed yet.
    Pending,
    /// Applied to the ledger. Final: later conflicting reattachments do not change it.
    Confirmed {
        /// The milestone.
        milestone: MilestoneIndex,
        /// The transaction whose confirmation applied it.
        tx: TxId,
    },
    /// A confirmed copy could not apply yet because an earlier payload of the issuer was
    /// missing ([`ConflictReason::SeqGap`]). Not final: a reattachment applies once the gap
    /// is filled, and then the status becomes `Confirmed`.
    Reattaching {
        /// The milestone that confirmed the copy.
        milestone: MilestoneIndex,
        /// The confirmed transaction that carried it.
        tx: TxId,
        /// Why it could not apply (always [`ConflictReason::SeqGap`] today).
        reason: ConflictReason,
    },
    /// A confirmed copy conflicted for good ([`ConflictReason::is_final`]): no copy can
    /// ever apply. Final.
    Conflicting {
        /// The milestone.
        milestone: MilestoneIndex,
        /// The confirmed transaction that carried it.
        tx: TxId,
        /// Why.
        reason: ConflictReason,
    },
}

/// A signed payload in the payload index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadRecord {
    /// Transactions carrying it, in the order they were stored.
    pub txs: Vec<TxId>,
    /// Its status.
    pub status: PayloadStatus,
}

/// A stored milestone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MilestoneRecord {
    /// Index.
    pub index: MilestoneIndex,
    /// The transaction carrying it.
    pub tx: TxId,
    /// The milestone's timestamp, ms since the Unix epoch.
    pub timestamp: u64,
    /// The ledger digest after applying it (checked equal to the milestone's claim).
    pub ledger_digest: Digest,
}

/// One transaction confirmed by a milestone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfirmedTx {
    /// The transaction.
    pub tx: TxId,
    /// The signed payload it carries and what the ledger did with it; `None` for empty and
    /// milestone transactions.
    pub payload: Option<(PayloadId, PayloadOutcome)>,
}

/// Everything one milestone changes, written atomically by [`Store::apply_milestone`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MilestoneBatch {
    /// The milestone.
    pub record: MilestoneRecord,
    /// Every transaction of its cone that was not confirmed before, in white-flag order.
    pub confirmed: Vec<ConfirmedTx>,
    /// New ledger values ([`crate::MilestoneOutcome::diff`]).
    pub diff: LedgerDiff,
}

/// A milestone's confirmed transactions in white-flag order, each with what the ledger did
/// with its payload ([`Store::confirmations`]).
pub type Confirmations = Vec<(TxId, Option<PayloadOutcome>)>;

/// A store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend failed (I/O error, full disk, closed database). For a batch
    /// (`put_transactions`, `apply_milestone`, `init_ledger`) nothing or everything was
    /// written; the caller may retry, and must not acknowledge the data as stored. A node
    /// should treat repeated failures as fatal.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// Stored bytes could not be decoded: the database is damaged or was written by an
    /// incompatible version. Retrying does not help; the caller should stop and resync from
    /// peers or a snapshot.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// `apply_milestone` before `init_ledger`: there is no ledger to apply to. Nothing was
    /// written.
    #[error("the ledger has not been initialised")]
    NotInitialised,
    /// `init_ledger` on a store that already holds a ledger. Nothing was written; load it
    /// with `load_ledger` instead.
    #[error("the ledger is already initialised")]
    AlreadyInitialised,
    /// `apply_milestone` with an index other than the confirmed index + 1 (a milestone
    /// repeated or skipped, e.g. a retry of a batch that did succeed). Nothing was written.
    #[error("milestone {got} cannot be stored: expected {expected}")]
    NonConsecutiveMilestone {
        /// The index that must come next.
        expected: MilestoneIndex,
        /// The index given.
        got: MilestoneIndex,
    },
    /// `apply_milestone` names a transaction the store does not hold: store transactions
    /// before confirming them. Nothing was written.
    #[error("transaction {0} is not stored")]
    UnknownTransaction(TxId),
}

/// What one prune removes (see [`Store::prune`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneBatch {
    /// The newest milestone whose transaction was pruned: the records of the milestones up
    /// to it go (their [`Store::milestone`] answers `None`, [`Store::pruned`] reports it).
    pub milestone: MilestoneIndex,
    /// The transactions the node dropped from its Tangle: the store forgets them (bytes,
    /// metadata, their place in payload records). Ids not stored are ignored.
    pub txs: Vec<TxId>,
    /// The solid entry points after this prune: dropped transactions that kept ones still
    /// approve, each with the milestone that confirmed it. Replaces the stored set; a
    /// restart rebuilds the Tangle on them.
    pub entry_points: Vec<(TxId, MilestoneIndex)>,
}

/// The stored result of the last prune (see [`Store::pruned`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneState {
    /// [`PruneBatch::milestone`] of the last prune.
    pub milestone: MilestoneIndex,
    /// [`PruneBatch::entry_points`] of the last prune.
    pub entry_points: Vec<(TxId, MilestoneIndex)>,
}

/// Result alias for store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Persistent state of a node: transactions, payloads, milestones and the ledger.
///
/// Implementations must be safe to share (`Send + Sync`, `&self` methods), and each batch
/// method must be atomic: concurrent readers and a restart after a crash observe all of it
/// or none of it. Writes become durable at [`Store::flush`] at the latest.
pub trait Store: Send + Sync {
    /// Stores transactions in one batch (group commit). A transaction already stored is
    /// left as it is (bytes are immutable by id, and its metadata is not reset), so
    /// re-putting is harmless. A new transaction carrying a payload is appended to that
    /// payload's record, which starts [`PayloadStatus::Pending`]. Returns how many were new.
    fn put_transactions(&self, txs: &[TxEntry<'_>]) -> Result<usize>;

    /// The canonical bytes of a transaction.
    fn transaction(&self, id: &TxId) -> Result<Option<Vec<u8>>>;

    /// The metadata of a transaction.
    fn metadata(&self, id: &TxId) -> Result<Option<TxMeta>>;

    /// Marks transactions solid; ids not stored are ignored. Returns how many changed.
    fn mark_solid(&self, ids: &[TxId]) -> Result<usize>;

    /// Number of stored transactions.
    fn transaction_count(&self) -> Result<usize>;

    /// Calls `f` for every stored transaction, in the order they were first stored (a
    /// transaction stored again while held keeps its place; one pruned and stored again
    /// takes a new one), so a node reloading its Tangle on start sees parents before
    /// children as it did live, without sorting. `f` must not call back into the store.
    fn for_each_transaction(&self, f: &mut dyn FnMut(&TxId, &[u8], &TxMeta)) -> Result<()>;

    /// A signed payload's record.
    fn payload(&self, id: &PayloadId) -> Result<Option<PayloadRecord>>;

    /// A stored milestone.
    fn milestone(&self, index: MilestoneIndex) -> Result<Option<MilestoneRecord>>;

    /// Index of the last applied milestone: 0 at genesis, `None` before `init_ledger`.
    fn confirmed_index(&self) -> Result<Option<MilestoneIndex>>;

    /// The transactions milestone `index` confirmed, in white-flag order (its own
    /// transaction last), with what the ledger did with each one's payload: what proofs of
    /// confirmation are built from. `None` if the milestone is unknown or pruned.
    fn confirmations(&self, index: MilestoneIndex) -> Result<Option<Confirmations>>;

    /// A ledger account.
    fn account(&self, address: &Address) -> Result<Option<Account>>;

    /// Entries of the backend's in-memory structures, by name, for monitoring (a backend
    /// that keeps nothing in memory reports nothing).
    fn internal_sizes(&self) -> Vec<(&'static str, usize)> {
        Vec::new()
    }

    /// A channel.
    fn channel(&self, id: &ChannelId) -> Result<Option<Channel>>;

    /// Writes the initial ledger (genesis or snapshot) in one batch.
    /// Fails with [`StoreError::AlreadyInitialised`] if one is stored.
    fn init_ledger(&self, state: &LedgerState) -> Result<()>;

    /// The whole ledger state, sorted by key, for [`crate::Ledger::from_parts`];
    /// `None` before `init_ledger`.
    fn load_ledger(&self) -> Result<Option<LedgerState>>;

    /// Writes everything one milestone changes, atomically: the milestone record, the
    /// confirmation metadata (`confirmed_by`, `outcome`) of every transaction in
    /// `batch.confirmed`, the statuses of their payloads, the ledger diff, and the new
    /// confirmed index and digest (`batch.record.ledger_digest`).
    ///
    /// Payload statuses follow one rule: an applied outcome sets
    /// [`PayloadStatus::Confirmed`]; a conflicting outcome sets
    /// [`PayloadStatus::Conflicting`] unless the payload is already confirmed.
    fn apply_milestone(&self, batch: &MilestoneBatch) -> Result<()>;

    /// Makes every earlier write durable. A node calls it before acknowledging a
    /// submission.
    fn flush(&self) -> Result<()>;

    /// Makes every earlier `put_transactions` and `mark_solid` durable; a node calls it
    /// before acknowledging a submission. A backend that keeps transactions apart from the
    /// ledger may do so without waiting for the flush of a milestone written concurrently.
    /// The default is [`Store::flush`].
    fn flush_transactions(&self) -> Result<()> {
        self.flush()
    }

    /// Forgets history, atomically: after a crash a reopened store shows all of the batch or
    /// none of it (and then the earlier state). `batch.milestone` never goes back: a batch
    /// at or below the last prune's milestone only replaces the entry points and forgets its
    /// transactions. Ledger state (accounts, channels) and everything not listed stay.
    /// Durable at the next [`Store::flush`].
    fn prune(&self, batch: &PruneBatch) -> Result<()>;

    /// The last prune: `None` if nothing was ever pruned.
    fn pruned(&self) -> Result<Option<PruneState>>;
}

/// The status a payload moves to when one of its carrying transactions is confirmed with
/// `outcome` by `milestone` (the rule of [`Store::apply_milestone`]); backends share it.
pub fn next_payload_status(
    current: PayloadStatus,
    milestone: MilestoneIndex,
    tx: TxId,
    outcome: PayloadOutcome,
) -> PayloadStatus {
    match (current, outcome) {
        // Final statuses never change (the ledger guarantees that no copy of a payload that
        // conflicted for good applies later).
        (PayloadStatus::Confirmed { .. } | PayloadStatus::Conflicting { .. }, _) => current,
        (_, PayloadOutcome::Applied) => PayloadStatus::Confirmed { milestone, tx },
        (_, PayloadOutcome::Conflicting(reason)) if reason.is_final() => {
            PayloadStatus::Conflicting {
                milestone,
                tx,
                reason,
            }
        }
        (_, PayloadOutcome::Conflicting(reason)) => PayloadStatus::Reattaching {
            milestone,
            tx,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmed_payload_status_is_final() {
        let t = TxId([1; 32]);
        let c = next_payload_status(PayloadStatus::Pending, 3, t, PayloadOutcome::Applied);
        assert_eq!(
            c,
            PayloadStatus::Confirmed {
                milestone: 3,
                tx: t
            }
        );
        let later = next_payload_status(
            c,
            4,
            TxId([2; 32]),
            PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed),
        );
        assert_eq!(later, c);
        let gap = next_payload_status(
            PayloadStatus::Pending,
            1,
            t,
            PayloadOutcome::Conflicting(ConflictReason::SeqGap),
        );
        assert!(matches!(gap, PayloadStatus::Reattaching { .. }));
        assert_eq!(
            next_payload_status(gap, 2, t, PayloadOutcome::Applied),
            PayloadStatus::Confirmed {
                milestone: 2,
                tx: t
            }
        );
    }

    #[test]
    fn conflicting_payload_status_is_final() {
        let t = TxId([1; 32]);
        let c = next_payload_status(
            PayloadStatus::Pending,
            3,
            t,
            PayloadOutcome::Conflicting(ConflictReason::InsufficientBalance),
        );
        assert_eq!(
            c,
            PayloadStatus::Conflicting {
                milestone: 3,
                tx: t,
                reason: ConflictReason::InsufficientBalance
            }
        );
        for later in [
            PayloadOutcome::Applied,
            PayloadOutcome::Conflicting(ConflictReason::SeqGap),
            PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed),
        ] {
            assert_eq!(next_payload_status(c, 4, TxId([2; 32]), later), c);
        }
        // A gap first, then a final conflict: conflicting.
        let gap = next_payload_status(
            PayloadStatus::Pending,
            1,
            t,
            PayloadOutcome::Conflicting(ConflictReason::SeqGap),
        );
        assert!(matches!(
            next_payload_status(
                gap,
                2,
                t,
                PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed)
            ),
            PayloadStatus::Conflicting { milestone: 2, .. }
        ));
    }
}
