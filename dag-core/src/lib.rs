//! # dag-core
//!
//! The ledger library of the tangle workspace: everything a device agent or a node needs to
//! build, sign, verify, order and confirm transactions, with no I/O, no threads of its own
//! (except the optional rayon pool of the batch validator) and no clock: time is passed in.
//!
//! ## Key types
//! - [`Transaction`], [`Payload`], [`SignedPayload`], [`Body`], [`Milestone`]: the data model.
//! - [`TxId`], [`Address`], [`ChannelId`], [`PayloadId`], [`Signature`], [`Digest`]: ids.
//! - [`codec`]: the one canonical encoding and ids; [`pow`]: proof of work.
//! - [`Keypair`] and [`crypto`]: Ed25519 and BLAKE2b-256, and the exact signed messages.
//! - [`Genesis`]: what defines a network and its id; [`committee`]: the committee's key sets
//!   by index range (rotation).
//! - [`TangleView`]: what tip selection sees of a Tangle.
//! - [`validate()`], [`BatchValidator`] ([`mod@validate`]): stage 1 (syntactic and
//!   cryptographic) validation, single or rayon-parallel with Ed25519 batch verification.
//! - [`Ledger`]: the white-flag ledger (accounts, channels, `apply_milestone`, digest).
//! - [`proof`]: proofs of confirmation a device checks with the committee's keys only.
//! - [`Store`] and [`MemStore`] ([`store`]): storage behind a trait, one atomic batch per
//!   milestone, with a conformance suite for backends (feature `test-utils`).
//!
//! ## Layout
//! `ids` and `types` (data model), `codec`, `crypto`, `pow`, `genesis`, `view`, `error`.

mod error;
mod ids;
mod types;

pub mod capacity;
pub mod codec;
pub mod committee;
pub mod crypto;
pub mod genesis;
pub mod ledger;
pub mod merkle;
pub mod pow;
pub mod proof;
pub mod state_tree;
pub mod store;
pub mod tangle;
pub mod validate;
pub mod view;
pub mod whiteflag;

pub use committee::{CommitteeSchedule, CommitteeUpdate, Rotation};
pub use crypto::Keypair;
pub use error::{DecodeError, ParseError, SignatureError};
pub use genesis::{Allocation, Genesis, GenesisError};
pub use ids::{Address, ChannelId, Digest, PayloadId, Signature, TxId, ADDRESS_HRP};
pub use ledger::{
    Account, ApplyError, Channel, ConflictReason, Ledger, LedgerDiff, LedgerState,
    LedgerStateError, MilestoneOutcome, PayloadOutcome,
};
pub use store::{MemStore, Store, StoreError};
pub use tangle::{ConfirmError, InsertError, InsertOutcome, PruneError, Tangle, TangleConfig};
pub use types::{
    Body, Milestone, MilestoneIndex, NetworkId, Payload, SignedPayload, Transaction, MAX_MEMO_LEN,
    MAX_MILESTONE_SIGNATURES, MAX_TAG_LEN, TX_VERSION,
};
pub use validate::{
    validate, BatchValidator, ParamsError, ValidTransaction, ValidationError, ValidationParams,
};
pub use view::{ReferencedMilestones, TangleView, TxRef};

/// The README's Rust examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
