//! The end of a soak: the samples (CSV) read back, one PNG per family of series (each series a
//! line over time), the table (first sample, last sample, slope per 1,000 documents), and the
//! checks of issue 25 that need the samples: RSS growth after warm-up, every resource back near
//! its level after each kill, no browser outliving its worker, nothing left once the fleet stopped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

/// One row of the CSV.
#[derive(Debug, Clone)]
pub struct Row {
    pub unix: f64,
    pub elapsed: f64,
    pub docs: f64,
    /// `run` while fed and killed, `drained` once every row is final, `stopped` after the fleet stopped.
    pub phase: String,
    pub series: String,
    pub value: f64,
}

pub const HEADER: &str = "unix_s,elapsed_s,docs,phase,series,value";

pub fn parse(csv: &str) -> Vec<Row> {
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 6 {
                return None;
            }
            Some(Row {
                unix: f[0].parse().ok()?,
                elapsed: f[1].parse().ok()?,
                docs: f[2].parse().ok()?,
                phase: f[3].to_string(),
                series: f[4].to_string(),
                value: f[5].parse().ok()?,
            })
        })
        .collect()
}

/// Least-squares slope of y over x; None when x does not vary.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let (mx, my) = (points.iter().map(|p| p.0).sum::<f64>() / n, points.iter().map(|p| p.1).sum::<f64>() / n);
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx < 1e-9 {
        return None;
    }
    Some(points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx)
}

/// Samples of each series, in time order.
pub fn by_series(rows: &[Row]) -> BTreeMap<String, Vec<Row>> {
    let mut all: BTreeMap<String, Vec<Row>> = BTreeMap::new();
    for r in rows {
        all.entry(r.series.clone()).or_default().push(r.clone());
    }
    for v in all.values_mut() {
        v.sort_by(|a, b| a.unix.total_cmp(&b.unix));
    }
    all
}

/// The table: series, first, last, slope per 1,000 documents (over the run's samples).
pub fn table(series: &BTreeMap<String, Vec<Row>>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| series | first | last | slope / 1,000 docs |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (name, rows) in series {
        if name.starts_with("pid:") {
            continue;
        }
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else { continue };
        let run: Vec<(f64, f64)> = rows.iter().filter(|r| r.phase == "run").map(|r| (r.docs, r.value)).collect();
        let s = slope(&run).map(|s| format!("{:+.1}", s * 1000.0)).unwrap_or_else(|| "n/a".into());
        let _ = writeln!(out, "| {name} | {} | {} | {s} |", fmt(first.value), fmt(last.value));
    }
    out
}

fn fmt(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// What the checks need besides the samples.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Check the RSS slope (a long run only).
    pub check_slope: bool,
    /// Most RSS growth after warm-up, % per 1,000 documents.
    pub rss_growth_pct: f64,
    /// Back within this fraction of the pre-kill level...
    pub back_within: f64,
    /// ...or within this many units (small counts: 3 connections ± 10 % is less than one).
    pub slack: f64,
}

/// One kill: when, which app.
#[derive(Debug, Clone)]
pub struct Kill {
    pub unix: f64,
    pub app: String,
}

pub fn parse_kills(text: &str) -> Vec<Kill> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(',');
            Some(Kill { unix: f.next()?.trim().parse().ok()?, app: f.next()?.trim().to_string() })
        })
        .collect()
}

/// Series a kill must not leave changed (RSS and rows move with the work, not with leaks).
fn is_resource(series: &str) -> bool {
    ["fds:", "threads:", "procs:", "files:", "redis_keys:", "pg_conns:", "orphans:"].iter().any(|p| series.starts_with(p))
}

/// The checks on the samples; one line per failure.
pub fn check(series: &BTreeMap<String, Vec<Row>>, kills: &[Kill], limits: &Limits) -> (Vec<String>, Vec<String>) {
    let (mut failures, mut notes) = (Vec::new(), Vec::new());
    let run_end = series.values().flatten().filter(|r| r.phase == "run").map(|r| r.unix).fold(f64::MIN, f64::max);
    let run_start = series.values().flatten().map(|r| r.unix).fold(f64::MAX, f64::min);

    // No browser outlives its worker, at any sample; nothing of the run is left once it stopped.
    if let Some(rows) = series.get("orphans:browser") {
        if let Some(r) = rows.iter().find(|r| r.value > 0.0) {
            failures.push(format!("{} Chromium/chromedriver process(es) without their worker at {:.0} s", r.value, r.elapsed));
        }
    }
    if !series.values().flatten().any(|r| r.phase == "stopped") {
        failures.push("no sample was taken after the fleet stopped (see logs/sampler.log)".into());
    }
    for family in ["chromium", "chromedriver", "tesseract", "poppler", "other"] {
        let name = format!("procs:{family}");
        if let Some(r) = series.get(&name).and_then(|rows| rows.iter().rev().find(|r| r.phase == "stopped")) {
            if r.value > 0.0 {
                failures.push(format!("{} {family} process(es) of the run still alive after the fleet stopped", r.value));
            }
        }
    }

    // RSS after the warm-up (first 10 % of the run), per process lifetime (a restarted process
    // starts small again): growth per 1,000 documents relative to its mean.
    if limits.check_slope {
        let warm = run_start + (run_end - run_start) * 0.1;
        for (name, rows) in series.iter().filter(|(n, _)| n.starts_with("rss_kb:")) {
            let app = &name["rss_kb:".len()..];
            let pids = series.get(&format!("pid:{app}")).cloned().unwrap_or_default();
            let pid_at = |unix: f64| pids.iter().find(|p| p.unix == unix).map(|p| p.value);
            // Each life warms up again: its samples count from the later of the run's warm-up
            // and its own start plus the same share of the run.
            let mut born: BTreeMap<u64, f64> = BTreeMap::new();
            for r in rows.iter().filter(|r| r.phase == "run") {
                born.entry(pid_at(r.unix).unwrap_or(0.0) as u64).or_insert(r.unix);
            }
            let mut lives: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
            for r in rows.iter().filter(|r| r.phase == "run") {
                let pid = pid_at(r.unix).unwrap_or(0.0) as u64;
                let life_warm = born.get(&pid).map(|b| b + (run_end - run_start) * 0.1).unwrap_or(warm);
                if r.unix >= warm.max(life_warm) {
                    lives.entry(pid).or_default().push((r.docs, r.value));
                }
            }
            let Some(life) = lives.values().max_by_key(|l| l.len()) else { continue };
            let span = life.last().map(|l| l.0).unwrap_or(0.0) - life.first().map(|l| l.0).unwrap_or(0.0);
            if life.len() < 5 || span < 50.0 {
                notes.push(format!("{app}: RSS slope not judged ({} samples over {span:.0} documents in its longest life)", life.len()));
                continue;
            }
            let mean = life.iter().map(|p| p.1).sum::<f64>() / life.len() as f64;
            let growth = slope(life).unwrap_or(0.0) * 1000.0 / mean * 100.0;
            notes.push(format!("{app}: RSS growth after warm-up {growth:+.2} % per 1,000 documents (limit {} %)", limits.rss_growth_pct));
            if growth >= limits.rss_growth_pct {
                failures.push(format!("{app}: RSS grows {growth:.2} % per 1,000 documents after warm-up (limit {} %)", limits.rss_growth_pct));
            }
        }
    }

    // After each kill, each resource comes back near its level before: at least one sample
    // between the kill and the next one (or the end of the run) within the tolerance.
    for (i, kill) in kills.iter().enumerate() {
        let until = kills.get(i + 1).map(|k| k.unix).unwrap_or(f64::MAX);
        for (name, rows) in series.iter().filter(|(n, _)| is_resource(n)) {
            let Some(before) = rows.iter().filter(|r| r.unix < kill.unix && r.phase == "run").last() else { continue };
            let after: Vec<&Row> = rows.iter().filter(|r| r.unix > kill.unix && r.unix <= until && r.phase != "stopped").collect();
            if after.is_empty() {
                notes.push(format!("kill of {} at {:.0} s: no sample of {name} after it", kill.app, kill.unix - run_start));
                continue;
            }
            let tolerance = (before.value * limits.back_within).max(limits.slack);
            if !after.iter().any(|r| (r.value - before.value).abs() <= tolerance) {
                let seen: Vec<String> = after.iter().map(|r| fmt(r.value)).collect();
                failures.push(format!(
                    "kill of {} at {:.0} s: {name} was {} before and never came back within ±{} (after: {})",
                    kill.app,
                    kill.unix - run_start,
                    fmt(before.value),
                    fmt(tolerance),
                    seen.join(" ")
                ));
            }
        }
    }
    (failures, notes)
}

/// One PNG per family (`rss_kb`, `fds`, ...) in `dir`, each series of the family a line over
/// elapsed minutes. Returns the files written.
pub fn plot(series: &BTreeMap<String, Vec<Row>>, kills: &[Kill], dir: &Path) -> Result<Vec<String>, String> {
    use plotters::prelude::*;
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let fonts = register_font();
    let start = series.values().flatten().map(|r| r.unix).fold(f64::MAX, f64::min);
    let mut families: BTreeMap<&str, Vec<(&String, &Vec<Row>)>> = BTreeMap::new();
    for (name, rows) in series {
        let family = name.split(':').next().unwrap_or(name);
        if family != "pid" {
            families.entry(family).or_default().push((name, rows));
        }
    }
    let mut written = Vec::new();
    for (family, lines) in families {
        let file = dir.join(format!("{family}.png"));
        let root = BitMapBackend::new(&file, (1000, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let x_max = lines.iter().flat_map(|(_, r)| r.iter()).map(|r| (r.unix - start) / 60.0).fold(0.1, f64::max);
        let y_max = lines.iter().flat_map(|(_, r)| r.iter()).map(|r| r.value).fold(1.0, f64::max) * 1.1;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(12).x_label_area_size(if fonts { 36 } else { 4 }).y_label_area_size(if fonts { 70 } else { 4 });
        if fonts {
            builder.caption(format!("{family} over time (minutes); dashed: kills"), ("sans-serif", 20));
        }
        let mut chart = builder.build_cartesian_2d(0f64..x_max, 0f64..y_max).map_err(|e| e.to_string())?;
        let mut mesh = chart.configure_mesh();
        if !fonts {
            mesh.disable_x_mesh().disable_y_mesh().x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|e| e.to_string())?;
        for kill in kills {
            let x = (kill.unix - start) / 60.0;
            chart
                .draw_series(DashedLineSeries::new(vec![(x, 0.0), (x, y_max)], 6, 4, BLACK.mix(0.4).stroke_width(1)))
                .map_err(|e| e.to_string())?;
        }
        for (i, (name, rows)) in lines.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let points: Vec<(f64, f64)> = rows.iter().map(|r| ((r.unix - start) / 60.0, r.value)).collect();
            let drawn = chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(|e| e.to_string())?;
            if fonts {
                let label = name.split_once(':').map(|(_, l)| l.to_string()).unwrap_or_else(|| name.to_string());
                drawn.label(label).legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
            }
        }
        if fonts {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| format!("{}: {e}", file.display()))?;
        written.push(file.display().to_string());
    }
    Ok(written)
}

/// Registers a system TrueType font for the labels; false when none is installed (the plots are
/// then drawn without text).
fn register_font() -> bool {
    for path in ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf"] {
        if let Ok(bytes) = std::fs::read(path) {
            // Lives as long as the process: plotters keeps fonts in a static table.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(unix: f64, docs: f64, series: &str, value: f64) -> Row {
        Row { unix, elapsed: unix, docs, phase: "run".into(), series: series.into(), value }
    }

    /// The sample after `pm2 kill`: nothing of the run left.
    fn stopped(unix: f64) -> Row {
        Row { phase: "stopped".into(), ..row(unix, 0.0, "procs:other", 0.0) }
    }

    #[test]
    fn slope_of_a_line_and_of_nothing() {
        assert_eq!(slope(&[(0.0, 1.0), (10.0, 21.0), (20.0, 41.0)]), Some(2.0));
        assert_eq!(slope(&[(5.0, 1.0), (5.0, 3.0)]), None);
    }

    #[test]
    fn a_kill_that_leaves_descriptors_behind_fails_and_one_that_recovers_passes() {
        let limits = Limits { check_slope: false, rss_growth_pct: 5.0, back_within: 0.1, slack: 2.0 };
        let kills = vec![Kill { unix: 100.0, app: "registre-workers".into() }];
        let mut leaky: Vec<Row> = [(50.0, 40.0), (130.0, 60.0), (160.0, 61.0)].iter().map(|(t, v)| row(*t, *t, "fds:registre-workers", *v)).collect();
        leaky.push(stopped(200.0));
        let series = by_series(&leaky);
        let (failures, _) = check(&series, &kills, &limits);
        assert_eq!(failures.len(), 1, "{failures:?}");
        let mut healed: Vec<Row> = [(50.0, 40.0), (130.0, 60.0), (160.0, 42.0)].iter().map(|(t, v)| row(*t, *t, "fds:registre-workers", *v)).collect();
        healed.push(stopped(200.0));
        assert!(check(&by_series(&healed), &kills, &limits).0.is_empty());
        // Without a sample after the stop, nothing proves the run's processes went.
        healed.pop();
        assert_eq!(check(&by_series(&healed), &kills, &limits).0.len(), 1);
    }

    #[test]
    fn rss_growth_is_judged_per_process_life() {
        let limits = Limits { check_slope: true, rss_growth_pct: 5.0, back_within: 0.1, slack: 2.0 };
        let mut rows = Vec::new();
        for i in 0..20 {
            let t = f64::from(i) * 30.0;
            rows.push(row(t, t, "rss_kb:ocr-pool", 100_000.0 + t * 100.0));
            rows.push(row(t, t, "pid:ocr-pool", 42.0));
        }
        rows.push(stopped(700.0));
        let (failures, _) = check(&by_series(&rows), &[], &limits);
        assert_eq!(failures.len(), 1, "{failures:?}");
    }
}
