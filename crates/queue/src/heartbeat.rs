//! Keeps a claimed row's lease alive while its worker works: renews it every QUEUE_HEARTBEAT_MS
//! and fires [`Heartbeat::lost`] when the renew is refused (the row was reaped and perhaps claimed
//! by another worker), so the worker stops and does not waste the work. Dropping the heartbeat
//! stops it; a worker that stops heartbeating loses its row to the reaper after QUEUE_LEASE_TTL_MS.
//! [`Heartbeat::start`] runs one task per heartbeat; the workers' heartbeats
//! (`MultiQueue::keep_alive`) share one [`Keeper`] task per queue instead, so a job costs a lock and
//! a push, not a spawned task whose start and stop each wake a runtime thread (client CPU that
//! short jobs, as in the queue bench, pay on every job). Each renewal still runs in a task of its
//! own, so a slow one never delays another row's.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{Job, Queue, QueueError, Transition};

pub struct Heartbeat {
    end: End,
    lost: CancellationToken,
}

/// What dropping the heartbeat stops.
enum End {
    /// Its own task.
    Task(CancellationToken),
    /// Its lease in a shared keeper.
    Kept { keeper: Arc<Keeper>, key: u64 },
}

impl Heartbeat {
    /// Renews `job` on `queue` every `every` until dropped.
    pub fn start<Q: Queue + 'static>(queue: Arc<Q>, job: &Job, every: Duration) -> Heartbeat {
        Heartbeat::spawn(job.clone(), every, move |job| {
            let queue = queue.clone();
            async move { queue.renew(&job).await }
        })
    }

    pub(crate) fn spawn<F, Fut>(job: Job, every: Duration, renew: F) -> Heartbeat
    where
        F: Fn(Job) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Transition, QueueError>> + Send,
    {
        let stop = CancellationToken::new();
        let lost = CancellationToken::new();
        let (stop_task, lost_task) = (stop.clone(), lost.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_task.cancelled() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                match renew(job.clone()).await {
                    Ok(Transition::Applied) => {}
                    Ok(Transition::NotOwner) => {
                        tracing::warn!(env = %job.env, job = %job.id, "lease of row {} lost: it was reaped or released; stopping work on it", job.id);
                        lost_task.cancel();
                        return;
                    }
                    // The lease stays valid until it expires; the next beat tries again.
                    Err(e) => tracing::warn!(job = %job.id, "lease renewal failed: {e}"),
                }
            }
        });
        Heartbeat { end: End::Task(stop), lost }
    }

    /// Fires when the lease is lost: the worker must abandon the job (its complete would be refused).
    pub fn lost(&self) -> CancellationToken {
        self.lost.clone()
    }

    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        match &self.end {
            End::Task(stop) => stop.cancel(),
            End::Kept { keeper, key } => keeper.forget(*key),
        }
    }
}

/// The leases of one queue's heartbeats and the one task that renews them when due.
pub(crate) struct Keeper {
    beats: Mutex<Beats>,
    /// Wakes the task when a lease arrives while it waits with none.
    wake: Notify,
    every: Duration,
}

#[derive(Default)]
struct Beats {
    next_key: u64,
    leases: Vec<Lease>,
    /// The task has been started (by the first lease).
    started: bool,
    /// The task waits for a lease (it held none): the next one wakes it.
    idle: bool,
}

struct Lease {
    key: u64,
    job: Job,
    due: Instant,
    lost: CancellationToken,
    /// A renewal of this lease is in flight: a beat falling meanwhile is skipped.
    renewing: bool,
}

impl Keeper {
    pub(crate) fn new(every: Duration) -> Arc<Keeper> {
        Arc::new(Keeper { beats: Mutex::new(Beats::default()), wake: Notify::new(), every })
    }

    fn beats(&self) -> MutexGuard<'_, Beats> {
        // Every change under this lock is a single push, remove or field update: a panic cannot
        // leave it inconsistent.
        self.beats.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Renews `job` every `every` through `renew` until the returned heartbeat is dropped. The
    /// keeper's task is started by the first call (`renew` returns None once its queue is gone,
    /// and `stop` ends the task).
    pub(crate) fn keep<R, Fut>(self: &Arc<Self>, job: &Job, stop: &CancellationToken, renew: impl FnOnce() -> R) -> Heartbeat
    where
        R: Fn(Job) -> Option<Fut> + Send + Sync + 'static,
        Fut: Future<Output = Result<Transition, QueueError>> + Send + 'static,
    {
        let lost = CancellationToken::new();
        let (key, start, wake) = {
            let mut beats = self.beats();
            let key = beats.next_key;
            beats.next_key += 1;
            beats.leases.push(Lease { key, job: job.clone(), due: Instant::now() + self.every, lost: lost.clone(), renewing: false });
            let start = !std::mem::replace(&mut beats.started, true);
            let wake = std::mem::replace(&mut beats.idle, false);
            (key, start, wake)
        };
        if start {
            tokio::spawn(run(Arc::clone(self), stop.clone(), Arc::new(renew())));
        } else if wake {
            self.wake.notify_one();
        }
        Heartbeat { end: End::Kept { keeper: Arc::clone(self), key }, lost }
    }

    fn forget(&self, key: u64) {
        let mut beats = self.beats();
        if let Some(i) = beats.leases.iter().position(|l| l.key == key) {
            beats.leases.swap_remove(i);
        }
    }

    /// The leases due at `now` (each moved to its next beat), and when the next one falls (None:
    /// no lease; the task is then marked idle, so the next lease wakes it).
    fn due(&self, now: Instant) -> (Vec<(u64, Job, CancellationToken)>, Option<Instant>) {
        let mut beats = self.beats();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for lease in beats.leases.iter_mut() {
            if lease.due <= now {
                lease.due = now + self.every;
                if !lease.renewing {
                    lease.renewing = true;
                    due.push((lease.key, lease.job.clone(), lease.lost.clone()));
                }
            }
            next = Some(next.map_or(lease.due, |n| n.min(lease.due)));
        }
        if next.is_none() {
            beats.idle = true;
        }
        (due, next)
    }

    /// A renewal ended: refused, the lease is lost (the worker is told, the row no longer renewed);
    /// failed, the next beat tries again (the lease stays valid until it expires).
    fn renewed(&self, key: u64, result: Result<Transition, QueueError>) {
        let mut beats = self.beats();
        let Some(i) = beats.leases.iter().position(|l| l.key == key) else { return };
        match result {
            Ok(Transition::Applied) => beats.leases[i].renewing = false,
            Ok(Transition::NotOwner) => {
                let lease = beats.leases.swap_remove(i);
                drop(beats);
                let job = &lease.job;
                tracing::warn!(env = %job.env, job = %job.id, "lease of row {} lost: it was reaped or released; stopping work on it", job.id);
                lease.lost.cancel();
            }
            Err(e) => {
                let job = beats.leases[i].job.id;
                beats.leases[i].renewing = false;
                drop(beats);
                tracing::warn!(job = %job, "lease renewal failed: {e}");
            }
        }
    }
}

/// The keeper's task: sleeps until the next beat (or a first lease), renews what is due, each
/// renewal in a task of its own.
async fn run<R, Fut>(keeper: Arc<Keeper>, stop: CancellationToken, renew: Arc<R>)
where
    R: Fn(Job) -> Option<Fut> + Send + Sync + 'static,
    Fut: Future<Output = Result<Transition, QueueError>> + Send + 'static,
{
    loop {
        // Armed before looking at the leases, so a lease arriving in between is not missed.
        let wake = keeper.wake.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let (due, next) = keeper.due(Instant::now());
        for (key, job, lost) in due {
            if lost.is_cancelled() {
                continue;
            }
            let Some(renewal) = renew(job) else { return };
            let keeper = Arc::clone(&keeper);
            tokio::spawn(async move { keeper.renewed(key, renewal.await) });
        }
        let sleep = tokio::time::sleep_until(next.map_or_else(|| tokio::time::Instant::now() + keeper.every, Into::into));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = &mut wake => {}
            _ = sleep, if next.is_some() => {}
        }
    }
}
