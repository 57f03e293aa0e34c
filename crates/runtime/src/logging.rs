//! Log set-up: human-readable lines by default, one JSON object per line with LOG_FORMAT=json.
//! The start-up banners of the deployment checklist are plain `info!` messages, so they read the
//! same in both formats.

use registre_config::{LogConfig, LogFormat};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call twice (the second call is ignored), which lets
/// start-all-workers run both libraries' set-up.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_new(&config.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
