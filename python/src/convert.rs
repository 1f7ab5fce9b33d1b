//! Conversions between Python values and the crates' types: addresses and ids as the strings
//! the CLI and the API print, byte strings as `bytes`, structured values as the JSON the API
//! serves (decoded with Python's `json`, so a dict of plain values).

use dag_core::{Address, ChannelId, Digest, PayloadId};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::errors::value_error;

/// `tng1...` or `did:key:z...`.
pub(crate) fn address(s: &str) -> PyResult<Address> {
    s.parse()
        .map_err(|e| value_error(&format!("address {s:?}"), e))
}

/// A channel id, 64 hex digits.
pub(crate) fn channel_id(s: &str) -> PyResult<ChannelId> {
    s.parse()
        .map_err(|e| value_error(&format!("channel id {s:?}"), e))
}

/// A payload id, 64 hex digits.
pub(crate) fn payload_id(s: &str) -> PyResult<PayloadId> {
    s.parse()
        .map_err(|e| value_error(&format!("payload id {s:?}"), e))
}

/// A 32-byte digest given as `bytes` or as 64 hex digits.
pub(crate) fn digest(obj: &Bound<'_, PyAny>) -> PyResult<Digest> {
    if let Ok(s) = obj.cast::<PyString>() {
        let s = s.to_cow()?;
        return s.parse().map_err(|e| value_error("digest", e));
    }
    let b = obj
        .cast::<PyBytes>()
        .map_err(|_| PyTypeError::new_err("a digest is bytes (32) or a hex str (64 digits)"))?;
    let arr: [u8; 32] = b.as_bytes().try_into().map_err(|_| {
        value_error(
            "digest",
            format!("{} bytes, expected 32", b.as_bytes().len()),
        )
    })?;
    Ok(Digest(arr))
}

/// `bytes`, or a `str` taken as its UTF-8 bytes.
pub(crate) fn bytes_or_str(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.to_cow()?.as_bytes().to_vec());
    }
    obj.cast::<PyBytes>()
        .map(|b| b.as_bytes().to_vec())
        .map_err(|_| PyTypeError::new_err(format!("{what} must be bytes or str")))
}

/// `value` as Python objects, through its JSON form (`json.loads`).
pub(crate) fn to_py<'py, T: Serialize>(py: Python<'py>, value: &T) -> PyResult<Bound<'py, PyAny>> {
    let text = serde_json::to_string(value)
        .map_err(|e| value_error("cannot encode the value as JSON", e))?;
    json_loads(py, &text)
}

/// `json.loads(text)`.
pub(crate) fn json_loads<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// A `T` from a JSON `str` or from Python values (a dict as `json.loads` would give).
pub(crate) fn from_py<T: DeserializeOwned>(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<T> {
    let text: String = if let Ok(s) = obj.cast::<PyString>() {
        s.to_cow()?.to_string()
    } else if let Ok(b) = obj.cast::<PyBytes>() {
        String::from_utf8(b.as_bytes().to_vec()).map_err(|e| value_error(what, e))?
    } else {
        obj.py()
            .import("json")?
            .call_method1("dumps", (obj,))?
            .extract()?
    };
    serde_json::from_str(&text).map_err(|e| value_error(what, e))
}
