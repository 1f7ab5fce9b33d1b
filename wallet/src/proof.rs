//! Checking proofs of confirmation without trusting the node that served them (no I/O): a
//! [`TransactionProof`] verifies against the committee and threshold of the network's
//! genesis only, and says which transaction and payload, which milestone, and whether the
//! payload was applied ([`Proven`]). A device keeps the proofs it relies on; they stay valid
//! after nodes prune.

pub use dag_core::proof::{ProofError, Proven, Step, TransactionProof};
use dag_core::{Genesis, ValidationParams};

/// Verifies `proof` against the network `genesis` defines.
pub fn verify_proof(proof: &TransactionProof, genesis: &Genesis) -> Result<Proven, ProofError> {
    let params = ValidationParams::new(genesis)
        .map_err(|e| ProofError::Milestone(format!("the genesis is unusable: {e}")))?;
    proof.verify(&params)
}
