//! Benchmark of the tesseract engine (harness = false; `cargo bench -p registre-ocr`): pages per
//! minute of `TesseractEngine` with a 2-page budget over N generated pages, against the same
//! pdftoppm + tesseract commands run directly 2 at a time by a shell script (`xargs -P 2`) on the
//! same PDF in the same run: the engine's own limit on this machine. Prints a markdown table.
//! OCR_BENCH_PAGES (default 8) and OCR_BENCH_ROUNDS (default 2) tune the run.

use registre_testkit::pdf;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use registre_ocr::{OcrEngine, Parallelism, TesseractEngine, TesseractSettings};

const BUDGET: usize = 2;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|n| *n > 0).unwrap_or(default)
}

/// The engine's commands, per page, `BUDGET` at a time, from a shell.
fn shell_run(dir: &Path, pdf: &Path, pages: usize, settings: &TesseractSettings) -> Duration {
    let out = dir.join("shell");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let script = format!(
        "seq 1 {pages} | xargs -P {BUDGET} -I{{}} sh -c 'pdftoppm -r {dpi} -f {{}} -l {{}} -singlefile -gray -png {pdf} {out}/page-{{}} \
         && OMP_THREAD_LIMIT=1 tesseract {out}/page-{{}}.png stdout -l {lang} --psm {psm} > {out}/page-{{}}.txt 2>/dev/null'",
        dpi = settings.dpi,
        lang = settings.lang,
        psm = settings.psm,
        pdf = pdf.display(),
        out = out.display(),
    );
    let start = Instant::now();
    let status = Command::new("sh").arg("-c").arg(&script).status().unwrap();
    let elapsed = start.elapsed();
    assert!(status.success(), "shell run failed: {script}");
    for n in 1..=pages {
        let text = std::fs::read_to_string(out.join(format!("page-{n}.txt"))).unwrap();
        assert!(text.contains("REGISTRE"), "shell page {n} was not read");
    }
    elapsed
}

fn ppm(pages: usize, d: Duration) -> f64 {
    pages as f64 * 60.0 / d.as_secs_f64()
}

fn main() {
    let pages = env_usize("OCR_BENCH_PAGES", 8);
    let rounds = env_usize("OCR_BENCH_ROUNDS", 2);
    let dir = std::env::temp_dir().join(format!("registre-ocr-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (drawn, _) = pdf::registry_index(pages, 16);
    let bytes = pdf::pdf(&drawn);
    let pdf_path = dir.join("bench.pdf");
    std::fs::write(&pdf_path, &bytes).unwrap();

    let settings = TesseractSettings { temp_root: dir.clone(), ..TesseractSettings::default() };
    let engine = TesseractEngine::new(settings.clone());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();

    // Warm-up (page cache, tessdata load) on one page of each, not counted.
    let (one, _) = pdf::registry_index(1, 16);
    rt.block_on(engine.extract(&pdf::pdf(&one), Parallelism::ONE)).unwrap();
    shell_run(&dir, &pdf_path, 1, &settings);

    let mut engine_times = Vec::new();
    let mut shell_times = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let out = rt.block_on(engine.extract(&bytes, Parallelism::pages(BUDGET))).unwrap();
        engine_times.push(start.elapsed());
        assert_eq!(out.pages.len(), pages);
        shell_times.push(shell_run(&dir, &pdf_path, pages, &settings));
    }

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    println!("\n### tesseract engine vs direct shell run ({pages} pages × {rounds} rounds, budget {BUDGET}, {} DPI, -l {}, --psm {}, {cores} cores)\n", settings.dpi, settings.lang, settings.psm);
    println!("| run | round | seconds | pages/min |");
    println!("|---|---|---|---|");
    for (i, (e, s)) in engine_times.iter().zip(&shell_times).enumerate() {
        println!("| engine (Parallelism 2) | {} | {:.2} | {:.1} |", i + 1, e.as_secs_f64(), ppm(pages, *e));
        println!("| shell (xargs -P 2) | {} | {:.2} | {:.1} |", i + 1, s.as_secs_f64(), ppm(pages, *s));
    }
    let total_e: Duration = engine_times.iter().sum();
    let total_s: Duration = shell_times.iter().sum();
    let (pe, ps) = (ppm(pages * rounds, total_e), ppm(pages * rounds, total_s));
    println!("| **engine, all rounds** | | {:.2} | **{:.1}** |", total_e.as_secs_f64(), pe);
    println!("| **shell, all rounds** | | {:.2} | **{:.1}** |", total_s.as_secs_f64(), ps);
    println!("\nengine / shell throughput: **{:.3}** ({:+.1} %)\n", pe / ps, (pe / ps - 1.0) * 100.0);
    std::fs::remove_dir_all(&dir).unwrap();
}
