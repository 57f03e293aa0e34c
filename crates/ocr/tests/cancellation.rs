//! A tesseract job dropped mid-way (as on worker shutdown) kills its child process and removes its
//! temporary directory. A `tesseract` stand-in first in PATH (this test binary holds this one
//! test, so changing PATH affects nothing else) writes its pid and then blocks, so the job is
//! certainly mid-way when it is dropped, whatever the machine's speed. The poppler tools are the
//! real ones; the pages are scanned ones (testkit's generator), which go to tesseract.

use std::path::Path;
use std::time::{Duration, Instant};

use registre_ocr::{OcrEngine, Parallelism, TesseractEngine, TesseractSettings};
use registre_testkit::scan;

fn entries(root: &Path) -> Vec<String> {
    std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
}

/// Alive = present in /proc and not a zombie waiting to be reaped.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_job_kills_tesseract_and_removes_its_temp_dir() {
    let dir = std::env::temp_dir().join(format!("registre-ocr-cancel-{}", uuid::Uuid::new_v4().simple()));
    let bin = dir.join("bin");
    let root = dir.join("jobs");
    std::fs::create_dir_all(&root).unwrap();
    let pid_file = dir.join("tesseract.pid");
    // exec: the blocked process is the one the engine spawned (its pid is the child's pid).
    registre_testkit::child::shim_program(&bin, "tesseract", &format!("#!/bin/sh\necho $$ > {pid}.tmp && mv {pid}.tmp {pid}\nexec sleep 600\n", pid = pid_file.display()));

    let engine = TesseractEngine::new(TesseractSettings { temp_root: root.clone(), ..TesseractSettings::default() });
    let bytes = scan::scanned_index(7, 2).pdf;
    let job = tokio::spawn(async move { engine.extract(&bytes, Parallelism::ONE).await });

    // Mid-way: page 1 prepared and tesseract running (polled, deadline 60 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    let pid: u32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse().ok()) {
            break pid;
        }
        assert!(!job.is_finished(), "the job ended before tesseract ran: {:?}", job.await);
        assert!(Instant::now() < deadline, "tesseract never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(alive(pid), "tesseract stand-in {pid} should be running");
    assert_eq!(entries(&root).len(), 1, "one job directory while the job runs: {:?}", entries(&root));

    // Dropped mid-way, as on worker shutdown.
    job.abort();
    let ended = job.await;
    assert!(ended.as_ref().is_err_and(|e| e.is_cancelled()), "the job must have been cancelled, not finished: {ended:?}");

    let deadline = Instant::now() + Duration::from_secs(60);
    while alive(pid) || !entries(&root).is_empty() {
        assert!(
            Instant::now() < deadline,
            "after the drop: tesseract {pid} alive = {}, left behind: {:?}",
            alive(pid),
            entries(&root)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
