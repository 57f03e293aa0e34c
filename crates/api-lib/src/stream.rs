//! The one place the overview is computed, and GET /api/stream (Server-Sent Events).
//!
//! One background task computes the overview every [`STREAM_INTERVAL`] while someone wants it: an
//! open stream, or a GET /api/overview or /metrics in the last [`DEMAND_WINDOW`]. Nobody: no query
//! at all. Every stream, /api/overview and /metrics answer from its latest value (a new stream's
//! first event included), and a request that finds it older than [`FRESH_FOR`] wakes the task and
//! waits for the next one, with every other request doing the same: ten dashboards and eight
//! pollers cost the databases what one dashboard does, and the reads can never crowd out a cancel.
//!
//! Streams are capped at API_MAX_STREAMS (one more: 503 with a JSON reason) and end when the
//! server shuts down, so a graceful stop never waits on an open dashboard.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use registre_ops::{Ops, Overview};
use tokio::sync::{watch, Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::AppState;

/// How often the overview is recomputed while someone wants it.
pub const STREAM_INTERVAL: Duration = Duration::from_secs(1);
/// A value this recent is served as it is.
pub const FRESH_FOR: Duration = Duration::from_secs(2);
/// After a GET /api/overview or /metrics, the task keeps the value fresh this long.
pub const DEMAND_WINDOW: Duration = Duration::from_secs(10);
/// Longest wait for a value (each query of an overview is bounded by registre-ops' 10 s timeout;
/// a part that times out is reported in place).
const WAIT_FOR_VALUE: Duration = Duration::from_secs(45);

/// One computed overview, as the routes serve it.
pub struct Snapshot {
    pub overview: Overview,
    pub json: Arc<str>,
    /// The same JSON as a response body: a GET /api/overview costs no serialization and no copy.
    pub body: axum::body::Bytes,
    pub at: Instant,
}

#[derive(Clone)]
pub struct Broadcast {
    tx: Arc<watch::Sender<Option<Arc<Snapshot>>>>,
    wake: Arc<Notify>,
    /// Milliseconds since `epoch` of the last request for the value.
    demand_ms: Arc<AtomicU64>,
    epoch: Instant,
    streams: Arc<Semaphore>,
    max_streams: u32,
}

impl Broadcast {
    pub fn start(ops: Arc<Ops>, stop: CancellationToken, max_streams: u32) -> Broadcast {
        let (tx, _) = watch::channel(None);
        let broadcast = Broadcast {
            tx: Arc::new(tx),
            wake: Arc::new(Notify::new()),
            demand_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
            streams: Arc::new(Semaphore::new(max_streams as usize)),
            max_streams,
        };
        let task = broadcast.clone();
        tokio::spawn(async move { task.run(ops, stop).await });
        broadcast
    }

    async fn run(self, ops: Arc<Ops>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(STREAM_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: BTreeMap<&'static str, chrono::DateTime<chrono::Utc>> = BTreeMap::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
                _ = self.wake.notified() => {}
            }
            let last_demand = self.demand_ms.load(Ordering::Relaxed);
            let demanded = last_demand > 0 && self.now_ms() <= last_demand.saturating_add(DEMAND_WINDOW.as_millis() as u64);
            if self.tx.receiver_count() == 0 && !demanded {
                continue;
            }
            // Woken by requests that arrived while the value was being computed: it is fresh.
            if self.tx.borrow().as_ref().is_some_and(|s| s.at.elapsed() < STREAM_INTERVAL / 2) {
                continue;
            }
            let mut overview = registre_ops::overview(&ops).await;
            registre_ops::overview::add_changes(&ops, &mut overview, &previous).await;
            previous = registre_ops::overview::last_changes(&overview);
            // Serializing plain data structures cannot fail; an empty object keeps the stream alive if it did.
            let json: Arc<str> = serde_json::to_string(&overview).unwrap_or_else(|_| "{}".to_string()).into();
            let body = axum::body::Bytes::copy_from_slice(json.as_bytes());
            self.tx.send_replace(Some(Arc::new(Snapshot { overview, json, body, at: Instant::now() })));
            tick.reset();
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// The latest overview if it is fresh, else the next one (None only if none came in time).
    pub async fn latest(&self) -> Option<Arc<Snapshot>> {
        self.demand_ms.store(self.now_ms().max(1), Ordering::Relaxed);
        let mut rx = self.tx.subscribe();
        let current = rx.borrow_and_update().clone();
        if let Some(s) = current.as_ref().filter(|s| s.at.elapsed() <= FRESH_FOR) {
            return Some(s.clone());
        }
        self.wake.notify_one();
        match tokio::time::timeout(WAIT_FOR_VALUE, rx.changed()).await {
            Ok(Ok(())) => rx.borrow_and_update().clone(),
            // No new value in time: an older one is better than nothing.
            _ => current,
        }
    }
}

/// The answer when no overview could be computed in time.
pub fn unavailable() -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the overview is not available yet: try again in a moment")
}

pub async fn sse(State(state): State<AppState>) -> Response {
    let broadcast = state.stream.clone();
    let Ok(permit) = broadcast.streams.clone().try_acquire_owned() else {
        return ApiError {
            reason: Some("too_many_streams"),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "too many open streams ({} of API_MAX_STREAMS): close a dashboard tab or raise API_MAX_STREAMS",
                    broadcast.max_streams
                ),
            )
        }
        .into_response();
    };
    let stop = state.stop.clone();
    // Subscribed before the first value is read, so no value between the two is missed.
    let rx = broadcast.tx.subscribe();
    let first = Some((broadcast, rx, permit, true));
    let stream = futures_util::stream::unfold(first, move |state| {
        let stop = stop.clone();
        async move {
            let (broadcast, mut rx, permit, first) = state?;
            let json = if first {
                let snapshot = tokio::select! {
                    _ = stop.cancelled() => return None,
                    s = broadcast.latest() => s,
                };
                rx.mark_unchanged();
                snapshot?.json.clone()
            } else {
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    changed = rx.changed() => {
                        changed.ok()?;
                        rx.borrow_and_update().clone()?.json.clone()
                    }
                }
            };
            let event: Result<Event, Infallible> = Ok(Event::default().event("overview").data(json.as_ref()));
            Some((event, Some((broadcast, rx, permit, false))))
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response()
}
