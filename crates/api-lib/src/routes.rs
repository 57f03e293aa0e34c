//! The JSON routes. Each parses its input itself (query, path, body) so that every bad input is a
//! 4xx with a JSON error naming what is wrong, then calls one registre-ops operation (the writes on
//! the writes' own thread, crate::writer).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use registre_config::EnvName;
use registre_ops::db::{ListFilter, DEFAULT_LIMIT, MAX_LIMIT};
use registre_ops::{Cursor, NewExtraction, OpsError};
use serde_json::json;
use uuid::Uuid;

use crate::error::ApiError;
use crate::AppState;

type Params = Result<Query<HashMap<String, String>>, QueryRejection>;

fn params(q: Params, allowed: &[&str]) -> Result<HashMap<String, String>, ApiError> {
    let Query(map) = q.map_err(|e| ApiError::bad_request(format!("bad query string: {}", e.body_text())))?;
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let shown: String = unknown.chars().take(40).collect();
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {shown:?}; expected {}",
            allowed.join(", ")
        )));
    }
    Ok(map)
}

/// `?environment=` (default: the first configured, prod when it is).
fn environment(state: &AppState, map: &HashMap<String, String>) -> Result<EnvName, ApiError> {
    match map.get("environment").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        Some(name) => Ok(state.ops.env(name)?),
        None => state
            .ops
            .environments()
            .first()
            .copied()
            .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no environment configured")),
    }
}

/// What a route on one row reads, checked in this order: the query string (only `allowed` keys),
/// the environment, then the row id of the path.
fn row_target(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
    q: Params,
    allowed: &[&str],
) -> Result<(HashMap<String, String>, EnvName, Uuid), ApiError> {
    let map = params(q, allowed)?;
    let env = environment(state, &map)?;
    Ok((map, env, row_id(path)?))
}

fn row_id(path: Result<Path<String>, PathRejection>) -> Result<Uuid, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request(e.body_text()))?;
    Uuid::parse_str(raw.trim()).map_err(|_| {
        let shown: String = raw.chars().take(60).collect();
        ApiError::bad_request(format!("{shown:?} is not an extraction id (a UUID)"))
    })
}

pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// 200 when Redis and every environment answer; 503 naming each one that does not.
pub async fn ready(State(state): State<AppState>) -> Response {
    let envs = state.ops.environments();
    let pings = futures_util::future::join_all(envs.iter().map(|env| state.ops.ping(*env)));
    let (env_results, redis) = tokio::join!(pings, state.ops.live().ping());
    let mut down = Vec::new();
    let mut checks = serde_json::Map::new();
    match redis {
        Ok(()) => {
            checks.insert("redis".into(), json!("ok"));
        }
        Err(e) => {
            checks.insert("redis".into(), json!(e.to_string()));
            down.push(format!("Redis ({e})"));
        }
    }
    for (env, r) in envs.iter().zip(env_results) {
        match r {
            Ok(()) => {
                checks.insert(env.as_str().into(), json!("ok"));
            }
            // A REST-only environment cannot be pinged from here; it is not "down".
            Err(OpsError::RestUnsupported { .. }) => {
                checks.insert(env.as_str().into(), json!("not checked (Supabase REST only)"));
            }
            Err(e) => {
                checks.insert(env.as_str().into(), json!(e.to_string()));
                down.push(format!("{env} ({e})"));
            }
        }
    }
    if down.is_empty() {
        Json(json!({"ready": true, "checks": checks})).into_response()
    } else {
        let error = format!("not ready: {} not answering", down.join(", "));
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"ready": false, "error": error, "checks": checks}))).into_response()
    }
}

/// From the stream's latest overview (crate::stream): a scrape never queries by itself.
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.stream.latest().await.ok_or_else(crate::stream::unavailable)?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        registre_ops::render_metrics(&snapshot.overview),
    )
        .into_response())
}

/// The stream's latest overview (crate::stream), as JSON.
pub async fn overview(State(state): State<AppState>) -> Result<Response, ApiError> {
    let snapshot = state.stream.latest().await.ok_or_else(crate::stream::unavailable)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], snapshot.body.clone()).into_response())
}

pub async fn workers(State(state): State<AppState>) -> Result<Response, ApiError> {
    let view = state.ops.live().view().await?;
    Ok(Json(view).into_response())
}

pub async fn list(State(state): State<AppState>, q: Params) -> Result<Response, ApiError> {
    let map = params(q, &["status", "source", "environment", "limit", "cursor"])?;
    let env = environment(&state, &map)?;
    let mut errors = Vec::new();
    let status_id = match map.get("status").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match s.parse::<i32>() {
            Ok(n) if registre_domain::status::is_known(n) => Some(n),
            _ => {
                errors.push(format!("status={:?}: expected a status id from 1 to 6", s.chars().take(20).collect::<String>()));
                None
            }
        },
    };
    let document_source = match map.get("source").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) if ["acte", "index", "plan_cadastraux"].contains(&s) => Some(s.to_string()),
        Some(s) => {
            errors.push(format!("source={:?}: expected acte, index or plan_cadastraux", s.chars().take(20).collect::<String>()));
            None
        }
    };
    let limit = match map.get("limit").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => DEFAULT_LIMIT,
        Some(s) => match s.parse::<u32>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                errors.push(format!("limit={:?}: expected a whole number from 1 to {MAX_LIMIT}", s.chars().take(20).collect::<String>()));
                DEFAULT_LIMIT
            }
        },
    };
    let after = match map.get("cursor").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => None,
        Some(c) => match Cursor::decode(c) {
            Some(c) => Some(c),
            None => {
                errors.push(OpsError::BadCursor.to_string());
                None
            }
        },
    };
    if !errors.is_empty() {
        return Err(ApiError::bad_request(errors.join("; ")));
    }
    let page = state.ops.list(env, &ListFilter { status_id, document_source, limit, after }).await?;
    Ok(Json(json!({"environment": env.as_str(), "rows": page.rows, "next_cursor": page.next_cursor})).into_response())
}

pub async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Params,
) -> Result<Response, ApiError> {
    let (_, env, id) = row_target(&state, path, q, &["environment"])?;
    Ok(Json(state.ops.get(env, id).await?).into_response())
}

/// 201 with the new row, or 200 with the identical row already waiting or in progress
/// (`"duplicate": true`); 400 with one message per bad field.
pub async fn enqueue(State(state): State<AppState>, q: Params, body: Result<Bytes, BytesRejection>) -> Result<Response, ApiError> {
    let map = params(q, &["environment"])?;
    let env = environment(&state, &map)?;
    let body = body.map_err(|e| ApiError::new(e.status(), format!("request body refused: {}", e.body_text())))?;
    let request: NewExtraction = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body must be a JSON object with document_source, document_number, circonscription_fonciere, \
             cadastre, designation_secondaire, acte_type: {e}"
        ))
    })?;
    let ops = state.ops.clone();
    let done = state.writer.run(async move { Ok(ops.enqueue(env, &request).await?) }).await?;
    let status = if done.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    if !done.duplicate {
        tracing::info!("{env}: queued {} {} ({})", done.row.row.document_source, done.row.row.id, "registre-api");
    }
    Ok((status, Json(json!({"environment": env.as_str(), "duplicate": done.duplicate, "extraction": done.row}))).into_response())
}

pub async fn retry(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Params,
) -> Result<Response, ApiError> {
    let (_, env, id) = row_target(&state, path, q, &["environment"])?;
    let ops = state.ops.clone();
    let row = state.writer.run(async move { Ok(ops.retry(env, id).await?) }).await?;
    tracing::info!("{env}: extraction {id} retried through registre-api (now status {})", row.row.status_id);
    Ok(Json(json!({"environment": env.as_str(), "extraction": row})).into_response())
}

/// `?by=` names who cancels (recorded in error_message); an operator otherwise.
pub async fn cancel(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    q: Params,
) -> Result<Response, ApiError> {
    let (map, env, id) = row_target(&state, path, q, &["environment", "by"])?;
    let by = match map.get("by").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => "an operator".to_string(),
        Some(b) if b.chars().count() <= 60 && b.chars().all(|c| c.is_alphanumeric() || " .-_@'".contains(c)) => b.to_string(),
        Some(_) => return Err(ApiError::bad_request("by: at most 60 letters, digits, spaces and . - _ @ '")),
    };
    let reason = format!("cancelled by {by} through registre-api at {}", chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let (ops, why) = (state.ops.clone(), reason.clone());
    let row = state.writer.run(async move { Ok(ops.cancel(env, id, &why).await?) }).await?;
    tracing::info!("{env}: extraction {id} {reason}");
    Ok(Json(json!({"environment": env.as_str(), "extraction": row})).into_response())
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such route (see docs/operations.md)")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this route")
}
