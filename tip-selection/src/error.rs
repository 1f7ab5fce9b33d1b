//! Error types, one per operation.

use dag_core::TxRef;

/// Why [`crate::TipSelector::select`] found no parents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SelectError {
    /// The view holds no transaction at all (not even the genesis root), so there is nothing
    /// to approve. A Tangle created by `dag_core::Tangle::new` never reports this.
    #[error("the Tangle holds no transaction")]
    EmptyTangle,
    /// The view has tips, but the selector's rules reject every one of them (all lazy,
    /// semi-lazy without fallback, saturated with approvers, or expired). The caller should
    /// wait for the next milestone or for fresh transactions, or relax the configuration.
    #[error("none of the {tips} tips is eligible for selection")]
    NoEligibleTip {
        /// Number of tips the view held when the selection was attempted.
        tips: usize,
    },
}

/// Why [`crate::ConfirmationConfidence::estimate`] could not estimate a confidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfidenceError {
    /// The target is not held by the view: newer than its newest transaction or older than
    /// its root (pruned).
    #[error("transaction {0:?} is not held by the Tangle")]
    UnknownTx(TxRef),
    /// The estimator was configured with zero walks, so no share can be computed.
    #[error("the number of walks must be at least 1")]
    NoWalks,
    /// The walker found no tip to end on (the view is empty).
    #[error(transparent)]
    Select(#[from] SelectError),
}
