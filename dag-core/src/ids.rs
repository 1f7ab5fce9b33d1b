//! Fixed-size identifiers and byte strings: [`TxId`], [`ChannelId`], [`Address`],
//! [`Signature`].
//!
//! In binary formats (our canonical MessagePack) each is a `bin` of its exact length; in
//! human-readable formats (JSON, TOML) ids and signatures are lowercase hex and addresses are
//! bech32 (`tng1...`). Deserialisation accepts only those forms, and only the exact length.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ParseError;

/// Serialises `bytes` as a `bin` (binary formats) or as hex (human-readable formats).
fn serialize_fixed<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.serialize_str(&hex::encode(bytes))
    } else {
        s.serialize_bytes(bytes)
    }
}

/// Visitor for an exact-length byte array; accepts `bin` only (never a string or a sequence)
/// in binary formats, so that there is one canonical encoding.
struct FixedVisitor<const N: usize> {
    human: bool,
    what: &'static str,
}

impl<'de, const N: usize> Visitor<'de> for FixedVisitor<N> {
    type Value = [u8; N];

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.human {
            write!(f, "{} as {} hex characters", self.what, 2 * N)
        } else {
            write!(f, "{} as a {}-byte bin", self.what, N)
        }
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
        if self.human {
            return Err(E::invalid_type(de::Unexpected::Bytes(v), &self));
        }
        v.try_into().map_err(|_| E::invalid_length(v.len(), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if !self.human {
            return Err(E::invalid_type(de::Unexpected::Str(v), &self));
        }
        let mut out = [0u8; N];
        hex::decode_to_slice(v, &mut out)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))?;
        Ok(out)
    }
}

fn deserialize_fixed<'de, D: Deserializer<'de>, const N: usize>(
    d: D,
    what: &'static str,
) -> Result<[u8; N], D::Error> {
    let human = d.is_human_readable();
    if human {
        d.deserialize_str(FixedVisitor::<N> { human, what })
    } else {
        d.deserialize_bytes(FixedVisitor::<N> { human, what })
    }
}

fn parse_hex<const N: usize>(s: &str, what: &'static str) -> Result<[u8; N], ParseError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| ParseError::Hex { what, len: N })?;
    Ok(out)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $what:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lowercase hex of the bytes.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &hex::encode(self.0)[..16])
            }
        }

        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, ParseError> {
                parse_hex::<$len>(s, $what).map(Self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serialize_fixed(&self.0, s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                deserialize_fixed::<D, $len>(d, $what).map(Self)
            }
        }
    };
}

hex_id!(
    /// Transaction id: BLAKE2b-256 of the essence hash and the nonce (see [`crate::hash`]),
    /// which commits to every byte of the canonical encoding.
    TxId,
    32,
    "transaction id"
);

hex_id!(
    /// Payment channel id: BLAKE2b-256 of the payer and the sequence number of its `Open`.
    ChannelId,
    32,
    "channel id"
);

hex_id!(
    /// Payload id: BLAKE2b-256 of the canonical encoding of a [`crate::SignedPayload`]. Unlike
    /// a [`TxId`] it does not change when the payload is reattached in a new transaction.
    PayloadId,
    32,
    "payload id"
);

hex_id!(
    /// An Ed25519 signature (64 bytes, R || s).
    Signature,
    64,
    "signature"
);

hex_id!(
    /// A 32-byte digest (ledger digest, anchored data digest).
    Digest,
    32,
    "digest"
);

impl TxId {
    /// The genesis root: the id every first transaction approves. It is always known and
    /// solid, and it is the only id a transaction may use for both parents.
    pub const GENESIS: TxId = TxId([0u8; 32]);

    /// The first 8 bytes as a little-endian integer; ids are uniformly distributed hashes,
    /// so this is a good hash-table key.
    pub fn prefix_u64(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }
}

/// Human-readable part of bech32 addresses.
pub const ADDRESS_HRP: &str = "tng";

/// An account address: the issuer's 32-byte Ed25519 public key.
///
/// Printed as bech32 (`tng1...`); the same key is the device's DID as `did:key:z6Mk...`
/// (multicodec `0xed01`, base58btc). [`Address::from_str`] accepts either form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address(pub [u8; 32]);

/// Multicodec prefix of an Ed25519 public key (`0xed` as an unsigned varint, then `0x01`).
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];

impl Address {
    /// The raw public key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// bech32 form, `tng1...`.
    pub fn to_bech32(&self) -> String {
        let hrp = bech32::Hrp::parse(ADDRESS_HRP).expect("valid hrp");
        bech32::encode::<bech32::Bech32>(hrp, &self.0).expect("32 bytes always encode")
    }

    /// Parses the bech32 form. Only the string [`Address::to_bech32`] prints (up to letter
    /// case) is accepted: a bech32m checksum or non-zero padding bits would give the same
    /// address a second spelling.
    pub fn from_bech32(s: &str) -> Result<Self, ParseError> {
        let checked = bech32::primitives::decode::CheckedHrpstring::new::<bech32::Bech32>(s)
            .map_err(|e| ParseError::Bech32(e.to_string()))?;
        checked
            .validate_segwit_padding()
            .map_err(|e| ParseError::Bech32(e.to_string()))?;
        let (hrp, data) = (checked.hrp(), checked.byte_iter().collect::<Vec<u8>>());
        if hrp.as_str() != ADDRESS_HRP {
            return Err(ParseError::Bech32(format!(
                "wrong prefix {:?}, expected {ADDRESS_HRP:?}",
                hrp.as_str()
            )));
        }
        let bytes: [u8; 32] = data
            .as_slice()
            .try_into()
            .map_err(|_| ParseError::Bech32(format!("{} bytes, expected 32", data.len())))?;
        Ok(Address(bytes))
    }

    /// `did:key:z6Mk...` form of the same key.
    pub fn to_did_key(&self) -> String {
        let mut buf = Vec::with_capacity(34);
        buf.extend_from_slice(&ED25519_MULTICODEC);
        buf.extend_from_slice(&self.0);
        format!("did:key:z{}", bs58::encode(buf).into_string())
    }

    /// Parses a `did:key:z...` Ed25519 DID.
    pub fn from_did_key(s: &str) -> Result<Self, ParseError> {
        let rest = s
            .strip_prefix("did:key:z")
            .ok_or_else(|| ParseError::DidKey("must start with did:key:z".into()))?;
        let raw = bs58::decode(rest)
            .into_vec()
            .map_err(|e| ParseError::DidKey(format!("base58: {e}")))?;
        if raw.len() != 34 || raw[..2] != ED25519_MULTICODEC {
            return Err(ParseError::DidKey(
                "not an Ed25519 key (multicodec 0xed01, 32 bytes)".into(),
            ));
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(&raw[2..]);
        Ok(Address(out))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_bech32())
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", self.to_bech32())
    }
}

impl FromStr for Address {
    type Err = ParseError;
    /// Accepts `tng1...` (bech32) or `did:key:z...`.
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.starts_with("did:") {
            Self::from_did_key(s)
        } else {
            Self::from_bech32(s)
        }
    }
}

impl Serialize for Address {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&self.to_bech32())
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Address {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = String::deserialize(d)?;
            s.parse().map_err(de::Error::custom)
        } else {
            deserialize_fixed::<D, 32>(d, "address").map(Address)
        }
    }
}

/// Fixed-width big-endian `u64`, encoded as an 8-byte `bin`, so that a transaction's nonce
/// always occupies the last 10 bytes of its encoding (see [`crate::codec`]).
pub(crate) mod nonce_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_u64(*v)
        } else {
            s.serialize_bytes(&v.to_be_bytes())
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        if d.is_human_readable() {
            u64::deserialize(d)
        } else {
            deserialize_fixed::<D, 8>(d, "nonce").map(u64::from_be_bytes)
        }
    }
}

/// Variable-length byte strings (memo, anchor tag) as `bin`, never as an array of integers.
pub(crate) mod var_bytes {
    use super::*;

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
            Ok(v.to_vec())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            hex::decode(v).map_err(|_| E::invalid_value(de::Unexpected::Str(v), &"hex"))
        }
    }

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(BytesVisitor)
        } else {
            d.deserialize_bytes(BytesVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_bech32_and_did_round_trip() {
        let a = Address([7u8; 32]);
        let b = a.to_bech32();
        assert!(b.starts_with("tng1"));
        assert_eq!(b.parse::<Address>().unwrap(), a);
        let d = a.to_did_key();
        assert!(d.starts_with("did:key:z6Mk"), "{d}");
        assert_eq!(d.parse::<Address>().unwrap(), a);
    }

    #[test]
    fn address_rejects_wrong_prefix_and_length() {
        let hrp = bech32::Hrp::parse("iota").unwrap();
        let other = bech32::encode::<bech32::Bech32>(hrp, &[1u8; 32]).unwrap();
        assert!(matches!(
            other.parse::<Address>(),
            Err(ParseError::Bech32(_))
        ));
        let hrp = bech32::Hrp::parse(ADDRESS_HRP).unwrap();
        let short = bech32::encode::<bech32::Bech32>(hrp, &[1u8; 31]).unwrap();
        assert!(short.parse::<Address>().is_err());
        assert!("did:key:zabc".parse::<Address>().is_err());
        // One address, one string: a bech32m checksum or non-zero padding bits are refused
        // (found by the `address` fuzz target).
        let a = Address([0x5a; 32]);
        let hrp = bech32::Hrp::parse(ADDRESS_HRP).unwrap();
        let m = bech32::encode::<bech32::Bech32m>(hrp, &a.0).unwrap();
        assert!(Address::from_bech32(&m).is_err(), "bech32m accepted");
        use bech32::{ByteIterExt, Fe32IterExt};
        let mut fes: Vec<bech32::Fe32> = a.0.iter().copied().bytes_to_fes().collect();
        let last = fes.last_mut().unwrap();
        *last = bech32::Fe32::try_from(last.to_u8() | 1).unwrap();
        let padded: String = fes
            .into_iter()
            .with_checksum::<bech32::Bech32>(&hrp)
            .chars()
            .collect();
        assert!(
            Address::from_bech32(&padded).is_err(),
            "non-zero padding accepted"
        );
        assert_eq!(Address::from_bech32(&a.to_bech32()), Ok(a));
        assert!("did:web:example".parse::<Address>().is_err());
    }

    #[test]
    fn txid_hex_round_trip_and_json() {
        let id = TxId([0xab; 32]);
        assert_eq!(id.to_hex().parse::<TxId>().unwrap(), id);
        assert!("abcd".parse::<TxId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.to_hex()));
        assert_eq!(serde_json::from_str::<TxId>(&json).unwrap(), id);
    }
}
