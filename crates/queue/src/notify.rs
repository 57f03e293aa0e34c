//! Pickup by LISTEN/NOTIFY: the trigger of `functions/notify.sql` announces every
//! row that becomes claimable on its stage's channel (`1 <id>` on [`CHANNEL_EXTRACTION`],
//! `3 <source> <id>` on [`CHANNEL_OCR`]); one listening connection per process and Postgres
//! environment ([`spawn_listener`]) listens only on the channels of the stages its workers wait
//! for, and turns each announcement into ONE wake-up ([`Wakers`]), so one new row costs one claim
//! however many workers are idle, and a registre worker process never hears of OCR rows (one
//! announcement per completed extraction, which it would read and drop). Polling (QUEUE_POLL_INTERVAL_MS) stays as the fallback: for Supabase REST
//! environments (no LISTEN through PostgREST), for rows whose backoff ends (no write announces
//! them), and while the listening connection is down (every waiter is woken when it comes back,
//! since announcements made meanwhile are lost).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use registre_config::EnvName;
use registre_runtime::Backoff;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::DocumentSource;

/// Where `queue_notify_claimable()` announces status-1 rows: what registre workers listen for.
pub const CHANNEL_EXTRACTION: &str = "registre_queue_extraction";

/// Where `queue_notify_claimable()` announces status-3 rows: what the OCR pool listens for.
pub const CHANNEL_OCR: &str = "registre_queue_ocr";

/// The previous release's single channel, which carried both stages. The trigger still announces
/// every row there too, for the workers of that release (during an upgrade, or after a rollback);
/// nothing of this release listens to it.
pub const CHANNEL_PREVIOUS_RELEASE: &str = "registre_queue";

/// What a waiting worker waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interest {
    Extraction,
    Ocr(DocumentSource),
}

impl Interest {
    /// This interest's bit in [`Wakers`]'s set of wanted stages (one bit per channel).
    fn stage_bit(self) -> u8 {
        match self {
            Interest::Extraction => STAGE_EXTRACTION,
            Interest::Ocr(_) => STAGE_OCR,
        }
    }
}

const STAGE_EXTRACTION: u8 = 1;
const STAGE_OCR: u8 = 2;

/// The channels of a set of wanted stages.
fn channels(stages: u8) -> Vec<&'static str> {
    let mut out = Vec::with_capacity(2);
    if stages & STAGE_EXTRACTION != 0 {
        out.push(CHANNEL_EXTRACTION);
    }
    if stages & STAGE_OCR != 0 {
        out.push(CHANNEL_OCR);
    }
    out
}

/// The idle workers of one process, by what they wait for. `notify_one` wakes one waiter, or, if
/// none waits, lets the next one to wait go at once (a worker always claims before it waits, so
/// that permit costs at most one empty claim).
pub(crate) struct Wakers {
    extraction: Notify,
    index: Notify,
    acte: Notify,
    plan: Notify,
    /// Announcements received (for the benchmarks and tests).
    received: AtomicU64,
    /// The stages some worker of this process has waited for (bits): each LISTEN connection
    /// listens on their channels, and reconnects when one is added.
    wanted: watch::Sender<u8>,
}

impl Default for Wakers {
    fn default() -> Wakers {
        Wakers {
            extraction: Notify::new(),
            index: Notify::new(),
            acte: Notify::new(),
            plan: Notify::new(),
            received: AtomicU64::new(0),
            wanted: watch::Sender::new(0),
        }
    }
}

impl Wakers {
    /// A worker is about to wait for `interest`: from now on its stage's channel is listened to.
    /// Called before the worker's first claim, so a row announced before the channel is listened
    /// to is found by that claim or by the claim after the reconnection's [`Wakers::wake_all`].
    pub(crate) fn want(&self, interest: Interest) {
        let bit = interest.stage_bit();
        self.wanted.send_if_modified(|stages| {
            let added = *stages & bit == 0;
            *stages |= bit;
            added
        });
    }

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
/// made from `pool`'s options, so it never takes a connection from the workers' pool), on the
/// channels of the stages wanted so far; when a worker waits for another stage, it reconnects to
/// listen on that channel too. Connection losses are retried with capped backoff (up to
/// `retry_max`), never fatal; each (re)connection wakes every waiter.
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
        let mut wanted = wakers.wanted.subscribe();
        while !stop.is_cancelled() {
            let stages = *wanted.borrow_and_update();
            if stages == 0 {
                // Nobody waits yet: nothing to listen to.
                tokio::select! {
                    _ = stop.cancelled() => break,
                    changed = wanted.changed() => if changed.is_err() { break } else { continue },
                }
            }
            let listening = async {
                let mut listener = PgListener::connect_with(&own).await?;
                listener.ignore_pool_close_event(true);
                listener.listen_all(channels(stages)).await?;
                Ok::<_, sqlx::Error>(listener)
            };
            let connected = tokio::select! {
                _ = stop.cancelled() => break,
                r = listening => r,
            };
            // Whether the connection was lost (then the next one waits its backoff) rather than
            // left for one that listens on more channels.
            let mut lost = true;
            match connected {
                Ok(mut listener) => {
                    backoff.reset();
                    if was_up {
                        tracing::info!(%env, "🔔 {env}: listening for new rows again");
                    } else {
                        tracing::debug!(%env, "🔔 {env}: listening for new rows (LISTEN {})", channels(stages).join(", "));
                    }
                    wakers.wake_all();
                    loop {
                        let next = tokio::select! {
                            _ = stop.cancelled() => return,
                            // A worker now waits for another stage too: listen on its channel as
                            // well. A new connection (rather than LISTEN on this one) keeps this
                            // loop's reads whole; it happens at most once per stage.
                            changed = wanted.changed() => match changed {
                                Ok(()) => {
                                    lost = false;
                                    break;
                                }
                                Err(_) => return,
                            },
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
                    // Only a lost connection makes the next one say "again".
                    was_up = lost;
                }
                Err(e) => {
                    tracing::debug!(%env, "🔕 {env}: cannot LISTEN yet ({e}); idle workers poll meanwhile");
                }
            }
            if lost {
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
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
