//! S3-compatible backend (AWS S3, MinIO, R2, …) on the shared reqwest client, every request
//! signed with AWS Signature V4 ([`crate::sigv4`]). One S3 bucket holds the three logical
//! buckets as key prefixes: object `<bucket>/<name>` is key `[<prefix>/]<bucket>/<name>`.
//! Addressing is path-style (`<endpoint>/<s3 bucket>/<key>`) when an endpoint is configured,
//! virtual-hosted (`https://<s3 bucket>.s3.<region>.amazonaws.com/<key>`) on AWS.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use registre_config::S3Config;
use reqwest::{Method, StatusCode};
use url::Url;

use crate::sigv4::{self, SignedRequest};
use crate::{encode_path, excerpt, ObjectPath, StorageError, CONTENT_TYPE};

pub(crate) const BACKEND: &str = "s3";

#[derive(Debug, Clone)]
pub struct S3Store {
    config: S3Config,
    client: reqwest::Client,
}

/// Where one object lives: the URL to call, the Host header and the canonical URI to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub url: Url,
    pub host: String,
    pub canonical_uri: String,
}

impl S3Store {
    pub fn new(config: S3Config, client: reqwest::Client) -> S3Store {
        S3Store { config, client }
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    pub fn describe(&self) -> String {
        let c = &self.config;
        let prefix = if c.prefix.is_empty() { String::new() } else { format!("/{}", c.prefix) };
        format!("s3 {}{prefix} at {} ({}, {})", c.bucket, c.endpoint, c.region, if c.path_style { "path-style" } else { "virtual-hosted" })
    }

    /// The object key of `path`: `[<prefix>/]<bucket>/<name>`.
    pub fn key(&self, path: &ObjectPath) -> String {
        let mut key = String::new();
        if !self.config.prefix.is_empty() {
            key.push_str(&self.config.prefix);
            key.push('/');
        }
        key.push_str(path.bucket().as_str());
        key.push('/');
        key.push_str(path.name());
        key
    }

    pub fn location(&self, path: &ObjectPath) -> Result<S3Location, StorageError> {
        let c = &self.config;
        let invalid = |reason: String| StorageError::InvalidPath { path: path.to_string(), reason };
        let endpoint_host = c.endpoint.host_str().ok_or_else(|| invalid(format!("S3 endpoint {} has no host", c.endpoint)))?;
        let port = c.endpoint.port().map(|p| format!(":{p}")).unwrap_or_default();
        let base_path = c.endpoint.path().trim_end_matches('/');
        let key = encode_path(&self.key(path));
        let (host, canonical_uri) = if c.path_style {
            (format!("{endpoint_host}{port}"), format!("{base_path}/{}/{key}", c.bucket))
        } else {
            (format!("{}.{endpoint_host}{port}", c.bucket), format!("{base_path}/{key}"))
        };
        let url = Url::parse(&format!("{}://{host}{canonical_uri}", c.endpoint.scheme()))
            .map_err(|e| invalid(format!("no valid S3 URL: {e}")))?;
        Ok(S3Location { url, host, canonical_uri })
    }

    async fn send(
        &self,
        operation: &'static str,
        method: Method,
        path: &ObjectPath,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), StorageError> {
        let location = self.location(path)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let date = sigv4::amz_date(now);
        let payload_hash = sigv4::sha256_hex(body.as_deref().unwrap_or_default());
        let token = self.config.session_token.as_ref().map(|t| t.expose());
        let mut headers: Vec<(&str, &str)> =
            vec![("host", &location.host), ("x-amz-content-sha256", &payload_hash), ("x-amz-date", &date)];
        if body.is_some() {
            headers.push(("content-type", CONTENT_TYPE));
        }
        if let Some(token) = token {
            headers.push(("x-amz-security-token", token));
        }
        let authorization = sigv4::authorization(
            &SignedRequest {
                method: method.as_str(),
                canonical_uri: &location.canonical_uri,
                canonical_query: "",
                headers: &headers,
                payload_hash: &payload_hash,
            },
            &date,
            &self.config.region,
            "s3",
            &self.config.access_key_id,
            self.config.secret_access_key.expose(),
        );
        let mut request = self.client.request(method, location.url);
        for (name, value) in &headers {
            request = request.header(*name, *value);
        }
        request = request.header(reqwest::header::AUTHORIZATION, authorization);
        if let Some(body) = body {
            request = request.body(body);
        }
        let failed = |source| StorageError::Request { backend: BACKEND, operation, path: path.to_string(), source };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(failed)?;
        Ok((status, bytes))
    }

    pub async fn put(&self, path: &ObjectPath, bytes: Bytes) -> Result<(), StorageError> {
        let (status, body) = self.send("upload", Method::PUT, path, Some(bytes)).await?;
        if status.is_success() {
            return Ok(());
        }
        Err(status_error("upload", path, status, &body))
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
        match status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(status_error("exists", path, s, &body)),
        }
    }

    pub async fn delete(&self, path: &ObjectPath) -> Result<(), StorageError> {
        let (status, body) = self.send("delete", Method::DELETE, path, None).await?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(status_error("delete", path, status, &body))
    }
}

fn status_error(operation: &'static str, path: &ObjectPath, status: StatusCode, body: &[u8]) -> StorageError {
    // A missing bucket is a configuration problem, not a missing object.
    let no_bucket = String::from_utf8_lossy(body).contains("<Code>NoSuchBucket</Code>");
    if status == StatusCode::NOT_FOUND && !no_bucket {
        return StorageError::NotFound { backend: BACKEND, path: path.to_string() };
    }
    StorageError::Status { backend: BACKEND, operation, path: path.to_string(), status: status.as_u16(), body: excerpt(body) }
}
