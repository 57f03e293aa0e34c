//! Benchmark of the index des immeubles as data on the tesseract path (harness = false; `cargo
//! bench -p registre-ocr --bench index_data`): scanned-looking documents from testkit's generator
//! (seeds unlike the test's), each read twice by the same engine in the same run, once as text only
//! (`extract`) and once with the table (`extract_index`), in alternating order so neither read is
//! favoured by a warm cache. Prints the quality table (precision, recall, F1 per field against the
//! generator's truth) and pages per minute with and without index_data.
//! INDEX_BENCH_DOCS (default 10 documents of 1–2 pages) and INDEX_BENCH_SEED (default 9000) tune it.

use std::time::{Duration, Instant};

use registre_ocr::{OcrEngine, Parallelism, TesseractEngine, TesseractSettings};
use registre_testkit::index_score::{score, Score};
use registre_testkit::scan::scanned_index;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

fn ppm(pages: usize, d: Duration) -> f64 {
    pages as f64 * 60.0 / d.as_secs_f64().max(1e-9)
}

fn main() {
    let docs = env_u64("INDEX_BENCH_DOCS", 10);
    let first_seed = env_u64("INDEX_BENCH_SEED", 9000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let engine = TesseractEngine::new(TesseractSettings::default());
    let budget = Parallelism::pages(2);
    let (mut plain_time, mut index_time) = (Duration::ZERO, Duration::ZERO);
    let mut pages = 0;
    let mut warnings = 0;
    let mut total = Score::default();
    for n in 0..docs {
        let seed = first_seed + n;
        let doc = scanned_index(seed, 1 + (n % 2) as usize);
        pages += doc.truth.pages.len();
        let timed = |index: bool| {
            let start = Instant::now();
            let out = runtime
                .block_on(async { if index { engine.extract_index(&doc.pdf, budget).await } else { engine.extract(&doc.pdf, budget).await } })
                .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            (out, start.elapsed())
        };
        let (plain, index) = if n % 2 == 0 {
            let p = timed(false);
            (p, timed(true))
        } else {
            let i = timed(true);
            (timed(false), i)
        };
        plain_time += plain.1;
        index_time += index.1;
        assert_eq!(plain.0.raw, index.0.raw, "seed {seed}: the index read changed the text");
        let data = index.0.index_data.unwrap_or_else(|| panic!("seed {seed}: no index_data"));
        warnings += data.warnings.len();
        let s = score(&doc.truth, &serde_json::to_value(&data).unwrap());
        for m in &s.mismatches {
            eprintln!("seed {seed}: {m}");
        }
        total.merge(&s);
    }
    println!("## index_data quality (tesseract, {docs} scanned documents, {pages} pages, seeds {first_seed}..{})\n", first_seed + docs - 1);
    println!("```\n{}```\n", total.table());
    println!("warnings written: {warnings}\n");
    println!("## speed (same engine, same documents, same run; 2-page budget)\n");
    println!("| read | pages | seconds | pages/minute |");
    println!("|---|---|---|---|");
    println!("| text only (extract) | {pages} | {:.1} | {:.1} |", plain_time.as_secs_f64(), ppm(pages, plain_time));
    println!("| text + index_data (extract_index) | {pages} | {:.1} | {:.1} |", index_time.as_secs_f64(), ppm(pages, index_time));
    println!("\ncost of index_data: {:+.1} % time", (index_time.as_secs_f64() / plain_time.as_secs_f64().max(1e-9) - 1.0) * 100.0);
}
