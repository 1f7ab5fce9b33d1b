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
//! | `GET /api/v1/transactions/{id}/proof`, `/api/v1/payloads/{id}/proof` | a self-contained [`TransactionProof`](dag_core::proof::TransactionProof) (JSON or MessagePack); 404 until confirmed |
//! | `GET /api/v1/accounts/{address}` | [`AccountView`](crate::service::AccountView); bech32 or `did:key` |
//! | `GET /api/v1/channels/{id}` | [`ChannelView`](crate::service::ChannelView) |
//! | `GET /api/v1/milestones/{index\|latest}` | [`MilestoneView`](crate::service::MilestoneView) |
//! | `GET /api/v1/committee` | [`CommitteeView`](crate::service::CommitteeView): committees by index range, rotation evidence |
//! | `GET /api/v1/events` | Server-Sent Events, one JSON [`NodeEvent`](crate::service::NodeEvent) each with an `id:`; `Last-Event-ID` resumes, `lagged` events name lost ids (see `events`) |
//! | `GET /api/v1/events/sampled` | the same for dashboards, sampled: every milestone, at most about 50 transactions a second (with `sampled_parents`) and their verdicts, other conflicts up to 20 a second, and a [`SampledSummary`] of counts every second (see `sampled`) |
//! | `GET /metrics` | the node's metrics, then `tangle_api_*`: Prometheus text 0.0.4, or OpenMetrics 1.0 with `Accept: application/openmetrics-text` |
//! | `POST /api/v1/faucet` | dev mode only (404 otherwise): `{"address", "amount"}`; 202 receipt |
//! | `GET /api/v1/admin/config` | bearer token; [`ApiConfigView`] |
//! | `POST /api/v1/admin/snapshot?kind=full\|delta` | bearer token; makes a snapshot file now (see [`crate::snapshots`]) |
//! | `POST`, `DELETE /api/v1/admin/committee` | bearer token; approve a committee update (`CommitteeUpdate` JSON) or withdraw it (see [`crate::rotation`]) |
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
//! `not_enabled` for a feature off on this node), 405 `method_not_allowed`, 408 `timeout`
//! (the body stopped arriving), 409 `conflict`, 413 `too_large` (body over
//! [`ApiOptions::max_body_bytes`], batch over [`ApiOptions::max_batch_len`]), 414
//! `uri_too_long`, 415 `unsupported_media_type`, 422 `invalid`, 429 `rate_limited` (with
//! `Retry-After`), 431 `headers_too_large`, 500 `storage`/`internal`, 503 `unavailable`
//! (node busy, request timeout, too many event streams).
//! [`SubmitError`](crate::service::SubmitError) and
//! [`ServiceError`](crate::service::ServiceError) map as their docs say. Plain-text errors
//! from axum or tower (405, body limit) are rewritten to JSON by a response mapper. Only
//! what hyper answers before a request exists has no body: a request head over hyper's
//! read buffer (about 400 KiB: 431) or a request target of 64 KiB or more (414), and a
//! request line or header hyper cannot parse (400); the API's own 414/431 limits (8 KiB
//! target, 100 header lines, 32 KiB of headers) sit below those, so they answer in JSON.
//!
//! ## Limits
//! [`serve`] accepts at most [`ApiOptions::max_connections`] connections at once (more wait
//! in the listen backlog) and closes a connection that sends no complete request head within
//! [`ApiOptions::header_timeout`] of opening or of its previous response; a body that stops
//! arriving for [`ApiOptions::body_timeout`] is 408, a request unanswered after
//! [`ApiOptions::request_timeout`] is 503; at most [`ApiOptions::max_event_streams`] event
//! streams (503 beyond), with [`ApiOptions::event_replay`] events kept for resumption.
//! Per-client-IP rate limit (GCRA, [`ApiOptions::rate_limit_per_sec`], keyed by the TCP peer
//! address, so it needs [`serve`] or `into_make_service_with_connect_info`), request body
//! limit, and admin routes under `/api/v1/admin/` that exist only when a token is configured
//! (404 otherwise). More admin routes (the peering layer's) plug in with
//! [`router_with_admin`].

mod error;
mod events;
mod guard;
mod handlers;
mod negotiate;
pub(crate) mod openapi;
mod sampled;
mod server;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use error::{ApiError, ApiResult, ErrorBody};
pub use events::LaggedEvent;
pub use handlers::{BatchVerdict, FaucetRequest, RawTransaction, TipsView, TransactionSubmitted};
pub use openapi::ApiDoc;
pub use sampled::SampledSummary;

use crate::service::NodeService;
use events::EventHub;
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
    /// Most connections served at once (by [`serve`]); further connections wait in the
    /// kernel's listen backlog until one closes. Event streams count.
    pub max_connections: usize,
    /// A connection is closed when it has not sent a complete request head this long after
    /// opening or after its previous response (header-read and idle keep-alive timeout).
    pub header_timeout: Duration,
    /// A request body that delivers no data for this long is refused with 408 `timeout`.
    pub body_timeout: Duration,
    /// A request not answered within this long gets 503 `unavailable` (event streams are
    /// answered at once and then run until they or the server close).
    pub request_timeout: Duration,
    /// Most open `/api/v1/events` streams; 503 `unavailable` beyond.
    pub max_event_streams: usize,
    /// Events kept for clients resuming with `Last-Event-ID`, and the room a client has to
    /// fall behind: a milestone at 25,000 payments/s announces 25,000 confirmations at
    /// once, and with 4,096 a client reading as fast as it could still lost some.
    pub event_replay: usize,
}

impl Default for ApiOptions {
    /// No admin routes, 4 MiB bodies, batches of up to 10 000, 100 000 requests/s per
    /// client, no faucet; 1024 connections, 10 s header/idle timeout, 10 s body timeout,
    /// 60 s request timeout, 256 event streams, 65,536 events kept for resumption (about
    /// 15 MB once full).
    fn default() -> Self {
        ApiOptions {
            admin_token: None,
            max_body_bytes: 4 * 1024 * 1024,
            max_batch_len: 10_000,
            rate_limit_per_sec: 100_000,
            rate_limit_burst: 0,
            dev: false,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_event_streams: 256,
            event_replay: 65_536,
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
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field("body_timeout", &self.body_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_event_streams", &self.max_event_streams)
            .field("event_replay", &self.event_replay)
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
    /// Most connections served at once.
    pub max_connections: usize,
    /// Header-read and idle keep-alive timeout, ms.
    pub header_timeout_ms: u64,
    /// Request body inactivity timeout, ms.
    pub body_timeout_ms: u64,
    /// Request timeout, ms.
    pub request_timeout_ms: u64,
    /// Most open event streams.
    pub max_event_streams: usize,
    /// Events kept for `Last-Event-ID` resumption.
    pub event_replay: usize,
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
            max_connections: o.max_connections,
            header_timeout_ms: o.header_timeout.as_millis() as u64,
            body_timeout_ms: o.body_timeout.as_millis() as u64,
            request_timeout_ms: o.request_timeout.as_millis() as u64,
            max_event_streams: o.max_event_streams,
            event_replay: o.event_replay,
        }
    }
}

/// Metrics the API keeps about itself, rendered after the node's on `/metrics`.
pub(crate) struct ApiStats {
    registry: Registry,
    /// Open SSE streams.
    pub(crate) sse_clients: Gauge,
    /// Event streams refused at [`ApiOptions::max_event_streams`].
    pub(crate) sse_refused: Counter,
    /// Node events the API's subscription missed (announced as `dropped`).
    pub(crate) events_dropped: Counter,
    /// Requests refused with 429.
    pub(crate) rate_limited: Counter,
    /// Open connections.
    pub(crate) connections_open: Gauge,
    /// Connections accepted.
    pub(crate) connections_accepted: Counter,
    /// Times the accept loop found every connection slot taken.
    pub(crate) connection_waits: Counter,
    /// The connection limit in force.
    pub(crate) connections_max: Gauge,
    /// Requests answered, by method, route (the matched path pattern) and status code.
    pub(crate) requests: Family<RouteStatusLabels, Counter>,
    /// Time to answer (to the response head; an event stream's body runs on), by method and
    /// route.
    pub(crate) request_seconds: Family<RouteLabels, Histogram>,
}

/// Labels of [`ApiStats::request_seconds`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(crate) struct RouteLabels {
    pub(crate) method: String,
    pub(crate) route: String,
}

/// Labels of [`ApiStats::requests`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub(crate) struct RouteStatusLabels {
    pub(crate) method: String,
    pub(crate) route: String,
    pub(crate) status: u16,
}

fn request_histogram() -> Histogram {
    // 0.25 ms to ~8 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_25, 2.0, 16,
    ))
}

impl ApiStats {
    fn new(options: &ApiOptions) -> Self {
        let mut registry = Registry::with_prefix("tangle_api");
        let stats = ApiStats {
            registry: Registry::default(),
            sse_clients: Gauge::default(),
            sse_refused: Counter::default(),
            events_dropped: Counter::default(),
            rate_limited: Counter::default(),
            connections_open: Gauge::default(),
            connections_accepted: Counter::default(),
            connection_waits: Counter::default(),
            connections_max: Gauge::default(),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(request_histogram),
        };
        registry.register(
            "sse_clients",
            "Open /api/v1/events streams",
            stats.sse_clients.clone(),
        );
        registry.register(
            "sse_refused",
            "Event streams refused because max_event_streams were open",
            stats.sse_refused.clone(),
        );
        registry.register(
            "events_dropped",
            "Node events the API missed and announced to clients as dropped",
            stats.events_dropped.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused with 429",
            stats.rate_limited.clone(),
        );
        registry.register(
            "connections",
            "Open API connections",
            stats.connections_open.clone(),
        );
        stats
            .connections_max
            .set(i64::try_from(options.max_connections).unwrap_or(i64::MAX));
        registry.register(
            "connections_max",
            "Most API connections served at once",
            stats.connections_max.clone(),
        );
        registry.register(
            "connections_accepted",
            "API connections accepted",
            stats.connections_accepted.clone(),
        );
        registry.register(
            "connection_limit_waits",
            "Times every API connection slot was taken and new connections had to wait",
            stats.connection_waits.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            stats.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to the response head), by method and route",
            stats.request_seconds.clone(),
        );
        ApiStats { registry, ..stats }
    }

    /// Appends the API's families (OpenMetrics, without `# EOF`).
    fn render(&self, out: &mut String) {
        prometheus_client::encoding::text::encode_registry(out, &self.registry)
            .expect("writing to a String cannot fail");
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
    pub(crate) events: Arc<EventHub>,
    /// The ring of `/api/v1/events/sampled`.
    pub(crate) sampled: Arc<EventHub>,
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
            events: self.events.clone(),
            sampled: self.sampled.clone(),
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
    build(service, options, admin, Arc::new(tx)).0
}

fn build<S: NodeService>(
    service: S,
    options: ApiOptions,
    admin: Router,
    shutdown: Arc<watch::Sender<bool>>,
) -> (Router, Arc<ApiStats>) {
    let stats = Arc::new(ApiStats::new(&options));
    let limiter = ClientLimiter::new(
        options.rate_limit_per_sec,
        options.rate_limit_burst,
        stats.rate_limited.clone(),
    )
    .map(Arc::new);
    let max_body = options.max_body_bytes;
    let body_timeout = options.body_timeout;
    let request_timeout = options.request_timeout;
    let events = Arc::new(EventHub::new(options.event_replay, EventHub::base_now()));
    // The sampled stream carries a few events a second: a small ring does.
    let sampled = Arc::new(EventHub::new(
        options.event_replay.min(4096),
        EventHub::base_now(),
    ));
    let state = AppState {
        service,
        options: Arc::new(options),
        shutdown: shutdown.subscribe(),
        _shutdown_tx: shutdown,
        stats: stats.clone(),
        limiter: limiter.clone(),
        events,
        sampled,
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
        .route(
            "/api/v1/payloads/{id}/proof",
            get(handlers::payload_proof::<S>),
        )
        .route(
            "/api/v1/transactions/{id}/proof",
            get(handlers::transaction_proof::<S>),
        )
        .route("/api/v1/accounts/{address}", get(handlers::account::<S>))
        .route(
            "/api/v1/accounts/{address}/proof",
            get(handlers::account_proof::<S>),
        )
        .route("/api/v1/channels/{id}", get(handlers::channel::<S>))
        .route(
            "/api/v1/channels/{id}/proof",
            get(handlers::channel_proof::<S>),
        )
        .route("/api/v1/milestones/{index}", get(handlers::milestone::<S>))
        .route("/api/v1/committee", get(handlers::committee::<S>))
        .route("/api/v1/events", get(handlers::events::<S>))
        .route("/api/v1/events/sampled", get(handlers::events_sampled::<S>));
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

    // Per-route counts and latencies: a route layer, so the matched path pattern is known
    // (ids in paths would make one series per id).
    let mut app = app
        .route_layer(axum::middleware::from_fn_with_state(
            stats.clone(),
            guard::record_route,
        ))
        .fallback(handlers::not_found)
        // `DefaultBodyLimit` caps what the extractors buffer (also for chunked bodies);
        // `RequestBodyLimitLayer` refuses an oversized `Content-Length` before any handler.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestBodyLimitLayer::new(max_body))
        .layer(RequestBodyTimeoutLayer::new(body_timeout))
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            guard::request_timeout,
        ));
    if let Some(limiter) = limiter {
        app = app.layer(axum::middleware::from_fn_with_state(
            limiter,
            guard::rate_limit,
        ));
    }
    let app = app
        .layer(axum::middleware::from_fn(guard::head_limits))
        .layer(TraceLayer::new_for_http())
        .layer(axum::middleware::map_response(guard::json_errors));
    (app, stats)
}

/// Serves the API on `listener` until `shutdown` completes, then stops accepting, ends open
/// event streams and waits for in-flight requests (graceful shutdown). Connections are
/// limited and timed out as [`ApiOptions`] says (see the `server` module).
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
    let limits = server::ConnLimits {
        max_connections: options.max_connections,
        header_timeout: options.header_timeout,
    };
    let (app, stats) = build(service, options, admin, tx.clone());
    server::run(listener, app, limits, stats, shutdown, move || {
        tx.send_replace(true);
    })
    .await
}
