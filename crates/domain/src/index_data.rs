//! The index des immeubles as data: the `index_data` JSON of an `index` row (pages → circonscription,
//! cadastre, lot; inscriptions → date, number, nature, parties with their roles, remarks, avis
//! d'adresse, radiations; warnings), the registry's natures of acts, and the checks every engine's
//! answer goes through before it is stored (docs/ocr.md, Structured index).
//!
//! The rule everywhere: nothing is invented. A field that was not read with confidence is `null`
//! and a warning says why.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// `format` of a page in the modern printed table layout.
pub const FORMAT_MODERN: &str = "modern-inscription";
/// `format` of a page that is not (handwritten registers, older forms): header fields only.
pub const FORMAT_UNKNOWN: &str = "unknown";

/// The `index_data` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexData {
    /// `tesseract` or `gemini`.
    pub engine: String,
    pub pages: Vec<IndexPage>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexPage {
    /// 1-based page of the PDF.
    pub page: u32,
    /// [`FORMAT_MODERN`] or [`FORMAT_UNKNOWN`].
    pub format: String,
    pub circonscription: Option<String>,
    pub cadastre: Option<String>,
    pub lot: Option<String>,
    #[serde(default)]
    pub inscriptions: Vec<Inscription>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inscription {
    /// `YYYY-MM-DD`.
    pub date_presentation: Option<String>,
    /// Grouped by thousands as the registry prints it: `8 173 504`.
    pub numero: Option<String>,
    /// One of [`natures`], spelled as in the list.
    pub nature: Option<String>,
    #[serde(default)]
    pub parties: Vec<Party>,
    pub remarques: Option<String>,
    pub avis_adresse: Option<String>,
    #[serde(default)]
    pub radiations: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Party {
    pub nom: String,
    /// As read: roles are not a closed list.
    pub qualite: Option<String>,
}

/// The registry's natures of acts, one per line of `data/registry-natures.txt`.
pub fn natures() -> &'static [&'static str] {
    static NATURES: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
        include_str!("../data/registry-natures.txt").lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect()
    });
    &NATURES
}

/// Case-, apostrophe- and space-insensitive key: ’ ‘ ` ´ and ' are one character.
pub fn nature_key(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .map(|c| match c {
            '’' | '‘' | '`' | '´' | 'ʼ' => '\'',
            c => c,
        })
        .flat_map(char::to_lowercase)
        .collect()
}

/// The nature of the list that `text` names exactly (up to case, spaces and the apostrophe's form).
pub fn canonical_nature(text: &str) -> Option<&'static str> {
    let key = nature_key(text);
    natures().iter().copied().find(|n| nature_key(n) == key)
}

/// The nature of the list closest to `text` read by OCR, if it is close enough to be the one
/// printed: edit distance over accent-free keys at most 1 + len/8, and strictly closer than any
/// other nature (a tie is not a reading).
pub fn closest_nature(text: &str) -> Option<&'static str> {
    if let Some(n) = canonical_nature(text) {
        return Some(n);
    }
    let key = plain(&nature_key(text));
    if key.is_empty() {
        return None;
    }
    let mut scored: Vec<(usize, &'static str)> = natures().iter().map(|n| (levenshtein(&key, &plain(&nature_key(n))), *n)).collect();
    scored.sort();
    let (best, nature) = scored[0];
    let unique = scored.get(1).is_none_or(|(second, _)| *second > best);
    (best <= 1 + key.chars().count() / 8 && unique).then_some(nature)
}

/// Lower-case letters without their accents (OCR loses and adds accents; the distance should not
/// count them twice).
pub fn plain(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'à' | 'â' | 'ä' | 'á' => 'a',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'î' | 'ï' | 'í' => 'i',
            'ô' | 'ö' | 'ó' => 'o',
            'ù' | 'û' | 'ü' | 'ú' => 'u',
            'ç' => 'c',
            'ÿ' => 'y',
            c => c,
        })
        .collect()
}

/// Levenshtein distance over chars.
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            cur[j] = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// `YYYY-MM-DD` of a real calendar day (1800–2199).
pub fn valid_date(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    if parts.len() != 3 || parts[0].len() != 4 || parts[1].len() != 2 || parts[2].len() != 2 {
        return false;
    }
    let (Ok(y), Ok(m), Ok(d)) = (parts[0].parse::<u32>(), parts[1].parse::<u32>(), parts[2].parse::<u32>()) else {
        return false;
    };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1800..2200).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1]
}

/// Digits regrouped by thousands with single spaces (`8173504` → `8 173 504`); None when `text`
/// holds anything but digits and spaces, or no digit.
pub fn group_thousands(text: &str) -> Option<String> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit() || c == ' ') {
        return None;
    }
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return None;
    }
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    Some(out)
}

impl IndexData {
    /// Makes an answer that parsed as this shape safe to store: a field that breaks the rules
    /// (a date that is no day, a nature not in the list, a number that is not digits, an unknown
    /// format) becomes null with a warning naming it. Returns how many fields were cleared.
    pub fn sanitize(&mut self) -> usize {
        let mut cleared = 0;
        let mut warnings = Vec::new();
        for page in &mut self.pages {
            let p = page.page;
            if page.format != FORMAT_MODERN && page.format != FORMAT_UNKNOWN {
                warnings.push(format!("page {p}: format {:?} is not a known layout, taken as unknown", page.format));
                page.format = FORMAT_UNKNOWN.into();
                cleared += 1;
            }
            if page.format == FORMAT_UNKNOWN && !page.inscriptions.is_empty() {
                warnings.push(format!("page {p}: inscriptions given for a page not in the modern layout were left out"));
                cleared += page.inscriptions.len();
                page.inscriptions.clear();
            }
            if let Some(lot) = page.lot.take() {
                match group_thousands(lot.trim()) {
                    Some(g) => page.lot = Some(g),
                    None => {
                        warnings.push(format!("page {p}: lot {lot:?} is not a lot number"));
                        cleared += 1;
                    }
                }
            }
            for ins in &mut page.inscriptions {
                let label = ins.numero.clone().unwrap_or_else(|| "without number".into());
                if let Some(n) = ins.numero.take() {
                    match group_thousands(n.trim()) {
                        Some(g) => ins.numero = Some(g),
                        None => {
                            warnings.push(format!("page {p}: inscription number {n:?} is not a number"));
                            cleared += 1;
                        }
                    }
                }
                if let Some(d) = ins.date_presentation.take() {
                    if valid_date(d.trim()) {
                        ins.date_presentation = Some(d.trim().to_string());
                    } else {
                        warnings.push(format!("inscription {label}: date {d:?} is not a YYYY-MM-DD day"));
                        cleared += 1;
                    }
                }
                if let Some(n) = ins.nature.take() {
                    match canonical_nature(&n) {
                        Some(c) => ins.nature = Some(c.to_string()),
                        None => {
                            warnings.push(format!("inscription {label}: nature {n:?} is not one of the registry's natures"));
                            cleared += 1;
                        }
                    }
                }
                let before = ins.radiations.len();
                ins.radiations = ins.radiations.iter().filter_map(|r| group_thousands(r.trim())).collect();
                if ins.radiations.len() != before {
                    warnings.push(format!("inscription {label}: a radiation that is not a number was left out"));
                    cleared += before - ins.radiations.len();
                }
                ins.parties.retain(|party| !party.nom.trim().is_empty());
            }
        }
        self.warnings.extend(warnings);
        cleared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natures_come_from_the_list_with_both_apostrophes() {
        assert!(natures().len() >= 60);
        assert_eq!(canonical_nature("Servitude d'environnement"), Some("Servitude d’environnement"));
        assert_eq!(canonical_nature("servitude  d’environnement"), Some("Servitude d’environnement"));
        assert_eq!(canonical_nature("Vendre"), None);
        assert_eq!(closest_nature("Hypotheque"), Some("Hypothèque"));
        assert_eq!(closest_nature("Préavis d'exercice d'un droit hypothecaire"), Some("Préavis d’exercice d’un droit hypothécaire"));
        assert_eq!(closest_nature("Zzzzz"), None);
        assert_eq!(closest_nature(""), None);
    }

    #[test]
    fn numbers_and_dates() {
        assert_eq!(group_thousands("8173504").as_deref(), Some("8 173 504"));
        assert_eq!(group_thousands("18 273 001").as_deref(), Some("18 273 001"));
        assert_eq!(group_thousands("8 17a"), None);
        assert!(valid_date("1996-02-29"));
        assert!(!valid_date("1995-02-29"));
        assert!(!valid_date("1995-6-06"));
    }

    #[test]
    fn sanitize_clears_what_breaks_the_rules_and_says_so() {
        let mut data: IndexData = serde_json::from_value(serde_json::json!({
            "engine": "gemini",
            "pages": [{"page": 1, "format": "modern-inscription", "circonscription": "Laval", "cadastre": "Cadastre du Québec", "lot": "3142828",
                       "inscriptions": [{"date_presentation": "1995-13-06", "numero": "8173504", "nature": "Servitude d'environnement",
                                         "parties": [{"nom": "OUELLET, JEAN", "qualite": "Vendeur"}], "remarques": null, "avis_adresse": null,
                                         "radiations": ["20 619 536", "voir plus haut"]}]}],
            "warnings": []
        }))
        .unwrap();
        assert_eq!(data.sanitize(), 2);
        let ins = &data.pages[0].inscriptions[0];
        assert_eq!(data.pages[0].lot.as_deref(), Some("3 142 828"));
        assert_eq!(ins.date_presentation, None);
        assert_eq!(ins.numero.as_deref(), Some("8 173 504"));
        assert_eq!(ins.nature.as_deref(), Some("Servitude d’environnement"));
        assert_eq!(ins.radiations, vec!["20 619 536"]);
        assert_eq!(data.warnings.len(), 2, "{:?}", data.warnings);
    }
}
