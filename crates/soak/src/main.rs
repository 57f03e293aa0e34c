//! `soak-sampler`, the measuring half of scripts/soak.sh (docs/soak.md).
//!
//! - `soak-sampler sample --dir D --pm2-home P --apps a,b --marker M --redis URL --database URL
//!   [--folder name=path]... [--stored path] [--every S] [--until-quiet S] [--phase run|drained|stopped] [--once]`: appends one
//!   sample every S seconds (30 by default) to D/samples.csv until stopped (SIGTERM), or one only.
//! - `soak-sampler report --dir D --database URL [--check-slope] [--slack N]`: reads D/samples.csv,
//!   D/kills.csv (`unix_s,app` per kill) and D/fed.tsv (`row id<TAB>kind` per fed row, kind `good`
//!   or the bad kind), writes D/plots/<family>.png, prints the table and the checks, and exits 1
//!   when a check fails.
//!
//! Bad arguments: one line naming the argument, exit 2.

mod report;
mod sample;

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{Connection, PgConnection};

fn usage(problem: &str) -> ! {
    eprintln!("soak-sampler: {problem} (see docs/soak.md: soak-sampler sample|report --dir D ...)");
    std::process::exit(2)
}

/// `--name value` pairs (repeatable) and `--flag`s.
struct Args {
    pairs: Vec<(String, String)>,
    flags: Vec<String>,
}

impl Args {
    fn parse(args: impl Iterator<Item = String>, flags: &[&str]) -> Args {
        let mut out = Args { pairs: Vec::new(), flags: Vec::new() };
        let mut it = args.peekable();
        while let Some(a) = it.next() {
            if !a.starts_with("--") {
                usage(&format!("unexpected argument {a:?}"));
            }
            if flags.contains(&a.as_str()) {
                out.flags.push(a);
            } else {
                let value = it.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
                out.pairs.push((a, value));
            }
        }
        out
    }
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    fn need(&self, name: &str) -> String {
        self.get(name).map(String::from).unwrap_or_else(|| usage(&format!("{name} is required")))
    }
    fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
    fn number(&self, name: &str, default: f64) -> f64 {
        self.get(name).map(|v| v.parse().unwrap_or_else(|_| usage(&format!("{name} must be a number")))).unwrap_or(default)
    }
    fn flag(&self, name: &str) -> bool {
        self.flags.iter().any(|f| f == name)
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut argv = std::env::args().skip(1);
    let command = argv.next().unwrap_or_default();
    let code = match command.as_str() {
        "sample" => run_sampler(Args::parse(argv, &["--once"])).await,
        "report" => run_report(Args::parse(argv, &["--check-slope"])).await,
        other => usage(&format!("unknown command {other:?}")),
    };
    std::process::exit(code)
}

async fn run_sampler(args: Args) -> i32 {
    let dir = PathBuf::from(args.need("--dir"));
    let target = sample::Target {
        pm2_home: PathBuf::from(args.need("--pm2-home")),
        apps: args.need("--apps").split(',').map(String::from).collect(),
        marker: args.need("--marker"),
        folders: args
            .all("--folder")
            .iter()
            .map(|f| f.split_once('=').map(|(n, p)| (n.to_string(), PathBuf::from(p))).unwrap_or_else(|| usage("--folder takes name=path")))
            .collect(),
        stored: args.get("--stored").map(PathBuf::from),
        redis_url: args.need("--redis"),
        database_url: args.need("--database"),
    };
    let every = Duration::from_secs_f64(args.number("--every", 30.0).max(1.0));
    let phase = args.get("--phase").unwrap_or("run").to_string();
    let csv = dir.join("samples.csv");
    let started = std::fs::read_to_string(dir.join("started")).ok().and_then(|s| s.trim().parse::<f64>().ok()).unwrap_or_else(now);
    loop {
        let mut at = now();
        let mut taken = sample::take(&target).await;
        // After `pm2 kill` the fleet's processes take a moment to go: poll (up to --until-quiet
        // seconds) for a sample with none left, and keep the last one taken.
        let quiet_by = at + args.number("--until-quiet", 0.0);
        while let Ok(s) = &taken {
            let left: f64 = s.values.iter().filter(|(k, _)| k.starts_with("procs:")).map(|(_, v)| *v).sum();
            if left == 0.0 || now() >= quiet_by {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            at = now();
            taken = sample::take(&target).await;
        }
        match taken {
            Ok(s) => {
                let fresh = !csv.exists();
                let file = OpenOptions::new().create(true).append(true).open(&csv);
                let Ok(mut file) = file else {
                    eprintln!("soak-sampler: cannot write {}", csv.display());
                    return 1;
                };
                let mut text = String::new();
                if fresh {
                    text.push_str(report::HEADER);
                    text.push('\n');
                }
                for (series, value) in &s.values {
                    text.push_str(&format!("{at:.0},{:.0},{},{phase},{series},{value}\n", at - started, s.docs));
                }
                if let Err(e) = file.write_all(text.as_bytes()) {
                    eprintln!("soak-sampler: writing {}: {e}", csv.display());
                    return 1;
                }
            }
            // A sample that cannot be taken (Postgres busy during a kill...) is skipped, said once.
            Err(e) => eprintln!("soak-sampler: sample skipped: {e}"),
        }
        if args.flag("--once") {
            return 0;
        }
        tokio::time::sleep(every.saturating_sub(Duration::from_secs_f64((now() - at).max(0.0)))).await;
    }
}

async fn run_report(args: Args) -> i32 {
    let dir = PathBuf::from(args.need("--dir"));
    let limits = report::Limits {
        check_slope: args.flag("--check-slope"),
        rss_growth_pct: args.number("--rss-growth-pct", 5.0),
        back_within: args.number("--back-within", 0.10),
        slack: args.number("--slack", 2.0),
    };
    let csv = std::fs::read_to_string(dir.join("samples.csv")).unwrap_or_else(|e| usage(&format!("--dir: no samples.csv ({e})")));
    let rows = report::parse(&csv);
    let kills = report::parse_kills(&std::fs::read_to_string(dir.join("kills.csv")).unwrap_or_default());
    let series = report::by_series(&rows);

    match report::plot(&series, &kills, &dir.join("plots")) {
        Ok(files) => println!("plots: {}", files.join(" ")),
        Err(e) => println!("plots: not drawn: {e}"),
    }
    let docs = rows.iter().map(|r| r.docs).fold(0.0, f64::max);
    println!("\n{} samples of {} series, {} kills, {docs:.0} documents finished\n", rows.len() / series.len().max(1), series.len(), kills.len());
    print!("{}", report::table(&series));

    let (mut failures, notes) = report::check(&series, &kills, &limits);
    failures.extend(queue_checks(&dir, &args.need("--database")).await);
    println!();
    for n in &notes {
        println!("   {n}");
    }
    if failures.is_empty() {
        println!("✅ soak checks passed");
        0
    } else {
        for f in &failures {
            println!("❌ {f}");
        }
        1
    }
}

/// Every fed row final (good rows in 5, bad rows in 4 with a reason), and no row completed twice
/// (the completion audit of the private database).
async fn queue_checks(dir: &std::path::Path, database: &str) -> Vec<String> {
    let mut failures = Vec::new();
    let fed = std::fs::read_to_string(dir.join("fed.tsv")).unwrap_or_default();
    let fed: Vec<(String, String)> = fed.lines().filter_map(|l| l.split_once('\t')).map(|(i, k)| (i.trim().to_string(), k.trim().to_string())).collect();
    let mut conn = match PgConnection::connect(database).await {
        Ok(c) => c,
        Err(e) => return vec![format!("the private database cannot be read: {e}")],
    };
    let states: Vec<(String, i32, String)> = match sqlx::query_as(
        "SELECT id::text, status_id, coalesce(nullif(trim(error_message), ''), nullif(trim(ocr_error), ''), '') FROM extraction_queue",
    )
    .fetch_all(&mut conn)
    .await
    {
        Ok(s) => s,
        Err(e) => return vec![format!("reading the rows: {e}")],
    };
    let states: std::collections::HashMap<String, (i32, String)> = states.into_iter().map(|(i, s, r)| (i, (s, r))).collect();
    let (mut good, mut bad, mut wrong) = (0, 0, Vec::new());
    for (id, kind) in &fed {
        match (kind.as_str(), states.get(id)) {
            ("good", Some((5, _))) => good += 1,
            (k, Some((4, reason))) if k != "good" && !reason.is_empty() => bad += 1,
            (k, state) => wrong.push(format!("{id} ({k}): {state:?}")),
        }
    }
    println!("   fed {} rows: {good} good rows in 5, {bad} bad rows in 4 with a reason", fed.len());
    if fed.is_empty() {
        failures.push("no row was fed".into());
    }
    if !wrong.is_empty() {
        failures.push(format!("{} fed row(s) not in their final status, e.g. {}", wrong.len(), wrong.iter().take(5).cloned().collect::<Vec<_>>().join("; ")));
    }
    match sqlx::query_scalar::<_, i64>("SELECT count(*) FROM (SELECT row_id FROM completion_audit GROUP BY row_id HAVING count(*) > 1) d")
        .fetch_one(&mut conn)
        .await
    {
        Ok(0) => println!("   no row completed twice (completion audit)"),
        Ok(n) => failures.push(format!("{n} row(s) completed twice")),
        Err(e) => failures.push(format!("the completion audit cannot be read: {e}")),
    }
    let _ = conn.close().await;
    failures
}
