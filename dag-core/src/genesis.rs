//! The genesis: the configuration that defines a network. Its hash gives the network id,
//! so two networks with different allocations, committees or rules can never accept each
//! other's transactions. Total supply is the sum of the allocations, fixed forever.

use serde::{Deserialize, Serialize};

use crate::crypto::blake2b256;
use crate::ids::Address;
use crate::types::NetworkId;

/// Default tolerance between a transaction's timestamp and local time, in ms.
pub const DEFAULT_TIMESTAMP_WINDOW_MS: u64 = 10 * 60 * 1000;

/// An initial balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Owner.
    pub address: Address,
    /// Amount, in base units.
    pub amount: u64,
}

/// A network's genesis. Serialised as TOML or JSON for operators; the network id is derived
/// from its canonical binary encoding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Human name, e.g. `"tangle-dev"`.
    pub network_name: String,
    /// Genesis time, ms since the Unix epoch.
    pub timestamp: u64,
    /// Proof-of-work difficulty in leading zero bits.
    pub pow_difficulty: u8,
    /// How far a transaction's timestamp may be from local time, in ms.
    #[serde(default = "default_window")]
    pub timestamp_window_ms: u64,
    /// Milestone committee public keys; a signer is named by its index here.
    pub committee: Vec<Address>,
    /// Signatures needed for a valid milestone (k of n).
    pub threshold: u8,
    /// Initial balances.
    pub allocations: Vec<Allocation>,
}

fn default_window() -> u64 {
    DEFAULT_TIMESTAMP_WINDOW_MS
}

/// A genesis that cannot define a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    /// Threshold is 0 or exceeds the committee size.
    #[error("threshold {threshold} is not between 1 and the committee size {committee}")]
    BadThreshold {
        /// Configured threshold.
        threshold: u8,
        /// Committee size.
        committee: usize,
    },
    /// More committee members than signer indices (`u8`) or than a milestone can carry.
    #[error("committee has {0} members, at most 32 are supported")]
    CommitteeTooLarge(usize),
    /// A committee key appears twice.
    #[error("committee key {0} appears twice")]
    DuplicateCommitteeKey(Address),
    /// An address is allocated twice.
    #[error("address {0} is allocated twice")]
    DuplicateAllocation(Address),
    /// The allocations overflow a u64 supply.
    #[error("total supply overflows u64")]
    SupplyOverflow,
}

impl Genesis {
    /// Checks that the genesis is usable.
    pub fn validate(&self) -> Result<(), GenesisError> {
        let n = self.committee.len();
        if n > crate::types::MAX_MILESTONE_SIGNATURES {
            return Err(GenesisError::CommitteeTooLarge(n));
        }
        if self.threshold == 0 || usize::from(self.threshold) > n {
            return Err(GenesisError::BadThreshold {
                threshold: self.threshold,
                committee: n,
            });
        }
        let mut keys = std::collections::HashSet::new();
        for k in &self.committee {
            if !keys.insert(k) {
                return Err(GenesisError::DuplicateCommitteeKey(*k));
            }
        }
        let mut owners = std::collections::HashSet::new();
        for a in &self.allocations {
            if !owners.insert(a.address) {
                return Err(GenesisError::DuplicateAllocation(a.address));
            }
        }
        self.supply().ok_or(GenesisError::SupplyOverflow)?;
        Ok(())
    }

    /// Total supply, or `None` on overflow.
    pub fn supply(&self) -> Option<u64> {
        self.allocations
            .iter()
            .try_fold(0u64, |acc, a| acc.checked_add(a.amount))
    }

    /// The network id: the first 8 bytes (little-endian) of BLAKE2b-256 of the genesis'
    /// canonical MessagePack encoding.
    pub fn network_id(&self) -> NetworkId {
        let bytes = rmp_serde::to_vec(self).expect("encoding to a Vec cannot fail");
        let h = blake2b256(&bytes);
        u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g() -> Genesis {
        Genesis {
            network_name: "t".into(),
            timestamp: 1,
            pow_difficulty: 0,
            timestamp_window_ms: DEFAULT_TIMESTAMP_WINDOW_MS,
            committee: vec![Address([1; 32]), Address([2; 32])],
            threshold: 2,
            allocations: vec![Allocation {
                address: Address([3; 32]),
                amount: 10,
            }],
        }
    }

    #[test]
    fn toml_round_trip_and_network_id_depends_on_content() {
        let a = g();
        let s = toml::to_string(&a).unwrap();
        assert!(s.contains("tng1"), "addresses are bech32 in TOML: {s}");
        let b: Genesis = toml::from_str(&s).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.network_id(), b.network_id());
        let mut c = a.clone();
        c.allocations[0].amount = 11;
        assert_ne!(a.network_id(), c.network_id());
    }

    #[test]
    fn validate_rejects_bad_configs() {
        let mut a = g();
        a.threshold = 3;
        assert!(matches!(
            a.validate(),
            Err(GenesisError::BadThreshold { .. })
        ));
        let mut a = g();
        a.allocations.push(Allocation {
            address: Address([4; 32]),
            amount: u64::MAX,
        });
        assert_eq!(a.validate(), Err(GenesisError::SupplyOverflow));
        let mut a = g();
        a.committee[1] = a.committee[0];
        assert!(matches!(
            a.validate(),
            Err(GenesisError::DuplicateCommitteeKey(_))
        ));
        assert_eq!(g().validate(), Ok(()));
    }
}
