//! The /metrics of registre-api and registre-monitor: the queue, capacity, rate-limit and pool gauges
//! in the Prometheus text format (version 0.0.4), computed from the same overview as the dashboard
//! ([`crate::overview()`]) at each scrape. These are all gauges of state read at scrape time
//! (nothing is counted inside this process), so they are written directly; names start with
//! `registre_`, use base units (seconds, bytes) and carry `env`, `source`, `stage` labels where
//! they apply. docs/operations.md lists every one.

use std::fmt::Write;

use registre_domain::{status, DocumentSource};

use crate::Overview;

/// Bytes per GB of the capacity settings (SERVER_MAX_RAM and the worker costs are decimal GB).
const BYTES_PER_GB: f64 = 1e9;

/// A label value escaped as the text format requires (backslash, double quote, newline).
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} gauge");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let value = if value.is_finite() { value } else { 0.0 };
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {value}");
        } else {
            let _ = writeln!(self.0, "{name}{{{}}} {value}", labels.join(","));
        }
    }
}

pub fn render(o: &Overview) -> String {
    let mut out = Out(String::with_capacity(4096));

    out.family("registre_up", "1 when the dependency answered this scrape (redis or an environment), else 0.");
    out.sample("registre_up", &[("dependency", "redis")], if o.live.is_some() { 1.0 } else { 0.0 });
    // A REST-only environment is not read here and not down: left out of registre_up.
    for e in o.environments.iter().filter(|e| !e.rest_only) {
        out.sample("registre_up", &[("dependency", e.env)], if e.overview.is_some() { 1.0 } else { 0.0 });
    }
    out.family("registre_env_rest_only", "1 for an environment reached through Supabase REST only: not read here (no registre_up), not down.");
    for e in o.environments.iter().filter(|e| e.rest_only) {
        out.sample("registre_env_rest_only", &[("env", e.env)], 1.0);
    }

    out.family("registre_queue_rows", "Rows of extraction_queue per environment, status and document source.");
    for e in &o.environments {
        let Some(ov) = &e.overview else { continue };
        // Every status × source is written, zeros included, so rates and alerts see series that exist.
        for id in status::ALL {
            for source in DocumentSource::ALL.map(DocumentSource::as_str) {
                let n = ov
                    .counts
                    .iter()
                    .filter(|c| c.status_id == id && c.document_source == source)
                    .map(|c| c.count)
                    .sum::<u64>();
                let s = id.to_string();
                out.sample(
                    "registre_queue_rows",
                    &[("env", e.env), ("status", &s), ("status_name", status::label(id)), ("source", source)],
                    n as f64,
                );
            }
        }
    }

    out.family(
        "registre_queue_oldest_waiting_seconds",
        "Age of the oldest row waiting at a stage (extraction: status 1, ocr: status 3), since it was queued; 0 when none waits.",
    );
    for e in &o.environments {
        let Some(ov) = &e.overview else { continue };
        out.sample("registre_queue_oldest_waiting_seconds", &[("env", e.env), ("stage", "extraction")], ov.oldest_waiting_seconds.extraction.unwrap_or(0.0));
        out.sample("registre_queue_oldest_waiting_seconds", &[("env", e.env), ("stage", "ocr")], ov.oldest_waiting_seconds.ocr.unwrap_or(0.0));
    }

    out.family("registre_queue_completed_last_hour", "Rows that reached status 5 (text extracted) in the last 60 minutes.");
    for e in &o.environments {
        let Some(ov) = &e.overview else { continue };
        let n: u64 = ov.completions_per_minute.iter().map(|m| m.count).sum();
        out.sample("registre_queue_completed_last_hour", &[("env", e.env)], n as f64);
    }

    if let Some(live) = &o.live {
        out.family("registre_capacity_cpu_allocated_vcpus", "vCPUs held by live capacity leases on a server.");
        for c in &live.capacity {
            out.sample("registre_capacity_cpu_allocated_vcpus", &[("server", c.server.as_deref().unwrap_or(""))], c.cpu_allocated);
        }
        out.family("registre_capacity_cpu_usable_vcpus", "Usable vCPUs a server published (its max minus the OS reserve); absent when it published none.");
        for c in &live.capacity {
            // Only servers that published their budget (crates/capacity budget.rs).
            if let Some(usable) = c.cpu_usable {
                out.sample("registre_capacity_cpu_usable_vcpus", &[("server", c.server.as_deref().unwrap_or(""))], usable);
            }
        }
        out.family("registre_capacity_ram_allocated_bytes", "RAM held by live capacity leases on a server.");
        for c in &live.capacity {
            out.sample("registre_capacity_ram_allocated_bytes", &[("server", c.server.as_deref().unwrap_or(""))], c.ram_allocated * BYTES_PER_GB);
        }
        out.family("registre_capacity_ram_usable_bytes", "Usable RAM a server published (its max minus the OS reserve); absent when it published none.");
        for c in &live.capacity {
            if let Some(usable) = c.ram_usable {
                out.sample("registre_capacity_ram_usable_bytes", &[("server", c.server.as_deref().unwrap_or(""))], usable * BYTES_PER_GB);
            }
        }
        out.family("registre_workers", "Live workers (capacity leases) per server and worker type.");
        for c in &live.capacity {
            let server = c.server.as_deref().unwrap_or("");
            for kind in ["registre", "index-ocr", "acte-ocr"] {
                let n = live.workers.iter().filter(|w| w.server == c.server && w.kind == kind).count();
                out.sample("registre_workers", &[("server", server), ("type", kind)], n as f64);
            }
        }
        out.family("registre_pool_workers", "OCR workers the pool allocation gives each mode, per server.");
        for p in &live.pools {
            let server = p.server.as_deref().unwrap_or("");
            out.sample("registre_pool_workers", &[("server", server), ("mode", "index")], f64::from(p.allocation.index_workers));
            out.sample("registre_pool_workers", &[("server", server), ("mode", "acte")], f64::from(p.allocation.acte_workers));
        }
        let r = &live.rate_limit;
        let name = [("limiter", r.name.as_str())];
        out.family("registre_ratelimit_requests", "Requests admitted by the shared OCR API limiter in the current rolling window.");
        out.sample("registre_ratelimit_requests", &name, r.requests as f64);
        out.family("registre_ratelimit_requests_limit", "Requests the limiter admits per rolling window.");
        out.sample("registre_ratelimit_requests_limit", &name, r.requests_limit as f64);
        out.family("registre_ratelimit_tokens", "Tokens charged to the shared OCR API limiter in the current rolling window.");
        out.sample("registre_ratelimit_tokens", &name, r.tokens as f64);
        out.family("registre_ratelimit_tokens_limit", "Tokens the limiter admits per rolling window.");
        out.sample("registre_ratelimit_tokens_limit", &name, r.tokens_limit as f64);
        out.family("registre_ratelimit_window_seconds", "Span the limiter counts over: its rolling window plus the arrival margin.");
        out.sample("registre_ratelimit_window_seconds", &name, r.window_seconds);
        out.family("registre_ratelimit_cooldown_seconds", "Seconds left of a cooldown after an HTTP 429 (0: none).");
        out.sample("registre_ratelimit_cooldown_seconds", &name, r.cooldown_seconds);
    }
    out.0
}
