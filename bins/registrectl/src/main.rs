//! registrectl: the operators' admin binary (DESIGN §10). `registrectl migrate` applies the queue
//! migrations to every configured environment; all logic lives in registre_queue::admin.

use registre_queue::admin::{self, USAGE};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match admin::parse_args(&args) {
        Ok(command) => command,
        Err(why) => {
            eprintln!("registrectl: {why}\n\n{USAGE}");
            std::process::exit(admin::EXIT_USAGE);
        }
    };
    if command == admin::Command::Help {
        println!("{USAGE}");
        return;
    }
    // Bad configuration: one line on stderr, exit 2.
    let config = registre_config::load_or_exit();
    registre_runtime::logging::init(&config.log);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("registrectl: cannot start the async runtime: {e}");
            std::process::exit(admin::EXIT_FAILED);
        }
    };
    let code = runtime.block_on(admin::run(&config, command));
    std::process::exit(code);
}
