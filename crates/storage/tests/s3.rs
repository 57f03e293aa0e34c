//! S3 backend against a real S3 server that no one here wrote: a private `moto_server` with its
//! IAM auth checks on (testkit::moto), so every request's signature is verified by the server.
//! Round trip, overwrite, missing object, nested names, a missing bucket, and a
//! wrong secret refused by the server with a readable error that holds no secret.

use registre_config::{Config, StorageBackend};
use registre_storage::{Bucket, Bytes, ObjectPath, Storage, StorageError};
use registre_testkit::moto::MotoServer;

fn storage(storage_url: &str, key_id: &str, secret: &str) -> Storage {
    let config = Config::from_vars([
        ("PROD_DATABASE_URL", "postgres://localhost/registre".to_string()),
        ("STORAGE_URL", storage_url.to_string()),
        ("AWS_ACCESS_KEY_ID", key_id.to_string()),
        ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ("AWS_REGION", "us-west-2".to_string()),
    ])
    .unwrap();
    let shown = format!("{:?}", config.storage);
    assert!(!shown.contains(secret), "secret in Debug: {shown}");
    assert!(matches!(config.storage.backend, StorageBackend::S3(_)));
    Storage::from_config(&config.storage).unwrap()
}

fn moto_storage(moto: &MotoServer, bucket_and_prefix: &str) -> Storage {
    let url = format!("s3://{bucket_and_prefix}?region=us-east-1&endpoint={}", moto.endpoint());
    storage(&url, &moto.access_key_id, &moto.secret_access_key)
}

#[tokio::test]
async fn round_trip_overwrite_and_missing_object() {
    let moto = MotoServer::start("registre-docs");
    let storage = moto_storage(&moto, "registre-docs/prod/v1");
    assert_eq!(storage.backend_name(), "s3");
    assert_eq!(storage.describe(), format!("s3 registre-docs/prod/v1 at {}/ (us-east-1, path-style)", moto.endpoint()));

    let pdf = Bytes::from_static(b"%PDF-1.5 index 42");
    let path = ObjectPath::for_document("index", "42 / 7", "Québec", "", 1_700_000_000_001).unwrap();
    assert!(!storage.exists(&path).await.unwrap());
    let err = storage.get(&path).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound { .. }), "{err:?}");
    assert_eq!(err.to_string(), format!("s3 storage: object {path} not found"));

    let stored = storage.put(Bucket::Index, path.name(), pdf.clone()).await.unwrap();
    assert_eq!(stored, path);
    assert!(storage.exists(&stored).await.unwrap());
    assert_eq!(storage.get(&stored).await.unwrap(), pdf);

    // Overwrite: the same key now holds the new bytes.
    storage.put_object(&stored, Bytes::from_static(b"%PDF-1.5 second version")).await.unwrap();
    assert_eq!(storage.get(&stored).await.unwrap().as_ref(), b"%PDF-1.5 second version");

    // The key is [<prefix>/]<bucket>/<name>: another store without the prefix does not see it.
    let unprefixed = moto_storage(&moto, "registre-docs");
    assert!(!unprefixed.exists(&stored).await.unwrap());
    let under_prefix = ObjectPath::parse(&format!("index/{}", stored.name())).unwrap();
    assert!(storage.exists(&under_prefix).await.unwrap());

    storage.delete(&stored).await.unwrap();
    storage.delete(&stored).await.unwrap(); // idempotent
    assert!(!storage.exists(&stored).await.unwrap());
    assert!(storage.get(&stored).await.unwrap_err().is_not_found());
}

/// A legacy `supabase_path` with sub-folders and dots. (Names that need percent-encoding are not
/// tested here: moto's signature check refuses them even from boto3, a moto limitation.)
#[tokio::test]
async fn nested_legacy_names_round_trip() {
    let moto = MotoServer::start("registre-nested");
    let storage = moto_storage(&moto, "registre-nested");
    let path = ObjectPath::parse("actes/dossier-A/2021/n_1.v2.pdf").unwrap();
    storage.put_object(&path, Bytes::from_static(b"%PDF acte")).await.unwrap();
    assert_eq!(storage.get(&path).await.unwrap().as_ref(), b"%PDF acte");
    assert!(storage.exists(&path).await.unwrap());
    assert!(!storage.exists(&ObjectPath::parse("actes/dossier-A/n_1.v2.pdf").unwrap()).await.unwrap());
}

#[tokio::test]
async fn wrong_secret_is_refused_by_the_server_readably() {
    let moto = MotoServer::start("registre-auth");
    let url = format!("s3://registre-auth?region=us-east-1&endpoint={}", moto.endpoint());
    let wrong = "wrong-secret-0123456789abcdefWRONG";
    let storage = storage(&url, &moto.access_key_id, wrong);
    let err = storage.put(Bucket::Actes, "a.pdf", Bytes::from_static(b"%PDF")).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("s3 storage: upload actes/a.pdf: "), "{shown}");
    assert!(shown.contains("SignatureDoesNotMatch") || shown.contains("403"), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(&moto.secret_access_key), "{shown}");
    assert!(!err.is_not_found());
    // The right key still works against the same server: the refusal was the signature's.
    let right = moto_storage(&moto, "registre-auth");
    right.put(Bucket::Actes, "a.pdf", Bytes::from_static(b"%PDF")).await.unwrap();
    let err = storage.get(&ObjectPath::parse("actes/a.pdf").unwrap()).await.unwrap_err();
    assert!(!err.is_not_found(), "a refused read is not a missing object: {err}");
}

#[tokio::test]
async fn a_missing_bucket_is_not_a_missing_object() {
    let moto = MotoServer::start("registre-present");
    let storage = moto_storage(&moto, "registre-absent");
    let err = storage.get(&ObjectPath::new(Bucket::Actes, "a.pdf").unwrap()).await.unwrap_err();
    assert!(!err.is_not_found(), "{err:?}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

#[test]
fn virtual_hosted_on_aws_by_default() {
    let storage = storage("s3://registre-docs/archive", "AKIDEXAMPLE", "secret-value");
    let Storage::S3(s3) = &storage else { panic!("not s3") };
    // Region from AWS_REGION, endpoint from the region, virtual-hosted addressing.
    assert_eq!(storage.describe(), "s3 registre-docs/archive at https://s3.us-west-2.amazonaws.com/ (us-west-2, virtual-hosted)");
    assert_eq!(s3.key(&ObjectPath::parse("index/x.pdf").unwrap()), "archive/index/x.pdf");
}
