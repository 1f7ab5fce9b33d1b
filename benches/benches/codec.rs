//! Decode + id of signed `Pay` transactions on one core. Target: at least 1M tx/s.
//!
//! `cargo bench -p benches --bench codec -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // `criterion_group!` generates an undocumented pub fn.

use std::time::Instant;

use benches::{bench_genesis, signed_pay_encodings, thread_cpu_ns};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dag_core::codec::{decode, decode_via_serde, decode_with_id, encode, id_of_encoding};

const N: usize = 4096;

fn codec(c: &mut Criterion) {
    let network_id = bench_genesis(0).network_id();
    let items = signed_pay_encodings(N, 300, network_id, 1);
    let txs: Vec<_> = items.iter().map(|b| decode(b).unwrap()).collect();
    let avg = items.iter().map(Vec::len).sum::<usize>() / N;

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function(BenchmarkId::new("decode_with_id", format!("{avg}B")), |b| {
        b.iter(|| {
            for bytes in &items {
                black_box(decode_with_id(black_box(bytes)).unwrap());
            }
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            for bytes in &items {
                black_box(decode(black_box(bytes)).unwrap());
            }
        })
    });
    g.bench_function("decode_via_serde", |b| {
        b.iter(|| {
            for bytes in &items {
                black_box(decode_via_serde(black_box(bytes)).unwrap());
            }
        })
    });
    g.bench_function("id_of_encoding", |b| {
        b.iter(|| {
            for bytes in &items {
                black_box(id_of_encoding(black_box(bytes)));
            }
        })
    });
    g.bench_function("encode", |b| {
        b.iter(|| {
            for tx in &txs {
                black_box(encode(black_box(tx)));
            }
        })
    });
    g.finish();

    // Median of 7 rounds, by wall clock and by this thread's CPU time (the machine is shared,
    // so wall time includes time other processes held the core).
    let rounds = 25;
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..7 {
        let (start, cpu_start) = (Instant::now(), thread_cpu_ns());
        for _ in 0..rounds {
            for bytes in &items {
                black_box(decode_with_id(black_box(bytes)).unwrap());
            }
        }
        let n = (rounds * N) as f64;
        wall.push(n / start.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_start, thread_cpu_ns()) {
            cpu.push(n / ((b - a) as f64 * 1e-9));
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    println!(
        "codec/decode_with_id ({avg}-byte signed Pay, one core, target 1000000 tx/s): \
         median {:.0} tx/s wall clock, {:.0} tx/s per CPU-second",
        median(&mut wall),
        median(&mut cpu)
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
