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

/// Six milestones of four transactions each, stored in batches of two (with solid marks in
/// between): the first copy of each payload applies, the second conflicts.
fn history(s: &dyn Store) {
    s.init_ledger(&LedgerState {
        rotations: Vec::new(),
        network_id: 1,
        supply: 0,
        confirmed_index: 0,
        digest: Digest([0; 32]),
        accounts: vec![],
        channels: vec![],
    })
    .unwrap();
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
