//! `tangle.wallet`: the `wallet` crate's device side, with no network access. Keys derive
//! exactly as `tangle-wallet` derives them (BIP-39 seed, SLIP-10 `m/44'/coin'/account'/0'/index'`),
//! every builder is the crate's `Device` builder, channels are the crate's `PayerChannel` and
//! `PayeeChannel`, proofs are checked by its `ProofVerifier`.

use std::io;
use std::path::PathBuf;

use dag_core::{ChannelId, Keypair, SignedPayload};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};
use wallet::{
    ChannelTerms, FileVoucherStore, MemVoucherStore, Mnemonic, PayeeChannel, PayerChannel,
    PayerChannelState, Voucher, VoucherStore, DEFAULT_COIN_TYPE,
};

use crate::convert::{self, to_py};
use crate::errors::{self, value_error};

/// A signed payload (Pay, Open, Claim, Refund or Anchor), ready to submit.
#[pyclass(module = "tangle.wallet", name = "Payload", frozen, eq)]
#[derive(Clone, PartialEq)]
pub(crate) struct PyPayload {
    pub(crate) inner: SignedPayload,
}

#[pymethods]
impl PyPayload {
    /// The payload id (64 hex digits): stable across reattachments.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_hex()
    }

    /// The issuer's address (`tng1...`).
    #[getter]
    fn issuer(&self) -> String {
        self.inner.issuer.to_bech32()
    }

    /// The issuer's sequence number.
    #[getter]
    fn seq(&self) -> u64 {
        self.inner.seq
    }

    /// `pay`, `open`, `claim`, `refund` or `anchor`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.inner.body.kind()
    }

    /// The body as the API's JSON shows it, e.g. `{"Pay": {"to": ..., "amount": 5, "memo": ...}}`.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.body)
    }

    /// The Ed25519 signature (64 bytes).
    #[getter]
    fn signature<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.signature.0)
    }

    /// For a payload opening a channel: the channel id it creates (hex), else None.
    #[getter]
    fn channel_id(&self) -> Option<String> {
        ChannelTerms::from_open(&self.inner).map(|t| t.id.to_hex())
    }

    /// The JSON the node's `POST /api/v1/payloads` takes.
    fn to_json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner).map_err(|e| value_error("payload", e))
    }

    /// The payload from its JSON form (`to_json`).
    #[staticmethod]
    fn from_json(text: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PyPayload {
            inner: convert::from_py(text, "payload JSON")?,
        })
    }

    /// Whether the signature is valid for `network_id`.
    fn verify(&self, network_id: u64) -> bool {
        self.inner.verify(network_id).is_ok()
    }

    fn __repr__(&self) -> String {
        format!(
            "Payload(kind={:?}, issuer={:?}, seq={}, id={:?})",
            self.inner.body.kind(),
            self.inner.issuer.to_bech32(),
            self.inner.seq,
            self.inner.id().to_hex()
        )
    }
}

/// One device key on one network, with the sequence number its next payload carries.
///
/// Build one with `Device.from_mnemonic(phrase, account=0, index=0)` (the derivation of
/// `tangle-wallet`), `Device.from_seed(seed64, ...)`, `Device.from_secret(secret32)` or
/// `Device.generate()`. Every builder checks what the ledger would refuse, signs with the
/// next sequence number and only then advances it. `network_id` must be the node's
/// (`NodeClient.info()["network_id"]`); payloads signed for another network are invalid.
#[pyclass(module = "tangle.wallet", name = "Device")]
#[derive(Clone)]
pub(crate) struct PyDevice {
    pub(crate) inner: wallet::Device,
}

fn device(keypair: Keypair, network_id: u64, next_seq: u64) -> PyDevice {
    PyDevice {
        inner: wallet::Device::new(keypair, network_id, next_seq),
    }
}

/// One entry of `Device.pay_batch`: `(to, amount)` or `(to, amount, memo)`. `last` is the
/// previous entry's recipient object and address: a batch to one recipient (the common case,
/// e.g. `[(charger, 1)] * n`) parses it once.
fn batch_entry<'py>(
    item: &Bound<'py, PyAny>,
    i: usize,
    last: &mut Option<(Bound<'py, PyAny>, dag_core::Address)>,
) -> PyResult<dag_core::Body> {
    let shape = || {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "payment {i}: expected a tuple (to, amount) or (to, amount, memo)"
        ))
    };
    let t = item.cast::<PyTuple>().map_err(|_| shape())?;
    if !(2..=3).contains(&t.len()) {
        return Err(shape());
    }
    let to_obj = t.get_item(0)?;
    let to = match last {
        Some((obj, addr)) if obj.is(&to_obj) => *addr,
        _ => {
            let addr = convert::address(&to_obj.extract::<String>()?)?;
            *last = Some((to_obj, addr));
            addr
        }
    };
    let amount: u64 = t.get_item(1)?.extract()?;
    let memo = if t.len() == 3 {
        convert::bytes_or_str(&t.get_item(2)?, "memo")?
    } else {
        Vec::new()
    };
    Ok(dag_core::Body::Pay { to, amount, memo })
}

#[pymethods]
impl PyDevice {
    /// A device from a 32-byte Ed25519 secret seed.
    #[new]
    #[pyo3(signature = (secret, *, network_id = 0, next_seq = 0))]
    fn from_secret_new(secret: &[u8], network_id: u64, next_seq: u64) -> PyResult<Self> {
        let secret: [u8; 32] = secret
            .try_into()
            .map_err(|_| value_error("secret", format!("{} bytes, expected 32", secret.len())))?;
        Ok(device(Keypair::from_seed(&secret), network_id, next_seq))
    }

    /// A device from a 32-byte Ed25519 secret seed (same as the constructor).
    #[staticmethod]
    #[pyo3(signature = (secret, *, network_id = 0, next_seq = 0))]
    fn from_secret(secret: &[u8], network_id: u64, next_seq: u64) -> PyResult<Self> {
        Self::from_secret_new(secret, network_id, next_seq)
    }

    /// A device with a fresh random key (from the OS RNG).
    #[staticmethod]
    #[pyo3(signature = (*, network_id = 0, next_seq = 0))]
    fn generate(network_id: u64, next_seq: u64) -> Self {
        device(wallet::generate_keypair(), network_id, next_seq)
    }

    /// Device key `index` of `account` of a BIP-39 phrase, derived as `tangle-wallet` derives
    /// it: seed = BIP-39(phrase, passphrase), key = SLIP-10 `m/44'/coin_type'/account'/0'/index'`.
    #[staticmethod]
    // The Python signature's keyword arguments, one Rust parameter each.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (phrase, account = 0, index = 0, *, network_id = 0, next_seq = 0, passphrase = "", coin_type = DEFAULT_COIN_TYPE))]
    fn from_mnemonic(
        py: Python<'_>,
        phrase: &str,
        account: u32,
        index: u32,
        network_id: u64,
        next_seq: u64,
        passphrase: &str,
        coin_type: u32,
    ) -> PyResult<Self> {
        let mnemonic = Mnemonic::parse(phrase).map_err(|e| value_error("mnemonic", e))?;
        // PBKDF2 with 2048 rounds: a few ms, let other threads run.
        let keypair = py.detach(|| {
            mnemonic
                .to_seed(passphrase)
                .device_keypair(coin_type, account, index)
        });
        Ok(device(keypair, network_id, next_seq))
    }

    /// Device key `index` of `account` of a 64-byte BIP-39 seed (`mnemonic_to_seed`).
    #[staticmethod]
    #[pyo3(signature = (seed, account = 0, index = 0, *, network_id = 0, next_seq = 0, coin_type = DEFAULT_COIN_TYPE))]
    fn from_seed(
        seed: &[u8],
        account: u32,
        index: u32,
        network_id: u64,
        next_seq: u64,
        coin_type: u32,
    ) -> PyResult<Self> {
        let seed: [u8; 64] = seed
            .try_into()
            .map_err(|_| value_error("seed", format!("{} bytes, expected 64", seed.len())))?;
        let keypair = wallet::Seed::from_bytes(seed).device_keypair(coin_type, account, index);
        Ok(device(keypair, network_id, next_seq))
    }

    /// The account address, bech32 (`tng1...`).
    #[getter]
    fn address(&self) -> String {
        self.inner.address().to_bech32()
    }

    /// The `did:key:z6Mk...` of the key.
    #[getter]
    fn did(&self) -> String {
        self.inner.did()
    }

    /// The Ed25519 public key (32 bytes; the address is its bech32 form).
    #[getter]
    fn public_key<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.address().0)
    }

    /// The network this device signs for.
    #[getter]
    fn network_id(&self) -> u64 {
        self.inner.network_id()
    }

    #[setter]
    fn set_network_id(&mut self, network_id: u64) {
        self.inner = wallet::Device::new(
            self.inner.keypair().clone(),
            network_id,
            self.inner.next_seq(),
        );
    }

    /// The sequence number the next payload will carry.
    #[getter]
    fn next_seq(&self) -> u64 {
        self.inner.next_seq()
    }

    /// Adopts the node's next sequence number (`NodeClient.account(address)["next_seq"]`);
    /// returns `"in_sync"`, `"advanced"` or `"rewound"`.
    fn resync(&mut self, node_next_seq: u64) -> &'static str {
        match self.inner.resync(node_next_seq) {
            wallet::SeqResync::InSync => "in_sync",
            wallet::SeqResync::Advanced { .. } => "advanced",
            wallet::SeqResync::Rewound { .. } => "rewound",
        }
    }

    /// The W3C DID document of the device's `did:key`.
    fn did_document<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.did_document())
    }

    /// A payment of `amount` to `to` (address or did:key) with a memo of at most 64 bytes.
    #[pyo3(signature = (to, amount, memo = None))]
    fn pay(
        &mut self,
        to: &str,
        amount: u64,
        memo: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<PyPayload> {
        let to = convert::address(to)?;
        let memo = match memo {
            Some(m) => convert::bytes_or_str(m, "memo")?,
            None => Vec::new(),
        };
        let p = self.inner.pay(to, amount, &memo).map_err(errors::build)?;
        Ok(PyPayload { inner: p })
    }

    /// Signs many payments in one call, the GIL released while signing: `payments` is a list
    /// of `(to, amount)` or `(to, amount, memo)`. All or nothing: if one is refused, none is
    /// signed and the sequence number does not move (the error names the entry).
    fn pay_batch<'py>(
        &mut self,
        py: Python<'py>,
        payments: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut bodies = Vec::new();
        let mut last = None;
        for (i, item) in payments.try_iter()?.enumerate() {
            bodies.push(batch_entry(&item?, i, &mut last)?);
        }
        let mut dev = self.inner.clone();
        let signed = py.detach(|| {
            bodies
                .into_iter()
                .enumerate()
                .map(|(i, b)| dev.sign(b).map_err(|e| (i, e)))
                .collect::<Result<Vec<_>, _>>()
        });
        let signed =
            signed.map_err(|(i, e)| errors::BuildError::new_err(format!("payment {i}: {e}")))?;
        self.inner = dev;
        PyList::new(py, signed.into_iter().map(|inner| PyPayload { inner }))
    }

    /// Opens a channel to `payee` locking `deposit` until milestone `expires_at`. Returns the
    /// payer's end and the Open payload to submit.
    fn open_channel(
        &mut self,
        payee: &str,
        deposit: u64,
        expires_at: u32,
    ) -> PyResult<(PyPayerChannel, PyPayload)> {
        let payee = convert::address(payee)?;
        let (ch, open) = PayerChannel::open(&mut self.inner, payee, deposit, expires_at)
            .map_err(errors::build)?;
        Ok((PyPayerChannel { inner: ch }, PyPayload { inner: open }))
    }

    /// A bare Open payload (use `open_channel` to keep the payer's end as well).
    fn open(&mut self, payee: &str, deposit: u64, expires_at: u32) -> PyResult<PyPayload> {
        let payee = convert::address(payee)?;
        let p = self
            .inner
            .open(payee, deposit, expires_at)
            .map_err(errors::build)?;
        Ok(PyPayload { inner: p })
    }

    /// A bare Claim payload from a voucher's parts (`PayeeChannel.claim` builds it from the
    /// best voucher held).
    fn claim(
        &mut self,
        channel: &str,
        amount: u64,
        voucher_signature: &[u8],
    ) -> PyResult<PyPayload> {
        let channel = convert::channel_id(channel)?;
        let sig: [u8; 64] = voucher_signature.try_into().map_err(|_| {
            value_error(
                "voucher signature",
                format!("{} bytes, expected 64", voucher_signature.len()),
            )
        })?;
        let p = self
            .inner
            .claim(channel, amount, dag_core::Signature(sig))
            .map_err(errors::build)?;
        Ok(PyPayload { inner: p })
    }

    /// A Refund payload for the expired, unclaimed `channel`.
    fn refund(&mut self, channel: &str) -> PyResult<PyPayload> {
        let channel = convert::channel_id(channel)?;
        let p = self.inner.refund(channel).map_err(errors::build)?;
        Ok(PyPayload { inner: p })
    }

    /// An Anchor payload: `digest` (32 bytes or 64 hex digits, e.g. `hash_file(path)`)
    /// under `tag` (bytes or str, at most 32 bytes).
    fn anchor(&mut self, tag: &Bound<'_, PyAny>, digest: &Bound<'_, PyAny>) -> PyResult<PyPayload> {
        let tag = convert::bytes_or_str(tag, "tag")?;
        let digest = convert::digest(digest)?;
        let p = self.inner.anchor(&tag, digest).map_err(errors::build)?;
        Ok(PyPayload { inner: p })
    }

    fn __repr__(&self) -> String {
        format!(
            "Device(address={:?}, network_id={}, next_seq={})",
            self.inner.address().to_bech32(),
            self.inner.network_id(),
            self.inner.next_seq()
        )
    }
}

fn terms_to_py<'py>(py: Python<'py>, t: &ChannelTerms) -> PyResult<Bound<'py, PyAny>> {
    to_py(py, t)
}

/// The payer's end of a payment channel: signs vouchers for growing cumulative amounts.
#[pyclass(module = "tangle.wallet", name = "PayerChannel")]
pub(crate) struct PyPayerChannel {
    inner: PayerChannel,
}

#[pymethods]
impl PyPayerChannel {
    /// Resumes a channel from its saved `state()` with the payer's device.
    #[staticmethod]
    fn resume(device: &PyDevice, state: &Bound<'_, PyAny>) -> PyResult<Self> {
        let state: PayerChannelState = convert::from_py(state, "channel state")?;
        let inner = PayerChannel::resume(
            device.inner.keypair().clone(),
            device.inner.network_id(),
            state,
        )
        .map_err(errors::payer)?;
        Ok(PyPayerChannel { inner })
    }

    /// The channel id (hex).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_hex()
    }

    /// `{"id", "payer", "payee", "deposit", "expires_at"}`.
    #[getter]
    fn terms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        terms_to_py(py, self.inner.terms())
    }

    /// Cumulative amount signed so far.
    #[getter]
    fn paid(&self) -> u64 {
        self.inner.paid()
    }

    /// Deposit not yet promised.
    #[getter]
    fn remaining(&self) -> u64 {
        self.inner.remaining()
    }

    /// What to save to resume later (`PayerChannel.resume`).
    fn state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        to_py(py, &self.inner.state())
    }

    /// A voucher adding `increment` to the cumulative amount, as bytes to send to the payee.
    fn voucher<'py>(&mut self, py: Python<'py>, increment: u64) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.inner.voucher(increment).map_err(errors::payer)?;
        Ok(PyBytes::new(py, &v.to_bytes()))
    }

    /// A voucher for the cumulative amount `total`, as bytes.
    fn voucher_total<'py>(&mut self, py: Python<'py>, total: u64) -> PyResult<Bound<'py, PyBytes>> {
        let v = self.inner.voucher_total(total).map_err(errors::payer)?;
        Ok(PyBytes::new(py, &v.to_bytes()))
    }

    /// The Refund payload, once `current_milestone` is past the expiry.
    fn refund(&self, device: &mut PyDevice, current_milestone: u32) -> PyResult<PyPayload> {
        let p = self
            .inner
            .refund(&mut device.inner, current_milestone)
            .map_err(errors::payer)?;
        Ok(PyPayload { inner: p })
    }

    fn __repr__(&self) -> String {
        format!(
            "PayerChannel(id={:?}, paid={}, deposit={})",
            self.inner.id().to_hex(),
            self.inner.paid(),
            self.inner.terms().deposit
        )
    }
}

/// Where a payee keeps its best voucher: memory, or a directory (survives restarts).
enum Store {
    Mem(MemVoucherStore),
    File(FileVoucherStore),
}

impl VoucherStore for Store {
    fn load(&self, channel: &ChannelId) -> io::Result<Option<Voucher>> {
        match self {
            Store::Mem(s) => s.load(channel),
            Store::File(s) => s.load(channel),
        }
    }

    fn save(&mut self, voucher: &Voucher) -> io::Result<()> {
        match self {
            Store::Mem(s) => s.save(voucher),
            Store::File(s) => s.save(voucher),
        }
    }
}

fn store(voucher_dir: Option<PathBuf>) -> PyResult<Store> {
    match voucher_dir {
        None => Ok(Store::Mem(MemVoucherStore::new())),
        Some(d) => FileVoucherStore::open(&d).map(Store::File).map_err(|e| {
            errors::ChannelError::new_err(format!("voucher store {}: {e}", d.display()))
        }),
    }
}

/// The payee's end of a payment channel: checks vouchers and keeps the best, then claims it.
#[pyclass(module = "tangle.wallet", name = "PayeeChannel")]
pub(crate) struct PyPayeeChannel {
    inner: PayeeChannel<Store>,
}

#[pymethods]
impl PyPayeeChannel {
    /// The payee's end from the payer's Open payload (checked: signature on `network_id`,
    /// payee `payee`). With `voucher_dir`, the best voucher is kept in that directory.
    #[new]
    #[pyo3(signature = (network_id, open, payee, voucher_dir = None))]
    fn new(
        network_id: u64,
        open: &PyPayload,
        payee: &str,
        voucher_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let payee = convert::address(payee)?;
        let inner = PayeeChannel::from_open(network_id, &open.inner, payee, store(voucher_dir)?)
            .map_err(errors::payee_setup)?;
        Ok(PyPayeeChannel { inner })
    }

    /// The payee's end from channel terms (`NodeClient.channel(id)` or `PayerChannel.terms`).
    #[staticmethod]
    #[pyo3(signature = (network_id, terms, voucher_dir = None))]
    fn from_terms(
        network_id: u64,
        terms: &Bound<'_, PyAny>,
        voucher_dir: Option<PathBuf>,
    ) -> PyResult<Self> {
        let terms: ChannelTerms = convert::from_py(terms, "channel terms")?;
        let inner = PayeeChannel::new(network_id, terms, store(voucher_dir)?)
            .map_err(errors::payee_setup)?;
        Ok(PyPayeeChannel { inner })
    }

    /// The channel id (hex).
    #[getter]
    fn id(&self) -> String {
        self.inner.terms().id.to_hex()
    }

    /// `{"id", "payer", "payee", "deposit", "expires_at"}`.
    #[getter]
    fn terms<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        terms_to_py(py, self.inner.terms())
    }

    /// The best voucher's cumulative amount (0 before any).
    #[getter]
    fn earned(&self) -> u64 {
        self.inner.earned()
    }

    /// The best voucher held, as bytes, or None.
    #[getter]
    fn best<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.inner.best().map(|v| PyBytes::new(py, &v.to_bytes()))
    }

    /// Checks voucher bytes and keeps them if they raise the amount; returns the increment
    /// (what to deliver for). Raises `VoucherError` otherwise.
    fn accept(&mut self, voucher: &[u8]) -> PyResult<u64> {
        self.inner.accept_bytes(voucher).map_err(errors::voucher)
    }

    /// The Claim payload for the best voucher, while `current_milestone` is before expiry.
    fn claim(&self, device: &mut PyDevice, current_milestone: u32) -> PyResult<PyPayload> {
        let p = self
            .inner
            .claim(&mut device.inner, current_milestone)
            .map_err(errors::claim)?;
        Ok(PyPayload { inner: p })
    }

    fn __repr__(&self) -> String {
        format!(
            "PayeeChannel(id={:?}, earned={}, deposit={})",
            self.inner.terms().id.to_hex(),
            self.inner.earned(),
            self.inner.terms().deposit
        )
    }
}

/// Decodes voucher bytes: `{"channel", "amount", "signature"}` (signature as bytes).
#[pyfunction]
pub(crate) fn decode_voucher<'py>(py: Python<'py>, voucher: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let v =
        Voucher::from_bytes(voucher).map_err(|e| errors::VoucherError::new_err(e.to_string()))?;
    let d = pyo3::types::PyDict::new(py);
    d.set_item("channel", v.channel.to_hex())?;
    d.set_item("amount", v.amount)?;
    d.set_item("signature", PyBytes::new(py, &v.signature.0))?;
    Ok(d.into_any())
}

/// Checks voucher bytes against the payer's address on `network_id` (stateless); raises
/// `VoucherError` if the signature does not hold.
#[pyfunction]
pub(crate) fn verify_voucher(voucher: &[u8], network_id: u64, payer: &str) -> PyResult<()> {
    let payer = convert::address(payer)?;
    let v =
        Voucher::from_bytes(voucher).map_err(|e| errors::VoucherError::new_err(e.to_string()))?;
    v.verify(network_id, &payer)
        .map_err(|e| errors::VoucherError::new_err(format!("voucher signature: {e}")))
}

/// A new BIP-39 phrase (24 words, from the OS RNG).
#[pyfunction]
pub(crate) fn generate_mnemonic() -> String {
    Mnemonic::generate().phrase().to_string()
}

/// The 64-byte BIP-39 seed of `phrase` (raises ValueError for an invalid phrase).
#[pyfunction]
#[pyo3(signature = (phrase, passphrase = ""))]
pub(crate) fn mnemonic_to_seed<'py>(
    py: Python<'py>,
    phrase: &str,
    passphrase: &str,
) -> PyResult<Bound<'py, PyBytes>> {
    let m = Mnemonic::parse(phrase).map_err(|e| value_error("mnemonic", e))?;
    let seed = py.detach(|| m.to_seed(passphrase));
    Ok(PyBytes::new(py, seed.as_bytes()))
}

/// The address of a 32-byte public key, or the `tng1...` form of a `did:key`.
#[pyfunction]
pub(crate) fn address_of(key: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = key.extract::<String>() {
        return Ok(convert::address(&s)?.to_bech32());
    }
    let b: Vec<u8> = key.cast::<PyBytes>()?.as_bytes().to_vec();
    let arr: [u8; 32] = b
        .as_slice()
        .try_into()
        .map_err(|_| value_error("public key", format!("{} bytes, expected 32", b.len())))?;
    Ok(dag_core::Address(arr).to_bech32())
}

/// The `did:key` of an address (`tng1...`).
#[pyfunction]
pub(crate) fn did_of(address: &str) -> PyResult<String> {
    Ok(convert::address(address)?.to_did_key())
}

/// The DID document of an address's `did:key`.
#[pyfunction]
pub(crate) fn did_document<'py>(py: Python<'py>, address: &str) -> PyResult<Bound<'py, PyAny>> {
    to_py(py, &wallet::did_document(&convert::address(address)?))
}

/// BLAKE2b-256 of `data`, the digest an anchor carries.
#[pyfunction]
pub(crate) fn hash_bytes<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &wallet::hash_bytes(data).0)
}

/// BLAKE2b-256 of a file's contents, streamed (the GIL is released while reading).
#[pyfunction]
pub(crate) fn hash_file<'py>(py: Python<'py>, path: PathBuf) -> PyResult<Bound<'py, PyBytes>> {
    let d = py
        .detach(|| wallet::hash_file(&path))
        .map_err(|e| errors::AnchorError::new_err(format!("reading {}: {e}", path.display())))?;
    Ok(PyBytes::new(py, &d.0))
}

/// `(tag, digest)` of an Anchor payload; raises `AnchorError` for another kind.
#[pyfunction]
pub(crate) fn anchored_digest<'py>(
    py: Python<'py>,
    payload: &PyPayload,
) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    let (tag, d) = wallet::anchored_digest(&payload.inner).map_err(errors::anchor)?;
    Ok((PyBytes::new(py, tag), PyBytes::new(py, &d.0)))
}

/// Raises `AnchorError` unless `actual` equals the `anchored` digest.
#[pyfunction]
pub(crate) fn verify_digest(
    anchored: &Bound<'_, PyAny>,
    actual: &Bound<'_, PyAny>,
) -> PyResult<()> {
    wallet::verify_digest(convert::digest(anchored)?, convert::digest(actual)?)
        .map_err(errors::anchor)
}

/// Raises `AnchorError` unless the file at `path` hashes to `anchored`.
#[pyfunction]
pub(crate) fn verify_file(
    py: Python<'_>,
    path: PathBuf,
    anchored: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let d = convert::digest(anchored)?;
    py.detach(|| wallet::verify_file(&path, d))
        .map_err(errors::anchor)
}

fn proven_to_py<'py>(py: Python<'py>, p: wallet::Proven) -> PyResult<Bound<'py, PyAny>> {
    let d = pyo3::types::PyDict::new(py);
    d.set_item("transaction_id", p.transaction_id.to_hex())?;
    d.set_item("payload_id", p.payload_id.map(|i| i.to_hex()))?;
    d.set_item("payload", p.payload.map(|inner| PyPayload { inner }))?;
    d.set_item("milestone", p.milestone)?;
    d.set_item("milestone_id", p.milestone_id.to_hex())?;
    d.set_item("milestone_timestamp", p.milestone_timestamp)?;
    d.set_item("applied", p.applied)?;
    Ok(d.into_any())
}

fn genesis(text: &str) -> PyResult<dag_core::Genesis> {
    let g: dag_core::Genesis = toml::from_str(text).map_err(|e| value_error("genesis TOML", e))?;
    g.validate().map_err(|e| value_error("genesis", e))?;
    Ok(g)
}

/// Checks proofs of confirmation (`GET /api/v1/payloads/{id}/proof`) against one network's
/// genesis committee only, without trusting the node that served them. Each milestone's
/// signatures are checked once and remembered.
#[pyclass(module = "tangle.wallet", name = "ProofVerifier")]
pub(crate) struct PyProofVerifier {
    inner: wallet::ProofVerifier,
}

#[pymethods]
impl PyProofVerifier {
    /// A verifier for the network of `genesis` (the TOML text of the genesis file).
    #[new]
    fn new(genesis_toml: &str) -> PyResult<Self> {
        let g = genesis(genesis_toml)?;
        let inner = wallet::ProofVerifier::new(&g).map_err(errors::proof)?;
        Ok(PyProofVerifier { inner })
    }

    /// A verifier for the network of the genesis file at `path`.
    #[staticmethod]
    fn from_file(path: PathBuf) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| value_error(&format!("reading {}", path.display()), e))?;
        Self::new(&text)
    }

    /// Verifies `proof` (the JSON text or its dict); returns what it proves:
    /// `{"transaction_id", "payload_id", "payload", "milestone", "milestone_id",
    /// "milestone_timestamp", "applied"}`. Raises `ProofError` if it does not hold.
    fn verify<'py>(
        &mut self,
        py: Python<'py>,
        proof: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let proof: wallet::TransactionProof = convert::from_py(proof, "proof")?;
        let inner = &mut self.inner;
        let proven = py.detach(|| inner.verify(&proof)).map_err(errors::proof)?;
        proven_to_py(py, proven)
    }
}

/// Registers the wallet classes and functions in `m`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPayload>()?;
    m.add_class::<PyDevice>()?;
    m.add_class::<PyPayerChannel>()?;
    m.add_class::<PyPayeeChannel>()?;
    m.add_class::<PyProofVerifier>()?;
    m.add_function(wrap_pyfunction!(decode_voucher, m)?)?;
    m.add_function(wrap_pyfunction!(verify_voucher, m)?)?;
    m.add_function(wrap_pyfunction!(generate_mnemonic, m)?)?;
    m.add_function(wrap_pyfunction!(mnemonic_to_seed, m)?)?;
    m.add_function(wrap_pyfunction!(address_of, m)?)?;
    m.add_function(wrap_pyfunction!(did_of, m)?)?;
    m.add_function(wrap_pyfunction!(did_document, m)?)?;
    m.add_function(wrap_pyfunction!(hash_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(hash_file, m)?)?;
    m.add_function(wrap_pyfunction!(anchored_digest, m)?)?;
    m.add_function(wrap_pyfunction!(verify_digest, m)?)?;
    m.add_function(wrap_pyfunction!(verify_file, m)?)?;
    m.add("DEFAULT_COIN_TYPE", DEFAULT_COIN_TYPE)?;
    m.add("VOUCHER_LEN", Voucher::ENCODED_LEN)?;
    Ok(())
}
