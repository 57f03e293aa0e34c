//! The index des immeubles as data on the tesseract path, measured: scanned-looking pages from
//! testkit's generator (200 dpi, skew, noise, accents, several parties) read by the real tesseract,
//! `index_data` scored field by field against the truth (docs/ocr.md, Structured index). Targets:
//! F1 ≥ 0.95 and precision ≥ 0.97 over all fields. Also: a page that is not the modern layout is
//! `"format": "unknown"` with a warning and its text, and the text of an index read is the text of
//! a plain read.

use registre_ocr::{OcrEngine, Parallelism, TesseractEngine, TesseractSettings};
use registre_testkit::index_score::{score, Score};
use registre_testkit::scan::scanned_index;

fn engine() -> TesseractEngine {
    TesseractEngine::new(TesseractSettings::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_data_of_scanned_pages_meets_the_quality_targets() {
    let engine = engine();
    let mut total = Score::default();
    // A few documents of different seeds: different circonscriptions, natures, skews, specks.
    for (seed, pages) in [(11u64, 1usize), (23, 2), (37, 1)] {
        let doc = scanned_index(seed, pages);
        let out = engine.extract_index(&doc.pdf, Parallelism::pages(2)).await.expect("read");
        let data = out.index_data.expect("an index read has index_data");
        assert_eq!(data.engine, "tesseract");
        assert_eq!(data.pages.len(), pages);
        let s = score(&doc.truth, &serde_json::to_value(&data).expect("json"));
        eprintln!("seed {seed}: {} mismatches {:?} warnings {:?}", s.total().f1(), s.mismatches, data.warnings);
        total.merge(&s);
    }
    let t = total.total();
    eprintln!("{}", total.table());
    assert!(t.tp > 100, "too few fields scored to mean anything: {t:?}");
    assert!(t.f1() >= 0.95, "F1 {:.3} < 0.95\n{}\n{:#?}", t.f1(), total.table(), total.mismatches);
    assert!(t.precision() >= 0.97, "precision {:.3} < 0.97\n{}\n{:#?}", t.precision(), total.table(), total.mismatches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_not_in_the_modern_layout_is_unknown_with_a_warning_and_keeps_its_text() {
    // The older list layout (one line per row, no table header) of testkit's first PDF writer.
    let (pages, _) = registre_testkit::pdf::registry_index(1, 8);
    let pdf = registre_testkit::scan::scan(&registre_testkit::pdf::pdf(&pages), 5).expect("scan");
    let out = engine().extract_index(&pdf, Parallelism::ONE).await.expect("read");
    assert!(out.raw.contains("REGISTRE FONCIER"), "{}", out.raw);
    let data = out.index_data.expect("index_data");
    assert_eq!(data.pages.len(), 1);
    assert_eq!(data.pages[0].format, "unknown");
    assert!(data.pages[0].inscriptions.is_empty());
    assert!(data.warnings.iter().any(|w| w.starts_with("page 1: no table header found")), "{:?}", data.warnings);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_the_table_does_not_change_the_text() {
    let doc = scanned_index(41, 1);
    let engine = engine();
    let plain = engine.extract(&doc.pdf, Parallelism::ONE).await.expect("plain read");
    let index = engine.extract_index(&doc.pdf, Parallelism::ONE).await.expect("index read");
    assert_eq!(plain.raw, index.raw);
    assert_eq!(plain.boosted, index.boosted);
    assert!(plain.index_data.is_none());
}
