//! [`ApiError`]: every error the API returns, as JSON `{"code", "message"}` with its status.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::service::{ServiceError, SubmitError};

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `malformed`, `unauthorized`, `forbidden`, `not_found`,
    /// `not_enabled`, `method_not_allowed`, `not_acceptable`, `timeout`, `conflict`,
    /// `too_large`, `uri_too_long`, `unsupported_media_type`, `invalid`, `rate_limited`,
    /// `headers_too_large`, `bad_request` (another 4xx), `pruned` (410), `storage`, `internal`,
    /// `unavailable`.
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

/// An error response: a status and an [`ErrorBody`]. Always rendered as JSON, whatever the
/// request's `Accept` says, so that a client can always read why it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Body.
    pub body: ErrorBody,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }

    /// 400 `malformed`.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The error code a status gets when nothing more specific is known (used to turn the
    /// plain-text error responses of axum and tower-http into JSON).
    pub(crate) fn code_for_status(status: StatusCode) -> &'static str {
        match status {
            StatusCode::BAD_REQUEST => "malformed",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::NOT_ACCEPTABLE => "not_acceptable",
            StatusCode::REQUEST_TIMEOUT => "timeout",
            StatusCode::CONFLICT => "conflict",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::URI_TOO_LONG => "uri_too_long",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            s if s.is_client_error() => "bad_request",
            _ => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.body).expect("two strings always serialise");
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// As documented on [`SubmitError`]: 400, 413, 422, 409, 503, 404.
impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let (status, code) = match &e {
            SubmitError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed"),
            SubmitError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            SubmitError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid"),
            SubmitError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            SubmitError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            SubmitError::NotEnabled(_) => (StatusCode::NOT_FOUND, "not_enabled"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// As documented on [`ServiceError`]: storage failures are 500, unavailability 503, pruned
/// history 410.
impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let (status, code) = match &e {
            ServiceError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ServiceError::Pruned(_) => (StatusCode::GONE, "pruned"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

/// A body that could not be read: 413 when over the limit, 408 when it stopped arriving
/// (the body timeout), 400 otherwise.
impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        if caused_by::<tower_http::timeout::TimeoutError>(&e) {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body stopped arriving (body timeout)",
            );
        }
        let status = e.status();
        ApiError::new(status, Self::code_for_status(status), e.body_text())
    }
}

/// Whether `e` or any error in its `source` chain is an `E`.
fn caused_by<E: std::error::Error + 'static>(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if e.is::<E>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// axum's JSON extractor rejection, kept with its status (400, 413, 415, 422).
impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        let status = e.status();
        ApiError::new(status, Self::code_for_status(status), e.body_text())
    }
}

/// A path that does not fit the route's parameters: always 400 `malformed`.
impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        let status = e.status();
        let status = if status.is_server_error() {
            status
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, Self::code_for_status(status), e.body_text())
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;
