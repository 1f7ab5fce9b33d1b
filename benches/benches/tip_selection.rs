//! Criterion suite `tip_selection`: URTS, restricted URTS and the weighted random walk on
//! Tangles of 10k, 100k and 1M transactions.
//!
//! The Tangle grows at a steady Poisson arrival rate (lambda = 100 transactions per time
//! unit of 1000 ticks); each new transaction selects its parents with URTS among the
//! transactions visible at issue time and becomes visible one time unit later (visibility
//! delay h = 1 unit, about 200 tips). One Tangle is grown once per process: the 10k figures
//! are taken when it reaches 10k transactions, then it grows on to 100k and 1M.
//!
//! Walk figures include the walk's share of weight maintenance: every run of 100 timed
//! selections starts from a clone (untimed) of a walker last synchronised 100 arrivals
//! earlier, so the first selection of the run processes those 100 arrivals; the time is
//! reported per selection (one arrival per selection, as in steady state).
//!
//! Run: `cargo bench -p benches --bench tip_selection -- --warm-up-time 1 --measurement-time 3`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dag_core::crypto::blake2b256;
use dag_core::{InsertOutcome, Tangle, TangleConfig, TangleView, TxId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tip_selection::{RestrictedUrts, TipSelector, Urts, WalkConfig, WeightedWalk};

/// Ticks per time unit.
const UNIT: u64 = 1000;
/// Arrivals per time unit.
const LAMBDA: f64 = 100.0;
/// Visibility delay, in ticks.
const DELAY: u64 = UNIT;
/// Arrivals processed (and selections made) per measured walk batch.
const BATCH: usize = 100;

/// A Tangle grown by URTS with a visibility delay.
struct Growth {
    tangle: Tangle,
    now: u64,
    counter: u64,
    in_flight: VecDeque<(u64, TxId, [TxId; 2])>,
    rng: ChaCha8Rng,
}

impl Growth {
    fn new(capacity: usize) -> Self {
        Growth {
            tangle: Tangle::new(TangleConfig {
                initial_capacity: capacity,
                ..TangleConfig::default()
            }),
            now: 0,
            counter: 0,
            in_flight: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(0x7469_7073),
        }
    }

    /// Issues transactions until the Tangle holds `n` visible ones.
    fn grow_to(&mut self, n: usize) {
        while self.tangle.len() < n {
            let u: f64 = self.rng.gen_range(f64::EPSILON..1.0);
            self.now += (-u.ln() * UNIT as f64 / LAMBDA).round() as u64;
            while self.in_flight.front().is_some_and(|f| f.0 <= self.now) {
                let (at, id, parents) = self.in_flight.pop_front().expect("front");
                let outcome = self.tangle.insert(id, parents, None, at).expect("insert");
                assert!(matches!(outcome, InsertOutcome::Solid(_)));
                if self.tangle.len() >= n {
                    return;
                }
            }
            let [a, b] = Urts
                .select(&self.tangle, self.now, &mut self.rng)
                .expect("select");
            self.counter += 1;
            let id = TxId(blake2b256(&self.counter.to_le_bytes()));
            let parents = [self.tangle.id(a), self.tangle.id(b)];
            self.in_flight.push_back((self.now + DELAY, id, parents));
        }
    }
}

fn label(n: usize) -> String {
    match n {
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n => format!("{}k", n / 1000),
    }
}

fn tip_selection(c: &mut Criterion) {
    let sizes = [10_000usize, 100_000, 1_000_000];
    let alphas = [0.01f64, 0.5];
    let mut growth = Growth::new(sizes[sizes.len() - 1] + 1024);
    let mut group = c.benchmark_group("tip_selection");
    for &n in &sizes {
        // Walkers synchronised BATCH arrivals before the measured size.
        growth.grow_to(n - BATCH);
        let behind: Vec<WeightedWalk> = alphas
            .iter()
            .map(|&alpha| {
                let mut w = WeightedWalk::new(WalkConfig::with_alpha(alpha));
                w.update(&growth.tangle);
                w
            })
            .collect();
        growth.grow_to(n);
        let tangle = &growth.tangle;
        let now = tangle.arrival(tangle.newest());
        let size = label(n);
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64);

        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("urts/{size}"), |b| {
            b.iter(|| black_box(Urts.select(tangle, now, &mut rng).expect("select")))
        });
        let mut restricted = RestrictedUrts::default();
        group.bench_function(format!("restricted_urts/{size}"), |b| {
            b.iter(|| black_box(restricted.select(tangle, now, &mut rng).expect("select")))
        });

        for (walker, alpha) in behind.iter().zip(alphas) {
            group.bench_function(format!("walk_alpha_{alpha}/{size}"), |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    let mut done = 0;
                    while done < iters {
                        // Untimed: a walker that has not seen the last BATCH arrivals.
                        let mut w = walker.clone();
                        let k = (iters - done).min(BATCH as u64);
                        let start = Instant::now();
                        for _ in 0..k {
                            black_box(w.select(tangle, now, &mut rng).expect("select"));
                        }
                        total += start.elapsed();
                        done += k;
                    }
                    total
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, tip_selection);
criterion_main!(benches);
