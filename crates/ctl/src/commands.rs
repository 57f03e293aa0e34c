//! The operations subcommands: each one call of registre-ops, its result printed for a person
//! (stdout) and its failure as one line on stderr with the exit code it deserves.

use std::time::Duration;

use registre_config::{Config, EnvName};
use registre_ops::{NewExtraction, Ops, OpsError};

use crate::args::{Command, EnqueueArgs, RetryTarget};
use crate::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

/// Exit code of a failed operation: 2 when the operator's input is at fault, else 1.
fn exit_code(e: &OpsError) -> i32 {
    match e {
        OpsError::UnknownEnvironment(..) | OpsError::Invalid(_) | OpsError::BadCursor => EXIT_USAGE,
        _ => EXIT_FAILED,
    }
}

fn fail(e: OpsError) -> i32 {
    eprintln!("registrectl: {e}");
    exit_code(&e)
}

/// The environment named, or prod (the first configured) by default.
pub(crate) fn environment(ops: &Ops, name: Option<&str>) -> Result<EnvName, OpsError> {
    match name {
        Some(n) => ops.env(n),
        None => ops
            .environments()
            .first()
            .copied()
            .ok_or_else(|| OpsError::UnknownEnvironment("(none)".into(), String::new())),
    }
}

pub async fn run(config: &Config, command: Command) -> i32 {
    let ops = match Ops::from_config(config) {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("registrectl: {e}");
            return EXIT_USAGE;
        }
    };
    let result = match command {
        Command::Status(a) => return crate::status::status(&ops, a.environment.as_deref(), a.json).await,
        Command::Enqueue(a) => return enqueue(&ops, a).await,
        Command::Show(a) => show(&ops, a.environment.as_deref(), a.id, a.json).await,
        Command::Retry(a) => retry(&ops, a.environment.as_deref(), a.target()).await,
        Command::Cancel(a) => cancel(&ops, a.environment.as_deref(), a.id, a.by).await,
        Command::RequeueStuck(a) => return requeue(&ops, config, a.environment.as_deref(), a.older_than.unwrap_or(config.monitor.stuck_after)).await,
        Command::ReleaseCapacity(a) => {
            let watch = config.capacity.heartbeat + Duration::from_secs(1);
            release(&ops, &a.worker_id, a.server, a.force, watch).await
        }
        Command::ExportIndex(args) => return crate::export_index::export(&ops, args).await,
        Command::IndexBackfill(args) => return crate::export_index::backfill(config, &ops, args).await,
        // Run by lib.rs without the operations library.
        Command::Migrate | Command::SiteCheck(_) | Command::Completions(_) => Ok(()),
    };
    match result {
        Ok(()) => EXIT_OK,
        Err(e) => fail(e),
    }
}

fn request_of(input: &[(String, String)]) -> NewExtraction {
    let get = |name: &str| input.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).filter(|v| !v.trim().is_empty());
    NewExtraction {
        document_source: get("document_source"),
        document_number: get("document_number"),
        circonscription_fonciere: get("circonscription_fonciere"),
        cadastre: get("cadastre"),
        designation_secondaire: get("designation_secondaire"),
        acte_type: get("acte_type"),
    }
}

const CSV_COLUMNS: [&str; 6] =
    ["document_source", "document_number", "circonscription_fonciere", "cadastre", "designation_secondaire", "acte_type"];

async fn enqueue(ops: &Ops, args: EnqueueArgs) -> i32 {
    let env = match self::environment(ops, args.environment.as_deref()) {
        Ok(env) => env,
        Err(e) => return fail(e),
    };
    match args.csv {
        None => {
            let request = NewExtraction {
                document_source: args.source,
                document_number: args.number,
                circonscription_fonciere: args.document.circonscription,
                cadastre: args.document.cadastre,
                designation_secondaire: args.document.designation,
                acte_type: args.document.acte_type,
            };
            match ops.enqueue(env, &request).await {
                Ok(done) if done.duplicate => {
                    println!("{env}: already waiting or in progress: {} (status {} {})", done.row.row.id, done.row.row.status_id, done.row.row.status);
                    EXIT_OK
                }
                Ok(done) => {
                    println!("{env}: queued {} {} as {}", done.row.row.document_source, done.row.row.document_number.as_deref().unwrap_or(""), done.row.row.id);
                    EXIT_OK
                }
                Err(e) => fail(e),
            }
        }
        Some(path) => {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("registrectl: cannot read {}: {e}", path.display());
                    return EXIT_USAGE;
                }
            };
            let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
            let Some((_, header)) = lines.next() else {
                eprintln!("registrectl: {} is empty: expected a header line ({})", path.display(), CSV_COLUMNS.join(","));
                return EXIT_USAGE;
            };
            let columns: Vec<String> = match crate::csv::fields(header.trim_start_matches('\u{feff}')) {
                Ok(c) => c.into_iter().map(|c| c.trim().to_ascii_lowercase()).collect(),
                Err(e) => {
                    eprintln!("registrectl: {} line 1 (header): {e}", path.display());
                    return EXIT_USAGE;
                }
            };
            if let Some(unknown) = columns.iter().find(|c| !CSV_COLUMNS.contains(&c.as_str())) {
                eprintln!("registrectl: {} line 1 (header): unknown column {unknown:?}; expected some of {}", path.display(), CSV_COLUMNS.join(", "));
                return EXIT_USAGE;
            }
            let (mut queued, mut duplicates, mut refused) = (0u64, 0u64, 0u64);
            for (index, line) in lines {
                let number = index + 1;
                let values = match crate::csv::fields(line) {
                    Ok(v) if v.len() == columns.len() => v,
                    Ok(v) => {
                        eprintln!("line {number}: {} fields, the header has {}", v.len(), columns.len());
                        refused += 1;
                        continue;
                    }
                    Err(e) => {
                        eprintln!("line {number}: {e}");
                        refused += 1;
                        continue;
                    }
                };
                let pairs: Vec<(String, String)> = columns.iter().cloned().zip(values).collect();
                match ops.enqueue(env, &request_of(&pairs)).await {
                    Ok(done) if done.duplicate => {
                        duplicates += 1;
                        println!("line {number}: already waiting or in progress: {}", done.row.row.id);
                    }
                    Ok(done) => {
                        queued += 1;
                        println!("line {number}: queued {}", done.row.row.id);
                    }
                    Err(OpsError::Invalid(fields)) => {
                        refused += 1;
                        let why: Vec<String> = fields.into_iter().map(|f| f.message).collect();
                        eprintln!("line {number}: refused: {}", why.join("; "));
                    }
                    // The database or the environment fails: the rest would fail the same way.
                    Err(e) => {
                        eprintln!("line {number}: {e}");
                        eprintln!("{env}: stopped at line {number}: {queued} queued, {duplicates} already there, {refused} refused before it");
                        return EXIT_FAILED;
                    }
                }
            }
            println!("{env}: {queued} queued, {duplicates} already waiting or in progress, {refused} refused");
            if refused > 0 {
                EXIT_FAILED
            } else {
                EXIT_OK
            }
        }
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "—".into())
}

async fn show(ops: &Ops, environment: Option<&str>, id: uuid::Uuid, json: bool) -> Result<(), OpsError> {
    let env = self::environment(ops, environment)?;
    let d = ops.get(env, id).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&d).unwrap_or_else(|_| "{}".into()));
        return Ok(());
    }
    let r = &d.row;
    println!("{env} extraction {}", r.id);
    println!("  status            {} {}", r.status_id, r.status);
    println!("  document          {} {}", r.document_source, opt(&r.document_number));
    println!("  circonscription   {}", opt(&r.circonscription_fonciere));
    println!("  cadastre          {}", opt(&r.cadastre));
    println!("  designation       {}", opt(&r.designation_secondaire));
    println!("  acte type         {}", opt(&r.acte_type));
    println!("  attempts          {} / {} (OCR {} / {})", opt(&r.attempts), opt(&r.max_attempts), opt(&r.ocr_attempts), opt(&r.ocr_max_attempts));
    println!("  worker            {} (OCR {})", opt(&r.worker_id), opt(&r.ocr_worker_id));
    println!("  lease expires     {} (OCR {})", opt(&d.lease_expires_at), opt(&d.ocr_lease_expires_at));
    println!("  next attempt      {}", opt(&d.next_attempt_at));
    println!("  stored PDF        {}", opt(&r.supabase_path));
    println!("  fetched as        {}", opt(&d.fetched_as));
    println!("  error_message     {}", opt(&r.error_message));
    println!("  ocr_error         {}", opt(&r.ocr_error));
    println!("  created / updated {} / {}", r.created_at, r.updated_at);
    println!("  OCR               started {}, completed {}", opt(&d.ocr_started_at), opt(&d.ocr_completed_at));
    if let Some(text) = &d.boosted_file_content_excerpt.as_ref().or(d.file_content_excerpt.as_ref()) {
        let excerpt: String = text.chars().take(300).collect();
        println!("  text ({} chars)   {}", opt(&d.boosted_file_content_chars.or(d.file_content_chars)), excerpt.replace('\n', " "));
    }
    Ok(())
}

async fn retry(ops: &Ops, environment: Option<&str>, target: RetryTarget) -> Result<(), OpsError> {
    let env = self::environment(ops, environment)?;
    match target {
        RetryTarget::One(id) => {
            let d = ops.retry(env, id).await?;
            println!("{env}: {id} retried: now {} {}", d.row.status_id, d.row.status);
        }
        RetryTarget::Errors { source, since } => {
            let done = ops.retry_errors(env, source.as_deref(), since, registre_ops::RETRY_BATCH).await?;
            let mut scope = String::new();
            if let Some(s) = &source {
                scope.push_str(&format!(" of source {s}"));
            }
            if let Some(t) = since {
                scope.push_str(&format!(" failed since {}", t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)));
            }
            println!("{env}: {} Erreur row(s){scope} retried ({} batch(es) of at most {})", done.retried, done.batches, registre_ops::RETRY_BATCH);
        }
    }
    Ok(())
}

async fn cancel(ops: &Ops, environment: Option<&str>, id: uuid::Uuid, by: Option<String>) -> Result<(), OpsError> {
    let env = self::environment(ops, environment)?;
    let who = by.unwrap_or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()).unwrap_or_else(|| "an operator".into()));
    let reason = format!(
        "cancelled by {who} through registrectl at {}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    let d = ops.cancel(env, id, &reason).await?;
    println!("{env}: {id} cancelled: now {} {} ({reason})", d.row.status_id, d.row.status);
    Ok(())
}

async fn requeue(ops: &Ops, config: &Config, environment: Option<&str>, older_than: Duration) -> i32 {
    let envs = match environment {
        Some(name) => match ops.env(name) {
            Ok(env) => vec![env],
            Err(e) => return fail(e),
        },
        None => ops.environments(),
    };
    let mut code = EXIT_OK;
    for env in envs {
        match ops.requeue_stuck(env, older_than, config.queue.max_attempts, "registrectl requeue-stuck").await {
            Ok(r) => println!(
                "{env}: {} expired lease(s) reaped, {} stuck extraction row(s) and {} stuck OCR row(s) requeued (no lease, untouched for {} s or more)",
                r.reaped,
                r.stuck_extraction,
                r.stuck_ocr,
                older_than.as_secs()
            ),
            // Not a failure: nothing this registrectl can do there, said as a note (exit 0).
            Err(e @ OpsError::RestUnsupported { .. }) => println!("{env}: skipped: {e}"),
            Err(e) => {
                eprintln!("registrectl: {e}");
                code = code.max(exit_code(&e));
            }
        }
    }
    code
}

async fn release(ops: &Ops, worker_id: &str, server: Option<String>, force: bool, watch: Duration) -> Result<(), OpsError> {
    if !force {
        println!("watching the lease of {worker_id} for {} ms (is it still renewed?)", watch.as_millis());
    }
    let server = server.map(|s| if s.is_empty() || s == "(default)" { None } else { Some(s) });
    let r = ops.live().release_lease(worker_id, server, force, watch).await?;
    let why = match r.was {
        "expired" => "its lease had expired",
        "not_renewed" => "nobody renewed its lease",
        _ => "forced",
    };
    println!(
        "released the {} capacity lease of {} on server {} ({why}); its pool assignment is removed",
        r.kind,
        r.worker_id,
        r.server.as_deref().unwrap_or("(default)")
    );
    Ok(())
}
