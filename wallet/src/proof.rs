//! Checking proofs of confirmation without trusting the node that served them (no I/O): a
//! [`TransactionProof`] verifies against the committee and threshold of the network's
//! genesis only, and says which transaction and payload, which milestone, and whether the
//! payload was applied ([`Proven`]). A device keeps the proofs it relies on; they stay valid
//! after nodes prune.

pub use dag_core::proof::{ProofError, Proven, Step, TransactionProof, VerifiedMilestones};
use dag_core::{Genesis, ValidationParams};

/// Verifies `proof` against the network `genesis` defines.
pub fn verify_proof(proof: &TransactionProof, genesis: &Genesis) -> Result<Proven, ProofError> {
    let params = ValidationParams::new(genesis)
        .map_err(|e| ProofError::Milestone(format!("the genesis is unusable: {e}")))?;
    proof.verify(&params)
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
        let params = ValidationParams::new(genesis)
            .map_err(|e| ProofError::Milestone(format!("the genesis is unusable: {e}")))?;
        Ok(ProofVerifier {
            params,
            known: VerifiedMilestones::new(REMEMBERED_MILESTONES),
        })
    }

    /// Verifies `proof` (the same verdict as [`verify_proof`]).
    pub fn verify(&mut self, proof: &TransactionProof) -> Result<Proven, ProofError> {
        proof.verify_with(&self.params, &mut self.known)
    }
}
