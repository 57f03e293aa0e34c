//! `start-all-workers`: registre workers and OCR pool in one process (PM2 app
//! `registre-all-workers`). All logic lives in `registre_all::run`. Exit codes: 0 after a
//! graceful stop, 1 when it cannot start, 2 on bad configuration or a plan that cannot fit.

fn main() -> std::process::ExitCode {
    registre_runtime::run_binary("start-all-workers", registre_all::run)
}
