//! registrectl: the operators' admin command (docs/design.md §10, §12): migrate, status, enqueue, show,
//! retry, cancel, requeue-stuck, release-capacity (alias release-lease), site-check, export-index,
//! index-backfill, completions. All logic lives in registre_ctl; exit codes 0 done, 1 the operation
//! failed, 2 bad arguments or configuration (clap's usage errors exit 2, `--help` 0).

use registre_ctl::{Command, EXIT_FAILED};

fn main() {
    // Help, version and refusals are printed by clap, with its exit codes (0, or 2 for bad usage).
    let command = registre_ctl::parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit());
    // Completions need no configuration: a shell can load them on a machine without .env.
    if let Command::Completions(a) = &command {
        registre_ctl::write_completions(a.shell, &mut std::io::stdout());
        return;
    }
    // Bad configuration of a section this command reads: one line on stderr, exit 2.
    let config = registre_config::load_or_exit_for(registre_ctl::sections(&command));
    registre_runtime::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("registrectl: cannot start the async runtime: {e}");
            std::process::exit(EXIT_FAILED);
        }
    };
    let code = runtime.block_on(registre_ctl::run(&config, command));
    std::process::exit(code);
}
