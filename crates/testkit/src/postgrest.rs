//! A local stand-in for Supabase's PostgREST, for the one remote service the queue cannot reach in
//! tests: `POST /rest/v1/rpc/<function>` with a JSON object of named arguments is run as
//! `<function>(name => 'value', ...)` on a REAL PostgreSQL database (a test database, migrated),
//! so REST tests exercise the same SQL functions as direct ones. Replies as PostgREST documents
//! them: a set-returning function answers a JSON array of row objects, a scalar one the bare JSON
//! value; a database error answers `{"code","message","details","hint"}` with the SQLSTATE as code
//! (400 for data errors, 409 for constraint violations, 404 PGRST202 for a missing function); a
//! wrong key answers 401 PGRST301. Every call is recorded (function, body) for assertions.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use sqlx::postgres::PgPool;

/// One call as the stand-in received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcCall {
    pub function: String,
    pub body: Value,
}

struct Shared {
    pool: PgPool,
    key: String,
    calls: Mutex<Vec<RpcCall>>,
}

/// The running stand-in; stops with the test's runtime.
pub struct PostgrestStandIn {
    pub url: url::Url,
    shared: Arc<Shared>,
}

impl PostgrestStandIn {
    /// Serves on a free local port; calls must carry `key` as `apikey` and `Authorization: Bearer`.
    pub async fn start(database_url: &str, key: &str) -> PostgrestStandIn {
        let pool = PgPool::connect(database_url).await.unwrap_or_else(|e| panic!("stand-in cannot connect to {database_url}: {e}"));
        let shared = Arc::new(Shared { pool, key: key.to_string(), calls: Mutex::new(Vec::new()) });
        let app = Router::new().route("/rest/v1/rpc/{function}", axum::routing::post(rpc)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("local_addr: {e}"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let url = url::Url::parse(&format!("http://{addr}/")).unwrap_or_else(|e| panic!("url: {e}"));
        PostgrestStandIn { url, shared }
    }

    /// Every call received so far.
    pub fn calls(&self) -> Vec<RpcCall> {
        self.shared.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("'{n}'"),
        Value::String(s) => format!("'{}'", s.replace('\'', "''")),
        other => format!("'{}'", other.to_string().replace('\'', "''")),
    }
}

fn error(status: StatusCode, code: &str, message: String) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let body = json!({"code": code, "message": message, "details": null, "hint": null});
    (status, [("content-type", "application/json; charset=utf-8")], body.to_string())
}

async fn rpc(
    State(shared): State<Arc<Shared>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: String,
) -> (StatusCode, [(&'static str, &'static str); 1], String) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let args: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    shared.calls.lock().unwrap_or_else(|p| p.into_inner()).push(RpcCall { function: function.clone(), body: args.clone() });
    if header("apikey").as_deref() != Some(shared.key.as_str()) || header("authorization") != Some(format!("Bearer {}", shared.key)) {
        return error(StatusCode::UNAUTHORIZED, "PGRST301", "JWSError JWSInvalidSignature".into());
    }
    if !function.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return error(StatusCode::NOT_FOUND, "PGRST202", format!("Could not find the function public.{function}"));
    }
    let Some(object) = args.as_object() else {
        return error(StatusCode::BAD_REQUEST, "PGRST102", "Invalid body: expected a JSON object".into());
    };
    let retset: Option<bool> = match sqlx::query_scalar("SELECT bool_or(proretset) FROM pg_proc WHERE proname = $1")
        .bind(&function)
        .fetch_one(&shared.pool)
        .await
    {
        Ok(v) => v,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "PGRST001", e.to_string()),
    };
    let Some(retset) = retset else {
        return error(StatusCode::NOT_FOUND, "PGRST202", format!("Could not find the function public.{function} in the schema cache"));
    };
    let named: Vec<String> = object
        .iter()
        .filter(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .map(|(k, v)| format!("{k} => {}", literal(v)))
        .collect();
    let call = format!("{function}({})", named.join(", "));
    let sql = if retset {
        format!("SELECT coalesce(json_agg(r), '[]'::json)::text FROM {call} r")
    } else {
        format!("SELECT to_json({call})::text")
    };
    match sqlx::query_scalar::<_, String>(&sql).fetch_one(&shared.pool).await {
        Ok(reply) => (StatusCode::OK, [("content-type", "application/json; charset=utf-8")], reply),
        Err(sqlx::Error::Database(db)) => {
            let code = db.code().map(|c| c.to_string()).unwrap_or_default();
            let status = if code.starts_with("23") { StatusCode::CONFLICT } else if code == "42883" { StatusCode::NOT_FOUND } else { StatusCode::BAD_REQUEST };
            error(status, &code, db.message().to_string())
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, "PGRST001", e.to_string()),
    }
}
