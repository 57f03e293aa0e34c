//! The registry's vocabulary that more than one crate speaks: [`DocumentSource`], the kind of
//! document a queue row asks for (the `document_source` column of `extraction_queue`). The queue
//! claims by it, the fetchers search by it, the OCR pool splits its workers by it. And [`text`]:
//! the one rule for turning row data into a stored name, and remote text into an error excerpt.
//! And [`index_data`]: the index des immeubles as structured data, with the registry's natures.
//! And the shared vocabulary of the queue and Redis: [`status`] (the status ids and their French
//! labels), [`keys`] (every Redis key format) and [`pool`] (the OCR pool's records in Redis).

pub mod index_data;
pub mod keys;
pub mod pool;
pub mod status;
pub mod text;

use std::fmt;
use std::str::FromStr;

/// The `document_source` column of `extraction_queue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DocumentSource {
    /// An acte (deed), found by its inscription number.
    Acte,
    /// The index des immeubles of a lot.
    Index,
    /// A plan cadastral.
    PlanCadastraux,
}

impl DocumentSource {
    pub const ALL: [DocumentSource; 3] = [DocumentSource::Acte, DocumentSource::Index, DocumentSource::PlanCadastraux];

    /// The value stored in the queue: `acte`, `index` or `plan_cadastraux`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentSource::Acte => "acte",
            DocumentSource::Index => "index",
            DocumentSource::PlanCadastraux => "plan_cadastraux",
        }
    }

    /// The source a stored value names, if any (exact match).
    pub fn parse(value: &str) -> Option<DocumentSource> {
        DocumentSource::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl fmt::Display for DocumentSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown document_source {0:?}: expected acte, index or plan_cadastraux")]
pub struct UnknownDocumentSource(pub String);

impl FromStr for DocumentSource {
    type Err = UnknownDocumentSource;
    /// Like [`DocumentSource::parse`], ignoring surrounding white space, with a readable error.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocumentSource::parse(s.trim()).ok_or_else(|| UnknownDocumentSource(s.trim().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_values_round_trip() {
        for source in DocumentSource::ALL {
            assert_eq!(DocumentSource::parse(source.as_str()), Some(source));
            assert_eq!(source.to_string().parse::<DocumentSource>(), Ok(source));
        }
        assert_eq!(" index ".parse::<DocumentSource>(), Ok(DocumentSource::Index));
        assert_eq!(DocumentSource::parse("plan"), None);
        assert_eq!("actes".parse::<DocumentSource>().unwrap_err().to_string(), "unknown document_source \"actes\": expected acte, index or plan_cadastraux");
    }
}
