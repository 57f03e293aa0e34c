//! Graceful shutdown shared by every binary, the way tokio's mini-redis does it: one
//! CancellationToken fanned out to every task, one TaskTracker to wait until every task is done.
//! Workers stop claiming when the token fires, finish or release their job, release their
//! capacity lease, and return; `wait` returns once all of them have.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Fires the shutdown on the first SIGTERM (what PM2 sends) or SIGINT (Ctrl-C).
    pub fn listen_for_signals(&self) {
        let token = self.token.clone();
        tokio::spawn(async move {
            let signal = wait_for_signal().await;
            tracing::info!("🛑 {signal} received: stopping (finishing or releasing current jobs)");
            token.cancel();
        });
    }

    /// The token every task watches. Child tokens let a component stop its own tasks early.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// Spawns a task that `wait` will wait for.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Waits until every spawned task has returned. Returns false if `limit` passed first
    /// (the binary then exits anyway, before PM2's kill_timeout turns into a SIGKILL).
    pub async fn wait(&self, limit: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait()).await.is_ok()
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_returns_after_every_task_saw_the_signal() {
        let shutdown = Shutdown::new();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for _ in 0..8 {
            let token = shutdown.token();
            let done = done.clone();
            shutdown.spawn(async move {
                token.cancelled().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        assert!(!shutdown.wait(Duration::from_millis(50)).await, "tasks must still be running");
        shutdown.trigger();
        assert!(shutdown.wait(Duration::from_secs(5)).await);
        assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 8);
    }
}
