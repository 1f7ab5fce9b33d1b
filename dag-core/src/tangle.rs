//! [`Tangle`]: the in-memory DAG of solid transactions, with solidification, tips, white-flag
//! ordering, confirmation marks, referenced-milestone indices and pruning.
//!
//! # Layout
//! Transactions live in a compact arena (a `VecDeque` of small node structs) indexed by
//! [`TxRef`], the dense arrival-order index: `nodes[r - base]`. Parents always arrive
//! (become solid) before their approvers, so a parent's ref is always smaller than its
//! approver's. Ids map to refs through a `hashbrown` table keyed by [`TxId`] with
//! [`IdHasher`], which uses the first 8 bytes of the id as the hash (see its docs for why
//! that is safe). At 1M transactions a stored transaction costs about 170 bytes of RAM
//! (arena node 88 bytes, id-index entry, approver spill; measured by the `tangle` bench).
//!
//! We chose the arena over petgraph's `StableDiGraph` (the obvious general-purpose choice) because
//! it holds refs as `u32`, keeps approvers inline and needs no edge objects; the `tangle`
//! bench measures both.
//!
//! # Solidity
//! A transaction is solid when both parents are solid. [`Tangle::insert`] attaches a
//! transaction whose parents are solid at once; otherwise it waits in a bounded buffer
//! ([`TangleConfig::pending_capacity`]) until its parents arrive, and every waiting descendant
//! that becomes solid is attached in the same call (iteratively).
//!
//! # Confirmation and pruning
//! [`Tangle::unconfirmed_cone`] gives the white-flag order of a milestone's not-yet-confirmed
//! past cone; [`Tangle::confirm`] marks it. [`Tangle::prune_before`] drops a confirmed prefix
//! of the arena; refs stay stable and transactions below [`TangleView::root`] read as
//! confirmed (see [`Tangle::prune_before`]).

use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};

use hashbrown::{HashMap, HashSet};
use smallvec::SmallVec;

use crate::capacity;
use crate::ids::TxId;
use crate::types::MilestoneIndex;
use crate::view::{ReferencedMilestones, TangleView, TxRef};

/// `confirmed_by` sentinel: not confirmed. `u32::MAX` is therefore not a usable milestone index.
const NOT_CONFIRMED: MilestoneIndex = MilestoneIndex::MAX;
/// `tip_pos` sentinel: not a tip.
const NOT_TIP: u32 = u32::MAX;

/// Hasher for [`TxId`] keys: the hash is the id's first 8 bytes.
///
/// Why that is safe enough: a `TxId` is a BLAKE2b-256 output, so its bytes are uniform and
/// any 8 of them are as good a hash as SipHash would give. An attacker who wants ids that
/// collide in the table must grind: a partial collision on the k bits the table uses costs
/// about 2^k hash evaluations per transaction (k >= 27 at 1M entries, counting the 7-bit
/// SwissTable tag), on top of the proof of work and a valid signature, and buys only a
/// longer probe sequence for those few ids, never a failure.
#[derive(Default, Clone, Copy, Debug)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(prefix) = bytes.get(..8) {
            // A TxId hashes as one 32-byte write (after its length prefix): take its first
            // 8 bytes, mixed with what came before so other writes still count.
            let mut b = [0u8; 8];
            b.copy_from_slice(prefix);
            self.0 ^= u64::from_le_bytes(b);
        } else {
            for &b in bytes {
                self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(FX_K);
            }
        }
    }

    fn write_usize(&mut self, _len: usize) {
        // The length prefix of the id's byte array is a constant; ignore it.
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(n)).wrapping_mul(FX_K);
    }
}

/// Multiplier of the Fx hash (golden-ratio based), used for non-id writes.
const FX_K: u64 = 0x517c_c1b7_2722_0a95;

/// Build-hasher for maps keyed by [`TxId`] (see [`IdHasher`]).
pub type IdBuildHasher = BuildHasherDefault<IdHasher>;

/// Settings of a [`Tangle`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TangleConfig {
    /// Most transactions waiting for missing parents; when full, [`Tangle::insert`] returns
    /// [`InsertError::BufferFull`] for further non-solid arrivals.
    pub pending_capacity: usize,
    /// Solid transactions to reserve room for up front (avoids re-growth while filling).
    pub initial_capacity: usize,
}

impl Default for TangleConfig {
    fn default() -> Self {
        TangleConfig {
            pending_capacity: 100_000,
            initial_capacity: 0,
        }
    }
}

/// Why [`Tangle::insert`] refused a transaction. Nothing changed in the Tangle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InsertError {
    /// Both parents are the same transaction (allowed only when both are the genesis).
    #[error("both parents are {0:?}")]
    DuplicateParent(TxId),
    /// A parent is the transaction itself.
    #[error("transaction {0:?} approves itself")]
    SelfParent(TxId),
    /// The transaction is not solid and the buffer of waiting transactions is full.
    #[error("solidification buffer full ({capacity} transactions waiting)")]
    BufferFull {
        /// The configured capacity.
        capacity: usize,
    },
    /// The arena holds `u32::MAX` transactions already; prune first.
    #[error("tangle is full: no transaction ref left")]
    RefsExhausted,
}

/// Result of a successful [`Tangle::insert`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Already solid or already waiting; nothing changed.
    Duplicate,
    /// Stored in the buffer until its parents are solid.
    Pending {
        /// Parents that are neither solid nor waiting in the buffer: the ones to request.
        /// Empty when every missing parent is itself waiting (its own missing ancestors
        /// were reported when it arrived).
        missing: Vec<TxId>,
    },
    /// Attached: this transaction and every buffered one that became solid because of it,
    /// parents before approvers (the order in which they were attached).
    Solid(Vec<(TxId, TxRef)>),
}

/// Why [`Tangle::confirm`] refused a confirmation. Nothing changed in the Tangle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfirmError {
    /// The milestone index is not greater than the last confirmed one, or is `u32::MAX`.
    #[error("milestone index {index} not after the confirmed milestone {confirmed}")]
    IndexNotIncreasing {
        /// The index given.
        index: MilestoneIndex,
        /// The latest confirmed index.
        confirmed: MilestoneIndex,
    },
    /// A ref is not held (above the newest, or pruned).
    #[error("transaction {0:?} is not in the tangle")]
    UnknownTx(TxRef),
    /// A transaction of the order is already confirmed.
    #[error("transaction {0:?} is already confirmed")]
    AlreadyConfirmed(TxRef),
    /// A transaction of the order has a parent that is neither confirmed before nor earlier in
    /// the order: the order is not a parent-first, parent-closed cone.
    #[error("transaction {0:?} comes before one of its unconfirmed parents")]
    NotParentClosed(TxRef),
}

/// Why [`Tangle::prune_before`] refused. Nothing changed in the Tangle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PruneError {
    /// `keep_from` is above the newest transaction.
    #[error("prune point {0:?} is beyond the newest transaction")]
    BeyondNewest(TxRef),
    /// An unconfirmed transaction below the prune point is approved by a transaction that is
    /// kept: dropping it would cut that transaction's cone.
    #[error("unconfirmed transaction {0:?} below the prune point is still approved")]
    UnconfirmedReferenced(TxRef),
}

/// One solid transaction in the arena.
#[derive(Clone, Debug)]
struct Node {
    id: TxId,
    parents: [TxRef; 2],
    arrival: u64,
    /// `NOT_CONFIRMED` or the confirming milestone index.
    confirmed_by: MilestoneIndex,
    referenced: ReferencedMilestones,
    /// Position in `tips`, or `NOT_TIP`.
    tip_pos: u32,
    approvers: SmallVec<[TxRef; 4]>,
}

/// A transaction waiting for parents.
#[derive(Clone, Debug)]
struct Pending {
    parents: [TxId; 2],
    milestone: Option<MilestoneIndex>,
    received: u64,
    /// Parents not solid yet (1 or 2).
    missing: u8,
}

/// A pruned transaction still approved by a held one (a "solid entry point").
#[derive(Clone, Copy, Debug)]
struct EntryPoint {
    id: TxId,
    /// The milestone that confirmed it.
    confirmed_by: MilestoneIndex,
    /// Newest ref approving it; the entry point is dropped once that is pruned too.
    last_approver: TxRef,
}

/// The in-memory Tangle: every solid transaction, the buffer of waiting ones, tips,
/// confirmation marks and referenced milestones. Implements [`TangleView`].
///
/// All operations are sans-I/O; the caller passes time in as `now`.
#[derive(Clone, Debug)]
pub struct Tangle {
    config: TangleConfig,
    /// Ref of `nodes[0]`.
    base: u32,
    nodes: VecDeque<Node>,
    index: HashMap<TxId, TxRef, IdBuildHasher>,
    tips: Vec<TxRef>,
    /// Unconfirmed refs in increasing order.
    unconfirmed: VecDeque<TxRef>,
    pending: HashMap<TxId, Pending, IdBuildHasher>,
    /// Missing parent id -> waiting approvers.
    waiters: HashMap<TxId, SmallVec<[TxId; 2]>, IdBuildHasher>,
    /// Solid milestone carriers seen (applied or not).
    solid_milestones: HashMap<MilestoneIndex, TxRef>,
    /// Applied milestones.
    applied: HashMap<MilestoneIndex, TxRef>,
    confirmed_milestone: MilestoneIndex,
    /// Pruned transactions still approved by held ones, by ref.
    entry_points: HashMap<u32, EntryPoint>,
    /// Largest confirming index among pruned transactions: what they read as.
    pruned_index: MilestoneIndex,
    last_arrival: u64,
    /// Prunes so far (every [`capacity::SHRINK_EVERY`]th gives spare capacity back).
    prunes: u32,
}

impl Tangle {
    /// A Tangle holding only the genesis root: [`TxId::GENESIS`] at `TxRef(0)`, confirmed by
    /// milestone 0, arrival 0, and the only tip.
    pub fn new(config: TangleConfig) -> Self {
        let mut nodes = VecDeque::with_capacity(config.initial_capacity.max(1));
        nodes.push_back(Node {
            id: TxId::GENESIS,
            parents: [TxRef(0); 2],
            arrival: 0,
            confirmed_by: 0,
            referenced: ReferencedMilestones::default(),
            tip_pos: 0,
            approvers: SmallVec::new(),
        });
        let mut index =
            HashMap::with_capacity_and_hasher(config.initial_capacity.max(1), Default::default());
        index.insert(TxId::GENESIS, TxRef(0));
        let mut applied = HashMap::new();
        applied.insert(0, TxRef(0));
        Tangle {
            config,
            base: 0,
            nodes,
            index,
            tips: vec![TxRef(0)],
            unconfirmed: VecDeque::new(),
            pending: HashMap::default(),
            waiters: HashMap::default(),
            solid_milestones: applied.clone(),
            applied,
            confirmed_milestone: 0,
            entry_points: HashMap::new(),
            pruned_index: 0,
            last_arrival: 0,
            prunes: 0,
        }
    }

    /// A Tangle that starts where an earlier one was pruned (a restart of a pruning node, a
    /// bootstrap from a snapshot): nothing held but the genesis root, milestone `confirmed`
    /// applied, and the given solid entry points (pruned transactions that the transactions
    /// to come approve, each with the milestone that confirmed it, as
    /// [`Tangle::entry_points`] lists them). Entry points read as confirmed by the newest
    /// of their milestones, like every pruned transaction; one that nothing approves is
    /// dropped at the next [`Tangle::prune_before`] past the root.
    pub fn from_entry_points(
        config: TangleConfig,
        confirmed: MilestoneIndex,
        points: &[(TxId, MilestoneIndex)],
    ) -> Self {
        let mut t = Tangle::new(config);
        let points: Vec<(TxId, MilestoneIndex)> = points
            .iter()
            .copied()
            .filter(|(id, _)| *id != TxId::GENESIS)
            .collect();
        let base = u32::try_from(points.len()).unwrap_or(u32::MAX - 1);
        t.base = base;
        t.nodes[0].parents = [TxRef(base); 2];
        t.tips = vec![TxRef(base)];
        t.index.clear();
        t.index.insert(TxId::GENESIS, TxRef(base));
        for (i, (id, ms)) in points.iter().enumerate().take(base as usize) {
            let r = i as u32;
            t.index.insert(*id, TxRef(r));
            t.entry_points.insert(
                r,
                EntryPoint {
                    id: *id,
                    confirmed_by: *ms,
                    last_approver: TxRef(base),
                },
            );
            t.pruned_index = t.pruned_index.max(*ms);
        }
        // No milestone transaction is held: the pruned ones are entry points at most.
        t.applied.clear();
        t.solid_milestones.clear();
        t.confirmed_milestone = confirmed;
        t
    }

    /// The newest milestone that confirmed a pruned transaction (0: nothing pruned): every
    /// milestone after it still has its whole cone held.
    pub fn pruned_index(&self) -> MilestoneIndex {
        self.pruned_index
    }

    /// The solid entry points: pruned transactions still approved by held ones, with the
    /// milestone that confirmed each, in ref order (what a restart needs to rebuild the
    /// Tangle with [`Tangle::from_entry_points`]).
    pub fn entry_points(&self) -> Vec<(TxId, MilestoneIndex)> {
        let mut v: Vec<(u32, TxId, MilestoneIndex)> = self
            .entry_points
            .iter()
            .map(|(r, ep)| (*r, ep.id, ep.confirmed_by))
            .collect();
        v.sort_unstable_by_key(|e| e.0);
        v.into_iter().map(|(_, id, ms)| (id, ms)).collect()
    }

    /// The configuration this Tangle was made with.
    pub fn config(&self) -> &TangleConfig {
        &self.config
    }

    /// Inserts a transaction that passed syntactic validation.
    ///
    /// `milestone` is the index of the milestone it carries, if any (see
    /// [`Tangle::solid_milestone`]). `now` is the local time; a transaction's arrival is the
    /// time it became solid, clamped so that arrivals never decrease in ref order.
    ///
    /// Returns [`InsertOutcome::Solid`] with every transaction attached by this call,
    /// [`InsertOutcome::Pending`] if a parent is not solid yet, or
    /// [`InsertOutcome::Duplicate`].
    pub fn insert(
        &mut self,
        id: TxId,
        parents: [TxId; 2],
        milestone: Option<MilestoneIndex>,
        now: u64,
    ) -> Result<InsertOutcome, InsertError> {
        if parents[0] == id || parents[1] == id {
            return Err(InsertError::SelfParent(id));
        }
        if parents[0] == parents[1] && parents[0] != TxId::GENESIS {
            return Err(InsertError::DuplicateParent(parents[0]));
        }
        if self.index.contains_key(&id) || self.pending.contains_key(&id) {
            return Ok(InsertOutcome::Duplicate);
        }
        let trunk = self.index.get(&parents[0]).copied();
        let branch = self.index.get(&parents[1]).copied();
        let (trunk, branch) = match (trunk, branch) {
            (Some(t), Some(b)) => (t, b),
            _ => return self.buffer(id, parents, [trunk, branch], milestone, now),
        };
        let r = self.attach(id, [trunk, branch], milestone, now)?;
        let mut solid = vec![(id, r)];
        if !self.waiters.is_empty() {
            self.release_waiters(id, now, &mut solid);
        }
        Ok(InsertOutcome::Solid(solid))
    }

    /// Stores a non-solid arrival in the buffer.
    fn buffer(
        &mut self,
        id: TxId,
        parents: [TxId; 2],
        solid: [Option<TxRef>; 2],
        milestone: Option<MilestoneIndex>,
        now: u64,
    ) -> Result<InsertOutcome, InsertError> {
        if self.pending.len() >= self.config.pending_capacity {
            return Err(InsertError::BufferFull {
                capacity: self.config.pending_capacity,
            });
        }
        let mut missing = Vec::new();
        let mut count = 0u8;
        for (p, s) in parents.iter().zip(solid) {
            if s.is_some() {
                continue;
            }
            count += 1;
            self.waiters.entry(*p).or_default().push(id);
            if !self.pending.contains_key(p) {
                missing.push(*p);
            }
        }
        self.pending.insert(
            id,
            Pending {
                parents,
                milestone,
                received: now,
                missing: count,
            },
        );
        Ok(InsertOutcome::Pending { missing })
    }

    /// Attaches every waiting transaction that became solid after `first` attached.
    fn release_waiters(&mut self, first: TxId, now: u64, solid: &mut Vec<(TxId, TxRef)>) {
        let mut stack = vec![first];
        while let Some(parent) = stack.pop() {
            let Some(waiting) = self.waiters.remove(&parent) else {
                continue;
            };
            for w in waiting {
                let Some(p) = self.pending.get_mut(&w) else {
                    continue;
                };
                p.missing -= 1;
                if p.missing > 0 {
                    continue;
                }
                let Some(p) = self.pending.remove(&w) else {
                    continue;
                };
                let refs = [self.index.get(&p.parents[0]), self.index.get(&p.parents[1])];
                let [Some(&t), Some(&b)] = refs else {
                    // Unreachable: `missing` reached 0 only once both parents attached.
                    continue;
                };
                match self.attach(w, [t, b], p.milestone, now) {
                    Ok(r) => {
                        solid.push((w, r));
                        stack.push(w);
                    }
                    Err(_) => {
                        // Refs exhausted: put it back, it stays waiting.
                        self.pending.insert(w, p);
                    }
                }
            }
        }
    }

    /// Appends a solid transaction to the arena.
    fn attach(
        &mut self,
        id: TxId,
        parents: [TxRef; 2],
        milestone: Option<MilestoneIndex>,
        now: u64,
    ) -> Result<TxRef, InsertError> {
        let next = self.base as usize + self.nodes.len();
        if next >= u32::MAX as usize {
            return Err(InsertError::RefsExhausted);
        }
        let r = TxRef(next as u32);
        let referenced = self.referenced_from_parents(parents);
        let arrival = now.max(self.last_arrival);
        self.last_arrival = arrival;
        for (i, &p) in parents.iter().enumerate() {
            if i == 1 && p == parents[0] {
                break; // both parents are the genesis: one approver entry
            }
            self.add_approver(p, r);
        }
        self.nodes.push_back(Node {
            id,
            parents,
            arrival,
            confirmed_by: NOT_CONFIRMED,
            referenced,
            tip_pos: self.tips.len() as u32,
            approvers: SmallVec::new(),
        });
        self.tips.push(r);
        self.unconfirmed.push_back(r);
        self.index.insert(id, r);
        if let Some(m) = milestone {
            self.solid_milestones.entry(m).or_insert(r);
        }
        Ok(r)
    }

    /// Records `approver` on `p` and removes `p` from the tips.
    fn add_approver(&mut self, p: TxRef, approver: TxRef) {
        let Some(slot) = p.0.checked_sub(self.base) else {
            if let Some(ep) = self.entry_points.get_mut(&p.0) {
                ep.last_approver = approver;
            }
            return;
        };
        let node = &mut self.nodes[slot as usize];
        node.approvers.push(approver);
        let pos = node.tip_pos;
        if pos != NOT_TIP {
            node.tip_pos = NOT_TIP;
            self.tips.swap_remove(pos as usize);
            if let Some(&moved) = self.tips.get(pos as usize) {
                let slot = moved.index() - self.base as usize;
                self.nodes[slot].tip_pos = pos;
            }
        }
    }

    /// (oldest, youngest) over the parents: a confirmed parent gives its confirming index, an
    /// unconfirmed one its own referenced milestones.
    fn referenced_from_parents(&self, parents: [TxRef; 2]) -> ReferencedMilestones {
        let a = self.parent_reference(parents[0]);
        let b = self.parent_reference(parents[1]);
        ReferencedMilestones {
            oldest: a.oldest.min(b.oldest),
            youngest: a.youngest.max(b.youngest),
        }
    }

    fn parent_reference(&self, p: TxRef) -> ReferencedMilestones {
        match self.slot(p) {
            None => ReferencedMilestones {
                oldest: self.pruned_index,
                youngest: self.pruned_index,
            },
            Some(s) => {
                let n = &self.nodes[s];
                if n.confirmed_by != NOT_CONFIRMED {
                    ReferencedMilestones {
                        oldest: n.confirmed_by,
                        youngest: n.confirmed_by,
                    }
                } else {
                    n.referenced
                }
            }
        }
    }

    /// Arena slot of `r`, `None` below the root. Panics above the newest.
    fn slot(&self, r: TxRef) -> Option<usize> {
        let s = r.0.checked_sub(self.base)? as usize;
        assert!(
            s < self.nodes.len(),
            "{r:?} is beyond the newest transaction"
        );
        Some(s)
    }

    fn node(&self, r: TxRef) -> Option<&Node> {
        self.slot(r).map(|s| &self.nodes[s])
    }

    /// The not-yet-confirmed past cone of `roots` in white-flag order: an iterative
    /// post-order depth-first walk from each root in turn, trunk (`parents[0]`) before
    /// branch (`parents[1]`), each transaction once, stopping at confirmed (or pruned)
    /// transactions. Parents always come before their approvers.
    ///
    /// The order depends only on the DAG (ids and parent links), never on arrival order.
    /// Refs that are not held (above the newest) are skipped.
    pub fn unconfirmed_cone(&self, roots: &[TxRef]) -> Vec<TxRef> {
        let mut out = Vec::new();
        let mut seen: HashSet<u32, BuildHasherDefault<IdHasher>> = HashSet::default();
        // (tx, expanded): expanded entries are emitted when popped.
        let mut stack: Vec<(TxRef, bool)> = Vec::new();
        for &root in roots {
            if self.is_open(root) {
                stack.push((root, false));
            }
            while let Some((r, expanded)) = stack.pop() {
                if expanded {
                    out.push(r);
                    continue;
                }
                if !seen.insert(r.0) {
                    continue;
                }
                stack.push((r, true));
                let [trunk, branch] = self.nodes[r.index() - self.base as usize].parents;
                // Pushed last, popped first: the trunk's cone comes before the branch's.
                for p in [branch, trunk] {
                    if self.is_open(p) && !seen.contains(&p.0) {
                        stack.push((p, false));
                    }
                }
            }
        }
        out
    }

    /// Held and unconfirmed.
    fn is_open(&self, r: TxRef) -> bool {
        r.0.checked_sub(self.base)
            .and_then(|s| self.nodes.get(s as usize))
            .is_some_and(|n| n.confirmed_by == NOT_CONFIRMED)
    }

    /// Marks the transactions of `order` (normally [`Tangle::unconfirmed_cone`] of the
    /// milestone) as confirmed by milestone `index`, carried by `milestone_tx`, and makes
    /// `index` the confirmed milestone. Then recomputes the referenced milestones of the
    /// still-unconfirmed transactions newer than the oldest one confirmed, in ref order:
    /// O(order + that suffix of the unconfirmed list), at most O(unconfirmed).
    ///
    /// `order` must list unconfirmed held transactions with each parent confirmed before or
    /// listed earlier; `index` must exceed [`TangleView::confirmed_milestone`]. On error
    /// nothing changes. A ref listed twice is marked once.
    pub fn confirm(
        &mut self,
        order: &[TxRef],
        index: MilestoneIndex,
        milestone_tx: TxRef,
    ) -> Result<(), ConfirmError> {
        if index <= self.confirmed_milestone || index == NOT_CONFIRMED {
            return Err(ConfirmError::IndexNotIncreasing {
                index,
                confirmed: self.confirmed_milestone,
            });
        }
        if !self.holds(milestone_tx) {
            return Err(ConfirmError::UnknownTx(milestone_tx));
        }
        for &r in order {
            if !self.holds(r) {
                return Err(ConfirmError::UnknownTx(r));
            }
            if !self.is_open(r) {
                return Err(ConfirmError::AlreadyConfirmed(r));
            }
        }
        for (done, &r) in order.iter().enumerate() {
            let s = r.index() - self.base as usize;
            let closed = self.nodes[s]
                .parents
                .iter()
                .all(|&p| p == r || !self.is_open(p));
            if !closed {
                // Roll back what this call marked so far.
                for &u in &order[..done] {
                    let s = u.index() - self.base as usize;
                    self.nodes[s].confirmed_by = NOT_CONFIRMED;
                }
                return Err(ConfirmError::NotParentClosed(r));
            }
            self.nodes[s].confirmed_by = index;
        }
        // Second pass (only after success): confirmed txs reference their own milestone.
        for &r in order {
            let s = r.index() - self.base as usize;
            self.nodes[s].referenced = ReferencedMilestones {
                oldest: index,
                youngest: index,
            };
        }
        self.applied.insert(index, milestone_tx);
        self.solid_milestones.entry(index).or_insert(milestone_tx);
        self.confirmed_milestone = index;
        if let Some(&oldest) = order.iter().min() {
            self.refresh_unconfirmed_from(oldest);
        }
        Ok(())
    }

    /// Marks `r`, another transaction carrying the already applied milestone `index` (a
    /// committee may publish one milestone in two transactions, with other signature
    /// sets), as confirmed by `index`, so that no later milestone's cone holds it on one
    /// node and not on another. Its parents must be confirmed (they are those of the
    /// applied carrier). Nothing changes on an error.
    pub fn confirm_copy(&mut self, r: TxRef, index: MilestoneIndex) -> Result<(), ConfirmError> {
        if index > self.confirmed_milestone || index == 0 {
            return Err(ConfirmError::IndexNotIncreasing {
                index,
                confirmed: self.confirmed_milestone,
            });
        }
        if !self.holds(r) {
            return Err(ConfirmError::UnknownTx(r));
        }
        if !self.is_open(r) {
            return Err(ConfirmError::AlreadyConfirmed(r));
        }
        let s = r.index() - self.base as usize;
        if self.nodes[s]
            .parents
            .iter()
            .any(|&p| p != r && self.is_open(p))
        {
            return Err(ConfirmError::NotParentClosed(r));
        }
        self.nodes[s].confirmed_by = index;
        self.nodes[s].referenced = ReferencedMilestones {
            oldest: index,
            youngest: index,
        };
        self.refresh_unconfirmed_from(r);
        Ok(())
    }

    /// Drops newly confirmed transactions from the unconfirmed list at and after `oldest`
    /// and recomputes the referenced milestones of the rest of that suffix, in ref order
    /// (parents first): only transactions newer than `oldest` can have it in their cone.
    /// Old orphans before it are not touched.
    fn refresh_unconfirmed_from(&mut self, oldest: TxRef) {
        let base = self.base as usize;
        let start = self.unconfirmed.partition_point(|r| *r < oldest);
        let mut write = start;
        for read in start..self.unconfirmed.len() {
            let r = self.unconfirmed[read];
            let s = r.index() - base;
            if self.nodes[s].confirmed_by != NOT_CONFIRMED {
                continue;
            }
            let referenced = self.referenced_from_parents(self.nodes[s].parents);
            self.nodes[s].referenced = referenced;
            self.unconfirmed[write] = r;
            write += 1;
        }
        self.unconfirmed.truncate(write);
    }

    /// Whether `r` is in the arena (at or above the root, at or below the newest).
    fn holds(&self, r: TxRef) -> bool {
        r.0.checked_sub(self.base)
            .is_some_and(|s| (s as usize) < self.nodes.len())
    }

    /// Drops every transaction with a ref below `keep_from` and returns how many were dropped.
    ///
    /// Each dropped transaction must be confirmed, or be an orphan: unconfirmed but approved
    /// by no kept transaction (directly or through other dropped ones). The simulator needs
    /// the latter, since a lazy tip may never be confirmed. Refs stay stable;
    /// [`TangleView::root`] becomes `keep_from`.
    ///
    /// After pruning, refs below the root read as confirmed solid entry points:
    /// `confirmed_by` and `referenced_milestones` give the largest confirming index among
    /// pruned transactions, `approvers` is empty, `parents` is the ref itself and `arrival`
    /// is the root's. A pruned transaction still approved by a held one keeps its id in the
    /// index ([`TangleView::lookup`] returns its ref and new arrivals may approve it);
    /// other pruned ids are forgotten, and a new arrival approving one waits as pending.
    pub fn prune_before(&mut self, keep_from: TxRef) -> Result<usize, PruneError> {
        if keep_from.0 <= self.base {
            return Ok(0);
        }
        let end = self.base as usize + self.nodes.len();
        if keep_from.index() > end - 1 {
            return Err(PruneError::BeyondNewest(keep_from));
        }
        // Unconfirmed transactions below the prune point must be orphans. Checking direct
        // approvers is enough: an approver below the point is unconfirmed too (confirmed sets
        // are parent-closed) and is checked itself.
        let below: Vec<TxRef> = self
            .unconfirmed
            .iter()
            .copied()
            .take_while(|r| *r < keep_from)
            .collect();
        for &r in &below {
            let n = &self.nodes[r.index() - self.base as usize];
            if n.approvers.iter().any(|a| *a >= keep_from) {
                return Err(PruneError::UnconfirmedReferenced(r));
            }
        }
        let count = keep_from.index() - self.base as usize;
        // Entry points from earlier prunes that nothing kept approves any more.
        let mut retired = Vec::new();
        self.entry_points.retain(|_, ep| {
            let keep = ep.last_approver >= keep_from;
            if !keep {
                retired.push(ep.id);
            }
            keep
        });
        for id in &retired {
            self.index.remove(id);
        }
        for (i, node) in self.nodes.drain(..count).enumerate() {
            let r = self.base + i as u32;
            if node.confirmed_by != NOT_CONFIRMED {
                self.pruned_index = self.pruned_index.max(node.confirmed_by);
            }
            match node.approvers.iter().max() {
                Some(&last) if last >= keep_from => {
                    self.entry_points.insert(
                        r,
                        EntryPoint {
                            id: node.id,
                            confirmed_by: node.confirmed_by,
                            last_approver: last,
                        },
                    );
                }
                _ => {
                    self.index.remove(&node.id);
                }
            }
        }
        self.base = keep_from.0;
        let base = self.base;
        // Dropped tips leave the tip set.
        self.tips.retain(|t| t.0 >= base);
        for (pos, t) in self.tips.iter().enumerate() {
            self.nodes[t.index() - base as usize].tip_pos = pos as u32;
        }
        self.unconfirmed.drain(..below.len());
        self.applied.retain(|_, r| r.0 >= base);
        self.solid_milestones.retain(|_, r| r.0 >= base);
        self.prunes = self.prunes.wrapping_add(1);
        if self.prunes % capacity::SHRINK_EVERY == 0 {
            self.shrink();
        }
        Ok(count)
    }

    /// Gives back the capacity a larger window left behind ([`capacity`]).
    fn shrink(&mut self) {
        capacity::shrink_sparse(&mut self.nodes);
        capacity::shrink_sparse(&mut self.index);
        capacity::shrink_sparse(&mut self.tips);
        capacity::shrink_sparse(&mut self.unconfirmed);
        capacity::shrink_sparse(&mut self.pending);
        capacity::shrink_sparse(&mut self.waiters);
        capacity::shrink_sparse(&mut self.entry_points);
    }

    /// Removes waiting transactions received before `older_than` (their parents never came)
    /// and returns their ids, sorted. Transactions waiting on them stay (they age out on
    /// their own). O(pending).
    pub fn evict_pending(&mut self, older_than: u64) -> Vec<TxId> {
        let mut old: Vec<(TxId, [TxId; 2])> = self
            .pending
            .iter()
            .filter(|(_, p)| p.received < older_than)
            .map(|(id, p)| (*id, p.parents))
            .collect();
        old.sort_unstable_by_key(|(id, _)| *id);
        for (id, parents) in &old {
            self.pending.remove(id);
            for p in parents {
                if let Some(w) = self.waiters.get_mut(p) {
                    w.retain(|x| x != id);
                    if w.is_empty() {
                        self.waiters.remove(p);
                    }
                }
            }
        }
        old.into_iter().map(|(id, _)| id).collect()
    }

    /// Reserves room for `additional` more solid transactions, so that inserting them does
    /// not re-grow the arena or the id index (a clone holds exactly what it needs).
    pub fn reserve(&mut self, additional: usize) {
        self.nodes.reserve(additional);
        self.index.reserve(additional);
        self.unconfirmed.reserve(additional.min(1 << 16));
        self.tips.reserve(additional.min(1 << 12));
    }

    /// Number of transactions waiting for parents.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Whether `id` is solid or waiting.
    pub fn is_known(&self, id: &TxId) -> bool {
        self.index.contains_key(id) || self.pending.contains_key(id)
    }

    /// Whether `id` is solid (held, or a pruned entry point).
    pub fn is_solid(&self, id: &TxId) -> bool {
        self.index.contains_key(id)
    }

    /// Whether `id` is waiting for parents.
    pub fn is_pending(&self, id: &TxId) -> bool {
        self.pending.contains_key(id)
    }

    /// The solid transaction carrying milestone `index`, applied or not (the first one seen,
    /// if several claim the index).
    pub fn solid_milestone(&self, index: MilestoneIndex) -> Option<TxRef> {
        self.solid_milestones.get(&index).copied()
    }

    /// Unconfirmed held transactions, in ref order.
    pub fn unconfirmed(&self) -> impl ExactSizeIterator<Item = TxRef> + '_ {
        self.unconfirmed.iter().copied()
    }

    /// Number of unconfirmed held transactions.
    pub fn unconfirmed_len(&self) -> usize {
        self.unconfirmed.len()
    }

    /// All held refs, root to newest.
    pub fn refs(&self) -> impl ExactSizeIterator<Item = TxRef> {
        let base = self.base;
        (0..self.nodes.len() as u32).map(move |i| TxRef(base + i))
    }
}

impl Default for Tangle {
    fn default() -> Self {
        Tangle::new(TangleConfig::default())
    }
}

impl TangleView for Tangle {
    fn len(&self) -> usize {
        self.nodes.len()
    }

    fn root(&self) -> TxRef {
        TxRef(self.base)
    }

    fn newest(&self) -> TxRef {
        TxRef(self.base + self.nodes.len() as u32 - 1)
    }

    fn lookup(&self, id: &TxId) -> Option<TxRef> {
        self.index.get(id).copied()
    }

    /// Panics if `tx` is above the newest, or is pruned and no longer an entry point.
    fn id(&self, tx: TxRef) -> TxId {
        match self.node(tx) {
            Some(n) => n.id,
            None => match self.entry_points.get(&tx.0) {
                Some(ep) => ep.id,
                None => panic!("{tx:?} was pruned and is no longer approved"),
            },
        }
    }

    fn parents(&self, tx: TxRef) -> [TxRef; 2] {
        self.node(tx).map_or([tx, tx], |n| n.parents)
    }

    fn approvers(&self, tx: TxRef) -> &[TxRef] {
        self.node(tx).map_or(&[], |n| &n.approvers)
    }

    fn tips(&self) -> &[TxRef] {
        &self.tips
    }

    fn arrival(&self, tx: TxRef) -> u64 {
        self.node(tx).unwrap_or(&self.nodes[0]).arrival
    }

    fn confirmed_by(&self, tx: TxRef) -> Option<MilestoneIndex> {
        match self.node(tx) {
            None => Some(self.pruned_index),
            Some(n) if n.confirmed_by == NOT_CONFIRMED => None,
            Some(n) => Some(n.confirmed_by),
        }
    }

    fn referenced_milestones(&self, tx: TxRef) -> ReferencedMilestones {
        self.node(tx).map_or(
            ReferencedMilestones {
                oldest: self.pruned_index,
                youngest: self.pruned_index,
            },
            |n| n.referenced,
        )
    }

    fn confirmed_milestone(&self) -> MilestoneIndex {
        self.confirmed_milestone
    }

    fn milestone(&self, index: MilestoneIndex) -> Option<TxRef> {
        self.applied.get(&index).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A distinct, hash-like id for `n` (never the genesis).
    fn tid(n: u64) -> TxId {
        let mut out = [0u8; 32];
        let mut x = n.wrapping_add(1);
        for chunk in out.chunks_mut(8) {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            chunk.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        TxId(out)
    }

    const G: TxId = TxId::GENESIS;

    fn solid(outcome: Result<InsertOutcome, InsertError>) -> Vec<(TxId, TxRef)> {
        match outcome {
            Ok(InsertOutcome::Solid(v)) => v,
            other => panic!("expected Solid, got {other:?}"),
        }
    }

    fn add(t: &mut Tangle, n: u64, parents: [TxId; 2]) -> TxRef {
        solid(t.insert(tid(n), parents, None, n))[0].1
    }

    #[test]
    fn new_holds_only_the_confirmed_genesis() {
        let t = Tangle::default();
        assert_eq!(t.len(), 1);
        assert_eq!(t.root(), TxRef(0));
        assert_eq!(t.newest(), TxRef(0));
        assert_eq!(t.lookup(&G), Some(TxRef(0)));
        assert_eq!(t.id(TxRef(0)), G);
        assert_eq!(t.parents(TxRef(0)), [TxRef(0); 2]);
        assert_eq!(t.confirmed_by(TxRef(0)), Some(0));
        assert_eq!(t.arrival(TxRef(0)), 0);
        assert_eq!(t.tips(), &[TxRef(0)]);
        assert_eq!(t.confirmed_milestone(), 0);
        assert_eq!(t.milestone(0), Some(TxRef(0)));
        assert!(t.is_known(&G) && t.is_solid(&G) && !t.is_pending(&G));
    }

    #[test]
    fn solid_inserts_maintain_approvers_and_tips() {
        let mut t = Tangle::default();
        let a = add(&mut t, 1, [G, G]);
        assert_eq!(a, TxRef(1));
        assert_eq!(
            t.approvers(TxRef(0)),
            &[a],
            "double genesis parent counts once"
        );
        assert_eq!(t.tips(), &[a]);
        let b = add(&mut t, 2, [G, tid(1)]);
        let c = add(&mut t, 3, [tid(1), tid(2)]);
        assert_eq!(t.parents(c), [a, b]);
        assert_eq!(t.approvers(a), &[b, c]);
        assert_eq!(t.approvers(TxRef(0)), &[a, b]);
        assert_eq!(t.tips(), &[c]);
        let d = add(&mut t, 4, [tid(1), tid(2)]);
        let mut tips = t.tips().to_vec();
        tips.sort();
        assert_eq!(tips, vec![c, d]);
        // Every tip's position index is right: approving d then c empties them in turn.
        let e = add(&mut t, 5, [tid(4), tid(2)]);
        let mut tips = t.tips().to_vec();
        tips.sort();
        assert_eq!(tips, vec![c, e]);
        let f = add(&mut t, 6, [tid(3), tid(5)]);
        assert_eq!(t.tips(), &[f]);
        assert_eq!(t.lookup(&tid(6)), Some(f));
        assert_eq!(t.id(f), tid(6));
        assert_eq!(t.newest(), f);
        assert_eq!(t.len(), 7);
    }

    #[test]
    fn rejects_bad_parents_and_reports_duplicates() {
        let mut t = Tangle::default();
        add(&mut t, 1, [G, G]);
        assert_eq!(
            t.insert(tid(2), [tid(1), tid(1)], None, 0),
            Err(InsertError::DuplicateParent(tid(1)))
        );
        assert_eq!(
            t.insert(tid(2), [tid(2), tid(1)], None, 0),
            Err(InsertError::SelfParent(tid(2)))
        );
        assert_eq!(
            t.insert(tid(2), [G, tid(2)], None, 0),
            Err(InsertError::SelfParent(tid(2)))
        );
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.insert(tid(1), [G, G], None, 0),
            Ok(InsertOutcome::Duplicate)
        );
        assert_eq!(
            t.insert(G, [tid(1), tid(2)], None, 0),
            Ok(InsertOutcome::Duplicate)
        );
        // A waiting transaction is a duplicate too.
        assert!(matches!(
            t.insert(tid(3), [tid(9), tid(1)], None, 0),
            Ok(InsertOutcome::Pending { .. })
        ));
        assert_eq!(
            t.insert(tid(3), [tid(9), tid(1)], None, 0),
            Ok(InsertOutcome::Duplicate)
        );
        assert_eq!(t.pending_len(), 1);
    }

    /// A second transaction carrying an applied milestone is confirmed by it: it leaves
    /// the unconfirmed set and no later cone holds it; a transaction approving it references
    /// that milestone.
    #[test]
    fn a_copy_of_an_applied_milestone_is_confirmed_by_it() {
        let mut t = Tangle::default();
        let a = solid(t.insert(tid(1), [G, G], None, 1))[0].1;
        let ms = solid(t.insert(tid(2), [tid(1), G], Some(1), 2))[0].1;
        let cone = t.unconfirmed_cone(&[a]);
        let mut order = cone.clone();
        order.push(ms);
        t.confirm(&order, 1, ms).unwrap();
        // Another carrier of milestone 1 (same parents), and a transaction approving it.
        let copy = solid(t.insert(tid(3), [tid(1), G], Some(1), 3))[0].1;
        let child = solid(t.insert(tid(4), [tid(3), tid(2)], None, 4))[0].1;
        assert_eq!(t.unconfirmed_cone(&[child]), vec![copy, child]);
        // Not for a milestone not applied yet, nor twice.
        assert!(t.confirm_copy(copy, 2).is_err());
        t.confirm_copy(copy, 1).unwrap();
        assert_eq!(
            t.confirm_copy(copy, 1),
            Err(ConfirmError::AlreadyConfirmed(copy))
        );
        assert_eq!(t.confirmed_by(copy), Some(1));
        assert_eq!(t.unconfirmed_cone(&[child]), vec![child]);
        assert_eq!(t.unconfirmed().collect::<Vec<_>>(), vec![child]);
        assert_eq!(t.referenced_milestones(child).youngest, 1);
        // A transaction with an unconfirmed parent cannot be confirmed as a copy.
        let other = solid(t.insert(tid(5), [tid(4), G], Some(1), 5))[0].1;
        assert_eq!(
            t.confirm_copy(other, 1),
            Err(ConfirmError::NotParentClosed(other))
        );
    }

    #[test]
    fn waiting_descendants_attach_parents_first_when_the_missing_parent_arrives() {
        let mut t = Tangle::default();
        // 3 <- 2 <- 1 <- genesis, plus 4 approving 3 and 2; arrive in reverse.
        assert_eq!(
            t.insert(tid(4), [tid(3), tid(2)], None, 10),
            Ok(InsertOutcome::Pending {
                missing: vec![tid(3), tid(2)]
            })
        );
        assert_eq!(
            t.insert(tid(3), [tid(2), G], None, 11),
            Ok(InsertOutcome::Pending {
                missing: vec![tid(2)]
            })
        );
        // 2's missing parent 1 is not waiting, 3 (waiting) is not reported again.
        assert_eq!(
            t.insert(tid(2), [tid(1), G], None, 12),
            Ok(InsertOutcome::Pending {
                missing: vec![tid(1)]
            })
        );
        assert_eq!(t.pending_len(), 3);
        assert!(t.is_known(&tid(4)) && !t.is_solid(&tid(4)) && t.is_pending(&tid(4)));
        assert_eq!(t.lookup(&tid(4)), None);
        assert_eq!(t.len(), 1, "waiting transactions are not visible");
        let out = solid(t.insert(tid(1), [G, G], None, 20));
        let ids: Vec<TxId> = out.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![tid(1), tid(2), tid(3), tid(4)]);
        for (id, r) in &out {
            assert_eq!(t.lookup(id), Some(*r));
            for p in t.parents(*r) {
                assert!(p < *r, "parents come first");
            }
        }
        assert_eq!(t.pending_len(), 0);
        assert_eq!(t.tips(), &[out[3].1]);
        // Arrival is the time the transaction became solid.
        assert!(out.iter().all(|(_, r)| t.arrival(*r) == 20));
    }

    #[test]
    fn buffer_is_bounded() {
        let mut t = Tangle::new(TangleConfig {
            pending_capacity: 2,
            initial_capacity: 0,
        });
        for n in 10..12 {
            assert!(matches!(
                t.insert(tid(n), [tid(1), G], None, 0),
                Ok(InsertOutcome::Pending { .. })
            ));
        }
        assert_eq!(
            t.insert(tid(12), [tid(1), G], None, 0),
            Err(InsertError::BufferFull { capacity: 2 })
        );
        assert_eq!(t.pending_len(), 2);
        // Solid arrivals still go in; then the buffer drains.
        let out = solid(t.insert(tid(1), [G, G], None, 0));
        assert_eq!(out.len(), 3);
        assert_eq!(t.pending_len(), 0);
        assert!(matches!(
            t.insert(tid(12), [tid(2), G], None, 0),
            Ok(InsertOutcome::Pending { .. })
        ));
    }

    #[test]
    fn evict_pending_removes_old_arrivals_only() {
        let mut t = Tangle::default();
        let _ = t.insert(tid(10), [tid(1), G], None, 5);
        let _ = t.insert(tid(11), [tid(1), G], None, 50);
        assert_eq!(t.evict_pending(10), vec![tid(10)]);
        assert!(!t.is_known(&tid(10)));
        assert_eq!(t.pending_len(), 1);
        let out = solid(t.insert(tid(1), [G, G], None, 60));
        let ids: Vec<TxId> = out.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![tid(1), tid(11)]);
    }

    #[test]
    fn arrival_never_decreases() {
        let mut t = Tangle::default();
        solid(t.insert(tid(1), [G, G], None, 100));
        solid(t.insert(tid(2), [G, tid(1)], None, 40));
        solid(t.insert(tid(3), [tid(2), tid(1)], None, 150));
        assert_eq!(t.arrival(TxRef(1)), 100);
        assert_eq!(t.arrival(TxRef(2)), 100);
        assert_eq!(t.arrival(TxRef(3)), 150);
    }

    /// 1 and 2 approve the genesis; 3 = (2, 1); 4 = (1, 3); 5 = (4, 2).
    fn diamond() -> Tangle {
        let mut t = Tangle::default();
        add(&mut t, 1, [G, G]);
        add(&mut t, 2, [G, tid(1)]);
        add(&mut t, 3, [tid(2), tid(1)]);
        add(&mut t, 4, [tid(1), tid(3)]);
        add(&mut t, 5, [tid(4), tid(2)]);
        t
    }

    fn refs_of(t: &Tangle, ns: &[u64]) -> Vec<TxRef> {
        ns.iter().map(|n| t.lookup(&tid(*n)).unwrap()).collect()
    }

    #[test]
    fn unconfirmed_cone_is_post_order_trunk_first() {
        let t = diamond();
        let r = |n| t.lookup(&tid(n)).unwrap();
        // visit 5: trunk 4 -> trunk 1 (emit 1), branch 3 -> trunk 2 (its branch 1 seen; emit 2),
        // emit 3, emit 4; branch 2 seen; emit 5.
        assert_eq!(t.unconfirmed_cone(&[r(5)]), refs_of(&t, &[1, 2, 3, 4, 5]));
        // 3 = (2, 1) and 2 = (genesis, 1): 1 comes first through 2's branch.
        assert_eq!(t.unconfirmed_cone(&[r(3)]), refs_of(&t, &[1, 2, 3]));
        // Several roots in order, each tx once.
        assert_eq!(
            t.unconfirmed_cone(&[r(2), r(4)]),
            refs_of(&t, &[1, 2, 3, 4])
        );
        assert_eq!(t.unconfirmed_cone(&[r(1), r(2)]), refs_of(&t, &[1, 2]));
        assert!(t.unconfirmed_cone(&[TxRef(0)]).is_empty());
        assert!(t.unconfirmed_cone(&[TxRef(99)]).is_empty());
    }

    #[test]
    fn unconfirmed_cone_visits_trunk_before_branch() {
        let mut t = Tangle::default();
        add(&mut t, 1, [G, G]);
        add(&mut t, 2, [G, G]);
        let c = add(&mut t, 3, [tid(2), tid(1)]);
        let d = add(&mut t, 4, [tid(1), tid(2)]);
        assert_eq!(t.unconfirmed_cone(&[c]), refs_of(&t, &[2, 1, 3]));
        assert_eq!(t.unconfirmed_cone(&[d]), refs_of(&t, &[1, 2, 4]));
        assert_eq!(t.unconfirmed_cone(&[d, c]), refs_of(&t, &[1, 2, 4, 3]));
        // Stops at confirmed transactions.
        let cone = t.unconfirmed_cone(&[TxRef(2)]);
        t.confirm(&cone, 1, TxRef(2)).unwrap();
        assert_eq!(t.unconfirmed_cone(&[c]), refs_of(&t, &[1, 3]));
    }

    #[test]
    fn cone_walk_is_iterative_on_deep_chains() {
        let mut t = Tangle::default();
        let mut prev = G;
        for n in 1..=200_000u64 {
            solid(t.insert(tid(n), [prev, G], None, n));
            prev = tid(n);
        }
        let cone = t.unconfirmed_cone(&[t.newest()]);
        assert_eq!(cone.len(), 200_000);
        assert!(cone.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn confirm_marks_and_updates_referenced_milestones() {
        let mut t = diamond();
        let r = |t: &Tangle, n| t.lookup(&tid(n)).unwrap();
        // Before any milestone everything references the genesis' milestone 0.
        assert_eq!(
            t.referenced_milestones(r(&t, 5)),
            ReferencedMilestones {
                oldest: 0,
                youngest: 0
            }
        );
        let cone = t.unconfirmed_cone(&[r(&t, 3)]);
        t.confirm(&cone, 1, r(&t, 3)).unwrap();
        assert_eq!(t.confirmed_milestone(), 1);
        assert_eq!(t.milestone(1), Some(r(&t, 3)));
        for n in [1, 2, 3] {
            assert_eq!(t.confirmed_by(r(&t, n)), Some(1));
            assert_eq!(
                t.referenced_milestones(r(&t, n)),
                ReferencedMilestones {
                    oldest: 1,
                    youngest: 1
                }
            );
        }
        assert_eq!(t.confirmed_by(r(&t, 4)), None);
        // 4 = (1, 3): both confirmed by 1. 5 = (4, 2): 4 references (1, 1), 2 confirmed by 1.
        assert_eq!(
            t.referenced_milestones(r(&t, 4)),
            ReferencedMilestones {
                oldest: 1,
                youngest: 1
            }
        );
        // A new tx approving the genesis (milestone 0) and 4 spans (0, 1).
        let x = add(&mut t, 6, [G, tid(4)]);
        assert_eq!(
            t.referenced_milestones(x),
            ReferencedMilestones {
                oldest: 0,
                youngest: 1
            }
        );
        assert_eq!(t.unconfirmed().collect::<Vec<_>>(), refs_of(&t, &[4, 5, 6]));
        let cone = t.unconfirmed_cone(&[r(&t, 4)]);
        assert_eq!(cone, refs_of(&t, &[4]));
        t.confirm(&cone, 2, r(&t, 4)).unwrap();
        // 6 = (genesis, 4): (min(0, 2), max(0, 2)); 5 = (4, 2): (1, 2).
        assert_eq!(
            t.referenced_milestones(x),
            ReferencedMilestones {
                oldest: 0,
                youngest: 2
            }
        );
        assert_eq!(
            t.referenced_milestones(r(&t, 5)),
            ReferencedMilestones {
                oldest: 1,
                youngest: 2
            }
        );
        assert_eq!(t.unconfirmed_len(), 2);
    }

    #[test]
    fn confirm_rejects_bad_input_and_changes_nothing() {
        let mut t = diamond();
        let r = |t: &Tangle, n| t.lookup(&tid(n)).unwrap();
        let cone = t.unconfirmed_cone(&[r(&t, 3)]);
        assert_eq!(
            t.confirm(&cone, 0, r(&t, 3)),
            Err(ConfirmError::IndexNotIncreasing {
                index: 0,
                confirmed: 0
            })
        );
        assert_eq!(
            t.confirm(&cone, u32::MAX, r(&t, 3)),
            Err(ConfirmError::IndexNotIncreasing {
                index: u32::MAX,
                confirmed: 0
            })
        );
        assert_eq!(
            t.confirm(&[TxRef(42)], 1, r(&t, 3)),
            Err(ConfirmError::UnknownTx(TxRef(42)))
        );
        assert_eq!(
            t.confirm(&cone, 1, TxRef(42)),
            Err(ConfirmError::UnknownTx(TxRef(42)))
        );
        assert_eq!(
            t.confirm(&[TxRef(0)], 1, r(&t, 3)),
            Err(ConfirmError::AlreadyConfirmed(TxRef(0)))
        );
        // 1 is fine, then 3 whose parent 2 is missing from the order: rolled back.
        assert_eq!(
            t.confirm(&refs_of(&t, &[1, 3, 2]), 1, r(&t, 3)),
            Err(ConfirmError::NotParentClosed(r(&t, 3)))
        );
        assert_eq!(t.confirmed_by(r(&t, 1)), None, "rolled back");
        assert_eq!(t.confirmed_milestone(), 0);
        assert_eq!(t.milestone(1), None);
        assert_eq!(t.unconfirmed_len(), 5);
        t.confirm(&cone, 1, r(&t, 3)).unwrap();
        assert_eq!(
            t.confirm(&cone, 2, r(&t, 3)),
            Err(ConfirmError::AlreadyConfirmed(cone[0]))
        );
    }

    #[test]
    fn solid_milestone_records_carriers() {
        let mut t = Tangle::default();
        solid(t.insert(tid(1), [G, G], Some(1), 0));
        assert_eq!(t.solid_milestone(1), Some(TxRef(1)));
        assert_eq!(t.milestone(1), None, "seen but not applied");
        // A carrier that waited is recorded when it becomes solid.
        let _ = t.insert(tid(3), [tid(2), tid(1)], Some(2), 0);
        assert_eq!(t.solid_milestone(2), None);
        solid(t.insert(tid(2), [tid(1), G], None, 0));
        assert_eq!(t.solid_milestone(2), t.lookup(&tid(3)));
    }

    #[test]
    fn memory_follows_the_window_held_not_the_largest_one() {
        // A window of 20,000 shrinks to 4,000 in prunes of 1,000: the arena and the id
        // index give their spare room back (every SHRINK_EVERY prunes).
        let mut t = Tangle::default();
        let mut prev = [G, G];
        for n in 1..=20_000 {
            add(&mut t, n, prev);
            prev = [tid(n), if n > 1 { tid(n - 1) } else { G }];
        }
        let last = t.lookup(&tid(20_000)).unwrap();
        let cone = t.unconfirmed_cone(&[last]);
        t.confirm(&cone, 1, last).unwrap();
        let (nodes_room, index_room) = (t.nodes.capacity(), t.index.capacity());
        assert!(nodes_room >= 20_000 && index_room >= 20_000);
        for step in 1..=capacity::SHRINK_EVERY {
            let cut = TxRef(t.root().0 + 1_000);
            assert_eq!(t.prune_before(cut), Ok(1_000), "prune {step}");
        }
        let held = t.len();
        assert!(held <= 4_001, "{held}");
        assert!(
            t.nodes.capacity() < nodes_room / 2 && t.index.capacity() < index_room / 2,
            "{} of {nodes_room}, {} of {index_room}",
            t.nodes.capacity(),
            t.index.capacity()
        );
        // Nothing held was lost.
        assert_eq!(t.lookup(&tid(20_000)), Some(last));
        assert_eq!(t.id(last), tid(20_000));
        let x = add(&mut t, 30_000, [tid(20_000), tid(19_999)]);
        assert_eq!(t.parents(x)[0], last);
    }

    #[test]
    fn prune_drops_a_confirmed_prefix_and_keeps_refs_stable() {
        let mut t = diamond();
        let r = |t: &Tangle, n| t.lookup(&tid(n)).unwrap();
        assert_eq!(
            t.prune_before(TxRef(2)),
            Err(PruneError::UnconfirmedReferenced(TxRef(1)))
        );
        assert_eq!(
            t.prune_before(TxRef(9)),
            Err(PruneError::BeyondNewest(TxRef(9)))
        );
        let three = r(&t, 3);
        let cone = t.unconfirmed_cone(&[three]);
        t.confirm(&cone, 1, three).unwrap();
        let (four, five) = (r(&t, 4), r(&t, 5));
        assert_eq!(t.prune_before(three), Ok(3));
        assert_eq!(t.root(), three);
        assert_eq!(t.len(), 3);
        assert_eq!(t.newest(), five);
        assert_eq!(t.lookup(&tid(5)), Some(five), "refs are stable");
        assert_eq!(t.parents(five)[0], four);
        // Genesis is dropped and approved by nothing kept: forgotten.
        assert_eq!(t.lookup(&G), None);
        // 1 (approved by 4) and 2 (approved by 3 and 5) stay entry points.
        let one = t.lookup(&tid(1)).unwrap();
        let two = t.lookup(&tid(2)).unwrap();
        assert!(one < three && two < three);
        assert_eq!(t.id(one), tid(1));
        assert_eq!(
            t.confirmed_by(two),
            Some(1),
            "below the root reads as confirmed"
        );
        assert!(t.approvers(two).is_empty());
        assert_eq!(t.parents(two), [two, two]);
        assert_eq!(t.milestone(1), Some(three));
        assert!(t.unconfirmed_cone(&[five]).iter().all(|x| *x >= three));
        // New arrivals may approve an entry point.
        let x = add(&mut t, 7, [tid(2), tid(5)]);
        assert_eq!(t.parents(x), [two, five]);
        assert_eq!(
            t.referenced_milestones(x),
            ReferencedMilestones {
                oldest: 1,
                youngest: 1
            }
        );
        // Pruning below the root is a no-op.
        assert_eq!(t.prune_before(TxRef(1)), Ok(0));
        let cone = t.unconfirmed_cone(&[x]);
        assert_eq!(cone, vec![four, five, x]);
        t.confirm(&cone, 2, x).unwrap();
        assert_eq!(t.prune_before(x), Ok(3));
        // Entry points approved only by pruned transactions are forgotten.
        assert_eq!(t.lookup(&tid(1)), None);
        assert_eq!(t.lookup(&tid(3)), None);
        assert_eq!(t.lookup(&tid(4)), None);
        // Those approved by a kept one stay.
        assert_eq!(t.lookup(&tid(2)), Some(two));
        assert_eq!(t.lookup(&tid(5)), Some(five));
        assert_eq!(t.id(five), tid(5));
        assert_eq!(t.tips(), &[x]);
        // A tx approving a forgotten id waits.
        assert!(matches!(
            t.insert(tid(8), [tid(1), tid(7)], None, 0),
            Ok(InsertOutcome::Pending { .. })
        ));
    }

    #[test]
    fn prune_drops_orphans() {
        let mut t = Tangle::default();
        add(&mut t, 1, [G, G]); // orphan: never approved
        add(&mut t, 2, [G, G]);
        add(&mut t, 3, [tid(2), G]);
        let three = TxRef(3);
        let cone = t.unconfirmed_cone(&[three]);
        assert_eq!(cone.len(), 2);
        t.confirm(&cone, 1, three).unwrap();
        assert_eq!(t.unconfirmed_len(), 1);
        assert_eq!(t.prune_before(three), Ok(3));
        assert_eq!(t.lookup(&tid(1)), None);
        assert_eq!(t.unconfirmed_len(), 0);
        assert_eq!(t.tips(), &[three]);
        assert_eq!(t.arrival(TxRef(1)), t.arrival(three));
    }

    #[test]
    fn id_hasher_uses_the_prefix() {
        use std::hash::BuildHasher;
        let h = |id: &TxId| IdBuildHasher::default().hash_one(id);
        assert_eq!(h(&tid(5)), tid(5).prefix_u64());
        assert_ne!(h(&tid(5)), h(&tid(6)));
    }

    /// A Tangle rebuilt from a pruned one's entry points takes the kept transactions back
    /// (all solid) and replays their confirmations, as a restart of a pruning node does.
    #[test]
    fn from_entry_points_takes_back_what_a_prune_kept() {
        let mut t = Tangle::default();
        // Milestone 1 confirms 1..=3 (3 carries it); milestone 2 confirms 4..=6.
        let mut prev = [G, G];
        for n in 1..=6u64 {
            let ms = (n % 3 == 0).then_some((n / 3) as MilestoneIndex);
            solid(t.insert(tid(n), prev, ms, n));
            prev = [tid(n), prev[0]];
        }
        let refs: Vec<TxRef> = (0..=6)
            .map(|n| t.lookup(&tid(n)).unwrap_or(TxRef(0)))
            .collect();
        let r = |n: u64| refs[n as usize];
        t.confirm(&[r(1), r(2), r(3)], 1, r(3)).unwrap();
        t.confirm(&[r(4), r(5), r(6)], 2, r(6)).unwrap();
        // Two unconfirmed transactions on top.
        for n in 7..=8u64 {
            solid(t.insert(tid(n), prev, None, n));
            prev = [tid(n), prev[0]];
        }
        t.prune_before(r(4)).unwrap();
        let points = t.entry_points();
        assert!(!points.is_empty());
        assert!(points.iter().all(|(_, ms)| *ms == 1), "{points:?}");
        let kept: Vec<TxId> = (4..=8).map(tid).collect();
        let mut u = Tangle::from_entry_points(TangleConfig::default(), 1, &points);
        assert_eq!(u.confirmed_milestone(), 1);
        prev = [tid(3), tid(2)];
        for (i, id) in kept.iter().enumerate() {
            let n = 4 + i as u64;
            let ms = (n == 6).then_some(2);
            let got = solid(u.insert(*id, prev, ms, n));
            assert_eq!(got[0].0, *id, "kept transaction {n} is solid at once");
            prev = [*id, prev[0]];
        }
        let c2: Vec<TxRef> = (4..=6).map(|n| u.lookup(&tid(n)).unwrap()).collect();
        u.confirm(&c2, 2, c2[2]).unwrap();
        assert_eq!(u.confirmed_milestone(), 2);
        let unconfirmed: Vec<TxId> = u.unconfirmed().map(|r| u.id(r)).collect();
        assert_eq!(unconfirmed, vec![tid(7), tid(8)]);
        for p in &points {
            assert!(u.is_solid(&p.0));
        }
        // The genesis root is held, and a prune past it drops entry points nothing approves.
        assert!(u.is_solid(&G));
        let newest = u.lookup(&tid(7)).unwrap();
        u.prune_before(newest).unwrap();
        assert!(u
            .entry_points()
            .iter()
            .all(|(id, _)| *id == tid(6) || *id == tid(5)));
    }
}
