//! The local engine: poppler's `pdfinfo` counts the pages, `pdftoppm` renders each page to a
//! grayscale PNG at the configured DPI, `tesseract <png> stdout -l <lang>` reads it. Pages run in
//! parallel, never more at once than the caller's [`Parallelism`]; each tesseract run gets
//! OMP_THREAD_LIMIT=1 (unthrottled OpenMP makes parallel runs many times slower). Everything lives
//! in a per-job temporary directory removed afterwards, also on error or cancellation; child
//! processes are killed if the job is dropped. For an index des immeubles the same tesseract run
//! also writes its words' positions (TSV), from which [`crate::index_table`] rebuilds the table:
//! no second OCR pass.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use registre_config::OcrEngineConfig;
use tokio::process::Command;

use crate::tempdir::JobDir;
use crate::{excerpt, OcrEngine, OcrError, OcrOutput, Parallelism};

/// How the pages are rendered and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TesseractSettings {
    /// OCR_TESSERACT_DPI: `pdftoppm -r` (300 by default: tesseract's sweet spot for body text).
    pub dpi: u32,
    /// OCR_TESSERACT_LANG: `tesseract -l` (`fra` by default).
    pub lang: String,
    /// `tesseract --psm`: how a page is segmented. 4 ("a single column of text of variable sizes")
    /// by default: registry index pages are tables whose rows must stay whole lines (lot, date,
    /// inscription and party on one line); the automatic mode (3) reads wide-spaced columns as
    /// separate blocks and tears the rows apart.
    pub psm: u32,
    /// Where the per-job directories are created (the system temp dir by default).
    pub temp_root: PathBuf,
    /// Longest time for rendering or reading one page before the document fails.
    pub page_timeout: Duration,
}

impl Default for TesseractSettings {
    fn default() -> Self {
        TesseractSettings { dpi: 300, lang: "fra".into(), psm: 4, temp_root: std::env::temp_dir(), page_timeout: Duration::from_secs(300) }
    }
}

impl TesseractSettings {
    pub fn from_config(config: &OcrEngineConfig) -> TesseractSettings {
        TesseractSettings { dpi: config.tesseract_dpi, lang: config.tesseract_lang.clone(), ..TesseractSettings::default() }
    }
}

#[derive(Debug, Clone)]
pub struct TesseractEngine {
    settings: TesseractSettings,
}

impl TesseractEngine {
    pub fn new(settings: TesseractSettings) -> TesseractEngine {
        TesseractEngine { settings }
    }

    pub fn settings(&self) -> &TesseractSettings {
        &self.settings
    }

    async fn run(&self, pdf: &[u8], parallelism: Parallelism, index: bool) -> Result<OcrOutput, OcrError> {
        let job = JobDir::create(&self.settings.temp_root)?;
        let input = job.path().join("input.pdf");
        tokio::fs::write(&input, pdf)
            .await
            .map_err(|source| OcrError::TempFiles { path: input.display().to_string(), source })?;
        let pages = self.page_count(&input).await?;
        if pages == 0 {
            return Err(OcrError::NoPages);
        }
        let read: Vec<(String, Option<String>)> = futures_util::stream::iter(1..=pages)
            .map(|page| self.read_page(job.path(), &input, page, index))
            .buffered(parallelism.get())
            .try_collect()
            .await?;
        tracing::debug!(pages, parallelism = parallelism.get(), index, "tesseract read the document");
        let mut tsvs = Vec::new();
        let texts = read
            .into_iter()
            .map(|(text, tsv)| {
                tsvs.push(tsv.unwrap_or_default());
                text
            })
            .collect();
        let mut output = OcrOutput::from_pages("tesseract", texts);
        if index {
            output.index_data = Some(crate::index_table::read_document(&tsvs));
        }
        Ok(output)
        // `job` is dropped here (and on every early return above): the directory is removed.
    }

    /// `pdfinfo` → the `Pages:` line. A file poppler cannot open is [`OcrError::Unrenderable`].
    async fn page_count(&self, input: &Path) -> Result<usize, OcrError> {
        let mut cmd = Command::new("pdfinfo");
        cmd.arg(input);
        let out = run(cmd, "pdfinfo", "poppler-utils", "reading the page count", self.settings.page_timeout).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(OcrError::Unrenderable { detail: excerpt(&String::from_utf8_lossy(&out.stderr), 300) });
        }
        stdout
            .lines()
            .find_map(|l| l.strip_prefix("Pages:").map(|n| n.trim().parse::<usize>()))
            .and_then(Result::ok)
            .ok_or_else(|| OcrError::Unrenderable { detail: format!("pdfinfo reported no page count ({})", excerpt(&stdout, 200)) })
    }

    /// Renders then reads one page (1-based): its text, and with `index` its words' positions
    /// (tesseract's TSV, written by the same run). The PNG is deleted as soon as it has been read.
    async fn read_page(&self, dir: &Path, input: &Path, page: usize, index: bool) -> Result<(String, Option<String>), OcrError> {
        let stem = dir.join(format!("page-{page}"));
        let png = dir.join(format!("page-{page}.png"));
        let n = page.to_string();
        let mut render = Command::new("pdftoppm");
        render
            .args(["-r", &self.settings.dpi.to_string(), "-f", &n, "-l", &n, "-singlefile", "-gray", "-png"])
            .arg(input)
            .arg(&stem);
        let out = run(render, "pdftoppm", "poppler-utils", &format!("rendering page {page}"), self.settings.page_timeout).await?;
        if !out.status.success() || !png.exists() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let detail = if stderr.trim().is_empty() { format!("page {page} produced no image") } else { format!("page {page}: {}", excerpt(&stderr, 300)) };
            return Err(OcrError::Unrenderable { detail });
        }

        let mut read = Command::new("tesseract");
        let base = dir.join(format!("page-{page}-read"));
        if index {
            read.arg(&png).arg(&base);
        } else {
            read.arg(&png).arg("stdout");
        }
        read.args(["-l", &self.settings.lang, "--psm", &self.settings.psm.to_string()]).env("OMP_THREAD_LIMIT", "1");
        if index {
            // Config files of tesseract's own tessdata/configs: one run writes base.txt and base.tsv.
            read.args(["txt", "tsv"]);
        }
        let out = run(read, "tesseract", "tesseract-ocr and tesseract-ocr-fra", &format!("reading page {page}"), self.settings.page_timeout).await?;
        // Best effort: the whole directory goes at the end of the job anyway.
        let _ = tokio::fs::remove_file(&png).await;
        if !out.status.success() {
            return Err(OcrError::Tesseract { page, detail: excerpt(&String::from_utf8_lossy(&out.stderr), 300) });
        }
        let (text, tsv) = if index {
            let read_file = |ext: &str| {
                let path = base.with_extension(ext);
                std::fs::read(&path).map_err(|source| OcrError::TempFiles { path: path.display().to_string(), source })
            };
            (String::from_utf8_lossy(&read_file("txt")?).into_owned(), Some(String::from_utf8_lossy(&read_file("tsv")?).into_owned()))
        } else {
            (String::from_utf8_lossy(&out.stdout).into_owned(), None)
        };
        Ok((text.trim_end_matches(['\u{c}', '\n', ' ', '\r', '\t']).to_string(), tsv))
    }
}

/// Runs a child to completion with a timeout; the child is killed if this future is dropped.
async fn run(
    mut cmd: Command,
    program: &'static str,
    package: &'static str,
    context: &str,
    timeout: Duration,
) -> Result<std::process::Output, OcrError> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().map_err(|source| OcrError::MissingProgram { program, package, source })?;
    let failed = |detail: String| OcrError::Program { program, context: context.to_string(), detail };
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!("timed out after {} s", timeout.as_secs()))),
    }
}

impl OcrEngine for TesseractEngine {
    fn name(&self) -> &'static str {
        "tesseract"
    }

    fn extract<'a>(&'a self, pdf: &'a [u8], parallelism: Parallelism) -> BoxFuture<'a, Result<OcrOutput, OcrError>> {
        Box::pin(self.run(pdf, parallelism, false))
    }

    fn extract_index<'a>(&'a self, pdf: &'a [u8], parallelism: Parallelism) -> BoxFuture<'a, Result<OcrOutput, OcrError>> {
        Box::pin(self.run(pdf, parallelism, true))
    }
}
