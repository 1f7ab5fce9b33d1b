//! Request guards: the per-client rate limit, the admin bearer token, the request-line and
//! header limits (414, 431), the request timeout, and the safety net that turns any
//! plain-text error response (axum's 405, a body-limit 413...) into JSON.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use prometheus_client::metrics::counter::Counter;

use super::error::ApiError;

/// Per-client-IP token buckets (governor's GCRA): `per_sec` requests a second on average, in
/// bursts of up to `burst`.
pub(crate) struct ClientLimiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Requests seen, to prune idle clients now and then.
    seen: AtomicU64,
    /// Requests refused, for `/metrics`.
    pub(crate) refused: Counter,
}

/// Prune the per-client table every this many requests, so that it stays bounded by the
/// clients active in the last second or so rather than by every address ever seen.
const PRUNE_EVERY: u64 = 4096;

impl ClientLimiter {
    /// `None` when `per_sec` is 0 (no limit). Refusals are counted in `refused`.
    pub(crate) fn new(per_sec: u32, burst: u32, refused: Counter) -> Option<Self> {
        let per_sec = NonZeroU32::new(per_sec)?;
        let burst = NonZeroU32::new(burst).unwrap_or(per_sec);
        Some(ClientLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst)),
            seen: AtomicU64::new(0),
            refused,
        })
    }

    /// `Ok` if `ip` may make a request now, else how many whole seconds to wait (at least 1).
    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        if self.seen.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(&ip).map_err(|not_until| {
            self.refused.inc();
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

/// Longest request target (path and query, or the absolute URI) answered; 414 beyond. Below
/// hyper's own limit (64 KiB, answered 414 without a body), so the JSON answer is what
/// clients get up to there.
pub(crate) const MAX_URI_BYTES: usize = 8 * 1024;
/// Most header lines in a request; 431 beyond (hyper itself parses up to
/// [`super::server::HYPER_MAX_HEADERS`]).
pub(crate) const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values (each line counted with its `: ` and CRLF); 431
/// beyond. Below hyper's read buffer (about 400 KiB, a head beyond it is answered 431 without
/// a body).
pub(crate) const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Counts a routed request and times its answer (see [`super::ApiStats::requests`]).
pub(crate) async fn record_route(
    State(stats): State<Arc<super::ApiStats>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // Only the methods the API answers become labels (any other token a client sends would
    // make a series of its own).
    let method = match request.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "HEAD" | "OPTIONS" | "PATCH") => m,
        _ => "other",
    }
    .to_owned();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let labels = super::RouteLabels { method, route };
    stats
        .request_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    stats
        .requests
        .get_or_create(&super::RouteStatusLabels {
            method: labels.method,
            route: labels.route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// Middleware: 414 `uri_too_long` for a request target over [`MAX_URI_BYTES`], 431
/// `headers_too_large` for more than [`MAX_HEADERS`] header lines or [`MAX_HEADER_BYTES`].
pub(crate) async fn head_limits(request: Request, next: Next) -> Response {
    let uri = request.uri();
    let target = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.scheme_str().map_or(0, |s| s.len() + 3);
    if target > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is {target} bytes, at most {MAX_URI_BYTES}"),
        )
        .into_response();
    }
    let headers = request.headers();
    let lines = headers.len();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if lines > MAX_HEADERS || bytes > MAX_HEADER_BYTES {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "{lines} header lines, {bytes} bytes; at most {MAX_HEADERS} lines and \
                 {MAX_HEADER_BYTES} bytes"
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Middleware: 503 `unavailable` when the inner service has not answered within the
/// timeout (the request is abandoned; a submission may still take effect, so clients look
/// it up before retrying).
pub(crate) async fn request_timeout(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "no answer within {} ms; a submission may still be applied, look it up \
                 before retrying",
                timeout.as_millis()
            ),
        )
        .into_response(),
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
        let l = ClientLimiter::new(1, 2, Counter::default()).unwrap();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let other = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        // A third immediate request exceeds a burst of 2 at 1/s (the bucket refills in 1 s,
        // far longer than these three calls take).
        let wait = l.check(ip).unwrap_err();
        assert!(wait >= 1);
        assert!(l.check(other).is_ok(), "buckets are per client");
        assert_eq!(l.refused.get(), 1);
        assert!(ClientLimiter::new(0, 5, Counter::default()).is_none());
    }
}
