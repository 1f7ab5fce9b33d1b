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
/// `encoded` should be a canonical encoding (as produced by [`encode`]); for anything else
/// the result is meaningless but this never panics (bytes from peers reach it).
pub fn essence_hash(encoded: &[u8]) -> [u8; 32] {
    blake2b256(&encoded[..encoded.len().saturating_sub(NONCE_TRAILER_LEN)])
}

/// The id of a transaction with essence hash `essence` and nonce `nonce`.
pub fn id_from_essence(essence: &[u8; 32], nonce: u64) -> TxId {
    TxId(blake2b256_parts(&[essence, &nonce.to_be_bytes()]))
}

/// The id of a canonical encoding. Never panics: input shorter than the nonce trailer (not
/// a transaction) gets a meaningless id.
pub fn id_of_encoding(encoded: &[u8]) -> TxId {
    let tail = &encoded[encoded.len().saturating_sub(8)..];
    let mut nonce = [0u8; 8];
    nonce[8 - tail.len()..].copy_from_slice(tail);
    id_from_essence(&essence_hash(encoded), u64::from_be_bytes(nonce))
}

thread_local! {
    static REENCODE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(MAX_TX_SIZE));
}

/// Decodes a canonical encoding. Never panics; allocation is bounded by [`MAX_TX_SIZE`].
///
/// Canonical bytes go through a hand-written parser of exactly the form [`encode`] writes
/// (about 5x faster than rmp-serde plus the re-encoding check); anything it does not accept
/// goes to [`decode_via_serde`], which names the error. Both give the same result on every
/// input (a property test checks it).
pub fn decode(bytes: &[u8]) -> Result<Transaction, DecodeError> {
    if bytes.len() <= MAX_TX_SIZE {
        if let Some(tx) = canonical::parse(bytes) {
            debug_assert_eq!(
                encode(&tx),
                bytes,
                "fast parser accepted non-canonical bytes"
            );
            return Ok(tx);
        }
    }
    decode_via_serde(bytes)
}

/// The reference decoder: rmp-serde, then a re-encoding that must reproduce the input.
/// Slower than [`decode`], which gives the same result; kept public for differential tests.
pub fn decode_via_serde(bytes: &[u8]) -> Result<Transaction, DecodeError> {
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

/// A parser of exactly the bytes rmp-serde writes for a [`Transaction`] in our configuration:
/// structs as arrays, integers in their shortest form, byte strings as `bin`, unit variants as
/// their name, newtype variants as a one-entry map `{name: value}`. It returns `None` on
/// anything else, including encodings rmp-serde would read but not write.
mod canonical {
    use crate::ids::{Address, ChannelId, Digest, Signature, TxId};
    use crate::types::{Body, Milestone, Payload, SignedPayload, Transaction};

    struct Cursor<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl<'a> Cursor<'a> {
        fn byte(&mut self) -> Option<u8> {
            let b = *self.bytes.get(self.pos)?;
            self.pos += 1;
            Some(b)
        }

        fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let end = self.pos.checked_add(n)?;
            let s = self.bytes.get(self.pos..end)?;
            self.pos = end;
            Some(s)
        }

        fn expect(&mut self, prefix: &[u8]) -> Option<()> {
            (self.take(prefix.len())? == prefix).then_some(())
        }

        fn be(&mut self, n: usize) -> Option<u64> {
            Some(
                self.take(n)?
                    .iter()
                    .fold(0u64, |a, &b| (a << 8) | u64::from(b)),
            )
        }

        /// An unsigned integer in its shortest MessagePack form, at most `max`.
        fn uint(&mut self, max: u64) -> Option<u64> {
            let v = match self.byte()? {
                b @ 0x00..=0x7f => return Some(u64::from(b)),
                0xcc => self.be(1).filter(|&v| v >= 0x80)?,
                0xcd => self.be(2).filter(|&v| v > 0xff)?,
                0xce => self.be(4).filter(|&v| v > 0xffff)?,
                0xcf => self.be(8).filter(|&v| v > 0xffff_ffff)?,
                _ => return None,
            };
            (v <= max).then_some(v)
        }

        /// A `bin` of exactly `N` bytes (`N < 256`).
        fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
            self.expect(&[0xc4, N as u8])?;
            self.take(N)?.try_into().ok()
        }

        /// A `bin` of any length, in its shortest form.
        fn bin(&mut self) -> Option<Vec<u8>> {
            let len = match self.byte()? {
                0xc4 => self.be(1)?,
                0xc5 => self.be(2).filter(|&n| n > 0xff)?,
                0xc6 => self.be(4).filter(|&n| n > 0xffff)?,
                _ => return None,
            };
            Some(self.take(usize::try_from(len).ok()?)?.to_vec())
        }

        /// An array header in its shortest form; returns the length.
        fn array(&mut self) -> Option<usize> {
            let n = match self.byte()? {
                b @ 0x90..=0x9f => return Some(usize::from(b & 0x0f)),
                0xdc => self.be(2).filter(|&n| n > 0x0f)?,
                0xdd => self.be(4).filter(|&n| n > 0xffff)?,
                _ => return None,
            };
            usize::try_from(n).ok()
        }

        /// A newtype variant's `{name: ...}` map header and fixstr name.
        fn variant(&mut self) -> Option<&'a [u8]> {
            self.expect(&[0x81])?;
            match self.byte()? {
                b @ 0xa0..=0xbf => self.take(usize::from(b & 0x1f)),
                _ => None,
            }
        }
    }

    pub(super) fn parse(bytes: &[u8]) -> Option<Transaction> {
        let mut c = Cursor { bytes, pos: 0 };
        c.expect(&[0x96])?;
        let version = c.uint(u64::from(u8::MAX))? as u8;
        let network_id = c.uint(u64::MAX)?;
        c.expect(&[0x92])?;
        let parents = [TxId(c.fixed()?), TxId(c.fixed()?)];
        let timestamp = c.uint(u64::MAX)?;
        let payload = if bytes.get(c.pos) == Some(&0xa5) {
            c.expect(b"\xa5Empty")?;
            Payload::Empty
        } else {
            match c.variant()? {
                b"Signed" => Payload::Signed(signed(&mut c)?),
                b"Milestone" => Payload::Milestone(milestone(&mut c)?),
                _ => return None,
            }
        };
        let nonce = u64::from_be_bytes(c.fixed()?);
        (c.pos == bytes.len()).then_some(Transaction {
            version,
            network_id,
            parents,
            timestamp,
            payload,
            nonce,
        })
    }

    fn signed(c: &mut Cursor<'_>) -> Option<SignedPayload> {
        c.expect(&[0x94])?;
        let issuer = Address(c.fixed()?);
        let seq = c.uint(u64::MAX)?;
        let body = match c.variant()? {
            b"Pay" => {
                c.expect(&[0x93])?;
                Body::Pay {
                    to: Address(c.fixed()?),
                    amount: c.uint(u64::MAX)?,
                    memo: c.bin()?,
                }
            }
            b"Open" => {
                c.expect(&[0x93])?;
                Body::Open {
                    payee: Address(c.fixed()?),
                    deposit: c.uint(u64::MAX)?,
                    expires_at: c.uint(u64::from(u32::MAX))? as u32,
                }
            }
            b"Claim" => {
                c.expect(&[0x93])?;
                Body::Claim {
                    channel: ChannelId(c.fixed()?),
                    amount: c.uint(u64::MAX)?,
                    voucher: Signature(c.fixed()?),
                }
            }
            b"Refund" => {
                c.expect(&[0x91])?;
                Body::Refund {
                    channel: ChannelId(c.fixed()?),
                }
            }
            b"Anchor" => {
                c.expect(&[0x92])?;
                Body::Anchor {
                    tag: c.bin()?,
                    digest: Digest(c.fixed()?),
                }
            }
            _ => return None,
        };
        let signature = Signature(c.fixed()?);
        Some(SignedPayload {
            issuer,
            seq,
            body,
            signature,
        })
    }

    fn milestone(c: &mut Cursor<'_>) -> Option<Milestone> {
        c.expect(&[0x98])?;
        let index = c.uint(u64::from(u32::MAX))? as u32;
        let timestamp = c.uint(u64::MAX)?;
        let previous = TxId(c.fixed()?);
        let confirmed_root = Digest(c.fixed()?);
        let applied_root = Digest(c.fixed()?);
        let state_root = Digest(c.fixed()?);
        let ledger_digest = Digest(c.fixed()?);
        let n = c.array()?;
        // Each entry takes at least 68 bytes, so a bogus length fails before allocating much.
        let mut signatures = Vec::with_capacity(n.min(c.bytes.len() / 68));
        for _ in 0..n {
            c.expect(&[0x92])?;
            let signer = c.uint(u64::from(u8::MAX))? as u8;
            signatures.push((signer, Signature(c.fixed()?)));
        }
        Some(Milestone {
            index,
            timestamp,
            previous,
            confirmed_root,
            applied_root,
            state_root,
            ledger_digest,
            signatures,
            // A milestone with an update is a 9-element array: the serde path decodes it.
            committee_update: None,
        })
    }
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

    /// The fast parser takes every variant (and the long forms: bin16, array16, every integer
    /// width), so `decode` does not silently fall back to the slow path.
    #[test]
    fn fast_parser_accepts_every_variant() {
        use crate::ids::{ChannelId, Digest, Signature};
        use crate::types::Milestone;
        let kp = Keypair::from_seed(&[1u8; 32]);
        let bodies = [
            Body::Pay {
                to: Address([5; 32]),
                amount: u64::MAX,
                memo: vec![7; 300],
            },
            Body::Open {
                payee: Address([5; 32]),
                deposit: 0x1_0000,
                expires_at: u32::MAX,
            },
            Body::Claim {
                channel: ChannelId([3; 32]),
                amount: 0x100,
                voucher: Signature([4; 64]),
            },
            Body::Refund {
                channel: ChannelId([3; 32]),
            },
            Body::Anchor {
                tag: vec![],
                digest: Digest([6; 32]),
            },
        ];
        let mut payloads: Vec<Payload> = bodies
            .into_iter()
            .enumerate()
            .map(|(i, b)| Payload::Signed(SignedPayload::sign(&kp, 77, 200 * i as u64, b)))
            .collect();
        payloads.push(Payload::Empty);
        for n in [0usize, 3, 20] {
            payloads.push(Payload::Milestone(Milestone {
                index: 0xffff + n as u32,
                timestamp: 1,
                previous: TxId([1; 32]),
                confirmed_root: Digest([2; 32]),
                applied_root: Digest([3; 32]),
                state_root: Digest([4; 32]),
                ledger_digest: Digest([8; 32]),
                signatures: (0..n).map(|i| (i as u8 * 12, Signature([9; 64]))).collect(),
                committee_update: None,
            }));
        }
        for (i, payload) in payloads.into_iter().enumerate() {
            let mut tx = sample();
            tx.payload = payload;
            tx.version = [0, 127, 128, 255][i % 4];
            tx.timestamp = [0, 0x7f, 0xffff_ffff, u64::MAX][i % 4];
            let bytes = encode(&tx);
            assert_eq!(canonical::parse(&bytes), Some(tx.clone()), "variant {i}");
            assert_eq!(decode_via_serde(&bytes), Ok(tx));
            // An integer in a wider form than needed: rmp-serde reads it, we must not.
            let mut wide = bytes.clone();
            wide.splice(1..2, [0xcc, wide[1]]);
            if wide[2] < 0x80 {
                assert_eq!(canonical::parse(&wide), None);
                assert_eq!(decode(&wide), Err(DecodeError::NonCanonical));
            }
        }
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
