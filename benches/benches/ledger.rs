//! White-flag milestone application on one core: `Ledger::apply_milestone` with 10k `Pay`
//! payloads across 1k accounts. Target: at least 500k payloads/s.
//!
//! `cargo bench -p benches --bench ledger -- --warm-up-time 1 --measurement-time 3`
//!
//! Payload signatures are not part of this path (they are checked on arrival), so the
//! fixture payloads carry dummy signatures.

#![allow(missing_docs)] // `criterion_group!` generates an undocumented pub fn.

use std::time::Instant;

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dag_core::genesis::DEFAULT_TIMESTAMP_WINDOW_MS;
use dag_core::{Address, Allocation, Body, Genesis, Ledger, Signature, SignedPayload, TxId};

const ACCOUNTS: usize = 1_000;
const PAYLOADS: usize = 10_000;

fn addr(i: usize) -> Address {
    let mut a = [0u8; 32];
    a[..8].copy_from_slice(&(i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes());
    a[31] = 0xaa;
    Address(a)
}

fn genesis(accounts: usize) -> Genesis {
    Genesis {
        network_name: "bench-ledger".into(),
        timestamp: 0,
        pow_difficulty: 0,
        timestamp_window_ms: DEFAULT_TIMESTAMP_WINDOW_MS,
        committee: vec![Address([0xc0; 32])],
        threshold: 1,
        allocations: (0..accounts)
            .map(|i| Allocation {
                address: addr(i),
                amount: 1_000_000,
            })
            .collect(),
    }
}

/// `PAYLOADS` payments issued round-robin by the `ACCOUNTS` accounts with consecutive
/// seqs. Every `conflict_every`-th payload (if any) reuses the previous seq of its issuer,
/// so it conflicts as a double spend.
fn payloads(
    accounts: usize,
    n: usize,
    conflict_every: Option<usize>,
) -> Vec<(TxId, SignedPayload)> {
    let mut next = vec![0u64; accounts];
    (0..n)
        .map(|i| {
            let from = i % accounts;
            let replay = conflict_every.is_some_and(|k| i % k == k - 1) && next[from] > 0;
            let seq = if replay { next[from] - 1 } else { next[from] };
            if !replay {
                next[from] += 1;
            }
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(i as u64).to_le_bytes());
            let p = SignedPayload {
                issuer: addr(from),
                seq,
                body: Body::Pay {
                    to: addr((from * 7 + 3 + i / accounts) % accounts),
                    amount: 1 + (i as u64 % 100),
                    memo: (i as u64).to_le_bytes().to_vec(),
                },
                signature: Signature([0; 64]),
            };
            (TxId(id), p)
        })
        .collect()
}

fn ledger(c: &mut Criterion) {
    let base = Ledger::from_genesis(&genesis(ACCOUNTS)).expect("valid genesis");
    let clean = payloads(ACCOUNTS, PAYLOADS, None);
    let mixed = payloads(ACCOUNTS, PAYLOADS, Some(5));
    {
        let mut l = base.clone();
        let out = l
            .apply_milestone(1, clean.iter().map(|(t, p)| (*t, p)))
            .unwrap();
        assert_eq!(out.applied(), PAYLOADS, "fixture payloads all apply");
    }

    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(PAYLOADS as u64));
    for (name, set) in [
        ("apply_10k_pay_1k_accounts", &clean),
        ("apply_10k_pay_20pct_conflicts", &mixed),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || base.clone(),
                |l| {
                    black_box(
                        l.apply_milestone(1, set.iter().map(|(t, p)| (*t, p)))
                            .unwrap(),
                    )
                },
                BatchSize::LargeInput,
            )
        });
    }
    // The shape of a `node-bench --spawn` milestone: 30,000 payments among 20,000
    // accounts, so nearly every account (and state-tree entry) is touched.
    let big_base = Ledger::from_genesis(&genesis(20_000)).expect("valid genesis");
    let big = payloads(20_000, 30_000, None);
    g.throughput(Throughput::Elements(big.len() as u64));
    g.bench_function("apply_30k_pay_20k_accounts", |b| {
        b.iter_batched_ref(
            || big_base.clone(),
            |l| {
                black_box(
                    l.apply_milestone(1, big.iter().map(|(t, p)| (*t, p)))
                        .unwrap(),
                )
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // A plain median for BENCHMARKS.md, outside criterion's statistics: 21 runs of one
    // milestone each on a fresh clone (clone time excluded).
    let mut rates: Vec<f64> = (0..21)
        .map(|_| {
            let mut l = base.clone();
            let start = Instant::now();
            black_box(
                l.apply_milestone(1, clean.iter().map(|(t, p)| (*t, p)))
                    .unwrap(),
            );
            PAYLOADS as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    println!(
        "ledger/apply_milestone: median {:.0} payloads/s on one core (10k Pay, 1k accounts, target 500000)",
        rates[rates.len() / 2]
    );
}

criterion_group!(benches, ledger);
criterion_main!(benches);
