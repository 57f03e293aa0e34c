//! `ocr-pool`: the OCR worker pool (PM2 app `ocr-pool`, DESIGN §1, §6, §11). All logic lives in
//! `registre_pool::start`. Exit codes: 0 after a graceful stop (SIGTERM/SIGINT), 1 when it cannot
//! start, 2 on bad configuration.

use std::process::ExitCode;
use std::time::Duration;

use registre_runtime::Shutdown;

fn main() -> ExitCode {
    let config = registre_config::load_or_exit();
    registre_runtime::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ocr-pool: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        if let Err(e) = registre_pool::start(&config, &shutdown).await {
            tracing::error!("ocr-pool cannot start: {e}");
            eprintln!("ocr-pool: {e}");
            return ExitCode::FAILURE;
        }
        shutdown.triggered().await;
        // Busy workers get the grace period to finish, then release; leases go back after that.
        let limit = config.ocr_pool.shutdown_grace + Duration::from_secs(5);
        if !shutdown.wait(limit).await {
            tracing::warn!("some OCR workers did not stop within {} s", limit.as_secs());
        }
        tracing::info!("👋 OCR pool stopped");
        ExitCode::SUCCESS
    })
}
