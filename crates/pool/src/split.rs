//! How the pool is split between index and acte mode, and which workers move when the split
//! changes. Pure functions: the manager feeds them queue counts and worker states.

use registre_capacity::WorkerType;
use registre_queue::DocumentSource;

/// The mode an OCR worker is in: which rows it claims and which capacity type it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    Index,
    Acte,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Index => "index",
            Mode::Acte => "acte",
        }
    }
    pub fn worker_type(self) -> WorkerType {
        match self {
            Mode::Index => WorkerType::IndexOcr,
            Mode::Acte => WorkerType::ActeOcr,
        }
    }
    pub fn source(self) -> DocumentSource {
        match self {
            Mode::Index => DocumentSource::Index,
            Mode::Acte => DocumentSource::Acte,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Workers per mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub index: u32,
    pub acte: u32,
}

/// The split for `pool` workers given the waiting rows: with nothing waiting, index gets
/// ⌊pool/2⌋ and acte ⌈pool/2⌉; otherwise index = round(pool × index share); then both minimums
/// are enforced (the configuration guarantees they fit in the pool together).
pub fn target_split(pool: u32, min_index: u32, min_acte: u32, index_waiting: u64, acte_waiting: u64) -> Split {
    let total = index_waiting + acte_waiting;
    let mut index = if total == 0 {
        pool / 2
    } else {
        ((pool as f64) * (index_waiting as f64) / (total as f64)).round() as u32
    };
    index = index.clamp(min_index.min(pool), pool);
    let mut acte = pool - index;
    if acte < min_acte {
        acte = min_acte.min(pool);
        index = pool - acte;
    }
    Split { index, acte }
}

/// A worker as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedWorker {
    pub id: String,
    pub mode: Mode,
    pub busy: bool,
}

/// The fewest mode changes that reach `target`: only workers of the mode in excess move, idle
/// ones first (a busy one finishes its job before switching), in id order among equals.
pub fn plan_moves(workers: &[PlannedWorker], target: Split) -> Vec<(String, Mode)> {
    let index_now = workers.iter().filter(|w| w.mode == Mode::Index).count() as u32;
    let (from, to, excess) = if index_now > target.index {
        (Mode::Index, Mode::Acte, index_now - target.index)
    } else {
        let acte_now = workers.len() as u32 - index_now;
        if acte_now <= target.acte {
            return Vec::new();
        }
        (Mode::Acte, Mode::Index, acte_now - target.acte)
    };
    let mut candidates: Vec<&PlannedWorker> = workers.iter().filter(|w| w.mode == from).collect();
    candidates.sort_by(|a, b| a.busy.cmp(&b.busy).then_with(|| natural_key(&a.id).cmp(&natural_key(&b.id))));
    candidates.into_iter().take(excess as usize).map(|w| (w.id.clone(), to)).collect()
}

/// `ocr-worker-10` sorts after `ocr-worker-9`.
fn natural_key(id: &str) -> (String, u64) {
    let digits: String = id.chars().rev().take_while(|c| c.is_ascii_digit()).collect::<Vec<_>>().into_iter().rev().collect();
    let n = digits.parse().unwrap_or(0);
    (id[..id.len() - digits.len()].to_string(), n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(id: &str, mode: Mode, busy: bool) -> PlannedWorker {
        PlannedWorker { id: id.into(), mode, busy }
    }

    /// (workers, minimum index, minimum acte, index rows waiting, acte rows waiting) → (index, acte).
    const SPLITS: &[((u32, u32, u32, u64, u64), (u32, u32))] = &[
        // An empty queue: floor(n/2) index, ceil(n/2) acte; no workers, no split.
        ((2, 1, 1, 0, 0), (1, 1)), ((3, 1, 1, 0, 0), (1, 2)), ((4, 0, 0, 0, 0), (2, 2)),
        ((1, 0, 0, 0, 0), (0, 1)), ((0, 0, 0, 5, 5), (0, 0)),
        // Proportional to the rows waiting, each side keeping its minimum.
        ((4, 1, 1, 40, 0), (3, 1)), ((4, 1, 1, 0, 40), (1, 3)), ((10, 1, 1, 30, 10), (8, 2)),
        ((10, 0, 0, 30, 10), (8, 2)), ((4, 0, 0, 40, 0), (4, 0)), ((5, 2, 2, 1, 100), (2, 3)),
        ((2, 1, 1, 30, 10), (1, 1)),
    ];

    #[test]
    fn splits_half_and_half_when_empty_and_proportionally_with_minimums() {
        for &((n, min_index, min_acte, index_waiting, acte_waiting), (index, acte)) in SPLITS {
            let got = target_split(n, min_index, min_acte, index_waiting, acte_waiting);
            assert_eq!(got, Split { index, acte }, "target_split({n}, {min_index}, {min_acte}, {index_waiting}, {acte_waiting})");
        }
    }

    #[test]
    fn fewest_moves_idle_first() {
        let workers = [w("ocr-worker-1", Mode::Index, false), w("ocr-worker-2", Mode::Index, false), w("ocr-worker-3", Mode::Acte, true), w("ocr-worker-4", Mode::Acte, false)];
        // 2/2 → 3/1: one acte worker moves, the idle one.
        assert_eq!(plan_moves(&workers, Split { index: 3, acte: 1 }), [("ocr-worker-4".to_string(), Mode::Index)]);
        // 2/2 → 1/3: one index worker moves, the first idle by id.
        assert_eq!(plan_moves(&workers, Split { index: 1, acte: 3 }), [("ocr-worker-1".to_string(), Mode::Acte)]);
        assert!(plan_moves(&workers, Split { index: 2, acte: 2 }).is_empty());
        // Busy workers move only when idle ones are not enough.
        let moves = plan_moves(&workers, Split { index: 4, acte: 0 });
        assert_eq!(moves, [("ocr-worker-4".to_string(), Mode::Index), ("ocr-worker-3".to_string(), Mode::Index)]);
    }

    #[test]
    fn ids_sort_naturally() {
        let workers = [w("ocr-worker-10", Mode::Index, false), w("ocr-worker-9", Mode::Index, false)];
        assert_eq!(plan_moves(&workers, Split { index: 1, acte: 1 }), [("ocr-worker-9".to_string(), Mode::Acte)]);
    }
}
