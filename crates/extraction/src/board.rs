//! What every registre worker of this process is doing, for the status block: its state
//! (waiting for capacity, idle, working on a document...) and its job counters. Workers write
//! their own entry; the status reporter (and start-all-workers) read a snapshot.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use registre_capacity::{CapacityManager, CapacityStatus};

/// The state of one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerState {
    /// Did not fit in the server's capacity budget at start: waiting for a lease.
    WaitingForCapacity,
    /// Holds its lease, waiting for a row to claim.
    Idle,
    /// Working on `document` (e.g. `index 1234567 (prod)`) since `since`.
    Working { document: String, since: Instant },
    /// Its lease expired and could not be taken back: claims nothing until it can.
    LeaseLost,
    /// Shutting down: finishing or releasing its current job, then its lease.
    Stopping,
    /// Gone (shutdown done, or stopped on an error it could not get past).
    Stopped { reason: String },
}

impl std::fmt::Display for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerState::WaitingForCapacity => f.write_str("waiting for capacity"),
            WorkerState::Idle => f.write_str("idle"),
            WorkerState::Working { document, since } => {
                write!(f, "working on {document} for {}", format_elapsed(since.elapsed()))
            }
            WorkerState::LeaseLost => f.write_str("capacity lease lost, waiting to take it back"),
            WorkerState::Stopping => f.write_str("stopping"),
            WorkerState::Stopped { reason } => write!(f, "stopped ({reason})"),
        }
    }
}

fn format_elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// One worker's entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    pub id: String,
    pub state: WorkerState,
    /// Rows moved on to status 3 (or 5).
    pub done: u64,
    /// Failures recorded on rows (each counted an attempt; the row is retried or ends in status 4).
    pub failed: u64,
    /// Rows given back without counting an attempt (browser crash, shutdown).
    pub released: u64,
}

/// What the workers of this process are doing.
#[derive(Debug, Default)]
pub struct Board {
    workers: Mutex<Vec<WorkerView>>,
}

impl Board {
    pub fn new() -> Board {
        Board::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Vec<WorkerView>) -> T) -> T {
        // A panic elsewhere cannot leave the entries inconsistent: keep using them.
        let mut guard = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    fn entry<T>(&self, id: &str, f: impl FnOnce(&mut WorkerView) -> T) -> Option<T> {
        self.with(|workers| workers.iter_mut().find(|w| w.id == id).map(f))
    }

    /// Adds a worker (in start order) in `state`.
    pub fn register(&self, id: &str, state: WorkerState) {
        self.with(|workers| {
            if !workers.iter().any(|w| w.id == id) {
                workers.push(WorkerView { id: id.to_string(), state, done: 0, failed: 0, released: 0 });
            }
        });
    }

    pub fn set_state(&self, id: &str, state: WorkerState) {
        self.entry(id, |w| w.state = state);
    }

    pub fn count_done(&self, id: &str) {
        self.entry(id, |w| w.done += 1);
    }

    pub fn count_failed(&self, id: &str) {
        self.entry(id, |w| w.failed += 1);
    }

    pub fn count_released(&self, id: &str) {
        self.entry(id, |w| w.released += 1);
    }

    pub fn snapshot(&self) -> Vec<WorkerView> {
        self.with(|workers| workers.clone())
    }

    /// The lines of the status block: one per worker, the totals, and the capacity reading
    /// (`None` when Redis could not be read: the line says so).
    pub fn status_lines(&self, capacity: Option<&CapacityStatus>) -> Vec<String> {
        let workers = self.snapshot();
        let mut lines = Vec::with_capacity(workers.len() + 3);
        for w in &workers {
            lines.push(format!(
                "   {}: {} · done {} · failed {} · released {}",
                w.id, w.state, w.done, w.failed, w.released
            ));
        }
        let (done, failed): (u64, u64) = workers.iter().fold((0, 0), |(d, f), w| (d + w.done, f + w.failed));
        let working = workers.iter().filter(|w| matches!(w.state, WorkerState::Working { .. })).count();
        let waiting = workers.iter().filter(|w| w.state == WorkerState::WaitingForCapacity).count();
        lines.push(format!(
            "   Workers: {} · working {working} · waiting for capacity {waiting} · jobs done {done} · failed {failed}",
            workers.len()
        ));
        lines.push(match capacity {
            Some(c) => capacity_line(c),
            None => "   Capacity: Redis could not be read (will retry at the next status)".to_string(),
        });
        lines
    }
}

/// `Capacity: CPU 6/6.4 vCPU · RAM 2/12.8 GB · 2 worker(s) holding leases on this server`.
pub fn capacity_line(c: &CapacityStatus) -> String {
    format!(
        "   Capacity: CPU {}/{} vCPU · RAM {}/{} GB · {} worker(s) holding leases on this server",
        c.cpu_allocated,
        c.usable_cpu,
        c.ram_allocated,
        c.usable_ram,
        c.workers.len()
    )
}

/// Reads the capacity for a status block; None (logged at debug) if Redis does not answer.
pub async fn read_capacity(capacity: &CapacityManager) -> Option<CapacityStatus> {
    match capacity.status().await {
        Ok(status) => Some(status),
        Err(e) => {
            tracing::debug!("capacity status unavailable: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_state_and_counters() {
        let board = Board::new();
        board.register("w-1", WorkerState::Idle);
        board.register("w-2", WorkerState::WaitingForCapacity);
        board.count_done("w-1");
        board.count_done("w-1");
        board.count_failed("w-1");
        board.set_state("w-1", WorkerState::Working { document: "index 12 (prod)".into(), since: Instant::now() });
        let lines = board.status_lines(None);
        assert!(lines[0].starts_with("   w-1: working on index 12 (prod) for "), "{lines:?}");
        assert!(lines[0].ends_with("· done 2 · failed 1 · released 0"), "{lines:?}");
        assert_eq!(lines[1], "   w-2: waiting for capacity · done 0 · failed 0 · released 0");
        assert_eq!(lines[2], "   Workers: 2 · working 1 · waiting for capacity 1 · jobs done 2 · failed 1");
        assert!(lines[3].contains("could not be read"));
    }
}
