//! `registrectl export-index` and `registrectl index-backfill`: the index des immeubles as data
//! (`index_data`, docs/ocr.md, Structured index) out of the queue as CSV, and computed for `index`
//! rows read before it existed.
//!
//! export-index writes one CSV line per party of each inscription (one line with empty party
//! fields for an inscription without parties), RFC 4180 quoting through the `csv` crate, UTF-8.
//! index-backfill reads each row's stored PDF again with the configured engine while holding an
//! `index-ocr` capacity lease, like any OCR worker, so a backfill never oversubscribes a server.

use chrono::{DateTime, Utc};
use registre_capacity::{CapacityManager, CapacitySettings, WorkerType};
use registre_config::Config;
use registre_domain::index_data::IndexData;
use registre_ocr::{engine_from_config, Parallelism};
use registre_ops::index_rows::After;
use registre_ops::{Ops, OpsError};
use registre_ratelimit::{RateLimitSettings, RateLimiter};
use registre_storage::{ObjectPath, Storage};
use tokio_util::sync::CancellationToken;

use crate::{EXIT_FAILED, EXIT_OK, EXIT_USAGE};

/// The CSV columns, in order.
pub const COLUMNS: [&str; 11] = ["row id", "document number", "lot", "page", "date", "numero", "nature", "qualite", "nom", "remarques", "radiations"];

// `export-index`'s filters (registrectl's command line, args.rs, and the tests build it).
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ExportArgs {
    /// Environment to read [default: the first configured, prod]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Only rows whose OCR completed at or after WHEN: an RFC 3339 time or an age such as 90m, 2h, 7d
    #[arg(long, value_name = "WHEN", value_parser = crate::args::since_arg)]
    pub since: Option<DateTime<Utc>>,
    /// Only this lot ("3 142 828" or 3142828)
    #[arg(long, value_parser = lot_arg)]
    pub lot: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct BackfillArgs {
    /// Environment to read and write [default: the first configured, prod]
    #[arg(long, value_name = "ENV")]
    pub environment: Option<String>,
    /// Only rows whose OCR completed at or after WHEN: an RFC 3339 time or an age such as 90m, 2h, 7d
    #[arg(long, value_name = "WHEN", value_parser = crate::args::since_arg)]
    pub since: Option<DateTime<Utc>>,
}

/// `--lot` must hold digits (spaces allowed): a typo would silently export nothing.
fn lot_arg(raw: &str) -> Result<String, String> {
    if raw.chars().any(|c| c.is_ascii_digit()) && raw.chars().all(|c| c.is_ascii_digit() || c == ' ') {
        Ok(raw.to_string())
    } else {
        Err("expected a lot number such as \"3 142 828\"".into())
    }
}

/// The CSV lines of one row's index_data (without the header).
pub fn csv_records(id: &str, document_number: &str, data: &IndexData) -> Vec<[String; 11]> {
    let mut out = Vec::new();
    for page in &data.pages {
        for ins in &page.inscriptions {
            let common = |qualite: String, nom: String| {
                [
                    id.to_string(),
                    document_number.to_string(),
                    page.lot.clone().unwrap_or_default(),
                    page.page.to_string(),
                    ins.date_presentation.clone().unwrap_or_default(),
                    ins.numero.clone().unwrap_or_default(),
                    ins.nature.clone().unwrap_or_default(),
                    qualite,
                    nom,
                    ins.remarques.clone().unwrap_or_default(),
                    ins.radiations.join("; "),
                ]
            };
            if ins.parties.is_empty() {
                out.push(common(String::new(), String::new()));
            }
            for party in &ins.parties {
                out.push(common(party.qualite.clone().unwrap_or_default(), party.nom.clone()));
            }
        }
    }
    out
}

const PAGE_ROWS: i64 = 200;

pub async fn export(ops: &Ops, args: ExportArgs) -> i32 {
    match export_to(ops, args, std::io::stdout().lock()).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("registrectl: {e}");
            e.exit_code()
        }
    }
}

/// Why an export or a backfill stopped.
#[derive(Debug, thiserror::Error)]
pub enum IndexCommandError {
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error("writing the CSV: {0}")]
    Csv(#[from] ::csv::Error),
    #[error("{0}")]
    Setup(String),
}

impl IndexCommandError {
    fn exit_code(&self) -> i32 {
        match self {
            IndexCommandError::Ops(OpsError::UnknownEnvironment(..)) | IndexCommandError::Setup(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }
}

/// The export, written to `out` (stdout for the command, a buffer for the tests).
pub async fn export_to(ops: &Ops, args: ExportArgs, out: impl std::io::Write) -> Result<(), IndexCommandError> {
    let env = crate::commands::environment(ops, args.environment.as_deref())?;
    let mut writer = ::csv::Writer::from_writer(out);
    writer.write_record(COLUMNS)?;
    let mut after: After = None;
    loop {
        let rows = ops.index_rows(env, args.since, args.lot.as_deref(), after, PAGE_ROWS).await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.ocr_completed_at, last.id));
        for row in &rows {
            match serde_json::from_value::<IndexData>(row.index_data.clone()) {
                Ok(data) => {
                    for record in csv_records(&row.id.to_string(), row.document_number.as_deref().unwrap_or(""), &data) {
                        writer.write_record(&record)?;
                    }
                }
                // A value written by hand or by another version: said, not silently dropped.
                Err(e) => eprintln!("registrectl: row {} has an index_data of another shape, left out: {e}", row.id),
            }
        }
        writer.flush().map_err(::csv::Error::from)?;
    }
    writer.flush().map_err(::csv::Error::from)?;
    Ok(())
}

pub async fn backfill(config: &Config, ops: &Ops, args: BackfillArgs) -> i32 {
    match backfill_run(config, ops, args).await {
        Ok(0) => EXIT_OK,
        Ok(failed) => {
            eprintln!("registrectl: {failed} row(s) could not be read (above)");
            EXIT_FAILED
        }
        Err(e) => {
            eprintln!("registrectl: {e}");
            e.exit_code()
        }
    }
}

/// How many rows failed.
async fn backfill_run(config: &Config, ops: &Ops, args: BackfillArgs) -> Result<u64, IndexCommandError> {
    let env = crate::commands::environment(ops, args.environment.as_deref())?;
    let setup = |what: &str, e: String| IndexCommandError::Setup(format!("{what}: {e}"));
    let redis = registre_runtime::redis_connection(&config.redis_url).map_err(|e| setup("REDIS_URL", e.to_string()))?;
    let storage = Storage::from_config(&config.storage).map_err(|e| setup("STORAGE_URL", e.to_string()))?;
    let limiter = RateLimiter::new(redis.clone(), RateLimitSettings::from_config(&config.rate_limit)).map_err(|e| setup("rate limiter", e.to_string()))?;
    let engine = engine_from_config(&config.ocr_engine, limiter).map_err(|e| setup("OCR engine", e.to_string()))?;
    let capacity = CapacityManager::new(redis, CapacitySettings::from_config(config));
    let parallelism = Parallelism::from_cpu(capacity.settings().cost(WorkerType::IndexOcr).cpu);
    let worker_id = format!("registrectl-index-backfill-{}-{}", registre_runtime::host_name(), std::process::id());
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    eprintln!("registrectl: waiting for an index-ocr capacity lease as {worker_id}");
    let Some(lease) = capacity.wait_for_lease(&worker_id, WorkerType::IndexOcr, &cancel).await else {
        return Err(IndexCommandError::Setup("interrupted before capacity was granted".into()));
    };
    let (mut done, mut failed) = (0u64, 0u64);
    let mut after: After = None;
    'pages: loop {
        let rows = ops.index_rows_to_backfill(env, args.since, after, PAGE_ROWS).await?;
        let Some(last) = rows.last() else { break };
        after = Some((last.ocr_completed_at, last.id));
        for row in rows {
            if cancel.is_cancelled() || !lease.is_held() {
                eprintln!("registrectl: stopping (interrupted or capacity lease lost) after {done} row(s)");
                break 'pages;
            }
            let number = row.document_number.as_deref().unwrap_or("?");
            let read = async {
                let object = ObjectPath::parse(&row.supabase_path).map_err(|e| format!("supabase_path {:?}: {e}", row.supabase_path))?;
                let pdf = storage.get(&object).await.map_err(|e| format!("PDF could not be downloaded: {e}"))?;
                let output = engine.extract_index(&pdf, parallelism).await.map_err(|e| e.to_string())?;
                output.index_data.ok_or_else(|| format!("the {} engine reads no index data", output.engine))
            };
            match read.await {
                Ok(data) => {
                    let value = serde_json::to_value(&data).map_err(|e| IndexCommandError::Setup(e.to_string()))?;
                    let inscriptions: usize = data.pages.iter().map(|p| p.inscriptions.len()).sum();
                    if ops.store_index_data(env, row.id, &value).await? {
                        done += 1;
                        println!("{} index {number}: {} page(s), {inscriptions} inscription(s), {} warning(s)", row.id, data.pages.len(), data.warnings.len());
                    } else {
                        println!("{} index {number}: changed meanwhile (retried or already filled), left alone", row.id);
                    }
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("{} index {number}: {e}", row.id);
                }
            }
        }
    }
    if let Err(e) = lease.release().await {
        eprintln!("registrectl: releasing the capacity lease failed (it expires by itself): {e}");
    }
    println!("{done} row(s) backfilled, {failed} failed");
    Ok(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use registre_domain::index_data::{IndexPage, Inscription, Party};

    #[test]
    fn one_line_per_party_and_one_for_an_inscription_without_parties() {
        let ins = |numero: &str, parties: Vec<Party>| Inscription {
            date_presentation: Some("1995-06-06".into()),
            numero: Some(numero.into()),
            nature: Some("Vente".into()),
            parties,
            remarques: Some("Montant : 563 000,00 $".into()),
            avis_adresse: None,
            radiations: vec!["20 619 536".into(), "21 000 001".into()],
        };
        let data = IndexData {
            engine: "tesseract".into(),
            pages: vec![IndexPage {
                page: 1,
                format: "modern-inscription".into(),
                circonscription: Some("Laval".into()),
                cadastre: Some("Cadastre du Québec".into()),
                lot: Some("3 142 828".into()),
                inscriptions: vec![
                    ins("8 173 504", vec![Party { nom: "OUELLET, JEAN".into(), qualite: Some("Vendeur".into()) }, Party { nom: "LEBLANC, \"NAT\"".into(), qualite: None }]),
                    ins("8 173 505", vec![]),
                ],
            }],
            warnings: vec![],
        };
        let records = csv_records("r1", "3 142 828", &data);
        assert_eq!(records.len(), 3);
        let mut w = ::csv::Writer::from_writer(Vec::new());
        w.write_record(COLUMNS).unwrap();
        for r in &records {
            w.write_record(r).unwrap();
        }
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "row id,document number,lot,page,date,numero,nature,qualite,nom,remarques,radiations\n\
             r1,3 142 828,3 142 828,1,1995-06-06,8 173 504,Vente,Vendeur,\"OUELLET, JEAN\",\"Montant : 563 000,00 $\",20 619 536; 21 000 001\n\
             r1,3 142 828,3 142 828,1,1995-06-06,8 173 504,Vente,,\"LEBLANC, \"\"NAT\"\"\",\"Montant : 563 000,00 $\",20 619 536; 21 000 001\n\
             r1,3 142 828,3 142 828,1,1995-06-06,8 173 505,Vente,,,\"Montant : 563 000,00 $\",20 619 536; 21 000 001\n"
        );
    }

    #[test]
    fn lot_and_since_are_checked() {
        assert_eq!(lot_arg("3 142 828"), Ok("3 142 828".to_string()));
        assert!(lot_arg("trois").is_err());
        assert!(lot_arg(" ").is_err());
        assert!(crate::args::since_arg("7d").is_ok());
        assert!(crate::args::since_arg("hier").is_err());
    }
}
