//! STORAGE_URL and the variables of the backend it selects (docs/storage.md).

use std::path::PathBuf;
use std::time::Duration;

use registre_config::{Config, ConfigError, StorageBackend, StorageConfig};

fn load(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut vars = vec![("PROD_DATABASE_URL", "postgres://localhost/registre")];
    vars.extend_from_slice(extra);
    Config::from_vars(vars)
}

fn storage(extra: &[(&str, &str)]) -> StorageConfig {
    load(extra).unwrap_or_else(|e| panic!("{e}")).storage
}

fn refused(extra: &[(&str, &str)]) -> String {
    match load(extra) {
        Ok(c) => panic!("accepted: {:?}", c.storage),
        Err(e) => e.to_string(),
    }
}

#[test]
fn local_filesystem_is_the_default() {
    let config = load(&[]).unwrap();
    assert_eq!(config.storage_url.expose(), "file:///var/lib/registre/storage");
    assert!(matches!(&config.storage.backend, StorageBackend::Local { root } if root == &PathBuf::from("/var/lib/registre/storage")));
    assert_eq!(config.storage.timeout, Duration::from_secs(60));
    let s = storage(&[("STORAGE_URL", "file:///srv/pdfs/"), ("STORAGE_TIMEOUT_MS", "5000")]);
    assert!(matches!(&s.backend, StorageBackend::Local { root } if root == &PathBuf::from("/srv/pdfs/")));
    assert_eq!(s.timeout, Duration::from_secs(5));
    let e = refused(&[("STORAGE_URL", "ftp://x")]);
    assert!(e.starts_with("STORAGE_URL=ftp://x"), "{e}");
    assert!(e.ends_with(": expected a URL starting with file:// or s3:// or https:// or http://"), "{e}");
}

#[test]
fn supabase_key_comes_from_storage_service_key_then_prod() {
    let key_of = |extra: &[(&str, &str)]| match storage(extra).backend {
        StorageBackend::Supabase { url, service_key } => (url.to_string(), service_key.expose().to_string()),
        other => panic!("{other:?}"),
    };
    let url = ("STORAGE_URL", "https://abcd.supabase.co");
    assert_eq!(
        key_of(&[url, ("STORAGE_SERVICE_KEY", "k-storage"), ("PROD_SUPABASE_SERVICE_KEY", "k-prod")]),
        ("https://abcd.supabase.co/".into(), "k-storage".into())
    );
    assert_eq!(key_of(&[url, ("PROD_SUPABASE_SERVICE_KEY", "k-prod"), ("SUPABASE_SERVICE_KEY", "k-legacy")]).1, "k-prod");
    assert_eq!(key_of(&[url, ("SUPABASE_SERVICE_KEY", "k-legacy")]).1, "k-legacy");
    // The Storage API path may be given; it is dropped from the base.
    assert_eq!(key_of(&[("STORAGE_URL", "http://127.0.0.1:54321/storage/v1/"), ("STORAGE_SERVICE_KEY", "k")]).0, "http://127.0.0.1:54321/");
    assert_eq!(
        refused(&[url]),
        "STORAGE_SERVICE_KEY is required when STORAGE_URL is a Supabase URL and neither PROD_SUPABASE_SERVICE_KEY nor SUPABASE_SERVICE_KEY is set"
    );
    let shown = format!("{:?}", storage(&[url, ("STORAGE_SERVICE_KEY", "eyJhbGciOiJIUzI1NiJ9.secret")]));
    assert!(!shown.contains("eyJhbGciOiJIUzI1NiJ9"), "{shown}");
}

#[test]
fn s3_url_forms() {
    let creds = [("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "very-secret")];
    let s3 = |extra: &[(&str, &str)]| {
        let mut all = creds.to_vec();
        all.extend_from_slice(extra);
        match storage(&all).backend {
            StorageBackend::S3(c) => c,
            other => panic!("{other:?}"),
        }
    };
    let aws = s3(&[("STORAGE_URL", "s3://registre-docs")]);
    assert_eq!((aws.bucket.as_str(), aws.prefix.as_str(), aws.region.as_str()), ("registre-docs", "", "us-east-1"));
    assert_eq!(aws.endpoint.as_str(), "https://s3.us-east-1.amazonaws.com/");
    assert!(!aws.path_style);
    assert!(aws.session_token.is_none());

    let region_env = s3(&[("STORAGE_URL", "s3://registre-docs/prod/pdfs/"), ("AWS_REGION", "ca-central-1")]);
    assert_eq!((region_env.prefix.as_str(), region_env.region.as_str()), ("prod/pdfs", "ca-central-1"));
    assert_eq!(region_env.endpoint.as_str(), "https://s3.ca-central-1.amazonaws.com/");

    let minio = s3(&[
        ("STORAGE_URL", "s3://registre-docs?region=ca-central-1&endpoint=http://127.0.0.1:9000"),
        ("AWS_REGION", "us-west-2"),
        ("AWS_SESSION_TOKEN", "tok"),
    ]);
    assert_eq!((minio.region.as_str(), minio.endpoint.as_str(), minio.path_style), ("ca-central-1", "http://127.0.0.1:9000/", true));
    assert_eq!(minio.session_token.as_ref().map(|t| t.expose()), Some("tok"));

    let r2 = s3(&[("STORAGE_URL", "s3://registre-docs?path_style=false"), ("S3_ENDPOINT", "https://acct.r2.cloudflarestorage.com")]);
    assert_eq!((r2.endpoint.as_str(), r2.path_style), ("https://acct.r2.cloudflarestorage.com/", false));

    let shown = format!("{minio:?}");
    assert!(!shown.contains("very-secret") && !shown.contains("tok\""), "{shown}");
}

#[test]
fn s3_mistakes_are_named() {
    assert_eq!(
        refused(&[("STORAGE_URL", "s3://registre-docs")]),
        "AWS_ACCESS_KEY_ID is required when STORAGE_URL is an s3:// URL"
    );
    assert_eq!(
        refused(&[("STORAGE_URL", "s3://registre-docs"), ("AWS_ACCESS_KEY_ID", "AKID")]),
        "AWS_SECRET_ACCESS_KEY is required when STORAGE_URL is an s3:// URL"
    );
    let creds = [("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "x")];
    let with = |url: &'static str| {
        let mut all = creds.to_vec();
        all.push(("STORAGE_URL", url));
        refused(&all)
    };
    assert_eq!(
        with("s3://registre-docs?regoin=ca-central-1"),
        "STORAGE_URL=s3://registre-docs?regoin=ca-central-1: expected only region=, endpoint= and path_style= after '?', not regoin="
    );
    assert!(with("s3://Registre_Docs").contains("bucket name of 3 to 63 characters"));
    assert!(with("s3://registre-docs?endpoint=minio:9000").starts_with("STORAGE_URL=minio:9000: expected a URL starting with https:// or http://"));
}
