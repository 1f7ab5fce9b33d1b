//! Content negotiation: JSON by default, MessagePack when asked for.
//!
//! Responses: [`Reply`] renders JSON unless the request's `Accept` prefers
//! `application/msgpack` (also `application/x-msgpack`, `application/vnd.msgpack`), in which
//! case it is MessagePack with named fields (`rmp_serde::to_vec_named`). MessagePack is a
//! binary serde format, so ids, signatures and addresses come out as `bin`, not hex/bech32.
//!
//! Requests: [`Decoded`] reads a JSON body (`application/json`, any `+json`, or no
//! `Content-Type` at all) or a MessagePack body (the same three msgpack media types).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::error::ApiError;

/// `Content-Type` of MessagePack bodies we send.
pub(crate) const MSGPACK: &str = "application/msgpack";
const MSGPACK_TYPES: [&str; 3] = [
    "application/msgpack",
    "application/x-msgpack",
    "application/vnd.msgpack",
];

/// A representation a response can take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/json`.
    Json,
    /// `application/msgpack`.
    MsgPack,
    /// `application/octet-stream` (raw transaction bytes only).
    OctetStream,
}

impl Format {
    /// The representation the request's `Accept` header prefers, among those we serve.
    ///
    /// Explicitly listed types win over wildcards; between explicit types the higher `q`
    /// wins, and on a tie the one listed first. No `Accept`, or nothing we serve: JSON.
    pub(crate) fn from_accept(headers: &HeaderMap) -> Format {
        let mut best: Option<(Format, f32)> = None;
        for value in headers.get_all(header::ACCEPT) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let q = parts
                    .filter_map(|p| p.trim().strip_prefix("q="))
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                let format = if MSGPACK_TYPES.contains(&media.as_str()) {
                    Format::MsgPack
                } else if media == "application/json" || media.ends_with("+json") {
                    Format::Json
                } else if media == "application/octet-stream" {
                    Format::OctetStream
                } else {
                    continue;
                };
                if q > 0.0 && best.is_none_or(|(_, bq)| q > bq) {
                    best = Some((format, q));
                }
            }
        }
        best.map_or(Format::Json, |(f, _)| f)
    }

    /// The representation a request body is in, from its `Content-Type`, if we read it.
    fn from_content_type(headers: &HeaderMap) -> Option<Format> {
        let Some(value) = headers.get(header::CONTENT_TYPE) else {
            return Some(Format::Json);
        };
        let media = value
            .to_str()
            .ok()?
            .split(';')
            .next()?
            .trim()
            .to_ascii_lowercase();
        if media == "application/json" || media.ends_with("+json") {
            Some(Format::Json)
        } else if MSGPACK_TYPES.contains(&media.as_str()) {
            Some(Format::MsgPack)
        } else if media == "application/octet-stream" {
            Some(Format::OctetStream)
        } else {
            None
        }
    }
}

/// A successful response body in the negotiated representation (JSON unless the client asked
/// for MessagePack; `OctetStream` is treated as JSON here, raw bytes are handled by the
/// transaction route itself).
pub(crate) struct Reply<T> {
    status: StatusCode,
    format: Format,
    value: T,
}

impl<T: Serialize> Reply<T> {
    /// `value` with status `status`, rendered as `format`.
    pub(crate) fn new(status: StatusCode, format: Format, value: T) -> Self {
        Reply {
            status,
            format,
            value,
        }
    }

    /// 200 OK.
    pub(crate) fn ok(format: Format, value: T) -> Self {
        Self::new(StatusCode::OK, format, value)
    }
}

impl<T: Serialize> IntoResponse for Reply<T> {
    fn into_response(self) -> Response {
        let (bytes, content_type) = match self.format {
            Format::MsgPack => (
                rmp_serde::to_vec_named(&self.value).map_err(|e| e.to_string()),
                MSGPACK,
            ),
            Format::Json | Format::OctetStream => (
                serde_json::to_vec(&self.value).map_err(|e| e.to_string()),
                "application/json",
            ),
        };
        match bytes {
            Ok(bytes) => {
                let mut response = (self.status, bytes).into_response();
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
                response
            }
            Err(e) => ApiError::internal(format!("serialising the response: {e}")).into_response(),
        }
    }
}

/// The raw body of a request with the representation its `Content-Type` names. Over the
/// body limit: 413; an unknown `Content-Type`: 415.
pub(crate) struct RawBody {
    /// Representation (JSON when no `Content-Type` was sent).
    pub(crate) format: Format,
    /// The bytes.
    pub(crate) bytes: Bytes,
}

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let format = Format::from_content_type(req.headers()).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or application/msgpack",
            )
        })?;
        let bytes = Bytes::from_request(req, state).await?;
        Ok(RawBody { format, bytes })
    }
}

/// A request body decoded from JSON or MessagePack (see the module docs); 400 when it does
/// not decode, 415 for any other `Content-Type`.
pub(crate) struct Decoded<T>(pub(crate) T);

impl<T: DeserializeOwned> Decoded<T> {
    /// Decodes `body`.
    pub(crate) fn decode(body: &RawBody) -> Result<T, ApiError> {
        match body.format {
            Format::Json => serde_json::from_slice(&body.bytes)
                .map_err(|e| ApiError::malformed(format!("JSON body: {e}"))),
            Format::MsgPack => rmp_serde::from_slice(&body.bytes)
                .map_err(|e| ApiError::malformed(format!("MessagePack body: {e}"))),
            Format::OctetStream => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json or application/msgpack",
            )),
        }
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Decoded<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = RawBody::from_request(req, state).await?;
        Self::decode(&body).map(Decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Format {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        Format::from_accept(&h)
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(Format::from_accept(&HeaderMap::new()), Format::Json);
        assert_eq!(accept("*/*"), Format::Json);
        assert_eq!(accept("text/html"), Format::Json);
        assert_eq!(accept("application/msgpack"), Format::MsgPack);
        assert_eq!(accept("application/x-msgpack, */*"), Format::MsgPack);
        assert_eq!(
            accept("application/json, application/msgpack"),
            Format::Json
        );
        assert_eq!(
            accept("application/json;q=0.5, application/msgpack"),
            Format::MsgPack
        );
        assert_eq!(accept("application/msgpack;q=0, */*"), Format::Json);
        assert_eq!(accept("application/octet-stream"), Format::OctetStream);
    }
}
