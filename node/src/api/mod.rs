//! The HTTP API (axum), generic over [`NodeService`] so that it never reaches into the node.
//!
//! [`router`] builds the routes; [`serve`] runs them on a listener until a shutdown future
//! completes (tests bind `127.0.0.1:0`, the binary binds the configured address).
//!
//! ## Routes
//! | Route | Answer |
//! |---|---|
//! | `GET /health` | 200, or 503 when unhealthy; body [`Health`](crate::service::Health) |
//! | `GET /api/v1/info` | [`NodeInfo`](crate::service::NodeInfo) |
//! | `GET /api/v1/tips` | [`TipsView`] |
//! | `POST /api/v1/transactions` | raw canonical bytes (`application/octet-stream`) or `{"bytes": "<hex>"}`; 201 [`TransactionSubmitted`] |
//! | `POST /api/v1/payloads` | a `SignedPayload` (JSON, or MessagePack with `Content-Type: application/msgpack`); 202 [`PayloadReceipt`](crate::service::PayloadReceipt) |
//! | `POST /api/v1/payloads/batch` | an array of them; 200 with one [`BatchVerdict`] each, in order |
//! | `GET /api/v1/transactions/{id}` | the decoded transaction; its canonical bytes with `Accept: application/octet-stream` |
//! | `GET /api/v1/transactions/{id}/metadata` | [`TxMetadataView`](crate::service::TxMetadataView) |
//! | `GET /api/v1/payloads/{id}` | [`PayloadView`](crate::service::PayloadView): pending / reattaching / confirmed / conflicting + reason |
//! | `GET /api/v1/accounts/{address}` | [`AccountView`](crate::service::AccountView); bech32 or `did:key` |
//! | `GET /api/v1/channels/{id}` | [`ChannelView`](crate::service::ChannelView) |
//! | `GET /api/v1/milestones/{index\|latest}` | [`MilestoneView`](crate::service::MilestoneView) |
//! | `GET /api/v1/events` | Server-Sent Events, one JSON [`NodeEvent`](crate::service::NodeEvent) each, keep-alive |
//! | `GET /metrics` | Prometheus text: the node's metrics, then `tangle_api_*` |
//! | `POST /api/v1/faucet` | dev mode only (404 otherwise): `{"address", "amount"}`; 202 receipt |
//! | `GET /api/v1/admin/config` | bearer token; [`ApiConfigView`] |
//! | `GET /api/v1/openapi.json`, `/swagger-ui` | the [`ApiDoc`] document and Swagger UI (assets compiled in) |
//! | `GET /` | the dashboard: one HTML page following info, tips and milestones live |
//!
//! ## Representations
//! JSON by default. With `Accept: application/msgpack` every JSON success answer is
//! MessagePack instead (named fields; ids, signatures and addresses as `bin`). Request bodies
//! may be JSON or MessagePack as their `Content-Type` says. Note for MessagePack clients:
//! serde cannot decode binary ids inside `#[serde(flatten)]`ed or internally tagged types
//! (`PayloadView`, `NodeEvent`) from a non-self-describing source; decode those into a
//! generic value or ask for JSON.
//!
//! ## Errors
//! Every error is JSON [`ErrorBody`] `{"code", "message"}`, whatever `Accept` says:
//! 400 `malformed` (bad JSON/MessagePack/hex, bad id or address in the path, undecodable
//! transaction), 401 `unauthorized` / 403 `forbidden` (admin token), 404 `not_found` (or
//! `not_enabled` for a feature off on this node), 405 `method_not_allowed`, 409 `conflict`,
//! 413 `too_large` (body over [`ApiOptions::max_body_bytes`], batch over
//! [`ApiOptions::max_batch_len`]), 415 `unsupported_media_type`, 422 `invalid`,
//! 429 `rate_limited` (with `Retry-After`), 500 `storage`/`internal`, 503 `unavailable`.
//! [`SubmitError`](crate::service::SubmitError) and
//! [`ServiceError`](crate::service::ServiceError) map as their docs say. Plain-text errors
//! from axum or tower (405, body limit) are rewritten to JSON by a response mapper.
//!
//! ## Limits
//! Per-client-IP rate limit (GCRA, [`ApiOptions::rate_limit_per_sec`], keyed by the TCP peer
//! address, so it needs [`serve`] or `into_make_service_with_connect_info`), request body
//! limit, and admin routes under `/api/v1/admin/` that exist only when a token is configured
//! (404 otherwise). More admin routes (the peering layer's) plug in with
//! [`router_with_admin`].

mod error;
mod guard;
mod handlers;
mod negotiate;
mod openapi;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ApiResult, ErrorBody};
pub use handlers::{BatchVerdict, FaucetRequest, RawTransaction, TipsView, TransactionSubmitted};
pub use openapi::ApiDoc;

use crate::service::NodeService;
use guard::{AdminToken, ClientLimiter};

/// Settings of the HTTP API.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiOptions {
    /// Bearer token for `/api/v1/admin/*`; without one those routes do not exist (404).
    pub admin_token: Option<String>,
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Most payloads in one `POST /api/v1/payloads/batch` (413 beyond).
    pub max_batch_len: usize,
    /// Requests per second allowed per client IP on average; 0 disables the limit.
    pub rate_limit_per_sec: u32,
    /// Burst allowed per client IP; 0 means the same as `rate_limit_per_sec`.
    pub rate_limit_burst: u32,
    /// Dev mode: enables `POST /api/v1/faucet`.
    pub dev: bool,
}

impl Default for ApiOptions {
    /// No admin routes, 4 MiB bodies, batches of up to 10 000, 100 000 requests/s per
    /// client, no faucet.
    fn default() -> Self {
        ApiOptions {
            admin_token: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_batch_len: 10_000,
            rate_limit_per_sec: 100_000,
            rate_limit_burst: 0,
            dev: false,
        }
    }
}

/// Never prints the admin token.
impl std::fmt::Debug for ApiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOptions")
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_batch_len", &self.max_batch_len)
            .field("rate_limit_per_sec", &self.rate_limit_per_sec)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("dev", &self.dev)
            .finish()
    }
}

/// `GET /api/v1/admin/config`: the non-secret part of [`ApiOptions`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiConfigView {
    /// Always true when this is visible (admin routes need a token).
    pub admin_token_set: bool,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Most payloads per batch.
    pub max_batch_len: usize,
    /// Requests per second per client IP (0: unlimited).
    pub rate_limit_per_sec: u32,
    /// Burst per client IP.
    pub rate_limit_burst: u32,
    /// Dev mode (faucet on).
    pub dev: bool,
}

impl From<&ApiOptions> for ApiConfigView {
    fn from(o: &ApiOptions) -> Self {
        ApiConfigView {
            admin_token_set: o.admin_token.is_some(),
            max_body_bytes: o.max_body_bytes,
            max_batch_len: o.max_batch_len,
            rate_limit_per_sec: o.rate_limit_per_sec,
            rate_limit_burst: if o.rate_limit_burst == 0 {
                o.rate_limit_per_sec
            } else {
                o.rate_limit_burst
            },
            dev: o.dev,
        }
    }
}

/// Counters the API keeps about itself, appended to `/metrics`.
#[derive(Default)]
pub(crate) struct ApiStats {
    /// Open SSE streams.
    pub(crate) sse_clients: AtomicU64,
}

impl ApiStats {
    fn render(&self, out: &mut String, limiter: Option<&ClientLimiter>) {
        use std::fmt::Write;
        let _ = writeln!(
            out,
            "# HELP tangle_api_sse_clients Open /api/v1/events streams.\n\
             # TYPE tangle_api_sse_clients gauge\n\
             tangle_api_sse_clients {}",
            self.sse_clients.load(Ordering::Relaxed)
        );
        let refused = limiter.map_or(0, |l| l.refused.load(Ordering::Relaxed));
        let _ = writeln!(
            out,
            "# HELP tangle_api_rate_limited_total Requests refused with 429.\n\
             # TYPE tangle_api_rate_limited_total counter\n\
             tangle_api_rate_limited_total {refused}"
        );
    }
}

/// What every handler gets.
pub(crate) struct AppState<S> {
    pub(crate) service: S,
    pub(crate) options: Arc<ApiOptions>,
    /// Flips to `true` when the server shuts down (ends SSE streams).
    pub(crate) shutdown: watch::Receiver<bool>,
    /// Keeps the shutdown channel open when the router runs without [`serve`].
    _shutdown_tx: Arc<watch::Sender<bool>>,
    pub(crate) stats: Arc<ApiStats>,
    pub(crate) limiter: Option<Arc<ClientLimiter>>,
}

impl<S: Clone> Clone for AppState<S> {
    fn clone(&self) -> Self {
        AppState {
            service: self.service.clone(),
            options: self.options.clone(),
            shutdown: self.shutdown.clone(),
            _shutdown_tx: self._shutdown_tx.clone(),
            stats: self.stats.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

/// The API's routes over `service`, with no extra admin routes. See the module docs.
pub fn router<S: NodeService>(service: S, options: ApiOptions) -> Router {
    router_with_admin(service, options, Router::new())
}

/// Like [`router`], with `admin` (paths relative to `/api/v1/admin`, e.g. `/peers`) mounted
/// under `/api/v1/admin` behind the bearer token, next to the built-in `/config`.
pub fn router_with_admin<S: NodeService>(service: S, options: ApiOptions, admin: Router) -> Router {
    let (tx, _) = watch::channel(false);
    build(service, options, admin, Arc::new(tx))
}

fn build<S: NodeService>(
    service: S,
    options: ApiOptions,
    admin: Router,
    shutdown: Arc<watch::Sender<bool>>,
) -> Router {
    let limiter =
        ClientLimiter::new(options.rate_limit_per_sec, options.rate_limit_burst).map(Arc::new);
    let max_body = options.max_body_bytes;
    let state = AppState {
        service,
        options: Arc::new(options),
        shutdown: shutdown.subscribe(),
        _shutdown_tx: shutdown,
        stats: Arc::new(ApiStats::default()),
        limiter: limiter.clone(),
    };

    let mut api = Router::new()
        .route("/", get(handlers::dashboard))
        .route("/health", get(handlers::health::<S>))
        .route("/metrics", get(handlers::metrics::<S>))
        .route("/api/v1/info", get(handlers::info::<S>))
        .route("/api/v1/tips", get(handlers::tips::<S>))
        .route(
            "/api/v1/transactions",
            post(handlers::submit_transaction::<S>),
        )
        .route("/api/v1/transactions/{id}", get(handlers::transaction::<S>))
        .route(
            "/api/v1/transactions/{id}/metadata",
            get(handlers::transaction_metadata::<S>),
        )
        .route("/api/v1/payloads", post(handlers::submit_payload::<S>))
        .route("/api/v1/payloads/batch", post(handlers::submit_batch::<S>))
        .route("/api/v1/payloads/{id}", get(handlers::payload::<S>))
        .route("/api/v1/accounts/{address}", get(handlers::account::<S>))
        .route("/api/v1/channels/{id}", get(handlers::channel::<S>))
        .route("/api/v1/milestones/{index}", get(handlers::milestone::<S>))
        .route("/api/v1/events", get(handlers::events::<S>));
    if state.options.dev {
        api = api.route("/api/v1/faucet", post(handlers::faucet::<S>));
    }
    let api = api.with_state(state.clone());

    let mut app =
        api.merge(SwaggerUi::new("/swagger-ui").url("/api/v1/openapi.json", ApiDoc::openapi()));
    if let Some(token) = &state.options.admin_token {
        let admin = Router::new()
            .route("/config", get(handlers::admin_config::<S>))
            .with_state(state.clone())
            .merge(admin)
            .layer(axum::middleware::from_fn_with_state(
                AdminToken::new(token),
                guard::require_admin,
            ));
        app = app.nest("/api/v1/admin", admin);
    }

    let mut app = app
        .fallback(handlers::not_found)
        // `DefaultBodyLimit` caps what the extractors buffer (also for chunked bodies);
        // `RequestBodyLimitLayer` refuses an oversized `Content-Length` before any handler.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestBodyLimitLayer::new(max_body));
    if let Some(limiter) = limiter {
        app = app.layer(axum::middleware::from_fn_with_state(
            limiter,
            guard::rate_limit,
        ));
    }
    app.layer(TraceLayer::new_for_http())
        .layer(axum::middleware::map_response(guard::json_errors))
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, ends open
/// event streams and waits for in-flight requests (graceful shutdown).
pub async fn serve<S, F>(
    listener: tokio::net::TcpListener,
    service: S,
    options: ApiOptions,
    shutdown: F,
) -> std::io::Result<()>
where
    S: NodeService,
    F: Future<Output = ()> + Send + 'static,
{
    serve_with_admin(listener, service, options, Router::new(), shutdown).await
}

/// [`serve`] with extra admin routes (see [`router_with_admin`]).
pub async fn serve_with_admin<S, F>(
    listener: tokio::net::TcpListener,
    service: S,
    options: ApiOptions,
    admin: Router,
    shutdown: F,
) -> std::io::Result<()>
where
    S: NodeService,
    F: Future<Output = ()> + Send + 'static,
{
    let (tx, _) = watch::channel(false);
    let tx = Arc::new(tx);
    let app = build(service, options, admin, tx.clone());
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        tx.send_replace(true);
    })
    .await
}
