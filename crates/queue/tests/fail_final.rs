//! `fail_final`: the registry rejected the row's own data, so the row goes to Erreur (4) at once with
//! the site's text, one attempt counted, no backoff; fenced like every transition. On a real
//! PostgreSQL (many rows failed at once by many tasks), and through the REST backend against a
//! local stand-in for PostgREST that checks the exact call.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use common::{insert, row, update_row, SETTINGS};
use registre_config::{EnvName, Secret};
use registre_queue::{status, FailOutcome, Queue, RestQueue, Transition};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rejected_row_goes_to_erreur_at_once_and_only_for_its_owner() {
    let (_db, queue) = common::queue(SETTINGS, 16).await;
    let pool = queue.pool().clone();
    let id = insert(&pool, "index", "9999999").await;
    let job = queue.claim_extraction("w1", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    let message = "index search: Le lot 9999999 n'existe pas dans le cadastre sélectionné.";
    assert_eq!(queue.fail_final(&job, message).await.unwrap(), FailOutcome::Failed { attempts: 1 });
    assert_eq!(row(&pool, id).await, (status::ERROR, 1, 0, Some(message.into())), "max_attempts is 3: no retry burnt");
    let (next, token, lease): (Option<chrono::DateTime<chrono::Utc>>, Option<uuid::Uuid>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT next_attempt_at, claim_token, lease_expires_at FROM extraction_queue WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((next, token, lease), (None, None, None));
    assert!(queue.claim_extraction("w1", uuid::Uuid::new_v4()).await.unwrap().is_none(), "status 4 is never claimed again");
    // Fencing: a second call with the same (now stale) claim changes nothing.
    assert_eq!(queue.fail_final(&job, "other").await.unwrap(), FailOutcome::NotOwner);
    assert_eq!(row(&pool, id).await.3.as_deref(), Some(message));

    // A worker whose row was reaped and claimed by another cannot fail it for the new owner.
    let id2 = insert(&pool, "acte", "33000000").await;
    let stale = queue.claim_extraction("w-old", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    update_row(&pool, id2, "lease_expires_at = now() - interval '1 second'").await;
    assert_eq!(queue.reap_expired().await.unwrap(), 1);
    let fresh = queue.claim_extraction("w-new", uuid::Uuid::new_v4()).await.unwrap().unwrap();
    assert_eq!(fresh.id, id2);
    assert_eq!(queue.fail_final(&stale, "late").await.unwrap(), FailOutcome::NotOwner);
    assert_eq!(queue.renew(&fresh).await.unwrap(), Transition::Applied, "the new owner still holds it");

    // Many rows rejected at once by many tasks: each goes to 4 exactly once with its own text.
    let mut ids = Vec::new();
    for n in 0..64 {
        ids.push(insert(&pool, "index", &format!("L-{n}")).await);
    }
    let queue = Arc::new(queue);
    let mut tasks = Vec::new();
    for w in 0..16 {
        let queue = queue.clone();
        tasks.push(tokio::spawn(async move {
            let mut failed = 0;
            while let Some(job) = queue.claim_extraction(&format!("w{w}"), uuid::Uuid::new_v4()).await.unwrap() {
                let text = format!("index search: lot {} rejected", job.document_number);
                assert_eq!(queue.fail_final(&job, &text).await.unwrap(), FailOutcome::Failed { attempts: 1 });
                failed += 1;
            }
            failed
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    assert_eq!(total, 64);
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(row(&pool, *id).await, (status::ERROR, 1, 0, Some(format!("index search: lot L-{n} rejected"))));
    }
}

/// One call seen by the PostgREST stand-in: function, apikey header, JSON body.
type Call = (String, Option<String>, Value);

#[tokio::test]
async fn the_rest_backend_calls_queue_fail_extraction_final() {
    const KEY: &str = "service-role-key.for-tests";
    const ID: &str = "3f1c2a8e-1111-4c3b-9d2e-0a1b2c3d4e5f";
    const TOKEN: &str = "9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b";
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let seen = calls.clone();
    // PostgREST: POST /rest/v1/rpc/<function> with named arguments; a set-returning function answers an array.
    let app = axum::Router::new().route(
        "/rest/v1/rpc/{function}",
        axum::routing::post(move |axum::extract::Path(function): axum::extract::Path<String>, headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let key = headers.get("apikey").and_then(|v| v.to_str().ok()).map(str::to_string);
                seen.lock().unwrap().push((function.clone(), key, body));
                let reply = match function.as_str() {
                    "queue_claim_extraction" => json!([{
                        "id": ID, "claim_token": TOKEN, "document_source": "index", "document_number": "9999999",
                        "document_number_normalized": null, "circonscription_fonciere": "Montréal", "cadastre": "Québec",
                        "designation_secondaire": null, "acte_type": null, "supabase_path": null,
                        "attempts": 0, "max_attempts": 3, "lease_expires_at": "2030-01-01T00:00:30+00:00"
                    }]),
                    "queue_fail_extraction_final" => json!([{"status_id": 4, "attempts": 1, "next_attempt_at": null}]),
                    _ => json!([]),
                };
                ([("content-type", "application/json")], reply.to_string())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let url = url::Url::parse(&format!("http://{addr}/")).unwrap();
    let queue = RestQueue::new(EnvName::Prod, &url, &Secret::new(KEY), SETTINGS).unwrap();

    let job = queue.claim_extraction("w", TOKEN.parse().unwrap()).await.unwrap().unwrap();
    let message = "index search: Le lot 9999999 n'existe pas.";
    assert_eq!(queue.fail_final(&job, message).await.unwrap(), FailOutcome::Failed { attempts: 1 });
    let calls = calls.lock().unwrap();
    let (function, key, body) = calls.last().unwrap();
    assert_eq!(function, "queue_fail_extraction_final");
    assert_eq!(key.as_deref(), Some(KEY));
    assert_eq!(body, &json!({ "p_id": ID, "p_claim_token": TOKEN, "p_error": message }));
}
