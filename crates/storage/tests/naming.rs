//! Buckets, object names and both `supabase_path` forms (docs/design.md §8).

use registre_storage::{object_name, sanitize, Bucket, ObjectPath, StorageError};

#[test]
fn buckets_follow_document_source() {
    assert_eq!(Bucket::for_source("index").unwrap(), Bucket::Index);
    assert_eq!(Bucket::for_source("acte").unwrap(), Bucket::Actes);
    assert_eq!(Bucket::for_source("plan_cadastraux").unwrap(), Bucket::PlansCadastraux);
    assert_eq!(Bucket::PlansCadastraux.as_str(), "plans-cadastraux");
    let err = Bucket::for_source("actes").unwrap_err();
    assert_eq!(err.to_string(), "unknown document_source \"actes\": expected index, acte or plan_cadastraux");
}

#[test]
fn object_name_is_sanitized() {
    assert_eq!(object_name("1 234 567", "Montréal", "Cadastre du Québec", 1_700_000_000_123), "1_234_567-Montr_al-Cadastre_du_Qu_bec-1700000000123.pdf");
    assert_eq!(object_name("../../etc/passwd", "a/b", "c\\d", 1), "______etc_passwd-a_b-c_d-1.pdf");
    assert_eq!(object_name("", "", "", 5), "---5.pdf");
    assert_eq!(sanitize("AZaz09_-"), "AZaz09_-");
    assert_eq!(sanitize("é.\0\n%"), "_____");
    // A huge number cannot produce a file name longer than filesystems allow.
    assert!(object_name(&"9".repeat(10_000), &"x".repeat(500), "", 1).len() < 255);
}

#[test]
fn document_paths_stay_in_their_bucket() {
    for number in ["../../etc/passwd", "..", ".", "/", "a/../../b", "with spaces", "accentué", "", "\\..\\..\\win", "%2e%2e%2f"] {
        let path = ObjectPath::for_document("acte", number, "Montréal", "Québec", 42).unwrap();
        assert_eq!(path.bucket(), Bucket::Actes);
        assert!(!path.name().contains('/') && !path.name().contains('\\'), "{path}");
        assert!(path.name().chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')), "{path}");
        assert!(path.name().ends_with("-42.pdf"), "{path}");
        assert_eq!(ObjectPath::parse(&path.to_string()).unwrap(), path);
    }
}

#[test]
fn bucket_slash_path_form() {
    let p = ObjectPath::parse("index/123-Montreal-Quebec-1700000000000.pdf").unwrap();
    assert_eq!(p.bucket(), Bucket::Index);
    assert_eq!(p.name(), "123-Montreal-Quebec-1700000000000.pdf");
    assert_eq!(p.to_string(), "index/123-Montreal-Quebec-1700000000000.pdf");
    // Sub-folders are kept; a leading slash and surrounding blanks are tolerated.
    let p = ObjectPath::parse(" /plans-cadastraux/2024/plan 1.pdf ").unwrap();
    assert_eq!((p.bucket(), p.name()), (Bucket::PlansCadastraux, "2024/plan 1.pdf"));
    assert_eq!("actes/x.pdf".parse::<ObjectPath>().unwrap().bucket(), Bucket::Actes);
}

#[test]
fn supabase_url_forms() {
    let cases = [
        "https://abcd.supabase.co/storage/v1/object/public/actes/1234-Montreal-Quebec-1.pdf",
        "https://abcd.supabase.co/storage/v1/object/actes/1234-Montreal-Quebec-1.pdf",
        "https://abcd.supabase.co/storage/v1/object/authenticated/actes/1234-Montreal-Quebec-1.pdf",
        "https://abcd.supabase.co/storage/v1/object/sign/actes/1234-Montreal-Quebec-1.pdf?token=eyJhbGciOi.x.y",
        "http://127.0.0.1:54321/storage/v1/object/public/actes/1234-Montreal-Quebec-1.pdf#page=2",
    ];
    for url in cases {
        let p = ObjectPath::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(p.to_string(), "actes/1234-Montreal-Quebec-1.pdf", "{url}");
    }
    // Percent-encoded names are decoded.
    let p = ObjectPath::parse("https://x.supabase.co/storage/v1/object/public/index/dossier%20A/n%C2%B01.pdf").unwrap();
    assert_eq!((p.bucket(), p.name()), (Bucket::Index, "dossier A/n°1.pdf"));
}

fn refused(input: &str) -> String {
    match ObjectPath::parse(input) {
        Ok(p) => panic!("{input:?} was accepted as {p}"),
        Err(e @ StorageError::InvalidPath { .. }) => e.to_string(),
        Err(other) => panic!("{input:?}: unexpected error kind {other:?}"),
    }
}

#[test]
fn hostile_or_unknown_paths_are_refused_readably() {
    let e = refused("index/../../etc/passwd");
    assert!(e.contains("'.' and '..' segments are not allowed"), "{e}");
    assert!(e.starts_with("invalid storage path \"index/../../etc/passwd\""), "{e}");
    refused("index/a/./b.pdf");
    refused("index/a//b.pdf");
    refused("index/");
    refused("index");
    refused("");
    refused("index/a\\..\\b");
    refused("index/a\0b");
    // `..` hidden in a URL, plain or percent-encoded: the URL is not normalized, it is refused.
    refused("https://x.supabase.co/storage/v1/object/public/index/../actes/a.pdf");
    refused("https://x.supabase.co/storage/v1/object/public/index/%2e%2e/%2E%2E/etc/passwd");
    refused("https://x.supabase.co/storage/v1/object/public/index/a%2F..%2F..%2Fb");
    let e = refused("https://x.supabase.co/rest/v1/extraction_queue");
    assert!(e.contains("not a Supabase Storage object URL"), "{e}");
    let e = refused("avatars/me.png");
    assert!(e.contains("unknown bucket \"avatars\" (expected one of index, actes, plans-cadastraux)"), "{e}");
    let e = refused("https://x.supabase.co/storage/v1/object/public/secret/a.pdf");
    assert!(e.contains("unknown bucket \"secret\""), "{e}");
}
