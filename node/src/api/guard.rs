//! Request guards: the per-client rate limit, the admin bearer token, and the safety net that
//! turns any plain-text error response (axum's 405, a body-limit 413...) into JSON.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use super::error::ApiError;

/// Per-client-IP token buckets (governor's GCRA): `per_sec` requests a second on average, in
/// bursts of up to `burst`.
pub(crate) struct ClientLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Requests seen, to prune idle clients now and then.
    seen: AtomicU64,
    /// Requests refused, for `/metrics`.
    pub(crate) refused: AtomicU64,
}

/// Prune the per-client table every this many requests, so that it stays bounded by the
/// clients active in the last second or so rather than by every address ever seen.
const PRUNE_EVERY: u64 = 4096;

impl ClientLimiter {
    /// `None` when `per_sec` is 0 (no limit).
    pub(crate) fn new(per_sec: u32, burst: u32) -> Option<Self> {
        let per_sec = NonZeroU32::new(per_sec)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
        Some(ClientLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            seen: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// `Ok` if `ip` may make a request now, else how many whole seconds to wait (at least 1).
    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.seen.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&ip).map_err(|not_until| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
        })
    }
}

/// Middleware: 429 `rate_limited` (with `Retry-After`) once a client IP exceeds its quota.
///
/// The key is the TCP peer address from `ConnectInfo` (the server is started with
/// `into_make_service_with_connect_info`); forwarding headers are not trusted, so behind a
/// reverse proxy every client shares the proxy's bucket. Without `ConnectInfo` (the router
/// driven in-process) all requests share one bucket.
pub(crate) async fn rate_limit(
    State(limiter): State<Arc<ClientLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    match limiter.check(ip) {
        Ok(()) => next.run(request).await,
        Err(retry_after) => {
            let mut response = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests from {ip}; retry in {retry_after} s"),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            response
        }
    }
}

/// The admin bearer token, kept as its BLAKE2b-256 hash so that comparing it takes the same
/// time whatever the candidate (no length or prefix leak).
#[derive(Clone)]
pub(crate) struct AdminToken([u8; 32]);

impl AdminToken {
    /// From the configured token.
    pub(crate) fn new(token: &str) -> Self {
        AdminToken(dag_core::crypto::blake2b256(token.as_bytes()))
    }

    fn matches(&self, candidate: &str) -> bool {
        let h = dag_core::crypto::blake2b256(candidate.as_bytes());
        h.iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Middleware on `/api/v1/admin/*`: 401 `unauthorized` without a well-formed
/// `Authorization: Bearer <token>` header, 403 `forbidden` with the wrong token.
pub(crate) async fn require_admin(
    State(token): State<AdminToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|t| !t.is_empty());
    match presented {
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin routes need an Authorization: Bearer <token> header",
        )
        .into_response(),
        Some(t) if !token.matches(t) => {
            ApiError::new(StatusCode::FORBIDDEN, "forbidden", "wrong admin token").into_response()
        }
        Some(_) => next.run(request).await,
    }
}

/// Largest plain-text error body carried over into the JSON message.
const MAX_ERROR_TEXT: usize = 1024;

/// Response mapper for the whole router: an error status whose body is not already JSON
/// (axum's 405, rejections of extractors we do not wrap, tower-http's 413) gets a JSON
/// [`super::error::ErrorBody`], keeping the status and using the original text as the
/// message. Also sets `X-Content-Type-Options: nosniff` on every response.
pub(crate) async fn json_errors(response: Response) -> Response {
    let mut response = if is_error_without_json(&response) {
        let status = response.status();
        let (parts, body) = response.into_parts();
        let text = axum::body::to_bytes(body, MAX_ERROR_TEXT)
            .await
            .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
            .unwrap_or_default();
        let message = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text
        };
        let mut json =
            ApiError::new(status, ApiError::code_for_status(status), message).into_response();
        // Keep headers such as `Allow` (405) or `Retry-After`.
        for (name, value) in parts.headers.iter() {
            if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
                json.headers_mut().insert(name, value.clone());
            }
        }
        json
    } else {
        response
    };
    response.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn is_error_without_json(response: &Response<Body>) -> bool {
    let status = response.status();
    (status.is_client_error() || status.is_server_error())
        && !response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_token_compares_by_value() {
        let t = AdminToken::new("s3cret");
        assert!(t.matches("s3cret"));
        assert!(!t.matches("s3cre"));
        assert!(!t.matches("s3cretx"));
        assert!(!t.matches(""));
    }

    #[test]
    fn limiter_refuses_after_burst() {
        let l = ClientLimiter::new(1, 2).unwrap();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        // A third immediate request exceeds a burst of 2 at 1/s (the bucket refills in 1 s,
        // far longer than these three calls take).
        let wait = l.check(ip).unwrap_err();
        assert!(wait >= 1);
        assert!(l.check(other).is_ok(), "buckets are per client");
        assert_eq!(l.refused.load(Ordering::Relaxed), 1);
        assert!(ClientLimiter::new(0, 5).is_none());
    }
}
