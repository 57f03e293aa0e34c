//! The short soak (issue 25, docs/soak.md): scripts/soak.sh for 4 minutes with one kill -9 halfway,
//! the whole fleet under a private PM2 from the ecosystem file, and every check of the long run
//! except the RSS slope (which needs a long run to mean anything). Its tolerances (each resource
//! back within 10 % or 2 units of its pre-kill level at some sample before the next kill, every
//! row final within the drain time) are ones a loaded 2-core machine does not trip by chance: a
//! leak shows as a level that never comes back, not as a slow sample.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn four_minutes_with_one_kill_leave_nothing_behind() {
    let bins = bin_dir();
    for b in ["registre-api", "registre-monitor", "registrectl", "gemini-stand-in", "soak-sampler"] {
        assert!(bins.join(b).exists(), "{} is missing: build the workspace first (cargo build --release --workspace)", bins.join(b).display());
    }
    let work = scratch("soak");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/soak.sh"))
        .args(["--minutes", "4", "--kill-every", "2", "--sample-every", "10", "--drain-minutes", "5", "--no-slope-check"])
        .current_dir(&root)
        .env("REGISTRE_BIN_DIR", &bins)
        .env("SOAK_DIR", &work)
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{said}");
    assert!(out.status.success(), "the short soak failed:\n{said}");
    assert!(said.contains("✅ soak checks passed"), "{said}");
    assert!(said.contains("kill -9 registre-workers"), "the kill halfway did not happen:\n{said}");
    assert!(work.join("plots/fds.png").exists() && work.join("plots/rss_kb.png").exists(), "plots missing in {}", work.display());
    let _ = std::fs::remove_dir_all(&work);
}
