//! A minimal PDF writer (Helvetica text lines, WinAnsi encoding, one content stream
//! per page, exact xref offsets) and a registry-index-like document to draw with it, so the OCR
//! tests, the pool tests and the benchmarks create their own PDFs and know exactly which text was drawn.

/// Font size of the drawn text (points). 14 pt at 300 DPI is ~58 px per line: clean body text.
pub const FONT_SIZE: f32 = 14.0;
const LEADING: f32 = 24.0;

/// A PDF (US Letter pages) with each page's lines drawn top-down in Helvetica.
pub fn pdf(pages: &[Vec<String>]) -> Vec<u8> {
    let contents: Vec<Vec<u8>> = pages
        .iter()
        .map(|lines| {
            let mut content = format!("BT /F1 {FONT_SIZE} Tf {LEADING} TL 54 738 Td\n").into_bytes();
            for line in lines {
                content.push(b'(');
                content.extend(win_ansi(line));
                content.extend_from_slice(b") Tj T*\n");
            }
            content.extend_from_slice(b"ET");
            content
        })
        .collect();
    write_pdf(612.0, 792.0, &contents)
}

/// One piece of text placed at `(x, y)` (points from the bottom-left corner, baseline start).
#[derive(Debug, Clone, PartialEq)]
pub struct Text {
    pub x: f32,
    pub y: f32,
    pub size: f32,
    pub bold: bool,
    pub text: String,
}

/// A straight rule from `(x1, y1)` to `(x2, y2)`, `width` points thick.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rule {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub width: f32,
}

/// A page of positioned text and rules (tables, forms).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Drawing {
    pub texts: Vec<Text>,
    pub rules: Vec<Rule>,
}

/// A PDF whose pages (`width` × `height` points) carry positioned Helvetica / Helvetica-Bold text.
pub fn pdf_drawn(width: f32, height: f32, pages: &[Drawing]) -> Vec<u8> {
    let contents: Vec<Vec<u8>> = pages
        .iter()
        .map(|page| {
            let mut content = Vec::new();
            for r in &page.rules {
                content.extend(format!("{} w {} {} m {} {} l S\n", r.width, r.x1, r.y1, r.x2, r.y2).into_bytes());
            }
            for t in &page.texts {
                let font = if t.bold { "F2" } else { "F1" };
                content.extend(format!("BT /{font} {} Tf {} {} Td (", t.size, t.x, t.y).into_bytes());
                content.extend(win_ansi(&t.text));
                content.extend_from_slice(b") Tj ET\n");
            }
            content
        })
        .collect();
    write_pdf(width, height, &contents)
}

/// Approximate width of `text` in Helvetica at `size` points (per-glyph classes, rounded up so a
/// layout that fits by this measure fits on paper).
pub fn text_width(text: &str, size: f32, bold: bool) -> f32 {
    let em: f32 = text
        .chars()
        .map(|c| match c {
            ' ' => 0.28,
            'M' | 'W' | 'm' | 'w' => 0.95,
            'i' | 'l' | 'j' | 'I' | '\'' | '’' | '.' | ',' | ':' | ';' | '!' | '|' => 0.28,
            'f' | 't' | 'r' | '(' | ')' | '/' | '-' => 0.36,
            c if c.is_uppercase() => 0.74,
            c if c.is_ascii_digit() => 0.56,
            _ => 0.57,
        })
        .sum();
    em * size * if bold { 1.06 } else { 1.0 }
}

/// Serializes pages whose content streams are given: 1 catalog, 2 page tree, 3 Helvetica,
/// 4 Helvetica-Bold, then for page i: 5 + 2i page, 6 + 2i content. Exact xref offsets.
fn write_pdf(width: f32, height: f32, contents: &[Vec<u8>]) -> Vec<u8> {
    let mut objects: Vec<Vec<u8>> = Vec::new();
    objects.push(b"<< /Type /Catalog /Pages 2 0 R >>".to_vec());
    let kids: Vec<String> = (0..contents.len()).map(|i| format!("{} 0 R", 5 + 2 * i)).collect();
    objects.push(format!("<< /Type /Pages /Kids [{}] /Count {} >>", kids.join(" "), contents.len()).into_bytes());
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec());
    objects.push(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>".to_vec());
    for (i, content) in contents.iter().enumerate() {
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] /Resources << /Font << /F1 3 0 R /F2 4 0 R >> >> /Contents {} 0 R >>",
                6 + 2 * i
            )
            .into_bytes(),
        );
        objects.push(stream_object("", content));
    }
    serialize(&objects)
}

/// `<< /Length n extra >> stream … endstream`.
pub(crate) fn stream_object(extra_dict: &str, data: &[u8]) -> Vec<u8> {
    let mut stream = format!("<< /Length {} {extra_dict} >>\nstream\n", data.len()).into_bytes();
    stream.extend_from_slice(data);
    stream.extend_from_slice(b"\nendstream");
    stream
}

/// Objects numbered from 1 in order, the xref table with exact offsets, the trailer (root = 1).
pub(crate) fn serialize(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).into_bytes());
        out.extend(body);
        out.extend_from_slice(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).into_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").into_bytes());
    }
    out.extend(format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).into_bytes());
    out
}

/// A PDF string body in WinAnsiEncoding: Latin-1 letters as octal escapes, `( ) \` escaped.
fn win_ansi(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for c in text.chars() {
        let byte = match c {
            '—' => 0x97,
            '–' => 0x96,
            '’' => 0x92,
            c if (c as u32) < 0x100 => c as u32 as u8,
            _ => b'?',
        };
        match byte {
            b'(' | b')' | b'\\' => out.extend_from_slice(&[b'\\', byte]),
            0x20..=0x7e => out.push(byte),
            _ => out.extend(format!("\\{byte:03o}").into_bytes()),
        }
    }
    out
}

const NAMES: &[&str] = &[
    "Tremblay, Jean",
    "Gagnon, Marie",
    "Roy, Pierre",
    "Côté, Louise",
    "Bouchard, André",
    "Gauthier, Hélène",
    "Morin, Luc",
    "Lavoie, Sylvie",
    "Fortin, René",
    "Gagné, Josée",
    "Ouellet, François",
    "Pelletier, Émile",
];
const NATURES: &[&str] = &["Vente", "Hypothèque", "Servitude", "Quittance", "Donation"];

/// One row of the drawn index: what the accuracy test looks for.
#[derive(Debug, Clone)]
pub struct Row {
    pub lot: String,
    pub date: String,
    pub inscription: String,
    pub nature: &'static str,
    pub name: &'static str,
}

impl Row {
    pub fn line(&self) -> String {
        format!("{}   {}   {}   {}   {}", self.lot, self.date, self.inscription, self.nature, self.name)
    }
}

/// `n_pages` pages of a registry index ("Index des immeubles"): a title block, then rows of lot,
/// date, inscription number, nature of the act and party. Deterministic.
pub fn registry_index(n_pages: usize, rows_per_page: usize) -> (Vec<Vec<String>>, Vec<Row>) {
    let mut pages = Vec::new();
    let mut all_rows = Vec::new();
    for p in 0..n_pages {
        let mut lines = vec![
            "REGISTRE FONCIER DU QUÉBEC".to_string(),
            format!("Index des immeubles — Circonscription foncière de Québec — page {}", p + 1),
            "Cadastre du Québec".to_string(),
            String::new(),
        ];
        for r in 0..rows_per_page {
            let k = p * rows_per_page + r;
            let row = Row {
                lot: format!("{} {:03} {:03}", 1 + k % 6, (137 * k + 234) % 1000, (571 * k + 567) % 1000),
                date: format!("{}-{:02}-{:02}", 1998 + k % 27, 1 + k % 12, 1 + (7 * k) % 28),
                inscription: format!("{} {:03} {:03}", 10 + k % 17, (311 * k + 101) % 1000, (433 * k + 909) % 1000),
                nature: NATURES[k % NATURES.len()],
                name: NAMES[k % NAMES.len()],
            };
            lines.push(row.line());
            all_rows.push(row);
        }
        pages.push(lines);
    }
    (pages, all_rows)
}

/// Whitespace runs → one space, trimmed: layout differences are not character errors.
pub fn normalize(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Character error rate of `recognized` against `reference`, both normalized.
pub fn cer(reference: &str, recognized: &str) -> f64 {
    let (r, o) = (normalize(reference), normalize(recognized));
    registre_domain::index_data::levenshtein(&r, &o) as f64 / r.chars().count().max(1) as f64
}
