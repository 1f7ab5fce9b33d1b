//! How sled's files grow under the node's write pattern with retention: milestones of
//! `GROWTH_PER` payments (5,000) between `GROWTH_ACCOUNTS` accounts (100,000), each
//! stored, confirmed (confirmation chunks, milestone record, payer and payee accounts)
//! and pruned `GROWTH_KEEP` (60) milestones later with `GROWTH_ENTRY_POINTS` (8,000)
//! entry points, `GROWTH_MILESTONES` (400) of them, `GROWTH_SLEEP_MS` (0) apart, in
//! `GROWTH_DIR` (/tmp/h13-growth, deleted first). Prints sled's log file and blob files
//! every `GROWTH_EVERY` (100) milestones, then the reopen time and the keys left per
//! prefix. BENCHMARKS.md, "Restart time with retention", has what it showed.
//!
//! `cargo run --release -p node --example store_growth`
use dag_core::store::{
    ConfirmedTx, MilestoneBatch, MilestoneRecord, PruneBatch, Store, TxEntry, TxMeta,
};
use dag_core::{
    Account, Address, Digest, LedgerDiff, LedgerState, PayloadId, PayloadOutcome, TxId,
};
use node::store::{Durability, SledStore, StoreOptions};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e3779b97f4a7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
    z ^ (z >> 31)
}
fn id(i: u64, tag: u8) -> [u8; 32] {
    let mut b = [tag; 32];
    b[..8].copy_from_slice(&mix(i).to_le_bytes());
    b[8..16].copy_from_slice(&i.to_le_bytes());
    b
}
fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            // A file may go between the listing and its metadata (a checkpoint renamed).
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let m = e.metadata().ok()?;
                    Some(if m.is_dir() {
                        dir_size(&e.path())
                    } else {
                        m.len()
                    })
                })
                .sum()
        })
        .unwrap_or(0)
}
fn main() {
    let milestones = env("GROWTH_MILESTONES", 400);
    let per = env("GROWTH_PER", 5000);
    let accounts = env("GROWTH_ACCOUNTS", 100_000);
    let keep = env("GROWTH_KEEP", 60);
    let eps = env("GROWTH_ENTRY_POINTS", 8000);
    let dir =
        std::path::PathBuf::from(std::env::var("GROWTH_DIR").unwrap_or("/tmp/h13-growth".into()));
    let _ = std::fs::remove_dir_all(&dir);
    let s = SledStore::open_with_options(
        &dir,
        StoreOptions::default().durability(Durability::ProcessCrash),
    )
    .unwrap();
    let mut accs: Vec<(Address, Account)> = (0..accounts)
        .map(|i| {
            (
                Address(id(i, 0xaa)),
                Account {
                    balance: 1_000_000,
                    next_seq: 0,
                },
            )
        })
        .collect();
    let addr_of: Vec<Address> = accs.iter().map(|a| a.0).collect();
    accs.sort_by_key(|a| a.0);
    s.init_ledger(&LedgerState {
        rotations: Vec::new(),
        network_id: 1,
        supply: 0,
        confirmed_index: 0,
        digest: Digest([0; 32]),
        accounts: accs,
        channels: vec![],
    })
    .unwrap();
    let bytes = vec![0xcd; 250];
    let t0 = std::time::Instant::now();
    let mut n = 0u64;
    for m in 1..=milestones as u32 {
        let first = n;
        let ids: Vec<TxId> = (first..first + per).map(|i| TxId(id(i, 0x11))).collect();
        for c in (0..per).step_by(512) {
            let entries: Vec<TxEntry<'_>> = (c..(c + 512).min(per))
                .map(|k| TxEntry {
                    id: ids[k as usize],
                    bytes: &bytes,
                    meta: TxMeta::new(first + k, true, Some(PayloadId(id(first + k, 0x22)))),
                })
                .collect();
            s.put_transactions(&entries).unwrap();
        }
        s.flush_transactions().unwrap();
        n += per;
        let confirmed = (0..per)
            .map(|k| ConfirmedTx {
                tx: ids[k as usize],
                payload: Some((PayloadId(id(first + k, 0x22)), PayloadOutcome::Applied)),
            })
            .collect();
        let mut touched: Vec<(Address, Account)> = (first..first + per)
            .flat_map(|i| [i % accounts, (i * 7 + 1) % accounts])
            .map(|a| {
                (
                    addr_of[a as usize],
                    Account {
                        balance: m as u64,
                        next_seq: m as u64,
                    },
                )
            })
            .collect();
        touched.sort_by_key(|a| a.0);
        touched.dedup_by_key(|a| a.0);
        s.apply_milestone(&MilestoneBatch {
            record: MilestoneRecord {
                index: m,
                tx: ids[0],
                timestamp: m as u64,
                ledger_digest: Digest([m as u8; 32]),
            },
            confirmed,
            diff: LedgerDiff {
                accounts: touched,
                ..LedgerDiff::default()
            },
        })
        .unwrap();
        s.flush().unwrap();
        if u64::from(m) > keep {
            let pm = m - keep as u32;
            let f = u64::from(pm - 1) * per;
            s.prune(&PruneBatch {
                milestone: pm,
                txs: (f..f + per).map(|i| TxId(id(i, 0x11))).collect(),
                entry_points: (0..eps).map(|e| (TxId(id(f + e, 0x11)), pm)).collect(),
            })
            .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(env("GROWTH_SLEEP_MS", 0)));
        if m % env("GROWTH_EVERY", 100) as u32 == 0 {
            let db = std::fs::metadata(dir.join("db"))
                .map(|m| m.len())
                .unwrap_or(0);
            eprintln!(
                "m {m} txs {n} t {:.1}s sled-db {:.1} MB blobs {:.1} MB ({} files) dir {:.1} MB",
                t0.elapsed().as_secs_f64(),
                db as f64 / 1e6,
                dir_size(&dir.join("blobs")) as f64 / 1e6,
                std::fs::read_dir(dir.join("blobs"))
                    .map(|r| r.count())
                    .unwrap_or(0),
                dir_size(&dir) as f64 / 1e6
            );
        }
    }
    drop(s);
    let t = std::time::Instant::now();
    let s = SledStore::open(&dir).unwrap();
    eprintln!(
        "reopen {:?} size_on_disk {}",
        t.elapsed(),
        s.size_on_disk().unwrap()
    );
    drop(s);
    // The keys left, per prefix (count, value bytes): what pruning did not delete. sled
    // lets go of its lock when its last background write ends: retry a moment.
    let db = (0..50)
        .find_map(|_| {
            let db = sled::Config::new().path(&dir).open().ok();
            if db.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            db
        })
        .expect("opening sled");
    let tree = db.open_tree(node::store::layout::TREE).unwrap();
    let mut keys = std::collections::BTreeMap::new();
    for item in tree.iter() {
        let (k, v) = item.unwrap();
        let e = keys.entry(k[0] as char).or_insert((0u64, 0u64));
        e.0 += 1;
        e.1 += v.len() as u64;
    }
    eprintln!("keys per prefix (count, value bytes): {keys:?}");
    let checkpoint = std::fs::metadata(dir.join(node::store::layout::ACCOUNTS_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!("account checkpoint {:.1} MB", checkpoint as f64 / 1e6);
}
