//! The one `main` every worker binary shares: configuration (one line and exit 2 when it is
//! wrong), logs, the async runtime, the shutdown on SIGTERM/SIGINT, the Redis version check
//! (older than 6.0: one line and exit 2), then the library's `run`.
//! A binary's main.rs is a single call to [`run_binary`].

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

use registre_config::Config;

use crate::redis_version::{probe_redis_target, RedisVersionError};
use crate::{Backoff, Shutdown};

/// An error a binary ends with; the exit code defaults to 1 (could not start or run).
pub trait BinaryError: Display {
    fn exit_code(&self) -> u8 {
        1
    }
}

/// Runs `run(config, shutdown)` as the whole process `name`: exit 0 after a graceful stop, the
/// error's code (with one line on stderr) when it fails, 2 on bad configuration. The worker metrics
/// server is started on METRICS_ADDR, except for the binaries that serve that address themselves
/// (registre-api: its own /metrics; registre-monitor: its /metrics holds the queue gauges and its
/// /ready its own checks).
pub fn run_binary<F, Fut, E>(name: &str, run: F) -> ExitCode
where
    F: FnOnce(Config, Shutdown) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: BinaryError,
{
    let worker_metrics = !matches!(name, "registre-api" | "registre-monitor");
    // Only the sections this binary reads are validated (registre_config::Sections::for_binary).
    let config = registre_config::load_or_exit_for(registre_config::Sections::for_binary(name));
    crate::logging::init(&config.log);
    // A budget larger than the machine makes leases promise what is not there: say so once.
    for warning in registre_telemetry::host::budget_warnings(&config.server, registre_telemetry::host::machine()) {
        tracing::warn!("⚠️  {warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let redis_url = config.redis_url.clone();
    let result = runtime.block_on(async move {
        let shutdown = Shutdown::new();
        shutdown.listen_for_signals();
        // METRICS_ADDR: /metrics, /health, /ready of this process (registre-telemetry).
        if let Some(addr) = config.metrics_addr.filter(|_| worker_metrics) {
            registre_telemetry::spawn_server(addr, config.redis_url.clone(), shutdown.token());
        }
        // Redis answers at start-up (the usual case): an old server is refused before any work.
        let checked = match probe_redis_target(&redis_url).await {
            Ok(Ok(version)) => {
                tracing::debug!("Redis {version} at {redis_url}");
                true
            }
            Ok(Err(too_old)) => return Err(Ended::Redis(too_old)),
            Err(e) => {
                tracing::warn!("Redis at {redis_url} does not answer yet ({e}): its version is checked as soon as it does");
                false
            }
        };
        let work = run(config, shutdown.clone());
        if checked {
            return work.await.map_err(Ended::Run);
        }
        // Redis is down: the work starts (its own loops wait for Redis with backoff, and plan or
        // configuration errors still exit at once) while the check keeps asking. If the server
        // that finally answers is too old, the work is stopped gracefully and the binary exits 2.
        tokio::pin!(work);
        let gate = wait_for_version(&redis_url, &shutdown);
        tokio::pin!(gate);
        tokio::select! {
            ended = &mut work => ended.map_err(Ended::Run),
            refused = &mut gate => match refused {
                None => work.await.map_err(Ended::Run),
                Some(too_old) => {
                    shutdown.trigger();
                    let _ = work.await;
                    Err(Ended::Redis(too_old))
                }
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Ended::Run(e)) => {
            tracing::error!("{name} cannot run: {e}");
            eprintln!("{name}: {e}");
            ExitCode::from(e.exit_code())
        }
        Err(Ended::Redis(e)) => {
            tracing::error!("{name} cannot run: {e}");
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

/// How a binary's run ended early.
enum Ended<E> {
    Run(E),
    /// The Redis server is older than 6.0 (or hides its version): exit 2 with the line.
    Redis(RedisVersionError),
}

/// Asks Redis for its version until it answers (backoff 200 ms → 10 s) or the shutdown fires:
/// `Some` when it is too old, `None` when it is fine or the binary is stopping anyway.
async fn wait_for_version(url: &registre_config::RedisTarget, shutdown: &Shutdown) -> Option<RedisVersionError> {
    let mut backoff = Backoff::new(std::time::Duration::from_millis(200), std::time::Duration::from_secs(10));
    loop {
        tokio::select! {
            _ = shutdown.triggered() => return None,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
        match probe_redis_target(url).await {
            Ok(Ok(version)) => {
                tracing::info!("Redis {version} at {url} answers");
                return None;
            }
            Ok(Err(too_old)) => return Some(too_old),
            Err(_) => {}
        }
    }
}
