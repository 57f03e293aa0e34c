//! Pickup by LISTEN/NOTIFY: the trigger of `functions/notify.sql` announces every
//! row that becomes claimable (`1 <id>`, `3 <source> <id>` on channel `registre_queue`); one
//! listening connection per process and Postgres environment ([`spawn_listener`]) turns each
//! announcement into ONE wake-up ([`Wakers`]), so one new row costs one claim however many workers
//! are idle. Polling (QUEUE_POLL_INTERVAL_MS) stays as the fallback: for Supabase REST
//! environments (no LISTEN through PostgREST), for rows whose backoff ends (no write announces
//! them), and while the listening connection is down (every waiter is woken when it comes back,
//! since announcements made meanwhile are lost).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registre_config::EnvName;
use registre_runtime::Backoff;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::DocumentSource;

/// The channel of `queue_notify_claimable()`.
pub const CHANNEL: &str = "registre_queue";

/// What a waiting worker waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Extraction,
    Ocr(DocumentSource),
}

/// The idle workers of one process, by what they wait for. `notify_one` wakes one waiter, or, if
/// none waits, lets the next one to wait go at once (a worker always claims before it waits, so
/// that permit costs at most one empty claim).
#[derive(Default)]
pub(crate) struct Wakers {
    extraction: Notify,
    index: Notify,
    acte: Notify,
    plan: Notify,
    /// Announcements received (for the benchmarks and tests).
    received: AtomicU64,
}

impl Wakers {
    pub(crate) fn for_interest(&self, interest: Interest) -> &Notify {
        match interest {
            Interest::Extraction => &self.extraction,
            Interest::Ocr(DocumentSource::Index) => &self.index,
            Interest::Ocr(DocumentSource::Acte) => &self.acte,
            Interest::Ocr(DocumentSource::PlanCadastraux) => &self.plan,
        }
    }

    /// One announcement: wakes one worker waiting for that kind of row. An unreadable payload
    /// (another writer on the channel) wakes nobody.
    pub(crate) fn announce(&self, payload: &str) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if let Some(interest) = parse(payload) {
            self.for_interest(interest).notify_one();
        }
    }

    /// Every waiter, of every kind: announcements may have been lost (the listening connection
    /// was down), so each worker claims once more.
    pub(crate) fn wake_all(&self) {
        for n in [&self.extraction, &self.index, &self.acte, &self.plan] {
            n.notify_waiters();
        }
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// `1 <id>` → extraction; `3 <source> <id>` → OCR of that source.
fn parse(payload: &str) -> Option<Interest> {
    let mut words = payload.split_whitespace();
    match words.next()? {
        "1" => Some(Interest::Extraction),
        "3" => DocumentSource::parse(words.next()?).map(Interest::Ocr),
        _ => None,
    }
}

/// Listens on `pool`'s database until `stop` fires, on a connection of its own (a pool of one
/// made from `pool`'s options, so it never takes a connection from the workers' pool). Connection
/// losses are retried with capped backoff (up to `retry_max`), never fatal; each (re)connection
/// wakes every waiter.
pub(crate) fn spawn_listener(env: EnvName, pool: &PgPool, wakers: Arc<Wakers>, retry_max: Duration, stop: CancellationToken) {
    let options = pool.connect_options();
    let own = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(pool.options().get_acquire_timeout())
        .connect_lazy_with((*options).clone());
    tokio::spawn(async move {
        let mut backoff = Backoff::new(Duration::from_millis(200), retry_max.max(Duration::from_millis(200)));
        let mut was_up = false;
        while !stop.is_cancelled() {
            let listening = async {
                let mut listener = PgListener::connect_with(&own).await?;
                listener.ignore_pool_close_event(true);
                listener.listen(CHANNEL).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let connected = tokio::select! {
                _ = stop.cancelled() => break,
                r = listening => r,
            };
            match connected {
                Ok(mut listener) => {
                    backoff.reset();
                    if was_up {
                        tracing::info!(%env, "🔔 {env}: listening for new rows again");
                    } else {
                        tracing::debug!(%env, "🔔 {env}: listening for new rows (LISTEN {CHANNEL})");
                    }
                    was_up = true;
                    wakers.wake_all();
                    loop {
                        let next = tokio::select! {
                            _ = stop.cancelled() => return,
                            n = listener.try_recv() => n,
                        };
                        match next {
                            Ok(Some(notification)) => wakers.announce(notification.payload()),
                            // Lost and already reconnected (eager reconnect): announcements made
                            // in between are gone, so every waiter claims once more.
                            Ok(None) => {
                                tracing::warn!(%env, "🔕 {env}: the LISTEN connection dropped and was re-established; waking every idle worker");
                                wakers.wake_all();
                            }
                            Err(e) => {
                                tracing::warn!(%env, "🔕 {env}: LISTEN connection lost ({e}); idle workers poll until it is back");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(%env, "🔕 {env}: cannot LISTEN yet ({e}); idle workers poll meanwhile");
                }
            }
            let delay = backoff.next_delay();
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_name_the_stage_and_the_source() {
        assert_eq!(parse("1 5f0c3c1e-0000-0000-0000-000000000000"), Some(Interest::Extraction));
        assert_eq!(parse("3 index 5f0c"), Some(Interest::Ocr(DocumentSource::Index)));
        assert_eq!(parse("3 acte 5f0c"), Some(Interest::Ocr(DocumentSource::Acte)));
        assert_eq!(parse("3 plan_cadastraux x"), Some(Interest::Ocr(DocumentSource::PlanCadastraux)));
        assert_eq!(parse("3 inconnu x"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("2 x"), None);
    }

    #[tokio::test]
    async fn one_announcement_wakes_one_waiter() {
        let wakers = Arc::new(Wakers::default());
        let woken = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        let ready = Arc::new(tokio::sync::Barrier::new(9));
        for _ in 0..8 {
            let (w, woken, ready) = (wakers.clone(), woken.clone(), ready.clone());
            tasks.push(tokio::spawn(async move {
                let notified = w.for_interest(Interest::Extraction).notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                ready.wait().await;
                notified.await;
                woken.fetch_add(1, Ordering::SeqCst);
            }));
        }
        ready.wait().await;
        wakers.announce("3 index x"); // another kind: wakes none of them
        wakers.announce("1 a");
        wakers.announce("1 b");
        // Wait until two are woken (deadline, not a timed assertion), then check no third was.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while woken.load(Ordering::SeqCst) < 2 {
            assert!(std::time::Instant::now() < deadline, "two announcements never woke two waiters");
            tokio::task::yield_now().await;
        }
        // Single-threaded runtime: after these yields every woken task has run its increment.
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
        assert_eq!(woken.load(Ordering::SeqCst), 2, "two announcements wake exactly two waiters");
        wakers.wake_all();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(woken.load(Ordering::SeqCst), 8);
    }
}
