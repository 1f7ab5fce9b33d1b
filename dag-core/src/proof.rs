//! Proofs a device checks with nothing but the committee's keys (the genesis): that a
//! transaction was confirmed by a milestone, and whether the payload it carries was applied.
//!
//! A [`TransactionProof`] holds the transaction's bytes, the milestone's transaction (with
//! the committee's signatures) and the audit paths ([`crate::merkle`]) of the transaction's
//! id into the two roots the milestone signed: the root of the transactions it confirmed
//! and, if the payload was applied, the root of those whose payload it applied. It is
//! self-contained: it stays valid after the node that served it prunes.
//!
//! [`TransactionProof::verify`] checks the milestone as a node would (encoding, proof of
//! work, the committee's signatures against the genesis, at least the threshold), then the
//! paths. A proof without an applied path proves confirmation only: a payload confirmed as
//! conflicting (or a transaction without payload) verifies with `applied: false`.
//!
//! A [`StateProof`] proves an account's or a channel's state (or its absence) after a
//! milestone: the milestone's transaction and the state tree's path ([`crate::state_tree`])
//! to the `state_root` it signed. A node can build one only at the milestone its ledger
//! stands at (the tree is not versioned); the device keeps it as long as it likes.

use std::collections::{HashSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::ledger::{Account, Channel, Ledger};
use crate::merkle::{leaf_hash, node_hash, AuditPath, MAX_PATH};
use crate::validate::{validate_milestone_batched, ValidationParams};
use crate::Digest;
use crate::{Address, ChannelId, MilestoneIndex, Payload, PayloadId, SignedPayload, TxId};

/// Proof that a transaction was confirmed by a milestone (and its payload applied).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionProof {
    /// The transaction's canonical bytes (hex in JSON).
    #[serde(with = "bytes")]
    pub transaction: Vec<u8>,
    /// The canonical bytes of the milestone's transaction, signatures included.
    #[serde(with = "bytes")]
    pub milestone: Vec<u8>,
    /// The id of that transaction. Checked against the bytes: the signatures do not cover
    /// the proof-of-work nonce, so without it a proof would have several encodings.
    pub milestone_id: TxId,
    /// The path from the transaction's id to the milestone's `confirmed_root` (the list of
    /// what it confirmed, in white-flag order).
    pub confirmed: Vec<Step>,
    /// The path to its `applied_root`, when the payload it carries was applied.
    pub applied: Option<Vec<Step>>,
}

/// One step up a Merkle path: the sibling's hash and its side. A path is only its steps
/// (no index, no list length, which the root does not fix): every bit of it matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The sibling is on the left.
    pub left: bool,
    /// The sibling's hash.
    pub hash: Digest,
}

/// Whether `steps` lead from `id`'s leaf to `root`.
fn leads_to(steps: &[Step], id: &TxId, root: &Digest) -> bool {
    if steps.len() > MAX_PATH {
        return false;
    }
    let mut h = leaf_hash(&id.0);
    for s in steps {
        h = if s.left {
            node_hash(&s.hash.0, &h)
        } else {
            node_hash(&h, &s.hash.0)
        };
    }
    h == root.0
}

/// The steps of an audit path (its sides follow from its index and the list's length).
fn steps(path: &AuditPath) -> Vec<Step> {
    path.sides()
        .into_iter()
        .zip(&path.siblings)
        .map(|(left, hash)| Step { left, hash: *hash })
        .collect()
}

/// What a verified proof establishes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proven {
    /// The transaction.
    pub transaction_id: TxId,
    /// The signed payload it carries, if any (check its body: recipient, amount...).
    pub payload: Option<SignedPayload>,
    /// That payload's id.
    pub payload_id: Option<PayloadId>,
    /// The milestone that confirmed it.
    pub milestone: MilestoneIndex,
    /// The milestone's transaction.
    pub milestone_id: TxId,
    /// The milestone's timestamp, ms.
    pub milestone_timestamp: u64,
    /// Whether the milestone applied the payload to the ledger.
    pub applied: bool,
}

/// Ids of milestones a verifier has validated ([`TransactionProof::verify_with`]): the
/// newest `capacity` of them (oldest forgotten first), so it stays small on a device. It
/// belongs to one network: an id validated against one committee says nothing about
/// another, so never share a set between [`ValidationParams`] (the wallet's `ProofVerifier`
/// keeps them together).
#[derive(Clone, Debug)]
pub struct VerifiedMilestones {
    order: VecDeque<TxId>,
    ids: HashSet<TxId>,
    capacity: usize,
}

impl VerifiedMilestones {
    /// An empty set remembering at most `capacity` milestones (at least one).
    pub fn new(capacity: usize) -> Self {
        VerifiedMilestones {
            order: VecDeque::new(),
            ids: HashSet::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether milestone `id` was validated.
    pub fn contains(&self, id: &TxId) -> bool {
        self.ids.contains(id)
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    fn insert(&mut self, id: TxId) {
        if self.ids.insert(id) {
            self.order.push_back(id);
            if self.order.len() > self.capacity {
                if let Some(old) = self.order.pop_front() {
                    self.ids.remove(&old);
                }
            }
        }
    }
}

/// What [`TransactionProof::from_store`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The proof.
    Found(TransactionProof),
    /// Unknown, or not confirmed yet.
    None,
    /// Confirmed by this milestone, whose records (or the bytes) were pruned.
    Pruned(MilestoneIndex),
}

/// Why a proof does not hold.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The transaction bytes are not a transaction.
    #[error("the transaction does not decode: {0}")]
    Transaction(String),
    /// The milestone is not a valid milestone of this network's committee.
    #[error("the milestone is not valid: {0}")]
    Milestone(String),
    /// A path does not lead to the root the milestone signed.
    #[error("the {0} path does not lead to the milestone's root")]
    Path(&'static str),
}

/// Decodes a proof's milestone transaction, checks its id, and validates it as a node would
/// (unless `known` holds its id): the encoding, proof of work, the committee's signatures
/// against `params` (in one batch: [`validate_milestone_batched`]), at least the threshold.
/// Checked as of its own timestamp: a proof is kept and checked later.
fn checked_milestone(
    bytes: &[u8],
    claimed: &TxId,
    params: &ValidationParams,
    known: Option<&VerifiedMilestones>,
) -> Result<(crate::Transaction, TxId), ProofError> {
    let (ms_tx, ms_id) =
        codec::decode_with_id(bytes).map_err(|e| ProofError::Milestone(e.to_string()))?;
    if ms_id != *claimed {
        return Err(ProofError::Milestone(format!(
            "its bytes are those of {ms_id}, not of {claimed}"
        )));
    }
    if ms_tx.milestone().is_none() {
        return Err(ProofError::Milestone("it carries no milestone".into()));
    }
    if !known.is_some_and(|k| k.contains(&ms_id)) {
        validate_milestone_batched(&ms_tx, &ms_id, ms_tx.timestamp, params)
            .map_err(|e| ProofError::Milestone(e.to_string()))?;
    }
    Ok((ms_tx, ms_id))
}

impl TransactionProof {
    /// Checks the proof against the network of `params` (its committee and threshold).
    pub fn verify(&self, params: &ValidationParams) -> Result<Proven, ProofError> {
        self.check(params, None)
    }

    /// [`verify`](Self::verify), skipping the milestone's validation (its committee
    /// signatures, proof of work and format) when `known` holds its id from an earlier
    /// proof: the id is the hash of the milestone's whole encoding, signatures included, so
    /// the same id means the same bytes, already validated. A device checking the proofs of
    /// many payments confirmed by one milestone pays for the signatures once.
    pub fn verify_with(
        &self,
        params: &ValidationParams,
        known: &mut VerifiedMilestones,
    ) -> Result<Proven, ProofError> {
        self.check(params, Some(known))
    }

    fn check(
        &self,
        params: &ValidationParams,
        known: Option<&mut VerifiedMilestones>,
    ) -> Result<Proven, ProofError> {
        let (tx, id) = codec::decode_with_id(&self.transaction)
            .map_err(|e| ProofError::Transaction(e.to_string()))?;
        let (ms_tx, ms_id) = checked_milestone(
            &self.milestone,
            &self.milestone_id,
            params,
            known.as_deref(),
        )?;
        let Payload::Milestone(m) = &ms_tx.payload else {
            return Err(ProofError::Milestone("it carries no milestone".into()));
        };
        if tx.network_id != ms_tx.network_id {
            return Err(ProofError::Transaction("of another network".into()));
        }
        if !leads_to(&self.confirmed, &id, &m.confirmed_root) {
            return Err(ProofError::Path("confirmed"));
        }
        let applied = match &self.applied {
            Some(p) if leads_to(p, &id, &m.applied_root) => true,
            Some(_) => return Err(ProofError::Path("applied")),
            None => false,
        };
        let payload = match tx.payload {
            Payload::Signed(p) => Some(p),
            _ => None,
        };
        if applied && payload.is_none() {
            return Err(ProofError::Path("applied"));
        }
        if let Some(k) = known {
            k.insert(ms_id);
        }
        Ok(Proven {
            transaction_id: id,
            payload_id: payload.as_ref().map(SignedPayload::id),
            payload,
            milestone: m.index,
            milestone_id: ms_id,
            milestone_timestamp: m.timestamp,
            applied,
        })
    }

    /// The proof of transaction `id` from what `store` holds: `Ok(None)` if it is unknown
    /// or not confirmed (yet), [`Lookup::Pruned`] if the milestone or the bytes it needs are
    /// no longer stored.
    pub fn from_store(store: &dyn crate::Store, id: &TxId) -> Result<Lookup, crate::StoreError> {
        let Some(index) = store.metadata(id)?.and_then(|m| m.confirmed_by) else {
            return Ok(Lookup::None);
        };
        let (Some(record), Some(list)) = (store.milestone(index)?, store.confirmations(index)?)
        else {
            return Ok(Lookup::Pruned(index));
        };
        // The milestone's own transaction closes the list; the root covers its cone only.
        let cone: Vec<(TxId, bool)> = list
            .iter()
            .filter(|(t, _)| *t != record.tx)
            .map(|(t, o)| (*t, o.is_some_and(|o| o.is_applied())))
            .collect();
        let Some(at) = cone.iter().position(|(t, _)| t == id) else {
            return Ok(Lookup::None);
        };
        let (Some(bytes), Some(milestone)) =
            (store.transaction(id)?, store.transaction(&record.tx)?)
        else {
            return Ok(Lookup::Pruned(index));
        };
        Ok(match TransactionProof::build(bytes, milestone, &cone, at) {
            Some(p) => Lookup::Found(p),
            None => Lookup::None,
        })
    }

    /// The proof of the transaction at `index` of `confirmed` (a milestone's confirmed
    /// transactions in white-flag order, each with whether its payload was applied).
    /// `None` if `index` is out of range or the bytes are not that transaction's.
    pub fn build(
        transaction: Vec<u8>,
        milestone: Vec<u8>,
        confirmed: &[(TxId, bool)],
        index: usize,
    ) -> Option<TransactionProof> {
        let (id, applied) = *confirmed.get(index)?;
        if codec::id_of_encoding(&transaction) != id {
            return None;
        }
        let ids: Vec<[u8; 32]> = confirmed.iter().map(|(t, _)| t.0).collect();
        let applied_ids: Vec<[u8; 32]> = confirmed
            .iter()
            .filter(|(_, a)| *a)
            .map(|(t, _)| t.0)
            .collect();
        let confirmed_path = steps(&crate::merkle::audit_path(&ids, index)?);
        let applied_path = if applied {
            let at = confirmed[..index].iter().filter(|(_, a)| *a).count();
            Some(steps(&crate::merkle::audit_path(&applied_ids, at)?))
        } else {
            None
        };
        Some(TransactionProof {
            transaction,
            milestone_id: codec::id_of_encoding(&milestone),
            milestone,
            confirmed: confirmed_path,
            applied: applied_path,
        })
    }
}

/// Proof of one entry of the ledger state (an account's balance and next sequence number,
/// or a payment channel) after a milestone: the milestone's transaction with the committee's
/// signatures, and the state tree's path from the entry to the `state_root` the milestone
/// signed ([`crate::state_tree`]). It proves absence too: an unknown account holds nothing
/// (balance 0, next seq 0), an unknown channel does not exist. Self-contained, like
/// [`TransactionProof`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateProof {
    /// The canonical bytes of the milestone's transaction, signatures included.
    #[serde(with = "bytes")]
    pub milestone: Vec<u8>,
    /// The id of that transaction (checked against the bytes).
    pub milestone_id: TxId,
    /// The entry proven, as of that milestone.
    pub entry: StateEntry,
    /// The path from the entry's leaf (or from where it would be) to the state root.
    pub path: crate::state_tree::Proof,
}

/// An entry of the ledger state; `None` proves its absence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateEntry {
    /// An account.
    Account {
        /// Its address.
        address: Address,
        /// Its state; `None`: the ledger has no such account (a zero balance).
        account: Option<Account>,
    },
    /// A payment channel.
    Channel {
        /// Its id.
        channel_id: ChannelId,
        /// Its state; `None`: no such channel.
        channel: Option<Channel>,
    },
}

impl StateEntry {
    /// The same entry (account or channel, same id) as `ledger` holds it now, and its path
    /// in the ledger's state tree. With the milestone the ledger stands at, that is a
    /// [`StateProof`]; a node reads both under one lock and the milestone's bytes after.
    pub fn read(self, ledger: &Ledger) -> (StateEntry, crate::state_tree::Proof) {
        let entry = match self {
            StateEntry::Account { address, .. } => StateEntry::Account {
                address,
                account: ledger.account(&address).copied(),
            },
            StateEntry::Channel { channel_id, .. } => StateEntry::Channel {
                channel_id,
                channel: ledger.channel(&channel_id).copied(),
            },
        };
        let (key, _) = entry.tree_entry();
        (entry, ledger.state_tree().prove(&key))
    }

    /// The state tree's key and value hash of this entry.
    fn tree_entry(&self) -> crate::state_tree::Update {
        match self {
            StateEntry::Account { address, account } => {
                crate::ledger::account_entry(address, account.as_ref())
            }
            StateEntry::Channel {
                channel_id,
                channel,
            } => crate::ledger::channel_entry(channel_id, channel.as_ref()),
        }
    }
}

/// What a verified [`StateProof`] establishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvenState {
    /// The entry, as of the milestone.
    pub entry: StateEntry,
    /// The milestone.
    pub milestone: MilestoneIndex,
    /// The milestone's transaction.
    pub milestone_id: TxId,
    /// The milestone's timestamp, ms.
    pub milestone_timestamp: u64,
}

impl StateProof {
    /// The proof of `entry` (read from `ledger`) after the milestone whose transaction is
    /// `milestone`. `None` unless the ledger stands exactly at that milestone (its index and
    /// its state root are the ones the milestone carries).
    pub fn build(ledger: &Ledger, milestone: Vec<u8>, entry: StateEntry) -> Option<StateProof> {
        let tx = codec::decode(&milestone).ok()?;
        let m = tx.milestone()?;
        if m.index != ledger.confirmed_index() || m.state_root != ledger.state_root() {
            return None;
        }
        let (entry, path) = entry.read(ledger);
        Some(StateProof {
            milestone_id: codec::id_of_encoding(&milestone),
            milestone,
            entry,
            path,
        })
    }

    /// Checks the proof against the network of `params` (its committee and threshold).
    pub fn verify(&self, params: &ValidationParams) -> Result<ProvenState, ProofError> {
        self.check(params, None)
    }

    /// [`verify`](Self::verify), skipping the milestone's validation when `known` holds it
    /// (see [`TransactionProof::verify_with`]).
    pub fn verify_with(
        &self,
        params: &ValidationParams,
        known: &mut VerifiedMilestones,
    ) -> Result<ProvenState, ProofError> {
        self.check(params, Some(known))
    }

    fn check(
        &self,
        params: &ValidationParams,
        known: Option<&mut VerifiedMilestones>,
    ) -> Result<ProvenState, ProofError> {
        let (ms_tx, ms_id) = checked_milestone(
            &self.milestone,
            &self.milestone_id,
            params,
            known.as_deref(),
        )?;
        let Payload::Milestone(m) = &ms_tx.payload else {
            return Err(ProofError::Milestone("it carries no milestone".into()));
        };
        let (key, value) = self.entry.tree_entry();
        if !self.path.verify(&m.state_root.0, &key, value) {
            return Err(ProofError::Path("state"));
        }
        if let Some(k) = known {
            k.insert(ms_id);
        }
        Ok(ProvenState {
            entry: self.entry,
            milestone: m.index,
            milestone_id: ms_id,
            milestone_timestamp: m.timestamp,
        })
    }
}

/// Byte strings as hex in human-readable formats (JSON) and as `bin` in binary ones
/// (MessagePack).
mod bytes {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(b))
        } else {
            s.serialize_bytes(b)
        }
    }

    struct V;

    impl<'de> Visitor<'de> for V {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes (hex in JSON)")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            hex::decode(v).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(V)
        } else {
            d.deserialize_byte_buf(V)
        }
    }
}
