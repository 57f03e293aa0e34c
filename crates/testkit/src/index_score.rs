//! Scoring of an `index_data` JSON against the truth of a generated index ([`crate::scan`]),
//! field by field: precision, recall and F1 over the page headers (circonscription, cadastre,
//! lot) and each inscription's number, date, nature, parties (name + role together), remarks,
//! avis d'adresse and radiations.
//!
//! Inscriptions are paired by number (then, for those left, by date in order); a field the engine
//! gave that the truth does not have, or gave wrong, is a false positive; a truth field missing or
//! wrong is a false negative. Values compare after collapsing spaces and taking ’ and ' as one
//! character, nothing else: a lost accent is an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use registre_domain::index_data::Inscription;

use crate::scan::IndexTruth;

/// True/false positives and false negatives of one kind of field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        if self.tp + self.fp == 0 { 1.0 } else { self.tp as f64 / (self.tp + self.fp) as f64 }
    }
    pub fn recall(&self) -> f64 {
        if self.tp + self.fn_ == 0 { 1.0 } else { self.tp as f64 / (self.tp + self.fn_) as f64 }
    }
    pub fn f1(&self) -> f64 {
        let (p, r) = (self.precision(), self.recall());
        if p + r == 0.0 { 0.0 } else { 2.0 * p * r / (p + r) }
    }
    fn add(&mut self, other: Counts) {
        self.tp += other.tp;
        self.fp += other.fp;
        self.fn_ += other.fn_;
    }
}

/// Counts per field kind, and the mismatches seen (for a readable failure).
#[derive(Debug, Clone, Default)]
pub struct Score {
    pub fields: BTreeMap<&'static str, Counts>,
    pub mismatches: Vec<String>,
}

/// The field kinds, in the order the table prints them.
pub const FIELDS: [&str; 10] = ["circonscription", "cadastre", "lot", "numero", "date", "nature", "party", "remarques", "avis_adresse", "radiation"];

impl Score {
    pub fn total(&self) -> Counts {
        let mut all = Counts::default();
        for c in self.fields.values() {
            all.add(*c);
        }
        all
    }

    pub fn merge(&mut self, other: &Score) {
        for (k, c) in &other.fields {
            self.fields.entry(k).or_default().add(*c);
        }
        self.mismatches.extend(other.mismatches.iter().cloned());
    }

    /// A plain-text table: one line per field kind, then the total.
    pub fn table(&self) -> String {
        let mut out = format!("{:<16} {:>6} {:>5} {:>5} {:>9} {:>7} {:>6}\n", "field", "tp", "fp", "fn", "precision", "recall", "F1");
        let line = |out: &mut String, name: &str, c: &Counts| {
            let _ = writeln!(out, "{:<16} {:>6} {:>5} {:>5} {:>9.3} {:>7.3} {:>6.3}", name, c.tp, c.fp, c.fn_, c.precision(), c.recall(), c.f1());
        };
        for name in FIELDS {
            if let Some(c) = self.fields.get(name) {
                line(&mut out, name, c);
            }
        }
        line(&mut out, "all fields", &self.total());
        out
    }

    fn count(&mut self, field: &'static str, truth: Option<&str>, got: Option<&str>, context: &str) {
        let c = self.fields.entry(field).or_default();
        match (truth.map(norm), got.map(norm)) {
            (Some(t), Some(g)) if t == g => c.tp += 1,
            (Some(t), Some(g)) => {
                c.fp += 1;
                c.fn_ += 1;
                self.mismatches.push(format!("{context} {field}: expected {t:?}, got {g:?}"));
            }
            (Some(t), None) => {
                c.fn_ += 1;
                self.mismatches.push(format!("{context} {field}: expected {t:?}, got nothing"));
            }
            (None, Some(g)) => {
                c.fp += 1;
                self.mismatches.push(format!("{context} {field}: expected nothing, got {g:?}"));
            }
            (None, None) => {}
        }
    }

    fn count_bags(&mut self, field: &'static str, truth: Vec<String>, got: Vec<String>, context: &str) {
        let mut left: Vec<String> = truth.iter().map(|t| norm(t)).collect();
        let mut tp = 0;
        let mut extra = Vec::new();
        for g in got.iter().map(|g| norm(g)) {
            match left.iter().position(|t| *t == g) {
                Some(i) => {
                    left.remove(i);
                    tp += 1;
                }
                None => extra.push(g),
            }
        }
        let c = self.fields.entry(field).or_default();
        c.tp += tp;
        c.fp += extra.len() as u64;
        c.fn_ += left.len() as u64;
        if !extra.is_empty() || !left.is_empty() {
            self.mismatches.push(format!("{context} {field}: missing {left:?}, unexpected {extra:?}"));
        }
    }
}

fn norm(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").replace(['’', '‘'], "'")
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// Scores `got` (an `index_data` JSON) against the truth of the generated document.
pub fn score(truth: &IndexTruth, got: &Value) -> Score {
    let mut score = Score::default();
    let empty = Vec::new();
    let got_pages = got.get("pages").and_then(Value::as_array).unwrap_or(&empty);
    for page in &truth.pages {
        let g = got_pages.iter().find(|p| p.get("page").and_then(Value::as_u64) == Some(page.page as u64));
        let null = Value::Null;
        let g = g.unwrap_or(&null);
        let ctx = format!("page {}", page.page);
        score.count("circonscription", page.circonscription.as_deref(), s(g, "circonscription"), &ctx);
        score.count("cadastre", page.cadastre.as_deref(), s(g, "cadastre"), &ctx);
        score.count("lot", page.lot.as_deref(), s(g, "lot"), &ctx);
        let got_ins: Vec<&Value> = g.get("inscriptions").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
        let mut used = vec![false; got_ins.len()];
        let mut pairs: Vec<(Option<&Inscription>, Option<&Value>)> = Vec::new();
        let mut unpaired = Vec::new();
        for t in &page.inscriptions {
            match got_ins.iter().enumerate().position(|(i, gi)| !used[i] && t.numero.is_some() && s(gi, "numero").map(norm) == t.numero.as_deref().map(norm)) {
                Some(i) => {
                    used[i] = true;
                    pairs.push((Some(t), Some(got_ins[i])));
                }
                None => unpaired.push(t),
            }
        }
        for t in unpaired {
            match got_ins.iter().enumerate().position(|(i, gi)| !used[i] && t.date_presentation.is_some() && s(gi, "date_presentation") == t.date_presentation.as_deref()) {
                Some(i) => {
                    used[i] = true;
                    pairs.push((Some(t), Some(got_ins[i])));
                }
                None => pairs.push((Some(t), None)),
            }
        }
        for (i, gi) in got_ins.iter().enumerate() {
            if !used[i] {
                pairs.push((None, Some(gi)));
            }
        }
        for (t, g) in pairs {
            let g = g.unwrap_or(&null);
            let ctx = format!("page {} inscription {}", page.page, t.map_or_else(|| s(g, "numero").unwrap_or("?").to_string(), |t| t.numero.clone().unwrap_or_default()));
            score.count("numero", t.and_then(|t| t.numero.as_deref()), s(g, "numero"), &ctx);
            score.count("date", t.and_then(|t| t.date_presentation.as_deref()), s(g, "date_presentation"), &ctx);
            score.count("nature", t.and_then(|t| t.nature.as_deref()), s(g, "nature"), &ctx);
            score.count("remarques", t.and_then(|t| t.remarques.as_deref()), s(g, "remarques"), &ctx);
            score.count("avis_adresse", t.and_then(|t| t.avis_adresse.as_deref()), s(g, "avis_adresse"), &ctx);
            let truth_parties = t.map(|t| t.parties.iter().map(|p| format!("{} / {}", p.nom, p.qualite.as_deref().unwrap_or(""))).collect()).unwrap_or_default();
            let got_parties = g
                .get("parties")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(|p| format!("{} / {}", s(p, "nom").unwrap_or(""), s(p, "qualite").unwrap_or(""))).collect())
                .unwrap_or_default();
            score.count_bags("party", truth_parties, got_parties, &ctx);
            let truth_rad = t.map(|t| t.radiations.clone()).unwrap_or_default();
            let got_rad = g.get("radiations").and_then(Value::as_array).map(|a| a.iter().filter_map(|r| r.as_str().map(str::to_string)).collect()).unwrap_or_default();
            score.count_bags("radiation", truth_rad, got_rad, &ctx);
        }
    }
    score
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::index_document;

    #[test]
    fn the_truth_scores_perfectly_and_a_changed_field_does_not() {
        let (_, truth) = index_document(3, 2);
        let mut json = serde_json::to_value(&truth).unwrap();
        let perfect = score(&truth, &json);
        assert_eq!(perfect.total().fp + perfect.total().fn_, 0, "{:?}", perfect.mismatches);
        assert!(perfect.total().tp > 40);
        json["pages"][0]["inscriptions"][0]["nature"] = Value::String("Bail".into());
        json["pages"][0]["inscriptions"][0]["parties"][0]["nom"] = Value::String("X".into());
        json["pages"][1]["lot"] = Value::Null;
        let worse = score(&truth, &json);
        let t = worse.total();
        assert_eq!((t.fp, t.fn_), (2 - u64::from(truth.pages[0].inscriptions[0].nature.as_deref() == Some("Bail")), 3 - u64::from(truth.pages[0].inscriptions[0].nature.as_deref() == Some("Bail"))));
        assert!(worse.table().contains("all fields"));
    }
}
