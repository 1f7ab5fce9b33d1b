//! [`NodeClient`]: a blocking HTTP client of a node's REST API (feature `client`).
//!
//! It submits signed payloads, waits for their confirmation (polling with a growing
//! interval), and reads accounts, channels and node info. Every request has a timeout;
//! connection failures, timeouts, `503 unavailable` and `429 rate_limited` are retried with
//! exponential backoff (honouring `Retry-After`). The node's JSON errors `{code, message}` map
//! to [`ClientError`] variants.
//!
//! The client is blocking (it runs its own small runtime inside reqwest): call it from plain
//! threads, not from inside an async task.
//!
//! Sequence numbers: the ledger accepts `(issuer, seq)` in order, and the node's
//! `next_seq` only counts *confirmed* payloads. [`NodeClient::sync_seq`] reconciles a
//! keystore with it without rewinding over payloads that are still in flight.

use std::time::{Duration, Instant};

use dag_core::{
    codec, Address, ChannelId, MilestoneIndex, NetworkId, Payload, PayloadId, SignedPayload, TxId,
};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{ACCEPT, RETRY_AFTER};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::channel::ChannelTerms;
use crate::keystore::{Keystore, KeystoreError};

/// The default node API address.
pub const DEFAULT_NODE_URL: &str = "http://127.0.0.1:14265";

/// A request to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not an `http://` or `https://` URL.
    #[error("invalid node URL {0:?}")]
    InvalidUrl(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
    /// The node could not be reached (connection refused, reset, DNS), after all retries.
    #[error("node unreachable at {url}: {message}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The transport error.
        message: String,
    },
    /// The node did not answer within the request timeout, after all retries.
    #[error("node at {url} did not answer within {timeout:?}")]
    Timeout {
        /// The URL requested.
        url: String,
        /// The per-request timeout.
        timeout: Duration,
    },
    /// 400 `malformed`: the node could not parse the request.
    #[error("node refused a malformed request: {0}")]
    Malformed(String),
    /// 404 `not_found`: no such payload, transaction, channel or route.
    #[error("not found: {0}")]
    NotFound(String),
    /// 404 `not_enabled`: the feature is off on this node (e.g. the faucet outside dev mode).
    #[error("not enabled on this node: {0}")]
    NotEnabled(String),
    /// 409 `conflict`: e.g. a replay of a sequence number the ledger already applied.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 413 `too_large`.
    #[error("request too large: {0}")]
    TooLarge(String),
    /// 422 `invalid`: well-formed but invalid (signature, network, amounts...).
    #[error("node refused the payload as invalid: {0}")]
    Invalid(String),
    /// 429 `rate_limited`, still after all retries.
    #[error("rate limited by the node: {0}")]
    RateLimited(String),
    /// 503 `unavailable`, still after all retries.
    #[error("node unavailable: {0}")]
    Unavailable(String),
    /// Any other error status, with the node's code and message when it sent them.
    #[error("node answered {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The node's error code (`internal`, `storage`, ...), or `unknown`.
        code: String,
        /// The node's message, or the start of the body.
        message: String,
    },
    /// A success answer could not be decoded.
    #[error("unexpected answer from {url}: {message}")]
    BadResponse {
        /// The URL requested.
        url: String,
        /// What was wrong.
        message: String,
    },
    /// [`NodeClient::wait_final`] gave up before the payload was confirmed.
    #[error("payload {payload_id} still pending after {waited:?}")]
    WaitTimeout {
        /// The payload.
        payload_id: PayloadId,
        /// How long it waited.
        waited: Duration,
    },
}

impl ClientError {
    /// Whether this is a 404 `not_found`.
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::NotFound(_))
    }
}

/// [`NodeClient::sync_seq`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Asking the node failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// Saving the keystore failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

/// Timeouts and retries of a [`NodeClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Per-request timeout (connect and answer).
    pub timeout: Duration,
    /// Retries after the first attempt, for connection errors, timeouts, 429 and 503.
    pub retries: u32,
    /// First backoff; doubles on each retry.
    pub initial_backoff: Duration,
    /// Longest backoff, also the cap on a `Retry-After` the node asks for.
    pub max_backoff: Duration,
    /// First interval between status polls in [`NodeClient::wait_final`] when the node has no
    /// event stream (it waits on the stream otherwise); grows by half each poll up to
    /// `max_backoff`.
    pub poll_interval: Duration,
}

impl Default for ClientOptions {
    /// 10 s timeout, 4 retries, backoff 100 ms doubling to 5 s, polls from 50 ms.
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(10),
            retries: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            poll_interval: Duration::from_millis(50),
        }
    }
}

/// `GET /api/v1/info` (the fields a wallet uses; others are ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Node software version.
    pub version: String,
    /// Network name.
    pub network_name: String,
    /// Network id: what payloads are signed for.
    pub network_id: NetworkId,
    /// PoW difficulty, leading zero bits.
    pub pow_difficulty: u8,
    /// Latest milestone seen.
    pub latest_milestone: MilestoneIndex,
    /// Latest confirmed (applied) milestone.
    pub confirmed_milestone: MilestoneIndex,
    /// Whether the dev faucet is on.
    pub faucet: bool,
}

/// `GET /api/v1/accounts/{address}`: the confirmed state of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The address.
    pub address: Address,
    /// Confirmed balance.
    pub balance: u64,
    /// Next sequence number the ledger accepts from this issuer.
    pub next_seq: u64,
}

/// The node accepted a payload (it is stored and will be attached and gossiped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Payload id (stable across reattachments).
    pub payload_id: PayloadId,
    /// The transaction carrying it now.
    pub transaction_id: TxId,
}

/// Where a payload stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum PayloadStatus {
    /// Accepted, not confirmed yet.
    Pending,
    /// Confirmed and applied to the ledger.
    Confirmed {
        /// Confirming milestone.
        milestone: MilestoneIndex,
        /// The transaction applied.
        transaction_id: TxId,
    },
    /// A confirmed copy could not apply yet (an earlier payload of the issuer was missing);
    /// the node reattaches it. Not final.
    Reattaching {
        /// Milestone that confirmed the copy.
        milestone: MilestoneIndex,
        /// The transaction confirmed.
        transaction_id: TxId,
        /// Why it could not apply yet.
        reason: String,
    },
    /// Confirmed but not applied; final (no copy can apply any more).
    Conflicting {
        /// Confirming milestone.
        milestone: MilestoneIndex,
        /// The transaction confirmed.
        transaction_id: TxId,
        /// Why the ledger refused it.
        reason: String,
    },
}

impl PayloadStatus {
    /// `pending`, `reattaching`, `confirmed` or `conflicting`.
    pub fn as_str(&self) -> &'static str {
        match self {
            PayloadStatus::Pending => "pending",
            PayloadStatus::Reattaching { .. } => "reattaching",
            PayloadStatus::Confirmed { .. } => "confirmed",
            PayloadStatus::Conflicting { .. } => "conflicting",
        }
    }

    /// Whether the status is final (confirmed or conflicting): it never changes again.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            PayloadStatus::Confirmed { .. } | PayloadStatus::Conflicting { .. }
        )
    }
}

/// `GET /api/v1/payloads/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadInfo {
    /// Payload id.
    pub payload_id: PayloadId,
    /// Issuer.
    pub issuer: Address,
    /// Issuer sequence number.
    pub seq: u64,
    /// `pay`, `open`, `claim`, `refund` or `anchor`.
    pub kind: String,
    /// Every transaction that carried it (reattachments included), oldest first.
    pub transactions: Vec<TxId>,
    /// Status.
    #[serde(flatten)]
    pub status: PayloadStatus,
}

/// `GET /api/v1/channels/{id}`: a channel as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInfo {
    /// Channel id.
    pub channel_id: ChannelId,
    /// Payer (opened it, signs vouchers).
    pub payer: Address,
    /// Payee (may claim).
    pub payee: Address,
    /// Locked deposit.
    pub deposit: u64,
    /// Last milestone in which a claim is valid; a refund is valid after it.
    pub expires_at: MilestoneIndex,
    /// Closed by a claim or a refund.
    pub closed: bool,
    /// Amount the claim paid, if claimed.
    pub claimed: Option<u64>,
}

impl ChannelInfo {
    /// The terms, for [`crate::PayeeChannel::new`] or [`crate::PayerChannel::resume`].
    pub fn terms(&self) -> ChannelTerms {
        ChannelTerms {
            id: self.channel_id,
            payer: self.payer,
            payee: self.payee,
            deposit: self.deposit,
            expires_at: self.expires_at,
        }
    }
}

/// What [`NodeClient::sync_seq`] did to the keystore's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqSync {
    /// Keystore and node agree.
    InSync,
    /// The node has applied payloads the keystore did not know of: moved forward.
    Advanced {
        /// Local value before.
        from: u64,
        /// The node's value, now local.
        to: u64,
    },
    /// Payloads signed locally never reached the ledger (unknown to the node, or
    /// conflicting): moved back so the next payload fills the gap.
    Rewound {
        /// Local value before.
        from: u64,
        /// The node's value, now local.
        to: u64,
    },
    /// The keystore is ahead because payloads are still pending: kept as it is.
    InFlight {
        /// Local value, kept.
        local: u64,
        /// The node's confirmed value.
        node: u64,
    },
}

#[derive(Deserialize)]
struct ErrorBody {
    code: String,
    message: String,
}

#[derive(Serialize)]
struct FaucetRequest {
    address: String,
    amount: u64,
}

/// One failed attempt: whether to retry it, and after how long at least.
enum Attempt {
    Retry(ClientError, Option<Duration>),
    Fail(ClientError),
}

/// One Server-Sent Event of `GET /api/v1/events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerEvent {
    /// The event id (resume after it with [`NodeClient::events`]`(Some(id))`).
    pub id: Option<u64>,
    /// `message` for a node event, `lagged` when events were missed.
    pub event: String,
    /// The JSON data: a node event (`{"type": "milestone", ...}`) or the `lagged` body.
    pub data: String,
}

/// The open stream of [`NodeClient::events`]: each `next` blocks until the node sends the
/// next event (comments and keep-alives are skipped); `None` when the node closed it.
pub struct EventStream {
    url: String,
    reader: std::io::BufReader<Response>,
    timeout: Duration,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("url", &self.url)
            .finish()
    }
}

impl Iterator for EventStream {
    type Item = Result<ServerEvent, ClientError>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::io::BufRead;
        let (mut id, mut event, mut data) = (None, None::<String>, None::<String>);
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Some(Err(ClientError::Timeout {
                        url: self.url.clone(),
                        timeout: self.timeout,
                    }))
                }
                Err(e) => {
                    return Some(Err(ClientError::BadResponse {
                        url: self.url.clone(),
                        message: format!("event stream: {e}"),
                    }))
                }
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                // A blank line dispatches the event, if it had data.
                if let Some(data) = data.take() {
                    return Some(Ok(ServerEvent {
                        id,
                        event: event.unwrap_or_else(|| "message".into()),
                        data,
                    }));
                }
                (id, event) = (None, None);
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = value.parse().ok(),
                "event" => event = Some(value.to_string()),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                _ => {}
            }
        }
    }
}

/// Blocking client of one node's REST API.
#[derive(Debug, Clone)]
pub struct NodeClient {
    base: String,
    http: Client,
    options: ClientOptions,
}

impl NodeClient {
    /// A client of the node at `base_url` (e.g. `http://127.0.0.1:14265`) with default options.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        Self::with_options(base_url, ClientOptions::default())
    }

    /// A client of the node at `base_url` with `options`.
    pub fn with_options(base_url: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/').to_string();
        let rest = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"));
        if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
            return Err(ClientError::InvalidUrl(base_url.to_string()));
        }
        let http = Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .build()
            .map_err(|e| ClientError::Setup(e.to_string()))?;
        Ok(NodeClient {
            base,
            http,
            options,
        })
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The options.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends the request `build` makes, retrying transient failures; returns the first
    /// success response (2xx).
    fn send(&self, url: &str, build: impl Fn() -> RequestBuilder) -> Result<Response, ClientError> {
        let mut backoff = self.options.initial_backoff;
        let mut attempt = 0;
        loop {
            let outcome = match build().send() {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) => self.classify_status(resp),
                Err(e) => self.classify_transport(url, e),
            };
            match outcome {
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e, _) if attempt >= self.options.retries => return Err(e),
                Attempt::Retry(_, retry_after) => {
                    let wait = retry_after
                        .unwrap_or(backoff)
                        .max(backoff)
                        .min(self.options.max_backoff);
                    std::thread::sleep(wait);
                    backoff = (backoff * 2).min(self.options.max_backoff);
                    attempt += 1;
                }
            }
        }
    }

    fn classify_transport(&self, url: &str, e: reqwest::Error) -> Attempt {
        if e.is_timeout() {
            Attempt::Retry(
                ClientError::Timeout {
                    url: url.to_string(),
                    timeout: self.options.timeout,
                },
                None,
            )
        } else if e.is_connect() || e.is_request() {
            // The innermost cause says what happened ("Connection refused"); the outer
            // layers only repeat the URL.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                message = s.to_string();
                source = s.source();
            }
            Attempt::Retry(
                ClientError::Unreachable {
                    url: url.to_string(),
                    message,
                },
                None,
            )
        } else {
            Attempt::Fail(ClientError::BadResponse {
                url: url.to_string(),
                message: e.to_string(),
            })
        }
    }

    fn classify_status(&self, resp: Response) -> Attempt {
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = resp.text().unwrap_or_default();
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(b) => (b.code, b.message),
            Err(_) => ("unknown".to_string(), text.chars().take(200).collect()),
        };
        let err = match (status, code.as_str()) {
            (StatusCode::BAD_REQUEST, _) => ClientError::Malformed(message),
            (StatusCode::NOT_FOUND, "not_enabled") => ClientError::NotEnabled(message),
            (StatusCode::NOT_FOUND, _) => ClientError::NotFound(message),
            (StatusCode::CONFLICT, _) => ClientError::Conflict(message),
            (StatusCode::PAYLOAD_TOO_LARGE, _) => ClientError::TooLarge(message),
            (StatusCode::UNPROCESSABLE_ENTITY, _) => ClientError::Invalid(message),
            (StatusCode::TOO_MANY_REQUESTS, _) => {
                return Attempt::Retry(ClientError::RateLimited(message), retry_after)
            }
            (StatusCode::SERVICE_UNAVAILABLE, _) => {
                return Attempt::Retry(ClientError::Unavailable(message), retry_after)
            }
            _ => ClientError::Api {
                status: status.as_u16(),
                code,
                message,
            },
        };
        Attempt::Fail(err)
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.send(&url, || {
            self.http.get(&url).header(ACCEPT, "application/json")
        })?;
        decode(&url, resp)
    }

    fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let resp = self.send(&url, || {
            self.http
                .post(&url)
                .header(ACCEPT, "application/json")
                .json(body)
        })?;
        decode(&url, resp)
    }

    /// `GET /api/v1/info`.
    pub fn info(&self) -> Result<NodeInfo, ClientError> {
        self.get_json("/api/v1/info")
    }

    /// `GET /api/v1/events`: the node's events as they happen, after `last_event_id` if
    /// given (the node replays what it still holds). Each read of the stream waits at most
    /// `read_timeout` ([`ClientError::Timeout`]); the node sends a keep-alive every 15 s, so
    /// a longer timeout only fires on a dead connection.
    pub fn events(
        &self,
        last_event_id: Option<u64>,
        read_timeout: Duration,
    ) -> Result<EventStream, ClientError> {
        let url = self.url("/api/v1/events");
        let resp = self.send(&url, || {
            let r = self
                .http
                .get(&url)
                .header(ACCEPT, "text/event-stream")
                .timeout(read_timeout);
            match last_event_id {
                Some(id) => r.header("last-event-id", id.to_string()),
                None => r,
            }
        })?;
        Ok(EventStream {
            url,
            reader: std::io::BufReader::new(resp),
            timeout: read_timeout,
        })
    }

    /// `GET /api/v1/accounts/{address}` (zero balance and seq for an unknown account).
    pub fn account(&self, address: &Address) -> Result<Account, ClientError> {
        self.get_json(&format!("/api/v1/accounts/{address}"))
    }

    /// `POST /api/v1/payloads`. A payload the node already holds (a retried submission
    /// whose first answer was lost, or a resubmission) is a success with its current
    /// transaction.
    pub fn submit(&self, payload: &SignedPayload) -> Result<Receipt, ClientError> {
        match self.post_json::<_, Receipt>("/api/v1/payloads", payload) {
            Ok(r) => Ok(r),
            Err(ClientError::Conflict(message)) => {
                let id = payload.id();
                match self.payload(&id) {
                    Ok(info) => match info.transactions.last() {
                        Some(tx) => Ok(Receipt {
                            payload_id: id,
                            transaction_id: *tx,
                        }),
                        None => Err(ClientError::Conflict(message)),
                    },
                    Err(ClientError::NotFound(_)) => Err(ClientError::Conflict(message)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/payloads/{id}`.
    pub fn payload(&self, id: &PayloadId) -> Result<PayloadInfo, ClientError> {
        self.get_json(&format!("/api/v1/payloads/{id}"))
    }

    /// `GET /api/v1/payloads/{id}/proof`: the proof of the transaction that decided the
    /// payload. Not checked here: [`crate::verify_proof`] does that.
    pub fn payload_proof(&self, id: &PayloadId) -> Result<crate::TransactionProof, ClientError> {
        self.get_json(&format!("/api/v1/payloads/{id}/proof"))
    }

    /// `GET /api/v1/committee`: the committee rotations the node applied, with their
    /// evidence. Not trusted: [`crate::verify_proof_with_rotations`] checks each against
    /// the committee before it, from the genesis on.
    pub fn committee_rotations(&self) -> Result<Vec<dag_core::Rotation>, ClientError> {
        #[derive(serde::Deserialize)]
        struct View {
            rotations: Vec<dag_core::Rotation>,
        }
        self.get_json::<View>("/api/v1/committee")
            .map(|v| v.rotations)
    }

    /// `GET /api/v1/accounts/{address}/proof`: the account's state after the node's last
    /// applied milestone, with the state tree's path. Not checked here:
    /// [`crate::verify_state_proof`] does that.
    pub fn account_proof(&self, address: &Address) -> Result<crate::StateProof, ClientError> {
        self.get_json(&format!("/api/v1/accounts/{address}/proof"))
    }

    /// `GET /api/v1/channels/{id}/proof`: as [`account_proof`](Self::account_proof), for a
    /// channel.
    pub fn channel_proof(&self, id: &ChannelId) -> Result<crate::StateProof, ClientError> {
        self.get_json(&format!("/api/v1/channels/{id}/proof"))
    }

    /// Waits until the payload is confirmed or conflicting, or `timeout` passed
    /// ([`ClientError::WaitTimeout`]), on the node's event stream: it subscribes first,
    /// then reads the status once, then reads it again only when the node announces a final
    /// status for this payload (or says the stream lagged), so a device does not poll.
    /// Where the stream is not available (an older node or a proxy without it, a broken
    /// connection), it polls instead: every [`ClientOptions::poll_interval`], growing to
    /// [`ClientOptions::max_backoff`].
    pub fn wait_final(
        &self,
        id: &PayloadId,
        timeout: Duration,
    ) -> Result<PayloadStatus, ClientError> {
        let start = Instant::now();
        // Subscribed before the status is read: a final event cannot fall between the two.
        // The read timeout is the deadline (the node's keep-alives come every 15 s).
        let read_timeout = timeout + Duration::from_secs(1);
        // No retries for the stream: a node with all its streams taken (503) is polled at once.
        let once = NodeClient {
            options: ClientOptions {
                retries: 0,
                ..self.options.clone()
            },
            ..self.clone()
        };
        if let Ok(stream) = once.events(None, read_timeout) {
            match self.wait_on_events(id, stream, start, timeout) {
                Ok(Some(status)) => return Ok(status),
                Err(e @ (ClientError::WaitTimeout { .. } | ClientError::NotFound(_))) => {
                    return Err(e)
                }
                // The stream ended or broke: poll for the rest of the time.
                Ok(None) | Err(_) => {}
            }
        }
        self.poll_final(id, start, timeout)
    }

    /// The payload's status when final, reading it again only for an event about it (or
    /// a lagged notice); `Ok(None)` if the stream ended or broke first.
    fn wait_on_events(
        &self,
        id: &PayloadId,
        stream: EventStream,
        start: Instant,
        timeout: Duration,
    ) -> Result<Option<PayloadStatus>, ClientError> {
        let status = self.payload(id)?.status;
        if status.is_final() {
            return Ok(Some(status));
        }
        let hex = id.to_hex();
        for event in stream {
            let waited = start.elapsed();
            let event = match event {
                Ok(e) => e,
                Err(_) if waited >= timeout => {
                    return Err(ClientError::WaitTimeout {
                        payload_id: *id,
                        waited,
                    })
                }
                Err(_) => return Ok(None),
            };
            let about_it = event.event == "lagged"
                || serde_json::from_str::<serde_json::Value>(&event.data).is_ok_and(|v| {
                    v["type"] == "payload" && v["payload_id"].as_str() == Some(hex.as_str())
                });
            if about_it {
                let status = self.payload(id)?.status;
                if status.is_final() {
                    return Ok(Some(status));
                }
            }
            if waited >= timeout {
                return Err(ClientError::WaitTimeout {
                    payload_id: *id,
                    waited,
                });
            }
        }
        Ok(None)
    }

    /// Polls the payload's status until it is final or `timeout` (from `start`) passed.
    fn poll_final(
        &self,
        id: &PayloadId,
        start: Instant,
        timeout: Duration,
    ) -> Result<PayloadStatus, ClientError> {
        let mut interval = self.options.poll_interval;
        loop {
            let status = self.payload(id)?.status;
            if status.is_final() {
                return Ok(status);
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return Err(ClientError::WaitTimeout {
                    payload_id: *id,
                    waited,
                });
            }
            std::thread::sleep(interval.min(timeout - waited));
            interval = (interval + interval / 2).min(self.options.max_backoff);
        }
    }

    /// [`submit`](Self::submit), then [`wait_final`](Self::wait_final).
    pub fn submit_and_wait(
        &self,
        payload: &SignedPayload,
        timeout: Duration,
    ) -> Result<(Receipt, PayloadStatus), ClientError> {
        let r = self.submit(payload)?;
        let s = self.wait_final(&r.payload_id, timeout)?;
        Ok((r, s))
    }

    /// `GET /api/v1/channels/{id}` ([`ClientError::NotFound`] for an unknown channel).
    pub fn channel(&self, id: &ChannelId) -> Result<ChannelInfo, ClientError> {
        self.get_json(&format!("/api/v1/channels/{id}"))
    }

    /// `POST /api/v1/faucet` (dev nodes only; [`ClientError::NotEnabled`] elsewhere).
    pub fn faucet(&self, to: &Address, amount: u64) -> Result<Receipt, ClientError> {
        self.post_json(
            "/api/v1/faucet",
            &FaucetRequest {
                address: to.to_bech32(),
                amount,
            },
        )
    }

    /// A stored transaction's canonical bytes (`GET /api/v1/transactions/{id}` as
    /// `application/octet-stream`).
    pub fn transaction_bytes(&self, id: &TxId) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&format!("/api/v1/transactions/{id}"));
        let resp = self.send(&url, || {
            self.http
                .get(&url)
                .header(ACCEPT, "application/octet-stream")
        })?;
        resp.bytes()
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::BadResponse {
                url,
                message: e.to_string(),
            })
    }

    /// The signed payload `id` itself, fetched from the latest transaction carrying it and
    /// checked to have that id.
    pub fn signed_payload(&self, id: &PayloadId) -> Result<SignedPayload, ClientError> {
        let info = self.payload(id)?;
        let tx_id = *info
            .transactions
            .last()
            .ok_or_else(|| ClientError::BadResponse {
                url: self.url(&format!("/api/v1/payloads/{id}")),
                message: "payload has no transaction".into(),
            })?;
        let url = self.url(&format!("/api/v1/transactions/{tx_id}"));
        let bytes = self.transaction_bytes(&tx_id)?;
        let tx = codec::decode(&bytes).map_err(|e| ClientError::BadResponse {
            url: url.clone(),
            message: format!("transaction does not decode: {e}"),
        })?;
        match tx.payload {
            Payload::Signed(p) if p.id() == *id => Ok(p),
            _ => Err(ClientError::BadResponse {
                url,
                message: format!("transaction does not carry payload {id}"),
            }),
        }
    }

    /// Reconciles the keystore's next sequence number of device `index` with the node before
    /// signing. If the node is ahead (payloads signed elsewhere, a restored backup), adopt its
    /// value. If the keystore is ahead, the payloads it `issued` (sequence number and id) with
    /// a sequence number at or past the node's decide: if any is still pending (or
    /// reattaching), keep the local value (the next payload in order is right); if none is
    /// (all unknown to the node: lost before they reached it), those sequence numbers are
    /// void and the keystore rewinds. (A conflicting payload used its sequence number, so
    /// the node is not behind because of it.)
    pub fn sync_seq(
        &self,
        keystore: &mut Keystore,
        index: u32,
        issued: &[(u64, PayloadId)],
    ) -> Result<SeqSync, SyncError> {
        let device = keystore.device(index);
        let local = device.next_seq();
        let node = self.account(&device.address())?.next_seq;
        if node == local {
            return Ok(SeqSync::InSync);
        }
        if node < local {
            for (_, id) in issued.iter().filter(|(s, _)| *s >= node && *s < local) {
                match self.payload(id) {
                    Ok(p) if !p.status.is_final() => {
                        return Ok(SeqSync::InFlight { local, node });
                    }
                    Ok(_) | Err(ClientError::NotFound(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        keystore.resync(index, node)?;
        Ok(if node > local {
            SeqSync::Advanced {
                from: local,
                to: node,
            }
        } else {
            SeqSync::Rewound {
                from: local,
                to: node,
            }
        })
    }
}

fn decode<T: DeserializeOwned>(url: &str, resp: Response) -> Result<T, ClientError> {
    let bytes = resp.bytes().map_err(|e| ClientError::BadResponse {
        url: url.to_string(),
        message: e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse {
        url: url.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_urls() {
        for bad in ["", "127.0.0.1:14265", "ftp://x", "http://", "http://a b"] {
            assert!(
                matches!(NodeClient::new(bad), Err(ClientError::InvalidUrl(_))),
                "{bad:?}"
            );
        }
        let c = NodeClient::new("http://127.0.0.1:14265/").unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:14265");
    }

    #[test]
    fn payload_info_decodes_the_node_shapes() {
        let id = "11".repeat(32);
        let tx = "22".repeat(32);
        let issuer = dag_core::Keypair::from_seed(&[3; 32]).address();
        let pending = serde_json::json!({
            "payload_id": id, "issuer": issuer.to_bech32(), "seq": 4, "kind": "pay",
            "transactions": [tx], "status": "pending"
        });
        let p: PayloadInfo = serde_json::from_value(pending).unwrap();
        assert_eq!(p.status, PayloadStatus::Pending);
        assert_eq!(p.issuer, issuer);
        let conflicting = serde_json::json!({
            "payload_id": id, "issuer": issuer.to_bech32(), "seq": 4, "kind": "pay",
            "transactions": [tx], "status": "conflicting", "milestone": 9,
            "transaction_id": tx, "reason": "insufficient balance"
        });
        let p: PayloadInfo = serde_json::from_value(conflicting).unwrap();
        assert!(matches!(
            p.status,
            PayloadStatus::Conflicting { milestone: 9, ref reason, .. } if reason == "insufficient balance"
        ));
        assert!(p.status.is_final());
        assert_eq!(p.status.as_str(), "conflicting");
    }

    #[test]
    fn unreachable_node_is_an_error_after_retries() {
        // Port 1 (tcpmux, privileged): nothing listens there, and unlike a port bound and
        // then released, no concurrently running test can take it meanwhile.
        let c = NodeClient::with_options(
            "http://127.0.0.1:1",
            ClientOptions {
                retries: 2,
                initial_backoff: Duration::from_millis(1),
                ..ClientOptions::default()
            },
        )
        .unwrap();
        assert!(matches!(c.info(), Err(ClientError::Unreachable { .. })));
    }
}
