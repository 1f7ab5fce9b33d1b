//! The text forms of identifiers that come from outside (API paths and bodies, CLI
//! arguments, config files): addresses as bech32 (`tng1...`) and `did:key:z...`
//! (`dag_core::Address`), hex ids (`TxId`), and the wallet's derivation paths and BIP-39
//! phrases.
//!
//! Checked, besides "no panic":
//! - an accepted address string is the canonical form of the address it yields
//!   (`to_bech32`, or `to_did_key`; for bech32 up to letter case), `FromStr` and the JSON
//!   deserialiser agree with it, and the address survives every round trip;
//! - a bech32 string of a valid address but with a bech32m checksum or non-zero padding
//!   bits (encodings the fuzzer cannot find by itself, built here from the input bytes) is
//!   refused: one address, one string;
//! - hex ids: accepted means the lowercase form of the input;
//! - derivation paths and mnemonics re-parse from their display form to the same value.
//!
//! `cargo +nightly fuzz run address`
#![no_main]

use bech32::{Bech32, Bech32m, ByteIterExt, Fe32, Fe32IterExt, Hrp};
use dag_core::{Address, TxId, ADDRESS_HRP};
use libfuzzer_sys::fuzz_target;
use wallet::{DerivationPath, Mnemonic};

fn check_str(s: &str) {
    if let Ok(a) = Address::from_bech32(s) {
        assert_eq!(
            a.to_bech32(),
            s.to_ascii_lowercase(),
            "non-canonical bech32 accepted"
        );
        assert_eq!(Address::from_bech32(&a.to_bech32()), Ok(a));
        assert_eq!(Address::from_did_key(&a.to_did_key()), Ok(a));
    }
    if let Ok(a) = Address::from_did_key(s) {
        assert_eq!(a.to_did_key(), s, "non-canonical did:key accepted");
    }
    let parsed = s.parse::<Address>();
    let expected = if s.starts_with("did:") {
        Address::from_did_key(s)
    } else {
        Address::from_bech32(s)
    };
    assert_eq!(parsed, expected);
    let json = serde_json::to_string(s).expect("a string serialises");
    assert_eq!(serde_json::from_str::<Address>(&json).ok(), parsed.ok());

    if let Ok(id) = s.parse::<TxId>() {
        assert_eq!(id.to_hex(), s.to_ascii_lowercase());
    }
    if let Ok(p) = s.parse::<DerivationPath>() {
        assert_eq!(p.to_string().parse::<DerivationPath>().ok(), Some(p));
    }
    if let Ok(m) = Mnemonic::parse(s) {
        let again = Mnemonic::parse(&m.phrase()).expect("a phrase re-parses");
        assert_eq!(*again.phrase(), *m.phrase());
    }
}

/// bech32-style strings of the address `bytes`, with the checksum and padding bits the
/// input asks for.
fn crafted(bytes: &[u8; 32], variant: u8) -> (String, bool) {
    let hrp = Hrp::parse(ADDRESS_HRP).expect("valid hrp");
    let mut fes: Vec<Fe32> = bytes.iter().copied().bytes_to_fes().collect();
    // 256 bits in 52 groups of 5: the last group carries 4 padding bits.
    let padding = variant >> 4;
    if let Some(last) = fes.last_mut() {
        *last = Fe32::try_from(last.to_u8() | (padding & 0x0f)).expect("5 bits");
    }
    let canonical_padding = padding & 0x0f == 0;
    if variant & 1 == 0 {
        let s: String = fes
            .into_iter()
            .with_checksum::<Bech32>(&hrp)
            .chars()
            .collect();
        (s, canonical_padding)
    } else {
        let s: String = fes
            .into_iter()
            .with_checksum::<Bech32m>(&hrp)
            .chars()
            .collect();
        (s, false)
    }
}

fuzz_target!(|data: &[u8]| {
    check_str(&String::from_utf8_lossy(data));
    if let Some((bytes, rest)) = data.split_first_chunk::<32>() {
        let a = Address(*bytes);
        assert_eq!(a.to_bech32().parse::<Address>(), Ok(a));
        assert_eq!(a.to_did_key().parse::<Address>(), Ok(a));
        // All-uppercase bech32 (allowed by BIP-173): refused, or the same address.
        if let Ok(upper) = a.to_bech32().to_ascii_uppercase().parse::<Address>() {
            assert_eq!(upper, a);
        }
        let variant = rest.first().copied().unwrap_or(0);
        let (s, canonical) = crafted(bytes, variant);
        if canonical {
            assert_eq!(s, a.to_bech32());
            assert_eq!(Address::from_bech32(&s), Ok(a));
        } else {
            assert!(
                Address::from_bech32(&s).is_err(),
                "accepted a second string for {a}: {s}"
            );
        }
    }
});
