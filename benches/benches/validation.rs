//! Batch validation of signed `Pay` transactions (PoW difficulty 0, 300 issuers) on rayon
//! pools of 1 and 2 threads, next to the raw `ed25519_dalek::verify_batch` rate over the same
//! messages at batch sizes 256 and 1024. Target: validation at least 80% of raw.
//!
//! `cargo bench -p benches --bench validation -- --warm-up-time 1 --measurement-time 3`
//!
//! Besides criterion's figures, it prints a median rate for each case (5 timed rounds after
//! one warm-up) and the validation/raw ratio.

use std::time::Instant;

use benches::{bench_genesis, signed_pay_transactions, BENCH_NOW_MS};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dag_core::{crypto, BatchValidator, Payload, Transaction, ValidationParams};
use ed25519_dalek::{Signature, VerifyingKey};
use rayon::prelude::*;
use rayon::ThreadPool;

const N: usize = 4096;
const ISSUERS: usize = 300;
const THREADS: [usize; 2] = [1, 2];
const RAW_BATCH_SIZES: [usize; 2] = [256, 1024];

/// The messages, signatures and decoded keys of the payloads, for the raw baseline.
struct Raw {
    messages: Vec<Vec<u8>>,
    signatures: Vec<Signature>,
    keys: Vec<VerifyingKey>,
}

impl Raw {
    fn new(txs: &[Transaction], network_id: u64) -> Self {
        let signed = txs.iter().map(|tx| match &tx.payload {
            Payload::Signed(p) => p,
            _ => unreachable!("fixtures are signed payments"),
        });
        Raw {
            messages: signed
                .clone()
                .map(|p| p.signing_message(network_id))
                .collect(),
            signatures: signed
                .clone()
                .map(|p| Signature::from_bytes(&p.signature.0))
                .collect(),
            keys: signed
                .map(|p| crypto::verifying_key(&p.issuer).unwrap())
                .collect(),
        }
    }

    /// Verifies everything in batches of `size`, spread over the current pool.
    fn verify(&self, size: usize) {
        let messages: Vec<&[u8]> = self.messages.iter().map(Vec::as_slice).collect();
        messages
            .par_chunks(size)
            .zip(self.signatures.par_chunks(size))
            .zip(self.keys.par_chunks(size))
            .for_each(|((m, s), k)| ed25519_dalek::verify_batch(m, s, k).unwrap());
    }
}

fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// Median items/s of `f` (which handles `N` items) over 5 timed rounds after a warm-up.
fn median_rate(mut f: impl FnMut()) -> f64 {
    f();
    let mut rates: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            f();
            N as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[2]
}

fn validation(c: &mut Criterion) {
    let genesis = bench_genesis(0);
    let network_id = genesis.network_id();
    let txs = signed_pay_transactions(N, ISSUERS, network_id, 7);
    let items: Vec<Vec<u8>> = txs.iter().map(Transaction::to_bytes).collect();
    let raw = Raw::new(&txs, network_id);
    let validator = BatchValidator::new(ValidationParams::new(&genesis).unwrap());
    assert!(validator
        .validate_batch(&items, BENCH_NOW_MS)
        .iter()
        .all(Result::is_ok));

    let mut g = c.benchmark_group("validation");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    for threads in THREADS {
        let pool = pool(threads);
        g.bench_function(format!("validate_batch/{threads}t"), |b| {
            b.iter(|| pool.install(|| black_box(validator.validate_batch(&items, BENCH_NOW_MS))))
        });
        for size in RAW_BATCH_SIZES {
            g.bench_function(format!("raw_verify_batch/{size}/{threads}t"), |b| {
                b.iter(|| pool.install(|| raw.verify(size)))
            });
        }
    }
    g.finish();

    println!("\nmedian rates, {N} signed Pay transactions, {ISSUERS} issuers:");
    for threads in THREADS {
        let pool = pool(threads);
        let valid = median_rate(|| {
            pool.install(|| black_box(validator.validate_batch(&items, BENCH_NOW_MS)));
        });
        println!("  {threads} thread(s): validate_batch {valid:>8.0} tx/s");
        for size in RAW_BATCH_SIZES {
            let r = median_rate(|| pool.install(|| raw.verify(size)));
            println!(
                "  {threads} thread(s): raw verify_batch({size:>4}) {r:>8.0} sig/s -> validation is {:.0}% of raw",
                100.0 * valid / r
            );
        }
    }
}

criterion_group!(benches, validation);
criterion_main!(benches);
