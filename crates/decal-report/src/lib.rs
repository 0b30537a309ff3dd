//! Tables, reliability diagrams, plots and HTML reports from metric records (no tensors).
//!
//! decal-report never computes a metric: it reads tidy [`record::MetricRecord`]s (and pre-binned
//! reliability / score-histogram data), groups them over seeds and formats them. Every file it writes
//! goes through `decal_core::write_atomic`, and every output is deterministic: the same input gives
//! byte-identical tables, CSV and SVG.
//!
//! - [`record`]: the tidy record type and its JSONL / CSV readers and writers.
//! - [`reliability`]: reliability diagrams (SVG + PNG + CSV) and their CSV format.
//! - [`table`]: group-by over seeds (mean, sample std, SE, n) rendered as Markdown, LaTeX and CSV.
//! - [`definitions`]: concise, exact renderings of metric definitions for captions.
//! - [`format`](mod@format): the single place that decides how numbers are printed.
//! - [`plot`]: ECE-vs-severity and OOD score-histogram figures.
//! - [`html`]: the self-contained `index.html` report.
//! - [`seed_results`]: the seed repository's result files as records (to tabulate its numbers alongside).
//! - [`manifest`]: `report.json`, how a report directory is recognised and safely regenerated.
//! - [`generate`]: `decal report` as a library call (find records, write tables, figures, HTML).
#![warn(missing_docs)]

pub mod csv;
pub mod definitions;
mod error;
pub mod format;
pub mod generate;
pub mod html;
pub mod manifest;
pub mod plot;
pub mod record;
pub mod reliability;
pub mod seed_results;
pub mod table;

pub use error::ReportError;
pub use generate::slug;
pub use record::MetricRecord;
pub use reliability::{
    bins_ece, pool_bins, write_reliability_diagram, ReliabilityBin, ReliabilitySeries,
};
