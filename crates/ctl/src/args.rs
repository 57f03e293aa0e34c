//! registrectl's command line, parsed before the configuration is loaded (so `--help` and a typo
//! answer without any environment set). Each subcommand has its own help text; a bad argument is
//! one line naming it, then that subcommand's usage, exit 2.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub const USAGE: &str = "usage: registrectl <command> [options]   (registrectl <command> --help for each)

commands:
  migrate                      apply the queue migrations to every configured environment
  status [--json]              rows per environment and status, oldest waiting, workers, capacity, rate limit, pool
  enqueue                      queue one document (flags) or many (--csv FILE), validated like the API
  show <id>                    one row with its details
  retry <id> | --errors        an Erreur row (or every one, --source / --since) back to waiting
  cancel <id>                  a waiting or in-progress row to Erreur, its claim revoked
  requeue-stuck                reap expired leases and requeue lease-less rows stuck in 2 or 6
  release-lease <worker id>    give back the capacity of a dead worker (refused while renewed, unless --force)
  site-check                   drive the registry site one step at a time for one document (before deploying)
  export-index                 the index des immeubles read as data, as CSV (one line per party)
  index-backfill               compute index_data for index rows read before it existed
  help                         this help

exit codes: 0 done, 1 the operation failed (printed), 2 bad arguments or configuration";

pub const MIGRATE_HELP: &str = "usage: registrectl migrate

Applies crates/queue/migrations to every environment with a direct database URL
(PROD_/STAGING_/DEV_DATABASE_URL); prints what it applied, or \"up to date\". Idempotent.";

pub const STATUS_HELP: &str = "usage: registrectl status [--json] [--environment ENV]

Rows per environment × status × source, oldest waiting row per stage, completions in the last
hour, live workers, capacity per server, the shared rate limit's current window and the OCR pool
allocation. --json prints the same as one JSON object for scripts. Exit 1 when an environment or
Redis did not answer (what did answer is still printed).";

pub const ENQUEUE_HELP: &str = "usage: registrectl enqueue [--environment ENV] --source SOURCE --number NUMBER
                          [--circonscription NAME] [--cadastre NAME] [--designation TEXT] [--acte-type TYPE]
       registrectl enqueue [--environment ENV] --csv FILE

SOURCE is index, acte or plan_cadastraux; index and plan_cadastraux need --cadastre, acte needs
--acte-type (the API's rules). A document already waiting or in progress is not queued twice.
The CSV file has a header line naming its columns among document_source, document_number,
circonscription_fonciere, cadastre, designation_secondaire, acte_type; each refused line is
reported with its line number, the others are queued. Exit 1 when any line was refused,
2 when the flags themselves are refused.";

pub const SHOW_HELP: &str = "usage: registrectl show <id> [--environment ENV] [--json]

One row: status, attempts, errors, timings, leases and excerpts of its OCR text. Exit 1 if no such row.";

pub const RETRY_HELP: &str = "usage: registrectl retry <id> [--environment ENV]
       registrectl retry --errors [--source SOURCE] [--since WHEN] [--environment ENV]

An Erreur (4) row goes back to waiting: to 3 (OCR only) when its PDF is stored and only OCR failed,
else to 1; attempts reset. --errors retries every Erreur row, only of SOURCE with --source, only
those that failed at or after WHEN with --since (an RFC 3339 time such as 2026-12-01T04:00:00Z, or
an age such as 90m, 2h, 1d); prints how many. Exit 1 when the one row is not in Erreur.";

pub const CANCEL_HELP: &str = "usage: registrectl cancel <id> [--environment ENV] [--by NAME]

A waiting or in-progress row goes to Erreur (4) with error_message saying who cancelled it; its claim
token is cleared, so a worker still holding it cannot complete it. Exit 1 for a final row.";

pub const REQUEUE_HELP: &str = "usage: registrectl requeue-stuck [--environment ENV] [--older-than DURATION]

Runs the reaper (rows whose lease expired go back to waiting, attempt counted), then requeues rows in
status 2 or 6 that have NO lease (claimed by an older system) and have not moved for DURATION
(default MONITOR_STUCK_AFTER_MS, 10 min; e.g. 30m, 2h), counting the attempt and saying so in
error_message. Every environment unless --environment. registre-monitor does the same every round.";

pub const RELEASE_HELP: &str = "usage: registrectl release-lease <worker id> [--server SERVER_ID] [--force]

Gives back the capacity (and the OCR pool assignment) of a worker that is gone, now instead of at its
lease's expiry. A lease whose expiry still moves (its process renews it) is refused, exit 1, unless
--force. The lease is watched for one heartbeat interval (CAPACITY_HEARTBEAT_MS) plus a second.
--server names the SERVER_ID whose keys hold it (default: searched on every server in Redis).";

pub const SITE_CHECK_HELP: &str = "usage: registrectl site-check --source index|acte|plan_cadastraux --number N
                          --circonscription C [--cadastre NAME] [--designation TEXT] [--acte-type TYPE]
                          [--environment ENV] [--account NAME] [--folder DIR] [--fetch]

Drives the registry site (REGISTRE_BASE_URL, else the site config's) one step at a time with an account
of ENV's worker_accounts (default: the first configured environment), leased as a worker leases it, so
a running worker is never logged out (--account NAME: that account only). Prints a table: step, the
alternative of registry-site.toml that matched, time, ok or what failed; saves a screenshot and the HTML
of every step in a folder it names (--folder, default a new folder under the system temp dir).
Stops before the submit that opens a document (actes: after the results; index and plans: before the
search submit), so nothing is charged. --fetch goes to the end and downloads the document: it MAY
CHARGE the account. Exit 0 when every step passed, 1 otherwise, 2 on bad arguments.";

/// What `retry` applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryTarget {
    One(Uuid),
    Errors { source: Option<String>, since: Option<DateTime<Utc>> },
}

/// Where `enqueue` takes its documents from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnqueueInput {
    Flags {
        source: Option<String>,
        number: Option<String>,
        circonscription: Option<String>,
        cadastre: Option<String>,
        designation: Option<String>,
        acte_type: Option<String>,
    },
    Csv(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help(&'static str),
    Migrate,
    Status { json: bool, environment: Option<String> },
    Enqueue { environment: Option<String>, input: EnqueueInput },
    Show { id: Uuid, environment: Option<String>, json: bool },
    Retry { target: RetryTarget, environment: Option<String> },
    Cancel { id: Uuid, environment: Option<String>, by: Option<String> },
    RequeueStuck { environment: Option<String>, older_than: Option<std::time::Duration> },
    ReleaseLease { worker_id: String, server: Option<String>, force: bool },
    ExportIndex(crate::export_index::ExportArgs),
    IndexBackfill(crate::export_index::BackfillArgs),
    SiteCheck(SiteCheckArgs),
}

/// The document and options of `site-check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteCheckArgs {
    pub source: String,
    pub number: String,
    pub circonscription: Option<String>,
    pub cadastre: Option<String>,
    pub designation: Option<String>,
    pub acte_type: Option<String>,
    pub environment: Option<String>,
    pub account: Option<String>,
    pub folder: Option<PathBuf>,
    pub fetch: bool,
}

/// A refused command line: the message, and the help of the subcommand it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub message: String,
    pub usage: &'static str,
}

/// Flags and positional arguments of one subcommand.
struct Parsed {
    values: Vec<(String, String)>,
    switches: Vec<String>,
    positional: Vec<String>,
}

fn split(args: &[String], with_value: &[&str], switches: &[&str], usage: &'static str) -> Result<Parsed, ArgError> {
    let err = |message: String| ArgError { message, usage };
    let mut parsed = Parsed { values: Vec::new(), switches: Vec::new(), positional: Vec::new() };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if let Some(flag) = arg.strip_prefix("--") {
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if with_value.contains(&name) {
                let value = match inline {
                    Some(v) => v,
                    None => {
                        i += 1;
                        args.get(i).cloned().ok_or_else(|| err(format!("--{name} needs a value")))?
                    }
                };
                if parsed.values.iter().any(|(n, _)| n == name) {
                    return Err(err(format!("--{name} is given twice")));
                }
                parsed.values.push((name.to_string(), value));
            } else if switches.contains(&name) && inline.is_none() {
                parsed.switches.push(name.to_string());
            } else {
                return Err(err(format!("unknown option --{name}")));
            }
        } else {
            parsed.positional.push(arg.clone());
        }
        i += 1;
    }
    Ok(parsed)
}

impl Parsed {
    fn value(&self, name: &str) -> Option<String> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone())
    }
    fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

fn uuid_arg(value: Option<&String>, what: &str, usage: &'static str) -> Result<Uuid, ArgError> {
    let raw = value.ok_or_else(|| ArgError { message: format!("{what} is required"), usage })?;
    Uuid::parse_str(raw.trim()).map_err(|_| ArgError { message: format!("{raw:?} is not an extraction id (a UUID)"), usage })
}

fn no_more(p: &Parsed, expected: usize, usage: &'static str) -> Result<(), ArgError> {
    if p.positional.len() > expected {
        return Err(ArgError { message: format!("unexpected argument {:?}", p.positional[expected]), usage });
    }
    Ok(())
}

/// Longest duration an argument accepts (100 years): beyond it a date before it cannot be written
/// (chrono and Postgres timestamps end), and no queue row is that old.
pub const MAX_DURATION_DAYS: u64 = 36_500;

/// `90s`, `30m`, `2h`, `1d`, from 1 s to [`MAX_DURATION_DAYS`] days; None for anything else
/// (overflowing numbers included).
pub fn parse_duration(raw: &str) -> Option<std::time::Duration> {
    let raw = raw.trim();
    let (number, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0 && seconds <= MAX_DURATION_DAYS * 86_400).then(|| std::time::Duration::from_secs(seconds))
}

/// An RFC 3339 time, or an age (`2h`) before `now`.
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    let age = parse_duration(raw)?;
    now.checked_sub_signed(chrono::Duration::from_std(age).ok()?)
}

pub fn parse_args(args: &[String]) -> Result<Command, ArgError> {
    let Some(command) = args.first() else {
        return Err(ArgError { message: "a command is required".into(), usage: USAGE });
    };
    let rest = &args[1..];
    let help_asked = rest.iter().any(|a| a == "--help" || a == "-h");
    let usage = match command.as_str() {
        "help" | "--help" | "-h" => return Ok(Command::Help(USAGE)),
        "migrate" => MIGRATE_HELP,
        "status" => STATUS_HELP,
        "enqueue" => ENQUEUE_HELP,
        "show" => SHOW_HELP,
        "retry" => RETRY_HELP,
        "cancel" => CANCEL_HELP,
        "requeue-stuck" => REQUEUE_HELP,
        "release-lease" => RELEASE_HELP,
        "site-check" => SITE_CHECK_HELP,
        "export-index" => crate::export_index::EXPORT_HELP,
        "index-backfill" => crate::export_index::BACKFILL_HELP,
        other => return Err(ArgError { message: format!("unknown command {other:?}"), usage: USAGE }),
    };
    if help_asked {
        return Ok(Command::Help(usage));
    }
    let err = |message: String| ArgError { message, usage };
    match command.as_str() {
        "migrate" => {
            let p = split(rest, &[], &[], usage)?;
            no_more(&p, 0, usage)?;
            Ok(Command::Migrate)
        }
        "status" => {
            let p = split(rest, &["environment"], &["json"], usage)?;
            no_more(&p, 0, usage)?;
            Ok(Command::Status { json: p.switch("json"), environment: p.value("environment") })
        }
        "enqueue" => {
            let fields = ["source", "number", "circonscription", "cadastre", "designation", "acte-type"];
            let mut with_value = vec!["environment", "csv"];
            with_value.extend(fields);
            let p = split(rest, &with_value, &[], usage)?;
            no_more(&p, 0, usage)?;
            let input = match p.value("csv") {
                Some(path) => {
                    if let Some(f) = fields.iter().find(|f| p.value(f).is_some()) {
                        return Err(err(format!("--csv and --{f} cannot be used together: the CSV file gives every field")));
                    }
                    EnqueueInput::Csv(PathBuf::from(path))
                }
                None => {
                    if p.value("source").is_none() && p.value("number").is_none() {
                        return Err(err("give the document with --source and --number (and its other fields), or --csv FILE".into()));
                    }
                    EnqueueInput::Flags {
                        source: p.value("source"),
                        number: p.value("number"),
                        circonscription: p.value("circonscription"),
                        cadastre: p.value("cadastre"),
                        designation: p.value("designation"),
                        acte_type: p.value("acte-type"),
                    }
                }
            };
            Ok(Command::Enqueue { environment: p.value("environment"), input })
        }
        "export-index" => {
            let p = split(rest, &["environment", "since", "lot"], &[], usage)?;
            no_more(&p, 0, usage)?;
            let (since, lot) = (crate::export_index::since_arg(p.value("since"), usage)?, crate::export_index::lot_arg(p.value("lot"), usage)?);
            Ok(Command::ExportIndex(crate::export_index::ExportArgs { environment: p.value("environment"), since, lot }))
        }
        "index-backfill" => {
            let p = split(rest, &["environment", "since"], &[], usage)?;
            no_more(&p, 0, usage)?;
            let since = crate::export_index::since_arg(p.value("since"), usage)?;
            Ok(Command::IndexBackfill(crate::export_index::BackfillArgs { environment: p.value("environment"), since }))
        }
        "show" => {
            let p = split(rest, &["environment"], &["json"], usage)?;
            no_more(&p, 1, usage)?;
            let id = uuid_arg(p.positional.first(), "the row id", usage)?;
            Ok(Command::Show { id, environment: p.value("environment"), json: p.switch("json") })
        }
        "retry" => {
            let p = split(rest, &["environment", "source", "since"], &["errors"], usage)?;
            no_more(&p, 1, usage)?;
            let target = if p.switch("errors") {
                if let Some(extra) = p.positional.first() {
                    return Err(err(format!("--errors retries every Erreur row: no id ({extra:?}) with it")));
                }
                let source = match p.value("source") {
                    None => None,
                    Some(s) if ["acte", "index", "plan_cadastraux"].contains(&s.trim()) => Some(s.trim().to_string()),
                    Some(s) => return Err(err(format!("--source {s:?}: expected acte, index or plan_cadastraux"))),
                };
                let since = match p.value("since") {
                    None => None,
                    Some(s) => Some(parse_since(&s, Utc::now()).ok_or_else(|| {
                        err(format!("--since {s:?}: expected an RFC 3339 time (2026-12-01T04:00:00Z) or an age (90m, 2h, 1d) of at most {MAX_DURATION_DAYS}d"))
                    })?),
                };
                RetryTarget::Errors { source, since }
            } else {
                if p.value("source").is_some() || p.value("since").is_some() {
                    return Err(err("--source and --since go with --errors".into()));
                }
                RetryTarget::One(uuid_arg(p.positional.first(), "the row id (or --errors)", usage)?)
            };
            Ok(Command::Retry { target, environment: p.value("environment") })
        }
        "cancel" => {
            let p = split(rest, &["environment", "by"], &[], usage)?;
            no_more(&p, 1, usage)?;
            let id = uuid_arg(p.positional.first(), "the row id", usage)?;
            let by = p.value("by");
            if let Some(b) = &by {
                if b.chars().count() > 60 || !b.chars().all(|c| c.is_alphanumeric() || " .-_@'".contains(c)) {
                    return Err(err("--by: at most 60 letters, digits, spaces and . - _ @ '".into()));
                }
            }
            Ok(Command::Cancel { id, environment: p.value("environment"), by })
        }
        "requeue-stuck" => {
            let p = split(rest, &["environment", "older-than"], &[], usage)?;
            no_more(&p, 0, usage)?;
            let older_than = match p.value("older-than") {
                None => None,
                Some(s) => Some(parse_duration(&s).ok_or_else(|| err(format!("--older-than {s:?}: expected a duration such as 30m, 2h, 1d, at most {MAX_DURATION_DAYS}d")))?),
            };
            Ok(Command::RequeueStuck { environment: p.value("environment"), older_than })
        }
        "release-lease" => {
            let p = split(rest, &["server"], &["force"], usage)?;
            no_more(&p, 1, usage)?;
            let worker_id = p
                .positional
                .first()
                .map(|w| w.trim().to_string())
                .filter(|w| !w.is_empty())
                .ok_or_else(|| err("the worker id is required (registrectl status lists them)".into()))?;
            Ok(Command::ReleaseLease { worker_id, server: p.value("server"), force: p.switch("force") })
        }
        "site-check" => {
            let p = split(
                rest,
                &["source", "number", "circonscription", "cadastre", "designation", "acte-type", "environment", "account", "folder"],
                &["fetch"],
                usage,
            )?;
            no_more(&p, 0, usage)?;
            let source = p.value("source").map(|s| s.trim().to_string()).ok_or_else(|| err("--source is required".into()))?;
            if !["acte", "index", "plan_cadastraux"].contains(&source.as_str()) {
                return Err(err(format!("--source {source:?}: expected acte, index or plan_cadastraux")));
            }
            let number = p.value("number").filter(|n| !n.trim().is_empty()).ok_or_else(|| err("--number is required".into()))?;
            Ok(Command::SiteCheck(SiteCheckArgs {
                source,
                number,
                circonscription: p.value("circonscription"),
                cadastre: p.value("cadastre"),
                designation: p.value("designation"),
                acte_type: p.value("acte-type"),
                environment: p.value("environment"),
                account: p.value("account"),
                folder: p.value("folder").map(PathBuf::from),
                fetch: p.switch("fetch"),
            }))
        }
        _ => Err(err(format!("unknown command {command:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn each_subcommand_parses_and_has_its_help() {
        assert_eq!(parse_args(&args("migrate")), Ok(Command::Migrate));
        assert_eq!(parse_args(&args("status --json")), Ok(Command::Status { json: true, environment: None }));
        assert_eq!(parse_args(&args("retry --help")), Ok(Command::Help(RETRY_HELP)));
        assert_eq!(parse_args(&args("release-lease w-1 --force")), Ok(Command::ReleaseLease { worker_id: "w-1".into(), server: None, force: true }));
        assert!(matches!(parse_args(&args("retry --errors --source acte --since 2h")), Ok(Command::Retry { target: RetryTarget::Errors { source: Some(_), since: Some(_) }, .. })));
        for bad in ["", "frobnicate", "status --color", "show not-a-uuid", "retry --errors --source deed", "retry --since 2h", "requeue-stuck --older-than soon", "enqueue", "migrate now", "release-lease"] {
            assert!(parse_args(&args(bad)).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(parse_duration("90m"), Some(std::time::Duration::from_secs(5400)));
        assert_eq!(parse_duration("0s"), None);
        // Overflowing or absurd ages are refused, never a panic.
        for absurd in ["100000000d", "36501d", "99999999999999999999s", "18446744073709551615d"] {
            assert_eq!(parse_duration(absurd), None, "{absurd}");
            assert_eq!(parse_since(absurd, Utc::now()), None, "{absurd}");
        }
        assert!(parse_since("36500d", Utc::now()).is_some());
    }
}
