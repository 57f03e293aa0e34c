//! The status ids of `extraction_queue.status_id` and their French labels, as in the
//! `extraction_status` table kept from production (docs/design.md §7). The one place they are
//! written: the queue's transitions, the operations library, registrectl's tables, the API's
//! /metrics and the dashboard (registre-api serves [`ALL`] with its labels to the page) read them
//! from here.

/// Queued, waiting for a registre worker (En attente).
pub const WAITING: i32 = 1;
/// Claimed by a registre worker (En traitement).
pub const EXTRACTING: i32 = 2;
/// PDF stored, waiting for an OCR worker (Complété).
pub const DOWNLOADED: i32 = 3;
/// Failed; attempts exhausted or cancelled (Erreur).
pub const ERROR: i32 = 4;
/// Text extracted: final (Extraction complété).
pub const DONE: i32 = 5;
/// Claimed by an OCR worker (OCR en traitement).
pub const OCR_RUNNING: i32 = 6;

/// Every status id, in id order.
pub const ALL: [i32; 6] = [WAITING, EXTRACTING, DOWNLOADED, ERROR, DONE, OCR_RUNNING];

/// The statuses an operator can retry (ops_retry): Erreur only.
pub const RETRYABLE: [i32; 1] = [ERROR];

/// The statuses an operator can cancel (ops_cancel): waiting or in progress, not final.
pub const CANCELLABLE: [i32; 4] = [WAITING, EXTRACTING, DOWNLOADED, OCR_RUNNING];

/// The French label of a status id, as in the `extraction_status` table; `Inconnu` for an id
/// outside [`ALL`].
pub fn label(status_id: i32) -> &'static str {
    match status_id {
        WAITING => "En attente",
        EXTRACTING => "En traitement",
        DOWNLOADED => "Complété",
        ERROR => "Erreur",
        DONE => "Extraction complété",
        OCR_RUNNING => "OCR en traitement",
        _ => "Inconnu",
    }
}

/// Whether `status_id` is one of [`ALL`].
pub fn is_known(status_id: i32) -> bool {
    ALL.contains(&status_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_its_production_label() {
        let labels: Vec<(i32, &str)> = ALL.iter().map(|s| (*s, label(*s))).collect();
        assert_eq!(
            labels,
            [
                (1, "En attente"),
                (2, "En traitement"),
                (3, "Complété"),
                (4, "Erreur"),
                (5, "Extraction complété"),
                (6, "OCR en traitement")
            ]
        );
        assert_eq!(label(7), "Inconnu");
        assert!(is_known(6) && !is_known(0) && !is_known(7));
        assert!(CANCELLABLE.iter().chain(RETRYABLE.iter()).all(|s| is_known(*s)));
        assert!(!CANCELLABLE.contains(&DONE) && !CANCELLABLE.contains(&ERROR));
    }
}
