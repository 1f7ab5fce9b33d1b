//! What a running node's snapshot is made of, taken under the core's lock in one short
//! step (copies of the ledger's maps and a walk over the held refs); sorting and writing
//! happen outside the lock ([`crate::snapshot::Capture::into_snapshot`]).

use dag_core::{MilestoneIndex, TangleView};

use super::Protocol;
use crate::snapshot::{Capture, ENTRY_POINT_MILESTONES};

impl Protocol {
    /// The ledger at the last applied milestone, that milestone's transaction id and the
    /// solid entry points a node started from it needs: those of the last prune, every
    /// held transaction confirmed by the last [`ENTRY_POINT_MILESTONES`] milestones, and the
    /// confirmed parents of every unconfirmed transaction.
    /// `None` before the first milestone (a snapshot of the genesis is useless) or if the
    /// milestone's transaction is no longer known.
    pub fn capture_snapshot(&self) -> Option<Capture> {
        let ledger = &self.ledger;
        let index = ledger.confirmed_index();
        if index == 0 {
            return None;
        }
        let milestone_tx = self.milestone_tx(index)?;
        let from: MilestoneIndex = index.saturating_sub(ENTRY_POINT_MILESTONES - 1).max(1);
        let mut entry_points = self.tangle.entry_points();
        // Every held ref: with retention on that is a few hundred thousand lookups. (Not
        // only those above `pruned_index`: pruning goes by arrival, so a held transaction
        // can be confirmed before a pruned one; leaving it out made a node started from the
        // snapshot take it for unconfirmed and halt on the next milestone's cone.)
        for r in self.tangle.refs() {
            if let Some(ms) = self.tangle.confirmed_by(r) {
                if (from..=index).contains(&ms) {
                    entry_points.push((self.tangle.id(r), ms));
                }
            }
        }
        // The confirmed parents of unconfirmed transactions, however old: the next
        // milestones reach them through those transactions (a lazy tip swept six milestones
        // after its parent was confirmed, `node/tests/snapshot_join.rs`). Pruned parents are
        // among the Tangle's entry points already.
        let root = self.tangle.root();
        for u in self.tangle.unconfirmed() {
            for p in self.tangle.parents(u) {
                if p >= root && p != u {
                    if let Some(ms) = self.tangle.confirmed_by(p) {
                        entry_points.push((self.tangle.id(p), ms));
                    }
                }
            }
        }
        Some(Capture {
            network_id: ledger.network_id(),
            supply: ledger.supply(),
            milestone: index,
            ledger_digest: ledger.digest(),
            accounts: ledger.accounts().map(|(a, v)| (*a, *v)).collect(),
            channels: ledger.channels().map(|(c, v)| (*c, *v)).collect(),
            entry_points,
            milestone_tx,
            rotations: ledger.rotations().to_vec(),
        })
    }
}
