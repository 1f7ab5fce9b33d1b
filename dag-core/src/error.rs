//! Error types. Each names every reason an operation can fail; none of them is a panic.

use thiserror::Error;

/// A string could not be parsed as an id, address or DID.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParseError {
    /// Not `2 * len` hex characters.
    #[error("{what}: expected {} hex characters", 2 * len)]
    Hex {
        /// What was being parsed.
        what: &'static str,
        /// Expected length in bytes.
        len: usize,
    },
    /// Not a valid `tng1...` bech32 address.
    #[error("bech32 address: {0}")]
    Bech32(String),
    /// Not a valid Ed25519 `did:key`.
    #[error("did:key: {0}")]
    DidKey(String),
}

/// Bytes are not a canonical transaction.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Larger than the size cap.
    #[error("transaction is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Size received.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// Not a well-formed transaction.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// Bytes left after the transaction.
    #[error("{0} trailing bytes after the transaction")]
    TrailingBytes(usize),
    /// Well-formed but not in canonical form (so it would have a second id).
    #[error("transaction is not in canonical encoding")]
    NonCanonical,
}

/// A signature or public key is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum SignatureError {
    /// The public key is not a valid curve point encoding.
    #[error("public key is not a valid Ed25519 point")]
    InvalidKey,
    /// The public key has small order; no honest key does.
    #[error("public key is weak (small order)")]
    WeakKey,
    /// The signature does not verify.
    #[error("signature does not verify")]
    Invalid,
}
