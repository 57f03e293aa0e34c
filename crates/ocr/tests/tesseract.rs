//! The tesseract engine against the real pdftoppm / pdfinfo / tesseract (Debian poppler-utils,
//! tesseract-ocr, tesseract-ocr-fra), on PDFs the tests draw themselves: accuracy (CER), page
//! order, corrupt input, and the per-job temporary directory.


use std::path::{Path, PathBuf};

use registre_ocr::{OcrEngine, OcrError, Parallelism, TesseractEngine, TesseractSettings, PAGE_SEPARATOR};
use registre_testkit::pdf;

/// A private temp root per test, so "the job directory is gone" can be checked as "the root is empty".
fn temp_root(label: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("registre-ocr-test-{label}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&root).unwrap();
    root
}

fn engine(root: &Path) -> TesseractEngine {
    TesseractEngine::new(TesseractSettings { temp_root: root.to_path_buf(), ..TesseractSettings::default() })
}

fn entries(root: &Path) -> Vec<String> {
    std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// Character error rate allowed on the raw text of the drawn index (whitespace runs count as one
/// space, so column layout is not an error; a lost or extra space is). The input is born-digital
/// Helvetica at 14 pt rendered at 300 DPI, the easiest case for tesseract's LSTM model: letters,
/// accents and digits come out essentially perfect. What remains is spacing inside digit groups:
/// Helvetica's space is half a digit wide, so tesseract often reads `1 234 567` as `1234567`
/// (≈ 1.9 % CER on this table, one error per lost space, measured with tesseract 5.3 / fra).
/// 3 % leaves room for that and the odd misread between tesseract versions, while every fault we
/// guard against is far above it: automatic page segmentation (--psm 3) tearing the table rows
/// apart (≈ 65 %, measured), a wrong or missing language model, a DPI fallback to 72, or pages out
/// of order or missing (≥ 50 %).
const MAX_RAW_CER: f64 = 0.03;
/// The boosting rules regroup partially grouped numbers (`15 656074` → `15 656 074`), so the boosted
/// text must be at least as good and under 2 %.
const MAX_BOOSTED_CER: f64 = 0.02;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_drawn_registry_index_with_a_low_character_error_rate() {
    let root = temp_root("accuracy");
    let (pages, rows) = pdf::registry_index(2, 12);
    let bytes = pdf::pdf(&pages);

    let out = engine(&root).extract(&bytes, Parallelism::pages(2)).await.unwrap();

    assert_eq!(out.engine, "tesseract");
    assert_eq!(out.pages.len(), 2, "one text per page");
    assert_eq!(out.raw, out.pages.join(PAGE_SEPARATOR));
    // Page order is kept: each page's text carries its own page number.
    assert!(out.pages[0].contains("page 1") && out.pages[1].contains("page 2"), "{:?}", out.pages);

    let reference = pages.iter().map(|p| p.join("\n")).collect::<Vec<_>>().join("\n");
    let raw_cer = pdf::cer(&reference, &out.raw);
    let boosted_cer = pdf::cer(&reference, &out.boosted);
    println!("tesseract CER on the drawn index (2 pages, {} rows): raw {:.4}, boosted {:.4}", rows.len(), raw_cer, boosted_cer);
    assert!(raw_cer <= MAX_RAW_CER, "raw CER {raw_cer:.4} above {MAX_RAW_CER}:\n{}", out.raw);
    assert!(boosted_cer <= raw_cer, "boosting made the text worse: {boosted_cer:.4} > {raw_cer:.4}");
    assert!(boosted_cer <= MAX_BOOSTED_CER, "boosted CER {boosted_cer:.4} above {MAX_BOOSTED_CER}:\n{}", out.boosted);

    // Every drawn name and date is there verbatim; every lot and inscription number has all its
    // digits in order (spacing inside a number is what the CER above accounts for).
    let text = pdf::normalize(&out.boosted);
    let compact: String = out.boosted.chars().filter(|c| !c.is_whitespace()).collect();
    for row in &rows {
        assert!(text.contains(row.name), "name {} missing from:\n{}", row.name, out.boosted);
        assert!(text.contains(&row.date), "date {} missing from:\n{}", row.date, out.boosted);
        assert!(text.contains(row.nature), "nature {} missing from:\n{}", row.nature, out.boosted);
        let lot: String = row.lot.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(compact.contains(&lot), "lot {} missing from:\n{}", row.lot, out.boosted);
    }
    let lots_verbatim = rows.iter().filter(|r| text.contains(&r.lot)).count();
    println!("lot numbers found with their exact spacing: {lots_verbatim}/{}", rows.len());
    assert!(entries(&root).is_empty(), "job directory left behind: {:?}", entries(&root));
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_corrupt_pdf_is_a_readable_error_and_leaves_no_temp_files() {
    let root = temp_root("corrupt");
    let engine = engine(&root);

    // A PDF header followed by garbage, a truncated real PDF, and bytes that are not a PDF at all.
    let (pages, _) = pdf::registry_index(1, 3);
    let real = pdf::pdf(&pages);
    let inputs: Vec<(&str, Vec<u8>)> = vec![
        ("garbage after the header", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> garbage \x00\x01\x02".to_vec()),
        ("truncated", real[..real.len() / 3].to_vec()),
        ("not a PDF", b"PK\x03\x04 this is a zip file, not a PDF".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in inputs {
        let err = engine.extract(&bytes, Parallelism::pages(2)).await.expect_err(what);
        let message = err.to_string();
        println!("{what}: {message}");
        assert!(matches!(err, OcrError::Unrenderable { .. }), "{what}: {err:?}");
        assert!(message.starts_with("PDF could not be rendered: "), "{what}: {message}");
        assert!(message.len() < 400 && !message.contains('\n'), "{what}: one short line: {message:?}");
        assert!(entries(&root).is_empty(), "{what}: job directory left behind: {:?}", entries(&root));
    }
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn a_missing_language_model_is_a_readable_error() {
    let root = temp_root("lang");
    let engine = TesseractEngine::new(TesseractSettings { temp_root: root.to_path_buf(), lang: "zzz".into(), ..TesseractSettings::default() });
    let (pages, _) = pdf::registry_index(1, 2);
    let err = engine.extract(&pdf::pdf(&pages), Parallelism::ONE).await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, OcrError::Tesseract { page: 1, .. }), "{err:?}");
    assert!(err.to_string().starts_with("tesseract failed on page 1: "), "{err}");
    assert!(entries(&root).is_empty(), "job directory left behind after an error: {:?}", entries(&root));
    std::fs::remove_dir_all(&root).unwrap();
}

// A job dropped mid-way (worker shutdown) is tested in cancellation.rs, with a tesseract that
// blocks until the job is dropped (no timing assumption on how long 4 pages take).
