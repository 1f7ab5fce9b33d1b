//! Batch validation of signed `Pay` transactions (PoW difficulty 0, 300 issuers) on rayon
//! pools of 1 and 2 threads, next to the raw `ed25519_dalek::verify_batch` rate over the same
//! messages at batch sizes 256, 512 (the chunk size the validator picks for 4096 inputs) and
//! 1024. Target: validation at least 80% of raw.
//!
//! `cargo bench -p benches --bench validation -- --warm-up-time 1 --measurement-time 3`
//!
//! Besides criterion's figures, it prints a median rate for each case (7 timed rounds after
//! one warm-up), by wall clock and per CPU-second of the process, and the validation/raw ratio.

#![allow(missing_docs)] // `criterion_group!` generates an undocumented pub fn.

use std::time::Instant;

use benches::{bench_genesis, process_cpu_ns, signed_pay_transactions, BENCH_NOW_MS};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dag_core::{crypto, BatchValidator, Payload, Transaction, ValidationParams};
use ed25519_dalek::{Signature, VerifyingKey};
use rayon::prelude::*;
use rayon::ThreadPool;

const N: usize = 4096;
const ISSUERS: usize = 300;
const THREADS: [usize; 2] = [1, 2];
/// 256 and 1024 bracket the rate; 512 is the chunk size `validate_batch` uses for this input.
const RAW_BATCH_SIZES: [usize; 3] = [256, 512, 1024];

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

/// Median items/s of `f` (which handles `N` items) over 7 timed rounds after a warm-up: by
/// wall clock, and per CPU-second of the whole process (the machine is shared, so wall time
/// includes time other processes held the cores).
fn median_rate(mut f: impl FnMut()) -> (f64, f64) {
    f();
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..7 {
        let (start, cpu_start) = (Instant::now(), process_cpu_ns());
        f();
        wall.push(N as f64 / start.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_start, process_cpu_ns()) {
            cpu.push(N as f64 / ((b - a) as f64 * 1e-9));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    (median(&mut wall), median(&mut cpu))
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
        let (valid, valid_cpu) = median_rate(|| {
            pool.install(|| black_box(validator.validate_batch(&items, BENCH_NOW_MS)));
        });
        println!(
            "  {threads} thread(s): validate_batch         {valid:>7.0} tx/s  ({valid_cpu:>6.0} per CPU-second)"
        );
        for size in RAW_BATCH_SIZES {
            let (r, r_cpu) = median_rate(|| pool.install(|| raw.verify(size)));
            println!(
                "  {threads} thread(s): raw verify_batch({size:>4}) {r:>7.0} sig/s ({r_cpu:>6.0} per CPU-second) \
                 -> validation is {:.0}% of raw by wall clock, {:.0}% per CPU-second",
                100.0 * valid / r,
                100.0 * valid_cpu / r_cpu
            );
        }
    }
}

criterion_group!(benches, validation);
criterion_main!(benches);
