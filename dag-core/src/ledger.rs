//! The white-flag [`Ledger`]: accounts, payment channels, and the deterministic application
//! of a milestone's confirmed payloads (ARCHITECTURE.md, "The protocol").
//!
//! The Tangle computes the white-flag order of a milestone's cone (post-order DFS, trunk
//! before branch) and hands the signed payloads, in that order, to
//! [`Ledger::apply_milestone`]. Each payload is either applied or marked conflicting with a
//! [`ConflictReason`]. A conflicting payload moves no value; if it was the issuer's next
//! in sequence it still **consumes its sequence number** (see the rules). Payload signatures were
//! checked on arrival (stage 1); the ledger checks only what depends on state, including the
//! channel vouchers of `Claim`s.
//!
//! # Rules
//! - **Sequence**: a payload applies only if its `seq` equals the issuer's `next_seq`;
//!   applying any payload (including an `Anchor`) increments `next_seq`. So each
//!   `(issuer, seq)` is applied at most once, in order.
//! - **Conflicts are final**: a payload whose `seq` equals the issuer's `next_seq` but which
//!   conflicts for its content (balance, channel state, voucher, ...) increments `next_seq`
//!   all the same and changes nothing else, as a failed Ethereum transaction uses its nonce.
//!   So no copy of a conflicting payload can apply later (every copy's `seq` is used), the
//!   issuer's next payload is not blocked behind it, and a status reported as conflicting
//!   never changes. The one non-final outcome is [`ConflictReason::SeqGap`] (an earlier
//!   payload is missing): a later copy may apply once the gap is filled.
//! - **Pay**: moves `amount > 0` from the issuer to `to` (paying oneself only bumps `seq`).
//! - **Open**: the issuer (payer) locks `deposit > 0` in a channel to another address, with
//!   `expires_at` after the current milestone; its id is
//!   [`crate::crypto::channel_id`]`(payer, seq)`.
//! - **Claim**: the payee presents the payer's voucher for a cumulative `amount <= deposit`
//!   while `index <= expires_at`; the payee gets `amount`, the payer the remainder, and the
//!   channel closes. A claim of 0 is a cooperative close that returns everything to the payer.
//! - **Refund**: after expiry (`index > expires_at`) the payer takes back the whole deposit
//!   of an unclaimed channel, which closes.
//!
//! # Invariants
//! The sum of all balances plus the deposits of open channels equals the supply fixed by the
//! genesis; no balance is negative (they are `u64`) and every addition is checked, so an
//! overflow is a conflict, never a panic. [`Ledger::check_invariants`] verifies them.
//!
//! # Ledger digest
//! After each milestone the digest becomes, with integers little-endian:
//!
//! ```text
//! BLAKE2b-256( "tangle/ledger/v2" || previous digest || index (u32)
//!            || for each payload, in order:   'P' || tx id || outcome code (u8)
//!            || for each touched account, ascending address:
//!                   'A' || address || balance (u64) || next_seq (u64)
//!            || for each touched channel, ascending id:
//!                   'C' || id || payer || payee || deposit (u64) || expires_at (u32)
//!                       || closed (u8) || claimed (u64) )
//! ```
//!
//! where the outcome code is 0 for applied and [`ConflictReason::code`] otherwise. Every
//! entry has a fixed length after its marker, so the encoding is unambiguous. The digest
//! before the first milestone is BLAKE2b-256 of the genesis' canonical encoding.

use blake2::Digest as _;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::committee::Rotation;
use crate::crypto::{self, Blake2b256};
use crate::genesis::{Genesis, GenesisError};
use crate::ids::{Address, ChannelId, Digest, TxId};
use crate::state_tree::{key_of, value_hash, StateTree, Update, ACCOUNT_TAG, CHANNEL_TAG};
use crate::types::{Body, MilestoneIndex, NetworkId, SignedPayload};

// v2: conflicting payloads consume their sequence number.
const DIGEST_TAG: &[u8] = b"tangle/ledger/v2";

/// An account's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Spendable balance, in base units.
    pub balance: u64,
    /// The `seq` the account's next payload must carry.
    pub next_seq: u64,
}

/// A unidirectional payment channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// Who opened it and signs vouchers.
    pub payer: Address,
    /// Who may claim.
    pub payee: Address,
    /// Amount locked at opening.
    pub deposit: u64,
    /// Last milestone index at which a claim is accepted; refunds only after it.
    pub expires_at: MilestoneIndex,
    /// Whether the channel was claimed or refunded (its deposit is no longer locked).
    pub closed: bool,
    /// Amount paid to the payee by the claim (0 if open or refunded).
    pub claimed: u64,
}

/// Why a confirmed payload did not change the ledger.
///
/// Each variant has a stable one-byte [`code`](ConflictReason::code) that enters the ledger
/// digest; never renumber them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[repr(u8)]
pub enum ConflictReason {
    /// `seq` is below the issuer's `next_seq`: already used (a replay or a double spend
    /// that lost).
    #[error("sequence number already used")]
    SeqAlreadyUsed = 1,
    /// `seq` is above the issuer's `next_seq`: an earlier payload is missing.
    #[error("sequence number out of order (an earlier one is missing)")]
    SeqGap = 2,
    /// The issuer's balance does not cover the payment or deposit.
    #[error("insufficient balance")]
    InsufficientBalance = 3,
    /// A payment or channel deposit of zero.
    #[error("amount is zero")]
    ZeroAmount = 4,
    /// No channel has this id.
    #[error("unknown channel")]
    UnknownChannel = 5,
    /// The channel was already claimed or refunded.
    #[error("channel already closed")]
    ChannelClosed = 6,
    /// A claim by someone other than the channel's payee.
    #[error("issuer is not the channel's payee")]
    NotPayee = 7,
    /// A refund by someone other than the channel's payer.
    #[error("issuer is not the channel's payer")]
    NotPayer = 8,
    /// A refund before the channel expired.
    #[error("channel has not expired yet (refund too early)")]
    ChannelNotExpired = 9,
    /// A claim after the channel expired.
    #[error("channel has expired (claim too late)")]
    ChannelExpired = 10,
    /// A claim for more than the deposit.
    #[error("claim exceeds the channel deposit")]
    ClaimExceedsDeposit = 11,
    /// The voucher is not the payer's signature over this channel and amount.
    #[error("voucher is not signed by the channel's payer")]
    BadVoucher = 12,
    /// An `Open` whose `expires_at` is not after the confirming milestone.
    #[error("channel expiry is not in the future")]
    ExpiryNotInFuture = 13,
    /// An `Open` whose payee is the payer.
    #[error("payer and payee are the same address")]
    SelfChannel = 14,
    /// A balance or the sequence number would overflow `u64`.
    #[error("arithmetic overflow")]
    Overflow = 15,
    /// A channel with this id already exists (needs a hash collision; never expected).
    #[error("channel id already exists")]
    ChannelExists = 16,
}

impl ConflictReason {
    /// Stable code of this reason (1..), as hashed into the ledger digest.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Every reason, in code order.
    pub const ALL: [ConflictReason; 16] = [
        ConflictReason::SeqAlreadyUsed,
        ConflictReason::SeqGap,
        ConflictReason::InsufficientBalance,
        ConflictReason::ZeroAmount,
        ConflictReason::UnknownChannel,
        ConflictReason::ChannelClosed,
        ConflictReason::NotPayee,
        ConflictReason::NotPayer,
        ConflictReason::ChannelNotExpired,
        ConflictReason::ChannelExpired,
        ConflictReason::ClaimExceedsDeposit,
        ConflictReason::BadVoucher,
        ConflictReason::ExpiryNotInFuture,
        ConflictReason::SelfChannel,
        ConflictReason::Overflow,
        ConflictReason::ChannelExists,
    ];

    /// Whether a payload that conflicted for this reason can never apply: every reason but
    /// [`ConflictReason::SeqGap`] (see the module's rules).
    pub fn is_final(self) -> bool {
        self != ConflictReason::SeqGap
    }

    /// The reason with this code, if any.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// What happened to one confirmed payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PayloadOutcome {
    /// It changed the ledger.
    Applied,
    /// It changed nothing, for this reason.
    Conflicting(ConflictReason),
}

impl PayloadOutcome {
    /// 0 for applied, the reason's code otherwise; this is what the digest commits to.
    pub fn code(self) -> u8 {
        match self {
            PayloadOutcome::Applied => 0,
            PayloadOutcome::Conflicting(r) => r.code(),
        }
    }

    /// Whether the payload was applied.
    pub fn is_applied(self) -> bool {
        self == PayloadOutcome::Applied
    }

    /// Whether this outcome decides the payload for good: applied, or conflicting for a
    /// final reason ([`ConflictReason::is_final`]).
    pub fn is_final(self) -> bool {
        match self {
            PayloadOutcome::Applied => true,
            PayloadOutcome::Conflicting(r) => r.is_final(),
        }
    }
}

/// New values of every account and channel a milestone touched, sorted by key, so a store
/// can persist a milestone in one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerDiff {
    /// Touched accounts, ascending address.
    pub accounts: Vec<(Address, Account)>,
    /// Touched channels, ascending id.
    pub channels: Vec<(ChannelId, Channel)>,
    /// The committee rotation this milestone carried ([`crate::committee`]), if any.
    #[serde(default)]
    pub rotation: Option<Box<Rotation>>,
}

impl LedgerDiff {
    /// Whether nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty() && self.channels.is_empty() && self.rotation.is_none()
    }
}

/// The result of applying one milestone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MilestoneOutcome {
    /// The milestone index.
    pub index: MilestoneIndex,
    /// The ledger digest after this milestone (compare with the milestone's claim).
    pub ledger_digest: Digest,
    /// Each payload's carrying transaction and outcome, in application order.
    pub outcomes: Vec<(TxId, PayloadOutcome)>,
    /// New values of everything touched.
    pub diff: LedgerDiff,
}

impl MilestoneOutcome {
    /// Number of payloads applied.
    pub fn applied(&self) -> usize {
        self.outcomes.iter().filter(|(_, o)| o.is_applied()).count()
    }
}

/// [`Ledger::apply_milestone`] was called out of order; the ledger is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The index is not the confirmed index plus one (a milestone skipped or repeated).
    #[error("milestone {got} cannot be applied: expected {expected}")]
    UnexpectedIndex {
        /// The index that must come next.
        expected: MilestoneIndex,
        /// The index given.
        got: MilestoneIndex,
    },
    /// The confirmed index is already `u32::MAX`.
    #[error("milestone index space exhausted")]
    IndexExhausted,
}

/// A ledger state given to [`Ledger::from_parts`] is not consistent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LedgerStateError {
    /// Balances plus open channel deposits do not add up to the supply.
    #[error("balances and open deposits sum to {found}, the supply is {supply}")]
    SupplyMismatch {
        /// The supply.
        supply: u64,
        /// What the state adds up to (saturating).
        found: u64,
    },
    /// An address appears twice.
    #[error("account {0} appears twice")]
    DuplicateAccount(Address),
    /// A channel id appears twice.
    #[error("channel {0} appears twice")]
    DuplicateChannel(ChannelId),
}

/// The whole ledger state, sorted by key: a snapshot, or what a store loads on restart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerState {
    /// The network.
    pub network_id: NetworkId,
    /// Total supply, fixed by the genesis.
    pub supply: u64,
    /// Index of the last applied milestone (0: genesis).
    pub confirmed_index: MilestoneIndex,
    /// Ledger digest after that milestone.
    pub digest: Digest,
    /// Accounts, ascending address.
    pub accounts: Vec<(Address, Account)>,
    /// Channels (open and closed), ascending id.
    pub channels: Vec<(ChannelId, Channel)>,
    /// The committee rotations applied so far, oldest first: with the genesis they give
    /// the committee of every index ([`crate::committee::CommitteeSchedule::from_rotations`]).
    #[serde(default)]
    pub rotations: Vec<Rotation>,
}

/// The ledger: accounts and channels, confirmed milestone by milestone. No I/O.
#[derive(Clone, Debug)]
pub struct Ledger {
    network_id: NetworkId,
    supply: u64,
    confirmed: MilestoneIndex,
    digest: Digest,
    accounts: HashMap<Address, Account>,
    channels: HashMap<ChannelId, Channel>,
    /// Scratch lists of what the current milestone touched (reused, deduplicated at the end).
    touched_accounts: Vec<Address>,
    touched_channels: Vec<ChannelId>,
    /// The commitment to the whole state ([`Ledger::state_root`]), updated with each
    /// milestone's diff.
    state: StateTree,
    /// What the last applied milestone overwrote, in write order (see [`LedgerUndo`]).
    undo_accounts: Vec<(Address, Option<Account>)>,
    undo_channels: Vec<(ChannelId, Option<Channel>)>,
    /// Digest before the last applied milestone.
    undo_digest: Digest,
    /// Committee rotations applied, oldest first (see [`LedgerState::rotations`]).
    rotations: Vec<Rotation>,
}

/// What [`Ledger::revert_last`] needs to take the last applied milestone back: the previous
/// digest and index, and the value each touched account and channel had before (`None`:
/// it did not exist). O(touched entries), where a ledger clone costs O(accounts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerUndo {
    index: MilestoneIndex,
    digest: Digest,
    accounts: Vec<(Address, Option<Account>)>,
    channels: Vec<(ChannelId, Option<Channel>)>,
}

impl LedgerUndo {
    /// The milestone it takes back.
    pub fn index(&self) -> MilestoneIndex {
        self.index
    }
}

/// [`Ledger::revert_last`] was given the undo of a milestone that is not the last applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot revert milestone {undo}: the last applied milestone is {confirmed}")]
pub struct RevertError {
    /// The undo's milestone.
    pub undo: MilestoneIndex,
    /// The ledger's confirmed index.
    pub confirmed: MilestoneIndex,
}

/// The bytes of an account in the ledger digest and the state tree: balance, next seq
/// (u64 LE each).
fn account_bytes(acc: &Account) -> [u8; 16] {
    let mut e = [0u8; 16];
    e[..8].copy_from_slice(&acc.balance.to_le_bytes());
    e[8..].copy_from_slice(&acc.next_seq.to_le_bytes());
    e
}

/// The bytes of a channel in the ledger digest and the state tree: payer, payee, deposit
/// (u64 LE), expiry (u32 LE), closed (one byte), claimed (u64 LE).
fn channel_bytes(ch: &Channel) -> [u8; 85] {
    let mut e = [0u8; 85];
    e[..32].copy_from_slice(&ch.payer.0);
    e[32..64].copy_from_slice(&ch.payee.0);
    e[64..72].copy_from_slice(&ch.deposit.to_le_bytes());
    e[72..76].copy_from_slice(&ch.expires_at.to_le_bytes());
    e[76] = u8::from(ch.closed);
    e[77..85].copy_from_slice(&ch.claimed.to_le_bytes());
    e
}

/// The state tree's entry of an account.
pub fn account_entry(address: &Address, acc: Option<&Account>) -> Update {
    (
        key_of(ACCOUNT_TAG, &address.0),
        acc.map(|a| value_hash(&account_bytes(a))),
    )
}

/// The state tree's entry of a channel.
pub fn channel_entry(id: &ChannelId, ch: Option<&Channel>) -> Update {
    (
        key_of(CHANNEL_TAG, &id.0),
        ch.map(|c| value_hash(&channel_bytes(c))),
    )
}

/// The state tree of a whole state (accounts and channels).
fn tree_of<'a>(
    accounts: impl Iterator<Item = (&'a Address, &'a Account)>,
    channels: impl Iterator<Item = (&'a ChannelId, &'a Channel)>,
) -> StateTree {
    let mut updates: Vec<Update> = accounts
        .map(|(a, acc)| account_entry(a, Some(acc)))
        .chain(channels.map(|(id, ch)| channel_entry(id, Some(ch))))
        .collect();
    let mut t = StateTree::new();
    t.apply(&mut updates);
    t
}

/// The root of the state tree of `state`, computed from scratch (what a snapshot's reader
/// checks against the root its milestone signed).
pub fn state_root_of(state: &LedgerState) -> Digest {
    let t = tree_of(
        state.accounts.iter().map(|(a, acc)| (a, acc)),
        state.channels.iter().map(|(id, ch)| (id, ch)),
    );
    Digest(t.root())
}

impl Ledger {
    /// The ledger at genesis: the allocations, no channels, index 0, digest = BLAKE2b-256 of
    /// the genesis' canonical encoding.
    pub fn from_genesis(genesis: &Genesis) -> Result<Ledger, GenesisError> {
        genesis.validate()?;
        let supply = genesis.supply().ok_or(GenesisError::SupplyOverflow)?;
        let accounts: HashMap<Address, Account> = genesis
            .allocations
            .iter()
            .map(|a| {
                (
                    a.address,
                    Account {
                        balance: a.amount,
                        next_seq: 0,
                    },
                )
            })
            .collect();
        let encoding = rmp_serde::to_vec(genesis).expect("encoding to a Vec cannot fail");
        let channels = HashMap::new();
        let state = tree_of(accounts.iter(), channels.iter());
        Ok(Ledger {
            network_id: genesis.network_id(),
            supply,
            confirmed: 0,
            digest: Digest(crypto::blake2b256(&encoding)),
            accounts,
            channels,
            touched_accounts: Vec::new(),
            touched_channels: Vec::new(),
            state,
            undo_accounts: Vec::new(),
            undo_channels: Vec::new(),
            undo_digest: Digest([0; 32]),
            rotations: Vec::new(),
        })
    }

    /// Rebuilds a ledger from stored state (restart, snapshot), checking the supply
    /// invariant.
    pub fn from_parts(state: LedgerState) -> Result<Ledger, LedgerStateError> {
        let mut accounts = HashMap::with_capacity(state.accounts.len());
        for (a, acc) in state.accounts {
            if accounts.insert(a, acc).is_some() {
                return Err(LedgerStateError::DuplicateAccount(a));
            }
        }
        let mut channels = HashMap::with_capacity(state.channels.len());
        for (id, ch) in state.channels {
            if channels.insert(id, ch).is_some() {
                return Err(LedgerStateError::DuplicateChannel(id));
            }
        }
        let tree = tree_of(accounts.iter(), channels.iter());
        let ledger = Ledger {
            network_id: state.network_id,
            supply: state.supply,
            confirmed: state.confirmed_index,
            digest: state.digest,
            accounts,
            channels,
            touched_accounts: Vec::new(),
            touched_channels: Vec::new(),
            state: tree,
            undo_accounts: Vec::new(),
            undo_channels: Vec::new(),
            undo_digest: Digest([0; 32]),
            rotations: state.rotations,
        };
        ledger.check_invariants()?;
        Ok(ledger)
    }

    /// The root of the state tree ([`crate::state_tree`]) over every account and channel:
    /// the commitment a milestone carries, maintained in O(touched entries) per milestone.
    pub fn state_root(&self) -> Digest {
        Digest(self.state.root())
    }

    /// The state tree, for proofs of an account or a channel.
    pub fn state_tree(&self) -> &StateTree {
        &self.state
    }

    /// The whole state, sorted by key (for snapshots and [`Ledger::from_parts`]).
    pub fn to_state(&self) -> LedgerState {
        let mut accounts: Vec<_> = self.accounts.iter().map(|(a, v)| (*a, *v)).collect();
        accounts.sort_unstable_by_key(|x| x.0);
        let mut channels: Vec<_> = self.channels.iter().map(|(a, v)| (*a, *v)).collect();
        channels.sort_unstable_by_key(|x| x.0);
        LedgerState {
            network_id: self.network_id,
            supply: self.supply,
            confirmed_index: self.confirmed,
            digest: self.digest,
            accounts,
            channels,
            rotations: self.rotations.clone(),
        }
    }

    /// The committee rotations applied so far, oldest first.
    pub fn rotations(&self) -> &[Rotation] {
        &self.rotations
    }

    /// Records a committee rotation carried by the last applied milestone (checked by the
    /// caller against the committee schedule, [`crate::committee::CommitteeSchedule::add`]).
    pub fn add_rotation(&mut self, r: Rotation) {
        self.rotations.push(r);
    }

    /// Checks that balances plus open channel deposits equal the supply (O(state size)).
    pub fn check_invariants(&self) -> Result<(), LedgerStateError> {
        let total = self.total_balances() + self.open_deposits();
        if total != u128::from(self.supply) {
            return Err(LedgerStateError::SupplyMismatch {
                supply: self.supply,
                found: u64::try_from(total).unwrap_or(u64::MAX),
            });
        }
        Ok(())
    }

    /// An account, if it ever received funds or issued a payload.
    pub fn account(&self, address: &Address) -> Option<&Account> {
        self.accounts.get(address)
    }

    /// Balance of `address` (0 if unknown).
    pub fn balance(&self, address: &Address) -> u64 {
        self.accounts.get(address).map_or(0, |a| a.balance)
    }

    /// The `seq` the next payload of `address` must carry (0 if unknown).
    pub fn next_seq(&self, address: &Address) -> u64 {
        self.accounts.get(address).map_or(0, |a| a.next_seq)
    }

    /// A channel, open or closed.
    pub fn channel(&self, id: &ChannelId) -> Option<&Channel> {
        self.channels.get(id)
    }

    /// Ledger digest after the last applied milestone.
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// Index of the last applied milestone (0 at genesis).
    pub fn confirmed_index(&self) -> MilestoneIndex {
        self.confirmed
    }

    /// Total supply.
    pub fn supply(&self) -> u64 {
        self.supply
    }

    /// Sum of all account balances (O(accounts)). With [`open_deposits`](Self::open_deposits)
    /// it adds up to [`supply`](Self::supply); a `u128` so the sum itself cannot overflow.
    pub fn total_balances(&self) -> u128 {
        self.accounts.values().map(|a| u128::from(a.balance)).sum()
    }

    /// Sum of the deposits locked in open channels (O(channels)).
    pub fn open_deposits(&self) -> u128 {
        self.channels
            .values()
            .filter(|c| !c.closed)
            .map(|c| u128::from(c.deposit))
            .sum()
    }

    /// The network this ledger belongs to.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// All accounts, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// All channels, open and closed, in no particular order.
    pub fn channels(&self) -> impl Iterator<Item = (&ChannelId, &Channel)> {
        self.channels.iter()
    }

    /// Applies milestone `index` to the ledger: each payload, in the given (white-flag)
    /// order, is applied or marked conflicting.
    ///
    /// `index` must be [`confirmed_index`](Self::confirmed_index)` + 1`; otherwise nothing
    /// changes and an [`ApplyError`] is returned. Payload signatures are assumed verified
    /// (stage 1); claim vouchers are verified here.
    pub fn apply_milestone<'a, I>(
        &mut self,
        index: MilestoneIndex,
        payloads: I,
    ) -> Result<MilestoneOutcome, ApplyError>
    where
        I: IntoIterator<Item = (TxId, &'a SignedPayload)>,
    {
        let expected = self
            .confirmed
            .checked_add(1)
            .ok_or(ApplyError::IndexExhausted)?;
        if index != expected {
            return Err(ApplyError::UnexpectedIndex {
                expected,
                got: index,
            });
        }
        let payloads = payloads.into_iter();
        let mut outcomes = Vec::with_capacity(payloads.size_hint().0);
        self.touched_accounts.clear();
        self.touched_channels.clear();
        self.undo_accounts.clear();
        self.undo_channels.clear();
        self.undo_digest = self.digest;

        let mut h = Blake2b256::new();
        h.update(DIGEST_TAG);
        h.update(self.digest.0);
        h.update(index.to_le_bytes());
        let mut entry = [0u8; 34];
        entry[0] = b'P';
        for (tx, payload) in payloads {
            let outcome = match self.apply_one(index, payload) {
                Ok(()) => PayloadOutcome::Applied,
                Err(reason) => {
                    self.consume_seq(payload, reason);
                    PayloadOutcome::Conflicting(reason)
                }
            };
            entry[1..33].copy_from_slice(&tx.0);
            entry[33] = outcome.code();
            h.update(entry);
            outcomes.push((tx, outcome));
        }

        let diff = self.take_diff();
        let mut updates = Vec::with_capacity(diff.accounts.len() + diff.channels.len());
        for (addr, acc) in &diff.accounts {
            h.update([b'A']);
            h.update(addr.0);
            h.update(account_bytes(acc));
            updates.push(account_entry(addr, self.accounts.get(addr)));
        }
        for (id, ch) in &diff.channels {
            h.update([b'C']);
            h.update(id.0);
            h.update(channel_bytes(ch));
            updates.push(channel_entry(id, Some(ch)));
        }
        self.state.apply(&mut updates);
        self.digest = Digest(h.finalize().into());
        self.confirmed = index;
        Ok(MilestoneOutcome {
            index,
            ledger_digest: self.digest,
            outcomes,
            diff,
        })
    }

    /// [`Ledger::apply_milestone`], also returning what takes it back ([`Ledger::revert_last`]):
    /// a committee member checks a proposed milestone by applying it and reverting it, and a
    /// node applying a received milestone reverts it if its commitments do not match.
    pub fn apply_milestone_undoable<'a, I>(
        &mut self,
        index: MilestoneIndex,
        payloads: I,
    ) -> Result<(MilestoneOutcome, LedgerUndo), ApplyError>
    where
        I: IntoIterator<Item = (TxId, &'a SignedPayload)>,
    {
        let outcome = self.apply_milestone(index, payloads)?;
        Ok((outcome, self.take_undo()))
    }

    /// The undo of the last applied milestone (taken once: a second call returns an empty
    /// undo, so take it right after applying).
    pub fn take_undo(&mut self) -> LedgerUndo {
        LedgerUndo {
            index: self.confirmed,
            digest: self.undo_digest,
            accounts: std::mem::take(&mut self.undo_accounts),
            channels: std::mem::take(&mut self.undo_channels),
        }
    }

    /// Takes back the last applied milestone: every account and channel it touched gets its
    /// previous value (or disappears), the state tree is updated the same way (its root
    /// depends only on the entries), and the digest and confirmed index go back. O(touched
    /// entries x tree depth).
    pub fn revert_last(&mut self, undo: LedgerUndo) -> Result<(), RevertError> {
        if undo.index != self.confirmed || undo.index == 0 {
            return Err(RevertError {
                undo: undo.index,
                confirmed: self.confirmed,
            });
        }
        let mut updates = Vec::with_capacity(undo.accounts.len() + undo.channels.len());
        // Reverse write order: the first value recorded for a key (its value before the
        // milestone) is restored last.
        for (addr, old) in undo.accounts.into_iter().rev() {
            match old {
                Some(acc) => self.accounts.insert(addr, acc),
                None => self.accounts.remove(&addr),
            };
            updates.push(account_entry(&addr, old.as_ref()));
        }
        for (id, old) in undo.channels.into_iter().rev() {
            match old {
                Some(ch) => self.channels.insert(id, ch),
                None => self.channels.remove(&id),
            };
            updates.push(channel_entry(&id, old.as_ref()));
        }
        // `apply` keeps the last update of each key: reversed, that is the oldest value.
        self.state.apply(&mut updates);
        self.digest = undo.digest;
        self.confirmed = undo.index - 1;
        Ok(())
    }

    /// Sorted, deduplicated new values of everything touched since the scratch lists were
    /// cleared.
    fn take_diff(&mut self) -> LedgerDiff {
        self.touched_accounts.sort_unstable();
        self.touched_accounts.dedup();
        self.touched_channels.sort_unstable();
        self.touched_channels.dedup();
        let accounts = self
            .touched_accounts
            .iter()
            .map(|a| (*a, self.accounts.get(a).copied().unwrap_or_default()))
            .collect();
        let channels = self
            .touched_channels
            .iter()
            .filter_map(|id| self.channels.get(id).map(|c| (*id, *c)))
            .collect();
        LedgerDiff {
            accounts,
            channels,
            rotation: None,
        }
    }

    /// Applies one payload, or returns why it conflicts. Every check happens before the
    /// first write, so a conflict changes nothing.
    fn apply_one(
        &mut self,
        index: MilestoneIndex,
        p: &SignedPayload,
    ) -> Result<(), ConflictReason> {
        let issuer = p.issuer;
        let acc = self.accounts.get(&issuer).copied().unwrap_or_default();
        if p.seq < acc.next_seq {
            return Err(ConflictReason::SeqAlreadyUsed);
        }
        if p.seq > acc.next_seq {
            return Err(ConflictReason::SeqGap);
        }
        let next_seq = acc
            .next_seq
            .checked_add(1)
            .ok_or(ConflictReason::Overflow)?;

        match &p.body {
            Body::Pay { to, amount, .. } => {
                let amount = *amount;
                if amount == 0 {
                    return Err(ConflictReason::ZeroAmount);
                }
                let balance = acc
                    .balance
                    .checked_sub(amount)
                    .ok_or(ConflictReason::InsufficientBalance)?;
                if *to == issuer {
                    self.set_account(issuer, acc.balance, next_seq);
                } else {
                    let to_balance = self
                        .balance(to)
                        .checked_add(amount)
                        .ok_or(ConflictReason::Overflow)?;
                    self.set_account(issuer, balance, next_seq);
                    self.set_balance(*to, to_balance);
                }
            }
            Body::Open {
                payee,
                deposit,
                expires_at,
            } => {
                if *deposit == 0 {
                    return Err(ConflictReason::ZeroAmount);
                }
                if *payee == issuer {
                    return Err(ConflictReason::SelfChannel);
                }
                if *expires_at <= index {
                    return Err(ConflictReason::ExpiryNotInFuture);
                }
                let balance = acc
                    .balance
                    .checked_sub(*deposit)
                    .ok_or(ConflictReason::InsufficientBalance)?;
                let id = crypto::channel_id(&issuer, p.seq);
                if self.channels.contains_key(&id) {
                    return Err(ConflictReason::ChannelExists);
                }
                self.set_account(issuer, balance, next_seq);
                self.set_channel(
                    id,
                    Channel {
                        payer: issuer,
                        payee: *payee,
                        deposit: *deposit,
                        expires_at: *expires_at,
                        closed: false,
                        claimed: 0,
                    },
                );
            }
            Body::Claim {
                channel,
                amount,
                voucher,
            } => {
                let ch = *self
                    .channels
                    .get(channel)
                    .ok_or(ConflictReason::UnknownChannel)?;
                if ch.payee != issuer {
                    return Err(ConflictReason::NotPayee);
                }
                if ch.closed {
                    return Err(ConflictReason::ChannelClosed);
                }
                if index > ch.expires_at {
                    return Err(ConflictReason::ChannelExpired);
                }
                let amount = *amount;
                let remainder = ch
                    .deposit
                    .checked_sub(amount)
                    .ok_or(ConflictReason::ClaimExceedsDeposit)?;
                let msg = crypto::voucher_signing_message(self.network_id, channel, amount);
                crypto::verify(&ch.payer, &msg, voucher).map_err(|_| ConflictReason::BadVoucher)?;
                let payee_balance = acc
                    .balance
                    .checked_add(amount)
                    .ok_or(ConflictReason::Overflow)?;
                // An Open never has payer == payee, so these are two distinct accounts.
                let payer_balance = self
                    .balance(&ch.payer)
                    .checked_add(remainder)
                    .ok_or(ConflictReason::Overflow)?;
                self.set_account(issuer, payee_balance, next_seq);
                self.set_balance(ch.payer, payer_balance);
                self.set_channel(
                    *channel,
                    Channel {
                        closed: true,
                        claimed: amount,
                        ..ch
                    },
                );
            }
            Body::Refund { channel } => {
                let ch = *self
                    .channels
                    .get(channel)
                    .ok_or(ConflictReason::UnknownChannel)?;
                if ch.payer != issuer {
                    return Err(ConflictReason::NotPayer);
                }
                if ch.closed {
                    return Err(ConflictReason::ChannelClosed);
                }
                if index <= ch.expires_at {
                    return Err(ConflictReason::ChannelNotExpired);
                }
                let balance = acc
                    .balance
                    .checked_add(ch.deposit)
                    .ok_or(ConflictReason::Overflow)?;
                self.set_account(issuer, balance, next_seq);
                self.set_channel(
                    *channel,
                    Channel {
                        closed: true,
                        claimed: 0,
                        ..ch
                    },
                );
            }
            Body::Anchor { .. } => {
                self.set_account(issuer, acc.balance, next_seq);
            }
        }
        Ok(())
    }

    /// A payload that conflicted for its content at its turn still uses its sequence number
    /// (module rules): nothing else changes.
    fn consume_seq(&mut self, p: &SignedPayload, reason: ConflictReason) {
        if matches!(
            reason,
            ConflictReason::SeqAlreadyUsed | ConflictReason::SeqGap
        ) {
            return;
        }
        let acc = self.accounts.get(&p.issuer).copied().unwrap_or_default();
        if acc.next_seq == p.seq {
            if let Some(next) = acc.next_seq.checked_add(1) {
                self.set_account(p.issuer, acc.balance, next);
            }
        }
    }

    fn set_account(&mut self, address: Address, balance: u64, next_seq: u64) {
        let old = self.accounts.insert(address, Account { balance, next_seq });
        self.undo_accounts.push((address, old));
        self.touched_accounts.push(address);
    }

    fn set_balance(&mut self, address: Address, balance: u64) {
        let old = self.accounts.get(&address).copied();
        self.accounts.entry(address).or_default().balance = balance;
        self.undo_accounts.push((address, old));
        self.touched_accounts.push(address);
    }

    fn set_channel(&mut self, id: ChannelId, channel: Channel) {
        let old = self.channels.insert(id, channel);
        self.undo_channels.push((id, old));
        self.touched_channels.push(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::genesis::{Allocation, DEFAULT_TIMESTAMP_WINDOW_MS};

    struct Net {
        ledger: Ledger,
        keys: Vec<Keypair>,
        nid: NetworkId,
    }

    /// Three funded accounts (1000 each) and one unfunded key.
    fn net() -> Net {
        let keys: Vec<Keypair> = (1..=4u8).map(|i| Keypair::from_seed(&[i; 32])).collect();
        let genesis = Genesis {
            network_name: "ledger-test".into(),
            timestamp: 0,
            pow_difficulty: 0,
            timestamp_window_ms: DEFAULT_TIMESTAMP_WINDOW_MS,
            committee: vec![Address([9; 32])],
            threshold: 1,
            allocations: keys[..3]
                .iter()
                .map(|k| Allocation {
                    address: k.address(),
                    amount: 1000,
                })
                .collect(),
        };
        let ledger = Ledger::from_genesis(&genesis).unwrap();
        let nid = genesis.network_id();
        Net { ledger, keys, nid }
    }

    impl Net {
        fn addr(&self, i: usize) -> Address {
            self.keys[i].address()
        }
        fn sign(&self, i: usize, seq: u64, body: Body) -> SignedPayload {
            SignedPayload::sign(&self.keys[i], self.nid, seq, body)
        }
        fn pay(&self, from: usize, seq: u64, to: usize, amount: u64) -> SignedPayload {
            self.sign(
                from,
                seq,
                Body::Pay {
                    to: self.addr(to),
                    amount,
                    memo: vec![],
                },
            )
        }
        fn voucher(&self, payer: usize, ch: &ChannelId, amount: u64) -> crate::Signature {
            self.keys[payer].sign(&crypto::voucher_signing_message(self.nid, ch, amount))
        }
        /// Applies the payloads as the next milestone; returns the outcomes.
        fn apply(&mut self, ps: &[SignedPayload]) -> MilestoneOutcome {
            let index = self.ledger.confirmed_index() + 1;
            let out = self
                .ledger
                .apply_milestone(
                    index,
                    ps.iter()
                        .enumerate()
                        .map(|(i, p)| (TxId([i as u8 + 1; 32]), p)),
                )
                .unwrap();
            self.ledger.check_invariants().unwrap();
            out
        }
        /// The issuer's next sequence number.
        fn seq(&self, i: usize) -> u64 {
            self.ledger.next_seq(&self.addr(i))
        }
        /// Applies one payload as the next milestone and returns its outcome.
        fn one(&mut self, p: SignedPayload) -> PayloadOutcome {
            self.apply(&[p]).outcomes[0].1
        }
        /// Applies empty milestones until `index` is confirmed.
        fn advance_to(&mut self, index: MilestoneIndex) {
            while self.ledger.confirmed_index() < index {
                self.apply(&[]);
            }
        }
        /// Opens a channel from `payer` (at its next seq) to `payee`; returns its id.
        fn open(&mut self, payer: usize, payee: usize, deposit: u64, expires_at: u32) -> ChannelId {
            let seq = self.ledger.next_seq(&self.addr(payer));
            let p = self.sign(
                payer,
                seq,
                Body::Open {
                    payee: self.addr(payee),
                    deposit,
                    expires_at,
                },
            );
            assert_eq!(self.one(p), PayloadOutcome::Applied);
            crypto::channel_id(&self.addr(payer), seq)
        }
    }

    fn conflict(r: ConflictReason) -> PayloadOutcome {
        PayloadOutcome::Conflicting(r)
    }

    /// A milestone applied and reverted leaves the ledger exactly as it was (accounts,
    /// channels, state root, digest, index), including accounts and channels it created,
    /// an account touched twice and a conflicting payload; the same milestone applied again
    /// gives the same outcome.
    #[test]
    fn revert_last_restores_everything_the_milestone_touched() {
        let mut n = net();
        let ch = n.open(0, 1, 300, 50);
        n.apply(&[n.pay(1, 0, 2, 10)]);
        let before = (n.ledger.to_state(), n.ledger.state_root());
        let index = n.ledger.confirmed_index() + 1;
        let voucher = n.voucher(0, &ch, 120);
        let ps = [
            // Account 3 is new; account 0 is touched three times.
            n.pay(0, 1, 3, 100),
            n.pay(0, 2, 3, 1),
            n.sign(
                1,
                1,
                Body::Claim {
                    channel: ch,
                    amount: 120,
                    voucher,
                },
            ),
            n.pay(2, 5, 0, 1), // a gap: conflicting, touches nothing
            n.sign(
                2,
                0,
                Body::Open {
                    payee: n.addr(3),
                    deposit: 50,
                    expires_at: 99,
                },
            ),
        ];
        let payloads = || {
            ps.iter()
                .enumerate()
                .map(|(i, p)| (TxId([i as u8 + 1; 32]), p))
        };
        let (first, undo) = n
            .ledger
            .apply_milestone_undoable(index, payloads())
            .unwrap();
        assert_eq!(first.applied(), 4);
        assert_ne!(n.ledger.state_root(), before.1);
        assert_eq!(undo.index(), index);
        // Only the last milestone can be reverted.
        let mut wrong = undo.clone();
        wrong.index = index - 1;
        assert!(n.ledger.revert_last(wrong).is_err());
        n.ledger.revert_last(undo).unwrap();
        assert_eq!((n.ledger.to_state(), n.ledger.state_root()), before);
        assert!(n.ledger.account(&n.addr(3)).is_none());
        n.ledger.check_invariants().unwrap();
        let again = n.ledger.apply_milestone(index, payloads()).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn pay_moves_funds_and_bumps_seq() {
        let mut n = net();
        let out = n.apply(&[n.pay(0, 0, 1, 300), n.pay(0, 1, 3, 200)]);
        assert_eq!(out.applied(), 2);
        assert_eq!(n.ledger.balance(&n.addr(0)), 500);
        assert_eq!(n.ledger.balance(&n.addr(1)), 1300);
        assert_eq!(
            n.ledger.balance(&n.addr(3)),
            200,
            "new accounts are created"
        );
        assert_eq!(n.ledger.next_seq(&n.addr(0)), 2);
        assert_eq!(
            n.ledger.next_seq(&n.addr(1)),
            0,
            "receiving does not use a seq"
        );
        let touched: Vec<Address> = out.diff.accounts.iter().map(|(a, _)| *a).collect();
        let mut expected = vec![n.addr(0), n.addr(1), n.addr(3)];
        expected.sort();
        assert_eq!(touched, expected, "diff is sorted and deduplicated");
        assert_eq!(
            out.diff.accounts[0].1,
            *n.ledger.account(&expected[0]).unwrap()
        );
    }

    #[test]
    fn pay_to_self_only_bumps_seq() {
        let mut n = net();
        assert_eq!(n.one(n.pay(0, 0, 0, 400)), PayloadOutcome::Applied);
        assert_eq!(n.ledger.balance(&n.addr(0)), 1000);
        assert_eq!(n.ledger.next_seq(&n.addr(0)), 1);
        assert_eq!(
            n.one(n.pay(0, 1, 0, 1001)),
            conflict(ConflictReason::InsufficientBalance)
        );
    }

    #[test]
    fn seq_already_used_and_gap() {
        let mut n = net();
        assert_eq!(n.one(n.pay(0, 0, 1, 1)), PayloadOutcome::Applied);
        assert_eq!(
            n.one(n.pay(0, 0, 1, 1)),
            conflict(ConflictReason::SeqAlreadyUsed)
        );
        assert_eq!(n.one(n.pay(0, 2, 1, 1)), conflict(ConflictReason::SeqGap));
        assert_eq!(n.ledger.balance(&n.addr(0)), 999);
        assert_eq!(n.ledger.next_seq(&n.addr(0)), 1);
        // The gap closes once seq 1 arrives.
        let out = n.apply(&[n.pay(0, 1, 1, 1), n.pay(0, 2, 1, 1)]);
        assert_eq!(out.applied(), 2);
    }

    #[test]
    fn double_spend_in_one_milestone_first_wins() {
        let mut n = net();
        let a = n.pay(0, 0, 1, 700);
        let b = n.pay(0, 0, 2, 700);
        let out = n.apply(&[a, b]);
        assert_eq!(out.outcomes[0].1, PayloadOutcome::Applied);
        assert_eq!(out.outcomes[1].1, conflict(ConflictReason::SeqAlreadyUsed));
        assert_eq!(n.ledger.balance(&n.addr(1)), 1700);
        assert_eq!(n.ledger.balance(&n.addr(2)), 1000);
    }

    #[test]
    fn content_conflicts_move_nothing_and_use_the_seq() {
        let mut n = net();
        let before = n.ledger.to_state();
        let out = n.apply(&[
            n.pay(0, 0, 1, 1001),
            n.pay(3, 0, 1, 1),
            n.pay(1, 0, 2, 0),
            n.sign(
                2,
                0,
                Body::Open {
                    payee: n.addr(0),
                    deposit: 0,
                    expires_at: 10,
                },
            ),
        ]);
        let reasons: Vec<_> = out.outcomes.iter().map(|(_, o)| *o).collect();
        assert_eq!(
            reasons,
            vec![
                conflict(ConflictReason::InsufficientBalance),
                conflict(ConflictReason::InsufficientBalance),
                conflict(ConflictReason::ZeroAmount),
                conflict(ConflictReason::ZeroAmount),
            ]
        );
        // No value moved; each issuer's seq 0 is used (conflicts are final), and the
        // payees gained nothing.
        let after = n.ledger.to_state();
        for i in 0..4 {
            assert_eq!(n.ledger.balance(&n.addr(i)), if i < 3 { 1000 } else { 0 });
            assert_eq!(n.ledger.next_seq(&n.addr(i)), 1, "seq of issuer {i} used");
        }
        assert_eq!(out.diff.accounts.len(), 4);
        assert!(out.diff.channels.is_empty());
        assert_ne!(before.accounts, after.accounts);
        assert_ne!(before.digest, after.digest);
        // No copy of a conflicting payload applies later, even once it could.
        assert_eq!(
            n.one(n.pay(0, 0, 1, 1001)),
            conflict(ConflictReason::SeqAlreadyUsed)
        );
        // The issuer's next payload is not blocked.
        assert_eq!(n.one(n.pay(0, 1, 1, 1000)), PayloadOutcome::Applied);
    }

    #[test]
    fn seq_overflow_conflicts_without_consuming() {
        let mut n = net();
        let p = n.pay(0, u64::MAX, 1, 1);
        n.ledger.accounts.get_mut(&n.addr(0)).unwrap().next_seq = u64::MAX;
        assert_eq!(n.one(p), conflict(ConflictReason::Overflow));
        assert_eq!(n.ledger.next_seq(&n.addr(0)), u64::MAX);
        assert_eq!(n.ledger.balance(&n.addr(0)), 1000);
    }

    #[test]
    fn anchor_bumps_seq_even_without_funds() {
        let mut n = net();
        let p = n.sign(
            3,
            0,
            Body::Anchor {
                tag: b"meter".to_vec(),
                digest: Digest([5; 32]),
            },
        );
        assert_eq!(n.one(p.clone()), PayloadOutcome::Applied);
        assert_eq!(
            n.ledger.account(&n.addr(3)),
            Some(&Account {
                balance: 0,
                next_seq: 1
            })
        );
        assert_eq!(n.one(p), conflict(ConflictReason::SeqAlreadyUsed));
    }

    #[test]
    fn open_then_claim_splits_deposit() {
        let mut n = net();
        let ch = n.open(0, 1, 400, 5);
        assert_eq!(n.ledger.balance(&n.addr(0)), 600);
        let c = *n.ledger.channel(&ch).unwrap();
        assert_eq!(
            (c.payer, c.payee, c.deposit, c.closed),
            (n.addr(0), n.addr(1), 400, false)
        );
        let claim = n.sign(
            1,
            0,
            Body::Claim {
                channel: ch,
                amount: 150,
                voucher: n.voucher(0, &ch, 150),
            },
        );
        let out = n.apply(&[claim]);
        assert_eq!(out.outcomes[0].1, PayloadOutcome::Applied);
        assert_eq!(out.diff.channels.len(), 1);
        assert_eq!(n.ledger.balance(&n.addr(0)), 850);
        assert_eq!(n.ledger.balance(&n.addr(1)), 1150);
        let c = n.ledger.channel(&ch).unwrap();
        assert!(c.closed);
        assert_eq!(c.claimed, 150);
    }

    #[test]
    fn claim_of_zero_is_a_cooperative_close() {
        let mut n = net();
        let ch = n.open(0, 1, 400, 5);
        let claim = n.sign(
            1,
            0,
            Body::Claim {
                channel: ch,
                amount: 0,
                voucher: n.voucher(0, &ch, 0),
            },
        );
        assert_eq!(n.one(claim), PayloadOutcome::Applied);
        assert_eq!(n.ledger.balance(&n.addr(0)), 1000);
    }

    #[test]
    fn claim_conflicts() {
        let mut n = net();
        let ch = n.open(0, 1, 400, 20); // confirmed at 1
        let claim = |n: &Net, by: usize, seq: u64, channel: ChannelId, amount: u64, voucher| {
            n.sign(
                by,
                seq,
                Body::Claim {
                    channel,
                    amount,
                    voucher,
                },
            )
        };
        let good = n.voucher(0, &ch, 100);
        assert_eq!(
            n.one(claim(&n, 1, n.seq(1), ChannelId([7; 32]), 100, good)),
            conflict(ConflictReason::UnknownChannel)
        );
        assert_eq!(
            n.one(claim(&n, 2, n.seq(2), ch, 100, good)),
            conflict(ConflictReason::NotPayee)
        );
        assert_eq!(
            n.one(claim(&n, 1, n.seq(1), ch, 401, n.voucher(0, &ch, 401))),
            conflict(ConflictReason::ClaimExceedsDeposit)
        );
        // Voucher for another amount, signed by the payee, or for another network.
        assert_eq!(
            n.one(claim(&n, 1, n.seq(1), ch, 200, good)),
            conflict(ConflictReason::BadVoucher)
        );
        assert_eq!(
            n.one(claim(&n, 1, n.seq(1), ch, 100, n.voucher(1, &ch, 100))),
            conflict(ConflictReason::BadVoucher)
        );
        let other_net = n.keys[0].sign(&crypto::voucher_signing_message(n.nid ^ 1, &ch, 100));
        assert_eq!(
            n.one(claim(&n, 1, n.seq(1), ch, 100, other_net)),
            conflict(ConflictReason::BadVoucher)
        );
        n.advance_to(20);
        assert_eq!(
            n.one(claim(&n, 1, n.seq(1), ch, 100, good)),
            conflict(ConflictReason::ChannelExpired)
        );
        assert_eq!(n.ledger.balance(&n.addr(0)), 600, "deposit still locked");
    }

    #[test]
    fn claim_on_last_valid_index_and_closed_channel() {
        let mut n = net();
        let ch = n.open(0, 1, 400, 3);
        n.advance_to(2);
        let mk = |n: &Net, seq: u64| {
            n.sign(
                1,
                seq,
                Body::Claim {
                    channel: ch,
                    amount: 10,
                    voucher: n.voucher(0, &ch, 10),
                },
            )
        };
        assert_eq!(
            n.one(mk(&n, 0)),
            PayloadOutcome::Applied,
            "index 3 == expires_at"
        );
        assert_eq!(n.one(mk(&n, 1)), conflict(ConflictReason::ChannelClosed));
    }

    #[test]
    fn refund_rules() {
        let mut n = net();
        let ch = n.open(0, 1, 400, 4); // seq 0 used, confirmed at 1
        let refund =
            |n: &Net, by: usize, seq: u64, channel| n.sign(by, seq, Body::Refund { channel });
        assert_eq!(
            n.one(refund(&n, 0, n.seq(0), ChannelId([1; 32]))),
            conflict(ConflictReason::UnknownChannel)
        );
        assert_eq!(
            n.one(refund(&n, 1, n.seq(1), ch)),
            conflict(ConflictReason::NotPayer)
        );
        assert_eq!(
            n.one(refund(&n, 0, n.seq(0), ch)),
            conflict(ConflictReason::ChannelNotExpired),
            "index 4 is not past expires_at 4"
        );
        assert_eq!(n.one(refund(&n, 0, n.seq(0), ch)), PayloadOutcome::Applied);
        assert_eq!(n.ledger.balance(&n.addr(0)), 1000);
        let c = n.ledger.channel(&ch).unwrap();
        assert!(c.closed);
        assert_eq!(c.claimed, 0);
        assert_eq!(
            n.one(refund(&n, 0, n.seq(0), ch)),
            conflict(ConflictReason::ChannelClosed)
        );
    }

    #[test]
    fn open_conflicts() {
        let mut n = net();
        let open = |n: &Net, payee: usize, deposit, expires_at| {
            n.sign(
                0,
                n.seq(0),
                Body::Open {
                    payee: n.addr(payee),
                    deposit,
                    expires_at,
                },
            )
        };
        assert_eq!(
            n.one(open(&n, 0, 10, 9)),
            conflict(ConflictReason::SelfChannel)
        );
        assert_eq!(
            n.one(open(&n, 1, 10, 2)),
            conflict(ConflictReason::ExpiryNotInFuture),
            "confirmed at 2, expiring at 2"
        );
        assert_eq!(
            n.one(open(&n, 1, 1001, 9)),
            conflict(ConflictReason::InsufficientBalance)
        );
        assert!(n.ledger.channels().next().is_none());
    }

    #[test]
    fn overflow_and_channel_exists_are_conflicts() {
        let n = net();
        let mut state = n.ledger.to_state();
        let a0 = n.addr(0);
        for (a, acc) in &mut state.accounts {
            if *a == a0 {
                acc.next_seq = u64::MAX;
            }
        }
        // A closed channel already at the id the payer's seq 0 would open.
        let a1 = n.addr(1);
        let id = crypto::channel_id(&a1, 0);
        state.channels.push((
            id,
            Channel {
                payer: a1,
                payee: a0,
                deposit: 5,
                expires_at: 1,
                closed: true,
                claimed: 5,
            },
        ));
        let mut m = Net {
            ledger: Ledger::from_parts(state).unwrap(),
            keys: n.keys.clone(),
            nid: n.nid,
        };
        assert_eq!(
            m.one(m.pay(0, u64::MAX, 1, 1)),
            conflict(ConflictReason::Overflow)
        );
        let p = m.sign(
            1,
            0,
            Body::Open {
                payee: a0,
                deposit: 1,
                expires_at: 10,
            },
        );
        assert_eq!(m.one(p), conflict(ConflictReason::ChannelExists));
    }

    #[test]
    fn wrong_index_is_an_error_and_changes_nothing() {
        let mut n = net();
        let p = n.pay(0, 0, 1, 1);
        let d = n.ledger.digest();
        for bad in [0, 2] {
            assert_eq!(
                n.ledger.apply_milestone(bad, [(TxId([1; 32]), &p)]),
                Err(ApplyError::UnexpectedIndex {
                    expected: 1,
                    got: bad
                })
            );
        }
        assert_eq!(n.ledger.digest(), d);
        assert_eq!(n.ledger.confirmed_index(), 0);
        assert_eq!(n.ledger.balance(&n.addr(0)), 1000);
    }

    #[test]
    fn digest_is_deterministic_and_order_sensitive() {
        let mut a = net();
        let mut b = net();
        assert_eq!(a.ledger.digest(), b.ledger.digest());
        let ps = [a.pay(0, 0, 1, 10), a.pay(1, 0, 2, 20), a.pay(0, 0, 2, 5)];
        a.apply(&ps);
        b.apply(&ps);
        assert_eq!(a.ledger.digest(), b.ledger.digest());
        let mut c = net();
        c.apply(&[ps[2].clone(), ps[1].clone(), ps[0].clone()]);
        assert_ne!(a.ledger.digest(), c.ledger.digest());
        assert_eq!(c.ledger.balance(&c.addr(2)), 1025, "the other spend won");
    }

    #[test]
    fn state_round_trip_and_bad_state_rejected() {
        let mut n = net();
        n.open(0, 1, 100, 9);
        n.apply(&[n.pay(2, 0, 3, 7)]);
        let state = n.ledger.to_state();
        let back = Ledger::from_parts(state.clone()).unwrap();
        assert_eq!(back.to_state(), state);
        let mut bad = state.clone();
        bad.accounts[0].1.balance += 1;
        assert!(matches!(
            Ledger::from_parts(bad),
            Err(LedgerStateError::SupplyMismatch { .. })
        ));
        let mut dup = state;
        dup.accounts.push(dup.accounts[0]);
        assert!(matches!(
            Ledger::from_parts(dup),
            Err(LedgerStateError::DuplicateAccount(_))
        ));
    }

    #[test]
    fn reason_codes_are_stable_and_displayed() {
        for (i, r) in ConflictReason::ALL.iter().enumerate() {
            assert_eq!(usize::from(r.code()), i + 1);
            assert_eq!(ConflictReason::from_code(r.code()), Some(*r));
            assert!(!r.to_string().is_empty());
        }
        assert_eq!(ConflictReason::from_code(0), None);
        assert_eq!(ConflictReason::from_code(17), None);
        assert_eq!(PayloadOutcome::Applied.code(), 0);
    }
}
