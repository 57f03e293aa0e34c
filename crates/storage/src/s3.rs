//! S3-compatible backend (AWS S3, MinIO, R2, …) through `object_store`'s AmazonS3 client, which
//! signs every request (SigV4) and speaks S3's errors; we only map STORAGE_URL onto its builder.
//! One S3 bucket holds the three logical buckets as key prefixes: object `<bucket>/<name>` is key
//! `[<prefix>/]<bucket>/<name>`. Addressing is path-style (`<endpoint>/<s3 bucket>/<key>`) when an
//! endpoint is configured, virtual-hosted (`https://<s3 bucket>.s3.<region>.amazonaws.com/<key>`)
//! on AWS.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ClientOptions, ObjectStoreExt as _, PutPayload, RetryConfig};
use registre_config::S3Config;

use crate::{store_error, ObjectPath, StorageError};

pub(crate) const BACKEND: &str = "s3";

#[derive(Debug, Clone)]
pub struct S3Store {
    config: S3Config,
    store: Arc<AmazonS3>,
}

impl S3Store {
    /// Builds the client; contacts nothing. `timeout` bounds each HTTP call and the retries of
    /// one operation (object_store retries connection errors and 5xx, never a 4xx refusal).
    pub fn new(config: S3Config, timeout: Duration) -> Result<S3Store, StorageError> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_endpoint(endpoint(&config))
            .with_virtual_hosted_style_request(!config.path_style)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose())
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(config.endpoint.scheme() == "http")
                    .with_timeout(timeout)
                    .with_connect_timeout(timeout.min(Duration::from_secs(10))),
            )
            .with_retry(RetryConfig { max_retries: 2, retry_timeout: timeout, ..RetryConfig::default() });
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token.expose());
        }
        // object_store's builder errors name the setting, never a secret's value.
        let store = builder.build().map_err(|e| StorageError::Client(format!("S3: {e}")))?;
        Ok(S3Store { config, store: Arc::new(store) })
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

    /// The key as object_store addresses it: taken as it is (object_store percent-encodes it on
    /// the wire), so an object keeps the key it had before object_store.
    fn location(&self, path: &ObjectPath) -> Result<Path, StorageError> {
        Path::parse(self.key(path)).map_err(|e| StorageError::InvalidPath { path: path.to_string(), reason: e.to_string() })
    }

    pub async fn put(&self, path: &ObjectPath, bytes: Bytes) -> Result<(), StorageError> {
        let location = self.location(path)?;
        self.store.put(&location, PutPayload::from(bytes)).await.map_err(store_error(BACKEND, "upload", path))?;
        Ok(())
    }

    pub async fn get(&self, path: &ObjectPath) -> Result<Bytes, StorageError> {
        let location = self.location(path)?;
        let failed = store_error(BACKEND, "download", path);
        let result = self.store.get(&location).await.map_err(&failed)?;
        result.bytes().await.map_err(failed)
    }

    pub async fn exists(&self, path: &ObjectPath) -> Result<bool, StorageError> {
        let location = self.location(path)?;
        match self.store.head(&location).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_error(BACKEND, "exists", path)(e)),
        }
    }

    /// S3's DELETE succeeds for a missing key, so this is idempotent as the trait wants.
    pub async fn delete(&self, path: &ObjectPath) -> Result<(), StorageError> {
        let location = self.location(path)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(store_error(BACKEND, "delete", path)(e)),
        }
    }
}

/// The endpoint object_store calls. Path-style: the configured endpoint. Virtual-hosted: the
/// bucket in front of the endpoint's host, which is how object_store wants an explicit endpoint
/// for that style (`https://<bucket>.s3.<region>.amazonaws.com` by default).
fn endpoint(config: &S3Config) -> String {
    let e = &config.endpoint;
    let base = e.as_str().trim_end_matches('/').to_string();
    if config.path_style {
        return base;
    }
    let host = e.host_str().unwrap_or_default();
    let port = e.port().map(|p| format!(":{p}")).unwrap_or_default();
    let path = e.path().trim_end_matches('/');
    format!("{}://{}.{host}{port}{path}", e.scheme(), config.bucket)
}
