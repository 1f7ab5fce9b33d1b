//! Shared fixtures for the criterion suites in `benches/benches/`.
//!
//! Everything is deterministic (seeded ChaCha), so runs are comparable.

use dag_core::genesis::DEFAULT_TIMESTAMP_WINDOW_MS;
use dag_core::{
    Address, Allocation, Body, Genesis, Keypair, Payload, SignedPayload, Transaction, TxId,
    TX_VERSION,
};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Timestamp of every fixture transaction, and the "local time" benches validate at.
pub const BENCH_NOW_MS: u64 = 1_700_000_000_000;

/// A bench network: proof-of-work `pow_difficulty`, one committee key, one allocation.
pub fn bench_genesis(pow_difficulty: u8) -> Genesis {
    Genesis {
        network_name: "bench".into(),
        timestamp: BENCH_NOW_MS - 1,
        pow_difficulty,
        timestamp_window_ms: DEFAULT_TIMESTAMP_WINDOW_MS,
        committee: vec![Keypair::from_seed(&[0xc0; 32]).address()],
        threshold: 1,
        allocations: vec![Allocation {
            address: Address([1; 32]),
            amount: 1_000_000_000,
        }],
    }
}

/// `issuers` key pairs from `seed`.
pub fn issuers(issuers: usize, seed: u64) -> Vec<Keypair> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    (0..issuers.max(1))
        .map(|_| {
            let mut s = [0u8; 32];
            rng.fill_bytes(&mut s);
            Keypair::from_seed(&s)
        })
        .collect()
}

/// `n` signed `Pay` transactions on `network_id`, issued round-robin by `issuers` distinct
/// keys (each with consecutive sequence numbers), random parents, recipients and amounts, an
/// 8-byte memo, timestamp [`BENCH_NOW_MS`], nonce 0 (so only for difficulty 0).
pub fn signed_pay_transactions(
    n: usize,
    issuers_count: usize,
    network_id: u64,
    seed: u64,
) -> Vec<Transaction> {
    let keys = issuers(issuers_count, seed);
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x5eed);
    let bytes32 = |rng: &mut ChaCha20Rng| {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        b
    };
    (0..n)
        .map(|i| {
            let kp = &keys[i % keys.len()];
            let body = Body::Pay {
                to: Address(bytes32(&mut rng)),
                amount: 1 + rng.next_u64() % 1_000_000,
                memo: (i as u64).to_le_bytes().to_vec(),
            };
            let seq = (i / keys.len()) as u64;
            Transaction {
                version: TX_VERSION,
                network_id,
                parents: [TxId(bytes32(&mut rng)), TxId(bytes32(&mut rng))],
                timestamp: BENCH_NOW_MS,
                payload: Payload::Signed(SignedPayload::sign(kp, network_id, seq, body)),
                nonce: 0,
            }
        })
        .collect()
}

/// The canonical encodings of [`signed_pay_transactions`].
pub fn signed_pay_encodings(
    n: usize,
    issuers_count: usize,
    network_id: u64,
    seed: u64,
) -> Vec<Vec<u8>> {
    signed_pay_transactions(n, issuers_count, network_id, seed)
        .iter()
        .map(Transaction::to_bytes)
        .collect()
}

/// CPU time consumed so far by the calling thread, in ns, from `/proc/thread-self/schedstat`
/// (Linux). The machine the benches run on is shared, so a rate per CPU-second is printed
/// next to the wall-clock rate; `None` where the file does not exist.
pub fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// CPU time consumed so far by all threads of this process, in ns (sum of
/// `/proc/self/task/*/schedstat`); includes rayon workers, and their idle spinning.
pub fn process_cpu_ns() -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let s = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        total += s.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(total)
}
