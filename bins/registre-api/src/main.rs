//! `registre-api`: the operators' HTTP API, dashboard and /metrics (PM2 app `registre-api`,
//! docs/design.md §12). All logic lives in `registre_api_lib::run`; docs/operations.md. Exit codes: 0 after
//! a graceful stop (SIGTERM/SIGINT), 1 when it cannot start (e.g. the port is taken), 2 on bad
//! configuration.

fn main() -> std::process::ExitCode {
    // It serves its own /metrics on API_PORT, so METRICS_ADDR (the workers' address, often in the
    // same shared .env) is not served from here: two processes would fight for that port.
    registre_runtime::run_binary("registre-api", registre_api_lib::run)
}
