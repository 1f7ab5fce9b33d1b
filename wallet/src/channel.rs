//! Pay-per-use payment channels, both ends.
//!
//! The payer opens a channel with a deposit (one ledger payload), then for each unit consumed
//! hands the payee a [`Voucher`]: its signature over the *cumulative* amount owed so far. A
//! voucher is 105 bytes and is checked with the payer's public key alone, so both ends keep
//! going while the node is unreachable. The payee keeps only the highest voucher, persisting
//! it before it delivers the next unit, and claims it once on the ledger before the channel
//! expires (a second ledger payload). If nothing is claimed, the payer refunds the whole
//! deposit after expiry.
//!
//! Expiry, as the ledger applies it: a Claim is valid in milestones up to and including
//! `expires_at`; a Refund only in milestones after it.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use dag_core::crypto::{channel_id, verify_with_key, verifying_key, voucher_signing_message};
use dag_core::{
    Address, Body, ChannelId, Keypair, MilestoneIndex, NetworkId, Signature, SignatureError,
    SignedPayload,
};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::device::{BuildError, Device};
use crate::fsutil::write_atomic;

/// Version byte that starts every encoded voucher.
pub const VOUCHER_VERSION: u8 = 1;

/// A payer's promise: "`amount` in total may be claimed from `channel`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voucher {
    /// The channel.
    pub channel: ChannelId,
    /// Cumulative amount owed to the payee, in base units.
    pub amount: u64,
    /// Payer's signature over [`voucher_signing_message`].
    pub signature: Signature,
}

/// Bytes are not an encoded voucher.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoucherDecodeError {
    /// Not exactly [`Voucher::ENCODED_LEN`] bytes.
    #[error("voucher is {0} bytes, expected {len}", len = Voucher::ENCODED_LEN)]
    Length(usize),
    /// Unknown version byte.
    #[error("unknown voucher version {0}")]
    Version(u8),
}

impl Voucher {
    /// Encoded size: version (1) || channel (32) || amount, u64 little-endian (8) ||
    /// signature (64).
    pub const ENCODED_LEN: usize = 1 + 32 + 8 + 64;

    /// Signs a voucher for `amount` on `channel` of `network_id`.
    pub fn sign(payer: &Keypair, network_id: NetworkId, channel: ChannelId, amount: u64) -> Self {
        let signature = payer.sign(&voucher_signing_message(network_id, &channel, amount));
        Voucher {
            channel,
            amount,
            signature,
        }
    }

    /// Checks the signature against the payer's key (strict verification).
    pub fn verify(&self, network_id: NetworkId, payer: &Address) -> Result<(), SignatureError> {
        verify_with_key(
            &verifying_key(payer)?,
            &self.message(network_id),
            &self.signature,
        )
    }

    fn message(&self, network_id: NetworkId) -> [u8; 65] {
        voucher_signing_message(network_id, &self.channel, self.amount)
    }

    /// The compact encoding.
    pub fn to_bytes(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0] = VOUCHER_VERSION;
        out[1..33].copy_from_slice(&self.channel.0);
        out[33..41].copy_from_slice(&self.amount.to_le_bytes());
        out[41..].copy_from_slice(&self.signature.0);
        out
    }

    /// Decodes [`Voucher::to_bytes`]; checks the form only, not the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VoucherDecodeError> {
        if bytes.len() != Self::ENCODED_LEN {
            return Err(VoucherDecodeError::Length(bytes.len()));
        }
        if bytes[0] != VOUCHER_VERSION {
            return Err(VoucherDecodeError::Version(bytes[0]));
        }
        let mut channel = [0u8; 32];
        channel.copy_from_slice(&bytes[1..33]);
        let mut amount = [0u8; 8];
        amount.copy_from_slice(&bytes[33..41]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[41..]);
        Ok(Voucher {
            channel: ChannelId(channel),
            amount: u64::from_le_bytes(amount),
            signature: Signature(signature),
        })
    }
}

/// The terms of a channel, as its Open payload set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelTerms {
    /// Channel id: [`channel_id`] of the payer and the Open's seq.
    pub id: ChannelId,
    /// Who opened it and signs vouchers.
    pub payer: Address,
    /// Who may claim.
    pub payee: Address,
    /// Locked amount: no voucher may exceed it.
    pub deposit: u64,
    /// Last milestone index in which a Claim is valid.
    pub expires_at: MilestoneIndex,
}

impl ChannelTerms {
    /// The terms of an Open payload, or `None` if `open` is not an Open.
    pub fn from_open(open: &SignedPayload) -> Option<Self> {
        match open.body {
            Body::Open {
                payee,
                deposit,
                expires_at,
            } => Some(ChannelTerms {
                id: channel_id(&open.issuer, open.seq),
                payer: open.issuer,
                payee,
                deposit,
                expires_at,
            }),
            _ => None,
        }
    }
}

/// The payer could not sign a voucher or a refund.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayerError {
    /// The cumulative amount would exceed the deposit.
    #[error("cumulative amount {requested} would exceed the deposit {deposit}")]
    ExceedsDeposit {
        /// Cumulative amount asked for (saturated at `u64::MAX`).
        requested: u64,
        /// The deposit.
        deposit: u64,
    },
    /// A voucher must raise the cumulative amount.
    #[error("a voucher must add a positive amount")]
    ZeroIncrement,
    /// Refund before the channel expired.
    #[error("channel expires at milestone {expires_at}; refund is possible from {}", expires_at.saturating_add(1))]
    NotExpired {
        /// The channel's expiry.
        expires_at: MilestoneIndex,
    },
    /// The device given is not the channel's payer.
    #[error("device {0} is not this channel's payer")]
    WrongDevice(Address),
    /// The payload could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The payer's end of a channel: signs vouchers for a growing cumulative amount, never past
/// the deposit.
#[derive(Debug, Clone)]
pub struct PayerChannel {
    keypair: Keypair,
    network_id: NetworkId,
    terms: ChannelTerms,
    paid: u64,
}

/// What a payer must persist to resume a channel after a restart (the key comes from the
/// keystore).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayerChannelState {
    /// The channel terms.
    pub terms: ChannelTerms,
    /// Cumulative amount signed so far.
    pub paid: u64,
}

impl PayerChannel {
    /// Builds the Open payload with `device`'s next seq and the channel state that goes
    /// with it. Submit the payload; vouchers are only worth something once it is confirmed.
    pub fn open(
        device: &mut Device,
        payee: Address,
        deposit: u64,
        expires_at: MilestoneIndex,
    ) -> Result<(Self, SignedPayload), BuildError> {
        let open = device.open(payee, deposit, expires_at)?;
        let terms = ChannelTerms::from_open(&open).expect("just built an Open");
        let ch = PayerChannel {
            keypair: device.keypair().clone(),
            network_id: device.network_id(),
            terms,
            paid: 0,
        };
        Ok((ch, open))
    }

    /// Resumes a channel from saved state; `keypair` must be the payer's.
    pub fn resume(
        keypair: Keypair,
        network_id: NetworkId,
        state: PayerChannelState,
    ) -> Result<Self, PayerError> {
        if keypair.address() != state.terms.payer {
            return Err(PayerError::WrongDevice(keypair.address()));
        }
        if state.paid > state.terms.deposit {
            return Err(PayerError::ExceedsDeposit {
                requested: state.paid,
                deposit: state.terms.deposit,
            });
        }
        Ok(PayerChannel {
            keypair,
            network_id,
            terms: state.terms,
            paid: state.paid,
        })
    }

    /// The state to persist.
    pub fn state(&self) -> PayerChannelState {
        PayerChannelState {
            terms: self.terms,
            paid: self.paid,
        }
    }

    /// The channel terms.
    pub fn terms(&self) -> &ChannelTerms {
        &self.terms
    }

    /// The channel id.
    pub fn id(&self) -> ChannelId {
        self.terms.id
    }

    /// Cumulative amount signed so far.
    pub fn paid(&self) -> u64 {
        self.paid
    }

    /// Deposit left to sign away.
    pub fn remaining(&self) -> u64 {
        self.terms.deposit - self.paid
    }

    /// Signs a voucher for `increment` more (e.g. the price of one kWh). Refuses to go past
    /// the deposit; on refusal nothing changes.
    pub fn voucher(&mut self, increment: u64) -> Result<Voucher, PayerError> {
        if increment == 0 {
            return Err(PayerError::ZeroIncrement);
        }
        let total = self.paid.saturating_add(increment);
        self.voucher_total(total)
    }

    /// Signs a voucher for a cumulative `total` (more than already paid, at most the deposit).
    pub fn voucher_total(&mut self, total: u64) -> Result<Voucher, PayerError> {
        if total > self.terms.deposit {
            return Err(PayerError::ExceedsDeposit {
                requested: total,
                deposit: self.terms.deposit,
            });
        }
        if total <= self.paid {
            return Err(PayerError::ZeroIncrement);
        }
        let v = Voucher::sign(&self.keypair, self.network_id, self.terms.id, total);
        self.paid = total;
        Ok(v)
    }

    /// Builds the Refund for this channel with `device` (the payer), once the latest
    /// confirmed milestone `current_milestone` is past the expiry, so that the Refund can only
    /// land in a later milestone.
    pub fn refund(
        &self,
        device: &mut Device,
        current_milestone: MilestoneIndex,
    ) -> Result<SignedPayload, PayerError> {
        if device.address() != self.terms.payer {
            return Err(PayerError::WrongDevice(device.address()));
        }
        if current_milestone < self.terms.expires_at {
            return Err(PayerError::NotExpired {
                expires_at: self.terms.expires_at,
            });
        }
        Ok(device.refund(self.terms.id)?)
    }
}

/// Where a payee keeps the best voucher of each channel. `save` must be durable when it
/// returns: the payee delivers the next unit only after that.
pub trait VoucherStore {
    /// The stored voucher of `channel`, if any.
    fn load(&self, channel: &ChannelId) -> io::Result<Option<Voucher>>;
    /// Replaces the stored voucher of `voucher.channel`.
    fn save(&mut self, voucher: &Voucher) -> io::Result<()>;
}

/// In-memory [`VoucherStore`] (tests, or devices that accept losing vouchers on a crash).
#[derive(Debug, Clone, Default)]
pub struct MemVoucherStore {
    vouchers: HashMap<ChannelId, Voucher>,
}

impl MemVoucherStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl VoucherStore for MemVoucherStore {
    fn load(&self, channel: &ChannelId) -> io::Result<Option<Voucher>> {
        Ok(self.vouchers.get(channel).copied())
    }

    fn save(&mut self, voucher: &Voucher) -> io::Result<()> {
        self.vouchers.insert(voucher.channel, *voucher);
        Ok(())
    }
}

/// File-backed [`VoucherStore`]: one `<channel hex>.voucher` file per channel in a
/// directory, replaced atomically and fsynced on every save.
#[derive(Debug, Clone)]
pub struct FileVoucherStore {
    dir: PathBuf,
}

impl FileVoucherStore {
    /// A store in `dir`, created if missing.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        fs::create_dir_all(dir.as_ref())?;
        Ok(FileVoucherStore {
            dir: dir.as_ref().to_path_buf(),
        })
    }

    fn path(&self, channel: &ChannelId) -> PathBuf {
        self.dir.join(format!("{}.voucher", channel.to_hex()))
    }
}

impl VoucherStore for FileVoucherStore {
    fn load(&self, channel: &ChannelId) -> io::Result<Option<Voucher>> {
        let bytes = match fs::read(self.path(channel)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let v = Voucher::from_bytes(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        if v.channel != *channel {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "stored voucher is for another channel",
            ));
        }
        Ok(Some(v))
    }

    fn save(&mut self, voucher: &Voucher) -> io::Result<()> {
        write_atomic(&self.path(&voucher.channel), &voucher.to_bytes())
    }
}

/// The payee refused a voucher; its best voucher is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum VoucherError {
    /// The bytes are not a voucher.
    #[error("malformed voucher: {0}")]
    Malformed(#[from] VoucherDecodeError),
    /// The voucher is for another channel.
    #[error("voucher is for channel {0}, not this one")]
    WrongChannel(ChannelId),
    /// The amount does not exceed the best voucher held.
    #[error("voucher amount {amount} does not exceed the best one held ({best})")]
    NotIncreasing {
        /// The voucher's amount.
        amount: u64,
        /// The best amount held.
        best: u64,
    },
    /// The amount exceeds the deposit, so the ledger would refuse the claim.
    #[error("voucher amount {amount} exceeds the deposit {deposit}")]
    ExceedsDeposit {
        /// The voucher's amount.
        amount: u64,
        /// The deposit.
        deposit: u64,
    },
    /// The payer's signature does not verify.
    #[error("voucher signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The voucher is valid but could not be persisted; it is not accepted (deliver nothing).
    #[error("could not persist the voucher: {0}")]
    Persist(#[source] io::Error),
}

/// The payee could not claim.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    /// No voucher was ever accepted.
    #[error("no voucher to claim")]
    NoVoucher,
    /// The channel expired: a Claim would only land after `expires_at`.
    #[error("channel expired at milestone {expires_at}")]
    Expired {
        /// The channel's expiry.
        expires_at: MilestoneIndex,
    },
    /// The device given is not the channel's payee.
    #[error("device {0} is not this channel's payee")]
    WrongDevice(Address),
    /// The payload could not be built.
    #[error(transparent)]
    Build(#[from] BuildError),
}

/// The payee's end of a channel: verifies each voucher, keeps (and persists) only the highest,
/// and claims it.
#[derive(Debug)]
pub struct PayeeChannel<S: VoucherStore> {
    network_id: NetworkId,
    terms: ChannelTerms,
    payer_key: VerifyingKey,
    best: Option<Voucher>,
    store: S,
}

/// A payee channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PayeeSetupError {
    /// The payload is not an Open, or its signature does not verify for this network.
    #[error("not a valid Open payload for this network")]
    NotAnOpen,
    /// The channel is not addressed to the expected payee.
    #[error("channel pays {0}, not this payee")]
    WrongPayee(Address),
    /// The payer's key is not usable.
    #[error("payer key: {0}")]
    PayerKey(#[from] SignatureError),
    /// The store could not be read, or holds an invalid voucher for the channel.
    #[error("voucher store: {0}")]
    Store(#[source] io::Error),
}

impl<S: VoucherStore> PayeeChannel<S> {
    /// The payee end of the channel an Open payload creates. Checks the Open's signature on
    /// `network_id` and that it pays `payee`; resumes from the best voucher in `store`.
    pub fn from_open(
        network_id: NetworkId,
        open: &SignedPayload,
        payee: Address,
        store: S,
    ) -> Result<Self, PayeeSetupError> {
        open.verify(network_id)
            .map_err(|_| PayeeSetupError::NotAnOpen)?;
        let terms = ChannelTerms::from_open(open).ok_or(PayeeSetupError::NotAnOpen)?;
        if terms.payee != payee {
            return Err(PayeeSetupError::WrongPayee(terms.payee));
        }
        Self::new(network_id, terms, store)
    }

    /// The payee end of a channel with known `terms`; resumes from the best voucher in
    /// `store`, which is checked like any incoming voucher.
    pub fn new(
        network_id: NetworkId,
        terms: ChannelTerms,
        store: S,
    ) -> Result<Self, PayeeSetupError> {
        let payer_key = verifying_key(&terms.payer)?;
        let mut ch = PayeeChannel {
            network_id,
            terms,
            payer_key,
            best: None,
            store,
        };
        if let Some(v) = ch.store.load(&terms.id).map_err(PayeeSetupError::Store)? {
            ch.check(&v).map_err(|e| {
                PayeeSetupError::Store(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("stored voucher is invalid: {e}"),
                ))
            })?;
            ch.best = Some(v);
        }
        Ok(ch)
    }

    /// The channel terms.
    pub fn terms(&self) -> &ChannelTerms {
        &self.terms
    }

    /// The best voucher held.
    pub fn best(&self) -> Option<&Voucher> {
        self.best.as_ref()
    }

    /// The amount the best voucher entitles the payee to (0 without one).
    pub fn earned(&self) -> u64 {
        self.best.map_or(0, |v| v.amount)
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn check(&self, v: &Voucher) -> Result<(), VoucherError> {
        if v.channel != self.terms.id {
            return Err(VoucherError::WrongChannel(v.channel));
        }
        if v.amount > self.terms.deposit {
            return Err(VoucherError::ExceedsDeposit {
                amount: v.amount,
                deposit: self.terms.deposit,
            });
        }
        verify_with_key(&self.payer_key, &v.message(self.network_id), &v.signature)?;
        Ok(())
    }

    /// Accepts `v` if it is for this channel, raises the cumulative amount, stays within the
    /// deposit and carries the payer's signature; persists it, then returns how much it added.
    /// Deliver the next unit only after this returns `Ok`.
    pub fn accept(&mut self, v: &Voucher) -> Result<u64, VoucherError> {
        let best = self.earned();
        if v.channel == self.terms.id && v.amount <= best {
            return Err(VoucherError::NotIncreasing {
                amount: v.amount,
                best,
            });
        }
        self.check(v)?;
        self.store.save(v).map_err(VoucherError::Persist)?;
        self.best = Some(*v);
        Ok(v.amount - best)
    }

    /// Decodes and [`accept`](Self::accept)s a voucher received as bytes.
    pub fn accept_bytes(&mut self, bytes: &[u8]) -> Result<u64, VoucherError> {
        self.accept(&Voucher::from_bytes(bytes)?)
    }

    /// Builds the Claim of the best voucher with `device` (the payee), provided the latest
    /// confirmed milestone `current_milestone` is before the expiry, so the Claim can still be
    /// confirmed by milestone `expires_at`.
    pub fn claim(
        &self,
        device: &mut Device,
        current_milestone: MilestoneIndex,
    ) -> Result<SignedPayload, ClaimError> {
        if device.address() != self.terms.payee {
            return Err(ClaimError::WrongDevice(device.address()));
        }
        let v = self.best.ok_or(ClaimError::NoVoucher)?;
        if current_milestone >= self.terms.expires_at {
            return Err(ClaimError::Expired {
                expires_at: self.terms.expires_at,
            });
        }
        Ok(device.claim(v.channel, v.amount, v.signature)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NET: NetworkId = 77;

    fn setup(deposit: u64) -> (Device, Device, PayerChannel, PayeeChannel<MemVoucherStore>) {
        let mut ev = Device::new(Keypair::from_seed(&[1; 32]), NET, 0);
        let charger = Device::new(Keypair::from_seed(&[2; 32]), NET, 0);
        let (payer, open) = PayerChannel::open(&mut ev, charger.address(), deposit, 100).unwrap();
        let payee =
            PayeeChannel::from_open(NET, &open, charger.address(), MemVoucherStore::new()).unwrap();
        assert_eq!(payer.id(), payee.terms().id);
        (ev, charger, payer, payee)
    }

    #[test]
    fn voucher_encoding_round_trip_and_malformed() {
        let (_, _, mut payer, _) = setup(10);
        let v = payer.voucher(3).unwrap();
        let b = v.to_bytes();
        assert_eq!(b.len(), 105);
        assert_eq!(Voucher::from_bytes(&b).unwrap(), v);
        assert_eq!(
            Voucher::from_bytes(&b[..104]),
            Err(VoucherDecodeError::Length(104))
        );
        let mut bad = b;
        bad[0] = 2;
        assert_eq!(
            Voucher::from_bytes(&bad),
            Err(VoucherDecodeError::Version(2))
        );
    }

    #[test]
    fn payer_refuses_to_exceed_deposit() {
        let (_, _, mut payer, _) = setup(10);
        payer.voucher(4).unwrap();
        payer.voucher(6).unwrap();
        assert_eq!(
            payer.voucher(1),
            Err(PayerError::ExceedsDeposit {
                requested: 11,
                deposit: 10
            })
        );
        assert_eq!(payer.voucher(0), Err(PayerError::ZeroIncrement));
        assert_eq!(payer.paid(), 10);
        assert_eq!(payer.remaining(), 0);
    }

    #[test]
    fn payee_rejects_lower_equal_foreign_and_forged() {
        let (_, _, mut payer, mut payee) = setup(100);
        let v1 = payer.voucher(10).unwrap();
        let v2 = payer.voucher(10).unwrap();
        assert_eq!(payee.accept(&v2).unwrap(), 20);
        assert!(matches!(
            payee.accept(&v1),
            Err(VoucherError::NotIncreasing {
                amount: 10,
                best: 20
            })
        ));
        assert!(matches!(
            payee.accept(&v2),
            Err(VoucherError::NotIncreasing { .. })
        ));
        // Amount raised without the payer's key.
        let mut forged = v2;
        forged.amount = 30;
        assert!(matches!(
            payee.accept(&forged),
            Err(VoucherError::BadSignature(_))
        ));
        // Signed by someone else.
        let mallory = Keypair::from_seed(&[9; 32]);
        let m = Voucher::sign(&mallory, NET, payer.id(), 40);
        assert!(matches!(
            payee.accept(&m),
            Err(VoucherError::BadSignature(_))
        ));
        // Right key, other network.
        let other_net = Voucher::sign(&Keypair::from_seed(&[1; 32]), NET + 1, payer.id(), 40);
        assert!(matches!(
            payee.accept(&other_net),
            Err(VoucherError::BadSignature(_))
        ));
        let other_ch = Voucher::sign(&Keypair::from_seed(&[1; 32]), NET, ChannelId([0; 32]), 40);
        assert!(matches!(
            payee.accept(&other_ch),
            Err(VoucherError::WrongChannel(_))
        ));
        let over = Voucher::sign(&Keypair::from_seed(&[1; 32]), NET, payer.id(), 101);
        assert!(matches!(
            payee.accept(&over),
            Err(VoucherError::ExceedsDeposit { .. })
        ));
        assert!(matches!(
            payee.accept_bytes(&[1, 2, 3]),
            Err(VoucherError::Malformed(_))
        ));
        assert_eq!(payee.earned(), 20);
        assert_eq!(payee.store().load(&payer.id()).unwrap(), Some(v2));
    }

    #[test]
    fn claim_and_refund_respect_expiry_and_roles() {
        let (mut ev, mut charger, mut payer, mut payee) = setup(50);
        assert_eq!(payee.claim(&mut charger, 1), Err(ClaimError::NoVoucher));
        let v = payer.voucher(7).unwrap();
        payee.accept(&v).unwrap();
        assert!(matches!(
            payee.claim(&mut ev, 1),
            Err(ClaimError::WrongDevice(_))
        ));
        assert_eq!(
            payee.claim(&mut charger, 100),
            Err(ClaimError::Expired { expires_at: 100 })
        );
        let c = payee.claim(&mut charger, 99).unwrap();
        c.verify(NET).unwrap();
        assert_eq!(
            c.body,
            Body::Claim {
                channel: payer.id(),
                amount: 7,
                voucher: v.signature
            }
        );
        assert_eq!(
            payer.refund(&mut ev, 99),
            Err(PayerError::NotExpired { expires_at: 100 })
        );
        assert!(matches!(
            payer.refund(&mut charger, 200),
            Err(PayerError::WrongDevice(_))
        ));
        let r = payer.refund(&mut ev, 100).unwrap();
        assert_eq!(
            r.body,
            Body::Refund {
                channel: payer.id()
            }
        );
        assert_eq!(r.seq, 1, "Open was seq 0");
    }

    #[test]
    fn file_store_survives_restart_and_payer_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let mut ev = Device::new(Keypair::from_seed(&[1; 32]), NET, 3);
        let charger = Address(Keypair::from_seed(&[2; 32]).address().0);
        let (mut payer, open) = PayerChannel::open(&mut ev, charger, 100, 10).unwrap();
        {
            let store = FileVoucherStore::open(dir.path()).unwrap();
            let mut payee = PayeeChannel::from_open(NET, &open, charger, store).unwrap();
            for _ in 0..5 {
                payee.accept(&payer.voucher(3).unwrap()).unwrap();
            }
        }
        let store = FileVoucherStore::open(dir.path()).unwrap();
        let payee = PayeeChannel::from_open(NET, &open, charger, store).unwrap();
        assert_eq!(payee.earned(), 15);

        let state = payer.state();
        let json = serde_json::to_string(&state).unwrap();
        let back: PayerChannelState = serde_json::from_str(&json).unwrap();
        let mut resumed = PayerChannel::resume(Keypair::from_seed(&[1; 32]), NET, back).unwrap();
        assert_eq!(resumed.voucher(1).unwrap().amount, 16);
        assert!(PayerChannel::resume(Keypair::from_seed(&[5; 32]), NET, state).is_err());

        // A corrupted store file is an error, not a silent reset to zero.
        let path = dir.path().join(format!("{}.voucher", payer.id().to_hex()));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[40] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let store = FileVoucherStore::open(dir.path()).unwrap();
        assert!(matches!(
            PayeeChannel::from_open(NET, &open, charger, store),
            Err(PayeeSetupError::Store(_))
        ));
    }

    #[test]
    fn payee_setup_checks_the_open() {
        let mut ev = Device::new(Keypair::from_seed(&[1; 32]), NET, 0);
        let charger = Address(Keypair::from_seed(&[2; 32]).address().0);
        let (_, open) = PayerChannel::open(&mut ev, charger, 100, 10).unwrap();
        let s = MemVoucherStore::new;
        assert!(matches!(
            PayeeChannel::from_open(NET + 1, &open, charger, s()),
            Err(PayeeSetupError::NotAnOpen)
        ));
        assert!(matches!(
            PayeeChannel::from_open(NET, &open, Address([3; 32]), s()),
            Err(PayeeSetupError::WrongPayee(_))
        ));
        let pay = ev.pay(charger, 1, b"").unwrap();
        assert!(matches!(
            PayeeChannel::from_open(NET, &pay, charger, s()),
            Err(PayeeSetupError::NotAnOpen)
        ));
    }

    /// A store that fails on demand: a voucher that cannot be persisted is not accepted.
    struct FlakyStore(bool);
    impl VoucherStore for FlakyStore {
        fn load(&self, _: &ChannelId) -> io::Result<Option<Voucher>> {
            Ok(None)
        }
        fn save(&mut self, _: &Voucher) -> io::Result<()> {
            if self.0 {
                Err(io::Error::other("disk full"))
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn unpersisted_voucher_is_not_accepted() {
        let mut ev = Device::new(Keypair::from_seed(&[1; 32]), NET, 0);
        let charger = Address(Keypair::from_seed(&[2; 32]).address().0);
        let (mut payer, open) = PayerChannel::open(&mut ev, charger, 100, 10).unwrap();
        let mut payee = PayeeChannel::from_open(NET, &open, charger, FlakyStore(false)).unwrap();
        payee.accept(&payer.voucher(5).unwrap()).unwrap();
        payee.store.0 = true;
        let v = payer.voucher(5).unwrap();
        assert!(matches!(payee.accept(&v), Err(VoucherError::Persist(_))));
        assert_eq!(payee.earned(), 5);
        payee.store.0 = false;
        assert_eq!(payee.accept(&v).unwrap(), 5);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever increments the payer is asked for, what it signs never exceeds the
        /// deposit, the sum of accepted increments equals the best voucher, and the payee's
        /// best never exceeds the deposit.
        #[test]
        fn channel_never_pays_more_than_deposit(
            deposit in 1u64..1_000,
            steps in proptest::collection::vec(0u64..300, 1..40),
        ) {
            let (_, _, mut payer, mut payee) = setup(deposit);
            let mut credited = 0u64;
            for inc in steps {
                let before = payer.paid();
                match payer.voucher(inc) {
                    Ok(v) => {
                        prop_assert_eq!(v.amount, before + inc);
                        credited += payee.accept(&v).unwrap();
                    }
                    Err(_) => prop_assert_eq!(payer.paid(), before),
                }
                prop_assert!(payer.paid() <= deposit);
                prop_assert_eq!(credited, payee.earned());
                prop_assert_eq!(payee.earned(), payer.paid());
            }
        }

        /// The payee accepts only strictly increasing, correctly signed, in-deposit vouchers
        /// for its channel, in any order of arrival; everything else leaves its best unchanged.
        #[test]
        fn payee_never_accepts_lower_or_malformed(
            amounts in proptest::collection::vec(0u64..150, 1..30),
            flips in proptest::collection::vec((0usize..105, 1u8..=255), 0..10),
        ) {
            let (_, _, payer, mut payee) = setup(100);
            let payer_key = Keypair::from_seed(&[1; 32]);
            for a in amounts {
                let v = Voucher::sign(&payer_key, NET, payer.id(), a);
                let best = payee.earned();
                let r = payee.accept(&v);
                if a > best && a <= 100 {
                    prop_assert_eq!(r.unwrap(), a - best);
                    prop_assert_eq!(payee.earned(), a);
                } else {
                    prop_assert!(r.is_err());
                    prop_assert_eq!(payee.earned(), best);
                }
            }
            // Corrupt a fresh valid voucher above the best: any byte flip is refused.
            let best = payee.earned();
            if best < 100 {
                let good = Voucher::sign(&payer_key, NET, payer.id(), 100).to_bytes();
                for (i, x) in flips {
                    let mut bad = good;
                    bad[i] ^= x;
                    prop_assert!(payee.accept_bytes(&bad).is_err());
                    prop_assert_eq!(payee.earned(), best);
                }
            }
        }
    }
}
