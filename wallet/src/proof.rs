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
use dag_core::{Genesis, ValidationParams};

fn params_of(genesis: &Genesis) -> Result<ValidationParams, ProofError> {
    ValidationParams::new(genesis)
        .map_err(|e| ProofError::Milestone(format!("the genesis is unusable: {e}")))
}

/// Verifies `proof` against the network `genesis` defines.
pub fn verify_proof(proof: &TransactionProof, genesis: &Genesis) -> Result<Proven, ProofError> {
    proof.verify(&params_of(genesis)?)
}

/// Verifies a state proof (an account or a channel after a milestone) against the network
/// `genesis` defines.
pub fn verify_state_proof(
    proof: &StateProof,
    genesis: &Genesis,
) -> Result<ProvenState, ProofError> {
    proof.verify(&params_of(genesis)?)
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
        Ok(ProofVerifier {
            params: params_of(genesis)?,
            known: VerifiedMilestones::new(REMEMBERED_MILESTONES),
        })
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
