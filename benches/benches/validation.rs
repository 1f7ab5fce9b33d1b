//! Batch validation of signed `Pay` transactions (PoW difficulty 0, 300 issuers) on rayon
//! pools of 1 and 2 threads, next to the raw `ed25519_dalek::verify_batch` rate over the same
//! messages at batch sizes 256, 512 (the chunk size the validator picks for 4096 inputs) and
//! 1024. Target: validation at least 80% of raw.
//!
//! `cargo bench -p benches --bench validation -- --warm-up-time 1 --measurement-time 3`
//!
//! Besides criterion's figures, it prints median rates (by wall clock and per CPU-second of the
//! process) and the median validation/raw ratio of 9 paired rounds.

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

/// Items/s of one run of `f` (which handles `N` items): by wall clock, and per CPU-second of
/// the whole process.
fn rate(f: &mut dyn FnMut()) -> (f64, f64) {
    let (start, cpu_start) = (Instant::now(), process_cpu_ns());
    f();
    let wall = N as f64 / start.elapsed().as_secs_f64();
    let cpu = match (cpu_start, process_cpu_ns()) {
        (Some(a), Some(b)) => N as f64 / ((b - a) as f64 * 1e-9),
        _ => f64::NAN,
    };
    (wall, cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Paired measurement: 9 rounds, each timing every case back to back, so validation and raw
/// see the same load from other processes (the machine is shared); prints median rates and
/// the median of the per-round ratios.
fn paired(threads: usize, validate: &mut dyn FnMut(), raw: &mut [(usize, &mut dyn FnMut())]) {
    validate();
    let mut valid = Vec::new();
    // Per raw case, per round: (validation rate, raw rate), each (wall, per CPU-second).
    type Rates = (f64, f64);
    let mut raws: Vec<Vec<(Rates, Rates)>> = vec![Vec::new(); raw.len()];
    for _ in 0..9 {
        let v = rate(validate);
        valid.push(v);
        for (k, (_, f)) in raw.iter_mut().enumerate() {
            raws[k].push((v, rate(*f)));
        }
    }
    println!(
        "  {threads} thread(s): validate_batch         {:>7.0} tx/s  ({:>6.0} per CPU-second)",
        median(valid.iter().map(|v| v.0).collect()),
        median(valid.iter().map(|v| v.1).collect()),
    );
    for ((size, _), rounds) in raw.iter().zip(raws) {
        println!(
            "  {threads} thread(s): raw verify_batch({size:>4}) {:>7.0} sig/s ({:>6.0} per CPU-second) \
             -> validation/raw median ratio {:.0}% wall clock, {:.0}% per CPU-second",
            median(rounds.iter().map(|r| r.1 .0).collect()),
            median(rounds.iter().map(|r| r.1 .1).collect()),
            100.0 * median(rounds.iter().map(|r| r.0 .0 / r.1 .0).collect()),
            100.0 * median(rounds.iter().map(|r| r.0 .1 / r.1 .1).collect()),
        );
    }
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
        let mut validate = || {
            pool.install(|| black_box(validator.validate_batch(&items, BENCH_NOW_MS)));
        };
        let mut r256 = || pool.install(|| raw.verify(256));
        let mut r512 = || pool.install(|| raw.verify(512));
        let mut r1024 = || pool.install(|| raw.verify(1024));
        paired(
            threads,
            &mut validate,
            &mut [(256, &mut r256), (512, &mut r512), (1024, &mut r1024)],
        );
    }
}

criterion_group!(benches, validation);
criterion_main!(benches);
