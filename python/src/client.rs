//! `tangle.client`: `wallet::client::NodeClient` (timeouts, retries with backoff, the node's
//! error codes as exception classes) and the node's event stream. Every call releases the
//! GIL while it waits on the network.

use std::time::Duration;

use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use wallet::client::{ClientOptions, EventStream, NodeClient};

use crate::convert::{self, json_loads, to_py};
use crate::errors;
use crate::wallet::PyPayload;

fn duration(seconds: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        PyValueError::new_err(format!("{what} must be a non-negative number of seconds"))
    })
}

/// A blocking client of one node's REST API (`http://127.0.0.1:14265` by default).
///
/// Requests time out after `timeout` seconds; connection failures, timeouts, 429 and 503 are
/// retried `retries` times with exponential backoff. The node's error codes raise
/// `NotFound`, `Conflict`, `Invalid`, ... (all `ClientError`).
#[pyclass(module = "tangle.client", name = "NodeClient", frozen)]
pub(crate) struct PyNodeClient {
    inner: NodeClient,
}

#[pymethods]
impl PyNodeClient {
    #[new]
    #[pyo3(signature = (url = wallet::client::DEFAULT_NODE_URL, *, timeout = 10.0, retries = 4))]
    fn new(url: &str, timeout: f64, retries: u32) -> PyResult<Self> {
        let options = ClientOptions {
            timeout: duration(timeout, "timeout")?,
            retries,
            ..ClientOptions::default()
        };
        let inner = NodeClient::with_options(url, options).map_err(errors::client)?;
        Ok(PyNodeClient { inner })
    }

    /// The node's base URL.
    #[getter]
    fn url(&self) -> &str {
        self.inner.base_url()
    }

    /// `GET /api/v1/info`: `{"version", "network_name", "network_id", "pow_difficulty",
    /// "latest_milestone", "confirmed_milestone", "faucet"}`.
    fn info<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = &self.inner;
        let v = py.detach(|| c.info()).map_err(errors::client)?;
        to_py(py, &v)
    }

    /// `GET /api/v1/accounts/{address}`: `{"address", "balance", "next_seq"}` (confirmed).
    fn account<'py>(&self, py: Python<'py>, address: &str) -> PyResult<Bound<'py, PyAny>> {
        let a = convert::address(address)?;
        let c = &self.inner;
        let v = py.detach(|| c.account(&a)).map_err(errors::client)?;
        to_py(py, &v)
    }

    /// `POST /api/v1/payloads`: `{"payload_id", "transaction_id"}`. A payload the node holds
    /// already is a success.
    fn submit<'py>(&self, py: Python<'py>, payload: &PyPayload) -> PyResult<Bound<'py, PyAny>> {
        let (c, p) = (&self.inner, &payload.inner);
        let v = py.detach(|| c.submit(p)).map_err(errors::client)?;
        to_py(py, &v)
    }

    /// `GET /api/v1/payloads/{id}`: `{"payload_id", "issuer", "seq", "kind",
    /// "transactions", "status", ...}`.
    fn payload<'py>(&self, py: Python<'py>, payload_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = convert::payload_id(payload_id)?;
        let c = &self.inner;
        let v = py.detach(|| c.payload(&id)).map_err(errors::client)?;
        to_py(py, &v)
    }

    /// Polls until the payload is final (`confirmed` or `conflicting`) and returns its
    /// status (`{"status", "milestone", "transaction_id", ...}`); `WaitTimeout` after
    /// `timeout` seconds.
    #[pyo3(signature = (payload_id, timeout = 30.0))]
    fn wait_final<'py>(
        &self,
        py: Python<'py>,
        payload_id: &str,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let id = convert::payload_id(payload_id)?;
        let t = duration(timeout, "timeout")?;
        let c = &self.inner;
        let v = py.detach(|| c.wait_final(&id, t)).map_err(errors::client)?;
        to_py(py, &v)
    }

    /// `submit`, then `wait_final`: the receipt's fields and the final status's in one dict.
    #[pyo3(signature = (payload, timeout = 30.0))]
    fn submit_and_wait<'py>(
        &self,
        py: Python<'py>,
        payload: &PyPayload,
        timeout: f64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let t = duration(timeout, "timeout")?;
        let (c, p) = (&self.inner, &payload.inner);
        let (receipt, status) = py
            .detach(|| c.submit_and_wait(p, t))
            .map_err(errors::client)?;
        let mut v = serde_json::to_value(status).map_err(errors::scenario)?;
        if let (Some(obj), Ok(serde_json::Value::Object(r))) =
            (v.as_object_mut(), serde_json::to_value(receipt))
        {
            for (k, x) in r {
                obj.entry(k).or_insert(x);
            }
        }
        to_py(py, &v)
    }

    /// `GET /api/v1/channels/{id}`: `{"channel_id", "payer", "payee", "deposit",
    /// "expires_at", "closed", "claimed"}`.
    fn channel<'py>(&self, py: Python<'py>, channel_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = convert::channel_id(channel_id)?;
        let c = &self.inner;
        let v = py.detach(|| c.channel(&id)).map_err(errors::client)?;
        to_py(py, &v)
    }

    /// `POST /api/v1/faucet` (dev nodes; `NotEnabled` elsewhere): `{"payload_id", "transaction_id"}`.
    fn faucet<'py>(
        &self,
        py: Python<'py>,
        address: &str,
        amount: u64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let a = convert::address(address)?;
        let c = &self.inner;
        let v = py.detach(|| c.faucet(&a, amount)).map_err(errors::client)?;
        to_py(py, &v)
    }

    /// `GET /api/v1/payloads/{id}/proof`: the proof of the transaction that decided the
    /// payload, as a dict, unchecked: pass it to `tangle.wallet.ProofVerifier.verify`.
    fn payload_proof<'py>(&self, py: Python<'py>, payload_id: &str) -> PyResult<Bound<'py, PyAny>> {
        let id = convert::payload_id(payload_id)?;
        let c = &self.inner;
        let v = py.detach(|| c.payload_proof(&id)).map_err(errors::client)?;
        to_py(py, &v)
    }

    /// The signed payload itself, fetched from its latest transaction and checked to have
    /// that id.
    fn signed_payload(&self, py: Python<'_>, payload_id: &str) -> PyResult<PyPayload> {
        let id = convert::payload_id(payload_id)?;
        let c = &self.inner;
        let inner = py
            .detach(|| c.signed_payload(&id))
            .map_err(errors::client)?;
        Ok(PyPayload { inner })
    }

    /// `GET /api/v1/events`: an iterator of the node's events, each
    /// `{"id": int, "event": "message" | "lagged", "data": dict}`, after `last_event_id` if
    /// given. Each wait for the next event is at most `timeout` seconds (`RequestTimeout`);
    /// the node sends a keep-alive every 15 s.
    #[pyo3(signature = (last_event_id = None, timeout = 30.0))]
    fn events(
        &self,
        py: Python<'_>,
        last_event_id: Option<u64>,
        timeout: f64,
    ) -> PyResult<PyEventStream> {
        let t = duration(timeout, "timeout")?;
        let c = &self.inner;
        let inner = py
            .detach(|| c.events(last_event_id, t))
            .map_err(errors::client)?;
        Ok(PyEventStream { inner: Some(inner) })
    }

    fn __repr__(&self) -> String {
        format!("NodeClient({:?})", self.inner.base_url())
    }
}

/// The node's event stream (`NodeClient.events`); iterate it, `close()` it when done.
#[pyclass(module = "tangle.client", name = "EventStream")]
pub(crate) struct PyEventStream {
    inner: Option<EventStream>,
}

#[pymethods]
impl PyEventStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let Some(stream) = self.inner.as_mut() else {
            return Err(PyStopIteration::new_err(()));
        };
        match py.detach(|| stream.next()) {
            None => {
                self.inner = None;
                Err(PyStopIteration::new_err(()))
            }
            Some(Err(e)) => Err(errors::client(e)),
            Some(Ok(ev)) => {
                let d = pyo3::types::PyDict::new(py);
                d.set_item("id", ev.id)?;
                d.set_item("event", ev.event)?;
                d.set_item("data", json_loads(py, &ev.data)?)?;
                Ok(d.into_any())
            }
        }
    }

    /// Closes the connection.
    fn close(&mut self) {
        self.inner = None;
    }

    fn __enter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __exit__(
        &mut self,
        _t: Option<Bound<'_, PyAny>>,
        _v: Option<Bound<'_, PyAny>>,
        _tb: Option<Bound<'_, PyAny>>,
    ) {
        self.inner = None;
    }
}

/// Registers the client classes in `m`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyNodeClient>()?;
    m.add_class::<PyEventStream>()?;
    Ok(())
}
