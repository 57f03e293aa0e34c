//! `registre-workers`: WORKER_COUNT registre workers under the server's capacity budget
//! (DESIGN §1, §11). All logic lives in `registre_workers::run`; docs/registre-workers.md.
//! Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when it cannot start, 2 on bad configuration.

use std::process::ExitCode;

use registre_runtime::Shutdown;

fn main() -> ExitCode {
    let config = registre_config::load_or_exit();
    registre_runtime::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("registre-workers: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        registre_workers::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("registre-workers cannot start: {e}");
            eprintln!("registre-workers: {e}");
            ExitCode::FAILURE
        }
    }
}
