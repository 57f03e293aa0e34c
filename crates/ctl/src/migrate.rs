//! `registrectl migrate`: applies the migrations (registre_queue::migrate, the library) to every
//! configured environment that has a direct database URL and prints what it applied (idempotent:
//! a second run prints "up to date"). A REST-only environment is skipped with what to set.

use std::time::Duration;

use registre_config::{Backend, Config};
use registre_queue::migrate::migrate_url;
use registre_queue::{MigrateError, MigrateOptions, MIGRATIONS};

use crate::EXIT_FAILED;

/// Longest time one environment may take to connect and migrate.
const MIGRATE_TIMEOUT: Duration = Duration::from_secs(300);

pub async fn migrate_all(config: &Config) -> i32 {
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
                    Err(e @ (MigrateError::Connect { .. } | MigrateError::Apply { .. } | MigrateError::Database(_))) => {
                        println!("{name} ({url}): failed: {e}");
                        code = EXIT_FAILED;
                    }
                }
            }
        }
    }
    code
}
