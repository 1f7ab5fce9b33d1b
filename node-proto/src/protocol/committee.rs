//! Milestone issuance by a committee of n members with threshold k, with no single
//! coordinator.
//!
//! A member is a node whose [`crate::ProtocolConfig::milestone_signer`] is in a genesis
//! committee of more than one key (a committee of one issues alone, as before: see
//! `milestone.rs`). For each index `i` (the confirmed index + 1) the members go through
//! rounds: round `r` begins `milestone_interval_ms + r * timeout` after the member entered
//! index `i` (applied `i - 1`), and its proposer is member `(i + r) mod n`.
//!
//! - The proposer sweeps the tips as a single issuer does, applies the cone white-flag to its
//!   ledger, reads the commitments, takes the cone back with the ledger's undo log
//!   ([`Ledger::revert_last`]), signs the milestone and sends it to every peer as a
//!   [`CommitteeMessage`]. A proposer that already voted at this index proposes what it
//!   voted for again instead.
//! - A member that has not voted at `i` checks a proposal (its proposer's signature, the
//!   proposer of that round, the timestamp window, the parents solid (missing ones are
//!   requested), then its cone applied to the ledger and taken back, every commitment
//!   compared), signs it and sends it on with every signature it holds on it. It signs at
//!   most one proposal per index, and the vote ([`VoteRecord`]) goes out through
//!   [`Protocol::poll_committee`] with the message: the driver makes it durable before
//!   sending the message, and gives it back with [`Protocol::restore_vote`] after a restart.
//! - Each member merges the valid signatures it receives. A member's signature on a second
//!   proposal at one index is equivocation: the evidence is logged and counted, and the
//!   signature is not counted.
//! - Whoever holds k signatures on a proposal publishes it: the proposer at once, any other
//!   member half a timeout later if no milestone of that index has appeared (fewer
//!   duplicates). The milestone transaction goes through proof of work ([`Work`]) and then
//!   the same path as a received milestone.
//! - Every member sends its vote again once per round (lost messages, restarted members).
//!
//! Safety: two proposals with k signatures at one index need two sets of k members, which
//! share at least `2k - n` members; with at most `2k - n - 1` Byzantine members one of them
//! is honest and signs once. Liveness: with at most `n - k` members crashed, the live members
//! are k, every proposer re-proposes the proposal it voted for, and members send their votes
//! again every round, so once a proposal reaches every live member that has not voted, it
//! gets k signatures. Not covered (see ARCHITECTURE.md): live members that voted for two
//! different proposals of one index, none of which can reach k any more.

use std::collections::{BTreeMap, VecDeque};

use dag_core::validate::{ValidTransaction, ValidationError};
use dag_core::{
    crypto, Digest, Keypair, Milestone, MilestoneIndex, Payload, Signature, TangleView, TxId,
};
use serde::{Deserialize, Serialize};

use super::work::{Job, Step, Work};
use super::Protocol;
use crate::wire::CommitteeMessage;

/// Evidence kept (the newest) of members that signed two proposals for one index.
const MAX_EVIDENCE: usize = 16;

/// Most proposals one index may gather (one per proposer and round, bounded by the rounds
/// a member accepts; beyond this, new ones are ignored).
const MAX_CANDIDATES: usize = 64;

/// Latency samples kept for the driver between two [`Protocol::take_committee_latencies`].
const MAX_LATENCY_SAMPLES: usize = 1024;

/// Upper bounds (ms) of the proposal-to-publication latency histogram's buckets.
pub const LATENCY_BUCKETS_MS: [u64; 10] =
    [50, 100, 250, 500, 1000, 2000, 3000, 5000, 10_000, 30_000];

/// A vote this member cast: the driver makes it durable before the message carrying its
/// signature leaves the node, and hands it back with [`Protocol::restore_vote`] after a
/// restart, so a restarted member never signs two proposals for one index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoteRecord {
    /// The index voted at.
    pub index: MilestoneIndex,
    /// The proposal's digest (of its signing message).
    pub proposal: Digest,
    /// The proposal with the signatures held when voting (this member's included).
    pub message: CommitteeMessage,
}

/// A committee message to send to every peer; when `vote` is set, only after it is durable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitteeOutput {
    /// A vote to make durable first.
    pub vote: Option<VoteRecord>,
    /// The message.
    pub message: CommitteeMessage,
}

/// A member's signatures on two different proposals for one index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// The index.
    pub index: MilestoneIndex,
    /// The member's committee index.
    pub member: u8,
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
    /// Proposals made (re-proposals of a proposal voted for included).
    pub proposals: u64,
    /// Votes cast (own proposals included).
    pub votes: u64,
    /// Rounds that ended without a milestone (the next proposer took over).
    pub view_changes: u64,
    /// Proposals refused after checking them (a commitment did not match, a bad timestamp).
    pub rejected: u64,
    /// Equivocations seen: a member's signature on a second proposal for one index.
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

/// A proposal gathered at the index being decided.
#[derive(Debug)]
struct Candidate {
    /// The proposal, without signatures.
    msg: CommitteeMessage,
    /// Valid signatures on it (counted ones: a member's first proposal at this index).
    sigs: BTreeMap<u8, Signature>,
    /// Checked by applying its cone: `Some(true)` valid.
    checked: Option<bool>,
    /// Its missing parents were requested.
    requested: bool,
    /// When it was first received here.
    received_at: u64,
    /// When it reached k signatures here.
    complete_at: Option<u64>,
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
    /// The last round this member proposed in, and re-sent its vote in.
    proposed_round: Option<u32>,
    resent_round: Option<u32>,
    candidates: BTreeMap<Digest, Candidate>,
    /// The proposal each member's counted signature at this index is on.
    signed: BTreeMap<u8, Digest>,
    /// Members already reported as equivocating at this index.
    reported: std::collections::BTreeSet<u8>,
    /// This member's last vote (any index).
    vote: Option<VoteRecord>,
    publishing: bool,
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
            reported: Default::default(),
            vote: None,
            publishing: false,
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

    /// The round at `now` (see the module documentation).
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

    /// Whether this member may still sign a proposal `digest` at `index`.
    fn may_vote(&self, index: MilestoneIndex, digest: &Digest) -> bool {
        match &self.vote {
            Some(v) if v.index > index => false,
            Some(v) if v.index == index => v.proposal == *digest,
            _ => true,
        }
    }

    /// This member's vote at the index being decided, if any.
    fn vote_here(&self) -> Option<&VoteRecord> {
        self.vote.as_ref().filter(|v| v.index == self.index)
    }

    /// The message for `digest` with every counted signature held, ascending.
    fn message_with_sigs(&self, digest: &Digest) -> Option<CommitteeMessage> {
        let c = self.candidates.get(digest)?;
        let mut msg = c.msg.clone();
        msg.milestone.signatures = c.sigs.iter().map(|(s, sig)| (*s, *sig)).collect();
        Some(msg)
    }
}

/// Round `r` lasts `min(r + 1, GROWTH_ROUNDS)` proposer timeouts: a round that ended
/// because checking a proposal took longer than a timeout (a loaded member) gives the next
/// one more time, as Tendermint's timeouts grow with the round.
const GROWTH_ROUNDS: u32 = 8;

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

    /// The last vote this member made durable before it stopped: it signs no other proposal
    /// at that index and none at an earlier one, and sends that vote again.
    /// If this core signed another proposal at that index meanwhile (the driver handed the
    /// vote back late), that signature is dropped here, so it is neither counted nor
    /// published.
    pub fn restore_vote(&mut self, vote: VoteRecord) {
        if let Some(c) = self.committee.as_mut() {
            if c.vote.as_ref().is_none_or(|v| v.index <= vote.index) {
                if c.index == vote.index {
                    let me = c.me;
                    for (d, cand) in c.candidates.iter_mut() {
                        if *d != vote.proposal {
                            cand.sigs.remove(&me);
                            if cand.sigs.len() < c.threshold {
                                cand.complete_at = None;
                            }
                        }
                    }
                    c.signed.insert(me, vote.proposal);
                }
                c.vote = Some(vote);
            }
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
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        if c.index == index {
            return;
        }
        c.index = index;
        c.started_at = c.round_zero_base(now, self.config.milestone_interval_ms);
        c.round = 0;
        c.proposed_round = None;
        c.resent_round = None;
        c.candidates.clear();
        c.signed.clear();
        c.reported.clear();
        c.publishing = false;
        c.stats.index = index;
        c.stats.round = 0;
        // A restored vote at this index: its proposal is a candidate again.
        if let Some(v) = c.vote.clone().filter(|v| v.index == index) {
            let mut msg = v.message.clone();
            let sigs = std::mem::take(&mut msg.milestone.signatures);
            let mut cand = Candidate {
                msg,
                sigs: BTreeMap::new(),
                checked: Some(true),
                requested: false,
                received_at: now,
                complete_at: None,
            };
            for (s, sig) in sigs {
                if usize::from(s) < c.members.len() {
                    cand.sigs.insert(s, sig);
                    c.signed.insert(s, v.proposal);
                }
            }
            c.candidates.insert(v.proposal, cand);
        }
    }

    /// The committee's part of the timer: round changes, proposing, publishing, sending the
    /// vote again.
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
        }
        self.check_candidates(now);
        self.maybe_publish(now);
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        let my_turn = c.proposer(index, c.round) == c.me
            && now >= c.round_start(c.round, interval)
            && c.proposed_round != Some(c.round);
        // A proposal this member has not checked yet (its parents on the way, its cone
        // being applied) is not met with a new one: that could split the index's votes
        // for good. One whose parents did not come within a timeout does not hold it back.
        let pending = c.vote_here().is_none()
            && c.candidates.values().any(|cand| {
                cand.checked.is_none()
                    && cand.sigs.contains_key(&cand.msg.proposer)
                    && now < cand.received_at.saturating_add(c.timeout_ms)
            });
        if my_turn && !pending && !self.issuing && !c.publishing {
            c.proposed_round = Some(c.round);
            c.stats.proposals += 1;
            if let Some(v) = c.vote_here() {
                // Propose what this member voted for: a second proposal could split the
                // votes of this index for good.
                let d = v.proposal;
                if let Some(msg) = c.message_with_sigs(&d) {
                    c.out.push_back(CommitteeOutput {
                        vote: None,
                        message: msg,
                    });
                }
                c.resent_round = Some(c.round);
            } else {
                tracing::debug!(index, round = c.round, "committee: proposing");
                // The single issuer's sweep; its end (`milestone_work`) comes to `propose`.
                self.issue_milestone(now);
            }
        }
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        if c.resent_round != Some(c.round) {
            if let Some(d) = c.vote_here().map(|v| v.proposal) {
                c.resent_round = Some(c.round);
                if let Some(msg) = c.message_with_sigs(&d) {
                    c.out.push_back(CommitteeOutput {
                        vote: None,
                        message: msg,
                    });
                }
            }
        }
    }

    /// The end of a proposer's sweep: the proposal on `parents`, checked on the ledger and
    /// taken back, signed and sent.
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
        };
        let digest = proposal_digest(self.network_id, &parents, &msg.milestone);
        if let Some(c) = self.committee.as_mut() {
            if !c.may_vote(index, &digest) {
                return;
            }
            c.candidates.entry(digest).or_insert(Candidate {
                msg,
                sigs: BTreeMap::new(),
                checked: Some(true),
                requested: false,
                received_at: now,
                complete_at: None,
            });
        }
        self.cast_vote(digest, now);
    }

    /// Signs proposal `digest` (which this member may sign), records the vote and queues it.
    fn cast_vote(&mut self, digest: Digest, now: u64) {
        let network_id = self.network_id;
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        let index = c.index;
        if !c.may_vote(index, &digest) {
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
        c.signed.insert(me, digest);
        if cand.sigs.len() >= c.threshold && cand.complete_at.is_none() {
            cand.complete_at = Some(now);
        }
        let Some(message) = c.message_with_sigs(&digest) else {
            return;
        };
        let record = VoteRecord {
            index,
            proposal: digest,
            message: message.clone(),
        };
        c.vote = Some(record.clone());
        c.stats.votes += 1;
        c.resent_round = Some(c.round);
        c.out.push_back(CommitteeOutput {
            vote: Some(record),
            message,
        });
    }

    /// A committee message from a peer: its valid signatures are merged; a proposal this
    /// member can vote for is checked and voted for. Messages for another index than the
    /// next one are ignored (members send their votes again every round). Never panics on
    /// any message.
    pub fn handle_committee_message(&mut self, msg: CommitteeMessage, now: u64) {
        if self.halted.is_some() || self.committee.is_none() {
            return;
        }
        self.enter_index(now);
        let index = self.ledger.confirmed_index() + 1;
        let interval = self.config.milestone_interval_ms;
        let network_id = self.network_id;
        let Some(c) = self.committee.as_mut() else {
            return;
        };
        if msg.milestone.index != index
            || msg.milestone.signatures.len() > c.members.len()
            || usize::from(msg.proposer) >= c.members.len()
            || msg.round > c.round_at(now, interval).saturating_add(1)
            || c.proposer(index, msg.round) != msg.proposer
        {
            return;
        }
        let digest = proposal_digest(network_id, &msg.parents, &msg.milestone);
        if !c.candidates.contains_key(&digest) {
            if c.candidates.len() >= MAX_CANDIDATES {
                return;
            }
            let mut bare = msg.clone();
            bare.milestone.signatures.clear();
            c.candidates.insert(
                digest,
                Candidate {
                    msg: bare,
                    sigs: BTreeMap::new(),
                    checked: None,
                    requested: false,
                    received_at: now,
                    complete_at: None,
                },
            );
        }
        let signing = crypto::milestone_signing_message(network_id, &msg.parents, &msg.milestone);
        for (s, sig) in &msg.milestone.signatures {
            let Some(addr) = c.members.get(usize::from(*s)) else {
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
                    if c.reported.insert(*s) {
                        let e = Evidence {
                            index,
                            member: *s,
                            first: *first,
                            second: digest,
                        };
                        tracing::warn!(
                            index,
                            member = s,
                            first = %e.first,
                            second = %e.second,
                            "committee: equivocation, a member signed two proposals for one index"
                        );
                        c.stats.equivocations += 1;
                        if c.evidence.len() >= MAX_EVIDENCE {
                            c.evidence.pop_front();
                        }
                        c.evidence.push_back(e);
                    }
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
        self.check_candidates(now);
    }

    /// Checks the proposals this member could vote for (its proposer's signature counted
    /// here, parents solid), most signed first, and votes for the first valid one.
    pub(super) fn check_candidates(&mut self, now: u64) {
        let Some(c) = self.committee.as_ref() else {
            return;
        };
        if c.vote_here().is_some() || self.halted.is_some() {
            return;
        }
        let index = c.index;
        let mut order: Vec<(usize, u32, Digest)> = c
            .candidates
            .iter()
            .filter(|(_, cand)| {
                cand.checked.is_none() && cand.sigs.contains_key(&cand.msg.proposer)
            })
            .map(|(d, cand)| (usize::MAX - cand.sigs.len(), cand.msg.round, *d))
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
            let verdict = self.check_proposal(&milestone, &parents, now);
            let Some(c) = self.committee.as_mut() else {
                return;
            };
            let Some(cand) = c.candidates.get_mut(&digest) else {
                continue;
            };
            match verdict {
                Ok(()) => {
                    cand.checked = Some(true);
                    if c.may_vote(index, &digest) {
                        self.cast_vote(digest, now);
                        return;
                    }
                }
                Err(why) => {
                    cand.checked = Some(false);
                    c.stats.rejected += 1;
                    tracing::warn!(index, %digest, %why, "committee: proposal refused");
                }
            }
        }
    }

    /// A proposal's timestamp and commitments against its cone applied to the ledger (and
    /// taken back).
    fn check_proposal(
        &mut self,
        m: &Milestone,
        parents: &[TxId; 2],
        now: u64,
    ) -> Result<(), String> {
        let window = self.genesis.timestamp_window_ms;
        if m.timestamp > now.saturating_add(window) || m.timestamp.saturating_add(window) < now {
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
    /// confirmed one (when a milestone is applied).
    pub(super) fn note_milestone_copy(
        &mut self,
        index: MilestoneIndex,
        id: TxId,
        parents: &[TxId; 2],
        m: &Milestone,
    ) {
        if index + 2 < self.ledger.confirmed_index() {
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

    fn keys() -> Vec<Keypair> {
        (0..2u8)
            .map(|i| Keypair::from_seed(&[30 + i; 32]))
            .collect()
    }

    fn genesis() -> Genesis {
        Genesis {
            network_name: "committee-unit".into(),
            timestamp: T0,
            pow_difficulty: 0,
            timestamp_window_ms: 60_000,
            committee: keys().iter().map(|k| k.address()).collect(),
            threshold: 2,
            allocations: vec![Allocation {
                address: Keypair::from_seed(&[2; 32]).address(),
                amount: 1_000,
            }],
        }
    }

    /// Member 0 of a committee of two (threshold 2).
    fn member0() -> Protocol {
        let g = genesis();
        let config = ProtocolConfig {
            milestone_signer: Some((0, keys()[0].clone())),
            ..ProtocolConfig::default()
        };
        let ledger = Ledger::from_genesis(&g).unwrap();
        Protocol::new(g, config, ledger).unwrap()
    }

    /// A proposal of milestone 1 by member 1 (its proposer in round 0), signed by it.
    fn proposal(p: &Protocol, timestamp: u64) -> CommitteeMessage {
        let parents = [TxId::GENESIS; 2];
        let mut m = p.proposal_on(parents, timestamp).unwrap();
        let msg = crypto::milestone_signing_message(p.network_id(), &parents, &m);
        m.signatures = vec![(1, keys()[1].sign(&msg))];
        CommitteeMessage {
            round: 0,
            proposer: 1,
            parents,
            milestone: m,
        }
    }

    #[test]
    fn rounds_grow_to_eight_timeouts_and_round_at_inverts_round_start() {
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
            8000
        );
        for r in 0..40 {
            let start = c.round_start(r, interval);
            assert_eq!(c.round_at(start, interval), r);
            assert_eq!(c.round_at(c.round_start(r + 1, interval) - 1, interval), r);
        }
    }

    #[test]
    fn a_member_signs_one_proposal_per_index_even_after_a_restart() {
        let mut a = member0();
        let x = proposal(&a, T0 + 10);
        let y = proposal(&a, T0 + 11);
        assert_ne!(
            proposal_digest(a.network_id(), &x.parents, &x.milestone),
            proposal_digest(a.network_id(), &y.parents, &y.milestone)
        );
        a.handle_committee_message(x.clone(), T0 + 20);
        let out = a.poll_committee().expect("a vote for the first proposal");
        let vote = out.vote.expect("made durable first");
        assert_eq!(vote.index, 1);
        assert_eq!(out.message.milestone.signatures.len(), 2);
        assert_eq!(a.committee_stats().unwrap().votes, 1);
        // The second proposal of the same index and round: no second signature, and the
        // proposer is reported.
        a.handle_committee_message(y.clone(), T0 + 21);
        assert!(a.poll_committee().is_none());
        assert_eq!(a.committee_stats().unwrap().equivocations, 1);
        assert_eq!(a.committee_evidence()[0].member, 1);

        // Restarted with its vote: the other proposal gets no signature either.
        let mut b = member0();
        b.restore_vote(vote.clone());
        b.handle_committee_message(y, T0 + 30);
        assert!(b.poll_committee().is_none());
        assert_eq!(b.committee_stats().unwrap().votes, 0);
        // Handed back late, after the core signed the other proposal: that signature is
        // dropped (neither counted nor published), and the vote stands.
        let mut late = member0();
        late.handle_committee_message(proposal(&late, T0 + 11), T0 + 30);
        assert!(late.poll_committee().is_some());
        late.restore_vote(vote.clone());
        let other = proposal(&late, T0 + 11);
        let d = proposal_digest(late.network_id(), &other.parents, &other.milestone);
        let c = late.committee.as_ref().unwrap();
        assert!(!c.candidates[&d].sigs.contains_key(&0));
        assert_eq!(c.vote.as_ref().unwrap().proposal, vote.proposal);
        // A restart without the vote would sign it: the record is what prevents it.
        let mut c = member0();
        c.handle_committee_message(proposal(&c, T0 + 11), T0 + 30);
        assert!(c.poll_committee().and_then(|o| o.vote).is_some());
    }

    #[test]
    fn a_proposal_with_a_wrong_commitment_or_proposer_is_not_signed() {
        let mut a = member0();
        let before = (a.ledger().digest(), a.ledger().state_root());
        let mut bad = proposal(&a, T0 + 10);
        bad.milestone.ledger_digest = Digest([7; 32]);
        let msg = crypto::milestone_signing_message(a.network_id(), &bad.parents, &bad.milestone);
        bad.milestone.signatures = vec![(1, keys()[1].sign(&msg))];
        a.handle_committee_message(bad, T0 + 20);
        assert!(a.poll_committee().is_none());
        assert_eq!(a.committee_stats().unwrap().rejected, 1);
        // Member 0 is not the proposer of round 0 at index 1.
        let mut wrong = proposal(&a, T0 + 12);
        wrong.proposer = 0;
        a.handle_committee_message(wrong, T0 + 20);
        assert!(a.poll_committee().is_none());
        // A signature that does not verify is ignored (and nothing is signed without the
        // proposer's).
        let mut forged = proposal(&a, T0 + 13);
        forged.milestone.signatures[0].1 = Signature([3; 64]);
        a.handle_committee_message(forged, T0 + 20);
        assert!(a.poll_committee().is_none());
        // The ledger was taken back after each check.
        assert_eq!(a.ledger().confirmed_index(), 0);
        assert_eq!((a.ledger().digest(), a.ledger().state_root()), before);
        // A valid proposal after the bad one is the proposer's second at this index: its
        // signature does not count, so it is not signed either.
        a.handle_committee_message(proposal(&a, T0 + 14), T0 + 20);
        assert!(a.poll_committee().is_none());
        assert_eq!(a.committee_stats().unwrap().equivocations, 1);
        // A member that saw only the valid one signs it.
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
            };
            a.handle_committee_message(msg, T0 + 20);
            a.handle_tick(T0 + 30);
            proptest::prop_assert!(a.poll_committee().is_none_or(|o| o.vote.is_none()));
            proptest::prop_assert_eq!(a.ledger().confirmed_index(), 0);
        }
    }
}
