//! The HTML report: one self-contained `index.html` (inline CSS, tables inline, PNG figures embedded as
//! base64 data URIs) that links every table and figure file next to it and shows the run provenance.
//!
//! The page needs no network and no other file to display; the links to SVG/CSV/LaTeX files are
//! relative, so the report directory can be moved or archived as a whole.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::table::{html_escape, Table};
use crate::ReportError;

/// A table in the report, with links to its files (Markdown, LaTeX, CSV).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportTable {
    /// The table (rendered inline with its caption).
    pub table: Table,
    /// Files of this table, linked under it.
    pub files: Vec<PathBuf>,
}

/// A figure in the report: its PNG is embedded, its other files (SVG, CSV) linked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportFigure {
    /// Heading above the figure.
    pub title: String,
    /// Caption under the figure (plain text).
    pub caption: String,
    /// The PNG to embed.
    pub png: PathBuf,
    /// Files linked under the figure (SVG, CSV, ...).
    pub files: Vec<PathBuf>,
}

/// One provenance item: a label and a text (a config file, a list of inputs with checksums, ...),
/// shown in a collapsible block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvenanceItem {
    /// What the text is, e.g. `runs/cifar10/seed-1/config.json`.
    pub label: String,
    /// The content, shown verbatim.
    pub text: String,
}

/// Everything the report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    /// Page title.
    pub title: String,
    /// Introductory paragraphs (plain text).
    pub summary: Vec<String>,
    /// Tables, in order.
    pub tables: Vec<ReportTable>,
    /// Figures, in order.
    pub figures: Vec<ReportFigure>,
    /// Other files to link (e.g. the long aggregate CSV), with a description each.
    pub files: Vec<(PathBuf, String)>,
    /// Provenance items (configs, seeds, versions, input checksums).
    pub provenance: Vec<ProvenanceItem>,
}

const CSS: &str = "body{font-family:'DejaVu Sans',Helvetica,Arial,sans-serif;max-width:1180px;margin:2em auto;padding:0 1.5em;color:#222;line-height:1.45}
h1{font-size:1.7em;border-bottom:2px solid #0072B2;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #ddd;padding-bottom:.2em}
h3{font-size:1.08em;margin:1.4em 0 .4em}
nav ul{columns:2;font-size:.93em}
div.results{margin:1em 0}
table.results{display:inline-table;vertical-align:top;border-collapse:collapse;margin:0 2.5em 1.2em 0;font-size:.92em;font-variant-numeric:tabular-nums}
table.results caption{caption-side:top;text-align:left;font-weight:bold;font-size:.95em;padding-bottom:.3em}
table.results th,table.results td{padding:.3em .6em;text-align:right;white-space:nowrap}
table.results thead th{white-space:normal;vertical-align:bottom;border-top:2px solid #222;border-bottom:1px solid #222}
p.caption{font-size:.86em;color:#555;margin:.2em 0 .4em}
table.results tbody tr:last-child td,table.results tbody tr:last-child th{border-bottom:2px solid #222}
table.results tbody th,table.results thead th:first-child{text-align:left;font-weight:normal}
table.results thead th:first-child{font-weight:bold}
table.results tbody tr:nth-child(even){background:#f6f8fa}
dl.definitions{font-size:.84em;color:#555;display:grid;grid-template-columns:max-content auto;gap:.15em 1em;margin:.2em 0 1em}
dl.definitions dt{font-weight:bold}
dl.definitions dd{margin:0}
figure{margin:1em 0 2em}
figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.86em;color:#555;margin-top:.4em}
.files{font-size:.86em;color:#555}
.files a{margin-right:1em}
details{margin:.4em 0}
summary{cursor:pointer;font-family:monospace}
.warnings{background:#fff4e5;border-left:4px solid #E69F00;padding:.2em 1em .4em;margin:1em 0}
.warnings h2{margin-top:.4em;border:none}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.82em;max-height:30em}
";

/// Writes `out_dir/index.html` atomically and returns its path. PNGs are read and embedded; every
/// other path is linked relative to `out_dir` (paths outside it are linked as given).
pub fn write_report(out_dir: &Path, input: &ReportInput) -> Result<PathBuf, ReportError> {
    write_report_with_warnings(out_dir, input, &[])
}

/// [`write_report`] with a "Warnings" section (one item per entry) between the summary and the
/// contents, so that notes which qualify the numbers cannot be missed. Empty `warnings`: no section.
pub fn write_report_with_warnings(
    out_dir: &Path,
    input: &ReportInput,
    warnings: &[String],
) -> Result<PathBuf, ReportError> {
    let html = render_with_warnings(out_dir, input, warnings)?;
    let path = out_dir.join("index.html");
    decal_core::write_atomic(&path, html.as_bytes())?;
    Ok(path)
}

fn link(out_dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(out_dir).unwrap_or(path);
    // URL-escape the few characters that appear in our file names; '/' stays a separator.
    let text = rel.to_string_lossy().replace('\\', "/");
    let href: String = text
        .chars()
        .map(|c| match c {
            ' ' => "%20".to_string(),
            '#' => "%23".to_string(),
            '%' => "%25".to_string(),
            '?' => "%3F".to_string(),
            '"' => "%22".to_string(),
            c => c.to_string(),
        })
        .collect();
    format!(
        "<a href=\"{}\">{}</a>",
        html_escape(&href),
        html_escape(&text)
    )
}

fn anchor(prefix: &str, i: usize) -> String {
    format!("{prefix}-{i}")
}

/// Renders the page (see [`write_report`]).
pub fn render(out_dir: &Path, input: &ReportInput) -> Result<String, ReportError> {
    render_with_warnings(out_dir, input, &[])
}

/// Renders the page with a "Warnings" section (see [`write_report_with_warnings`]).
pub fn render_with_warnings(
    out_dir: &Path,
    input: &ReportInput,
    warnings: &[String],
) -> Result<String, ReportError> {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str(&format!(
        "<title>{}</title>\n<style>\n{CSS}</style>\n</head>\n<body>\n",
        html_escape(&input.title)
    ));
    out.push_str(&format!("<h1>{}</h1>\n", html_escape(&input.title)));
    for p in &input.summary {
        out.push_str(&format!("<p>{}</p>\n", html_escape(p)));
    }

    if !warnings.is_empty() {
        out.push_str("<section id=\"warnings\" class=\"warnings\">\n<h2>Warnings</h2>\n<ul>\n");
        for w in warnings {
            out.push_str(&format!("<li>{}</li>\n", html_escape(w)));
        }
        out.push_str("</ul>\n</section>\n");
    }

    out.push_str("<nav><strong>Contents</strong>\n<ul>\n");
    for (i, t) in input.tables.iter().enumerate() {
        out.push_str(&format!(
            "<li><a href=\"#{}\">Table: {}</a></li>\n",
            anchor("table", i),
            html_escape(&t.table.title)
        ));
    }
    for (i, f) in input.figures.iter().enumerate() {
        out.push_str(&format!(
            "<li><a href=\"#{}\">Figure: {}</a></li>\n",
            anchor("figure", i),
            html_escape(&f.title)
        ));
    }
    if !input.files.is_empty() {
        out.push_str("<li><a href=\"#files\">Other files</a></li>\n");
    }
    if !input.provenance.is_empty() {
        out.push_str("<li><a href=\"#provenance\">Provenance</a></li>\n");
    }
    out.push_str("</ul></nav>\n");

    if !input.tables.is_empty() {
        out.push_str("<h2>Tables</h2>\n");
    }
    for (i, t) in input.tables.iter().enumerate() {
        out.push_str(&format!(
            "<section id=\"{}\">\n<h3>{}</h3>\n",
            anchor("table", i),
            html_escape(&t.table.title)
        ));
        out.push_str(&t.table.to_html());
        push_files(&mut out, out_dir, &t.files);
        out.push_str("</section>\n");
    }

    if !input.figures.is_empty() {
        out.push_str("<h2>Figures</h2>\n");
    }
    for (i, f) in input.figures.iter().enumerate() {
        let png = std::fs::read(&f.png).map_err(ReportError::io(&f.png))?;
        // Show the figure at its nominal size (our PNGs are rendered at PNG_SCALE × that size).
        let width = png_width(&png)
            .map(|w| {
                format!(
                    " width=\"{}\"",
                    (w as f64 / crate::plot::PNG_SCALE).round() as u32
                )
            })
            .unwrap_or_default();
        let b64 = base64::engine::general_purpose::STANDARD.encode(png);
        out.push_str(&format!(
            "<section id=\"{}\">\n<h3>{}</h3>\n<figure>\n<img alt=\"{}\"{width} src=\"data:image/png;base64,{b64}\">\n<figcaption>{}</figcaption>\n</figure>\n",
            anchor("figure", i),
            html_escape(&f.title),
            html_escape(&f.title),
            html_escape(&f.caption)
        ));
        let mut files = vec![f.png.clone()];
        files.extend(f.files.iter().cloned());
        push_files(&mut out, out_dir, &files);
        out.push_str("</section>\n");
    }

    if !input.files.is_empty() {
        out.push_str("<h2 id=\"files\">Other files</h2>\n<ul>\n");
        for (path, what) in &input.files {
            out.push_str(&format!(
                "<li>{}: {}</li>\n",
                link(out_dir, path),
                html_escape(what)
            ));
        }
        out.push_str("</ul>\n");
    }

    if !input.provenance.is_empty() {
        out.push_str("<h2 id=\"provenance\">Provenance</h2>\n");
        for item in &input.provenance {
            out.push_str(&format!(
                "<details><summary>{}</summary>\n<pre>{}</pre>\n</details>\n",
                html_escape(&item.label),
                html_escape(&item.text)
            ));
        }
    }
    out.push_str("</body>\n</html>\n");
    Ok(out)
}

/// The width from a PNG's IHDR chunk (bytes 16..20, big-endian), if the bytes look like a PNG.
fn png_width(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" || &bytes[12..16] != b"IHDR" {
        return None;
    }
    Some(u32::from_be_bytes([
        bytes[16], bytes[17], bytes[18], bytes[19],
    ]))
}

fn push_files(out: &mut String, out_dir: &Path, files: &[PathBuf]) {
    if files.is_empty() {
        return;
    }
    out.push_str("<p class=\"files\">Files: ");
    for (i, f) in files.iter().enumerate() {
        if !files[..i].contains(f) {
            out.push_str(&link(out_dir, f));
        }
    }
    out.push_str("</p>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{aggregate, Spread};
    use crate::MetricRecord;

    #[test]
    fn page_is_self_contained_and_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("plots/fig 1.png");
        std::fs::create_dir_all(png.parent().unwrap()).unwrap();
        std::fs::write(&png, b"\x89PNG fake").unwrap();
        let records = vec![MetricRecord {
            run: "r".into(),
            seed: Some(1),
            method: "<TST>".into(),
            split: "test".into(),
            dataset: "cifar10".into(),
            corruption: None,
            severity: None,
            metric: "accuracy".into(),
            value: 0.9255,
            definition: "top-1".into(),
        }];
        let table = Table::paper("Main", &aggregate(&records).unwrap(), Spread::Std, &[]).unwrap();
        let input = ReportInput {
            title: "Report & more".into(),
            summary: vec!["1 run".into()],
            tables: vec![ReportTable {
                table,
                files: vec![dir.path().join("tables/main.md")],
            }],
            figures: vec![ReportFigure {
                title: "Reliability".into(),
                caption: "cap".into(),
                png: png.clone(),
                files: vec![dir.path().join("plots/fig 1.svg")],
            }],
            files: vec![],
            provenance: vec![ProvenanceItem {
                label: "config.json".into(),
                text: "{\"a\": \"<b>\"}".into(),
            }],
        };
        let path = write_report(dir.path(), &input).unwrap();
        let html = std::fs::read_to_string(path).unwrap();
        assert!(html.contains("<title>Report &amp; more</title>"));
        assert!(
            html.contains("<th>&lt;TST&gt;</th><td>92.55</td>"),
            "{html}"
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG fake");
        assert!(html.contains(&format!("src=\"data:image/png;base64,{b64}\"")));
        assert!(
            html.contains("<a href=\"plots/fig%201.svg\">plots/fig 1.svg</a>"),
            "{html}"
        );
        assert!(html.contains("<pre>{&quot;a&quot;: &quot;&lt;b&gt;&quot;}</pre>"));
        assert!(
            !html.contains("http"),
            "the page must not reference the network"
        );
        let missing = ReportInput {
            figures: vec![ReportFigure {
                png: dir.path().join("nope.png"),
                ..input.figures[0].clone()
            }],
            ..input
        };
        let err = write_report(dir.path(), &missing).unwrap_err().to_string();
        assert!(err.contains("nope.png"), "{err}");
    }
}
