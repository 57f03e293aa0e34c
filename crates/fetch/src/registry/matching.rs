//! Best-match choice of a select option for a row's value. The registry's option texts rarely
//! equal what the queue row holds ("Montreal" vs "Montréal", "Québec" vs "Cadastre du Québec",
//! "ST-LAURENT" vs "Saint-Laurent"), so both are folded (case, accents, punctuation, filler words)
//! and compared as sets of words; the option value (a code) matches exactly too.

/// One `<option>` of a select: its value and visible text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct SelectOption {
    pub value: String,
    pub text: String,
}

/// Words that carry no meaning for the match ("Cadastre du Québec" is the cadastre "Québec").
const FILLER: &[&str] = &["cadastre", "du", "de", "des", "la", "le", "les", "d", "l"];

/// Below this share of common words the option is not the row's value.
const MIN_SCORE: f64 = 0.5;

/// Lower case, accents removed, every non-alphanumeric character a space, "st"/"ste" spelled out.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars().flat_map(char::to_lowercase) {
        let base = match c {
            'à' | 'á' | 'â' | 'ä' | 'ã' | 'å' => 'a',
            'ç' => 'c',
            'è' | 'é' | 'ê' | 'ë' => 'e',
            'ì' | 'í' | 'î' | 'ï' => 'i',
            'ñ' => 'n',
            'ò' | 'ó' | 'ô' | 'ö' | 'õ' => 'o',
            'ù' | 'ú' | 'û' | 'ü' => 'u',
            'ÿ' | 'ý' => 'y',
            'œ' => {
                out.push_str("oe");
                continue;
            }
            c if c.is_alphanumeric() => c,
            _ => ' ',
        };
        out.push(base);
    }
    out.split_whitespace()
        .map(|w| match w {
            "st" => "saint",
            "ste" => "sainte",
            w => w,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn words(text: &str) -> Vec<String> {
    let folded = fold(text);
    let all: Vec<String> = folded.split(' ').filter(|w| !w.is_empty()).map(str::to_string).collect();
    let meaningful: Vec<String> = all.iter().filter(|w| !FILLER.contains(&w.as_str())).cloned().collect();
    // "Cadastre du" alone would leave nothing: then every word counts.
    if meaningful.is_empty() {
        all
    } else {
        meaningful
    }
}

/// How well `option` matches `wanted`: 3 same value, 2 same folded text, else the share of common
/// meaningful words (Jaccard, 0..=1).
fn score(wanted: &str, option: &SelectOption) -> f64 {
    if !option.value.trim().is_empty() && option.value.trim() == wanted.trim() {
        return 3.0;
    }
    if fold(&option.text) == fold(wanted) {
        return 2.0;
    }
    let a = words(wanted);
    let b = words(&option.text);
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let common = a.iter().filter(|w| b.contains(w)).count() as f64;
    let union = (a.len() + b.len()) as f64 - common;
    common / union
}

/// The option best matching `wanted` (first of equals), or None when none is close enough.
/// Options with an empty value (the "--" placeholder) are never chosen.
pub fn best_option<'a>(wanted: &str, options: &'a [SelectOption]) -> Option<&'a SelectOption> {
    let mut best: Option<(&SelectOption, f64)> = None;
    for option in options.iter().filter(|o| !o.value.trim().is_empty()) {
        let s = score(wanted, option);
        if s >= MIN_SCORE && best.is_none_or(|(_, b)| s > b) {
            best = Some((option, s));
        }
    }
    best.map(|(o, _)| o)
}

/// When no option is close enough: up to `n` options sharing at least one word with `wanted`,
/// best match first (production's fallback tried up to 3 of them).
pub fn ranked_options<'a>(wanted: &str, options: &'a [SelectOption], n: usize) -> Vec<&'a SelectOption> {
    let mut scored: Vec<(f64, &SelectOption)> = options
        .iter()
        .filter(|o| !o.value.trim().is_empty())
        .map(|o| (score(wanted, o), o))
        .filter(|(s, _)| *s > 0.0)
        .collect();
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    scored.into_iter().take(n).map(|(_, o)| o).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(texts: &[(&str, &str)]) -> Vec<SelectOption> {
        texts.iter().map(|(v, t)| SelectOption { value: v.to_string(), text: t.to_string() }).collect()
    }

    #[test]
    fn case_accents_punctuation_and_cadastre_forms() {
        let circ = options(&[("", "-- Choisir --"), ("01", "Montréal"), ("02", "Québec"), ("03", "Saint-Hyacinthe")]);
        assert_eq!(best_option("MONTREAL", &circ).map(|o| o.value.as_str()), Some("01"));
        assert_eq!(best_option("St Hyacinthe", &circ).map(|o| o.value.as_str()), Some("03"));
        assert_eq!(best_option("02", &circ).map(|o| o.value.as_str()), Some("02"));
        assert_eq!(best_option("Gaspé", &circ), None);
        assert_eq!(best_option("--", &circ), None, "the placeholder is never chosen");

        let cadastres = options(&[("1", "Paroisse de Saint-Laurent"), ("2", "Québec"), ("3", "Paroisse de Québec")]);
        assert_eq!(best_option("Cadastre du Québec", &cadastres).map(|o| o.value.as_str()), Some("2"));
        let cadastres = options(&[("1", "Paroisse de Saint-Laurent"), ("2", "Cadastre du Québec")]);
        assert_eq!(best_option("Québec", &cadastres).map(|o| o.value.as_str()), Some("2"));
        assert_eq!(best_option("paroisse de st-laurent", &cadastres).map(|o| o.value.as_str()), Some("1"));
    }

    #[test]
    fn ranked_fallbacks_share_a_word_best_first() {
        let cadastres = options(&[("000000", "Choisir un cadastre"), ("1", "Paroisse de Saint-Laurent"), ("2", "Paroisse de Saint-Laurent-de-l'Île"), ("3", "Village de Saint-Laurent Est Nord")]);
        assert_eq!(best_option("Saint-Laurent Ouest Sud Centre", &cadastres), None);
        let ranked: Vec<&str> = ranked_options("Saint-Laurent Ouest Sud Centre", &cadastres, 3).iter().map(|o| o.value.as_str()).collect();
        assert_eq!(ranked, ["1", "2", "3"]);
        assert!(ranked_options("Gaspé", &cadastres, 3).is_empty());
    }
}
