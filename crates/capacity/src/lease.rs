//! A held capacity lease and its heartbeat. The heartbeat renews every `heartbeat` period; if
//! the lease was lost (Redis restarted and forgot it, or the process stalled past the TTL) it
//! allocates again through the checked path; Redis errors are logged and retried, never fatal.
//! Each heartbeat also refreshes the server's published budget (crate::budget).
//! Dropping a Lease stops its heartbeat (the lease then expires after the TTL); `release` gives
//! the capacity back at once; `switch` moves the lease to another worker type in one script.
//! The heartbeat and `switch` take the same lock, so a re-allocation by the heartbeat can never
//! put back the old type's lease after a switch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{Allocation, CapacityError, CapacityManager, Renewal, Shortfall, WorkerType};

pub struct Lease {
    manager: CapacityManager,
    worker_id: String,
    /// The type held; locked by the heartbeat while it talks to Redis and by `switch`.
    kind: Arc<Mutex<WorkerType>>,
    /// A copy of `kind` readable without waiting for the lock.
    current: WorkerType,
    held: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
    _stop: DropGuard,
    stop: CancellationToken,
}

impl Lease {
    pub(crate) fn start(manager: CapacityManager, worker_id: String, kind: WorkerType) -> Lease {
        let stop = CancellationToken::new();
        let held = Arc::new(AtomicBool::new(true));
        let shared = Arc::new(Mutex::new(kind));
        let heartbeat = tokio::spawn(heartbeat(manager.clone(), worker_id.clone(), shared.clone(), held.clone(), stop.clone()));
        Lease { manager, worker_id, kind: shared, current: kind, held, heartbeat: Some(heartbeat), _stop: stop.clone().drop_guard(), stop }
    }

    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    pub fn kind(&self) -> WorkerType {
        self.current
    }

    /// Moves this lease to `kind` atomically (see [`CapacityManager::switch`]). On a shortfall the
    /// lease keeps its old type and stays held; the caller may retry later.
    pub async fn switch(&mut self, kind: WorkerType) -> Result<Result<(), Shortfall>, CapacityError> {
        let mut guard = self.kind.lock().await;
        if *guard == kind && self.is_held() {
            return Ok(Ok(()));
        }
        match self.manager.switch(&self.worker_id, kind).await? {
            Allocation::Granted { .. } => {
                *guard = kind;
                self.current = kind;
                self.held.store(true, Ordering::SeqCst);
                Ok(Ok(()))
            }
            Allocation::Refused(shortfall) => Ok(Err(shortfall)),
        }
    }

    /// False while the heartbeat found the lease lost and could not take it back (the server is
    /// full again): a worker should finish its current job and not claim another until true.
    pub fn is_held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Stops the heartbeat and gives the capacity back.
    pub async fn release(mut self) -> Result<bool, CapacityError> {
        self.stop.cancel();
        if let Some(task) = self.heartbeat.take() {
            let _ = task.await;
        }
        self.manager.release(&self.worker_id).await
    }
}

async fn heartbeat(manager: CapacityManager, worker_id: String, kind: Arc<Mutex<WorkerType>>, held: Arc<AtomicBool>, stop: CancellationToken) {
    let period = manager.settings().costs.heartbeat;
    let mut delay = period;
    publish(&manager, &worker_id).await;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
        delay = period;
        let kind_guard = kind.lock().await;
        let kind = *kind_guard;
        match manager.renew(&worker_id).await {
            Ok(Renewal::Renewed { .. }) => {
                if !held.swap(true, Ordering::SeqCst) {
                    tracing::info!(worker = %worker_id, "✅ capacity lease held again");
                }
                publish(&manager, &worker_id).await;
            }
            Ok(Renewal::Lost) => match manager.allocate(&worker_id, kind).await {
                Ok(Allocation::Granted { .. }) => {
                    held.store(true, Ordering::SeqCst);
                    tracing::warn!(worker = %worker_id, kind = kind.as_str(), "♻️ capacity lease had expired: re-allocated");
                }
                Ok(Allocation::Refused(shortfall)) => {
                    held.store(false, Ordering::SeqCst);
                    tracing::error!(worker = %worker_id, kind = kind.as_str(), "capacity lease lost and not re-allocated: {shortfall}");
                }
                Err(e) => {
                    tracing::warn!(worker = %worker_id, "capacity re-allocation failed: {e}");
                    delay = retry_delay(period);
                }
            },
            Err(e) => {
                tracing::warn!(worker = %worker_id, "capacity heartbeat failed (will retry): {e}");
                delay = retry_delay(period);
            }
        }
    }
}

/// Refreshes the server's published budget and registry entry (crate::budget) with the lease, so a
/// server with a live worker is always listed with its own budget. A failure only delays that.
async fn publish(manager: &CapacityManager, worker_id: &str) {
    if let Err(e) = manager.publish_budget().await {
        tracing::warn!(worker = %worker_id, "publishing the server's budget failed (retried at the next heartbeat): {e}");
    }
}

/// After an error, retry sooner than a full period, so a brief Redis outage does not cost the lease.
fn retry_delay(period: Duration) -> Duration {
    (period / 4).max(Duration::from_millis(50))
}
