//! The registry site simulator (registre_testkit::registry_site) as a process, for scripts:
//! `registry-site-sim --shape p|s --port N [--reload-ms N] [--documents DIR] [--account USER:PASSWORD]...`.
//! `--documents` serves a catalog in the directory fetcher's layout (scripts/soak.sh gives it the
//! soak's generated documents); each `--account` adds a login the site accepts (besides the
//! built-in one). Prints the base URL (what REGISTRE_BASE_URL takes) on its first line, then serves
//! until killed. Bad arguments: one line on stderr, exit 2.

use std::path::PathBuf;
use std::time::Duration;

use registre_testkit::registry_site::{is_catalog, start_on, Shape, SiteOptions};

const USAGE: &str = "registry-site-sim --shape p|s --port N [--reload-ms N] [--documents DIR] [--account USER:PASSWORD]...";

fn usage(error: &str) -> ! {
    eprintln!("registry-site-sim: {error} (usage: {USAGE})");
    std::process::exit(2);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut shape: Option<Shape> = None;
    let mut port: u16 = 0;
    let mut reload_ms: Option<u64> = None;
    let mut catalog: Option<PathBuf> = None;
    let mut accounts: Vec<(String, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().unwrap_or_else(|| usage(&format!("{name} needs a value")));
        match arg.as_str() {
            "--shape" => shape = Some(value("--shape").parse().unwrap_or_else(|e: String| usage(&e))),
            "--port" => port = value("--port").parse().unwrap_or_else(|_| usage("--port takes a port number")),
            "--reload-ms" => reload_ms = Some(value("--reload-ms").parse().unwrap_or_else(|_| usage("--reload-ms takes milliseconds"))),
            "--documents" => {
                let dir = PathBuf::from(value("--documents"));
                if !is_catalog(&dir) {
                    usage(&format!("--documents {}: no index/, acte/ or plan_cadastraux/ folder there", dir.display()));
                }
                catalog = Some(dir);
            }
            "--account" => {
                let given = value("--account");
                let Some((user, password)) = given.split_once(':').filter(|(u, p)| !u.is_empty() && !p.is_empty()) else {
                    usage("--account takes USER:PASSWORD")
                };
                accounts.push((user.to_string(), password.to_string()));
            }
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let Some(shape) = shape else { usage("--shape is required") };
    let mut options = SiteOptions::new(shape);
    options.catalog = catalog;
    options.accounts.extend(accounts);
    if let Some(ms) = reload_ms {
        options.circonscription_reload = Duration::from_millis(ms);
    }
    let site = match start_on(options, port).await {
        Ok(site) => site,
        Err(e) => {
            eprintln!("registry-site-sim: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("{}", site.base);
    let _ = tokio::signal::ctrl_c().await;
}
