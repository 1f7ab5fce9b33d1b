//! Committee rotation: the milestone committee's key sets by milestone index range, as
//! IOTA's TIP-29 keeps coordinator keys by range, but decided by the committee itself.
//!
//! A milestone may carry a [`CommitteeUpdate`] (a new key set and threshold, effective from
//! a later index). Its signatures are the old committee's, over a signing message that
//! covers the update ([`crate::crypto::milestone_signing_message`]), so the update is
//! committee-signed. Once that milestone is applied, milestones from `effective_from` on are
//! checked against the new set. The milestone and its parents are kept as a [`Rotation`]
//! (the evidence): starting from the genesis committee, anyone can check each rotation's
//! signatures against the committee before it, and so learn every key set without trusting
//! whoever handed them the rotations (snapshots and the API carry them).
//!
//! Rules (checked by every node, so a committee cannot break them without halting the
//! nodes that apply its milestone):
//! - the new set is a usable committee (1 to [`MAX_MILESTONE_SIGNATURES`] distinct, strong
//!   Ed25519 keys, threshold between 1 and its size), the same rules as the genesis';
//! - `effective_from` is after the carrying milestone's index;
//! - at most one rotation is pending: a milestone may carry an update only once the previous
//!   update is in effect (its index at or after the previous `effective_from`).

use std::collections::HashSet;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::crypto::{milestone_signing_message, verify_with_key, verifying_key};
use crate::error::SignatureError;
use crate::genesis::{Genesis, GenesisError};
use crate::ids::{Address, TxId};
use crate::types::{Milestone, MilestoneIndex, NetworkId, MAX_MILESTONE_SIGNATURES};

/// A new committee, effective from a milestone index, carried by an earlier milestone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitteeUpdate {
    /// First milestone index the new committee signs.
    pub effective_from: MilestoneIndex,
    /// The new committee's public keys; signers are named by their index here.
    pub committee: Vec<Address>,
    /// Signatures needed from the new committee (k of n).
    pub threshold: u8,
}

/// The evidence of a rotation: the milestone that carried the update (with its signatures)
/// and the parents of its transaction, which its signatures cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Parents of the carrying transaction.
    pub parents: [TxId; 2],
    /// The milestone; its `committee_update` is set.
    pub milestone: Milestone,
}

impl Rotation {
    /// The update this rotation carries (`None` only for a malformed rotation).
    pub fn update(&self) -> Option<&CommitteeUpdate> {
        self.milestone.committee_update.as_ref()
    }
}

/// A committee update or rotation that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    /// The new set breaks a genesis rule (size, threshold, duplicate key).
    #[error("the new committee is unusable: {0}")]
    Unusable(GenesisError),
    /// A key of the new set is not a usable Ed25519 key.
    #[error("key {index} of the new committee: {source}")]
    Key {
        /// Position in the new set.
        index: usize,
        /// Why.
        source: SignatureError,
    },
    /// `effective_from` is not after the carrying milestone.
    #[error("an update carried by milestone {carrier} must take effect after it, not at {effective_from}")]
    NotAfterCarrier {
        /// The carrying milestone's index.
        carrier: MilestoneIndex,
        /// The claimed first index.
        effective_from: MilestoneIndex,
    },
    /// An earlier update is not in effect yet.
    #[error("milestone {carrier} carries an update while the one effective from {pending} is still pending")]
    Pending {
        /// The carrying milestone's index.
        carrier: MilestoneIndex,
        /// Where the pending one takes effect.
        pending: MilestoneIndex,
    },
    /// The rotation's milestone carries no update.
    #[error("milestone {0} carries no committee update")]
    NoUpdate(MilestoneIndex),
    /// The rotation's milestone is not signed by the committee in office at its index.
    #[error("milestone {index} is not signed by the committee in office: {why}")]
    Unsigned {
        /// The carrying milestone's index.
        index: MilestoneIndex,
        /// What failed.
        why: String,
    },
    /// Rotations given out of order or for an index already decided differently.
    #[error("rotation carried by milestone {0} is out of order")]
    OutOfOrder(MilestoneIndex),
}

/// One committee's term: from `from` until the next epoch's `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Epoch {
    /// First milestone index this committee signs.
    pub from: MilestoneIndex,
    /// Public keys, as addresses.
    pub committee: Vec<Address>,
    /// The same keys, decoded once.
    pub keys: Vec<VerifyingKey>,
    /// k of n.
    pub threshold: u8,
}

impl Epoch {
    fn new(
        from: MilestoneIndex,
        committee: &[Address],
        threshold: u8,
    ) -> Result<Self, RotationError> {
        check_set(committee, threshold)?;
        let keys = committee
            .iter()
            .enumerate()
            .map(|(index, a)| {
                verifying_key(a).map_err(|source| RotationError::Key { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Epoch {
            from,
            committee: committee.to_vec(),
            keys,
            threshold,
        })
    }

    /// This committee's index of `member`, if it is one.
    pub fn member_index(&self, member: &Address) -> Option<u8> {
        self.committee
            .iter()
            .position(|a| a == member)
            .map(|i| i as u8)
    }
}

/// The same rules as [`Genesis::validate`] for a committee.
fn check_set(committee: &[Address], threshold: u8) -> Result<(), RotationError> {
    let n = committee.len();
    if n > MAX_MILESTONE_SIGNATURES {
        return Err(RotationError::Unusable(GenesisError::CommitteeTooLarge(n)));
    }
    if threshold == 0 || usize::from(threshold) > n {
        return Err(RotationError::Unusable(GenesisError::BadThreshold {
            threshold,
            committee: n,
        }));
    }
    let mut seen = HashSet::new();
    if let Some(k) = committee.iter().find(|k| !seen.insert(*k)) {
        return Err(RotationError::Unusable(
            GenesisError::DuplicateCommitteeKey(*k),
        ));
    }
    Ok(())
}

/// What can be checked about an update without any state: a usable set, effective after
/// the milestone `carrier` that carries it.
pub fn check_update(carrier: MilestoneIndex, u: &CommitteeUpdate) -> Result<(), RotationError> {
    if u.effective_from <= carrier {
        return Err(RotationError::NotAfterCarrier {
            carrier,
            effective_from: u.effective_from,
        });
    }
    Epoch::new(u.effective_from, &u.committee, u.threshold).map(|_| ())
}

/// The committees of a network by index range: the genesis committee from milestone 1, then
/// one epoch per applied rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitteeSchedule {
    network_id: NetworkId,
    epochs: Vec<Epoch>,
    rotations: Vec<Rotation>,
    /// The highest index whose committee is certain: every rotation that could change it
    /// is applied. `MilestoneIndex::MAX` for a verifier that knows nothing newer may exist
    /// (it checks what it is given against what it knows).
    known_through: MilestoneIndex,
}

impl CommitteeSchedule {
    /// The genesis committee alone.
    pub fn from_genesis(genesis: &Genesis) -> Result<Self, RotationError> {
        let first = Epoch::new(1, &genesis.committee, genesis.threshold)?;
        Ok(CommitteeSchedule {
            network_id: genesis.network_id(),
            epochs: vec![first],
            rotations: Vec::new(),
            known_through: MilestoneIndex::MAX,
        })
    }

    /// The genesis committee, then each rotation in order, each checked ([`Self::add`]).
    pub fn from_rotations(
        genesis: &Genesis,
        rotations: &[Rotation],
    ) -> Result<Self, RotationError> {
        let mut s = Self::from_genesis(genesis)?;
        for r in rotations {
            s.add(r)?;
        }
        Ok(s)
    }

    /// The committee in office at milestone `index`.
    pub fn at(&self, index: MilestoneIndex) -> &Epoch {
        let i = self.epochs.partition_point(|e| e.from <= index);
        &self.epochs[i.saturating_sub(1)]
    }

    /// Every epoch, oldest first (the genesis committee's from 1).
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    /// The rotations applied, oldest first (the evidence of every epoch after the first).
    pub fn rotations(&self) -> &[Rotation] {
        &self.rotations
    }

    /// The highest index whose committee is certain (see the field).
    pub fn known_through(&self) -> MilestoneIndex {
        self.known_through
    }

    /// A node applied milestone `index`: the committee of `index + 1` is certain (an update
    /// a later milestone carries takes effect after that milestone), later ones are not.
    pub fn set_applied(&mut self, index: MilestoneIndex) {
        self.known_through = index.saturating_add(1);
    }

    /// The update that is announced but not in effect at `index`, if any.
    pub fn pending_at(&self, index: MilestoneIndex) -> Option<&Epoch> {
        self.epochs.last().filter(|e| e.from > index)
    }

    /// Whether milestone `carrier` may carry `u` given the rotations applied before it.
    pub fn may_carry(
        &self,
        carrier: MilestoneIndex,
        u: &CommitteeUpdate,
    ) -> Result<(), RotationError> {
        check_update(carrier, u)?;
        if let Some(p) = self.pending_at(carrier) {
            return Err(RotationError::Pending {
                carrier,
                pending: p.from,
            });
        }
        Ok(())
    }

    /// Checks `signatures` of milestone `m` on `parents` against the committee in office at
    /// its index: known signers, at least its threshold, each valid (strict).
    pub fn verify_signatures(&self, parents: &[TxId; 2], m: &Milestone) -> Result<(), String> {
        let epoch = self.at(m.index);
        if m.signatures.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("signers not strictly ascending".into());
        }
        if m.signatures.len() < usize::from(epoch.threshold) {
            return Err(format!(
                "{} signatures, the committee in office needs {}",
                m.signatures.len(),
                epoch.threshold
            ));
        }
        let msg = milestone_signing_message(self.network_id, parents, m);
        for (signer, sig) in &m.signatures {
            let key = epoch.keys.get(usize::from(*signer)).ok_or_else(|| {
                format!(
                    "signer {signer} is not in the committee of {}",
                    epoch.keys.len()
                )
            })?;
            verify_with_key(key, &msg, sig)
                .map_err(|_| format!("signature of member {signer} does not verify"))?;
        }
        Ok(())
    }

    /// Applies a rotation: its milestone must be signed by the committee in office at its
    /// index and may carry its update ([`Self::may_carry`]); rotations come in index order.
    pub fn add(&mut self, r: &Rotation) -> Result<(), RotationError> {
        let index = r.milestone.index;
        let u = r.update().ok_or(RotationError::NoUpdate(index))?;
        if self
            .rotations
            .last()
            .is_some_and(|l| l.milestone.index >= index)
        {
            return Err(RotationError::OutOfOrder(index));
        }
        self.may_carry(index, u)?;
        self.verify_signatures(&r.parents, &r.milestone)
            .map_err(|why| RotationError::Unsigned { index, why })?;
        let epoch = Epoch::new(u.effective_from, &u.committee, u.threshold)?;
        self.epochs.push(epoch);
        self.rotations.push(r.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::ids::Digest;

    fn keys(seed: u8, n: usize) -> Vec<Keypair> {
        (0..n)
            .map(|i| Keypair::from_seed(&[seed + i as u8; 32]))
            .collect()
    }

    fn genesis(committee: &[Keypair], threshold: u8) -> Genesis {
        Genesis {
            network_name: "rot".into(),
            timestamp: 1,
            pow_difficulty: 0,
            timestamp_window_ms: crate::genesis::DEFAULT_TIMESTAMP_WINDOW_MS,
            committee: committee.iter().map(Keypair::address).collect(),
            threshold,
            allocations: Vec::new(),
        }
    }

    fn milestone(index: MilestoneIndex, update: Option<CommitteeUpdate>) -> Milestone {
        Milestone {
            index,
            timestamp: 7,
            previous: TxId([index as u8; 32]),
            confirmed_root: Digest([1; 32]),
            applied_root: Digest([2; 32]),
            state_root: Digest([3; 32]),
            ledger_digest: Digest([4; 32]),
            signatures: Vec::new(),
            committee_update: update,
        }
    }

    fn sign(g: &Genesis, mut m: Milestone, signers: &[(u8, &Keypair)]) -> Rotation {
        let parents = [TxId([9; 32]), TxId([8; 32])];
        let msg = milestone_signing_message(g.network_id(), &parents, &m);
        m.signatures = signers.iter().map(|(i, k)| (*i, k.sign(&msg))).collect();
        Rotation {
            parents,
            milestone: m,
        }
    }

    #[test]
    fn a_rotation_signed_by_the_committee_in_office_changes_the_keys_from_its_index() {
        let old = keys(1, 3);
        let new = keys(40, 4);
        let g = genesis(&old, 2);
        let mut s = CommitteeSchedule::from_genesis(&g).unwrap();
        let u = CommitteeUpdate {
            effective_from: 10,
            committee: new.iter().map(Keypair::address).collect(),
            threshold: 3,
        };
        let r = sign(
            &g,
            milestone(5, Some(u.clone())),
            &[(0, &old[0]), (2, &old[2])],
        );
        s.add(&r).unwrap();
        assert_eq!(s.at(9).committee, g.committee);
        assert_eq!(s.at(10).committee, u.committee);
        assert_eq!(s.at(10).threshold, 3);
        assert_eq!(s.at(u32::MAX).from, 10);
        assert_eq!(s.pending_at(9).map(|e| e.from), Some(10));
        assert!(s.pending_at(10).is_none());
        // A second update while this one is pending is refused.
        let r2 = sign(
            &g,
            milestone(6, Some(u.clone())),
            &[(0, &old[0]), (1, &old[1])],
        );
        assert!(matches!(
            s.add(&r2),
            Err(RotationError::Pending { pending: 10, .. })
        ));
        // The same evidence rebuilds the same schedule from the genesis.
        let again = CommitteeSchedule::from_rotations(&g, std::slice::from_ref(&r)).unwrap();
        assert_eq!(again.epochs(), s.epochs());
        // Milestone 10 needs the new committee: the old one's signatures fail.
        let m10 = sign(
            &g,
            milestone(10, None),
            &[(0, &old[0]), (1, &old[1]), (2, &old[2])],
        );
        assert!(s.verify_signatures(&m10.parents, &m10.milestone).is_err());
        let m10 = sign(
            &g,
            milestone(10, None),
            &[(0, &new[0]), (1, &new[1]), (3, &new[3])],
        );
        s.verify_signatures(&m10.parents, &m10.milestone).unwrap();
    }

    #[test]
    fn forged_or_malformed_rotations_are_refused() {
        let old = keys(1, 3);
        let g = genesis(&old, 2);
        let stranger = keys(90, 2);
        let u = CommitteeUpdate {
            effective_from: 4,
            committee: stranger.iter().map(Keypair::address).collect(),
            threshold: 2,
        };
        let mut s = CommitteeSchedule::from_genesis(&g).unwrap();
        // Signed by strangers in the slots of members.
        let forged = sign(
            &g,
            milestone(3, Some(u.clone())),
            &[(0, &stranger[0]), (1, &stranger[1])],
        );
        assert!(matches!(
            s.add(&forged),
            Err(RotationError::Unsigned { .. })
        ));
        // One signature short.
        let short = sign(&g, milestone(3, Some(u.clone())), &[(0, &old[0])]);
        assert!(matches!(s.add(&short), Err(RotationError::Unsigned { .. })));
        // The update changed after signing.
        let mut edited = sign(
            &g,
            milestone(3, Some(u.clone())),
            &[(0, &old[0]), (1, &old[1])],
        );
        edited
            .milestone
            .committee_update
            .as_mut()
            .unwrap()
            .threshold = 1;
        assert!(matches!(
            s.add(&edited),
            Err(RotationError::Unsigned { .. })
        ));
        // Not after its carrier.
        let mut at = u.clone();
        at.effective_from = 3;
        let early = sign(&g, milestone(3, Some(at)), &[(0, &old[0]), (1, &old[1])]);
        assert!(matches!(
            s.add(&early),
            Err(RotationError::NotAfterCarrier { .. })
        ));
        // Unusable sets.
        let mut bad = u.clone();
        bad.threshold = 3;
        assert!(matches!(
            check_update(3, &bad),
            Err(RotationError::Unusable(_))
        ));
        let mut dup = u.clone();
        dup.committee[1] = dup.committee[0];
        assert!(matches!(
            check_update(3, &dup),
            Err(RotationError::Unusable(_))
        ));
        let mut empty = u;
        empty.committee.clear();
        empty.threshold = 0;
        assert!(check_update(3, &empty).is_err());
        assert_eq!(s.epochs().len(), 1, "nothing was added");
    }
}
