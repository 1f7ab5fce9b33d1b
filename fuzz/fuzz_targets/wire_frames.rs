//! Arbitrary bytes into the peer wire decoder, split at an arbitrary point as a stream would
//! deliver them: it must never panic, never buffer beyond one frame, and every message it
//! accepts must survive an encode/decode round trip unchanged.
//!
//! `cargo +nightly fuzz run wire_frames`
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_proto::wire::{decode_body, FrameDecoder, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    let split = data
        .first()
        .map(|b| *b as usize % (data.len() + 1))
        .unwrap_or(0);
    let mut dec = FrameDecoder::new();
    dec.push(&data[..split]);
    dec.push(&data[split..]);
    loop {
        match dec.next_message() {
            Ok(Some(m)) => {
                let mut out = Vec::new();
                m.encode_into(&mut out);
                assert!(out.len() >= 4, "an accepted message re-encodes");
                let again = decode_body(&out[4..]).expect("re-encoded message decodes");
                assert_eq!(again, m);
            }
            Ok(None) => {
                assert!(dec.buffered() <= 4 + MAX_FRAME_LEN + data.len());
                break;
            }
            Err(_) => break,
        }
    }
});
