//! `SledStore`: durable `put_transactions` throughput and bytes on disk per transaction.
//!
//! `cargo bench -p benches --bench store -- --warm-up-time 1 --measurement-time 3`
//!
//! - `store/put_flush/{durability}/{batch}`: one `put_transactions` of `batch` 250-byte
//!   transactions (each carrying its own payload, as payments do), then `flush`; the
//!   throughput is durable transactions per second. `power_loss` adds the fsync step to
//!   sled's flush, `process_crash` is sled's flush alone: the difference is what the fsync
//!   step costs.
//! - `store/put_only/512`: the same without the flush: what sled's inserts cost.
//! - `store/concurrent_singles/power_loss/8x16`: 8 threads each storing one transaction and
//!   flushing, 16 times: what group commit gives to many concurrent single submissions.
//! - `store/node_cycle/{durability}/512`: what the node does per round: one
//!   `put_transactions` of 512 transactions the size of an encoded signed payment, each with
//!   its own payload, then `flush`; then one `apply_milestone` confirming all 512 (outcome
//!   applied; the ledger diff rewrites 512 sender accounts, out of 100,000 funded at genesis,
//!   and 16 payee accounts), then
//!   `flush`.
//! - Printed before the criterion runs, `store/node_cycle_report/{durability}`: 200 such
//!   rounds (after 20 warm-up rounds) on a fresh store: median round as payments/s, and the
//!   CPU time per payment (user + system) of the process (sled's background threads
//!   included), which is what competes with signature verification for the machine's 2
//!   cores, and of the calling thread alone. Set `STORE_BENCH_SKIP_CYCLE_REPORT=1` to
//!   skip it.
//! - Printed before the criterion runs: bytes on disk per transaction after storing 100,000
//!   (in batches of 512) and after confirming them all by milestones (sum of file sizes in
//!   the database directory, apparent and allocated, / 100,000). Set
//!   `STORE_BENCH_SKIP_SIZE=1` to skip it.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use dag_core::store::{ConfirmedTx, MilestoneBatch, MilestoneRecord, Store, TxEntry, TxMeta};
use dag_core::{
    Account, Address, Body, Digest, Keypair, LedgerDiff, LedgerState, Payload, PayloadId,
    PayloadOutcome, SignedPayload, Transaction, TxId,
};
use node::store::{Durability, SledStore};

const TX_LEN: usize = 250;

/// Transaction number `i`: unique id, payload id and bytes.
fn tx(i: u64) -> (TxId, PayloadId, Vec<u8>) {
    let mut id = [0x17u8; 32];
    // Spread ids over the key space as hashes are (multiplying by an odd constant is a
    // bijection of u64, so ids stay unique).
    id[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    let mut pid = id;
    pid[31] = 0x99;
    let mut bytes = vec![0x5au8; TX_LEN];
    bytes[..8].copy_from_slice(&i.to_le_bytes());
    (TxId(id), PayloadId(pid), bytes)
}

fn batch(next: &AtomicU64, n: usize) -> Vec<(TxId, PayloadId, Vec<u8>)> {
    let start = next.fetch_add(n as u64, Ordering::Relaxed);
    (start..start + n as u64).map(tx).collect()
}

fn put(store: &SledStore, txs: &[(TxId, PayloadId, Vec<u8>)]) {
    let entries: Vec<_> = txs
        .iter()
        .map(|(id, pid, bytes)| TxEntry {
            id: *id,
            bytes,
            meta: TxMeta::new(1_700_000_000_000, true, Some(*pid)),
        })
        .collect();
    assert_eq!(store.put_transactions(&entries).unwrap(), txs.len());
}

fn put_flush(c: &mut Criterion) {
    let mut g = c.benchmark_group("store/put_flush");
    for (name, durability) in [
        ("power_loss", Durability::PowerLoss),
        ("process_crash", Durability::ProcessCrash),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_with(dir.path(), durability).unwrap();
        let next = AtomicU64::new(0);
        for n in [1usize, 64, 512] {
            g.throughput(Throughput::Elements(n as u64));
            g.bench_function(BenchmarkId::new(name, n), |b| {
                b.iter_batched(
                    || batch(&next, n),
                    |txs| {
                        put(&store, &txs);
                        store.flush().unwrap();
                    },
                    BatchSize::SmallInput,
                )
            });
        }
    }
    g.finish();
}

fn put_only(c: &mut Criterion) {
    let mut g = c.benchmark_group("store/put_only");
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let next = AtomicU64::new(0);
    const N: usize = 512;
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::from_parameter(N), |b| {
        b.iter_batched(
            || batch(&next, N),
            |txs| put(&store, &txs),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn concurrent_singles(c: &mut Criterion) {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 16;
    let mut g = c.benchmark_group("store/concurrent_singles");
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let next = AtomicU64::new(0);
    g.throughput(Throughput::Elements((THREADS * PER_THREAD) as u64));
    g.bench_function(
        BenchmarkId::new("power_loss", format!("{THREADS}x{PER_THREAD}")),
        |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..THREADS {
                        s.spawn(|| {
                            for _ in 0..iters as usize * PER_THREAD {
                                put(&store, &batch(&next, 1));
                                store.flush().unwrap();
                            }
                        });
                    }
                });
                start.elapsed()
            })
        },
    );
    let calls = next.load(Ordering::Relaxed);
    println!(
        "store/concurrent_singles: {calls} flush calls, {} physical flushes",
        store.physical_flushes()
    );
    g.finish();
}

/// (apparent bytes, allocated bytes) of every file under `dir`.
fn dir_size(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            let (a, b) = dir_size(&entry.path());
            total = (total.0 + a, total.1 + b);
        } else {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

fn bytes_per_tx() {
    const N: u64 = 100_000;
    const BATCH: u64 = 512;
    const PER_MILESTONE: u64 = 10_000;
    let dir = tempfile::tempdir().unwrap();
    let report = |what: &str, took: Duration| {
        let (apparent, allocated) = dir_size(dir.path());
        println!(
            "store/bytes_per_tx {what}: {:.0} B apparent, {:.0} B allocated per {TX_LEN}-byte \
             transaction ({N} txs, {:.1} MiB allocated, took {took:.2?})",
            apparent as f64 / N as f64,
            allocated as f64 / N as f64,
            allocated as f64 / (1 << 20) as f64,
        );
    };
    let store = SledStore::open(dir.path()).unwrap();
    let t = Instant::now();
    let mut i = 0;
    while i < N {
        let txs: Vec<_> = (i..(i + BATCH).min(N)).map(tx).collect();
        put(&store, &txs);
        store.flush().unwrap();
        i += BATCH;
    }
    report("stored", t.elapsed());

    store
        .init_ledger(&LedgerState {
            rotations: Vec::new(),
            network_id: 1,
            supply: 0,
            confirmed_index: 0,
            digest: Digest([0; 32]),
            accounts: vec![],
            channels: vec![],
        })
        .unwrap();
    let t = Instant::now();
    for m in 0..N / PER_MILESTONE {
        let confirmed = (m * PER_MILESTONE..(m + 1) * PER_MILESTONE)
            .map(|i| {
                let (id, pid, _) = tx(i);
                ConfirmedTx {
                    tx: id,
                    payload: Some((pid, PayloadOutcome::Applied)),
                }
            })
            .collect();
        let index = m as u32 + 1;
        store
            .apply_milestone(&MilestoneBatch {
                record: MilestoneRecord {
                    index,
                    tx: tx(m).0,
                    timestamp: u64::from(index),
                    ledger_digest: Digest([index as u8; 32]),
                },
                confirmed,
                diff: LedgerDiff::default(),
            })
            .unwrap();
        store.flush().unwrap();
    }
    report("confirmed", t.elapsed());
    drop(store);
    let t = Instant::now();
    let store = SledStore::open(dir.path()).unwrap();
    let mut n = 0u64;
    store.for_each_transaction(&mut |_, _, _| n += 1).unwrap();
    assert_eq!(n, N);
    report("reopened and reloaded", t.elapsed());
}

/// Length of an encoded transaction carrying a signed payment with an 8-byte memo.
fn signed_pay_len() -> usize {
    let key = Keypair::from_seed(&[7; 32]);
    let payload = SignedPayload::sign(
        &key,
        1,
        3,
        Body::Pay {
            to: Address([9; 32]),
            amount: 1_000,
            memo: b"kwh-0042".to_vec(),
        },
    );
    let t = Transaction {
        version: dag_core::TX_VERSION,
        network_id: 1,
        parents: [TxId([1; 32]), TxId([2; 32])],
        timestamp: 1_700_000_000_000,
        payload: Payload::Signed(payload),
        nonce: 12_345,
    };
    dag_core::codec::encode(&t).len()
}

/// CPU time (user + system) from a `/proc` stat file, in clock ticks of 10 ms (`CLK_TCK`
/// is 100 on Linux): `/proc/self/stat` for the process (all threads, sled's background
/// threads included), `/proc/thread-self/stat` for the calling thread.
fn cpu_time(stat_file: &str) -> Duration {
    let stat = std::fs::read_to_string(stat_file).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// The node's store work, one round at a time (see the module docs).
struct NodeCycle {
    store: SledStore,
    dir: tempfile::TempDir,
    next: AtomicU64,
    index: u32,
    len: usize,
    /// Process and calling-thread CPU time spent in rounds so far, and payments done.
    cpu: Duration,
    thread_cpu: Duration,
    payments: u64,
}

impl NodeCycle {
    const N: usize = 512;
    const PAYEES: u64 = 16;
    const DEVICES: u64 = 100_000;

    /// Sender addresses spread over the key space as public keys are.
    fn device(d: u64) -> Address {
        let mut a = [0u8; 32];
        a[..8].copy_from_slice(&d.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
        a[31] = 1;
        Address(a)
    }

    fn new(durability: Durability) -> NodeCycle {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open_with(dir.path(), durability).unwrap();
        // The devices exist from genesis, as in `node-bench`: confirming a payment rewrites
        // its sender's account rather than adding one.
        store
            .init_ledger(&LedgerState {
                rotations: Vec::new(),
                network_id: 1,
                supply: 0,
                confirmed_index: 0,
                digest: Digest([0; 32]),
                accounts: (0..Self::DEVICES)
                    .map(|d| (Self::device(d), Account::default()))
                    .collect(),
                channels: vec![],
            })
            .unwrap();
        store.flush().unwrap();
        NodeCycle {
            store,
            dir,
            next: AtomicU64::new(0),
            index: 0,
            len: signed_pay_len(),
            cpu: Duration::ZERO,
            thread_cpu: Duration::ZERO,
            payments: 0,
        }
    }

    /// One round; returns the wall time of the store calls.
    fn round(&mut self) -> Duration {
        let n = Self::N;
        let first = self.next.load(Ordering::Relaxed);
        let mut txs = batch(&self.next, n);
        for t in &mut txs {
            t.2.resize(self.len, 0x5a);
        }
        let mut accounts: Vec<(Address, Account)> = (first..first + n as u64)
            .map(|i| (Self::device(i % Self::DEVICES), Account::default()))
            .chain((0..Self::PAYEES).map(|p| (Address([p as u8; 32]), Account::default())))
            .collect();
        accounts.sort_by_key(|a| a.0);
        self.index += 1;
        let index = self.index;
        let confirm = MilestoneBatch {
            record: MilestoneRecord {
                index,
                tx: txs[0].0,
                timestamp: u64::from(index),
                ledger_digest: Digest([index as u8; 32]),
            },
            confirmed: txs
                .iter()
                .map(|(id, pid, _)| ConfirmedTx {
                    tx: *id,
                    payload: Some((*pid, PayloadOutcome::Applied)),
                })
                .collect(),
            diff: LedgerDiff {
                rotation: None,
                accounts,
                channels: vec![],
            },
        };
        let (t, c0, tc0) = (
            Instant::now(),
            cpu_time("/proc/self/stat"),
            cpu_time("/proc/thread-self/stat"),
        );
        put(&self.store, &txs);
        self.store.flush().unwrap();
        self.store.apply_milestone(&confirm).unwrap();
        self.store.flush().unwrap();
        let wall = t.elapsed();
        self.cpu += cpu_time("/proc/self/stat") - c0;
        self.thread_cpu += cpu_time("/proc/thread-self/stat") - tc0;
        self.payments += n as u64;
        wall
    }
}

/// A fixed number of node rounds per durability on a fresh store, so that figures compare
/// across runs (criterion varies the number of rounds, and the cost per key grows with the
/// size of the tree).
fn node_cycle_report() {
    const WARM: usize = 20;
    const ROUNDS: usize = 200;
    for (name, durability) in [
        ("power_loss", Durability::PowerLoss),
        ("process_crash", Durability::ProcessCrash),
    ] {
        let mut c = NodeCycle::new(durability);
        for _ in 0..WARM {
            c.round();
        }
        (c.cpu, c.thread_cpu, c.payments) = (Duration::ZERO, Duration::ZERO, 0);
        let mut walls: Vec<Duration> = (0..ROUNDS).map(|_| c.round()).collect();
        walls.sort();
        let median = walls[ROUNDS / 2];
        let per = |d: Duration| d.as_secs_f64() * 1e6 / c.payments as f64;
        println!(
            "store/node_cycle_report/{name}: {} rounds of {} ({}-byte txs): median round \
             {median:.2?} = {:.0} payments/s; CPU per payment {:.1} us (process), {:.1} us \
             (calling thread); {:.0} B on disk per transaction",
            ROUNDS,
            NodeCycle::N,
            c.len,
            NodeCycle::N as f64 / median.as_secs_f64(),
            per(c.cpu),
            per(c.thread_cpu),
            dir_size(c.dir.path()).1 as f64 / c.next.load(Ordering::Relaxed) as f64,
        );
    }
}

fn node_cycle(c: &mut Criterion) {
    let mut g = c.benchmark_group("store/node_cycle");
    g.throughput(Throughput::Elements(NodeCycle::N as u64));
    for (name, durability) in [
        ("power_loss", Durability::PowerLoss),
        ("process_crash", Durability::ProcessCrash),
    ] {
        let mut cycle = NodeCycle::new(durability);
        g.bench_function(BenchmarkId::new(name, NodeCycle::N), |b| {
            b.iter_custom(|iters| (0..iters).map(|_| cycle.round()).sum())
        });
    }
    g.finish();
}

fn main() {
    // The size report takes a few seconds; skip it when only timing something.
    if std::env::var_os("STORE_BENCH_SKIP_SIZE").is_none() {
        bytes_per_tx();
    }
    if std::env::var_os("STORE_BENCH_SKIP_CYCLE_REPORT").is_none() {
        node_cycle_report();
    }
    let mut c = Criterion::default().configure_from_args();
    node_cycle(&mut c);
    put_flush(&mut c);
    put_only(&mut c);
    concurrent_singles(&mut c);
    c.final_summary();
}
