//! `registre-monitor`: stuck-job repair, alerts and the queue gauges (PM2 app `registre-monitor`,
//! docs/design.md §12). All logic lives in `registre_monitor_lib::run`; docs/operations.md. Exit codes: 0
//! after a graceful stop (SIGTERM/SIGINT), 1 when it cannot start (METRICS_ADDR taken), 2 on bad
//! configuration. It serves METRICS_ADDR itself (its /metrics holds the queue gauges).

fn main() -> std::process::ExitCode {
    registre_runtime::run_binary("registre-monitor", registre_monitor_lib::run)
}
