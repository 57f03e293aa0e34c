//! `ocr-pool`: at this stage it loads and validates the configuration (exit 2 with one line naming
//! the variable when it is wrong) and prints it with secrets redacted. The worker loop comes with
//! its own issue.

fn main() {
    let config = registre_config::load_or_exit();
    registre_runtime::logging::init(&config.log);
    tracing::info!("configuration loaded: {config:#?}");
}
