//! Scanned-looking registry index pages ("index des immeubles", the modern printed layout) with
//! their truth, for the structured-index tests and the OCR benchmarks.
//!
//! A page is drawn as a born-digital PDF (positioned Helvetica, [`crate::pdf::pdf_drawn`]), rendered
//! by poppler's `pdftoppm -r 200 -gray`, then skewed slightly and speckled in Rust with a seeded
//! generator, and wrapped as an image-only PDF (one 8-bit gray image per page, RunLengthDecode:
//! the paper stays white, so runs compress it without a deflate crate). Everything is a pure
//! function of the seed: a failing page can be drawn again from its seed.
//!
//! The truth is a [`IndexTruth`] whose JSON (serde) has the shape of the `index_data` column
//! (docs/design.md §9.1, last point): pages → circonscription, cadastre, lot, inscriptions → date,
//! number, nature, parties with their roles, remarks, avis d'adresse, radiations.

use std::io;
use std::path::Path;
use std::process::Command;

use registre_domain::index_data::{IndexPage, Inscription, Party, FORMAT_MODERN};
use serde::{Deserialize, Serialize};

use crate::pdf::{pdf_drawn, serialize, stream_object, text_width, Drawing, Rule, Text};

/// Rendering resolution of the scans (dots per inch).
pub const SCAN_DPI: u32 = 200;
/// Page size of the index: US Legal, landscape (points).
pub const PAGE_WIDTH: f32 = 1008.0;
pub const PAGE_HEIGHT: f32 = 612.0;
/// Body text size of the table (points).
pub const BODY_SIZE: f32 = 10.0;
const LEADING: f32 = 14.0;
const GAP: f32 = 6.0;

/// The table's columns, in order: header label, left edge (points), width (points).
pub const COLUMNS: [(&str, f32, f32); 8] = [
    ("Date de présentation", 30.0, 72.0),
    ("Numéro d'inscription", 108.0, 72.0),
    ("Nature de l'acte", 186.0, 150.0),
    ("Qualité", 342.0, 92.0),
    ("Nom des parties", 440.0, 228.0),
    ("Remarques", 674.0, 150.0),
    ("Avis d'adresse", 830.0, 78.0),
    ("Radiations", 914.0, 80.0),
];

/// What was drawn on every page of one generated document, as the `index_data` column's pages
/// (every field read with certainty is `Some`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexTruth {
    pub pages: Vec<IndexPage>,
}

/// A generated scanned index: the image-only PDF and what it shows.
#[derive(Debug, Clone)]
pub struct ScannedIndex {
    pub seed: u64,
    pub pdf: Vec<u8>,
    pub truth: IndexTruth,
}

/// A scanned-looking index des immeubles of `n_pages` pages (one lot, inscriptions in date order),
/// deterministic in `seed`. Panics with the reason if poppler's `pdftoppm` cannot run (test support:
/// a missing tool is a broken machine, not a skipped test).
pub fn scanned_index(seed: u64, n_pages: usize) -> ScannedIndex {
    let (born_digital, truth) = index_document(seed, n_pages);
    let pdf = scan(&born_digital, seed).unwrap_or_else(|e| panic!("cannot scan the generated index (poppler-utils' pdftoppm): {e}"));
    ScannedIndex { seed, pdf, truth }
}

/// The born-digital PDF (text drawn, before scanning) and its truth: what [`scanned_index`] scans.
pub fn index_document(seed: u64, n_pages: usize) -> (Vec<u8>, IndexTruth) {
    let mut rng = Rng::new(seed);
    let circonscription = rng.pick(CIRCONSCRIPTIONS).to_string();
    let cadastre = if rng.chance(0.8) { "Cadastre du Québec".to_string() } else { rng.pick(OLD_CADASTRES).to_string() };
    let lot = group_thousands(rng.range(1_000_000, 6_999_999));
    // The chain of title runs from an old date forward; numbers grow with the dates.
    let mut day = rng.range(0, 9_000) as i64; // days after 1975-01-01
    let mut number = 500_000 + rng.range(0, 2_000_000);

    let mut drawings = Vec::new();
    let mut pages = Vec::new();
    for p in 0..n_pages.max(1) {
        let mut drawing = Drawing::default();
        let header = page_header(&mut drawing, p + 1, n_pages.max(1), &circonscription, &cadastre, &lot);
        let mut y = header;
        let mut inscriptions = Vec::new();
        let wanted = rng.range(7, 13) as usize;
        while inscriptions.len() < wanted {
            day += rng.range(20, 700) as i64;
            number += rng.range(3_000, 400_000);
            let inscription = inscription(&mut rng, day, number);
            let lines = layout_inscription(&inscription);
            let height = lines.len() as f32 * LEADING;
            if y - height < 40.0 {
                break;
            }
            for (i, cells) in lines.iter().enumerate() {
                for (col, cell) in cells.iter().enumerate() {
                    if let Some(text) = cell {
                        drawing.texts.push(Text { x: COLUMNS[col].1, y: y - i as f32 * LEADING, size: BODY_SIZE, bold: false, text: text.clone() });
                    }
                }
            }
            y -= height + GAP;
            inscriptions.push(inscription);
        }
        drawing.rules.push(Rule { x1: 26.0, y1: y + LEADING - 4.0, x2: PAGE_WIDTH - 12.0, y2: y + LEADING - 4.0, width: 0.8 });
        drawings.push(drawing);
        pages.push(IndexPage {
            page: p as u32 + 1,
            format: FORMAT_MODERN.into(),
            circonscription: Some(circonscription.clone()),
            cadastre: Some(cadastre.clone()),
            lot: Some(lot.clone()),
            inscriptions,
        });
    }
    (pdf_drawn(PAGE_WIDTH, PAGE_HEIGHT, &drawings), IndexTruth { pages })
}

/// Title block and the table's header; returns the baseline of the first table line.
fn page_header(d: &mut Drawing, page: usize, pages: usize, circonscription: &str, cadastre: &str, lot: &str) -> f32 {
    let t = |x: f32, y: f32, size: f32, bold: bool, text: String| Text { x, y, size, bold, text };
    d.texts.push(t(30.0, 572.0, 13.0, true, "REGISTRE FONCIER DU QUÉBEC".into()));
    d.texts.push(t(30.0, 554.0, 13.0, true, "Index des immeubles".into()));
    d.texts.push(t(860.0, 572.0, 10.0, false, format!("Page {page} de {pages}")));
    d.texts.push(t(30.0, 530.0, 11.0, false, format!("Circonscription foncière : {circonscription}")));
    d.texts.push(t(30.0, 514.0, 11.0, false, format!("Cadastre : {cadastre}")));
    d.texts.push(t(30.0, 498.0, 11.0, false, format!("Lot : {lot}")));
    let top = 480.0;
    d.rules.push(Rule { x1: 26.0, y1: top, x2: PAGE_WIDTH - 12.0, y2: top, width: 0.8 });
    for (label, x, width) in COLUMNS {
        for (i, line) in wrap(label, width, 9.0, true).into_iter().enumerate() {
            d.texts.push(t(x, top - 13.0 - i as f32 * 11.0, 9.0, true, line));
        }
    }
    let bottom = top - 13.0 - 11.0 - 7.0;
    d.rules.push(Rule { x1: 26.0, y1: bottom, x2: PAGE_WIDTH - 12.0, y2: bottom, width: 0.8 });
    bottom - 14.0
}

/// The printed lines of one inscription: per line, the text of each of the 8 columns.
fn layout_inscription(ins: &Inscription) -> Vec<[Option<String>; 8]> {
    let mut columns: [Vec<String>; 8] = Default::default();
    columns[0].extend(ins.date_presentation.clone());
    columns[1].extend(ins.numero.clone());
    columns[2] = wrap(ins.nature.as_deref().unwrap_or_default(), COLUMNS[2].2, BODY_SIZE, false);
    for party in &ins.parties {
        columns[3].extend(party.qualite.clone());
        columns[4].push(party.nom.clone());
    }
    if let Some(r) = &ins.remarques {
        columns[5] = wrap(r, COLUMNS[5].2, BODY_SIZE, false);
    }
    if let Some(a) = &ins.avis_adresse {
        columns[6].push(a.clone());
    }
    columns[7] = ins.radiations.clone();
    let n = columns.iter().map(Vec::len).max().unwrap_or(1).max(1);
    (0..n).map(|i| std::array::from_fn(|c| columns[c].get(i).cloned())).collect()
}

/// Greedy word wrap to `width` points.
fn wrap(text: &str, width: f32, size: f32, bold: bool) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match lines.last_mut() {
            Some(last) if text_width(&format!("{last} {word}"), size, bold) <= width => {
                last.push(' ');
                last.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    lines
}

fn inscription(rng: &mut Rng, day: i64, number: u64) -> Inscription {
    let (nature, roles) = *rng.pick(NATURES);
    let mut parties = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        // The first role sometimes has two people (spouses selling together), a creditor one.
        let count = if i == 0 && rng.chance(0.35) { 2 } else { 1 };
        for _ in 0..count {
            let nom = if role.contains("Créancier") && rng.chance(0.7) || rng.chance(0.12) { rng.pick(COMPANIES).to_string() } else { person(rng) };
            parties.push(Party { nom, qualite: Some(role.to_string()) });
        }
    }
    let remarques = match nature {
        "Vente" | "Hypothèque" | "Dation en paiement" | "Vente par le syndic" if rng.chance(0.7) => {
            let amount = rng.range(40, 990) * 1000 + if rng.chance(0.5) { 0 } else { rng.range(0, 999) };
            Some(format!("Montant : {},00 $", group_thousands(amount)))
        }
        _ if rng.chance(0.15) => Some(rng.pick(REMARKS).to_string()),
        _ => None,
    };
    let avis_adresse = (nature == "Hypothèque" && rng.chance(0.3)).then(|| group_thousands(number + rng.range(1, 90)));
    let radiations = if matches!(nature, "Hypothèque" | "Préavis d’exercice d’un droit hypothécaire" | "Servitude") && rng.chance(0.45) {
        let n = if rng.chance(0.2) { 2 } else { 1 };
        (0..n).map(|_| group_thousands(number + rng.range(100_000, 3_000_000))).collect()
    } else {
        Vec::new()
    };
    Inscription {
        date_presentation: Some(date_from_day(day)),
        numero: Some(group_thousands(number)),
        nature: Some(nature.to_string()),
        parties,
        remarques,
        avis_adresse,
        radiations,
    }
}

fn person(rng: &mut Rng) -> String {
    format!("{}, {}", rng.pick(SURNAMES), rng.pick(GIVEN_NAMES))
}

/// "8173504" → "8 173 504".
pub fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(c);
    }
    out
}

/// Days after 1975-01-01 → `YYYY-MM-DD` (proleptic Gregorian).
fn date_from_day(day: i64) -> String {
    let (mut y, mut d) = (1975i64, day);
    loop {
        let len = if is_leap(y) { 366 } else { 365 };
        if d < len {
            break;
        }
        d -= len;
        y += 1;
    }
    let months = [31, if is_leap(y) { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut m = 0;
    while d >= months[m] {
        d -= months[m];
        m += 1;
    }
    format!("{y:04}-{:02}-{:02}", m + 1, d + 1)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Turns any PDF into a scanned-looking, image-only PDF: each page rendered at [`SCAN_DPI`] in
/// grayscale, rotated by a small angle (0.1°–0.6°, either way), with ink noise, a few specks and
/// dust, deterministic in `seed`.
pub fn scan(pdf: &[u8], seed: u64) -> io::Result<Vec<u8>> {
    let dir = std::env::temp_dir().join(crate::unique("scan"));
    std::fs::create_dir_all(&dir)?;
    let result = scan_in(&dir, pdf, seed);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn scan_in(dir: &Path, pdf: &[u8], seed: u64) -> io::Result<Vec<u8>> {
    let input = dir.join("in.pdf");
    std::fs::write(&input, pdf)?;
    let out = Command::new("pdftoppm").args(["-r", &SCAN_DPI.to_string(), "-gray"]).arg(&input).arg(dir.join("page")).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!("pdftoppm failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    let mut files: Vec<_> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "pgm"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(io::Error::other("pdftoppm produced no page"));
    }
    let mut rng = Rng::new(seed ^ 0x5ca1_ab1e);
    let mut images = Vec::new();
    for file in files {
        let (w, h, pixels) = read_pgm(&std::fs::read(&file)?)?;
        let sign = if rng.chance(0.5) { 1.0 } else { -1.0 };
        let angle = sign * (0.1 + rng.unit() * 0.5);
        let mut page = rotate(w, h, &pixels, angle.to_radians());
        degrade(&mut page, w, h, &mut rng);
        images.push((w, h, page));
    }
    Ok(image_pdf(&images, SCAN_DPI))
}

/// A binary PGM (P5, maxval 255) → width, height, pixels.
fn read_pgm(bytes: &[u8]) -> io::Result<(usize, usize, Vec<u8>)> {
    let bad = || io::Error::other("pdftoppm wrote an unexpected PGM");
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if start == i {
            return Err(bad());
        }
        fields.push(String::from_utf8_lossy(&bytes[start..i]).to_string());
    }
    i += 1; // the single whitespace after maxval
    let (w, h): (usize, usize) = (fields[1].parse().map_err(|_| bad())?, fields[2].parse().map_err(|_| bad())?);
    if fields[0] != "P5" || fields[3] != "255" || bytes.len() < i + w * h {
        return Err(bad());
    }
    Ok((w, h, bytes[i..i + w * h].to_vec()))
}

/// Rotation about the centre, bilinear, white outside the original page.
fn rotate(w: usize, h: usize, src: &[u8], angle: f64) -> Vec<u8> {
    let (s, c) = angle.sin_cos();
    let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
    let at = |x: i64, y: i64| -> f64 {
        if x < 0 || y < 0 || x >= w as i64 || y >= h as i64 {
            255.0
        } else {
            src[y as usize * w + x as usize] as f64
        }
    };
    let mut out = vec![255u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let sx = c * dx + s * dy + cx;
            let sy = -s * dx + c * dy + cy;
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (x0, y0) = (x0 as i64, y0 as i64);
            let v = at(x0, y0) * (1.0 - fx) * (1.0 - fy) + at(x0 + 1, y0) * fx * (1.0 - fy) + at(x0, y0 + 1) * (1.0 - fx) * fy + at(x0 + 1, y0 + 1) * fx * fy;
            out[y * w + x] = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Scanner noise: ink a little lighter and grainy, isolated dark specks, a few grey dust blots.
/// The paper stays white (a real scanner's white point), which keeps the runs long.
fn degrade(px: &mut [u8], w: usize, h: usize, rng: &mut Rng) {
    let ink = 25.0 + rng.unit() * 35.0;
    for p in px.iter_mut() {
        if *p < 245 {
            let v = ink + (*p as f64) * (255.0 - ink) / 255.0 + rng.gauss() * 14.0;
            *p = v.round().clamp(0.0, 255.0) as u8;
        }
    }
    for _ in 0..(w * h / 4000) {
        let (x, y) = (rng.below(w), rng.below(h));
        let v = rng.range(40, 160) as u8;
        px[y * w + x] = v;
        if rng.chance(0.3) && x + 1 < w {
            px[y * w + x + 1] = v;
        }
    }
    for _ in 0..rng.range(3, 12) {
        let (x, y, r) = (rng.below(w), rng.below(h), rng.range(2, 6) as i64);
        for dy in -r..=r {
            for dx in -r..=r {
                let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                if dx * dx + dy * dy <= r * r && xx >= 0 && yy >= 0 && (xx as usize) < w && (yy as usize) < h {
                    let i = yy as usize * w + xx as usize;
                    px[i] = px[i].min(150 + rng.range(0, 80) as u8);
                }
            }
        }
    }
}

/// An image-only PDF: each page one DeviceGray 8-bit image filling a page of its size at `dpi`.
pub fn image_pdf(pages: &[(usize, usize, Vec<u8>)], dpi: u32) -> Vec<u8> {
    // Objects: 1 catalog, 2 page tree, then for page i: 3 + 3i page, 4 + 3i content, 5 + 3i image.
    let mut objects: Vec<Vec<u8>> = Vec::new();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = (0..pages.len()).map(|i| format!("{} 0 R", 3 + 3 * i)).collect();
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), pages.len()).into_bytes());
    for (i, (w, h, px)) in pages.iter().enumerate() {
        let (pw, ph) = (*w as f32 * 72.0 / dpi as f32, *h as f32 * 72.0 / dpi as f32);
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {pw:.2} {ph:.2}] /Resources << /XObject << /Im0 {} 0 R >> >> /Contents {} 0 R >>",
                5 + 3 * i,
                4 + 3 * i
            )
            .into_bytes(),
        );
        objects.push(stream_object("", format!("q {pw:.2} 0 0 {ph:.2} 0 0 cm /Im0 Do Q").as_bytes()));
        objects.push(stream_object(
            &format!("/Type /XObject /Subtype /Image /Width {w} /Height {h} /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /RunLengthDecode"),
            &run_length(px),
        ));
    }
    serialize(&objects)
}

/// PDF RunLengthDecode encoding: `n` < 128 → `n + 1` literal bytes follow; `n` > 128 → the next
/// byte repeated `257 - n` times; 128 ends the data.
fn run_length(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 4);
    let mut i = 0;
    let mut literal: Vec<u8> = Vec::new();
    let flush = |literal: &mut Vec<u8>, out: &mut Vec<u8>| {
        for chunk in literal.chunks(128) {
            out.push((chunk.len() - 1) as u8);
            out.extend_from_slice(chunk);
        }
        literal.clear();
    };
    while i < data.len() {
        let mut run = 1;
        while i + run < data.len() && data[i + run] == data[i] && run < 128 {
            run += 1;
        }
        if run >= 3 {
            flush(&mut literal, &mut out);
            out.push((257 - run) as u8);
            out.push(data[i]);
        } else {
            literal.extend_from_slice(&data[i..i + run]);
        }
        i += run;
    }
    flush(&mut literal, &mut out);
    out.push(128);
    out
}

/// SplitMix64: tiny, seedable, the same sequence on every platform and version (the pages of a
/// seed never change under the tests' feet).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi] (inclusive).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Standard normal (Box–Muller).
    pub fn gauss(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

const CIRCONSCRIPTIONS: &[&str] = &[
    "Laval", "Montréal", "Québec", "Lévis", "Sherbrooke", "Trois-Rivières", "Rimouski", "Chicoutimi", "Terrebonne", "Saint-Hyacinthe", "Gatineau", "Drummond",
];
const OLD_CADASTRES: &[&str] = &["Paroisse de Saint-Laurent", "Paroisse de Sainte-Foy", "Ville de Lévis", "Canton de Hull"];

/// Natures from the registry's list, each with the roles its parties usually hold.
const NATURES: &[(&str, &[&str])] = &[
    ("Vente", &["Vendeur", "Acheteur"]),
    ("Vente", &["Vendeur", "Acheteur"]),
    ("Hypothèque", &["Débiteur", "Créancier"]),
    ("Hypothèque", &["Débiteur", "Créancier"]),
    ("Quittance", &["Créancier", "Débiteur"]),
    ("Mainlevée", &["Créancier", "Débiteur"]),
    ("Servitude", &["Constituant", "Bénéficiaire"]),
    ("Servitude d’environnement", &["Constituant", "Bénéficiaire"]),
    ("Donation", &["Donateur", "Donataire"]),
    ("Bail", &["Locateur", "Locataire"]),
    ("Déclaration de résidence familiale", &["Requérant"]),
    ("Préavis d’exercice d’un droit hypothécaire", &["Créancier", "Débiteur"]),
    ("Jugement d’attribution", &["Demandeur", "Défendeur"]),
    ("Dation en paiement", &["Débiteur", "Créancier"]),
    ("Promesse de vente", &["Promettant", "Bénéficiaire"]),
    ("Usufruit", &["Nu-propriétaire", "Usufruitier"]),
    ("Échange", &["Copermutant", "Copermutant"]),
    ("Rétrocession", &["Cédant", "Cessionnaire"]),
    ("Procès-verbal d’abornement", &["Requérant", "Voisin"]),
    ("Déclaration de copropriété", &["Déclarant"]),
    ("Emphytéose", &["Bailleur", "Emphytéote"]),
    ("Fiducie", &["Constituant", "Fiduciaire"]),
    ("Partage", &["Copartageant", "Copartageant"]),
    ("Vente par le syndic", &["Syndic", "Acheteur"]),
    ("Correction", &["Requérant"]),
];

const SURNAMES: &[&str] = &[
    "OUELLET", "LEBLANC", "TREMBLAY", "GAGNON", "CÔTÉ", "BÉLANGER", "LÉVESQUE", "GAGNÉ", "BÉDARD", "GÉLINAS", "PELLETIER", "BOUCHARD", "MORIN",
    "LAVOIE", "FORTIN", "GAUTHIER", "BÉRUBÉ", "DESROCHERS", "THÉRIAULT", "PAQUETTE", "FRÉCHETTE", "LÉGARÉ", "SÉGUIN", "GRENIER", "DUCHESNE",
];
const GIVEN_NAMES: &[&str] = &[
    "JEAN", "NATHALIE", "HÉLÈNE", "FRANÇOIS", "ANDRÉ", "JOSÉE", "ÉMILE", "RENÉ", "GÉRALD", "MÉLANIE", "STÉPHANE", "CHANTAL", "JÉRÔME", "MARIE-ÈVE",
    "LUC", "SYLVIE", "PIERRE", "LOUISE", "RÉAL", "DENISE", "BENOÎT", "FRÉDÉRIC", "CÉLINE", "GILLES",
];
const COMPANIES: &[&str] = &[
    "BANQUE NATIONALE DU CANADA",
    "CAISSE DESJARDINS DE LAVAL",
    "BANQUE ROYALE DU CANADA",
    "BANQUE DE MONTRÉAL",
    "9123-4567 QUÉBEC INC.",
    "HYDRO-QUÉBEC",
    "VILLE DE LÉVIS",
    "SOCIÉTÉ IMMOBILIÈRE DU LAC INC.",
    "GESTION FRÉCHETTE LTÉE",
    "FIDUCIE FAMILLE GAGNÉ",
];
const REMARKS: &[&str] = &["Partie du lot", "Droit de passage", "Rang : 1", "Sans considération", "Acte rectifié"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_and_dates() {
        assert_eq!(group_thousands(8_173_504), "8 173 504");
        assert_eq!(group_thousands(504), "504");
        assert_eq!(group_thousands(18_273_001), "18 273 001");
        assert_eq!(date_from_day(0), "1975-01-01");
        assert_eq!(date_from_day(365 + 59), "1976-02-29");
    }

    #[test]
    fn run_length_round_trips() {
        let data: Vec<u8> = (0..5000u32).map(|i| if i % 97 < 60 { 255 } else { (i % 7) as u8 }).collect();
        let enc = run_length(&data);
        let mut dec = Vec::new();
        let mut i = 0;
        while enc[i] != 128 {
            let n = enc[i] as usize;
            if n < 128 {
                dec.extend_from_slice(&enc[i + 1..i + 2 + n]);
                i += n + 2;
            } else {
                dec.extend(std::iter::repeat_n(enc[i + 1], 257 - n));
                i += 2;
            }
        }
        assert_eq!(dec, data);
        assert!(enc.len() < data.len());
    }

    #[test]
    fn the_same_seed_draws_the_same_document() {
        let (a, ta) = index_document(7, 2);
        let (b, tb) = index_document(7, 2);
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        assert_ne!(index_document(8, 2).1, ta);
        assert!(ta.pages.iter().all(|p| p.inscriptions.len() >= 4), "{ta:?}");
    }
}
