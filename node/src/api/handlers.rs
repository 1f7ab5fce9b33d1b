//! Route handlers. Each one is a thin translation between HTTP and one [`NodeService`] call;
//! the `#[utoipa::path]` attribute on it is its entry in the OpenAPI document.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use dag_core::{Address, ChannelId, MilestoneIndex, PayloadId, SignedPayload, TxId};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::negotiate::{Decoded, Format, RawBody, Reply};
use super::{ApiConfigView, AppState};
use crate::service::{
    AccountView, ChannelView, Health, MilestoneView, NodeInfo, NodeService, PayloadReceipt,
    PayloadView, TxMetadataView,
};

/// `GET /api/v1/tips`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TipsView {
    /// Current tips.
    #[schema(value_type = Vec<String>)]
    pub tips: Vec<TxId>,
}

/// `POST /api/v1/transactions` with a JSON (or MessagePack) body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RawTransaction {
    /// The canonical encoding: hex in JSON, `bin` in MessagePack.
    #[serde(with = "hex_or_bin")]
    #[schema(value_type = String)]
    pub bytes: Vec<u8>,
}

/// 201 answer of `POST /api/v1/transactions`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransactionSubmitted {
    /// Id of the stored transaction.
    #[schema(value_type = String)]
    pub transaction_id: TxId,
}

/// One element of the `POST /api/v1/payloads/batch` answer, in the order of the request:
/// `{"ok": PayloadReceipt}` or `{"error": {"code", "message"}}` (codes and meanings as for
/// a single submission).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchVerdict {
    /// Accepted.
    Ok(PayloadReceipt),
    /// Refused, nothing changed.
    Error(ErrorBody),
}

/// `POST /api/v1/faucet` (dev mode only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FaucetRequest {
    /// Recipient, bech32 (`tng1...`) or `did:key:z6Mk...`.
    pub address: String,
    /// Amount in base units.
    pub amount: u64,
}

/// The bytes of [`RawTransaction`]: hex in human-readable formats, `bin` otherwise.
mod hex_or_bin {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex::encode(v))
        } else {
            s.serialize_bytes(v)
        }
    }

    struct BytesVisitor;

    impl Visitor<'_> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("hex string or byte string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            hex::decode(v).map_err(|e| E::custom(format!("bad hex: {e}")))
        }
        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        if d.is_human_readable() {
            d.deserialize_str(BytesVisitor)
        } else {
            d.deserialize_bytes(BytesVisitor)
        }
    }
}

/// Parses a path segment with `FromStr`, as 400 `malformed` naming `what` on failure.
fn parse_path<T: std::str::FromStr>(
    path: Result<Path<String>, PathRejection>,
    what: &str,
) -> ApiResult<T>
where
    T::Err: std::fmt::Display,
{
    let Path(raw) = path?;
    raw.parse()
        .map_err(|e| ApiError::malformed(format!("bad {what} {raw:?}: {e}")))
}

/// Node health; 200 when healthy, 503 (same body) otherwise.
#[utoipa::path(get, path = "/health", tag = "node",
    responses(
        (status = 200, description = "Healthy", body = Health),
        (status = 503, description = "Not healthy; `reasons` says why", body = Health),
    ))]
pub(crate) async fn health<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Response {
    let health = state.service.health();
    let status = if health.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Reply::new(status, Format::from_accept(&headers), health).into_response()
}

/// Node summary: network, milestones, tips, ledger digest.
#[utoipa::path(get, path = "/api/v1/info", tag = "node",
    responses((status = 200, body = NodeInfo)))]
pub(crate) async fn info<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Reply<NodeInfo> {
    Reply::ok(Format::from_accept(&headers), state.service.info())
}

/// Current tips.
#[utoipa::path(get, path = "/api/v1/tips", tag = "node",
    responses((status = 200, body = TipsView)))]
pub(crate) async fn tips<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Reply<TipsView> {
    let tips = state.service.tips();
    Reply::ok(Format::from_accept(&headers), TipsView { tips })
}

/// Submits a complete transaction (parents chosen and PoW done by the client). The body is
/// the canonical bytes (`application/octet-stream`) or `{"bytes": "<hex>"}` (JSON).
#[utoipa::path(post, path = "/api/v1/transactions", tag = "transactions",
    request_body(content(
        (super::openapi::BinaryDoc = "application/octet-stream"),
        (RawTransaction = "application/json"),
        (RawTransaction = "application/msgpack"),
    )),
    responses(
        (status = 201, description = "Stored durably", body = TransactionSubmitted),
        (status = 400, description = "Not a canonical transaction", body = ErrorBody),
        (status = 409, description = "Already known", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody),
        (status = 415, description = "Unsupported Content-Type", body = ErrorBody),
        (status = 422, description = "Invalid (signature, network, PoW, timestamp...)", body = ErrorBody),
        (status = 503, description = "Node busy or stopping", body = ErrorBody),
    ))]
pub(crate) async fn submit_transaction<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: RawBody,
) -> ApiResult<Reply<TransactionSubmitted>> {
    let bytes = match body.format {
        Format::OctetStream => body.bytes.to_vec(),
        Format::Json | Format::MsgPack => Decoded::<RawTransaction>::decode(&body)?.bytes,
    };
    let verdict = state
        .service
        .submit_transactions(vec![bytes])
        .await
        .pop()
        .ok_or_else(|| ApiError::internal("the node returned no verdict"))?;
    let transaction_id = verdict?;
    Ok(Reply::new(
        StatusCode::CREATED,
        Format::from_accept(&headers),
        TransactionSubmitted { transaction_id },
    ))
}

/// Submits a signed payload; the node attaches it (tips, PoW), gossips it and reattaches it
/// by itself if its transaction goes lazy. JSON as serde renders `SignedPayload` (addresses
/// bech32, ids and signatures hex), or MessagePack with `Content-Type: application/msgpack`.
#[utoipa::path(post, path = "/api/v1/payloads", tag = "payloads",
    request_body(content(
        (super::openapi::SignedPayloadDoc = "application/json"),
        (super::openapi::SignedPayloadDoc = "application/msgpack"),
    )),
    responses(
        (status = 202, description = "Accepted and durable; confirmation comes later", body = PayloadReceipt),
        (status = 400, description = "Not a payload", body = ErrorBody),
        (status = 409, description = "Known already, or a replayed sequence number", body = ErrorBody),
        (status = 413, description = "Too large", body = ErrorBody),
        (status = 422, description = "Invalid (signature, network...)", body = ErrorBody),
        (status = 503, description = "Node busy or stopping", body = ErrorBody),
    ))]
pub(crate) async fn submit_payload<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Decoded(payload): Decoded<SignedPayload>,
) -> ApiResult<Reply<PayloadReceipt>> {
    let receipt = state
        .service
        .submit_payloads(vec![payload])
        .await
        .pop()
        .ok_or_else(|| ApiError::internal("the node returned no verdict"))??;
    Ok(Reply::new(
        StatusCode::ACCEPTED,
        Format::from_accept(&headers),
        receipt,
    ))
}

/// Submits many signed payloads at once (an edge gateway for many devices). Always 200 when
/// the batch itself is readable, with one verdict per payload, in order.
#[utoipa::path(post, path = "/api/v1/payloads/batch", tag = "payloads",
    request_body(content(
        (Vec<super::openapi::SignedPayloadDoc> = "application/json"),
        (Vec<super::openapi::SignedPayloadDoc> = "application/msgpack"),
    )),
    responses(
        (status = 200, description = "One verdict per payload", body = Vec<BatchVerdict>),
        (status = 400, description = "Not an array of payloads", body = ErrorBody),
        (status = 413, description = "Body or batch too large", body = ErrorBody),
    ))]
pub(crate) async fn submit_batch<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Decoded(payloads): Decoded<Vec<SignedPayload>>,
) -> ApiResult<Reply<Vec<BatchVerdict>>> {
    let max = state.options.max_batch_len;
    if payloads.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("{} payloads in one batch, at most {max}", payloads.len()),
        ));
    }
    let n = payloads.len();
    let verdicts = state.service.submit_payloads(payloads).await;
    if verdicts.len() != n {
        return Err(ApiError::internal(format!(
            "the node returned {} verdicts for {n} payloads",
            verdicts.len()
        )));
    }
    let verdicts = verdicts
        .into_iter()
        .map(|v| match v {
            Ok(receipt) => BatchVerdict::Ok(receipt),
            Err(e) => BatchVerdict::Error(ApiError::from(e).body),
        })
        .collect();
    Ok(Reply::ok(Format::from_accept(&headers), verdicts))
}

/// A transaction: JSON (or MessagePack) of the decoded transaction, or its canonical bytes
/// with `Accept: application/octet-stream`.
#[utoipa::path(get, path = "/api/v1/transactions/{id}", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id, 64 hex characters")),
    responses(
        (status = 200, content(
            (super::openapi::TransactionDoc = "application/json"),
            (super::openapi::BinaryDoc = "application/octet-stream"),
        )),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "Unknown", body = ErrorBody),
        (status = 410, description = "Pruned: this node keeps only recent history (see `oldest_milestone` in /info)", body = ErrorBody),
    ))]
pub(crate) async fn transaction<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id: TxId = parse_path(id, "transaction id")?;
    let bytes = state
        .service
        .transaction(&id)?
        .ok_or_else(|| ApiError::not_found(format!("transaction {id} not found")))?;
    let format = Format::from_accept(&headers);
    if format == Format::OctetStream {
        let mut response = bytes.into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        return Ok(response);
    }
    let tx = dag_core::codec::decode(&bytes)
        .map_err(|e| ApiError::internal(format!("stored transaction {id} does not decode: {e}")))?;
    Ok(Reply::ok(format, tx).into_response())
}

/// Proof that a transaction was confirmed by a milestone (and its payload applied, if it
/// was): its bytes, the milestone's transaction with the committee's signatures, and the
/// audit paths into the roots the milestone signed. Check it with the committee's keys only
/// (`dag_core::proof::TransactionProof::verify`, `tangle-wallet verify-proof`); it stays
/// valid after this node prunes.
#[utoipa::path(get, path = "/api/v1/transactions/{id}/proof", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id, 64 hex characters")),
    responses(
        (status = 200, body = super::openapi::ProofDoc),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "Unknown, or not confirmed yet", body = ErrorBody),
        (status = 410, description = "Pruned: this node keeps only recent history (see `oldest_milestone` in /info)", body = ErrorBody),
    ))]
pub(crate) async fn transaction_proof<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<dag_core::proof::TransactionProof>> {
    let id: TxId = parse_path(id, "transaction id")?;
    let proof = state.service.transaction_proof(&id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no proof for transaction {id}: unknown or not confirmed yet"
        ))
    })?;
    Ok(Reply::ok(Format::from_accept(&headers), proof))
}

/// Proof of the transaction whose confirmation decided a payload: applied (`applied` path
/// present) or conflicting (confirmed, no `applied` path). See the transaction proof.
#[utoipa::path(get, path = "/api/v1/payloads/{id}/proof", tag = "payloads",
    params(("id" = String, Path, description = "Payload id, 64 hex characters")),
    responses(
        (status = 200, body = super::openapi::ProofDoc),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "Unknown, or not confirmed yet", body = ErrorBody),
        (status = 410, description = "Pruned: this node keeps only recent history (see `oldest_milestone` in /info)", body = ErrorBody),
    ))]
pub(crate) async fn payload_proof<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<dag_core::proof::TransactionProof>> {
    let id: PayloadId = parse_path(id, "payload id")?;
    let proof = state.service.payload_proof(&id)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no proof for payload {id}: unknown or not confirmed yet"
        ))
    })?;
    Ok(Reply::ok(Format::from_accept(&headers), proof))
}

/// A transaction's metadata (solidity, confirmation, ledger outcome, approvers).
#[utoipa::path(get, path = "/api/v1/transactions/{id}/metadata", tag = "transactions",
    params(("id" = String, Path, description = "Transaction id, 64 hex characters")),
    responses(
        (status = 200, body = TxMetadataView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "Unknown", body = ErrorBody),
        (status = 410, description = "Pruned: this node keeps only recent history (see `oldest_milestone` in /info)", body = ErrorBody),
    ))]
pub(crate) async fn transaction_metadata<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<TxMetadataView>> {
    let id: TxId = parse_path(id, "transaction id")?;
    let view = state
        .service
        .transaction_metadata(&id)?
        .ok_or_else(|| ApiError::not_found(format!("transaction {id} not found")))?;
    Ok(Reply::ok(Format::from_accept(&headers), view))
}

/// A payload's status: pending, reattaching (not final), confirmed, or conflicting with the
/// reason (final).
#[utoipa::path(get, path = "/api/v1/payloads/{id}", tag = "payloads",
    params(("id" = String, Path, description = "Payload id, 64 hex characters")),
    responses(
        (status = 200, body = PayloadView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "Unknown", body = ErrorBody),
        (status = 410, description = "Pruned: this node keeps only recent history (see `oldest_milestone` in /info)", body = ErrorBody),
    ))]
pub(crate) async fn payload<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<PayloadView>> {
    let id: PayloadId = parse_path(id, "payload id")?;
    let view = state
        .service
        .payload(&id)?
        .ok_or_else(|| ApiError::not_found(format!("payload {id} not found")))?;
    Ok(Reply::ok(Format::from_accept(&headers), view))
}

/// An account's confirmed balance and next sequence number (zero for unknown accounts).
#[utoipa::path(get, path = "/api/v1/accounts/{address}", tag = "ledger",
    params(("address" = String, Path, description = "bech32 (`tng1...`) or `did:key:z6Mk...`")),
    responses(
        (status = 200, body = AccountView),
        (status = 400, description = "Bad address", body = ErrorBody),
    ))]
pub(crate) async fn account<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    address: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<AccountView>> {
    let address: Address = parse_path(address, "address")?;
    let view = state.service.account(&address)?;
    Ok(Reply::ok(Format::from_accept(&headers), view))
}

/// Proof of an account's balance and next sequence number after the last applied
/// milestone (or of its absence: an unknown account holds nothing): the milestone's
/// transaction with the committee's signatures and the state tree's path to the
/// `state_root` it signed. Check it with the committee's keys only
/// (`dag_core::proof::StateProof::verify`, `tangle-wallet balance --prove`).
#[utoipa::path(get, path = "/api/v1/accounts/{address}/proof", tag = "ledger",
    params(("address" = String, Path, description = "bech32 (`tng1...`) or `did:key:z6Mk...`")),
    responses(
        (status = 200, body = super::openapi::StateProofDoc),
        (status = 400, description = "Bad address", body = ErrorBody),
        (status = 404, description = "No milestone applied yet", body = ErrorBody),
        (status = 503, description = "The last milestone is not stored yet; retry", body = ErrorBody),
    ))]
pub(crate) async fn account_proof<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    address: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<dag_core::proof::StateProof>> {
    let address: Address = parse_path(address, "address")?;
    let entry = dag_core::proof::StateEntry::Account {
        address,
        account: None,
    };
    state_proof(&state, &headers, entry).await
}

/// Proof of a payment channel's state after the last applied milestone (or that it does
/// not exist); see the account proof.
#[utoipa::path(get, path = "/api/v1/channels/{id}/proof", tag = "ledger",
    params(("id" = String, Path, description = "Channel id, 64 hex characters")),
    responses(
        (status = 200, body = super::openapi::StateProofDoc),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "No milestone applied yet", body = ErrorBody),
        (status = 503, description = "The last milestone is not stored yet; retry", body = ErrorBody),
    ))]
pub(crate) async fn channel_proof<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<dag_core::proof::StateProof>> {
    let channel_id: ChannelId = parse_path(id, "channel id")?;
    let entry = dag_core::proof::StateEntry::Channel {
        channel_id,
        channel: None,
    };
    state_proof(&state, &headers, entry).await
}

/// The state proof of `entry`. The ledger can stand at a milestone whose batch the store
/// has not written yet (milliseconds, the milestone writer's lag): then it asks again, for at
/// most a second, before answering 503.
async fn state_proof<S: NodeService>(
    state: &AppState<S>,
    headers: &HeaderMap,
    entry: dag_core::proof::StateEntry,
) -> ApiResult<Reply<dag_core::proof::StateProof>> {
    let mut attempts = 0;
    let proof = loop {
        match state.service.state_proof(entry) {
            Err(crate::service::ServiceError::Unavailable(_)) if attempts < 50 => {
                attempts += 1;
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            r => break r?,
        }
    }
    .ok_or_else(|| ApiError::not_found("no milestone applied yet".to_string()))?;
    Ok(Reply::ok(Format::from_accept(headers), proof))
}

/// A payment channel.
#[utoipa::path(get, path = "/api/v1/channels/{id}", tag = "ledger",
    params(("id" = String, Path, description = "Channel id, 64 hex characters")),
    responses(
        (status = 200, body = ChannelView),
        (status = 400, description = "Bad id", body = ErrorBody),
        (status = 404, description = "Unknown", body = ErrorBody),
    ))]
pub(crate) async fn channel<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<ChannelView>> {
    let id: ChannelId = parse_path(id, "channel id")?;
    let view = state
        .service
        .channel(&id)?
        .ok_or_else(|| ApiError::not_found(format!("channel {id} not found")))?;
    Ok(Reply::ok(Format::from_accept(&headers), view))
}

/// The milestone committees by index range, with the evidence of each rotation.
#[utoipa::path(get, path = "/api/v1/committee", tag = "ledger",
    responses(
        (status = 200, body = crate::service::CommitteeView),
        (status = 404, description = "Not known to this service", body = ErrorBody),
    ))]
pub(crate) async fn committee<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> ApiResult<Reply<crate::service::CommitteeView>> {
    let view = state
        .service
        .committee()
        .ok_or_else(|| ApiError::not_found("no committee schedule here".to_string()))?;
    Ok(Reply::ok(Format::from_accept(&headers), view))
}

/// An applied milestone by index, or the latest applied one.
#[utoipa::path(get, path = "/api/v1/milestones/{index}", tag = "ledger",
    params(("index" = String, Path, description = "Milestone index, or `latest`")),
    responses(
        (status = 200, body = MilestoneView),
        (status = 400, description = "Neither an index nor `latest`", body = ErrorBody),
        (status = 404, description = "No such milestone (yet)", body = ErrorBody),
        (status = 410, description = "Pruned: this node keeps only recent history (see `oldest_milestone` in /info)", body = ErrorBody),
    ))]
pub(crate) async fn milestone<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    index: Result<Path<String>, PathRejection>,
) -> ApiResult<Reply<MilestoneView>> {
    let Path(raw) = index?;
    let index: Option<MilestoneIndex> = if raw == "latest" {
        None
    } else {
        let n: u64 = raw.parse().map_err(|e| {
            ApiError::malformed(format!(
                "bad milestone index {raw:?} (want a number or `latest`): {e}"
            ))
        })?;
        // A well-formed index beyond the index type cannot exist yet: 404 like any other
        // milestone not applied.
        Some(
            MilestoneIndex::try_from(n)
                .map_err(|_| ApiError::not_found(format!("milestone {n} not found")))?,
        )
    };
    let view = state.service.milestone(index)?.ok_or_else(|| {
        ApiError::not_found(match index {
            Some(i) => format!("milestone {i} not found"),
            None => "no milestone applied yet".to_owned(),
        })
    })?;
    Ok(Reply::ok(Format::from_accept(&headers), view))
}

/// Live node events as Server-Sent Events. Every event has an `id:` (integers that only
/// grow); reconnecting with `Last-Event-ID` replays what was missed from a ring of the
/// newest `event_replay` events (65,536 by default). Each [`NodeEvent`](crate::service::NodeEvent) is a `message` event
/// (JSON with a `type` field); a `lagged` event ([`LaggedEvent`](super::LaggedEvent)) says
/// which ids a client can no longer get (it fell behind the ring, or was away too long) and
/// comes before the events after the gap. Keep-alive comments every 15 s. The stream ends
/// when the server shuts down. See the `events` module for the id scheme.
#[utoipa::path(get, path = "/api/v1/events", tag = "node",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "Resume after this event id (an integer from an earlier `id:` line)",
        pattern = "^[0-9]{1,20}$")),
    responses(
        (status = 200, description = "text/event-stream: `message` events with NodeEvent JSON, \
            `lagged` events with LaggedEvent JSON, each with an `id:`",
            content((String = "text/event-stream"))),
        (status = 400, description = "`Last-Event-ID` is not an event id", body = ErrorBody),
        (status = 503, description = "Too many open event streams; retry later", body = ErrorBody),
    ))]
pub(crate) async fn events<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let last_event_id = last_event_id(&headers)?;
    let Some(guard) = stream_slot(&state) else {
        return Ok(too_many_streams(state.options.max_event_streams));
    };
    let dropped = state.stats.events_dropped.clone();
    state.events.ensure_pump(
        || state.service.subscribe(),
        state.shutdown.clone(),
        move |n| {
            dropped.inc_by(n);
        },
    );
    Ok(sse(&state.events, last_event_id, &state, guard))
}

/// Live node events for dashboards, sampled so that a stream's size does not grow with
/// the node's throughput: every `milestone`; `transaction`s up to 50 a second (bursts of
/// 50), each with `sampled_parents`, the nearest transactions this stream sent that it
/// approves (directly or through ones left out; a `milestone` whose transaction was left
/// out carries them too); the final `payload` verdict of every transaction sent; other
/// `conflicting` verdicts and `reattached` events up to 20 a second; and every second a
/// `summary` ([`SampledSummary`](super::SampledSummary)) counting everything, sent or not.
/// Below those rates a client sees every event. Events are JSON as on `/api/v1/events`;
/// ids, `Last-Event-ID` and `lagged` work as there (this stream has its own ids). Counts
/// towards the same limit of open event streams.
#[utoipa::path(get, path = "/api/v1/events/sampled", tag = "node",
    params(("Last-Event-ID" = Option<String>, Header,
        description = "Resume after this event id (an integer from an earlier `id:` line)",
        pattern = "^[0-9]{1,20}$")),
    responses(
        (status = 200, description = "text/event-stream: `message` events with NodeEvent or \
            SampledSummary JSON, `lagged` events with LaggedEvent JSON, each with an `id:`",
            content((String = "text/event-stream"))),
        (status = 400, description = "`Last-Event-ID` is not an event id", body = ErrorBody),
        (status = 503, description = "Too many open event streams; retry later", body = ErrorBody),
    ))]
pub(crate) async fn events_sampled<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let last_event_id = last_event_id(&headers)?;
    let Some(guard) = stream_slot(&state) else {
        return Ok(too_many_streams(state.options.max_event_streams));
    };
    let dropped = state.stats.events_dropped.clone();
    super::sampled::ensure_pump(
        &state.sampled,
        || state.service.subscribe(),
        state.shutdown.clone(),
        move |n| {
            dropped.inc_by(n);
        },
    );
    Ok(sse(&state.sampled, last_event_id, &state, guard))
}

/// The `Last-Event-ID` header as an event id, if there is one.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| ApiError::malformed("Last-Event-ID is not text"))?
                .trim();
            if text.is_empty() {
                Ok(None)
            } else {
                Ok(Some(text.parse::<u64>().map_err(|e| {
                    ApiError::malformed(format!("Last-Event-ID {text:?} is not an event id: {e}"))
                })?))
            }
        }
    }
}

/// One of the open event stream slots; `None` (counted as refused) when they are taken.
fn stream_slot<S>(state: &AppState<S>) -> Option<SseClientGuard> {
    let stats = state.stats.clone();
    let open = stats.sse_clients.inc() + 1;
    let guard = SseClientGuard(stats.clone());
    let max = state.options.max_event_streams;
    if usize::try_from(open).map_or(true, |open| open > max) {
        drop(guard);
        stats.sse_refused.inc();
        return None;
    }
    Some(guard)
}

/// The 503 answer when all `max` event stream slots are taken.
fn too_many_streams(max: usize) -> Response {
    let mut response = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!("{max} event streams are open already; retry later"),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(5));
    response
}

/// The SSE answer reading `hub` from `last_event_id` on.
fn sse<S>(
    hub: &std::sync::Arc<super::events::EventHub>,
    last_event_id: Option<u64>,
    state: &AppState<S>,
    guard: SseClientGuard,
) -> Response {
    let (next, first) = hub.start(last_event_id);
    let stream = hub
        .clone()
        .stream(next, first, state.shutdown.clone(), guard);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// Counts open SSE streams for `/metrics`.
struct SseClientGuard(std::sync::Arc<super::ApiStats>);

impl Drop for SseClientGuard {
    fn drop(&mut self) {
        self.0.sse_clients.dec();
    }
}

/// Metrics of the node and of its API: the Prometheus text format 0.0.4 by default, or
/// OpenMetrics 1.0 when `Accept` asks for `application/openmetrics-text`.
#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus text format 0.0.4, or OpenMetrics \
        1.0.0 text (ending with `# EOF`) when asked for",
        content((String = "text/plain"), (String = "application/openmetrics-text")))))]
pub(crate) async fn metrics<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Response {
    let node = state.service.metrics();
    let mut text = String::with_capacity(node.len() + 2048);
    for line in node.lines().filter(|l| *l != "# EOF") {
        text.push_str(line);
        text.push('\n');
    }
    state.stats.render(&mut text);
    text.push_str("# EOF\n");
    let (text, content_type) = if wants_openmetrics(&headers) {
        (
            text,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
    } else {
        (
            crate::metrics::openmetrics_to_prometheus(&text),
            "text/plain; version=0.0.4; charset=utf-8",
        )
    };
    let mut response = text.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Whether `Accept` lists `application/openmetrics-text` with a non-zero quality (Prometheus
/// sends it first).
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("");
            media.eq_ignore_ascii_case("application/openmetrics-text")
                && !parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        })
}

/// Dev mode only (404 otherwise): pays `amount` from the faucet account to `address`.
#[utoipa::path(post, path = "/api/v1/faucet", tag = "dev",
    request_body = FaucetRequest,
    responses(
        (status = 202, description = "Payment accepted; poll the payload id", body = PayloadReceipt),
        (status = 400, description = "Bad address or body", body = ErrorBody),
        (status = 404, description = "Not a dev node", body = ErrorBody),
        (status = 409, description = "Faucet conflict", body = ErrorBody),
        (status = 422, description = "Invalid (e.g. amount 0)", body = ErrorBody),
    ))]
pub(crate) async fn faucet<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Decoded(request): Decoded<FaucetRequest>,
) -> ApiResult<Reply<PayloadReceipt>> {
    let to: Address = request
        .address
        .parse()
        .map_err(|e| ApiError::malformed(format!("bad address {:?}: {e}", request.address)))?;
    let receipt = state.service.faucet(to, request.amount).await?;
    Ok(Reply::new(
        StatusCode::ACCEPTED,
        Format::from_accept(&headers),
        receipt,
    ))
}

/// The API's non-secret settings (admin; bearer token).
#[utoipa::path(get, path = "/api/v1/admin/config", tag = "admin",
    security(("bearer" = [])),
    responses(
        (status = 200, body = ApiConfigView),
        (status = 401, description = "No bearer token", body = ErrorBody),
        (status = 403, description = "Wrong token", body = ErrorBody),
        (status = 404, description = "Admin routes disabled (no token configured)", body = ErrorBody),
    ))]
pub(crate) async fn admin_config<S: NodeService>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Reply<ApiConfigView> {
    Reply::ok(
        Format::from_accept(&headers),
        ApiConfigView::from(&*state.options),
    )
}

/// The dashboard page: `dashboard/index.html` with the vendored uPlot (CSS and JS) put in
/// place of its two markers, once.
static DASHBOARD: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    include_str!("../dashboard/index.html")
        .replacen(
            "/*UPLOT_CSS*/",
            include_str!("../dashboard/vendor/uPlot.min.css"),
            1,
        )
        .replacen(
            "/*UPLOT_JS*/",
            include_str!("../dashboard/vendor/uPlot.iife.min.js"),
            1,
        )
});

/// The dashboard: one self-contained page (inline CSS and JS, uPlot compiled in) that draws
/// the live Tangle and charts from `/api/v1/events`, and polls `/api/v1/info`, `/health` and
/// `/metrics`.
#[utoipa::path(get, path = "/", tag = "node",
    responses((status = 200, description = "HTML dashboard", content((String = "text/html")))))]
pub(crate) async fn dashboard() -> Response {
    let mut response = Html(DASHBOARD.as_str()).into_response();
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
        ),
    );
    response
}

/// Any path no route matches: 404 `not_found` (JSON like every error).
pub(crate) async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}
