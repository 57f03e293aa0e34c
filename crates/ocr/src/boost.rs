//! Boosting: domain corrections of OCR text of Quebec land registry documents (index des
//! immeubles, actes, plans), as a table of [`Rule`]s applied in order by [`boost`].
//!
//! Every rule is conservative: it only rewrites text that matches a precise pattern of a known OCR
//! mistake (a letter O between digits, a UTF-8 accent read as Latin-1, a word cut at a line end),
//! and correct text passes through unchanged (each rule's tests check both). The table, in order:
//!
//! | rule | what it repairs |
//! |---|---|
//! | `mojibake` | UTF-8 read as Latin-1/CP-1252: `Ã©` → `é`, `Ã‰` → `É`, `â€™` → `’`, `Â°` → `°` ... |
//! | `ligatures` | typographic ligatures: `ﬁ` → `fi`, `ﬂ` → `fl` ... |
//! | `trailing_whitespace` | CR/CRLF → LF, spaces and tabs at line ends removed |
//! | `hyphenated_line_break` | a lower-case word cut by `-` at a line end is re-joined (`enregis-\ntrement` → `enregistrement`; lexical hyphens such as `sous-\nsol` → `sous-sol` kept) |
//! | `blank_line_runs` | runs of blank lines → one blank line |
//! | `date_confusions` | O/o → 0, l/I → 1, S → 5 inside a date that then is valid (`2O21-O3-15` → `2021-03-15`) |
//! | `digit_confusions` | O/o → 0, l/I → 1, S → 5 inside a number that starts and ends with a digit (`1 2O4 567` → `1 204 567`) |
//! | `grouped_number_confusions` | the same at the edge of a 3-digit group of a space-grouped number (`1 234 S67` → `1 234 567`) |
//! | `digit_group_spacing` | a space-grouped 7–8 digit number (lot, inscription) that lost some group spaces is regrouped by thousands (`15 656074` → `15 656 074`, `2193 564` → `2 193 564`) |
//! | `lot_number_spacing` | a 7-digit lot number after `lot`/`lots` written `1234567` or `1 234567` → `1 234 567` |
//! | `accents` | a few words whose unaccented form is never correct French: `Quebec` → `Québec`, `Montreal` → `Montréal`, `numero` → `numéro`, `hypotheque` → `hypothèque` ... |

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

/// One correction.
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    pub apply: fn(&str) -> String,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Every rule, in the order [`boost`] applies them (encoding repairs first, then line structure,
/// then numbers, then words).
pub static RULES: &[Rule] = &[
    Rule { name: "mojibake", description: "UTF-8 accents read as Latin-1/CP-1252 (Ã© → é, â€™ → ’)", apply: mojibake },
    Rule { name: "ligatures", description: "typographic ligatures (ﬁ → fi, ﬂ → fl)", apply: ligatures },
    Rule { name: "trailing_whitespace", description: "CRLF → LF, spaces and tabs at line ends removed", apply: trailing_whitespace },
    Rule {
        name: "hyphenated_line_break",
        description: "lower-case word cut by a hyphen at a line end re-joined (lexical hyphens kept)",
        apply: hyphenated_line_break,
    },
    Rule { name: "blank_line_runs", description: "runs of blank lines → one blank line", apply: blank_line_runs },
    Rule { name: "date_confusions", description: "O/o→0, l/I→1, S→5 inside dates that are then valid", apply: date_confusions },
    Rule { name: "digit_confusions", description: "O/o→0, l/I→1, S→5 between digits of one number", apply: digit_confusions },
    Rule {
        name: "grouped_number_confusions",
        description: "O/o→0, l/I→1, S→5 in 3-digit groups of space-grouped numbers",
        apply: grouped_number_confusions,
    },
    Rule {
        name: "digit_group_spacing",
        description: "7–8 digit numbers that lost some group spaces regrouped by thousands",
        apply: digit_group_spacing,
    },
    Rule { name: "lot_number_spacing", description: "lot numbers after lot/lots written 1 234 567", apply: lot_number_spacing },
    Rule { name: "accents", description: "words whose unaccented form is never correct French (Quebec → Québec)", apply: accents },
];

/// Applies every rule of [`RULES`] in order.
pub fn boost(text: &str) -> String {
    RULES.iter().fold(text.to_string(), |t, rule| (rule.apply)(&t))
}

/// A regex of this file (constant patterns, all compiled by the tests).
fn re(pattern: &str) -> Regex {
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("boost rule pattern is valid")
}

/// The letter a digit is most often misread as, back to the digit.
fn confusable_digit(c: char) -> Option<char> {
    match c {
        'O' | 'o' => Some('0'),
        'l' | 'I' => Some('1'),
        'S' => Some('5'),
        _ => None,
    }
}

fn to_digits(s: &str) -> String {
    s.chars().map(|c| confusable_digit(c).unwrap_or(c)).collect()
}

fn count_digits(s: &str) -> usize {
    s.chars().filter(char::is_ascii_digit).count()
}

fn count_confusables(s: &str) -> usize {
    s.chars().filter(|c| confusable_digit(*c).is_some()).count()
}

// ---------------------------------------------------------------------------------------------

/// UTF-8 bytes of French letters decoded as Latin-1 / CP-1252. None of these sequences occurs in
/// correct French text.
const MOJIBAKE: &[(&str, &str)] = &[
    ("Ã©", "é"),
    ("Ã¨", "è"),
    ("Ãª", "ê"),
    ("Ã«", "ë"),
    ("Ã\u{a0}", "à"),
    ("Ã¢", "â"),
    ("Ã®", "î"),
    ("Ã¯", "ï"),
    ("Ã´", "ô"),
    ("Ã¶", "ö"),
    ("Ã¹", "ù"),
    ("Ã»", "û"),
    ("Ã¼", "ü"),
    ("Ã§", "ç"),
    ("Ã‰", "É"),
    ("Ãˆ", "È"),
    ("ÃŠ", "Ê"),
    ("Ã€", "À"),
    ("Ã‡", "Ç"),
    ("Ã”", "Ô"),
    ("ÃŽ", "Î"),
    ("Ã›", "Û"),
    ("Å“", "œ"),
    ("Å’", "Œ"),
    ("â€™", "’"),
    ("â€˜", "‘"),
    ("â€œ", "“"),
    ("â€“", "–"),
    ("â€”", "—"),
    ("Â°", "°"),
    ("Â«", "«"),
    ("Â»", "»"),
    ("Â§", "§"),
    ("Â\u{a0}", "\u{a0}"),
];

fn mojibake(text: &str) -> String {
    if !text.contains(['Ã', 'Å', 'â', 'Â']) {
        return text.to_string();
    }
    MOJIBAKE.iter().fold(text.to_string(), |t, (bad, good)| t.replace(bad, good))
}

fn ligatures(text: &str) -> String {
    const LIGATURES: &[(&str, &str)] = &[("ﬃ", "ffi"), ("ﬄ", "ffl"), ("ﬀ", "ff"), ("ﬁ", "fi"), ("ﬂ", "fl")];
    LIGATURES.iter().fold(text.to_string(), |t, (lig, plain)| t.replace(lig, plain))
}

fn trailing_whitespace(text: &str) -> String {
    static TRAILING: LazyLock<Regex> = LazyLock::new(|| re(r"(?m)[ \t\u{a0}]+$"));
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    TRAILING.replace_all(&text, "").into_owned()
}

/// Words written with a hyphen in French (`sous-sol`, `peut-être`, `vice-président`, `ci-après`):
/// cut after the hyphen at a line end, they are re-joined with the hyphen kept.
const LEXICAL_HYPHEN: &[&str] = &[
    "après", "arrière", "avant", "bas", "beau", "belle", "ci", "celle", "celles", "celui", "ceux", "contre", "demi", "dit",
    "dite", "dites", "dits", "elle", "elles", "eux", "ex", "grand", "grande", "haut", "lui", "mi", "moi", "non", "nous",
    "nu", "nue", "nus", "peut", "petit", "petite", "quasi", "rez", "semi", "soi", "sous", "sur", "toi", "vice", "vous",
    "est", "ouest", "nord", "sud", "là", "celle", "même",
];

fn hyphenated_line_break(text: &str) -> String {
    static CUT: LazyLock<Regex> = LazyLock::new(|| re(r"(\p{Ll}+)-[ \t]*\n[ \t]*(\p{Ll})"));
    CUT.replace_all(text, |c: &Captures| {
        let word = &c[1];
        if LEXICAL_HYPHEN.contains(&word) {
            format!("{word}-{}", &c[2])
        } else {
            format!("{word}{}", &c[2])
        }
    })
    .into_owned()
}

fn blank_line_runs(text: &str) -> String {
    static RUNS: LazyLock<Regex> = LazyLock::new(|| re(r"\n[ \t]*\n(?:[ \t]*\n)+"));
    RUNS.replace_all(text, "\n\n").into_owned()
}

/// A plausible registry date: year 1800–2100, month 1–12, day 1–31.
fn valid_date(year: &str, month: &str, day: &str) -> bool {
    match (year.parse::<u32>(), month.parse::<u32>(), day.parse::<u32>()) {
        (Ok(y), Ok(m), Ok(d)) => (1800..=2100).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d),
        _ => false,
    }
}

fn date_confusions(text: &str) -> String {
    // YYYY-MM-DD (the registry's format) and DD-MM-YYYY, with -, / or . as separator.
    static DATE: LazyLock<Regex> = LazyLock::new(|| {
        re(r"\b(?:([0-9OolIS]{4})([-/.])([0-9OolIS]{2})([-/.])([0-9OolIS]{2})|([0-9OolIS]{2})([-/.])([0-9OolIS]{2})([-/.])([0-9OolIS]{4}))\b")
    });
    DATE.replace_all(text, |c: &Captures| {
        let whole = &c[0];
        let (y, s1, m, s2, d, ymd) = match (c.get(1), c.get(6)) {
            (Some(y), _) => (y.as_str(), &c[2], &c[3], &c[4], &c[5], true),
            (None, Some(d)) => (&c[10], &c[7], &c[8], &c[9], d.as_str(), false),
            (None, None) => return whole.to_string(),
        };
        // Same separator twice, mostly real digits, at least one letter to fix.
        if s1 != s2 || count_confusables(whole) == 0 || count_digits(whole) < 4 {
            return whole.to_string();
        }
        let (y, m, d) = (to_digits(y), to_digits(m), to_digits(d));
        if !valid_date(&y, &m, &d) {
            return whole.to_string();
        }
        if ymd {
            format!("{y}{s1}{m}{s2}{d}")
        } else {
            format!("{d}{s1}{m}{s2}{y}")
        }
    })
    .into_owned()
}

fn digit_confusions(text: &str) -> String {
    // A whole word that starts and ends with a digit and has letters O/o/l/I/S inside.
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d[0-9OolIS]*[OolIS][0-9OolIS]*\d\b"));
    NUMBER
        .replace_all(text, |c: &Captures| {
            let token = &c[0];
            if count_digits(token) >= count_confusables(token) {
                to_digits(token)
            } else {
                token.to_string()
            }
        })
        .into_owned()
}

fn grouped_number_confusions(text: &str) -> String {
    // 1–3 digits, then groups of exactly 3 separated by one space: `1 234 567`, `12 345 678`.
    static GROUPED: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d{1,3}(?: [0-9OolIS]{3})+\b"));
    GROUPED
        .replace_all(text, |c: &Captures| {
            let number = &c[0];
            let mut groups = number.split(' ');
            let first = groups.next().unwrap_or_default();
            // Every later group must be at least two real digits: `Sol`, `ISO` are words, not groups.
            if count_confusables(number) == 0 || !groups.clone().all(|g| count_digits(g) >= 2) {
                return number.to_string();
            }
            std::iter::once(first.to_string()).chain(groups.map(to_digits)).collect::<Vec<_>>().join(" ")
        })
        .into_owned()
}

/// `1234567` → `1 234 567`.
fn group_thousands(digits: &str) -> String {
    let lead = match digits.len() % 3 {
        0 => 3,
        n => n,
    };
    let (first, rest) = digits.split_at(lead.min(digits.len()));
    let mut groups = vec![first];
    groups.extend(rest.as_bytes().chunks(3).filter_map(|c| std::str::from_utf8(c).ok()));
    groups.join(" ")
}

fn digit_group_spacing(text: &str) -> String {
    // Runs of digit groups separated by single spaces.
    static RUN: LazyLock<Regex> = LazyLock::new(|| re(r"\b\d+(?: \d+)+\b"));
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in RUN.find_iter(text) {
        let mut tokens: Vec<&str> = m.as_str().split(' ').collect();
        let mut prefix = String::new();
        let mut suffix = String::new();
        // A group glued to a date (`2008-11-15`, `15/03/2021`) belongs to the date, not the number.
        if text[..m.start()].ends_with(['-', '/', '.']) && tokens.len() > 1 {
            prefix = format!("{} ", tokens.remove(0));
        }
        let after = &text[m.end()..];
        let mut chars = after.chars();
        if matches!(chars.next(), Some('-' | '/' | '.')) && chars.next().is_some_and(|c| c.is_ascii_digit()) && tokens.len() > 1 {
            suffix = format!(" {}", tokens.pop().unwrap_or_default());
        }
        let digits: String = tokens.concat();
        let canonical = group_thousands(&digits);
        let joined = tokens.join(" ");
        let year_then_count = tokens.len() == 2
            && tokens[0].len() == 4
            && tokens[0].parse::<u32>().is_ok_and(|y| (1800..=2100).contains(&y));
        let fix = tokens.len() >= 2
            && (7..=8).contains(&digits.len())
            && tokens[1..].iter().all(|t| t.len() >= 3)
            && joined != canonical
            && !year_then_count;
        out.push_str(&text[last..m.start()]);
        out.push_str(&prefix);
        out.push_str(if fix { &canonical } else { &joined });
        out.push_str(&suffix);
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

fn lot_number_spacing(text: &str) -> String {
    // `lot`/`lots` (optionally `no`, `n°`, `numéro(s)`), then a list of 7-digit numbers.
    static LOTS: LazyLock<Regex> = LazyLock::new(|| {
        re(r"(?i)\blots?\s+(?:(?:n[o°º]s?\.?|num[ée]ros?)\s*)?\d[ \u{a0}]{0,2}\d{3}[ \u{a0}]{0,2}\d{3}\b(?:\s*(?:,|et)\s*\d[ \u{a0}]{0,2}\d{3}[ \u{a0}]{0,2}\d{3}\b)*")
    });
    static NUMBER: LazyLock<Regex> = LazyLock::new(|| re(r"\b(\d)[ \u{a0}]{0,2}(\d{3})[ \u{a0}]{0,2}(\d{3})\b"));
    LOTS.replace_all(text, |c: &Captures| NUMBER.replace_all(&c[0], "$1 $2 $3").into_owned()).into_owned()
}

/// (wrong, right): unaccented forms that are never correct in French text. Proper nouns are only
/// fixed capitalized or upper-case, and not after `of ` (English names: `Bank of Montreal`).
const ACCENTS: &[(&str, &str)] = &[
    ("Quebec", "Québec"),
    ("QUEBEC", "QUÉBEC"),
    ("Montreal", "Montréal"),
    ("MONTREAL", "MONTRÉAL"),
    ("Trois-Rivieres", "Trois-Rivières"),
    ("TROIS-RIVIERES", "TROIS-RIVIÈRES"),
    ("numero", "numéro"),
    ("Numero", "Numéro"),
    ("NUMERO", "NUMÉRO"),
    ("numeros", "numéros"),
    ("Numeros", "Numéros"),
    ("hypotheque", "hypothèque"),
    ("Hypotheque", "Hypothèque"),
    ("HYPOTHEQUE", "HYPOTHÈQUE"),
    ("hypotheques", "hypothèques"),
    ("Hypotheques", "Hypothèques"),
    ("municipalite", "municipalité"),
    ("Municipalite", "Municipalité"),
    ("MUNICIPALITE", "MUNICIPALITÉ"),
    ("propriete", "propriété"),
    ("Propriete", "Propriété"),
    ("proprietaire", "propriétaire"),
    ("Proprietaire", "Propriétaire"),
    ("proprietaires", "propriétaires"),
    ("Proprietaires", "Propriétaires"),
    ("prenom", "prénom"),
    ("Prenom", "Prénom"),
    ("prenoms", "prénoms"),
    ("Prenoms", "Prénoms"),
];

fn accents(text: &str) -> String {
    static WORDS: LazyLock<Regex> = LazyLock::new(|| {
        let alternatives: Vec<String> = ACCENTS.iter().map(|(wrong, _)| regex::escape(wrong)).collect();
        re(&format!(r"\b(?:{})\b", alternatives.join("|")))
    });
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for m in WORDS.find_iter(text) {
        out.push_str(&text[last..m.start()]);
        let before = &text[..m.start()];
        let english = before.ends_with("of ") || before.ends_with("OF ") || before.ends_with("Of ");
        // A hyphen after the word (`Quebec-Central`) is part of a name: leave it.
        let in_name = text[m.end()..].starts_with('-') || before.ends_with('-');
        let replacement: Cow<str> = match ACCENTS.iter().find(|(wrong, _)| *wrong == m.as_str()) {
            Some((_, right)) if !english && !in_name => Cow::Borrowed(right),
            _ => Cow::Borrowed(m.as_str()),
        };
        out.push_str(&replacement);
        last = m.end();
    }
    out.push_str(&text[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Correct text of the kind the rules touch: no rule may change any of it.
    const CORRECT: &str = "Registre foncier du Québec\nCirconscription foncière de Montréal\n\n\
        Lot 1 234 567, cadastre du Québec\nLots 2 345 678 et 3 456 789\n\
        Inscription 12 345 678 du 2021-03-15 (15/03/2021)\nVente — Tremblay, Jean; Gagnon, Marie-Ève\n\
        Hypothèque de 250 000 $ à la Banque de Montréal, numéro 25 987 654\n\
        Bank of Montreal, Province of Quebec\nrez-de-chaussée, sous-sol, peut-être\n\
        ISO 9001, Sol 3, SOS, 10 ans, 3e étage, H2O, A1B 2C3\nQuebec-Central (chemin de fer)";

    fn rule(name: &str) -> fn(&str) -> String {
        RULES.iter().find(|r| r.name == name).map(|r| r.apply).unwrap_or_else(|| panic!("no rule {name}"))
    }

    #[test]
    fn every_rule_leaves_correct_text_alone() {
        for r in RULES {
            assert_eq!((r.apply)(CORRECT), CORRECT, "rule {} changed correct text", r.name);
        }
        assert_eq!(boost(CORRECT), CORRECT);
    }

    #[test]
    fn rules_have_unique_names_and_descriptions() {
        let mut names: Vec<_> = RULES.iter().map(|r| r.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), RULES.len());
        assert!(RULES.iter().all(|r| !r.description.is_empty()));
    }

    /// (rule, OCR text, what the rule makes of it). A text the rule must leave alone is its own
    /// expected result.
    const CASES: &[(&str, &str, &str)] = &[
        ("mojibake", "ProcÃ©dure d'enregistrement Ã\u{a0} MontrÃ©al", "Procédure d'enregistrement à Montréal"),
        ("mojibake", "Ã‰TAT, cÅ“ur, lâ€™acte, 5Â°", "ÉTAT, cœur, l’acte, 5°"),
        ("mojibake", "Âge, À côté, ça", "Âge, À côté, ça"),
        ("ligatures", "certiﬁcat, ﬂeuve, eﬀet, eﬃcace", "certificat, fleuve, effet, efficace"),
        ("ligatures", "certificat", "certificat"),
        ("trailing_whitespace", "Lot 1 234 567   \r\nVente\t\nfin  ", "Lot 1 234 567\nVente\nfin"),
        ("trailing_whitespace", "a  b\n c", "a  b\n c"),
        ("hyphenated_line_break", "l'enregis-\ntrement du lot", "l'enregistrement du lot"),
        ("hyphenated_line_break", "le sous-\nsol et la servi- \n tude", "le sous-sol et la servitude"),
        // Capitalized second part (names: Saint-\nLaurent), digits and list dashes are left alone.
        ("hyphenated_line_break", "Saint-\nLaurent\n2021-\n03\n-\nvente", "Saint-\nLaurent\n2021-\n03\n-\nvente"),
        ("blank_line_runs", "Index\n\n\n\nLot\n \n\t\nfin", "Index\n\nLot\n\nfin"),
        ("blank_line_runs", "a\n\nb\nc", "a\n\nb\nc"),
        ("date_confusions", "du 2O21-O3-15 au 2O2l/l2/3l", "du 2021-03-15 au 2021/12/31"),
        ("date_confusions", "signé le 15-O3-2OlS", "signé le 15-03-2015"),
        // Not a valid date once fixed, mixed separators, or no letter to fix: unchanged.
        ("date_confusions", "2O21-O3-4S 2O21-O3/15 2021-03-15 SOlO-lO-lO", "2O21-O3-4S 2O21-O3/15 2021-03-15 SOlO-lO-lO"),
        ("digit_confusions", "lot 1 2O4 567, inscription 1O5S2 et 3l8", "lot 1 204 567, inscription 10552 et 318"),
        // Words, tokens glued to letters, and numbers that do not start and end with a digit.
        ("digit_confusions", "ISO 9001, H2O, A1O2, 1Ol, 10 ans, O3, 3e", "ISO 9001, H2O, A1O2, 1Ol, 10 ans, O3, 3e"),
        ("grouped_number_confusions", "Lot 1 234 S67 et 2 34O 678; 12 3O5 67l", "Lot 1 234 567 et 2 340 678; 12 305 671"),
        ("grouped_number_confusions", "lot 5 Sol, 12 ISO, 3 OSS, 1 234 567", "lot 5 Sol, 12 ISO, 3 OSS, 1 234 567"),
        ("digit_group_spacing", "5 604277 2008-11-15 15 656074 Vente\n2193 564 2005-08-22 26077 837", "5 604 277 2008-11-15 15 656 074 Vente\n2 193 564 2005-08-22 26 077 837"),
        // Canonical numbers, dates, amounts, phone numbers, a year then a count, numbers without any
        // space, and short groups: unchanged.
        ("digit_group_spacing", "1 234 567 12 345 678 2008-11-15 250 000 $ 418 555 1234 en 2019 245 lots 1234567 3 12 2021 15/03/2021 12 345678 901", "1 234 567 12 345 678 2008-11-15 250 000 $ 418 555 1234 en 2019 245 lots 1234567 3 12 2021 15/03/2021 12 345678 901"),
        ("lot_number_spacing", "Lot 1234567", "Lot 1 234 567"),
        ("lot_number_spacing", "lots nos 1 234567, 2345 678 et 3  456 789.", "lots nos 1 234 567, 2 345 678 et 3 456 789."),
        ("lot_number_spacing", "LOT numéro 4567890", "LOT numéro 4 567 890"),
        // Not after lot, or not 7 digits: unchanged.
        ("lot_number_spacing", "inscription 1234567; lot 12345678; lot 123 456", "inscription 1234567; lot 12345678; lot 123 456"),
        ("accents", "Registre foncier du Quebec, MONTREAL", "Registre foncier du Québec, MONTRÉAL"),
        ("accents", "Numero d'inscription, hypotheque, Prenom", "Numéro d'inscription, hypothèque, Prénom"),
        ("accents", "Bank of Montreal, Quebec-Central, Quebecor, quebec", "Bank of Montreal, Quebec-Central, Quebecor, quebec"),
    ];

    #[test]
    fn each_rule_fixes_its_confusions_and_leaves_look_alikes_alone() {
        for &(name, text, expected) in CASES {
            assert_eq!(rule(name)(text), expected, "rule {name} on {text:?}");
        }
        for r in RULES {
            assert!(CASES.iter().any(|(name, _, _)| *name == r.name), "rule {} has no case", r.name);
        }
    }

    #[test]
    fn boost_applies_all_rules_and_is_idempotent() {
        let ocr = "Registre foncier du Quebec   \r\nLot 1 2O4 S67 -- enregis-\ntrement\n\n\n\nle 2O21-O3-15 par MontrÃ©al";
        let once = boost(ocr);
        assert_eq!(once, "Registre foncier du Québec\nLot 1 204 567 -- enregistrement\n\nle 2021-03-15 par Montréal");
        assert_eq!(boost(&once), once);
    }
}
