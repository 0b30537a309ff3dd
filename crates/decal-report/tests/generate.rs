//! `generate_report` as a library call (what `decal report`, `decal run` and `decal quickstart` use):
//! discovery, skipping of other-schema `metrics.jsonl`, outputs, determinism and errors.

use std::path::{Path, PathBuf};

use decal_report::generate::{find_metrics_files, generate_report, Formats, ReportOptions};
use decal_report::manifest;
use decal_report::record::{write_jsonl, MetricRecord};
use decal_report::reliability::{write_reliability_csv, ReliabilityBin, ReliabilitySeries};

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
        .map(|i| ReliabilityBin {
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

    // The report's own directory is regenerated (with a notice); fewer formats remove the files
    // that are no longer produced.
    let before = manifest::list_files(out).unwrap();
    assert!(before.contains(&"report.json".to_string()));
    let again = generate_report(std::slice::from_ref(&exp), &options).unwrap();
    assert_eq!(again.notices.len(), 1, "{:?}", again.notices);
    assert!(again.notices[0].contains("replaced the report"));
    assert_eq!(manifest::list_files(out).unwrap(), before);
    options.formats = Formats::parse("md").unwrap();
    let md_only = generate_report(std::slice::from_ref(&exp), &options).unwrap();
    assert!(
        md_only.notices[0].contains("no longer produced, removed"),
        "{:?}",
        md_only.notices
    );
    assert!(!out.join("index.html").exists() && !out.join("tables/main.tex").exists());
    assert!(
        out.join("tables/main.md").is_file() && out.join("plots/reliability-tst.svg").is_file()
    );
    let m = manifest::read_manifest(out).unwrap().unwrap();
    let mut listed: Vec<String> = m.files.iter().map(|f| f.path.clone()).collect();
    listed.push("report.json".into());
    listed.sort();
    assert_eq!(manifest::list_files(out).unwrap(), listed);
    assert_eq!(m.inputs.len(), 2);
    assert_eq!(
        m.inputs[0].sha256,
        decal_core::sha256_file(&exp.join("seed-1/metrics.jsonl")).unwrap()
    );
}

#[test]
fn a_directory_with_other_files_stays_protected() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = runs(tmp.path());
    let out = tmp.path().join("out");
    let options = ReportOptions::new(&out);

    // A directory of the user's: refused, untouched.
    decal_core::write_atomic(&out.join("notes.txt"), b"mine").unwrap();
    let err = generate_report(std::slice::from_ref(&exp), &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no report.json") && err.contains("--force") && err.contains("out"),
        "{err}"
    );
    assert_eq!(manifest::list_files(&out).unwrap(), vec!["notes.txt"]);
    // --force writes into it and keeps the user's file, also when regenerating later.
    let mut forced = options.clone();
    forced.force = true;
    generate_report(std::slice::from_ref(&exp), &forced).unwrap();
    assert!(out.join("index.html").is_file());
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
    let err = generate_report(std::slice::from_ref(&exp), &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("holds notes.txt, which decal report did not write"),
        "{err}"
    );
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    generate_report(std::slice::from_ref(&exp), &options).unwrap();

    // A file of the report edited by hand, or one added in a subfolder: refused, nothing changed.
    std::fs::write(out.join("tables/main.md"), "edited").unwrap();
    let err = generate_report(std::slice::from_ref(&exp), &options)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("tables/main.md was changed after decal report wrote it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("tables/main.md")).unwrap(),
        "edited"
    );
    // --force overwrites the same-named file but keeps an edited stale one.
    std::fs::write(out.join("tables/main.tex"), "edited tex").unwrap();
    let mut md_forced = forced.clone();
    md_forced.formats = Formats::parse("md,html").unwrap();
    generate_report(std::slice::from_ref(&exp), &md_forced).unwrap();
    assert_ne!(
        std::fs::read_to_string(out.join("tables/main.md")).unwrap(),
        "edited"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("tables/main.tex")).unwrap(),
        "edited tex"
    );
    std::fs::remove_file(out.join("tables/main.tex")).unwrap();
    generate_report(std::slice::from_ref(&exp), &options).unwrap();
    decal_core::write_atomic(&out.join("plots/extra/mine.png"), b"png").unwrap();
    let err = generate_report(std::slice::from_ref(&exp), &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds plots/extra/mine.png"), "{err}");

    // A broken manifest is not trusted.
    let other = tmp.path().join("other");
    decal_core::write_atomic(&other.join("report.json"), b"{\"files\": []}").unwrap();
    let err = generate_report(std::slice::from_ref(&exp), &ReportOptions::new(&other))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("report.json is not a decal-report manifest"),
        "{err}"
    );

    // A failed generation (here: an unreadable figure input) leaves the previous report intact, and
    // its leftovers do not block the next run.
    let clean = tmp.path().join("clean");
    generate_report(std::slice::from_ref(&exp), &ReportOptions::new(&clean)).unwrap();
    let index = std::fs::read(clean.join("index.html")).unwrap();
    let bad = exp.join("seed-2/reliability/broken.csv");
    std::fs::write(&bad, "not,a,reliability,csv\n").unwrap();
    assert!(generate_report(std::slice::from_ref(&exp), &ReportOptions::new(&clean)).is_err());
    assert_eq!(std::fs::read(clean.join("index.html")).unwrap(), index);
    std::fs::remove_file(&bad).unwrap();
    generate_report(std::slice::from_ref(&exp), &ReportOptions::new(&clean)).unwrap();
    assert!(!clean.join(manifest::STAGING).exists());
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
    assert!(html
        .contains("<summary>files skipped (not metric records, or a copy of one read)</summary>"));

    // Without notes or warnings there is no section at all; a description opens the summary, escaped.
    let mut quiet = ReportOptions::new(tmp.path().join("quiet"));
    quiet.notes.clear();
    quiet.description = "CNN on CIFAR-10 <seed 1>".into();
    generate_report(&[exp.join("seed-1/metrics.jsonl")], &quiet).unwrap();
    let html = std::fs::read_to_string(quiet.out_dir.join("index.html")).unwrap();
    assert!(!html.contains("Warnings"));
    let desc = html
        .find("CNN on CIFAR-10 &lt;seed 1&gt;")
        .expect("description shown");
    assert!(
        desc < html.find("records from 1 file(s)").unwrap(),
        "first in the summary"
    );
    let md = std::fs::read_to_string(quiet.out_dir.join("tables/main.md")).unwrap();
    assert!(!md.contains("Warnings"));
}

#[test]
fn extra_files_of_the_caller_belong_to_the_report() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = runs(tmp.path());
    let out = tmp.path().join("report");
    // As `decal run` does: its own results.md next to the report, force on every run.
    let mut run = ReportOptions::new(&out);
    run.force = true;
    run.extra_files = vec![("results.md".into(), b"| table |\n".to_vec())];
    generate_report(std::slice::from_ref(&exp), &run).unwrap();
    generate_report(std::slice::from_ref(&exp), &run).unwrap();
    assert_eq!(
        std::fs::read(out.join("results.md")).unwrap(),
        b"| table |\n"
    );
    let m = manifest::read_manifest(&out).unwrap().unwrap();
    assert!(m.files.iter().any(|f| f.path == "results.md"));
    // `decal report` into the same directory (no force) recognises it and replaces it; results.md,
    // not produced this time, goes with the old report.
    let again = generate_report(std::slice::from_ref(&exp), &ReportOptions::new(&out)).unwrap();
    assert!(
        again.notices[0].contains("1 no longer produced, removed"),
        "{:?}",
        again.notices
    );
    assert!(!out.join("results.md").exists());
    // Paths must stay inside and must not replace a report file.
    for (bad, why) in [
        ("../x.md", "plain relative path"),
        ("index.html", "would replace a file of the report"),
        ("report.json", "plain relative path"),
    ] {
        let mut o = run.clone();
        o.extra_files = vec![(bad.into(), Vec::new())];
        let err = generate_report(std::slice::from_ref(&exp), &o)
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    assert!(out.join("index.html").is_file());
}

/// A study keeps a copy of its records and side files in its report unit's folder
/// (`units/<id>/metrics.jsonl`, `reliability/`): `decal report <study>` must read them once. Records
/// were always de-duplicated; the reliability bins were pooled twice ("[2 runs pooled]", every count
/// doubled) until byte-identical records files were skipped.
#[test]
fn a_copy_of_a_records_file_and_its_side_files_is_read_once() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("study");
    let records = vec![
        rec(1, "TST", "accuracy", 0.91),
        rec(2, "TST", "accuracy", 0.92),
    ];
    for dir in [study.clone(), study.join("units/abc123")] {
        write_jsonl(&dir.join("metrics.jsonl"), &records).unwrap();
        write_reliability_csv(&dir.join("reliability/tst.csv"), &[series("TST", 1)]).unwrap();
    }
    let found = find_metrics_files(std::slice::from_ref(&study), None).unwrap();
    assert_eq!(found.files, vec![study.join("metrics.jsonl")]);
    assert_eq!(found.skipped.len(), 1, "{:?}", found.skipped);
    assert_eq!(found.skipped[0].0, study.join("units/abc123/metrics.jsonl"));
    assert!(
        found.skipped[0].1.starts_with("same content as "),
        "{:?}",
        found.skipped
    );
    // The same file named twice, and a directory plus its own file: read once as well.
    let file = study.join("metrics.jsonl");
    let twice = find_metrics_files(&[file.clone(), file.clone(), study.clone()], None).unwrap();
    assert_eq!(twice.files, vec![file]);
    assert_eq!(twice.skipped.len(), 3);

    let options = ReportOptions::new(tmp.path().join("out"));
    let outcome = generate_report(std::slice::from_ref(&study), &options).unwrap();
    assert_eq!(outcome.num_records, 2);
    // One run's bins, not two: 10 + 1 in the first bin, no "[2 runs pooled]".
    let csv = std::fs::read_to_string(options.out_dir.join("plots/reliability-tst.csv")).unwrap();
    assert!(csv.contains("\nTST,0,0.0,0.2,11,"), "{csv}");
    assert!(!csv.contains("pooled"), "{csv}");

    // A run directory with both metrics.jsonl and metrics.csv (different bytes, same records) pools
    // its side files once.
    let run = tmp.path().join("run");
    write_jsonl(&run.join("metrics.jsonl"), &records).unwrap();
    decal_core::write_atomic(
        &run.join("metrics.csv"),
        decal_report::record::to_csv_string(&records).as_bytes(),
    )
    .unwrap();
    write_reliability_csv(&run.join("reliability/tst.csv"), &[series("TST", 1)]).unwrap();
    let both = ReportOptions::new(tmp.path().join("out-both"));
    generate_report(&[run.join("metrics.jsonl"), run.join("metrics.csv")], &both).unwrap();
    let csv = std::fs::read_to_string(both.out_dir.join("plots/reliability-tst.csv")).unwrap();
    assert!(csv.contains("\nTST,0,0.0,0.2,11,"), "{csv}");
}

/// With more than four methods with reliability data the "selected methods" overlay draws the first four
/// of `overlay` that have data (names without data are passed over); without `overlay`, of `method_order`.
#[test]
fn the_overlay_option_chooses_the_overlaid_methods() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let methods = ["A", "B", "C", "D", "E", "F"];
    let records: Vec<MetricRecord> = methods.iter().map(|m| rec(1, m, "ece", 0.05)).collect();
    write_jsonl(&run.join("metrics.jsonl"), &records).unwrap();
    for m in methods {
        write_reliability_csv(
            &run.join(format!("reliability/{}.csv", m.to_lowercase())),
            &[series(m, 1)],
        )
        .unwrap();
    }
    let overlaid = |options: &ReportOptions| -> Vec<String> {
        generate_report(std::slice::from_ref(&run), options).unwrap();
        let csv = std::fs::read_to_string(
            options
                .out_dir
                .join("plots/reliability-overlay-selected-methods.csv"),
        )
        .unwrap();
        let mut labels: Vec<String> = Vec::new();
        for line in csv.lines().skip(1) {
            let label = line.split(',').next().unwrap().to_string();
            if labels.last() != Some(&label) {
                labels.push(label);
            }
        }
        labels
    };
    let mut options = ReportOptions::new(tmp.path().join("by-order"));
    options.method_order = methods.iter().map(|m| m.to_string()).collect();
    assert_eq!(overlaid(&options), ["A", "B", "C", "D"]);
    options.out_dir = tmp.path().join("by-overlay");
    options.overlay = ["F", "missing", "A", "E", "C", "B"]
        .iter()
        .map(|m| m.to_string())
        .collect();
    assert_eq!(overlaid(&options), ["F", "A", "E", "C"]);
}
