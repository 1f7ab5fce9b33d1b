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
        #[cfg(feature = "parallel")]
        {
            let (c, a) = rayon::join(|| par_root(&confirmed), || par_root(&applied));
            (Digest(c), Digest(a))
        }
        #[cfg(not(feature = "parallel"))]
        (merkle::root(&confirmed), merkle::root(&applied))
    }
}

/// Ids from which [`par_root`] splits a list across the rayon pool.
#[cfg(feature = "parallel")]
const PARALLEL_ROOT_MIN: usize = 4096;

/// [`merkle::root`] on the rayon pool: a list of `n >= 2` ids splits at the largest power
/// of two below `n` (RFC 6962), and the two halves are independent.
#[cfg(feature = "parallel")]
fn par_root(ids: &[[u8; 32]]) -> [u8; 32] {
    if ids.len() < PARALLEL_ROOT_MIN {
        return merkle::root(ids).0;
    }
    let k = 1usize << (usize::BITS - 1 - (ids.len() - 1).leading_zeros());
    let (left, right) = rayon::join(|| par_root(&ids[..k]), || par_root(&ids[k..]));
    merkle::node_hash(&left, &right)
}

#[cfg(all(test, feature = "parallel"))]
mod tests {
    use super::*;

    #[test]
    fn par_root_is_the_merkle_root() {
        let ids: Vec<[u8; 32]> = (0..20_000u32)
            .map(|i| crate::crypto::blake2b256(&i.to_le_bytes()))
            .collect();
        for n in [
            0, 1, 2, 3, 4095, 4096, 4097, 8192, 8193, 12_345, 16_384, 20_000,
        ] {
            assert_eq!(par_root(&ids[..n]), merkle::root(&ids[..n]).0, "{n}");
        }
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
