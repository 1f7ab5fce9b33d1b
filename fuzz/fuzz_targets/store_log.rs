//! Arbitrary bytes into the decoders of the store's on-disk format (transaction-log frame
//! bodies including tombstones and account frames, confirmation chunks, entry headers,
//! pruned-entry keys and bitmaps, account checkpoint headers): they must never panic, and
//! a frame they accept must re-encode to the same bytes.
//!
//! `cargo +nightly fuzz run store_log`
#![no_main]

use libfuzzer_sys::fuzz_target;
use node_proto::layout::{self, Frame};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = layout::decode_body(data) {
        match frame {
            Frame::Transactions(entries) => {
                let mut again = layout::transactions_body_start(entries.len() as u32);
                for (h, at, bytes) in &entries {
                    assert_eq!(*at, again.len());
                    layout::push_tx_entry(&mut again, h, bytes);
                }
                assert_eq!(again, data);
            }
            Frame::Solid(ids) => assert_eq!(layout::solid_body(&ids), data),
            Frame::Prune(t) => assert_eq!(
                layout::tombstone_body(t.milestone, &t.txs, &t.entry_points),
                data
            ),
            Frame::Accounts(a) => {
                assert_eq!(layout::accounts_body(a.milestone, &a.accounts), data)
            }
        }
    }
    if let Ok(list) = layout::decode_confirmations(data) {
        let mut again = Vec::new();
        for c in &list {
            layout::push_confirmation(&mut again, c);
        }
        assert_eq!(again, data);
    }
    let _ = layout::decode_tx_entry_header(data);
    let _ = layout::decode_confirmation_key(data);
    let _ = layout::decode_pruned_key(data);
    let _ = layout::check_pruned_bitmap(data);
    let _ = layout::decode_account(data);
    let _ = layout::decode_account_record(data);
    if let Ok(h) = layout::decode_accounts_header(data, data.len() as u64) {
        assert_eq!(
            layout::encode_accounts_header(&h)[..],
            data[..layout::ACCOUNTS_HEADER_LEN]
        );
    }
});
