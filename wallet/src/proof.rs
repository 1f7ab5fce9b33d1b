//! Checking proofs of confirmation without trusting the node that served them (no I/O): a
//! [`TransactionProof`] verifies against the committee and threshold of the network's
//! genesis only, and says which transaction and payload, which milestone, and whether the
//! payload was applied ([`Proven`]). A [`StateProof`] shows an account's balance and next
//! sequence number (or a channel) after a milestone, or its absence ([`ProvenState`]). A
//! device keeps the proofs it relies on; they stay valid after nodes prune.

pub use dag_core::proof::{
    ProofError, Proven, ProvenState, StateEntry, StateProof, Step, TransactionProof,
    VerifiedMilestones,
};
use dag_core::{Genesis, Rotation, ValidationParams};

fn params_of(genesis: &Genesis, rotations: &[Rotation]) -> Result<ValidationParams, ProofError> {
    ValidationParams::with_rotations(genesis, rotations).map_err(|e| match e {
        dag_core::ParamsError::Rotation(e) => {
            ProofError::Milestone(format!("the committee rotations do not hold: {e}"))
        }
        e => ProofError::Milestone(format!("the genesis is unusable: {e}")),
    })
}

/// Verifies `proof` against the network `genesis` defines.
pub fn verify_proof(proof: &TransactionProof, genesis: &Genesis) -> Result<Proven, ProofError> {
    proof.verify(&params_of(genesis, &[])?)
}

/// [`verify_proof`] for a network whose committee rotated: `rotations` (from any source,
/// e.g. a node's `GET /api/v1/committee`) are each checked against the committee before
/// them, from the genesis one on, so a node cannot make up a committee. A source that
/// withholds a rotation leaves the verifier with the older committee (see ARCHITECTURE.md,
/// "Committee rotation").
pub fn verify_proof_with_rotations(
    proof: &TransactionProof,
    genesis: &Genesis,
    rotations: &[Rotation],
) -> Result<Proven, ProofError> {
    proof.verify(&params_of(genesis, rotations)?)
}

/// Verifies a state proof (an account or a channel after a milestone) against the network
/// `genesis` defines.
pub fn verify_state_proof(
    proof: &StateProof,
    genesis: &Genesis,
) -> Result<ProvenState, ProofError> {
    proof.verify(&params_of(genesis, &[])?)
}

/// [`verify_state_proof`] with committee rotations (see [`verify_proof_with_rotations`]).
pub fn verify_state_proof_with_rotations(
    proof: &StateProof,
    genesis: &Genesis,
    rotations: &[Rotation],
) -> Result<ProvenState, ProofError> {
    proof.verify(&params_of(genesis, rotations)?)
}

/// Milestones a [`ProofVerifier`] remembers by default.
pub const REMEMBERED_MILESTONES: usize = 64;

/// Checks many proofs of one network: the committee keys are decoded once, and each
/// milestone's signatures are checked once (then remembered by id, the hash of its whole
/// encoding: [`TransactionProof::verify_with`]). What a charger or a gateway keeps.
#[derive(Clone, Debug)]
pub struct ProofVerifier {
    params: ValidationParams,
    known: VerifiedMilestones,
}

impl ProofVerifier {
    /// A verifier for the network `genesis` defines, remembering
    /// [`REMEMBERED_MILESTONES`] milestones.
    pub fn new(genesis: &Genesis) -> Result<Self, ProofError> {
        Self::with_rotations(genesis, &[])
    }

    /// A verifier for a network whose committee rotated (see [`verify_proof_with_rotations`]).
    pub fn with_rotations(genesis: &Genesis, rotations: &[Rotation]) -> Result<Self, ProofError> {
        Ok(ProofVerifier {
            params: params_of(genesis, rotations)?,
            known: VerifiedMilestones::new(REMEMBERED_MILESTONES),
        })
    }

    /// Learns rotations newer than those it knows (older ones are skipped), each checked
    /// against the committee before it; returns how many were new.
    pub fn learn_rotations(&mut self, rotations: &[Rotation]) -> Result<usize, ProofError> {
        let last = self.params.last_rotation_index();
        let mut n = 0;
        for r in rotations.iter().filter(|r| r.milestone.index > last) {
            self.params
                .add_rotation(r)
                .map_err(|e| ProofError::Milestone(format!("committee rotation: {e}")))?;
            n += 1;
        }
        Ok(n)
    }

    /// Verifies `proof` (the same verdict as [`verify_proof`]).
    pub fn verify(&mut self, proof: &TransactionProof) -> Result<Proven, ProofError> {
        proof.verify_with(&self.params, &mut self.known)
    }

    /// Verifies a state proof (the same verdict as [`verify_state_proof`]).
    pub fn verify_state(&mut self, proof: &StateProof) -> Result<ProvenState, ProofError> {
        proof.verify_with(&self.params, &mut self.known)
    }
}
