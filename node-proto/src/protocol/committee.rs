//! Milestone issuance by a committee of n members with threshold k, with no single
//! coordinator, live under crashes and delays: a Tendermint-style lock decides which
//! proposal the members sign.
//!
//! A member is a node whose [`crate::ProtocolConfig::milestone_signer`] is in a genesis
//! committee of more than one key (a committee of one issues alone, as before: see
//! `milestone.rs`). For each index `i` (the confirmed index + 1) the members go through
//! rounds: round `r` begins `milestone_interval_ms` plus `r` growing timeouts after the
//! member entered index `i` (applied `i - 1`), and its proposer is member `(i + r) mod n`.
//! Each index goes through three kinds of signed votes, all carried by [`CommitteeMessage`]s
//! (the proposal's content, the round votes and milestone signatures the sender holds on
//! it):
//!
//! - **Prevote** `(i, r, d)`: round `r`'s proposal is the proposal `d` its proposer prevoted
//!   in round `r`. The proposer proposes the proposal of the highest round in which it saw
//!   k prevotes for one proposal (a *polka*), else the proposal it is locked on, else a new
//!   one (the tip sweep; its cone applied to the ledger and taken back with the undo log).
//!   A member prevotes round `r`'s proposal once it checked it (its cone applied and taken
//!   back, every commitment compared) unless it is locked on another proposal and saw no
//!   polka for this one in a round after its lock's round. At most one prevote per round.
//! - **Precommit** `(i, r, d)`: a member in round `r` that sees a polka for `d` in round `r`
//!   precommits `d` and is *locked* on `(d, r)`. At most one precommit per round.
//! - **Milestone signature**: once a member sees k precommits for one proposal in one round
//!   (a *commit certificate*), it signs the milestone itself (what nodes verify: the
//!   signing message has no round). It signs **at most one proposal per index**.
//!
//! Every vote leaves the core through [`Protocol::poll_committee`] with a [`VoteRecord`]
//! (the member's prevote, lock and signed proposal at the index, with the proposals and
//! certificates they name): the driver makes it durable before sending the message, and
//! gives it back with [`Protocol::restore_vote`] after a restart. Whoever holds k milestone
//! signatures on a proposal publishes it: the proposer at once, any other member half a
//! timeout later if no milestone of that index has appeared. Every member sends what it
//! voted for (and the best polka it knows) again once per round, and moves to a later round
//! when `2k - n` other members voted in it.
//!
//! Safety (two milestones with k signatures at one index need two sets of k signers, which
//! share `2k - n` members; with at most `2k - n - 1` Byzantine ones one of them is honest
//! and signs once per index) does not depend on the rounds. The rounds make it live: two
//! commit certificates for different proposals at one index are impossible with at most
//! `2k - n - 1` Byzantine members (Tendermint's lock argument, ARCHITECTURE.md "Fault
//! model"), so honest members never sign different proposals of one index, and with at most
//! `n - k` crashed members and messages eventually on time, some round's proposal is
//! prevoted, precommitted and signed by the k live members.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use dag_core::validate::{ValidTransaction, ValidationError};
use dag_core::{
    crypto, Digest, Keypair, Milestone, MilestoneIndex, Payload, Signature, TangleView, TxId,
};
use serde::{Deserialize, Serialize};

use super::work::{Job, Step, Work};
use super::Protocol;
use crate::wire::{CommitteeMessage, CommitteeVote, MAX_COMMITTEE_VOTES};

/// Evidence kept (the newest) of members that signed two proposals for one index.
const MAX_EVIDENCE: usize = 16;

/// Most proposals one index may gather (one per proposer and round, bounded by the rounds
/// a member accepts; beyond this, new ones are ignored).
const MAX_CANDIDATES: usize = 64;

/// Latency samples kept for the driver between two [`Protocol::take_committee_latencies`].
const MAX_LATENCY_SAMPLES: usize = 1024;

/// Round votes are kept for rounds at most this far below the current one; older rounds
/// count only as whole certificates (k votes of one round in one message).
const ROUNDS_KEPT: u32 = 4;

/// Round votes are accepted for rounds at most this far above the current one.
const ROUNDS_AHEAD: u32 = 16;

/// Polkas (k prevotes of one round) kept per proposal: the highest rounds.
const POLKAS_KEPT: usize = 3;

/// Upper bounds (ms) of the proposal-to-publication latency histogram's buckets.
pub const LATENCY_BUCKETS_MS: [u64; 10] =
    [50, 100, 250, 500, 1000, 2000, 3000, 5000, 10_000, 30_000];

const PREVOTE_TAG: &[u8] = b"tangle/committee-prevote/v1";
const PRECOMMIT_TAG: &[u8] = b"tangle/committee-precommit/v1";

/// What a member signs to prevote (or precommit) proposal `proposal` in round `round` of
/// index `index`: its own domain tag, never a milestone's signing message.
pub fn round_vote_message(
    network_id: u64,
    index: MilestoneIndex,
    precommit: bool,
    round: u32,
    proposal: &Digest,
) -> Vec<u8> {
    let tag = if precommit {
        PRECOMMIT_TAG
    } else {
        PREVOTE_TAG
    };
    let mut m = Vec::with_capacity(tag.len() + 8 + 4 + 4 + 32);
    m.extend_from_slice(tag);
    m.extend_from_slice(&network_id.to_le_bytes());
    m.extend_from_slice(&index.to_le_bytes());
    m.extend_from_slice(&round.to_le_bytes());
    m.extend_from_slice(&proposal.0);
    m
}

/// Member `member`'s prevote (or precommit) for `proposal` in round `round` of `index`,
/// signed with `key` (for tests and tools; a member's core signs its own).
pub fn sign_round_vote(
    key: &Keypair,
    member: u8,
    network_id: u64,
    index: MilestoneIndex,
    precommit: bool,
    round: u32,
    proposal: &Digest,
) -> CommitteeVote {
    CommitteeVote {
        precommit,
        round,
        member,
        signature: key.sign(&round_vote_message(
            network_id, index, precommit, round, proposal,
        )),
    }
}

/// What this member voted at one index: the driver makes it durable before the message
/// carrying the vote leaves the node, and hands it back with [`Protocol::restore_vote`]
/// after a restart, so a restarted member never prevotes or precommits twice in one round,
/// never forgets its lock, and never signs two proposals for one index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    /// The index.
    pub index: MilestoneIndex,
    /// The highest round it prevoted in, and the proposal.
    pub prevote: Option<(u32, Digest)>,
    /// Its lock: the highest round it precommitted in, and the proposal.
    pub lock: Option<(u32, Digest)>,
    /// The proposal whose milestone it signed (at most one per index).
    pub signed: Option<Digest>,
    /// The proposals named above (at most three), each with the votes and signatures held
    /// on it when recorded (the lock's polka among them): a restarted member re-proposes
    /// its lock and shows why it holds it.
    pub messages: Vec<CommitteeMessage>,
    /// When (the member's clock, ms) the index's rounds are counted from: a restarted
    /// member goes on with the rounds it was in, not from its record's round anew, which
    /// left two restarted members rounds behind the third for the rest of the run (chaos
    /// seed 500). 0: unknown.
    #[serde(default)]
    pub rounds_from: u64,
}

impl VoteRecord {
    /// The highest round this member voted in at its index.
    pub fn round(&self) -> u32 {
        self.prevote
            .map(|p| p.0)
            .max(self.lock.map(|l| l.0))
            .unwrap_or(0)
    }

    /// Whether this record may follow `held` (the one stored before): a later index, or at
    /// the same index no vote taken back or changed (prevote and lock rounds only grow, one
    /// proposal per round; the signed proposal never changes). A record that does not
    /// contradicts what the member signed before: it is neither stored nor sent.
    pub fn extends(&self, held: &VoteRecord) -> bool {
        if self.index != held.index {
            return self.index > held.index;
        }
        let grows = |new: Option<(u32, Digest)>, old: Option<(u32, Digest)>| match (new, old) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some((r, d)), Some((or, od))) => r > or || (r == or && d == od),
        };
        grows(self.prevote, held.prevote)
            && grows(self.lock, held.lock)
            && (held.signed.is_none() || self.signed == held.signed)
    }
}

/// A committee message to send to every peer; when `vote` is set, only after it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitteeOutput {
    /// A vote to make durable first.
    pub vote: Option<VoteRecord>,
    /// The message.
    pub message: CommitteeMessage,
}

/// What a member signed twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvidenceKind {
    /// Two milestones of one index (milestone signatures).
    Milestone,
    /// Two prevotes in this round.
    Prevote(u32),
    /// Two precommits in this round.
    Precommit(u32),
}

/// A member's signatures on two different proposals for one index (two milestones, or two
/// prevotes or precommits in one round): an honest member never makes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The index.
    pub index: MilestoneIndex,
    /// The member's committee index.
    pub member: u8,
    /// What it signed twice.
    pub kind: EvidenceKind,
    /// The proposal it signed first (as seen here).
    pub first: Digest,
    /// The other one.
    pub second: Digest,
}

/// A committee member's counters (monitoring).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitteeStats {
    /// This member's committee index.
    pub member: u8,
    /// Committee size and threshold.
    pub size: u8,
    /// Signatures needed.
    pub threshold: u8,
    /// Proposals made (re-proposals of a polka's or the lock's proposal included).
    pub proposals: u64,
    /// Milestone signatures given (one per index at most).
    pub votes: u64,
    /// Prevotes cast.
    pub prevotes: u64,
    /// Precommits cast.
    pub precommits: u64,
    /// Rounds that ended without a milestone (the next proposer took over).
    pub view_changes: u64,
    /// Proposals refused after checking them (a commitment did not match, a bad timestamp).
    pub rejected: u64,
    /// Equivocations seen: a member's signatures on two proposals for one index (two
    /// milestones, or two prevotes or precommits in one round).
    pub equivocations: u64,
    /// Milestones this member published.
    pub published: u64,
    /// Proposal-to-publication latency of those, ms: count per bucket of
    /// [`LATENCY_BUCKETS_MS`] (the last entry: above every bound), sum and count.
    pub latency_buckets: [u64; LATENCY_BUCKETS_MS.len() + 1],
    /// Sum of the latencies, ms.
    pub latency_sum_ms: u64,
    /// The round of the index being decided.
    pub round: u32,
    /// The index being decided.
    pub index: MilestoneIndex,
}

/// k votes of one kind and round for one proposal: member -> signature.
type Certificate = BTreeMap<u8, Signature>;

/// A proposal gathered at the index being decided.
#[derive(Debug)]
struct Candidate {
    /// The proposal, without signatures or votes.
    msg: CommitteeMessage,
    /// Valid milestone signatures on it (counted ones: a member's first proposal at this
    /// index).
    sigs: BTreeMap<u8, Signature>,
    /// Checked by applying its cone: `Some(true)` valid.
    checked: Option<bool>,
    /// Its missing parents were requested.
    requested: bool,
    /// When it was first received here.
    received_at: u64,
    /// When it reached k milestone signatures here.
    complete_at: Option<u64>,
    /// Polkas for it: round -> the k prevotes (the highest [`POLKAS_KEPT`] rounds).
    polkas: BTreeMap<u32, Certificate>,
    /// A commit certificate for it: a round and k precommits in it.
    commit: Option<(u32, Certificate)>,
}

impl Candidate {
    fn new(mut msg: CommitteeMessage, checked: Option<bool>, now: u64) -> Self {
        msg.milestone.signatures.clear();
        msg.votes.clear();
        Candidate {
            msg,
            sigs: BTreeMap::new(),
            checked,
            requested: false,
            received_at: now,
            complete_at: None,
            polkas: BTreeMap::new(),
            commit: None,
        }
    }

    /// Whether a polka for it is known in a round strictly between `after` and `before`.
    fn polka_between(&self, after: u32, before: u32) -> bool {
        self.polkas.keys().any(|r| *r > after && *r < before)
    }

    /// Vouched for by k members (a polka or a commit certificate): at least one honest
    /// member checked it.
    fn vouched(&self) -> bool {
        !self.polkas.is_empty() || self.commit.is_some()
    }
}

/// The committee state of a member.
pub(super) struct Committee {
    me: u8,
    key: Keypair,
    members: Vec<dag_core::Address>,
    threshold: usize,
    timeout_ms: u64,
    /// The index being decided (0: none yet) and when its round 0 began here.
    index: MilestoneIndex,
    started_at: u64,
    /// The timestamp of the last milestone applied (its proposer's clock when proposed).
    last_timestamp: u64,
    round: u32,
    /// The last round this member proposed in, and re-sent its votes in.
    proposed_round: Option<u32>,
    resent_round: Option<u32>,
    candidates: BTreeMap<Digest, Candidate>,
    /// The proposal each member's counted milestone signature at this index is on.
    signed: BTreeMap<u8, Digest>,
    /// Prevotes and precommits held, by (round, member): the proposal and the signature
    /// (rounds from [`ROUNDS_KEPT`] below the current one to [`ROUNDS_AHEAD`] above it).
    prevotes: BTreeMap<(u32, u8), (Digest, Signature)>,
    precommits: BTreeMap<(u32, u8), (Digest, Signature)>,
    /// The highest round each other member signed a round vote in, at this index.
    seen_round: BTreeMap<u8, u32>,
    /// Members already reported as equivocating at this index.
    reported: BTreeSet<u8>,
    /// This member's last vote record (any index).
    vote: Option<VoteRecord>,
    publishing: bool,
    /// The last time the core saw (for a vote handed back between two inputs).
    now: u64,
    out: VecDeque<CommitteeOutput>,
    stats: CommitteeStats,
    evidence: VecDeque<Evidence>,
    /// Proposal-to-publication latencies not yet taken by the driver (bounded).
    latencies: VecDeque<u64>,
}

impl Committee {
    pub(super) fn new(
        me: u8,
        key: Keypair,
        members: Vec<dag_core::Address>,
        threshold: u8,
        timeout_ms: u64,
    ) -> Self {
        let stats = CommitteeStats {
            member: me,
            size: members.len() as u8,
            threshold,
            ..CommitteeStats::default()
        };
        Committee {
            me,
            key,
            members,
            threshold: usize::from(threshold.max(1)),
            timeout_ms: timeout_ms.max(1),
            index: 0,
            started_at: 0,
            last_timestamp: 0,
            round: 0,
            proposed_round: None,
            resent_round: None,
            candidates: BTreeMap::new(),
            signed: BTreeMap::new(),
            prevotes: BTreeMap::new(),
            precommits: BTreeMap::new(),
            seen_round: BTreeMap::new(),
            reported: Default::default(),
            vote: None,
            publishing: false,
            now: 0,
            out: VecDeque::new(),
            stats,
            evidence: VecDeque::new(),
            latencies: VecDeque::new(),
        }
    }

    /// The committee state for a new term (a rotation changed the committee): what this
    /// member did in the previous term (its durable vote, counters, evidence, latencies not
    /// taken yet) carries over.
    pub(super) fn for_term(
        previous: Option<Committee>,
        me: u8,
        key: Keypair,
        members: Vec<dag_core::Address>,
        threshold: u8,
        timeout_ms: u64,
    ) -> Self {
        let mut c = Committee::new(me, key, members, threshold, timeout_ms);
        if let Some(p) = previous {
            c.vote = p.vote;
            c.evidence = p.evidence;
            c.latencies = p.latencies;
            c.stats = CommitteeStats {
                member: c.stats.member,
                size: c.stats.size,
                threshold: c.stats.threshold,
                ..p.stats
            };
        }
        c
    }

    /// Drops the oldest outputs beyond `max` (a driver without peering never polls them;
    /// votes are re-sent every round, so nothing is lost that matters).
    pub(super) fn trim_output(&mut self, max: usize) {
        while self.out.len() > max {
            self.out.pop_front();
        }
    }

    /// Whether this state serves member `me` of `members` with `threshold`.
    pub(super) fn serves(&self, me: u8, members: &[dag_core::Address], threshold: u8) -> bool {
        self.me == me && self.members == members && self.threshold == usize::from(threshold.max(1))
    }

    fn n(&self) -> u64 {
        self.members.len() as u64
    }

    /// The committee key of member `s`.
    fn member_address(&self, s: u8) -> Option<&dag_core::Address> {
        self.members.get(usize::from(s))
    }

    /// Members that may be Byzantine with safety kept: `2k - n - 1` (at least 0).
    fn byzantine_bound(&self) -> usize {
        (2 * self.threshold).saturating_sub(self.members.len() + 1)
    }

    /// The proposer of `round` at `index`.
    fn proposer(&self, index: MilestoneIndex, round: u32) -> u8 {
        ((u64::from(index) + u64::from(round)) % self.n()) as u8
    }

    /// Round 0 of the next index proposes one interval after the last milestone was
    /// proposed (its timestamp), not after this member applied it, so the cadence is the
    /// interval; but never before this member entered the index and never more than one
    /// interval later than that (a timestamp from a skewed clock moves nothing further).
    fn round_zero_base(&self, entered: u64, interval: u64) -> u64 {
        if self.last_timestamp == 0 {
            return entered;
        }
        // `started_at + interval` is when round 0 proposes.
        self.last_timestamp
            .saturating_add(interval)
            .clamp(entered, entered.saturating_add(interval))
            .saturating_sub(interval)
    }

    /// The round at `now` by this member's clock (see the module documentation).
    fn round_at(&self, now: u64, interval: u64) -> u32 {
        let due = self.started_at.saturating_add(interval);
        if now < due {
            return 0;
        }
        let t = (now - due) / self.timeout_ms;
        if t >= timeouts_before(GROWTH_ROUNDS) {
            let r = u64::from(GROWTH_ROUNDS)
                + (t - timeouts_before(GROWTH_ROUNDS)) / u64::from(GROWTH_ROUNDS);
            return u32::try_from(r).unwrap_or(u32::MAX);
        }
        (0..GROWTH_ROUNDS)
            .take_while(|r| timeouts_before(r + 1) <= t)
            .count() as u32
    }

    /// When round `round` begins.
    fn round_start(&self, round: u32, interval: u64) -> u64 {
        self.started_at
            .saturating_add(interval)
            .saturating_add(timeouts_before(round).saturating_mul(self.timeout_ms))
    }

    /// Moves to round `round` (a later one) now: its full length from now on.
    fn jump_to(&mut self, round: u32, now: u64, interval: u64) {
        if round <= self.round {
            return;
        }
        let offset =
            interval.saturating_add(timeouts_before(round).saturating_mul(self.timeout_ms));
        self.started_at = now.saturating_sub(offset);
        self.stats.view_changes += u64::from(round - self.round);
        self.round = round;
        self.stats.round = round;
        self.prune();
    }

    /// Resumes the rounds of a vote record at this index: counted from the record's start
    /// (if known), never below the record's round.
    fn resume(&mut self, v: &VoteRecord, now: u64, interval: u64) {
        if v.rounds_from != 0 && v.rounds_from <= now {
            self.started_at = v.rounds_from;
            let r = self.round_at(now, interval);
            if r > self.round {
                self.round = r;
                self.stats.round = r;
                self.prune();
            }
        }
        self.jump_to(v.round(), now, interval);
    }

    /// Forgets round votes of rounds more than [`ROUNDS_KEPT`] below the current one.
    fn prune(&mut self) {
        let low = self.round.saturating_sub(ROUNDS_KEPT);
        self.prevotes.retain(|(r, _), _| *r >= low);
        self.precommits.retain(|(r, _), _| *r >= low);
    }

    /// This member's vote record at the index being decided, if any.
    fn vote_here(&self) -> Option<&VoteRecord> {
        self.vote.as_ref().filter(|v| v.index == self.index)
    }

    /// This member voted at a later index than the one it is deciding (restored after a
    /// restart, its ledger behind): it signs nothing here.
    fn blocked(&self) -> bool {
        self.vote.as_ref().is_some_and(|v| v.index > self.index)
    }

    fn my_prevote(&self) -> Option<(u32, Digest)> {
        self.vote_here().and_then(|v| v.prevote)
    }

    fn my_lock(&self) -> Option<(u32, Digest)> {
        self.vote_here().and_then(|v| v.lock)
    }

    fn my_signed(&self) -> Option<Digest> {
        self.vote_here().and_then(|v| v.signed)
    }

    /// This member's record at the index being decided, made if there is none yet.
    fn record_mut(&mut self) -> &mut VoteRecord {
        let index = self.index;
        if self.vote.as_ref().is_none_or(|v| v.index < index) {
            self.vote = Some(VoteRecord {
                index,
                prevote: None,
                lock: None,
                signed: None,
                messages: Vec::new(),
                rounds_from: 0,
            });
        }
        self.vote.as_mut().expect("set above")
    }

    /// Round `round`'s proposal: the one its proposer prevoted in it (the first seen).
    fn proposal_of(&self, round: u32) -> Option<Digest> {
        let p = self.proposer(self.index, round);
        self.prevotes.get(&(round, p)).map(|(d, _)| *d)
    }

    /// The proposal with the highest polka known here, if it was checked valid.
    fn best_polka(&self) -> Option<(u32, Digest)> {
        self.candidates
            .iter()
            .filter_map(|(d, c)| c.polkas.keys().next_back().map(|r| (*r, *d)))
            .max()
    }

    /// The message for `digest`: its content with every counted milestone signature and
    /// the round votes held on it (this member's first, then the commit certificate, the
    /// highest polka, the newest others; at most [`MAX_COMMITTEE_VOTES`]).
    fn message_for(&self, digest: &Digest) -> Option<CommitteeMessage> {
        let c = self.candidates.get(digest)?;
        let mut msg = c.msg.clone();
        msg.milestone.signatures = c.sigs.iter().map(|(s, sig)| (*s, *sig)).collect();
        let mut seen = BTreeSet::new();
        let mut votes = Vec::new();
        let mut add = |precommit: bool, round: u32, member: u8, signature: Signature| {
            if votes.len() < MAX_COMMITTEE_VOTES && seen.insert((precommit, round, member)) {
                votes.push(CommitteeVote {
                    precommit,
                    round,
                    member,
                    signature,
                });
            }
        };
        let held = |map: &BTreeMap<(u32, u8), (Digest, Signature)>| {
            map.iter()
                .rev()
                .filter(|(_, (d, _))| d == digest)
                .map(|((r, m), (_, s))| (*r, *m, *s))
                .collect::<Vec<_>>()
        };
        let (pre, com) = (held(&self.prevotes), held(&self.precommits));
        for (r, m, s) in com.iter().filter(|v| v.1 == self.me) {
            add(true, *r, *m, *s);
        }
        for (r, m, s) in pre.iter().filter(|v| v.1 == self.me) {
            add(false, *r, *m, *s);
        }
        if let Some((r, cert)) = &c.commit {
            for (m, s) in cert {
                add(true, *r, *m, *s);
            }
        }
        if let Some((r, cert)) = c.polkas.iter().next_back() {
            for (m, s) in cert {
                add(false, *r, *m, *s);
            }
        }
        for (r, m, s) in com {
            add(true, r, m, s);
        }
        for (r, m, s) in pre {
            add(false, r, m, s);
        }
        msg.votes = votes;
        Some(msg)
    }

    /// Logs, counts and keeps evidence of `member` signing two proposals (once per member
    /// and index).
    fn note_evidence(&mut self, member: u8, kind: EvidenceKind, first: Digest, second: Digest) {
        if !self.reported.insert(member) {
            return;
        }
        let e = Evidence {
            index: self.index,
            member,
            kind,
            first,
            second,
        };
        tracing::warn!(
            index = e.index,
            member,
            ?kind,
            first = %e.first,
            second = %e.second,
            "committee: equivocation, a member signed two proposals for one index"
        );
        self.stats.equivocations += 1;
        if self.evidence.len() >= MAX_EVIDENCE {
            self.evidence.pop_front();
        }
        self.evidence.push_back(e);
    }

    /// Holds `member`'s verified prevote (or precommit) for `digest` in `round`; a second
    /// one of that member and round for another proposal is evidence, not held. A polka or
    /// commit certificate it completes is noted on the proposal. Returns whether it is new.
    fn hold_vote(
        &mut self,
        precommit: bool,
        round: u32,
        member: u8,
        digest: Digest,
        sig: Signature,
    ) -> bool {
        let map = if precommit {
            &mut self.precommits
        } else {
            &mut self.prevotes
        };
        match map.get(&(round, member)) {
            Some((d, _)) if *d == digest => return false,
            Some((d, _)) => {
                let first = *d;
                let kind = if precommit {
                    EvidenceKind::Precommit(round)
                } else {
                    EvidenceKind::Prevote(round)
                };
                self.note_evidence(member, kind, first, digest);
                return false;
            }
            None => {
                map.insert((round, member), (digest, sig));
            }
        }
        let cert: Certificate = map
            .range((round, 0)..=(round, u8::MAX))
            .filter(|(_, (d, _))| *d == digest)
            .map(|((_, m), (_, s))| (*m, *s))
            .collect();
        if cert.len() >= self.threshold {
            self.hold_certificate(precommit, round, digest, cert);
        }
        true
    }

    /// Notes a polka (or commit certificate) for `digest` in `round`.
    fn hold_certificate(&mut self, precommit: bool, round: u32, digest: Digest, cert: Certificate) {
        let Some(c) = self.candidates.get_mut(&digest) else {
            return;
        };
        if precommit {
            if c.commit.as_ref().is_none_or(|(r, _)| *r < round) {
                c.commit = Some((round, cert));
            }
        } else {
            c.polkas.insert(round, cert);
            while c.polkas.len() > POLKAS_KEPT {
                c.polkas.pop_first();
            }
        }
    }

    /// Forgets this member's own votes and signatures at this index (a vote record handed
    /// back replaces them) and the queued messages carrying votes.
    fn drop_own(&mut self) {
        let me = self.me;
        let k = self.threshold;
        self.prevotes.retain(|(_, m), _| *m != me);
        self.precommits.retain(|(_, m), _| *m != me);
        self.signed.remove(&me);
        for c in self.candidates.values_mut() {
            c.sigs.remove(&me);
            if c.sigs.len() < k {
                c.complete_at = None;
            }
            for cert in c.polkas.values_mut() {
                cert.remove(&me);
            }
            c.polkas.retain(|_, cert| cert.len() >= k);
            if let Some((_, cert)) = c.commit.as_mut() {
                cert.remove(&me);
                if cert.len() < k {
                    c.commit = None;
                }
            }
        }
        self.out.retain(|o| o.vote.is_none());
    }
}

/// Round `r` lasts `min(r + 1, GROWTH_ROUNDS)` proposer timeouts: a round that ended
/// because checking a proposal took longer than a timeout (a loaded member) gives the next
/// one more time, as Tendermint's timeouts grow with the round. The growth also brings
/// members whose rounds drifted apart (a restarted member resumes its round later than the
/// others went through theirs) back into one round: the one behind has the shorter rounds.
/// With rounds of equal length (the cap was 8) two members in different rounds stayed there
/// (chaos seed 18: two restarted members two rounds behind the third, for good). 64 is
/// reached after 2,080 timeouts (35 minutes at one second).
const GROWTH_ROUNDS: u32 = 64;

/// Proposer timeouts before round `round` begins (after round 0's start).
fn timeouts_before(round: u32) -> u64 {
    let r = u64::from(round);
    let g = u64::from(GROWTH_ROUNDS);
    if r <= g {
        r * (r + 1) / 2
    } else {
        g * (g + 1) / 2 + (r - g) * g
    }
}

/// The digest naming a proposal: BLAKE2b-256 of what its signatures sign.
pub fn proposal_digest(network_id: u64, parents: &[TxId; 2], m: &Milestone) -> Digest {
    Digest(crypto::blake2b256(&crypto::milestone_signing_message(
        network_id, parents, m,
    )))
}

impl Protocol {
    /// Whether this node issues milestones as a member of a committee of several (see
    /// [`Protocol::handle_committee_message`]).
    pub fn is_committee_member(&self) -> bool {
        self.committee.is_some()
    }

    /// The committee member's counters (`None`: not a member of a committee of several).
    pub fn committee_stats(&self) -> Option<CommitteeStats> {
        self.committee.as_ref().map(|c| c.stats.clone())
    }

    /// Proposal-to-publication latencies (ms) of the milestones this member published since
    /// the last call (at most 1,024, the newest): for the driver's histogram.
    pub fn take_committee_latencies(&mut self) -> Vec<u64> {
        self.committee
            .as_mut()
            .map(|c| c.latencies.drain(..).collect())
            .unwrap_or_default()
    }

    /// The newest evidence of equivocating members (at most 16).
    pub fn committee_evidence(&self) -> Vec<Evidence> {
        self.committee
            .as_ref()
            .map(|c| c.evidence.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The next committee message to send to every peer. If it carries a vote, make the vote
    /// durable first (and hand it back with [`Protocol::restore_vote`] after a restart).
    pub fn poll_committee(&mut self) -> Option<CommitteeOutput> {
        self.committee.as_mut()?.out.pop_front()
    }

    /// The last vote record this member made durable before it stopped: it votes nothing
    /// that record contradicts (no second prevote or precommit in a round it voted in, its
    /// lock kept, no other milestone signed at that index) and nothing at an earlier index,
    /// resumes from the record's round, and sends those votes again.
    /// If this core voted otherwise meanwhile (the driver handed the record back late, or
    /// refused to store a contradicting one), its own votes and signatures are replaced by
    /// the record's, and its queued messages carrying votes are dropped: none of them is
    /// counted, published or sent.
    pub fn restore_vote(&mut self, vote: VoteRecord) {
        let interval = self.config.milestone_interval_ms;
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        if c.vote.as_ref().is_some_and(|v| v.index > vote.index) {
            return;
        }
        c.vote = Some(vote.clone());
        if c.index != vote.index {
            return;
        }
        c.drop_own();
        let now = c.now;
        c.resume(&vote, now, interval);
        for m in vote.messages {
            self.merge_message(m, now, true);
        }
    }

    /// The transaction carrying applied milestone `index`, if the core holds it.
    pub fn milestone_tx_id(&self, index: MilestoneIndex) -> Option<TxId> {
        self.milestone_tx(index)
    }

    /// The milestone a proposer would propose on `parents` at `now` (without signatures),
    /// computed on a copy of the ledger: for tests and tools (a member uses its undo log).
    pub fn proposal_on(&self, parents: [TxId; 2], now: u64) -> Result<Milestone, String> {
        let index = self.ledger.confirmed_index() + 1;
        let previous = self
            .milestone_tx(index - 1)
            .ok_or("the previous milestone's transaction is unknown")?;
        let mut ledger = self.ledger.clone();
        let applied = super::milestone::apply_parents(
            &self.tangle,
            &self.unconfirmed_payloads,
            &mut ledger,
            index,
            &parents,
        )
        .map_err(|e| e.to_string())?;
        let (confirmed_root, applied_root) = applied.roots(&self.tangle);
        Ok(Milestone {
            index,
            timestamp: now,
            previous,
            confirmed_root,
            applied_root,
            state_root: ledger.state_root(),
            ledger_digest: applied.outcome.ledger_digest,
            signatures: Vec::new(),
            committee_update: self.update_to_carry(index),
        })
    }

    /// Starts deciding index `confirmed + 1` if this member was still on an earlier one.
    fn enter_index(&mut self, now: u64) {
        let index = self.ledger.confirmed_index() + 1;
        let interval = self.config.milestone_interval_ms;
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        c.now = c.now.max(now);
        if c.index == index {
            return;
        }
        c.index = index;
        c.started_at = c.round_zero_base(now, interval);
        c.round = 0;
        c.proposed_round = None;
        c.resent_round = None;
        c.candidates.clear();
        c.signed.clear();
        c.prevotes.clear();
        c.precommits.clear();
        c.seen_round.clear();
        c.reported.clear();
        c.publishing = false;
        c.stats.index = index;
        c.stats.round = 0;
        // A restored record at this index: its proposals are candidates again (checked
        // before the restart against the same ledger), its votes held, its round resumed.
        if let Some(v) = c.vote.clone().filter(|v| v.index == index) {
            let views = c.stats.view_changes;
            c.resume(&v, now, interval);
            c.stats.view_changes = views;
            for m in v.messages {
                self.merge_message(m, now, true);
            }
        }
    }

    /// The committee's part of the timer: round changes, proposing, voting, publishing,
    /// sending the votes again.
    pub(super) fn committee_tick(&mut self, now: u64) {
        self.enter_index(now);
        let interval = self.config.milestone_interval_ms;
        let index = self.ledger.confirmed_index() + 1;
        if self.milestones.contains_key(&index) {
            // Published (received or ours): waiting to be applied.
            return;
        }
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        let round = c.round_at(now, interval);
        if round > c.round {
            c.stats.view_changes += u64::from(round - c.round);
            tracing::info!(
                index,
                round,
                proposer = c.proposer(index, round),
                "committee: view change (no milestone in time)"
            );
            c.round = round;
            c.stats.round = round;
            c.prune();
        }
        self.committee_step(now);
        self.maybe_propose(now);
        self.resend_votes();
    }

    /// Everything a member does on what it holds: check the proposals that matter, precommit
    /// a polka of its round, prevote its round's proposal, sign a proposal with a commit
    /// certificate, publish one with k signatures.
    fn committee_step(&mut self, now: u64) {
        if self.halted.is_some() {
            return;
        }
        self.check_candidates(now);
        self.try_precommit(now);
        self.try_prevote(now);
        self.try_precommit(now);
        self.try_sign(now);
        self.maybe_publish(now);
    }

    /// Precommits the proposal with a polka in this member's round (checked valid), once
    /// per round, and locks on it.
    fn try_precommit(&mut self, now: u64) {
        let Some(c) = self.committee.as_ref() else {
            return;
        };
        let r = c.round;
        if c.blocked() || c.my_lock().is_some_and(|(lr, _)| lr >= r) {
            return;
        }
        let found = c
            .candidates
            .iter()
            .find(|(_, cand)| cand.checked == Some(true) && cand.polkas.contains_key(&r))
            .map(|(d, _)| *d);
        if let Some(d) = found {
            self.cast_round_vote(true, d, now);
        }
    }

    /// Prevotes this round's proposal (checked valid) unless locked on another one without
    /// a polka for this one after the lock's round; once per round.
    fn try_prevote(&mut self, now: u64) {
        let Some(c) = self.committee.as_ref() else {
            return;
        };
        let r = c.round;
        if c.blocked() || c.my_prevote().is_some_and(|(pr, _)| pr >= r) {
            return;
        }
        let Some(d) = c.proposal_of(r) else {
            return;
        };
        let Some(cand) = c.candidates.get(&d) else {
            return;
        };
        if cand.checked != Some(true) {
            return;
        }
        let free = match c.my_lock() {
            None => true,
            Some((lr, ld)) => ld == d || cand.polka_between(lr, r),
        };
        if free {
            self.cast_round_vote(false, d, now);
        } else {
            tracing::debug!(index = c.index, round = r, %d, "committee: locked on another proposal, no prevote");
        }
    }

    /// Signs the milestone of the proposal with a commit certificate (checked valid), once
    /// per index.
    fn try_sign(&mut self, now: u64) {
        let Some(c) = self.committee.as_ref() else {
            return;
        };
        if c.blocked() || c.my_signed().is_some() {
            return;
        }
        let found = c
            .candidates
            .iter()
            .find(|(_, cand)| cand.checked == Some(true) && cand.commit.is_some())
            .map(|(d, _)| *d);
        if let Some(d) = found {
            self.cast_vote(d, now);
        }
    }

    /// Proposes in this member's round: the proposal of the highest polka it knows, else
    /// the one it is locked on, else a new one (the tip sweep; its end comes to
    /// [`Protocol::propose`]).
    fn maybe_propose(&mut self, now: u64) {
        let interval = self.config.milestone_interval_ms;
        let issuing = self.issuing;
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        let index = c.index;
        let r = c.round;
        let my_turn = c.proposer(index, r) == c.me
            && now >= c.round_start(r, interval)
            && c.proposed_round != Some(r)
            && !c.blocked()
            && c.my_prevote().is_none_or(|(pr, _)| pr < r);
        if !my_turn || issuing || c.publishing {
            return;
        }
        let lock = c.my_lock();
        let again = c.best_polka().map(|(_, d)| d).or(lock.map(|(_, d)| d));
        if let Some(d) = again {
            match c.candidates.get(&d).map(|cand| cand.checked) {
                // Its check is on the way (parents requested): propose once it is done.
                Some(None) => return,
                Some(Some(true)) => {
                    c.proposed_round = Some(r);
                    c.stats.proposals += 1;
                    tracing::debug!(index, round = r, %d, "committee: proposing again");
                    self.try_prevote_as_proposer(d, now);
                    return;
                }
                // Unknown here or invalid: a new proposal, unless locked.
                _ => {}
            }
        }
        if lock.is_some() {
            return;
        }
        // A proposal this member has not checked yet (its parents on the way, its cone
        // being applied) is not met with a new one: one whose parents did not come within a
        // timeout does not hold it back.
        let pending = c.candidates.values().any(|cand| {
            cand.checked.is_none() && now < cand.received_at.saturating_add(c.timeout_ms)
        });
        if pending {
            return;
        }
        c.proposed_round = Some(r);
        c.stats.proposals += 1;
        tracing::debug!(index, round = r, "committee: proposing");
        self.issue_milestone(now);
    }

    /// The proposer's prevote for `d` in its round: that is the round's proposal.
    fn try_prevote_as_proposer(&mut self, d: Digest, now: u64) {
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        let r = c.round;
        if c.proposer(c.index, r) != c.me
            || c.blocked()
            || c.my_prevote().is_some_and(|(pr, _)| pr >= r)
        {
            return;
        }
        let free = match (c.my_lock(), c.candidates.get(&d)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some((lr, ld)), Some(cand)) => ld == d || cand.polka_between(lr, r),
        };
        if !free {
            return;
        }
        if let Some(cand) = c.candidates.get_mut(&d) {
            cand.msg.round = r;
            cand.msg.proposer = c.me;
        }
        self.cast_round_vote(false, d, now);
    }

    /// Sends, once per round, what this member voted for and the best polka it knows (lost
    /// messages, restarted members, members locked on an older round).
    fn resend_votes(&mut self) {
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        if c.resent_round == Some(c.round) || c.blocked() {
            return;
        }
        c.resent_round = Some(c.round);
        let mut ds: Vec<Digest> = Vec::new();
        let mine = c
            .vote_here()
            .map(|v| [v.prevote.map(|p| p.1), v.lock.map(|l| l.1), v.signed]);
        for d in mine.into_iter().flatten().flatten() {
            ds.push(d);
        }
        if let Some((_, d)) = c.best_polka() {
            ds.push(d);
        }
        if let Some((d, _)) = c.candidates.iter().find(|(_, cand)| cand.commit.is_some()) {
            ds.push(*d);
        }
        let mut sent = BTreeSet::new();
        for d in ds {
            if sent.insert(d) {
                if let Some(message) = c.message_for(&d) {
                    c.out.push_back(CommitteeOutput {
                        vote: None,
                        message,
                    });
                }
            }
        }
    }

    /// The end of a proposer's sweep: the proposal on `parents`, checked on the ledger and
    /// taken back, prevoted and sent.
    pub(super) fn propose(&mut self, index: MilestoneIndex, parents: [TxId; 2], now: u64) {
        let Some(c) = self.committee.as_ref() else {
            return;
        };
        let (round, me) = (c.round, c.me);
        let Some(previous) = self.milestone_tx(index - 1) else {
            tracing::warn!(index, "committee: cannot propose, milestone before unknown");
            return;
        };
        let applied = match super::milestone::apply_parents(
            &self.tangle,
            &self.unconfirmed_payloads,
            &mut self.ledger,
            index,
            &parents,
        ) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(index, error = %e, "committee: cannot propose");
                return;
            }
        };
        let undo = self.ledger.take_undo();
        let (confirmed_root, applied_root) = applied.roots(&self.tangle);
        let milestone = Milestone {
            index,
            timestamp: now,
            previous,
            confirmed_root,
            applied_root,
            state_root: self.ledger.state_root(),
            ledger_digest: applied.outcome.ledger_digest,
            signatures: Vec::new(),
            committee_update: self.update_to_carry(index),
        };
        if let Err(e) = self.ledger.revert_last(undo) {
            self.halt(format!("committee: taking back proposal {index}: {e}"));
            return;
        }
        let msg = CommitteeMessage {
            round,
            proposer: me,
            parents,
            milestone,
            votes: Vec::new(),
        };
        let digest = proposal_digest(self.network_id, &parents, &msg.milestone);
        if let Some(c) = self.committee.as_mut() {
            if c.index != index || c.candidates.len() >= MAX_CANDIDATES {
                return;
            }
            c.candidates
                .entry(digest)
                .or_insert_with(|| Candidate::new(msg, Some(true), now));
        }
        self.try_prevote_as_proposer(digest, now);
        self.committee_step(now);
    }

    /// Signs and holds this member's prevote (or precommit) for `digest` in its round,
    /// records it and queues it.
    fn cast_round_vote(&mut self, precommit: bool, digest: Digest, now: u64) {
        let network_id = self.network_id;
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        let (index, r, me) = (c.index, c.round, c.me);
        let v = sign_round_vote(&c.key, me, network_id, index, precommit, r, &digest);
        c.hold_vote(precommit, r, me, digest, v.signature);
        let rec = c.record_mut();
        if precommit {
            rec.lock = Some((r, digest));
            c.stats.precommits += 1;
        } else {
            rec.prevote = Some((r, digest));
            c.stats.prevotes += 1;
        }
        tracing::debug!(index, round = r, %digest, precommit, "committee: round vote");
        let _ = now;
        self.emit_record(digest);
    }

    /// Queues this member's record (with the messages it names) and the message on `focus`.
    fn emit_record(&mut self, focus: Digest) {
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        let Some(mut rec) = c.vote_here().cloned() else {
            return;
        };
        rec.rounds_from = c.started_at;
        let mut ds = BTreeSet::new();
        rec.messages = [rec.prevote.map(|p| p.1), rec.lock.map(|l| l.1), rec.signed]
            .into_iter()
            .flatten()
            .filter(|d| ds.insert(*d))
            .filter_map(|d| c.message_for(&d))
            .collect();
        c.vote = Some(rec.clone());
        if let Some(message) = c.message_for(&focus) {
            c.out.push_back(CommitteeOutput {
                vote: Some(rec),
                message,
            });
        }
    }

    /// Signs the milestone of proposal `digest` (which has a commit certificate), records
    /// it and queues it.
    fn cast_vote(&mut self, digest: Digest, now: u64) {
        let network_id = self.network_id;
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        if c.blocked() || c.my_signed().is_some_and(|d| d != digest) {
            return;
        }
        let me = c.me;
        let Some(cand) = c.candidates.get_mut(&digest) else {
            return;
        };
        let sig = c.key.sign(&crypto::milestone_signing_message(
            network_id,
            &cand.msg.parents,
            &cand.msg.milestone,
        ));
        cand.sigs.insert(me, sig);
        if cand.sigs.len() >= c.threshold && cand.complete_at.is_none() {
            cand.complete_at = Some(now);
        }
        c.signed.insert(me, digest);
        c.record_mut().signed = Some(digest);
        c.stats.votes += 1;
        self.emit_record(digest);
    }

    /// A committee message from a peer: its valid signatures and votes are merged, and the
    /// member votes on what it holds now. Messages for another index than the next one are
    /// ignored (members send their votes again every round). Never panics on any message.
    pub fn handle_committee_message(&mut self, msg: CommitteeMessage, now: u64) {
        if self.halted.is_some() || self.committee.is_none() {
            return;
        }
        self.enter_index(now);
        self.merge_message(msg, now, false);
        self.catch_up(now);
        self.committee_step(now);
    }

    /// Moves to a later round once `2k - n` other members (one honest at least) voted in it
    /// (a restarted member, or one whose clock runs late, joins the others).
    fn catch_up(&mut self, now: u64) {
        let interval = self.config.milestone_interval_ms;
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        let mut rounds: Vec<u32> = c.seen_round.values().copied().collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        let Some(&r) = rounds.get(c.byzantine_bound()) else {
            return;
        };
        if r > c.round {
            tracing::info!(
                index = c.index,
                round = r,
                "committee: joining a later round"
            );
            c.jump_to(r, now, interval);
        }
    }

    /// Merges a message's proposal, milestone signatures and round votes (each verified
    /// once; `own`: read back from this member's record). Returns the proposal's digest.
    fn merge_message(&mut self, msg: CommitteeMessage, now: u64, own: bool) -> Option<Digest> {
        let network_id = self.network_id;
        let c = self.committee.as_mut()?;
        let index = c.index;
        if msg.milestone.index != index
            || msg.milestone.signatures.len() > c.members.len()
            || msg.votes.len() > MAX_COMMITTEE_VOTES
            || usize::from(msg.proposer) >= c.members.len()
            || c.proposer(index, msg.round) != msg.proposer
        {
            return None;
        }
        let digest = proposal_digest(network_id, &msg.parents, &msg.milestone);
        if !c.candidates.contains_key(&digest) {
            if c.candidates.len() >= MAX_CANDIDATES {
                return None;
            }
            let checked = if own { Some(true) } else { None };
            c.candidates
                .insert(digest, Candidate::new(msg.clone(), checked, now));
        }
        let signing = crypto::milestone_signing_message(network_id, &msg.parents, &msg.milestone);
        for (s, sig) in &msg.milestone.signatures {
            let Some(addr) = c.member_address(*s) else {
                continue;
            };
            if c.candidates
                .get(&digest)
                .is_some_and(|cand| cand.sigs.contains_key(s))
            {
                continue;
            }
            if crypto::verify(addr, &signing, sig).is_err() {
                tracing::debug!(index, member = s, "committee: invalid signature ignored");
                continue;
            }
            match c.signed.get(s) {
                Some(first) if *first != digest => {
                    let first = *first;
                    c.note_evidence(*s, EvidenceKind::Milestone, first, digest);
                }
                _ => {
                    c.signed.insert(*s, digest);
                    if let Some(cand) = c.candidates.get_mut(&digest) {
                        cand.sigs.insert(*s, *sig);
                        if cand.sigs.len() >= c.threshold && cand.complete_at.is_none() {
                            cand.complete_at = Some(now);
                        }
                    }
                }
            }
        }
        // Round votes: those of the rounds kept are held one by one; a whole certificate
        // of an older round (k votes) counts as such.
        let low = c.round.saturating_sub(ROUNDS_KEPT);
        let high = c.round.saturating_add(ROUNDS_AHEAD);
        let mut old: BTreeMap<(bool, u32), Certificate> = BTreeMap::new();
        for v in &msg.votes {
            let Some(addr) = c.member_address(v.member) else {
                continue;
            };
            let map = if v.precommit {
                &c.precommits
            } else {
                &c.prevotes
            };
            if map
                .get(&(v.round, v.member))
                .is_some_and(|(d, s)| *d == digest && *s == v.signature)
            {
                continue;
            }
            if v.round < low {
                let known = c.candidates.get(&digest).is_some_and(|cand| {
                    if v.precommit {
                        cand.commit.is_some()
                    } else {
                        cand.polkas.contains_key(&v.round)
                    }
                });
                if known {
                    continue;
                }
            }
            let m = round_vote_message(network_id, index, v.precommit, v.round, &digest);
            if crypto::verify(addr, &m, &v.signature).is_err() {
                tracing::debug!(
                    index,
                    member = v.member,
                    "committee: invalid round vote ignored"
                );
                continue;
            }
            if v.member != c.me {
                let seen = c.seen_round.entry(v.member).or_insert(0);
                *seen = (*seen).max(v.round);
            }
            if v.round < low {
                old.entry((v.precommit, v.round))
                    .or_default()
                    .insert(v.member, v.signature);
            } else if v.round <= high {
                c.hold_vote(v.precommit, v.round, v.member, digest, v.signature);
            }
        }
        for ((precommit, round), cert) in old {
            if cert.len() >= c.threshold {
                c.hold_certificate(precommit, round, digest, cert);
            }
        }
        Some(digest)
    }

    /// Checks the proposals that matter here (one with a commit certificate, a polka, or
    /// this round's or the next one's proposal), their parents solid first (missing ones
    /// requested).
    pub(super) fn check_candidates(&mut self, now: u64) {
        let Some(c) = self.committee.as_ref() else {
            return;
        };
        if self.halted.is_some() {
            return;
        }
        let index = c.index;
        let current = [c.proposal_of(c.round), c.proposal_of(c.round + 1)];
        let mut order: Vec<(u8, std::cmp::Reverse<u32>, Digest)> = c
            .candidates
            .iter()
            .filter(|(_, cand)| cand.checked.is_none())
            .filter_map(|(d, cand)| {
                if cand.commit.is_some() {
                    Some((0, std::cmp::Reverse(0), *d))
                } else if let Some(r) = cand.polkas.keys().next_back() {
                    Some((1, std::cmp::Reverse(*r), *d))
                } else if current.contains(&Some(*d)) {
                    Some((2, std::cmp::Reverse(0), *d))
                } else {
                    None
                }
            })
            .collect();
        order.sort_unstable();
        for (_, _, digest) in order {
            let Some(cand) = self
                .committee
                .as_ref()
                .and_then(|c| c.candidates.get(&digest))
            else {
                continue;
            };
            let parents = cand.msg.parents;
            let vouched = cand.vouched();
            let missing: Vec<TxId> = parents
                .iter()
                .filter(|p| !self.tangle.is_solid(p))
                .copied()
                .collect();
            if !missing.is_empty() {
                let unknown: Vec<TxId> = missing
                    .iter()
                    .filter(|p| !self.tangle.is_known(p))
                    .copied()
                    .collect();
                if let Some(cand) = self
                    .committee
                    .as_mut()
                    .and_then(|c| c.candidates.get_mut(&digest))
                {
                    if !cand.requested {
                        cand.requested = true;
                        self.missing.extend(unknown);
                    }
                }
                continue;
            }
            let milestone = cand.msg.milestone.clone();
            if self.previous_not_seen_yet(&milestone) {
                // Another copy of the previous milestone: check once it is here.
                self.missing.push(milestone.previous);
                continue;
            }
            let verdict = self.check_proposal(&milestone, &parents, now, vouched);
            let Some(c) = self.committee.as_mut() else {
                return;
            };
            let Some(cand) = c.candidates.get_mut(&digest) else {
                continue;
            };
            match verdict {
                Ok(()) => cand.checked = Some(true),
                Err(why) => {
                    cand.checked = Some(false);
                    c.stats.rejected += 1;
                    tracing::warn!(index, %digest, %why, "committee: proposal refused");
                }
            }
        }
    }

    /// A proposal's timestamp and commitments against its cone applied to the ledger (and
    /// taken back). The timestamp must be within the genesis window of this member's clock
    /// unless k members vouched for the proposal (a polka: one honest member checked it
    /// then; it may be re-proposed long after).
    fn check_proposal(
        &mut self,
        m: &Milestone,
        parents: &[TxId; 2],
        now: u64,
        vouched: bool,
    ) -> Result<(), String> {
        let window = self.genesis.timestamp_window_ms;
        if !vouched
            && (m.timestamp > now.saturating_add(window)
                || m.timestamp.saturating_add(window) < now)
        {
            return Err(format!(
                "timestamp {} outside the window at {now}",
                m.timestamp
            ));
        }
        if let Some(why) = self.update_refusal(m) {
            return Err(why);
        }
        let applied = super::milestone::apply_parents(
            &self.tangle,
            &self.unconfirmed_payloads,
            &mut self.ledger,
            m.index,
            parents,
        )
        .map_err(|e| e.to_string())?;
        let undo = self.ledger.take_undo();
        let mismatch = self.commitment_mismatch(m, &applied, &self.ledger);
        if let Err(e) = self.ledger.revert_last(undo) {
            self.halt(format!("committee: taking back a checked proposal: {e}"));
            return Err(e.to_string());
        }
        match mismatch {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Publishes a proposal with k signatures: the proposer at once, another member half a
    /// timeout after it had them.
    fn maybe_publish(&mut self, now: u64) {
        let Some(c) = self.committee.as_ref() else {
            return;
        };
        if c.publishing || self.issuing {
            return;
        }
        let ready = c.candidates.iter().find(|(_, cand)| {
            cand.sigs.len() >= c.threshold
                && cand.complete_at.is_some_and(|t| {
                    cand.msg.proposer == c.me || now >= t.saturating_add(c.timeout_ms / 2)
                })
                && cand.msg.parents.iter().all(|p| self.tangle.is_solid(p))
        });
        let Some((digest, cand)) = ready else {
            return;
        };
        let mut milestone = cand.msg.milestone.clone();
        milestone.signatures = cand
            .sigs
            .iter()
            .take(c.threshold)
            .map(|(s, sig)| (*s, *sig))
            .collect();
        let (index, parents, digest) = (c.index, cand.msg.parents, *digest);
        let tx = self.build(parents, Payload::Milestone(milestone), now);
        let work = Work::new(
            vec![tx],
            self.genesis.pow_difficulty,
            now,
            Job::Publish { index },
        );
        if let Some(c) = self.committee.as_mut() {
            c.publishing = true;
            tracing::debug!(index, %digest, "committee: publishing");
        }
        self.work.push_back(work);
    }

    /// The published milestone's transaction came back: attach it and apply it as any
    /// received milestone (unless one of that index arrived meanwhile).
    pub(super) fn publish_done(
        &mut self,
        index: MilestoneIndex,
        verdicts: Vec<Result<ValidTransaction, ValidationError>>,
        now: u64,
    ) -> Step {
        if let Some(c) = self.committee.as_mut() {
            c.publishing = false;
        }
        let vt = match verdicts.into_iter().next() {
            Some(Ok(vt)) => vt,
            Some(Err(e)) => {
                tracing::warn!(index, error = %e, "committee: own milestone transaction invalid");
                return Step::Idle;
            }
            None => return Step::Idle,
        };
        if self.halted.is_some()
            || self.ledger.confirmed_index() + 1 != index
            || self.milestones.contains_key(&index)
        {
            return Step::Idle;
        }
        let Some(milestone) = vt.tx().milestone().cloned() else {
            return Step::Idle;
        };
        let parents = vt.tx().parents;
        let mut batch = Vec::new();
        let Some((id, r)) = self.attach_own(vt, Some(index), now, &mut batch) else {
            tracing::warn!(index, "committee: own milestone transaction not attached");
            return Step::Idle;
        };
        self.queue_batch(batch);
        self.emit_solid(id, parents);
        self.latest_milestone = self.latest_milestone.max(index);
        self.note_milestone_copy(index, id, &parents, &milestone);
        if let Some(c) = self.committee.as_mut() {
            c.stats.published += 1;
            let latency = now.saturating_sub(milestone.timestamp);
            let b = LATENCY_BUCKETS_MS
                .iter()
                .position(|b| latency <= *b)
                .unwrap_or(LATENCY_BUCKETS_MS.len());
            c.stats.latency_buckets[b] += 1;
            c.stats.latency_sum_ms = c.stats.latency_sum_ms.saturating_add(latency);
            if c.latencies.len() >= MAX_LATENCY_SAMPLES {
                c.latencies.pop_front();
            }
            c.latencies.push_back(latency);
            tracing::info!(
                index,
                latency_ms = latency,
                "committee: milestone published"
            );
        }
        self.milestones
            .entry(index)
            .or_insert((r, milestone, parents));
        self.apply_ready_milestones();
        Step::Idle
    }

    /// `r` carries milestone `index`: if that milestone is applied and `r` is not the
    /// transaction it was applied from, `r` is another copy (two members published it), and
    /// it is confirmed by it at once ([`Tangle::confirm_copy`]), on every node alike, so no
    /// later milestone's cone holds it on one node and not on another.
    pub(super) fn confirm_if_copy(&mut self, r: dag_core::TxRef, index: MilestoneIndex) {
        if index == 0
            || index > self.tangle.confirmed_milestone()
            || self.tangle.solid_milestone(index) == Some(r)
        {
            return;
        }
        match self.tangle.confirm_copy(r, index) {
            Ok(()) => tracing::debug!(index, "another copy of an applied milestone confirmed"),
            Err(e) => tracing::debug!(index, error = %e, "milestone copy left as it is"),
        }
    }

    /// Milestone `index` was applied from `applied`: the other copies of it already held are
    /// confirmed by it too (see [`Protocol::confirm_if_copy`]).
    pub(super) fn confirm_copies(&mut self, index: MilestoneIndex, applied: TxId) {
        let ids: Vec<TxId> = self
            .milestone_copies
            .get(&index)
            .map(|c| c.keys().copied().filter(|id| *id != applied).collect())
            .unwrap_or_default();
        for id in ids {
            if let Some(r) = self.tangle.lookup(&id) {
                self.confirm_if_copy(r, index);
            }
        }
    }

    /// A milestone was applied: the next index's schedule starts from its timestamp.
    pub(super) fn committee_applied(&mut self, m: &Milestone) {
        if let Some(c) = self.committee.as_mut() {
            c.last_timestamp = m.timestamp;
        }
    }

    /// Remembers a solid transaction carrying milestone `index` with the digest of what its
    /// signatures sign, so a next milestone naming another copy of the same milestone as its
    /// previous one is accepted (two members may both publish one proposal, with other
    /// signature sets), and every copy held when the milestone is applied is confirmed with
    /// it ([`Protocol::confirm_copies`]).
    ///
    /// Every copy is remembered, whatever its number and however far ahead its index: the
    /// committee's signatures do not cover the nonce, so any peer can make copies of a
    /// milestone (another nonce, a little proof of work), and one left out here stayed an
    /// unconfirmed tip on this node while the nodes that received it after the milestone
    /// confirmed it: a later cone differed and a node halted (at most 32 copies and 64
    /// indexes ahead were remembered before). The memory is 64 bytes per copy, next to the
    /// copy's own place in the Tangle; an index is forgotten once it is 2 below the
    /// confirmed one (when a milestone is applied). "Confirmed" is the Tangle's: on a
    /// restart the ledger is at its last milestone already while the Tangle's
    /// confirmations are replayed one by one, and the copies of each replayed milestone
    /// must be known then ([`Protocol::replay_confirmation`]).
    pub(super) fn note_milestone_copy(
        &mut self,
        index: MilestoneIndex,
        id: TxId,
        parents: &[TxId; 2],
        m: &Milestone,
    ) {
        if index + 2 < self.tangle.confirmed_milestone() {
            return;
        }
        let d = proposal_digest(self.network_id, parents, m);
        self.milestone_copies
            .entry(index)
            .or_default()
            .entry(id)
            .or_insert(d);
    }

    /// Whether `id` carries the same milestone `index` (same signed content) as the one
    /// applied here.
    pub(super) fn is_copy_of_applied(&self, index: MilestoneIndex, id: &TxId) -> bool {
        let Some(applied) = self.milestone_tx(index) else {
            return false;
        };
        let Some(copies) = self.milestone_copies.get(&index) else {
            return false;
        };
        matches!((copies.get(&applied), copies.get(id)), (Some(a), Some(b)) if a == b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ProtocolConfig;
    use dag_core::ledger::Ledger;
    use dag_core::{Allocation, Genesis};

    const T0: u64 = 1_700_000_000_000;

    fn keys_of(n: u8) -> Vec<Keypair> {
        (0..n).map(|i| Keypair::from_seed(&[30 + i; 32])).collect()
    }

    fn keys() -> Vec<Keypair> {
        keys_of(2)
    }

    fn genesis_of(n: u8, k: u8) -> Genesis {
        Genesis {
            network_name: "committee-unit".into(),
            timestamp: T0,
            pow_difficulty: 0,
            timestamp_window_ms: 60_000,
            committee: keys_of(n).iter().map(|k| k.address()).collect(),
            threshold: k,
            allocations: vec![Allocation {
                address: Keypair::from_seed(&[2; 32]).address(),
                amount: 1_000,
            }],
        }
    }

    fn genesis() -> Genesis {
        genesis_of(2, 2)
    }

    /// Member `me` of a committee of `n` with threshold `k`.
    fn member_of(n: u8, k: u8, me: u8) -> Protocol {
        let g = genesis_of(n, k);
        let config = ProtocolConfig {
            milestone_signer: Some((me, keys_of(n)[usize::from(me)].clone())),
            ..ProtocolConfig::default()
        };
        let ledger = Ledger::from_genesis(&g).unwrap();
        Protocol::new(g, config, ledger).unwrap()
    }

    /// Member 0 of a committee of two (threshold 2).
    fn member0() -> Protocol {
        member_of(2, 2, 0)
    }

    /// A proposal of milestone 1 by `proposer` in `round`, with its prevote (on a committee
    /// of `n`), and its digest.
    fn proposal_by(
        p: &Protocol,
        n: u8,
        proposer: u8,
        round: u32,
        timestamp: u64,
    ) -> (CommitteeMessage, Digest) {
        let parents = [TxId::GENESIS; 2];
        let m = p.proposal_on(parents, timestamp).unwrap();
        let d = proposal_digest(p.network_id(), &parents, &m);
        let mut msg = CommitteeMessage {
            round,
            proposer,
            parents,
            milestone: m,
            votes: Vec::new(),
        };
        add_votes(p, n, &mut msg, &[(proposer, false, round)]);
        (msg, d)
    }

    /// Adds round votes (member, precommit, round) on the message's proposal.
    fn add_votes(p: &Protocol, n: u8, msg: &mut CommitteeMessage, votes: &[(u8, bool, u32)]) {
        let d = proposal_digest(p.network_id(), &msg.parents, &msg.milestone);
        for (member, precommit, round) in votes {
            msg.votes.push(sign_round_vote(
                &keys_of(n)[usize::from(*member)],
                *member,
                p.network_id(),
                msg.milestone.index,
                *precommit,
                *round,
                &d,
            ));
        }
    }

    /// A proposal of milestone 1 by member 1 (its proposer in round 0 of two), prevoted.
    fn proposal(p: &Protocol, timestamp: u64) -> CommitteeMessage {
        proposal_by(p, 2, 1, 0, timestamp).0
    }

    fn drain(p: &mut Protocol) -> Vec<CommitteeOutput> {
        std::iter::from_fn(|| p.poll_committee()).collect()
    }

    /// The last vote record among `out`.
    fn last_record(out: &[CommitteeOutput]) -> Option<VoteRecord> {
        out.iter().rev().find_map(|o| o.vote.clone())
    }

    #[test]
    fn rounds_grow_to_sixty_four_timeouts_and_round_at_inverts_round_start() {
        let mut c = Committee::new(0, keys()[0].clone(), genesis().committee, 2, 1000);
        c.started_at = T0;
        let interval = 500;
        assert_eq!(c.round_at(T0, interval), 0);
        assert_eq!(
            c.round_start(1, interval) - c.round_start(0, interval),
            1000
        );
        assert_eq!(
            c.round_start(2, interval) - c.round_start(1, interval),
            2000
        );
        assert_eq!(
            c.round_start(12, interval) - c.round_start(11, interval),
            12_000
        );
        assert_eq!(
            c.round_start(80, interval) - c.round_start(79, interval),
            64_000
        );
        for r in 0..100 {
            let start = c.round_start(r, interval);
            assert_eq!(c.round_at(start, interval), r);
            assert_eq!(c.round_at(c.round_start(r + 1, interval) - 1, interval), r);
        }
        // A jump to a later round gives it its full length from now.
        c.jump_to(5, T0 + 100, interval);
        assert_eq!(c.round_at(T0 + 100, interval), 5);
        assert_eq!(c.round_start(6, interval), T0 + 100 + 6000);
    }

    #[test]
    fn a_record_follows_another_only_if_it_takes_nothing_back() {
        let (x, y) = (Digest([1; 32]), Digest([2; 32]));
        let rec = |prevote, lock, signed| VoteRecord {
            index: 5,
            prevote,
            lock,
            signed,
            messages: Vec::new(),
            rounds_from: 0,
        };
        let held = rec(Some((2, x)), Some((1, x)), None);
        assert!(rec(Some((2, x)), Some((1, x)), Some(x)).extends(&held));
        assert!(rec(Some((3, y)), Some((3, y)), None).extends(&held));
        assert!(!rec(Some((2, y)), Some((1, x)), None).extends(&held));
        assert!(!rec(Some((1, x)), Some((1, x)), None).extends(&held));
        assert!(!rec(Some((2, x)), None, None).extends(&held));
        assert!(!rec(Some((2, x)), Some((1, y)), None).extends(&held));
        let signed = rec(Some((2, x)), Some((1, x)), Some(x));
        assert!(!rec(Some((4, y)), Some((4, y)), Some(y)).extends(&signed));
        assert!(!rec(Some((4, y)), Some((4, y)), None).extends(&signed));
        let mut later = rec(None, None, None);
        later.index = 6;
        assert!(later.extends(&signed));
        assert!(!signed.extends(&later));
        assert_eq!(signed.round(), 2);
    }

    /// Prevote, polka, precommit, commit certificate, milestone signature; each vote
    /// recorded before it leaves; once per round and per index even after a restart.
    #[test]
    fn a_member_votes_once_per_round_and_signs_one_proposal_per_index_even_after_a_restart() {
        let mut a = member0();
        let (x, dx) = proposal_by(&a, 2, 1, 0, T0 + 10);
        let (y, dy) = proposal_by(&a, 2, 1, 0, T0 + 11);
        assert_ne!(dx, dy);
        a.handle_committee_message(x.clone(), T0 + 20);
        let out = drain(&mut a);
        // Its prevote completes the polka (1 and 0): it precommits and locks at once.
        let rec = last_record(&out).expect("votes are recorded");
        assert_eq!(
            (rec.index, rec.prevote, rec.lock),
            (1, Some((0, dx)), Some((0, dx)))
        );
        assert_eq!(rec.signed, None);
        assert!(out
            .iter()
            .all(|o| o.message.milestone.signatures.is_empty()));
        // Member 1's precommit: a commit certificate, so member 0 signs the milestone.
        let mut pc = x.clone();
        add_votes(&a, 2, &mut pc, &[(1, true, 0)]);
        a.handle_committee_message(pc, T0 + 21);
        let out = drain(&mut a);
        let vote = last_record(&out).expect("the signature is recorded");
        assert_eq!(vote.signed, Some(dx));
        let sent = &out.last().unwrap().message;
        assert_eq!(sent.milestone.signatures.len(), 1);
        assert_eq!(sent.milestone.signatures[0].0, 0);
        assert_eq!(a.committee_stats().unwrap().votes, 1);
        // The record carries the proposal with its polka and commit certificate.
        assert_eq!(vote.messages.len(), 1);
        assert!(vote.messages[0].votes.len() >= 4);
        // A second proposal of the same round: member 1 prevoted twice (evidence); no vote.
        a.handle_committee_message(y.clone(), T0 + 22);
        assert!(drain(&mut a).iter().all(|o| o.vote.is_none()));
        assert_eq!(a.committee_stats().unwrap().equivocations, 1);
        let ev = a.committee_evidence()[0];
        assert_eq!((ev.member, ev.kind), (1, EvidenceKind::Prevote(0)));

        // A commit certificate for y (as a core that voted otherwise would hold one).
        let mut y_done = y.clone();
        add_votes(
            &a,
            2,
            &mut y_done,
            &[(0, false, 1), (1, false, 1), (0, true, 1), (1, true, 1)],
        );
        // Restarted with its record: it signs nothing but x at index 1.
        let mut b = member0();
        b.restore_vote(vote.clone());
        b.handle_committee_message(y_done.clone(), T0 + 30);
        assert!(drain(&mut b)
            .iter()
            .all(|o| o.vote.as_ref().is_none_or(|v| v.signed == Some(dx))));
        assert_eq!(b.committee_stats().unwrap().votes, 0);
        // Handed back late, after the core signed y: that signature is dropped (neither
        // counted nor published nor sent), and the record stands.
        let mut late = member0();
        late.handle_committee_message(y_done.clone(), T0 + 30);
        assert!(last_record(
            &late
                .committee
                .as_ref()
                .unwrap()
                .out
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        )
        .is_some_and(|v| v.signed == Some(dy)));
        late.restore_vote(vote.clone());
        let c = late.committee.as_ref().unwrap();
        assert!(!c.candidates[&dy].sigs.contains_key(&0));
        assert!(c.out.iter().all(|o| o.vote.is_none()));
        assert_eq!(c.vote.as_ref().unwrap().signed, Some(dx));
        // A restart without the record would sign y: the record is what prevents it.
        let mut c = member0();
        c.handle_committee_message(y_done, T0 + 30);
        assert!(last_record(&drain(&mut c)).is_some_and(|v| v.signed == Some(dy)));
    }

    /// The lock: a member that precommitted x prevotes nothing else until it sees a polka
    /// for another proposal in a later round; a polka in its own round makes it precommit
    /// that one; as proposer it proposes the highest polka it knows.
    #[test]
    fn a_locked_member_prevotes_its_lock_until_a_later_polka() {
        // Three members, threshold 2; this is member 0. Round r's proposer at index 1 is
        // member (1 + r) mod 3.
        let mut a = member_of(3, 2, 0);
        let (mut x, dx) = proposal_by(&a, 3, 1, 0, T0 + 10);
        a.handle_committee_message(x.clone(), T0 + 20);
        let rec = last_record(&drain(&mut a)).unwrap();
        assert_eq!((rec.prevote, rec.lock), (Some((0, dx)), Some((0, dx))));
        // Round 1 (member 2 proposes y): locked on x, no prevote for y.
        let start = a.committee.as_ref().unwrap().started_at;
        let r1 = start + 1000 + 2000;
        a.handle_tick(r1);
        assert_eq!(a.committee_stats().unwrap().round, 1);
        let (mut y, dy) = proposal_by(&a, 3, 2, 1, T0 + 11);
        a.handle_committee_message(y.clone(), r1 + 1);
        assert!(drain(&mut a).iter().all(|o| o.vote.is_none()));
        // Member 1 prevotes y in round 1 as well: a polka for y in this member's round, so
        // it precommits y (and, locked on y now, prevotes it).
        add_votes(&a, 3, &mut y, &[(1, false, 1)]);
        a.handle_committee_message(y.clone(), r1 + 2);
        let rec = last_record(&drain(&mut a)).unwrap();
        assert_eq!((rec.prevote, rec.lock), (Some((1, dy)), Some((1, dy))));
        // Round 2: this member proposes, the highest polka's proposal (y), not x.
        let r2 = start + 1000 + 3 * 2000;
        a.handle_tick(r2);
        let out = drain(&mut a);
        let rec = last_record(&out).unwrap();
        assert_eq!(rec.prevote, Some((2, dy)));
        assert_eq!(a.committee_stats().unwrap().proposals, 1);
        // Round 3 (member 1 proposes x again, with its old polka of round 0 only): locked on
        // y in round 1, no prevote.
        let r3 = start + 1000 + 6 * 2000;
        a.handle_tick(r3);
        drain(&mut a);
        x.round = 0;
        add_votes(&a, 3, &mut x, &[(1, false, 3)]);
        a.handle_committee_message(x.clone(), r3 + 1);
        assert!(drain(&mut a).iter().all(|o| o.vote.is_none()));
        // A polka for x in round 3 (members 1 and 2): later than its lock, so it precommits.
        add_votes(&a, 3, &mut x, &[(2, false, 3)]);
        a.handle_committee_message(x, r3 + 2);
        let rec = last_record(&drain(&mut a)).unwrap();
        assert_eq!(rec.lock, Some((3, dx)));
        assert_eq!(a.committee_stats().unwrap().equivocations, 0);
        assert_eq!(a.ledger().confirmed_index(), 0);
    }

    /// A restarted member resumes from its record's round and joins the round the others
    /// vote in.
    #[test]
    fn a_member_resumes_its_round_and_joins_a_later_one() {
        let mut a = member_of(4, 3, 0);
        let (x, dx) = proposal_by(&a, 4, 1, 0, T0 + 10);
        let rec = VoteRecord {
            index: 1,
            prevote: Some((3, dx)),
            lock: None,
            signed: None,
            messages: vec![x.clone()],
            rounds_from: 0,
        };
        a.restore_vote(rec);
        a.handle_tick(T0 + 20);
        assert_eq!(a.committee_stats().unwrap().round, 3);
        // Two other members (2k - n = 2) prevote in round 6: it moves there.
        let mut m = x.clone();
        add_votes(&a, 4, &mut m, &[(2, false, 6)]);
        a.handle_committee_message(m.clone(), T0 + 30);
        assert_eq!(a.committee_stats().unwrap().round, 3);
        add_votes(&a, 4, &mut m, &[(3, false, 6)]);
        a.handle_committee_message(m, T0 + 31);
        assert_eq!(a.committee_stats().unwrap().round, 6);
        // A record that says when its rounds began: the restarted member goes on with
        // them (interval 1 s, timeout 2 s: round 4 begins 21 s after the start), not
        // from the record's round anew.
        let mut b = member_of(4, 3, 0);
        b.restore_vote(VoteRecord {
            index: 1,
            prevote: Some((3, dx)),
            lock: None,
            signed: None,
            messages: vec![x],
            rounds_from: T0 - 21_500,
        });
        b.handle_tick(T0);
        assert_eq!(b.committee_stats().unwrap().round, 4);
        let rec = last_record(&drain(&mut b));
        assert!(rec.is_none_or(|r| r.rounds_from == T0 - 21_500));
    }

    #[test]
    fn a_proposal_with_a_wrong_commitment_or_proposer_is_not_signed() {
        let mut a = member0();
        let before = (a.ledger().digest(), a.ledger().state_root());
        let mut bad = proposal(&a, T0 + 10);
        bad.milestone.ledger_digest = Digest([7; 32]);
        bad.votes.clear();
        add_votes(&a, 2, &mut bad, &[(1, false, 0)]);
        a.handle_committee_message(bad, T0 + 20);
        assert!(a.poll_committee().is_none());
        assert_eq!(a.committee_stats().unwrap().rejected, 1);
        // Member 0 is not the proposer of round 0 at index 1.
        let mut wrong = proposal(&a, T0 + 12);
        wrong.proposer = 0;
        a.handle_committee_message(wrong, T0 + 20);
        assert!(a.poll_committee().is_none());
        // A round vote that does not verify is ignored (no proposal without its proposer's
        // prevote).
        let mut forged = proposal(&a, T0 + 13);
        forged.votes[0].signature = Signature([3; 64]);
        a.handle_committee_message(forged, T0 + 20);
        assert!(a.poll_committee().is_none());
        // The ledger was taken back after each check.
        assert_eq!(a.ledger().confirmed_index(), 0);
        assert_eq!((a.ledger().digest(), a.ledger().state_root()), before);
        // A valid proposal after the bad one is the proposer's second prevote in round 0:
        // it does not count, so it is not prevoted either.
        a.handle_committee_message(proposal(&a, T0 + 14), T0 + 20);
        assert!(a.poll_committee().is_none());
        assert_eq!(a.committee_stats().unwrap().equivocations, 1);
        // A member that saw only the valid one prevotes it.
        let mut fresh = member0();
        fresh.handle_committee_message(proposal(&fresh, T0 + 14), T0 + 20);
        assert!(fresh.poll_committee().is_some());
        assert_eq!(fresh.ledger().confirmed_index(), 0);
    }

    /// Two copies of milestone 1 (one content, two signature sets), as two members that
    /// both publish make: a node that applied one accepts a milestone 2 naming the other as
    /// its previous one, once it has it (it asks for it and waits; it does not halt).
    #[test]
    fn a_next_milestone_may_follow_another_copy_of_the_previous_one() {
        use crate::types::Origin;
        use dag_core::{codec, pow, Transaction, TX_VERSION};
        let members: Vec<Keypair> = (0..3u8)
            .map(|i| Keypair::from_seed(&[50 + i; 32]))
            .collect();
        let mut g = genesis();
        g.committee = members.iter().map(|k| k.address()).collect();
        let ledger = Ledger::from_genesis(&g).unwrap();
        let mut node = Protocol::new(g, ProtocolConfig::default(), ledger).unwrap();
        let net = node.network_id();
        let signed = |m: &Milestone, parents: [TxId; 2], who: &[usize]| {
            let msg = crypto::milestone_signing_message(net, &parents, m);
            let mut m = m.clone();
            m.signatures = who
                .iter()
                .map(|i| (*i as u8, members[*i].sign(&msg)))
                .collect();
            m
        };
        let carry = |node: &Protocol, parents: [TxId; 2], m: Milestone, at: u64| {
            let mut tx = Transaction {
                version: TX_VERSION,
                network_id: net,
                parents,
                timestamp: at,
                payload: Payload::Milestone(m),
                nonce: 0,
            };
            pow::solve(&mut tx, 0);
            node.validator()
                .validate_one(&codec::encode(&tx), at)
                .unwrap()
        };
        let g2 = [TxId::GENESIS; 2];
        let m1 = node.proposal_on(g2, T0 + 10).unwrap();
        let copy_a = carry(&node, g2, signed(&m1, g2, &[0, 1]), T0 + 20);
        let copy_b = carry(&node, g2, signed(&m1, g2, &[1, 2]), T0 + 21);
        let (id_a, id_b) = (copy_a.id(), copy_b.id());
        assert_ne!(id_a, id_b);
        node.handle_transactions(vec![copy_a], Origin::Peer, T0 + 30)[0]
            .clone()
            .unwrap();
        assert_eq!(node.ledger().confirmed_index(), 1);
        assert_eq!(node.milestone_tx_id(1), Some(id_a));

        // Milestone 2 follows copy b, which this node has not seen.
        let p2 = [id_a, TxId::GENESIS];
        let mut m2 = node.proposal_on(p2, T0 + 40).unwrap();
        m2.previous = id_b;
        let ms2 = carry(&node, p2, signed(&m2, p2, &[0, 2]), T0 + 41);
        node.handle_transactions(vec![ms2], Origin::Peer, T0 + 50)[0]
            .clone()
            .unwrap();
        assert_eq!(node.ledger().confirmed_index(), 1);
        assert_eq!(node.halted(), None);
        assert!(node.poll_missing().contains(&id_b));
        // Copy b arrives: it is confirmed by milestone 1 at once (no later cone holds it),
        // and milestone 2 applies.
        node.handle_transactions(vec![copy_b.clone()], Origin::Peer, T0 + 60)[0]
            .clone()
            .unwrap();
        assert_eq!(node.halted(), None);
        assert_eq!(node.ledger().confirmed_index(), 2);
        let rb = node.tangle().lookup(&id_b).unwrap();
        assert_eq!(node.tangle().confirmed_by(rb), Some(1));

        // A node that gets both copies before it applies milestone 1 applies the first and
        // confirms the other with it.
        let ledger = Ledger::from_genesis(node.genesis()).unwrap();
        let mut other =
            Protocol::new(node.genesis().clone(), ProtocolConfig::default(), ledger).unwrap();
        let copy_a2 = carry(&other, g2, signed(&m1, g2, &[0, 1]), T0 + 20);
        other.handle_transactions(vec![copy_b, copy_a2], Origin::Peer, T0 + 30);
        assert_eq!(other.ledger().confirmed_index(), 1);
        assert_eq!(other.milestone_tx_id(1), Some(id_b));
        let ra = other.tangle().lookup(&id_a).unwrap();
        assert_eq!(other.tangle().confirmed_by(ra), Some(1));
        assert_eq!(other.tangle().unconfirmed_len(), 0);

        // A milestone naming an unrelated known transaction as its previous one halts.
        let p3 = [node.milestone_tx_id(2).unwrap(), TxId::GENESIS];
        let mut m3 = node.proposal_on(p3, T0 + 70).unwrap();
        m3.previous = id_a;
        let ms3 = carry(&node, p3, signed(&m3, p3, &[0, 1]), T0 + 71);
        node.handle_transactions(vec![ms3], Origin::Peer, T0 + 80)[0]
            .clone()
            .unwrap();
        assert!(
            node.halted().is_some_and(|h| h.contains("follows")),
            "{:?}",
            node.halted()
        );
        assert_eq!(node.ledger().confirmed_index(), 2);
    }

    proptest::proptest! {
        /// Any committee message, however malformed (index, round, proposer, signers,
        /// signatures, parents), is handled without a panic, and nothing is signed for it.
        #[test]
        fn any_committee_message_is_handled_without_a_panic(
            index in 0u32..4,
            round in proptest::prelude::any::<u32>(),
            proposer in proptest::prelude::any::<u8>(),
            signers in proptest::collection::vec(
                (proptest::prelude::any::<u8>(), proptest::prelude::any::<[u8; 32]>()), 0..40),
            parent in proptest::prelude::any::<[u8; 32]>(),
            timestamp in proptest::prelude::any::<u64>(),
        ) {
            let mut a = member0();
            let msg = CommitteeMessage {
                round,
                proposer,
                parents: [TxId(parent), TxId::GENESIS],
                milestone: Milestone {
                    index,
                    timestamp,
                    previous: TxId(parent),
                    confirmed_root: Digest(parent),
                    applied_root: Digest(parent),
                    state_root: Digest(parent),
                    ledger_digest: Digest(parent),
                    signatures: signers
                        .iter()
                        .map(|(s, b)| {
                            let mut sig = [0u8; 64];
                            sig[..32].copy_from_slice(b);
                            (*s, Signature(sig))
                        })
                        .collect(),
                    committee_update: None,
                },
                votes: Vec::new(),
            };
            a.handle_committee_message(msg, T0 + 20);
            a.handle_tick(T0 + 30);
            proptest::prop_assert!(a.poll_committee().is_none_or(|o| o.vote.is_none()));
            proptest::prop_assert_eq!(a.ledger().confirmed_index(), 0);
        }
    }
}
