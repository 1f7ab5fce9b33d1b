//! Pruning: every node's Tangle below the settle horizon, and the records that settle after
//! it.

use dag_core::{Tangle, TangleView, TxRef};

use super::{first_at_or_after, Simulation};

impl Simulation {
    /// Prunes every node's Tangle below the settle horizon and settles old records.
    pub(super) fn prune(&mut self) {
        let cutoff = self.now.saturating_sub(self.settle);
        for st in &mut self.nodes {
            let t = &mut st.tangle;
            let keep = safe_prune_point(t, first_at_or_after(t, cutoff));
            if keep > t.root() {
                // Cannot fail: the point leaves no approved unconfirmed transaction behind.
                let _ = t.prune_before(keep);
            }
        }
        // Records settle a quarter horizon after the Tangle may drop them.
        let settle_before = self.now.saturating_sub(self.settle + self.settle / 4);
        while let Some(front) = self.records.items.front() {
            if front.issued >= settle_before {
                break;
            }
            let rec = self.records.items.pop_front().expect("front exists");
            self.records.base += 1;
            self.settle_record(rec);
        }
    }
}

/// The largest prune point at or below `limit` that drops no unconfirmed transaction still
/// approved from above the point (what [`Tangle::prune_before`] requires), in one pass over
/// the unconfirmed transactions below `limit`. Unconfirmed transactions without approvers
/// (orphaned tips) never block pruning.
fn safe_prune_point(t: &Tangle, limit: TxRef) -> TxRef {
    let mut best = t.root();
    // Largest approver of the unconfirmed transactions seen so far.
    let mut reach = TxRef(0);
    for u in t.unconfirmed() {
        if u >= limit {
            break;
        }
        if reach < u {
            best = u; // every unconfirmed one below u is approved only from below u
        }
        if let Some(&last) = t.approvers(u).last() {
            reach = reach.max(last);
        }
    }
    if reach < limit {
        limit
    } else {
        best
    }
}
