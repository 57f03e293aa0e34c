//! Buckets, object names and object paths (docs/design.md §8). Everything that comes from row data goes
//! through here, so no backend ever sees a path that could leave its bucket.

use std::fmt;

use crate::StorageError;

/// The three buckets, one per `document_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    Index,
    Actes,
    PlansCadastraux,
}

impl Bucket {
    pub const ALL: [Bucket; 3] = [Bucket::Index, Bucket::Actes, Bucket::PlansCadastraux];

    /// The bucket's name: `index`, `actes`, `plans-cadastraux`.
    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Index => "index",
            Bucket::Actes => "actes",
            Bucket::PlansCadastraux => "plans-cadastraux",
        }
    }

    /// The bucket of a queue row's `document_source` (`index`, `acte`, `plan_cadastraux`).
    pub fn for_source(document_source: &str) -> Result<Bucket, StorageError> {
        match document_source.trim() {
            "index" => Ok(Bucket::Index),
            "acte" => Ok(Bucket::Actes),
            "plan_cadastraux" => Ok(Bucket::PlansCadastraux),
            other => Err(StorageError::UnknownSource { document_source: other.to_string() }),
        }
    }

    /// A bucket from its name (`index`, `actes`, `plans-cadastraux`).
    pub fn from_name(name: &str) -> Result<Bucket, StorageError> {
        Bucket::ALL
            .into_iter()
            .find(|b| b.as_str() == name)
            .ok_or_else(|| StorageError::UnknownBucket { bucket: name.to_string() })
    }
}

impl fmt::Display for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub use registre_domain::text::{sanitize, MAX_PART_CHARS};

/// `{document_number}-{circonscription}-{cadastre}-{unix_ms}.pdf`, each part sanitized: the
/// result never contains `/`, `\` or `..` and always stays inside its bucket.
pub fn object_name(document_number: &str, circonscription: &str, cadastre: &str, unix_ms: u64) -> String {
    format!("{}-{}-{}-{unix_ms}.pdf", sanitize(document_number), sanitize(circonscription), sanitize(cadastre))
}

/// A validated object location: a known bucket and a relative name whose `/`-separated segments
/// are never empty, `.` or `..`, and hold no `\` or control character. Its Display,
/// `<bucket>/<name>`, is what goes into `supabase_path`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectPath {
    bucket: Bucket,
    name: String,
}

impl ObjectPath {
    /// Checks `name` (which may contain `/` for sub-folders) and pairs it with `bucket`.
    pub fn new(bucket: Bucket, name: impl Into<String>) -> Result<ObjectPath, StorageError> {
        let name = name.into();
        let bad = |reason: &str| StorageError::InvalidPath { path: format!("{bucket}/{name}"), reason: reason.to_string() };
        if name.is_empty() {
            return Err(bad("the object name is empty"));
        }
        if name.len() > 1024 {
            return Err(bad("the object name is longer than 1024 bytes"));
        }
        if name.chars().any(|c| c == '\\' || c.is_control()) {
            return Err(bad("the object name contains a backslash or a control character"));
        }
        for segment in name.split('/') {
            match segment {
                "" => return Err(bad("the object name has an empty segment (leading, trailing or double '/')")),
                "." | ".." => return Err(bad("'.' and '..' segments are not allowed")),
                _ => {}
            }
        }
        Ok(ObjectPath { bucket, name })
    }

    /// The object of a queue row: bucket from `document_source`, name from [`object_name`].
    pub fn for_document(
        document_source: &str,
        document_number: &str,
        circonscription: &str,
        cadastre: &str,
        unix_ms: u64,
    ) -> Result<ObjectPath, StorageError> {
        let bucket = Bucket::for_source(document_source)?;
        ObjectPath::new(bucket, object_name(document_number, circonscription, cadastre, unix_ms))
    }

    /// Parses a `supabase_path` in either form:
    /// - `<bucket>/<path>` (what this system writes);
    /// - a Supabase Storage URL: `https://<project>.supabase.co/storage/v1/object/public/<bucket>/<path>`,
    ///   also `/object/<bucket>/<path>`, `/object/authenticated/...` and `/object/sign/...?token=..`.
    ///
    /// `.` / `..` segments (also percent-encoded), unknown buckets and empty names are refused.
    pub fn parse(supabase_path: &str) -> Result<ObjectPath, StorageError> {
        let raw = supabase_path.trim();
        let bad = |reason: &str| StorageError::InvalidPath { path: raw.to_string(), reason: reason.to_string() };
        let rest: String = if let Some(scheme_end) = raw.find("://") {
            // Not parsed with `url::Url`: it would resolve `..` silently instead of refusing it.
            let after_scheme = &raw[scheme_end + 3..];
            let path = after_scheme.find('/').map_or("", |i| &after_scheme[i..]);
            let path = path.split(['?', '#']).next().unwrap_or_default();
            let Some(i) = path.find("/storage/v1/object/").map(|i| i + "/storage/v1/object/".len()).or_else(|| path.find("/object/").map(|i| i + "/object/".len())) else {
                return Err(bad("a URL but not a Supabase Storage object URL (…/storage/v1/object/…)"));
            };
            let mut rest = &path[i..];
            for access in ["public/", "authenticated/", "sign/"] {
                if let Some(r) = rest.strip_prefix(access) {
                    rest = r;
                    break;
                }
            }
            percent_encoding::percent_decode_str(rest)
                .decode_utf8()
                .map_err(|_| bad("the URL path is not valid UTF-8 once percent-decoded"))?
                .into_owned()
        } else {
            raw.strip_prefix('/').unwrap_or(raw).to_string()
        };
        let Some((bucket, name)) = rest.split_once('/') else {
            return Err(bad("expected <bucket>/<path>"));
        };
        let bucket = Bucket::from_name(bucket).map_err(|_| {
            bad(&format!("unknown bucket {bucket:?} (expected one of index, actes, plans-cadastraux)"))
        })?;
        ObjectPath::new(bucket, name).map_err(|e| match e {
            StorageError::InvalidPath { reason, .. } => bad(&reason),
            other => other,
        })
    }

    pub fn bucket(&self) -> Bucket {
        self.bucket
    }

    /// The object's name inside its bucket.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for ObjectPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.name)
    }
}

impl std::str::FromStr for ObjectPath {
    type Err = StorageError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ObjectPath::parse(s)
    }
}
