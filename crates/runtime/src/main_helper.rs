//! The one `main` every worker binary shares: configuration (one line and exit 2 when it is
//! wrong), logs, the async runtime, the shutdown on SIGTERM/SIGINT, then the library's `run`.
//! A binary's main.rs is a single call to [`run_binary`].

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use registre_config::Config;

use crate::Shutdown;

/// An error a binary ends with; the exit code defaults to 1 (could not start or run).
pub trait BinaryError: Display {
    fn exit_code(&self) -> u8 {
        1
    }
}

/// Runs `run(config, shutdown)` as the whole process `name`: exit 0 after a graceful stop, the
/// error's code (with one line on stderr) when it fails, 2 on bad configuration.
pub fn run_binary<F, Fut, E>(name: &str, run: F) -> ExitCode
where
    F: FnOnce(Config, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: BinaryError,
{
    let config = registre_config::load_or_exit();
    crate::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{name} cannot run: {e}");
            eprintln!("{name}: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
