//! `ocr-pool`: the OCR worker pool (PM2 app `ocr-pool`, docs/design.md §1, §6, §11). All logic lives in
//! `registre_pool::run`; docs/ocr-pool.md. Exit codes: 0 after a graceful stop (SIGTERM/SIGINT),
//! 1 when it cannot start, 2 on bad configuration.

fn main() -> std::process::ExitCode {
    registre_runtime::run_binary("ocr-pool", registre_pool::run)
}
