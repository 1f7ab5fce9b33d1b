#![allow(missing_docs)] // `criterion_group!` generates an undocumented pub fn.

//! Channel vouchers on one core: signed per second (payer) and verified per second (payee).
//! Expectation: tens of thousands per second each. Also Pay payloads signed per second by one
//! `Device` (`pay_sign`): the Rust figure the Python package's `Device.pay_batch` is compared
//! with (`python/benches/bench.py sign`).
//!
//! `cargo bench -p benches --bench wallet -- --warm-up-time 1 --measurement-time 3`

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use dag_core::Keypair;
use wallet::{Device, MemVoucherStore, PayeeChannel, PayerChannel, Voucher};

const N: u64 = 256;
const NETWORK: u64 = 0x5eed;

fn vouchers(c: &mut Criterion) {
    let mut ev = Device::new(Keypair::from_seed(&[1; 32]), NETWORK, 0);
    let charger = Keypair::from_seed(&[2; 32]).address();
    let (payer, open) = PayerChannel::open(&mut ev, charger, u64::MAX, 1_000).unwrap();
    let signed: Vec<Voucher> = {
        let mut p = payer.clone();
        (0..N).map(|_| p.voucher(1).unwrap()).collect()
    };
    let encoded: Vec<[u8; Voucher::ENCODED_LEN]> = signed.iter().map(Voucher::to_bytes).collect();

    let mut g = c.benchmark_group("wallet");
    g.throughput(Throughput::Elements(N));
    g.bench_function("voucher_sign", |b| {
        b.iter(|| {
            let mut p = payer.clone();
            for _ in 0..N {
                black_box(p.voucher(black_box(1)).unwrap());
            }
        })
    });
    // What a device does per payment: check the body, sign (network, issuer, seq, body),
    // advance the sequence number.
    g.bench_function("pay_sign", |b| {
        b.iter(|| {
            let mut d = ev.clone();
            for _ in 0..N {
                black_box(d.pay(black_box(charger), 1, b"").unwrap());
            }
        })
    });
    // Stateless check of one voucher: decodes the payer key every time.
    g.bench_function("voucher_verify", |b| {
        b.iter(|| {
            for v in &signed {
                v.verify(NETWORK, &ev.address()).unwrap();
            }
        })
    });
    // What a payee does per unit: decode the bytes, check, verify with the cached payer key,
    // keep the best (in-memory store).
    g.bench_function("payee_accept", |b| {
        b.iter(|| {
            let mut payee =
                PayeeChannel::from_open(NETWORK, &open, charger, MemVoucherStore::new()).unwrap();
            for bytes in &encoded {
                black_box(payee.accept_bytes(black_box(bytes)).unwrap());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, vouchers);
criterion_main!(benches);
