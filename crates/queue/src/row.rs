//! The rows the queue's SQL functions return, and their ONE decoding into the public results
//! ([`Job`], [`FailOutcome`], [`CrashOutcome`], [`LentAccount`], [`WaitingCounts`]): both backends
//! read the same columns (sqlx `FromRow` for [`crate::PgQueue`], serde for [`crate::RestQueue`],
//! whose set-returning replies are arrays: their first element is the row) and hand them here, so a
//! claimed row means the same thing whichever way it came.

use chrono::{DateTime, Utc};
use registre_config::EnvName;
use uuid::Uuid;

use crate::{status, CrashOutcome, FailOutcome, Job, LentAccount, Stage, WaitingCounts};

/// The shape every claim function returns (same columns for both stages).
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct ClaimedRow {
    id: Uuid,
    claim_token: Uuid,
    document_source: String,
    document_number: Option<String>,
    document_number_normalized: Option<String>,
    circonscription_fonciere: Option<String>,
    cadastre: Option<String>,
    designation_secondaire: Option<String>,
    acte_type: Option<String>,
    supabase_path: Option<String>,
    attempts: i32,
    max_attempts: Option<i32>,
    lease_expires_at: DateTime<Utc>,
}

impl ClaimedRow {
    /// The job of a claim's reply (None: nothing was claimable), tagged with the environment it
    /// came from and the stage it was claimed for.
    pub(crate) fn job(row: Option<ClaimedRow>, env: EnvName, stage: Stage) -> Option<Job> {
        let r = row?;
        Some(Job {
            env,
            stage,
            id: r.id,
            claim_token: r.claim_token,
            document_source: r.document_source,
            document_number: r.document_number.unwrap_or_default(),
            document_number_normalized: r.document_number_normalized,
            circonscription_fonciere: r.circonscription_fonciere,
            cadastre: r.cadastre,
            designation_secondaire: r.designation_secondaire,
            acte_type: r.acte_type,
            supabase_path: r.supabase_path,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            lease_expires_at: r.lease_expires_at,
        })
    }
}

/// What the fail functions return when they applied.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct FailRow {
    status_id: i32,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
}

impl FailRow {
    pub(crate) fn outcome(row: Option<FailRow>) -> FailOutcome {
        match row {
            None => FailOutcome::NotOwner,
            Some(r) => match r.next_attempt_at {
                Some(at) if r.status_id != status::ERROR => FailOutcome::Retry { attempts: r.attempts, not_before: at },
                _ => FailOutcome::Failed { attempts: r.attempts },
            },
        }
    }
}

/// A row of queue_release_after_crash.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct CrashRow {
    status_id: i32,
    browser_crashes: i32,
}

impl CrashRow {
    pub(crate) fn outcome(row: Option<CrashRow>) -> CrashOutcome {
        match row {
            None => CrashOutcome::NotOwner,
            Some(r) if r.status_id == status::ERROR => CrashOutcome::Failed { crashes: r.browser_crashes },
            Some(r) => CrashOutcome::Released { crashes: r.browser_crashes },
        }
    }
}

/// A row of queue_acquire_account.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct AccountRow {
    id: Uuid,
    username: String,
    password: String,
}

impl AccountRow {
    /// The account lent (None: every account is held or failing).
    pub(crate) fn lent(row: Option<AccountRow>) -> Option<LentAccount> {
        row.map(|r| LentAccount { id: r.id, username: r.username, password: registre_config::Secret::new(r.password) })
    }
}

/// One row of queue_count_waiting.
#[derive(Debug, Clone, sqlx::FromRow, serde::Deserialize)]
pub(crate) struct WaitingRow {
    document_source: Option<String>,
    waiting: i64,
}

impl WaitingRow {
    pub(crate) fn counts(rows: Vec<WaitingRow>) -> WaitingCounts {
        let mut counts = WaitingCounts::new();
        for r in rows {
            if let Some(source) = r.document_source {
                *counts.entry(source).or_default() += u64::try_from(r.waiting).unwrap_or(0);
            }
        }
        counts
    }
}

/// A row count returned by a function (reap, release of a lost claim): never negative.
pub(crate) fn row_count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}
