//! `registre-workers`: WORKER_COUNT registre workers under the server's capacity budget
//! (PM2 app `registre-workers`, docs/design.md §1, §11). All logic lives in `registre_extraction::run`;
//! docs/registre-workers.md. Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when it
//! cannot start, 2 on bad configuration.

fn main() -> std::process::ExitCode {
    registre_runtime::run_binary("registre-workers", registre_extraction::run)
}
