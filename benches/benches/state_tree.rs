//! The ledger's sparse Merkle state tree (`dag_core::state_tree`) at 1M entries: one
//! milestone's batch of 10k and of 60k updates (60k = 30,000 payments/s for a one-second
//! milestone, two accounts touched each), the same 10k applied one by one for comparison,
//! and proof generation and verification.
//!
//! `cargo bench -p benches --bench state_tree -- --warm-up-time 1 --measurement-time 3`
//!
//! `apply_20k_of_20k` is the shape of `node-bench --spawn`: 20,000 accounts, nearly all of
//! them touched by each milestone.
//!
//! The batches rewrite existing entries (new balances of existing accounts), so the tree stays
//! at 1M; the `mixed` batch also inserts 5% new keys and deletes as many existing ones.
//! After criterion, a plain median of 11 runs per batch size is printed by wall clock and by
//! this thread's CPU time (the machine may be shared).

#![allow(missing_docs)] // `criterion_group!` generates an undocumented pub fn.

use std::time::Instant;

use benches::thread_cpu_ns;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dag_core::state_tree::{key_of, value_hash, StateTree, Update, ACCOUNT_TAG};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const ENTRIES: u64 = 1_000_000;

/// The key of account number `i`.
fn account_key(i: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[..8].copy_from_slice(&i.to_le_bytes());
    key_of(ACCOUNT_TAG, &id)
}

/// The value hash of a (balance, next_seq) account state.
fn account_value(balance: u64, seq: u64) -> [u8; 32] {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&balance.to_le_bytes());
    bytes[8..].copy_from_slice(&seq.to_le_bytes());
    value_hash(&bytes)
}

/// `n` updates of random existing accounts (`0..ENTRIES`) to fresh values.
fn rewrites(rng: &mut ChaCha20Rng, n: usize) -> Vec<Update> {
    (0..n)
        .map(|_| {
            let i = rng.gen_range(0..ENTRIES);
            (account_key(i), Some(account_value(rng.gen(), i)))
        })
        .collect()
}

/// Keys present in the `mixed` benchmark's tree, so that its batches delete existing keys
/// and insert new ones while the size stays at `ENTRIES`.
struct Population {
    present: Vec<u64>,
    next: u64,
}

impl Population {
    /// 90% rewrites, 5% inserts of new accounts, 5% deletes of existing ones.
    fn mixed(&mut self, rng: &mut ChaCha20Rng, n: usize) -> Vec<Update> {
        let mut out = Vec::with_capacity(n);
        for j in 0..n {
            let pick = rng.gen_range(0..self.present.len());
            match j % 20 {
                0 => {
                    let gone = self.present.swap_remove(pick);
                    out.push((account_key(gone), None));
                }
                1 => {
                    self.present.push(self.next);
                    out.push((account_key(self.next), Some(account_value(1, 0))));
                    self.next += 1;
                }
                _ => {
                    let i = self.present[pick];
                    out.push((account_key(i), Some(account_value(rng.gen(), i))));
                }
            }
        }
        out
    }
}

fn state_tree(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let mut tree = StateTree::new();
    let start = Instant::now();
    let mut all: Vec<Update> = (0..ENTRIES)
        .map(|i| (account_key(i), Some(account_value(1_000, 0))))
        .collect();
    tree.apply(&mut all);
    drop(all);
    println!(
        "state_tree: built {} entries in one batch in {:.2} s; {:.1} heap bytes per entry",
        tree.len(),
        start.elapsed().as_secs_f64(),
        tree.heap_bytes() as f64 / tree.len() as f64
    );

    let mut g = c.benchmark_group("state_tree");
    g.sample_size(10);
    for n in [10_000usize, 60_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("apply_{}k_of_1M", n / 1000), |b| {
            b.iter_batched(
                || rewrites(&mut rng, n),
                |mut ups| tree.apply(&mut ups),
                BatchSize::LargeInput,
            )
        });
    }
    {
        let n = 10_000;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("update_10k_one_by_one_of_1M", |b| {
            b.iter_batched(
                || rewrites(&mut rng, n),
                |ups| {
                    for (k, v) in ups {
                        tree.update(k, v);
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    {
        let n = 60_000;
        let mut mixed_tree = tree.clone();
        let mut pop = Population {
            present: (0..ENTRIES).collect(),
            next: ENTRIES,
        };
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function("apply_60k_mixed_of_1M", |b| {
            b.iter_batched(
                || pop.mixed(&mut rng, n),
                |mut ups| mixed_tree.apply(&mut ups),
                BatchSize::LargeInput,
            )
        });
        assert_eq!(mixed_tree.len(), ENTRIES as usize);
    }

    {
        // The shape of `node-bench --spawn` (20,000 genesis accounts paying each other): a
        // milestone rewrites nearly every entry of a small tree, so all of it is rehashed.
        let n = 20_000u64;
        let mut small = StateTree::new();
        small.apply(
            &mut (0..n)
                .map(|i| (account_key(i), Some(account_value(1_000, 0))))
                .collect::<Vec<_>>(),
        );
        g.throughput(Throughput::Elements(n));
        g.bench_function("apply_20k_of_20k", |b| {
            b.iter_batched(
                || {
                    (0..n)
                        .map(|i| (account_key(i), Some(account_value(rng.gen(), i))))
                        .collect::<Vec<_>>()
                },
                |mut ups| small.apply(&mut ups),
                BatchSize::LargeInput,
            )
        });
    }

    let probes: Vec<[u8; 32]> = (0..1024)
        .map(|j| {
            // Half present accounts, half absent ones.
            let i = rng.gen_range(0..ENTRIES) + if j % 2 == 0 { 0 } else { ENTRIES * 10 };
            account_key(i)
        })
        .collect();
    let root = tree.root();
    let proofs: Vec<_> = probes.iter().map(|k| tree.prove(k)).collect();
    let held: Vec<_> = probes.iter().map(|k| tree.get(k)).collect();
    let depth = proofs.iter().map(|p| p.siblings().len()).sum::<usize>() as f64 / 1024.0;
    let size = proofs
        .iter()
        .map(|p| rmp_serde::to_vec(p).unwrap().len())
        .sum::<usize>() as f64
        / 1024.0;
    println!("state_tree: proofs at 1M entries: {depth:.1} siblings, {size:.0} MessagePack bytes on average");
    g.sample_size(50);
    g.throughput(Throughput::Elements(probes.len() as u64));
    g.bench_function("prove_1024_of_1M", |b| {
        b.iter(|| {
            for k in &probes {
                black_box(tree.prove(black_box(k)));
            }
        })
    });
    g.bench_function("verify_1024_of_1M", |b| {
        b.iter(|| {
            for ((p, k), v) in proofs.iter().zip(&probes).zip(&held) {
                assert!(p.verify(&root, black_box(k), *v));
            }
        })
    });
    g.finish();

    // Plain medians outside criterion's statistics, by wall clock and by CPU time.
    for n in [10_000usize, 60_000] {
        let mut wall = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..11 {
            let mut ups = rewrites(&mut rng, n);
            let (t0, c0) = (Instant::now(), thread_cpu_ns());
            tree.apply(&mut ups);
            wall.push(t0.elapsed().as_secs_f64() * 1e3);
            if let (Some(c0), Some(c1)) = (c0, thread_cpu_ns()) {
                cpu.push((c1 - c0) as f64 / 1e6);
            }
        }
        wall.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        println!(
            "state_tree/apply {}k of 1M: median {:.1} ms wall, {} CPU ({:.0} updates/s by wall clock)",
            n / 1000,
            wall[5],
            cpu.get(5).map_or("n/a".into(), |c| format!("{c:.1} ms")),
            n as f64 / wall[5] * 1e3
        );
    }
}

criterion_group!(benches, state_tree);
criterion_main!(benches);
