//! The writes' own thread (docs/operations.md, "Load bounds"): enqueue, retry and cancel run on a
//! one-thread runtime of their own, with the write connections they use. However many reads keep
//! the main runtime's workers busy (dashboards, pollers, scrapes), a write never waits in line
//! behind their tasks at each of its round trips to the database: this thread sleeps between
//! writes, and the kernel runs a thread that slept as soon as its answer arrives.
//!
//! A write handed to this thread also finishes when the client goes away mid-write (the handler's
//! future is dropped, the write's task is not), so a change is never cut between its statements by
//! a closed browser tab; the transaction is bounded anyway (registre-ops: 8 s on the server).

use std::future::Future;
use std::sync::Arc;

use axum::http::StatusCode;

use crate::error::ApiError;

/// Where writes run. Cheap to clone; the thread stops when the last clone is dropped (after the
/// server stopped and every request finished).
#[derive(Clone)]
pub struct Writer {
    /// None when the thread could not be started: writes then run on the caller's runtime.
    handle: Option<tokio::runtime::Handle>,
    _alive: Arc<tokio::sync::oneshot::Sender<()>>,
}

impl Writer {
    pub fn start() -> Writer {
        let (alive, gone) = tokio::sync::oneshot::channel::<()>();
        let handle = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => {
                let handle = runtime.handle().clone();
                let spawned = std::thread::Builder::new().name("registre-api-writes".into()).spawn(move || {
                    // Until every Writer is dropped; then in-flight writes are over (the server waited for them).
                    let _ = runtime.block_on(gone);
                });
                match spawned {
                    Ok(_) => Some(handle),
                    Err(e) => {
                        tracing::warn!("registre-api: the writes' thread did not start ({e}); writes share the main runtime");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!("registre-api: the writes' runtime did not start ({e}); writes share the main runtime");
                None
            }
        };
        Writer { handle, _alive: Arc::new(alive) }
    }

    /// Runs `write` on the writes' thread and waits for its result.
    pub async fn run<T, F>(&self, write: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let Some(handle) = &self.handle else { return write.await };
        match handle.spawn(write).await {
            Ok(result) => result,
            // A panic mid-write: it may have committed (never expected: no library path panics).
            Err(e) if e.is_panic() => Err(ApiError {
                reason: Some("outcome_unknown"),
                ..ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "the write stopped unexpectedly: outcome unknown, check the row (registrectl show) or the list",
                )
            }),
            Err(_) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "registre-api is stopping")),
        }
    }
}
