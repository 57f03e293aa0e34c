//! registrectl: the operators' admin command (docs/design.md §10, §12): migrate, status, enqueue, show,
//! retry, cancel, requeue-stuck, release-lease. All logic lives in registre_ctl; exit codes 0 done,
//! 1 the operation failed, 2 bad arguments or configuration.

use registre_ctl::{EXIT_FAILED, EXIT_USAGE};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match registre_ctl::parse_args(&args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("registrectl: {}\n\n{}", e.message, e.usage);
            std::process::exit(EXIT_USAGE);
        }
    };
    if let registre_ctl::Command::Help(text) = command {
        println!("{text}");
        return;
    }
    // Bad configuration of a section registrectl reads: one line on stderr, exit 2.
    let config = registre_config::load_or_exit_for(registre_config::Sections::for_binary("registrectl"));
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
