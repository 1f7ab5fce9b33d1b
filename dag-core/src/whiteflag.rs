//! White-flag milestone confirmation, the one function the node and the simulator share.
//!
//! A milestone confirms the not-yet-confirmed past cone of its parents. [`apply_cone`] puts
//! that cone in white-flag order ([`Tangle::unconfirmed_cone`]: post-order DFS, trunk before
//! branch) and applies the signed payloads it carries to a [`Ledger`] in that order; the
//! caller then marks the cone confirmed ([`Tangle::confirm`], with the milestone's own
//! transaction) once it accepts the outcome (a node receiving a milestone first checks the
//! ledger digest against the milestone's).

use crate::ids::{Digest, TxId};
use crate::ledger::{ApplyError, Ledger, MilestoneOutcome};
use crate::merkle;
use crate::tangle::Tangle;
use crate::types::{MilestoneIndex, SignedPayload};
use crate::view::{TangleView, TxRef};

/// A milestone's cone applied to a ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConeOutcome {
    /// The cone in white-flag order (without the milestone's own transaction).
    pub cone: Vec<TxRef>,
    /// The transactions of `cone` that carried a payload, in order: the same length and
    /// order as `outcome.outcomes`.
    pub carriers: Vec<TxRef>,
    /// What the ledger made of the payloads.
    pub outcome: MilestoneOutcome,
}

impl ConeOutcome {
    /// The Merkle roots ([`crate::merkle`]) a milestone commits to: of the ids of the
    /// transactions it confirms (the cone, in white-flag order) and of those whose payload
    /// it applied (in the same order).
    pub fn roots(&self, tangle: &Tangle) -> (Digest, Digest) {
        let confirmed: Vec<[u8; 32]> = self.cone.iter().map(|r| tangle.id(*r).0).collect();
        let applied: Vec<[u8; 32]> = self
            .outcome
            .outcomes
            .iter()
            .filter(|(_, o)| o.is_applied())
            .map(|(tx, _)| tx.0)
            .collect();
        (merkle::root(&confirmed), merkle::root(&applied))
    }
}

/// Applies the payloads of the unconfirmed past cone of `roots` (the milestone's parents)
/// to `ledger` as milestone `index`, in white-flag order. `payload` gives the signed payload
/// a transaction of the cone carries (the Tangle holds no payloads). On an error the ledger
/// is unchanged.
pub fn apply_cone<'a>(
    tangle: &Tangle,
    ledger: &mut Ledger,
    index: MilestoneIndex,
    roots: &[TxRef],
    mut payload: impl FnMut(TxRef, &TxId) -> Option<&'a SignedPayload>,
) -> Result<ConeOutcome, ApplyError> {
    let cone = tangle.unconfirmed_cone(roots);
    let mut carriers = Vec::new();
    let mut payloads: Vec<(TxId, &SignedPayload)> = Vec::new();
    for &r in &cone {
        let id = tangle.id(r);
        if let Some(p) = payload(r, &id) {
            carriers.push(r);
            payloads.push((id, p));
        }
    }
    let outcome = ledger.apply_milestone(index, payloads)?;
    Ok(ConeOutcome {
        cone,
        carriers,
        outcome,
    })
}
