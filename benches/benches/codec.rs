//! Decode + id of signed `Pay` transactions on one core. Target: at least 1M tx/s.
//!
//! `cargo bench -p benches --bench codec -- --warm-up-time 1 --measurement-time 3`

use std::time::Instant;

use benches::{bench_genesis, signed_pay_encodings};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dag_core::codec::{decode, decode_with_id, encode, id_of_encoding};

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

    // A plain figure for BENCHMARKS.md, measured outside criterion's statistics.
    let rounds = 50;
    let start = Instant::now();
    for _ in 0..rounds {
        for bytes in &items {
            black_box(decode_with_id(black_box(bytes)).unwrap());
        }
    }
    let rate = (rounds * N) as f64 / start.elapsed().as_secs_f64();
    println!(
        "codec/decode_with_id: {rate:.0} tx/s on one core ({avg}-byte signed Pay, target 1000000)"
    );
}

criterion_group!(benches, codec);
criterion_main!(benches);
