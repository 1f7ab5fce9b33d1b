//! Property tests of the canonical codec: every transaction round-trips and keeps its id;
//! arbitrary and mutated bytes never panic the decoder, and whatever it accepts is exactly
//! the canonical encoding of what it returns (so one transaction has one encoding, one id).

use dag_core::codec::{
    decode, decode_via_serde, decode_with_id, encode, id_of_encoding, MAX_TX_SIZE,
};
use dag_core::{
    Address, Body, ChannelId, Digest, Milestone, Payload, Signature, SignedPayload, Transaction,
    TxId, MAX_MEMO_LEN, MAX_MILESTONE_SIGNATURES, MAX_TAG_LEN,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn bytes32() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn signature() -> impl Strategy<Value = Signature> {
    (bytes32(), bytes32()).prop_map(|(a, b)| {
        let mut s = [0u8; 64];
        s[..32].copy_from_slice(&a);
        s[32..].copy_from_slice(&b);
        Signature(s)
    })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        (bytes32(), any::<u64>(), vec(any::<u8>(), 0..=MAX_MEMO_LEN)).prop_map(
            |(to, amount, memo)| Body::Pay {
                to: Address(to),
                amount,
                memo
            }
        ),
        (bytes32(), any::<u64>(), any::<u32>()).prop_map(|(payee, deposit, expires_at)| {
            Body::Open {
                payee: Address(payee),
                deposit,
                expires_at,
            }
        }),
        (bytes32(), any::<u64>(), signature()).prop_map(|(c, amount, voucher)| Body::Claim {
            channel: ChannelId(c),
            amount,
            voucher
        }),
        bytes32().prop_map(|c| Body::Refund {
            channel: ChannelId(c)
        }),
        (vec(any::<u8>(), 0..=MAX_TAG_LEN), bytes32()).prop_map(|(tag, d)| Body::Anchor {
            tag,
            digest: Digest(d)
        }),
    ]
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        Just(Payload::Empty),
        (bytes32(), any::<u64>(), body(), signature()).prop_map(|(issuer, seq, body, sig)| {
            Payload::Signed(SignedPayload {
                issuer: Address(issuer),
                seq,
                body,
                signature: sig,
            })
        }),
        (
            any::<u32>(),
            any::<u64>(),
            (bytes32(), bytes32(), bytes32(), bytes32()),
            bytes32(),
            vec((any::<u8>(), signature()), 0..=MAX_MILESTONE_SIGNATURES)
        )
            .prop_map(|(index, timestamp, (p, c, a, s), d, signatures)| {
                Payload::Milestone(Milestone {
                    index,
                    timestamp,
                    previous: TxId(p),
                    confirmed_root: Digest(c),
                    applied_root: Digest(a),
                    state_root: Digest(s),
                    ledger_digest: Digest(d),
                    signatures,
                    committee_update: None,
                })
            }),
    ]
}

fn transaction() -> impl Strategy<Value = Transaction> {
    (
        any::<u8>(),
        any::<u64>(),
        bytes32(),
        bytes32(),
        any::<u64>(),
        payload(),
        any::<u64>(),
    )
        .prop_map(
            |(version, network_id, p0, p1, timestamp, payload, nonce)| Transaction {
                version,
                network_id,
                parents: [TxId(p0), TxId(p1)],
                timestamp,
                payload,
                nonce,
            },
        )
}

/// Whatever the decoder accepts must be the canonical encoding of the value it returns, and
/// the fast decoder must agree with the reference (rmp-serde + re-encoding) on every input.
fn assert_canonical_if_accepted(bytes: &[u8]) -> Result<(), TestCaseError> {
    let decoded = decode(bytes);
    prop_assert_eq!(
        &decoded,
        &decode_via_serde(bytes),
        "fast and reference decoders differ"
    );
    if let Ok(tx) = decoded {
        prop_assert_eq!(encode(&tx), bytes, "accepted a non-canonical encoding");
        prop_assert!(bytes.len() <= MAX_TX_SIZE);
    }
    Ok(())
}

/// A change to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `pos % len`.
    Flip { pos: usize, bit: u8 },
    /// Keep only the first `len % len_of_encoding` bytes.
    Truncate(usize),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Insert a byte at `pos % (len + 1)`.
    Insert { pos: usize, byte: u8 },
    /// Remove the byte at `pos % len`.
    Remove(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(pos, bit)| Mutation::Flip { pos, bit }),
        any::<usize>().prop_map(Mutation::Truncate),
        vec(any::<u8>(), 1..16).prop_map(Mutation::Extend),
        (any::<usize>(), any::<u8>()).prop_map(|(pos, byte)| Mutation::Insert { pos, byte }),
        any::<usize>().prop_map(Mutation::Remove),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let len = bytes.len();
    match m {
        Mutation::Flip { pos, bit } => bytes[pos % len] ^= 1 << bit,
        Mutation::Truncate(n) => bytes.truncate(n % len),
        Mutation::Extend(extra) => bytes.extend_from_slice(extra),
        Mutation::Insert { pos, byte } => bytes.insert(pos % (len + 1), *byte),
        Mutation::Remove(pos) => {
            bytes.remove(pos % len);
        }
    }
}

proptest! {
    #[test]
    fn round_trip_and_stable_id(tx in transaction()) {
        let bytes = encode(&tx);
        prop_assert!(bytes.len() <= MAX_TX_SIZE, "{} bytes", bytes.len());
        let (back, id) = decode_with_id(&bytes).unwrap();
        prop_assert_eq!(decode_via_serde(&bytes), Ok(tx.clone()));
        prop_assert_eq!(&back, &tx);
        prop_assert_eq!(id, tx.id());
        prop_assert_eq!(id, id_of_encoding(&encode(&back)));
        prop_assert_eq!(encode(&back), bytes);
    }

    #[test]
    fn mutated_encodings_never_panic_nor_pass_non_canonical(
        tx in transaction(),
        mutations in vec(mutation(), 1..4),
    ) {
        let original = encode(&tx);
        let mut bytes = original.clone();
        for m in &mutations {
            if bytes.is_empty() {
                break;
            }
            apply(&mut bytes, m);
        }
        assert_canonical_if_accepted(&bytes)?;
        if bytes != original {
            // A different byte string is never the same transaction (one encoding each).
            prop_assert_ne!(decode(&bytes).ok(), Some(tx));
        }
    }

    #[test]
    fn struct_as_map_is_rejected(tx in transaction()) {
        let named = rmp_serde::to_vec_named(&tx).unwrap();
        prop_assert!(decode(&named).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        assert_canonical_if_accepted(&bytes)?;
    }

    /// Arbitrary bytes behind a plausible prefix (array of 6, version 1) get further into
    /// the decoder than uniformly random ones.
    #[test]
    fn arbitrary_bytes_after_a_header_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let mut b = vec![0x96, 0x01];
        b.extend_from_slice(&bytes);
        assert_canonical_if_accepted(&b)?;
    }
}

#[test]
fn oversize_is_rejected_before_parsing() {
    let tx = Transaction {
        version: 1,
        network_id: 1,
        parents: [TxId::GENESIS; 2],
        timestamp: 0,
        payload: Payload::Empty,
        nonce: 0,
    };
    let mut bytes = encode(&tx);
    bytes.resize(MAX_TX_SIZE + 1, 0);
    assert!(matches!(
        decode(&bytes),
        Err(dag_core::DecodeError::TooLarge { size, max }) if size == MAX_TX_SIZE + 1 && max == MAX_TX_SIZE
    ));
}
