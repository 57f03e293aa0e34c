//! registre-api (docs/design.md §12): the operators' HTTP API, the live dashboard and /metrics, a thin
//! layer over registre-ops (every query and repair lives there).
//!
//! Open routes (no row data): `GET /health` (liveness, checks nothing), `GET /ready` (503 naming
//! what is down), `GET /metrics` (Prometheus text), `GET /` and its assets (the dashboard).
//! Behind API_TOKEN (auth.rs): `POST /api/login` (the dashboard's session cookie),
//! `GET /api/stream` (Server-Sent Events of the overview), `GET /api/overview`, `GET /api/workers`,
//! `GET /api/extractions`, `GET /api/extractions/{id}`, and the writes `POST /api/extractions`,
//! `POST /api/extractions/{id}/retry`, `DELETE /api/extractions/{id}`.
//! Every request first passes guard.rs: the Host check, the API_MAX_CONCURRENT cap and the security
//! headers.

mod auth;
mod dashboard;
mod error;
mod guard;
mod routes;
mod stream;
mod writer;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use registre_config::{ApiConfig, Config};
use registre_ops::Ops;
use registre_runtime::{BinaryError, Shutdown};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::{SESSION_COOKIE, TOKEN_UNSET};
pub use guard::HOST_REFUSED;

/// Largest request body accepted (an enqueue request is a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) ops: Arc<Ops>,
    pub(crate) auth: auth::Auth,
    pub(crate) stream: stream::Broadcast,
    pub(crate) stop: CancellationToken,
    /// Where enqueue, retry and cancel run (their own thread: reads never delay them).
    pub(crate) writer: writer::Writer,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiStartError {
    #[error("cannot listen on {addr}: {source} (is another registre-api running? set API_HOST / API_PORT)")]
    Bind { addr: String, source: std::io::Error },
    #[error("{0}")]
    Setup(String),
    #[error("the HTTP server stopped: {0}")]
    Serve(std::io::Error),
}

impl BinaryError for ApiStartError {}

/// The whole application (routes, auth, limits), serving `ops` as `api` says (token, Host names, caps).
pub fn app(ops: Arc<Ops>, api: &ApiConfig, stop: CancellationToken) -> Router {
    let stream = stream::Broadcast::start(ops.clone(), stop.clone(), api.max_streams);
    let state = AppState { ops, auth: auth::Auth::new(api.token.clone()), stream, stop, writer: writer::Writer::start() };
    let guarded = Router::new()
        .route("/api/stream", get(stream::sse))
        .route("/api/overview", get(routes::overview))
        .route("/api/workers", get(routes::workers))
        .route("/api/extractions", get(routes::list).post(routes::enqueue))
        .route("/api/extractions/{id}", get(routes::show).delete(routes::cancel))
        .route("/api/extractions/{id}/retry", post(routes::retry))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    let permits = Arc::new(tokio::sync::Semaphore::new(api.max_concurrent as usize));
    let hosts = guard::AllowedHosts::new(&api.host, &api.allowed_hosts);
    Router::new()
        .route("/health", get(routes::health))
        .route("/ready", get(routes::ready))
        .route("/metrics", get(routes::metrics))
        .route("/", get(dashboard::page))
        .route("/assets/dashboard.css", get(dashboard::css))
        .route("/assets/dashboard.js", get(dashboard::js))
        .route("/api/login", post(auth::login))
        .merge(guarded)
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(permits, guard::limit_concurrency))
        .layer(axum::middleware::from_fn_with_state(hosts, guard::check_host))
        .layer(axum::middleware::map_response(guard::security_headers))
}

/// Serves on `listener` until `shutdown` fires.
pub async fn serve(config: &Config, listener: TcpListener, shutdown: Shutdown) -> Result<(), ApiStartError> {
    let ops = Ops::from_config(config).map_err(ApiStartError::Setup)?;
    let stop = shutdown.token();
    let router = app(Arc::new(ops), &config.api, stop.clone());
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
        .map_err(ApiStartError::Serve)
}

/// registre-api's run: listen on API_HOST:API_PORT and serve until SIGTERM/SIGINT.
pub async fn run(config: Config, shutdown: Shutdown) -> Result<(), ApiStartError> {
    let addr = format!("{}:{}", config.api.host, config.api.port);
    let listener = TcpListener::bind(&addr).await.map_err(|source| ApiStartError::Bind { addr: addr.clone(), source })?;
    let envs: Vec<&str> = config.environments.iter().map(|e| e.name.as_str()).collect();
    tracing::info!(
        "🌐 registre-api listening on http://{addr} (dashboard at /, environments: {}; /api/* routes: {}; METRICS_ADDR is not used here: /metrics is on this port)",
        envs.join(", "),
        if config.api.token.is_some() { "token required" } else { "disabled, API_TOKEN is not set" }
    );
    serve(&config, listener, shutdown).await?;
    tracing::info!("registre-api stopped");
    Ok(())
}
