//! The local engine (docs/design.md §9): each page goes the cheapest way to text that still reads
//! what the page shows.
//!
//! - One `pdfinfo` (page count, sizes, rotations) and one `pdfimages -list` (every image, its page,
//!   size and resolution) plan the document (see [`plan_page`]).
//! - A born-digital page (no image covering it, text drawn with fonts) takes its text layer:
//!   `pdftotext -layout`. Exact, and a few milliseconds instead of an OCR run.
//! - A scanned page (images covering at least half of it) is OCR'd, even when it carries a hidden
//!   text layer (a previous OCR of unknown quality). When the page is one image at a usable
//!   resolution, that image is handed to tesseract as it is (`pdfimages -tiff`: uncompressed, no
//!   resampling); otherwise the page is rendered with `pdftoppm -gray` to PGM at the configured DPI.
//!   Never PNG: zlib-compressing a noisy scan cost 14 s a page, 7× tesseract's own time.
//! - Pages are prepared one at a time, ahead of tesseract (a bounded channel), so extracting or
//!   rendering page N+1 overlaps the reading of page N; tesseract runs on at most the caller's
//!   [`Parallelism`] pages at once, each with OMP_THREAD_LIMIT=1 (unthrottled OpenMP makes parallel
//!   runs many times slower).
//!
//! Everything lives in a per-job temporary directory removed afterwards, also on error or
//! cancellation; child processes are killed if the job is dropped.
//!
//! For an index des immeubles the same tesseract run also writes its words' positions (TSV), from
//! which [`crate::index_table`] rebuilds the table: no second OCR pass. A page taken from its text
//! layer has no TSV (its table is not rebuilt; the page gets a warning).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use registre_config::OcrEngineConfig;
use tokio::process::Command;

use crate::tempdir::JobDir;
use crate::{excerpt, OcrEngine, OcrError, OcrOutput, Parallelism};

/// Lowest resolution at which a page's own image is read as it is. Measured on a noisy index page
/// (tesseract 5.3, fra, --psm 4), character error rate of the native image against the same page
/// rendered at 300 DPI: 200 ppi 4.2 % vs 5.1 %, 150 ppi 4.8 % vs 6.2 % (native better: no
/// interpolation blur), 100 ppi 6.8 % vs 4.6 % (upsampling helps). Below this, the page is rendered
/// at the configured DPI.
pub(crate) const MIN_NATIVE_PPI: f64 = 150.0;
/// Highest resolution read as it is: above, the page is rendered at the configured DPI, so a
/// 600 ppi scan costs tesseract no more than today.
pub(crate) const MAX_NATIVE_PPI: f64 = 400.0;
/// Share of the page's area images must cover for the page to count as scanned.
const SCANNED_COVERAGE: f64 = 0.5;

/// How the pages are rendered and read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TesseractSettings {
    /// OCR_TESSERACT_DPI: `pdftoppm -r` for pages rendered (300 by default: tesseract's sweet spot
    /// for body text); a page that is one image between [`MIN_NATIVE_PPI`] and [`MAX_NATIVE_PPI`]
    /// is read at its own resolution instead.
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

/// A page's size in points as displayed (rotation applied) and its `/Rotate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PageGeometry {
    pub width_pt: f64,
    pub height_pt: f64,
    pub rotation: u32,
}

/// One row of `pdfimages -list`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageRow {
    pub page: usize,
    /// `image`, `stencil` (an image mask: a 1-bit scan can be drawn as one), `mask`, `smask`.
    pub kind: String,
    pub width: u32,
    pub height: u32,
    /// `gray`, `rgb`, `cmyk`, `icc`, `index`, ...
    pub color: String,
    pub components: u32,
    pub bits: u32,
    pub x_ppi: f64,
    pub y_ppi: f64,
}

/// How one page becomes text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PagePlan {
    /// No image covers the page: its text layer if it has one, else rendered and OCR'd.
    TextLayer,
    /// The page is one image at `ppi`: that image, extracted as it is, OCR'd.
    NativeImage { ppi: f64 },
    /// Rendered at the configured DPI and OCR'd.
    Render,
}

/// Decides a page's way to text from its geometry and its images (`pdfimages -list` rows of that
/// page). Pure, so the rules are unit-tested without PDFs.
pub(crate) fn plan_page(geometry: Option<PageGeometry>, images: &[&ImageRow]) -> PagePlan {
    let Some(page) = geometry.filter(|g| g.width_pt > 0.0 && g.height_pt > 0.0) else { return PagePlan::Render };
    let shown = |i: &ImageRow| -> Option<(f64, f64)> {
        (i.x_ppi > 0.0 && i.y_ppi > 0.0).then(|| (i.width as f64 * 72.0 / i.x_ppi, i.height as f64 * 72.0 / i.y_ppi))
    };
    let pictures: Vec<&ImageRow> = images.iter().copied().filter(|i| i.kind == "image" || i.kind == "stencil").collect();
    // An image whose resolution pdfimages could not compute is drawn in an unusual way: render.
    if pictures.iter().any(|i| shown(i).is_none()) {
        return PagePlan::Render;
    }
    let covered: f64 = pictures.iter().filter_map(|i| shown(i)).map(|(w, h)| w * h).sum();
    if covered < SCANNED_COVERAGE * page.width_pt * page.height_pt {
        return PagePlan::TextLayer;
    }
    // One plain image filling the page upright, nothing drawn with it that only rendering composes
    // (masks, transparency, other images), at a resolution tesseract reads well.
    let [only] = images else { return PagePlan::Render };
    let Some((w, h)) = shown(only) else { return PagePlan::Render };
    let fills = (w - page.width_pt).abs() <= 0.03 * page.width_pt && (h - page.height_pt).abs() <= 0.03 * page.height_pt;
    let square_pixels = (only.x_ppi - only.y_ppi).abs() <= 0.02 * only.x_ppi;
    let plain = only.kind == "image"
        && matches!(only.bits, 1 | 8)
        && (matches!(only.color.as_str(), "gray" | "rgb") || (only.color == "icc" && matches!(only.components, 1 | 3)));
    let ppi = only.x_ppi.min(only.y_ppi);
    if page.rotation == 0 && fills && square_pixels && plain && (MIN_NATIVE_PPI..=MAX_NATIVE_PPI).contains(&ppi) {
        PagePlan::NativeImage { ppi }
    } else {
        PagePlan::Render
    }
}

/// `pdfinfo -f 1 -l <large>` → (page count, each page's geometry).
fn parse_pdfinfo(stdout: &str) -> Option<(usize, Vec<Option<PageGeometry>>)> {
    let pages: usize = stdout.lines().find_map(|l| l.strip_prefix("Pages:")).and_then(|n| n.trim().parse().ok())?;
    let mut geometry: Vec<(Option<(f64, f64)>, u32)> = vec![(None, 0); pages];
    for line in stdout.lines() {
        // "Page    1 size: 612 x 792 pts (letter)" and "Page    1 rot:  90"
        let Some(rest) = line.strip_prefix("Page ") else { continue };
        let mut words = rest.split_whitespace();
        let Some(n) = words.next().and_then(|n| n.parse::<usize>().ok()).filter(|n| (1..=pages).contains(n)) else { continue };
        match words.next() {
            Some("size:") => {
                let w = words.next().and_then(|w| w.parse().ok());
                let h = words.nth(1).and_then(|h| h.parse().ok());
                if let (Some(w), Some(h)) = (w, h) {
                    geometry[n - 1].0 = Some((w, h));
                }
            }
            Some("rot:") => geometry[n - 1].1 = words.next().and_then(|r| r.parse::<i64>().ok()).map_or(0, |r| r.rem_euclid(360) as u32),
            _ => {}
        }
    }
    let geometry = geometry
        .into_iter()
        .map(|(size, rotation)| {
            size.map(|(w, h)| {
                let (width_pt, height_pt) = if rotation % 180 == 90 { (h, w) } else { (w, h) };
                PageGeometry { width_pt, height_pt, rotation }
            })
        })
        .collect();
    Some((pages, geometry))
}

/// `pdfimages -list` → its rows (the two header lines and anything unparsable are skipped).
fn parse_image_list(stdout: &str) -> Vec<ImageRow> {
    stdout
        .lines()
        .filter_map(|line| {
            // page num type width height color comp bpc enc interp object ID x-ppi y-ppi size ratio
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 14 {
                return None;
            }
            Some(ImageRow {
                page: f[0].parse().ok()?,
                kind: f[2].to_string(),
                width: f[3].parse().ok()?,
                height: f[4].parse().ok()?,
                color: f[5].to_string(),
                components: f[6].parse().ok()?,
                bits: f[7].parse().ok()?,
                x_ppi: f[12].parse().ok()?,
                y_ppi: f[13].parse().ok()?,
            })
        })
        .collect()
}

/// A page ready for the reading stage.
enum Prepared {
    /// Read from the text layer: done.
    Text(String),
    /// An image file for tesseract, at `ppi`.
    Image { page: usize, path: PathBuf, ppi: u32 },
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
        let (info, images) = futures_util::join!(self.page_info(&input), self.image_list(&input));
        let (pages, geometry) = info?;
        if pages == 0 {
            return Err(OcrError::NoPages);
        }
        // Without the image list, no page can be told born-digital: render them all.
        let plans: Vec<PagePlan> = match images {
            Ok(images) => (1..=pages)
                .map(|n| plan_page(geometry[n - 1], &images.iter().filter(|i| i.page == n).collect::<Vec<_>>()))
                .collect(),
            Err(e) => {
                tracing::debug!("pdfimages -list failed ({e}): every page is rendered");
                vec![PagePlan::Render; pages]
            }
        };

        // Stage 1 prepares pages in order, one at a time, at most one ahead of what stage 2 has
        // taken; stage 2 reads up to `parallelism` images at once. Both run in this one future,
        // so dropping the job drops (and kills) everything.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Prepared, OcrError>>(1);
        let dir = job.path();
        let input = input.as_path();
        let prepare = async move {
            for (index, plan) in plans.into_iter().enumerate() {
                let prepared = self.prepare(dir, input, index + 1, plan).await;
                let failed = prepared.is_err();
                if tx.send(prepared).await.is_err() || failed {
                    break;
                }
            }
            Ok::<(), OcrError>(())
        };
        let prepared = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let read = prepared
            .map(|prepared| async move {
                match prepared? {
                    Prepared::Text(text) => Ok::<_, OcrError>((text, None, true)),
                    Prepared::Image { page, path, ppi } => {
                        self.read_image(dir, page, &path, ppi, index).await.map(|(text, tsv)| (text, tsv, false))
                    }
                }
            })
            .buffered(parallelism.get())
            .try_collect::<Vec<(String, Option<String>, bool)>>();
        let ((), read) = futures_util::try_join!(prepare, read)?;

        let text_layer_pages = read.iter().filter(|(_, _, by_text_layer)| *by_text_layer).count();
        tracing::debug!(pages, text_layer_pages, parallelism = parallelism.get(), index, "tesseract engine read the document");
        let mut tsvs = Vec::new();
        let texts = read
            .into_iter()
            .map(|(text, tsv, _)| {
                tsvs.push(tsv.unwrap_or_default());
                text
            })
            .collect();
        let mut output = OcrOutput::from_pages("tesseract", texts);
        output.text_layer_pages = text_layer_pages;
        if index {
            output.index_data = Some(crate::index_table::read_document(&tsvs));
        }
        Ok(output)
        // `job` is dropped here (and on every early return above): the directory is removed.
    }

    /// `pdfinfo -f 1 -l <many>`: the page count and every page's size and rotation in one run. A
    /// file poppler cannot open is [`OcrError::Unrenderable`].
    async fn page_info(&self, input: &Path) -> Result<(usize, Vec<Option<PageGeometry>>), OcrError> {
        let mut cmd = Command::new("pdfinfo");
        // poppler clamps -l to the last page.
        cmd.args(["-f", "1", "-l", &i32::MAX.to_string()]).arg(input);
        let out = run(cmd, "pdfinfo", "poppler-utils", "reading the page count", self.settings.page_timeout).await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(OcrError::Unrenderable { detail: excerpt(&String::from_utf8_lossy(&out.stderr), 300) });
        }
        parse_pdfinfo(&stdout).ok_or_else(|| OcrError::Unrenderable { detail: format!("pdfinfo reported no page count ({})", excerpt(&stdout, 200)) })
    }

    /// `pdfimages -list`: every image of the document, by page.
    async fn image_list(&self, input: &Path) -> Result<Vec<ImageRow>, OcrError> {
        let mut cmd = Command::new("pdfimages");
        cmd.arg("-list").arg(input);
        let out = run(cmd, "pdfimages", "poppler-utils", "listing the images", self.settings.page_timeout).await?;
        if !out.status.success() {
            return Err(OcrError::Unrenderable { detail: excerpt(&String::from_utf8_lossy(&out.stderr), 300) });
        }
        Ok(parse_image_list(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Brings page `page` (1-based) to text or to an image file for tesseract, as `plan` says.
    async fn prepare(&self, dir: &Path, input: &Path, page: usize, plan: PagePlan) -> Result<Prepared, OcrError> {
        match plan {
            PagePlan::TextLayer => match self.text_layer(input, page).await? {
                Some(text) => Ok(Prepared::Text(text)),
                // Nothing drawn with fonts (vector outlines, an empty page): read what renders.
                None => self.render(dir, input, page).await,
            },
            PagePlan::NativeImage { ppi } => match self.native_image(dir, input, page).await? {
                Some(path) => Ok(Prepared::Image { page, path, ppi: ppi.round() as u32 }),
                None => self.render(dir, input, page).await,
            },
            PagePlan::Render => self.render(dir, input, page).await,
        }
    }

    /// `pdftotext -layout` of one page; `None` when the page has no text (or pdftotext failed:
    /// rendering then reports what is wrong with the page).
    async fn text_layer(&self, input: &Path, page: usize) -> Result<Option<String>, OcrError> {
        let n = page.to_string();
        let mut cmd = Command::new("pdftotext");
        cmd.args(["-layout", "-enc", "UTF-8", "-f", &n, "-l", &n]).arg(input).arg("-");
        let out = run(cmd, "pdftotext", "poppler-utils", &format!("reading the text layer of page {page}"), self.settings.page_timeout).await?;
        if !out.status.success() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let text = text.trim_end_matches(['\u{c}', '\n', ' ', '\r', '\t']);
        Ok(text.chars().any(char::is_alphanumeric).then(|| text.to_string()))
    }

    /// `pdfimages -tiff` of one page: its one image, uncompressed, at its own resolution. `None`
    /// if no file came out (rendering then takes over).
    async fn native_image(&self, dir: &Path, input: &Path, page: usize) -> Result<Option<PathBuf>, OcrError> {
        let n = page.to_string();
        let prefix = format!("image-{page}");
        let mut cmd = Command::new("pdfimages");
        cmd.args(["-tiff", "-f", &n, "-l", &n]).arg(input).arg(dir.join(&prefix));
        let out = run(cmd, "pdfimages", "poppler-utils", &format!("extracting the image of page {page}"), self.settings.page_timeout).await?;
        let path = dir.join(format!("{prefix}-000.tif"));
        Ok((out.status.success() && path.exists()).then_some(path))
    }

    /// `pdftoppm -gray` of one page at the configured DPI, written as PGM (no compression).
    async fn render(&self, dir: &Path, input: &Path, page: usize) -> Result<Prepared, OcrError> {
        let stem = dir.join(format!("page-{page}"));
        let pgm = dir.join(format!("page-{page}.pgm"));
        let n = page.to_string();
        let mut render = Command::new("pdftoppm");
        render.args(["-r", &self.settings.dpi.to_string(), "-f", &n, "-l", &n, "-singlefile", "-gray"]).arg(input).arg(&stem);
        let out = run(render, "pdftoppm", "poppler-utils", &format!("rendering page {page}"), self.settings.page_timeout).await?;
        if !out.status.success() || !pgm.exists() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let detail = if stderr.trim().is_empty() { format!("page {page} produced no image") } else { format!("page {page}: {}", excerpt(&stderr, 300)) };
            return Err(OcrError::Unrenderable { detail });
        }
        Ok(Prepared::Image { page, path: pgm, ppi: self.settings.dpi })
    }

    /// tesseract on one image: its text, and with `index` its words' positions (tesseract's TSV,
    /// written by the same run). The image is deleted once read.
    async fn read_image(&self, dir: &Path, page: usize, image: &Path, ppi: u32, index: bool) -> Result<(String, Option<String>), OcrError> {
        let mut read = Command::new("tesseract");
        let base = dir.join(format!("page-{page}-read"));
        read.arg(image);
        if index {
            read.arg(&base);
        } else {
            read.arg("stdout");
        }
        read.args(["-l", &self.settings.lang, "--psm", &self.settings.psm.to_string(), "--dpi", &ppi.to_string()])
            .env("OMP_THREAD_LIMIT", "1");
        if index {
            // Config files of tesseract's own tessdata/configs: one run writes base.txt and base.tsv.
            read.args(["txt", "tsv"]);
        }
        let out = run(read, "tesseract", "tesseract-ocr and tesseract-ocr-fra", &format!("reading page {page}"), self.settings.page_timeout).await?;
        // Best effort: the whole directory goes at the end of the job anyway.
        let _ = tokio::fs::remove_file(image).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    const LETTER: PageGeometry = PageGeometry { width_pt: 612.0, height_pt: 792.0, rotation: 0 };

    fn image(kind: &str, width: u32, height: u32, ppi: f64) -> ImageRow {
        ImageRow { page: 1, kind: kind.into(), width, height, color: "gray".into(), components: 1, bits: 8, x_ppi: ppi, y_ppi: ppi }
    }

    #[test]
    fn parses_pdfinfo_pages_sizes_and_rotation() {
        let out = "Producer: x\nPages:           2\nPage    1 size:  612 x 792 pts (letter)\nPage    1 rot:   0\nPage    2 size: 612 x 792 pts (letter)\nPage    2 rot:   90\n";
        let (pages, geometry) = parse_pdfinfo(out).unwrap();
        assert_eq!(pages, 2);
        assert_eq!(geometry[0], Some(LETTER));
        assert_eq!(geometry[1], Some(PageGeometry { width_pt: 792.0, height_pt: 612.0, rotation: 90 }));
        assert_eq!(parse_pdfinfo("Title: x\n"), None);
    }

    #[test]
    fn parses_the_image_list() {
        let out = "page   num  type   width height color comp bpc  enc interp  object ID x-ppi y-ppi size ratio\n\
                   --------------------------------------------------------------------------------------------\n\
                   \x20  1     0 image    1700  2200  gray    1   8  image  no         4  0   200   200 2801K  77%\n\
                   \x20  2     1 stencil   850  1100  -       1   1  ccitt  no         7  0   100   100  50K  1.2%\n";
        let rows = parse_image_list(out);
        assert_eq!(rows, vec![
            image("image", 1700, 2200, 200.0),
            ImageRow { page: 2, kind: "stencil".into(), width: 850, height: 1100, color: "-".into(), components: 1, bits: 1, x_ppi: 100.0, y_ppi: 100.0 },
        ]);
    }

    #[test]
    fn a_page_without_a_covering_image_takes_its_text_layer() {
        assert_eq!(plan_page(Some(LETTER), &[]), PagePlan::TextLayer);
        // A logo: 2 × 1 inch on a letter page.
        assert_eq!(plan_page(Some(LETTER), &[&image("image", 400, 200, 200.0)]), PagePlan::TextLayer);
    }

    #[test]
    fn a_page_that_is_one_image_is_read_at_its_own_resolution() {
        assert_eq!(plan_page(Some(LETTER), &[&image("image", 1700, 2200, 200.0)]), PagePlan::NativeImage { ppi: 200.0 });
        assert_eq!(plan_page(Some(LETTER), &[&image("image", 2550, 3300, 300.0)]), PagePlan::NativeImage { ppi: 300.0 });
        let icc = ImageRow { color: "icc".into(), ..image("image", 1700, 2200, 200.0) };
        assert_eq!(plan_page(Some(LETTER), &[&icc]), PagePlan::NativeImage { ppi: 200.0 });
    }

    #[test]
    fn scanned_pages_that_are_not_one_plain_image_are_rendered() {
        let scan = image("image", 1700, 2200, 200.0);
        // Too coarse (upsampling helps below 150 ppi) or finer than needed.
        assert_eq!(plan_page(Some(LETTER), &[&image("image", 850, 1100, 100.0)]), PagePlan::Render);
        assert_eq!(plan_page(Some(LETTER), &[&image("image", 5100, 6600, 600.0)]), PagePlan::Render);
        // A rotated page, a mask, strips, CMYK, an image mask, a stamp over the scan.
        assert_eq!(plan_page(Some(PageGeometry { width_pt: 792.0, height_pt: 612.0, rotation: 90 }), &[&image("image", 2200, 1700, 200.0)]), PagePlan::Render);
        assert_eq!(plan_page(Some(LETTER), &[&scan, &image("smask", 1700, 2200, 200.0)]), PagePlan::Render);
        assert_eq!(plan_page(Some(LETTER), &[&image("image", 1700, 1100, 200.0), &image("image", 1700, 1100, 200.0)]), PagePlan::Render);
        assert_eq!(plan_page(Some(LETTER), &[&ImageRow { color: "cmyk".into(), components: 4, ..scan.clone() }]), PagePlan::Render);
        assert_eq!(plan_page(Some(LETTER), &[&image("stencil", 1700, 2200, 200.0)]), PagePlan::Render);
        assert_eq!(plan_page(Some(LETTER), &[&scan, &image("image", 200, 200, 200.0)]), PagePlan::Render);
        // A scan drawn sideways on a portrait page (its shown size does not match the page).
        assert_eq!(plan_page(Some(LETTER), &[&image("image", 2200, 1700, 200.0)]), PagePlan::Render);
        // Unknown geometry or resolution.
        assert_eq!(plan_page(None, &[&scan]), PagePlan::Render);
        assert_eq!(plan_page(Some(LETTER), &[&image("image", 1700, 2200, 0.0)]), PagePlan::Render);
    }
}
