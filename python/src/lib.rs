//! # tangle-python
//!
//! The `tangle` Python package's native module, `tangle._native` (PyO3, abi3 for CPython
//! 3.9+, built by maturin from `python/pyproject.toml`). It is a thin layer over the crates:
//! every key derivation, payload builder, channel, proof check, node request and simulation
//! is the Rust crate's own code; this crate only converts values and errors.
//!
//! - `wallet`: the `wallet` crate's device side (no network): `Device`, `Payload`,
//!   `PayerChannel`, `PayeeChannel`, `ProofVerifier`, anchors, mnemonics.
//! - `client`: `wallet::client::NodeClient` and the node's event stream.
//! - `sim`: `simulator::run` and sweeps with the CLI's flag names.
//! - `errors`: the exception classes and the mapping of every Rust error.
//!
//! The GIL is released around everything that can take long: a simulation, a batch of
//! signatures, a node request, hashing a file, a mnemonic's key stretching.

use pyo3::prelude::*;

mod client;
mod convert;
mod errors;
mod sim;
mod wallet;

/// The native module; the `tangle` package re-exports it as `tangle.wallet`, `tangle.client`
/// and `tangle.sim`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    errors::register(m)?;
    wallet::register(m)?;
    client::register(m)?;
    sim::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
