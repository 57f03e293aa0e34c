//! Validation of a document an operator asks to queue (POST /api/extractions, registrectl enqueue).
//! Every field has a length and a character limit, so nothing odd reaches the registry forms, the
//! storage object names or the dashboard; each bad field gets its own message, all at once, so an
//! operator fixes a request in one go.

use registre_domain::DocumentSource;
use serde::{Deserialize, Serialize};

/// What an operator sends. Unknown fields are refused (a typo must not silently drop a value).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewExtraction {
    pub document_source: Option<String>,
    pub document_number: Option<String>,
    pub circonscription_fonciere: Option<String>,
    pub cadastre: Option<String>,
    pub designation_secondaire: Option<String>,
    pub acte_type: Option<String>,
}

/// A request that passed validation: trimmed, typed, ready for ops_enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidExtraction {
    pub source: DocumentSource,
    pub document_number: String,
    /// The number without spaces, as the registry forms want it ("4 866 594" → "4866594").
    pub document_number_normalized: String,
    pub circonscription_fonciere: Option<String>,
    pub cadastre: Option<String>,
    pub designation_secondaire: Option<String>,
    pub acte_type: Option<String>,
}

/// One bad field and what is expected of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

pub const MAX_NUMBER_CHARS: usize = 40;
pub const MAX_TEXT_CHARS: usize = 100;

/// Characters allowed in a document number: ASCII letters and digits, space, `-`, `.`, `/`.
fn number_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '.' | '/')
}

/// Characters allowed in names (circonscription, cadastre, designation, acte type): letters with
/// their accents (Québec, Trois-Rivières), digits, space and `-'.,()/_`.
fn name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '-' | '\'' | '’' | '.' | ',' | '(' | ')' | '/' | '_')
}

fn check(
    errors: &mut Vec<FieldError>,
    field: &'static str,
    value: Option<&String>,
    required: Option<&str>,
    max: usize,
    allowed: fn(char) -> bool,
    allowed_text: &str,
) -> Option<String> {
    let value = value.map(|v| v.trim()).filter(|v| !v.is_empty());
    let Some(v) = value else {
        if let Some(why) = required {
            errors.push(FieldError { field, message: format!("{field} is required {why}") });
        }
        return None;
    };
    let chars = v.chars().count();
    if chars > max {
        errors.push(FieldError { field, message: format!("{field} has {chars} characters; at most {max} are allowed") });
        return None;
    }
    if let Some(bad) = v.chars().find(|c| !allowed(*c)) {
        errors.push(FieldError {
            field,
            message: format!("{field} contains {bad:?}; only {allowed_text} are allowed"),
        });
        return None;
    }
    // Runs of spaces are collapsed: "4  866 594" and "4 866 594" are the same document.
    Some(v.split_whitespace().collect::<Vec<_>>().join(" "))
}

impl NewExtraction {
    /// The rules: document_source is acte, index or plan_cadastraux; document_number is required;
    /// index and acte need circonscription_fonciere (the registry's search forms start with it);
    /// index and plan_cadastraux need cadastre; acte needs acte_type. Every field: length and
    /// character limits.
    pub fn validate(&self) -> Result<ValidExtraction, Vec<FieldError>> {
        let mut errors = Vec::new();
        let source = match self.document_source.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            None => {
                errors.push(FieldError {
                    field: "document_source",
                    message: "document_source is required: acte, index or plan_cadastraux".into(),
                });
                None
            }
            Some(s) => match DocumentSource::parse(s) {
                Some(source) => Some(source),
                None => {
                    let shown: String = s.chars().take(40).collect();
                    errors.push(FieldError {
                        field: "document_source",
                        message: format!("document_source {shown:?} is not one of acte, index, plan_cadastraux"),
                    });
                    None
                }
            },
        };
        let number_chars = "letters, digits, spaces and - . /";
        let name_chars = "letters, digits, spaces and - ' . , ( ) / _";
        let document_number = check(
            &mut errors,
            "document_number",
            self.document_number.as_ref(),
            Some("(the lot, inscription or plan number)"),
            MAX_NUMBER_CHARS,
            number_char,
            number_chars,
        );
        let needs_circonscription = matches!(source, Some(DocumentSource::Index | DocumentSource::Acte));
        let circonscription_fonciere = check(
            &mut errors,
            "circonscription_fonciere",
            self.circonscription_fonciere.as_ref(),
            needs_circonscription.then_some("for an index or an acte"),
            MAX_TEXT_CHARS,
            name_char,
            name_chars,
        );
        let needs_cadastre = matches!(source, Some(DocumentSource::Index | DocumentSource::PlanCadastraux));
        let cadastre = check(
            &mut errors,
            "cadastre",
            self.cadastre.as_ref(),
            needs_cadastre.then_some("for an index or a plan cadastral"),
            MAX_TEXT_CHARS,
            name_char,
            name_chars,
        );
        let designation_secondaire = check(
            &mut errors,
            "designation_secondaire",
            self.designation_secondaire.as_ref(),
            None,
            MAX_TEXT_CHARS,
            name_char,
            name_chars,
        );
        let needs_acte_type = matches!(source, Some(DocumentSource::Acte));
        let acte_type = check(
            &mut errors,
            "acte_type",
            self.acte_type.as_ref(),
            needs_acte_type.then_some("for an acte"),
            MAX_TEXT_CHARS,
            name_char,
            name_chars,
        );
        match (source, document_number) {
            (Some(source), Some(document_number)) if errors.is_empty() => Ok(ValidExtraction {
                source,
                document_number_normalized: document_number.chars().filter(|c| !c.is_whitespace()).collect(),
                document_number,
                circonscription_fonciere,
                cadastre,
                designation_secondaire,
                acte_type,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> NewExtraction {
        NewExtraction {
            document_source: Some("index".into()),
            document_number: Some(" 4 866  594 ".into()),
            circonscription_fonciere: Some("Montréal".into()),
            cadastre: Some("Cadastre du Québec".into()),
            ..Default::default()
        }
    }

    fn fields(errors: &[FieldError]) -> Vec<&'static str> {
        errors.iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_good_index_is_trimmed_and_normalized() {
        let v = index().validate().unwrap();
        assert_eq!(v.source, DocumentSource::Index);
        assert_eq!(v.document_number, "4 866 594");
        assert_eq!(v.document_number_normalized, "4866594");
        assert_eq!(v.cadastre.as_deref(), Some("Cadastre du Québec"));
        assert_eq!(v.acte_type, None);
    }

    #[test]
    fn index_and_plan_need_cadastre_and_acte_needs_acte_type() {
        let mut r = index();
        r.cadastre = None;
        assert_eq!(fields(&r.validate().unwrap_err()), ["cadastre"]);
        let plan = NewExtraction {
            document_source: Some("plan_cadastraux".into()),
            document_number: Some("123".into()),
            cadastre: Some("  ".into()),
            ..Default::default()
        };
        assert_eq!(fields(&plan.validate().unwrap_err()), ["cadastre"]);
        let acte = NewExtraction {
            document_source: Some("acte".into()),
            document_number: Some("12 345 678".into()),
            circonscription_fonciere: Some("Québec".into()),
            ..Default::default()
        };
        let errors = acte.validate().unwrap_err();
        assert_eq!(fields(&errors), ["acte_type"]);
        assert!(errors[0].message.contains("acte_type is required for an acte"), "{errors:?}");
    }

    #[test]
    fn every_bad_field_gets_its_own_message() {
        let r = NewExtraction {
            document_source: Some("deed".into()),
            document_number: Some("12;DROP".into()),
            circonscription_fonciere: Some("x".repeat(101)),
            cadastre: Some("<script>".into()),
            designation_secondaire: Some("ok".into()),
            acte_type: Some("a\u{0}b".into()),
        };
        let errors = r.validate().unwrap_err();
        assert_eq!(fields(&errors), ["document_source", "document_number", "circonscription_fonciere", "cadastre", "acte_type"]);
        assert!(errors[0].message.contains("\"deed\" is not one of"));
        assert!(errors[1].message.contains("';'"), "{}", errors[1].message);
        assert!(errors[2].message.contains("101 characters; at most 100"));
        assert!(errors[3].message.contains("'<'"));
        assert!(errors[4].message.contains("'\\0'"), "{}", errors[4].message);
    }

    #[test]
    fn missing_everything_names_source_and_number() {
        let errors = NewExtraction::default().validate().unwrap_err();
        assert_eq!(fields(&errors), ["document_source", "document_number"]);
    }

    #[test]
    fn too_long_number_is_refused() {
        let mut r = index();
        r.document_number = Some("1".repeat(41));
        assert_eq!(fields(&r.validate().unwrap_err()), ["document_number"]);
    }
}
