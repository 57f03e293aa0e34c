//! The index des immeubles rebuilt from tesseract's word positions (its TSV output): the page's
//! header fields (circonscription, cadastre, lot), the table's header row and the columns' x-ranges
//! taken from it, then the inscriptions: one starts at a line carrying a date and a number, the
//! lines below it carry further parties, nature or remark continuations and radiations.
//!
//! Why positions and not the text: tesseract's text keeps the words of a line in reading order but
//! loses which column a word sat in, and a table of eight columns with empty cells cannot be
//! split back from spaces alone. The page is slightly rotated on a scan, so the words' coordinates
//! are first straightened by the median slope of the long text lines.
//!
//! Nothing is invented: a cell that does not read as what its column holds is null and a warning
//! names it; a page without the table's header is `"format": "unknown"` with its header fields.

use std::sync::LazyLock;

use regex::Regex;
use registre_domain::index_data::{closest_nature, IndexData, group_thousands, valid_date, IndexPage, Inscription, Party, FORMAT_MODERN, FORMAT_UNKNOWN};

use crate::boost::boost;

/// Words read with less confidence than this (tesseract's 0–100) in a number or a date make the
/// field doubtful: it is kept only if it also passes its own check, and a warning is added.
const LOW_CONFIDENCE: f64 = 45.0;

/// One word of tesseract's TSV (level 5).
#[derive(Debug, Clone, PartialEq)]
pub struct Word {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
    pub conf: f64,
    pub text: String,
    /// (block, paragraph, line) as tesseract segmented them.
    pub line: (u32, u32, u32),
}

/// The words of a TSV page (`tesseract … tsv`); rows that are not words or carry no text are skipped.
pub fn parse_tsv(tsv: &str) -> Vec<Word> {
    let mut words = Vec::new();
    for row in tsv.lines().skip(1) {
        let f: Vec<&str> = row.split('\t').collect();
        if f.len() < 12 || f[0] != "5" {
            continue;
        }
        let num = |i: usize| f[i].trim().parse::<f64>().ok();
        let int = |i: usize| f[i].trim().parse::<u32>().unwrap_or(0);
        let text = f[11..].join("\t").trim().to_string();
        if text.is_empty() {
            continue;
        }
        if let (Some(left), Some(top), Some(width), Some(height), Some(conf)) = (num(6), num(7), num(8), num(9), num(10)) {
            words.push(Word { left, top, width, height, conf, text, line: (int(2), int(3), int(4)) });
        }
    }
    words
}

/// A word with straightened coordinates.
#[derive(Debug, Clone)]
struct Placed {
    u: f64,
    v: f64,
    width: f64,
    height: f64,
    conf: f64,
    text: String,
}

/// A line of the page: its words left to right.
#[derive(Debug, Clone)]
struct Row {
    v: f64,
    words: Vec<Placed>,
}

impl Row {
    fn text(&self) -> String {
        self.words.iter().map(|w| w.text.as_str()).collect::<Vec<_>>().join(" ")
    }
}

/// `index_data` of a whole document from each page's TSV (in page order).
pub fn read_document(tsv_pages: &[String]) -> IndexData {
    let mut data = IndexData { engine: "tesseract".into(), pages: Vec::new(), warnings: Vec::new() };
    for (i, tsv) in tsv_pages.iter().enumerate() {
        let (page, warnings) = read_page(i as u32 + 1, &parse_tsv(tsv));
        data.pages.push(page);
        data.warnings.extend(warnings);
    }
    data
}

/// What the page's text is: one page of `index_data` and the warnings about it.
pub fn read_page(page: u32, words: &[Word]) -> (IndexPage, Vec<String>) {
    let mut warnings = Vec::new();
    let rows = rows(words);
    let mut out = IndexPage { page, format: FORMAT_UNKNOWN.into(), circonscription: None, cadastre: None, lot: None, inscriptions: Vec::new() };
    let header = find_header(&rows);
    let title_end = header.as_ref().map_or(rows.len(), |h| h.first_row);
    read_title(&rows[..title_end], &mut out, &mut warnings);
    let Some(header) = header else {
        if words.is_empty() {
            warnings.push(format!("page {page}: no text read"));
        } else {
            warnings.push(format!("page {page}: no table header found (not the modern printed layout): header fields only"));
        }
        return (out, warnings);
    };
    out.format = FORMAT_MODERN.into();
    if !header.guessed.is_empty() {
        warnings.push(format!("page {page}: column(s) {} not found in the table header, placed between their neighbours", header.guessed.join(", ")));
    }
    out.inscriptions = read_inscriptions(page, &rows[header.last_row + 1..], &header.starts, &mut warnings);
    (out, warnings)
}

/// Words straightened (by the median slope of tesseract's long lines) and grouped into rows.
fn rows(words: &[Word]) -> Vec<Row> {
    let words: Vec<&Word> = words.iter().filter(|w| !is_rule_noise(&w.text) && !is_speck(w)).collect();
    // Slope of each tesseract line with enough extent: least squares of the words' bottoms.
    let mut slopes = Vec::new();
    let mut lines: std::collections::BTreeMap<(u32, u32, u32), Vec<&Word>> = Default::default();
    for w in &words {
        lines.entry(w.line).or_default().push(w);
    }
    for line in lines.values().filter(|l| l.len() >= 3) {
        let xs: Vec<f64> = line.iter().map(|w| w.left + w.width / 2.0).collect();
        let ys: Vec<f64> = line.iter().map(|w| w.top + w.height).collect();
        let span = xs.iter().cloned().fold(f64::MIN, f64::max) - xs.iter().cloned().fold(f64::MAX, f64::min);
        if span < 300.0 {
            continue;
        }
        let n = xs.len() as f64;
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        if sxx > 0.0 {
            slopes.push(sxy / sxx);
        }
    }
    let slope = median(&mut slopes).filter(|s| s.abs() < 0.05).unwrap_or(0.0);
    let mut placed: Vec<Placed> = words
        .iter()
        .map(|w| {
            let (x, y) = (w.left, w.top + w.height / 2.0);
            Placed { u: x + slope * y, v: y - slope * x, width: w.width, height: w.height, conf: w.conf, text: w.text.clone() }
        })
        .collect();
    let mut heights: Vec<f64> = placed.iter().filter(|w| w.text.chars().any(char::is_alphanumeric)).map(|w| w.height).collect();
    let tolerance = median(&mut heights).unwrap_or(20.0) * 0.5;
    placed.sort_by(|a, b| a.v.total_cmp(&b.v));
    let mut rows: Vec<Row> = Vec::new();
    for w in placed {
        match rows.last_mut() {
            Some(row) if (w.v - row.v).abs() <= tolerance => {
                let n = row.words.len() as f64;
                row.v = (row.v * n + w.v) / (n + 1.0);
                row.words.push(w);
            }
            _ => rows.push(Row { v: w.v, words: vec![w] }),
        }
    }
    for row in &mut rows {
        row.words.sort_by(|a, b| a.u.total_cmp(&b.u));
    }
    rows
}

fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

/// A speck or a dust blot read as a short word: one or two characters read with little confidence
/// (real one-letter words of an index, "à", "a", are read with high confidence on a clean line;
/// digits are never taken for specks: a group of a number may be read with little confidence).
fn is_speck(w: &Word) -> bool {
    let alnum = w.text.chars().filter(|c| c.is_alphanumeric()).count();
    let digits = w.text.chars().any(|c| c.is_ascii_digit());
    (alnum == 0 && w.conf < 60.0 && w.text != "$") || (!digits && alnum <= 2 && w.text.chars().count() <= 2 && w.conf < 30.0)
}

/// Underscores, dashes and bars that a printed rule or a speck becomes when read as text.
fn is_rule_noise(text: &str) -> bool {
    !text.chars().any(char::is_alphanumeric)
        && text.chars().all(|c| matches!(c, '-' | '_' | '—' | '–' | '=' | '|' | '.' | '~' | '\'' | '‘' | '’' | ',' | '`' | '"' | '“' | '”' | '«' | '»' | '*' | '°' | ':' | ';'))
        && text != ":"
}

/// Lower-case, accent-free, the part after an elided article (d'inscription → inscription).
fn keyword(text: &str) -> String {
    let plain = registre_domain::index_data::plain(&text.to_lowercase());
    let after = plain.rsplit(['\'', '’']).next().unwrap_or(&plain).to_string();
    after.chars().filter(|c| c.is_alphabetic()).collect()
}

/// The column a header word starts, if it is one of the labels' words.
fn header_column(word: &str) -> Option<usize> {
    let k = keyword(word);
    let near = |target: &str| k == target || (k.len() >= 5 && registre_domain::index_data::levenshtein(&k, target) <= 1);
    match () {
        _ if near("date") || near("presentation") => Some(0),
        _ if near("numero") || near("inscription") => Some(1),
        _ if near("nature") || near("acte") => Some(2),
        _ if near("qualite") => Some(3),
        _ if k == "nom" || near("parties") => Some(4),
        _ if near("remarques") => Some(5),
        _ if near("avis") || near("adresse") => Some(6),
        _ if near("radiations") || near("radiation") => Some(7),
        _ => None,
    }
}

struct Header {
    first_row: usize,
    last_row: usize,
    /// Left edge (u) of each of the 8 columns.
    starts: [f64; 8],
    /// Columns whose label was not read.
    guessed: Vec<&'static str>,
}

const COLUMN_NAMES: [&str; 8] =
    ["Date de présentation", "Numéro d'inscription", "Nature de l'acte", "Qualité", "Nom des parties", "Remarques", "Avis d'adresse", "Radiations"];

/// The table's header: the first row naming at least 4 different columns, with the row below it
/// when that one carries the labels' second lines.
fn find_header(rows: &[Row]) -> Option<Header> {
    let columns_named = |row: &Row| {
        let mut seen = [false; 8];
        for w in &row.words {
            if let Some(c) = header_column(&w.text) {
                seen[c] = true;
            }
        }
        seen
    };
    let first = rows.iter().position(|r| columns_named(r).iter().filter(|s| **s).count() >= 4)?;
    let mut last = first;
    if let Some(next) = rows.get(first + 1) {
        let height = rows[first].words.iter().map(|w| w.height).fold(0.0, f64::max);
        let named = columns_named(next).iter().filter(|s| **s).count();
        if next.v - rows[first].v < 2.2 * height && named >= 1 && !next.words.iter().any(|w| w.text.chars().filter(char::is_ascii_digit).count() >= 4) {
            last = first + 1;
        }
    }
    let mut starts = [f64::NAN; 8];
    for row in &rows[first..=last] {
        for w in &row.words {
            if let Some(c) = header_column(&w.text) {
                if starts[c].is_nan() || w.u < starts[c] {
                    starts[c] = w.u;
                }
            }
        }
    }
    // A label tesseract misread: between its neighbours (the column order never changes).
    let found: Vec<usize> = (0..8).filter(|c| !starts[*c].is_nan()).collect();
    if found.len() < 6 {
        return None;
    }
    let mut guessed = Vec::new();
    for c in 0..8 {
        if starts[c].is_nan() {
            let before = found.iter().rev().find(|f| **f < c).copied();
            let after = found.iter().find(|f| **f > c).copied();
            starts[c] = match (before, after) {
                (Some(b), Some(a)) => starts[b] + (starts[a] - starts[b]) * (c - b) as f64 / (a - b) as f64,
                (Some(b), None) => starts[b] + 1.0,
                (None, Some(a)) => starts[a] - 1.0,
                (None, None) => return None,
            };
            guessed.push(COLUMN_NAMES[c]);
        }
    }
    // Labels must read left to right; anything else is not this layout.
    if starts.windows(2).any(|w| w[1] <= w[0]) {
        return None;
    }
    Some(Header { first_row: first, last_row: last, starts, guessed })
}

static CIRCONSCRIPTION: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^circonscription(?:\s+fonci\S*)?\s*[:;]?\s*(.+)$"));
static CADASTRE: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^cadastre\s*[:;]\s*(.+)$"));
static LOT: LazyLock<Regex> = LazyLock::new(|| re(r"(?i)^lot\s*[:;]?\s*([0-9OoIlS ]+)$"));
static DATE: LazyLock<Regex> = LazyLock::new(|| re(r"(\d{4})\s*[-–.,/]?\s*(\d{2})\s*[-–.,/]?\s*(\d{2})"));

fn re(pattern: &str) -> Regex {
    #[allow(clippy::expect_used)]
    Regex::new(pattern).expect("index table pattern is valid")
}

/// Circonscription, cadastre and lot from the lines above the table.
fn read_title(rows: &[Row], out: &mut IndexPage, warnings: &mut Vec<String>) {
    for row in rows {
        // Specks before the label and after the value ("‘Cadastre", "Gatineau |") are not text.
        let text = boost(&row.text()).trim_matches(|c: char| !c.is_alphanumeric()).to_string();
        if let Some(c) = CIRCONSCRIPTION.captures(&text) {
            out.circonscription.get_or_insert_with(|| tidy(&c[1]));
        } else if let Some(c) = CADASTRE.captures(&text) {
            out.cadastre.get_or_insert_with(|| tidy(&c[1]));
        } else if let Some(c) = LOT.captures(&text) {
            match number(&c[1]) {
                Some(lot) => {
                    out.lot.get_or_insert(lot);
                }
                None => warnings.push(format!("page {}: lot number unreadable ({:?})", out.page, c[1].trim())),
            }
        } else if text.to_lowercase().starts_with("lot") {
            warnings.push(format!("page {}: lot number unreadable ({text:?})", out.page));
        }
    }
}

/// Spaces collapsed, no space before a comma and one after.
fn tidy(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    joined.replace(" ,", ",").replace(",", ", ").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A registry number (lot, inscription, radiation): digits (after the boosting rules' letter →
/// digit repairs) regrouped by thousands; None for anything else.
fn number(text: &str) -> Option<String> {
    let fixed: String = boost(text.trim()).chars().filter(|c| !matches!(c, ':' | ';' | '_' | '\'' | '’' | '`' | '~' | '"' | '«' | '»' | '*' | '-' | '—')).map(|c| match c {
        'O' | 'o' => '0',
        'l' | 'I' | '|' => '1',
        'S' => '5',
        c => c,
    }).filter(|c| *c != '.' && *c != ',').collect();
    let g = group_thousands(fixed.trim())?;
    let digits = g.chars().filter(char::is_ascii_digit).count();
    (4..=9).contains(&digits).then_some(g)
}

/// The cells of one row: per column, its words' text and their lowest confidence.
fn cells(row: &Row, starts: &[f64; 8]) -> [(String, f64); 8] {
    // A word belongs to the last column whose left edge its centre passes (cells are left-aligned,
    // so a cell's words start at the edge and the previous cell's words end a gap before it). The
    // centre, not the left edge: a speck glued to a word widens its box to the left.
    let slack = row.words.iter().map(|w| w.height).fold(0.0, f64::max) * 0.5;
    let mut out: [(String, f64); 8] = Default::default();
    for c in out.iter_mut() {
        c.1 = 100.0;
    }
    for w in &row.words {
        let col = (0..8).rev().find(|c| w.u + w.width / 2.0 >= starts[*c] - slack).unwrap_or(0);
        let cell = &mut out[col];
        if !cell.0.is_empty() {
            cell.0.push(' ');
        }
        cell.0.push_str(&w.text);
        cell.1 = cell.1.min(w.conf);
    }
    out
}

/// Accumulates the lines of one inscription.
#[derive(Default)]
struct Draft {
    date: (String, f64),
    numero: (String, f64),
    nature: Vec<String>,
    parties: Vec<(Option<String>, Option<String>)>,
    remarques: Vec<String>,
    avis: Vec<String>,
    radiations: Vec<String>,
}

fn read_inscriptions(page: u32, rows: &[Row], starts: &[f64; 8], warnings: &mut Vec<String>) -> Vec<Inscription> {
    let mut drafts: Vec<Draft> = Vec::new();
    let mut orphans = 0;
    for row in rows {
        let c = cells(row, starts);
        let digits = |s: &str| s.chars().filter(|ch| ch.is_ascii_digit() || matches!(ch, 'O' | 'o' | 'l' | 'I' | 'S')).count();
        let starts_inscription = digits(&c[0].0) >= 6 || digits(&c[1].0) >= 5;
        if starts_inscription {
            drafts.push(Draft { date: c[0].clone(), numero: c[1].clone(), ..Draft::default() });
        } else if !c[0].0.is_empty() || !c[1].0.is_empty() {
            // Stray text in the date / number columns of a continuation line: a speck or a rule.
            if c[0].0.chars().chain(c[1].0.chars()).filter(|ch| ch.is_alphanumeric()).count() >= 3 {
                warnings.push(format!("page {page}: text {:?} in the date/number columns of a line without a date left out", format!("{} {}", c[0].0, c[1].0).trim()));
            }
        }
        let Some(d) = drafts.last_mut() else {
            if c.iter().any(|cell| !cell.0.is_empty()) {
                orphans += 1;
            }
            continue;
        };
        if !c[2].0.is_empty() {
            d.nature.push(c[2].0.clone());
        }
        let (q, n) = (nonempty(&c[3].0).map(|q| role(&q)).filter(|q| !q.is_empty()), nonempty(&c[4].0).map(|n| name(&n)).filter(|n| !n.is_empty()));
        if q.is_some() || n.is_some() {
            d.parties.push((q, n));
        }
        if !c[5].0.is_empty() {
            d.remarques.push(c[5].0.clone());
        }
        if !c[6].0.is_empty() {
            d.avis.push(c[6].0.clone());
        }
        if !c[7].0.is_empty() {
            d.radiations.push(c[7].0.clone());
        }
    }
    if orphans > 0 {
        warnings.push(format!("page {page}: {orphans} line(s) between the header and the first inscription left out"));
    }
    drafts.into_iter().map(|d| finish(page, d, warnings)).collect()
}

/// A role (qualité) is a word or two of letters: what else is on the cell is a speck.
fn role(text: &str) -> String {
    let kept: String = text.chars().filter(|c| c.is_alphabetic() || matches!(c, '-' | ' ' | '\'' | '’')).collect();
    kept.split_whitespace().collect::<Vec<_>>().join(" ").trim_matches(|c: char| !c.is_alphabetic()).to_string()
}

/// Abbreviations of company names that end with their period.
const ABBREVIATIONS: &[&str] = &["INC", "LTD", "ENR", "CIE", "CORP", "S.E.N.C", "S.E.C"];

/// A party's name: specks around it (`:`, `.`, `_`, quotes) removed, a company's final period kept.
fn name(text: &str) -> String {
    let noise = |c: char| matches!(c, ':' | ';' | ',' | '.' | '_' | '\'' | '’' | '`' | '~' | '"' | '«' | '»' | '*' | '|' | '-' | '—');
    let words: Vec<&str> = text.split_whitespace().filter(|w| w.chars().any(char::is_alphanumeric)).collect();
    let joined = words.join(" ");
    let trimmed = joined.trim_matches(noise);
    let last = trimmed.rsplit(' ').next().unwrap_or("");
    let upper = last.to_uppercase();
    // "INC." is always written with its period; a period tesseract lost is put back. The other
    // abbreviations keep theirs only when it was read.
    let read_period = joined[joined.find(trimmed).unwrap_or(0) + trimmed.len()..].starts_with('.');
    if upper == "INC" || (read_period && ABBREVIATIONS.contains(&upper.as_str())) {
        format!("{trimmed}.")
    } else {
        trimmed.to_string()
    }
}

fn nonempty(s: &str) -> Option<String> {
    let t = tidy(&boost(s));
    (!t.is_empty()).then_some(t)
}

fn finish(page: u32, d: Draft, warnings: &mut Vec<String>) -> Inscription {
    let numero = number(&d.numero.0);
    let label = numero.clone().unwrap_or_else(|| format!("on page {page} ({})", d.date.0.trim()));
    if numero.is_none() {
        warnings.push(format!("inscription {label}: number unreadable ({:?})", d.numero.0));
    } else if d.numero.1 < LOW_CONFIDENCE {
        warnings.push(format!("inscription {label}: number read with low confidence"));
    }
    let date = date(&d.date.0);
    if date.is_none() {
        warnings.push(format!("inscription {label}: date unreadable ({:?})", d.date.0));
    } else if d.date.1 < LOW_CONFIDENCE {
        warnings.push(format!("inscription {label}: date read with low confidence"));
    }
    let nature_text = join_lines(&d.nature);
    let nature = closest_nature(&boost(&nature_text)).map(str::to_string);
    if nature.is_none() && !nature_text.is_empty() {
        warnings.push(format!("inscription {label}: nature {nature_text:?} is not one of the registry's natures"));
    } else if nature_text.is_empty() {
        warnings.push(format!("inscription {label}: no nature read"));
    }
    let mut parties = Vec::new();
    for (qualite, nom) in d.parties {
        match nom {
            Some(nom) => parties.push(Party { nom, qualite }),
            None => warnings.push(format!("inscription {label}: a party's name unreadable (qualité {:?})", qualite.unwrap_or_default())),
        }
    }
    let remarques = Some(join_lines(&d.remarques)).filter(|r| !r.is_empty()).map(|r| remark(&r));
    let mut avis_adresse = None;
    for a in &d.avis {
        match number(a) {
            Some(n) if avis_adresse.is_none() => avis_adresse = Some(n),
            _ => warnings.push(format!("inscription {label}: avis d'adresse unreadable ({a:?})")),
        }
    }
    let mut radiations = Vec::new();
    for r in &d.radiations {
        match number(r) {
            Some(n) => radiations.push(n),
            None => warnings.push(format!("inscription {label}: radiation unreadable ({r:?})")),
        }
    }
    Inscription { date_presentation: date, numero, nature, parties, remarques, avis_adresse, radiations }
}

/// Continuation lines of a cell, joined: a word cut by a hyphen at a line end is re-joined by the
/// boosting rule, other lines with a space.
fn join_lines(lines: &[String]) -> String {
    boost(&lines.join("\n")).split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A remark: boosted, French spacing around the colon as the registry prints it.
fn remark(text: &str) -> String {
    static COLON: LazyLock<Regex> = LazyLock::new(|| re(r"\s*:\s*"));
    static DOLLAR: LazyLock<Regex> = LazyLock::new(|| re(r"(\d)\s*\$"));
    let trimmed = text.trim_matches(|c: char| !c.is_alphanumeric() && c != '$');
    let spaced = COLON.replace_all(trimmed, " : ");
    DOLLAR.replace_all(spaced.trim(), "$1 $").to_string()
}

/// `YYYY-MM-DD` of a real day, from a cell after the boosting rules; None otherwise.
fn date(cell: &str) -> Option<String> {
    let fixed = boost(cell.trim());
    let c = DATE.captures(&fixed)?;
    let d = format!("{}-{}-{}", &c[1], &c[2], &c[3]);
    valid_date(&d).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(left: f64, top: f64, text: &str) -> Word {
        Word { left, top, width: 12.0 * text.chars().count() as f64, height: 24.0, conf: 95.0, text: text.into(), line: (1, 1, (top / 10.0) as u32) }
    }

    #[test]
    fn a_tiny_table_is_rebuilt_column_by_column() {
        let words = vec![
            w(80.0, 100.0, "Circonscription"),
            w(280.0, 100.0, "foncière"),
            w(400.0, 100.0, ":"),
            w(420.0, 100.0, "Laval"),
            w(80.0, 140.0, "Lot"),
            w(130.0, 140.0, ":"),
            w(150.0, 140.0, "3"),
            w(170.0, 140.0, "142"),
            w(220.0, 140.0, "828"),
            w(80.0, 200.0, "Date"),
            w(300.0, 200.0, "Numéro"),
            w(520.0, 200.0, "Nature"),
            w(950.0, 200.0, "Qualité"),
            w(1220.0, 200.0, "Nom"),
            w(1870.0, 200.0, "Remarques"),
            w(2300.0, 200.0, "Avis"),
            w(2540.0, 200.0, "Radiations"),
            w(80.0, 230.0, "présentation"),
            w(300.0, 230.0, "d'inscription"),
            w(80.0, 300.0, "1995-06-06"),
            w(300.0, 300.0, "8"),
            w(330.0, 300.0, "173"),
            w(380.0, 300.0, "5O4"),
            w(520.0, 300.0, "Vente"),
            w(950.0, 300.0, "Vendeur"),
            w(1220.0, 300.0, "OUELLET,"),
            w(1330.0, 300.0, "JEAN"),
            w(1870.0, 300.0, "Montant:"),
            w(2000.0, 300.0, "563"),
            w(2050.0, 300.0, "000,00"),
            w(2130.0, 300.0, "$"),
            w(2540.0, 300.0, "20619536"),
            w(950.0, 340.0, "Acheteur"),
            w(1220.0, 340.0, "LEBLANC,"),
            w(1340.0, 340.0, "NATHALIE"),
        ];
        let (page, warnings) = read_page(1, &words);
        assert_eq!(page.format, FORMAT_MODERN);
        assert_eq!(page.circonscription.as_deref(), Some("Laval"));
        assert_eq!(page.lot.as_deref(), Some("3 142 828"));
        assert_eq!(page.inscriptions.len(), 1, "{page:?} {warnings:?}");
        let i = &page.inscriptions[0];
        assert_eq!(i.date_presentation.as_deref(), Some("1995-06-06"));
        assert_eq!(i.numero.as_deref(), Some("8 173 504"));
        assert_eq!(i.nature.as_deref(), Some("Vente"));
        assert_eq!(i.parties, vec![
            Party { nom: "OUELLET, JEAN".into(), qualite: Some("Vendeur".into()) },
            Party { nom: "LEBLANC, NATHALIE".into(), qualite: Some("Acheteur".into()) },
        ]);
        assert_eq!(i.remarques.as_deref(), Some("Montant : 563 000,00 $"));
        assert_eq!(i.radiations, vec!["20 619 536"]);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_page_without_the_table_header_is_unknown_with_its_header_fields() {
        let words = vec![w(80.0, 100.0, "Cadastre"), w(260.0, 100.0, ":"), w(280.0, 100.0, "Cadastre"), w(400.0, 100.0, "du"), w(450.0, 100.0, "Québec"), w(80.0, 300.0, "illisible")];
        let (page, warnings) = read_page(2, &words);
        assert_eq!(page.format, FORMAT_UNKNOWN);
        assert_eq!(page.cadastre.as_deref(), Some("Cadastre du Québec"));
        assert!(page.inscriptions.is_empty());
        assert_eq!(warnings, vec!["page 2: no table header found (not the modern printed layout): header fields only"]);
    }

    #[test]
    fn an_unreadable_date_is_null_with_a_warning() {
        assert_eq!(date("1995-13-06"), None);
        assert_eq!(date("l995-O6-06").as_deref(), Some("1995-06-06"));
        assert_eq!(number("18 273 OO1").as_deref(), Some("18 273 001"));
        assert_eq!(number("Vente"), None);
    }
}
