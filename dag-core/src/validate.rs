//! Stage 1 validation: syntactic and cryptographic checks on arrival, stateless.
//!
//! A transaction is *valid* when its bytes are a canonical encoding
//! ([`crate::codec::decode`]), its version is [`TX_VERSION`], it belongs to this network,
//! its parents are distinct (or both [`TxId::GENESIS`]) and not itself, its timestamp is
//! within the network's window of local time, its id meets the proof-of-work difficulty, its
//! memo or tag fits, its payload signature verifies (strict Ed25519), and, for a milestone, a
//! threshold of committee members signed it. Ledger rules (balances, sequence numbers,
//! channels) are stage 2 and live in the ledger; nothing here depends on state, so arrivals
//! validate in parallel.
//!
//! Two entry points give the same verdict on the same bytes:
//! - [`validate`]: one transaction, strict single verification
//!   ([`crate::crypto::verify`]).
//! - [`BatchValidator::validate_batch`]: many transactions on the current rayon pool. Inputs
//!   are cut into one chunk per worker (64 to 1024 transactions); each chunk is decoded and
//!   checked, then its payload signatures are checked with one `ed25519_dalek::verify_batch`.
//!   When a chunk's batch fails, every signature of that chunk is checked again with strict
//!   single verification to find the culprits. Decoded issuer keys are cached.
//!
//! ## Batch and single verification: what differs and what we do about it
//!
//! `verify_strict` rejects small-order public keys, small-order `R`, non-canonical `s` and
//! any `R` that is not the canonical encoding of `[s]B - [k]A`. `verify_batch` checks only
//! the cofactorless equation `sum z_i ([s_i]B - R_i - [k_i]A_i) == 0` with random 128-bit
//! `z_i` (and canonical `s`). So, before batching, we reject what strict verification would
//! reject and the batch would not see:
//! - weak (small-order) or undecodable public keys ([`crate::crypto::verifying_key`]);
//! - `R` whose encoding is non-canonical (`y >= p`) or whose `y` is that of one of the eight
//!   small-order points (a table lookup, no point decompression).
//!
//! **Residual case.** A signature whose defect `[s]B - R - [k]A` is a *nonzero small-order
//! point* `T` (possible only when `R` or `A` has a torsion component, i.e. a signature crafted
//! by the key holder; an honest signer never produces one) always fails strict verification,
//! but passes the cofactorless batch equation when `z_i T = 0`, which happens with
//! probability `1/ord(T)`: 1/8 for an order-8 component, up to 1/2 for order 2. The `z_i`
//! are derived from the batch's own contents, so two nodes that batch the same transaction
//! with different neighbours can disagree about it; the crafted transaction is then stored by
//! some nodes and dropped by others (and its approvers stay unsolid on those). Rejecting
//! torsion components outright costs a scalar multiplication per signature, as much as the
//! verification itself, so we do not; we accept this residual, which only the key holder can
//! trigger, for its own payloads. Moving both paths to ZIP-215 cofactored verification
//! (`ed25519-zebra`), where single and batch verification agree by construction, would close
//! it.

use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ed25519_dalek::VerifyingKey;
#[cfg(feature = "parallel")]
use rayon::prelude::*;
use thiserror::Error;

use crate::codec::{decode, decode_with_id, id_of_encoding};
use crate::committee::{
    check_update, CommitteeSchedule, CommitteeUpdate, Epoch, Rotation, RotationError,
};
use crate::crypto::{milestone_signing_message, verify, verify_with_key, verifying_key};
use crate::error::{DecodeError, SignatureError};
use crate::genesis::{Genesis, GenesisError};
use crate::ids::{Address, Signature, TxId};
use crate::pow::leading_zero_bits;
use crate::types::{
    Body, Milestone, MilestoneIndex, NetworkId, Payload, SignedPayload, Transaction, MAX_MEMO_LEN,
    MAX_MILESTONE_SIGNATURES, MAX_TAG_LEN, TX_VERSION,
};

/// Why a transaction was rejected by stage 1 validation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ValidationError {
    /// The bytes are not a canonical transaction encoding (oversize, malformed, trailing
    /// bytes, non-canonical).
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// The transaction format version is not [`TX_VERSION`].
    #[error("unsupported transaction version {0}")]
    UnsupportedVersion(u8),
    /// The transaction belongs to another network.
    #[error("wrong network: expected {expected:#018x}, got {got:#018x}")]
    WrongNetwork {
        /// This node's network id.
        expected: NetworkId,
        /// The transaction's network id.
        got: NetworkId,
    },
    /// Both parents are the same transaction (allowed only for [`TxId::GENESIS`]).
    #[error("both parents are {0}")]
    DuplicateParents(TxId),
    /// A parent is the transaction itself.
    #[error("transaction approves itself")]
    SelfParent,
    /// The timestamp is further than the network's window from local time.
    #[error("timestamp {timestamp} is more than {window} ms from local time {now}")]
    TimestampOutOfWindow {
        /// The transaction's timestamp, ms since the Unix epoch.
        timestamp: u64,
        /// Local time at validation, ms since the Unix epoch.
        now: u64,
        /// Allowed distance, ms.
        window: u64,
    },
    /// The id has fewer leading zero bits than the network's difficulty.
    #[error("proof of work too low: {got} leading zero bits, {needed} needed")]
    PowTooLow {
        /// The network's difficulty.
        needed: u8,
        /// Leading zero bits of the id.
        got: u32,
    },
    /// A `Pay` memo is longer than [`MAX_MEMO_LEN`].
    #[error("memo is {len} bytes, the limit is {max}")]
    MemoTooLong {
        /// Memo length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An `Anchor` tag is longer than [`MAX_TAG_LEN`].
    #[error("anchor tag is {len} bytes, the limit is {max}")]
    TagTooLong {
        /// Tag length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The payload signature is not acceptable: the issuer key is invalid or weak, or the
    /// signature does not verify.
    #[error("payload signature: {0}")]
    BadPayloadSignature(SignatureError),
    /// A milestone has index 0, which is the genesis state.
    #[error("milestone index 0 is reserved for the genesis")]
    MilestoneIndexZero,
    /// A milestone carries more than [`MAX_MILESTONE_SIGNATURES`] signatures.
    #[error("milestone carries {count} signatures, at most {max} are allowed")]
    TooManyMilestoneSignatures {
        /// Signatures carried.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// Milestone signer indices are not strictly ascending (so not unique and not canonical).
    #[error("milestone signers are not strictly ascending")]
    MilestoneSignersNotAscending,
    /// A milestone signer index is not in the committee.
    #[error("milestone signer {signer} is not in the committee of {committee}")]
    UnknownMilestoneSigner {
        /// The signer index.
        signer: u8,
        /// Committee size.
        committee: usize,
    },
    /// A committee member's milestone signature does not verify.
    #[error("milestone signature of committee member {signer} does not verify")]
    BadMilestoneSignature {
        /// The signer index.
        signer: u8,
    },
    /// A milestone was expected ([`validate_milestone_batched`]).
    #[error("not a milestone")]
    NotAMilestone,
    /// Fewer committee signatures than the threshold.
    #[error("milestone has {got} signatures, {needed} needed")]
    MilestoneBelowThreshold {
        /// Signatures carried.
        got: usize,
        /// The threshold.
        needed: u8,
    },
    /// A milestone's signatures do not verify against the committee this node knows for
    /// its index, and that index is beyond the rotations this node has applied (a rotation
    /// it has not seen yet may have changed the committee). Not the sender's fault: the
    /// milestone is refused for now and comes again with sync.
    #[error("milestone {index} is beyond the committee rotations applied here (certain through {known_through}): {why}")]
    MilestoneCommitteeNotKnown {
        /// The milestone's index.
        index: MilestoneIndex,
        /// The highest index whose committee is certain here.
        known_through: MilestoneIndex,
        /// What failed against the committee known now.
        why: String,
    },
    /// A milestone carries an unusable committee update.
    #[error("committee update: {0}")]
    BadCommitteeUpdate(crate::committee::RotationError),
}

/// Why [`ValidationParams`] could not be built from a genesis.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamsError {
    /// The genesis itself is unusable.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
    /// A committee key is not a usable Ed25519 public key.
    #[error("committee key {index}: {source}")]
    CommitteeKey {
        /// Position in the genesis committee.
        index: usize,
        /// Why the key is unusable.
        source: SignatureError,
    },
    /// A committee rotation does not hold ([`CommitteeSchedule::add`]).
    #[error("committee rotation: {0}")]
    Rotation(RotationError),
}

/// The network rules stage 1 validation needs, taken from the genesis once (committee keys
/// are decoded here, not per milestone).
///
/// The committee comes from a [`CommitteeSchedule`] that **clones share**: a node installs
/// each rotation as it applies it ([`ValidationParams::add_rotation`]) and every validator
/// holding a clone checks milestones against the new keys from then on.
#[derive(Clone, Debug)]
pub struct ValidationParams {
    network_id: NetworkId,
    pow_difficulty: u8,
    timestamp_window_ms: u64,
    schedule: Arc<RwLock<CommitteeSchedule>>,
}

impl ValidationParams {
    /// Takes the rules from `genesis`, checking it ([`Genesis::validate`]) and decoding its
    /// committee keys.
    pub fn new(genesis: &Genesis) -> Result<Self, ParamsError> {
        genesis.validate()?;
        // The schedule decodes the committee keys once; a bad one is the genesis' fault.
        let schedule = CommitteeSchedule::from_genesis(genesis).map_err(|e| match e {
            RotationError::Key { index, source } => ParamsError::CommitteeKey { index, source },
            e => ParamsError::Rotation(e),
        })?;
        Ok(ValidationParams {
            network_id: genesis.network_id(),
            pow_difficulty: genesis.pow_difficulty,
            timestamp_window_ms: genesis.timestamp_window_ms,
            schedule: Arc::new(RwLock::new(schedule)),
        })
    }

    /// [`ValidationParams::new`], then each rotation in order (each checked against the
    /// committee before it, [`CommitteeSchedule::add`]).
    pub fn with_rotations(genesis: &Genesis, rotations: &[Rotation]) -> Result<Self, ParamsError> {
        let p = Self::new(genesis)?;
        for r in rotations {
            p.add_rotation(r).map_err(ParamsError::Rotation)?;
        }
        Ok(p)
    }

    /// A copy of the committee schedule as it stands.
    pub fn schedule(&self) -> CommitteeSchedule {
        self.read_schedule().clone()
    }

    fn read_schedule(&self) -> std::sync::RwLockReadGuard<'_, CommitteeSchedule> {
        // A panic while holding the lock cannot leave a schedule half-updated (`add` checks
        // before it pushes), so a poisoned lock is still usable.
        self.schedule.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_schedule(&self) -> std::sync::RwLockWriteGuard<'_, CommitteeSchedule> {
        self.schedule.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs a rotation (for this value and every clone); see [`CommitteeSchedule::add`].
    pub fn add_rotation(&self, r: &Rotation) -> Result<(), RotationError> {
        self.write_schedule().add(r)
    }

    /// Whether any rotation was installed (the genesis committee is not the only one).
    pub fn has_rotations(&self) -> bool {
        !self.read_schedule().rotations().is_empty()
    }

    /// [`CommitteeSchedule::may_carry`] on the schedule as it stands.
    pub fn may_carry(
        &self,
        carrier: MilestoneIndex,
        u: &CommitteeUpdate,
    ) -> Result<(), RotationError> {
        self.read_schedule().may_carry(carrier, u)
    }

    /// The index of the newest rotation's carrier (0: none).
    pub fn last_rotation_index(&self) -> MilestoneIndex {
        self.read_schedule()
            .rotations()
            .last()
            .map_or(0, |r| r.milestone.index)
    }

    /// A node applied milestone `index` ([`CommitteeSchedule::set_applied`]).
    pub fn set_applied(&self, index: MilestoneIndex) {
        self.write_schedule().set_applied(index);
    }

    /// Checks milestone `m`'s signatures on `parents` against the committee in office at
    /// its index (strict), as a node applying it does.
    pub fn verify_milestone_signatures(
        &self,
        parents: &[TxId; 2],
        m: &Milestone,
    ) -> Result<(), String> {
        self.read_schedule().verify_signatures(parents, m)
    }

    /// The committee in office at `index`: its addresses and threshold.
    pub fn committee_at(&self, index: MilestoneIndex) -> (Vec<Address>, u8) {
        let s = self.read_schedule();
        let e = s.at(index);
        (e.committee.clone(), e.threshold)
    }

    /// The network id transactions must carry.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Proof-of-work difficulty, in leading zero bits of the id.
    pub fn pow_difficulty(&self) -> u8 {
        self.pow_difficulty
    }

    /// Largest allowed distance between a timestamp and local time, in ms.
    pub fn timestamp_window_ms(&self) -> u64 {
        self.timestamp_window_ms
    }

    /// Number of members of the committee in office at `index`.
    pub fn committee_size(&self, index: MilestoneIndex) -> usize {
        self.read_schedule().at(index).keys.len()
    }

    /// Milestone signatures needed (k of n) at `index`.
    pub fn threshold(&self, index: MilestoneIndex) -> u8 {
        self.read_schedule().at(index).threshold
    }
}

/// A transaction that passed stage 1 validation, with its id and canonical bytes (what a node
/// stores and inserts into the Tangle). Only the validator makes one, so holding one means
/// the checks ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidTransaction {
    tx: Transaction,
    id: TxId,
    bytes: Vec<u8>,
}

impl ValidTransaction {
    /// The decoded transaction.
    pub fn tx(&self) -> &Transaction {
        &self.tx
    }

    /// Its id.
    pub fn id(&self) -> TxId {
        self.id
    }

    /// Its parents (trunk, branch).
    pub fn parents(&self) -> &[TxId; 2] {
        &self.tx.parents
    }

    /// Its canonical encoding.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Takes it apart: `(transaction, id, canonical bytes)`.
    pub fn into_parts(self) -> (Transaction, TxId, Vec<u8>) {
        (self.tx, self.id, self.bytes)
    }
}

/// Validates one transaction with strict single signature verification.
///
/// `now_ms` is local time in ms since the Unix epoch (this crate reads no clock).
pub fn validate(
    bytes: &[u8],
    now_ms: u64,
    params: &ValidationParams,
) -> Result<ValidTransaction, ValidationError> {
    let (tx, id) = check_syntax(bytes, now_ms, params, Milestones::Strict)?;
    if let Payload::Signed(p) = &tx.payload {
        verify(
            &p.issuer,
            &p.signing_message(params.network_id),
            &p.signature,
        )
        .map_err(ValidationError::BadPayloadSignature)?;
    }
    Ok(ValidTransaction {
        tx,
        id,
        bytes: bytes.to_vec(),
    })
}

/// Validates a milestone transaction for a proof of confirmation or state, decoded (with
/// [`crate::codec::decode_with_id`], which checks the encoding) and its id: every other
/// check of [`validate`], as of `now_ms`, but its committee signatures are checked together with one
/// `ed25519_dalek::verify_batch` after the same pre-checks the payload batches use (see the
/// module docs), and strictly one by one only to name the culprit when the batch fails.
/// About half the cost of three strict verifications; the residual case of the module docs
/// applies to signatures a committee member crafted with its own key, so it lets no one
/// forge a milestone. Nodes keep [`validate`] (strict) for what they store.
pub fn validate_milestone_batched(
    tx: &Transaction,
    id: &TxId,
    now_ms: u64,
    params: &ValidationParams,
) -> Result<(), ValidationError> {
    if tx.milestone().is_none() {
        return Err(ValidationError::NotAMilestone);
    }
    check_decoded(tx, id, now_ms, params, Milestones::Batched)
}

/// How [`check_syntax`] checks a milestone's committee signatures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Milestones {
    /// One strict verification each.
    Strict,
    /// One batch ([`validate_milestone_batched`]).
    Batched,
}

/// Decode, id and every check but the payload signature (milestone signatures included,
/// since they are rare and checked against keys decoded once).
fn check_syntax(
    bytes: &[u8],
    now_ms: u64,
    params: &ValidationParams,
    milestones: Milestones,
) -> Result<(Transaction, TxId), ValidationError> {
    check_syntax_known(bytes, None, now_ms, params, milestones)
}

/// [`check_syntax`] with the id already computed by the caller (`Some`: it must be
/// [`crate::codec::id_of_encoding`] of `bytes`, e.g. the peering layer's, which needs it for
/// its seen-set), so the bytes are not hashed a second time.
fn check_syntax_known(
    bytes: &[u8],
    known_id: Option<TxId>,
    now_ms: u64,
    params: &ValidationParams,
    milestones: Milestones,
) -> Result<(Transaction, TxId), ValidationError> {
    let (tx, id) = match known_id {
        Some(id) => {
            let tx = decode(bytes)?;
            debug_assert_eq!(id, id_of_encoding(bytes), "known id is not the bytes' id");
            (tx, id)
        }
        None => decode_with_id(bytes)?,
    };
    check_decoded(&tx, &id, now_ms, params, milestones)?;
    Ok((tx, id))
}

/// [`check_syntax`] on a decoded transaction and its id.
fn check_decoded(
    tx: &Transaction,
    id: &TxId,
    now_ms: u64,
    params: &ValidationParams,
    milestones: Milestones,
) -> Result<(), ValidationError> {
    if tx.version != TX_VERSION {
        return Err(ValidationError::UnsupportedVersion(tx.version));
    }
    if tx.network_id != params.network_id {
        return Err(ValidationError::WrongNetwork {
            expected: params.network_id,
            got: tx.network_id,
        });
    }
    check_parents(&tx.parents, id)?;
    if tx.timestamp.abs_diff(now_ms) > params.timestamp_window_ms {
        return Err(ValidationError::TimestampOutOfWindow {
            timestamp: tx.timestamp,
            now: now_ms,
            window: params.timestamp_window_ms,
        });
    }
    let zeros = leading_zero_bits(id);
    if zeros < u32::from(params.pow_difficulty) {
        return Err(ValidationError::PowTooLow {
            needed: params.pow_difficulty,
            got: zeros,
        });
    }
    match &tx.payload {
        Payload::Empty => {}
        Payload::Signed(p) => check_body(&p.body)?,
        Payload::Milestone(m) => check_milestone(params, &tx.parents, m, milestones)?,
    }
    Ok(())
}

/// Parents must differ (unless both are the genesis root) and must not be `id` itself.
fn check_parents(parents: &[TxId; 2], id: &TxId) -> Result<(), ValidationError> {
    if parents[0] == parents[1] && parents[0] != TxId::GENESIS {
        return Err(ValidationError::DuplicateParents(parents[0]));
    }
    if parents.contains(id) {
        return Err(ValidationError::SelfParent);
    }
    Ok(())
}

fn check_body(body: &Body) -> Result<(), ValidationError> {
    match body {
        Body::Pay { memo, .. } if memo.len() > MAX_MEMO_LEN => Err(ValidationError::MemoTooLong {
            len: memo.len(),
            max: MAX_MEMO_LEN,
        }),
        Body::Anchor { tag, .. } if tag.len() > MAX_TAG_LEN => Err(ValidationError::TagTooLong {
            len: tag.len(),
            max: MAX_TAG_LEN,
        }),
        _ => Ok(()),
    }
}

/// Structure first (cheap), then the update, then the threshold, then every carried
/// signature, strictly; against the committee in office at the milestone's index.
fn check_milestone(
    params: &ValidationParams,
    parents: &[TxId; 2],
    m: &Milestone,
    mode: Milestones,
) -> Result<(), ValidationError> {
    if m.index == 0 {
        return Err(ValidationError::MilestoneIndexZero);
    }
    if m.signatures.len() > MAX_MILESTONE_SIGNATURES {
        return Err(ValidationError::TooManyMilestoneSignatures {
            count: m.signatures.len(),
            max: MAX_MILESTONE_SIGNATURES,
        });
    }
    if m.signatures.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(ValidationError::MilestoneSignersNotAscending);
    }
    if let Some(u) = &m.committee_update {
        check_update(m.index, u).map_err(ValidationError::BadCommitteeUpdate)?;
    }
    let schedule = params.read_schedule();
    let epoch = schedule.at(m.index);
    let verdict = check_signatures(params.network_id, epoch, parents, m, mode);
    match verdict {
        Err(e) if m.index > schedule.known_through() => {
            Err(ValidationError::MilestoneCommitteeNotKnown {
                index: m.index,
                known_through: schedule.known_through(),
                why: e.to_string(),
            })
        }
        v => v,
    }
}

/// The threshold and every signature of `m` against `epoch`.
fn check_signatures(
    network_id: NetworkId,
    epoch: &Epoch,
    parents: &[TxId; 2],
    m: &Milestone,
    mode: Milestones,
) -> Result<(), ValidationError> {
    let committee = epoch.keys.len();
    if let Some(&(signer, _)) = m
        .signatures
        .iter()
        .find(|(s, _)| usize::from(*s) >= committee)
    {
        return Err(ValidationError::UnknownMilestoneSigner { signer, committee });
    }
    if m.signatures.len() < usize::from(epoch.threshold) {
        return Err(ValidationError::MilestoneBelowThreshold {
            got: m.signatures.len(),
            needed: epoch.threshold,
        });
    }
    let msg = milestone_signing_message(network_id, parents, m);
    if mode == Milestones::Batched && batch_passes(epoch, &msg, m) {
        return Ok(());
    }
    for (signer, sig) in &m.signatures {
        verify_with_key(&epoch.keys[usize::from(*signer)], &msg, sig)
            .map_err(|_| ValidationError::BadMilestoneSignature { signer: *signer })?;
    }
    Ok(())
}

/// Whether the milestone's signatures (signers already checked to be committee members)
/// pass the strict pre-checks and one batch verification over `msg`.
fn batch_passes(epoch: &Epoch, msg: &[u8], m: &Milestone) -> bool {
    if !m
        .signatures
        .iter()
        .all(|(_, s)| r_passes_strict_prechecks(s))
    {
        return false;
    }
    let n = m.signatures.len();
    let messages: Vec<&[u8]> = vec![msg; n];
    let signatures: Vec<ed25519_dalek::Signature> = m
        .signatures
        .iter()
        .map(|(_, s)| ed25519_dalek::Signature::from_bytes(&s.0))
        .collect();
    let keys: Vec<VerifyingKey> = m
        .signatures
        .iter()
        .map(|(i, _)| epoch.keys[usize::from(*i)])
        .collect();
    ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok()
}

/// `y` coordinates (little-endian, sign bit clear) of the eight small-order points: 0
/// (order 4), 1 (identity), p - 1 (order 2), and the two of the order-8 points. A point
/// whose canonical `y` is not here has large order.
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// Whether a signature's `R` could pass strict verification: its `y` is canonical (`< p`)
/// and not that of a small-order point. (With `y` canonical and large order, the sign bit
/// cannot be a non-canonical `x = 0`, since only `y = +-1` have `x = 0`.) Strict verification
/// rejects everything this rejects; batch verification would not.
fn r_passes_strict_prechecks(sig: &Signature) -> bool {
    let mut y: [u8; 32] = sig.0[..32].try_into().expect("32 bytes");
    y[31] &= 0x7f;
    // y >= p = 2^255 - 19 exactly when y is 0x7fff...ff(ed..ff) in little-endian.
    let non_canonical = y[31] == 0x7f && y[1..31].iter().all(|&b| b == 0xff) && y[0] >= 0xed;
    !non_canonical && !SMALL_ORDER_Y.contains(&y)
}

/// Shards of the key cache; a power of two.
const KEY_CACHE_SHARDS: usize = 16;
/// Default number of cached issuer keys (about 240 bytes each).
pub const DEFAULT_KEY_CACHE_CAPACITY: usize = 16 * 1024;

/// A bounded concurrent cache of decoded issuer keys: decompressing a point costs about
/// 4 us of a 35 us verification, and devices sign many payloads each. Sharded by a seeded
/// hash (so chosen keys cannot crowd one shard); a full shard is cleared, which keeps the
/// bound with no bookkeeping on hits. Only valid, non-weak keys are cached.
struct KeyCache {
    hasher: hashbrown::DefaultHashBuilder,
    shards: Vec<Mutex<hashbrown::HashMap<[u8; 32], VerifyingKey>>>,
    shard_capacity: usize,
}

impl KeyCache {
    fn new(capacity: usize) -> Self {
        KeyCache {
            hasher: hashbrown::DefaultHashBuilder::default(),
            shards: (0..KEY_CACHE_SHARDS)
                .map(|_| Mutex::new(hashbrown::HashMap::new()))
                .collect(),
            shard_capacity: capacity.div_ceil(KEY_CACHE_SHARDS),
        }
    }

    fn get(&self, issuer: &Address) -> Result<VerifyingKey, SignatureError> {
        if self.shard_capacity == 0 {
            return verifying_key(issuer);
        }
        let shard = (self.hasher.hash_one(issuer.0) >> 32) as usize & (KEY_CACHE_SHARDS - 1);
        let shard = &self.shards[shard];
        // A poisoned shard still holds only valid keys: keep using it.
        if let Some(vk) = shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&issuer.0)
        {
            return Ok(*vk);
        }
        let vk = verifying_key(issuer)?;
        let mut map = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.shard_capacity {
            map.clear();
        }
        map.insert(issuer.0, vk);
        Ok(vk)
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

/// Smallest and largest chunk handed to one `verify_batch` call.
#[cfg(feature = "parallel")]
const MIN_CHUNK: usize = 64;
const MAX_CHUNK: usize = 1024;

/// Parallel stage 1 validator: rayon over chunks, Ed25519 batch verification per chunk,
/// strict single verification to find the culprits of a failed batch, and a cache of issuer
/// keys. With the `parallel` feature it runs on the current rayon pool (use
/// `ThreadPool::install` to choose one); without it, on the calling thread.
pub struct BatchValidator {
    params: ValidationParams,
    keys: KeyCache,
    /// False only for [`BatchValidator::skipping_payload_signatures`].
    payload_signatures: bool,
}

/// A payload signature waiting for its chunk's batch.
struct PendingSignature {
    /// Position of the transaction in its chunk.
    slot: usize,
    key: VerifyingKey,
    message: Vec<u8>,
    signature: ed25519_dalek::Signature,
}

impl BatchValidator {
    /// A validator for the network `params` describe, caching up to
    /// [`DEFAULT_KEY_CACHE_CAPACITY`] issuer keys.
    pub fn new(params: ValidationParams) -> Self {
        Self::with_key_cache_capacity(params, DEFAULT_KEY_CACHE_CAPACITY)
    }

    /// A validator caching up to `capacity` issuer keys (0 disables the cache).
    pub fn with_key_cache_capacity(params: ValidationParams, capacity: usize) -> Self {
        BatchValidator {
            params,
            keys: KeyCache::new(capacity),
            payload_signatures: true,
        }
    }

    /// For simulations at scale only (`tangle-sim run --mode node --cheap-crypto`), never
    /// for a node: a validator making every check but the payload signature (Ed25519)
    /// verification. The issuer key must still decode and the signature's `R` still pass
    /// the strict pre-checks; milestone signatures are verified as always.
    pub fn skipping_payload_signatures(params: ValidationParams) -> Self {
        BatchValidator {
            payload_signatures: false,
            ..Self::new(params)
        }
    }

    /// Whether payload signatures are verified (false only for
    /// [`BatchValidator::skipping_payload_signatures`]).
    pub fn verifies_payload_signatures(&self) -> bool {
        self.payload_signatures
    }

    /// The network rules in use.
    pub fn params(&self) -> &ValidationParams {
        &self.params
    }

    /// Number of issuer keys currently cached.
    pub fn cached_keys(&self) -> usize {
        self.keys.len()
    }

    /// Validates one transaction with strict single verification, using the key cache. Same
    /// verdict as [`validate`].
    pub fn validate_one(
        &self,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<ValidTransaction, ValidationError> {
        self.validate_one_known(bytes, None, now_ms)
    }

    /// [`BatchValidator::validate_one`] with the id already computed by the caller (`Some`:
    /// it must be [`crate::codec::id_of_encoding`] of `bytes`; it is not hashed again).
    pub fn validate_one_known(
        &self,
        bytes: &[u8],
        known_id: Option<TxId>,
        now_ms: u64,
    ) -> Result<ValidTransaction, ValidationError> {
        let (tx, id) =
            check_syntax_known(bytes, known_id, now_ms, &self.params, Milestones::Strict)?;
        if let Payload::Signed(p) = &tx.payload {
            let key = self
                .keys
                .get(&p.issuer)
                .map_err(ValidationError::BadPayloadSignature)?;
            if !self.payload_signatures {
                if !r_passes_strict_prechecks(&p.signature) {
                    return Err(ValidationError::BadPayloadSignature(
                        SignatureError::Invalid,
                    ));
                }
            } else {
                verify_with_key(
                    &key,
                    &p.signing_message(self.params.network_id),
                    &p.signature,
                )
                .map_err(ValidationError::BadPayloadSignature)?;
            }
        }
        Ok(ValidTransaction {
            tx,
            id,
            bytes: bytes.to_vec(),
        })
    }

    /// Validates `items` (in parallel on the current rayon pool with the `parallel` feature,
    /// on the calling thread without it); returns one verdict per item,
    /// in input order, the same verdict [`validate`] gives for that item alone (see the module
    /// documentation for the one residual case).
    pub fn validate_batch<B: AsRef<[u8]> + Sync>(
        &self,
        items: &[B],
        now_ms: u64,
    ) -> Vec<Result<ValidTransaction, ValidationError>> {
        self.validate_items(items, None, now_ms)
    }

    /// [`BatchValidator::validate_batch`] with each item's id already computed by the caller:
    /// `ids[i]` must be [`crate::codec::id_of_encoding`] of `items[i]` (the peering layer
    /// hashes every received transaction for its seen-set; validation then does not hash it
    /// again). Same verdicts as [`BatchValidator::validate_batch`].
    ///
    /// # Panics
    /// If `ids` and `items` differ in length.
    pub fn validate_batch_with_ids<B: AsRef<[u8]> + Sync>(
        &self,
        items: &[B],
        ids: &[TxId],
        now_ms: u64,
    ) -> Vec<Result<ValidTransaction, ValidationError>> {
        assert_eq!(items.len(), ids.len(), "one id per item");
        self.validate_items(items, Some(ids), now_ms)
    }

    fn validate_items<B: AsRef<[u8]> + Sync>(
        &self,
        items: &[B],
        ids: Option<&[TxId]>,
        now_ms: u64,
    ) -> Vec<Result<ValidTransaction, ValidationError>> {
        #[cfg(feature = "parallel")]
        {
            let threads = rayon::current_num_threads().max(1);
            let chunk = items.len().div_ceil(threads).clamp(MIN_CHUNK, MAX_CHUNK);
            items
                .par_chunks(chunk)
                .enumerate()
                .flat_map_iter(|(k, c)| {
                    let ids = ids.map(|ids| &ids[k * chunk..k * chunk + c.len()]);
                    self.validate_chunk(c, ids, now_ms)
                })
                .collect()
        }
        #[cfg(not(feature = "parallel"))]
        {
            items
                .chunks(MAX_CHUNK)
                .enumerate()
                .flat_map(|(k, c)| {
                    let ids = ids.map(|ids| &ids[k * MAX_CHUNK..k * MAX_CHUNK + c.len()]);
                    self.validate_chunk(c, ids, now_ms)
                })
                .collect()
        }
    }

    /// One chunk on one worker: checks, then one batch verification of its payload
    /// signatures, then strict single checks only if the batch failed.
    fn validate_chunk<B: AsRef<[u8]>>(
        &self,
        chunk: &[B],
        ids: Option<&[TxId]>,
        now_ms: u64,
    ) -> Vec<Result<ValidTransaction, ValidationError>> {
        let mut verdicts = Vec::with_capacity(chunk.len());
        let mut pending = Vec::with_capacity(chunk.len());
        for (slot, bytes) in chunk.iter().enumerate() {
            let bytes = bytes.as_ref();
            let known_id = ids.map(|ids| ids[slot]);
            let verdict =
                check_syntax_known(bytes, known_id, now_ms, &self.params, Milestones::Strict)
                    .and_then(|(tx, id)| {
                        if let Payload::Signed(p) = &tx.payload {
                            pending.push(self.prepare_signature(slot, p)?);
                        }
                        Ok(ValidTransaction {
                            tx,
                            id,
                            bytes: bytes.to_vec(),
                        })
                    });
            verdicts.push(verdict);
        }
        if pending.is_empty() || !self.payload_signatures {
            return verdicts;
        }
        let messages: Vec<&[u8]> = pending.iter().map(|p| p.message.as_slice()).collect();
        let signatures: Vec<ed25519_dalek::Signature> =
            pending.iter().map(|p| p.signature).collect();
        let keys: Vec<VerifyingKey> = pending.iter().map(|p| p.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_err() {
            for p in &pending {
                if p.key.verify_strict(&p.message, &p.signature).is_err() {
                    verdicts[p.slot] = Err(ValidationError::BadPayloadSignature(
                        SignatureError::Invalid,
                    ));
                }
            }
        }
        verdicts
    }

    /// Key from the cache, message, and the checks strict verification makes that a batch
    /// would skip.
    fn prepare_signature(
        &self,
        slot: usize,
        p: &SignedPayload,
    ) -> Result<PendingSignature, ValidationError> {
        let key = self
            .keys
            .get(&p.issuer)
            .map_err(ValidationError::BadPayloadSignature)?;
        if !r_passes_strict_prechecks(&p.signature) {
            return Err(ValidationError::BadPayloadSignature(
                SignatureError::Invalid,
            ));
        }
        Ok(PendingSignature {
            slot,
            key,
            // Not needed when the signature is not verified.
            message: if self.payload_signatures {
                p.signing_message(self.params.network_id)
            } else {
                Vec::new()
            },
            signature: ed25519_dalek::Signature::from_bytes(&p.signature.0),
        })
    }
}

impl std::fmt::Debug for BatchValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchValidator")
            .field("params", &self.params)
            .field("cached_keys", &self.keys.len())
            .field("payload_signatures", &self.payload_signatures)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::encode;
    use crate::crypto::Keypair;
    use crate::genesis::{Allocation, DEFAULT_TIMESTAMP_WINDOW_MS};
    use crate::ids::Digest;

    const NOW: u64 = 1_700_000_000_000;

    fn committee() -> Vec<Keypair> {
        (0..3u8)
            .map(|i| Keypair::from_seed(&[100 + i; 32]))
            .collect()
    }

    fn genesis(pow_difficulty: u8) -> Genesis {
        Genesis {
            network_name: "validate-test".into(),
            timestamp: NOW - 1000,
            pow_difficulty,
            timestamp_window_ms: DEFAULT_TIMESTAMP_WINDOW_MS,
            committee: committee().iter().map(Keypair::address).collect(),
            threshold: 2,
            allocations: vec![Allocation {
                address: Address([3; 32]),
                amount: 1000,
            }],
        }
    }

    fn params() -> ValidationParams {
        ValidationParams::new(&genesis(0)).unwrap()
    }

    fn tx_with(payload: Payload) -> Transaction {
        Transaction {
            version: TX_VERSION,
            network_id: params().network_id(),
            parents: [TxId([1; 32]), TxId([2; 32])],
            timestamp: NOW,
            payload,
            nonce: 0,
        }
    }

    fn pay(kp: &Keypair, seq: u64, memo: Vec<u8>) -> Transaction {
        let body = Body::Pay {
            to: Address([9; 32]),
            amount: 5 + seq,
            memo,
        };
        tx_with(Payload::Signed(SignedPayload::sign(
            kp,
            params().network_id(),
            seq,
            body,
        )))
    }

    fn milestone(index: u32, signers: &[u8]) -> Transaction {
        let mut tx = tx_with(Payload::Empty);
        let digest = Digest([7; 32]);
        let mut m = Milestone {
            index,
            timestamp: NOW,
            previous: TxId([1; 32]),
            confirmed_root: Digest([2; 32]),
            applied_root: Digest([3; 32]),
            state_root: Digest([4; 32]),
            ledger_digest: digest,
            signatures: Vec::new(),
            committee_update: None,
        };
        let msg = milestone_signing_message(tx.network_id, &tx.parents, &m);
        let keys = committee();
        m.signatures = signers
            .iter()
            .map(|&s| (s, keys[usize::from(s) % keys.len()].sign(&msg)))
            .collect();
        tx.payload = Payload::Milestone(m);
        tx
    }

    /// Single and batch (on pools of 1 and 2 threads, with and without the key cache) must
    /// agree; returns the single verdict.
    fn check(tx: &Transaction) -> Result<ValidTransaction, ValidationError> {
        check_bytes(&encode(tx))
    }

    fn check_bytes(bytes: &[u8]) -> Result<ValidTransaction, ValidationError> {
        let p = params();
        let single = validate(bytes, NOW, &p);
        let validator = BatchValidator::new(p.clone());
        assert_eq!(validator.validate_one(bytes, NOW), single);
        assert_eq!(
            validator.validate_batch(&[bytes], NOW),
            vec![single.clone()]
        );
        let uncached = BatchValidator::with_key_cache_capacity(p.clone(), 0);
        assert_eq!(uncached.validate_batch(&[bytes], NOW), vec![single.clone()]);
        // A proof's milestone check (signatures in one batch) agrees on milestones.
        if let Ok((tx, id)) = decode_with_id(bytes) {
            let batched = validate_milestone_batched(&tx, &id, NOW, &p);
            if tx.milestone().is_some() {
                assert_eq!(batched, single.clone().map(|_| ()));
            } else {
                assert!(batched.is_err());
            }
        }
        single
    }

    fn invalid_key() -> Address {
        // The first y with no curve point; searched, so the test does not rely on a constant.
        (2u8..=255)
            .map(|b| {
                let mut k = [0u8; 32];
                k[0] = b;
                Address(k)
            })
            .find(|a| VerifyingKey::from_bytes(&a.0).is_err())
            .expect("about half of all y have no point")
    }

    #[test]
    fn valid_payment_empty_and_milestone_pass() {
        let kp = Keypair::from_seed(&[1; 32]);
        let tx = pay(&kp, 0, b"kWh".to_vec());
        let v = check(&tx).unwrap();
        assert_eq!(v.tx(), &tx);
        assert_eq!(v.id(), tx.id());
        assert_eq!(v.bytes(), encode(&tx).as_slice());
        assert_eq!(v.parents(), &tx.parents);
        let mut genesis_child = tx_with(Payload::Empty);
        genesis_child.parents = [TxId::GENESIS, TxId::GENESIS];
        check(&genesis_child).unwrap();
        check(&milestone(1, &[0, 2])).unwrap();
        check(&milestone(5, &[0, 1, 2])).unwrap();
    }

    #[test]
    fn decode_error() {
        assert!(matches!(
            check_bytes(b"not a transaction"),
            Err(ValidationError::Decode(_))
        ));
        let mut b = encode(&tx_with(Payload::Empty));
        b.push(0);
        assert_eq!(
            check_bytes(&b),
            Err(ValidationError::Decode(DecodeError::TrailingBytes(1)))
        );
    }

    #[test]
    fn unsupported_version() {
        let mut tx = tx_with(Payload::Empty);
        tx.version = TX_VERSION + 1;
        assert_eq!(
            check(&tx),
            Err(ValidationError::UnsupportedVersion(TX_VERSION + 1))
        );
    }

    #[test]
    fn wrong_network() {
        let mut tx = tx_with(Payload::Empty);
        tx.network_id ^= 1;
        assert_eq!(
            check(&tx),
            Err(ValidationError::WrongNetwork {
                expected: params().network_id(),
                got: tx.network_id
            })
        );
    }

    #[test]
    fn duplicate_and_self_parents() {
        let mut tx = tx_with(Payload::Empty);
        tx.parents = [TxId([4; 32]); 2];
        assert_eq!(
            check(&tx),
            Err(ValidationError::DuplicateParents(TxId([4; 32])))
        );
        // A transaction cannot name its own id without a hash preimage, so the rule is
        // exercised on the check itself.
        let id = TxId([5; 32]);
        assert_eq!(
            check_parents(&[TxId([6; 32]), id], &id),
            Err(ValidationError::SelfParent)
        );
        assert_eq!(
            check_parents(&[id, TxId([6; 32])], &id),
            Err(ValidationError::SelfParent)
        );
        assert_eq!(check_parents(&[TxId::GENESIS; 2], &id), Ok(()));
    }

    #[test]
    fn timestamp_window() {
        let window = DEFAULT_TIMESTAMP_WINDOW_MS;
        for (ts, ok) in [
            (NOW - window, true),
            (NOW + window, true),
            (NOW - window - 1, false),
            (NOW + window + 1, false),
        ] {
            let mut tx = tx_with(Payload::Empty);
            tx.timestamp = ts;
            let r = check(&tx);
            if ok {
                assert!(r.is_ok(), "{ts}: {r:?}");
            } else {
                assert_eq!(
                    r,
                    Err(ValidationError::TimestampOutOfWindow {
                        timestamp: ts,
                        now: NOW,
                        window
                    })
                );
            }
        }
    }

    #[test]
    fn pow_too_low() {
        let needed = 12;
        let p = ValidationParams::new(&genesis(needed)).unwrap();
        let mut tx = tx_with(Payload::Empty);
        tx.network_id = p.network_id();
        let got = leading_zero_bits(&tx.id());
        assert!(
            got < u32::from(needed),
            "fixed inputs, id has {got} zero bits"
        );
        let bytes = encode(&tx);
        assert_eq!(
            validate(&bytes, NOW, &p),
            Err(ValidationError::PowTooLow { needed, got })
        );
        assert_eq!(
            BatchValidator::new(p.clone()).validate_batch(&[&bytes], NOW),
            vec![Err(ValidationError::PowTooLow { needed, got })]
        );
        // Solving makes it pass; both paths agree.
        crate::pow::solve(&mut tx, needed);
        let bytes = encode(&tx);
        assert!(validate(&bytes, NOW, &p).is_ok());
        assert!(BatchValidator::new(p).validate_batch(&[bytes], NOW)[0].is_ok());
    }

    #[test]
    fn memo_and_tag_too_long() {
        let kp = Keypair::from_seed(&[1; 32]);
        assert!(check(&pay(&kp, 0, vec![0; MAX_MEMO_LEN])).is_ok());
        assert_eq!(
            check(&pay(&kp, 0, vec![0; MAX_MEMO_LEN + 1])),
            Err(ValidationError::MemoTooLong {
                len: MAX_MEMO_LEN + 1,
                max: MAX_MEMO_LEN
            })
        );
        let anchor = |len| {
            tx_with(Payload::Signed(SignedPayload::sign(
                &kp,
                params().network_id(),
                1,
                Body::Anchor {
                    tag: vec![1; len],
                    digest: Digest([2; 32]),
                },
            )))
        };
        assert!(check(&anchor(MAX_TAG_LEN)).is_ok());
        assert_eq!(
            check(&anchor(MAX_TAG_LEN + 1)),
            Err(ValidationError::TagTooLong {
                len: MAX_TAG_LEN + 1,
                max: MAX_TAG_LEN
            })
        );
    }

    fn with_signed(tx: &Transaction, f: impl FnOnce(&mut SignedPayload)) -> Transaction {
        let mut tx = tx.clone();
        if let Payload::Signed(p) = &mut tx.payload {
            f(p);
        }
        tx
    }

    #[test]
    fn bad_payload_signatures() {
        let kp = Keypair::from_seed(&[1; 32]);
        let tx = pay(&kp, 0, vec![]);
        let bad = |e| Err(ValidationError::BadPayloadSignature(e));
        // Flipped bit in R, in s, and a changed signed field.
        for byte in [0, 5, 31, 32, 40, 63] {
            let t = with_signed(&tx, |p| p.signature.0[byte] ^= 0x10);
            assert_eq!(check(&t), bad(SignatureError::Invalid), "byte {byte}");
        }
        let t = with_signed(&tx, |p| p.seq += 1);
        assert_eq!(check(&t), bad(SignatureError::Invalid));
        // Weak key (identity point), invalid key encoding.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let t = with_signed(&tx, |p| p.issuer = Address(identity));
        assert_eq!(check(&t), bad(SignatureError::WeakKey));
        let t = with_signed(&tx, |p| p.issuer = invalid_key());
        assert_eq!(check(&t), bad(SignatureError::InvalidKey));
    }

    /// The simulation-only validator skips exactly the payload signature verification:
    /// a wrong signature passes, a weak key, a small-order `R` and another network do
    /// not, and a valid transaction gets the same verdict as with the full validator.
    #[test]
    fn skipping_payload_signatures_skips_only_the_verification() {
        let kp = Keypair::from_seed(&[1; 32]);
        let tx = pay(&kp, 0, vec![]);
        let skipping = BatchValidator::skipping_payload_signatures(params());
        assert!(!skipping.verifies_payload_signatures());
        assert!(BatchValidator::new(params()).verifies_payload_signatures());
        let both = |t: &Transaction| {
            let bytes = encode(t);
            let one = skipping.validate_one(&bytes, NOW);
            assert_eq!(skipping.validate_batch(&[&bytes], NOW), vec![one.clone()]);
            one
        };
        assert_eq!(both(&tx), check(&tx));
        let wrong = with_signed(&tx, |p| p.seq += 1);
        assert!(check(&wrong).is_err());
        assert!(both(&wrong).is_ok());
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = with_signed(&tx, |p| p.issuer = Address(identity));
        assert_eq!(
            both(&weak),
            Err(ValidationError::BadPayloadSignature(
                SignatureError::WeakKey
            ))
        );
        let small_r = with_signed(&tx, |p| {
            p.signature.0[..32].copy_from_slice(&SMALL_ORDER_Y[0])
        });
        assert_eq!(
            both(&small_r),
            Err(ValidationError::BadPayloadSignature(
                SignatureError::Invalid
            ))
        );
        let other_network = Transaction {
            network_id: params().network_id() ^ 1,
            ..tx.clone()
        };
        assert!(matches!(
            both(&other_network),
            Err(ValidationError::WrongNetwork { .. })
        ));
    }

    #[test]
    fn small_order_and_non_canonical_r_rejected_by_both_paths() {
        let kp = Keypair::from_seed(&[1; 32]);
        let tx = pay(&kp, 0, vec![]);
        let mut rs: Vec<[u8; 32]> = SMALL_ORDER_Y.to_vec();
        for y in SMALL_ORDER_Y {
            let mut neg = y;
            neg[31] |= 0x80;
            rs.push(neg);
        }
        // Non-canonical encodings of 0 and 1 (y + p).
        let mut p0 = [0xff; 32];
        p0[0] = 0xed;
        p0[31] = 0x7f;
        let mut p1 = p0;
        p1[0] = 0xee;
        rs.extend([p0, p1]);
        for r in rs {
            assert!(!r_passes_strict_prechecks(&Signature(
                [r, [0; 32]].concat().try_into().unwrap()
            )));
            let t = with_signed(&tx, |p| p.signature.0[..32].copy_from_slice(&r));
            assert_eq!(
                check(&t),
                Err(ValidationError::BadPayloadSignature(
                    SignatureError::Invalid
                ))
            );
        }
        if let Payload::Signed(p) = &tx.payload {
            assert!(r_passes_strict_prechecks(&p.signature));
        }
    }

    /// The table is exactly the `y` of the eight small-order points.
    #[test]
    fn small_order_table_matches_the_curve() {
        use curve25519_dalek::constants::EIGHT_TORSION;
        let mut ys: Vec<[u8; 32]> = EIGHT_TORSION
            .iter()
            .map(|pt| {
                let mut y = pt.compress().to_bytes();
                y[31] &= 0x7f;
                y
            })
            .collect();
        ys.sort();
        ys.dedup();
        let mut table = SMALL_ORDER_Y.to_vec();
        table.sort();
        assert_eq!(ys, table);
    }

    #[test]
    fn milestone_errors() {
        assert_eq!(
            check(&milestone(0, &[0, 1])),
            Err(ValidationError::MilestoneIndexZero)
        );
        let many: Vec<u8> = (0..=MAX_MILESTONE_SIGNATURES as u8).collect();
        assert_eq!(
            check(&milestone(1, &many)),
            Err(ValidationError::TooManyMilestoneSignatures {
                count: MAX_MILESTONE_SIGNATURES + 1,
                max: MAX_MILESTONE_SIGNATURES
            })
        );
        assert_eq!(
            check(&milestone(1, &[1, 0])),
            Err(ValidationError::MilestoneSignersNotAscending)
        );
        assert_eq!(
            check(&milestone(1, &[1, 1])),
            Err(ValidationError::MilestoneSignersNotAscending)
        );
        assert_eq!(
            check(&milestone(1, &[0, 3])),
            Err(ValidationError::UnknownMilestoneSigner {
                signer: 3,
                committee: 3
            })
        );
        assert_eq!(
            check(&milestone(1, &[2])),
            Err(ValidationError::MilestoneBelowThreshold { got: 1, needed: 2 })
        );
        // A signature by the wrong member, and a tampered field after signing.
        let mut tx = milestone(1, &[0, 1]);
        if let Payload::Milestone(m) = &mut tx.payload {
            m.signatures[1].1 = m.signatures[0].1;
        }
        assert_eq!(
            check(&tx),
            Err(ValidationError::BadMilestoneSignature { signer: 1 })
        );
        let mut tx = milestone(1, &[0, 1]);
        if let Payload::Milestone(m) = &mut tx.payload {
            m.index = 2;
        }
        assert_eq!(
            check(&tx),
            Err(ValidationError::BadMilestoneSignature { signer: 0 })
        );
        // Signatures are bound to the carrying transaction's parents.
        let mut tx = milestone(1, &[0, 1]);
        tx.parents[0] = TxId([8; 32]);
        assert_eq!(
            check(&tx),
            Err(ValidationError::BadMilestoneSignature { signer: 0 })
        );
    }

    #[test]
    fn params_reject_bad_genesis_and_keys() {
        let mut g = genesis(0);
        g.threshold = 4;
        assert!(matches!(
            ValidationParams::new(&g),
            Err(ParamsError::Genesis(GenesisError::BadThreshold { .. }))
        ));
        let mut g = genesis(0);
        g.committee[1] = invalid_key();
        assert_eq!(
            ValidationParams::new(&g).err(),
            Some(ParamsError::CommitteeKey {
                index: 1,
                source: SignatureError::InvalidKey
            })
        );
        let p = params();
        assert_eq!(p.committee_size(1), 3);
        assert_eq!(p.threshold(1), 2);
        assert_eq!(p.pow_difficulty(), 0);
        assert_eq!(p.timestamp_window_ms(), DEFAULT_TIMESTAMP_WINDOW_MS);
    }

    /// A deterministic mix: valid payments from a few issuers, and every kind of bad
    /// signature, plus syntactic failures and milestones.
    fn mixed(n: usize) -> (Vec<Vec<u8>>, usize) {
        let issuers: Vec<Keypair> = (0..7u8).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut bad = 0;
        let items = (0..n)
            .map(|i| {
                let tx = pay(&issuers[i % issuers.len()], i as u64, vec![i as u8; i % 8]);
                let tx = match (i * 7919) % 23 {
                    0 => with_signed(&tx, |p| p.signature.0[i % 64] ^= 1 << (i % 8)),
                    1 => with_signed(&tx, |p| p.seq += 1),
                    2 => with_signed(&tx, |p| p.issuer = Address(identity)),
                    3 => with_signed(&tx, |p| {
                        p.signature.0[..32].copy_from_slice(&SMALL_ORDER_Y[i % 5])
                    }),
                    4 => with_signed(&tx, |p| p.issuer = invalid_key()),
                    // s + l: a non-canonical s fails the whole batch (forcing fallback).
                    5 => with_signed(&tx, |p| p.signature.0[63] |= 0x10),
                    6 => milestone(i as u32 + 1, &[0, 1]),
                    7 => {
                        let mut t = tx;
                        t.timestamp = 0;
                        t
                    }
                    _ => tx,
                };
                let bytes = encode(&tx);
                if validate(&bytes, NOW, &params()).is_err() {
                    bad += 1;
                }
                bytes
            })
            .collect();
        (items, bad)
    }

    #[cfg(feature = "parallel")]
    #[test]
    fn batch_matches_single_on_mixes_at_many_sizes() {
        let p = params();
        let (all, bad) = mixed(300);
        assert!(bad > 50 && bad < 150, "the mix has both kinds: {bad}");
        let single: Vec<_> = all.iter().map(|b| validate(b, NOW, &p)).collect();
        let validator = BatchValidator::new(p);
        for threads in [1, 3] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            // 3 threads cut 300 items into 3 chunks, 129 into 2 (the minimum chunk is 64).
            for n in [1, 7, 64, 65, 129, 300] {
                let got = pool.install(|| validator.validate_batch(&all[..n], NOW));
                assert_eq!(got, single[..n], "{threads} threads, {n} items");
                // With the ids a peering layer computed: the same verdicts (chunked the
                // same way, each id with its own bytes).
                let ids: Vec<TxId> = all[..n].iter().map(|b| id_of_encoding(b)).collect();
                let got = pool.install(|| validator.validate_batch_with_ids(&all[..n], &ids, NOW));
                assert_eq!(got, single[..n], "{threads} threads, {n} items, known ids");
            }
        }
        // All-valid batches take the fast path and accept everything.
        let good: Vec<&[u8]> = all
            .iter()
            .zip(&single)
            .filter(|(_, v)| v.is_ok())
            .map(|(b, _)| b.as_slice())
            .collect();
        assert!(validator
            .validate_batch(&good, NOW)
            .iter()
            .all(Result::is_ok));
        assert!(validator.cached_keys() >= 7);
    }

    #[test]
    fn known_ids_give_the_same_verdicts_on_every_chunk() {
        // More than one chunk without the `parallel` feature too (MAX_CHUNK each), so
        // each chunk must get its own slice of the ids.
        let (all, _) = mixed(MAX_CHUNK + 100);
        let p = params();
        let validator = BatchValidator::new(p.clone());
        let ids: Vec<TxId> = all.iter().map(|b| id_of_encoding(b)).collect();
        let got = validator.validate_batch_with_ids(&all, &ids, NOW);
        assert_eq!(got, validator.validate_batch(&all, NOW));
        for (v, id) in got.iter().zip(&ids) {
            if let Ok(v) = v {
                assert_eq!(v.id, *id);
            }
        }
        let one = validator.validate_one_known(&all[3], Some(ids[3]), NOW);
        assert_eq!(one, validate(&all[3], NOW, &p));
    }

    #[test]
    #[should_panic(expected = "one id per item")]
    fn known_ids_must_match_the_items() {
        let (all, _) = mixed(3);
        let validator = BatchValidator::new(params());
        let _ = validator.validate_batch_with_ids(&all, &[], NOW);
    }

    #[test]
    fn key_cache_is_bounded() {
        let validator = BatchValidator::with_key_cache_capacity(params(), 32);
        let items: Vec<Vec<u8>> = (0..200u8)
            .map(|i| encode(&pay(&Keypair::from_seed(&[i; 32]), 0, vec![])))
            .collect();
        assert!(validator
            .validate_batch(&items, NOW)
            .iter()
            .all(Result::is_ok));
        assert!(validator.cached_keys() <= 32, "{}", validator.cached_keys());
        assert!(validator.cached_keys() > 0);
    }
}
