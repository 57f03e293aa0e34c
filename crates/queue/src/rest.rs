//! The Supabase REST backend: the same SQL functions called through PostgREST
//! (`POST {SUPABASE_URL}/rest/v1/rpc/<function>` with a JSON object of named arguments), with the
//! service key in the `apikey` and `Authorization: Bearer` headers. Replies are read as PostgREST
//! documents them: a set-returning function answers a JSON array, a scalar function the bare JSON
//! value, an error `{"code", "message", "details", "hint"}` with a 4xx/5xx status.

use postgrest::Postgrest;
use registre_config::{EnvName, Secret};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use url::Url;

use uuid::Uuid;

use crate::row::{row_count, AccountRow, ClaimedRow, CrashRow, FailRow, WaitingRow};
use crate::*;

pub struct RestQueue {
    env: EnvName,
    client: Postgrest,
    endpoint: String,
    settings: QueueSettings,
}

impl std::fmt::Debug for RestQueue {
    // The client's headers hold the service key: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestQueue")
            .field("env", &self.env)
            .field("endpoint", &self.endpoint)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// PostgREST error codes meaning the function or table does not exist (not migrated).
const MISSING_CODES: &[&str] = &["PGRST202", "PGRST205", "42883", "42P01"];

impl RestQueue {
    /// `supabase_url` is the project URL (`https://<ref>.supabase.co`); calls go to `/rest/v1/rpc/`.
    pub fn new(env: EnvName, supabase_url: &Url, service_key: &Secret, settings: QueueSettings) -> Result<RestQueue, QueueError> {
        let key = service_key.expose();
        // postgrest panics on a header value it cannot send: refuse it here with a clear error.
        if key.is_empty() || !key.bytes().all(|b| (0x21..0x7f).contains(&b)) {
            return Err(QueueError::Setup {
                env,
                detail: "the Supabase service key contains characters that cannot be sent in an HTTP header".into(),
            });
        }
        let endpoint = format!("{}/rest/v1", supabase_url.as_str().trim_end_matches('/'));
        let client = Postgrest::new(endpoint.clone())
            .insert_header("apikey", key)
            .insert_header("Authorization", format!("Bearer {key}"));
        Ok(RestQueue { env, client, endpoint, settings })
    }

    async fn rpc<T: DeserializeOwned>(&self, operation: &'static str, function: &str, args: Value) -> Result<T, QueueError> {
        let env = self.env;
        let response = self
            .client
            .rpc(function, args.to_string())
            .execute()
            .await
            .map_err(|e| QueueError::Http { env, operation, message: e.to_string() })?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| QueueError::Http { env, operation, message: e.to_string() })?;
        if !(200..300).contains(&status) {
            let parsed: Option<Value> = serde_json::from_str(&body).ok();
            let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).and_then(Value::as_str).map(str::to_string);
            let code = field("code").unwrap_or_default();
            if MISSING_CODES.contains(&code.as_str()) {
                return Err(QueueError::NotMigrated { env });
            }
            let message = match field("message") {
                Some(m) if !code.is_empty() => format!("{code}: {m}"),
                Some(m) => m,
                None => body.chars().take(300).collect(),
            };
            return Err(QueueError::Rest { env, operation, status, message });
        }
        serde_json::from_str(&body).map_err(|e| QueueError::Reply {
            env,
            operation,
            detail: format!("{e} in {}", body.chars().take(200).collect::<String>()),
        })
    }

    /// A set-returning function's reply (a JSON array): its first row, None when it is empty.
    async fn rpc_row<T: DeserializeOwned>(&self, operation: &'static str, function: &str, args: Value) -> Result<Option<T>, QueueError> {
        let rows: Vec<T> = self.rpc(operation, function, args).await?;
        Ok(rows.into_iter().next())
    }
}

impl Queue for RestQueue {
    fn env(&self) -> EnvName {
        self.env
    }

    async fn claim_extraction(&self, worker_id: &str, claim_token: Uuid) -> Result<Option<Job>, QueueError> {
        let row: Option<ClaimedRow> = self
            .rpc_row(
                "claim for extraction",
                "queue_claim_extraction",
                json!({ "p_worker_id": worker_id, "p_lease_ms": self.settings.lease_ttl_ms, "p_claim_token": claim_token }),
            )
            .await?;
        Ok(ClaimedRow::job(row, self.env, Stage::Extraction))
    }

    async fn claim_ocr(&self, worker_id: &str, source: DocumentSource, claim_token: Uuid) -> Result<Option<Job>, QueueError> {
        let row: Option<ClaimedRow> = self
            .rpc_row(
                "claim for OCR",
                "queue_claim_ocr",
                json!({
                    "p_worker_id": worker_id,
                    "p_source": source.as_str(),
                    "p_lease_ms": self.settings.lease_ttl_ms,
                    "p_claim_token": claim_token,
                }),
            )
            .await?;
        Ok(ClaimedRow::job(row, self.env, Stage::Ocr))
    }

    async fn renew(&self, job: &Job) -> Result<Transition, QueueError> {
        let applied: bool = self
            .rpc(
                "renew lease",
                "queue_renew_lease",
                json!({ "p_id": job.id, "p_claim_token": job.claim_token, "p_lease_ms": self.settings.lease_ttl_ms }),
            )
            .await?;
        Ok(Transition::from_bool(applied))
    }

    async fn complete_extraction(&self, job: &Job, supabase_path: &str, fetched_as: Option<&str>) -> Result<Transition, QueueError> {
        let applied: bool = self
            .rpc(
                "complete extraction",
                "queue_complete_extraction",
                json!({
                    "p_id": job.id,
                    "p_claim_token": job.claim_token,
                    "p_supabase_path": supabase_path,
                    "p_fetched_as": fetched_as,
                }),
            )
            .await?;
        Ok(Transition::from_bool(applied))
    }

    async fn complete_ocr_with(&self, job: &Job, texts: OcrTexts<'_>) -> Result<Transition, QueueError> {
        let mut args = json!({
            "p_id": job.id,
            "p_claim_token": job.claim_token,
            "p_file_content": texts.file_content,
            "p_boosted_file_content": texts.boosted_file_content,
        });
        // Only when there is data: a call without it is the four-argument call of before 0070.
        if let (Some(data), Some(map)) = (texts.index_data, args.as_object_mut()) {
            map.insert("p_index_data".into(), data.clone());
        }
        let applied: bool = self.rpc("complete OCR", "queue_complete_ocr", args).await?;
        Ok(Transition::from_bool(applied))
    }

    async fn fail(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        let (function, operation) = match job.stage {
            Stage::Extraction => ("queue_fail_extraction", "fail extraction"),
            Stage::Ocr => ("queue_fail_ocr", "fail OCR"),
        };
        let row: Option<FailRow> = self
            .rpc_row(
                operation,
                function,
                json!({
                    "p_id": job.id,
                    "p_claim_token": job.claim_token,
                    "p_error": storable(error),
                    "p_backoff_base_ms": self.settings.backoff_base_ms,
                    "p_backoff_max_ms": self.settings.backoff_max_ms,
                    "p_default_max_attempts": self.settings.default_max_attempts,
                }),
            )
            .await?;
        Ok(FailRow::outcome(row))
    }

    async fn fail_final(&self, job: &Job, error: &str) -> Result<FailOutcome, QueueError> {
        if job.stage == Stage::Ocr {
            return self.fail(job, error).await;
        }
        let row: Option<FailRow> = self
            .rpc_row(
                "fail extraction (final)",
                "queue_fail_extraction_final",
                json!({ "p_id": job.id, "p_claim_token": job.claim_token, "p_error": error }),
            )
            .await?;
        Ok(FailRow::outcome(row))
    }

    async fn release(&self, job: &Job) -> Result<Transition, QueueError> {
        let applied: bool = self
            .rpc("release", "queue_release", json!({ "p_id": job.id, "p_claim_token": job.claim_token }))
            .await?;
        Ok(Transition::from_bool(applied))
    }

    async fn reap_expired(&self) -> Result<u64, QueueError> {
        let n: i64 = self
            .rpc(
                "reap expired leases",
                "queue_reap_expired",
                json!({ "p_default_max_attempts": self.settings.default_max_attempts }),
            )
            .await?;
        Ok(row_count(n))
    }

    async fn count_waiting(&self) -> Result<WaitingCounts, QueueError> {
        let rows: Vec<WaitingRow> = self.rpc("count waiting rows", "queue_count_waiting", json!({})).await?;
        Ok(WaitingRow::counts(rows))
    }

    async fn release_claim(&self, claim_token: Uuid) -> Result<u64, QueueError> {
        let n: i64 = self
            .rpc("release a lost claim", "queue_release_claim", json!({ "p_claim_token": claim_token }))
            .await?;
        Ok(row_count(n))
    }

    async fn release_after_crash(&self, job: &Job, error: &str, max_crashes: i32) -> Result<CrashOutcome, QueueError> {
        let row: Option<CrashRow> = self
            .rpc_row(
                "release after a browser crash",
                "queue_release_after_crash",
                json!({
                    "p_id": job.id,
                    "p_claim_token": job.claim_token,
                    "p_error": storable(error),
                    "p_max_crashes": max_crashes,
                }),
            )
            .await?;
        Ok(CrashRow::outcome(row))
    }

    async fn acquire_account(&self, holder: &str, lease_ms: i32) -> Result<Option<LentAccount>, QueueError> {
        let row: Option<AccountRow> = self
            .rpc_row(
                "acquire a registry account",
                "queue_acquire_account",
                json!({ "p_holder": holder, "p_lease_ms": lease_ms }),
            )
            .await?;
        Ok(AccountRow::lent(row))
    }

    async fn renew_account(&self, id: Uuid, holder: &str, lease_ms: i32) -> Result<Transition, QueueError> {
        let applied: bool = self
            .rpc(
                "renew a registry account",
                "queue_renew_account",
                json!({ "p_id": id, "p_holder": holder, "p_lease_ms": lease_ms }),
            )
            .await?;
        Ok(Transition::from_bool(applied))
    }

    async fn release_account(&self, id: Uuid, holder: &str) -> Result<Transition, QueueError> {
        let applied: bool = self
            .rpc("release a registry account", "queue_release_account", json!({ "p_id": id, "p_holder": holder }))
            .await?;
        Ok(Transition::from_bool(applied))
    }

    async fn report_account_login(&self, id: Uuid, success: bool) -> Result<(), QueueError> {
        let _: bool = self
            .rpc("record a registry login", "queue_report_account_login", json!({ "p_id": id, "p_success": success }))
            .await?;
        Ok(())
    }
}
