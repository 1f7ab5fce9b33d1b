//! # wallet
//!
//! What a device agent (an EV, a charger, a smart meter, a sensor gateway) embeds to take part
//! in the tangle's machine-to-machine economy: keys, an encrypted keystore, addresses and
//! DIDs, signed payloads with sequence tracking, pay-per-use payment channels and data
//! anchors. The core is synchronous library code with no tokio, sled or axum
//! (`--no-default-features`); the blocking HTTP node client (module `client`, feature `client`)
//! and the `tangle-wallet` CLI (feature `cli`) sit behind default features.
//!
//! ## Key types
//! - [`Mnemonic`], [`Seed`], [`DerivationPath`], [`ExtendedKey`]: BIP-39 backup and SLIP-10
//!   hardened derivation of many device keys from one seed.
//! - [`Keystore`]: the password-sealed file (Argon2id + XChaCha20-Poly1305) holding the
//!   mnemonic, the network id and each device's next sequence number.
//! - [`Device`]: one key on one network; builds and signs Pay, Open, Claim, Refund and
//!   Anchor payloads with consecutive sequence numbers; [`did_document`] for its `did:key`.
//! - [`PayerChannel`], [`PayeeChannel`], [`Voucher`], [`VoucherStore`]: both ends of a
//!   unidirectional payment channel.
//! - [`hash_file`], [`anchor_file`], [`verify_file`]: data anchors.
//! - [`verify_proof`]: a [`TransactionProof`] checked against the genesis committee only;
//!   [`verify_state_proof`]: a [`StateProof`] of an account's balance or a channel after a
//!   milestone; [`ProofVerifier`] checks many, each milestone's signatures once.
//! - `client::NodeClient` (feature `client`): submit payloads, wait for confirmation, read
//!   accounts and channels, with timeouts and retries.
//!
//! Addresses and their bech32 / `did:key` forms are [`dag_core::Address`].
//!
//! ## Example: pay per kWh through a channel
//! ```
//! use dag_core::Keypair;
//! use wallet::{Device, MemVoucherStore, PayeeChannel, PayerChannel};
//!
//! let network = 7;
//! let mut ev = Device::new(Keypair::from_seed(&[1; 32]), network, 0);
//! let mut charger = Device::new(Keypair::from_seed(&[2; 32]), network, 0);
//!
//! // On the ledger: the EV locks 100 units for the charger until milestone 500.
//! let (mut payer, open) = PayerChannel::open(&mut ev, charger.address(), 100, 500).unwrap();
//! let mut payee =
//!     PayeeChannel::from_open(network, &open, charger.address(), MemVoucherStore::new()).unwrap();
//!
//! // Off the ledger: one voucher per kWh, 3 units each.
//! for _ in 0..10 {
//!     let voucher = payer.voucher(3).unwrap();
//!     payee.accept_bytes(&voucher.to_bytes()).unwrap(); // deliver the next kWh after this
//! }
//!
//! // On the ledger again: one claim for the total.
//! let claim = payee.claim(&mut charger, 12).unwrap();
//! assert_eq!(payee.earned(), 30);
//! # let _ = claim;
//! ```
//!
//! ## Layout
//! `keys` (mnemonic, SLIP-10), `keystore`, `device` (builders, DID document), `channel`,
//! `anchor`, and `fsutil` (atomic private file writes).

mod anchor;
mod channel;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "client")]
pub mod client;
mod device;
mod fsutil;
mod keys;
mod keystore;
mod proof;

pub use anchor::{
    anchor_file, anchor_reading, anchored_digest, hash_bytes, hash_file, hash_reader,
    verify_anchored_data, verify_digest, verify_file, AnchorError,
};
pub use channel::{
    ChannelTerms, ClaimError, FileVoucherStore, MemVoucherStore, PayeeChannel, PayeeSetupError,
    PayerChannel, PayerChannelState, PayerError, Voucher, VoucherDecodeError, VoucherError,
    VoucherStore, VOUCHER_VERSION,
};
pub use device::{did_document, BuildError, Device, SeqResync};
pub use keys::{
    device_path, generate_keypair, DerivationPath, ExtendedKey, KeyError, Mnemonic, Seed,
    DEFAULT_COIN_TYPE, HARDENED,
};
pub use keystore::{
    DeviceEntry, KdfParams, Keystore, KeystoreError, KeystoreOptions, KEYSTORE_VERSION,
};
pub use proof::{
    verify_proof, verify_proof_with_rotations, verify_state_proof,
    verify_state_proof_with_rotations, ProofError, ProofVerifier, Proven, ProvenState, StateEntry,
    StateProof, Step, TransactionProof, VerifiedMilestones, REMEMBERED_MILESTONES,
};
