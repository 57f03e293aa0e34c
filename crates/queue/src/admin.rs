//! `registrectl`, the operators' admin binary (DESIGN §10). Today: `registrectl migrate`, which
//! applies the migrations to every configured environment that has a direct database URL and
//! prints what it applied (idempotent: a second run prints "up to date").

use std::time::Duration;

use registre_config::{Backend, Config};

use crate::migrate::{migrate_url, MigrateError, MigrateOptions, MIGRATIONS};

pub const USAGE: &str = "usage: registrectl <command>

commands:
  migrate   apply the queue migrations to every configured environment (PROD_/STAGING_/DEV_DATABASE_URL)
  help      show this help";

/// Exit codes: 0 done, 1 a migration failed, 2 bad usage (bad configuration exits 2 before this).
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;

/// Longest time one environment may take to connect and migrate.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(300);

/// The subcommand, parsed before the configuration is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Migrate,
    Help,
}

pub fn parse_args(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        Some("migrate") if args.len() == 1 => Ok(Command::Migrate),
        Some("help" | "--help" | "-h") => Ok(Command::Help),
        Some("migrate") => Err(format!("registrectl migrate takes no argument (got {:?})", &args[1..])),
        Some(other) => Err(format!("unknown command {other:?}")),
        None => Err("a command is required".into()),
    }
}

/// Runs `command`, printing one report line per environment; returns the exit code.
pub async fn run(config: &Config, command: Command) -> i32 {
    match command {
        Command::Help => {
            println!("{USAGE}");
            0
        }
        Command::Migrate => migrate_all(config).await,
    }
}

async fn migrate_all(config: &Config) -> i32 {
    let mut code = 0;
    let options = MigrateOptions { lock_timeout: config.queue.migrate_lock_timeout, ..MigrateOptions::default() };
    for env in &config.environments {
        let name = env.name;
        match &env.backend {
            Backend::Supabase { url, .. } => {
                println!(
                    "{name} ({url}, REST): skipped: migrations must be applied with a direct connection: set {}_DATABASE_URL \
                     (the Supabase connection string, session pooler port 5432) and run registrectl migrate again",
                    name.as_str().to_ascii_uppercase()
                );
            }
            Backend::Database { url } => {
                let result = match tokio::time::timeout(MIGRATE_TIMEOUT, migrate_url(url, name, options)).await {
                    Ok(result) => result,
                    Err(_) => {
                        println!("{name} ({url}): failed: no answer within {} s", MIGRATE_TIMEOUT.as_secs());
                        code = EXIT_FAILED;
                        continue;
                    }
                };
                match result {
                    Ok(report) if report.applied.is_empty() => {
                        println!("{name} ({url}): up to date ({} migrations already applied)", report.unchanged.len());
                    }
                    Ok(report) => {
                        println!(
                            "{name} ({url}): applied {} of {} migrations: {}",
                            report.applied.len(),
                            MIGRATIONS.len(),
                            report.applied.join(", ")
                        );
                    }
                    Err(e @ (MigrateError::Connect { .. } | MigrateError::Apply { .. } | MigrateError::Database { .. })) => {
                        println!("{name} ({url}): failed: {e}");
                        code = EXIT_FAILED;
                    }
                }
            }
        }
    }
    code
}
