//! `generate_report` as a library call (what `decal report`, `decal run` and `decal quickstart` use):
//! discovery, skipping of other-schema `metrics.jsonl`, outputs, determinism and errors.

use std::path::{Path, PathBuf};

use decal_report::generate::{find_metrics_files, generate_report, Formats, ReportOptions};
use decal_report::record::{write_jsonl, MetricRecord};
use decal_report::reliability::{write_reliability_csv, BinStat, ReliabilitySeries};

fn rec(seed: u64, method: &str, metric: &str, value: f64) -> MetricRecord {
    MetricRecord {
        run: format!("exp/seed-{seed}"),
        seed: Some(seed),
        method: method.into(),
        split: "test".into(),
        dataset: "cifar10".into(),
        corruption: None,
        severity: None,
        metric: metric.into(),
        value,
        definition: format!("{metric} definition"),
    }
}

fn series(label: &str, seed: u64) -> ReliabilitySeries {
    let bins = (0..5)
        .map(|i| BinStat {
            lower: i as f64 / 5.0,
            upper: (i + 1) as f64 / 5.0,
            count: 10 * (i as u64 + 1) + seed,
            mean_confidence: i as f64 / 5.0 + 0.1,
            accuracy: i as f64 / 5.0 + 0.05,
        })
        .collect();
    ReliabilitySeries {
        label: label.into(),
        bins,
        ece: Some(0.05),
        definition: "5 bins".into(),
    }
}

fn runs(root: &Path) -> PathBuf {
    let exp = root.join("exp");
    for seed in 1..=2u64 {
        let dir = exp.join(format!("seed-{seed}"));
        let j = seed as f64 * 1e-3;
        let records = vec![
            rec(seed, "Baseline", "accuracy", 0.90 + j),
            rec(seed, "Baseline", "ece", 0.06 + j),
            rec(seed, "TST", "accuracy", 0.91 + j),
            rec(seed, "TST", "ece", 0.03 + j),
        ];
        write_jsonl(&dir.join("metrics.jsonl"), &records).unwrap();
        write_reliability_csv(
            &dir.join("reliability/baseline.csv"),
            &[series("Baseline", seed)],
        )
        .unwrap();
        write_reliability_csv(&dir.join("reliability/tst.csv"), &[series("TST", seed)]).unwrap();
        decal_core::write_atomic(
            &dir.join("stage1/metrics.jsonl"),
            b"{\"epoch\":0,\"lr\":0.1}\n",
        )
        .unwrap();
    }
    exp
}

#[test]
fn writes_tables_figures_and_html_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = runs(tmp.path());
    let found = find_metrics_files(std::slice::from_ref(&exp), None).unwrap();
    assert_eq!(found.files.len(), 2);
    assert_eq!(found.skipped.len(), 2);
    assert!(
        found.skipped[0]
            .1
            .starts_with("first line has keys epoch, lr"),
        "{:?}",
        found.skipped
    );

    let mut options = ReportOptions::new(tmp.path().join("out"));
    options.title = "Exp".into();
    let outcome = generate_report(std::slice::from_ref(&exp), &options).unwrap();
    assert_eq!(outcome.num_records, 8);
    assert_eq!(outcome.warnings.len(), 2);
    assert!(
        outcome
            .markdown
            .contains("| TST | 91.15 ± 0.07 | 3.15 ± 0.07 |"),
        "{}",
        outcome.markdown
    );
    assert!(outcome.markdown.contains("over n = 2 runs per cell"));
    let out = &options.out_dir;
    for f in [
        "index.html",
        "tables/main.md",
        "tables/main.tex",
        "tables/main.csv",
        "tables/aggregates.csv",
        "tables/records.csv",
        "plots/reliability-baseline.png",
        "plots/reliability-tst.svg",
        "plots/reliability-overlay-all-methods.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    // Two seeds pooled: counts add (10+1 + 10+2 in the first bin).
    let csv = std::fs::read_to_string(out.join("plots/reliability-tst.csv")).unwrap();
    assert!(csv.contains("\nTST [2 runs pooled],0,0.0,0.2,23,"), "{csv}");

    // The same inputs give the same bytes (the HTML carries no provenance here, so it is identical too).
    let mut again = options.clone();
    again.out_dir = tmp.path().join("out2");
    generate_report(std::slice::from_ref(&exp), &again).unwrap();
    for f in [
        "index.html",
        "tables/main.tex",
        "tables/aggregates.csv",
        "plots/reliability-overlay-all-methods.png",
    ] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(again.out_dir.join(f)).unwrap(),
            "{f}"
        );
    }

    // Never overwrite a finished report silently.
    let err = generate_report(std::slice::from_ref(&exp), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--force"), "{err}");
    options.force = true;
    options.formats = Formats::parse("md").unwrap();
    generate_report(std::slice::from_ref(&exp), &options).unwrap();
}

#[test]
fn errors_name_the_input() {
    let tmp = tempfile::tempdir().unwrap();
    let options = ReportOptions::new(tmp.path().join("out"));
    let err = generate_report(&[], &options).unwrap_err().to_string();
    assert_eq!(err, "no runs given");
    let only_logs = tmp.path().join("logs");
    decal_core::write_atomic(&only_logs.join("metrics.jsonl"), b"{\"epoch\":1}\n").unwrap();
    let err = generate_report(std::slice::from_ref(&only_logs), &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no metrics.jsonl found") && err.contains("skipped, not metric records"),
        "{err}"
    );
    // A file named explicitly is read strictly.
    let err = generate_report(&[only_logs.join("metrics.jsonl")], &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("metrics.jsonl:1: not a metric record"),
        "{err}"
    );
}

#[test]
fn notes_and_warnings_are_shown_in_html_and_markdown() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = runs(tmp.path());
    // A third run whose reliability bins differ: it cannot be pooled, which is a warning of the report.
    let dir = exp.join("seed-3");
    write_jsonl(
        &dir.join("metrics.jsonl"),
        &[rec(3, "TST", "accuracy", 0.92)],
    )
    .unwrap();
    let mut odd = series("TST", 3);
    odd.bins[0].upper = 0.25;
    odd.bins[1].lower = 0.25;
    write_reliability_csv(&dir.join("reliability/tst.csv"), &[odd]).unwrap();

    let mut options = ReportOptions::new(tmp.path().join("out"));
    options.notes = vec![
        "OOD set svhn missing: skipped".into(),
        "seed compat <BUG-5> in effect".into(),
    ];
    let outcome = generate_report(std::slice::from_ref(&exp), &options).unwrap();
    // Skipped training logs stay out of the Warnings section (they are listed under provenance).
    let own: Vec<&String> = outcome
        .warnings
        .iter()
        .filter(|w| !w.contains("skipped (first line"))
        .collect();
    assert_eq!(own.len(), 1, "{:?}", outcome.warnings);
    assert!(own[0].contains("not pooled"), "{own:?}");

    let md = std::fs::read_to_string(options.out_dir.join("tables/main.md")).unwrap();
    assert_eq!(md, outcome.markdown);
    let section = md
        .split("\n**Warnings**\n\n")
        .nth(1)
        .expect("no Warnings section");
    let items: Vec<&str> = section.lines().collect();
    assert_eq!(items.len(), 3, "{section}");
    assert_eq!(items[0], "- OOD set svhn missing: skipped");
    assert_eq!(items[1], "- seed compat <BUG-5> in effect");
    assert!(items[2].starts_with("- ") && items[2].contains("not pooled"));

    let html = std::fs::read_to_string(options.out_dir.join("index.html")).unwrap();
    let start = html.find("<h2>Warnings</h2>").expect("no Warnings section");
    assert!(
        start < html.find("<nav>").unwrap(),
        "warnings come before the contents"
    );
    let section = &html[start..start + html[start..].find("</section>").unwrap()];
    assert_eq!(section.matches("<li>").count(), 3, "{section}");
    assert!(section.contains("<li>seed compat &lt;BUG-5&gt; in effect</li>"));
    assert!(html.contains("<summary>files skipped (not metric records)</summary>"));

    // Without notes or warnings there is no section at all.
    let mut quiet = ReportOptions::new(tmp.path().join("quiet"));
    quiet.notes.clear();
    generate_report(&[exp.join("seed-1/metrics.jsonl")], &quiet).unwrap();
    let html = std::fs::read_to_string(quiet.out_dir.join("index.html")).unwrap();
    assert!(!html.contains("Warnings"));
    let md = std::fs::read_to_string(quiet.out_dir.join("tables/main.md")).unwrap();
    assert!(!md.contains("Warnings"));
}
