//! Unit tests of pruning that need the store's insides: simulated crashes at each step of
//! a prune, checked against a `MemStore` given the same writes.

use std::path::Path;

use dag_core::store::conformance::{view, View};
use dag_core::store::{
    ConfirmedTx, MemStore, MilestoneBatch, MilestoneRecord, PruneBatch, Store, TxEntry, TxMeta,
};
use dag_core::{
    ConflictReason, Digest, LedgerDiff, LedgerState, MilestoneIndex, PayloadId, PayloadOutcome,
    TxId,
};

use super::prune::CrashPoint;
use super::{SledStore, StoreOptions};
use node_proto::layout;

const TXS: u64 = 24;
const MILESTONES: MilestoneIndex = 6;

fn tx_id(i: u64) -> TxId {
    let mut id = [0x11u8; 32];
    id[..8].copy_from_slice(&i.to_le_bytes());
    TxId(id)
}

fn tx_bytes(i: u64) -> Vec<u8> {
    let mut b = vec![0xcd; 200];
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

/// Payload `k` is carried by transactions `3k + 1` and `3k + 2`; `3k` carries none.
fn payload_of(i: u64) -> Option<PayloadId> {
    (i % 3 != 0).then(|| PayloadId([(i / 3) as u8 + 1; 32]))
}

fn ids() -> Vec<TxId> {
    (0..TXS).map(tx_id).collect()
}

fn payloads() -> Vec<PayloadId> {
    (0..TXS).filter_map(payload_of).collect()
}

/// A ledger with no account, at milestone 0.
fn empty_ledger() -> LedgerState {
    LedgerState {
        rotations: Vec::new(),
        network_id: 1,
        supply: 0,
        confirmed_index: 0,
        digest: Digest([0; 32]),
        accounts: vec![],
        channels: vec![],
    }
}

/// Six milestones of four transactions each, stored in batches of two (with solid marks in
/// between): the first copy of each payload applies, the second conflicts.
fn history(s: &dyn Store) {
    s.init_ledger(&empty_ledger()).unwrap();
    for m in 1..=MILESTONES {
        let first = u64::from(m - 1) * 4;
        let txs: Vec<(TxId, Vec<u8>)> = (first..first + 4)
            .map(|i| (tx_id(i), tx_bytes(i)))
            .collect();
        for (j, pair) in txs.chunks(2).enumerate() {
            let entries: Vec<TxEntry<'_>> = pair
                .iter()
                .enumerate()
                .map(|(k, (id, bytes))| TxEntry {
                    id: *id,
                    bytes,
                    meta: TxMeta::new(first + (2 * j + k) as u64, false, {
                        payload_of(first + (2 * j + k) as u64)
                    }),
                })
                .collect();
            s.put_transactions(&entries).unwrap();
            s.mark_solid(&[pair[0].0]).unwrap();
        }
        let confirmed = (first..first + 4)
            .map(|i| ConfirmedTx {
                tx: tx_id(i),
                payload: payload_of(i).map(|p| {
                    let outcome = if i % 3 == 1 {
                        PayloadOutcome::Applied
                    } else {
                        PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed)
                    };
                    (p, outcome)
                }),
            })
            .collect();
        s.apply_milestone(&MilestoneBatch {
            record: MilestoneRecord {
                index: m,
                tx: tx_id(first + 3),
                timestamp: u64::from(m),
                ledger_digest: Digest([m as u8; 32]),
            },
            confirmed,
            diff: LedgerDiff::default(),
        })
        .unwrap();
    }
    s.flush().unwrap();
}

/// Prunes milestones 1 to 3: transactions 0 to 10 (payload 3 keeps transaction 11) and 13
/// (confirmed by milestone 4, after the pruned one; payload 4 keeps 14).
fn batch() -> PruneBatch {
    PruneBatch {
        milestone: 3,
        txs: (0..=10).chain([13]).map(tx_id).collect(),
        entry_points: vec![(tx_id(11), 3), (tx_id(12), 4)],
    }
}

/// Segments of two batches each (a frame of two transactions is 567 bytes, a solid mark
/// 45): four transactions, one milestone, per segment.
fn options() -> StoreOptions {
    StoreOptions::default().segment_bytes(1_200)
}

fn open(dir: &Path) -> SledStore {
    SledStore::open_with_options(dir, options()).unwrap()
}

fn show(s: &dyn Store) -> View {
    view(s, &ids(), &payloads(), MILESTONES)
}

pub(super) fn segment_files(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| layout::parse_log_segment_name(e.unwrap().file_name().to_str()?))
        .collect();
    v.sort_unstable();
    v
}

/// A store with the history written and `batch()` pruned with a crash at `at`, and the
/// `MemStore` views before and after that prune.
fn crashed(dir: &Path, at: CrashPoint) -> (SledStore, View, View) {
    let reference = MemStore::new();
    history(&reference);
    let before = show(&reference);
    reference.prune(&batch()).unwrap();
    let after = show(&reference);

    let s = open(dir);
    history(&s);
    assert_eq!(show(&s), before);
    *s.crash_at.lock().unwrap() = Some(at);
    assert!(s.prune(&batch()).is_err(), "the simulated crash");
    (s, before, after)
}

/// Checks the sled clean-up of `batch()` is in place, and that pruning goes on.
fn check_cleaned_and_go_on(s: &SledStore, dir: &Path, after: &View) {
    for m in 1..=3 {
        assert_eq!(s.tree.get(layout::milestone_key(m)).unwrap(), None);
    }
    for m in 1..=2 {
        assert_eq!(s.tree.get(layout::confirmation_key(m, 0)).unwrap(), None);
        assert_eq!(s.tree.get(layout::pruned_key(m, 0)).unwrap(), None);
    }
    assert!(s.tree.get(layout::milestone_key(4)).unwrap().is_some());
    // The chunks of milestones 3 (which confirmed 11, kept) and 4 (after the pruned one)
    // stay, marking their entries of pruned transactions: 8, 9, 10, and 13.
    let bits = |m| {
        let bitmap = s.tree.get(layout::pruned_key(m, 0)).unwrap().unwrap();
        (0..4)
            .map(|i| layout::pruned_bit(&bitmap, i))
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(3), [true, true, true, false]);
    assert_eq!(bits(4), [false, true, false, false]);
    assert!(s.tree.get(layout::PRUNE_KEY).unwrap().is_some());
    // Segments 0 and 1 held transactions 0 to 7 only: gone. Segment 2 keeps 11.
    assert_eq!(segment_files(dir)[0], 2);
    assert_eq!(s.log_segments(), segment_files(dir).len());

    // The next prune, on both, and again after reopening.
    let next = PruneBatch {
        milestone: 4,
        txs: (11..=15).map(tx_id).collect(),
        entry_points: vec![(tx_id(16), 5)],
    };
    let reference = MemStore::new();
    history(&reference);
    reference.prune(&batch()).unwrap();
    assert_eq!(&show(&reference), after);
    reference.prune(&next).unwrap();
    s.prune(&next).unwrap();
    assert_eq!(show(s), show(&reference));
    assert_eq!(segment_files(dir)[0], 4);
    s.flush().unwrap();
}

/// A crash while the tombstone is being written leaves a torn frame: the store opens
/// without the prune, and pruning again works.
#[test]
fn a_torn_tombstone_is_no_prune() {
    let dir = tempfile::tempdir().unwrap();
    let (s, before, after) = crashed(dir.path(), CrashPoint::BeforeTombstoneSync);
    let active = s.log.active().id;
    drop(s);
    let path = dir.path().join(layout::log_segment_name(active));
    let len = std::fs::metadata(&path).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);
    let s = open(dir.path());
    assert_eq!(show(&s), before);
    assert_eq!(s.tree.get(layout::PRUNE_KEY).unwrap(), None);
    assert_eq!(segment_files(dir.path())[0], 0);
    s.prune(&batch()).unwrap();
    assert_eq!(show(&s), after);
    check_cleaned_and_go_on(&s, dir.path(), &after);
}

/// A crash of the process right after the tombstone was appended: the frame is whole in
/// the file (the page cache keeps it), so the prune is committed and opening redoes the
/// rest.
#[test]
fn a_whole_unsynced_tombstone_is_the_prune() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _, after) = crashed(dir.path(), CrashPoint::BeforeTombstoneSync);
    drop(s);
    let s = open(dir.path());
    assert_eq!(show(&s), after);
    check_cleaned_and_go_on(&s, dir.path(), &after);
}

/// A crash after the tombstone is durable, before the index or sled took anything: opening
/// shows the whole prune (bitmaps and payload bases worked out again) and redoes the
/// clean-up and the segment deletion, durably: a second reopen shows the same.
#[test]
fn a_durable_tombstone_without_cleanup_is_redone_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _, after) = crashed(dir.path(), CrashPoint::AfterTombstoneSync);
    assert_eq!(s.tree.get(layout::PRUNE_KEY).unwrap(), None);
    assert!(
        s.milestone(1).unwrap().is_some(),
        "the index did not take it"
    );
    drop(s);
    let s = open(dir.path());
    assert_eq!(show(&s), after);
    drop(s);
    let s = open(dir.path());
    assert_eq!(show(&s), after);
    check_cleaned_and_go_on(&s, dir.path(), &after);
    drop(s);
    let s = open(dir.path());
    let reference = MemStore::new();
    history(&reference);
    reference.prune(&batch()).unwrap();
    reference
        .prune(&PruneBatch {
            milestone: 4,
            txs: (11..=15).map(tx_id).collect(),
            entry_points: vec![(tx_id(16), 5)],
        })
        .unwrap();
    assert_eq!(show(&s), show(&reference));
}

/// A crash after the clean-up, before old segments were deleted: opening deletes them.
#[test]
fn segments_left_by_a_crash_are_deleted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _, after) = crashed(dir.path(), CrashPoint::AfterCleanup);
    assert_eq!(show(&s), after, "the prune is complete but for the files");
    assert_eq!(segment_files(dir.path())[0], 0);
    drop(s);
    let s = open(dir.path());
    assert_eq!(show(&s), after);
    check_cleaned_and_go_on(&s, dir.path(), &after);
}

/// The in-memory index holds no pruned transaction, and the live counts per segment
/// follow the log.
#[test]
fn the_index_holds_no_pruned_entry() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    history(&s);
    let segments = s.log_segments();
    assert_eq!(segments, 6);
    assert_eq!(
        s.read_index().live.iter().copied().collect::<Vec<_>>(),
        vec![4; 6]
    );
    s.prune(&batch()).unwrap();
    let check = |s: &SledStore| {
        let index = s.read_index();
        assert_eq!(index.txs.len(), 12);
        for i in (0..=10).chain([13]) {
            assert!(!index.txs.contains_key(&tx_id(i)));
            assert!(!index.extra.contains_key(&tx_id(i)));
        }
        for p in index.payloads.keys().chain(index.more.keys()) {
            for t in index.payload_txs(p) {
                assert!(index.txs.contains_key(&t), "{p} lists pruned {t}");
            }
        }
        // Payloads 3 and 4 kept a transaction: their bases.
        assert_eq!(index.bases.len(), 2);
        assert_eq!(index.seg_first, 2);
        // Segment 6 holds the tombstone alone.
        assert_eq!(
            index.live.iter().copied().collect::<Vec<_>>(),
            vec![1, 3, 4, 4, 0]
        );
    };
    check(&s);
    drop(s);
    check(&open(dir.path()));
}

/// A format-4 store (1,024-entry confirmation chunks, a pruned-entry bitmap) opens with
/// every confirmation where it was, re-split into 64-entry chunks: made from what this
/// version writes, with the chunks of the big milestone joined back into format 4's.
#[test]
fn format_4_confirmation_chunks_are_re_split() {
    const N: u64 = 1_500;
    let dir = tempfile::tempdir().unwrap();
    // Payload `k` is carried by transactions `3k + 1` (applied) and `3k + 2` (conflicting).
    let payload = |i: u64| {
        (i % 3 != 0).then(|| {
            let mut p = [0x22u8; 32];
            p[..8].copy_from_slice(&(i / 3).to_le_bytes());
            PayloadId(p)
        })
    };
    let outcome = |i: u64| {
        if i % 3 == 1 {
            PayloadOutcome::Applied
        } else {
            PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed)
        }
    };
    let ids: Vec<TxId> = (0..N).map(tx_id).collect();
    let pays: Vec<PayloadId> = (0..N).filter_map(payload).collect();
    let bytes: Vec<Vec<u8>> = (0..N).map(tx_bytes).collect();
    let write = |s: &dyn Store| {
        let entries: Vec<TxEntry<'_>> = (0..N)
            .map(|i| TxEntry {
                id: tx_id(i),
                bytes: &bytes[i as usize],
                meta: TxMeta::new(i, true, payload(i)),
            })
            .collect();
        s.put_transactions(&entries).unwrap();
        s.init_ledger(&empty_ledger()).unwrap();
        s.apply_milestone(&MilestoneBatch {
            record: MilestoneRecord {
                index: 1,
                tx: tx_id(0),
                timestamp: 1,
                ledger_digest: Digest([1; 32]),
            },
            confirmed: (0..N)
                .map(|i| ConfirmedTx {
                    tx: tx_id(i),
                    payload: payload(i).map(|p| (p, outcome(i))),
                })
                .collect(),
            diff: LedgerDiff::default(),
        })
        .unwrap();
        // Transactions 64..=127 (a whole new chunk) and a few others leave; the milestone
        // stays.
        s.prune(&PruneBatch {
            milestone: 0,
            txs: (64..128).chain([3, 700, 1_499]).map(tx_id).collect(),
            entry_points: vec![],
        })
        .unwrap();
        s.flush().unwrap();
    };
    let reference = MemStore::new();
    write(&reference);
    let expected = view(&reference, &ids, &pays, 1);
    {
        let s = open(dir.path());
        write(&s);
        assert_eq!(view(&s, &ids, &pays, 1), expected);
        // Back to format 4: join the chunks (positions `c * 64 + i`) into 1,024-entry ones.
        let mut entries = std::collections::BTreeMap::new();
        let mut pruned = Vec::new();
        let mut batch = sled::Batch::default();
        for item in s.tree.scan_prefix([layout::CONFIRMATION]) {
            let (k, v) = item.unwrap();
            let (_, chunk) = layout::decode_confirmation_key(&k).unwrap();
            let base = chunk as usize * layout::CONFIRMATIONS_PER_CHUNK;
            let bitmap = s.tree.get(layout::pruned_key(1, chunk)).unwrap();
            for (i, c) in layout::decode_confirmations(&v)
                .unwrap()
                .into_iter()
                .enumerate()
            {
                entries.insert(base + i, c);
                if bitmap.as_deref().is_some_and(|b| layout::pruned_bit(b, i)) {
                    pruned.push(base + i);
                }
            }
            batch.remove(&k[..]);
            batch.remove(&layout::pruned_key(1, chunk)[..]);
        }
        // The milestone is kept, so its chunks stay, marking the 67 pruned entries.
        assert_eq!(entries.len(), N as usize);
        assert_eq!(pruned.len(), 67);
        let mut old = vec![Vec::new(); 2];
        let mut old_bits = vec![Vec::new(); 2];
        for pos in 0..N as usize {
            let c = match entries.get(&pos) {
                Some(c) => *c,
                None => {
                    layout::set_pruned_bit(&mut old_bits[pos / 1_024], pos % 1_024);
                    layout::Confirmation {
                        tx: tx_id(pos as u64),
                        outcome: payload(pos as u64).map(|_| outcome(pos as u64)),
                        payload: None,
                    }
                }
            };
            layout::push_confirmation(&mut old[pos / 1_024], &c);
        }
        for pos in pruned {
            layout::set_pruned_bit(&mut old_bits[pos / 1_024], pos % 1_024);
        }
        for (chunk, (v, bits)) in old.into_iter().zip(old_bits).enumerate() {
            batch.insert(&layout::confirmation_key(1, chunk as u32)[..], v);
            batch.insert(&layout::pruned_key(1, chunk as u32)[..], bits);
        }
        batch.insert(layout::FORMAT_KEY, &[layout::FORMAT_ACCOUNTS_FILE][..]);
        s.tree.apply_batch(batch).unwrap();
        s.flush().unwrap();
    }
    let s = open(dir.path());
    assert_eq!(view(&s, &ids, &pays, 1), expected);
    assert_eq!(
        s.tree.get(layout::FORMAT_KEY).unwrap().as_deref(),
        Some(&[layout::FORMAT][..])
    );
    // 24 chunks of at most 64 entries, but for the one of 64..=127: wholly pruned, the
    // upgrade leaves it out.
    let chunks: Vec<u32> = s
        .tree
        .scan_prefix([layout::CONFIRMATION])
        .map(|kv| {
            let (k, v) = kv.unwrap();
            assert!(layout::decode_confirmations(&v).unwrap().len() <= 64);
            layout::decode_confirmation_key(&k).unwrap().1
        })
        .collect();
    assert_eq!(chunks, (0..24).filter(|c| *c != 1).collect::<Vec<_>>());
    drop(s);
    assert_eq!(view(&open(dir.path()), &ids, &pays, 1), expected);
}

/// sled writes a tree node larger than a quarter of its log segment as a blob file and
/// does not reliably delete replaced ones (format 4 leaked them: the data directory grew
/// by ~2 MB a minute at 10,000 payments/s). Milestones of 3,000 confirmations, pruned as
/// they go, leave no blob file: every chunk, and the prune state, stays small.
#[test]
fn big_milestones_pruned_as_they_go_leave_no_sled_blob() {
    const PER: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    s.init_ledger(&empty_ledger()).unwrap();
    for m in 1..=30u32 {
        let first = u64::from(m - 1) * PER;
        let bytes: Vec<Vec<u8>> = (first..first + PER).map(tx_bytes).collect();
        let entries: Vec<TxEntry<'_>> = (first..first + PER)
            .zip(&bytes)
            .map(|(i, b)| TxEntry {
                id: tx_id(i),
                bytes: b,
                meta: TxMeta::new(i, true, None),
            })
            .collect();
        s.put_transactions(&entries).unwrap();
        s.apply_milestone(&MilestoneBatch {
            record: MilestoneRecord {
                index: m,
                tx: tx_id(first),
                timestamp: u64::from(m),
                ledger_digest: Digest([m as u8; 32]),
            },
            confirmed: (first..first + PER)
                .map(|i| ConfirmedTx {
                    tx: tx_id(i),
                    payload: None,
                })
                .collect(),
            diff: LedgerDiff::default(),
        })
        .unwrap();
        if m > 5 {
            let cut = m - 5;
            let from = u64::from(cut - 1) * PER;
            s.prune(&PruneBatch {
                milestone: cut,
                txs: (from..from + PER).map(tx_id).collect(),
                // As many entry points as a busy node's (about 300 KB in format 4's state).
                entry_points: (from + PER..from + 2 * PER)
                    .map(|i| (tx_id(i), cut + 1))
                    .collect(),
            })
            .unwrap();
        }
        s.flush().unwrap();
    }
    let blobs = std::fs::read_dir(dir.path().join("blobs"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(blobs, 0, "sled blob files");
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    let pruned = s.pruned().unwrap().unwrap();
    assert_eq!(pruned.milestone, 25);
    assert_eq!(pruned.entry_points.len(), PER as usize);
    assert_eq!(s.transaction_count().unwrap() as u64, 5 * PER);
}
