//! The tesseract engine against the real poppler tools and tesseract (Debian poppler-utils,
//! tesseract-ocr, tesseract-ocr-fra), on PDFs the tests make themselves: born-digital pages read
//! from their text layer, scanned pages (testkit's generator) OCR'd at least as well as tesseract
//! reads a 300 dpi render, a hidden OCR layer ignored, page order, corrupt input, and the per-job
//! temporary directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use registre_ocr::{OcrEngine, OcrError, Parallelism, TesseractEngine, TesseractSettings, PAGE_SEPARATOR};
use registre_testkit::{pdf, scan};

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
/// Helvetica, read from its text layer (0 % measured). The bound is the one OCR of the same pages
/// at 300 DPI met (≈ 1.9 % measured, digit-group spaces lost): the text-layer path must never be
/// worse than OCR was, and every fault we guard against is far above it: a wrong text encoding,
/// pages out of order or missing (≥ 50 %).
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
    assert_eq!(out.text_layer_pages, 2, "born-digital pages are read from their text layer");
    assert_eq!(out.raw, out.pages.join(PAGE_SEPARATOR));
    // Page order is kept: each page's text carries its own page number.
    assert!(out.pages[0].contains("page 1") && out.pages[1].contains("page 2"), "{:?}", out.pages);

    let reference = pages.iter().map(|p| p.join("\n")).collect::<Vec<_>>().join("\n");
    let raw_cer = pdf::cer(&reference, &out.raw);
    let boosted_cer = pdf::cer(&reference, &out.boosted);
    println!("CER on the drawn index (2 pages, {} rows): raw {:.4}, boosted {:.4}", rows.len(), raw_cer, boosted_cer);
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
    let scanned = scan::scanned_index(3, 1);
    let err = engine.extract(&scanned.pdf, Parallelism::ONE).await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, OcrError::Tesseract { page: 1, .. }), "{err:?}");
    assert!(err.to_string().starts_with("tesseract failed on page 1: "), "{err}");
    assert!(entries(&root).is_empty(), "job directory left behind after an error: {:?}", entries(&root));
    std::fs::remove_dir_all(&root).unwrap();
}

/// The text the scanned pages show, in reading order: `pdftotext -layout` of the born-digital
/// document the generator scanned.
fn drawn_text(dir: &Path, seed: u64, pages: usize) -> String {
    let (born_digital, _) = scan::index_document(seed, pages);
    let path = dir.join("drawn.pdf");
    std::fs::write(&path, born_digital).unwrap();
    let out = Command::new("pdftotext").args(["-layout", "-enc", "UTF-8"]).arg(&path).arg("-").output().unwrap();
    assert!(out.status.success(), "pdftotext failed on the drawn index");
    std::fs::remove_file(&path).unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The reference of docs/ocr.md: tesseract alone on each page rendered at 300 dpi as PGM.
fn tesseract_on_300_dpi_renders(dir: &Path, pdf_bytes: &[u8], settings: &TesseractSettings) -> String {
    let input = dir.join("reference.pdf");
    std::fs::write(&input, pdf_bytes).unwrap();
    let status = Command::new("pdftoppm").args(["-r", "300", "-gray"]).arg(&input).arg(dir.join("reference")).status().unwrap();
    assert!(status.success());
    let mut images: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "pgm")).collect();
    images.sort();
    let texts: Vec<String> = images
        .iter()
        .map(|image| {
            let out = Command::new("tesseract")
                .arg(image)
                .arg("stdout")
                .args(["-l", &settings.lang, "--psm", &settings.psm.to_string(), "--dpi", "300"])
                .env("OMP_THREAD_LIMIT", "1")
                .output()
                .unwrap();
            assert!(out.status.success(), "tesseract failed on {}", image.display());
            std::fs::remove_file(image).unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    std::fs::remove_file(&input).unwrap();
    texts.join("\n")
}

/// The quality half of the issue's OCR target (the speed half is the bench's): on scanned pages
/// the engine's path (the page's own 200 dpi image, as TIFF) reads at least as well as tesseract
/// on the same pages rendered at 300 dpi, the path it replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scanned_pages_read_at_least_as_well_as_tesseract_on_300_dpi_renders() {
    let root = temp_root("scanned");
    let work = temp_root("scanned-reference");
    let seed = 24;
    let scanned = scan::scanned_index(seed, 2);
    let engine = engine(&root);

    let out = engine.extract(&scanned.pdf, Parallelism::pages(2)).await.unwrap();
    assert_eq!(out.pages.len(), 2);
    assert_eq!(out.text_layer_pages, 0, "scanned pages are OCR'd");

    let truth = drawn_text(&work, seed, 2);
    let reference = tesseract_on_300_dpi_renders(&work, &scanned.pdf, engine.settings());
    let (engine_cer, reference_cer) = (pdf::cer(&truth, &out.raw), pdf::cer(&truth, &reference));
    println!("CER on 2 scanned index pages: engine {engine_cer:.4}, tesseract on 300 dpi PGM {reference_cer:.4}");
    assert!(engine_cer <= reference_cer, "engine CER {engine_cer:.4} worse than the 300 dpi reference's {reference_cer:.4}:\n{}", out.raw);
    // And it is a reading, not noise: the bound a misplaced page or a wrong model would break.
    assert!(engine_cer < 0.15, "engine CER {engine_cer:.4}:\n{}", out.raw);
    assert!(entries(&root).is_empty(), "job directory left behind: {:?}", entries(&root));
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::remove_dir_all(&work).unwrap();
}

/// A scanned page carrying a hidden text layer (a previous OCR: invisible text over the image) is
/// OCR'd again: that layer's quality is unknown. The layer is added to a generated scan by an
/// incremental update of the page (the way OCR tools add theirs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scanned_page_with_a_hidden_text_layer_is_ocr_again() {
    let root = temp_root("hidden");
    let scanned = scan::scanned_index(5, 1);
    let layered = with_hidden_text(&scanned.pdf, "HIDDENLAYER ZZQX 999 999 999");

    // The layer is really there: pdftotext reads it.
    let input = root.join("layered.pdf");
    std::fs::write(&input, &layered).unwrap();
    let text = Command::new("pdftotext").arg(&input).arg("-").output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).contains("HIDDENLAYER"), "the hidden layer was not added");
    std::fs::remove_file(&input).unwrap();

    let out = engine(&root).extract(&layered, Parallelism::ONE).await.unwrap();
    assert_eq!(out.text_layer_pages, 0, "a scanned page is OCR'd, whatever text it carries");
    assert!(!out.raw.contains("HIDDENLAYER"), "the hidden layer was used:\n{}", out.raw);
    assert!(out.raw.contains("Date de présentation") || out.raw.contains("présentation"), "the scan was not read:\n{}", out.raw);
    std::fs::remove_dir_all(&root).unwrap();
}

/// Appends an incremental update to a one-page PDF: the page (object 3, as testkit's image PDFs
/// number it) gets a second content stream drawing `text` in render mode 3 (invisible).
fn with_hidden_text(pdf_bytes: &[u8], text: &str) -> Vec<u8> {
    let body = String::from_utf8_lossy(pdf_bytes);
    let start = body.find("\n3 0 obj\n").expect("page object 3") + "\n3 0 obj\n".len();
    let end = start + body[start..].find("\nendobj").expect("end of the page object");
    let page = body[start..end]
        .replacen("/Resources <<", "/Resources << /Font << /F9 6 0 R >>", 1)
        .replacen("/Contents 4 0 R", "/Contents [4 0 R 7 0 R]", 1);
    assert!(page.contains("/F9 6 0 R") && page.contains("[4 0 R 7 0 R]"), "unexpected page object: {page}");
    let previous_xref = body.rfind("startxref\n").map(|i| body[i + 10..].lines().next().unwrap_or("").trim().to_string()).expect("startxref");
    let content = format!("BT 3 Tr /F9 12 Tf 72 300 Td ({text}) Tj ET");
    let objects = [
        (3, page),
        (6, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_string()),
        (7, format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len())),
    ];
    let mut out = pdf_bytes.to_vec();
    let mut offsets = Vec::new();
    for (number, object) in &objects {
        offsets.push((*number, out.len()));
        out.extend(format!("{number} 0 obj\n{object}\nendobj\n").into_bytes());
    }
    let xref = out.len();
    out.extend(b"xref\n".as_slice());
    for (number, offset) in offsets {
        out.extend(format!("{number} 1\n{offset:010} 00000 n \n").into_bytes());
    }
    out.extend(format!("trailer\n<< /Size 8 /Root 1 0 R /Prev {previous_xref} >>\nstartxref\n{xref}\n%%EOF\n").into_bytes());
    out
}

// A job dropped mid-way (worker shutdown) is tested in cancellation.rs, with a tesseract that
// blocks until the job is dropped (no timing assumption on how long 4 pages take).
