//! The directory fetcher: `{dir}/{source}/{number}.pdf`, sanitized numbers, readable errors.

use registre_fetch::directory::DirectoryFetcher;
use registre_fetch::{DocumentRequest, DocumentSource, FetchError, Fetcher, NotAPdf};

const PDF: &[u8] = b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n";

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("registre-fetch-dir-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for source in DocumentSource::ALL {
        std::fs::create_dir_all(dir.join(source.as_str())).unwrap();
    }
    dir
}

#[tokio::test]
async fn reads_the_pdf_of_each_source() {
    let dir = temp_dir("ok");
    std::fs::write(dir.join("index/2269090.pdf"), PDF).unwrap();
    std::fs::write(dir.join("acte/12_345_678.pdf"), PDF).unwrap();
    std::fs::write(dir.join("plan_cadastraux/3.pdf"), PDF).unwrap();
    let fetcher = DirectoryFetcher::new(&dir);

    let doc = fetcher.fetch(&DocumentRequest::new(DocumentSource::Index, "2269090")).await.unwrap();
    assert_eq!(doc.bytes, PDF);
    assert_eq!(doc.content_type, "application/pdf");
    assert_eq!(doc.source, dir.join("index/2269090.pdf").display().to_string());
    // Spaces (and anything outside [A-Za-z0-9_-]) become '_'.
    let doc = fetcher.fetch(&DocumentRequest::new(DocumentSource::Acte, "12 345 678")).await.unwrap();
    assert_eq!(doc.bytes, PDF);
    fetcher.fetch(&DocumentRequest::new(DocumentSource::PlanCadastraux, "3")).await.unwrap();
    assert_eq!(fetcher.kind(), "directory");
}

#[tokio::test]
async fn missing_file_is_not_found_naming_the_path() {
    let dir = temp_dir("missing");
    let fetcher = DirectoryFetcher::new(&dir);
    let err = fetcher.fetch(&DocumentRequest::new(DocumentSource::Index, "404")).await.unwrap_err();
    let expected = dir.join("index/404.pdf").display().to_string();
    assert!(matches!(&err, FetchError::NotFound { detail, .. } if detail.contains(&expected)), "{err:?}");
    assert_eq!(err.to_string(), format!("document not found: index 404 (no file {expected})"));
    assert!(err.counts_as_attempt());
}

#[tokio::test]
async fn path_traversal_stays_inside_the_folder() {
    let dir = temp_dir("traversal");
    // A file the traversal would reach if the number were used as is.
    std::fs::write(dir.join("secret.pdf"), PDF).unwrap();
    let fetcher = DirectoryFetcher::new(&dir);
    let request = DocumentRequest::new(DocumentSource::Index, "../secret");
    assert_eq!(fetcher.path_for(&request), dir.join("index/___secret.pdf"));
    let err = fetcher.fetch(&request).await.unwrap_err();
    assert!(matches!(err, FetchError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn a_file_that_is_not_a_pdf_is_refused() {
    let dir = temp_dir("corrupt");
    std::fs::write(dir.join("acte/1.pdf"), b"<html>not a pdf</html>").unwrap();
    std::fs::write(dir.join("acte/2.pdf"), b"%PDF-1.4\ntruncated").unwrap();
    let fetcher = DirectoryFetcher::new(&dir);
    let err = fetcher.fetch(&DocumentRequest::new(DocumentSource::Acte, "1")).await.unwrap_err();
    assert!(matches!(&err, FetchError::NotAPdf { reason: NotAPdf::BadMagic(_), .. }), "{err:?}");
    assert!(err.to_string().contains("is not a PDF: does not start with %PDF-"), "{err}");
    let err = fetcher.fetch(&DocumentRequest::new(DocumentSource::Acte, "2")).await.unwrap_err();
    assert!(matches!(&err, FetchError::NotAPdf { reason: NotAPdf::NoEof, .. }), "{err:?}");
}
