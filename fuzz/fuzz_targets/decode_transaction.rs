//! Arbitrary bytes into the transaction decoder: it must never panic, must agree with the
//! reference decoder (rmp-serde + re-encoding), and whatever it accepts must be the canonical
//! encoding of the value it returns, with a stable id.
//!
//! `cargo +nightly fuzz run decode_transaction`
#![no_main]

use dag_core::codec::{decode, decode_via_serde, decode_with_id, encode, id_of_encoding};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let decoded = decode(data);
    assert_eq!(
        decoded,
        decode_via_serde(data),
        "fast and reference decoders differ"
    );
    if let Ok(tx) = decoded {
        let bytes = encode(&tx);
        assert_eq!(bytes, data, "accepted a non-canonical encoding");
        let (_, id) = decode_with_id(data).expect("decoded once");
        assert_eq!(id, tx.id());
        assert_eq!(id, id_of_encoding(&bytes));
    }
});
