//! `registrectl status [--json]`: what an operator looks at first, in one screen: rows per
//! environment × status (and per source), the oldest waiting row per stage, completions in the last
//! hour, live workers, capacity per server, the shared rate limit and the OCR pool allocation.
//! `--json` prints the same data as one object (the overview registre-api serves, minus the
//! per-minute series), for scripts.

use chrono::Utc;
use registre_ops::{EnvOverview, LiveView, Ops};
use serde::Serialize;

use crate::{EXIT_FAILED, EXIT_OK};

#[derive(Serialize)]
struct EnvStatus {
    env: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    counts: Option<Vec<registre_ops::StatusCount>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    oldest_waiting_seconds: Option<registre_ops::OldestWaiting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    completed_last_hour: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Why it was skipped without failing (a Supabase REST-only environment: not down, not read).
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize)]
struct Status {
    generated_at: chrono::DateTime<Utc>,
    environments: Vec<EnvStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<LiveView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    live_error: Option<String>,
}

fn age(seconds: Option<f64>) -> String {
    let Some(s) = seconds else { return "—".into() };
    let s = s.max(0.0) as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

pub async fn status(ops: &Ops, environment: Option<&str>, json: bool) -> i32 {
    let envs = match environment {
        Some(name) => match ops.env(name) {
            Ok(env) => vec![env],
            Err(e) => {
                eprintln!("registrectl: {e}");
                return crate::EXIT_USAGE;
            }
        },
        None => ops.environments(),
    };
    let per_env = futures_join(ops, &envs).await;
    let live = ops.live().view().await;
    let mut failed = false;
    let environments: Vec<EnvStatus> = envs
        .iter()
        .zip(per_env)
        .map(|(env, r)| match r {
            Ok(o) => EnvStatus {
                env: env.as_str(),
                completed_last_hour: Some(o.completions_per_minute.iter().map(|m| m.count).sum()),
                oldest_waiting_seconds: Some(o.oldest_waiting_seconds),
                counts: Some(o.counts),
                error: None,
                note: None,
            },
            // Not down: this registrectl has no SQL access there (docs/operations.md). Skipped with a note.
            Err(e @ registre_ops::OpsError::RestUnsupported { .. }) => EnvStatus {
                env: env.as_str(),
                counts: None,
                oldest_waiting_seconds: None,
                completed_last_hour: None,
                error: None,
                note: Some(format!("skipped: {e}")),
            },
            Err(e) => {
                failed = true;
                EnvStatus { env: env.as_str(), counts: None, oldest_waiting_seconds: None, completed_last_hour: None, error: Some(e.to_string()), note: None }
            }
        })
        .collect();
    let (live, live_error) = match live {
        Ok(v) => (Some(v), None),
        Err(e) => {
            failed = true;
            (None, Some(e.to_string()))
        }
    };
    let status = Status { generated_at: Utc::now(), environments, live, live_error };
    if json {
        println!("{}", serde_json::to_string_pretty(&status).unwrap_or_else(|_| "{}".into()));
    } else {
        print!("{}", render(&status));
    }
    if failed {
        EXIT_FAILED
    } else {
        EXIT_OK
    }
}

async fn futures_join(ops: &Ops, envs: &[registre_config::EnvName]) -> Vec<Result<EnvOverview, registre_ops::OpsError>> {
    let mut out = Vec::with_capacity(envs.len());
    for env in envs {
        out.push(ops.overview(*env).await);
    }
    out
}

fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "registre status at {}", s.generated_at.format("%Y-%m-%d %H:%M:%S UTC"));
    let _ = writeln!(o);
    // Rows per status (columns: environments), with the per-source split beside each count.
    let _ = write!(o, "{:<24}", "QUEUE");
    for e in &s.environments {
        let _ = write!(o, "{:>34}", e.env);
    }
    let _ = writeln!(o);
    for status in registre_domain::status::ALL {
        let _ = write!(o, "{:<24}", format!("{status} {}", registre_domain::status::label(status)));
        for e in &s.environments {
            let cell = match &e.counts {
                None => "—".to_string(),
                Some(counts) => {
                    let of = |source: &str| counts.iter().filter(|c| c.status_id == status && c.document_source == source).map(|c| c.count).sum::<u64>();
                    let total: u64 = counts.iter().filter(|c| c.status_id == status).map(|c| c.count).sum();
                    format!("{total} (index {}, acte {}, plan {})", of("index"), of("acte"), of("plan_cadastraux"))
                }
            };
            let _ = write!(o, "{cell:>34}");
        }
        let _ = writeln!(o);
    }
    for (label, pick) in [
        ("oldest waiting: fetch", 0usize),
        ("oldest waiting: OCR", 1),
    ] {
        let _ = write!(o, "{label:<24}");
        for e in &s.environments {
            let v = e.oldest_waiting_seconds.map(|w| if pick == 0 { w.extraction } else { w.ocr }).unwrap_or(None);
            let _ = write!(o, "{:>34}", if e.counts.is_none() { "—".into() } else { age(v) });
        }
        let _ = writeln!(o);
    }
    let _ = write!(o, "{:<24}", "completed, last hour");
    for e in &s.environments {
        let _ = write!(o, "{:>34}", e.completed_last_hour.map(|n| n.to_string()).unwrap_or_else(|| "—".into()));
    }
    let _ = writeln!(o);
    for e in &s.environments {
        if let Some(err) = &e.error {
            let _ = writeln!(o, "  ⚠ {}: {err}", e.env);
        }
        if let Some(note) = &e.note {
            let _ = writeln!(o, "  ℹ {}: {note}", e.env);
        }
    }
    let _ = writeln!(o);
    match (&s.live, &s.live_error) {
        (Some(live), _) => {
            let _ = writeln!(o, "WORKERS ({} live)", live.workers.len());
            if !live.workers.is_empty() {
                let _ = writeln!(o, "  {:<18} {:<34} {:<10} {:<6} {:<20} {:>8} {:>14}", "server", "worker id", "type", "mode", "host", "pid", "lease left");
            }
            let now_ms = Utc::now().timestamp_millis().max(0) as u64;
            for w in &live.workers {
                let left = w.lease_expires_at_ms.saturating_sub(now_ms) as f64 / 1000.0;
                let _ = writeln!(
                    o,
                    "  {:<18} {:<34} {:<10} {:<6} {:<20} {:>8} {:>13.1}s",
                    w.server.as_deref().unwrap_or("(default)"),
                    w.worker_id,
                    w.kind,
                    w.assigned_mode.as_deref().unwrap_or("—"),
                    w.host,
                    w.pid,
                    left
                );
            }
            let _ = writeln!(o);
            let _ = writeln!(o, "CAPACITY");
            for c in &live.capacity {
                // Each server against the budget it published itself; one that published none
                // (no live worker there) is shown, not judged.
                let usable = |v: Option<f64>| v.map(|v| format!("{v:<6.2}")).unwrap_or_else(|| "?     ".into());
                let _ = writeln!(
                    o,
                    "  {:<18} cpu {:>6.2} / {} vCPU   ram {:>6.2} / {} GB   {} lease(s){}",
                    c.server.as_deref().unwrap_or("(default)"),
                    c.cpu_allocated,
                    usable(c.cpu_usable),
                    c.ram_allocated,
                    usable(c.ram_usable),
                    c.workers,
                    match c.above_budget() {
                        Some(true) => "   ⚠ ABOVE USABLE",
                        Some(false) => "",
                        None => "   (no budget published: not judged)",
                    }
                );
            }
            let r = &live.rate_limit;
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "RATE LIMIT {}: {} / {} requests, {} / {} tokens in the last {:.0} s; {}",
                r.name,
                r.requests,
                r.requests_limit,
                r.tokens,
                r.tokens_limit,
                r.window_seconds,
                if r.cooldown_seconds > 0.0 { format!("COOLDOWN {:.1} s left (after a 429)", r.cooldown_seconds) } else { "no cooldown".into() }
            );
            let _ = writeln!(o);
            if live.pools.is_empty() {
                let _ = writeln!(o, "OCR POOL: no allocation published (no ocr-pool running)");
            }
            for p in &live.pools {
                let a = &p.allocation;
                let _ = writeln!(
                    o,
                    "OCR POOL {}: index {} / acte {} of {} worker(s) (queue: index {}, acte {})",
                    p.server.as_deref().unwrap_or("(default)"),
                    a.index_workers,
                    a.acte_workers,
                    a.total_workers,
                    a.queue.index,
                    a.queue.acte
                );
            }
        }
        (None, Some(err)) => {
            let _ = writeln!(o, "WORKERS, CAPACITY, RATE LIMIT, POOL: unavailable: {err}");
        }
        (None, None) => {}
    }
    o
}
