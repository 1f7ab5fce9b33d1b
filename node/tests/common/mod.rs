//! Fixtures shared by the network integration tests.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use dag_core::{Allocation, Genesis, Keypair};

/// A one-member committee and a funded faucet on a fresh genesis.
pub(crate) struct Net {
    pub(crate) genesis: Genesis,
    pub(crate) committee: Keypair,
    pub(crate) faucet: Keypair,
}

/// A test network named `name` with the given PoW difficulty and timestamp window.
pub(crate) fn network(name: &str, pow_difficulty: u8, timestamp_window_ms: u64) -> Net {
    let committee = Keypair::from_seed(&[1; 32]);
    let faucet = Keypair::from_seed(&[2; 32]);
    let genesis = Genesis {
        network_name: name.into(),
        timestamp: node::runtime::now_ms(),
        pow_difficulty,
        timestamp_window_ms,
        committee: vec![committee.address()],
        threshold: 1,
        allocations: vec![Allocation {
            address: faucet.address(),
            amount: 1_000_000_000,
        }],
    };
    Net {
        genesis,
        committee,
        faucet,
    }
}

/// Polls `f` every 50 ms until it gives a value; a hang guard of `guard` turns a hang into a
/// failure but never decides a run that makes progress.
pub(crate) async fn until_some<T, F, Fut>(what: &str, guard: std::time::Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(guard, async {
        loop {
            if let Some(v) = f().await {
                return v;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("gave up waiting for {what}"))
}
