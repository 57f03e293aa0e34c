//! What a worker asks a fetcher for: the document kind and the identifying fields of a queue row.
//! Independent of the queue crate (the vocabulary comes from registre-domain); the worker builds
//! it from the claimed job.

pub use registre_domain::{DocumentSource, UnknownDocumentSource};

/// One document to fetch, with the fields of its `extraction_queue` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRequest {
    pub document_source: DocumentSource,
    /// Lot number (index, plan) or inscription number (acte).
    pub document_number: String,
    pub circonscription_fonciere: Option<String>,
    pub cadastre: Option<String>,
    pub designation_secondaire: Option<String>,
    pub acte_type: Option<String>,
}

impl DocumentRequest {
    /// A request with only the kind and number set.
    pub fn new(document_source: DocumentSource, document_number: impl Into<String>) -> Self {
        DocumentRequest {
            document_source,
            document_number: document_number.into(),
            circonscription_fonciere: None,
            cadastre: None,
            designation_secondaire: None,
            acte_type: None,
        }
    }

    /// Readable name of the document for error messages:
    /// `index 2 269 090 (circonscription Montréal, cadastre Cadastre du Québec)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut push = |label: &str, value: &Option<String>| {
            if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                parts.push(format!("{label} {v}"));
            }
        };
        push("circonscription", &self.circonscription_fonciere);
        push("cadastre", &self.cadastre);
        push("type", &self.acte_type);
        push("désignation secondaire", &self.designation_secondaire);
        if parts.is_empty() {
            format!("{} {}", self.document_source, self.document_number)
        } else {
            format!("{} {} ({})", self.document_source, self.document_number, parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_round_trip() {
        for s in DocumentSource::ALL {
            assert_eq!(s.as_str().parse::<DocumentSource>(), Ok(s));
        }
        let err = "plans".parse::<DocumentSource>().unwrap_err();
        assert_eq!(err.to_string(), "unknown document_source \"plans\": expected acte, index or plan_cadastraux");
    }

    #[test]
    fn describe_names_the_document() {
        let mut r = DocumentRequest::new(DocumentSource::Index, "2269090");
        assert_eq!(r.describe(), "index 2269090");
        r.circonscription_fonciere = Some("Montréal".into());
        r.cadastre = Some(" ".into());
        assert_eq!(r.describe(), "index 2269090 (circonscription Montréal)");
    }
}
