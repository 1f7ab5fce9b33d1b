//! Arbitrary bytes into stage 1 validation: it must never panic, and the single path, the
//! cached single path and the batch validator must reach the same verdict.
//!
//! `cargo +nightly fuzz run validate_transaction`
#![no_main]

use std::sync::OnceLock;

use dag_core::{validate, Address, Allocation, BatchValidator, Genesis, Keypair, ValidationParams};
use libfuzzer_sys::fuzz_target;

const NOW: u64 = 1_700_000_000_000;

fn validator() -> &'static BatchValidator {
    static V: OnceLock<BatchValidator> = OnceLock::new();
    V.get_or_init(|| {
        let genesis = Genesis {
            network_name: "fuzz".into(),
            timestamp: NOW,
            pow_difficulty: 0,
            timestamp_window_ms: u64::MAX,
            committee: (1..=3u8)
                .map(|i| Keypair::from_seed(&[i; 32]).address())
                .collect(),
            threshold: 2,
            allocations: vec![Allocation {
                address: Address([1; 32]),
                amount: 1,
            }],
        };
        BatchValidator::new(ValidationParams::new(&genesis).expect("valid fuzz genesis"))
    })
}

fuzz_target!(|data: &[u8]| {
    let v = validator();
    let single = validate(data, NOW, v.params());
    assert_eq!(v.validate_one(data, NOW), single);
    assert_eq!(v.validate_batch(&[data], NOW), vec![single]);
});
