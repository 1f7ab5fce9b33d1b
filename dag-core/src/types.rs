//! The data model: [`Transaction`], [`Payload`], [`SignedPayload`], [`Body`], [`Milestone`].
//!
//! Field order is the wire order (struct-as-array MessagePack, see [`crate::codec`]); changing
//! it changes every id, so it is versioned by [`Transaction::version`].

use serde::{Deserialize, Serialize};

use crate::ids::{nonce_bytes, var_bytes, Address, ChannelId, Digest, Signature, TxId};

/// Current transaction format version.
pub const TX_VERSION: u8 = 1;
/// Longest memo a [`Body::Pay`] may carry, in bytes.
pub const MAX_MEMO_LEN: usize = 64;
/// Longest tag a [`Body::Anchor`] may carry, in bytes.
pub const MAX_TAG_LEN: usize = 32;
/// Most committee signatures a milestone may carry.
pub const MAX_MILESTONE_SIGNATURES: usize = 32;

/// Network identifier, derived from the genesis (see [`crate::Genesis::network_id`]).
pub type NetworkId = u64;
/// Milestone index; 0 is the genesis state, the first milestone is 1.
pub type MilestoneIndex = u32;

/// A Tangle transaction: approves two earlier transactions and carries a payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Format version, [`TX_VERSION`].
    pub version: u8,
    /// Network this transaction belongs to; stops cross-network replay.
    pub network_id: NetworkId,
    /// Trunk and branch: two distinct, already known transactions (or twice
    /// [`TxId::GENESIS`]).
    pub parents: [TxId; 2],
    /// Issuer's claimed time, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// What the transaction carries.
    pub payload: Payload,
    /// Proof-of-work nonce; always the last field (see [`crate::codec`]).
    #[serde(with = "nonce_bytes")]
    pub nonce: u64,
}

/// What a transaction carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Nothing: tip maintenance and promotion.
    Empty,
    /// A device's signed ledger operation or anchor.
    Signed(SignedPayload),
    /// A confirmation checkpoint signed by the committee.
    Milestone(Milestone),
}

/// A device's signed operation. The signature covers `(network_id, issuer, seq, body)` but not
/// the carrying transaction, so any node may (re)attach it without the device's key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedPayload {
    /// The issuer's public key, which is also its account address.
    pub issuer: Address,
    /// The issuer's sequence number: each `(issuer, seq)` is applied at most once, in order.
    pub seq: u64,
    /// The operation.
    pub body: Body,
    /// Ed25519 signature over [`crate::crypto::payload_signing_message`].
    pub signature: Signature,
}

/// A ledger operation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// Transfer `amount` to `to`.
    Pay {
        /// Recipient.
        to: Address,
        /// Amount, in base units.
        amount: u64,
        /// Free-form memo, at most [`MAX_MEMO_LEN`] bytes.
        #[serde(with = "var_bytes")]
        memo: Vec<u8>,
    },
    /// Open a unidirectional payment channel from the issuer (payer) to `payee`.
    Open {
        /// Who may claim.
        payee: Address,
        /// Locked amount.
        deposit: u64,
        /// Milestone index after which the payer may refund an unclaimed channel.
        expires_at: MilestoneIndex,
    },
    /// Payee claims `amount` from `channel` with the payer's voucher for that cumulative
    /// amount; the remainder returns to the payer and the channel closes.
    Claim {
        /// The channel.
        channel: ChannelId,
        /// Cumulative amount the voucher signs.
        amount: u64,
        /// Payer's signature over [`crate::crypto::voucher_signing_message`].
        voucher: Signature,
    },
    /// Payer takes back the whole deposit of an unclaimed channel after it expired.
    Refund {
        /// The channel.
        channel: ChannelId,
    },
    /// Proof that some off-ledger data existed: its digest under a short tag.
    Anchor {
        /// Application tag, at most [`MAX_TAG_LEN`] bytes.
        #[serde(with = "var_bytes")]
        tag: Vec<u8>,
        /// Digest of the data (BLAKE2b-256 by convention).
        digest: Digest,
    },
}

/// A confirmation checkpoint: confirms the past cone of its carrying transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Milestone {
    /// Index, consecutive from 1.
    pub index: MilestoneIndex,
    /// Issuer time, milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// The transaction carrying milestone `index - 1` ([`TxId::GENESIS`] for milestone 1):
    /// milestones form a chain.
    pub previous: TxId,
    /// Merkle root ([`crate::merkle`]) of the ids of the transactions this milestone
    /// confirms, in white-flag order (its own transaction excluded).
    pub confirmed_root: Digest,
    /// Merkle root of the ids of the confirmed transactions whose payload it applied, in
    /// white-flag order.
    pub applied_root: Digest,
    /// Root of the ledger's state tree ([`crate::state_tree`]) after this milestone: every
    /// account and channel.
    pub state_root: Digest,
    /// Ledger digest after applying this milestone's cone (see [`crate::ledger`]).
    pub ledger_digest: Digest,
    /// Committee signatures: `(index of the key in the committee in office at this index,
    /// signature)`, signers strictly ascending (the genesis committee until a rotation,
    /// see [`crate::committee`]).
    pub signatures: Vec<(u8, Signature)>,
    /// A new committee, effective from a later index, signed with this milestone
    /// ([`crate::committee`]). Absent from the encoding when `None`, so milestones without
    /// one keep their format and ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committee_update: Option<crate::committee::CommitteeUpdate>,
}

impl Transaction {
    /// The signed payload, if any.
    pub fn signed(&self) -> Option<&SignedPayload> {
        match &self.payload {
            Payload::Signed(p) => Some(p),
            _ => None,
        }
    }

    /// The milestone, if this transaction carries one.
    pub fn milestone(&self) -> Option<&Milestone> {
        match &self.payload {
            Payload::Milestone(m) => Some(m),
            _ => None,
        }
    }
}

impl Body {
    /// Short name of the operation, for logs and APIs.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::Pay { .. } => "pay",
            Body::Open { .. } => "open",
            Body::Claim { .. } => "claim",
            Body::Refund { .. } => "refund",
            Body::Anchor { .. } => "anchor",
        }
    }
}
