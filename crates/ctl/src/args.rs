//! registrectl's command line, declared with clap's derive. It is parsed before the configuration
//! is loaded, so `--help`, `completions` and a typo answer without any environment set. Help and
//! errors are clap's: a refused argument is `error: …` naming it, the usage, exit 2; `--help` exits 0.
//! Durations go through humantime, bounded here so no age can overflow a date.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand};
use uuid::Uuid;

use crate::export_index::{BackfillArgs, ExportArgs};

/// The document sources a row can have (the database's document_source enum).
const SOURCES: [&str; 3] = ["index", "acte", "plan_cadastraux"];

/// What follows every help page of the top level.
const EXIT_CODES: &str = "Exit codes: 0 done, 1 the operation failed (said on stderr), 2 bad arguments or configuration.\n\
Each command has its own help: registrectl <COMMAND> --help.";

#[derive(Debug, Parser)]
#[command(
    name = "registrectl",
    version,
    about = "The operators' command: the queue's migrations, its rows, the capacity and the registry site",
    after_help = EXIT_CODES,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Apply the queue migrations to every configured environment
    ///
    /// Applies crates/queue/migrations, then crates/queue/functions, to every environment with a
    /// direct database URL (PROD_/STAGING_/DEV_DATABASE_URL); prints what it applied, or
    /// "up to date". Idempotent.
    #[command(verbatim_doc_comment)]
    Migrate,

    /// Rows per environment and status, oldest waiting, workers, capacity, rate limit, pool
    ///
    /// Rows per environment × status × source, oldest waiting row per stage, completions in the last
    /// hour, live workers, capacity per server, the shared rate limit's current window and the OCR pool
    /// allocation. --json prints the same as one JSON object for scripts. Exit 1 when an environment or
    /// Redis did not answer (what did answer is still printed).
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),

    /// Queue one document (flags) or many (--csv FILE), validated like the API
    ///
    /// SOURCE is index, acte or plan_cadastraux; index and plan_cadastraux need --cadastre, acte needs
    /// --acte-type (the API's rules). A document already waiting or in progress is not queued twice.
    /// The CSV file has a header line naming its columns among document_source, document_number,
    /// circonscription_fonciere, cadastre, designation_secondaire, acte_type; each refused line is
    /// reported with its line number, the others are queued. Exit 1 when any line was refused,
    /// 2 when the flags themselves are refused.
    #[command(verbatim_doc_comment)]
    Enqueue(EnqueueArgs),

    /// One row with its details
    ///
    /// One row: status, attempts, errors, timings, leases, what delivered its document (fetched as)
    /// and an excerpt of its OCR text; --json adds index_data for index rows. Exit 1 if no such row.
    #[command(verbatim_doc_comment)]
    Show(ShowArgs),

    /// An Erreur row (or every one, --errors) back to waiting
    ///
    /// An Erreur (4) row goes back to waiting: to 3 (OCR only) when its PDF is stored and only OCR
    /// failed, else to 1; attempts reset. --errors retries every Erreur row, only of SOURCE with
    /// --source, only those that failed at or after WHEN with --since (an RFC 3339 time such as
    /// 2026-12-01T04:00:00Z, or an age such as 90m, 2h, 1d), in batches of 500; prints how many.
    /// Exit 1 when the one row is not in Erreur.
    #[command(verbatim_doc_comment)]
    Retry(RetryArgs),

    /// A waiting or in-progress row to Erreur, its claim revoked
    ///
    /// A waiting or in-progress row goes to Erreur (4) with error_message saying who cancelled it; its
    /// claim token is cleared, so a worker still holding it cannot complete it. Exit 1 for a final row.
    #[command(verbatim_doc_comment)]
    Cancel(CancelArgs),

    /// Reap expired leases and requeue lease-less rows stuck in 2 or 6
    ///
    /// Runs the reaper (rows whose lease expired go back to waiting, attempt counted), then requeues
    /// rows in status 2 or 6 that have NO lease (claimed by an older system) and have not moved for
    /// DURATION (default MONITOR_STUCK_AFTER_MS, 10 min), counting the attempt and saying so in
    /// error_message. Every environment unless --environment. registre-monitor does the same every round.
    #[command(verbatim_doc_comment)]
    RequeueStuck(RequeueArgs),

    /// Give back the capacity of a dead worker (refused while renewed, unless --force)
    ///
    /// Gives back the CPU/RAM capacity (and the OCR pool assignment) of a worker that is gone, now
    /// instead of at its capacity lease's expiry; queue rows are not touched (requeue-stuck does that).
    /// A capacity lease whose expiry still moves (its process renews it) is refused, exit 1, unless
    /// --force. The lease is watched for one heartbeat interval (CAPACITY_HEARTBEAT_MS) plus a second.
    /// The old name, release-lease, is still accepted (deprecated).
    #[command(verbatim_doc_comment, alias = "release-lease")]
    ReleaseCapacity(ReleaseArgs),

    /// Drive the registry site one step at a time for one document (before deploying)
    ///
    /// Drives the registry site (REGISTRE_BASE_URL, else the site config's) one step at a time with an
    /// account of ENV's worker_accounts (default: the first configured environment), leased as a worker
    /// leases it, so a running worker is never logged out (--account NAME: that account only). Prints a
    /// table: step, the alternative of registry-site.toml that matched, time, ok or what failed; saves a
    /// screenshot and the HTML of every step in a folder it names (--folder, default a new folder under
    /// the system temp dir). Stops before the submit that opens a document (actes: after the results;
    /// index and plans: before the search submit), so nothing is charged. --fetch goes to the end and
    /// downloads the document: it MAY CHARGE the account. Exit 0 when every step passed, 1 otherwise.
    #[command(verbatim_doc_comment)]
    SiteCheck(SiteCheckArgs),

    /// The index des immeubles read as data, as CSV on stdout (one line per party)
    ///
    /// Writes the index des immeubles read as data (index_data of index rows at 5) as CSV on stdout:
    /// one line per party of each inscription, one line with empty party fields for an inscription
    /// without parties. Columns: row id, document number, lot, page, date, numero, nature, qualite,
    /// nom, remarques, radiations (several radiations separated by "; "). RFC 4180 quoting, UTF-8.
    /// Default environment: the first configured (prod).
    #[command(verbatim_doc_comment)]
    ExportIndex(ExportArgs),

    /// Compute index_data for index rows read before it existed
    ///
    /// Computes index_data for index rows already at 5 (Extraction complété) without it, from their
    /// stored PDFs, with the configured OCR engine, holding an index-ocr capacity lease for the whole
    /// run (it waits for capacity like a worker). Prints one line per row; a row that cannot be read is
    /// reported and skipped. Exit 1 when any row failed.
    #[command(verbatim_doc_comment)]
    IndexBackfill(BackfillArgs),

    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    ///
    /// Prints the completion script of SHELL on stdout, e.g.
    ///   registrectl completions bash > /etc/bash_completion.d/registrectl
    ///   registrectl completions zsh > "${fpath[1]}/_registrectl"
    ///   registrectl completions fish > ~/.config/fish/completions/registrectl.fish
    #[command(verbatim_doc_comment)]
    Completions(CompletionsArgs),
}

// `status`: every environment unless one is named.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct StatusArgs {
    /// Print one JSON object (for scripts)
    #[arg(long)]
    pub json: bool,
    /// Only this environment (prod, staging, dev)
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
}

// The fields of a document besides its source and number, as `enqueue` and `site-check` take them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Args)]
pub struct DocumentFields {
    /// circonscription_fonciere
    #[arg(long, value_name = "NAME")]
    pub circonscription: Option<String>,
    /// The cadastre (index and plan_cadastraux)
    #[arg(long, value_name = "NAME")]
    pub cadastre: Option<String>,
    /// designation_secondaire
    #[arg(long, value_name = "TEXT")]
    pub designation: Option<String>,
    /// The acte type (acte)
    #[arg(long, value_name = "TYPE")]
    pub acte_type: Option<String>,
}

// `enqueue`: one document from the flags, or a CSV file of them; never both.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(group(ArgGroup::new("document").required(true).multiple(true).args(["source", "number", "csv"])))]
pub struct EnqueueArgs {
    /// Environment to queue in [default: the first configured, prod]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// The document's source
    #[arg(long, value_parser = SOURCES)]
    pub source: Option<String>,
    /// The document's number
    #[arg(long)]
    pub number: Option<String>,
    #[command(flatten)]
    pub document: DocumentFields,
    /// A CSV file of documents, one per line, with a header line
    #[arg(long, value_name = "FILE", conflicts_with_all = ["source", "number", "circonscription", "cadastre", "designation", "acte_type"])]
    pub csv: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ShowArgs {
    /// The row's id (a UUID)
    #[arg(value_parser = extraction_id)]
    pub id: Uuid,
    /// Environment of the row [default: the first configured, prod]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Print the row as JSON
    #[arg(long)]
    pub json: bool,
}

// `retry`: one row by id, or every Erreur row with --errors (then --source / --since narrow it).
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["id", "errors"])))]
pub struct RetryArgs {
    /// The row's id (a UUID)
    #[arg(value_parser = extraction_id)]
    pub id: Option<Uuid>,
    /// Every Erreur row (no id)
    #[arg(long)]
    pub errors: bool,
    /// Only rows of this source (with --errors)
    #[arg(long, requires = "errors", value_parser = SOURCES)]
    pub source: Option<String>,
    /// Only rows that failed at or after WHEN: an RFC 3339 time or an age such as 90m, 2h, 1d (with --errors)
    #[arg(long, value_name = "WHEN", requires = "errors", value_parser = since_arg)]
    pub since: Option<DateTime<Utc>>,
    /// Environment of the rows [default: the first configured, prod]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
}

/// What `retry` applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryTarget {
    One(Uuid),
    Errors { source: Option<String>, since: Option<DateTime<Utc>> },
}

impl RetryArgs {
    /// The group "which" makes exactly one of the id and --errors present.
    pub fn target(&self) -> RetryTarget {
        match self.id {
            Some(id) if !self.errors => RetryTarget::One(id),
            _ => RetryTarget::Errors { source: self.source.clone(), since: self.since },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CancelArgs {
    /// The row's id (a UUID)
    #[arg(value_parser = extraction_id)]
    pub id: Uuid,
    /// Environment of the row [default: the first configured, prod]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Who cancels, for error_message [default: $USER]
    #[arg(long, value_name = "NAME", value_parser = cancelled_by)]
    pub by: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RequeueArgs {
    /// Only this environment [default: every configured one]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// How long a lease-less row must have been still, e.g. 30m, 2h [default: MONITOR_STUCK_AFTER_MS]
    #[arg(long, value_name = "DURATION", value_parser = duration_arg)]
    pub older_than: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReleaseArgs {
    /// The worker whose capacity to give back (registrectl status lists them)
    #[arg(value_name = "WORKER_ID", value_parser = worker_id)]
    pub worker_id: String,
    /// The SERVER_ID whose keys hold it [default: searched on every server in Redis]
    #[arg(long, value_name = "SERVER_ID")]
    pub server: Option<String>,
    /// Release without watching whether the lease is still renewed
    #[arg(long)]
    pub force: bool,
}

// `site-check`: the document and options of one check.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SiteCheckArgs {
    /// The document's source
    #[arg(long, value_parser = SOURCES)]
    pub source: String,
    /// The document's number
    #[arg(long, value_parser = not_blank)]
    pub number: String,
    #[command(flatten)]
    pub document: DocumentFields,
    /// Environment whose worker_accounts to use [default: the first configured]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Use only this account
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// Where to save each step's screenshot and HTML [default: a new folder under the temp dir]
    #[arg(long, value_name = "DIR")]
    pub folder: Option<PathBuf>,
    /// Go to the end and download the document: it MAY CHARGE the account
    #[arg(long)]
    pub fetch: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Parses a command line (its first item is the program's name). `Err` is clap's: `exit()` prints
/// it (help and version on stdout, exit 0; a refusal on stderr, exit 2).
pub fn parse_from<I, T>(args: I) -> Result<Command, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let cli = Cli::try_parse_from(&args)?;
    // The old name of release-capacity: still accepted, said to be deprecated (stderr only, so the
    // output scripts read is unchanged).
    if args.get(1).is_some_and(|a| a == "release-lease") {
        eprintln!("registrectl: release-lease is deprecated: it releases capacity, use release-capacity");
    }
    Ok(cli.command)
}

/// Writes the completion script of `shell` for the whole command line.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    clap_complete::generate(shell, &mut Cli::command(), "registrectl", out);
}

/// Longest duration an argument accepts (100 years): beyond it a date before it cannot be written
/// (chrono and Postgres timestamps end), and no queue row is that old.
pub const MAX_DURATION_DAYS: u64 = 36_500;

/// Why a duration argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a duration such as 90s, 30m, 2h, 7d ({0})")]
    Syntax(String),
    #[error("a duration of at least 1s is expected")]
    TooShort,
    #[error("a duration of at most {MAX_DURATION_DAYS}d is expected")]
    TooLong,
}

/// A duration as humantime reads it (`90s`, `30m`, `2h`, `7d`, `1h 30m`, …), from 1 s to
/// [`MAX_DURATION_DAYS`] days; overflowing numbers are [`DurationError::TooLong`], never a panic.
pub fn parse_duration(raw: &str) -> Result<Duration, DurationError> {
    let d = humantime::parse_duration(raw.trim()).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => DurationError::TooLong,
        other => DurationError::Syntax(other.to_string()),
    })?;
    if d < Duration::from_secs(1) {
        return Err(DurationError::TooShort);
    }
    if d > Duration::from_secs(MAX_DURATION_DAYS * 86_400) {
        return Err(DurationError::TooLong);
    }
    Ok(d)
}

/// An RFC 3339 time, or an age (`2h`) before `now`.
pub fn parse_since(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, DurationError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = parse_duration(raw)?;
    chrono::Duration::from_std(age).ok().and_then(|age| now.checked_sub_signed(age)).ok_or(DurationError::TooLong)
}

// The value parsers below give clap the reason; clap names the argument and the value:
// `error: invalid value '100000000d' for '--since <WHEN>': …`.

pub(crate) fn since_arg(raw: &str) -> Result<DateTime<Utc>, String> {
    parse_since(raw, Utc::now()).map_err(|e| format!("expected an RFC 3339 time (2026-12-01T04:00:00Z) or an age (90m, 2h, 7d): {e}"))
}

fn duration_arg(raw: &str) -> Result<Duration, String> {
    parse_duration(raw).map_err(|e| e.to_string())
}

fn extraction_id(raw: &str) -> Result<Uuid, String> {
    Uuid::parse_str(raw.trim()).map_err(|_| "not an extraction id (a UUID)".to_string())
}

fn cancelled_by(raw: &str) -> Result<String, String> {
    if raw.chars().count() > 60 || !raw.chars().all(|c| c.is_alphanumeric() || " .-_@'".contains(c)) {
        return Err("at most 60 letters, digits, spaces and . - _ @ '".into());
    }
    Ok(raw.to_string())
}

fn worker_id(raw: &str) -> Result<String, String> {
    let w = raw.trim();
    if w.is_empty() {
        return Err("the worker id is required (registrectl status lists them)".into());
    }
    Ok(w.to_string())
}

fn not_blank(raw: &str) -> Result<String, String> {
    if raw.trim().is_empty() {
        return Err("must not be empty".into());
    }
    Ok(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Command, clap::Error> {
        parse_from(std::iter::once("registrectl").chain(line.split_whitespace()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_subcommand_parses_and_bad_lines_are_refused() {
        assert_eq!(parse("migrate").unwrap(), Command::Migrate);
        assert_eq!(parse("status --json").unwrap(), Command::Status(StatusArgs { json: true, environment: None }));
        let release = Command::ReleaseCapacity(ReleaseArgs { worker_id: "w-1".into(), server: None, force: true });
        assert_eq!(parse("release-capacity w-1 --force").unwrap(), release);
        assert_eq!(parse("release-lease w-1 --force").unwrap(), release, "the old name is an alias");
        let Command::Retry(retry) = parse("retry --errors --source acte --since 2h").unwrap() else { panic!("retry") };
        assert!(matches!(retry.target(), RetryTarget::Errors { source: Some(_), since: Some(_) }));
        let id = Uuid::new_v4();
        let Command::Retry(retry) = parse(&format!("retry {id}")).unwrap() else { panic!("retry") };
        assert_eq!(retry.target(), RetryTarget::One(id));
        assert!(matches!(parse("enqueue --csv f.csv").unwrap(), Command::Enqueue(EnqueueArgs { csv: Some(_), .. })));
        for bad in [
            "",
            "frobnicate",
            "status --color",
            "status --environment a --environment b",
            "show not-a-uuid",
            "retry",
            "retry --errors --source deed",
            "retry --since 2h",
            &format!("retry {id} --errors"),
            "requeue-stuck --older-than soon",
            "enqueue",
            "enqueue --csv f.csv --source index",
            "migrate now",
            "release-capacity",
            "cancel 00000000-0000-0000-0000-000000000000 --by a;b",
            "site-check --source index",
            "completions tcsh",
        ] {
            let e = parse(bad).expect_err(bad);
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
        assert_eq!(parse("retry --help").unwrap_err().exit_code(), 0);
    }

    #[test]
    fn durations_are_bounded_and_never_overflow() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("0s"), Err(DurationError::TooShort));
        assert!(matches!(parse_duration("soon"), Err(DurationError::Syntax(_))));
        // Overflowing or absurd ages are refused, never a panic.
        for absurd in ["100000000d", "36501d", "99999999999999999999s", "18446744073709551615d"] {
            assert_eq!(parse_duration(absurd), Err(DurationError::TooLong), "{absurd}");
            assert_eq!(parse_since(absurd, Utc::now()), Err(DurationError::TooLong), "{absurd}");
        }
        assert!(parse_since("36500d", Utc::now()).is_ok());
        assert_eq!(parse_since("2026-12-01T04:00:00Z", Utc::now()).unwrap().to_rfc3339(), "2026-12-01T04:00:00+00:00");
    }
}
