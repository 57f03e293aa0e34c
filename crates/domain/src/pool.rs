//! The OCR pool's records in Redis (docs/design.md §6), with their JSON field names: what the pool
//! manager (crates/pool) writes and the operations library (crates/ops) reads. Their keys are
//! [`crate::keys::PoolKeys`].

use serde::{Deserialize, Serialize};

/// `worker_pool:allocation`: the workers each mode gets, summed over the live pool processes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllocationRecord {
    pub index_workers: u32,
    pub acte_workers: u32,
    pub total_workers: u32,
    pub queue: QueueCounts,
    pub updated_at: String,
}

/// Rows waiting for OCR per mode, as the allocation was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueCounts {
    pub index: u64,
    pub acte: u64,
}

/// One entry of `worker_pool:assignments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignmentRecord {
    pub worker_id: String,
    pub assigned_mode: String,
    pub last_updated: String,
}
