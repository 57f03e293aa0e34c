//! `start-all-workers`: registre workers and OCR pool in one process (PM2 app
//! `registre-all-workers`). All logic lives in `registre_all::run`. Exit codes: 0 after a
//! graceful stop, 1 when it cannot start, 2 on bad configuration or a plan that cannot fit.

use std::process::ExitCode;

use registre_runtime::Shutdown;

fn main() -> ExitCode {
    let config = registre_config::load_or_exit();
    registre_runtime::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("start-all-workers: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        registre_all::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("start-all-workers cannot start: {e}");
            eprintln!("start-all-workers: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
