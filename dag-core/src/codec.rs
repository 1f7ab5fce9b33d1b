//! The canonical binary encoding of a [`Transaction`] and its id.
//!
//! A transaction is MessagePack with structs as arrays (rmp-serde's compact form), byte
//! strings as `bin`, and the nonce as a fixed 8-byte `bin` in last position. So the encoding
//! always ends with the 10 bytes `c4 08 <nonce, big-endian>`, and everything before them is
//! the *essence*. Then:
//!
//! ```text
//! essence_hash = BLAKE2b-256(encoding[..len - 10])
//! TxId         = BLAKE2b-256(essence_hash || nonce_be)
//! ```
//!
//! The id commits to every byte, and proof of work is simply "the id has at least `d` leading
//! zero bits" (see [`crate::pow`]): a PoW search hashes 40 bytes per attempt, and checking it
//! costs nothing once the id is known.
//!
//! Decoding accepts only the canonical form: at most [`MAX_TX_SIZE`] bytes, no trailing bytes,
//! and the bytes must be exactly what [`encode`] produces for the decoded value (checked by
//! re-encoding), so one transaction has one encoding and one id.

use std::cell::RefCell;

use crate::crypto::{blake2b256, blake2b256_parts};
use crate::error::DecodeError;
use crate::ids::TxId;
use crate::types::Transaction;

/// Hard cap on an encoded transaction, in bytes.
pub const MAX_TX_SIZE: usize = 4096;
/// Length of the nonce trailer (`c4 08` + 8 bytes) at the end of every encoding.
pub const NONCE_TRAILER_LEN: usize = 10;

/// Appends the canonical encoding of `tx` to `out`.
pub fn encode_into(tx: &Transaction, out: &mut Vec<u8>) {
    rmp_serde::encode::write(out, tx).expect("writing to a Vec cannot fail");
}

/// The canonical encoding of `tx`.
pub fn encode(tx: &Transaction) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    encode_into(tx, &mut out);
    out
}

/// The essence hash of an encoding: BLAKE2b-256 of everything but the nonce trailer.
///
/// `encoded` must be a canonical encoding (as produced by [`encode`]).
pub fn essence_hash(encoded: &[u8]) -> [u8; 32] {
    debug_assert!(encoded.len() > NONCE_TRAILER_LEN);
    blake2b256(&encoded[..encoded.len() - NONCE_TRAILER_LEN])
}

/// The id of a transaction with essence hash `essence` and nonce `nonce`.
pub fn id_from_essence(essence: &[u8; 32], nonce: u64) -> TxId {
    TxId(blake2b256_parts(&[essence, &nonce.to_be_bytes()]))
}

/// The id of a canonical encoding.
pub fn id_of_encoding(encoded: &[u8]) -> TxId {
    let n = encoded.len();
    let nonce = u64::from_be_bytes(encoded[n - 8..].try_into().expect("8 bytes"));
    id_from_essence(&essence_hash(encoded), nonce)
}

thread_local! {
    static REENCODE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(MAX_TX_SIZE));
}

/// Decodes a canonical encoding. Never panics; allocation is bounded by [`MAX_TX_SIZE`].
pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
    if bytes.len() > MAX_TX_SIZE {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            max: MAX_TX_SIZE,
        });
    }
    let tx: Transaction =
        rmp_serde::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    // rmp-serde stops after one value and is lenient about integer widths and map-vs-array
    // structs; re-encoding and comparing rejects trailing bytes and every non-canonical form.
    REENCODE.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        encode_into(&tx, &mut buf);
        if buf.as_slice() == bytes {
            Ok(())
        } else if bytes.len() > buf.len() && bytes.starts_with(&buf) {
            Err(DecodeError::TrailingBytes(bytes.len() - buf.len()))
        } else {
            Err(DecodeError::NonCanonical)
        }
    })?;
    Ok(tx)
}

/// Decodes a canonical encoding and computes its id.
pub fn decode_with_id(bytes: &[u8]) -> Result<(Transaction, TxId), DecodeError> {
    let tx = decode(bytes)?;
    Ok((tx, id_of_encoding(bytes)))
}

impl Transaction {
    /// The canonical encoding.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode(self)
    }

    /// Decodes a canonical encoding (see [`decode`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        decode(bytes)
    }

    /// The transaction id (encodes the transaction; when you have the bytes, use
    /// [`id_of_encoding`]).
    pub fn id(&self) -> TxId {
        id_of_encoding(&self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;
    use crate::ids::Address;
    use crate::types::{Body, Payload, SignedPayload, TX_VERSION};

    fn sample() -> Transaction {
        let kp = Keypair::from_seed(&[1u8; 32]);
        Transaction {
            version: TX_VERSION,
            network_id: 77,
            parents: [TxId([1; 32]), TxId([2; 32])],
            timestamp: 1_700_000_000_000,
            payload: Payload::Signed(SignedPayload::sign(
                &kp,
                77,
                3,
                Body::Pay {
                    to: Address([5; 32]),
                    amount: 1000,
                    memo: b"hello".to_vec(),
                },
            )),
            nonce: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn nonce_is_the_trailer() {
        let tx = sample();
        let b = encode(&tx);
        assert_eq!(&b[b.len() - 10..b.len() - 8], &[0xc4, 0x08]);
        assert_eq!(&b[b.len() - 8..], &tx.nonce.to_be_bytes());
        assert_eq!(decode(&b).unwrap(), tx);
    }

    #[test]
    fn id_commits_to_nonce_and_essence() {
        let tx = sample();
        let mut t2 = tx.clone();
        t2.nonce += 1;
        assert_ne!(tx.id(), t2.id());
        let mut t3 = tx.clone();
        t3.timestamp += 1;
        assert_ne!(tx.id(), t3.id());
    }

    #[test]
    fn rejects_trailing_oversize_and_noncanonical() {
        let tx = sample();
        let mut b = encode(&tx);
        b.push(0);
        assert_eq!(decode(&b), Err(DecodeError::TrailingBytes(1)));
        assert!(matches!(
            decode(&vec![0u8; MAX_TX_SIZE + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
        // The same value written with structs as maps decodes with rmp-serde but is not ours.
        let named = rmp_serde::to_vec_named(&tx).unwrap();
        assert!(decode(&named).is_err());
        assert!(decode(&[]).is_err());
    }
}
