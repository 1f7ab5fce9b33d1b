//! # node-proto
//!
//! The tangle node's protocol, sans I/O: every rule of the node, and none of its I/O. The
//! `node` crate drives it with tokio, sled, QUIC and an HTTP API; the simulator and the
//! in-memory test harness ([`harness`]) drive it on a virtual clock.
//!
//! - [`Protocol`]: ingest, the solidification buffer, the tip pool, local payloads and their
//!   issuer chains, milestone issuing (tip sweep), white-flag application and confirmation,
//!   reattachment of lazy payloads, the dev faucet, restore from the store.
//! - [`peering`]: the peering state machine (handshake, gossip, requests, sync, scores and
//!   bans), [`wire`]: its message format.
//! - [`layout`]: the on-disk format of the node's store (frames, keys, records).
//! - [`snapshot`]: snapshot files (format, verification, import); [`fetch`]: downloading one
//!   from a peer.
//!
//! The core does no I/O, reads no clock and draws no randomness of its own: time comes in as
//! `now` (ms since the Unix epoch), randomness from the seed in [`ProtocolConfig`], and no
//! output depends on a hash map's iteration order. Expensive stateless work (proof of work,
//! signature checks) is asked for as [`Work`] and done by the driver on threads of its
//! choosing, never under the core's lock (see [`work`]).
//!
//! ## Order of calls
//! 1. Peer bytes: [`validate_from_peers`] (driver threads), then
//!    [`Protocol::handle_peer_transactions`]; client transactions: the validator, then
//!    [`Protocol::handle_transactions`] with [`Origin::Api`].
//! 2. Local payloads: [`Protocol::submit_payloads`], then the [`Step`] loop: do each
//!    [`Work`], hand it back with [`Protocol::handle_work_done`], until
//!    [`Step::Submitted`].
//! 3. Timer: [`Protocol::handle_tick`]; then drain [`Protocol::poll_work`] (milestone
//!    issuing, reattachment) through the same loop.
//! 4. After each call: drain [`Protocol::poll_store_write`] (write in order; acknowledge a
//!    submission only after its write is flushed), [`Protocol::poll_event`],
//!    [`Protocol::poll_missing`] and [`Protocol::poll_expired`].

pub mod fetch;
pub mod harness;
pub mod layout;
pub mod peering;
mod protocol;
pub mod snapshot;
mod types;
pub mod wire;

pub use protocol::committee::{
    proposal_digest, round_vote_message, sign_round_vote, CommitteeOutput, CommitteeStats,
    Evidence, EvidenceKind, VoteRecord, LATENCY_BUCKETS_MS,
};
pub use protocol::ingest::validate_from_peers;
pub use protocol::restore::{restore_from_store, RestoreReport};
pub use protocol::work::{self, Step, Work, WorkDone};
pub use protocol::Protocol;
pub use types::{
    Event, MilestoneSummary, Origin, ProtocolConfig, ProtocolError, Refusal, RejectReason,
    SelectorKind, StoreWrite, StoredTx, Submitted,
};

#[cfg(test)]
mod tests;
