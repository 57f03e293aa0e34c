//! The `index` rows' structured data (`index_data`, docs/ocr.md, Structured index) for
//! `registrectl export-index` (rows read, filtered by completion time and lot) and
//! `registrectl index-backfill` (rows at 5 read before index_data existed, and the write of what
//! the backfill computed). Keyset pages, so an export of a large environment never holds one
//! long query or the whole table in memory.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use registre_config::EnvName;
use uuid::Uuid;

use crate::db::timed;
use crate::{Ops, OpsError};

/// One completed `index` row with its index_data.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct IndexRow {
    pub id: Uuid,
    pub document_number: Option<String>,
    pub ocr_completed_at: Option<DateTime<Utc>>,
    pub index_data: serde_json::Value,
}

/// One `index` row at 5 without index_data, whose PDF is stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BackfillRow {
    pub id: Uuid,
    pub document_number: Option<String>,
    pub supabase_path: String,
    pub ocr_completed_at: Option<DateTime<Utc>>,
}

/// Where the next page starts: after (ocr_completed_at, id) of the last row.
pub type After = Option<(Option<DateTime<Utc>>, Uuid)>;

/// One keyset page of completed `index` rows (`document_source = 'index'`, status 5) meeting
/// `condition`, oldest completion first. Binds: $1 since (completed at or after, when not null),
/// $2 and $3 the (ocr_completed_at, id) to start after (when $3 is not null), $4 the page size;
/// `condition` may use $5 and up.
fn index_page_sql(columns: &str, condition: &str) -> String {
    format!(
        "SELECT {columns} FROM extraction_queue
          WHERE document_source = 'index' AND status_id = 5 AND {condition}
            AND ($1::timestamptz IS NULL OR ocr_completed_at >= $1)
            AND ($3::uuid IS NULL OR (coalesce(ocr_completed_at, '-infinity'), id) > (coalesce($2::timestamptz, '-infinity'), $3))
          ORDER BY coalesce(ocr_completed_at, '-infinity'), id
          LIMIT $4"
    )
}

impl Ops {
    /// A page of completed `index` rows with index_data, oldest completion first: completed at or
    /// after `since` when given, of lot `lot` (digits compared, as "3 142 828" or "3142828": the
    /// row's document number, or a page's lot) when given.
    pub async fn index_rows(&self, env: EnvName, since: Option<DateTime<Utc>>, lot: Option<&str>, after: After, limit: i64) -> Result<Vec<IndexRow>, OpsError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            index_page_sql(
                "id, document_number, ocr_completed_at, index_data",
                "index_data IS NOT NULL
                 AND ($5::text IS NULL
                      OR regexp_replace(coalesce(document_number, ''), '[^0-9]', '', 'g') = $5
                      OR EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(index_data->'pages', '[]'::jsonb)) AS p
                                  WHERE regexp_replace(coalesce(p->>'lot', ''), '[^0-9]', '', 'g') = $5))",
            )
        });
        let pool = self.pool(env, "export-index")?;
        let lot_digits: Option<String> = lot.map(|l| l.chars().filter(char::is_ascii_digit).collect());
        let (after_at, after_id) = after.map_or((None, None), |(t, id)| (t, Some(id)));
        let query = sqlx::query_as::<_, IndexRow>(SQL.as_str()).bind(since).bind(after_at).bind(after_id).bind(limit).bind(lot_digits);
        timed(env, "reading index rows", query.fetch_all(pool)).await
    }

    /// A page of `index` rows at 5 without index_data whose PDF is stored (completed at or after
    /// `since` when given).
    pub async fn index_rows_to_backfill(&self, env: EnvName, since: Option<DateTime<Utc>>, after: After, limit: i64) -> Result<Vec<BackfillRow>, OpsError> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            index_page_sql(
                "id, document_number, supabase_path, ocr_completed_at",
                "index_data IS NULL AND supabase_path IS NOT NULL AND supabase_path <> ''",
            )
        });
        let pool = self.pool(env, "index-backfill")?;
        let (after_at, after_id) = after.map_or((None, None), |(t, id)| (t, Some(id)));
        let query = sqlx::query_as::<_, BackfillRow>(SQL.as_str()).bind(since).bind(after_at).bind(after_id).bind(limit);
        timed(env, "reading index rows to backfill", query.fetch_all(pool)).await
    }

    /// Writes a backfilled index_data: only on a row still at 5 that still has none (a row retried
    /// meanwhile, or filled by an OCR worker, is left alone). Whether it was written.
    pub async fn store_index_data(&self, env: EnvName, id: Uuid, index_data: &serde_json::Value) -> Result<bool, OpsError> {
        let pool = self.pool(env, "index-backfill")?;
        let done = timed(
            env,
            "writing index_data",
            sqlx::query("UPDATE extraction_queue SET index_data = $2, updated_at = now() WHERE id = $1 AND status_id = 5 AND index_data IS NULL")
                .bind(id)
                .bind(index_data)
                .execute(pool),
        )
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
