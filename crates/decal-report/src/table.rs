//! Tables: group metric records over seeds and render them (STYLE.md R11, R12).
//!
//! 1. [`aggregate`] groups records by (method, split, dataset, corruption, severity, metric) and computes,
//!    over the runs in each group, the mean, the **sample** standard deviation (ddof = 1; absent for
//!    n = 1), the standard error `std / √n` with the true n, and n itself. Records of one group must share
//!    one `definition` (mixing, say, 10-bin and 15-bin ECE in one mean is refused).
//! 2. [`Table::paper`] lays aggregates out like the seed's results tables (seed-system.md §12.1): one
//!    row per method, columns Acc, ECE, MCE, NLL, Brier, Train NLL, Shift Acc, Shift ECE, Shift MCE,
//!    OOD AUROC, FPR95 (those present). A column whose (split, metric) was measured on several datasets is split into one
//!    column per dataset.
//! 3. [`Table::to_markdown`], [`Table::to_latex`] (booktabs), [`Table::to_csv`] and [`Table::to_html`]
//!    render it; every number goes through [`crate::format`]. The caption states the spread (std or SE),
//!    the ddof, n, the units and each column's metric definition (concise, see [`crate::definitions`]).
//!    When cells differ in n, an `n` column gives each method's n (a range, and n in each cell, where a
//!    method's own cells differ). The HTML splits the columns into in-distribution, shift and OOD
//!    tables ([`Table::column_groups`]) so that a typical table needs no horizontal scrolling.
//!
//! Note on the seed: its summary files report SE = population std (ddof = 0) / √n, with n taken from the
//! current run rather than the file (seed-system.md §10.6, BUG-20). Here n is always the number of
//! values aggregated and the std is the sample std, so `± SE` here is √(n/(n−1)) times the seed's.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::csv;
use crate::format::{self, Markup, NumberFormat};
use crate::record::{format_value, MetricRecord};
use crate::ReportError;

/// What follows the `±` in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Spread {
    /// Sample standard deviation over seeds (ddof = 1).
    Std,
    /// Standard error of the mean: sample std / √n.
    Se,
    /// The seed's "SE" (BUG-20): population standard deviation (ddof = 0) / √n.
    #[serde(rename = "seed-se")]
    SeedSe,
}

impl Spread {
    /// Parses `std`, `se` or `seed-se`.
    pub fn parse(text: &str) -> Option<Spread> {
        match text.to_ascii_lowercase().as_str() {
            "std" | "sd" => Some(Spread::Std),
            "se" | "sem" => Some(Spread::Se),
            "seed-se" => Some(Spread::SeedSe),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Spread::Std => "sample standard deviation (ddof = 1)",
            Spread::Se => "standard error of the mean (sample std with ddof = 1 divided by the square root of n)",
            Spread::SeedSe => "the seed's standard error (population std with ddof = 0 divided by the square root of n; seed BUG-20)",
        }
    }
}

/// Summary of one group of records (one value per run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    /// Method (table row).
    pub method: String,
    /// Split.
    pub split: String,
    /// Dataset.
    pub dataset: String,
    /// Corruption, if the group is one corruption cell.
    pub corruption: Option<String>,
    /// Severity, if the group is one severity.
    pub severity: Option<u8>,
    /// Metric key.
    pub metric: String,
    /// Number of values (runs) aggregated.
    pub n: usize,
    /// Mean of the values.
    pub mean: f64,
    /// Sample standard deviation (ddof = 1); `None` when n = 1.
    pub std: Option<f64>,
    /// Standard error `std / √n`; `None` when n = 1.
    pub se: Option<f64>,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// The shared definition of the group's records.
    pub definition: String,
    /// The runs aggregated (with their seeds), in input order.
    pub runs: Vec<String>,
}

impl Aggregate {
    /// The spread of the requested kind.
    pub fn spread(&self, spread: Spread) -> Option<f64> {
        match spread {
            Spread::Std => self.std,
            Spread::Se => self.se,
            Spread::SeedSe => self.std.map(|s| {
                let n = self.n as f64;
                s * ((n - 1.0) / n).sqrt() / n.sqrt()
            }),
        }
    }
}

/// Mean, sample std (ddof = 1) and SE of `values` (two-pass, so large offsets do not cancel).
pub fn mean_std_se(values: &[f64]) -> (f64, Option<f64>, Option<f64>) {
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, None, None);
    }
    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    let std = (ss / (n as f64 - 1.0)).sqrt();
    (mean, Some(std), Some(std / (n as f64).sqrt()))
}

type GroupKey = (String, String, String, Option<String>, Option<u8>, String);

fn group_key(r: &MetricRecord) -> GroupKey {
    (
        r.method.clone(),
        r.split.clone(),
        r.dataset.clone(),
        r.corruption.clone(),
        r.severity,
        r.metric.clone(),
    )
}

fn describe_key(k: &GroupKey) -> String {
    let mut s = format!("method {:?}, split {:?}, dataset {:?}", k.0, k.1, k.2);
    if let Some(c) = &k.3 {
        s.push_str(&format!(", corruption {c:?}"));
    }
    if let Some(v) = k.4 {
        s.push_str(&format!(", severity {v}"));
    }
    s.push_str(&format!(", metric {:?}", k.5));
    s
}

fn run_label(r: &MetricRecord) -> String {
    match r.seed {
        Some(seed) => format!("{} (seed {seed})", r.run),
        None => r.run.clone(),
    }
}

/// Groups records by (method, split, dataset, corruption, severity, metric) and summarises each group
/// over its runs. Groups come out in order of first appearance. A run (run, seed) may contribute one
/// value per group: an exact duplicate record (e.g. the same file passed twice) is counted once, two
/// different values for the same run and group are an error, and so are different definitions within
/// a group.
pub fn aggregate(records: &[MetricRecord]) -> Result<Vec<Aggregate>, ReportError> {
    let mut order: Vec<GroupKey> = Vec::new();
    let mut groups: HashMap<GroupKey, Vec<&MetricRecord>> = HashMap::new();
    for r in records {
        let key = group_key(r);
        let members = groups.entry(key.clone()).or_insert_with(|| {
            order.push(key.clone());
            Vec::new()
        });
        if let Some(prev) = members.iter().find(|m| m.run == r.run && m.seed == r.seed) {
            if prev.value.to_bits() == r.value.to_bits() && prev.definition == r.definition {
                continue;
            }
            return Err(ReportError::Invalid(format!(
                "run {} has two different values ({} and {}) for {}",
                run_label(r),
                format_value(prev.value),
                format_value(r.value),
                describe_key(&key)
            )));
        }
        if let Some(first) = members.first() {
            if first.definition != r.definition {
                return Err(ReportError::Invalid(format!(
                    "records for {} disagree on the definition: {:?} (run {}) vs {:?} (run {}); refusing to average different quantities",
                    describe_key(&key),
                    first.definition,
                    run_label(first),
                    r.definition,
                    run_label(r)
                )));
            }
        }
        members.push(r);
    }
    Ok(order
        .into_iter()
        .map(|key| {
            let members = &groups[&key];
            let values: Vec<f64> = members.iter().map(|m| m.value).collect();
            let (mean, std, se) = mean_std_se(&values);
            Aggregate {
                method: key.0.clone(),
                split: key.1.clone(),
                dataset: key.2.clone(),
                corruption: key.3.clone(),
                severity: key.4,
                metric: key.5.clone(),
                n: values.len(),
                mean,
                std,
                se,
                min: values.iter().copied().fold(f64::INFINITY, f64::min),
                max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                definition: members[0].definition.clone(),
                runs: members.iter().map(|m| run_label(m)).collect(),
            }
        })
        .collect())
}

/// Long-format CSV of aggregates (one row per group; raw values, lossless, fractions not percent):
/// `method,split,dataset,corruption,severity,metric,n,mean,std,se,min,max,definition`.
pub fn aggregates_to_csv(aggregates: &[Aggregate]) -> String {
    let mut out = String::new();
    csv::write_row(
        &mut out,
        &[
            "method",
            "split",
            "dataset",
            "corruption",
            "severity",
            "metric",
            "n",
            "mean",
            "std",
            "se",
            "min",
            "max",
            "definition",
        ],
    );
    for a in aggregates {
        csv::write_row(
            &mut out,
            &[
                a.method.clone(),
                a.split.clone(),
                a.dataset.clone(),
                a.corruption.clone().unwrap_or_default(),
                a.severity.map(|s| s.to_string()).unwrap_or_default(),
                a.metric.clone(),
                a.n.to_string(),
                format_value(a.mean),
                a.std.map(format_value).unwrap_or_default(),
                a.se.map(format_value).unwrap_or_default(),
                format_value(a.min),
                format_value(a.max),
                a.definition.clone(),
            ],
        );
    }
    out
}

/// One column of a results table: which aggregates fill it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// Header text without unit, e.g. `Shift ECE` or `OOD AUROC (svhn)`.
    pub header: String,
    /// Split to match.
    pub split: String,
    /// Metric key to match.
    pub metric: String,
    /// Dataset to match; `None` matches any (there must then be at most one per method).
    pub dataset: Option<String>,
}

impl Column {
    fn unit_suffix(&self) -> &'static str {
        if format::is_percent(&self.metric) {
            " (%)"
        } else {
            ""
        }
    }

    fn matches(&self, a: &Aggregate) -> bool {
        a.split == self.split
            && a.metric == self.metric
            && a.corruption.is_none()
            && a.severity.is_none()
            && self.dataset.as_ref().is_none_or(|d| *d == a.dataset)
    }
}

/// The seed's column layout (seed-system.md §12.1): header, split, metric. Columns without records are
/// left out.
pub const PAPER_COLUMNS: [(&str, &str, &str); 11] = [
    ("Acc", "test", "accuracy"),
    ("ECE", "test", "ece"),
    ("MCE", "test", "mce"),
    ("NLL", "test", "nll"),
    ("Brier", "test", "brier"),
    ("Train NLL", "train", "nll"),
    ("Shift Acc", "shift", "accuracy"),
    ("Shift ECE", "shift", "ece"),
    ("Shift MCE", "shift", "mce"),
    ("OOD AUROC", "ood", "auroc"),
    ("FPR95 (exact)", "ood", "fpr95"),
];

/// A results table: rows = methods, columns = metrics, cells = aggregates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    /// Title (Markdown heading / LaTeX caption start).
    pub title: String,
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Row labels (methods) in order.
    pub methods: Vec<String>,
    /// `cells[row][col]`.
    pub cells: Vec<Vec<Option<Aggregate>>>,
    /// What the `±` shows.
    pub spread: Spread,
}

impl Table {
    /// Lays out aggregates in the seed's column layout ([`PAPER_COLUMNS`], those present), one row per
    /// method in order of first appearance (or `method_order` first, then the rest). Only pooled
    /// aggregates (no corruption, no severity) are used.
    pub fn paper(
        title: &str,
        aggregates: &[Aggregate],
        spread: Spread,
        method_order: &[String],
    ) -> Result<Table, ReportError> {
        let mut columns = Vec::new();
        for (header, split, metric) in PAPER_COLUMNS {
            let mut datasets: Vec<&str> = Vec::new();
            for a in aggregates {
                let probe = Column {
                    header: String::new(),
                    split: split.into(),
                    metric: metric.into(),
                    dataset: None,
                };
                if probe.matches(a) && !datasets.contains(&a.dataset.as_str()) {
                    datasets.push(&a.dataset);
                }
            }
            for d in &datasets {
                let header = if datasets.len() > 1 {
                    format!("{header} ({d})")
                } else {
                    header.to_string()
                };
                columns.push(Column {
                    header,
                    split: split.into(),
                    metric: metric.into(),
                    dataset: Some(d.to_string()),
                });
            }
        }
        if columns.is_empty() {
            return Err(ReportError::Invalid(
                "no records for the results table: it needs pooled (no corruption/severity) records with split test, shift or ood and metric accuracy, ece, mce, nll, brier, auroc or fpr95".to_string(),
            ));
        }
        Table::build(title, aggregates, columns, spread, method_order)
    }

    /// One column per pooled (split, metric, dataset) in order of first appearance, headed
    /// `<split> <metric> (<dataset>)`: the fallback when no paper column is present, and a complete view.
    pub fn all_metrics(
        title: &str,
        aggregates: &[Aggregate],
        spread: Spread,
        method_order: &[String],
    ) -> Result<Table, ReportError> {
        let mut columns: Vec<Column> = Vec::new();
        for a in aggregates
            .iter()
            .filter(|a| a.corruption.is_none() && a.severity.is_none())
        {
            let exists = columns.iter().any(|c| {
                c.split == a.split
                    && c.metric == a.metric
                    && c.dataset.as_deref() == Some(&a.dataset)
            });
            if !exists {
                columns.push(Column {
                    header: format!("{} {} ({})", a.split, a.metric, a.dataset),
                    split: a.split.clone(),
                    metric: a.metric.clone(),
                    dataset: Some(a.dataset.clone()),
                });
            }
        }
        if columns.is_empty() {
            return Err(ReportError::Invalid(
                "no pooled records (without corruption/severity) to tabulate".to_string(),
            ));
        }
        Table::build(title, aggregates, columns, spread, method_order)
    }

    /// Lays out aggregates in the given columns, one row per method that has at least one cell.
    pub fn build(
        title: &str,
        aggregates: &[Aggregate],
        columns: Vec<Column>,
        spread: Spread,
        method_order: &[String],
    ) -> Result<Table, ReportError> {
        let mut methods: Vec<String> = method_order.to_vec();
        for a in aggregates {
            if columns.iter().any(|c| c.matches(a)) && !methods.contains(&a.method) {
                methods.push(a.method.clone());
            }
        }
        let mut cells = Vec::new();
        let mut kept = Vec::new();
        for m in &methods {
            let mut row = Vec::new();
            for c in &columns {
                let found: Vec<&Aggregate> = aggregates
                    .iter()
                    .filter(|a| a.method == *m && c.matches(a))
                    .collect();
                if found.len() > 1 {
                    let sets: Vec<&str> = found.iter().map(|a| a.dataset.as_str()).collect();
                    return Err(ReportError::Invalid(format!(
                        "column {:?} of method {m:?} matches several datasets ({}); give the column a dataset",
                        c.header,
                        sets.join(", ")
                    )));
                }
                row.push(found.first().map(|a| (*a).clone()));
            }
            if row.iter().any(Option::is_some) {
                kept.push(m.clone());
                cells.push(row);
            }
        }
        Ok(Table {
            title: title.to_string(),
            columns,
            methods: kept,
            cells,
            spread,
        })
    }

    fn filled(&self) -> impl Iterator<Item = &Aggregate> {
        self.cells.iter().flatten().flatten()
    }

    /// The single n of every cell, when all cells share one.
    pub fn common_n(&self) -> Option<usize> {
        let mut ns = self.filled().map(|a| a.n);
        let first = ns.next()?;
        ns.all(|n| n == first).then_some(first)
    }

    /// Whether the table has an `n` column: when its cells do not all share one n (otherwise the
    /// caption states n once).
    pub fn has_n_column(&self) -> bool {
        self.common_n().is_none()
    }

    /// The n of row `row` over the columns `cols`: `Some((min, max))` of its cells there (equal when
    /// the row is uniform), `None` when the row has no cell there.
    fn row_n(&self, row: usize, cols: &[usize]) -> Option<(usize, usize)> {
        let ns: Vec<usize> = cols
            .iter()
            .filter_map(|&j| self.cells[row][j].as_ref().map(|a| a.n))
            .collect();
        Some((*ns.iter().min()?, *ns.iter().max()?))
    }

    /// The `n` column's text for a row: its n, or `min-max` when its cells differ (then each cell
    /// carries its own n).
    fn row_n_text(n: (usize, usize)) -> String {
        if n.0 == n.1 {
            n.0.to_string()
        } else {
            format!("{}-{}", n.0, n.1)
        }
    }

    /// A cell: mean ± spread, plus ` (n=k)` where the row's cells (over `row_n`) differ in n.
    fn cell_text(&self, a: &Aggregate, markup: Markup, row_n: Option<(usize, usize)>) -> String {
        let fmt = format::metric_format(&a.metric);
        let mut text = format::mean_spread(a.mean, a.spread(self.spread), fmt, markup);
        if self.has_n_column() && row_n.is_some_and(|(lo, hi)| lo != hi) {
            text.push_str(&format!(" (n={})", a.n));
        }
        text
    }

    fn all_columns(&self) -> Vec<usize> {
        (0..self.columns.len()).collect()
    }

    fn header_text(&self, c: &Column) -> String {
        format!("{}{}", c.header, c.unit_suffix())
    }

    /// The caption: spread, n, units, and the columns' definitions in concise form
    /// ([`Table::caption_definitions`]), one sentence each (plain text).
    pub fn caption(&self) -> String {
        let mut parts = vec![self.caption_head()];
        let defs: Vec<String> = self
            .caption_definitions()
            .iter()
            .map(|(h, d)| format!("{h}: {d}."))
            .collect();
        if !defs.is_empty() {
            parts.push(format!("Definitions. {}", defs.join(" ")));
        }
        parts.join(" ")
    }

    /// The columns' definitions as captions show them: shortened but exact, shared parts stated once
    /// (see [`crate::definitions`]); `(label, text)` per entry.
    pub fn caption_definitions(&self) -> Vec<(String, String)> {
        let full = self.column_definitions();
        let columns: Vec<(String, String, String)> = full
            .into_iter()
            .map(|(h, d)| {
                let metric = self
                    .columns
                    .iter()
                    .find(|c| c.header == h)
                    .map(|c| c.metric.clone())
                    .unwrap_or_default();
                (h, metric, d)
            })
            .collect();
        crate::definitions::caption_entries(&columns)
    }

    /// The first part of the caption: spread, n and units.
    pub fn caption_head(&self) -> String {
        let mut parts = Vec::new();
        let spread = self.spread.describe();
        match self.common_n() {
            Some(1) => parts.push("Single run per cell (n = 1): no spread.".to_string()),
            Some(n) => parts.push(format!("Mean ± {spread} over n = {n} runs per cell.")),
            None => parts.push(format!("Mean ± {spread}; n (runs per cell) differs between methods and is given in the n column (where a method's cells differ, as a range there and in each cell); cells with n = 1 show no spread.")),
        }
        let pct: Vec<&str> = self
            .columns
            .iter()
            .filter(|c| format::is_percent(&c.metric))
            .map(|c| c.header.as_str())
            .collect();
        if !pct.is_empty() {
            parts.push(format!("{} in percent.", pct.join(", ")));
        }
        parts.join(" ")
    }

    /// Per column (header, its distinct definitions joined by ` / `), for columns with a definition.
    pub fn column_definitions(&self) -> Vec<(String, String)> {
        let mut defs = Vec::new();
        for (j, c) in self.columns.iter().enumerate() {
            let mut col_defs: Vec<&str> = Vec::new();
            for row in &self.cells {
                if let Some(a) = &row[j] {
                    if !a.definition.is_empty() && !col_defs.contains(&a.definition.as_str()) {
                        col_defs.push(&a.definition);
                    }
                }
            }
            if !col_defs.is_empty() {
                defs.push((c.header.clone(), col_defs.join(" / ")));
            }
        }
        defs
    }

    /// GitHub-flavoured Markdown: bold title, the table, the caption.
    pub fn to_markdown(&self) -> String {
        let mut out = format!("**{}**\n\n", self.title);
        let with_n = self.has_n_column();
        let all = self.all_columns();
        out.push_str(if with_n {
            "| Method | n |"
        } else {
            "| Method |"
        });
        for c in &self.columns {
            out.push_str(&format!(" {} |", md_escape(&self.header_text(c))));
        }
        out.push_str(if with_n { "\n|:---|---:|" } else { "\n|:---|" });
        for _ in &self.columns {
            out.push_str("---:|");
        }
        out.push('\n');
        for (i, (m, row)) in self.methods.iter().zip(&self.cells).enumerate() {
            let n = self.row_n(i, &all);
            out.push_str(&format!("| {} |", md_escape(m)));
            if with_n {
                out.push_str(&format!(
                    " {} |",
                    n.map(Self::row_n_text).unwrap_or_default()
                ));
            }
            for cell in row {
                let text = cell
                    .as_ref()
                    .map(|a| self.cell_text(a, Markup::Text, n))
                    .unwrap_or_else(|| "—".into());
                out.push_str(&format!(" {text} |"));
            }
            out.push('\n');
        }
        out.push_str(&format!("\n{}\n", self.caption()));
        out
    }

    /// A LaTeX `table` with a booktabs `tabular` (needs `\usepackage{booktabs}`), caption above.
    pub fn to_latex(&self, label: &str) -> String {
        let mut out = String::from("\\begin{table}[t]\n\\centering\n");
        out.push_str(&format!(
            "\\caption{{{}. {}}}\n\\label{{{}}}\n",
            latex_escape(&self.title),
            latex_escape(&self.caption()),
            label
        ));
        let with_n = self.has_n_column();
        let all = self.all_columns();
        out.push_str(&format!(
            "\\begin{{tabular}}{{l{}{}}}\n\\toprule\n",
            if with_n { "r" } else { "" },
            "r".repeat(self.columns.len())
        ));
        out.push_str(if with_n { "Method & $n$" } else { "Method" });
        for c in &self.columns {
            out.push_str(&format!(" & {}", latex_escape(&self.header_text(c))));
        }
        out.push_str(" \\\\\n\\midrule\n");
        for (i, (m, row)) in self.methods.iter().zip(&self.cells).enumerate() {
            let n = self.row_n(i, &all);
            out.push_str(&latex_escape(m));
            if with_n {
                out.push_str(&format!(
                    " & {}",
                    n.map(Self::row_n_text).unwrap_or_default()
                ));
            }
            for cell in row {
                let text = cell
                    .as_ref()
                    .map(|a| self.cell_text(a, Markup::Latex, n))
                    .unwrap_or_else(|| "--".into());
                out.push_str(&format!(" & {text}"));
            }
            out.push_str(" \\\\\n");
        }
        out.push_str("\\bottomrule\n\\end{tabular}\n\\end{table}\n");
        out
    }

    /// Machine-readable CSV of the table in display units, rounded as displayed: `method`, then per
    /// column `<header> mean`, `<header> <std|se|seed-se>`, `<header> n`.
    pub fn to_csv(&self) -> String {
        let spread_name = match self.spread {
            Spread::Std => "std",
            Spread::Se => "se",
            Spread::SeedSe => "seed-se",
        };
        let mut header = vec!["method".to_string()];
        for c in &self.columns {
            let h = self.header_text(c);
            header.push(format!("{h} mean"));
            header.push(format!("{h} {spread_name}"));
            header.push(format!("{h} n"));
        }
        let mut out = String::new();
        csv::write_row(&mut out, &header);
        for (m, row) in self.methods.iter().zip(&self.cells) {
            let mut fields = vec![m.clone()];
            for cell in row {
                match cell {
                    Some(a) => {
                        let fmt: NumberFormat = format::metric_format(&a.metric);
                        fields.push(format::fixed(fmt.scaled(a.mean), fmt.decimals));
                        fields.push(
                            a.spread(self.spread)
                                .map(|s| format::fixed(fmt.scaled(s), fmt.decimals))
                                .unwrap_or_default(),
                        );
                        fields.push(a.n.to_string());
                    }
                    None => fields.extend([String::new(), String::new(), String::new()]),
                }
            }
            csv::write_row(&mut out, &fields);
        }
        out
    }

    /// The column blocks of the HTML rendering, each shown as a table of its own so that the page
    /// needs no horizontal scrolling: in-distribution (test and train splits), distribution shift,
    /// OOD detection, then any other split, each in order of first appearance; a block of more than
    /// [`HTML_MAX_COLUMNS`] columns is cut into near-equal parts ("(1 of 2)", ...). Every column is in
    /// exactly one block.
    pub fn column_groups(&self) -> Vec<ColumnGroup> {
        let mut blocks: Vec<(String, Vec<usize>)> = Vec::new();
        for (j, c) in self.columns.iter().enumerate() {
            let label = match c.split.as_str() {
                "test" | "train" => "In-distribution".to_string(),
                "shift" => "Distribution shift".to_string(),
                "ood" => "OOD detection".to_string(),
                other => format!("Split {other}"),
            };
            match blocks.iter_mut().find(|(l, _)| *l == label) {
                Some((_, cols)) => cols.push(j),
                None => blocks.push((label, vec![j])),
            }
        }
        let mut groups = Vec::new();
        for (label, cols) in blocks {
            let parts = cols.len().div_ceil(HTML_MAX_COLUMNS);
            let base = cols.len() / parts;
            let extra = cols.len() % parts;
            let mut start = 0;
            for p in 0..parts {
                let len = base + usize::from(p < extra);
                groups.push(ColumnGroup {
                    label: if parts == 1 {
                        label.clone()
                    } else {
                        format!("{label} ({} of {parts})", p + 1)
                    },
                    columns: cols[start..start + len].to_vec(),
                });
                start += len;
            }
        }
        groups
    }

    /// HTML for the report (text escaped): one `<table>` per [`Table::column_groups`] block, each
    /// with the method column (and the n column when n differs) and only the methods that have a cell
    /// in it; then the caption (title, spread, n, units) and a `<dl>` of the column definitions.
    pub fn to_html(&self) -> String {
        let with_n = self.has_n_column();
        let mut out = String::from("<div class=\"results\">\n");
        for g in self.column_groups() {
            out.push_str(&format!(
                "<table class=\"results\">\n<caption>{}</caption>\n<thead><tr><th>Method</th>",
                html_escape(&g.label)
            ));
            if with_n {
                out.push_str("<th>n</th>");
            }
            for &j in &g.columns {
                out.push_str(&format!(
                    "<th>{}</th>",
                    html_escape(&self.header_text(&self.columns[j]))
                ));
            }
            out.push_str("</tr></thead>\n<tbody>\n");
            for (i, m) in self.methods.iter().enumerate() {
                // A method without a number in this block has no row here (nothing is lost).
                let Some(n) = self.row_n(i, &g.columns) else {
                    continue;
                };
                out.push_str(&format!("<tr><th>{}</th>", html_escape(m)));
                if with_n {
                    out.push_str(&format!("<td>{}</td>", Self::row_n_text(n)));
                }
                for &j in &g.columns {
                    let text = self.cells[i][j]
                        .as_ref()
                        .map(|a| self.cell_text(a, Markup::Html, Some(n)))
                        .unwrap_or_else(|| "—".into());
                    out.push_str(&format!("<td>{text}</td>"));
                }
                out.push_str("</tr>\n");
            }
            out.push_str("</tbody>\n</table>\n");
        }
        out.push_str(&format!(
            "<p class=\"caption\"><strong>{}</strong>. {}</p>\n",
            html_escape(&self.title),
            html_escape(&self.caption_head())
        ));
        let defs = self.caption_definitions();
        if !defs.is_empty() {
            out.push_str("<dl class=\"definitions\">\n");
            for (h, d) in defs {
                out.push_str(&format!(
                    "<dt>{}</dt><dd>{}</dd>\n",
                    html_escape(&h),
                    html_escape(&d)
                ));
            }
            out.push_str("</dl>\n");
        }
        out.push_str("</div>\n");
        out
    }
}

/// Most metric columns in one HTML table (with the method and n columns, six columns of
/// `0.4326 ± 0.0059` fit a 1280 px window at the report's font size).
pub const HTML_MAX_COLUMNS: usize = 6;

/// A block of columns rendered as one HTML table ([`Table::column_groups`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnGroup {
    /// Shown above the table, e.g. "OOD detection".
    pub label: String,
    /// Indices into [`Table::columns`].
    pub columns: Vec<usize>,
}

/// Escapes Markdown table metacharacters.
fn md_escape(text: &str) -> String {
    text.replace('|', "\\|")
}

/// Escapes LaTeX special characters in plain text.
pub fn latex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            // In LaTeX's default OT1 font encoding these print as other glyphs ("->" as "-¿").
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '|' => out.push_str("\\textbar{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            '—' => out.push_str("---"),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes HTML text.
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
