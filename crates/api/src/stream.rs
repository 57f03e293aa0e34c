//! GET /api/stream: the overview as Server-Sent Events, so the dashboard is live without reloads.
//! One background task computes the overview every [`STREAM_INTERVAL`] while at least one client
//! listens (none: no queries at all), and every client gets each new one: ten open dashboards cost
//! the databases what one does. Each client also gets a fresh overview as soon as it connects.
//! Streams end when the server shuts down, so a graceful stop never waits on an open dashboard.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::Stream;
use registre_ops::Ops;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::AppState;

/// How often the overview is recomputed for the listening clients.
pub const STREAM_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct Broadcast {
    tx: Arc<watch::Sender<Option<Arc<str>>>>,
}

impl Broadcast {
    pub fn start(ops: Arc<Ops>, stop: CancellationToken) -> Broadcast {
        let (tx, _) = watch::channel(None);
        let tx = Arc::new(tx);
        let sender = tx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STREAM_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                if sender.receiver_count() == 0 {
                    continue;
                }
                let json = overview_json(&ops).await;
                sender.send_replace(Some(json));
            }
        });
        Broadcast { tx }
    }
}

async fn overview_json(ops: &Ops) -> Arc<str> {
    let overview = crate::overview(ops).await;
    // Serializing plain data structures cannot fail; an empty object keeps the stream alive if it did.
    serde_json::to_string(&overview).unwrap_or_else(|_| "{}".to_string()).into()
}

enum Step {
    First(watch::Receiver<Option<Arc<str>>>),
    Next(watch::Receiver<Option<Arc<str>>>),
}

pub async fn sse(State(state): State<AppState>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.stream.tx.subscribe();
    let ops = state.ops.clone();
    let stop = state.stop.clone();
    let stream = futures_util::stream::unfold(Some(Step::First(rx)), move |step| {
        let ops = ops.clone();
        let stop = stop.clone();
        async move {
            match step? {
                Step::First(mut rx) => {
                    rx.mark_unchanged();
                    let json = overview_json(&ops).await;
                    Some((Ok(Event::default().event("overview").data(json.as_ref())), Some(Step::Next(rx))))
                }
                Step::Next(mut rx) => {
                    tokio::select! {
                        _ = stop.cancelled() => None,
                        changed = rx.changed() => {
                            changed.ok()?;
                            let json = rx.borrow_and_update().clone()?;
                            Some((Ok(Event::default().event("overview").data(json.as_ref())), Some(Step::Next(rx))))
                        }
                    }
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
