//! The results table of `index.html` fits a 1280 px window: columns are split into in-distribution,
//! shift and OOD tables (at most `HTML_MAX_COLUMNS` metric columns each), a per-method n column replaces
//! per-cell "(n=…)", and no number of the Markdown table is lost on the way.

use decal_report::record::MetricRecord;
use decal_report::table::{aggregate, Spread, Table, HTML_MAX_COLUMNS};

fn rec(
    method: &str,
    seed: u64,
    split: &str,
    dataset: &str,
    metric: &str,
    value: f64,
) -> MetricRecord {
    MetricRecord {
        run: format!("q/{method}"),
        seed: Some(seed),
        method: method.into(),
        split: split.into(),
        dataset: dataset.into(),
        corruption: None,
        severity: None,
        metric: metric.into(),
        value,
        definition: format!("{metric} definition"),
    }
}

/// The quickstart's layout plus shift columns and a second OOD set: six methods, post-hoc ones with
/// one run, heads with three seeds.
fn typical_run() -> Vec<MetricRecord> {
    let cols: [(&str, &str, &str); 13] = [
        ("test", "fashion-mnist", "accuracy"),
        ("test", "fashion-mnist", "ece"),
        ("test", "fashion-mnist", "mce"),
        ("test", "fashion-mnist", "nll"),
        ("test", "fashion-mnist", "brier"),
        ("train", "fashion-mnist", "nll"),
        ("shift", "fashion-mnist-c", "accuracy"),
        ("shift", "fashion-mnist-c", "ece"),
        ("shift", "fashion-mnist-c", "mce"),
        ("ood", "mnist", "auroc"),
        ("ood", "mnist", "fpr95"),
        ("ood", "kmnist", "auroc"),
        ("ood", "kmnist", "fpr95"),
    ];
    let mut out = Vec::new();
    for (m, method) in [
        "Baseline",
        "TS",
        "TS (seed LBFGS)",
        "TST",
        "V-TST m=1",
        "V-TST m=10",
    ]
    .iter()
    .enumerate()
    {
        let seeds = if m < 3 { 1 } else { 3 };
        for seed in 0..seeds {
            for (c, (split, dataset, metric)) in cols.iter().enumerate() {
                // Values of the quickstart's magnitude, with 2-digit spreads (the widest cells).
                let v = 0.1 + 0.05 * c as f64 + 0.01 * m as f64 + 0.0137 * seed as f64;
                out.push(rec(method, seed, split, dataset, metric, v));
            }
        }
    }
    out
}

/// `(header cells, body rows of cells)` of each `<table>` in `html`.
fn tables(html: &str) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let cells = |row: &str| -> Vec<String> {
        row.split("<t")
            .skip(1)
            .filter(|c| c.starts_with("h>") || c.starts_with("d>"))
            .map(|c| c[2..c.find("</t").unwrap()].to_string())
            .collect()
    };
    html.split("<table")
        .skip(1)
        .map(|t| {
            let t = &t[..t.find("</table>").unwrap()];
            let head = &t[t.find("<thead>").unwrap()..t.find("</thead>").unwrap()];
            let body = &t[t.find("<tbody>").unwrap()..t.find("</tbody>").unwrap()];
            let rows = body.split("<tr>").skip(1).map(cells).collect();
            (cells(head), rows)
        })
        .collect()
}

/// Estimated width of a table in characters: per column its widest cell (`&nbsp;` counted as one)
/// plus 3 for the padding. Calibrated with headless Chromium at 1280 px on the quickstart report: its
/// in-distribution table, 121 characters by this count, is 937 px wide (7.7 px per character); the
/// page's content box is 1132 px wide, so at most 145 characters fit.
fn width_chars(header: &[String], rows: &[Vec<String>]) -> usize {
    (0..header.len())
        .map(|j| {
            rows.iter()
                .map(|r| r[j].replace("&nbsp;", " ").chars().count())
                .max()
                .unwrap_or(0)
                + 3
        })
        .sum()
}
const FITS_1280_PX: usize = 145;

#[test]
fn typical_table_is_split_into_tables_that_fit() {
    let aggs = aggregate(&typical_run()).unwrap();
    let table = Table::paper("quickstart", &aggs, Spread::Std, &[]).unwrap();
    assert_eq!(table.columns.len(), 13);
    let groups = table.column_groups();
    let shape: Vec<(&str, usize)> = groups
        .iter()
        .map(|g| (g.label.as_str(), g.columns.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("In-distribution", 6),
            ("Distribution shift", 3),
            ("OOD detection", 4)
        ]
    );

    let html = table.to_html();
    let parsed = tables(&html);
    assert_eq!(parsed.len(), 3);
    let markdown = table.to_markdown();
    let mut numbers_in_html = 0;
    for ((header, rows), group) in parsed.iter().zip(&groups) {
        // Method, n, then the group's columns.
        assert_eq!(header.len(), 2 + group.columns.len(), "{header:?}");
        assert_eq!(header[..2], ["Method".to_string(), "n".to_string()]);
        assert_eq!(rows.len(), 6);
        for row in rows {
            assert_eq!(row.len(), header.len(), "{row:?}");
            // n = 1 for the post-hoc methods, 3 for the heads; no per-cell "(n=…)".
            assert!(row[1] == "1" || row[1] == "3", "{row:?}");
            for cell in &row[2..] {
                assert!(!cell.contains("(n="), "{cell}");
                // The same number as in the Markdown table.
                assert!(markdown.contains(&cell.replace("&nbsp;", " ")), "{cell}");
                numbers_in_html += 1;
            }
        }
        let width = width_chars(header, rows);
        assert!(
            width <= FITS_1280_PX,
            "{} is {width} characters wide",
            group.label
        );
    }
    // Every cell of the Markdown table is in the HTML.
    assert_eq!(numbers_in_html, 6 * 13);

    // All thirteen columns in one table would not fit (what this layout avoids).
    let mut header = vec!["Method".to_string(), "n".to_string()];
    let mut rows: Vec<Vec<String>> = vec![Vec::new(); 6];
    for (h, r) in parsed {
        header.extend(h[2..].iter().cloned());
        for (i, row) in r.into_iter().enumerate() {
            if rows[i].is_empty() {
                rows[i].extend(row[..2].iter().cloned());
            }
            rows[i].extend(row[2..].iter().cloned());
        }
    }
    assert!(width_chars(&header, &rows) > FITS_1280_PX);
}

#[test]
fn wide_blocks_are_cut_and_methods_without_numbers_are_left_out() {
    // Eight in-distribution metrics: two tables of four. One method has OOD numbers only.
    let metrics = [
        "accuracy",
        "ece",
        "mce",
        "rmsce",
        "nll",
        "brier",
        "ece_em",
        "classwise_ece",
    ];
    let mut records = Vec::new();
    for (i, m) in metrics.iter().enumerate() {
        records.push(rec("TST", 1, "test", "cifar10", m, 0.1 * i as f64));
    }
    records.push(rec("TST", 1, "ood", "svhn", "auroc", 0.9));
    records.push(rec("Seed", 1, "ood", "svhn", "auroc", 0.8));
    let table = Table::all_metrics("t", &aggregate(&records).unwrap(), Spread::Std, &[]).unwrap();
    let groups = table.column_groups();
    let shape: Vec<(&str, usize)> = groups
        .iter()
        .map(|g| (g.label.as_str(), g.columns.len()))
        .collect();
    assert_eq!(
        shape,
        [
            ("In-distribution (1 of 2)", 4),
            ("In-distribution (2 of 2)", 4),
            ("OOD detection", 1)
        ]
    );
    assert!(groups.iter().all(|g| g.columns.len() <= HTML_MAX_COLUMNS));
    let parsed = tables(&table.to_html());
    // n is common (1): no n column; "Seed" appears only in the OOD table.
    assert_eq!(parsed[0].0.len(), 5);
    assert_eq!(parsed[0].1.len(), 1);
    assert_eq!(parsed[2].1.len(), 2);
    assert_eq!(parsed[2].1[1], ["Seed", "0.8000"]);
}
