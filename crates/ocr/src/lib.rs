//! OCR of registry PDFs (docs/design.md §9): PDF bytes in, raw text per page and corrected text out.
//!
//! The story at a glance:
//! - every engine implements [`OcrEngine`]: [`OcrEngine::extract`] takes the PDF bytes and a
//!   [`Parallelism`] budget (how many pages may be worked on at once, derived from the worker's CPU
//!   share by [`Parallelism::from_cpu`]) and returns an [`OcrOutput`]: the text of each page, the
//!   raw text (stored in `file_content`) and the boosted text (stored in `boosted_file_content`);
//! - [`TesseractEngine`] is local: a born-digital page takes its text layer (`pdftotext`); a scanned
//!   page is OCR'd by `tesseract` from its own image (`pdfimages`) or a PGM render (`pdftoppm`),
//!   prepared ahead of the reading; pages in parallel within the budget;
//! - [`GeminiEngine`] calls the Gemini generateContent API (one extraction call, one boost call),
//!   every call admitted by the shared rate limiter through the [`ApiLimiter`] trait (implemented
//!   for [`registre_ratelimit::RateLimiter`]), usage settled from the response, 429 → shared cooldown;
//! - [`boost`] is the table of domain corrections (whitespace, digit confusions in lot numbers and
//!   dates, accents) applied to every engine's text to make the boosted text;
//! - [`engine_from_config`] picks the engine OCR_ENGINE names;
//! - every failure is an [`OcrError`] whose Display is the readable line stored in `ocr_error`.

pub mod boost;
mod gemini;
pub mod index_table;
mod limiter;
mod tempdir;
mod tesseract;

use std::sync::Arc;

use futures_util::future::BoxFuture;
use registre_config::{Milli, OcrEngineConfig, OcrEngineKind};
pub use registre_domain::index_data::IndexData;

pub use gemini::{index_response_schema, GeminiEngine, GeminiSettings};
pub use limiter::{ApiLimiter, LimiterError, Unlimited};
pub use tesseract::{TesseractEngine, TesseractSettings};

/// Separator between pages in [`OcrOutput::raw`] and [`OcrOutput::boosted`]: a form feed on its own
/// line, the page break `pdftotext` also uses, so a reader of `file_content` can split pages again.
pub const PAGE_SEPARATOR: &str = "\n\u{c}\n";

/// What an engine read from one PDF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcrOutput {
    /// Raw text of each page, in page order (the engine's output, unchanged but for the trailing
    /// form feed tesseract appends).
    pub pages: Vec<String>,
    /// The pages joined with [`PAGE_SEPARATOR`]: `file_content`.
    pub raw: String,
    /// The corrected text: `boosted_file_content`.
    pub boosted: String,
    /// Which engine produced it (`tesseract` or `gemini`), for logs.
    pub engine: &'static str,
    /// Tokens the API reported for the whole document (0 for local engines).
    pub tokens_used: u64,
    /// How many of `pages` were born-digital and taken from the PDF's text layer instead of being
    /// OCR'd (the row's log line says so).
    pub text_layer_pages: usize,
    /// The index des immeubles as data (`index_data`), when asked for with [`OcrEngine::extract_index`].
    pub index_data: Option<IndexData>,
}

impl OcrOutput {
    /// Raw output of a local engine: the boosted text is the [`boost`] rules applied page by page.
    pub fn from_pages(engine: &'static str, pages: Vec<String>) -> OcrOutput {
        let raw = pages.join(PAGE_SEPARATOR);
        let boosted = pages.iter().map(|p| boost::boost(p)).collect::<Vec<_>>().join(PAGE_SEPARATOR);
        OcrOutput { pages, raw, boosted, engine, tokens_used: 0, text_layer_pages: 0, index_data: None }
    }
}

/// How many pages an engine may work on at once (always ≥ 1).
///
/// An OCR worker holds a capacity lease of a fixed vCPU share (index-ocr 1.5, acte-ocr 1) and one
/// tesseract run keeps one core busy (OMP_THREAD_LIMIT=1), so the budget is the share rounded
/// DOWN, with a minimum of 1: 1.5 vCPU → 1 page, 1 vCPU → 1, 2.5 → 2. Rounding down keeps the sum
/// of what the workers really use within what the capacity accountant handed out, so a server
/// whose workers are all busy is never oversubscribed; the rest of a fractional share absorbs the
/// preparation of the next page (image extraction or render, one at a time, overlapping the
/// reading) and the worker's own I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Parallelism(usize);

impl Parallelism {
    pub const ONE: Parallelism = Parallelism(1);

    /// Exactly `pages` at once (0 is taken as 1).
    pub fn pages(pages: usize) -> Parallelism {
        Parallelism(pages.max(1))
    }

    /// The budget of a worker holding `cpu` vCPU: ⌊cpu⌋, at least 1.
    pub fn from_cpu(cpu: Milli) -> Parallelism {
        Parallelism::pages((cpu.0 / 1000) as usize)
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// Why a document could not be read. Display is one readable line (stored in `ocr_error`).
#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    /// The bytes are not a PDF poppler can open or render (corrupt, truncated, encrypted...).
    #[error("PDF could not be rendered: {detail}")]
    Unrenderable { detail: String },
    /// The PDF has no page.
    #[error("PDF has no page")]
    NoPages,
    /// A required program is not installed.
    #[error("{program} could not be started ({source}): install {package}")]
    MissingProgram {
        program: &'static str,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A program ran but did not finish (timeout, I/O error while waiting for it).
    #[error("{program} {context}: {detail}")]
    Program { program: &'static str, context: String, detail: String },
    /// tesseract failed on one page.
    #[error("tesseract failed on page {page}: {detail}")]
    Tesseract { page: usize, detail: String },
    /// The temporary directory or a file in it could not be written.
    #[error("temporary files in {path}: {source}")]
    TempFiles {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The OCR API refused the request (a 4xx other than 429): its own message.
    #[error("{api} refused the {call} call (HTTP {status}): {message}")]
    ApiRejected { api: &'static str, call: &'static str, status: u16, message: String },
    /// The OCR API kept failing (5xx, timeouts, 429s) until the attempts ran out.
    #[error("{api} {call} call failed after {attempts} attempts: {last_error}")]
    ApiUnavailable { api: &'static str, call: &'static str, attempts: u32, last_error: String },
    /// The OCR API answered 200 with something that is not the documented response.
    #[error("{api} {call} call: unexpected response: {detail}")]
    ApiResponse { api: &'static str, call: &'static str, detail: String },
    /// The engine cannot be built from the configuration.
    #[error("OCR engine not configured: {0}")]
    NotConfigured(String),
    /// The shared rate limiter refused the request (e.g. an estimate above the whole budget).
    #[error("rate limiter: {0}")]
    Limiter(#[from] LimiterError),
}

/// An OCR engine. Object-safe, so a worker holds an `Arc<dyn OcrEngine>` chosen at start-up.
/// Dropping the returned future cancels the work (child processes are killed, temp files removed).
pub trait OcrEngine: Send + Sync {
    /// `tesseract` or `gemini`.
    fn name(&self) -> &'static str;

    /// Reads `pdf`, working on at most `parallelism` pages at once where the engine works page by page.
    fn extract<'a>(&'a self, pdf: &'a [u8], parallelism: Parallelism) -> BoxFuture<'a, Result<OcrOutput, OcrError>>;

    /// [`OcrEngine::extract`] of an index des immeubles, with [`OcrOutput::index_data`] filled
    /// (docs/ocr.md, Structured index). Engines that cannot read tables keep this default: the
    /// text only.
    fn extract_index<'a>(&'a self, pdf: &'a [u8], parallelism: Parallelism) -> BoxFuture<'a, Result<OcrOutput, OcrError>> {
        self.extract(pdf, parallelism)
    }
}

/// The engine OCR_ENGINE selects. `limiter` admits the Gemini calls (the shared Redis limiter in
/// production); the tesseract engine does not use it.
pub fn engine_from_config<L: ApiLimiter + 'static>(config: &OcrEngineConfig, limiter: L) -> Result<Arc<dyn OcrEngine>, OcrError> {
    Ok(match config.engine {
        OcrEngineKind::Tesseract => Arc::new(TesseractEngine::new(TesseractSettings::from_config(config))),
        OcrEngineKind::Gemini => Arc::new(GeminiEngine::new(GeminiSettings::from_config(config)?, limiter)?),
    })
}

pub(crate) use registre_domain::text::excerpt;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallelism_rounds_the_cpu_share_down_with_a_minimum_of_one() {
        assert_eq!(Parallelism::from_cpu(Milli(1500)).get(), 1);
        assert_eq!(Parallelism::from_cpu(Milli(1000)).get(), 1);
        assert_eq!(Parallelism::from_cpu(Milli(500)).get(), 1);
        assert_eq!(Parallelism::from_cpu(Milli(2000)).get(), 2);
        assert_eq!(Parallelism::from_cpu(Milli(2999)).get(), 2);
        assert_eq!(Parallelism::pages(0).get(), 1);
    }

    #[test]
    fn excerpt_is_one_short_line() {
        assert_eq!(excerpt("Syntax Error:\n  Couldn't find trailer\n", 100), "Syntax Error: Couldn't find trailer");
    }

    #[test]
    fn output_joins_pages_and_boosts_each() {
        let out = OcrOutput::from_pages("tesseract", vec!["Lot 1 2O4 567  ".into(), "Quebec".into()]);
        assert_eq!(out.raw, "Lot 1 2O4 567  \n\u{c}\nQuebec");
        assert_eq!(out.boosted, "Lot 1 204 567\n\u{c}\nQuébec");
    }
}
