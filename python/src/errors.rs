//! The Python exception hierarchy and the mapping of every Rust error onto it. The message is
//! always the Rust error's `Display`, so Python users read what the CLI would print.
//!
//! ```text
//! TangleError
//! ├── WalletError: BuildError, ChannelError, VoucherError, AnchorError, ProofError
//! ├── ClientError: Unreachable, RequestTimeout, Malformed, NotFound, NotEnabled, Conflict,
//! │                TooLarge, Invalid, RateLimited, Unavailable, ApiError, BadResponse,
//! │                WaitTimeout
//! └── ScenarioError
//! ```
//! Input that is not a valid value (an address, a hex id, a mnemonic) is a `ValueError`.

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use wallet::client::ClientError as RustClientError;

create_exception!(
    _native,
    TangleError,
    PyException,
    "Base of every error the tangle package raises (besides ValueError and TypeError for bad arguments)."
);
create_exception!(
    _native,
    WalletError,
    TangleError,
    "A wallet operation failed."
);
create_exception!(
    _native,
    BuildError,
    WalletError,
    "A payload could not be built: memo or tag too long, zero amount, paying oneself."
);
create_exception!(
    _native,
    ChannelError,
    WalletError,
    "A payment channel operation was refused (exceeds the deposit, expired, wrong device...)."
);
create_exception!(
    _native,
    VoucherError,
    WalletError,
    "The payee refused a voucher (malformed, wrong channel, not increasing, bad signature)."
);
create_exception!(
    _native,
    AnchorError,
    WalletError,
    "Data does not match its anchor, or a payload is not an anchor."
);
create_exception!(
    _native,
    ProofError,
    WalletError,
    "A proof of confirmation does not hold against the network's committee."
);
create_exception!(
    _native,
    ClientError,
    TangleError,
    "A request to a node failed."
);
create_exception!(
    _native,
    Unreachable,
    ClientError,
    "The node could not be reached, after all retries."
);
create_exception!(
    _native,
    RequestTimeout,
    ClientError,
    "The node did not answer within the request timeout, after all retries."
);
create_exception!(
    _native,
    Malformed,
    ClientError,
    "400 malformed: the node could not parse the request."
);
create_exception!(
    _native,
    NotFound,
    ClientError,
    "404 not_found: no such payload, transaction, channel or route."
);
create_exception!(
    _native,
    NotEnabled,
    ClientError,
    "404 not_enabled: the feature is off on this node (e.g. the faucet)."
);
create_exception!(
    _native,
    Conflict,
    ClientError,
    "409 conflict: e.g. a sequence number already applied."
);
create_exception!(_native, TooLarge, ClientError, "413 too_large.");
create_exception!(
    _native,
    Invalid,
    ClientError,
    "422 invalid: well-formed but invalid (signature, network, amounts...)."
);
create_exception!(
    _native,
    RateLimited,
    ClientError,
    "429 rate_limited, still after all retries."
);
create_exception!(
    _native,
    Unavailable,
    ClientError,
    "503 unavailable, still after all retries."
);
create_exception!(
    _native,
    ApiError,
    ClientError,
    "Any other error status; `status` and `code` attributes carry the node's status and code."
);
create_exception!(
    _native,
    BadResponse,
    ClientError,
    "A success answer could not be decoded."
);
create_exception!(
    _native,
    WaitTimeout,
    ClientError,
    "A payload was still not final when the wait ended."
);
create_exception!(
    _native,
    ScenarioError,
    TangleError,
    "A simulation scenario is invalid, or its results could not be written."
);

/// Registers every exception class in `m`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("TangleError", py.get_type::<TangleError>())?;
    m.add("WalletError", py.get_type::<WalletError>())?;
    m.add("BuildError", py.get_type::<BuildError>())?;
    m.add("ChannelError", py.get_type::<ChannelError>())?;
    m.add("VoucherError", py.get_type::<VoucherError>())?;
    m.add("AnchorError", py.get_type::<AnchorError>())?;
    m.add("ProofError", py.get_type::<ProofError>())?;
    m.add("ClientError", py.get_type::<ClientError>())?;
    m.add("Unreachable", py.get_type::<Unreachable>())?;
    m.add("RequestTimeout", py.get_type::<RequestTimeout>())?;
    m.add("Malformed", py.get_type::<Malformed>())?;
    m.add("NotFound", py.get_type::<NotFound>())?;
    m.add("NotEnabled", py.get_type::<NotEnabled>())?;
    m.add("Conflict", py.get_type::<Conflict>())?;
    m.add("TooLarge", py.get_type::<TooLarge>())?;
    m.add("Invalid", py.get_type::<Invalid>())?;
    m.add("RateLimited", py.get_type::<RateLimited>())?;
    m.add("Unavailable", py.get_type::<Unavailable>())?;
    m.add("ApiError", py.get_type::<ApiError>())?;
    m.add("BadResponse", py.get_type::<BadResponse>())?;
    m.add("WaitTimeout", py.get_type::<WaitTimeout>())?;
    m.add("ScenarioError", py.get_type::<ScenarioError>())?;
    Ok(())
}

/// A `ValueError` with `what` and the parse error.
pub(crate) fn value_error(what: &str, e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("{what}: {e}"))
}

pub(crate) fn build(e: wallet::BuildError) -> PyErr {
    BuildError::new_err(e.to_string())
}

pub(crate) fn payer(e: wallet::PayerError) -> PyErr {
    match e {
        wallet::PayerError::Build(b) => build(b),
        e => ChannelError::new_err(e.to_string()),
    }
}

pub(crate) fn claim(e: wallet::ClaimError) -> PyErr {
    match e {
        wallet::ClaimError::Build(b) => build(b),
        e => ChannelError::new_err(e.to_string()),
    }
}

pub(crate) fn payee_setup(e: wallet::PayeeSetupError) -> PyErr {
    ChannelError::new_err(e.to_string())
}

pub(crate) fn voucher(e: wallet::VoucherError) -> PyErr {
    VoucherError::new_err(e.to_string())
}

pub(crate) fn anchor(e: wallet::AnchorError) -> PyErr {
    AnchorError::new_err(e.to_string())
}

pub(crate) fn proof(e: wallet::ProofError) -> PyErr {
    ProofError::new_err(e.to_string())
}

pub(crate) fn scenario(e: impl std::fmt::Display) -> PyErr {
    ScenarioError::new_err(e.to_string())
}

/// The node's error codes, one exception class each; `ApiError` gets `status` and `code`.
pub(crate) fn client(e: RustClientError) -> PyErr {
    let message = e.to_string();
    match e {
        RustClientError::InvalidUrl(_) => PyValueError::new_err(message),
        RustClientError::Setup(_) => ClientError::new_err(message),
        RustClientError::Unreachable { .. } => Unreachable::new_err(message),
        RustClientError::Timeout { .. } => RequestTimeout::new_err(message),
        RustClientError::Malformed(_) => Malformed::new_err(message),
        RustClientError::NotFound(_) => NotFound::new_err(message),
        RustClientError::NotEnabled(_) => NotEnabled::new_err(message),
        RustClientError::Conflict(_) => Conflict::new_err(message),
        RustClientError::TooLarge(_) => TooLarge::new_err(message),
        RustClientError::Invalid(_) => Invalid::new_err(message),
        RustClientError::RateLimited(_) => RateLimited::new_err(message),
        RustClientError::Unavailable(_) => Unavailable::new_err(message),
        RustClientError::Api { status, code, .. } => Python::attach(|py| {
            let err = ApiError::new_err(message);
            let value = err.value(py);
            // Attributes on an exception instance cannot fail for a plain Exception subclass;
            // if they did, the message still says it all.
            let _ = value.setattr("status", status);
            let _ = value.setattr("code", code);
            err
        }),
        RustClientError::BadResponse { .. } => BadResponse::new_err(message),
        RustClientError::WaitTimeout { .. } => WaitTimeout::new_err(message),
    }
}
