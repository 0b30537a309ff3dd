//! `decal report` as a library call: find `metrics.jsonl` files, aggregate their records over seeds,
//! and write tables, figures and the HTML report into one directory (also used by `decal run` and
//! `decal quickstart`).
//!
//! Inputs are run directories (searched recursively for files named `metrics.jsonl`; hidden
//! directories and the output directory are skipped) or direct paths to `.jsonl` / `.csv` record files.
//! A records file byte-identical to one already found (e.g. the copy a study keeps in its report unit's
//! folder) is read once: listed as skipped, its side files not pooled a second time.
//! Next to each records file the report also picks up, when present:
//! - `reliability/*.csv` — reliability bins in [`crate::reliability`]'s CSV format; series with the same
//!   file stem and label from several runs are **pooled** (counts summed, per-bin accuracy and confidence
//!   count-weighted, which is exact) and their ECEs averaged; series with different bin edges or
//!   definitions are not pooled (a warning says so);
//! - `ood_histograms/*.csv` — score histograms ([`crate::plot::histogram`]'s CSV), pooled the same way;
//! - `*.json` / `*.toml` — configs and metadata, shown verbatim in the report's provenance section.
//!
//! Result files of the seed repository can be added with [`ReportOptions::seed_results`]; their models
//! become rows of their own (see [`crate::seed_results`]).
//!
//! Output layout (`out_dir`):
//! ```text
//! index.html                          self-contained report (if html is requested)
//! tables/main.{md,tex,csv}            results table in the seed's layout (per requested format)
//! tables/aggregates.csv               every group: mean, std, se, n, min, max, definition (lossless)
//! tables/records.csv                  all input records in one tidy CSV (if csv is requested)
//! plots/<name>.{svg,png,csv}          severity plots, reliability diagrams, OOD score histograms
//! report.json                         manifest: inputs and every file above, with SHA-256
//! ```
//!
//! An output directory that holds a previous report (recognised by its `report.json`, unchanged) is
//! replaced; one that holds anything else is refused without `force` ([`crate::manifest`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::html::{ProvenanceItem, ReportFigure, ReportInput, ReportTable};
use crate::manifest::{self, FileEntry, OutputState};
use crate::plot::histogram::{read_histogram_csv, ScoreHistogram};
use crate::plot::{severity_lines, write_score_histograms, write_severity_plot};
use crate::record::{self, MetricRecord};
use crate::reliability::{
    pool_bins, read_reliability_csv, write_reliability_diagram, ReliabilitySeries,
};
use crate::table::{aggregate, aggregates_to_csv, Spread, Table};
use crate::ReportError;

/// Which table formats to write (figures are always written; the HTML report embeds them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Formats {
    /// `tables/main.md`.
    pub markdown: bool,
    /// `tables/main.tex`.
    pub latex: bool,
    /// `tables/main.csv` and `tables/records.csv`.
    pub csv: bool,
    /// `index.html`.
    pub html: bool,
}

impl Formats {
    /// Every format.
    pub const ALL: Formats = Formats {
        markdown: true,
        latex: true,
        csv: true,
        html: true,
    };

    /// Parses a comma-separated list of `md`, `tex`, `csv`, `html` (also `markdown`, `latex`).
    pub fn parse(list: &str) -> Result<Formats, ReportError> {
        let mut f = Formats {
            markdown: false,
            latex: false,
            csv: false,
            html: false,
        };
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match item.to_ascii_lowercase().as_str() {
                "md" | "markdown" => f.markdown = true,
                "tex" | "latex" => f.latex = true,
                "csv" => f.csv = true,
                "html" => f.html = true,
                other => {
                    return Err(ReportError::Invalid(format!(
                        "unknown report format {other:?}: expected md, tex, csv or html"
                    )))
                }
            }
        }
        if f == (Formats {
            markdown: false,
            latex: false,
            csv: false,
            html: false,
        }) {
            return Err(ReportError::Invalid(
                "no report format given: expected md, tex, csv or html".to_string(),
            ));
        }
        Ok(f)
    }
}

/// Options of [`generate_report`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Formats to write.
    pub formats: Formats,
    /// What `±` shows.
    pub spread: Spread,
    /// Report / table title.
    pub title: String,
    /// Methods to list first, in this order (the rest follow in order of appearance).
    pub method_order: Vec<String>,
    /// Methods of the "selected methods" reliability overlay, drawn when more than four methods have
    /// reliability data: the first four of these that have it (empty: of `method_order`). `decal run`
    /// sets Baseline, TS and each head's main row, the figure a reader of its study looks for.
    pub overlay: Vec<String>,
    /// Write into an output directory that holds something other than a report decal-report wrote
    /// (same-named files are overwritten, others kept). A previous report recognised by its
    /// `report.json` is replaced without it (see [`crate::manifest`]).
    pub force: bool,
    /// Provenance of the process writing the report (shown in the report), if wanted.
    pub provenance: Option<decal_core::Provenance>,
    /// Seed-repository result files to include, each with the method (row) name to give its models
    /// (see [`crate::seed_results`]).
    pub seed_results: Vec<(PathBuf, String)>,
    /// Notes and warnings of the caller that readers of the numbers must see (e.g. an OOD set that was
    /// skipped, a seed-compatibility option in effect). Shown, in order and before the report's own
    /// warnings, in a "Warnings" section of `index.html` and of `tables/main.md`.
    pub notes: Vec<String>,
    /// Files of the caller to put into the report directory with the report, as (path relative to
    /// `out_dir`, contents): e.g. `decal run`'s `results.md`. They are written and replaced together
    /// with the report and listed in its manifest, so that a later `decal report` recognises the
    /// directory as a report (and removes them as stale unless it is given them too). A path must be
    /// plain relative (no `..`) and must not be one of the report's own files.
    pub extra_files: Vec<(PathBuf, Vec<u8>)>,
    /// What the runs are, in the caller's words (e.g. an experiment config's `description`): the first
    /// line of the report's summary when not empty.
    pub description: String,
}

impl ReportOptions {
    /// Defaults: every format, `± std`, title "decal results", no method order or overlay, no force, no
    /// provenance, no seed results, no notes, no extra files, no description.
    pub fn new(out_dir: impl Into<PathBuf>) -> ReportOptions {
        ReportOptions {
            out_dir: out_dir.into(),
            formats: Formats::ALL,
            spread: Spread::Std,
            title: "decal results".to_string(),
            method_order: Vec::new(),
            overlay: Vec::new(),
            force: false,
            provenance: None,
            seed_results: Vec::new(),
            notes: Vec::new(),
            extra_files: Vec::new(),
            description: String::new(),
        }
    }
}

/// What [`generate_report`] produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOutcome {
    /// The records files read, in order.
    pub inputs: Vec<PathBuf>,
    /// Number of records read.
    pub num_records: usize,
    /// The main table as Markdown, followed by the "Warnings" section when there are notes or
    /// warnings: the text of `tables/main.md` (also printed by `decal report`).
    pub markdown: String,
    /// `index.html`, when html was requested.
    pub index_html: Option<PathBuf>,
    /// Every file written.
    pub files: Vec<PathBuf>,
    /// One-line notices that are not problems, e.g. that a previous report in the output directory
    /// (recognised by its `report.json`, see [`crate::manifest`]) was replaced.
    pub notices: Vec<String>,
    /// Things the user should know: files skipped during discovery, then the report's own warnings
    /// (e.g. reliability data that could not be pooled). The latter, after [`ReportOptions::notes`],
    /// also appear in the reports' "Warnings" sections; skipped files are listed under provenance.
    pub warnings: Vec<String>,
}

/// Records files found by [`find_metrics_files`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Discovery {
    /// Files to read, in order.
    pub files: Vec<PathBuf>,
    /// SHA-256 of each of `files`, in the same order (computed to recognise copies; the report's
    /// manifest lists them).
    pub sha256: Vec<String>,
    /// `metrics.jsonl` files found in directories that hold another kind of JSONL (e.g. a stage-1
    /// training log), with the reason they were skipped.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Finds the records files of `inputs` (see the module docs). A file named explicitly is always read
/// (and must parse); a `metrics.jsonl` found in a directory whose first line is a JSON object with
/// none of the record's field names (e.g. a per-epoch training log) is skipped and listed. Errors when an
/// input does not exist or a directory holds no metric-records file.
pub fn find_metrics_files(
    inputs: &[PathBuf],
    skip: Option<&Path>,
) -> Result<Discovery, ReportError> {
    // A records file byte-identical to one already kept (the same file named twice, or the copy a
    // study's report unit keeps in `units/<id>/`) is skipped with its side files. Its records would be
    // counted once anyway (`aggregate` drops exact duplicates), but its reliability and histogram files
    // would be pooled a second time, doubling every bin count.
    let mut found = Discovery::default();
    for input in inputs {
        let meta = std::fs::metadata(input).map_err(ReportError::io(input))?;
        if meta.is_file() {
            keep_unless_copy(input.clone(), &mut found)?;
            continue;
        }
        let mut walked = Vec::new();
        walk(input, skip, &mut walked)?;
        let mut records_files = 0;
        for path in walked {
            match other_schema(&path)? {
                Some(reason) => found.skipped.push((path, reason)),
                None => {
                    records_files += 1;
                    keep_unless_copy(path, &mut found)?;
                }
            }
        }
        if records_files == 0 {
            let skipped: Vec<String> = found
                .skipped
                .iter()
                .map(|(p, _)| p.display().to_string())
                .collect();
            let also = if skipped.is_empty() {
                String::new()
            } else {
                format!(" (skipped, not metric records: {})", skipped.join(", "))
            };
            return Err(ReportError::Invalid(format!(
                "{}: no metrics.jsonl found in this directory or below{also}",
                input.display()
            )));
        }
    }
    Ok(found)
}

/// Adds `path` to `found.files`, or to `found.skipped` when its bytes equal a file already kept.
fn keep_unless_copy(path: PathBuf, found: &mut Discovery) -> Result<(), ReportError> {
    let hash = decal_core::sha256_file(&path)?;
    if let Some(i) = found.sha256.iter().position(|h| *h == hash) {
        let reason = format!("same content as {}, read once", found.files[i].display());
        found.skipped.push((path, reason));
    } else {
        found.files.push(path);
        found.sha256.push(hash);
    }
    Ok(())
}

/// `Some(reason)` when the file's first non-blank line is a JSON object that is clearly not a
/// [`MetricRecord`] (none of its field names). Anything else is left to the strict reader.
fn other_schema(path: &Path) -> Result<Option<String>, ReportError> {
    let text = std::fs::read_to_string(path).map_err(ReportError::io(path))?;
    let Some(first) = text.lines().find(|l| !l.trim().is_empty()) else {
        return Ok(None);
    };
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(first)
    else {
        return Ok(None);
    };
    if crate::record::CSV_HEADER
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return Ok(None);
    }
    let keys: Vec<&str> = map.keys().map(String::as_str).take(4).collect();
    Ok(Some(format!(
        "first line has keys {} …, not metric records",
        keys.join(", ")
    )))
}

fn walk(dir: &Path, skip: Option<&Path>, out: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    if let Some(skip) = skip {
        if same_path(dir, skip) {
            return Ok(());
        }
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(ReportError::io(dir))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(ReportError::io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name();
        let ty = e.file_type().map_err(ReportError::io(&path))?;
        if ty.is_dir() {
            if !name.to_string_lossy().starts_with('.') {
                walk(&path, skip, out)?;
            }
        } else if name == "metrics.jsonl"
            && std::fs::metadata(&path)
                .map(|m| m.is_file())
                .unwrap_or(false)
        {
            out.push(path);
        }
    }
    Ok(())
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// **The** file-name slug of decal (one owner, issue #11; also `decal_report::slug`): lowercase ASCII
/// letters and digits, every other run of characters becomes one `-`, leading and trailing `-` are
/// dropped, and a name with no letter or digit becomes `x` (never an empty file name).
/// `V-TST m=10` → `v-tst-m-10`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-').to_string();
    if out.is_empty() {
        "x".to_string()
    } else {
        out
    }
}

struct Names(Vec<String>);

impl Names {
    /// A unique slug-based stem (appends `-2`, `-3`, … on collision).
    fn unique(&mut self, text: &str) -> String {
        let base = slug(text);
        let mut name = base.clone();
        let mut k = 2;
        while self.0.contains(&name) {
            name = format!("{base}-{k}");
            k += 1;
        }
        self.0.push(name.clone());
        name
    }
}

/// Removes a failed report's staging folder (and the output folder, when the report created it) on drop.
struct StagingGuard {
    staging: PathBuf,
    created: Option<PathBuf>,
    armed: bool,
}

impl Drop for StagingGuard {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_dir_all(&self.staging);
            if let Some(dir) = &self.created {
                // Only when empty: remove_dir refuses a folder with anything in it.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Reads all inputs, writes every table, figure and (optionally) the HTML report.
pub fn generate_report(
    inputs: &[PathBuf],
    options: &ReportOptions,
) -> Result<ReportOutcome, ReportError> {
    if inputs.is_empty() && options.seed_results.is_empty() {
        return Err(ReportError::Invalid("no runs given".to_string()));
    }
    let discovery = find_metrics_files(inputs, Some(&options.out_dir))?;
    // Skipped files (e.g. training logs also named metrics.jsonl) are expected in run directories:
    // reported to the caller and listed under provenance, but not alarming enough for "Warnings".
    let skipped: Vec<String> = discovery
        .skipped
        .iter()
        .map(|(p, why)| format!("{}: skipped ({why})", p.display()))
        .collect();
    let mut warnings: Vec<String> = Vec::new();
    let mut files = discovery.files.clone();
    let mut records: Vec<MetricRecord> = Vec::new();
    for f in &files {
        records.extend(record::read_any(f)?);
    }
    for (path, method) in &options.seed_results {
        records.extend(crate::seed_results::read_seed_results(path, method)?);
    }
    // Seed files are inputs too (listed with checksums), but have no side files.
    let side_inputs = files.clone();
    files.extend(options.seed_results.iter().map(|(p, _)| p.clone()));
    if records.is_empty() {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        return Err(ReportError::Invalid(format!(
            "no records found in {}",
            names.join(", ")
        )));
    }
    let aggregates = aggregate(&records)?;
    let previous = manifest::check_output_dir(&options.out_dir, options.force)?;
    // Discovered files were hashed by discovery; the seed files are hashed here.
    let input_entries = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let sha256 = match discovery.sha256.get(i) {
                Some(h) => h.clone(),
                None => decal_core::sha256_file(f)?,
            };
            Ok(FileEntry {
                path: f.display().to_string(),
                sha256,
            })
        })
        .collect::<Result<Vec<_>, ReportError>>()?;
    // Everything is written into a hidden staging folder first and moved into place at the end, so
    // a failure leaves the previous report whole (the next call clears the folder).
    let staging = options.out_dir.join(manifest::STAGING);
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(ReportError::io(&staging))?;
    }
    // A failure below removes the staging folder, and the output folder itself when this call created it
    // (nothing of a failed report is left behind).
    let mut guard = StagingGuard {
        staging: staging.clone(),
        created: (!options.out_dir.exists()).then(|| options.out_dir.clone()),
        armed: true,
    };
    std::fs::create_dir_all(&staging).map_err(ReportError::io(&staging))?;
    let out = &staging;
    let mut written: Vec<PathBuf> = Vec::new();

    // Tables.
    let main = match Table::paper(
        &options.title,
        &aggregates,
        options.spread,
        &options.method_order,
    ) {
        Ok(t) => t,
        Err(_) => Table::all_metrics(
            &options.title,
            &aggregates,
            options.spread,
            &options.method_order,
        )?,
    };
    let tables_dir = out.join("tables");
    let mut table_files = Vec::new();
    // main.md ends with the "Warnings" section, known only once the figures are drawn: written below.
    let main_md = tables_dir.join("main.md");
    if options.formats.markdown {
        table_files.push(main_md.clone());
    }
    if options.formats.latex {
        table_files.push(write(
            &tables_dir.join("main.tex"),
            &main.to_latex("tab:decal-main"),
        )?);
    }
    if options.formats.csv {
        table_files.push(write(&tables_dir.join("main.csv"), &main.to_csv())?);
    }
    written.extend(table_files.iter().cloned());
    let aggregates_csv = write(
        &tables_dir.join("aggregates.csv"),
        &aggregates_to_csv(&aggregates),
    )?;
    written.push(aggregates_csv.clone());
    let mut other_files =
        vec![(aggregates_csv, "every (method, split, dataset, corruption, severity, metric) group: n, mean, std (ddof = 1), se, min, max, definition; raw values".to_string())];
    if options.formats.csv {
        let p = write(
            &tables_dir.join("records.csv"),
            &record::to_csv_string(&records),
        )?;
        written.push(p.clone());
        other_files.push((p, "all input records in one tidy CSV".to_string()));
    }

    // Figures.
    let plots = out.join("plots");
    let mut names = Names(Vec::new());
    let mut figures: Vec<ReportFigure> = Vec::new();
    let spread_word = match options.spread {
        Spread::Std => "sample std (ddof = 1)",
        Spread::Se => "standard error (ddof = 1)",
        Spread::SeedSe => "the seed's standard error (ddof = 0)",
    };
    for (metric, label) in [("ece", "ECE"), ("accuracy", "Accuracy")] {
        let mut datasets: Vec<&str> = Vec::new();
        for r in records
            .iter()
            .filter(|r| r.split == "shift" && r.metric == metric && r.severity.is_some())
        {
            if !datasets.contains(&r.dataset.as_str()) {
                datasets.push(&r.dataset);
            }
        }
        for d in datasets {
            let subset: Vec<MetricRecord> =
                records.iter().filter(|r| r.dataset == d).cloned().collect();
            let lines = severity_lines(&subset, "shift", metric, options.spread)?;
            if lines.is_empty() {
                continue;
            }
            let defs: Vec<String> = distinct(
                subset
                    .iter()
                    .filter(|r| r.split == "shift" && r.metric == metric && r.severity.is_some())
                    .map(|r| crate::definitions::shorten(metric, &r.definition)),
            );
            let max_n = lines
                .iter()
                .flat_map(|l| &l.points)
                .map(|p| p.n)
                .max()
                .unwrap_or(1);
            let bars = format!("error bars: {spread_word} over runs (up to n = {max_n})");
            // One definition fits under the figure; several (e.g. one per severity) go to the caption.
            let note = match defs.as_slice() {
                [one] if one.len() <= 90 => format!("{label}: {one}; {bars}"),
                _ => format!("{label} as recorded (definitions in the caption and tables/aggregates.csv); {bars}"),
            };
            let stem = plots.join(names.unique(&format!("shift {metric} vs severity {d}")));
            let title = format!("{label} vs corruption severity ({d})");
            let paths = write_severity_plot(&stem, &lines, metric, label, &title, &note)?;
            figures.push(ReportFigure {
                title,
                caption: format!(
                    "Mean over runs per method and severity; {bars}. Definitions: {}.",
                    defs.join(" | ")
                ),
                png: paths[1].clone(),
                files: vec![paths[0].clone(), paths[2].clone()],
            });
            written.extend(paths);
        }
    }

    let reliability = collect_side_files(&side_inputs, "reliability")?;
    let pooled = pool_reliability(&reliability, &mut warnings)?;
    for (stem_name, series) in &pooled {
        for s in series {
            // `decal run` writes one file per method (`reliability/tst.csv` holding series "TST"):
            // then the file name adds nothing to the figure's name or title.
            let alnum = |t: &str| {
                t.chars()
                    .filter(char::is_ascii_alphanumeric)
                    .collect::<String>()
                    .to_ascii_lowercase()
            };
            let redundant = alnum(stem_name) == alnum(base_label(&s.label));
            let (stem, title) = if redundant {
                (
                    format!("reliability {}", base_label(&s.label)),
                    format!("Reliability: {}", s.label),
                )
            } else {
                (
                    format!("reliability {stem_name} {}", s.label),
                    format!("Reliability: {} ({stem_name})", s.label),
                )
            };
            let stem = plots.join(names.unique(&stem));
            let paths = write_reliability_diagram(&stem, std::slice::from_ref(s), &title)?;
            figures.push(reliability_figure(&title, &paths, s));
            written.extend(paths);
        }
    }
    // Overlays (at most 4 series stay readable): all series in one diagram when there are 2–4 with
    // distinct labels (e.g. one file per method, as `decal run` writes them); with more, the first 4
    // of `overlay` (or, without one, of `method_order`) that have data; otherwise one overlay per file
    // holding 2–4 series.
    let all: Vec<ReliabilitySeries> = pooled.iter().flat_map(|(_, v)| v.iter().cloned()).collect();
    let distinct_labels = distinct(all.iter().map(|s| s.label.clone())).len() == all.len();
    let selection = if options.overlay.is_empty() {
        &options.method_order
    } else {
        &options.overlay
    };
    let ordered: Vec<ReliabilitySeries> = selection
        .iter()
        .filter_map(|m| {
            all.iter()
                .find(|s| base_label(&s.label) == m.as_str())
                .cloned()
        })
        .take(4)
        .collect();
    let overlays: Vec<(String, Vec<ReliabilitySeries>)> =
        if (2..=4).contains(&all.len()) && distinct_labels {
            vec![("all methods".to_string(), all)]
        } else if all.len() > 4 && distinct_labels && ordered.len() >= 2 {
            vec![("selected methods".to_string(), ordered)]
        } else {
            pooled
                .iter()
                .filter(|(_, v)| (2..=4).contains(&v.len()))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect()
        };
    for (name, series) in overlays {
        let stem = plots.join(names.unique(&format!("reliability overlay {name}")));
        let title = format!("Reliability: methods overlaid ({name})");
        let paths = write_reliability_diagram(&stem, &series, &title)?;
        figures.push(ReportFigure {
            title,
            caption: "Methods overlaid: per-bin accuracy (bars), mean confidence per bin (tick), gap to the diagonal shaded; lower panel: fraction of samples per bin with counts.".to_string(),
            png: paths[1].clone(),
            files: vec![paths[0].clone(), paths[2].clone()],
        });
        written.extend(paths);
    }

    let histogram_files = collect_side_files(&side_inputs, "ood_histograms")?;
    for (stem_name, panels) in pool_histograms(&histogram_files, &mut warnings)? {
        let stem = plots.join(names.unique(&format!("ood scores {stem_name}")));
        let title = format!("OOD scores: in-distribution vs OOD ({stem_name})");
        let paths = write_score_histograms(&stem, &panels, &title)?;
        figures.push(ReportFigure {
            title,
            caption: "Fraction of each set's samples per score bin (shared bins), pooled over runs; higher score = more in-distribution.".to_string(),
            png: paths[1].clone(),
            files: vec![paths[0].clone(), paths[2].clone()],
        });
        written.extend(paths);
    }

    let notes: Vec<String> = options.notes.iter().chain(&warnings).cloned().collect();
    let mut markdown = main.to_markdown();
    markdown.push_str(&warnings_markdown(&notes));
    if options.formats.markdown {
        written.push(write(&main_md, &markdown)?);
    }

    // HTML.
    let mut index_html = None;
    if options.formats.html {
        let methods = distinct(records.iter().map(|r| r.method.clone()));
        let runs = distinct(records.iter().map(|r| match r.seed {
            Some(s) => format!("{} (seed {s})", r.run),
            None => r.run.clone(),
        }));
        let description = options.description.trim();
        let summary = (!description.is_empty())
            .then(|| description.to_string())
            .into_iter()
            .chain([
            format!(
                "{} records from {} file(s): {} run(s), {} method(s) ({}).",
                records.len(),
                files.len(),
                runs.len(),
                methods.len(),
                methods.join(", ")
            ),
            "Numbers are read from the runs' metric records and only grouped and formatted here; see each caption for the metric definitions (in short; the full strings are in tables/aggregates.csv) and n.".to_string(),
        ])
        .collect();
        let mut provenance = Vec::new();
        let mut listing = String::new();
        for e in &input_entries {
            listing.push_str(&format!("{}  {}\n", e.sha256, e.path));
        }
        provenance.push(ProvenanceItem {
            label: "input records (sha256)".to_string(),
            text: listing,
        });
        provenance.push(ProvenanceItem {
            label: "runs and seeds".to_string(),
            text: runs.join("\n"),
        });
        if !skipped.is_empty() {
            provenance.push(ProvenanceItem {
                label: "files skipped (not metric records, or a copy of one read)".to_string(),
                text: skipped.join("\n"),
            });
        }
        for f in &side_inputs {
            for item in side_configs(f)? {
                provenance.push(item);
            }
        }
        if let Some(p) = &options.provenance {
            let text = serde_json::to_string_pretty(p).expect("Provenance should always serialise");
            provenance.push(ProvenanceItem {
                label: "report generated by".to_string(),
                text,
            });
        }
        let input = ReportInput {
            title: options.title.clone(),
            summary,
            tables: vec![ReportTable {
                table: main.clone(),
                files: table_files.clone(),
            }],
            figures,
            files: other_files,
            provenance,
        };
        let path = crate::html::write_report_with_warnings(out, &input, &notes)?;
        written.push(path.clone());
        index_html = Some(path);
    }

    for (rel, bytes) in &options.extra_files {
        let name = manifest::relative(Path::new(""), rel);
        let path = out.join(&name);
        if !manifest::is_plain_relative(&name) || rel.is_absolute() || name == manifest::MANIFEST {
            return Err(ReportError::Invalid(format!(
                "{}: an extra file of the report must be a plain relative path inside it",
                rel.display()
            )));
        }
        if path.exists() {
            return Err(ReportError::Invalid(format!(
                "{}: the extra file {name} would replace a file of the report",
                options.out_dir.display()
            )));
        }
        decal_core::write_atomic(&path, bytes)?;
        written.push(path);
    }
    let old = match &previous {
        OutputState::Fresh => None,
        OutputState::Previous(m) => Some(m),
        OutputState::Forced(m) => m.as_ref(),
    };
    let (_, removed) = manifest::commit(
        &staging,
        &options.out_dir,
        &options.title,
        input_entries,
        old,
    )?;
    guard.armed = false;
    let mut notices = Vec::new();
    if let OutputState::Previous(m) = &previous {
        notices.push(format!(
            "{}: replaced the report decal report wrote there before ({} files per its {}{})",
            options.out_dir.display(),
            m.files.len(),
            manifest::MANIFEST,
            if removed > 0 {
                format!("; {removed} no longer produced, removed")
            } else {
                String::new()
            }
        ));
    }
    let moved = |p: PathBuf| manifest::final_path(&staging, &options.out_dir, &p);
    let mut files_written: Vec<PathBuf> = written.into_iter().map(moved).collect();
    files_written.push(options.out_dir.join(manifest::MANIFEST));
    Ok(ReportOutcome {
        inputs: files,
        num_records: records.len(),
        markdown,
        index_html: index_html.map(moved),
        files: files_written,
        warnings: skipped.into_iter().chain(warnings).collect(),
        notices,
    })
}

/// The Markdown "Warnings" section (empty when there is nothing to say): a bold heading and one
/// bullet per item, each on one line.
pub fn warnings_markdown(items: &[String]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n**Warnings**\n\n");
    for item in items {
        let line: Vec<&str> = item.split_whitespace().collect();
        out.push_str(&format!("- {}\n", line.join(" ")));
    }
    out
}

fn write(path: &Path, text: &str) -> Result<PathBuf, ReportError> {
    decal_core::write_atomic(path, text.as_bytes())?;
    Ok(path.to_path_buf())
}

fn distinct(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// A series label without the `[n runs pooled]` suffix added by pooling.
fn base_label(label: &str) -> &str {
    match label.rfind(" [") {
        Some(i) if label.ends_with(" runs pooled]") => &label[..i],
        _ => label,
    }
}

fn reliability_figure(title: &str, paths: &[PathBuf], s: &ReliabilitySeries) -> ReportFigure {
    ReportFigure {
        title: title.to_string(),
        caption: format!(
            "Per-bin accuracy (bars) against confidence, mean confidence per bin (tick), gap to the diagonal shaded; lower panel: fraction of the {} samples per bin with counts. {}",
            s.total(),
            crate::definitions::shorten("ece", &s.definition)
        ),
        png: paths[1].clone(),
        files: vec![paths[0].clone(), paths[2].clone()],
    }
}

/// `<dir of each records file>/<sub>/*.csv`, grouped by file stem, in input order.
fn collect_side_files(
    records_files: &[PathBuf],
    sub: &str,
) -> Result<Vec<(String, PathBuf)>, ReportError> {
    let mut out = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for f in records_files {
        let dir = f.parent().unwrap_or(Path::new(".")).join(sub);
        if !dir.is_dir() {
            continue;
        }
        // Two records files of one directory (its metrics.jsonl and metrics.csv) share one set of side
        // files: read it once.
        let canonical = dir.canonicalize().unwrap_or_else(|_| dir.clone());
        if seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(ReportError::io(&dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "csv") && p.is_file())
            .collect();
        entries.sort();
        for p in entries {
            let stem = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((stem, p));
        }
    }
    Ok(out)
}

/// Pools reliability series across runs: per (file stem, label), bins with identical edges and
/// definition are merged exactly (counts add, accuracy and confidence are count-weighted means); the
/// ECE shown is the mean of the runs' ECEs. Output: per stem, its series in order of appearance.
fn pool_reliability(
    files: &[(String, PathBuf)],
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Vec<ReliabilitySeries>)>, ReportError> {
    // (stem, label) -> (series parts, their files)
    let mut groups: BTreeMap<(String, String), Vec<(ReliabilitySeries, PathBuf)>> = BTreeMap::new();
    let mut order: Vec<(String, String)> = Vec::new();
    for (stem, path) in files {
        for s in read_reliability_csv(path)? {
            let key = (stem.clone(), s.label.clone());
            if !groups.contains_key(&key) {
                order.push(key.clone());
            }
            groups.entry(key).or_default().push((s, path.clone()));
        }
    }
    let mut by_stem: Vec<(String, Vec<ReliabilitySeries>)> = Vec::new();
    for key in order {
        let parts = &groups[&key];
        let (first, first_path) = &parts[0];
        let compatible: Vec<&ReliabilitySeries> = parts
            .iter()
            .filter(|(s, p)| {
                let ok = s.definition == first.definition
                    && pool_bins([s.bins.as_slice(), first.bins.as_slice()]).is_some();
                if !ok {
                    warnings.push(format!(
                        "{}: series {:?} has other bins or definition than in {}; not pooled, left out of the diagram",
                        p.display(),
                        s.label,
                        first_path.display()
                    ));
                }
                ok
            })
            .map(|(s, _)| s)
            .collect();
        let n = compatible.len();
        let bins = pool_bins(compatible.iter().map(|s| s.bins.as_slice()))
            .expect("every compatible series has the first one's edges");
        let eces: Vec<f64> = compatible.iter().filter_map(|s| s.ece).collect();
        let (label, ece, definition) = if n == 1 {
            (first.label.clone(), first.ece, first.definition.clone())
        } else {
            let ece = (eces.len() == n).then(|| eces.iter().sum::<f64>() / n as f64);
            (
                format!("{} [{n} runs pooled]", first.label),
                ece,
                format!(
                    "{}; bins pooled over {n} runs, ECE = mean of the runs' ECEs",
                    first.definition
                ),
            )
        };
        let series = ReliabilitySeries {
            label,
            bins,
            ece,
            definition,
        };
        match by_stem.iter_mut().find(|(s, _)| *s == key.0) {
            Some((_, list)) => list.push(series),
            None => by_stem.push((key.0.clone(), vec![series])),
        }
    }
    Ok(by_stem)
}

/// Pools score histograms across runs: per (file stem, method, score), counts with identical edges and
/// distribution names are summed.
fn pool_histograms(
    files: &[(String, PathBuf)],
    warnings: &mut Vec<String>,
) -> Result<Vec<(String, Vec<ScoreHistogram>)>, ReportError> {
    let mut by_stem: Vec<(String, Vec<(ScoreHistogram, PathBuf)>)> = Vec::new();
    for (stem, path) in files {
        for h in read_histogram_csv(path)? {
            let slot = match by_stem.iter_mut().position(|(s, _)| s == stem) {
                Some(i) => &mut by_stem[i].1,
                None => {
                    by_stem.push((stem.clone(), Vec::new()));
                    &mut by_stem.last_mut().expect("pushed above").1
                }
            };
            match slot
                .iter_mut()
                .find(|(p, _)| p.method == h.method && p.score == h.score)
            {
                None => slot.push((h, path.clone())),
                Some((p, first_path)) => {
                    let same_layout = p
                        .edges
                        .iter()
                        .map(|e| e.to_bits())
                        .eq(h.edges.iter().map(|e| e.to_bits()))
                        && p.id.name == h.id.name
                        && p.ood.len() == h.ood.len()
                        && p.ood.iter().zip(&h.ood).all(|(a, b)| a.name == b.name);
                    if !same_layout {
                        warnings.push(format!(
                            "{}: histogram {:?}/{:?} has other bins or sets than in {}; not pooled, left out",
                            path.display(),
                            h.method,
                            h.score,
                            first_path.display()
                        ));
                        continue;
                    }
                    for (a, b) in p.id.counts.iter_mut().zip(&h.id.counts) {
                        *a += b;
                    }
                    for (pa, pb) in p.ood.iter_mut().zip(&h.ood) {
                        for (a, b) in pa.counts.iter_mut().zip(&pb.counts) {
                            *a += b;
                        }
                    }
                }
            }
        }
    }
    Ok(by_stem
        .into_iter()
        .map(|(s, v)| (s, v.into_iter().map(|(h, _)| h).collect()))
        .collect())
}

/// `*.json` / `*.toml` files next to a records file, as provenance items (at most 64 KiB shown each).
fn side_configs(records_file: &Path) -> Result<Vec<ProvenanceItem>, ReportError> {
    const LIMIT: usize = 64 * 1024;
    let dir = records_file.parent().unwrap_or(Path::new("."));
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(ReportError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "json" || e == "toml"))
        .collect();
    paths.sort();
    let mut items = Vec::new();
    for p in paths {
        let bytes = std::fs::read(&p).map_err(ReportError::io(&p))?;
        let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(LIMIT)]).into_owned();
        if bytes.len() > LIMIT {
            text.push_str(&format!("\n… ({} bytes in total; truncated)", bytes.len()));
        }
        items.push(ProvenanceItem {
            label: p.display().to_string(),
            text,
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_report_leaves_no_staging_and_no_folder_it_created() {
        let root = tempfile::tempdir().unwrap();
        // The output folder did not exist: staging and folder go.
        let out = root.path().join("new");
        let staging = out.join(manifest::STAGING);
        std::fs::create_dir_all(staging.join("tables")).unwrap();
        std::fs::write(staging.join("tables/main.csv"), "x").unwrap();
        drop(StagingGuard {
            staging: staging.clone(),
            created: Some(out.clone()),
            armed: true,
        });
        assert!(!out.exists());
        // An existing folder keeps what it held; only the staging folder goes.
        let out = root.path().join("old");
        let staging = out.join(manifest::STAGING);
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(out.join("keep.txt"), "x").unwrap();
        drop(StagingGuard {
            staging: staging.clone(),
            created: None,
            armed: true,
        });
        assert!(!staging.exists() && out.join("keep.txt").exists());
        // Disarmed (the report was committed): nothing is removed.
        std::fs::create_dir_all(&staging).unwrap();
        drop(StagingGuard {
            staging: staging.clone(),
            created: Some(out.clone()),
            armed: false,
        });
        assert!(staging.exists());
    }

    #[test]
    fn slugs_and_unique_names() {
        assert_eq!(slug("V-TST m=10"), "v-tst-m-10");
        assert_eq!(slug("  ±  "), "x");
        let mut n = Names(Vec::new());
        assert_eq!(n.unique("TST"), "tst");
        assert_eq!(n.unique("tst"), "tst-2");
    }

    #[test]
    fn formats_parse() {
        assert_eq!(
            Formats::parse("md,html").unwrap(),
            Formats {
                markdown: true,
                latex: false,
                csv: false,
                html: true
            }
        );
        assert!(Formats::parse("pdf")
            .unwrap_err()
            .to_string()
            .contains("\"pdf\""));
        assert!(Formats::parse("").is_err());
    }
}
