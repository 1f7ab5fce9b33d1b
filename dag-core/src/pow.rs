//! Proof of work: a transaction's id must have at least `difficulty` leading zero bits.
//!
//! Because the id is `BLAKE2b-256(essence_hash || nonce)` (see [`crate::codec`]), a search
//! hashes the essence once and then 40 bytes per attempt, and a check is free once the id is
//! known. Difficulty is set per network in the genesis (0 in tests, 12 by default: a few
//! milliseconds on a device).

use crate::codec::{encode, essence_hash, id_from_essence};
use crate::ids::TxId;
use crate::types::Transaction;

/// Default difficulty for new networks, in leading zero bits.
pub const DEFAULT_DIFFICULTY: u8 = 12;

/// Leading zero bits of an id.
pub fn leading_zero_bits(id: &TxId) -> u32 {
    let mut n = 0;
    for b in id.0 {
        if b == 0 {
            n += 8;
        } else {
            return n + b.leading_zeros();
        }
    }
    n
}

/// Whether `id` meets `difficulty`.
pub fn meets(id: &TxId, difficulty: u8) -> bool {
    leading_zero_bits(id) >= u32::from(difficulty)
}

/// Finds a nonce for `tx` meeting `difficulty`, starting the search at `tx.nonce`; sets it and
/// returns the resulting id. The expected number of attempts is `2^difficulty`.
pub fn solve(tx: &mut Transaction, difficulty: u8) -> TxId {
    let essence = essence_hash(&encode(tx));
    let mut nonce = tx.nonce;
    loop {
        let id = id_from_essence(&essence, nonce);
        if meets(&id, difficulty) {
            tx.nonce = nonce;
            return id;
        }
        nonce = nonce.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Payload, TX_VERSION};

    #[test]
    fn leading_zeros_counts_bits() {
        let mut id = TxId([0xff; 32]);
        assert_eq!(leading_zero_bits(&id), 0);
        id.0[0] = 0;
        id.0[1] = 0x1f;
        assert_eq!(leading_zero_bits(&id), 11);
        assert_eq!(leading_zero_bits(&TxId([0; 32])), 256);
    }

    #[test]
    fn solve_meets_difficulty_and_id_matches() {
        let mut tx = Transaction {
            version: TX_VERSION,
            network_id: 1,
            parents: [TxId::GENESIS, TxId::GENESIS],
            timestamp: 5,
            payload: Payload::Empty,
            nonce: 0,
        };
        let id = solve(&mut tx, 10);
        assert!(meets(&id, 10));
        assert_eq!(tx.id(), id);
    }
}
