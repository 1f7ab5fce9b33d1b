//! `SledStore`: the generic `Store` conformance suite, reopening, reload order, corrupt
//! data, group commit, and pruning (log segments deleted, the previous format).

use std::sync::{Arc, Barrier};

use dag_core::store::{conformance, Store, StoreError, TxEntry, TxMeta};
use dag_core::{Ledger, PayloadId, TxId};
use node::store::{layout, Durability, SledStore, StoreOptions};

/// Segments so small that almost every frame starts a new one.
fn tiny() -> StoreOptions {
    StoreOptions::default().segment_bytes(600)
}

fn entry(id: TxId, bytes: &[u8], arrival: u64) -> TxEntry<'_> {
    TxEntry {
        id,
        bytes,
        meta: TxMeta::new(arrival, false, None),
    }
}

/// Distinct ids and bytes; `i` is encoded into both.
fn blob(i: u64) -> (TxId, Vec<u8>) {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_le_bytes());
    id[31] = 0x5a;
    let mut bytes = vec![0xab; 250];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    (TxId(id), bytes)
}

#[test]
fn conforms_temporary() {
    conformance::run_all(|| SledStore::open_temporary().unwrap());
}

#[test]
fn conforms_on_disk() {
    let dirs = std::cell::RefCell::new(Vec::new());
    conformance::run_all(|| {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open(d.path()).unwrap();
        dirs.borrow_mut().push(d);
        s
    });
}

#[test]
fn conforms_with_tiny_segments() {
    conformance::run_all(|| SledStore::open_temporary_with(tiny()).unwrap());
    let dirs = std::cell::RefCell::new(Vec::new());
    conformance::run_all(|| {
        let d = tempfile::tempdir().unwrap();
        let s = SledStore::open_with_options(d.path(), tiny()).unwrap();
        dirs.borrow_mut().push(d);
        s
    });
}

#[test]
fn prunes_survive_reopen() {
    for options in [
        StoreOptions::default(),
        StoreOptions::default().durability(Durability::ProcessCrash),
        tiny(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        conformance::prune_persistence(|| {
            SledStore::open_with_options(dir.path(), options).unwrap()
        });
    }
}

#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    conformance::reopen_persistence(|| SledStore::open(dir.path()).unwrap());
}

#[test]
fn data_survives_reopen_process_crash_durability() {
    let dir = tempfile::tempdir().unwrap();
    conformance::reopen_persistence(|| {
        SledStore::open_with(dir.path(), Durability::ProcessCrash).unwrap()
    });
}

/// Reloading visits transactions in the order they were stored, not in id order and not
/// in arrival-timestamp order (timestamps may tie or step back), also after reopening.
#[test]
fn reload_is_in_storing_order() {
    let dir = tempfile::tempdir().unwrap();
    // Ids descending, so id order is the reverse of storing order; arrival timestamps
    // tie and step back.
    let txs: Vec<(TxId, Vec<u8>)> = (0..300u64)
        .map(|i| {
            let (mut id, bytes) = blob(i);
            id.0[0] = 255 - (i % 256) as u8;
            id.0[1] = 255 - (i / 256) as u8;
            (id, bytes)
        })
        .collect();
    let arrival = |i: usize| 1_000 - (i as u64 % 7);
    {
        let s = SledStore::open(dir.path()).unwrap();
        // Several batches, with a re-put of earlier ones in between (must not move them).
        for chunk in txs.chunks(64) {
            let entries: Vec<_> = chunk
                .iter()
                .map(|(id, b)| {
                    let i = txs.iter().position(|t| t.0 == *id).unwrap();
                    entry(*id, b, arrival(i))
                })
                .collect();
            s.put_transactions(&entries).unwrap();
            s.put_transactions(&[entry(txs[0].0, &txs[0].1, 0)])
                .unwrap();
        }
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    let mut seen = Vec::new();
    s.for_each_transaction(&mut |id, bytes, meta| {
        seen.push(*id);
        let i = seen.len() - 1;
        assert_eq!(bytes, &txs[i].1[..]);
        assert_eq!(meta.arrival, arrival(i));
    })
    .unwrap();
    let expected: Vec<TxId> = txs.iter().map(|t| t.0).collect();
    assert_eq!(seen, expected);
    assert_eq!(s.transaction_count().unwrap(), txs.len());
}

/// Opens the raw sled database behind a closed store and overwrites one value.
fn corrupt(dir: &std::path::Path, key: &[u8], value: &[u8]) {
    // sled lets go of its lock when its last background write of the closed store ends;
    // the bound is a hang guard (that takes milliseconds), not a timing assertion.
    let start = std::time::Instant::now();
    let db = loop {
        match sled::open(dir) {
            Err(e) if start.elapsed() < std::time::Duration::from_secs(180) => {
                assert!(e.to_string().contains("lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    };
    db.open_tree(layout::TREE)
        .unwrap()
        .insert(key, value)
        .unwrap();
    db.flush().unwrap();
}

fn genesis_state() -> dag_core::LedgerState {
    let g = dag_core::Genesis {
        network_name: "corrupt".into(),
        timestamp: 0,
        pow_difficulty: 0,
        timestamp_window_ms: dag_core::genesis::DEFAULT_TIMESTAMP_WINDOW_MS,
        committee: vec![dag_core::Address([9; 32])],
        threshold: 1,
        allocations: vec![dag_core::Allocation {
            address: dag_core::Address([4; 32]),
            amount: 10,
        }],
    };
    Ledger::from_genesis(&g).unwrap().to_state()
}

/// Undecodable sled values surface as `StoreError::Corrupt`, never as a panic or as
/// `None`; intact data still reads.
#[test]
fn corrupt_values_are_reported_not_panicked_on() {
    let dir = tempfile::tempdir().unwrap();
    let (id2, bytes2) = blob(2);
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.put_transactions(&[entry(id2, &bytes2, 6)]).unwrap();
        s.init_ledger(&genesis_state()).unwrap();
        s.flush().unwrap();
    }
    // A channel that does not decode, a truncated milestone, an undecodable ledger header.
    corrupt(
        dir.path(),
        &layout::channel_key(&dag_core::ChannelId([4; 32])),
        &[0xc1],
    );
    corrupt(dir.path(), &layout::milestone_key(1), &[0x93, 0x01]);
    let s = SledStore::open(dir.path()).unwrap();
    let is_corrupt = |r: Result<(), StoreError>| matches!(r, Err(StoreError::Corrupt(_)));
    assert!(is_corrupt(
        s.channel(&dag_core::ChannelId([4; 32])).map(drop)
    ));
    assert!(is_corrupt(s.milestone(1).map(drop)));
    assert!(is_corrupt(s.load_ledger().map(drop)));
    assert_eq!(s.transaction(&id2).unwrap(), Some(bytes2.clone()));
    assert_eq!(s.metadata(&id2).unwrap().unwrap().arrival, 6);
    drop(s);
    corrupt(dir.path(), layout::LEDGER_KEY, &[0xc1]);
    let s = SledStore::open(dir.path());
    assert!(is_corrupt(s.map(drop)), "the header is read on open");

    // A confirmation chunk that does not decode, or names a transaction the log does not
    // hold: the database is refused at open.
    for value in [vec![0u8; 5], vec![0xee; 34]] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            s.init_ledger(&dag_core::LedgerState {
                rotations: Vec::new(),
                confirmed_index: 3,
                ..genesis_state()
            })
            .unwrap();
        }
        corrupt(dir.path(), &layout::confirmation_key(1, 0), &value);
        assert!(is_corrupt(SledStore::open(dir.path()).map(drop)));
    }
}

/// A log entry overwritten with another transaction's bytes is reported, and a damaged
/// frame in the middle of the log ends it (point-in-time recovery: what follows is cut).
#[test]
fn a_damaged_log_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let txs: Vec<_> = (0..3).map(blob).collect();
    {
        let s = SledStore::open(dir.path()).unwrap();
        for (id, b) in &txs {
            s.put_transactions(&[entry(*id, b, 1)]).unwrap();
        }
        s.flush().unwrap();
    }
    let path = dir.path().join(layout::LOG_FILE);
    let log = std::fs::read(&path).unwrap();
    let frame_len = layout::FRAME_HEADER_LEN + 5 + layout::TX_ENTRY_HEADER_LEN + 250;
    assert_eq!(log.len(), 8 + 3 * frame_len);
    // Damage the second frame's body: the second and third are cut off on open.
    let mut damaged = log.clone();
    damaged[8 + frame_len + 100] ^= 1;
    std::fs::write(&path, &damaged).unwrap();
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.transaction_count().unwrap(), 1);
    assert_eq!(s.transaction(&txs[0].0).unwrap(), Some(txs[0].1.clone()));
    assert_eq!(s.transaction(&txs[1].0).unwrap(), None);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        (8 + frame_len) as u64
    );
    // The store carries on after the cut.
    s.put_transactions(&[entry(txs[2].0, &txs[2].1, 1)])
        .unwrap();
    s.flush().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.transaction_count().unwrap(), 2);
    assert_eq!(s.transaction(&txs[2].0).unwrap(), Some(txs[2].1.clone()));
}

/// A transaction log without its sled database, or a database without its log, is
/// refused instead of starting over silently.
#[test]
fn the_log_and_the_database_must_come_together() {
    let dir = tempfile::tempdir().unwrap();
    let (id, b) = blob(1);
    {
        let s = SledStore::open(dir.path()).unwrap();
        s.put_transactions(&[entry(id, &b, 1)]).unwrap();
        s.flush().unwrap();
    }
    let log = dir.path().join(layout::LOG_FILE);
    let moved = dir.path().join("moved.log");
    std::fs::rename(&log, &moved).unwrap();
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));
    let other = tempfile::tempdir().unwrap();
    std::fs::rename(&moved, other.path().join(layout::LOG_FILE)).unwrap();
    assert!(matches!(
        SledStore::open(other.path()),
        Err(StoreError::Corrupt(_))
    ));
}

/// A database written in another format (here: the earlier tree-per-record layout) is
/// refused at open instead of being misread.
#[test]
fn a_database_of_another_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree("transactions")
            .unwrap()
            .insert([1u8; 32], vec![0u8; 10])
            .unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled::open(dir.path()).unwrap();
        db.open_tree(layout::TREE)
            .unwrap()
            .insert(layout::FORMAT_KEY, &[99u8][..])
            .unwrap();
        db.flush().unwrap();
    }
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(StoreError::Corrupt(_))
    ));
}

/// A payload's status is derived from its transactions' confirmations in white-flag
/// order (not storing order), also within one milestone and after reopening: conflicting
/// then applied in the same milestone is confirmed by the second; applied then conflicting
/// stays confirmed by the first; of two conflicts the first final one in white-flag order counts.
#[test]
fn payload_status_follows_white_flag_order_within_a_milestone() {
    use dag_core::store::{ConfirmedTx, MilestoneBatch, MilestoneRecord, PayloadStatus};
    use dag_core::{ConflictReason, Digest, LedgerDiff, PayloadOutcome};
    let dir = tempfile::tempdir().unwrap();
    let (p1, p2, p3) = (PayloadId([1; 32]), PayloadId([2; 32]), PayloadId([3; 32]));
    let txs: Vec<(TxId, Vec<u8>, PayloadId)> = [p1, p1, p2, p2, p3, p3]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (id, b) = blob(100 + i as u64);
            (id, b, *p)
        })
        .collect();
    let gap = PayloadOutcome::Conflicting(ConflictReason::SeqGap);
    let used = PayloadOutcome::Conflicting(ConflictReason::SeqAlreadyUsed);
    // White-flag order; p3's copies are confirmed in the reverse of their storing order.
    let order = [
        (0, gap),
        (1, PayloadOutcome::Applied),
        (2, PayloadOutcome::Applied),
        (3, used),
        (5, used),
        (4, gap),
    ];
    let expected = [
        PayloadStatus::Confirmed {
            milestone: 1,
            tx: txs[1].0,
        },
        PayloadStatus::Confirmed {
            milestone: 1,
            tx: txs[2].0,
        },
        // The first final outcome in white-flag order stays: a later gap does not reopen it.
        PayloadStatus::Conflicting {
            milestone: 1,
            tx: txs[5].0,
            reason: ConflictReason::SeqAlreadyUsed,
        },
    ];
    {
        let s = SledStore::open(dir.path()).unwrap();
        let entries: Vec<_> = txs
            .iter()
            .map(|(id, b, p)| TxEntry {
                id: *id,
                bytes: b,
                meta: TxMeta::new(1, true, Some(*p)),
            })
            .collect();
        s.put_transactions(&entries).unwrap();
        s.init_ledger(&dag_core::LedgerState {
            rotations: Vec::new(),
            network_id: 1,
            supply: 0,
            confirmed_index: 0,
            digest: Digest([0; 32]),
            accounts: vec![],
            channels: vec![],
        })
        .unwrap();
        s.apply_milestone(&MilestoneBatch {
            record: MilestoneRecord {
                index: 1,
                tx: txs[0].0,
                timestamp: 1,
                ledger_digest: Digest([1; 32]),
            },
            confirmed: order
                .iter()
                .map(|(i, o)| ConfirmedTx {
                    tx: txs[*i].0,
                    payload: Some((txs[*i].2, *o)),
                })
                .collect(),
            diff: LedgerDiff::default(),
        })
        .unwrap();
        for (p, want) in [p1, p2, p3].iter().zip(expected) {
            assert_eq!(s.payload(p).unwrap().unwrap().status, want);
        }
        s.flush().unwrap();
    }
    let s = SledStore::open(dir.path()).unwrap();
    for (i, p) in [p1, p2, p3].iter().enumerate() {
        let rec = s.payload(p).unwrap().unwrap();
        assert_eq!(rec.status, expected[i]);
        assert_eq!(rec.txs, vec![txs[2 * i].0, txs[2 * i + 1].0]);
    }
}

/// Many threads that each store a transaction and flush at the same time share physical
/// flushes, and each one's transaction is durable (readable after reopening).
#[test]
fn concurrent_flushes_are_grouped() {
    const THREADS: usize = 8;
    const ROUNDS: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(SledStore::open(dir.path()).unwrap());
    let before = s.physical_flushes();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS as u64)
        .map(|t| {
            let (s, barrier) = (s.clone(), barrier.clone());
            std::thread::spawn(move || {
                for r in 0..ROUNDS {
                    let (id, bytes) = blob(t * 1_000 + r);
                    barrier.wait();
                    assert_eq!(s.put_transactions(&[entry(id, &bytes, r)]).unwrap(), 1);
                    s.flush().unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let calls = THREADS as u64 * ROUNDS;
    let physical = s.physical_flushes() - before;
    assert!(physical >= ROUNDS, "each round needs at least one flush");
    assert!(
        physical < calls,
        "{calls} concurrent flush calls ran {physical} physical flushes"
    );
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.transaction_count().unwrap(), calls as usize);
    for t in 0..THREADS as u64 {
        for r in 0..ROUNDS {
            let (id, bytes) = blob(t * 1_000 + r);
            assert_eq!(s.transaction(&id).unwrap(), Some(bytes));
        }
    }
}

/// A second open of the same directory while the first is alive fails with a backend
/// error instead of corrupting it.
#[test]
fn second_open_of_a_live_database_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let _s = SledStore::open(dir.path()).unwrap();
    assert!(matches!(
        SledStore::open(dir.path()),
        Err(StoreError::Backend(_))
    ));
}

/// Log segment files in a database directory, by id.
fn segment_files(dir: &std::path::Path) -> Vec<u64> {
    let mut v: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| layout::parse_log_segment_name(e.unwrap().file_name().to_str()?))
        .collect();
    v.sort_unstable();
    v
}

/// With tiny segments, pruning old transactions deletes their segment files (never while an
/// older segment still holds a live transaction, never the active one), the disk shrinks,
/// and reopening gives the same store.
#[test]
fn pruning_deletes_old_log_segments() {
    use dag_core::store::PruneBatch;
    let dir = tempfile::tempdir().unwrap();
    // One 250-byte transaction per frame (340 bytes): two frames per segment.
    let options = StoreOptions::default().segment_bytes(600);
    let txs: Vec<(TxId, Vec<u8>)> = (0..40).map(blob).collect();
    let ids: Vec<TxId> = txs.iter().map(|t| t.0).collect();
    let s = SledStore::open_with_options(dir.path(), options).unwrap();
    for (id, b) in &txs {
        s.put_transactions(&[entry(*id, b, 1)]).unwrap();
    }
    s.flush().unwrap();
    assert_eq!(segment_files(dir.path()), (0..20).collect::<Vec<_>>());
    assert_eq!(s.log_segments(), 20);
    let size = s.size_on_disk().unwrap();
    let prune = |txs: &[TxId]| {
        s.prune(&PruneBatch {
            milestone: 0,
            txs: txs.to_vec(),
            entry_points: vec![],
        })
        .unwrap()
    };

    // Transaction 0 stays: segment 0 keeps a live entry, so nothing can go.
    prune(&ids[1..20]);
    assert_eq!(s.transaction_count().unwrap(), 21);
    assert_eq!(segment_files(dir.path()).first(), Some(&0));
    // Now segments 0 to 9 hold nothing live.
    prune(&ids[..1]);
    // (Each tombstone filled a segment of its own: 20 and 21.)
    assert_eq!(segment_files(dir.path()), (10..22).collect::<Vec<_>>());
    assert!(s.size_on_disk().unwrap() < size);
    for (i, (id, b)) in txs.iter().enumerate() {
        let want = (i >= 20).then(|| b.clone());
        assert_eq!(s.transaction(id).unwrap(), want, "tx {i}");
    }
    s.flush().unwrap();
    let view = conformance::view(&s, &ids, &[], 0);
    drop(s);
    let s = SledStore::open_with_options(dir.path(), options).unwrap();
    assert_eq!(conformance::view(&s, &ids, &[], 0), view);
    assert_eq!(segment_files(dir.path()), (10..22).collect::<Vec<_>>());

    // Everything goes: only the newest segments stay (the active one, holding the
    // tombstones, and none older with anything live).
    s.prune(&PruneBatch {
        milestone: 0,
        txs: ids.clone(),
        entry_points: vec![],
    })
    .unwrap();
    assert_eq!(s.transaction_count().unwrap(), 0);
    let left = segment_files(dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    // The store carries on: new transactions, reopened with the tombstones gone.
    let (id, b) = blob(100);
    s.put_transactions(&[entry(id, &b, 1)]).unwrap();
    s.flush().unwrap();
    drop(s);
    let s = SledStore::open_with_options(dir.path(), options).unwrap();
    assert_eq!(s.transaction_count().unwrap(), 1);
    assert_eq!(s.transaction(&id).unwrap(), Some(b));
    assert_eq!(s.transaction(&ids[30]).unwrap(), None);
    assert_eq!(s.pruned().unwrap().unwrap().milestone, 0);
}

/// A store of an earlier format opens with everything in it, is upgraded, and can then be
/// pruned: format 2 (one `transactions.log`, never pruned) and format 3 (segments), both
/// with the accounts under sled keys. Made from what this version writes without pruning,
/// with the accounts moved back into sled, the checkpoint removed and the old key.
#[test]
fn a_store_of_an_earlier_format_opens() {
    for format in [layout::FORMAT_SINGLE_LOG, layout::FORMAT_SEGMENTED] {
        store_of_an_earlier_format_opens(format);
    }
}

fn store_of_an_earlier_format_opens(format: u8) {
    use dag_core::store::{ConfirmedTx, MilestoneBatch, MilestoneRecord, PruneBatch};
    let dir = tempfile::tempdir().unwrap();
    let txs: Vec<(TxId, Vec<u8>)> = (0..5).map(blob).collect();
    let ids: Vec<TxId> = txs.iter().map(|t| t.0).collect();
    let view = {
        let s = SledStore::open(dir.path()).unwrap();
        let entries: Vec<_> = txs.iter().map(|(id, b)| entry(*id, b, 3)).collect();
        s.put_transactions(&entries).unwrap();
        s.mark_solid(&ids[..2]).unwrap();
        s.init_ledger(&genesis_state()).unwrap();
        s.apply_milestone(&MilestoneBatch {
            record: MilestoneRecord {
                index: 1,
                tx: ids[0],
                timestamp: 1,
                ledger_digest: dag_core::Digest([1; 32]),
            },
            confirmed: ids[..3]
                .iter()
                .map(|tx| ConfirmedTx {
                    tx: *tx,
                    payload: None,
                })
                .collect(),
            diff: Default::default(),
        })
        .unwrap();
        s.flush().unwrap();
        conformance::view(&s, &ids, &[], 1)
    };
    assert_eq!(segment_files(dir.path()), vec![0]);
    let accounts = view.ledger.as_ref().unwrap().accounts.clone();
    assert!(!accounts.is_empty());
    for (a, acc) in &accounts {
        corrupt(
            dir.path(),
            &layout::account_key(a),
            &layout::encode_account(acc),
        );
    }
    std::fs::remove_file(dir.path().join(layout::ACCOUNTS_FILE)).unwrap();
    corrupt(dir.path(), layout::FORMAT_KEY, &[format]);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(conformance::view(&s, &ids, &[], 1), view);
    assert!(dir.path().join(layout::ACCOUNTS_FILE).exists());
    s.prune(&PruneBatch {
        milestone: 1,
        txs: ids[..3].to_vec(),
        entry_points: vec![(ids[2], 1)],
    })
    .unwrap();
    s.flush().unwrap();
    drop(s);
    let s = SledStore::open(dir.path()).unwrap();
    assert_eq!(s.transaction_count().unwrap(), 2);
    assert_eq!(s.milestone(1).unwrap(), None);
    assert_eq!(s.pruned().unwrap().unwrap().entry_points, vec![(ids[2], 1)]);
    drop(s);
    // The format key says 5 now, and sled holds no account: an earlier version refuses the
    // database.
    let start = std::time::Instant::now();
    let db = loop {
        match sled::open(dir.path()) {
            Err(_) if start.elapsed() < std::time::Duration::from_secs(180) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r.unwrap(),
        }
    };
    let format = db
        .open_tree(layout::TREE)
        .unwrap()
        .get(layout::FORMAT_KEY)
        .unwrap();
    assert_eq!(format.as_deref(), Some(&[layout::FORMAT][..]));
    assert_eq!(
        db.open_tree(layout::TREE)
            .unwrap()
            .scan_prefix([layout::ACCOUNT])
            .count(),
        0
    );
}
