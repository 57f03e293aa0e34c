//! `registrectl`, the operators' shell command (docs/design.md §10, §12): `migrate` over the queue
//! crate's migrations, and `status`, `enqueue`, `show`, `retry`, `cancel`, `requeue-stuck`,
//! `release-capacity` (formerly `release-lease`), `export-index`, `index-backfill` and `site-check`
//! (the registry site step by step) over the operations library (registre-ops), the same queries and
//! repairs as registre-api and registre-monitor; `completions` prints a shell completion script.
//! The binary (bins/registrectl) parses the command line with [`parse_from`] (clap), loads the
//! configuration and calls [`run`], which prints and returns the exit code: 0 done, 1 the operation
//! failed (said on stderr), 2 bad arguments or configuration.

mod args;
mod commands;
mod csv;
pub mod export_index;
mod migrate;
mod site_check;
mod status;

pub use args::{
    parse_duration, parse_from, parse_since, write_completions, CancelArgs, Cli, Command, CompletionsArgs, DocumentFields, DurationError, EnqueueArgs, ReleaseArgs,
    RequeueArgs, RetryArgs, RetryTarget, ShowArgs, SiteCheckArgs, StatusArgs, MAX_DURATION_DAYS,
};

use registre_config::{Config, Sections};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// The configuration sections `command` reads, so that a bad value in one of them stops it with one
/// line (exit 2) instead of falling back to a default: `index-backfill` also reads the storage
/// (the rows' PDFs) and the OCR engine, which no other subcommand touches.
pub fn sections(command: &Command) -> Sections {
    let every_command = Sections::for_binary("registrectl");
    match command {
        Command::IndexBackfill(_) => Sections { storage: true, ocr_engine: true, ..every_command },
        _ => every_command,
    }
}

/// Runs `command`; returns the exit code.
pub async fn run(config: &Config, command: Command) -> i32 {
    match command {
        Command::Completions(a) => {
            write_completions(a.shell, &mut std::io::stdout());
            EXIT_OK
        }
        Command::Migrate => migrate::migrate_all(config).await,
        Command::SiteCheck(args) => site_check::site_check(config, args).await,
        other => commands::run(config, other).await,
    }
}
