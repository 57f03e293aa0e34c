//! The workload both capacity benches run: one task's allocate + release cycles.

use std::time::{Duration, Instant};

use registre_capacity::{Allocation, CapacityManager, WorkerType};

/// Allocates and releases an index-ocr lease as `id` until `run_for` after `started`; returns the
/// cycles done. A refusal stops the bench: the budget is sized so every allocation fits.
pub async fn allocate_release_cycles(m: &CapacityManager, id: &str, started: Instant, run_for: Duration) -> u64 {
    let mut cycles = 0u64;
    while started.elapsed() < run_for {
        match m.allocate(id, WorkerType::IndexOcr).await {
            Ok(Allocation::Granted { .. }) => {}
            other => panic!("allocation refused in the benchmark: {other:?}"),
        }
        m.release(id).await.expect("release");
        cycles += 1;
    }
    cycles
}
