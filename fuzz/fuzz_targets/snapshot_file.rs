//! Arbitrary bytes as a snapshot file (a peer serves them, a user passes them to `init
//! --snapshot` or `inspect`), and as the chunks of a download: nothing panics; a file that
//! reads has the end checksum `end_digest` finds without reading it, re-encodes to a file
//! that reads back equal, and is refused by `verify` unless its milestone is signed (it
//! never is here: the committee key is not in the input); a delta applies only to the base
//! it names. The download state machine only ever accepts the next bytes of the offered
//! file and never asks for more than the wire allows.
//!
//! `cargo +nightly fuzz run snapshot_file`
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use node_proto::fetch::{Chunk, Download};
use node_proto::harness::DevNetwork;
use node_proto::snapshot::{end_digest, read_with_digest, write};
use node_proto::wire::{Message, SnapshotFile, SNAPSHOT_CHUNK_LEN};

fn net() -> &'static DevNetwork {
    static NET: OnceLock<DevNetwork> = OnceLock::new();
    NET.get_or_init(|| DevNetwork::new("fuzz", 1))
}

fuzz_target!(|data: &[u8]| {
    if let Ok((snap, digest)) = read_with_digest(data) {
        let found = end_digest(std::io::Cursor::new(data), data.len() as u64)
            .expect("a file that reads has an end frame");
        assert_eq!(found, digest);
        let mut again = Vec::new();
        write(&mut again, &snap).expect("a snapshot that read writes");
        let (back, _) = read_with_digest(&again[..]).expect("what we write reads");
        assert_eq!(back, snap);
        if snap.is_delta() {
            assert!(
                snap.clone().apply_delta(digest, snap.clone()).is_err(),
                "not its own base"
            );
        }
        assert!(
            snap.verify(&net().genesis, dag_core::ledger::state_root_of)
                .is_err(),
            "no input carries a committee signature"
        );
    } else {
        let _ = end_digest(std::io::Cursor::new(data), data.len() as u64);
    }

    // The same bytes as a download: the first 8 give the file's length, the rest arrive in
    // pieces whose lengths and offsets come from the input.
    let Some((head, rest)) = data.split_first_chunk::<8>() else {
        return;
    };
    let len = u64::from_le_bytes(*head) % (64 * SNAPSHOT_CHUNK_LEN as u64 + 1);
    let file = SnapshotFile {
        milestone: 1,
        len,
        digest: dag_core::Digest([7; 32]),
        base: None,
    };
    let Ok(mut d) = Download::new(
        file,
        u64::from(rest.first().copied().unwrap_or(0)) * 1000,
        0,
    ) else {
        assert!(len == 0);
        return;
    };
    let mut now = 0u64;
    let mut i = 0usize;
    while i + 4 <= rest.len() {
        let take =
            usize::from(u16::from_le_bytes([rest[i], rest[i + 1]])) % (SNAPSHOT_CHUNK_LEN + 2);
        let at = u64::from(rest[i + 2]) * SNAPSHOT_CHUNK_LEN as u64 / 4;
        now += u64::from(rest[i + 3]) * 50;
        i += 4;
        while let Some(m) = d.poll_request(now) {
            m.check_limits().expect("requests respect the wire limits");
            let Message::SnapshotRequest { offset, .. } = m else {
                panic!("not a request")
            };
            assert!(offset < len);
        }
        let before = d.received();
        let bytes = vec![0u8; take];
        match d.handle_chunk(&file.digest, at, &bytes, now) {
            Ok(Chunk::Accepted) => {
                assert_eq!(at, before);
                assert_eq!(d.received(), before + take as u64);
            }
            Ok(Chunk::Ignored) | Err(_) => assert_eq!(d.received(), before),
        }
        assert!(d.received() <= len);
    }
});
