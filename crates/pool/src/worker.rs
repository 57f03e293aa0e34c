//! One generic OCR worker: holds the capacity lease of its current mode, claims status-3 rows of
//! that mode (→ 6), downloads the PDF, runs the engine, completes (→ 5) or fails the row. When the
//! manager changes its mode it finishes its current job first, then moves its capacity lease to
//! the new type in ONE script (`Lease::switch`: old lease out and new lease in at once, or refused
//! with the old lease kept, never release-then-allocate) and claims rows of the new mode. While
//! the new type does not fit, it keeps its old lease and retries with backoff.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registre_capacity::Lease;
use registre_ocr::Parallelism;
use registre_queue::{settle, FailOutcome, Job, OcrTexts, Settled};
use registre_runtime::Backoff;
use registre_storage::ObjectPath;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{Mode, PoolServices};

/// What the status block and the manager read about a worker.
#[derive(Debug, Default)]
pub struct OcrActivity {
    pub busy: AtomicBool,
    pub done: AtomicU64,
    pub failed: AtomicU64,
    /// `idle`, `waiting for capacity`, or the document being read.
    pub activity: Mutex<String>,
}

impl OcrActivity {
    fn set_activity(&self, what: impl Into<String>) {
        if let Ok(mut a) = self.activity.lock() {
            *a = what.into();
        }
    }
    pub fn activity(&self) -> String {
        self.activity.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

/// The manager's handle on a worker.
pub struct WorkerSlot {
    /// `ocr-worker-<n>`: the name in logs and the start-up banner.
    pub name: String,
    /// `ocr-worker-<n>-<8 hex>`: the id in Redis and in the queue, unique per process.
    pub id: String,
    pub mode: watch::Sender<Mode>,
    pub state: Arc<OcrActivity>,
}

/// One worker's identity and what it shares with the others.
pub(crate) struct Worker {
    pub services: Arc<PoolServices>,
    pub name: String,
    pub id: String,
    pub state: Arc<OcrActivity>,
    pub stop: CancellationToken,
}

pub(crate) async fn run_worker(worker: Worker, mut mode_rx: watch::Receiver<Mode>, lease: Option<Lease>) {
    let Worker { services, name, id, state, stop } = worker;
    let mut lease = match lease {
        Some(lease) => lease,
        None => {
            state.set_activity("waiting for capacity");
            let mode = *mode_rx.borrow_and_update();
            match services.capacity.wait_for_lease(&id, mode.worker_type(), &stop).await {
                Some(lease) => {
                    tracing::info!("✅ Started {name} (mode: {mode})");
                    lease
                }
                None => {
                    let _ = services.manager.unassign(&id).await;
                    return;
                }
            }
        }
    };
    state.set_activity("idle");
    let mut switch_backoff = Backoff::new(Duration::from_millis(250), services.capacity.settings().costs.retry_max);
    // When the current mode switch was first tried: the wait for the new type's capacity is
    // recorded in registre_capacity_wait_seconds once the switch succeeds.
    let mut switch_asked: Option<std::time::Instant> = None;
    loop {
        if stop.is_cancelled() {
            break;
        }
        let mode = *mode_rx.borrow_and_update();
        if mode.worker_type() != lease.kind() {
            state.set_activity("switching mode");
            let asked = *switch_asked.get_or_insert_with(std::time::Instant::now);
            match lease.switch(mode.worker_type()).await {
                Ok(Ok(())) => {
                    registre_telemetry::capacity_wait(mode.worker_type().as_str(), asked.elapsed());
                    switch_asked = None;
                    switch_backoff.reset();
                    if let Err(e) = services.manager.assign(&id, mode).await {
                        tracing::warn!(worker = %id, "could not record the assignment: {e}");
                    }
                    tracing::info!("🔄 {name} switched to {mode} mode");
                    state.set_activity("idle");
                    continue;
                }
                Ok(Err(shortfall)) => {
                    let delay = switch_backoff.next_delay();
                    tracing::warn!(worker = %id, "⏳ {name} keeps its {} lease: {shortfall} for {mode} mode (retry in {} ms)", lease.kind(), delay.as_millis());
                    state.set_activity(format!("waiting for capacity to switch to {mode}"));
                    // Retry later, sooner if the mode changes again or on shutdown.
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = mode_rx.changed() => {}
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
                Err(e) => {
                    let delay = switch_backoff.next_delay();
                    tracing::warn!(worker = %id, "{name}: switching the capacity lease failed ({e}): retry in {} ms", delay.as_millis());
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            }
        }
        if !lease.is_held() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }

        // Wait for a row of this mode; a mode change or the shutdown interrupts the wait.
        let wake = stop.child_token();
        let watcher = {
            let mut rx = mode_rx.clone();
            let wake = wake.clone();
            tokio::spawn(async move {
                let _ = rx.changed().await;
                wake.cancel();
            })
        };
        let job = services.queue.next_ocr(&id, mode.source(), &wake).await;
        watcher.abort();
        let Some(job) = job else { continue };

        state.busy.store(true, Ordering::SeqCst);
        state.set_activity(format!("reading {} {} ({})", job.document_source, job.document_number, job.env));
        let parallelism = Parallelism::from_cpu(services.capacity.settings().cost(lease.kind()).cpu);
        process(&services, &id, &job, parallelism, &state, &stop).await;
        state.busy.store(false, Ordering::SeqCst);
        state.set_activity("idle");
    }
    if let Err(e) = lease.release().await {
        tracing::warn!(worker = %id, "releasing the capacity lease failed (it expires by itself): {e}");
    }
    let _ = services.manager.unassign(&id).await;
}

/// Reads one claimed row and hands it on. Never panics: every failure ends up in the row.
async fn process(services: &PoolServices, id: &str, job: &Job, parallelism: Parallelism, state: &OcrActivity, stop: &CancellationToken) {
    let claimed = std::time::Instant::now();
    let heartbeat = services.queue.keep_alive(job);
    let work = async {
        let path = job.supabase_path.as_deref().filter(|p| !p.trim().is_empty()).ok_or_else(|| "row has no supabase_path: nothing to read".to_string())?;
        let object = ObjectPath::parse(path).map_err(|e| format!("supabase_path {path:?}: {e}"))?;
        let pdf = services.storage.get(&object).await.map_err(|e| format!("PDF could not be downloaded: {e}"))?;
        // An index des immeubles is also read as data (index_data), by the same OCR run.
        let read = if job.source() == Some(registre_queue::DocumentSource::Index) {
            services.engine.extract_index(&pdf, parallelism).await
        } else {
            services.engine.extract(&pdf, parallelism).await
        };
        read.map_err(|e| e.to_string())
    };
    tokio::pin!(work);
    let lost = heartbeat.lost();
    let outcome = tokio::select! {
        result = &mut work => Some(result),
        _ = lost.cancelled() => {
            tracing::warn!(worker = id, job = %job.id, "row lease lost (reaped or taken over): dropping the job without writing");
            registre_telemetry::job("ocr", "lost", claimed.elapsed());
            return;
        }
        _ = stop.cancelled() => {
            tokio::time::timeout(services.shutdown_grace, &mut work).await.ok()
        }
    };
    drop(heartbeat);
    // Every write that ends the job goes through the queue's one end-of-job retry policy.
    let lease_ttl = services.queue.config().lease_ttl;
    let fail = |message: String| async move {
        state.failed.fetch_add(1, Ordering::SeqCst);
        registre_telemetry::job("ocr", "failed", claimed.elapsed());
        tracing::warn!(worker = id, job = %job.id, env = %job.env, "❌ {} {}: {message}", job.document_source, job.document_number);
        match settle(id, "fail", lease_ttl, stop, || services.queue.fail(job, &message)).await {
            Settled::Done(FailOutcome::Failed { attempts }) => tracing::warn!(worker = id, job = %job.id, "row is now in error after {attempts} attempt(s)"),
            Settled::Done(FailOutcome::Retry { attempts, .. }) => tracing::info!(worker = id, job = %job.id, "row will be retried (attempt {attempts})"),
            Settled::RowError(e) => tracing::warn!(worker = id, job = %job.id, "failure refused ({e}): the row returns to the queue when its lease expires"),
            Settled::Done(FailOutcome::NotOwner) | Settled::GaveUp => {}
        }
    };
    match outcome {
        Some(Ok(output)) => {
            // The row reaches 5 with its text even when index_data cannot be serialized (it always
            // can: plain strings and lists); nothing of the text is lost for the data's sake.
            let index_data = output.index_data.as_ref().and_then(|d| serde_json::to_value(d).ok());
            let written = settle(id, "complete OCR", lease_ttl, stop, || {
                services.queue.complete_ocr_with(job, OcrTexts::new(&output.raw, &output.boosted).with_index(index_data.as_ref()))
            })
            .await;
            match written {
                Settled::Done(t) if t.applied() => {
                    state.done.fetch_add(1, Ordering::SeqCst);
                    registre_telemetry::ocr_pages(output.pages.len() as u64);
                    registre_telemetry::job("ocr", "completed", claimed.elapsed());
                    tracing::info!(worker = id, job = %job.id, env = %job.env, "📝 {} {} read: {} page(s) ({} by OCR, {} by text layer), {} characters", job.document_source, job.document_number, output.pages.len(), output.pages.len() - output.text_layer_pages, output.text_layer_pages, output.raw.len());
                }
                Settled::Done(_) => {
                    registre_telemetry::job("ocr", "lost", claimed.elapsed());
                    tracing::warn!(worker = id, job = %job.id, "row was taken over meanwhile: text not written")
                }
                // The database refused this row's text: the row fails with the reason.
                Settled::RowError(e) => fail(format!("the queue refused the OCR text: {e}")).await,
                Settled::GaveUp => {}
            }
        }
        Some(Err(message)) => fail(message).await,
        None => {
            tracing::info!(worker = id, job = %job.id, "shutdown: job not finished within the grace period, releasing it");
            registre_telemetry::job("ocr", "released", claimed.elapsed());
            if let Settled::RowError(e) = settle(id, "release", lease_ttl, stop, || services.queue.release(job)).await {
                tracing::warn!(worker = id, job = %job.id, "release refused ({e}): the row returns to the queue when its lease expires");
            }
        }
    }
}
