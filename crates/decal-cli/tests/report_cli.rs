//! `decal report` end to end on synthetic runs in a tempdir: three seeds × four methods with clean,
//! per-corruption-cell and OOD records, reliability bins, OOD score histograms and a config file.
//! Set `DECAL_REPORT_KEEP=<dir>` to keep a copy of the generated report for looking at it.

use std::path::{Path, PathBuf};
use std::process::Command;

use decal_report::plot::ScoreHistogram;
use decal_report::record::{write_jsonl, MetricRecord};
use decal_report::reliability::{write_reliability_csv, ReliabilityBin, ReliabilitySeries};

const METHODS: [(&str, f64, f64); 4] = [
    ("Baseline", 0.9252, 0.0606),
    ("TS", 0.9252, 0.0470),
    ("TST", 0.9255, 0.0334),
    ("V-TST m=10", 0.9244, 0.0138),
];
const CORRUPTIONS: [&str; 2] = ["gaussian_noise", "fog"];

fn record(
    seed: u64,
    method: &str,
    split: &str,
    dataset: &str,
    cell: Option<(&str, u8)>,
    metric: &str,
    value: f64,
) -> MetricRecord {
    let definition = match metric {
        "ece" | "mce" => "top-label, 10 equal-width bins, torchmetrics membership",
        "accuracy" => "top-1 accuracy",
        "nll" => "mean negative log-likelihood (nats)",
        "auroc" => "MSP score, ID positive, exact Mann-Whitney",
        _ => "other",
    };
    MetricRecord {
        run: format!("cifar10-wrn/seed-{seed}"),
        seed: Some(seed),
        method: method.into(),
        split: split.into(),
        dataset: dataset.into(),
        corruption: cell.map(|c| c.0.to_string()),
        severity: cell.map(|c| c.1),
        metric: metric.into(),
        value,
        definition: definition.into(),
    }
}

fn reliability(method: &str, ece: f64, seed: u64) -> ReliabilitySeries {
    let bins = (0..10)
        .map(|i| {
            let lower = i as f64 / 10.0;
            let count = [0u64, 3, 10, 30, 60, 90, 130, 190, 300, 9187][i] + seed;
            let conf = lower + 0.07;
            ReliabilityBin {
                lower,
                upper: lower + 0.1,
                count,
                mean_confidence: conf,
                accuracy: (conf - 4.0 * ece * conf * (1.0 - conf)).max(0.0),
            }
        })
        .collect();
    ReliabilitySeries {
        label: method.into(),
        bins,
        ece: Some(ece),
        definition: "top-label, 10 equal-width bins [lo,hi)".into(),
    }
}

/// Writes `root/cifar10-wrn/seed-{1,2,3}/…` and returns the experiment directory.
fn synthetic_runs(root: &Path) -> PathBuf {
    let exp = root.join("cifar10-wrn");
    for seed in 1..=3u64 {
        let dir = exp.join(format!("seed-{seed}"));
        let jitter = (seed as f64 - 2.0) * 1e-4;
        let mut records = Vec::new();
        let mut series = Vec::new();
        let mut panels = Vec::new();
        for (k, (method, acc, ece)) in METHODS.iter().enumerate() {
            records.push(record(
                seed,
                method,
                "test",
                "cifar10",
                None,
                "accuracy",
                acc + jitter,
            ));
            records.push(record(
                seed,
                method,
                "test",
                "cifar10",
                None,
                "ece",
                ece + jitter,
            ));
            records.push(record(
                seed,
                method,
                "test",
                "cifar10",
                None,
                "nll",
                0.25 + 0.1 * k as f64 + jitter,
            ));
            records.push(record(
                seed,
                method,
                "shift",
                "cifar10-generated",
                None,
                "accuracy",
                acc - 0.16 + jitter,
            ));
            records.push(record(
                seed,
                method,
                "shift",
                "cifar10-generated",
                None,
                "ece",
                2.5 * ece + jitter,
            ));
            for (c, corruption) in CORRUPTIONS.iter().enumerate() {
                for s in 1..=5u8 {
                    let v = ece * (1.0 + 0.5 * s as f64) + 0.01 * c as f64 + jitter;
                    records.push(record(
                        seed,
                        method,
                        "shift",
                        "cifar10-generated",
                        Some((corruption, s)),
                        "ece",
                        v,
                    ));
                }
            }
            records.push(record(
                seed,
                method,
                "ood",
                "svhn",
                None,
                "auroc",
                0.87 - 0.01 * k as f64 + jitter,
            ));
            series.push(reliability(method, ece + jitter, seed));
            let id: Vec<f64> = (0..200)
                .map(|i| 1.0 - (i as f64 / 200.0).powi(3) * 0.8)
                .collect();
            let ood: Vec<f64> = (0..300).map(|i| 0.2 + 0.8 * (i as f64 / 300.0)).collect();
            panels.push(
                ScoreHistogram::from_scores(method, "MSP", "cifar10", &id, &[("svhn", &ood)], 20)
                    .unwrap(),
            );
        }
        write_jsonl(&dir.join("metrics.jsonl"), &records).unwrap();
        write_reliability_csv(&dir.join("reliability/test.csv"), &series).unwrap();
        let hist_csv = decal_report::plot::histogram::histograms_to_csv(&panels);
        decal_core::write_atomic(&dir.join("ood_histograms/msp.csv"), hist_csv.as_bytes()).unwrap();
        // A stage-1 training log is also called metrics.jsonl (another schema): it must be skipped.
        decal_core::write_atomic(
            &dir.join("backbone/metrics.jsonl"),
            b"{\"epoch\":0,\"train_loss\":1.4,\"val_ece\":0.03}\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("config.json"),
            format!("{{\"seed\": {seed}, \"arch\": \"wrn-28-10\"}}\n"),
        )
        .unwrap();
    }
    exp
}

fn decal(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_decal"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn report_over_three_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = synthetic_runs(tmp.path());
    let out = tmp.path().join("report");
    let o = decal(&[
        "report",
        s(&exp),
        "--out",
        s(&out),
        "--title",
        "WRN-28-10, CIFAR-10",
        "--method-order",
        "Baseline,TS",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "stderr: {stderr}");
    assert!(
        stderr.contains("seed-1/backbone/metrics.jsonl: skipped (first line has keys epoch"),
        "{stderr}"
    );
    // The aggregated table: n = 3 seeds, percent with two decimals, the seed's column names.
    assert!(
        stdout.contains(
            "| Method | Acc (%) | ECE (%) | NLL | Shift Acc (%) | Shift ECE (%) | OOD AUROC |"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("| TST | 92.55 ± 0.01 | 3.34 ± 0.01 | 0.4500 ± 0.0001 | 76.55 ± 0.01 | 8.35 ± 0.01 | 0.8500 ± 0.0001 |"), "{stdout}");
    assert!(stdout.contains("over n = 3 runs per cell"), "{stdout}");
    assert!(
        stdout.contains(&format!("report: {}", out.join("index.html").display())),
        "{stdout}"
    );
    for f in [
        "tables/main.md",
        "tables/main.tex",
        "tables/main.csv",
        "tables/aggregates.csv",
        "tables/records.csv",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for stem in [
        "shift-ece-vs-severity-cifar10-generated",
        "reliability-test-tst-3-runs-pooled",
        "reliability-overlay-all-methods",
        "ood-scores-msp",
    ] {
        for ext in ["svg", "png", "csv"] {
            assert!(
                out.join(format!("plots/{stem}.{ext}")).is_file(),
                "plots/{stem}.{ext} missing"
            );
        }
    }
    // Per-severity ECE: the mean over the two corruptions per seed, then over seeds. TST severity 1:
    // ((0.0334·1.5 + 0) + (0.0334·1.5 + 0.01)) / 2 = 0.0551 (the seed jitter cancels over seeds).
    let sev =
        std::fs::read_to_string(out.join("plots/shift-ece-vs-severity-cifar10-generated.csv"))
            .unwrap();
    let tst1 = sev.lines().find(|l| l.starts_with("TST,1,")).unwrap();
    let mean: f64 = tst1.split(',').nth(2).unwrap().parse().unwrap();
    assert!((mean - 0.0551).abs() < 1e-12, "{tst1}");
    // The pooled reliability CSV sums the three seeds' counts.
    let rel =
        std::fs::read_to_string(out.join("plots/reliability-test-tst-3-runs-pooled.csv")).unwrap();
    assert!(
        rel.contains("\nTST [3 runs pooled],9,0.9,1.0,27567,"),
        "{rel}"
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("data:image/png;base64,"));
    // Figures are shown at their nominal size (the PNGs are rendered at 2x).
    assert!(html.contains("<img alt=\"Reliability: methods overlaid (all methods)\" width=\"720\" src=\"data:image/png;base64,"), "{html}");
    assert!(html.contains("&quot;arch&quot;: &quot;wrn-28-10&quot;"));
    assert!(html.contains("<a href=\"tables/main.tex\">tables/main.tex</a>"));

    // A second report into the same directory replaces the first (it is recognised by report.json;
    // report_regenerate_cli.rs tests what stays protected); tables and SVGs are identical.
    let again = decal(&[
        "report",
        s(&exp),
        "--out",
        s(&out),
        "--title",
        "WRN-28-10, CIFAR-10",
        "--method-order",
        "Baseline,TS",
    ]);
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{err}");
    assert!(
        err.contains("note: ") && err.contains("replaced the report"),
        "{err}"
    );
    let out2 = tmp.path().join("report2");
    let o2 = decal(&[
        "report",
        s(&exp),
        "--out",
        s(&out2),
        "--title",
        "WRN-28-10, CIFAR-10",
        "--method-order",
        "Baseline,TS",
    ]);
    assert!(o2.status.success());
    for f in [
        "tables/main.md",
        "tables/main.tex",
        "tables/aggregates.csv",
        "plots/reliability-overlay-all-methods.svg",
        "plots/reliability-overlay-all-methods.png",
        "plots/shift-ece-vs-severity-cifar10-generated.svg",
    ] {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(out2.join(f)).unwrap(),
            "{f} is not deterministic"
        );
    }

    if let Some(keep) = std::env::var_os("DECAL_REPORT_KEEP") {
        let keep = PathBuf::from(keep).join("cli-report");
        let o = decal(&[
            "report",
            s(&exp),
            "--out",
            s(&keep),
            "--force",
            "--title",
            "WRN-28-10, CIFAR-10 (synthetic)",
            "--method-order",
            "Baseline,TS",
        ]);
        assert!(o.status.success());
    }
}

#[test]
fn default_out_dir_formats_and_direct_files() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = synthetic_runs(tmp.path());
    let file = exp.join("seed-1/metrics.jsonl");
    let o = decal(&["report", s(&file), "--format", "md", "--spread", "se"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = exp.join("seed-1/report");
    assert!(out.join("tables/main.md").is_file());
    assert!(!out.join("tables/main.tex").exists() && !out.join("index.html").exists());
    // One seed: no spread, n = 1 stated.
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("Single run per cell (n = 1)"), "{stdout}");
    assert!(
        stdout.contains(&format!("report: {}", out.display())),
        "{stdout}"
    );
}

#[test]
fn clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = decal(&["report", s(&empty)]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!(
            "error: {}: no metrics.jsonl found in this directory or below",
            empty.display()
        )
    );

    let bad = tmp.path().join("bad/metrics.jsonl");
    std::fs::create_dir_all(bad.parent().unwrap()).unwrap();
    std::fs::write(&bad, "\n{\"run\": \"a\"}\n").unwrap();
    let o = decal(&["report", s(bad.parent().unwrap())]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!(
            "error: {}:2: not a metric record: missing field",
            bad.display()
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let blank = tmp.path().join("blank/metrics.jsonl");
    std::fs::create_dir_all(blank.parent().unwrap()).unwrap();
    std::fs::write(&blank, "\n\n").unwrap();
    let o = decal(&["report", s(&blank)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(
        err.trim_end(),
        format!("error: no records found in {}", blank.display())
    );

    let o = decal(&["report", s(&blank), "--format", "pdf"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown report format \"pdf\""));
    let o = decal(&["report", s(&tmp.path().join("missing"))]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("missing"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The seed's example result entry (seed-system.md §10.6; intensities 1–4 from §12.1).
const SEED_BASE: &str = r#"{"WRN_CIFAR10_28_10_Base_seed1": {"Train nll": 0.10310899595309254, "clean_accuracy": 0.9251999855041504, "ECE": 6.062109023332596, "MCE": 36.28459572792053, "nll": 0.5124250146459428, "brier": 0.01333459885709418, "SHIFT ECE": 20.059849321842194, "SHIFT MCE": 45.62256336212158, "SHIFT ACCURACY": 0.760192334651947, "SHIFT Intensity: 0": {"ECE": 11.020459349338825, "MCE": 42.79120541535891}, "SHIFT Intensity: 1": {"ECE": 13.86, "MCE": 40.0}, "SHIFT Intensity: 2": {"ECE": 17.41, "MCE": 41.0}, "SHIFT Intensity: 3": {"ECE": 23.85, "MCE": 44.0}, "SHIFT Intensity: 4": {"ECE": 34.10, "MCE": 50.0}, "OOD AUROC": [0.8744080747668739], "OOD FPR95": 0.7079817939609236}}"#;

#[test]
fn seed_result_files_join_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let exp = synthetic_runs(tmp.path());
    let seed_file = tmp.path().join("WRN_CIFAR10.txt");
    std::fs::write(&seed_file, SEED_BASE).unwrap();
    let out = tmp.path().join("r");
    let o = decal(&[
        "report",
        s(&exp),
        "--seed-results",
        s(&seed_file),
        "WRN base (seed repo)",
        "--out",
        s(&out),
        "--format",
        "md,html",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The seed row has its own cells (n = 1, in the n column) next to the synthetic methods.
    assert!(
        stdout.contains("| WRN base (seed repo) | 1 | 92.52 | 6.06 | 36.28 | 0.5124 | 0.1031 |"),
        "{stdout}"
    );
    // Only the seed file: no RUN needed, default output next to it.
    let o = decal(&[
        "report",
        "--seed-results",
        s(&seed_file),
        "WRN base",
        "--format",
        "md",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tmp.path().join("report/tables/main.md").is_file());
}
