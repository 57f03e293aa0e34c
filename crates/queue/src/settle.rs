//! The one retry policy for the write that ends a job (complete, fail, release, crash), shared by
//! the registre workers and the OCR workers: retried with capped backoff while the environment is
//! unreachable or busy, for at most the row's lease (after that the reaper gives the row back, so
//! the job is not lost) or 5 s once the process is stopping; a refusal of this row's data comes
//! back at once, since retrying would fail the same way.

use std::future::Future;
use std::time::{Duration, Instant};

use registre_runtime::Backoff;
use tokio_util::sync::CancellationToken;

use crate::QueueError;

/// What came of recording a transition.
#[derive(Debug)]
pub enum Settled<T> {
    Done(T),
    /// The database refused it for this row (constraint, data): retrying would not help.
    RowError(QueueError),
    /// The environment stayed unreachable past the lease (or the shutdown): the reaper takes over.
    GaveUp,
}

/// Runs `call` under the policy above; `worker` and `operation` name it in the logs.
pub async fn settle<T, F, Fut>(worker: &str, operation: &str, lease_ttl: Duration, stop: &CancellationToken, call: F) -> Settled<T>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, QueueError>>,
{
    let started = Instant::now();
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match call().await {
            Ok(value) => return Settled::Done(value),
            Err(e) if !e.is_environment_failure() && !matches!(e, QueueError::Busy { .. }) => return Settled::RowError(e),
            Err(e) => {
                let limit = if stop.is_cancelled() { lease_ttl.min(Duration::from_secs(5)) } else { lease_ttl };
                let delay = backoff.next_delay();
                if started.elapsed() + delay > limit {
                    tracing::error!(worker, "❌ {operation} could not be recorded ({e}): giving up; the row returns to the queue when its lease expires");
                    return Settled::GaveUp;
                }
                tracing::warn!(worker, "⚠️ {operation} failed ({e}): retrying in {} ms", delay.as_millis());
                tokio::time::sleep(delay).await;
            }
        }
    }
}
