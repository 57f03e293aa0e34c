//! Outside references for the benchmarks: what the machine itself reaches, measured in the same
//! run as the figure compared with it (redis-benchmark for Redis). A benchmark prints both, so a
//! loaded or slow machine shows as a low reference, not as a slow crate.

use std::process::Command;

/// Requests per second `redis-benchmark` gets from the Redis at `port` for PING (the multi-bulk
/// form, what a client library sends) with `clients` connections, one request in flight each
/// (no pipelining), over `requests` requests. Panics with the reason if redis-benchmark is missing
/// or prints nothing usable: a benchmark without its reference is not a benchmark.
pub fn redis_ping_rate(port: u16, clients: usize, requests: u64) -> f64 {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-c", &clients.to_string(), "-n", &requests.to_string()])
        .args(["-t", "ping", "--csv"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run redis-benchmark (it ships with redis-server: apt install redis-tools): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    // "PING_MBULK","49751.24",...
    text.lines()
        .find(|l| l.starts_with("\"PING_MBULK\""))
        .and_then(|l| l.split(',').nth(1))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("redis-benchmark printed no PING_MBULK rate: {text} {}", String::from_utf8_lossy(&out.stderr)))
}

/// Resolution the OCR benches' reference renders at (the issue's: 300 dpi PGM).
pub const TESSERACT_REFERENCE_DPI: u32 = 300;

/// Renders every page of `pdf` once as gray PGM at [`TESSERACT_REFERENCE_DPI`] into `out_dir`,
/// named `<prefix>-N.pgm` (untimed: the reference's input, never part of its time).
pub fn render_pgm(pdf: &std::path::Path, out_dir: &std::path::Path, prefix: &str) {
    std::fs::create_dir_all(out_dir).unwrap_or_else(|e| panic!("cannot create {out_dir:?}: {e}"));
    let status = Command::new("pdftoppm")
        .args(["-r", &TESSERACT_REFERENCE_DPI.to_string(), "-gray"])
        .arg(pdf)
        .arg(out_dir.join(prefix))
        .status()
        .unwrap_or_else(|e| panic!("cannot run pdftoppm (apt install poppler-utils): {e}"));
    assert!(status.success(), "pdftoppm failed on {}", pdf.display());
}

/// tesseract alone on every `*.pgm` of `pgm_dir`, `parallel` at a time, each with
/// OMP_THREAD_LIMIT=1, from a shell (the outside reference of the OCR benches). Returns the time
/// taken and the text of the pages in file-name order.
pub fn tesseract_alone(pgm_dir: &std::path::Path, parallel: usize, lang: &str, psm: u32) -> (std::time::Duration, String) {
    let mut images: Vec<std::path::PathBuf> = std::fs::read_dir(pgm_dir)
        .unwrap_or_else(|e| panic!("cannot read {pgm_dir:?}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "pgm"))
        .collect();
    images.sort();
    for image in &images {
        let _ = std::fs::remove_file(format!("{}.txt", image.display()));
    }
    let script = format!(
        "ls {dir}/*.pgm | xargs -P {parallel} -I{{}} sh -c 'OMP_THREAD_LIMIT=1 tesseract {{}} stdout -l {lang} --psm {psm} --dpi {TESSERACT_REFERENCE_DPI} > {{}}.txt 2>/dev/null'",
        dir = pgm_dir.display(),
    );
    let start = std::time::Instant::now();
    let status = Command::new("sh").arg("-c").arg(&script).status().unwrap_or_else(|e| panic!("sh: {e}"));
    let elapsed = start.elapsed();
    assert!(status.success(), "reference run failed: {script}");
    let text = images
        .iter()
        .map(|image| std::fs::read_to_string(format!("{}.txt", image.display())).unwrap_or_else(|e| panic!("{image:?}: {e}")))
        .collect::<Vec<_>>()
        .join("\n");
    (elapsed, text)
}

/// The median of `values` (the benches report the median of alternated rounds).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
