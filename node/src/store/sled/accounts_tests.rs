//! Unit tests of the account table outside sled: checkpoints, frames replayed on open,
//! frames of milestones that never committed, segments kept for frames, damaged files.

use std::path::Path;

use dag_core::store::{
    ConfirmedTx, MemStore, MilestoneBatch, MilestoneRecord, PruneBatch, Store, StoreError, TxEntry,
    TxMeta,
};
use dag_core::{Account, Address, Digest, LedgerDiff, LedgerState, MilestoneIndex, TxId};

use super::tests::segment_files;
use super::{SledStore, StoreOptions};
use node_proto::layout;

const ACCOUNTS: u64 = 40;

fn addr(i: u64) -> Address {
    // Spread over the key space, so a checkpoint's order is not the creation order.
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    a[31] = 0xa0;
    Address(a)
}

fn tx(m: MilestoneIndex) -> TxId {
    let mut id = [0x22u8; 32];
    id[..4].copy_from_slice(&m.to_le_bytes());
    TxId(id)
}

fn genesis() -> LedgerState {
    LedgerState {
        rotations: Vec::new(),
        network_id: 9,
        supply: 1_000 * ACCOUNTS,
        confirmed_index: 0,
        digest: Digest([0; 32]),
        accounts: (0..ACCOUNTS)
            .map(|i| {
                (
                    addr(i),
                    Account {
                        balance: 1_000,
                        next_seq: 0,
                    },
                )
            })
            .collect(),
        channels: vec![],
    }
}

fn options() -> StoreOptions {
    // A few milestones per segment.
    StoreOptions::default().segment_bytes(1_500)
}

fn open(dir: &Path) -> SledStore {
    SledStore::open_with_options(dir, options()).unwrap()
}

/// Milestone `m`: stores and confirms one transaction and changes a few accounts (some
/// every time, one new one); every fifth milestone changes none.
fn milestone(s: &dyn Store, m: MilestoneIndex) {
    let bytes = vec![m as u8; 100];
    s.put_transactions(&[TxEntry {
        id: tx(m),
        bytes: &bytes,
        meta: TxMeta::new(u64::from(m), true, None),
    }])
    .unwrap();
    let mut accounts = Vec::new();
    if m % 5 != 0 {
        for j in 0..4u64 {
            let i = (u64::from(m) * 7 + j * 3) % ACCOUNTS;
            accounts.push((
                addr(i),
                Account {
                    balance: 1_000 + u64::from(m) * 10 + j,
                    next_seq: u64::from(m),
                },
            ));
        }
        accounts.push((
            addr(1_000 + u64::from(m)),
            Account {
                balance: u64::from(m),
                next_seq: 0,
            },
        ));
    }
    s.apply_milestone(&MilestoneBatch {
        record: MilestoneRecord {
            index: m,
            tx: tx(m),
            timestamp: u64::from(m),
            ledger_digest: Digest([m as u8; 32]),
        },
        confirmed: vec![ConfirmedTx {
            tx: tx(m),
            payload: None,
        }],
        diff: LedgerDiff {
            accounts,
            ..LedgerDiff::default()
        },
    })
    .unwrap();
}

fn prune(s: &dyn Store, m: MilestoneIndex) {
    s.prune(&PruneBatch {
        milestone: m,
        txs: vec![tx(m)],
        entry_points: vec![(tx(m), m)],
    })
    .unwrap();
}

fn same_accounts(s: &SledStore, reference: &MemStore) {
    let ours = s.load_ledger().unwrap().unwrap();
    let theirs = reference.load_ledger().unwrap().unwrap();
    assert_eq!(ours.accounts, theirs.accounts);
    for i in (0..ACCOUNTS).chain(1_000..1_050) {
        assert_eq!(
            s.account(&addr(i)).unwrap(),
            reference.account(&addr(i)).unwrap()
        );
    }
}

/// Forty milestones with checkpoints now and then, pruning three behind, reopening every
/// eighth: the table always equals a `MemStore` given the same writes, and log segments go.
#[test]
fn accounts_follow_frames_checkpoints_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let reference = MemStore::new();
    reference.init_ledger(&genesis()).unwrap();
    let mut s = open(dir.path());
    s.init_ledger(&genesis()).unwrap();
    same_accounts(&s, &reference);
    for m in 1..=40 {
        milestone(&s, m);
        milestone(&reference, m);
        if m % 7 == 0 {
            s.checkpoint_accounts(m).unwrap();
            assert_eq!(s.read_accounts().changed_len(), 0);
        }
        if m > 3 {
            prune(&s, m - 3);
            prune(&reference, m - 3);
        }
        same_accounts(&s, &reference);
        if m % 8 == 0 {
            s.flush().unwrap();
            drop(s);
            s = open(dir.path());
            same_accounts(&s, &reference);
        }
    }
    let files = segment_files(dir.path());
    assert!(
        files[0] >= 8 && files.len() <= 4,
        "segments covered by a checkpoint and pruned are deleted: {files:?}"
    );
}

/// A frame whose milestone's batch never committed (a crash between the two) is ignored
/// on open, and replaced by the frame of the milestone applied again.
#[test]
fn a_frame_of_an_uncommitted_milestone_is_ignored_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let reference = MemStore::new();
    reference.init_ledger(&genesis()).unwrap();
    milestone(&reference, 1);
    let write_stray_frame = |s: &SledStore| {
        let body = layout::accounts_body(
            2,
            &[(
                addr(39),
                Account {
                    balance: 123_456,
                    next_seq: 77,
                },
            )],
        );
        let mut buf = vec![0u8; layout::FRAME_HEADER_LEN];
        buf.extend_from_slice(&body);
        let mut w = s.log_writer();
        s.append(&mut w, buf).unwrap();
    };
    {
        let s = open(dir.path());
        s.init_ledger(&genesis()).unwrap();
        milestone(&s, 1);
        write_stray_frame(&s);
        s.flush().unwrap();
    }
    let s = open(dir.path());
    same_accounts(&s, &reference);
    assert_eq!(s.account(&addr(39)).unwrap().unwrap().balance, 1_000);
    // Milestone 2 applied again, changing other accounts: the stray frame is replaced.
    milestone(&s, 2);
    milestone(&reference, 2);
    assert_ne!(
        (2 * 7) % ACCOUNTS,
        39,
        "the stray account is not one milestone 2 changes"
    );
    s.flush().unwrap();
    drop(s);
    let s = open(dir.path());
    same_accounts(&s, &reference);
    assert_eq!(s.account(&addr(39)).unwrap().unwrap().balance, 1_000);
}

/// A segment holding the frame of a milestone after the checkpoint stays when everything
/// in it is pruned, until a checkpoint covers the frame.
#[test]
fn segments_with_frames_after_the_checkpoint_stay_until_one_covers_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    s.init_ledger(&genesis()).unwrap();
    for m in 1..=12 {
        milestone(&s, m);
    }
    for m in 1..=10 {
        prune(&s, m);
    }
    assert_eq!(
        segment_files(dir.path())[0],
        0,
        "the frame of milestone 1 is needed"
    );
    s.checkpoint_accounts(12).unwrap();
    prune(&s, 11);
    assert!(segment_files(dir.path())[0] > 0);
    let reference = MemStore::new();
    reference.init_ledger(&genesis()).unwrap();
    for m in 1..=12 {
        milestone(&reference, m);
    }
    s.flush().unwrap();
    drop(s);
    same_accounts(&open(dir.path()), &reference);
}

fn damaged(change: impl Fn(&Path)) -> Result<SledStore, StoreError> {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = open(dir.path());
        s.init_ledger(&genesis()).unwrap();
        for m in 1..=3 {
            milestone(&s, m);
        }
        s.checkpoint_accounts(3).unwrap();
        s.flush().unwrap();
    }
    change(dir.path());
    SledStore::open_with_options(dir.path(), options())
}

/// A changed byte anywhere in the checkpoint, a cut one, or none at all: the database is
/// refused with `Corrupt`. A half-written one beside it (a crash while writing) is removed.
#[test]
fn a_damaged_checkpoint_is_refused_and_a_half_written_one_removed() {
    let file = |dir: &Path| dir.join(layout::ACCOUNTS_FILE);
    let len = std::cell::Cell::new(0);
    damaged(|dir| len.set(std::fs::metadata(file(dir)).unwrap().len() as usize)).unwrap();
    let len = len.get();
    // The genesis accounts and one new account per milestone, as of milestone 3.
    assert_eq!(
        len,
        layout::ACCOUNTS_HEADER_LEN + (ACCOUNTS as usize + 3) * layout::ACCOUNT_RECORD_LEN
    );
    for at in (0..len).step_by(7) {
        let r = damaged(|dir| {
            let mut bytes = std::fs::read(file(dir)).unwrap();
            if at < bytes.len() {
                bytes[at] ^= 0x40;
            }
            std::fs::write(file(dir), bytes).unwrap();
        });
        assert!(
            matches!(r, Err(StoreError::Corrupt(_))),
            "byte {at}: {:?}",
            r.map(drop)
        );
    }
    let cut = damaged(|dir| {
        let bytes = std::fs::read(file(dir)).unwrap();
        std::fs::write(file(dir), &bytes[..bytes.len() - 1]).unwrap();
    });
    assert!(matches!(cut, Err(StoreError::Corrupt(_))));
    let gone = damaged(|dir| std::fs::remove_file(file(dir)).unwrap());
    assert!(matches!(gone, Err(StoreError::Corrupt(_))));
    let dir = std::cell::RefCell::new(None);
    let half = damaged(|d| {
        std::fs::write(d.join(layout::ACCOUNTS_TMP_FILE), b"TANGACC").unwrap();
        *dir.borrow_mut() = Some(d.to_path_buf());
    });
    let s = half.unwrap();
    assert_eq!(s.load_ledger().unwrap().unwrap().accounts.len(), 43);
    let dir = dir.borrow().clone().unwrap();
    assert!(!dir.join(layout::ACCOUNTS_TMP_FILE).exists());
}
