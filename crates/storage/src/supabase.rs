//! Supabase Storage REST backend, authenticated with the service key (`apikey` and
//! `Authorization: Bearer` headers):
//! - upload: `POST {url}/storage/v1/object/<bucket>/<name>` with `x-upsert: true` and
//!   `content-type: application/pdf`; Supabase answers `{"Key": "<bucket>/<name>"}`;
//! - download: `GET {url}/storage/v1/object/<bucket>/<name>`;
//! - exists: `HEAD` on the same URL; delete: `DELETE` on the same URL.
//!
//! A missing object comes back as HTTP 404, or (older Storage versions) HTTP 400 with the JSON
//! `{"statusCode":"404","error":"not_found","message":"Object not found"}`: both are
//! [`StorageError::NotFound`].

use bytes::Bytes;
use registre_config::Secret;
use reqwest::{Method, StatusCode};
use url::Url;

use crate::{body_excerpt, encode_path, ObjectPath, StorageError, CONTENT_TYPE};

pub(crate) const BACKEND: &str = "supabase";

#[derive(Debug, Clone)]
pub struct SupabaseStore {
    base: Url,
    service_key: Secret,
    client: reqwest::Client,
}

impl SupabaseStore {
    /// `base` is the project URL (`https://<project>.supabase.co`).
    pub fn new(base: Url, service_key: Secret, client: reqwest::Client) -> SupabaseStore {
        SupabaseStore { base, service_key, client }
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// `{base}/storage/v1/object/<bucket>/<name>`, each name segment percent-encoded.
    pub fn object_url(&self, path: &ObjectPath) -> Result<Url, StorageError> {
        let text = format!(
            "{}/storage/v1/object/{}/{}",
            self.base.as_str().trim_end_matches('/'),
            path.bucket(),
            encode_path(path.name())
        );
        Url::parse(&text).map_err(|e| StorageError::InvalidPath { path: path.to_string(), reason: format!("no valid URL: {e}") })
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &ObjectPath,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), StorageError> {
        let url = self.object_url(path)?;
        let key = self.service_key.expose();
        let mut request = self
            .client
            .request(method, url)
            .header("apikey", key)
            .header(reqwest::header::AUTHORIZATION, format!("Bearer {key}"));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
                .header("x-upsert", "true")
                .body(body);
        }
        let failed = |source| StorageError::Request { backend: BACKEND, operation, path: path.to_string(), source };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(failed)?;
        Ok((status, bytes))
    }

    pub async fn put(&self, path: &ObjectPath, bytes: Bytes) -> Result<(), StorageError> {
        let operation = "upload";
        let (status, body) = self.send(operation, Method::POST, path, Some(bytes)).await?;
        if !status.is_success() {
            return Err(status_error(operation, path, status, &body));
        }
        // `{"Key": "<bucket>/<name>"}`: check Supabase stored what we asked for.
        let reply: serde_json::Value = serde_json::from_slice(&body).map_err(|_| StorageError::Reply {
            backend: BACKEND,
            operation,
            path: path.to_string(),
            detail: format!("expected JSON with a Key, got {}", body_excerpt(&body)),
        })?;
        match reply.get("Key").and_then(|k| k.as_str()) {
            Some(key) if key == path.to_string() => Ok(()),
            Some(key) => Err(StorageError::Reply {
                backend: BACKEND,
                operation,
                path: path.to_string(),
                detail: format!("Supabase stored the object as {key:?}"),
            }),
            None => Err(StorageError::Reply {
                backend: BACKEND,
                operation,
                path: path.to_string(),
                detail: format!("no Key in {}", body_excerpt(&body)),
            }),
        }
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, StorageError> {
        let (status, body) = self.send("download", Method::GET, path, None).await?;
        if status.is_success() {
            return Ok(body);
        }
        Err(status_error("download", path, status, &body))
    }

    pub async fn exists(&self, path: &ObjectPath) -> Result<bool, StorageError> {
        let (status, body) = self.send("exists", Method::HEAD, path, None).await?;
        if status.is_success() {
            return Ok(true);
        }
        // HEAD answers carry no body: 400 and 404 both mean "no such object".
        if status == StatusCode::NOT_FOUND || status == StatusCode::BAD_REQUEST {
            return Ok(false);
        }
        Err(status_error("exists", path, status, &body))
    }

    pub async fn delete(&self, path: &ObjectPath) -> Result<(), StorageError> {
        let (status, body) = self.send("delete", Method::DELETE, path, None).await?;
        if status.is_success() {
            return Ok(());
        }
        match status_error("delete", path, status, &body) {
            StorageError::NotFound { .. } => Ok(()),
            other => Err(other),
        }
    }
}

/// NotFound for Supabase's two "missing object" shapes, else the status with a body excerpt.
fn status_error(operation: &'static str, path: &ObjectPath, status: StatusCode, body: &[u8]) -> StorageError {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |name: &str| {
        json.as_ref().and_then(|j| j.get(name)).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    };
    let not_found = status == StatusCode::NOT_FOUND
        || (status == StatusCode::BAD_REQUEST
            && (field("statusCode").as_deref() == Some("404") || field("error").as_deref() == Some("not_found")));
    if not_found {
        return StorageError::NotFound { backend: BACKEND, path: path.to_string() };
    }
    StorageError::Status { backend: BACKEND, operation, path: path.to_string(), status: status.as_u16(), body: body_excerpt(body) }
}
