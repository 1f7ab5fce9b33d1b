//! [`TangleView`]: what tip selection sees of a Tangle. The in-memory [`crate::Tangle`]
//! implements it for the node; the simulator uses the same `Tangle`.

use crate::ids::TxId;
use crate::types::MilestoneIndex;

/// Compact handle of a solid transaction inside a Tangle: its position in arrival order.
///
/// Refs are dense and increase with arrival: a larger ref never arrived earlier. A ref is only
/// meaningful for the Tangle that issued it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct TxRef(pub u32);

impl TxRef {
    /// As a `usize` index.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Oldest and youngest milestone index referenced by a transaction's past cone: for each
/// confirmed transaction at the border of the cone, the index of the milestone that confirmed
/// it (IOTA's OMRSI / YMRSI). A confirmed transaction references its own confirming
/// milestone for both.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct ReferencedMilestones {
    /// Oldest referenced milestone index.
    pub oldest: MilestoneIndex,
    /// Youngest referenced milestone index.
    pub youngest: MilestoneIndex,
}

/// Read access to a Tangle of solid transactions, for tip selection.
///
/// Only solid transactions (whose whole past cone is known) are visible. Every method is
/// O(1) and allocation-free, so selectors can call them in hot loops.
pub trait TangleView {
    /// Number of solid transactions held, including the genesis root.
    fn len(&self) -> usize;

    /// Whether the Tangle holds nothing (never true once created: the root is always there).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest transaction still held: the genesis root, or the snapshot point after
    /// pruning. Walks that find nothing better start here.
    fn root(&self) -> TxRef;

    /// The newest transaction (largest ref).
    fn newest(&self) -> TxRef;

    /// The ref of a solid transaction.
    fn lookup(&self, id: &TxId) -> Option<TxRef>;

    /// The id of `tx`.
    fn id(&self, tx: TxRef) -> TxId;

    /// Trunk and branch of `tx` (the root's parents are itself).
    fn parents(&self, tx: TxRef) -> [TxRef; 2];

    /// Direct approvers of `tx`, in arrival order.
    fn approvers(&self, tx: TxRef) -> &[TxRef];

    /// Current tips: solid transactions without approvers, in no particular order.
    fn tips(&self) -> &[TxRef];

    /// Local arrival time of `tx`, in the caller's time unit (ms on a node, virtual time in
    /// the simulator). Non-decreasing in ref order.
    fn arrival(&self, tx: TxRef) -> u64;

    /// Index of the milestone that confirmed `tx`, if any.
    fn confirmed_by(&self, tx: TxRef) -> Option<MilestoneIndex>;

    /// Oldest and youngest milestone referenced by `tx`'s past cone.
    fn referenced_milestones(&self, tx: TxRef) -> ReferencedMilestones;

    /// Index of the latest applied (confirmed) milestone; 0 before the first.
    fn confirmed_milestone(&self) -> MilestoneIndex;

    /// The transaction carrying applied milestone `index`.
    fn milestone(&self, index: MilestoneIndex) -> Option<TxRef>;
}
