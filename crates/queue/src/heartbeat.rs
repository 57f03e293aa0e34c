//! Keeps a claimed row's lease alive while its worker works: renews it every QUEUE_HEARTBEAT_MS
//! and fires [`Heartbeat::lost`] when the renew is refused (the row was reaped and perhaps claimed
//! by another worker), so the worker stops and does not waste the work. Dropping the heartbeat
//! stops it; a worker that stops heartbeating loses its row to the reaper after QUEUE_LEASE_TTL_MS.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{Job, Queue, QueueError, Transition};

pub struct Heartbeat {
    stop: CancellationToken,
    lost: CancellationToken,
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
        Heartbeat { stop, lost }
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
        self.stop.cancel();
    }
}
