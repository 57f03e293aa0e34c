//! The tesseract engine never reads more pages at once than the caller's budget, runs every
//! tesseract with OMP_THREAD_LIMIT=1, and prepares the next page while one is being read. A
//! `tesseract` wrapper put first in PATH (this test binary holds this one test, so changing PATH
//! affects nothing else) logs start/end times and the variable around the real tesseract. The
//! pages are scanned ones (testkit's generator): born-digital pages would not be OCR'd at all.

use std::path::{Path, PathBuf};

use registre_ocr::{OcrEngine, Parallelism, TesseractEngine, TesseractSettings};
use registre_testkit::scan;

fn real_tesseract() -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("tesseract")).find(|p| p.is_file()))
        .expect("tesseract is installed (apt-get install tesseract-ocr tesseract-ocr-fra)")
}

/// (max pages read at once, OMP_THREAD_LIMIT values seen) from the wrapper's log.
fn analyse(log: &Path) -> (usize, Vec<String>) {
    let text = std::fs::read_to_string(log).unwrap();
    let mut events: Vec<(u128, i32)> = Vec::new();
    let mut omp = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["start", t, rest @ ..] => {
                events.push((t.parse().unwrap(), 1));
                omp.push(rest.first().unwrap_or(&"unset").to_string());
            }
            ["end", t] => events.push((t.parse().unwrap(), -1)),
            _ => panic!("bad log line {line:?}"),
        }
    }
    // Ends before starts at the same instant: touching runs do not overlap.
    events.sort();
    let (mut running, mut max) = (0i32, 0i32);
    for (_, delta) in events {
        running += delta;
        max = max.max(running);
    }
    (max as usize, omp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_in_parallel_within_the_budget_with_one_openmp_thread_each() {
    let real = real_tesseract();
    let dir = std::env::temp_dir().join(format!("registre-ocr-shim-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("trace.log");
    // With the `barrier` file present, each of the first two runs waits (up to 60 s) until both
    // have started, so a budget of 2 is seen used whatever the machine's speed; a budget that only
    // ever let one run at a time would show max 1 after that deadline.
    let barrier = dir.join("barrier");
    // With the `ahead` file present, the first run waits (up to 60 s) until page 2's image (an
    // extracted `image-2-*` or a rendered `page-2.pgm`) exists next to its own, and records
    // whether it came: page 2 must be prepared while page 1 is being read.
    let ahead = dir.join("ahead");
    let ahead_log = dir.join("ahead.log");
    registre_testkit::child::shim_program(
        &dir,
        "tesseract",
        &format!(
            "#!/bin/sh\necho \"start $(date +%s%N) ${{OMP_THREAD_LIMIT:-unset}}\" >> {log}\n\
             if [ -e {barrier} ] && [ \"$(grep -c '^start' {log})\" -le 2 ]; then\n\
               i=0; while [ \"$(grep -c '^start' {log})\" -lt 2 ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n\
             fi\n\
             if [ -e {ahead} ] && [ \"$(grep -c '^start' {log})\" -eq 1 ]; then\n\
               d=$(dirname \"$1\"); i=0\n\
               while ! ls \"$d\" | grep -q -e '^image-2-' -e '^page-2[.]pgm$' && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n\
               if [ $i -lt 600 ]; then echo yes >> {ahead_log}; else echo no >> {ahead_log}; fi\n\
             fi\n\
             {real} \"$@\"\nrc=$?\necho \"end $(date +%s%N)\" >> {log}\nexit $rc\n",
            log = log.display(),
            barrier = barrier.display(),
            ahead = ahead.display(),
            ahead_log = ahead_log.display(),
            real = real.display()
        ),
    );

    let scanned = scan::scanned_index(11, 4);
    let bytes = scanned.pdf;
    let engine = TesseractEngine::new(TesseractSettings { temp_root: dir.clone(), ..TesseractSettings::default() });

    for budget in [1, 2] {
        let _ = std::fs::remove_file(&log);
        if budget == 1 {
            std::fs::write(&ahead, b"").unwrap();
        } else {
            std::fs::remove_file(&ahead).unwrap();
            std::fs::write(&barrier, b"").unwrap();
        }
        let out = engine.extract(&bytes, Parallelism::pages(budget)).await.unwrap();
        assert_eq!(out.pages.len(), 4);
        assert_eq!(out.text_layer_pages, 0);
        for (i, page) in out.pages.iter().enumerate() {
            assert!(page.contains(&format!("{} de 4", i + 1)), "pages kept in order: {:?}", out.pages);
        }
        let (max, omp) = analyse(&log);
        println!("budget {budget}: at most {max} tesseract runs at once; OMP_THREAD_LIMIT = {omp:?}");
        assert_eq!(omp, vec!["1"; 4], "every tesseract run has OMP_THREAD_LIMIT=1");
        assert!(max <= budget, "budget {budget} but {max} pages at once");
        if budget == 1 {
            let ahead = std::fs::read_to_string(&ahead_log).unwrap();
            assert_eq!(ahead.trim(), "yes", "page 2 was not prepared while page 1 was read");
        } else {
            // The first two runs wait for each other (the barrier): room for 2 must be used.
            assert_eq!(max, 2, "budget 2 should be used");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
