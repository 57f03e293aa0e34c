//! Local filesystem backend: round trip, atomic replacement, hostile names stay in the bucket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use registre_config::{Config, StorageBackend};
use registre_storage::{Bucket, Bytes, LocalStore, ObjectPath, Storage};

/// A fresh name per call: tests run in parallel in one process and across processes.
fn unique(label: &str) -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    format!("{label}-{}-{nanos}-{}", std::process::id(), COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

fn temp_root(label: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(label));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn storage_for(root: &Path) -> Storage {
    let config = Config::from_vars([
        ("PROD_DATABASE_URL", "postgres://localhost/registre".to_string()),
        ("STORAGE_URL", format!("file://{}", root.display())),
    ])
    .unwrap();
    match &config.storage.backend {
        StorageBackend::Local { root: configured } => assert_eq!(configured, root),
        other => panic!("expected the local backend, got {other:?}"),
    }
    Storage::from_config(&config.storage).unwrap()
}

#[tokio::test]
async fn round_trip() {
    let root = temp_root("storage-fs");
    let storage = storage_for(&root);
    assert_eq!(storage.backend_name(), "local");
    let pdf = Bytes::from_static(b"%PDF-1.7\n1 0 obj << >> endobj\n%%EOF\n");
    let path = ObjectPath::for_document("index", "1 234 567", "Montréal", "Cadastre du Québec", 1_700_000_000_000).unwrap();

    assert!(!storage.exists(&path).await.unwrap());
    let stored = storage.put(path.bucket(), path.name(), pdf.clone()).await.unwrap();
    assert_eq!(stored.to_string(), "index/1_234_567-Montr_al-Cadastre_du_Qu_bec-1700000000000.pdf");
    assert_eq!(std::fs::read(root.join("index").join(stored.name())).unwrap(), pdf.as_ref());
    assert!(storage.exists(&stored).await.unwrap());
    assert_eq!(storage.get(&stored).await.unwrap(), pdf);
    // What a row's supabase_path holds reads back to the same object.
    assert_eq!(storage.get(&ObjectPath::parse(&stored.to_string()).unwrap()).await.unwrap(), pdf);

    // Replacing keeps one file and no temporary file behind.
    storage.put(Bucket::Index, stored.name(), Bytes::from_static(b"%PDF second")).await.unwrap();
    assert_eq!(storage.get(&stored).await.unwrap().as_ref(), b"%PDF second");
    assert_eq!(files_under(&root), vec![root.join("index").join(stored.name())]);

    storage.delete(&stored).await.unwrap();
    assert!(!storage.exists(&stored).await.unwrap());
    let err = storage.get(&stored).await.unwrap_err();
    assert!(err.is_not_found());
    assert_eq!(err.to_string(), format!("local storage: object {stored} not found"));
    storage.delete(&stored).await.unwrap(); // idempotent
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn hostile_document_numbers_stay_inside_the_bucket() {
    let root = temp_root("storage-hostile");
    let store = LocalStore::new(&root);
    let storage = Storage::Local(store.clone());
    let hostile = [
        "../../etc/passwd",
        "../../../../../../tmp/escaped",
        "/etc/shadow",
        "..",
        ".",
        "",
        "a/b/c",
        "with spaces and\ttabs",
        "accentué-ÉÈÀ-ç",
        "..\\..\\windows\\system32",
        "%2e%2e%2f%2e%2e%2f",
        "name\0with-nul",
        "~root",
        "$(rm -rf /)",
    ];
    for (i, number) in hostile.iter().enumerate() {
        for source in ["index", "acte", "plan_cadastraux"] {
            let path = ObjectPath::for_document(source, number, "../circ", "cad/../astre", i as u64).unwrap();
            storage.put_object(&path, Bytes::from(format!("{source}:{number}"))).await.unwrap();
            let file = store.file_path(&path);
            let bucket_dir = root.join(path.bucket().as_str());
            assert_eq!(file.parent(), Some(bucket_dir.as_path()), "{number:?} → {}", file.display());
            let real = std::fs::canonicalize(&file).unwrap();
            assert!(real.starts_with(std::fs::canonicalize(&bucket_dir).unwrap()), "{}", real.display());
            assert_eq!(storage.get(&path).await.unwrap(), Bytes::from(format!("{source}:{number}")));
        }
    }
    // Nothing was written anywhere but directly inside the three bucket directories.
    let files = files_under(&root);
    assert_eq!(files.len(), hostile.len() * 3);
    for file in &files {
        let bucket = file.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()).unwrap();
        assert!(Bucket::from_name(bucket).is_ok(), "{}", file.display());
        assert_eq!(file.parent().and_then(Path::parent), Some(root.as_path()));
    }
    assert!(!Path::new("/tmp/escaped").exists());
    std::fs::remove_dir_all(&root).unwrap();
}

/// Readers racing writers of the same object always see one whole version, never a torn file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replacement_is_atomic() {
    let root = temp_root("storage-atomic");
    let storage = Arc::new(Storage::Local(LocalStore::new(&root)));
    let path = storage.put(Bucket::Actes, "contended.pdf", Bytes::from(vec![0u8; 256 * 1024])).await.unwrap();
    let versions: Vec<Bytes> = (1..=8u8).map(|v| Bytes::from(vec![v; 256 * 1024 + v as usize])).collect();
    let mut tasks = Vec::new();
    for version in versions.clone() {
        let (storage, path) = (storage.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                storage.put_object(&path, version.clone()).await.unwrap();
            }
        }));
    }
    let reader = {
        let (storage, path) = (storage.clone(), path.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            for _ in 0..200 {
                let got = storage.get(&path).await.unwrap();
                let first = got[0];
                assert_eq!(got.len(), 256 * 1024 + first as usize, "torn read");
                assert!(got.iter().all(|b| *b == first), "mixed read");
                reads += 1;
            }
            reads
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(reader.await.unwrap(), 200);
    assert_eq!(files_under(&root).len(), 1, "temporary files left behind");
    std::fs::remove_dir_all(&root).unwrap();
}

#[tokio::test]
async fn unwritable_root_is_a_readable_error() {
    let root = temp_root("storage-ro");
    std::fs::write(root.join("index"), b"a file where the bucket directory should be").unwrap();
    let storage = Storage::Local(LocalStore::new(&root));
    let err = storage.put(Bucket::Index, "a.pdf", Bytes::from_static(b"%PDF")).await.unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with("local storage: "), "{shown}");
    assert!(shown.contains(&root.join("index").display().to_string()), "{shown}");
    std::fs::remove_dir_all(&root).unwrap();
}
