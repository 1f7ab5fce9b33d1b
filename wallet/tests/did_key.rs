//! Published did:key Ed25519 test vectors: each DID must parse to the key given as
//! `publicKeyBase58` in its published DID document, print back identically, and yield the
//! same DID document structure.

use dag_core::Address;
use wallet::did_document;

/// `(did, publicKeyBase58)` pairs from published did:key Ed25519 resolutions (the DID
/// documents used as test fixtures by Hyperledger Aries Cloud Agent Python and Credo).
const VECTORS: &[(&str, &str)] = &[
    (
        "did:key:z6Mkgg342Ycpuk263R9d8Aq6MUaxPn1DDeHyGo38EefXmgDL",
        "3Dn1SJNPaCXcvvJvSbsFWP2xaCjMom3can8CQNhWrTRx",
    ),
    (
        "did:key:z6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7th",
        "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K",
    ),
    (
        "did:key:z6MkvePyWAApUVeDboZhNbckaWHnqtD6pCETd6xoqGbcpEBV",
        "HC8vuuvP8x9kVJizh2eujQjo2JwFQJz6w63szzdbu1Q7",
    ),
];

#[test]
fn published_did_key_vectors() {
    for (did, b58) in VECTORS {
        let key: [u8; 32] = bs58::decode(b58).into_vec().unwrap().try_into().unwrap();
        let parsed: Address = did.parse().unwrap();
        assert_eq!(parsed, Address(key), "{did}");
        assert_eq!(Address(key).to_did_key(), *did);
        // Same key, bech32 form, round trip through either string.
        let bech = parsed.to_bech32();
        assert!(bech.starts_with("tng1"));
        assert_eq!(bech.parse::<Address>().unwrap(), parsed);

        let doc = did_document(&parsed);
        let fragment = did.strip_prefix("did:key:").unwrap();
        assert_eq!(doc["id"], *did);
        assert_eq!(
            doc["verificationMethod"][0]["id"],
            format!("{did}#{fragment}")
        );
        assert_eq!(doc["verificationMethod"][0]["publicKeyMultibase"], fragment);
    }
}

#[test]
fn malformed_dids_are_rejected() {
    let good = VECTORS[0].0;
    // Wrong multibase prefix, truncated, a non-base58 character, another method.
    for bad in [
        good.replacen("did:key:z", "did:key:f", 1),
        good[..good.len() - 3].to_string(),
        good.replacen('g', "0", 1),
        good.replacen("did:key", "did:web", 1),
    ] {
        assert!(bad.parse::<Address>().is_err(), "{bad}");
    }
}
