//! Benchmark of the tesseract engine (harness = false; `cargo bench -p registre-ocr`) on the path
//! users run: scanned registry index pages (testkit's generator: 200 dpi grayscale scans with skew
//! and noise, image-only PDFs). Headline: pages per minute of `TesseractEngine::extract` with a
//! 2-page budget, everything the default path does counted (temp files, pdfinfo, pdfimages, text
//! layers, tesseract, boosting), against tesseract alone on the same pages pre-rendered at 300 dpi
//! as PGM (untimed), OMP_THREAD_LIMIT=1, 2 at a time (`xargs -P 2`), in the same run. Rounds
//! alternate engine and reference; the verdict is the median of the per-round ratios. Character
//! error rates (normalized whitespace) against the generator's truth text, for the engine and the
//! reference. A second table does the same on born-digital pages (testkit's drawn index), which the
//! engine reads from their text layer. OCR_BENCH_PAGES (default 8) and OCR_BENCH_ROUNDS (default 3)
//! tune the run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use registre_ocr::{OcrEngine, Parallelism, TesseractEngine, TesseractSettings};
use registre_testkit::reference::{self, median};
use registre_testkit::{pdf, scan};

const BUDGET: usize = 2;
/// The target: engine pages per minute ≥ 0.85 × the reference's, on scanned pages.
const TARGET: f64 = 0.85;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn ppm(pages: usize, d: Duration) -> f64 {
    pages as f64 * 60.0 / d.as_secs_f64()
}

/// One document the bench reads: its bytes, where they are on disk, and the text it shows.
struct Corpus {
    label: &'static str,
    /// File-name-safe name.
    slug: &'static str,
    bytes: Vec<u8>,
    path: PathBuf,
    pages: usize,
    truth: String,
}

/// The reference's input: every page rendered once at 300 dpi as PGM, untimed.
fn pre_render(dir: &Path, corpus: &Corpus) -> PathBuf {
    let out = dir.join(format!("reference-{}", corpus.slug));
    let _ = std::fs::remove_dir_all(&out);
    reference::render_pgm(&corpus.path, &out, "page");
    out
}

/// tesseract alone on the pre-rendered PGMs, `BUDGET` at a time; (time, text of the pages in order).
fn reference_run(pgm_dir: &Path, settings: &TesseractSettings) -> (Duration, String) {
    reference::tesseract_alone(pgm_dir, BUDGET, &settings.lang, settings.psm)
}

struct Round {
    engine: Duration,
    reference: Duration,
}

struct Measured {
    rounds: Vec<Round>,
    engine_cer: f64,
    boosted_cer: f64,
    reference_cer: f64,
    text_layer_pages: usize,
}

fn measure(rt: &tokio::runtime::Runtime, engine: &TesseractEngine, settings: &TesseractSettings, dir: &Path, corpus: &Corpus, rounds: usize) -> Measured {
    let pgm_dir = pre_render(dir, corpus);
    let mut measured = Measured { rounds: Vec::new(), engine_cer: 0.0, boosted_cer: 0.0, reference_cer: 0.0, text_layer_pages: 0 };
    for round in 0..rounds {
        // Alternate which side goes first, so neither always runs on a warmer (or busier) machine.
        let engine_side = || {
            let start = Instant::now();
            let out = rt.block_on(engine.extract(&corpus.bytes, Parallelism::pages(BUDGET))).unwrap();
            (start.elapsed(), out)
        };
        let ((engine_time, out), (reference_time, reference_text)) = if round % 2 == 0 {
            let e = engine_side();
            (e, reference_run(&pgm_dir, settings))
        } else {
            let r = reference_run(&pgm_dir, settings);
            (engine_side(), r)
        };
        assert_eq!(out.pages.len(), corpus.pages);
        measured.engine_cer = pdf::cer(&corpus.truth, &out.raw);
        measured.boosted_cer = pdf::cer(&corpus.truth, &out.boosted);
        measured.reference_cer = pdf::cer(&corpus.truth, &reference_text);
        measured.text_layer_pages = out.text_layer_pages;
        measured.rounds.push(Round { engine: engine_time, reference: reference_time });
    }
    measured
}

fn print_table(corpus: &Corpus, m: &Measured, headline: bool) -> f64 {
    let pages = corpus.pages;
    println!("| round | engine s | engine pages/min | reference s | reference pages/min | engine / reference |");
    println!("|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for (i, r) in m.rounds.iter().enumerate() {
        let (e, f) = (ppm(pages, r.engine), ppm(pages, r.reference));
        ratios.push(e / f);
        println!("| {} | {:.2} | {:.1} | {:.2} | {:.1} | {:.3} |", i + 1, r.engine.as_secs_f64(), e, r.reference.as_secs_f64(), f, e / f);
    }
    let e_med = median(m.rounds.iter().map(|r| ppm(pages, r.engine)).collect());
    let f_med = median(m.rounds.iter().map(|r| ppm(pages, r.reference)).collect());
    let ratio = median(ratios);
    println!("| **median** | | **{e_med:.1}** | | **{f_med:.1}** | **{ratio:.3}** |");
    println!();
    println!("| character error rate | engine raw | engine boosted | reference (300 dpi PGM) |");
    println!("|---|---|---|---|");
    println!("| {} | {:.4} | {:.4} | {:.4} |", corpus.label, m.engine_cer, m.boosted_cer, m.reference_cer);
    println!();
    println!("pages read from the text layer by the engine: {}/{pages}", m.text_layer_pages);
    if headline {
        let verdict = if ratio >= TARGET { "met" } else { "NOT met" };
        println!("\n**engine / reference on scanned pages (median of {} alternated rounds): {ratio:.3}** (target ≥ {TARGET}: {verdict})\n", m.rounds.len());
    }
    ratio
}

/// `pdftotext -layout` of the born-digital document the scan was made from: the text the scanned
/// pages show, in reading order.
fn drawn_text(dir: &Path, born_digital: &[u8]) -> String {
    let path = dir.join("drawn.pdf");
    std::fs::write(&path, born_digital).unwrap();
    let out = Command::new("pdftotext").args(["-layout", "-enc", "UTF-8"]).arg(&path).arg("-").output().unwrap();
    assert!(out.status.success(), "pdftotext failed on the drawn index");
    String::from_utf8(out.stdout).unwrap()
}

fn main() {
    let pages = env_usize("OCR_BENCH_PAGES", 8);
    let rounds = env_usize("OCR_BENCH_ROUNDS", 3);
    let dir = std::env::temp_dir().join(format!("registre-ocr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let seed = 24;
    let scanned = scan::scanned_index(seed, pages);
    let (born_digital_scan_source, _) = scan::index_document(seed, pages);
    let scanned = Corpus {
        label: "scanned index (200 dpi, noise, skew)",
        slug: "scanned",
        path: dir.join("scanned.pdf"),
        truth: drawn_text(&dir, &born_digital_scan_source),
        bytes: scanned.pdf,
        pages,
    };
    let (drawn, _) = pdf::registry_index(pages, 16);
    let born_digital = Corpus {
        label: "born-digital index (drawn text)",
        slug: "born-digital",
        path: dir.join("born-digital.pdf"),
        truth: drawn.iter().map(|p| p.join("\n")).collect::<Vec<_>>().join("\n"),
        bytes: pdf::pdf(&drawn),
        pages,
    };
    for corpus in [&scanned, &born_digital] {
        std::fs::write(&corpus.path, &corpus.bytes).unwrap();
    }

    let settings = TesseractSettings { temp_root: dir.clone(), ..TesseractSettings::default() };
    let engine = TesseractEngine::new(settings.clone());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // Warm-up (page cache, tessdata load), not counted.
    let one = scan::scanned_index(seed + 1, 1);
    rt.block_on(engine.extract(&one.pdf, Parallelism::ONE)).unwrap();

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!(
        "\n### tesseract engine vs tesseract alone on 300 dpi PGMs ({pages} pages × {rounds} alternated rounds, budget {BUDGET}, -l {}, --psm {}, OMP_THREAD_LIMIT=1, {cores} cores)\n",
        settings.lang, settings.psm
    );
    let m = measure(&rt, &engine, &settings, &dir, &scanned, rounds);
    println!("#### {} (the path users run)\n", scanned.label);
    print_table(&scanned, &m, true);
    let m = measure(&rt, &engine, &settings, &dir, &born_digital, rounds);
    println!("#### {}\n", born_digital.label);
    print_table(&born_digital, &m, false);
    std::fs::remove_dir_all(&dir).unwrap();
}
